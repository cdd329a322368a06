"""The attack demos in tools/ run and report that every defence held."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.parametrize("seed", [1, 2])
def test_blocked_read_demo_shows_0x3d_and_ciphertext(capsys, seed: int) -> None:
    assert _load("attack_read_secret").main(["--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert "refused: PGM 0x3d" in out and "no trace of the secret" in out
    host_lines = [line for line in out.splitlines() if line.startswith("host:")]
    assert host_lines and not any("TOP SECRET" in line for line in host_lines)


def test_replay_demo_shows_rc_0x107_for_each_forgery(capsys) -> None:
    assert _load("attack_replay").main([]) == 0
    out = capsys.readouterr().out
    assert out.count("rc 0x0107") == 3
    assert "every defence held" in out

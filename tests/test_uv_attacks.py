"""The attack demos in tools/ are thin wrappers over the playbook and report that every defence held."""

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
    assert "PGM 0x3d" in out and "Convert from Secure Storage" in out
    assert out.count("secure bytes obtained by the host: 0") == 3
    assert "zuv secret" not in out and "0451-ALPHA" not in out


def test_replay_demo_shows_rc_0x107_for_each_forgery(capsys) -> None:
    assert _load("attack_replay").main([]) == 0
    out = capsys.readouterr().out
    assert out.count("Convert to Secure Storage (0x0200): rc 0x0107") >= 4  # replay, two swapped, the DMA
    assert out.count("the defence held") == 3

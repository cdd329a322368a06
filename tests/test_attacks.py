"""The attack playbook: every attack of a malicious hypervisor on the booted demo guest fails as the
architecture says (the PGM code or the Ultravisor's rc), and the host obtains no byte of the secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator.attacks import ATTACKS, find, referee, report
from emulator.attacks import main as attack_main

ROOT = Path(__file__).resolve().parents[1]

#: attack -> (fact, expected value): the architected result each defence gives
EXPECTED: dict[str, tuple[str, object]] = {
    "read-secret": ("pgm", 0x3D),
    "write-secret": ("pgm", 0x3D),
    "export-read": ("rc", 0x0001),
    "dma-write": ("rc", 0x0107),
    "swap-pages": ("rc", [0x0107, 0x0107]),
    "replay-export": ("rc", 0x0107),
    "remap-page": ("rc", 0x0105),
    "transplant-page": ("rc", 0x0107),
    "alias-page": ("rc", 0x0105),
    "share-secret": ("rc", [0x0002, 0x0108]),
    "register-theft": ("leaked_registers", []),
    "sd-swap": ("validity", 0x2002),
    "reset-restart": ("rc", 0x0003),
    "dump-without-key": ("rc", [0x0101, 0x0003]),
    "dump-ciphertext": ("opened_by", ["the owner, with the CCK"]),
    "header-tamper": ("rc", 0x0108),
    "image-tamper": ("rc", 0x0102),
    "attest-replay": ("refused", ["nonce", "nonce"]),
    "secret-theft": ("rc", [0x0002, 0x0002]),
}


def test_at_least_twelve_attacks_each_with_an_expectation() -> None:
    names = [a.name for a in ATTACKS]
    assert len(names) >= 12 and len(set(names)) == len(names)
    assert set(EXPECTED) <= set(names)


@pytest.mark.parametrize("name", [a.name for a in ATTACKS])
def test_attack_defence_holds(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.api import Host

    def refuse(self: Host) -> None:
        raise AssertionError(f"{name} asked for the debug capability: an attack proves nothing with it")

    monkeypatch.setattr(Host, "debug_capability", refuse)
    o = find(name).run()
    text = report(o, find(name).title)
    assert o.held, text
    assert o.secure_bytes == 0, text
    assert any(line.startswith("tried:") for line in o.lines), text
    assert any(line.startswith("machine:") for line in o.lines), text
    assert any(line.startswith("safe:") for line in o.lines), text
    if name in EXPECTED:
        fact, value = EXPECTED[name]
        assert o.facts.get(fact) == value, text
    if name in ("dma-write", "swap-pages", "remap-page"):
        assert "cannot be made secure" in o.facts["stopped"], text  # the forged page never ran
    if name == "read-donated":
        assert o.facts["refused"] == o.facts["regions"] >= 3 and o.facts["registers_after"] == [], text
    if name == "sd-swap":
        assert o.facts["registers"] == [], text
        assert o.facts["copy_validity"] == 0x200B and not o.facts["foreign_sd_entered"], text
    if name == "alias-page":
        assert o.facts["pgm"] == 0x3D, text
    if name == "dma-read":
        assert o.facts["traps"] >= 1, text
    if name == "dump-ciphertext":
        assert o.facts["rc"] == [0x0001] and o.facts["registers_in_dump"] == [], text
    if name == "register-theft":
        assert o.facts["interceptions"] > 0, text


def test_referee_knows_the_secret_and_counts_it() -> None:
    page = referee.secret_page()
    assert referee.secret_bytes(page) >= 4096 - 256  # all but the words' zero padding
    assert referee.digest_matches(b"secret page at 0x15000 (never shared), digest 28d8fde687fea7ca")
    assert referee.secret_bytes(b"x" * 3 + page[1000:1016] + b"y") >= 8
    assert referee.secret_bytes(bytes(4096)) == 0
    assert referee.secret_bytes(referee.SECRET_WORDS) >= len(referee.SECRET_WORDS)


def test_cli_list_and_unknown_name(capsys) -> None:
    assert attack_main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(a.name in out for a in ATTACKS)
    assert attack_main(["run", "no-such-attack"]) == 2
    assert "no-such-attack" in capsys.readouterr().err


def test_zuv_attack_run_through_the_command_line() -> None:
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "attack", "run", "read-secret"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "PGM 0x3d" in p.stdout and "secure bytes obtained by the host: 0" in p.stdout

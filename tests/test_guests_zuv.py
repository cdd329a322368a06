"""Every test guest, run on zuv, prints exactly its expected console output (the same files qemu is held to)."""

import json
from pathlib import Path

import pytest

from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "guests/images/MANIFEST.json").read_text())["images"]
CASES = sorted(
    name for name, m in MANIFEST.items() if m.get("expected") and (ROOT / m["expected"]).exists()
)


@pytest.mark.parametrize("name", CASES)
def test_guest_output_matches_expected(name):
    m = MANIFEST[name]
    elf = next(f for f in m["files"] if f.endswith(".elf"))
    machine = Machine(128 << 20, m.get("smp", 1))
    machine.load(str(ROOT / "guests/images" / elf), m.get("append", ""))
    result = machine.run(time_limit=60)
    expected = (ROOT / m["expected"]).read_text()
    assert machine.console.decode("ascii", "replace") == expected
    assert result.reason == "all CPUs stopped", result.describe()


def test_deterministic_runs_repeat_exactly():
    outs = []
    for _ in range(2):
        machine = Machine(64 << 20, 1, deterministic=True)
        machine.load(str(ROOT / "guests/images/hello.elf"), "a b c")
        r = machine.run()
        outs.append((bytes(machine.console), r.instructions, machine.cpus[0].tod()))
    assert outs[0] == outs[1]
    assert outs[0][1] and outs[0][1] > 1000

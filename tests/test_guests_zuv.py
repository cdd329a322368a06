"""Every test guest, run on zuv, prints exactly its expected console output (the same files qemu is held
to)."""

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
    machine = Machine(128 << 20, m.get("smp", 1), deterministic=True)
    machine.load(str(ROOT / "guests/images" / elf), m.get("append", ""))
    result = machine.run(time_limit=60)
    expected = (ROOT / m["expected"]).read_text()
    got = machine.console.decode("ascii", "replace")
    assert got == expected
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


def test_console_input_arrives_as_sclp_events():
    machine = Machine(64 << 20, 1, deterministic=True)
    machine.load(str(ROOT / "guests/images/echo.elf"))
    machine.feed_console(b"typed before the program listened\n")  # kept until it registers for input
    first = machine.run()
    assert first.reason.startswith("all CPUs wait")  # waiting for more input, nothing else can wake it
    machine.feed_console(b"quit\n")
    last = machine.run()
    assert last.clean
    assert machine.console.decode().splitlines()[1:] == [
        "echo 1: typed before the program listened",
        "echo 2: quit",
        "EXIT: STATUS=1",
    ]


def test_two_cpus_are_scheduled_deterministically():
    runs = []
    for _ in range(2):
        machine = Machine(128 << 20, 2, deterministic=True)
        machine.load(str(ROOT / "guests/images/sigp.elf"))
        r = machine.run()
        assert r.clean
        runs.append((bytes(machine.console), r.instructions, [c.insn_count for c in machine.cpus.values()]))
    assert runs[0] == runs[1]
    assert runs[0][2][1] > 0  # the second CPU really ran

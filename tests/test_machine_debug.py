"""Breakpoints and stepping in the machine API: free between stops, exact at them, harmless where nothing
runs."""

from pathlib import Path

from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
HELLO = str(ROOT / "guests/images/hello.elf")


def test_breakpoint_stops_before_the_instruction_and_resumes():
    m = Machine(64 << 20, 1)
    prog = m.load(HELLO, "x")
    main = prog.symbols["main"]
    m.set_breakpoints({main})
    r = m.run(time_limit=20)
    assert r.reason.startswith("breakpoint") and m.cpus[0].pc == main
    assert b"Hello" not in m.console
    r = m.run(time_limit=20)
    assert r.clean and b"EXIT: STATUS=1" in m.console


def test_breakpoint_on_a_page_that_does_not_translate_changes_nothing():
    # unicorn looks up every exit's page after each run; a page outside memory must not disturb the run
    m = Machine(64 << 20, 1)
    m.load(HELLO, "x")
    m.set_breakpoints({0x7FF0000})
    r = m.run(time_limit=20)
    assert r.clean, r.describe()
    assert m.console.decode().endswith("EXIT: STATUS=1\n")


def test_step_counts_instructions_and_moves_the_pc():
    m = Machine(64 << 20, 1)
    m.load(HELLO, "")
    start = m.cpus[0].pc
    for _ in range(5):
        ex = m.step()
        assert ex.kind == "limit"
    assert m.cpus[0].pc != start

"""A stopped machine stays steppable: after a time limit, a stop request, an interrupted run or a breakpoint,
a counted run or a step executes exactly what it says (the blocks an uncounted run translated used to
ignore the count, so the next step or ``continue --insns N`` ran on for ever)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from emulator.console.commands import execute
from emulator.console.session import Session
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
ALU = ROOT / "guests" / "images" / "bench_alu.elf"
FOREVER = "n=1000000000000"  # aghi/aghi/brctg 10^12 times: hours; never ends inside a test

T = TypeVar("T")


def _finishes(fn: Callable[[], T], machine: Machine, limit: float = 120.0) -> T:
    """``fn()``, run on a thread; a run that never returns (the bug) fails the test instead of hanging it."""
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        machine.request_halt("test gave up")
        t.join(30)
        pytest.fail("the run did not return: it ignored its instruction count")
    return box["v"]  # type: ignore[return-value]


def _machine() -> Machine:
    m = Machine(64 << 20)
    m.load(str(ALU), FOREVER)
    return m


def _in_loop(m: Machine) -> None:
    """Run until the CPU is inside alu_loop (a breakpoint there), then remove the breakpoint."""
    loop = m.program.symbols["alu_loop"]
    m.set_breakpoints({loop})
    res = m.run(time_limit=60)
    assert res.reason.startswith("breakpoint at"), res.reason
    m.set_breakpoints(set())


@pytest.mark.parametrize("how", ["time limit", "stop request"])
def test_a_counted_run_after_an_uncounted_one_stops_at_its_count(how):
    m = _machine()
    try:
        _in_loop(m)
        if how == "time limit":
            res = m.run(time_limit=0.3)
        else:  # a request_halt from another thread, as Ctrl-C and the console's stop send it
            threading.Timer(0.3, m.request_halt, args=("stopped by the user",)).start()
            res = m.run()
        assert res.reason in ("time limit reached", "stopped by the user")
        cpu = m.cpus[0]
        r1, r7, before = cpu.gpr(1), cpu.gpr(7), m.instructions
        res = _finishes(lambda: m.run(max_insns=3000), m)
        assert res.reason == "instruction limit reached"
        assert m.instructions - before == 3000 and res.instructions == 3000  # the run's own count
        # 3000 instructions of a 3-instruction loop: exactly 1000 iterations, wherever in the loop it began
        assert r1 - cpu.gpr(1) == 1000 and cpu.gpr(7) - r7 == 1000
        pc = cpu.pc
        _finishes(lambda: m.step(1), m)
        assert cpu.pc != pc and m.instructions - before == 3001
        assert _finishes(lambda: m.run(max_insns=7), m).instructions == 7  # not the machine's total (3008)
    finally:
        m.close()


def test_a_cpu_counts_exactly_after_running_free():
    m = _machine()
    try:
        _in_loop(m)
        cpu = m.cpus[0]
        # a free run (its blocks are translated without the count hook) that meets the stale exit the removed
        # breakpoint left: the one instruction run natively there must not disarm the run's time slice
        assert _finishes(lambda: cpu.run(timeout_us=200_000), m).kind == "limit"
        for n in (1, 2, 3, 7, 1000):
            r1, count = cpu.gpr(1), cpu.insn_count
            ex = _finishes(lambda n=n: cpu.run(count=3 * n), m)
            assert ex.kind == "limit" and cpu.insn_count - count == 3 * n and r1 - cpu.gpr(1) == n
    finally:
        m.close()


def _session() -> Session:
    m = _machine()
    return Session(m, m.program)


@pytest.mark.parametrize("stopped_by", ["continue --time", "stop", "breakpoint"])
def test_the_console_steps_and_counts_after_every_kind_of_stop(stopped_by):
    s = _session()
    m = s.machine
    try:
        if stopped_by == "continue --time":
            out = _finishes(lambda: execute(s, "continue --time 0.3").plain(), m)
            assert "time limit reached" in out
        elif stopped_by == "stop":
            threading.Timer(0.3, s.stop).start()
            out = _finishes(lambda: execute(s, "continue").plain(), m)
            assert "stopped by the user" in out
        else:
            execute(s, "break alu_loop")
            out = _finishes(lambda: execute(s, "continue").plain(), m)
            assert "breakpoint 1 at" in out
            execute(s, "delete")
        out = _finishes(lambda: execute(s, "step").plain(), m)
        assert "stepped 1 instruction" in out
        r1 = s.cpu.gpr(1)
        out = _finishes(lambda: execute(s, "step 30").plain(), m)
        assert "stepped 30 instructions" in out and r1 - s.cpu.gpr(1) == 10
        out = _finishes(lambda: execute(s, "continue --insns 3000").plain(), m)
        assert "instruction limit reached" in out and r1 - s.cpu.gpr(1) == 1010
        if stopped_by == "breakpoint":  # the breakpoint itself still stops a later run
            execute(s, "break alu_loop")
            out = _finishes(lambda: execute(s, "continue").plain(), m)
            assert "breakpoint 2 at" in out and s.cpu.pc == s.symbols["alu_loop"]
    finally:
        m.close()


def test_a_stop_ends_a_long_step_where_it_is_and_the_machine_still_steps():
    s = _session()
    m = s.machine
    try:
        execute(s, "break alu_loop")
        execute(s, "continue")
        execute(s, "delete")
        threading.Timer(0.3, s.stop, args=("interrupted (Ctrl-C)",)).start()
        out = _finishes(lambda: execute(s, "step 1000000000").plain(), m)
        assert "interrupted (Ctrl-C)" in out and "stepped 1000000000" not in out
        out = _finishes(lambda: execute(s, "step 3").plain(), m)
        assert "stepped 3 instructions" in out and "interrupted" not in out
    finally:
        m.close()

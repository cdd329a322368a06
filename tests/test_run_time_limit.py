"""A run's time limit ends the run however early its timer fires: a timer that fires before the run has
reset its halt state (a busy thread beside the run's on a loaded machine) still ends it, with its reason."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.hypervisor.kvm import MIB, Hypervisor
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
ALU = ROOT / "guests" / "images" / "bench_alu.elf"
FOREVER = "n=1000000000000"  # hours of aghi/aghi/brctg: the run ends only by its limit


class _TimerFiringAtOnce:
    """``threading.Timer`` as a thread starved until its time has passed sees it: it fires in ``start``."""

    def __init__(self, interval: float, function: Callable[..., object], args=(), kwargs=None) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs or {}
        self.daemon = True

    def start(self) -> None:
        self.function(*self.args, **self.kwargs)

    def cancel(self) -> None:
        pass


def _ends(run: Callable[[], object], halt: Callable[[str], None]) -> object:
    """``run()`` on a thread; a run that never returns (a lost timer) fails the test instead of hanging."""
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", run()), daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():
        halt("test gave up")
        t.join(30)
        pytest.fail("the run did not end: its time limit was lost")
    return box["v"]


def test_a_machine_run_ends_when_its_timer_fires_before_the_run_starts(monkeypatch):
    m = Machine(64 << 20)
    try:
        m.load(str(ALU), FOREVER)
        monkeypatch.setattr(threading, "Timer", _TimerFiringAtOnce)
        res = _ends(lambda: m.run(time_limit=5), m.request_halt)
        assert res.reason == "time limit reached"
        monkeypatch.undo()
        assert m.run(max_insns=3000).reason == "instruction limit reached"  # the next run is not cut short
    finally:
        m.close()


def test_a_vm_run_ends_when_its_timer_fires_before_the_run_starts(monkeypatch):
    m = Machine(256 * MIB, 1)
    try:
        vm = Hypervisor.on_machine(m).create_vm(64 * MIB)
        vm.load(str(ALU), FOREVER)
        monkeypatch.setattr(threading, "Timer", _TimerFiringAtOnce)
        res = _ends(lambda: vm.run(time_limit=5), vm.request_halt)
        assert res.reason == "time limit reached"
        monkeypatch.undo()
        assert vm.run(max_insns=3000).reason == "instruction limit reached"
    finally:
        m.close()

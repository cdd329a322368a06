"""The time-slice watchdog: one thread that stops CPUs at their deadlines (cheaper than unicorn's timeout),
and ``OwnTimer``, the watchdog armed for a CPU's own clock comparator and CPU timer."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Final

from emulator.hw.arch import CR0_CKC_SC, CR0_CPU_TIMER_SC

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu

_CR0_TIMERS: Final = CR0_CKC_SC | CR0_CPU_TIMER_SC


class _Watchdog:
    """One thread that stops CPUs at their time-slice deadlines.

    unicorn's own ``emu_start`` timeout starts and joins a thread on every call (about 190 us against
    7 us without it), which would make every trap of a guest with an armed timer 25x dearer. Deadlines
    are absolute (monotonic seconds); a fired deadline keeps firing every millisecond until the CPU
    disarms it, so a stop that lands while the CPU is briefly outside unicorn is not lost.

    The thread is woken only for a deadline earlier than the one it sleeps towards: a CPU arms at every
    run (a Linux guest's clock comparator, hundreds of times a second), mostly for a later or the same
    time, and each wake-up was a thread switch (~13% of a Linux boot's samples in ``notify``).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._due: dict[Cpu, float] = {}
        self._thread: threading.Thread | None = None
        #: when the thread wakes by itself (it recomputes the earliest deadline whenever it wakes)
        self._wakes_at = math.inf

    def arm(self, cpu: Cpu, deadline: float) -> None:
        with self._cv:
            self._due[cpu] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="zuv-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:
                self._wakes_at = deadline
                self._cv.notify()

    def disarm(self, cpu: Cpu) -> None:
        with self._cv:
            self._due.pop(cpu, None)

    def _loop(self) -> None:
        with self._cv:
            while True:
                if not self._due:
                    self._wakes_at = math.inf
                    self._cv.wait()
                    continue
                cpu, when = min(self._due.items(), key=lambda kv: kv[1])
                now = time.monotonic()
                if when > now:
                    self._wakes_at = when
                    self._cv.wait(when - now)
                    continue
                cpu.stop_soon()
                self._due[cpu] = now + 0.001


_WATCHDOG: Final = _Watchdog()


class OwnTimer:
    """The watchdog armed for a CPU's own clock comparator and CPU timer during a free run (a base class of
    ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu
        _armed: float
        ckc: int
        cpu_timer: int
        timers_changed: bool

        def cr(self, i: int) -> int:
            """Control register ``i`` (``Cpu``'s)."""

        def tod(self) -> int:
            """The TOD clock now (``Cpu``'s)."""

    def _arm_own_timer(self, deadline: float) -> float:
        """After SCKC/SPT in a free run: arm the watchdog for the earlier of the run's ``deadline`` and the
        clock comparator's or CPU timer's (whichever CR0 opens; the PSW's mask may open later, at an LPSWE
        the CPU does not stop at). Returns the timer's monotonic deadline, 0.0 if none."""
        self.timers_changed = False
        cr0 = self.cr(0)
        if not cr0 & _CR0_TIMERS:
            return 0.0
        due = []
        if cr0 & CR0_CKC_SC:
            due.append(self.ckc)
        if cr0 & CR0_CPU_TIMER_SC:
            due.append(self.tod() + max(self.cpu_timer, 0) + 1)
        wait_us = (min(due) - self.tod()) / 4096
        if wait_us <= 0 or wait_us > 3600e6:
            # due already: the top of the loop delivers it once enabled (every enabling instruction is
            # trapped: STOSM, SSM while a timer subclass is open, LPSW(E), LCTL(G)); a watchdog would only
            # cut every run short meanwhile
            return 0.0
        at = time.monotonic() + wait_us / 1e6
        arm = min(at, deadline) if deadline else at
        _WATCHDOG.arm(self, arm)  # type: ignore[arg-type]
        self._armed = arm
        return at

    def _disarm(self) -> None:
        if self._armed:
            _WATCHDOG.disarm(self)  # type: ignore[arg-type]
            self._armed = 0.0

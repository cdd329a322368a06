"""The time-slice watchdog: one thread that stops CPUs at their deadlines (cheaper than unicorn's timeout)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu


class _Watchdog:
    """One thread that stops CPUs at their time-slice deadlines.

    unicorn's own ``emu_start`` timeout starts and joins a thread on every call (about 190 us against
    7 us without it), which would make every trap of a guest with an armed timer 25x dearer. Deadlines
    are absolute (monotonic seconds); a fired deadline keeps firing every millisecond until the CPU
    disarms it, so a stop that lands while the CPU is briefly outside unicorn is not lost.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._due: dict[Cpu, float] = {}
        self._thread: threading.Thread | None = None

    def arm(self, cpu: Cpu, deadline: float) -> None:
        with self._cv:
            self._due[cpu] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="zuv-watchdog", daemon=True)
                self._thread.start()
            self._cv.notify()

    def disarm(self, cpu: Cpu) -> None:
        with self._cv:
            self._due.pop(cpu, None)

    def _loop(self) -> None:
        with self._cv:
            while True:
                if not self._due:
                    self._cv.wait()
                    continue
                cpu, when = min(self._due.items(), key=lambda kv: kv[1])
                now = time.monotonic()
                if when > now:
                    self._cv.wait(when - now)
                    continue
                cpu.stop_soon()
                self._due[cpu] = now + 0.001


_WATCHDOG: Final = _Watchdog()

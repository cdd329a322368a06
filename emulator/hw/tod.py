"""The machine's TOD clock: real time, or deterministic (advanced by executed instructions) for replay."""

from __future__ import annotations

import threading
import time
from typing import Final

from emulator.errors import HwError
from emulator.hw import seal

__all__ = ["TodClock", "TOD_PER_US", "unix_ns_to_tod"]

#: TOD bit 51 is one microsecond.
TOD_PER_US: Final = 4096
_EPOCH_1900_TO_1970_S: Final = 2208988800
#: The longest a real-time clock's idle wait lasts before the run loop looks again (halts, the time limit).
IDLE_WAIT_S: Final = 0.05
#: Where a deterministic clock starts: 2026-01-01T00:00:00Z.
DETERMINISTIC_START_UNIX_NS: Final = 1767225600 * 10**9


def unix_ns_to_tod(ns: int) -> int:
    """TOD value for a Unix time in nanoseconds (TOD epoch 1900-01-01)."""
    return ((ns // 1000 + _EPOCH_1900_TO_1970_S * 10**6) * TOD_PER_US) & 0xFFFFFFFFFFFFFFFF


@seal.admit
class TodClock:
    """The TOD clock all CPUs of a machine share.

    In real-time mode it follows the host's clock (monotonic, starting at the host's wall time; only SCK
    sets it apart), also while every CPU waits (``idle_until``). In deterministic mode it starts at a fixed
    date and moves only when the machine calls ``advance`` (by executed instructions and skipped wait time),
    so the same run gives the same clock readings.

    The hypervisor holds the clock its hardware CPUs read (the secure SIE engine too), so its state is plain
    integers only, and no method can be replaced on an instance (``__slots__``): before, a host's
    ``clock.now = f`` was called by the secure SIE engine with the engine, the secure guest's hardware CPU
    and the Ultravisor's record of it in the frame above (issue 18's third review).
    """

    __slots__ = ("deterministic", "ns_per_insn", "_base", "_mono0", "_ticks", "_offset")

    def __setattr__(self, name: str, value: object) -> None:
        if type(value) is not int and type(value) is not bool and name in TodClock.__slots__:
            raise HwError(f"the TOD clock's {name} is an integer, not a {type(value).__name__}")
        object.__setattr__(self, name, value)

    def __init__(self, deterministic: bool = False, ns_per_insn: int = 1) -> None:
        self.deterministic = deterministic
        self.ns_per_insn = ns_per_insn
        self._base = unix_ns_to_tod(DETERMINISTIC_START_UNIX_NS if deterministic else time.time_ns())
        self._mono0 = time.monotonic_ns()
        self._ticks = 0  # deterministic: TOD units advanced so far
        self._offset = 0  # SCK

    def now(self) -> int:
        """The current TOD value."""
        if self.deterministic:
            t = self._base + self._ticks
        else:
            t = self._base + (time.monotonic_ns() - self._mono0) * TOD_PER_US // 1000
        return (t + self._offset) & 0xFFFFFFFFFFFFFFFF

    def set(self, value: int) -> None:
        """Set the clock (SCK)."""
        self._offset += value - self.now()

    def advance_insns(self, n: int) -> None:
        """Deterministic mode: account for ``n`` executed instructions."""
        if self.deterministic:
            self._ticks += n * self.ns_per_insn * TOD_PER_US // 1000 or (n > 0)

    def skip_to(self, tod: int) -> None:
        """Move the clock forward to ``tod`` (an idle machine waiting for a timer)."""
        now = self.now()
        if tod > now:
            if self.deterministic:
                self._ticks += tod - now
            else:
                self._offset += tod - now

    def idle_until(self, tod: int, wake: threading.Event) -> None:
        """Every CPU waits, the first for a timer at ``tod``: a deterministic clock moves there at once; a
        real-time one lets host time pass, as a real machine's waiting CPUs do (at most ``IDLE_WAIT_S``, less
        when ``wake`` is set: console input, a halt), so the guest's clock keeps the host's time.

        A real-time clock moved ahead instead made an idle Linux at its shell prompt run through its 250 Hz
        tick as fast as the host could (~1,200 clock-comparator interruptions a second of host time, most
        of a core), and its clock ran four times too fast: ``sleep 8`` ended after two seconds."""
        if self.deterministic:
            self.skip_to(tod)
            return
        us = self.us_until(tod)
        if us > 0 and wake.wait(min(us / 1e6, IDLE_WAIT_S)):
            wake.clear()

    def us_until(self, tod: int) -> int:
        """Microseconds from now until the clock reaches ``tod`` (0 if already past)."""
        return max(0, (tod - self.now()) // TOD_PER_US)

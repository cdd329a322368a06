"""Stopping and holding a CPU's run from other threads: ``stop_soon`` (at an instruction boundary), ``kick``,
``request_halt``, and the Ultravisor's ``hold``/``unhold`` with the run lock (``exclusive``); and what a
counted run needs of unicorn first (``_counting``) and after (``_executed``).

A mixin of ``Cpu``: the state it uses (the run lock and condition, the hold count, unicorn's instruction
budget of the run in progress) is made by ``Cpu.__init__``.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import TYPE_CHECKING, Final

from emulator.hw import exit_checks

if TYPE_CHECKING:
    from unicorn import Uc

#: seconds a hold waits at most for a run that waited for the previous one to enter unicorn once
_OWED_WAIT: Final = 0.002


class RunControl:
    """What other threads do to a CPU's run (``Cpu`` provides the state)."""

    uc: Uc
    _run_counted: bool
    _emu_count: ctypes.c_size_t
    _run_lock: threading.RLock
    _run_cond: threading.Condition
    _holds: int
    _owed: bool
    _waiting: bool
    _halt: bool
    _attn: bool
    _h: ctypes.c_void_p
    _emu_counter: ctypes.c_size_t
    _uncounted_blocks: bool
    _free_checks: bool

    def kick(self) -> None:
        """Make a running ``run`` look at pending interruptions now (thread-safe; it does not return)."""
        self.stop_soon()

    def stop_soon(self) -> None:
        """End the run in unicorn at an instruction boundary (any thread): in a free run at the next block's
        start (its code has no exit checks between instructions, ``exit_checks``), in a counted run at the
        next instruction's start, through its count. unicorn's ``emu_stop`` from another thread lands after
        whatever access the CPU makes next, and the instruction that made it runs again (``exit_checks``).
        The run loop looks at everything before it enters unicorn again (its flag, ``attention``)."""
        self._attn = True
        if self._run_counted:
            self._emu_count.value = 0
        else:
            self.uc.emu_stop()

    def hold(self) -> None:
        """Take the CPU out of its run and keep it out until ``unhold`` (any thread, one holder at a time: the
        Ultravisor's commands take turns): a running CPU is stopped at its next instruction boundary and its
        ``run`` waits there, having made no storage access since (it does not return: the guest goes on
        afterwards). Then storage and the CPU's TLB may be changed from this thread."""
        lock = self._run_lock
        # not in its run: held at once (a run waits for ``unhold``)
        if not self._owed and lock.acquire(False):
            self._holds += 1  # holders take turns (the Ultravisor's lock): no other thread changes the count
            self._attn = True
            return
        if self._owed:  # it waited for the previous hold: let it enter unicorn once first
            until = time.monotonic() + _OWED_WAIT
            while self._owed and time.monotonic() < until:
                time.sleep(0.00002)
        self._holds += 1
        while not lock.acquire(timeout=0.0005):
            self.stop_soon()

    def unhold(self) -> None:
        """End a ``hold``."""
        self._holds -= 1
        if self._waiting:  # the run waits at its top (it checked ``_holds`` with the lock held): wake it
            self._owed = True
            self._run_cond.notify_all()
        self._run_lock.release()

    def _no_holds(self) -> bool:
        return not self._holds

    def exclusive(self) -> threading.RLock:
        """The run lock, as a context: stores made for this CPU outside ``run`` (a SIE engine completing an
        intercepted instruction or injecting an interruption) happen while no ``hold`` is in progress, so no
        Ultravisor command takes the page away between the check and the store. No Ultravisor call may be
        made inside: the Ultravisor's commands hold CPUs."""
        return self._run_lock

    def request_halt(self) -> None:
        """Stop a running ``run`` as soon as possible (thread-safe: debugger, Ctrl-C, limits)."""
        self._halt = True
        self.stop_soon()

    def _counting(self) -> None:
        """Drop the blocks an uncounted run translated, before a counted one.

        unicorn counts instructions with a code hook that it adds when a run has a count, and a block only
        calls the hooks that existed when it was translated: a block from an uncounted run (a ``continue``,
        a time-limited run) never counts, so a counted run that reaches one runs on past its count (a step
        after a stop froze). unicorn itself drops every block when the count hook goes (a counted run
        followed by an uncounted one), so only this direction needs the flush (~30 us, once per switch).
        """
        self._uncounted_blocks = False
        if self._free_checks:  # the counted run's code checks after each access too (its count hook's stop)
            self._free_checks = False
            exit_checks.set_free(self._h.value, False)
        self.uc.ctl_flush_tb()

    def _executed(self, budget: int) -> int:
        """Instructions the last counted run executed (unicorn's counter, at most the budget)."""
        return min(self._emu_counter.value, budget)

"""SET SYSTEM MASK natively while nothing is pending: its exits left out, and put back when something is.

``NativeSsm`` is a part of ``Cpu`` (a base class). Every SSM is an exit (the page scan finds it): its mask
comes from storage, so any one may enable an interruption that is pending, or turn DAT on or off. But while
no interruption is pending that enabling could make deliverable, and none can become pending while unicorn
runs (no clock-comparator or CPU-timer subclass open in CR0; I/O and service signals come only from Python,
and an asynchronous one stops the run), an SSM needs no Python: unicorn performs it right (the byte goes into
the PSW's system mask and the block ends; a TLB fill reads the PSW it left, and unicorn keeps its TLB entries
per translation mode). kvm-unit-tests' ``exittime`` times 20 million SSMs.

* A site goes native after ``_SSM_QUIET_MIN`` SSMs in a row were trapped with the CPU quiet (``_quiet``): its
  exit is dropped, with the blocks that halt at it; the page's later fetch fills leave it out.
* Before any run that finds the CPU not quiet, every native site is an exit again and every translated block
  goes (a block may be mapped anywhere; unicorn's invalidation goes through the current mapping); the next
  site then waits for twice as many quiet SSMs.
* After a run, a changed DAT bit flushes the TLB (Python's caches of translations and decoded instructions
  are by address), and reserved bits (0, 2-4) loaded by a native SSM are a specification exception delivered
  at the end of that run: the one inexact case (QEMU's TCG does not check these bits at all), after which
  SSM stays trapped on that CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.arch import CR0_CKC_SC, CR0_CPU_TIMER_SC, PGM_SPECIFICATION, PSW_MASK_DAT
from emulator.hw.memory import PAGE_SHIFT
from emulator.hw.mmu import GuestIntercept, GuestMapping

if TYPE_CHECKING:
    from unicorn import Uc

    from emulator.hw.interrupts import IoSource

__all__ = ["NativeSsm", "SSM_RESERVED"]

#: SSMs trapped in a row with the CPU quiet before an SSM site runs natively: at first, and at most after
#: pending interruptions made the native sites trap again (it doubles each time)
_SSM_QUIET_MIN: Final = 16
_SSM_QUIET_MAX: Final = 1 << 16
#: the PSW bits an SSM must not set (0, 2-4: a specification exception)
SSM_RESERVED: Final = 0xB8 << 56
_CR0_TIMERS: Final = CR0_CKC_SC | CR0_CPU_TIMER_SC


class NativeSsm:
    """Native SSM sites of one CPU (a base class of ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu and its other bases
        uc: Uc
        ext_pending: dict[str, int]
        emergency_from: set[int]
        io_source: IoSource | None
        _guest: GuestMapping | None
        _exits: set[int]
        _uc_exits: set[int]
        _icache: dict[int, object]
        _page_exits: dict[tuple[int, int], frozenset[int]]

        def cr(self, i: int) -> int:
            """Control register ``i`` (``registers.Registers``)."""

        def translate(
            self, vaddr: int, write: bool = False, fetch: bool = False, *, mark: bool = True
        ) -> int:
            """The host absolute address of ``vaddr``, with every check (``mmu.StorageAccess``)."""

        def _remove_cache(self, begin: int, end: int) -> None: ...

        def _mask_bits(self) -> int: ...

        def write_mask(self, mask: int) -> None:
            """Set the PSW mask without flushing the TLB (``registers.Registers``)."""

        def flush_tlb(self) -> None:
            """Forget every translation decision (``tlb.TlbFill``)."""

        @property
        def pc(self) -> int:
            """The PSW instruction address (``registers.Registers``)."""

        def program_interrupt(
            self, code: int, ilc: int, teid: int | None = None, pc: int | None = None
        ) -> None:
            """Deliver a program interruption (``interrupts.InterruptDelivery``)."""

    def _init_native_ssm(self) -> None:
        #: SSM addresses that run natively (their exits left out) -> the frame of the SSM there
        self._ssm_native: dict[int, int] = {}
        self._ssm_quiet = 0  # SSMs trapped in a row with the CPU quiet
        self._ssm_needed = _SSM_QUIET_MIN  # ... before one goes native
        self._ssm_off = False  # a native SSM loaded reserved bits: SSM stays trapped on this CPU

    def _quiet(self) -> bool:
        """No interruption is pending that enabling the I/O, external or machine-check mask could make
        deliverable, and none can become pending while the CPU runs natively (a clock-comparator or CPU-timer
        subclass open in CR0 counts as one that can). A SIE guest's CPU is never quiet (its interruptions
        are its host's)."""
        src = self.io_source
        return (
            not self.ext_pending
            and not self.emergency_from
            and not self.cr(0) & _CR0_TIMERS
            and (src is None or not (src.pending or src.crw_mcheck))
            and self._guest is None
        )

    def ssm_trapped(self, pc: int) -> None:
        """The SSM at ``pc`` was emulated (not as the target of EXECUTE): count a quiet one, and after
        ``_ssm_needed`` in a row let the site run natively."""
        if self._ssm_off or not self._quiet():
            self._ssm_quiet = 0
            return
        self._ssm_quiet += 1
        if self._ssm_quiet < self._ssm_needed:
            return
        try:
            frame = self.translate(pc, fetch=True, mark=False) >> PAGE_SHIFT
        except (ProgramException, GuestIntercept):
            return
        vpage = pc & ~0xFFF
        if any(k[0] == vpage and k[1] != frame for k in self._page_exits):
            return  # the address is code of another mapping too: its exit stays
        self._ssm_native[pc] = frame
        self._exits.discard(pc)
        if pc in self._uc_exits:
            self._uc_exits.discard(pc)
            self._exit_list.discard(pc, self._uc_exits)
        self._icache.pop(pc, None)
        # the blocks that halt at pc: the zero-length one at pc and the one that falls into it (as
        # ``_native_step`` drops them)
        self._remove_cache(pc - 1 if pc & 0xFFF else pc, pc + 4)

    def _native_ssm_left_out(self, page: frozenset[int], frame: int) -> frozenset[int]:
        """A page's exits without the SSMs of this frame that run natively (a fetch fill's registration)."""
        native = self._ssm_native
        return frozenset(a for a in page if native.get(a) != frame)

    def _native_ssm_code_changed(self, frame: int) -> None:
        """The frame's code changed: its native sites are decided again (they may be other instructions)."""
        if frame in self._ssm_native.values():
            self._ssm_native = {a: f for a, f in self._ssm_native.items() if f != frame}

    def _ssm_trap_again(self) -> None:
        """Something is pending: every native SSM site is an exit again before the next run."""
        sites = self._ssm_native
        self._ssm_native = {}
        self._exits |= sites.keys()
        self._uc_exits |= sites.keys()
        self._exit_list.set(self._uc_exits)
        self.uc.ctl_flush_tb()
        self._ssm_quiet = 0
        self._ssm_needed = min(2 * self._ssm_needed, _SSM_QUIET_MAX)

    def _after_native_ssm(self, before: int) -> None:
        """A run that may have performed native SSMs changed the DAT bit or loaded reserved bits."""
        mask = self._mask_bits()
        if mask & SSM_RESERVED:
            self._ssm_off = True
            self._ssm_trap_again()
            self.write_mask(mask & ~SSM_RESERVED)
            self.flush_tlb()
            self.program_interrupt(PGM_SPECIFICATION, 2, pc=self.pc)
            return
        if (mask ^ before) & PSW_MASK_DAT:
            self.flush_tlb()

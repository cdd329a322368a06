"""A CPU's interruption delivery: the old/new PSW swap at the prefix for program, SVC, restart, external
and I/O interruptions, their priorities and timers, and the check stop when the prefix area is not the
CPU's to use (``access.prefix_check_stop``).

``InterruptDelivery`` is a part of ``Cpu`` (its base class), above the storage access path (``mmu``)
whose lowcore accessors it stores through; the delivery follows ``machine.md`` section 3.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from emulator.hw import access
from emulator.hw.arch import (
    CHECK_STOP,
    CR0_CKC_SC,
    CR0_CPU_TIMER_SC,
    CR0_EMERGENCY_SC,
    CR0_EXTERNAL_CALL_SC,
    CR0_SERVICE_SC,
    CR14_CHANNEL_REPORT_SC,
    LC_EXT_CODE,
    LC_EXT_CPU_ADDR,
    LC_EXT_NEW,
    LC_EXT_OLD,
    LC_EXT_PARAM,
    LC_IO_NEW,
    LC_IO_OLD,
    LC_IO_SID,
    LC_MCESAD,
    LC_MCIC,
    LC_MCK_NEW,
    LC_MCK_OLD,
    LC_PGM_ILC,
    LC_PGM_NEW,
    LC_PGM_OLD,
    LC_RESTART_NEW,
    LC_RESTART_OLD,
    LC_SVC_ILC,
    LC_SVC_NEW,
    LC_SVC_OLD,
    LC_TEID,
    MCIC_CP,
    MCIC_VALID,
    MCIC_VR,
    NULLIFYING,
    PSW_MASK_EXT,
    PSW_MASK_IO,
    PSW_MASK_MCHECK,
    psw_invalid,
)
from emulator.hw.mmu import StorageAccess

__all__ = ["InterruptDelivery", "IoSource"]

_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_PSW: Final = struct.Struct(">QQ")
_ILC_CODE: Final = struct.Struct(">HH")
#: the lowcore fields an interruption stores or loads lie in its first 512 bytes: one frame, one decision
_LOWCORE_FIELDS: Final = 0x200
#: the vector facility's bit in the facility list (a machine check then stores the vector registers)
_VECTOR_FACILITY: Final = 129


class IoSource(Protocol):
    """Where a CPU finds pending I/O interruptions (the channel subsystem): ``pending`` is a cheap flag."""

    pending: bool
    #: a channel-report-pending machine check waits for a CPU enabled for it (PSW bit 13, CR14 bit 35)
    crw_mcheck: bool

    def io_deliverable(self, cr6: int) -> bool:
        """Whether an I/O interruption is pending in a subclass CR6 enables."""

    def take_crw_mcheck(self) -> bool:
        """Take the channel-report-pending machine check: True if one was waiting."""

    def take_io(self, cr6: int) -> tuple[int, int, int] | None:
        """Take the highest-priority I/O interruption CR6 enables: (subsystem id, parameter, word) or None."""


class InterruptDelivery(StorageAccess):
    """Interruption delivery (a base class of ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu
        state: str
        check_stop_reason: str
        ckc: int
        restart_pending: bool
        _restart_pending: bool
        ext_pending: dict[str, int]
        emergency_from: set[int]
        io_source: IoSource | None
        facilities: bytes
        tod_programmable: int
        pgm_observer: Callable[..., None] | None
        _pgm_last: tuple[int, int] | None
        _pgm_repeat: int

        @property
        def psw(self) -> tuple[int, int]:
            """The current PSW as (mask, address) (``registers.Registers``)."""

        @property
        def pc(self) -> int:
            """The PSW instruction address (``registers.Registers``)."""

        @property
        def cpu_timer(self) -> int:
            """The CPU timer, signed 64 bits (``registers.Registers``)."""

        def set_psw(self, mask: int, addr: int) -> None:
            """Load a PSW without validity checks (``registers.Registers``)."""

        def set_pc(self, addr: int) -> None:
            """Set the PSW instruction address (``registers.Registers``)."""

        def tod(self) -> int:
            """This CPU's view of the TOD clock (``registers.Registers``)."""

        def fpr(self, i: int) -> int:
            """Floating-point register ``i`` (``registers.Registers``)."""

        def gprs(self) -> list[int]:
            """All 16 general registers (``registers.Registers``)."""

        def ar(self, i: int) -> int:
            """Access register ``i`` (``registers.Registers``)."""

        def vr(self, i: int) -> bytes:
            """Vector register ``i`` as 16 big-endian bytes (``registers.Registers``)."""

        def fpc(self) -> int:
            """The floating-point-control register (``registers.Registers``)."""

    def _prefix_refused(self) -> bool:
        """True when this CPU may not use its prefix area (one of its two frames is secure storage for it:
        interruptions store into both, a machine check its save areas at 0x1200-0x13FF).

        A secure guest's own mapping decides for it (a prefix page that is not secure is a host event,
        ``GuestIntercept``, raised by the store itself), as do a guest mapping's exceptions.
        """
        mem = self.mem
        if not mem.non_host_frames or self.accessor is not access.HOST:
            return False
        return any(
            access.refused_address(mem, self._abs_to_host(self.prefix + off, True, False), 0x1000) is not None
            for off in (0, 0x1000)
        )

    def _deliverable(self) -> bool:
        """Before an interruption stores anything: False, with the CPU check-stopped, when its prefix area
        is secure storage (``access.prefix_check_stop``: the reason shows no storage byte)."""
        if not self.mem.non_host_frames or not self._prefix_refused():  # (no secure frame: no call)
            return True
        self.state = CHECK_STOP
        self.check_stop_reason = access.prefix_check_stop(self.prefix)
        return False

    def _lowcore_base(self) -> int:
        """Host address of this CPU's lowcore for an interruption's stores and loads (offsets below 0x200):
        one check for all of them, as they lie in one frame (``_real_checked``: the access rules, a SIE
        guest's mapping)."""
        return self._real_checked(0, _LOWCORE_FIELDS, True)

    def swap_psw(self, old_off: int, new_off: int, base: int | None = None) -> None:
        """Store the current PSW at lowcore ``old_off`` and load the one at ``new_off`` (an invalid new PSW
        check-stops the CPU); ``base``: the lowcore's host address when the caller checked it already."""
        if base is None:
            base = self._lowcore_base()
        mask, addr = self._mask(), self.pc  # (the psw property's two reads)
        self.mem.write(base + old_off, _PSW.pack(mask, addr))
        nmask, naddr = _PSW.unpack_from(self._buf, base + new_off)
        self.set_psw(nmask, naddr)
        problem = psw_invalid(nmask, naddr)
        if problem:
            self.state = CHECK_STOP
            self.check_stop_reason = f"new PSW at lowcore {new_off:#x} is invalid ({problem})"
            if self.accessor is access.HOST:  # the host's own lowcore: its bytes are the host's to see
                self.check_stop_reason += f": {nmask:016x} {naddr:016x}"

    def interrupt_with(self, code_off: int, code: bytes, old_off: int, new_off: int) -> None:
        """An interruption whose class and fields the caller decided (the Ultravisor's injection into a
        secure guest): ``code`` stored at lowcore ``code_off`` and the PSW swap, with one check of the
        lowcore (``_lowcore_base``) for both."""
        base = self._lowcore_base()
        self.mem.write(base + code_off, code)
        self.swap_psw(old_off, new_off, base)

    def program_interrupt(self, code: int, ilc: int, teid: int | None = None, pc: int | None = None) -> None:
        """Deliver a program interruption for the instruction at ``pc`` (default: the current PC).

        The old PSW points at the instruction for nullifying codes and after it otherwise.
        """
        if pc is None:
            pc = self.pc
        if self.pgm_observer is not None:
            self.pgm_observer(self, code, teid)
        if self.pgm_intercept is not None and self.pgm_intercept(self, code, ilc, teid, pc):
            return
        key = (pc, code)
        self._pgm_repeat = self._pgm_repeat + 1 if key == self._pgm_last else 0
        self._pgm_last = key
        if self._pgm_repeat >= 64:
            self.state = CHECK_STOP
            self.check_stop_reason = (
                f"program-interruption loop: code {code:#06x} at {pc:#x} over and over"
                " (is the program new PSW at 0x1d0 set up?)"
            )
            return
        if not self._deliverable():
            return
        self.set_pc(pc if code in NULLIFYING else pc + ilc)
        base = self._lowcore_base()
        mem = self.mem
        mem.write(base + LC_PGM_ILC, _ILC_CODE.pack(ilc, code))
        if teid is not None:
            mem.write(base + LC_TEID, _U64.pack(teid))
        self.swap_psw(LC_PGM_OLD, LC_PGM_NEW, base)

    def psw_loaded(self) -> None:
        """The program loaded a valid PSW (LPSW, LPSWE): it got out of its interruption handler, so a
        program interruption at the same place again is the program's own doing (a test taking the same
        exception in a loop), not an interruption loop."""
        self._pgm_repeat = 0
        self._pgm_last = None

    def deliver_svc(self, code: int, ilen: int, pc: int) -> None:
        """Deliver a supervisor-call interruption (old PSW after the SVC)."""
        if not self._deliverable():
            return
        self.set_pc(pc + ilen)
        self._lowcore_write(LC_SVC_ILC, _U16.pack(ilen) + _U16.pack(code))
        self.swap_psw(LC_SVC_OLD, LC_SVC_NEW)

    def deliver_restart(self) -> None:
        """Deliver a restart interruption (SIGP restart)."""
        self.restart_pending = False
        if self._deliverable():
            self.swap_psw(LC_RESTART_OLD, LC_RESTART_NEW)

    def _ext_deliverable(self, cr0: int | None = None) -> tuple[int, int | None, int | None] | None:
        """The highest-priority deliverable external interruption: (code, cpu address, parameter); ``cr0``:
        CR0 when the caller read it already, having found external interruptions enabled."""
        if cr0 is None:
            if not self._mask_bits() & PSW_MASK_EXT:
                return None
            cr0 = self.cr(0)
        if self.emergency_from and cr0 & CR0_EMERGENCY_SC:
            return 0x1201, min(self.emergency_from), None
        if "external_call" in self.ext_pending and cr0 & CR0_EXTERNAL_CALL_SC:
            return 0x1202, self.ext_pending["external_call"], None
        if cr0 & CR0_CKC_SC and self.tod() >= self.ckc:
            return 0x1004, None, None
        if cr0 & CR0_CPU_TIMER_SC and self.cpu_timer < 0:
            return 0x1005, None, None
        if "service" in self.ext_pending and cr0 & CR0_SERVICE_SC:
            return 0x2401, None, self.ext_pending["service"]
        return None

    def deliver_pending(self) -> bool:
        """Deliver the highest-priority pending interruption that is enabled; True if one was."""
        if self._restart_pending:
            self.deliver_restart()
            return True
        if not self._mask_bits() & PSW_MASK_EXT:
            return False
        cr0 = self.cr(0)
        if not (self.ext_pending or self.emergency_from) and not cr0 & (CR0_CKC_SC | CR0_CPU_TIMER_SC):
            return False  # nothing pending and no timer that could be
        ext = self._ext_deliverable(cr0)
        if ext is None:
            return False
        code, cpu_addr, param = ext
        if not self._deliverable():
            return True  # the CPU check-stopped: the interruption stays pending
        base = self._lowcore_base()
        mem = self.mem
        # the fields go in one store (0x80 parameter, 0x84 CPU address, 0x86 code): the bytes an interruption
        # leaves alone are written back as they are
        if code == 0x1201 and cpu_addr is not None:
            self.emergency_from.discard(cpu_addr)
            mem.write(base + LC_EXT_CPU_ADDR, _U16.pack(cpu_addr) + _U16.pack(code))
        elif code == 0x1202 and cpu_addr is not None:
            del self.ext_pending["external_call"]
            mem.write(base + LC_EXT_CPU_ADDR, _U16.pack(cpu_addr) + _U16.pack(code))
        elif code == 0x2401 and param is not None:
            del self.ext_pending["service"]
            kept = mem.read(base + LC_EXT_CPU_ADDR, 2)
            mem.write(base + LC_EXT_PARAM, _U32.pack(param) + kept + _U16.pack(code))
        else:
            mem.write(base + LC_EXT_CODE, _U16.pack(code))
        self.swap_psw(LC_EXT_OLD, LC_EXT_NEW, base)
        return True

    def store_status(self, absolute: int, write: Callable[[int, bytes], None]) -> None:
        """Store the CPU's status in the save-area layout at ``absolute`` (0x1200: SIGP store status at
        absolute 0x1200, a machine check into its own lowcore).

        Offsets (from 0x1200): FPRs +0x00, GRs +0x80, PSW +0x100, prefix +0x118, FPC +0x11C, TOD
        programmable register +0x124, CPU timer +0x128, clock comparator >> 8 +0x130, ARs +0x140, CRs +0x180.
        """
        mask, addr = self.psw
        write(absolute + 0x00, b"".join(_U64.pack(self.fpr(i)) for i in range(16)))
        write(absolute + 0x80, b"".join(_U64.pack(v) for v in self.gprs()))
        write(absolute + 0x100, _U64.pack(mask) + _U64.pack(addr))
        write(absolute + 0x118, struct.pack(">II", self.prefix, self.fpc()))
        write(absolute + 0x124, struct.pack(">I", self.tod_programmable))
        write(absolute + 0x128, _U64.pack(self.cpu_timer & 0xFFFFFFFFFFFFFFFF) + _U64.pack(self.ckc >> 8))
        write(absolute + 0x140, b"".join(struct.pack(">I", self.ar(i)) for i in range(16)))
        write(absolute + 0x180, b"".join(_U64.pack(self.cr(i)) for i in range(16)))

    def mcheck_deliverable(self) -> bool:
        """A channel-report-pending machine check is waiting and this CPU is enabled for it."""
        src = self.io_source
        if src is None or not src.crw_mcheck or not self._mask_bits() & PSW_MASK_MCHECK:
            return False
        return bool(self.cr(14) & CR14_CHANNEL_REPORT_SC)

    def deliver_crw_mcheck(self) -> bool:
        """Deliver the channel-report-pending machine check (repressible): the registers into the lowcore's
        save areas (and the vector registers into the extended save area, if one is designated), the
        interruption code with its validity bits at 0xE8, old/new PSW at 0x160/0x1E0. True if delivered."""
        src = self.io_source
        if not self.mcheck_deliverable() or src is None:
            return False
        if not self._deliverable():
            return True  # the CPU check-stopped: the machine check stays pending
        if not src.take_crw_mcheck():
            return False
        mcic = MCIC_CP | MCIC_VALID
        self.store_status(0x1200, self._lowcore_write)
        if _VECTOR_FACILITY < len(self.facilities) * 8 and self.facilities[_VECTOR_FACILITY // 8] & (
            0x80 >> _VECTOR_FACILITY % 8
        ):
            mcesa = _U64.unpack(self._lowcore_read(LC_MCESAD, 8))[0] & ~0x3FF & 0xFFFFFFFFFFFFFFFF
            host = self._abs_to_host(mcesa, True, False) if mcesa and mcesa + 0x200 <= self.mem.size else None
            # an extended save area in storage this CPU may not store into is not stored (access): the
            # interruption code then says the vector registers are not valid
            if host is not None and access.refused_address(self.mem, host, 0x200, self.accessor) is None:
                self.mem.write(host, b"".join(self.vr(i) for i in range(32)))
                mcic |= MCIC_VR
        self._lowcore_write(LC_MCIC, _U64.pack(mcic))
        self.swap_psw(LC_MCK_OLD, LC_MCK_NEW)
        return True

    def io_deliverable(self) -> bool:
        """An I/O interruption is pending that the PSW (bit 6) and CR6's subclass mask let this CPU take."""
        src = self.io_source
        if src is None or not src.pending or not self._mask_bits() & PSW_MASK_IO:
            return False
        return src.io_deliverable(self.cr(6))

    def deliver_io(self) -> bool:
        """Deliver the highest-priority enabled I/O interruption (subsystem id, parameter and identification
        word at 0xB8-0xC3, old/new PSW at 0x170/0x1F0); True if one was."""
        src = self.io_source
        if src is None or not self._mask_bits() & PSW_MASK_IO:
            return False
        if not src.io_deliverable(self.cr(6)):
            return False
        if not self._deliverable():
            return True  # the CPU check-stopped: the interruption stays pending
        taken = src.take_io(self.cr(6))
        if taken is None:
            return False
        sid, param, ident = taken
        self._lowcore_write(LC_IO_SID, _U32.pack(sid) + _U32.pack(param) + _U32.pack(ident))
        self.swap_psw(LC_IO_OLD, LC_IO_NEW)
        return True

    def next_timer_deadline(self) -> int | None:
        """TOD value at which an enabled clock-comparator or CPU-timer interrupt becomes pending."""
        mask = self._mask_bits()
        if not mask & PSW_MASK_EXT:
            return None
        cr0 = self.cr(0)
        deadlines = []
        if cr0 & CR0_CKC_SC:
            deadlines.append(self.ckc)
        if cr0 & CR0_CPU_TIMER_SC:
            deadlines.append(self.tod() + max(self.cpu_timer, 0) + 1)
        return min(deadlines) if deadlines else None

    def interrupt_possible(self) -> bool:
        """True if any interruption class is enabled in the PSW (so a wait can end)."""
        mask = self._mask_bits()
        return bool(mask & (PSW_MASK_EXT | PSW_MASK_IO | PSW_MASK_MCHECK))

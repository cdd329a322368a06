"""What a CPU's run hands back: the trapped instruction (``Insn``), ``CpuExit`` and ``WatchHit``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.hw.arch import ILC_FOR, PSW_MASK_BA, PSW_MASK_EA

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu


@dataclass
class Insn:
    """An instruction the CPU hands to its owner, decoded far enough to emulate it."""

    cpu: Cpu
    pc: int
    raw: bytes
    name: str
    opcode: int
    #: for the target of EXECUTE / EXECUTE RELATIVE LONG: the EXECUTE's length (the target executes at the
    #: EXECUTE's address with its ILC, and the PSW then points after the EXECUTE), else 0
    ex_ilen: int = 0
    #: the address of an EXECUTE target (relative addressing is relative to it)
    target: int = 0
    #: the CPU-local handler (``insns.HANDLERS``) of an instruction decoded at an exit, resolved once with
    #: its decoding; None: the CPU looks it up (or hands the instruction to its owner)
    handler: Callable[[Any, Insn], Any] | None = None
    #: whether ``handler``'s instruction is privileged (a problem-state program gets PGM 0x02)
    privileged: bool = False
    #: the PSW address after the instruction (of the EXECUTE for an EXECUTE target)
    next_pc: int = field(init=False, repr=False, compare=False)
    #: the base register and displacement ``address`` (D2(B2)) and ``rsy_address`` (a 20-bit D2) add,
    #: decoded once
    _bd: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)
    _rsy: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.next_pc = self.pc + (self.ex_ilen or (2, 4, 4, 6)[self.raw[0] >> 6])

    @property
    def ilen(self) -> int:
        """Instruction length in bytes (of the EXECUTE for an EXECUTE target: its ILC is the EXECUTE's)."""
        return self.ex_ilen or ILC_FOR(self.raw[0])

    @property
    def r1(self) -> int:
        """R1 field (RS, RRE: bits 8-11 or 24-27 depending on format)."""
        if self.raw[0] in (0xB2, 0xB9):
            return self.raw[3] >> 4
        return self.raw[1] >> 4

    @property
    def r2(self) -> int:
        """R2 (RRE) or R3 (RS) field."""
        if self.raw[0] in (0xB2, 0xB9):
            return self.raw[3] & 0xF
        return self.raw[1] & 0xF

    @property
    def r3(self) -> int:
        """R3 field of an RS/RRF instruction."""
        if self.raw[0] == 0xB9:
            return self.raw[2] >> 4
        return self.raw[1] & 0xF

    @property
    def m_fields(self) -> int:
        """Bits 16-23 of an RRF/RRE instruction (the M3/M4 fields, which must be 0 for UVC)."""
        return self.raw[2]

    @property
    def b2d2(self) -> tuple[int, int]:
        """Base register and 12-bit displacement of an S/RS-format second operand."""
        return self.raw[2] >> 4, (self.raw[2] & 0xF) << 8 | self.raw[3]

    def address(self) -> int:
        """The effective second-operand address D2(B2), wrapped to the addressing mode."""
        bd = self._bd
        if bd is None:
            bd = self._bd = self.b2d2
        cpu = self.cpu
        try:
            q = cpu._q  # noqa: SLF001 - cpu.operand_address, inline (every trapped operand comes here)
        except AttributeError:  # (a CPU's handle, as its owner sees it)
            q = None
        if q is None:
            return cpu.operand_address(bd[0], bd[1])
        a = bd[1] + q[bd[0]] if bd[0] else bd[1]
        m = cpu._mask_c  # noqa: SLF001 - the PSW mask as the CPU knows it, or None: the engine's
        if m is None:
            m = q[cpu._qm]  # noqa: SLF001
        if m & PSW_MASK_EA:
            return a & 0xFFFFFFFFFFFFFFFF  # type: ignore[no-any-return]
        return a & (0x7FFFFFFF if m & PSW_MASK_BA else 0xFFFFFF)  # type: ignore[no-any-return]

    def _disp(self) -> int:
        """Bits 20-31 of the instruction, and for a six-byte one bits 32-39 above them (signed 20 bits)."""
        raw = self.raw
        d = (raw[2] & 0xF) << 8 | raw[3]
        if len(raw) == 6:
            d |= raw[4] << 12
            if d & 0x80000:
                d -= 0x100000
        return d

    def rx_address(self) -> int:
        """D2(X2,B2) of an RX instruction, or of an RXY one (six bytes: 20-bit signed displacement)."""
        raw, gpr = self.raw, self.cpu.gpr
        x2, b2 = raw[1] & 0xF, raw[2] >> 4
        return self.cpu.wrap(self._disp() + (gpr(x2) if x2 else 0) + (gpr(b2) if b2 else 0))

    def rsy_address(self) -> int:
        """D2(B2) (or D1(B1)) of an RSY or SIY instruction: base in bits 16-19, 20-bit signed displacement."""
        bd = self._rsy
        if bd is None:
            raw = self.raw
            d = (raw[2] & 0xF) << 8 | raw[3] | raw[4] << 12  # _disp(), inline (six bytes)
            bd = self._rsy = (raw[2] >> 4, d - 0x100000 if d & 0x80000 else d)
        cpu = self.cpu
        try:
            q = cpu._q  # noqa: SLF001 - cpu.operand_address, inline (every trapped operand comes here)
        except AttributeError:  # (a CPU's handle, as its owner sees it)
            q = None
        if q is None:
            return cpu.operand_address(bd[0], bd[1])
        a = bd[1] + q[bd[0]] if bd[0] else bd[1]
        m = cpu._mask_c  # noqa: SLF001 - the PSW mask as the CPU knows it, or None: the engine's
        if m is None:
            m = q[cpu._qm]  # noqa: SLF001
        if m & PSW_MASK_EA:
            return a & 0xFFFFFFFFFFFFFFFF  # type: ignore[no-any-return]
        return a & (0x7FFFFFFF if m & PSW_MASK_BA else 0xFFFFFF)  # type: ignore[no-any-return]

    def finish(self, cc: int | None = None) -> None:
        """Complete the instruction: set the condition code (if given) and step past it."""
        self.cpu.complete(self.next_pc, cc)


@dataclass(slots=True)
class CpuExit:
    """Why ``Cpu.run`` returned.

    kind: ``"insn"`` (an instruction for the owner: ``insn``), ``"wait"`` (enabled wait, nothing
    deliverable), ``"disabled_wait"`` (``code`` = PSW address), ``"stopped"`` (the CPU is stopped),
    ``"limit"`` (the instruction budget or time slice ran out), ``"halt"`` (``request_halt``),
    ``"breakpoint"`` (PC at a breakpoint), ``"check_stop"`` (``reason``: a program-interruption loop,
    an invalid new PSW, an emulator fault), ``"intercept"`` (a SIE-guest condition for the hypervisor:
    ``code`` and ``reason``), ``"watch"`` (a data access to a frame in ``watch_frames``, not yet
    performed: ``code`` = virtual address, ``data`` = host address and write flag), ``"notify"`` (a secure
    guest's instruction that completed but that its host must hear of: ``insn``, its PSW already after it),
    ``"handled"`` (the owner handled ``insn`` through ``owner_insn`` and wants its loop to look).
    """

    kind: str
    insn: Insn | None = None
    code: int = 0
    reason: str = ""
    data: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchHit:
    """A data access to a watched frame, refused in the TLB fill (the debugger's watchpoints)."""

    vaddr: int
    host: int
    write: bool

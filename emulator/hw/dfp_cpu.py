"""One DFP instruction's view of the CPU: its operand registers, rounding method and completion.

The DFP instructions' operands are floating-point registers (a short operand in bits 0-31 of one, a long
one in a whole register, an extended one in a register pair: 0/2, 1/3, 4/6, 5/7, 8/10, 9/11, 12/14, 13/15;
another register number is a specification exception) and general registers. The rounding method of an
instruction with an M field (valgrind's table, which it checked against the hardware): 0 and 2 the FPC's DFP
rounding mode (bits 25-27), 1 to nearest with ties away from 0, 3 round to prepare for shorter precision,
4-7 to nearest even, toward 0, toward +inf, toward -inf, 8-15 the DFP rounding mode ``M - 8``.

``finish`` ends an instruction as chapter 20 says: an enabled invalid operation or division by zero
suppresses it (nothing stored, PGM 7 with DXC 0x80 / 0x40); otherwise the result is stored, the FPC flags
set, the condition code set and the PSW moved past it, and an enabled overflow, underflow or inexact then
gives PGM 7 with its DXC. The DXC goes to the FPC's DXC byte and to real location 144-147.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.arch import LC_DXC, PGM_SPECIFICATION
from emulator.hw.dfp_arith import disposition
from emulator.hw.dfp_format import DRM_ROUNDING, EXTENDED, SHORT, DfpFormat

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.exits import Insn

__all__ = ["PGM_DATA", "Dfp", "value_cc"]

PGM_DATA: Final = 0x07
_M64: Final = (1 << 64) - 1
_M32: Final = 0xFFFFFFFF

# rounding method of an M field (0-7); 8-15 are the DRM values M - 8; None: the FPC's DRM
_M_METHOD: Final[dict[int, int | None]] = {0: None, 1: 4, 2: None, 3: 7, 4: 0, 5: 1, 6: 2, 7: 3}


def value_cc(d: Decimal) -> int:
    """The condition code of a result: 0 zero, 1 less than zero, 2 greater than zero, 3 NaN."""
    if d.is_nan():
        return 3
    if d.is_zero():
        return 0
    return 1 if d.is_signed() else 2


class Dfp:
    """The CPU as one DFP instruction uses it."""

    def __init__(self, cpu: Cpu, insn: Insn) -> None:
        self.cpu = cpu
        self.insn = insn
        self.raw = insn.raw
        self.fpc = cpu.fpc()
        self.masks = self.fpc >> 24

    # -- operands --------------------------------------------------------------------------------------------

    def rounding(self, m: int) -> str:
        """The ``decimal`` rounding mode the M-field value ``m`` selects."""
        drm = m & 7 if m & 8 else _M_METHOD[m]
        return DRM_ROUNDING[self.fpc >> 4 & 7 if drm is None else drm]

    def check_pair(self, *regs: int) -> None:
        """Extended operands: each register must name the first of a pair."""
        for r in regs:
            if r & 2:
                raise ProgramException(PGM_SPECIFICATION, why=f"FPR {r} is not the first of a pair")

    def get(self, fmt: DfpFormat, r: int) -> int:
        """The encoding in FPR ``r`` (an extended one in ``r`` and ``r + 2``)."""
        if fmt is SHORT:
            return self.cpu.fpr(r) >> 32
        if fmt is EXTENDED:
            return self.cpu.fpr(r) << 64 | self.cpu.fpr(r + 2)
        return self.cpu.fpr(r)

    def dec(self, fmt: DfpFormat, r: int) -> Decimal:
        """The value in FPR ``r`` (pair ``r``, ``r + 2`` for the extended format)."""
        return fmt.decode(self.get(fmt, r))

    def put(self, fmt: DfpFormat, r: int, bits: int) -> None:
        """Store an encoding into FPR ``r`` (a short one in bits 0-31, bits 32-63 unchanged)."""
        if fmt is SHORT:
            self.cpu.set_fpr(r, (bits & _M32) << 32 | self.cpu.fpr(r) & _M32)
        elif fmt is EXTENDED:
            self.cpu.set_fpr(r, bits >> 64 & _M64)
            self.cpu.set_fpr(r + 2, bits & _M64)
        else:
            self.cpu.set_fpr(r, bits & _M64)

    def put_value(self, fmt: DfpFormat, r: int, d: Decimal) -> None:
        """Store a value's encoding into FPR ``r`` (``put``)."""
        self.put(fmt, r, fmt.encode(d))

    def gpr(self, r: int) -> int:
        """General register ``r``."""
        return self.cpu.gpr(r)

    def set_gpr(self, r: int, value: int) -> None:
        """Set general register ``r`` (64 bits)."""
        self.cpu.set_gpr(r, value & _M64)

    def set_gpr_low(self, r: int, value: int) -> None:
        """Bits 32-63 of general register ``r`` (bits 0-31 unchanged)."""
        self.cpu.set_gpr(r, self.cpu.gpr(r) & ~_M32 & _M64 | value & _M32)

    def address(self) -> int:
        """D2(X2,B2) of an RXE or RXF instruction (12-bit displacement, index in bits 12-15)."""
        raw = self.raw
        x2, b2 = raw[1] & 0xF, raw[2] >> 4
        d2 = (raw[2] & 0xF) << 8 | raw[3]
        return self.cpu.wrap(d2 + (self.gpr(x2) if x2 else 0) + (self.gpr(b2) if b2 else 0))

    # -- completion ---------------------------------------------------------------------------------------

    def data_exception(self, dxc: int, why: str) -> ProgramException:
        """PGM 7 with ``dxc`` in the FPC and the lowcore."""
        self.cpu.set_fpc(self.cpu.fpc() & ~0xFF00 | dxc << 8)
        self.cpu._lowcore_write(LC_DXC, dxc.to_bytes(4, "big"))  # noqa: SLF001 - the CPU's lowcore
        return ProgramException(PGM_DATA, why=why)

    def finish(
        self,
        exc: int = 0,
        store: Callable[[], None] | None = None,
        cc: int | None = None,
        suppress_inexact: bool = False,
    ) -> None:
        """Complete the instruction with the IEEE exceptions ``exc``: ``store`` its result, set ``cc``."""
        flags, dxc, suppressed = disposition(exc, self.masks, suppress_inexact)
        if suppressed:
            raise self.data_exception(dxc, f"{self.insn.name}: IEEE exception, DXC {dxc:#04x}")
        if store is not None:
            store()
        if flags:
            self.cpu.set_fpc(self.cpu.fpc() | flags << 16)
        if dxc:
            if cc is not None:
                self.cpu.set_cc(cc)
            raise self.data_exception(dxc, f"{self.insn.name}: IEEE exception, DXC {dxc:#04x}")
        self.insn.finish(cc)

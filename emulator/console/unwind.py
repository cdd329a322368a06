"""Call-stack unwinding for bt and finish: DWARF CFI from the program's ELF, else the s390x back chain."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from emulator.console.errors import ConsoleError

if TYPE_CHECKING:
    from emulator.console.session import Session

__all__ = ["Frame", "backtrace", "CfiTable"]

_R14_SLOT: Final = 112  # the s390x ELF ABI register save area: r14 at 112 of the caller's frame
_CFA_BIAS: Final = 160  # s390x CFA = the caller's r15 + 160


@dataclass(frozen=True)
class Frame:
    """One frame: where it executes, its stack pointer, and how it was found."""

    pc: int
    sp: int
    how: str  # "pc", "CFI", "r14" (a leaf: the return address still in r14), "back chain"


class CfiTable:
    """The DWARF call-frame rows of an ELF (.debug_frame, else .eh_frame), by address."""

    def __init__(self, path: str) -> None:
        self._starts: list[int] = []
        self._fdes: list[tuple[int, int, list[dict[str, Any]]]] = []
        try:
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile

            with open(path, "rb") as f:
                elf = ELFFile(f)
                dw = elf.get_dwarf_info(relocate_dwarf_sections=False)
                entries = dw.CFI_entries() if dw.has_CFI() else dw.EH_CFI_entries() if dw.has_EH_CFI() else []
                for e in entries:
                    if "initial_location" not in e.header:
                        continue  # a CIE or a terminator
                    lo = e.header["initial_location"]
                    rows = e.get_decoded().table
                    self._fdes.append((lo, lo + e.header["address_range"], rows))
        except (OSError, ELFError, ValueError, KeyError, AttributeError):
            self._fdes = []
        self._fdes.sort(key=lambda t: t[0])
        self._starts = [lo for lo, _, _ in self._fdes]

    def __bool__(self) -> bool:
        return bool(self._fdes)

    def row(self, pc: int) -> dict[str, Any] | None:
        """The CFI row in force at ``pc`` (None when no FDE covers it)."""
        i = bisect.bisect_right(self._starts, pc) - 1
        if i < 0:
            return None
        lo, hi, rows = self._fdes[i]
        if not lo <= pc < hi:
            return None
        best = None
        for r in rows:
            if r["pc"] <= pc:
                best = r
        return best


def _cfi_step(s: Session, row: dict[str, Any], regs: dict[int, int]) -> tuple[int, dict[int, int]] | None:
    """The caller's (pc, registers) by one CFI row, or None when the row cannot say."""
    from elftools.dwarf.callframe import RegisterRule

    cfa_rule = row["cfa"]
    if cfa_rule.reg is None or cfa_rule.reg not in regs:
        return None
    cfa = (regs[cfa_rule.reg] + cfa_rule.offset) & (1 << 64) - 1
    caller = dict(regs)
    for reg in range(16):
        rule = row.get(reg)
        if rule is None:
            continue
        if rule.type == RegisterRule.OFFSET:
            caller[reg] = s.read_u64(cfa + rule.arg)
        elif rule.type == RegisterRule.REGISTER and rule.arg in regs:
            caller[reg] = regs[rule.arg]
        elif rule.type == RegisterRule.UNDEFINED:
            caller.pop(reg, None)
    caller[15] = cfa - _CFA_BIAS
    if 14 not in caller:
        return None  # the return address is undefined: the outermost frame
    return caller[14], caller


def backtrace(s: Session, limit: int = 64) -> list[Frame]:
    """The selected CPU's frames, innermost first. Each caller is found by the program's DWARF CFI at the
    frame's address when the ELF has it; otherwise by the back chain (a function at its first instruction,
    or with no frame of its own, has its return address in r14). Stops at a zero back chain or return
    address, an unreadable frame, a stack that does not grow toward the caller, or ``limit`` frames."""
    cpu = s.view_cpu()  # the host view: a secure CPU's registers are refused
    regs = {i: cpu.gpr(i) for i in range(16)}
    frames = [Frame(cpu.pc, regs[15], "pc")]
    cfi = s.cfi()
    at_entry = s.symbolize(cpu.pc) in s.symbols
    while len(frames) < limit:
        f = frames[-1]
        pc = f.pc if len(frames) == 1 else f.pc - 2  # a caller's row: inside its call instruction
        row = cfi.row(pc) if cfi else None
        try:
            if row is not None:
                step = _cfi_step(s, row, regs)
                if step is None:
                    break
                ra, regs = step
                how = "CFI"
            elif len(frames) == 1 and at_entry:
                ra, how = regs[14], "r14"
            else:
                chain = s.read_u64(regs[15])
                if chain == 0 or chain <= regs[15]:
                    break
                ra, how = s.read_u64(chain + _R14_SLOT), "back chain"
                regs = {**regs, 14: ra, 15: chain}
        except ConsoleError:
            break
        ra &= (1 << 64) - 1
        if ra == 0 or (len(frames) > 1 and regs[15] <= f.sp and how != "r14"):
            break
        frames.append(Frame(cpu.wrap(ra), regs[15], how))
    return frames

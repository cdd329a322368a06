"""Call-stack unwinding for bt and finish: DWARF CFI from the program's ELF, else the function's prologue
(the register save and stack allocation it made so far), else the s390x back chain."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from emulator.console.disasm import branch_target, disassemble, is_call
from emulator.console.errors import ConsoleError

if TYPE_CHECKING:
    from emulator.console.session import Session

__all__ = ["Frame", "backtrace", "CfiTable"]

_R14_SLOT: Final = 112  # the s390x ELF ABI register save area: r14 at 112 of the caller's frame
_CFA_BIAS: Final = 160  # s390x CFA = the caller's r15 + 160
_PROLOGUE_MAX: Final = 64  # bytes of a function's start read for its prologue
_OPERAND: Final = re.compile(r"^%r(\d+), (?:%r(\d+), )?(-?(?:0x[0-9a-f]+|\d+))(?:\(%r(\d+)\))?$")


@dataclass(frozen=True)
class Frame:
    """One frame: where it executes, its stack pointer, and how it was found."""

    pc: int
    sp: int
    how: str  # "pc", "CFI", "prologue", "r14" (a leaf: the return address still in r14), "back chain"


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


def prologue(s: Session, pc: int) -> tuple[int, dict[int, int]] | None:
    """What the function holding ``pc`` did to the stack before ``pc``, from its prologue as gcc writes it
    for s390x (gdb's prologue analysis, for code without CFI or back chain): (bytes it took off r15, saved
    register -> its slot's offset from r15 at the function's entry). None when the function is not known
    by a symbol, its code cannot be read, or r15 changes in a way this does not follow. The scan ends at
    ``pc`` or at the first jump (calls return); a LMG that restores r15 (an epilogue) ends it with nothing
    taken."""
    name = s.symbolize(pc).split("+", 1)[0]
    start = s.symbols.get(name)
    if start is None or not start <= pc:
        return None
    taken, saved = 0, {}
    if pc == start:
        return taken, saved
    try:
        segs = s.read("virt", start, min(pc - start, _PROLOGUE_MAX))  # as the view may read it
    except ConsoleError:
        return None
    if any(seg.data is None for seg in segs):
        return None  # the view cannot read the code (a secure guest's, for the host)
    code = b"".join(seg.data or b"" for seg in segs)
    for insn in disassemble(code, start):
        if insn.address >= pc:
            break
        if not is_call(insn) and (branch_target(insn) is not None or insn.mnemonic in ("br", "bcr")):
            break  # a jump: what follows in memory may not be on the way to pc (a call returns here)
        mn, m = insn.mnemonic, _OPERAND.match(insn.operands)
        if mn in ("stmg", "lmg") and m is not None and m.group(2) and m.group(4) == "15":
            r1, r3, disp = int(m.group(1)), int(m.group(2)), int(m.group(3), 0)
            if mn == "lmg" and r1 <= 15 <= r3:
                return 0, {}  # an epilogue: r15 and the registers are the caller's again
            for i, reg in enumerate(range(r1, r3 + 1) if mn == "stmg" else ()):
                saved.setdefault(reg, disp + 8 * i + taken)
            continue
        if not insn.operands.startswith("%r15,") or mn.startswith(("st", "c", "tm")):
            continue  # r15 is not written
        if m is not None and m.group(2) is None and (
            mn == "lay" and m.group(4) == "15" or mn in ("aghi", "agfi") and m.group(4) is None
        ):
            taken -= int(m.group(3), 0)
            continue
        return None  # r15 changed in a way not followed
    return taken, saved


def _prologue_step(
    s: Session, pc: int, regs: dict[int, int], first: bool
) -> tuple[int, dict[int, int]] | None:
    """The caller's (pc, registers) by the prologue of the function at ``pc`` (None when it cannot say)."""
    found = prologue(s, pc)
    if found is None:
        return None
    taken, saved = found
    if 14 not in saved and not first:
        return None  # a caller that made a call kept its return address somewhere: not found
    entry = (regs[15] + taken) & (1 << 64) - 1
    caller = dict(regs)
    for reg, off in saved.items():
        caller[reg] = s.read_u64(entry + off)
    caller[15] = entry
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
            elif (step := _prologue_step(s, pc, regs, len(frames) == 1)) is not None:
                ra, regs = step
                how = "prologue"
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

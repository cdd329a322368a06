"""Storage-key and frame-management instructions: SSKE, ISKE, IVSK, RRBE, PFMF, TEST BLOCK and TPROT.

Each follows the Principles of Operation (chapter 10, "Control Instructions"), as Linux's KVM
(``arch/s390/kvm/priv.c``) and QEMU (``target/s390x/tcg/mem_helper.c``) implement them:

* SSKE sets the seven-bit key of a 4 KiB block at a real address. With the enhanced-DAT facility 1 its
  multiple-block control (M3 bit 3) sets the key of every block from the one designated up to the next
  1 MiB boundary; R2 then holds an absolute address and is advanced to that boundary. With the
  conditional-SSKE facility the MR and MC controls (M3 bits 1 and 2) let the key stay as it is when the
  access-control and fetch-protection bits already match (and the reference and change bits too, unless
  masked): condition code 0 when it stayed, 1 when it was set, and the old key in bits 48-55 of R1.
* PFMF sets the keys of, and/or clears, a 4 KiB frame (a real address), a 1 MiB frame or, with EDAT-2, a
  2 GiB frame (both absolute) from the designated block to the frame's end, and then advances R2 past it.

Every 4 KiB block of a multiple-block operation is one unit of operation: when a block is not available
(an addressing exception) the blocks before it stay done and R2 designates the failing block, so the
instruction, executed again, resumes there. Nothing here loops without bound: the largest operation is
one 2 GiB frame, done in slices of storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import access, dat
from emulator.hw.memory import KEY_C, KEY_F, KEY_R, PAGE_SHIFT, PAGE_SIZE
from emulator.hw.sysinfo import FAC_COND_SSKE, FAC_EDAT1, FAC_EDAT2, FAC_NQ_KEY

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, CpuExit, Insn

__all__ = ["HANDLERS"]

Handler = Callable[["Cpu", "Insn"], "CpuExit | None"]
#: opcode key -> (mnemonic, privileged, handler), merged into ``insns.HANDLERS``
HANDLERS: dict[int, tuple[str, bool, Handler]] = {}

PGM_OPERATION: Final = 0x01
PGM_PRIVILEGED: Final = 0x02
PGM_SPECIFICATION: Final = 0x06

# SSKE's M3 field (instruction bits 16-19)
SSKE_NQ: Final = 0x8  # nonquiescing (facility 14)
SSKE_MR: Final = 0x4  # reference-bit update mask (facility 10)
SSKE_MC: Final = 0x2  # change-bit update mask (facility 10)
SSKE_MB: Final = 0x1  # multiple-block control (facility 8)

# PFMF's R1 (bit values of the 64-bit register)
PFMF_RESERVED: Final = 0xFFFC0101  # bits 32-45, 55 and 63
PFMF_SK: Final = 0x20000  # bit 46: set key
PFMF_CF: Final = 0x10000  # bit 47: clear frame
PFMF_UI: Final = 0x8000  # bit 48: usage indication (a hint, no effect here)
PFMF_NQ: Final = 0x800  # bit 52: nonquiescing
PFMF_MR: Final = 0x400  # bit 53
PFMF_MC: Final = 0x200  # bit 54
PFMF_KEY: Final = 0xFE  # bits 56-62

_1M: Final = 1 << 20
_2G: Final = 1 << 31
_M64: Final = 0xFFFFFFFFFFFFFFFF
_KEY_ACCF: Final = 0xF0 | KEY_F
_PSW_MASK_EA: Final = 1 << 32
_PSW_MASK_BA: Final = 1 << 31
_CR0_LAP: Final = 1 << 28  # low-address protection
_SET_RC: Final = bytes(k | KEY_R | KEY_C for k in range(256))  # a key table: reference and change bits on


def _handler(opcode: int, name: str, privileged: bool = True) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[opcode] = (name, privileged, fn)
        return fn

    return deco


def _rre(insn: Insn) -> tuple[int, int]:
    return insn.raw[3] >> 4, insn.raw[3] & 0xF


def _host_frame(cpu: Cpu, absolute: int, write: bool) -> int:
    """The host frame of an absolute address of the CPU's configuration; PGM 0x05 beyond its storage."""
    return cpu._abs_to_host(absolute, write, False) >> PAGE_SHIFT  # noqa: SLF001 - same-layer helper


def _real_frame(cpu: Cpu, reg: int) -> int:
    """The host frame of the 4 KiB block whose real address is in a register (wrapped to the mode)."""
    return _host_frame(cpu, cpu.real_to_abs(cpu.wrap(reg) & ~0xFFF), False)


def _conditional_key(old: int, key: int, mr: bool, mc: bool) -> bool:
    """Conditional SSKE: whether the key must be set, i.e. it differs from ``key`` in the access-control
    and fetch-protection bits, or in the reference or change bit where that bit's mask is zero."""
    mask = _KEY_ACCF | (0 if mr else KEY_R) | (0 if mc else KEY_C)
    return bool((old ^ key) & mask)


def _blocks(cpu: Cpu, start: int, end: int, write: bool) -> tuple[Sequence[int], ProgramException | None]:
    """Host frames of the absolute 4 KiB blocks ``start`` up to ``end``, in order; stops at the first
    block that is not available and returns its exception too (the blocks before it are still done)."""
    if cpu.guest is None:  # the machine's own storage: one range check for the whole run of blocks
        limit = min(end, cpu.mem.size)
        run = range(start >> PAGE_SHIFT, max(limit, start) >> PAGE_SHIFT)
        if limit < end:
            return run, ProgramException(dat.PGM_ADDRESSING, why=f"absolute {limit:#x} is beyond memory")
        return run, None
    frames: list[int] = []
    for a in range(start, end, PAGE_SIZE):
        try:
            frames.append(_host_frame(cpu, a, write))
        except ProgramException as e:
            return frames, e
    return frames, None


def _advance(cpu: Cpu, r2: int, end: int, keep_low: bool) -> None:
    """Put the address of the next block into R2 as SSKE (``keep_low``: bits 52-63 are kept) and PFMF do:
    the whole register in the 64-bit mode, bits 32-63 (wrapped to the mode) otherwise."""
    old = cpu.gpr(r2)
    mask = cpu.psw_mask
    if mask & _PSW_MASK_EA:
        value = (end & ~0xFFF & _M64) | (old & 0xFFF if keep_low else 0)
    else:
        wrapped = end & (0x7FFFFFFF if mask & _PSW_MASK_BA else 0xFFFFFF)
        low = old & 0xFFF if keep_low else 0
        value = (old & ~0xFFFFFFFF & _M64) | (wrapped & ~0xFFF) | low
    cpu.set_gpr(r2, value)


@_handler(0xB22B, "SSKE")
def _sske(cpu: Cpu, insn: Insn) -> None:
    r1, r2 = _rre(insn)
    m3 = insn.raw[2] >> 4
    if not cpu.has_facility(FAC_EDAT1):
        m3 &= ~SSKE_MB
    if not cpu.has_facility(FAC_COND_SSKE):
        m3 &= ~(SSKE_MR | SSKE_MC)
    if not cpu.has_facility(FAC_NQ_KEY):
        m3 &= ~SSKE_NQ  # NQ only relaxes quiescing, which a TLB flush of every CPU provides anyway
    key = cpu.gpr(r1) & 0xFE
    addr = cpu.wrap(cpu.gpr(r2)) & ~0xFFF
    if m3 & SSKE_MB:  # an absolute address, up to the next 1 MiB boundary
        start, end = addr, (addr | (_1M - 1)) + 1
        frames, error = _blocks(cpu, start, end, False)
    else:
        start = cpu.real_to_abs(addr)
        end = start + PAGE_SIZE
        frames, error = [_host_frame(cpu, start, False)], None
    mr, mc = bool(m3 & SSKE_MR), bool(m3 & SSKE_MC)
    conditional = mr or mc
    keys = cpu.mem.keys
    old = 0
    changed: list[int] = []
    for f in frames:
        old = keys[f]
        if not conditional or _conditional_key(old, key, mr, mc):
            keys[f] = key
            changed.append(f)
    if changed:
        cpu.storage_keys_changed(changed)
    if error is not None:  # the blocks before the unavailable one are done: R2 designates it
        if frames:
            _advance(cpu, r2, start + len(frames) * PAGE_SIZE, True)
        raise error
    if m3 & SSKE_MB:
        _advance(cpu, r2, end, True)
    if not conditional:
        insn.finish()
    elif m3 & SSKE_MB:
        insn.finish(3)  # several keys: R1's old-key field and the condition code are unpredictable (KVM: 3)
    else:
        cpu.set_gpr(r1, (cpu.gpr(r1) & ~0xFF00) | (old & 0xFE) << 8)
        insn.finish(1 if changed else 0)


@_handler(0xB229, "ISKE")
def _iske(cpu: Cpu, insn: Insn) -> None:
    r1, r2 = _rre(insn)
    frame = _real_frame(cpu, cpu.gpr(r2))
    cpu.set_gpr(r1, (cpu.gpr(r1) & ~0xFF) | cpu.mem.keys[frame] & 0xFE)
    insn.finish()


@_handler(0xB223, "IVSK")
def _ivsk(cpu: Cpu, insn: Insn) -> None:
    r1, r2 = _rre(insn)
    host = cpu.translate(cpu.gpr(r2), mark=False)  # the key is inspected, the storage not referenced
    cpu.set_gpr(r1, (cpu.gpr(r1) & ~0xFF) | cpu.mem.keys[host >> PAGE_SHIFT] & 0xF8)
    insn.finish()


@_handler(0xB22A, "RRBE")
def _rrbe(cpu: Cpu, insn: Insn) -> None:
    _r1, r2 = _rre(insn)
    frame = _real_frame(cpu, cpu.gpr(r2))
    keys = cpu.mem.keys
    key = keys[frame]
    cc = (2 if key & KEY_R else 0) | (1 if key & KEY_C else 0)
    if key & KEY_R:
        keys[frame] = key & ~KEY_R
        cpu.storage_keys_changed((frame,))  # entries made while it was set must record the next reference
    insn.finish(cc)


@_handler(0xB9AF, "PFMF", privileged=False)
def _pfmf(cpu: Cpu, insn: Insn) -> None:
    if not cpu.has_facility(FAC_EDAT1):  # PFMF comes with EDAT-1; an operation exception comes first
        raise ProgramException(PGM_OPERATION, why="PFMF without the enhanced-DAT facility 1")
    if cpu.problem_state:
        raise ProgramException(PGM_PRIVILEGED, why="PFMF in problem state")
    r1, r2 = _rre(insn)
    g1 = cpu.gpr(r1)
    if g1 & PFMF_RESERVED:
        raise ProgramException(PGM_SPECIFICATION, why=f"PFMF: reserved bits in R1 {g1:#x}")
    if g1 & PFMF_NQ and not cpu.has_facility(FAC_NQ_KEY):
        raise ProgramException(PGM_SPECIFICATION, why="PFMF: nonquiescing without facility 14")
    set_key, clear = bool(g1 & PFMF_SK), bool(g1 & PFMF_CF)
    mr = mc = False
    if set_key and cpu.has_facility(FAC_COND_SSKE):
        mr, mc = bool(g1 & PFMF_MR), bool(g1 & PFMF_MC)
    key = g1 & PFMF_KEY
    fsc = (g1 >> 12) & 7
    addr = cpu.wrap(cpu.gpr(r2)) & ~0xFFF
    if clear and addr & ~0x1FFF == 0 and cpu.cr(0) & _CR0_LAP:
        # low-address protection: clearing stores into the block at 0 or 4096
        raise ProgramException(dat.PGM_PROTECTION, addr | 0x400, why="PFMF: low-address protection")
    if fsc == 0:  # a 4 KiB frame at a real address
        start = cpu.real_to_abs(addr)
        end = start + PAGE_SIZE
    elif fsc == 1:
        start, end = addr, (addr | (_1M - 1)) + 1
    elif fsc == 2 and cpu.has_facility(FAC_EDAT2) and cpu.psw_mask & (_PSW_MASK_EA | _PSW_MASK_BA):
        start, end = addr, (addr | (_2G - 1)) + 1
    else:
        raise ProgramException(PGM_SPECIFICATION, why=f"PFMF: frame-size code {fsc} is not available")
    frames, error = _blocks(cpu, start, end, clear)
    mem = cpu.mem
    runs = _runs(frames)
    if clear:  # a clear is a store into each frame: every one is checked before any is cleared
        teid_start = addr if fsc == 0 else start  # the address the program gave: real, or absolute
        for lo, hi, index in runs:
            access.check(
                mem, lo << PAGE_SHIFT, (hi - lo) << PAGE_SHIFT, True, cpu.accessor,
                teid_start + index * PAGE_SIZE, what="PFMF",
            )  # fmt: skip
        for lo, hi, _index in runs:
            mem.fill(lo << PAGE_SHIFT, (hi - lo) << PAGE_SHIFT)
    keys = mem.keys
    if set_key:
        if mr or mc:
            for f in frames:
                if _conditional_key(keys[f], key, mr, mc):
                    keys[f] = key
        else:
            for lo, hi, _index in runs:
                keys[lo:hi] = bytes([key]) * (hi - lo)
    elif clear:  # clearing stores into every block: its reference and change bits record that
        for lo, hi, _index in runs:
            keys[lo:hi] = keys[lo:hi].translate(_SET_RC)
    if frames:
        cpu.storage_keys_changed(frames)
    if error is not None:
        if fsc and frames:  # the blocks done stay done: R2 designates the failing one
            _advance(cpu, r2, start + len(frames) * PAGE_SIZE, False)
        raise error
    if fsc:
        _advance(cpu, r2, end, False)
    insn.finish()


def _runs(frames: Sequence[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive frame numbers: ``(first, end, index of first in frames)``."""
    if isinstance(frames, range):
        return [(frames.start, frames.stop, 0)] if frames else []
    runs: list[tuple[int, int, int]] = []
    if not frames:
        return runs
    lo = prev = frames[0]
    at = 0
    for i, f in enumerate(frames[1:], 1):
        if f != prev + 1:
            runs.append((lo, prev + 1, at))
            lo, at = f, i
        prev = f
    runs.append((lo, prev + 1, at))
    return runs


@_handler(0xB22C, "TB")
def _tb(cpu: Cpu, insn: Insn) -> None:
    """TEST BLOCK: clear the 4 KiB block at the real address in R2 and report it usable (cc 0).

    Emulated rather than left to unicorn, whose helper stores through the TLB as if the real address were
    virtual. The clear is a store of the CPU's (``access``: PGM 0x3D on secure storage, nothing cleared).
    """
    r2 = insn.raw[3] & 0xF
    real = cpu.wrap(cpu.gpr(r2)) & ~0xFFF
    if real < 0x2000 and cpu.cr(0) & _CR0_LAP:  # low-address protection covers the whole of pages 0 and 1
        raise ProgramException(dat.PGM_PROTECTION, why="TEST BLOCK: low-address protection")
    cpu.write_real(real, bytes(0x1000))
    insn.finish(0)


@_handler(0xE501, "TPROT")
def _tprot(cpu: Cpu, insn: Insn) -> None:
    raw = insn.raw
    b1, d1 = raw[2] >> 4, (raw[2] & 0xF) << 8 | raw[3]
    b2, d2 = raw[4] >> 4, (raw[4] & 0xF) << 8 | raw[5]
    addr = cpu.wrap(d1 + (cpu.gpr(b1) if b1 else 0))
    key = ((d2 + (cpu.gpr(b2) if b2 else 0)) >> 4) & 0xF
    saved = mask = cpu.psw[0]
    psw_key = 0xF << 52
    try:
        cpu.write_mask((mask & ~psw_key) | key << 52)
        try:
            cpu.translate(addr, mark=False)
        except ProgramException as e:
            if e.code in (0x10, 0x11, 0x38, 0x39, 0x3A, 0x3B):
                insn.finish(3)
                return
            if e.code == dat.PGM_PROTECTION:
                insn.finish(2)
                return
            raise
        try:
            cpu.translate(addr, write=True, mark=False)
        except ProgramException as e:
            if e.code == dat.PGM_PROTECTION:
                insn.finish(1)
                return
            raise
        insn.finish(0)
    finally:
        cc = (cpu.psw[0] >> 44) & 3
        cpu.write_mask((saved & ~(3 << 44)) | cc << 44)

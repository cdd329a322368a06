"""MOVE WITH OPTIONAL SPECIFICATIONS (MVCOS), the instruction that names each operand's address space and key.

unicorn's TLB fill is told the page and the access type but not the address space (``cpu``'s design, point
1): it translates by the PSW's address-space control. MVCOS names the space of each operand in general
register 0, so run natively it would translate a user operand through the kernel's tables (Linux's
``copy_to_user`` and ``get_user`` are MVCOS with the user operand in the secondary space while the kernel runs
in the home space). The CPU therefore traps it (its opcode is in the page scan) and it is performed here.

PoP "MOVE WITH OPTIONAL SPECIFICATIONS": general register 0 holds the operand-access controls, OAC1 in bits
32-47 for the first operand and OAC2 in bits 48-63 for the second: an access key (bits 0-3) with its
validity bit K (bit 14), an address-space control (bits 8-9) with its validity bit A (bit 15); an invalid
field takes the PSW's. The true length is in R3; at most 4096 bytes move (CC 3 when more were asked, else
CC 0). Checks: DAT off is a special-operation exception, as is a secondary-space operand while CR0's
secondary-space control is off, or a home-space operand named in the problem state; a key the PSW-key mask
(CR3) does not allow in the problem state is a privileged-operation exception. Each operand's pages are
translated and checked before a byte moves, with that operand's space and key, so an access exception
(whose TEID names that space) leaves both operands unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.arch import PSW_MASK_DAT, PSW_MASK_KEY
from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT

if TYPE_CHECKING:
    from collections.abc import Callable

    from emulator.hw.cpu import Cpu
    from emulator.hw.exits import Insn

__all__ = ["HANDLERS", "MVCOS"]

#: the opcode key of MVCOS (C8x0: the extension in bits 12-15)
MVCOS: Final = 0xC800
PGM_PRIVILEGED: Final = 0x02
PGM_SPECIAL_OPERATION: Final = 0x13
AS_HOME: Final = 3
AS_SECONDARY: Final = 2
_CR0_SECONDARY_SPACE: Final = 1 << 26  # bit 37
_PSW_MASK_EA: Final = 1 << 32
_MAX: Final = 4096


def _oac(cpu: Cpu, oac: int) -> tuple[int, int]:
    """(access key, address-space control) of one operand-access control, the PSW's where not valid."""
    mask = cpu.psw_mask
    key = oac >> 12 & 0xF if oac & 0x2 else (mask & PSW_MASK_KEY) >> 52
    asc = oac >> 6 & 3 if oac & 0x1 else (mask >> 46) & 3
    if cpu.problem_state:
        if oac & 0x1 and asc == AS_HOME:
            raise ProgramException(PGM_SPECIAL_OPERATION, why="MVCOS: the home space in the problem state")
        if oac & 0x2 and not (cpu.cr(3) >> (31 - key)) & 1:
            raise ProgramException(PGM_PRIVILEGED, why=f"MVCOS: key {key} is not in the PSW-key mask")
    if asc == AS_SECONDARY and not cpu.cr(0) & _CR0_SECONDARY_SPACE:
        raise ProgramException(PGM_SPECIAL_OPERATION, why="MVCOS: secondary space with CR0 bit 37 off")
    return key, asc


def _pages(cpu: Cpu, vaddr: int, length: int, write: bool, key: int, asc: int) -> list[tuple[int, int]]:
    """(host address, byte count) of each piece of ``[vaddr, vaddr+length)``, translated in space ``asc``
    with access key ``key`` and checked for a fetch or a store; nothing is marked yet."""
    saved = cpu.psw_mask
    swap = key != (saved & PSW_MASK_KEY) >> 52
    if swap:  # ``translate`` takes the access key from the PSW
        cpu.write_mask(saved & ~PSW_MASK_KEY | key << 52)
    try:
        out = []
        while length:
            n = min(length, 0x1000 - (vaddr & 0xFFF))
            out.append((cpu.translate(vaddr, write=write, asc=asc, mark=False), n))
            vaddr, length = cpu.wrap(vaddr + n), length - n
        return out
    finally:
        if swap:
            cpu.write_mask(saved)


def _mvcos(cpu: Cpu, insn: Insn) -> None:
    if not cpu.psw_mask & PSW_MASK_DAT:
        raise ProgramException(PGM_SPECIAL_OPERATION, why="MVCOS with DAT off")
    raw = insn.raw
    r3 = raw[1] >> 4
    b1, d1 = raw[2] >> 4, (raw[2] & 0xF) << 8 | raw[3]
    b2, d2 = raw[4] >> 4, (raw[4] & 0xF) << 8 | raw[5]
    dst = cpu.wrap(d1 + (cpu.gpr(b1) if b1 else 0))
    src = cpu.wrap(d2 + (cpu.gpr(b2) if b2 else 0))
    r0 = cpu.gpr(0)
    dkey, dasc = _oac(cpu, r0 >> 16 & 0xFFFF)
    skey, sasc = _oac(cpu, r0 & 0xFFFF)
    length = cpu.gpr(r3)
    if not cpu.psw_mask & _PSW_MASK_EA:
        length &= 0xFFFFFFFF
    cc = 3 if length > _MAX else 0
    length = min(length, _MAX)
    if length:
        spieces = _pages(cpu, src, length, False, skey, sasc)
        dpieces = _pages(cpu, dst, length, True, dkey, dasc)
        mem = cpu.mem
        keys = mem.keys
        data = b"".join(mem.read(h, n) for h, n in spieces)
        for h, _n in spieces:
            keys[h >> PAGE_SHIFT] |= KEY_R
        off = 0
        for h, n in dpieces:
            keys[h >> PAGE_SHIFT] |= KEY_R | KEY_C
            mem.write(h, data[off : off + n])
            off += n
    insn.finish(cc)


#: opcode key -> (mnemonic, privileged, handler)
HANDLERS: dict[int, tuple[str, bool, Callable[[Cpu, Insn], None]]] = {MVCOS: ("MVCOS", False, _mvcos)}

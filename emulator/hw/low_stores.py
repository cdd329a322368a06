"""Stores into the pages low-address protection covers, performed in Python instead of a watched step.

Low-address protection guards bytes 0-511 and 4096-4607 of the effective address, so the TLB cannot hold a
store decision for pages 0 and 1 and every store into them is refused at the fill (``mmu.SubPageAccess``).
A Linux kernel stores into its lowcore there (save areas, timers, the return PSW: ~15,000 such stores by the
time it runs ``/init``), each of which cost a watched one-instruction step (``SingleSteps._watched_step``:
a hook, a context, a snapshot of the page, the page's blocks and TLB entries dropped twice, ~0.2-0.4 ms).
The plain store instructions Linux uses are performed here instead, through the CPU's checked virtual
accesses (``StorageAccess.write_virtual``: DAT, key-controlled and low-address protection with their
exceptions, reference and change bits, each page checked before anything is stored); any other
instruction (an EXECUTE target, a store of many operands, a SIE guest's) still takes the watched step.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.exits import Insn
from emulator.hw.traps import _opcode_key

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.mmu import SubPageAccess

__all__ = ["perform", "refused"]

_M32: Final = 0xFFFFFFFF


def _base_disp(cpu: Cpu, raw: bytes, at: int) -> int:
    """D(B) from the halfword at ``raw[at]`` (12-bit displacement)."""
    return cpu.operand_address(raw[at] >> 4, (raw[at] & 0xF) << 8 | raw[at + 1])


def _regs(cpu: Cpu, r1: int, r3: int) -> list[int]:
    """General registers r1 to r3, wrapping from 15 to 0 (STM, STMG)."""
    return [cpu.gpr((r1 + i) & 15) for i in range(((r3 - r1) & 15) + 1)]


def _st(i: Insn) -> None:
    i.cpu.write_virtual(i.rx_address(), struct.pack(">I", i.cpu.gpr(i.r1) & _M32))


def _sth(i: Insn) -> None:
    i.cpu.write_virtual(i.rx_address(), struct.pack(">H", i.cpu.gpr(i.r1) & 0xFFFF))


def _stc(i: Insn) -> None:
    i.cpu.write_virtual(i.rx_address(), bytes([i.cpu.gpr(i.r1) & 0xFF]))


def _stg(i: Insn) -> None:
    i.cpu.write_virtual(i.rx_address(), struct.pack(">Q", i.cpu.gpr(i.r1)))


def _stm(i: Insn) -> None:
    regs = _regs(i.cpu, i.r1, i.r3)
    addr = i.rsy_address() if len(i.raw) == 6 else i.address()
    i.cpu.write_virtual(addr, b"".join(struct.pack(">I", r & _M32) for r in regs))


def _stmg(i: Insn) -> None:
    i.cpu.write_virtual(i.rsy_address(), b"".join(struct.pack(">Q", r) for r in _regs(i.cpu, i.r1, i.r3)))


def _mvc(i: Insn) -> None:
    cpu, raw = i.cpu, i.raw
    n = raw[1] + 1
    dst, src = _base_disp(cpu, raw, 2), _base_disp(cpu, raw, 4)
    data = bytearray(cpu.read_virtual(src, n))
    lag = cpu.wrap(dst - src)
    if 0 < lag < n:  # the operands overlap destructively: one byte at a time, left to right
        for k in range(lag, n):
            data[k] = data[k - lag]
    cpu.write_virtual(dst, bytes(data))


def _mvi(i: Insn) -> None:
    raw = i.raw
    addr = i.rsy_address() if len(raw) == 6 else _base_disp(i.cpu, raw, 2)
    i.cpu.write_virtual(addr, bytes([raw[1]]))


def _mv_imm(size: int) -> Callable[[Insn], None]:
    def move(i: Insn) -> None:  # MVHHI, MVHI, MVGHI: a signed 16-bit immediate, sign-extended
        value = int.from_bytes(i.raw[4:6], "big", signed=True)
        i.cpu.write_virtual(_base_disp(i.cpu, i.raw, 2), value.to_bytes(size, "big", signed=True))

    return move


def _logical_imm(op: Callable[[int, int], int]) -> Callable[[Insn], int]:
    def logical(i: Insn) -> int:  # NI, OI, XI: one byte, read and stored; CC 0 if the result is zero
        addr = _base_disp(i.cpu, i.raw, 2)
        value = op(i.cpu.read_virtual(addr, 1)[0], i.raw[1])
        i.cpu.write_virtual(addr, bytes([value]))
        return 1 if value else 0

    return logical


#: opcode key (``traps._opcode_key``) -> the store; one that returns an int sets that condition code
_STORES: Final[dict[int, Callable[[Insn], int | None]]] = {
    0x50: _st, 0xE350: _st, 0x40: _sth, 0xE370: _sth, 0x42: _stc, 0xE372: _stc, 0xE324: _stg,
    0x90: _stm, 0xEB90: _stm, 0xEB24: _stmg, 0xD2: _mvc, 0x92: _mvi, 0xEB52: _mvi,
    0xE544: _mv_imm(2), 0xE54C: _mv_imm(4), 0xE548: _mv_imm(8),
    0x94: _logical_imm(lambda a, b: a & b), 0x96: _logical_imm(lambda a, b: a | b),
    0x97: _logical_imm(lambda a, b: a ^ b),
}  # fmt: skip


def refused(cpu: Cpu, f: SubPageAccess) -> int:
    """A store refused at the TLB fill for low-address protection's sake: performed here if it is a plain
    store instruction; 1 if it completed, 0 if its program interruption was delivered, -1 if it needs the
    watched step (not one of these, an EXECUTE's target)."""
    if not f.write or f.rule != "low-address protection":
        return -1
    pc = cpu.pc
    raw = cpu._fetch_insn(pc)  # noqa: SLF001 - the CPU's own instruction fetch, as its handlers use
    if raw is None:
        return -1
    try:
        return 1 if perform(cpu, pc, raw, _opcode_key(raw)) else -1
    except ProgramException as e:
        cpu._deliver_fault(e, pc)  # noqa: SLF001
        return 0


def perform(cpu: Cpu, pc: int, raw: bytes, key: int) -> bool:
    """Perform the store instruction ``raw`` at ``pc`` if it is one of the above; True if so (completed, or
    its program exception raised as ``ProgramException`` with nothing stored)."""
    fn = _STORES.get(key)
    if fn is None:
        return False
    insn = Insn(cpu, pc, raw, "store", key)
    cc = fn(insn)
    insn.finish(cc)
    return True

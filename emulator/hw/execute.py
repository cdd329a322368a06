"""EXECUTE targets unicorn gets wrong: the relative-addressing instructions, emulated as the PoP defines them.

unicorn (QEMU 5.0's translator) runs the target of EXECUTE / EXECUTE RELATIVE LONG as if it stood at the
EXECUTE's address, with the EXECUTE's length. That is the architecture for every instruction but those that
address relative to their own address: a relative branch, LARL, and the relative-long loads, stores and
compares take the *target's* address (PoP, "Branch-Address Generation" and "Relative-Long Addressing"), while
the return address of BRAS/BRASL and the next sequential instruction are still those after the EXECUTE.
The CPU (``cpu.Cpu._execute``) decodes the EXECUTE, ORs R1 into the target's second byte and hands the
target here when its opcode is in ``RELATIVE``; trapped targets (DIAG, SSM, ...) go to their own emulation
instead, and every other target runs natively, except the storage-to-storage logical ones in ``STORAGE``
(MVC, XC, NC, OC, CLC): the CPU is already at the EXECUTE's exit, and emulating them here costs less than a
one-instruction native run (Linux's memcpy/memset/memcmp tails and its code patching execute them by the ten
thousand while it boots).

Handlers get the ``Insn`` of the target (``raw`` = its modified text, ``pc``/``ilen`` = the EXECUTE's,
``target`` = the target's address), complete it (``finish`` or a branch) or raise ``ProgramException``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, Insn

__all__ = ["RELATIVE", "STORAGE", "EXECUTE_KEYS", "emulate_relative", "emulate_storage"]

PGM_SPECIFICATION: Final = 0x06
_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF
_PSW_MASK_EA: Final = 1 << 32
_PSW_MASK_BA: Final = 1 << 31

#: Opcode keys (``traps._opcode_key``) of EXECUTE (0x44) and EXECUTE RELATIVE LONG (0xC6, extension 0).
EXECUTE_KEYS: Final = frozenset({0x44, 0xC600})


def _s(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _i16(raw: bytes) -> int:
    """The signed halfword immediate in bytes 2-3 (RI, RSI, RIE)."""
    return _s(raw[2] << 8 | raw[3], 16)


def _i32(raw: bytes) -> int:
    """The signed word immediate in bytes 2-5 (RIL)."""
    return _s(int.from_bytes(raw[2:6], "big"), 32)


def _relative(cpu: Cpu, insn: Insn, halfwords: int) -> int:
    """The target's address plus ``halfwords`` halfwords, wrapped to the addressing mode."""
    return cpu.wrap(insn.target + 2 * halfwords)


def _cc(cpu: Cpu) -> int:
    return (cpu.psw_mask >> 44) & 3


def _branch(cpu: Cpu, insn: Insn, taken: bool, halfwords: int) -> None:
    if taken:
        cpu.set_pc(_relative(cpu, insn, halfwords))
    else:
        insn.finish()


def _put_address(cpu: Cpu, r: int, addr: int) -> None:
    """Place an address in a register as the addressing mode wants: 64 bits, or bits 33-63 (bit 32 zero)
    or 40-63 (bits 32-39 zero) with bits 0-31 unchanged (LARL)."""
    mask = cpu.psw_mask
    if mask & _PSW_MASK_EA:
        cpu.set_gpr(r, addr)
    else:
        cpu.set_gpr(r, cpu.gpr(r) & ~_M32 | addr & (0x7FFFFFFF if mask & _PSW_MASK_BA else 0xFFFFFF))


def _link(cpu: Cpu, r: int, next_addr: int) -> None:
    """BRAS/BRASL's link information: the updated instruction address, with the addressing-mode bit in 31-bit
    mode (bit 32) and bits 0-31 unchanged below 64-bit mode."""
    mask = cpu.psw_mask
    if mask & _PSW_MASK_EA:
        cpu.set_gpr(r, next_addr)
    elif mask & _PSW_MASK_BA:
        cpu.set_gpr(r, cpu.gpr(r) & ~_M32 | 0x80000000 | next_addr & 0x7FFFFFFF)
    else:
        cpu.set_gpr(r, cpu.gpr(r) & ~_M32 | next_addr & 0xFFFFFF)


def _low(cpu: Cpu, r: int, value: int) -> None:
    cpu.set_gpr(r, cpu.gpr(r) & ~_M32 | value & _M32)


def _operand(cpu: Cpu, insn: Insn, size: int) -> int:
    """The relative-long storage operand's address; it must be aligned on its size."""
    addr = _relative(cpu, insn, _i32(insn.raw))
    if addr % size:
        raise ProgramException(PGM_SPECIFICATION, why=f"{insn.name}: operand {addr:#x} not aligned on {size}")
    return addr


def _load(cpu: Cpu, insn: Insn, size: int, signed: bool) -> int:
    v = int.from_bytes(cpu.read_virtual(_operand(cpu, insn, size), size), "big")
    return _s(v, size * 8) if signed else v


def _compare(cpu: Cpu, insn: Insn, first: int, second: int) -> None:
    insn.finish(0 if first == second else 1 if first < second else 2)


# -- the handlers, by kind ------------------------------------------------------------------------------

Handler = Callable[["Cpu", "Insn"], None]


def _brc(cpu: Cpu, insn: Insn) -> None:  # BRC (RI) and BRCL (RIL): mask in the R1 field
    long = insn.raw[0] == 0xC0
    _branch(cpu, insn, bool((insn.raw[1] >> 4) & (8 >> _cc(cpu))), _i32(insn.raw) if long else _i16(insn.raw))


def _bras(cpu: Cpu, insn: Insn) -> None:  # BRAS (RI) and BRASL (RIL)
    long = insn.raw[0] == 0xC0
    _link(cpu, insn.raw[1] >> 4, cpu.wrap(insn.pc + insn.ilen))
    cpu.set_pc(_relative(cpu, insn, _i32(insn.raw) if long else _i16(insn.raw)))


def _brct(bits: int, high: bool = False) -> Handler:  # BRCT, BRCTG, BRCTH
    def run(cpu: Cpu, insn: Insn) -> None:
        r = insn.raw[1] >> 4
        g = cpu.gpr(r)
        if high:
            v = ((g >> 32) - 1) & _M32
            cpu.set_gpr(r, v << 32 | g & _M32)
        elif bits == 32:
            v = (g - 1) & _M32
            _low(cpu, r, v)
        else:
            v = (g - 1) & _M64
            cpu.set_gpr(r, v)
        _branch(cpu, insn, v != 0, _i32(insn.raw) if high else _i16(insn.raw))

    return run


def _brx(bits: int, high: bool) -> Handler:  # BRXH, BRXLE (RSI) and BRXHG, BRXLG (RIE-e)
    def run(cpu: Cpu, insn: Insn) -> None:
        r1, r3 = insn.raw[1] >> 4, insn.raw[1] & 0xF
        incr, limit = _s(cpu.gpr(r3), bits), _s(cpu.gpr(r3 | 1), bits)  # both before R1 changes
        total = _s(_s(cpu.gpr(r1), bits) + incr, bits)
        if bits == 32:
            _low(cpu, r1, total)
        else:
            cpu.set_gpr(r1, total)
        _branch(cpu, insn, total > limit if high else total <= limit, _i16(insn.raw))

    return run


def _cj(bits: int, signed: bool, immediate: bool) -> Handler:  # CRJ CGRJ CLRJ CLGRJ CIJ CGIJ CLIJ CLGIJ
    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        first = cpu.gpr(raw[1] >> 4)
        if immediate:
            mask, second = raw[1] & 0xF, _s(raw[4], 8) if signed else raw[4]
        else:
            mask, second = raw[4] >> 4, cpu.gpr(raw[1] & 0xF)
            second = _s(second, bits) if signed else second & ((1 << bits) - 1)
        first = _s(first, bits) if signed else first & ((1 << bits) - 1)
        cond = 8 if first == second else 4 if first < second else 2
        _branch(cpu, insn, bool(mask & cond), _i16(raw))

    return run


def _larl(cpu: Cpu, insn: Insn) -> None:
    _put_address(cpu, insn.raw[1] >> 4, _relative(cpu, insn, _i32(insn.raw)))
    insn.finish()


def _load_rl(size: int, signed: bool, to64: bool) -> Handler:  # LRL LGRL LGFRL LLGFRL LHRL LGHRL LLHRL LLGHRL
    def run(cpu: Cpu, insn: Insn) -> None:
        v = _load(cpu, insn, size, signed)
        r = insn.raw[1] >> 4
        if to64:
            cpu.set_gpr(r, v)
        else:
            _low(cpu, r, v)
        insn.finish()

    return run


def _store_rl(size: int) -> Handler:  # STRL STGRL STHRL
    def run(cpu: Cpu, insn: Insn) -> None:
        addr = _operand(cpu, insn, size)
        value = cpu.gpr(insn.raw[1] >> 4) & ((1 << (size * 8)) - 1)
        cpu.write_virtual(addr, value.to_bytes(size, "big"))
        insn.finish()

    return run


def _compare_rl(bits: int, size: int, signed: bool) -> Handler:  # CRL CGRL CGFRL CHRL CGHRL, CL...RL
    def run(cpu: Cpu, insn: Insn) -> None:
        second = _load(cpu, insn, size, signed)
        first = cpu.gpr(insn.raw[1] >> 4)
        first = _s(first, bits) if signed else first & ((1 << bits) - 1)
        _compare(cpu, insn, first, second)

    return run


def _nop(cpu: Cpu, insn: Insn) -> None:  # PFDRL, BPRP, BPP: performance hints, no exceptions
    insn.finish()


#: opcode key -> (mnemonic, handler) of every relative-addressing instruction an EXECUTE may target
RELATIVE: Final[dict[int, tuple[str, Handler]]] = {
    0xA704: ("BRC", _brc),
    0xA705: ("BRAS", _bras),
    0xA706: ("BRCT", _brct(32)),
    0xA707: ("BRCTG", _brct(64)),
    0xCC06: ("BRCTH", _brct(32, high=True)),
    0xC004: ("BRCL", _brc),
    0xC005: ("BRASL", _bras),
    0xC000: ("LARL", _larl),
    0x84: ("BRXH", _brx(32, True)),
    0x85: ("BRXLE", _brx(32, False)),
    0xEC44: ("BRXHG", _brx(64, True)),
    0xEC45: ("BRXLG", _brx(64, False)),
    0xEC76: ("CRJ", _cj(32, True, False)),
    0xEC64: ("CGRJ", _cj(64, True, False)),
    0xEC77: ("CLRJ", _cj(32, False, False)),
    0xEC65: ("CLGRJ", _cj(64, False, False)),
    0xEC7E: ("CIJ", _cj(32, True, True)),
    0xEC7C: ("CGIJ", _cj(64, True, True)),
    0xEC7F: ("CLIJ", _cj(32, False, True)),
    0xEC7D: ("CLGIJ", _cj(64, False, True)),
    0xC40D: ("LRL", _load_rl(4, False, False)),
    0xC408: ("LGRL", _load_rl(8, False, True)),
    0xC40C: ("LGFRL", _load_rl(4, True, True)),
    0xC40E: ("LLGFRL", _load_rl(4, False, True)),
    0xC405: ("LHRL", _load_rl(2, True, False)),
    0xC404: ("LGHRL", _load_rl(2, True, True)),
    0xC402: ("LLHRL", _load_rl(2, False, False)),
    0xC406: ("LLGHRL", _load_rl(2, False, True)),
    0xC40F: ("STRL", _store_rl(4)),
    0xC40B: ("STGRL", _store_rl(8)),
    0xC407: ("STHRL", _store_rl(2)),
    0xC60D: ("CRL", _compare_rl(32, 4, True)),
    0xC608: ("CGRL", _compare_rl(64, 8, True)),
    0xC60C: ("CGFRL", _compare_rl(64, 4, True)),
    0xC605: ("CHRL", _compare_rl(32, 2, True)),
    0xC604: ("CGHRL", _compare_rl(64, 2, True)),
    0xC60F: ("CLRL", _compare_rl(32, 4, False)),
    0xC60A: ("CLGRL", _compare_rl(64, 8, False)),
    0xC60E: ("CLGFRL", _compare_rl(64, 4, False)),
    0xC607: ("CLHRL", _compare_rl(32, 2, False)),
    0xC606: ("CLGHRL", _compare_rl(64, 2, False)),
    0xC602: ("PFDRL", _nop),
    0xC5: ("BPRP", _nop),
    0xC7: ("BPP", _nop),
}


def emulate_relative(cpu: Cpu, insn: Insn) -> None:
    """Execute a relative-addressing target of EXECUTE (``insn.opcode`` in ``RELATIVE``)."""
    name, handler = RELATIVE[insn.opcode]
    insn.name = name
    handler(cpu, insn)


def _ss_operands(cpu: Cpu, raw: bytes) -> tuple[int, int, int]:
    """Length and the two operand addresses of an SS-format instruction with one 8-bit length (L+1)."""
    b1, b2 = raw[2] >> 4, raw[4] >> 4
    a1 = cpu.wrap(((raw[2] & 0xF) << 8 | raw[3]) + (cpu.gpr(b1) if b1 else 0))
    a2 = cpu.wrap(((raw[4] & 0xF) << 8 | raw[5]) + (cpu.gpr(b2) if b2 else 0))
    return raw[1] + 1, a1, a2


def _overlap(cpu: Cpu, a1: int, a2: int, n: int) -> bool:
    """Whether the second operand's bytes include one the first operand stores before it is fetched."""
    d = (a1 - a2) & _M64
    return 0 < d < n or (cpu.wrap(a2 + n - 1) < a2 or cpu.wrap(a1 + n - 1) < a1)


def _ss_logical(op: Callable[[int, int], int] | None) -> Callable[[Cpu, Insn], None]:
    """MVC (``op`` None), XC, NC, OC: operand 1 from the bytes of both, left to right one byte at a time (an
    overlap sees the bytes already stored); every page of both operands is checked before anything is stored;
    the logical ones set CC 0 for an all-zero result, else 1."""

    def handler(cpu: Cpu, insn: Insn) -> None:
        n, a1, a2 = _ss_operands(cpu, insn.raw)
        src = cpu.read_virtual(a2, n)
        dst = cpu.read_virtual(a1, n) if op is not None else bytes(n)
        if not _overlap(cpu, a1, a2, n):
            if op is None:
                out = src
            else:
                v = op(int.from_bytes(dst, "big"), int.from_bytes(src, "big"))
                out = v.to_bytes(n, "big")
        else:
            stored: dict[int, int] = {}
            buf = bytearray(n)
            for i in range(n):
                s = stored.get(cpu.wrap(a2 + i), src[i])
                buf[i] = s if op is None else op(stored.get(cpu.wrap(a1 + i), dst[i]), s)
                stored[cpu.wrap(a1 + i)] = buf[i]
            out = bytes(buf)
        cpu.write_virtual(a1, out)
        if op is None:
            insn.finish()
        else:
            insn.finish(1 if any(out) else 0)

    return handler


def _clc(cpu: Cpu, insn: Insn) -> None:
    """COMPARE LOGICAL (character): CC 0 equal, 1 operand 1 low, 2 operand 1 high."""
    n, a1, a2 = _ss_operands(cpu, insn.raw)
    x, y = cpu.read_virtual(a1, n), cpu.read_virtual(a2, n)
    insn.finish(0 if x == y else 1 if x < y else 2)


#: Storage-to-storage targets of EXECUTE emulated at its exit (opcode -> name, handler).
STORAGE: Final[dict[int, tuple[str, Callable[[Cpu, Insn], None]]]] = {
    0xD2: ("MVC", _ss_logical(None)),
    0xD7: ("XC", _ss_logical(lambda x, y: x ^ y)),
    0xD4: ("NC", _ss_logical(lambda x, y: x & y)),
    0xD6: ("OC", _ss_logical(lambda x, y: x | y)),
    0xD5: ("CLC", _clc),
}


def emulate_storage(cpu: Cpu, insn: Insn) -> None:
    """Execute a storage-to-storage target of EXECUTE (``insn.opcode`` in ``STORAGE``)."""
    name, handler = STORAGE[insn.opcode]
    insn.name = name
    handler(cpu, insn)

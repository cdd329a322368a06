"""Signed binary arithmetic that can overflow, emulated while the PSW's fixed-point-overflow mask is on.

unicorn computes these instructions' results and condition codes but never raises the fixed-point-overflow
interruption (PGM 0x0008). While PSW bit 20 is one, the CPU scans code pages for the opcodes in ``OPCODES``
as well and traps them (``Cpu`` switches its scan when the bit changes); the handlers here complete the
instruction as the architecture does (result stored, condition code 3) and then raise the interruption,
which the CPU delivers with the old PSW after the instruction. With the bit zero nothing here runs.

Each handler follows the Principles of Operation (chapter 7) for its instruction: add, subtract, load
positive, load complement, shift left single/double, add immediate to storage, and load and add. The set is
what unicorn implements (AGH/SGH and the multiply-with-overflow forms of miscellaneous-instruction-extensions
2, a facility zuv does not offer, are operation exceptions either way).

The emulation is also architecturally right where unicorn's own condition code is not: unicorn 2.1.4
(QEMU 5.0) misses the overflow of a signed add or subtract whose wrapped result is 0 or whose minuend is 0
with the most negative subtrahend (MIN + MIN, 0 - MIN: CC 0 or 1 instead of 3). With the mask off those
run natively and keep unicorn's condition code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from emulator.errors import ProgramException

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, Insn

__all__ = ["HANDLERS", "OPCODES", "PGM_FIXED_POINT_OVERFLOW", "put_result", "scan_pattern"]

PGM_FIXED_POINT_OVERFLOW = 0x0008

Handler = Callable[["Cpu", "Insn"], None]
#: opcode key (as ``traps._opcode_key`` forms it) -> (mnemonic, not privileged, handler)
HANDLERS: dict[int, tuple[str, bool, Handler]] = {}

_M32, _M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


# -- operands --------------------------------------------------------------------------------------------


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _half(cpu: Cpu, r: int, high: bool) -> int:
    """Bits 32-63 (``high``: bits 0-31) of general register ``r``."""
    v = cpu.gpr(r)
    return v >> 32 if high else v & _M32


def put_result(cpu: Cpu, r: int, value: int, bits: int, high: bool = False) -> None:
    """Store a ``bits``-wide result into general register ``r``: a 32-bit one into bits 32-63 (``high``:
    bits 0-31) and the other half left alone."""
    if bits == 64:
        cpu.set_gpr(r, value & _M64)
    elif high:
        cpu.set_gpr(r, (value & _M32) << 32 | cpu.gpr(r) & _M32)
    else:
        cpu.set_gpr(r, cpu.gpr(r) & ~_M32 | value & _M32)


def _bytes(value: int, size: int) -> bytes:
    return (value & ((1 << (size * 8)) - 1)).to_bytes(size, "big")


def _mem(cpu: Cpu, addr: int, size: int) -> int:
    return _signed(int.from_bytes(cpu.read_virtual(addr, size), "big"), size * 8)


# -- results ---------------------------------------------------------------------------------------------


def _complete(insn: Insn, result: int, overflow: bool, store: Callable[[int], None]) -> None:
    """Store the (signed) result and complete the instruction: CC 0 zero, 1 negative, 2 positive; on an
    overflow CC 3 and then the interruption (the old PSW after the instruction)."""
    store(result)
    if overflow:
        insn.cpu.set_cc(3)
        raise ProgramException(PGM_FIXED_POINT_OVERFLOW, why=f"{insn.name}: overflow")
    insn.finish(0 if result == 0 else 1 if result < 0 else 2)


def _arith(insn: Insn, value: int, bits: int, store: Callable[[int], None]) -> None:
    """Complete with the exact ``value`` wrapped to ``bits``: an overflow when it does not fit."""
    wrapped = _signed(value, bits)
    _complete(insn, wrapped, wrapped != value, store)


# -- add and subtract: first operand register, second operand register, storage or immediate -------------

#: reads the second operand as a signed integer
_ArithSource = Callable[["Insn"], int]


def _src_r2_rr(bits: int) -> _ArithSource:
    return lambda insn: _signed(insn.cpu.gpr(insn.raw[1] & 0xF), bits)


def _src_r2_rre(bits: int) -> _ArithSource:
    return lambda insn: _signed(insn.cpu.gpr(insn.raw[3] & 0xF), bits)


def _src_rx(size: int) -> _ArithSource:
    return lambda insn: _mem(insn.cpu, insn.rx_address(), size)


def _src_i16(insn: Insn) -> int:
    return _signed(insn.raw[2] << 8 | insn.raw[3], 16)


def _src_i32(insn: Insn) -> int:
    return _signed(int.from_bytes(insn.raw[2:6], "big"), 32)


# key: (mnemonic, sign, result bits, source); the first operand is R1 (bits 8-11, or 24-27 for RRE)
_TWO_OPERAND: dict[int, tuple[str, int, int, _ArithSource]] = {
    0x1A: ("AR", 1, 32, _src_r2_rr(32)),
    0x1B: ("SR", -1, 32, _src_r2_rr(32)),
    0x5A: ("A", 1, 32, _src_rx(4)),
    0x5B: ("S", -1, 32, _src_rx(4)),
    0x4A: ("AH", 1, 32, _src_rx(2)),
    0x4B: ("SH", -1, 32, _src_rx(2)),
    0xE35A: ("AY", 1, 32, _src_rx(4)),
    0xE35B: ("SY", -1, 32, _src_rx(4)),
    0xE37A: ("AHY", 1, 32, _src_rx(2)),
    0xE37B: ("SHY", -1, 32, _src_rx(2)),
    0xA70A: ("AHI", 1, 32, _src_i16),
    0xC209: ("AFI", 1, 32, _src_i32),
    0xB908: ("AGR", 1, 64, _src_r2_rre(64)),
    0xB909: ("SGR", -1, 64, _src_r2_rre(64)),
    0xB918: ("AGFR", 1, 64, _src_r2_rre(32)),
    0xB919: ("SGFR", -1, 64, _src_r2_rre(32)),
    0xE308: ("AG", 1, 64, _src_rx(8)),
    0xE309: ("SG", -1, 64, _src_rx(8)),
    0xE318: ("AGF", 1, 64, _src_rx(4)),
    0xE319: ("SGF", -1, 64, _src_rx(4)),
    0xA70B: ("AGHI", 1, 64, _src_i16),
    0xC208: ("AGFI", 1, 64, _src_i32),
}


def _two_operand(key: int) -> Handler:
    _name, sign, bits, source = _TWO_OPERAND[key]

    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1 = raw[3] >> 4 if raw[0] == 0xB9 else raw[1] >> 4
        b = source(insn)
        a = _signed(cpu.gpr(r1), bits)
        _arith(insn, a + sign * b, bits, lambda v: put_result(cpu, r1, v, bits))

    return run


HANDLERS.update({key: (entry[0], False, _two_operand(key)) for key, entry in _TWO_OPERAND.items()})


# distinct operands: R1 = R2 op R3 (RRF-a), R1 = R3 + I2 (RIE-d), and the high-word forms
# key: (mnemonic, sign, bits, R1 half high, R2 half high, R3 half high)
_DISTINCT: dict[int, tuple[str, int, int, bool, bool, bool]] = {
    0xB9F8: ("ARK", 1, 32, False, False, False),
    0xB9F9: ("SRK", -1, 32, False, False, False),
    0xB9E8: ("AGRK", 1, 64, False, False, False),
    0xB9E9: ("SGRK", -1, 64, False, False, False),
    0xB9C8: ("AHHHR", 1, 32, True, True, True),
    0xB9C9: ("SHHHR", -1, 32, True, True, True),
    0xB9D8: ("AHHLR", 1, 32, True, True, False),
    0xB9D9: ("SHHLR", -1, 32, True, True, False),
}


def _distinct(key: int) -> Handler:
    _name, sign, bits, h1, h2, h3 = _DISTINCT[key]

    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1, r2, r3 = raw[3] >> 4, raw[3] & 0xF, raw[2] >> 4
        if bits == 64:
            a, b = _signed(cpu.gpr(r2), 64), _signed(cpu.gpr(r3), 64)
        else:
            a, b = _signed(_half(cpu, r2, h2), 32), _signed(_half(cpu, r3, h3), 32)
        _arith(insn, a + sign * b, bits, lambda v: put_result(cpu, r1, v, bits, h1))

    return run


HANDLERS.update({key: (entry[0], False, _distinct(key)) for key, entry in _DISTINCT.items()})


def _ahik(bits: int) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1, r3 = raw[1] >> 4, raw[1] & 0xF
        a = _signed(cpu.gpr(r3), bits)
        _arith(insn, a + _src_i16(insn), bits, lambda v: put_result(cpu, r1, v, bits))

    return run


HANDLERS[0xECD8] = ("AHIK", False, _ahik(32))
HANDLERS[0xECD9] = ("AGHIK", False, _ahik(64))


def _aih(cpu: Cpu, insn: Insn) -> None:
    r1 = insn.raw[1] >> 4
    a = _signed(_half(cpu, r1, True), 32)
    _arith(insn, a + _src_i32(insn), 32, lambda v: put_result(cpu, r1, v, 32, True))


HANDLERS[0xCC08] = ("AIH", False, _aih)


# -- load positive, load complement ---------------------------------------------------------------------


def _unary(bits: int, negate_always: bool, rre: bool) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1, r2 = (raw[3] >> 4, raw[3] & 0xF) if rre else (raw[1] >> 4, raw[1] & 0xF)
        v = _signed(cpu.gpr(r2), bits)
        _arith(insn, -v if negate_always or v < 0 else v, bits, lambda w: put_result(cpu, r1, w, bits))

    return run


HANDLERS[0x10] = ("LPR", False, _unary(32, False, False))
HANDLERS[0x13] = ("LCR", False, _unary(32, True, False))
HANDLERS[0xB900] = ("LPGR", False, _unary(64, False, True))
HANDLERS[0xB903] = ("LCGR", False, _unary(64, True, True))


# -- shift left single / double (arithmetic) ------------------------------------------------------------


def _shifted(value: int, bits: int, n: int) -> tuple[int, int]:
    """(architected result, exact product): the sign stays, the numeric bits move left, zeros come in;
    an overflow is exactly a product that does not fit."""
    sign = value & (1 << (bits - 1))
    numeric = (value << n) & ((1 << (bits - 1)) - 1)
    return _signed(sign | numeric, bits), _signed(value, bits) << n


def _sla_single(bits: int, rsy: bool) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1 = raw[1] >> 4
        r3 = raw[1] & 0xF if rsy else r1  # SLA shifts R1 in place (its R3 field is ignored)
        n = (insn.rsy_address() if rsy else insn.address()) & 63
        result, exact = _shifted(cpu.gpr(r3) & ((1 << bits) - 1), bits, n)
        _complete(insn, result, result != exact, lambda v: put_result(cpu, r1, v, bits))

    return run


def _slda(cpu: Cpu, insn: Insn) -> None:
    r1 = insn.raw[1] >> 4
    if r1 & 1:
        raise ProgramException(0x06, why="SLDA: R1 must name an even register")
    pair = (cpu.gpr(r1) & _M32) << 32 | cpu.gpr(r1 + 1) & _M32
    result, exact = _shifted(pair, 64, insn.address() & 63)

    def store(v: int) -> None:
        put_result(cpu, r1, (v & _M64) >> 32, 32)
        put_result(cpu, r1 + 1, v, 32)

    _complete(insn, result, result != exact, store)


HANDLERS[0x8B] = ("SLA", False, _sla_single(32, False))
HANDLERS[0xEBDD] = ("SLAK", False, _sla_single(32, True))
HANDLERS[0xEB0B] = ("SLAG", False, _sla_single(64, True))
HANDLERS[0x8F] = ("SLDA", False, _slda)


# -- storage as the first operand: add immediate, load and add --------------------------------------------


def _asi(size: int) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        addr = insn.rsy_address()
        old = _mem(cpu, addr, size)
        bits = size * 8
        value = old + _signed(insn.raw[1], 8)
        _arith(insn, value, bits, lambda v: cpu.write_virtual(addr, _bytes(v, size)))

    return run


def _laa(size: int) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        raw = insn.raw
        r1, r3 = raw[1] >> 4, raw[1] & 0xF
        bits = size * 8
        addr = insn.rsy_address()
        if addr % size:
            raise ProgramException(0x06, why=f"{insn.name}: operand {addr:#x} is not aligned on {size} bytes")
        old = _mem(cpu, addr, size)
        value = old + _signed(cpu.gpr(r3), bits)

        def store(v: int) -> None:
            cpu.write_virtual(addr, _bytes(v, size))
            put_result(cpu, r1, old, bits)  # R1 gets the storage operand as it was

        _arith(insn, value, bits, store)

    return run


HANDLERS[0xEB6A] = ("ASI", False, _asi(4))
HANDLERS[0xEB7A] = ("AGSI", False, _asi(8))
HANDLERS[0xEBF8] = ("LAA", False, _laa(4))
HANDLERS[0xEBE8] = ("LAAG", False, _laa(8))

#: every opcode key handled here
OPCODES: frozenset[int] = frozenset(HANDLERS)


def scan_pattern() -> bytes:
    """Regular-expression alternatives (bytes) matching the first bytes of every instruction in
    ``OPCODES``, for the CPU's page scan (the position is the instruction's address)."""
    one = sorted(k for k in OPCODES if k < 0x100)
    by_group: dict[int, list[int]] = {}
    for k in OPCODES:
        if k >= 0x100:
            by_group.setdefault(k >> 8, []).append(k & 0xFF)

    def cls(values: list[int]) -> bytes:
        return b"[" + b"".join(b"\\x%02x" % v for v in sorted(values)) + b"]"

    alts = [cls(one)]
    for hi, los in sorted(by_group.items()):
        if hi in (0xA7, 0xC2, 0xCC):  # the opcode's extension is bits 12-15: any R1
            alts.append(b"\\x%02x" % hi + cls([r << 4 | lo for lo in los for r in range(16)]))
        elif hi in (0xE3, 0xEB, 0xEC):  # the extension is the last byte of 6
            alts.append(b"\\x%02x...." % hi + cls(los))
        else:  # 0xB9: the second byte
            alts.append(b"\\x%02x" % hi + cls(los))
    return b"|".join(alts)

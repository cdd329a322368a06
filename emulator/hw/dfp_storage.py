"""The DFP zoned-conversion (facility 48) and packed-conversion (facility 80) instructions, emulated.

Each moves a DFP register's coefficient to or from a decimal field in storage (RSL-b format: the field is
L2 + 1 bytes at D2(B2); R1 the DFP register; M3 the controls):

- CONVERT FROM ZONED (CDZT, CXZT; at most 16 / 34 bytes): one digit a byte (its right nibble, 0-9), the
  zones ignored; with M3 bit 0 (sign control) the rightmost byte's zone is the sign (A, C, E, F plus, B, D
  minus). The result has the value of the digits and exponent 0.
- CONVERT FROM PACKED (CDPT, CXPT; at most 9 / 18 bytes): two digits a byte; with M3 bit 0 the rightmost
  nibble is the sign, not checked with M3 bit 3 (ignore sign: the result is positive). Digits beyond the
  format's precision (the leftmost of a 9- or 18-byte field) must be zero.
- CONVERT TO ZONED / TO PACKED (CZDT, CZXT, CPDT, CPXT): the rightmost digits of the coefficient (an
  infinity's or NaN's: its continuation digits), zero-padded on the left; zones F (0x3 with CZxT's M3 bit 1,
  ASCII); with M3 bit 0 a sign in the rightmost zone or nibble: D minus, C plus (F with M3 bit 2), a
  negative zero plus with M3 bit 3. Condition code 0 zero, 1 negative, 2 positive, 3 infinity or NaN or a
  nonzero digit that did not fit.

A length above the maximum is a specification exception; an invalid digit or sign a data exception with
DXC 0 (the DFP register is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from emulator.errors import ProgramException
from emulator.hw.arch import PGM_SPECIFICATION
from emulator.hw.dfp_cpu import Dfp
from emulator.hw.dfp_format import EXTENDED, FINITE, LONG, DfpFormat, Fields

__all__ = ["HANDLERS"]

Handler = Callable[[Dfp], None]
HANDLERS: dict[int, tuple[str, Handler]] = {}

_DXC_DECIMAL: Final = 0x00
_PLUS: Final = frozenset((0xA, 0xC, 0xE, 0xF))
_MINUS: Final = frozenset((0xB, 0xD))


def _operand(d: Dfp, fmt: DfpFormat, limit: int) -> tuple[int, int, int, int]:
    """R1, M3, the field's address and length of an RSL-b instruction."""
    raw = d.raw
    r1, m3 = raw[4] >> 4, raw[4] & 0xF
    if fmt is EXTENDED:
        d.check_pair(r1)
    length = raw[1] + 1
    if length > limit:
        raise ProgramException(PGM_SPECIFICATION, why=f"{d.insn.name}: a field of {length} bytes")
    b2, d2 = raw[2] >> 4, (raw[2] & 0xF) << 8 | raw[3]
    return r1, m3, d.cpu.operand_address(b2, d2), length


def _bad(d: Dfp, field: bytes) -> ProgramException:
    return d.data_exception(_DXC_DECIMAL, f"{d.insn.name}: invalid decimal field {field.hex()}")


def _load(d: Dfp, fmt: DfpFormat, r1: int, sign: int, digits: list[int]) -> None:
    coef = int("".join(map(str, digits)) or "0")
    out = fmt.compose(Fields(sign, FINITE, fmt.bias, coef))
    d.finish(0, lambda: d.put(fmt, r1, out))


def _from_zoned(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, m3, addr, length = _operand(d, fmt, fmt.digits)
        field = d.cpu.read_virtual(addr, length)
        digits = [b & 0xF for b in field]
        sign = 0
        if m3 & 8:
            zone = field[-1] >> 4
            if zone not in _PLUS and zone not in _MINUS:
                raise _bad(d, field)
            sign = int(zone in _MINUS)
        if any(x > 9 for x in digits):
            raise _bad(d, field)
        _load(d, fmt, r1, sign, digits)

    return run


def _from_packed(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, m3, addr, length = _operand(d, fmt, (fmt.digits + 2) // 2)
        field = d.cpu.read_virtual(addr, length)
        nibbles = [n for b in field for n in (b >> 4, b & 0xF)]
        sign = 0
        if m3 & 8:
            code = nibbles.pop()
            if not m3 & 1:
                if code not in _PLUS and code not in _MINUS:
                    raise _bad(d, field)
                sign = int(code in _MINUS)
        if any(x > 9 for x in nibbles) or any(nibbles[: max(0, len(nibbles) - fmt.digits)]):
            raise _bad(d, field)
        _load(d, fmt, r1, sign, nibbles)

    return run


def _digits_out(d: Dfp, fmt: DfpFormat, r1: int, m3: int, count: int) -> tuple[list[int], int, int]:
    """The rightmost ``count`` coefficient digits of the DFP operand, its sign code (with M3's
    controls) and the condition code."""
    f = fmt.fields(d.get(fmt, r1))
    coef = f.coef if f.kind == FINITE else f.coef % 10 ** (3 * fmt.declets)
    text = str(coef)
    lost = len(text) > count and coef != 0
    digits = [int(c) for c in text[-count:].rjust(count, "0")]
    if f.kind != FINITE or lost:
        cc = 3
    else:
        cc = 0 if coef == 0 else 1 if f.sign else 2
    negative = bool(f.sign) and not (m3 & 1 and f.kind == FINITE and coef == 0)
    code = 0xD if negative else 0xF if m3 & 2 else 0xC
    return digits, code, cc


def _to_zoned(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, m3, addr, length = _operand(d, fmt, fmt.digits)
        digits, code, cc = _digits_out(d, fmt, r1, m3, length)
        zone = 0x30 if m3 & 4 else 0xF0
        field = bytearray(zone | x for x in digits)
        if m3 & 8:
            field[-1] = code << 4 | digits[-1]
        d.cpu.write_virtual(addr, bytes(field))
        d.finish(0, None, cc)

    return run


def _to_packed(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, m3, addr, length = _operand(d, fmt, (fmt.digits + 2) // 2)
        signed = bool(m3 & 8)
        digits, code, cc = _digits_out(d, fmt, r1, m3, 2 * length - int(signed))
        nibbles = digits + ([code] if signed else [])
        field = bytes(nibbles[k] << 4 | nibbles[k + 1] for k in range(0, len(nibbles), 2))
        d.cpu.write_virtual(addr, field)
        d.finish(0, None, cc)

    return run


HANDLERS[0xEDAA] = ("CDZT", _from_zoned(LONG))
HANDLERS[0xEDAB] = ("CXZT", _from_zoned(EXTENDED))
HANDLERS[0xEDA8] = ("CZDT", _to_zoned(LONG))
HANDLERS[0xEDA9] = ("CZXT", _to_zoned(EXTENDED))
HANDLERS[0xEDAE] = ("CDPT", _from_packed(LONG))
HANDLERS[0xEDAF] = ("CXPT", _from_packed(EXTENDED))
HANDLERS[0xEDAC] = ("CPDT", _to_packed(LONG))
HANDLERS[0xEDAD] = ("CPXT", _to_packed(EXTENDED))

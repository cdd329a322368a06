"""The DFP conversions (facility 42, with facility 37's 32-bit and logical ones) and exponent instructions.

- CONVERT FROM FIXED / FROM LOGICAL (CDGTR(A), CXGTR, CDFTR, CXFTR, CDLGTR, CXLGTR, CDLFTR, CXLFTR): the
  binary integer in general register R2 (64 or 32 bits), exponent 0, rounded with M3 where it has more
  digits than the format (a 64-bit integer into long);
- CONVERT TO FIXED / TO LOGICAL (CGDTR(A), CGXTR, CFDTR, CFXTR, CLGDTR, CLGXTR, CLFDTR, CLFXTR): rounded
  to an integer with M3; a NaN or a value out of range is invalid (cc 3; the result the largest negative
  number for a NaN, else the limit on the operand's side; 0 for the logical ones); M4 bit 1 suppresses
  inexact; cc 0 zero, 1 negative, 2 positive;
- CONVERT FROM / TO SIGNED PACKED (CDSTR, CXSTR, CSDTR, CSXTR: 15 or 31 digits and a sign in a general
  register or an even/odd pair; plus C, minus D, F for plus when CSxTR's M4 bit 3 is one; an invalid digit or
  sign is a data exception, DXC 0) and FROM / TO UNSIGNED PACKED (CDUTR, CXUTR, CUDTR, CUXTR: 16 or 32
  digits); the DFP operand's coefficient only (its continuation digits for an infinity or NaN);
- EXTRACT BIASED EXPONENT, EXTRACT SIGNIFICANCE (-1 infinity, -2 quiet NaN, -3 signaling NaN; the number
  of significant digits, 0 for a zero), INSERT BIASED EXPONENT (-1 infinity, -3 signaling NaN, -2 and any
  other value out of range a quiet NaN; the coefficient of the third operand).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_DOWN, Context, Decimal, Inexact
from typing import Final

from emulator.errors import ProgramException
from emulator.hw.arch import PGM_SPECIFICATION
from emulator.hw.dfp_arith import INCREMENTED, INEXACT, INVALID, compute
from emulator.hw.dfp_cpu import Dfp
from emulator.hw.dfp_format import EXTENDED, FINITE, INF, LONG, QNAN, SNAN, DfpFormat, Fields

__all__ = ["HANDLERS", "to_integer"]

Handler = Callable[[Dfp], None]
HANDLERS: dict[int, tuple[str, Handler]] = {}

_DXC_DECIMAL: Final = 0x00


def _rrf(raw: bytes) -> tuple[int, int, int, int]:
    return raw[3] >> 4, raw[3] & 0xF, raw[2] >> 4, raw[2] & 0xF


def _even(r: int) -> None:
    if r & 1:
        raise ProgramException(PGM_SPECIFICATION, why=f"general register {r} is not even")


# -- binary integers -----------------------------------------------------------------------------------------


def _from_int(fmt: DfpFormat, width: int, signed: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, m3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1)
        n = d.gpr(r2) & ((1 << width) - 1)
        if signed and n >> (width - 1):
            n -= 1 << width
        v = Decimal(n)
        res = compute(fmt, d.rounding(m3), lambda ctx: ctx.plus(v), d.masks)
        d.finish(res.exc, lambda: d.put_value(fmt, r1, res.value), suppress_inexact=bool(m4 & 4))

    return run


def to_integer(v: Decimal, rounding: str, width: int, signed: bool) -> tuple[int, int]:
    """``v`` rounded to a binary integer of ``width`` bits: (value, exceptions)."""
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if v.is_nan():
        return (lo if signed else 0), INVALID
    if v.is_infinite():
        return (lo if v.is_signed() else hi), INVALID
    ctx = Context(prec=7000, rounding=rounding, Emax=999999999, Emin=-999999999, traps=[])
    n = int(ctx.to_integral_exact(v))
    if n < lo or n > hi:
        return (lo if n < lo else hi), INVALID
    if not ctx.flags[Inexact]:
        return n, 0
    down = int(v.to_integral_value(rounding=ROUND_DOWN))
    return n, INEXACT | (INCREMENTED if n != down else 0)


def _to_int(fmt: DfpFormat, width: int, signed: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, m3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r2)
        v = d.dec(fmt, r2)
        n, exc = to_integer(v, d.rounding(m3), width, signed)
        cc = 3 if exc & INVALID else 0 if v.is_zero() else 1 if v.is_signed() else 2

        def store() -> None:
            if width == 64:
                d.set_gpr(r1, n)
            else:
                d.set_gpr_low(r1, n)

        d.finish(exc, store, cc, suppress_inexact=bool(m4 & 4))

    return run


for _lf, _xf in (("D", LONG), ("X", EXTENDED)):
    _off = 8 if _xf is EXTENDED else 0
    HANDLERS[0xB3F1 | _off] = (f"C{_lf}GTR", _from_int(_xf, 64, True))
    HANDLERS[0xB951 | _off] = (f"C{_lf}FTR", _from_int(_xf, 32, True))
    HANDLERS[0xB952 | _off] = (f"C{_lf}LGTR", _from_int(_xf, 64, False))
    HANDLERS[0xB953 | _off] = (f"C{_lf}LFTR", _from_int(_xf, 32, False))
    HANDLERS[0xB3E1 | _off] = (f"CG{_lf}TR", _to_int(_xf, 64, True))
    HANDLERS[0xB941 | _off] = (f"CF{_lf}TR", _to_int(_xf, 32, True))
    HANDLERS[0xB942 | _off] = (f"CLG{_lf}TR", _to_int(_xf, 64, False))
    HANDLERS[0xB943 | _off] = (f"CLF{_lf}TR", _to_int(_xf, 32, False))


# -- packed decimal ------------------------------------------------------------------------------------------


def _nibbles(value: int, count: int) -> list[int]:
    return [value >> (4 * (count - 1 - k)) & 0xF for k in range(count)]


def _coefficient(fmt: DfpFormat, bits: int) -> tuple[int, int]:
    """(sign, coefficient) of a DFP operand for the packed conversions: an infinity's or NaN's coefficient
    is its continuation digits."""
    f = fmt.fields(bits)
    return f.sign, f.coef


def _packed_in(d: Dfp, fmt: DfpFormat, r1: int, value: int, ndigits: int, signed: bool) -> None:
    nib = _nibbles(value, ndigits + (1 if signed else 0))
    digits, sign_code = (nib[:-1], nib[-1]) if signed else (nib, 0xC)
    if any(x > 9 for x in digits) or sign_code < 0xA:
        raise d.data_exception(_DXC_DECIMAL, f"{d.insn.name}: invalid packed decimal {value:#x}")
    coef = int("".join(map(str, digits)) or "0")
    sign = 1 if sign_code in (0xB, 0xD) else 0
    out = fmt.compose(Fields(sign, FINITE, fmt.bias, coef))
    d.finish(0, lambda: d.put(fmt, r1, out))


def _from_packed(fmt: DfpFormat, signed: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1)
            _even(r2)
            value = d.gpr(r2) << 64 | d.gpr(r2 + 1)
            _packed_in(d, fmt, r1, value, 31 if signed else 32, signed)
        else:
            _packed_in(d, fmt, r1, d.gpr(r2), 15 if signed else 16, signed)

    return run


def _to_packed(fmt: DfpFormat, signed: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, m4 = _rrf(d.raw)
        wide = fmt is EXTENDED
        if wide:
            d.check_pair(r2)
            _even(r1)
        sign, coef = _coefficient(fmt, d.get(fmt, r2))
        ndigits = (31 if signed else 32) if wide else (15 if signed else 16)
        text = str(coef % 10**ndigits).rjust(ndigits, "0")
        value = int(text, 16)
        if signed:
            value = value << 4 | (0xD if sign else 0xF if m4 & 1 else 0xC)

        def store() -> None:
            if wide:
                d.set_gpr(r1, value >> 64)
                d.set_gpr(r1 + 1, value)
            else:
                d.set_gpr(r1, value)

        d.finish(0, store)

    return run


HANDLERS[0xB3F3] = ("CDSTR", _from_packed(LONG, True))
HANDLERS[0xB3FB] = ("CXSTR", _from_packed(EXTENDED, True))
HANDLERS[0xB3F2] = ("CDUTR", _from_packed(LONG, False))
HANDLERS[0xB3FA] = ("CXUTR", _from_packed(EXTENDED, False))
HANDLERS[0xB3E3] = ("CSDTR", _to_packed(LONG, True))
HANDLERS[0xB3EB] = ("CSXTR", _to_packed(EXTENDED, True))
HANDLERS[0xB3E2] = ("CUDTR", _to_packed(LONG, False))
HANDLERS[0xB3EA] = ("CUXTR", _to_packed(EXTENDED, False))


# -- exponent and significance -------------------------------------------------------------------------------

_SPECIAL_CODE: Final = {INF: -1, QNAN: -2, SNAN: -3}


def _extract(fmt: DfpFormat, significance: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r2)
        f = fmt.fields(d.get(fmt, r2))
        if f.kind != FINITE:
            value = _SPECIAL_CODE[f.kind]
        elif significance:
            value = len(str(f.coef)) if f.coef else 0
        else:
            value = f.bexp
        d.finish(0, lambda: d.set_gpr(r1, value))

    return run


def _insert(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, r3, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r3)
        bexp = d.gpr(r2)
        if bexp >> 63:
            bexp -= 1 << 64
        f = fmt.fields(d.get(fmt, r3))
        coef = f.coef if f.kind == FINITE else f.coef % 10 ** (3 * fmt.declets)
        if 0 <= bexp <= fmt.max_bexp:
            out = fmt.compose(Fields(f.sign, FINITE, bexp, coef))
        else:
            kind = {-1: INF, -3: SNAN}.get(bexp, QNAN)
            out = fmt.compose(Fields(f.sign, kind, 0, coef % 10 ** (3 * fmt.declets)))
        d.finish(0, lambda: d.put(fmt, r1, out))

    return run


HANDLERS[0xB3E5] = ("EEDTR", _extract(LONG, False))
HANDLERS[0xB3ED] = ("EEXTR", _extract(EXTENDED, False))
HANDLERS[0xB3E7] = ("ESDTR", _extract(LONG, True))
HANDLERS[0xB3EF] = ("ESXTR", _extract(EXTENDED, True))
HANDLERS[0xB3F6] = ("IEDTR", _insert(LONG))
HANDLERS[0xB3FE] = ("IEXTR", _insert(EXTENDED))

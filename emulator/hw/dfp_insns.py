"""The DFP arithmetic, comparison, load, rounding and test instructions (facility 42), emulated.

ADD, SUBTRACT (condition code by the result), MULTIPLY, DIVIDE (condition code unchanged); COMPARE and
COMPARE AND SIGNAL (a NaN is unordered, cc 3; invalid operation for a signaling NaN, for any NaN when
signaling); COMPARE BIASED EXPONENT; LOAD AND TEST (a signaling NaN quieted, invalid); LOAD LENGTHENED
and LOAD ROUNDED (M4 bit 0: a signaling NaN stays signaling without an exception and an infinity keeps its
coefficient continuation); LOAD FP INTEGER (M4 bit 1: no inexact exception); QUANTIZE (the third
operand's value, FPR R3, with the second's exponent, FPR R2, as the hardware results recorded in valgrind's
s390x tests show; no overflow or underflow; a coefficient too long is invalid);
REROUND (the third operand rounded to the significance in bits 58-63 of general register R2, unchanged when
that is 0 or the operand has no more digits); SHIFT SIGNIFICAND LEFT / RIGHT (by address bits 58-63, sign
and exponent kept, no rounding); TEST DATA CLASS and TEST DATA GROUP (cc 1 when the operand's bit in
address bits 52-63 is one). Each long instruction has its extended twin on the register pairs; the
results' quanta are IEEE 754's preferred exponents, which ``decimal`` computes.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from emulator.hw.dfp_arith import INVALID, compute
from emulator.hw.dfp_cpu import Dfp, value_cc
from emulator.hw.dfp_format import EXTENDED, FINITE, INF, LONG, QNAN, SHORT, SNAN, DfpFormat, Fields

__all__ = ["HANDLERS"]

Handler = Callable[[Dfp], None]
#: opcode key -> (mnemonic, handler)
HANDLERS: dict[int, tuple[str, Handler]] = {}


def _rrf(raw: bytes) -> tuple[int, int, int, int]:
    """R1, R2, and the two fields of byte 2 (R3/M3 and M4) of an RRF or RRE instruction."""
    return raw[3] >> 4, raw[3] & 0xF, raw[2] >> 4, raw[2] & 0xF


def _quiet(d: Decimal) -> Decimal:
    sign, digits, _ = d.as_tuple()
    return Decimal((sign, digits, "n"))


# -- arithmetic ----------------------------------------------------------------------------------------------


def _arith(fmt: DfpFormat, method: str, sets_cc: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, r3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2, r3)
        a, b = d.dec(fmt, r2), d.dec(fmt, r3)
        out = compute(fmt, d.rounding(m4), lambda ctx: getattr(ctx, method)(a, b), d.masks)
        d.finish(out.exc, lambda: d.put_value(fmt, r1, out.value), value_cc(out.value) if sets_cc else None)

    return run


for _op, _key, _method, _cc in (
    ("A", 0xD2, "add", True),
    ("S", 0xD3, "subtract", True),
    ("M", 0xD0, "multiply", False),
    ("D", 0xD1, "divide", False),
):
    HANDLERS[0xB300 | _key] = (f"{_op}DTR", _arith(LONG, _method, _cc))
    HANDLERS[0xB308 | _key] = (f"{_op}XTR", _arith(EXTENDED, _method, _cc))


# -- comparisons ---------------------------------------------------------------------------------------------


def _compare(fmt: DfpFormat, signaling: bool) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2)
        a, b = d.dec(fmt, r1), d.dec(fmt, r2)
        if a.is_nan() or b.is_nan():
            d.finish(INVALID if signaling or a.is_snan() or b.is_snan() else 0, None, 3)
            return
        d.finish(0, None, 0 if a == b else 1 if a < b else 2)

    return run


def _compare_exponent(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2)
        a, b = fmt.fields(d.get(fmt, r1)), fmt.fields(d.get(fmt, r2))
        if a.kind != FINITE or b.kind != FINITE:
            d.finish(0, None, 0 if a.kind == b.kind else 3)
            return
        d.finish(0, None, 0 if a.bexp == b.bexp else 1 if a.bexp < b.bexp else 2)

    return run


HANDLERS[0xB3E4] = ("CDTR", _compare(LONG, False))
HANDLERS[0xB3EC] = ("CXTR", _compare(EXTENDED, False))
HANDLERS[0xB3E0] = ("KDTR", _compare(LONG, True))
HANDLERS[0xB3E8] = ("KXTR", _compare(EXTENDED, True))
HANDLERS[0xB3F4] = ("CEDTR", _compare_exponent(LONG))
HANDLERS[0xB3FC] = ("CEXTR", _compare_exponent(EXTENDED))


# -- loads ---------------------------------------------------------------------------------------------------


def _load_and_test(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, _ = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2)
        v = d.dec(fmt, r2)
        result = _quiet(v) if v.is_snan() else v
        d.finish(INVALID if v.is_snan() else 0, lambda: d.put_value(fmt, r1, result), value_cc(result))

    return run


def _special(src: DfpFormat, dst: DfpFormat, f: Fields, keep: bool) -> tuple[int, int]:
    """LOAD LENGTHENED / ROUNDED of an infinity or NaN: (encoding in ``dst``, exceptions). The payload is
    the coefficient continuation's rightmost digits; ``keep`` (M4 bit 0): a signaling NaN stays one and
    an infinity keeps its continuation."""
    payload = f.coef % 10 ** (3 * dst.declets)
    if f.kind == INF:
        return dst.compose(Fields(f.sign, INF, 0, payload if keep else 0)), 0
    if f.kind == SNAN and not keep:
        return dst.compose(Fields(f.sign, QNAN, 0, payload)), INVALID
    return dst.compose(Fields(f.sign, f.kind, 0, payload)), 0


def _finite_operand(d: Dfp, src: DfpFormat, dst: DfpFormat, r1: int, r2: int, m4: int) -> int | None:
    """A format conversion's second operand: its encoding if finite; otherwise the NaN or infinity is
    converted (``_special``, M4 bit 0 keeps a signaling NaN and an infinity's payload) and the instruction
    completed: None."""
    bits = d.get(src, r2)
    f = src.fields(bits)
    if f.kind == FINITE:
        return bits
    out, exc = _special(src, dst, f, bool(m4 & 8))
    d.finish(exc, lambda: d.put(dst, r1, out))
    return None


def _lengthen(src: DfpFormat, dst: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, _, m4 = _rrf(d.raw)
        if dst is EXTENDED:
            d.check_pair(r1)
        bits = _finite_operand(d, src, dst, r1, r2, m4)
        if bits is not None:
            d.finish(0, lambda: d.put_value(dst, r1, src.decode(bits)))

    return run


def _round(src: DfpFormat, dst: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, m3, m4 = _rrf(d.raw)
        if src is EXTENDED:
            d.check_pair(r2)
        bits = _finite_operand(d, src, dst, r1, r2, m4)
        if bits is None:
            return
        v = src.decode(bits)
        res = compute(dst, d.rounding(m3), lambda ctx: ctx.plus(v), d.masks)
        d.finish(res.exc, lambda: d.put_value(dst, r1, res.value), suppress_inexact=bool(m4 & 4))

    return run


HANDLERS[0xB3D6] = ("LTDTR", _load_and_test(LONG))
HANDLERS[0xB3DE] = ("LTXTR", _load_and_test(EXTENDED))
HANDLERS[0xB3D4] = ("LDETR", _lengthen(SHORT, LONG))
HANDLERS[0xB3DC] = ("LXDTR", _lengthen(LONG, EXTENDED))
HANDLERS[0xB3D5] = ("LEDTR", _round(LONG, SHORT))
HANDLERS[0xB3DD] = ("LDXTR", _round(EXTENDED, LONG))


# -- rounding ------------------------------------------------------------------------------------------------


def _integer(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, m3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2)
        v = d.dec(fmt, r2)
        res = compute(fmt, d.rounding(m3), lambda ctx: ctx.to_integral_exact(v), d.masks)
        d.finish(res.exc, lambda: d.put_value(fmt, r1, res.value), suppress_inexact=bool(m4 & 4))

    return run


def _quantize(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, r3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r2, r3)
        value, quantum = d.dec(fmt, r3), d.dec(fmt, r2)
        res = compute(fmt, d.rounding(m4), lambda ctx: ctx.quantize(value, quantum), d.masks, ranged=False)
        d.finish(res.exc, lambda: d.put_value(fmt, r1, res.value))

    return run


def _reround(fmt: DfpFormat) -> Handler:
    def run(d: Dfp) -> None:
        r1, r2, r3, m4 = _rrf(d.raw)
        if fmt is EXTENDED:
            d.check_pair(r1, r3)
        v = d.dec(fmt, r3)
        significance = d.gpr(r2) & 0x3F
        if v.is_snan():
            quiet = _quiet(v)
            d.finish(INVALID, lambda: d.put_value(fmt, r1, quiet))
            return
        if not v.is_finite() or v.is_zero() or significance == 0 or len(v.as_tuple().digits) <= significance:
            d.finish(0, lambda: d.put_value(fmt, r1, v))
            return
        res = compute(fmt, d.rounding(m4), lambda ctx: ctx.plus(v), d.masks, prec=significance)
        d.finish(res.exc, lambda: d.put_value(fmt, r1, res.value))

    return run


HANDLERS[0xB3D7] = ("FIDTR", _integer(LONG))
HANDLERS[0xB3DF] = ("FIXTR", _integer(EXTENDED))
HANDLERS[0xB3F5] = ("QADTR", _quantize(LONG))
HANDLERS[0xB3FD] = ("QAXTR", _quantize(EXTENDED))
HANDLERS[0xB3F7] = ("RRDTR", _reround(LONG))
HANDLERS[0xB3FF] = ("RRXTR", _reround(EXTENDED))


# -- shifts and tests (RXF, RXE) -----------------------------------------------------------------------------


def _shift(fmt: DfpFormat, left: bool) -> Handler:
    def run(d: Dfp) -> None:
        r3, r1 = d.raw[1] >> 4, d.raw[4] >> 4
        if fmt is EXTENDED:
            d.check_pair(r1, r3)
        n = d.address() & 0x3F
        f = fmt.fields(d.get(fmt, r3))
        width = fmt.digits if f.kind == FINITE else 3 * fmt.declets
        coef = (f.coef * 10**n if left else f.coef // 10**n) % 10**width
        out = fmt.compose(Fields(f.sign, f.kind, f.bexp, coef))
        d.finish(0, lambda: d.put(fmt, r1, out))

    return run


HANDLERS[0xED40] = ("SLDT", _shift(LONG, True))
HANDLERS[0xED41] = ("SRDT", _shift(LONG, False))
HANDLERS[0xED48] = ("SLXT", _shift(EXTENDED, True))
HANDLERS[0xED49] = ("SRXT", _shift(EXTENDED, False))


def data_class(fmt: DfpFormat, bits: int) -> int:
    """The TEST DATA CLASS bit of an encoding (bit 52 + zero .. bit 63 - signaling NaN, as the value of
    a 12-bit mask)."""
    v = fmt.decode(bits)
    if v.is_zero():
        k = 0
    elif v.is_snan():
        k = 5
    elif v.is_nan():
        k = 4
    elif v.is_infinite():
        k = 3
    else:
        k = 1 if v.adjusted() < 1 - fmt.emax else 2
    return 0x800 >> (2 * k + int(v.is_signed()))


def data_group(fmt: DfpFormat, bits: int) -> int:
    """The TEST DATA GROUP bit of an encoding: bit 52 safe zero, 54 zero with an extreme exponent (the
    smallest or largest biased exponent), 56 nonzero with an extreme exponent, 58 safe nonzero with a
    leftmost coefficient digit 0, 60 with one nonzero, 62 infinity or NaN; the next bit for a negative."""
    f = fmt.fields(bits)
    if f.kind != FINITE:
        k = 5
    else:
        extreme = f.bexp in (0, fmt.max_bexp)
        if f.coef == 0:
            k = 1 if extreme else 0
        elif extreme:
            k = 2
        else:
            k = 3 if f.coef < 10 ** (fmt.digits - 1) else 4
    return 0x800 >> (2 * k + f.sign)


def _test(fmt: DfpFormat, test: Callable[[DfpFormat, int], int]) -> Handler:
    def run(d: Dfp) -> None:
        r1 = d.raw[1] >> 4
        if fmt is EXTENDED:
            d.check_pair(r1)
        mask = d.address() & 0xFFF
        d.finish(0, None, 1 if test(fmt, d.get(fmt, r1)) & mask else 0)

    return run


for _fmt, _base in ((SHORT, 0xED50), (LONG, 0xED54), (EXTENDED, 0xED58)):
    _l = {"short": "E", "long": "D", "extended": "X"}[_fmt.name]
    HANDLERS[_base] = (f"TDC{_l}T", _test(_fmt, data_class))
    HANDLERS[_base | 1] = (f"TDG{_l}T", _test(_fmt, data_group))


"""``emulator.hw.bfp`` against independent IEEE arithmetic: the host's binary64 (Python floats, and
``Fraction``'s correctly rounded conversion for the fused multiply-add), numpy's binary32, and exact
bounds for binary128 and the directed rounding modes."""

import math
import struct
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.hw import bfp
from emulator.hw.bfp import EXTENDED, LONG, SHORT

DOUBLES = st.floats(allow_nan=False, allow_infinity=True, width=64)
SINGLES = st.floats(allow_nan=False, allow_infinity=True, width=32)


def d(x: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", x))[0]


def s(x: float) -> int:
    return struct.unpack(">I", struct.pack(">f", x))[0]


def same(bits: int, fmt, expect: float, pack) -> bool:
    """``bits`` encodes ``expect`` (any NaN for a NaN, the sign of a zero included)."""
    if math.isnan(expect):
        return fmt.is_nan(bits)
    return bits == pack(expect)


@settings(max_examples=300, deadline=None)
@given(a=DOUBLES, b=DOUBLES)
def test_binary64_add_sub_mul_div_match_the_host(a, b):
    def host(f):
        try:
            return f()
        except ZeroDivisionError:
            return math.copysign(math.inf, a) * math.copysign(1, b) if a and not math.isnan(a) else math.nan
    for got, want in (
        (bfp.add(LONG, d(a), d(b), bfp.RNE)[0], a + b),
        (bfp.add(LONG, d(a), d(b), bfp.RNE, negate_b=True)[0], a - b),
        (bfp.mul(LONG, d(a), d(b), bfp.RNE)[0], a * b),
        (bfp.div(LONG, d(a), d(b), bfp.RNE)[0], host(lambda: a / b)),
    ):
        assert same(got, LONG, want, d)


@settings(max_examples=300, deadline=None)
@given(a=st.floats(min_value=0, allow_infinity=False, width=64))
def test_binary64_sqrt_matches_the_host(a):
    assert bfp.sqrt(LONG, d(a), bfp.RNE)[0] == d(math.sqrt(a))


@settings(max_examples=300, deadline=None)
@given(a=st.floats(allow_nan=False, allow_infinity=False), b=st.floats(allow_nan=False, allow_infinity=False),
       c=st.floats(allow_nan=False, allow_infinity=False))  # fmt: skip
def test_binary64_fma_is_the_exact_result_rounded_once(a, b, c):
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    try:
        want = float(exact)  # correctly rounded (to nearest, ties to even)
    except OverflowError:
        want = math.inf if exact > 0 else -math.inf
    got, exc = bfp.fma(LONG, d(a), d(b), d(c), bfp.RNE, False, False)
    if exact == 0:
        assert LONG.is_zero(got)
    else:
        assert got == d(want)
        assert bool(exc & bfp.INEXACT) == (Fraction(want) != exact if math.isfinite(want) else True)


try:
    import numpy as np
except ImportError:  # numpy is optional: the binary32 cross-checks need it
    np = None
needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed")


@needs_numpy
@settings(max_examples=300, deadline=None)
@given(a=SINGLES, b=SINGLES)
def test_binary32_matches_numpy_float32(a, b):
    fa, fb = np.float32(a), np.float32(b)
    with np.errstate(all="ignore"):
        cases = [
            (bfp.add(SHORT, s(a), s(b), bfp.RNE)[0], fa + fb),
            (bfp.add(SHORT, s(a), s(b), bfp.RNE, negate_b=True)[0], fa - fb),
            (bfp.mul(SHORT, s(a), s(b), bfp.RNE)[0], fa * fb),
            (bfp.div(SHORT, s(a), s(b), bfp.RNE)[0], fa / fb),
            (bfp.sqrt(SHORT, s(a), bfp.RNE)[0], np.sqrt(fa)),
        ]
    for got, want in cases:
        assert same(got, SHORT, float(want), s)


@needs_numpy
@settings(max_examples=300, deadline=None)
@given(a=st.floats(allow_nan=False, allow_infinity=False, width=32),
       b=st.floats(allow_nan=False, allow_infinity=False, width=32),
       mode=st.sampled_from([bfp.RZ, bfp.RP, bfp.RM, bfp.RODD]))  # fmt: skip
def test_binary32_directed_rounding_brackets_the_exact_quotient(a, b, mode):
    if b == 0:
        return
    exact = Fraction(a) / Fraction(b)
    got, exc = bfp.div(SHORT, s(a), s(b), mode)
    if SHORT.is_inf(got) or SHORT.is_zero(got) or exc & bfp.OVERFLOW:
        return  # overflow or underflow to zero: covered by the rounding unit tests
    r = SHORT.value(got) * (-1 if SHORT.sign(got) else 1)
    up = float(np.nextafter(np.float32(float(r)), np.float32(np.inf)))
    down = float(np.nextafter(np.float32(float(r)), np.float32(-np.inf)))
    if r == exact:
        assert not exc & bfp.INEXACT
        return
    assert exc & bfp.INEXACT
    if mode == bfp.RP:
        assert Fraction(down) < exact < r
    elif mode == bfp.RM:
        assert r < exact < Fraction(up)
    elif mode == bfp.RZ:
        assert abs(r) < abs(exact) and (Fraction(up) > exact if r > 0 else Fraction(down) < exact)
    else:  # round to odd: the neighbour with an odd last bit
        assert got & 1 and (Fraction(down) < exact < Fraction(up))


@settings(max_examples=200, deadline=None)
@given(a=st.floats(allow_nan=False, allow_infinity=False), b=st.floats(allow_nan=False, allow_infinity=False))
def test_binary128_products_of_doubles_are_exact_and_quotients_within_half_an_ulp(a, b):
    xa = bfp.convert(LONG, EXTENDED, d(a), bfp.RNE)[0]
    xb = bfp.convert(LONG, EXTENDED, d(b), bfp.RNE)[0]
    prod, exc = bfp.mul(EXTENDED, xa, xb, bfp.RNE)
    exact = Fraction(a) * Fraction(b)
    assert EXTENDED.value(prod) == abs(exact) and not exc & bfp.INEXACT
    if b == 0 or a == 0:
        return
    quo, _ = bfp.div(EXTENDED, xa, xb, bfp.RNE)
    q = Fraction(a) / Fraction(b)
    e = EXTENDED.value(quo)
    exp = (quo >> 112 & 0x7FFF) - 16383
    assert abs(e - abs(q)) <= Fraction(2) ** (exp - 113)


def test_rounding_edges():
    # the largest binary32 overflows to infinity to nearest, and stays the largest toward zero
    big = s(3.4028234663852886e38)
    assert bfp.add(SHORT, big, big, bfp.RNE) == (SHORT.inf(0), bfp.OVERFLOW | bfp.INEXACT)
    assert bfp.add(SHORT, big, big, bfp.RZ) == (big, bfp.OVERFLOW | bfp.INEXACT)
    assert bfp.add(SHORT, big | 1 << 31, big | 1 << 31, bfp.RP)[0] == big | 1 << 31
    # the smallest subnormal halved: a tie, to even (zero), tiny and inexact
    tiny = 1
    got, exc = bfp.mul(SHORT, tiny, s(0.5), bfp.RNE)
    assert got == 0 and exc == bfp.TINY | bfp.INEXACT
    assert bfp.ieee_flags(exc, 0) == bfp.UNDERFLOW | bfp.INEXACT
    # exact but tiny: an underflow only when its mask is on
    got, exc = bfp.mul(SHORT, s(2.0**-126), s(0.5), bfp.RNE)
    assert got == 1 << 22 and exc == bfp.TINY
    assert bfp.ieee_flags(exc, 0) == 0 and bfp.ieee_flags(exc, bfp.UNDERFLOW) == bfp.UNDERFLOW
    # x - x is +0, and -0 rounding toward minus infinity
    assert bfp.add(LONG, d(1.5), d(1.5), bfp.RNE, negate_b=True)[0] == 0
    assert bfp.add(LONG, d(1.5), d(1.5), bfp.RM, negate_b=True)[0] == d(-0.0)
    # invalid operations give the default NaN; a signaling NaN operand comes back quieted
    assert bfp.add(SHORT, SHORT.inf(0), SHORT.inf(1), bfp.RNE) == (0x7FC00000, bfp.INVALID)
    assert bfp.mul(SHORT, 0x7F800001, s(1.0), bfp.RNE) == (0x7FC00001, bfp.INVALID)
    assert bfp.add(SHORT, 0x7FC00002, 0x7F800001, bfp.RNE) == (0x7FC00001, bfp.INVALID)
    assert bfp.fma(SHORT, SHORT.inf(0), 0, 0x7FC00003, bfp.RNE, False, False) == (0x7FC00000, bfp.INVALID)
    assert bfp.sqrt(LONG, d(-1.0), bfp.RNE) == (LONG.default_nan, bfp.INVALID)
    assert bfp.sqrt(LONG, d(-0.0), bfp.RNE) == (d(-0.0), 0)
    assert bfp.div(LONG, d(1.0), d(-0.0), bfp.RNE) == (d(-math.inf), bfp.DIVIDE)
    # widening keeps the NaN payload's leading bits; narrowing keeps them too, quieted
    assert bfp.convert(SHORT, LONG, 0x7F800001, bfp.RNE) == (0x7FF8000020000000, bfp.INVALID)
    assert bfp.convert(LONG, SHORT, 0x7FF8000020000000, bfp.RNE) == (0x7FC00001, 0)
    # load FP integer in each mode, and ties away from zero
    for mode, want in ((bfp.RNE, 2.0), (bfp.RNA, 3.0), (bfp.RZ, 2.0), (bfp.RP, 3.0), (bfp.RM, 2.0)):
        assert bfp.round_to_integer(LONG, d(2.5), mode) == (d(want), bfp.INEXACT)
    assert bfp.round_to_integer(LONG, d(-0.25), bfp.RNE) == (d(-0.0), bfp.INEXACT)

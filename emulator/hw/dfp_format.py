"""The decimal-floating-point formats (short, long, extended) and their densely-packed-decimal encoding.

A DFP datum (z/Architecture Principles of Operation, chapter 20 "Decimal-Floating-Point Instructions", and
IEEE 754-2008's decimal interchange formats in their DPD encoding) is a sign bit, a five-bit combination
field, a biased-exponent continuation field and a coefficient continuation field of 10-bit declets, each
three decimal digits in densely packed decimal. The combination field holds the two leftmost bits of the
biased exponent and the leftmost coefficient digit (``11110`` infinity, ``11111`` NaN; a NaN whose
continuation field's leftmost bit is one is signaling).

``decode`` gives a Python ``Decimal`` (its exponent the datum's, so the quantum is kept; a NaN's payload is
its coefficient continuation), ``encode`` the reverse (a finite value above the largest exponent is folded
down, its coefficient padded with zeros, as IEEE's clamp does). Every one of the 1024 declets decodes (the
24 noncanonical ones as the architecture defines them); ``encode`` writes canonical declets only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
)
from functools import cached_property
from typing import Final

__all__ = [
    "DRM_ROUNDING",
    "EXTENDED",
    "LONG",
    "SHORT",
    "DfpFormat",
    "Fields",
    "declet_decode",
    "declet_encode",
]

#: the DFP rounding modes (the FPC's DRM field and the M-field values 8-15) as ``decimal`` rounding modes:
#: to nearest ties to even, toward 0, toward +inf, toward -inf, to nearest ties away from 0, to nearest
#: ties toward 0, away from 0, and round to prepare for shorter precision (toward 0, then a last digit 0
#: or 5 of an inexact result made one higher: ``decimal``'s ROUND_05UP)
DRM_ROUNDING: Final = (
    ROUND_HALF_EVEN,
    ROUND_DOWN,
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_UP,
    ROUND_HALF_DOWN,
    ROUND_UP,
    ROUND_05UP,
)

# kinds of datum
FINITE, INF, QNAN, SNAN = "finite", "inf", "qnan", "snan"


def declet_encode(n: int) -> int:
    """Three decimal digits (0-999) as a canonical DPD declet."""
    d2, d1, d0 = n // 100, n // 10 % 10, n % 10
    a, e, i = d2 >> 3, d1 >> 3, d0 >> 3
    b, c, d = d2 >> 2 & 1, d2 >> 1 & 1, d2 & 1
    f, g, h = d1 >> 2 & 1, d1 >> 1 & 1, d1 & 1
    j, k, m = d0 >> 2 & 1, d0 >> 1 & 1, d0 & 1
    small: dict[tuple[int, int, int], tuple[int, ...]] = {
        (0, 0, 0): (b, c, d, f, g, h, 0, j, k, m),
        (0, 0, 1): (b, c, d, f, g, h, 1, 0, 0, m),
        (0, 1, 0): (b, c, d, j, k, h, 1, 0, 1, m),
        (1, 0, 0): (j, k, d, f, g, h, 1, 1, 0, m),
        (0, 1, 1): (b, c, d, 1, 0, h, 1, 1, 1, m),
        (1, 0, 1): (f, g, d, 0, 1, h, 1, 1, 1, m),
        (1, 1, 0): (j, k, d, 0, 0, h, 1, 1, 1, m),
        (1, 1, 1): (0, 0, d, 1, 1, h, 1, 1, 1, m),
    }
    out = 0
    for bit in small[(a, e, i)]:
        out = out << 1 | bit
    return out


def declet_decode(dpd: int) -> int:
    """A DPD declet (any of the 1024) as its three-digit value."""
    p, q, r = dpd >> 9 & 1, dpd >> 8 & 1, dpd >> 7 & 1
    s, t, u = dpd >> 6 & 1, dpd >> 5 & 1, dpd >> 4 & 1
    v, w, x, y = dpd >> 3 & 1, dpd >> 2 & 1, dpd >> 1 & 1, dpd & 1
    pqr, stu = p << 2 | q << 1 | r, s << 2 | t << 1 | u
    if not v:
        d2, d1, d0 = pqr, stu, w << 2 | x << 1 | y
    elif (w, x) == (0, 0):
        d2, d1, d0 = pqr, stu, 8 + y
    elif (w, x) == (0, 1):
        d2, d1, d0 = pqr, 8 + u, s << 2 | t << 1 | y
    elif (w, x) == (1, 0):
        d2, d1, d0 = 8 + r, stu, p << 2 | q << 1 | y
    elif (s, t) == (0, 0):
        d2, d1, d0 = 8 + r, 8 + u, p << 2 | q << 1 | y
    elif (s, t) == (0, 1):
        d2, d1, d0 = 8 + r, p << 2 | q << 1 | u, 8 + y
    elif (s, t) == (1, 0):
        d2, d1, d0 = pqr, 8 + u, 8 + y
    else:
        d2, d1, d0 = 8 + r, 8 + u, 8 + y
    return d2 * 100 + d1 * 10 + d0


_ENCODE: Final = tuple(declet_encode(n) for n in range(1000))
_DECODE: Final = tuple(declet_decode(d) for d in range(1024))


@dataclass(frozen=True)
class Fields:
    """A datum taken apart: sign (0/1), kind (``finite``, ``inf``, ``qnan``, ``snan``), biased exponent
    (finite only, else 0) and coefficient (of a special value: its continuation digits)."""

    sign: int
    kind: str
    bexp: int
    coef: int


@dataclass(frozen=True)
class DfpFormat:
    """A DFP format: width in bits, precision in digits, biased-exponent continuation width, bias."""

    name: str
    bits: int
    digits: int
    ebits: int
    bias: int
    #: the scale factor of a trapped overflow or underflow (the result's exponent is moved by it)
    alpha: int

    @cached_property
    def declets(self) -> int:
        """Declets (10-bit groups of three digits) in the coefficient continuation."""
        return (self.digits - 1) // 3

    @cached_property
    def cbits(self) -> int:
        """Width of the coefficient continuation field."""
        return 10 * self.declets

    @cached_property
    def max_bexp(self) -> int:
        """The largest biased exponent (3 * 2**ebits - 1)."""
        return 3 * (1 << self.ebits) - 1

    @cached_property
    def qmin(self) -> int:
        """The smallest (right-units) exponent."""
        return -self.bias

    @cached_property
    def qmax(self) -> int:
        """The largest (right-units) exponent."""
        return self.max_bexp - self.bias

    @cached_property
    def emax(self) -> int:
        """IEEE's Emax: the largest exponent of a value with its leftmost digit at the units position."""
        return self.qmax + self.digits - 1

    @cached_property
    def sign_bit(self) -> int:
        """The sign bit of the encoding."""
        return 1 << (self.bits - 1)

    @cached_property
    def max_coef(self) -> int:
        """The largest coefficient (all nines)."""
        return 10**self.digits - 1

    def context(self, rounding: str, wide: bool = False) -> Context:
        """A ``decimal`` context for this format's arithmetic (``wide``: the precision only, an unbounded
        exponent, for the scaled result of a trapped overflow or underflow)."""
        if wide:
            return Context(prec=self.digits, rounding=rounding, Emax=999999999, Emin=-999999999, traps=[])
        return Context(
            prec=self.digits, rounding=rounding, Emax=self.emax, Emin=1 - self.emax, clamp=1, traps=[]
        )

    # -- fields -------------------------------------------------------------------------------------------

    def fields(self, v: int) -> Fields:
        """The sign, kind, biased exponent and coefficient of the encoding ``v``."""
        sign = v >> (self.bits - 1) & 1
        comb = v >> (self.bits - 6) & 0x1F
        cont_shift = self.cbits
        bxc = v >> cont_shift & ((1 << self.ebits) - 1)
        ccf = v & ((1 << self.cbits) - 1)
        coef = 0
        for k in range(self.declets - 1, -1, -1):
            coef = coef * 1000 + _DECODE[ccf >> (10 * k) & 0x3FF]
        if comb >> 1 == 0xF:
            if comb & 1 == 0:
                return Fields(sign, INF, 0, coef)
            return Fields(sign, SNAN if bxc >> (self.ebits - 1) else QNAN, 0, coef)
        if comb >> 3 == 3:
            top, lmd = comb >> 1 & 3, 8 + (comb & 1)
        else:
            top, lmd = comb >> 3, comb & 7
        return Fields(sign, FINITE, top << self.ebits | bxc, lmd * 10 ** (3 * self.declets) + coef)

    def compose(self, f: Fields) -> int:
        """The encoding of ``f`` (canonical declets; for a special value its coefficient's continuation
        digits, the rest of the biased-exponent continuation field zero)."""
        shift = 3 * self.declets
        lmd, rest = divmod(f.coef, 10**shift)
        ccf = 0
        for k in range(self.declets - 1, -1, -1):
            ccf = ccf << 10 | _ENCODE[rest // 10 ** (3 * k) % 1000]
        if f.kind == FINITE:
            top, bxc = f.bexp >> self.ebits, f.bexp & ((1 << self.ebits) - 1)
            comb = top << 3 | lmd if lmd < 8 else 0x18 | top << 1 | (lmd & 1)
        else:
            comb = 0x1E if f.kind == INF else 0x1F
            bxc = 1 << (self.ebits - 1) if f.kind == SNAN else 0
        return f.sign << (self.bits - 1) | comb << (self.bits - 6) | bxc << self.cbits | ccf

    # -- values -------------------------------------------------------------------------------------------

    def decode(self, v: int) -> Decimal:
        """The encoding ``v`` as a ``Decimal`` (a NaN's payload: its coefficient continuation)."""
        f = self.fields(v)
        if f.kind == FINITE:
            return Decimal((f.sign, _digits(f.coef), f.bexp - self.bias))
        if f.kind == INF:
            return Decimal((f.sign, (0,), "F"))
        payload = f.coef % 10 ** (3 * self.declets)
        return Decimal((f.sign, _digits(payload) if payload else (), "n" if f.kind == QNAN else "N"))

    def encode(self, d: Decimal) -> int:
        """``d`` (its coefficient at most ``digits`` long, its exponent in range or foldable) encoded."""
        sign, digits, exp = d.as_tuple()
        coef = int("".join(map(str, digits)) or "0")
        if d.is_nan():
            kind = SNAN if d.is_snan() else QNAN
            return self.compose(Fields(sign, kind, 0, coef % 10 ** (3 * self.declets)))
        if d.is_infinite():
            return self.compose(Fields(sign, INF, 0, 0))
        assert isinstance(exp, int)
        if exp > self.qmax:  # fold down: the coefficient padded with zeros (IEEE clamp)
            coef *= 10 ** (exp - self.qmax)
            exp = self.qmax
        if exp < self.qmin:  # only an exact zero or a coefficient with trailing zeros can come here
            drop = self.qmin - exp
            coef //= 10**drop
            exp = self.qmin
        if coef > self.max_coef:
            raise ValueError(f"{d} does not fit the {self.name} DFP format")
        return self.compose(Fields(sign, FINITE, exp + self.bias, coef))

    def kind(self, v: int) -> str:
        """The kind of datum ``v`` is (without decoding its coefficient)."""
        comb = v >> (self.bits - 6) & 0x1F
        if comb == 0x1E:
            return INF
        if comb == 0x1F:
            return SNAN if v >> (self.bits - 7) & 1 else QNAN
        return FINITE


def _digits(n: int) -> tuple[int, ...]:
    return tuple(int(c) for c in str(n))


SHORT: Final = DfpFormat("short", 32, 7, 6, 101, 144)
LONG: Final = DfpFormat("long", 64, 16, 8, 398, 576)
EXTENDED: Final = DfpFormat("extended", 128, 34, 12, 6176, 9216)

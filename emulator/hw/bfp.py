"""IEEE binary floating point as z/Architecture defines it (short, long, extended), computed exactly.

Every operation works on the operands' exact values (integer significand times a power of two; a quotient or
square root carried to three bits beyond the target precision plus a sticky bit) and rounds once to the target
format, so binary32, binary64 and binary128 results (FMA and square root included) are correctly rounded in
every rounding mode the FPC or an M field can name: to nearest with ties to even, toward zero, toward +inf,
toward -inf, to nearest with ties away from zero, and round to prepare for shorter precision (round to odd).

The z/Architecture choices (Principles of Operation, chapter 19 "Binary-Floating-Point Instructions", as
QEMU's s390x target implements them): tininess is detected before rounding; the default NaN is positive with
only the leftmost fraction bit one; a signaling NaN operand is quieted (the leftmost fraction bit set) and
raises invalid operation; of two NaN operands a signaling one wins over a quiet one, and among equals the
first operand wins (for multiply and add: multiplier, multiplicand, addend in that order); infinity times
zero in a multiply-and-add gives the default NaN and invalid operation even when the addend is a NaN.

Results are ``(bits, exc)``: the encoded result and the IEEE exceptions it raised as FPC mask/flag bits
(``INVALID`` .. ``INEXACT``), with ``TINY`` added for a tiny result (underflow is recognised from it: always
when the underflow mask is on, and with inexact otherwise; see ``ieee_flags``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from math import isqrt
from typing import Final

__all__ = [
    "DIVIDE",
    "EXTENDED",
    "FORMATS",
    "INEXACT",
    "INVALID",
    "LONG",
    "OVERFLOW",
    "SHORT",
    "TINY",
    "UNDERFLOW",
    "Format",
]

# IEEE exceptions, as the bits of an FPC mask or flag byte (bit 0 invalid operation .. bit 4 inexact)
INVALID: Final = 0x80
DIVIDE: Final = 0x40
OVERFLOW: Final = 0x20
UNDERFLOW: Final = 0x10
INEXACT: Final = 0x08
#: not an FPC bit: the exact result was tiny (nonzero and below the smallest normal magnitude)
TINY: Final = 0x100

# rounding modes: the FPC's BFP rounding-mode values (0-3, 7), and ties-away (the M-field value 1)
RNE, RZ, RP, RM, RNA, RODD = 0, 1, 2, 3, 4, 7
#: M-field rounding-method values 0-7 (of VFI, VFLR): None = the FPC's mode; 2 is not a valid value
M_FIELD_MODES: Final[dict[int, int | None]] = {0: None, 1: RNA, 3: RODD, 4: RNE, 5: RZ, 6: RP, 7: RM}

# class bits of TEST DATA CLASS (bit 52 +zero .. bit 63 -SNaN, as a 12-bit mask); the negative one is >> 1
DC_ZERO, DC_NORMAL, DC_SUBNORMAL, DC_INF, DC_QNAN, DC_SNAN = 0x800, 0x200, 0x080, 0x020, 0x008, 0x002


@dataclass(frozen=True)
class Format:
    """A binary floating-point format: total width, exponent width, fraction width."""

    bits: int
    ebits: int
    fbits: int

    @cached_property
    def bias(self) -> int:
        """The exponent bias (127, 1023, 16383)."""
        return (1 << (self.ebits - 1)) - 1

    @cached_property
    def emin(self) -> int:
        """The smallest exponent of a normal number, unbiased."""
        return 1 - self.bias

    @cached_property
    def emax_field(self) -> int:
        """The all-ones biased exponent field (infinities and NaNs)."""
        return (1 << self.ebits) - 1

    @cached_property
    def sign_bit(self) -> int:
        """The sign bit's mask."""
        return 1 << (self.bits - 1)

    @cached_property
    def quiet_bit(self) -> int:
        """The fraction's leftmost bit: set in a quiet NaN, clear in a signaling one."""
        return 1 << (self.fbits - 1)

    @cached_property
    def default_nan(self) -> int:
        """The default NaN the architecture delivers: positive, quiet, the rest of the fraction zero."""
        return self.emax_field << self.fbits | self.quiet_bit

    def inf(self, sign: int) -> int:
        """The infinity of the given sign (0 plus, 1 minus)."""
        return sign << (self.bits - 1) | self.emax_field << self.fbits

    def max_finite(self, sign: int) -> int:
        """The largest finite magnitude with the given sign."""
        return sign << (self.bits - 1) | (self.emax_field - 1) << self.fbits | ((1 << self.fbits) - 1)

    def zero(self, sign: int) -> int:
        """The zero of the given sign."""
        return sign << (self.bits - 1)

    # -- classification -----------------------------------------------------------------------------------

    def sign(self, v: int) -> int:
        """The sign bit of ``v`` (0 or 1)."""
        return v >> (self.bits - 1) & 1

    def _exp_frac(self, v: int) -> tuple[int, int]:
        return v >> self.fbits & self.emax_field, v & ((1 << self.fbits) - 1)

    def is_nan(self, v: int) -> bool:
        """Whether ``v`` is a NaN, quiet or signaling."""
        e, f = self._exp_frac(v)
        return e == self.emax_field and f != 0

    def is_snan(self, v: int) -> bool:
        """Whether ``v`` is a signaling NaN."""
        return self.is_nan(v) and not v & self.quiet_bit

    def is_inf(self, v: int) -> bool:
        """Whether ``v`` is an infinity of either sign."""
        e, f = self._exp_frac(v)
        return e == self.emax_field and f == 0

    def is_zero(self, v: int) -> bool:
        """Whether ``v`` is a zero of either sign."""
        return v & (self.sign_bit - 1) == 0

    def value(self, v: int) -> Fraction:
        """The exact magnitude of a finite encoding."""
        m, e = self.decode(v)
        return Fraction(m) * Fraction(2) ** e

    def decode(self, v: int) -> tuple[int, int]:
        """The magnitude of a finite encoding as (m, e): m * 2**e."""
        e, f = self._exp_frac(v)
        if e == 0:
            return f, self.emin - self.fbits
        return f | 1 << self.fbits, e - self.bias - self.fbits

    def data_class(self, v: int) -> int:
        """The TEST DATA CLASS bit of ``v`` (the positive class's bit, shifted right by one if negative)."""
        e, f = self._exp_frac(v)
        if e == self.emax_field:
            bit = DC_INF if f == 0 else DC_QNAN if f & self.quiet_bit else DC_SNAN
        elif e == 0:
            bit = DC_ZERO if f == 0 else DC_SUBNORMAL
        else:
            bit = DC_NORMAL
        return bit >> self.sign(v)

    def quiet(self, v: int) -> int:
        """``v`` with its quiet bit set (a signaling NaN made quiet)."""
        return v | self.quiet_bit

    # -- rounding -----------------------------------------------------------------------------------------

    def round(self, sign: int, mag: Fraction, mode: int) -> tuple[int, int]:
        """Round the exact magnitude ``mag`` (with ``sign``) to this format: (encoding, exceptions)."""
        if mag == 0:
            return self.zero(sign), 0
        m, e = _quotient(mag.numerator, mag.denominator, self.fbits)
        return self.round_me(sign, m, e, mode)

    def round_me(self, sign: int, m: int, e: int, mode: int) -> tuple[int, int]:
        """Round the magnitude ``m * 2**e`` (m > 0) to this format: (encoding, exceptions)."""
        top = e + m.bit_length() - 1  # the exponent of the leading bit
        exc = TINY if top < self.emin else 0
        q = max(top, self.emin) - self.fbits  # exponent of the last fraction bit
        shift = q - e
        if shift <= 0:
            n = m << -shift
        else:
            n = m >> shift
            rem = m & ((1 << shift) - 1)
            if rem:
                exc |= INEXACT
                half = 1 << (shift - 1)
                if _round_up(n, (rem > half) - (rem < half), sign, mode):
                    n += 1
        if n >> (self.fbits + 1):  # carried into a new bit
            n >>= 1
            q += 1
        biased = q + self.fbits + self.bias if n >> self.fbits else 0
        if biased >= self.emax_field:
            exc = exc | OVERFLOW | INEXACT
            huge = mode in (RNE, RNA) or (mode == RP and not sign) or (mode == RM and sign)
            return (self.inf(sign) if huge else self.max_finite(sign)), exc
        frac = n & ((1 << self.fbits) - 1)
        return sign << (self.bits - 1) | biased << self.fbits | frac, exc


def _round_up(n: int, half: int, sign: int, mode: int) -> bool:
    """Whether the magnitude ``n + rem`` (0 < rem < 1; ``half``: -1, 0 or 1 as rem is below, at or above
    one half) rounds up to ``n + 1``."""
    if mode == RNE:
        return half > 0 or (half == 0 and bool(n & 1))
    if mode == RNA:
        return half >= 0
    if mode == RP:
        return not sign
    if mode == RM:
        return bool(sign)
    if mode == RODD:
        return not n & 1
    return False  # RZ


def _quotient(num: int, den: int, fbits: int) -> tuple[int, int]:
    """num / den as (m, e) exact enough to round: m has at least fbits + 4 bits, and an inexact quotient
    becomes m + 1/2 (a sticky bit), which lies between the same two rounding boundaries as the quotient."""
    k = max(0, fbits + 4 - (num.bit_length() - den.bit_length()))
    q, r = divmod(num << k, den)
    if r:
        return 2 * q + 1, -k - 1
    return q, -k


SHORT: Final = Format(32, 8, 23)
LONG: Final = Format(64, 11, 52)
EXTENDED: Final = Format(128, 15, 112)
#: the M-field floating-point-format values
FORMATS: Final[dict[int, Format]] = {2: SHORT, 3: LONG, 4: EXTENDED}


# -- NaN operands --------------------------------------------------------------------------------------------


def pick_nan(fmt: Format, *ops: int) -> tuple[int, int] | None:
    """If an operand is a NaN, the NaN result: the first signaling NaN (quieted, invalid), else the first
    quiet one. None when there is no NaN operand."""
    for v in ops:
        if fmt.is_snan(v):
            return fmt.quiet(v), INVALID
    for v in ops:
        if fmt.is_nan(v):
            return v, 0
    return None


def _signed(fmt: Format, v: int) -> tuple[int, int]:
    """A finite encoding as a signed (m, e)."""
    m, e = fmt.decode(v)
    return (-m if fmt.sign(v) else m), e


def _sum(x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
    """The exact sum of two signed (m, e) values."""
    (mx, ex), (my, ey) = x, y
    if ex < ey:
        return mx + (my << (ey - ex)), ex
    return (mx << (ex - ey)) + my, ey


def _result(fmt: Format, exact: tuple[int, int], mode: int, zero_sign: int) -> tuple[int, int]:
    m, e = exact
    if m == 0:
        return fmt.zero(zero_sign), 0
    return fmt.round_me(1 if m < 0 else 0, abs(m), e, mode)


# -- arithmetic ----------------------------------------------------------------------------------------------


def add(fmt: Format, a: int, b: int, mode: int, negate_b: bool = False) -> tuple[int, int]:
    """a + b (a - b with ``negate_b``)."""
    nan = pick_nan(fmt, a, b)
    if nan is not None:
        return nan
    if negate_b:
        b ^= fmt.sign_bit
    sa, sb = fmt.sign(a), fmt.sign(b)
    if fmt.is_inf(a) or fmt.is_inf(b):
        if fmt.is_inf(a) and fmt.is_inf(b) and sa != sb:
            return fmt.default_nan, INVALID
        return (a if fmt.is_inf(a) else b), 0
    exact = _sum(_signed(fmt, a), _signed(fmt, b))
    zero_sign = sa if sa == sb else int(mode == RM)
    return _result(fmt, exact, mode, zero_sign)


def mul(fmt: Format, a: int, b: int, mode: int) -> tuple[int, int]:
    nan = pick_nan(fmt, a, b)
    if nan is not None:
        return nan
    sign = fmt.sign(a) ^ fmt.sign(b)
    if fmt.is_inf(a) or fmt.is_inf(b):
        if fmt.is_zero(a) or fmt.is_zero(b):
            return fmt.default_nan, INVALID
        return fmt.inf(sign), 0
    (ma, ea), (mb, eb) = _signed(fmt, a), _signed(fmt, b)
    return _result(fmt, (ma * mb, ea + eb), mode, sign)


def div(fmt: Format, a: int, b: int, mode: int) -> tuple[int, int]:
    nan = pick_nan(fmt, a, b)
    if nan is not None:
        return nan
    sign = fmt.sign(a) ^ fmt.sign(b)
    if fmt.is_inf(a):
        return (fmt.default_nan, INVALID) if fmt.is_inf(b) else (fmt.inf(sign), 0)
    if fmt.is_inf(b):
        return fmt.zero(sign), 0
    if fmt.is_zero(b):
        return (fmt.default_nan, INVALID) if fmt.is_zero(a) else (fmt.inf(sign), DIVIDE)
    (ma, ea), (mb, eb) = fmt.decode(a), fmt.decode(b)
    m, e = _quotient(ma, mb, fmt.fbits)
    return fmt.round_me(sign, m, e + ea - eb, mode)


def sqrt(fmt: Format, a: int, mode: int) -> tuple[int, int]:
    nan = pick_nan(fmt, a)
    if nan is not None:
        return nan
    if fmt.is_zero(a):
        return a, 0
    if fmt.sign(a):
        return fmt.default_nan, INVALID
    if fmt.is_inf(a):
        return a, 0
    m, e = fmt.decode(a)
    if e & 1:
        m, e = m << 1, e - 1
    # scale by 4^k so the integer root has at least p + 3 bits: no rounding boundary lies strictly between
    # two consecutive integers there, so r + 1/2 stands in for an inexact root in every rounding mode
    k = max(0, (2 * (fmt.fbits + 4) - m.bit_length()) // 2 + 1)
    m <<= 2 * k
    r = isqrt(m)
    if r * r == m:
        return fmt.round_me(0, r, (e >> 1) - k, mode)
    return fmt.round_me(0, 2 * r + 1, (e >> 1) - k - 1, mode)


def fma(
    fmt: Format, a: int, b: int, c: int, mode: int, negate_c: bool, negate_result: bool
) -> tuple[int, int]:
    """a * b + c, rounded once (c negated first with ``negate_c``; a non-NaN result negated with
    ``negate_result``)."""
    a_inf, b_inf = fmt.is_inf(a), fmt.is_inf(b)
    infzero = (a_inf and fmt.is_zero(b)) or (b_inf and fmt.is_zero(a))
    if fmt.is_nan(a) or fmt.is_nan(b) or fmt.is_nan(c):
        if infzero:
            return fmt.default_nan, INVALID
        nan = pick_nan(fmt, a, b, c)
        assert nan is not None
        return nan
    if negate_c:
        c ^= fmt.sign_bit
    if infzero:
        return fmt.default_nan, INVALID
    psign = fmt.sign(a) ^ fmt.sign(b)
    flip = fmt.sign_bit if negate_result else 0
    if a_inf or b_inf:
        if fmt.is_inf(c) and fmt.sign(c) != psign:
            return fmt.default_nan, INVALID
        return fmt.inf(psign) ^ flip, 0
    if fmt.is_inf(c):
        return c ^ flip, 0
    (ma, ea), (mb, eb) = _signed(fmt, a), _signed(fmt, b)
    exact = _sum((ma * mb, ea + eb), _signed(fmt, c))
    product_zero = fmt.is_zero(a) or fmt.is_zero(b)
    csign = fmt.sign(c)
    zero_sign = csign if product_zero and fmt.is_zero(c) and csign == psign else int(mode == RM)
    bits, exc = _result(fmt, exact, mode, zero_sign)
    return bits ^ flip, exc


def round_to_integer(fmt: Format, a: int, mode: int) -> tuple[int, int]:
    """LOAD FP INTEGER: ``a`` rounded to an integral value in ``fmt``."""
    nan = pick_nan(fmt, a)
    if nan is not None:
        return nan
    if fmt.is_inf(a) or fmt.is_zero(a):
        return a, 0
    sign, (m, e) = fmt.sign(a), fmt.decode(a)
    if e >= 0:
        return a, 0
    n, rem = m >> -e, m & ((1 << -e) - 1)
    if not rem:
        return a, 0
    half = 1 << (-e - 1)
    if _round_up(n, (rem > half) - (rem < half), sign, mode):
        n += 1
    if n == 0:
        return fmt.zero(sign), INEXACT
    bits, _ = fmt.round_me(sign, n, 0, RNE)  # an integer this size is exact in its own format
    return bits, INEXACT


def convert(src: Format, dst: Format, a: int, mode: int) -> tuple[int, int]:
    """LOAD LENGTHENED / LOAD ROUNDED: ``a`` from ``src`` to ``dst`` (a NaN keeps its sign and leading
    payload bits and is quieted; a signaling one raises invalid)."""
    sign = src.sign(a)
    if src.is_nan(a):
        exc = INVALID if src.is_snan(a) else 0
        frac = a & ((1 << src.fbits) - 1)
        shift = dst.fbits - src.fbits
        frac = frac << shift if shift >= 0 else frac >> -shift
        return dst.quiet(sign << (dst.bits - 1) | dst.emax_field << dst.fbits | frac), exc
    if src.is_inf(a):
        return dst.inf(sign), 0
    if src.is_zero(a):
        return dst.zero(sign), 0
    m, e = src.decode(a)
    return dst.round_me(sign, m, e, mode)


def compare(fmt: Format, a: int, b: int, signaling: bool) -> tuple[int, int]:
    """(relation, exceptions): 0 equal, 1 a low, 2 a high, 3 unordered. A NaN is invalid when signaling
    (or a signaling NaN)."""
    if fmt.is_nan(a) or fmt.is_nan(b):
        return 3, INVALID if signaling or fmt.is_snan(a) or fmt.is_snan(b) else 0
    ka, kb = _order_key(fmt, a), _order_key(fmt, b)
    return (0 if ka == kb else 1 if ka < kb else 2), 0


def _order_key(fmt: Format, v: int) -> int:
    """An integer that orders non-NaN encodings as their values (both zeros equal)."""
    mag = v & (fmt.sign_bit - 1)  # magnitudes order as their encodings
    return -mag if fmt.sign(v) else mag


def ieee_flags(exc: int, masks: int, suppress_inexact: bool = False) -> int:
    """The IEEE exceptions ``exc`` recognises, as FPC bits: underflow from tininess (with inexact, or
    always when the underflow mask in ``masks`` is on), inexact unless suppressed (an XxC bit)."""
    flags = exc & (INVALID | DIVIDE | OVERFLOW | INEXACT)
    if exc & TINY and (exc & INEXACT or masks & UNDERFLOW):
        flags |= UNDERFLOW
    if suppress_inexact:
        flags &= ~INEXACT
    return flags

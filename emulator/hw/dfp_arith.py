"""Decimal-floating-point results and their IEEE exceptions, computed with Python's ``decimal`` module.

An operation is a function of a ``decimal`` context: it runs in a context of the target format (precision
7, 16 or 34 digits, IEEE 754's Emax/Emin, clamp on: the quantum of a result as the architecture prefers it,
``decimal`` following IEEE 754-2008 as the Principles of Operation, chapter 20, do) and the context's
flags say which IEEE exceptions it raised. ``compute`` turns them into the FPC's exception bits and
whether an inexact result was incremented (rounded away from zero: its magnitude above the exact one,
which the data-exception code reports), and for an overflow or underflow whose FPC mask is on it gives the
scaled result the architecture delivers then (the precise result rounded to the format's precision and
its exponent moved by the scale factor: 3/4 of the format's exponent range, 144 for short, 576 for long,
9216 for extended; where even the scaled value does not fit, the default result).

``disposition`` applies the FPC masks: which flags to set, the DXC of a data exception and whether the
instruction is suppressed (invalid operation, division by zero) or completed (overflow, underflow, inexact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Subnormal,
    Underflow,
)
from typing import Final

from emulator.hw.bfp import DIVIDE, INEXACT, INVALID, OVERFLOW, TINY, UNDERFLOW
from emulator.hw.dfp_format import DfpFormat

__all__ = [
    "DIVIDE",
    "INCREMENTED",
    "INEXACT",
    "INVALID",
    "OVERFLOW",
    "TINY",
    "UNDERFLOW",
    "Outcome",
    "compute",
    "disposition",
]

# IEEE exceptions as the bits of an FPC mask or flag byte, and TINY (not an FPC bit: the exact result was
# tiny), as binary floating point has them
#: not an FPC bit: an inexact result was rounded up in magnitude
INCREMENTED: Final = 0x200
#: the result is the scaled one of a trapped overflow or underflow
SCALED: Final = 0x400

Op = Callable[[Context], Decimal]


@dataclass(frozen=True)
class Outcome:
    """A result and the exceptions it raised (IEEE bits plus ``TINY``, ``INCREMENTED``, ``SCALED``)."""

    value: Decimal
    exc: int


def _incremented(result: Decimal, op: Op, ctx: Context) -> bool:
    """Whether ``result`` (inexact, computed in a context like ``ctx``) lies above the exact value in
    magnitude: the same operation truncated gives a different magnitude then."""
    trunc = ctx.copy()
    trunc.rounding = ROUND_DOWN
    trunc.clear_flags()
    return abs(op(trunc)) != abs(result)


def _representable(fmt: DfpFormat, d: Decimal) -> bool:
    """Whether the finite ``d`` has an encoding in ``fmt`` of the same value."""
    _, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    coef = int("".join(map(str, digits)) or "0")
    if exp > fmt.qmax:
        return coef * 10 ** (exp - fmt.qmax) <= fmt.max_coef
    if exp < fmt.qmin:
        return coef % 10 ** (fmt.qmin - exp) == 0
    return coef <= fmt.max_coef


def _scaled(d: Decimal, by: int) -> Decimal:
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    return Decimal((sign, digits, exp + by))


def compute(
    fmt: DfpFormat, rounding: str, op: Op, masks: int, prec: int | None = None, ranged: bool = True
) -> Outcome:
    """Run ``op`` for the format ``fmt`` with ``rounding``; ``masks``: the FPC's IEEE mask byte (a
    trapped overflow or underflow gets the scaled result). ``prec``: round to fewer digits than the
    format has (REROUND; no clamp then: ``encode`` folds the result); ``ranged`` False: the operation
    raises no overflow or underflow (QUANTIZE)."""
    ctx = fmt.context(rounding)
    if prec is not None:
        ctx.prec, ctx.clamp = prec, 0
    result = op(ctx)
    flags = ctx.flags
    if flags[InvalidOperation]:
        return Outcome(result, INVALID)
    if flags[DivisionByZero]:
        return Outcome(result, DIVIDE)
    overflow = ranged and bool(flags[Overflow])
    tiny = ranged and bool(flags[Subnormal] or flags[Underflow]) and not overflow
    if (overflow and masks & OVERFLOW) or (tiny and masks & UNDERFLOW):
        wide = fmt.context(rounding, wide=True)
        wide.prec = ctx.prec
        precise = op(wide)
        exc = SCALED | (OVERFLOW if overflow else UNDERFLOW | TINY)
        if wide.flags[Inexact]:
            exc |= INEXACT | (INCREMENTED if _incremented(precise, op, wide) else 0)
        scaled = _scaled(precise, -fmt.alpha if overflow else fmt.alpha)
        # a scaled value out of the format's range too (LOAD ROUNDED of a long far beyond the short range):
        # the result the disabled exception would give
        return Outcome(scaled if _representable(fmt, scaled) else result, exc)
    exc = (OVERFLOW if overflow else 0) | (TINY if tiny else 0)
    if flags[Inexact]:
        exc |= INEXACT | (INCREMENTED if _incremented(result, op, ctx) else 0)
        if tiny:
            exc |= UNDERFLOW
    return Outcome(result, exc)


def _dxc(base: int, exc: int) -> int:
    """A DXC of the overflow/underflow/inexact kind: ``base`` plus the inexact (0x08) and incremented
    (0x04) bits."""
    if exc & INEXACT:
        return base | 0x08 | (0x04 if exc & INCREMENTED else 0)
    return base


def disposition(exc: int, masks: int, suppress_inexact: bool = False) -> tuple[int, int, bool]:
    """What the exceptions ``exc`` do under the FPC ``masks``: (flags to set, DXC or 0, suppressed).

    Invalid operation and division by zero with their mask on suppress the instruction (DXC 0x80,
    0x40); overflow and underflow with theirs complete it with the scaled result (DXC 0x20 / 0x10 plus
    the inexact and incremented bits); an inexact result with its mask on completes it (DXC 0x08 or
    0x0C) after the flags of the other exceptions are set. An untrapped underflow is recognised only for
    an inexact result. ``suppress_inexact``: the instruction's inexact-suppression control is one."""
    if exc & INVALID:
        return (0, 0x80, True) if masks & INVALID else (INVALID, 0, False)
    if exc & DIVIDE:
        return (0, 0x40, True) if masks & DIVIDE else (DIVIDE, 0, False)
    if exc & SCALED:
        return 0, _dxc(0x20 if exc & OVERFLOW else 0x10, exc), False
    if suppress_inexact:
        exc &= ~INEXACT
    flags = exc & OVERFLOW
    if exc & UNDERFLOW:  # (``compute`` sets it for an inexact tiny result only)
        flags |= UNDERFLOW
    if exc & INEXACT:
        if masks & INEXACT:
            return flags, _dxc(0, exc), False
        flags |= INEXACT
    return flags, 0, False

"""YAML scalars as s390-tools' serde_yaml 0.9 writes them, for pvattest's and pvsecret's YAML files.

The scalar style is its ``serialize_str`` over libyaml's emitter.

serde_yaml single-quotes a string that a YAML reader would take for something else: empty, null
(``null``/``Null``/``NULL``/``~``), a boolean (``true``/``True``/``TRUE``, ``false``/…), an integer it can
hold (decimal, ``0x``/``0o``/``0b``, signed, up to 128 bits: so ``0x`` with a 16-byte CUID is quoted and
``0x`` with a 32-byte hash is not), a finite float, or digits with a leading zero. Otherwise libyaml writes
the plain scalar unless YAML's syntax forbids it (a leading indicator, ``": "``, ``" #"``, leading or
trailing blanks, a document marker), then single-quoted (``'`` doubled).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["yaml_scalar", "serde_types_it"]

_U128: Final = 1 << 128
_I128_MIN: Final = -(1 << 127)
_RADIX: Final = {"0x": 16, "0o": 8, "0b": 2}
_DIGITS: Final = {16: "0123456789abcdefABCDEF", 8: "01234567", 2: "01"}
_FLOAT: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _digits_but_not_number(s: str) -> bool:
    s = s[1:] if s[:1] in "+-" and s else s
    return len(s) > 1 and s[0] == "0" and s[1:].isdigit() and s.isascii()


def _radix_value(rest: str, base: int) -> int | None:
    """Rust's from_str_radix on what follows the prefix (one leading '+' allowed by it; the caller refuses
    signs)."""
    body = rest[1:] if rest.startswith("+") else rest
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    return int(body, base)


def _int(s: str) -> bool:
    unpositive = s[1:] if s.startswith("+") else s
    for prefix, base in _RADIX.items():  # parse_unsigned_int
        if unpositive.startswith(prefix):
            rest = unpositive[2:]
            if not rest.startswith(("+", "-")):
                v = _radix_value(rest, base)
                if v is not None and v < _U128:
                    return True
    if not unpositive.startswith(("+", "-")) and not _digits_but_not_number(s):
        if unpositive.isascii() and unpositive.isdigit() and int(unpositive) < _U128:
            return True
    for prefix, base in _RADIX.items():  # parse_negative_int
        if s.startswith("-" + prefix):
            v = _radix_value(s[3:], base)
            if v is not None and not s[3:].startswith("+") and -v >= _I128_MIN:
                return True
    if not _digits_but_not_number(s) and re.fullmatch(r"[+-]?\d+", s) and s.isascii():
        return _I128_MIN <= int(s) < _U128
    return False


def serde_types_it(s: str) -> bool:
    """True when serde_yaml would read the plain scalar ``s`` as something other than a string."""
    if s in ("", "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE"):
        return True
    if _int(s) or _digits_but_not_number(s):
        return True
    unpositive = s[1:] if s.startswith("+") and s[1:2] not in ("+", "-") else s
    if unpositive in (".inf", ".Inf", ".INF") or s in ("-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"):
        return True
    if _FLOAT.fullmatch(unpositive) or re.fullmatch(r"[+-]?(inf|infinity|nan)", unpositive, re.I):
        try:
            return float(unpositive) not in (float("inf"), float("-inf")) and unpositive.lower().lstrip(
                "+-"
            ) not in ("nan", "inf", "infinity")
        except ValueError:
            return False
    return False


def _plain_ok(s: str) -> bool:
    """libyaml's analysis for a plain scalar in block context (the subset the tools' strings can reach)."""
    if s[0] in "#,[]{}&*!|>'\"%@`" or (s[0] in "?:-" and (len(s) == 1 or s[1] in " \t")):
        return False
    if s.startswith(("---", "...")) or s[0] in " \t" or s[-1] in " \t" or s.endswith(":"):
        return False
    if ": " in s or ":\t" in s or " #" in s or "\t#" in s:
        return False
    return all(c.isprintable() for c in s)


def yaml_scalar(v: Any) -> str:
    """The scalar serde_yaml writes for ``v``: strings as described above, other values as their text."""
    if not isinstance(v, str):
        return str(v)
    if serde_types_it(v) or not _plain_ok(v):
        return "'" + v.replace("'", "''") + "'"
    return v

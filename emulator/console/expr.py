"""Address and value expressions typed at the console: numbers, registers, symbols, ``[addr]``, ``+``/``-``.

Grammar: ``expr := term (('+' | '-') term)*``; ``term := NUMBER | REGISTER | SYMBOL | '[' expr ']' |
'(' expr ')'``. Numbers are decimal or ``0x`` hex (``_`` separators allowed). Registers: ``r0``-``r15``
(also ``%r2``, ``$r2``, ``gr2``), ``sp`` (r15), ``pc``/``psw.addr``, ``psw.mask``, ``cr0``-``cr15``,
``a0``-``a15``. ``[e]`` reads the doubleword at virtual address ``e`` through the selected CPU's DAT.
Every mistake raises ``ConsoleError`` with one line saying what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from emulator.console.errors import ConsoleError

__all__ = ["evaluate", "register_value", "REGISTER_NAMES"]

REGISTER_NAMES: Final = (
    [f"r{i}" for i in range(16)]
    + [f"cr{i}" for i in range(16)]
    + [f"a{i}" for i in range(16)]
    + ["pc", "sp", "psw.mask", "psw.addr"]
)

_TOKEN: Final = re.compile(r"\s*(?:(\[|\]|\(|\)|\+|-)|([A-Za-z0-9_.$%@]+))")


def register_value(cpu: object, name: str) -> int | None:
    """The value of a register by name on ``cpu``, or None when ``name`` is not a register."""
    n = name.lower().lstrip("%$")
    if n.startswith("gr"):
        n = n[1:]
    if n == "pc" or n == "psw.addr":
        return int(cpu.pc)  # type: ignore[attr-defined]
    if n == "psw.mask":
        return int(cpu.psw[0])  # type: ignore[attr-defined]
    if n == "sp":
        return int(cpu.gpr(15))  # type: ignore[attr-defined]
    m = re.fullmatch(r"(r|cr|c|a)(\d{1,2})", n)
    if m and int(m.group(2)) < 16:
        i = int(m.group(2))
        kind = m.group(1)
        if kind == "r":
            return int(cpu.gpr(i))  # type: ignore[attr-defined]
        if kind in ("cr", "c"):
            return int(cpu.cr(i))  # type: ignore[attr-defined]
        return int(cpu.ar(i))  # type: ignore[attr-defined]
    return None


def parse_number(text: str) -> int | None:
    """A decimal or 0x-hex literal, or None when ``text`` is not one."""
    t = text.replace("_", "")
    try:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[0-9]+", t):
            return int(t, 10)
    except ValueError:
        return None
    return None


def evaluate(
    text: str,
    cpu: object | None,
    symbols: dict[str, int],
    read_u64: Callable[[int], int] | None = None,
) -> int:
    """Evaluate an expression to a 64-bit value (a negative result is taken as its two's complement).

    Raises:
        ConsoleError: an empty or malformed expression, an unknown name, a bad number, an unreadable
            ``[address]``, a result that does not fit in 64 bits.
    """
    src = text.strip()
    if not src:
        raise ConsoleError("missing address or value")
    tokens: list[str] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise ConsoleError(f"cannot read {src!r}: unexpected {src[pos:].strip()[:1]!r}")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
        while pos < len(src) and src[pos].isspace():
            pos += 1
    i = 0

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise ConsoleError(f"cannot read {src!r}: it ends too early")
        t = tokens[i]
        i += 1
        return t

    def term() -> int:
        t = take()
        if t == "(":
            v = expr()
            if take() != ")":
                raise ConsoleError(f"cannot read {src!r}: missing ')'")
            return v
        if t == "[":
            v = expr()
            if take() != "]":
                raise ConsoleError(f"cannot read {src!r}: missing ']'")
            if read_u64 is None:
                raise ConsoleError("memory references [..] are not available here")
            return read_u64(v)
        if t == "-":
            return -term()
        if t in ("+", ")", "]"):
            raise ConsoleError(f"cannot read {src!r}: unexpected {t!r}")
        num = parse_number(t)
        if num is not None:
            return num
        if t[0].isdigit():
            raise ConsoleError(f"bad number {t!r} (write decimal or 0x-prefixed hex)")
        if t in symbols:
            return symbols[t]
        if cpu is not None:
            reg = register_value(cpu, t)
            if reg is not None:
                return reg
        raise ConsoleError(f"unknown symbol or register {t!r}")

    def expr() -> int:
        v = term()
        while peek() in ("+", "-"):
            op = take()
            rhs = term()
            v = v + rhs if op == "+" else v - rhs
        return v

    value = expr()
    if i != len(tokens):
        raise ConsoleError(f"cannot read {src!r}: unexpected {tokens[i]!r}")
    if not -(1 << 63) <= value < 1 << 64:  # never cut to 64 bits silently (a negative one: two's complement)
        raise ConsoleError(f"{src!r} is {value:#x}, which does not fit in 64 bits")
    return value & 0xFFFFFFFFFFFFFFFF

"""Names the console shows: UV commands and response codes, SIE interceptions, program interruptions.

UV commands and response-code messages come from the Ultravisor's one table (``firmware.uv_codes``); this
module adapts them for breakpoints and completion (short names) and adds the SIE interception and
program-interruption names (``secure-execution.md`` 7.3, ``machine.md`` 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "UvCommand",
    "uv_commands",
    "uv_command",
    "rc_meaning",
    "SIE_INTERCEPTS",
    "PGM_CODES",
    "pgm_name",
]


@dataclass(frozen=True)
class UvCommand:
    """One Ultravisor call: code, title, short name (``firmware.uv_codes`` name) and callers."""

    code: int
    name: str
    short: str
    caller: str  # "host", "guest" or "host+guest"


#: SIE interception codes (section 7.3).
SIE_INTERCEPTS: Final = {
    0x04: "instruction",
    0x08: "program interruption",
    0x10: "external request",
    0x14: "external interruption",
    0x18: "I/O request",
    0x1C: "enabled wait",
    0x20: "validity",
    0x28: "stop",
    0x2C: "operation exception",
    0x38: "partial execution",
    0x40: "I/O instruction",
    0x5C: "keyless subset",
    0x60: "mask notification (machine-check mask)",
    0x64: "mask notification (CR0/CR6/CR14)",
    0x68: "PV instruction",
    0x6C: "PV notification",
    0x70: "PV prefix pages not secure",
}

#: Program-interruption codes the console names.
PGM_CODES: Final = {
    0x01: "operation",
    0x02: "privileged operation",
    0x03: "execute",
    0x04: "protection",
    0x05: "addressing",
    0x06: "specification",
    0x07: "data",
    0x08: "fixed-point overflow",
    0x09: "fixed-point divide",
    0x10: "segment translation",
    0x11: "page translation",
    0x12: "translation specification",
    0x13: "special operation",
    0x15: "operand",
    0x38: "ASCE type",
    0x39: "region-first translation",
    0x3A: "region-second translation",
    0x3B: "region-third translation",
    0x3D: "secure-storage access",
    0x3E: "non-secure-storage access",
    0x3F: "secure-storage violation",
}


def uv_commands() -> tuple[UvCommand, ...]:
    """Every UV command, from the Ultravisor's own table (``firmware.uv_codes.COMMANDS``)."""
    from firmware.uv_codes import COMMANDS

    return tuple(
        UvCommand(c.code, c.title, c.name, "+".join(sorted(c.callers))) for c in COMMANDS
    )


def uv_command(code: int) -> UvCommand | None:
    """The command with this code, or None."""
    for c in uv_commands():
        if c.code == code:
            return c
    return None


def rc_meaning(cmd: int, rc: int, rrc: int = 0) -> str:
    """What a response code means for a command (the Ultravisor's message table)."""
    from firmware.uv_codes import rc_message

    return rc_message(cmd, rc, rrc)


def pgm_name(code: int) -> str:
    """The name of a program-interruption code (PER and transaction bits ignored)."""
    return PGM_CODES.get(code & 0x7F, f"code {code:#x}")

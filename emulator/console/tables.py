"""Names the console shows: UV commands and response codes, SIE interception codes, program-interruption codes.

The Ultravisor owns the authoritative UV command table; until ``firmware`` exports one, this module carries
the public catalogue (``secure-execution.md`` sections 2.4, 3 and 7.3) so that breakpoints can be set by name
and logged calls can be explained. ``uv_commands()`` prefers the firmware's table when it is importable.
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
    """One Ultravisor call: code, name, short name (for breakpoints and completion) and caller."""

    code: int
    name: str
    short: str
    caller: str  # "host", "guest" or "host+guest"


_CATALOGUE: Final = (
    UvCommand(0x0001, "Query Ultravisor Information", "query", "host+guest"),
    UvCommand(0x0002, "Query Ultravisor Keys", "query-keys", "host"),
    UvCommand(0x000F, "Initialize Ultravisor", "init", "host"),
    UvCommand(0x0100, "Create Secure Configuration", "create-config", "host"),
    UvCommand(0x0101, "Destroy Secure Configuration", "destroy-config", "host"),
    UvCommand(0x0102, "Destroy Secure Configuration Fast", "destroy-config-fast", "host"),
    UvCommand(0x0120, "Create Secure CPU", "create-cpu", "host"),
    UvCommand(0x0121, "Destroy Secure CPU", "destroy-cpu", "host"),
    UvCommand(0x0200, "Convert to Secure Storage", "import", "host"),
    UvCommand(0x0201, "Convert from Secure Storage", "export", "host"),
    UvCommand(0x0202, "Destroy Secure Storage", "destroy-page", "host"),
    UvCommand(0x0300, "Set Secure Configuration Parameters", "set-params", "host"),
    UvCommand(0x0301, "Unpack", "unpack", "host"),
    UvCommand(0x0302, "Verify", "verify", "host"),
    UvCommand(0x0310, "Perform CPU Reset", "cpu-reset", "host"),
    UvCommand(0x0311, "Perform Initial CPU Reset", "cpu-reset-initial", "host"),
    UvCommand(0x0320, "Prepare Reset", "prepare-reset", "host"),
    UvCommand(0x0321, "Perform CPU Clear Reset", "cpu-reset-clear", "host"),
    UvCommand(0x0330, "Set CPU State", "set-cpu-state", "host"),
    UvCommand(0x0340, "Unshare All", "unshare-all", "host"),
    UvCommand(0x0341, "Pin Page Shared", "pin-shared", "host"),
    UvCommand(0x0342, "Unpin Page Shared", "unpin-shared", "host"),
    UvCommand(0x0400, "Initiate Configuration Dump", "dump-init", "host"),
    UvCommand(0x0401, "Dump Configuration Storage State", "dump-storage", "host"),
    UvCommand(0x0402, "Dump CPU State", "dump-cpu", "host"),
    UvCommand(0x0403, "Complete Configuration Dump", "dump-complete", "host"),
    UvCommand(0x1000, "Set Shared Access", "set-shared", "guest"),
    UvCommand(0x1001, "Remove Shared Access", "remove-shared", "guest"),
    UvCommand(0x1020, "Retrieve Attestation Measurement", "attest", "guest"),
    UvCommand(0x1031, "Add Secret", "add-secret", "guest"),
    UvCommand(0x1033, "List Secrets", "list-secrets", "guest"),
    UvCommand(0x1034, "Lock Secret Store", "lock-secrets", "guest"),
    UvCommand(0x1035, "Retrieve Secret", "retrieve-secret", "guest"),
)

#: Generic response codes (section 2.4); command-specific ones are >= 0x0100.
_GENERIC_RC: Final = {
    0x0001: "executed",
    0x0002: "invalid command: not installed for this caller",
    0x0003: "invalid state",
    0x0005: "invalid UVCB length",
    0x0007: "no resume",
    0x0020: "invalid configuration handle",
    0x0021: "invalid CPU handle",
    0x0030: "home address-space control has the real-space bit set",
    0x0031: "address-translation exception on an address in the UVCB",
    0x0032: "virtual address translates to an invalid address",
    0x0100: "more data than fits (not an error)",
}

#: Command-specific response codes (sections 4, 9, 10), by command code.
_SPECIFIC_RC: Final = {
    0x000F: {
        0x0101: "already initialised",
        0x0102: "more than one CPU running",
        0x0103: "storage length invalid",
        0x0104: "storage origin invalid",
        0x0105: "storage beyond memory",
        0x0108: "storage below 2 GiB",
    },
    0x0100: {
        0x0101: "MSO beyond the maximum guest address",
        0x0102: "MSO + MSL beyond the maximum guest address",
        0x0104: "ASCE already used by another configuration",
        0x0105: "ASCE invalid",
        0x0108: "base storage beyond available memory",
        0x0109: "base storage overlaps the lowcore",
        0x010C: "SCA origin is 0",
        0x010D: "SCA inaccessible",
    },
    0x0120: {
        0x0103: "CPU number too large",
        0x0104: "CPU number already defined",
        0x0105: "CPU storage inaccessible",
        0x0106: "CPU storage in the lowcore",
        0x0107: "state description inaccessible",
    },
    0x0300: {
        0x0103: "access exception on the SE header",
        0x0104: "SE header version not supported",
        0x0106: "unsupported plaintext control flag",
        0x0108: "image not encrypted for this host (no matching key slot)",
        0x0109: "unsupported secret control flag",
        0x010A: "SE header size invalid",
    },
    0x0302: {0x0102: "digest mismatch (ALD, PLD or TLD)"},
    0x1000: {0x0101: "address beyond guest memory"},
    0x1001: {0x0101: "address beyond guest memory"},
    0x1034: {0x0101: "not allowed to modify the secret store", 0x0102: "secret store already locked"},
}

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
    """Every UV command the console knows (the firmware's table when it provides ``UV_COMMANDS``)."""
    try:
        from firmware import codes  # type: ignore[import-not-found]  # noqa: PLC0415 - optional, lands later
    except ImportError:
        return _CATALOGUE
    table = getattr(codes, "UV_COMMANDS", None)
    if not table:
        return _CATALOGUE
    out = []
    shorts = {c.code: c.short for c in _CATALOGUE}
    for entry in table:
        code = int(getattr(entry, "code"))
        name = str(getattr(entry, "name", f"UVC {code:#06x}"))
        short = shorts.get(code, name.lower().replace(" ", "-"))
        out.append(UvCommand(code, name, short, str(getattr(entry, "caller", "host"))))
    return tuple(out)


def uv_command(code: int) -> UvCommand | None:
    """The command with this code, or None."""
    for c in uv_commands():
        if c.code == code:
            return c
    return None


def rc_meaning(cmd: int, rc: int) -> str:
    """What a response code means for a command ("" when the sources are silent)."""
    base = rc & 0x7FFF
    text = _SPECIFIC_RC.get(cmd, {}).get(base) if base >= 0x0100 and base != 0x0100 else None
    if text is None:
        text = _GENERIC_RC.get(base, "command-specific error" if base > 0x0100 else "")
    if rc & 0x8000:
        text += " (a handle was allocated: Destroy Secure Configuration needed)"
    return text


def pgm_name(code: int) -> str:
    """The name of a program-interruption code (PER and transaction bits ignored)."""
    return PGM_CODES.get(code & 0x7F, f"code {code:#x}")

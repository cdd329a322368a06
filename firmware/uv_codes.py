"""The Ultravisor's command table, condition codes, return codes and their messages (shared as data).

One table (``COMMANDS``) names every UVC command: code, name, control-block length, installed-calls bit
(Query), and who may call it. The firmware dispatcher, the host-side client, the console decoder and the
conformance tests all read it (the shape of ``cmds[]`` in kvm-unit-tests ``s390x/uv-host.c``).

Return codes: ``Rc`` holds the generic ones (``secure-execution.md`` 2.4); command-specific codes live in
``COMMAND_RCS`` with a message each. Codes marked "(zuv)" in a message are this emulator's choices where
the public sources are silent; ``docs/ultravisor.md`` gives the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

__all__ = [
    "Cc",
    "Rc",
    "UvCommand",
    "COMMANDS",
    "BY_CODE",
    "BY_NAME",
    "COMMAND_RCS",
    "CALLER_HOST",
    "CALLER_GUEST",
    "command",
    "rc_message",
    "describe",
    "QueryValues",
    "QUERY_VALUES",
    "QUERY_MIN_LEN",
    "QUERY_FULL_LEN",
    "PAGE_COMMANDS",
]

CALLER_HOST: Final = "host"
CALLER_GUEST: Final = "guest"
CallerKind = Literal["host", "guest"]


class Cc(IntEnum):
    """Condition codes of UVC (``secure-execution.md`` 2.2)."""

    OK = 0  #: executed, rc 0x0001
    ERROR = 1  #: ended with an rc (also rc 0x0100 "more data")
    BUSY = 2  #: nothing done, re-issue
    PARTIAL = 3  #: partially done, re-issue with the same UVCB


class Rc(IntEnum):
    """Generic response codes (``secure-execution.md`` 2.4; names as in Linux and kvm-unit-tests)."""

    EXECUTED = 0x0001
    INV_CMD = 0x0002
    INV_STATE = 0x0003
    INV_LEN = 0x0005
    NO_RESUME = 0x0007
    INV_GHANDLE = 0x0020
    INV_CHANDLE = 0x0021
    HOME_ASCE_R = 0x0030
    HOME_TRANSLATION = 0x0031
    HOME_INVALID = 0x0032
    MORE_DATA = 0x0100
    NEED_DESTROY = 0x8000


GENERIC_RC_MESSAGES: Final[dict[int, str]] = {
    Rc.EXECUTED: "executed",
    Rc.INV_CMD: "command not installed for this caller",
    Rc.INV_STATE: "invalid state",
    Rc.INV_LEN: "invalid control-block length",
    Rc.NO_RESUME: "cannot resume",
    Rc.INV_GHANDLE: "invalid secure-configuration handle",
    Rc.INV_CHANDLE: "invalid secure-CPU handle",
    Rc.HOME_ASCE_R: "home address-space control has the R bit set",
    Rc.HOME_TRANSLATION: "address-translation exception on an address in the control block",
    Rc.HOME_INVALID: "virtual address translates to an invalid address",
    Rc.MORE_DATA: "more data available than the control block holds",
}


@dataclass(frozen=True)
class UvCommand:
    """One UVC command: ``secure-execution.md`` section 3.

    Attributes:
        code: the command code (UVCB header ``cmd``).
        name: short name (Linux ``UVC_CMD_*`` without the prefix, lower case).
        title: the architecture's name.
        length: control-block length the UV requires (Query: its full length; shorter is allowed).
        bit: installed-calls bit in the Query answer (MSB0 over 256 bits), None if the command has none.
        callers: who may issue it: ``{"host"}``, ``{"guest"}`` or both.
        implemented: False for commands that have a table row but no handler yet (they answer rc 0x0002
            and are not reported by Query, so Query never claims what the UV cannot do).
        struct: name of the control-block layout in ``firmware.uv_blocks``.
    """

    code: int
    name: str
    title: str
    length: int
    bit: int | None
    callers: frozenset[str]
    implemented: bool = True
    struct: str = ""

    def allowed(self, kind: str) -> bool:
        """True if a caller of this kind may issue the command (and it is implemented)."""
        return self.implemented and kind in self.callers


_H = frozenset({CALLER_HOST})
_G = frozenset({CALLER_GUEST})
_HG = frozenset({CALLER_HOST, CALLER_GUEST})

#: Commands that change a frame's owner tag, shared flag or contents where a CPU may hold a translation of it
#: (storage donated and released, conversions to and from secure storage, Unpack, sharing and pinning,
#: a configuration's pages released): the dispatcher takes every CPU out of its run for the whole command
#: (``PhysicalMemory.quiesced``) before the handler changes anything, so the command is atomic with
#: respect to every CPU (issue 18, class 4).
PAGE_COMMANDS: Final = frozenset({
    0x000F, 0x0100, 0x0101, 0x0102, 0x0120, 0x0121,  # init, create/destroy configuration and CPU
    0x0200, 0x0201, 0x0202, 0x0301,  # convert to/from secure storage, destroy secure storage, unpack
    0x0340, 0x0341, 0x0342, 0x1000, 0x1001,  # unshare all, pin, unpin, set/remove shared access
})

#: Query's full (current Linux) length and the shortest length it accepts (5.1).
QUERY_FULL_LEN: Final = 0x120
QUERY_MIN_LEN: Final = 0xA8

COMMANDS: Final[tuple[UvCommand, ...]] = (
    UvCommand(0x0001, "qui", "Query Ultravisor Information", QUERY_FULL_LEN, 0, _HG, struct="UvCbQui"),
    UvCommand(0x0002, "query_keys", "Query Ultravisor Keys", 0x200, 34, _H, struct="UvCbQueryKeys"),
    UvCommand(0x000F, "init_uv", "Initialize Ultravisor", 0x48, 1, _H, struct="UvCbInit"),
    UvCommand(0x0100, "create_sec_conf", "Create Secure Configuration", 0x80, 2, _H, struct="UvCbCgc"),
    UvCommand(0x0101, "destroy_sec_conf", "Destroy Secure Configuration", 0x40, 3, _H, struct="UvCbNodata"),
    UvCommand(
        0x0102,
        "destroy_sec_conf_fast",
        "Destroy Secure Configuration Fast",
        0x48,
        23,
        _H,
        struct="UvCbDestroyFast",
    ),
    UvCommand(0x0120, "create_sec_cpu", "Create Secure CPU", 0x60, 4, _H, struct="UvCbCsc"),
    UvCommand(0x0121, "destroy_sec_cpu", "Destroy Secure CPU", 0x40, 5, _H, struct="UvCbNodata"),
    UvCommand(0x0200, "conv_to_sec_stor", "Convert to Secure Storage", 0x28, 6, _H, struct="UvCbCts"),
    UvCommand(0x0201, "conv_from_sec_stor", "Convert from Secure Storage", 0x20, 7, _H, struct="UvCbCfs"),
    UvCommand(0x0202, "destr_sec_stor", "Destroy Secure Storage", 0x20, 12, _H, struct="UvCbCfs"),
    UvCommand(
        0x0300, "set_sec_conf_params", "Set Secure Configuration Parameters", 0x50, 11, _H, struct="UvCbSsc"
    ),
    UvCommand(0x0301, "unpack_img", "Unpack", 0x50, 13, _H, struct="UvCbUnp"),
    UvCommand(0x0302, "verify_img", "Verify", 0x40, 14, _H, struct="UvCbNodata"),
    UvCommand(0x0310, "cpu_reset", "Perform CPU Reset", 0x40, 15, _H, struct="UvCbNodata"),
    UvCommand(0x0311, "cpu_reset_initial", "Perform Initial CPU Reset", 0x40, 16, _H, struct="UvCbNodata"),
    UvCommand(0x0320, "prepare_reset", "Prepare Reset", 0x40, 18, _H, struct="UvCbNodata"),
    UvCommand(0x0321, "cpu_reset_clear", "Perform CPU Clear Reset", 0x40, 19, _H, struct="UvCbNodata"),
    UvCommand(0x0330, "cpu_set_state", "Set CPU State", 0x50, 17, _H, struct="UvCbCpuSetState"),
    UvCommand(0x0340, "set_unshare_all", "Unshare All", 0x40, 20, _H, struct="UvCbNodata"),
    UvCommand(0x0341, "pin_page_shared", "Pin Page Shared", 0x20, 21, _H, struct="UvCbCfs"),
    UvCommand(0x0342, "unpin_page_shared", "Unpin Page Shared", 0x28, 22, _H, struct="UvCbCts"),
    UvCommand(0x0400, "dump_init", "Initiate Configuration Dump", 0x40, 24, _H, struct="UvCbNodata"),
    UvCommand(
        0x0401,
        "dump_conf_stor_state",
        "Dump Configuration Storage State",
        0x50,
        25,
        _H,
        struct="UvCbDumpStorState",
    ),
    UvCommand(0x0402, "dump_cpu", "Dump CPU State", 0x50, 26, _H, struct="UvCbDumpCpu"),
    UvCommand(
        0x0403, "dump_complete", "Complete Configuration Dump", 0x50, 27, _H, struct="UvCbDumpComplete"
    ),
    UvCommand(0x1000, "set_shared_access", "Set Shared Access", 0x30, 8, _G, struct="UvCbShare"),
    UvCommand(0x1001, "remove_shared_access", "Remove Shared Access", 0x30, 9, _G, struct="UvCbShare"),
    UvCommand(0x1020, "retr_attest", "Retrieve Attestation Measurement", 0x188, 28, _G, struct="UvCbAttest"),
    UvCommand(0x1031, "add_secret", "Add Secret", 0x48, 29, _G, struct="UvCbGuestAddr"),
    UvCommand(0x1033, "list_secrets", "List Secrets", 0x48, 30, _G, struct="UvCbListSecrets"),
    UvCommand(0x1034, "lock_secrets", "Lock Secret Store", 0x40, 31, _G, struct="UvCbNodata"),
    UvCommand(0x1035, "retr_secret", "Retrieve Secret", 0x48, 33, _G, struct="UvCbRetrSecret"),
    # zuv's own (not architected): 0x1Fxx guest commands, Query bit 63; docs/attestation.md
    UvCommand(
        0x1F20,
        "retr_attest_evidence",
        "Retrieve Attestation Measurement and Signed Evidence (zuv)",
        0x188,
        63,
        _G,
        struct="UvCbAttest",
    ),
)

BY_CODE: Final[dict[int, UvCommand]] = {c.code: c for c in COMMANDS}
BY_NAME: Final[dict[str, UvCommand]] = {c.name: c for c in COMMANDS}
assert len(BY_CODE) == len(COMMANDS) and len(BY_NAME) == len(COMMANDS)
assert len({c.bit for c in COMMANDS}) == len(COMMANDS)


def command(code_or_name: int | str) -> UvCommand:
    """Look a command up by code or short name.

    Raises:
        KeyError: not a command of the table.
    """
    if isinstance(code_or_name, str):
        return BY_NAME[code_or_name]
    return BY_CODE[code_or_name]


_ATTEST_RCS: Final[dict[int, str]] = {
        0x0101: "invalid continuation token specified",
        0x0102: "user data length is greater than 256",
        0x0103: "access exception on the attestation request control block",
        0x0104: "access exception on the measurement data area",
        0x0105: "access exception on the additional data area",
        0x0106: "unsupported attestation request version",
        0x0107: "invalid attestation request length for the request version",
        0x0108: "number of key slots is 0 or above the version's maximum",
        0x0109: "size of the encrypted area does not match the measurement key plus optional items",
        0x010A: "unsupported plaintext attestation flag set",
        0x010B: "unsupported measurement algorithm",
        0x010C: "unable to decrypt the attestation request (no key slot for this machine, or tag mismatch)",
        0x010D: "measurement data length too small for the measurement",
        0x010E: "additional data length too small for the requested additional data",
    }

#: Command-specific response codes (>= 0x0100). "(zuv)" marks this emulator's choices.
COMMAND_RCS: Final[dict[int, dict[int, str]]] = {
    0x0001: {0x0100: "control block shorter than the full answer; what fits was stored"},
    0x000F: {
        0x0101: "Ultravisor already initialized",
        0x0102: "other CPUs are running (stop them first)",
        0x0103: "storage length is not the length Query reports",
        0x0104: "storage origin invalid (beyond memory, or not on a 4 KiB boundary (zuv))",
        0x0105: "storage origin + length beyond memory",
        0x0106: "storage holds a SIE page the host uses in place (zuv)",
        0x0108: "storage below 2 GiB",
    },
    0x0100: {
        0x0101: "guest storage origin (MSO) beyond the maximum guest address",
        0x0102: "MSO + MSL beyond the maximum guest address",
        0x0103: "guest storage length zero or not a multiple of 1 MiB (zuv)",
        0x0104: "guest ASCE already used by another secure configuration",
        0x0105: "guest ASCE invalid (private-space bit missing or bit 58 set)",
        0x0106: "base storage is not host storage (already donated or secure) (zuv)",
        0x0107: "maximum number of secure configurations reached (zuv)",
        0x0108: "base storage origin invalid (beyond memory, or not on a 4 KiB boundary (zuv))",
        0x0109: "base storage overlaps a lowcore",
        0x010A: (
            "variable storage inaccessible (translation, beyond memory, alignment, not host storage, or a SIE"
            " page the host uses in place) (zuv)"
        ),
        0x010C: "SCA origin is zero",
        0x010D: "SCA inaccessible",
        0x010E: "variable storage overlaps a lowcore",
    },
    0x0101: {0x0102: "secure CPUs of the configuration still exist (zuv)"},
    0x0102: {0x0102: "secure CPUs of the configuration still exist (zuv)"},
    0x0120: {
        0x0103: "CPU number above the maximum",
        0x0104: "CPU number already defined in the configuration",
        0x0105: "CPU storage inaccessible (beyond memory, alignment, or not host storage)",
        0x0106: "CPU storage overlaps a lowcore",
        0x0107: "state description inaccessible",
    },
    0x0200: {
        0x0101: "guest address beyond the secure guest's storage (zuv)",
        0x0104: "guest page already secure for this configuration",
        0x0105: (
            "frame is in a conflicting secure state (donated, other configuration, other guest address) (zuv)"
        ),
        0x0107: "integrity check of the exported page failed: modified, swapped or replayed (zuv)",
        0x010A: "guest address not mapped, invalid or write-protected in the configuration's ASCE",
    },
    0x0201: {
        0x0104: "page address beyond memory (zuv)",
        0x0105: "frame is Ultravisor-donated storage (zuv)",
        0x0106: "page of a destroyed configuration: destroy it instead (zuv)",
        0x0107: "page not secure",
    },
    0x0202: {
        0x0104: "page address beyond memory (zuv)",
        0x0105: "frame is Ultravisor-donated storage (zuv)",
        0x0107: "page not secure",
    },
    0x0300: {
        0x0103: "access exception on the SE header",
        0x0104: "SE header version not supported",
        0x0106: "unsupported plaintext control flag set",
        0x0107: "secure configuration parameters already set (zuv)",
        0x0108: "SE header not encrypted for this host (key slot, customer key or tag)",
        0x0109: "unsupported secret control flag set",
        0x010A: "SE header size or layout invalid",
    },
    0x0301: {
        0x0101: "guest address beyond the secure guest's storage (zuv)",
        0x0104: "guest page already secure (zuv)",
        0x0105: "frame is in a conflicting secure state (zuv)",
        0x010A: "guest address not mapped, invalid or write-protected in the configuration's ASCE (zuv)",
    },
    0x0302: {0x0102: "image verification failed (rrc: 0x1A ALD, 0x1B PLD, 0x1C TLD, 0x1D page count)"},
    0x0330: {0x0101: "unsupported CPU state (zuv)"},
    0x0341: {
        0x0104: "page address beyond memory (zuv)",
        0x0105: "frame is Ultravisor-donated storage (zuv)",
        0x0107: "page not secure",
        0x0108: "page is secure but not shared (zuv)",
    },
    0x0342: {
        0x0101: "guest address beyond the secure guest's storage (zuv)",
        0x0104: "guest page is not shared (zuv)",
        0x010A: "guest address not mapped in the configuration's ASCE (zuv)",
    },
    0x0400: {0x0101: "the SE header does not allow dumping (zuv)"},
    0x0401: {
        0x0102: "guest address not 1 MiB aligned or beyond guest storage (zuv)",
        0x0103: "access exception on the dump area (zuv)",
    },
    0x0402: {0x0103: "access exception on the dump area (zuv)"},
    0x0403: {0x0103: "access exception on the dump area (zuv)"},
    0x1000: {0x0101: "address beyond guest memory"},
    0x1001: {0x0101: "address beyond guest memory"},
    0x1020: _ATTEST_RCS,
    0x1F20: {
        **_ATTEST_RCS,
        0x0110: "this machine has no attestation key (zuv)",
        0x0111: "evidence area too small (zuv)",
        0x0112: "access exception on the evidence area (zuv)",
    },
    0x1031: {
        0x0101: (
            "not allowed to modify the secret store (rrc: 1 image, 2 CUID, 3 extension secret, 4 CCK update)"
        ),
        0x0102: "secret store locked",
        0x0103: "access exception on the add-secret request",
        0x0104: "unsupported add-secret request version",
        0x0105: "invalid request size",
        0x0106: "invalid number of host keys",
        0x0107: "unsupported flags specified",
        0x0108: "unable to decrypt the request",
        0x0109: "unsupported secret type",
        0x010A: "invalid length for the secret type",
        0x010B: "secret store full",
        0x010C: "unable to add the secret (a secret with this ID exists) (zuv)",
        0x010D: "dump in progress, try again later",
    },
    0x1033: {
        0x0100: "more secrets than fit into the page",
        0x0102: "access exception on the list page (zuv)",
    },
    0x1034: {0x0102: "secret store already locked"},
    0x1035: {
        0x0102: "access exception on the secret buffer",
        0x0109: "buffer too small for the secret",
        0x010F: "the secret store is empty",
        0x0110: "no secret with the specified index",
        0x0111: "the secret is not retrievable",
    },
}

#: Reason codes with their own messages: (command, rc, rrc).
RRC_MESSAGES: Final[dict[tuple[int, int, int], str]] = {
    (0x0302, 0x0102, 0x001A): "address-list digest (ALD) mismatch",
    (0x0302, 0x0102, 0x001B): "page-list digest (PLD) mismatch",
    (0x0302, 0x0102, 0x001C): "tweak-list digest (TLD) mismatch",
    (0x0302, 0x0102, 0x001D): "number of encrypted pages mismatch",
    (0x0300, 0x0104, 0x0001): "SE header version not supported",
    (0x0300, 0x0106, 0x0030): "unsupported plaintext control flag (PCF) set",
    (0x0300, 0x0108, 0x0005): "no key slot matches an installed host key",
    (0x0300, 0x0108, 0x000B): "customer ECDH public key invalid",
    (0x0300, 0x0108, 0x0034): "backup host key hash mismatch",
    (0x0300, 0x010A, 0x0031): "header size mismatch",
    (0x0300, 0x010A, 0x0039): "size of the encrypted area invalid",
    (0x0300, 0x010A, 0x0040): "no key slots in the header",
    (0x1031, 0x0101, 0x0001): "the request is for another image (PLD/ALD/TLD/header tag) (zuv)",
    (0x1031, 0x0101, 0x0002): "the request is for another guest instance (CUID) (zuv)",
    (0x1031, 0x0101, 0x0003): "the extension secret differs from the one this store requires (zuv)",
    (0x1031, 0x0101, 0x0004): "the SE header does not allow a CCK update (SCF bit 2) (zuv)",
}

#: Known hints, as QEMU adds one for Init rc 0x0108.
RC_HINTS: Final[dict[tuple[int, int], str]] = {
    (0x000F, 0x0108): "the Ultravisor base storage must lie at or above 2 GiB",
    (0x0200, 0x010A): "resolve the host mapping of the guest page, then retry",
    (0x0100, 0x0104): "each secure configuration needs its own guest ASCE",
}


def rc_message(cmd: int, rc: int, rrc: int = 0) -> str:
    """The message for a response code of a command (generic codes, then per command)."""
    base = rc & ~Rc.NEED_DESTROY
    msg = RRC_MESSAGES.get((cmd, base, rrc))
    if msg is None:
        msg = COMMAND_RCS.get(cmd, {}).get(base) or GENERIC_RC_MESSAGES.get(base)
    if msg is None:
        msg = "unknown response code"
    if rc & Rc.NEED_DESTROY:
        msg += " (a handle was allocated: destroy the configuration)"
    return msg


def describe(cmd: int, rc: int, rrc: int = 0) -> str:
    """One line naming the command, the rc/rrc and what they mean, plus a hint when one is known."""
    c = BY_CODE.get(cmd)
    name = f"{c.title} ({cmd:#06x})" if c else f"unknown command {cmd:#06x}"
    text = f"{name}: rc {rc:#06x} rrc {rrc:#06x}: {rc_message(cmd, rc, rrc)}"
    hint = RC_HINTS.get((cmd, rc & ~Rc.NEED_DESTROY))
    return f"{text} (hint: {hint})" if hint else text


# -- the values Query reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryValues:
    """The machine-specific numbers Query reports (section 5.2); zuv's choices, see ``docs/ultravisor.md``."""

    uv_base_stor_len: int = 0x200000
    conf_base_phys_stor_len: int = 0x4000
    conf_base_virt_stor_len: int = 0x2000
    conf_virt_var_stor_len: int = 0x1000
    cpu_stor_len: int = 0x1000
    max_num_sec_conf: int = 0x7FFFFF
    max_guest_stor_addr: int = 0x800000000000
    max_guest_cpu_id: int = 247
    uv_feature_indications: int = 1 << 63  # bit 0: MISC
    supp_se_hdr_versions: int = 1 << 63  # bit 0: version 0x0100
    supp_se_hdr_pcf: int = 0x300050F3  # 0x300050E3 (s390-tools sample) + bit 59 PCKMO-HMAC
    conf_dump_storage_state_len: int = 0x1000
    conf_dump_finalize_len: int = 0x1000
    supp_att_req_hdr_ver: int = 1 << 63
    supp_att_pflags: int = 0x7C00000000000000  # bits 1-5
    supp_add_secret_req_ver: int = 1 << 63
    supp_add_secret_pcf: int = 1 << 63  # bit 0: disable dumping
    supp_secret_types: int = sum(1 << (63 - t) for t in (*range(1, 11), *range(0x11, 0x17)))
    max_assoc_secrets: int = 16
    max_retr_secrets: int = 16

    def var_stor_len(self, guest_stor_len: int) -> int:
        """Variable storage for a configuration of ``guest_stor_len`` bytes, rounded up to a page (4.2)."""
        n = self.conf_base_virt_stor_len + self.conf_virt_var_stor_len * (guest_stor_len >> 20)
        return (n + 0xFFF) & ~0xFFF


QUERY_VALUES: Final = QueryValues()


def installed_calls(kind: str) -> tuple[int, int, int, int]:
    """The installed-calls bitmap a caller of ``kind`` sees: only its own, implemented commands."""
    words = [0, 0, 0, 0]
    for c in COMMANDS:
        if c.bit is not None and c.allowed(kind):
            words[c.bit // 64] |= 1 << (63 - c.bit % 64)
    return words[0], words[1], words[2], words[3]

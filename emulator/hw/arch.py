"""The z/Architecture facts a CPU model needs as data: PSW and control-register bits, lowcore offsets,
program-interruption codes, CPU states, addressing-mode wrap, prefixing and PSW validity."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASC_ACCESS_REG",
    "ASC_HOME",
    "ASC_PRIMARY",
    "ASC_SECONDARY",
    "CHECK_STOP",
    "CR0_CKC_SC",
    "CR0_CPU_TIMER_SC",
    "CR0_EDAT",
    "CR0_EMERGENCY_SC",
    "CR0_EXTERNAL_CALL_SC",
    "CR0_FPO",
    "CR0_IEP",
    "CR0_LAP",
    "CR0_SERVICE_SC",
    "CR0_SPO",
    "CR14_CHANNEL_REPORT_SC",
    "ILC_FOR",
    "LC_DXC",
    "LC_EXT_CODE",
    "LC_EXT_CPU_ADDR",
    "LC_EXT_NEW",
    "LC_EXT_OLD",
    "LC_EXT_PARAM",
    "LC_IO_NEW",
    "LC_IO_OLD",
    "LC_IO_SID",
    "LC_MCESAD",
    "LC_MCIC",
    "LC_MCK_NEW",
    "LC_MCK_OLD",
    "LC_PGM_CODE",
    "LC_PGM_ILC",
    "LC_PGM_NEW",
    "LC_PGM_OLD",
    "LC_RESTART_NEW",
    "LC_RESTART_OLD",
    "LC_STFL",
    "LC_SVC_CODE",
    "LC_SVC_ILC",
    "LC_SVC_NEW",
    "LC_SVC_OLD",
    "LC_TEID",
    "MCIC_CP",
    "MCIC_VALID",
    "MCIC_VR",
    "NULLIFYING",
    "OPERATING",
    "PGM_EXECUTE",
    "PGM_OPERATION",
    "PGM_PRIVILEGED",
    "PGM_SPECIFICATION",
    "PSW_MASK_64",
    "PSW_MASK_ASC",
    "PSW_MASK_BA",
    "PSW_MASK_BIT12",
    "PSW_MASK_CC",
    "PSW_MASK_DAT",
    "PSW_MASK_EA",
    "PSW_MASK_EXT",
    "PSW_MASK_FPO",
    "PSW_MASK_IO",
    "PSW_MASK_KEY",
    "PSW_MASK_MCHECK",
    "PSW_MASK_PER",
    "PSW_MASK_PSTATE",
    "PSW_MASK_RESERVED",
    "PSW_MASK_WAIT",
    "STOPPED",
    "prefixed",
    "psw_invalid",
    "wrap_address",
]

# -- PSW and control-register bits (PoP numbering: bit 0 is the most significant) ----------------------
PSW_MASK_PER: Final = 1 << 62
PSW_MASK_DAT: Final = 1 << 58
PSW_MASK_IO: Final = 1 << 57
PSW_MASK_EXT: Final = 1 << 56
PSW_MASK_KEY: Final = 0xF << 52
PSW_MASK_BIT12: Final = 1 << 51
PSW_MASK_MCHECK: Final = 1 << 50
PSW_MASK_WAIT: Final = 1 << 49
PSW_MASK_PSTATE: Final = 1 << 48
PSW_MASK_ASC: Final = 3 << 46
PSW_MASK_CC: Final = 3 << 44
PSW_MASK_FPO: Final = 1 << 43  # program mask bit 20: fixed-point overflow
PSW_MASK_EA: Final = 1 << 32
PSW_MASK_BA: Final = 1 << 31
PSW_MASK_64: Final = PSW_MASK_EA | PSW_MASK_BA
#: bits that must be zero in a 64-bit PSW mask (PoP bits 0, 2-4, 25-30 and 33-63; bit 12 is checked apart)
PSW_MASK_RESERVED: Final = (1 << 63) | (0x7 << 59) | (0x3F << 33) | 0x7FFFFFFF

ASC_PRIMARY: Final = 0
ASC_ACCESS_REG: Final = 1
ASC_SECONDARY: Final = 2
ASC_HOME: Final = 3

CR0_IEP: Final = 1 << 20  # instruction-execution protection (bit 43)
CR0_LAP: Final = 1 << 28
CR0_FPO: Final = 1 << 25
CR0_SPO: Final = 1 << 24
CR0_EDAT: Final = 1 << 23
CR0_EMERGENCY_SC: Final = 1 << 14
CR0_EXTERNAL_CALL_SC: Final = 1 << 13
CR0_CKC_SC: Final = 1 << 11
CR0_CPU_TIMER_SC: Final = 1 << 10
CR0_SERVICE_SC: Final = 1 << 9
CR14_CHANNEL_REPORT_SC: Final = 1 << 28  # bit 35: channel-report-pending subclass mask
LC_MCIC: Final = 0xE8  # machine-check interruption code (u64)
LC_MCESAD: Final = 0x11B0  # machine-check extended save area designation (u64)
#: machine-check interruption code: channel report pending (bit 9) and the validity bits of what the
#: interruption stores (PSW 20-23, FPRs 27, GRs 28, CRs 29, storage 31, ARs 33, TOD programmable 42, FPC 43,
#: CPU timer 46, clock comparator 47)
MCIC_CP: Final = 1 << (63 - 9)
MCIC_VR: Final = 1 << (63 - 25)
MCIC_VALID: Final = sum(1 << (63 - b) for b in (20, 21, 22, 23, 27, 28, 29, 31, 33, 42, 43, 46, 47))

LC_EXT_PARAM: Final = 0x80
LC_EXT_CPU_ADDR: Final = 0x84
LC_EXT_CODE: Final = 0x86
LC_SVC_ILC: Final = 0x88
LC_SVC_CODE: Final = 0x8A
LC_PGM_ILC: Final = 0x8C
LC_PGM_CODE: Final = 0x8E
LC_DXC: Final = 0x90
LC_TEID: Final = 0xA8
LC_STFL: Final = 0xC8
LC_RESTART_OLD: Final = 0x120
LC_EXT_OLD: Final = 0x130
LC_SVC_OLD: Final = 0x140
LC_PGM_OLD: Final = 0x150
LC_MCK_OLD: Final = 0x160
LC_IO_OLD: Final = 0x170
LC_IO_SID: Final = 0xB8  # subsystem-identification word, then the interruption parameter and id word
LC_RESTART_NEW: Final = 0x1A0
LC_EXT_NEW: Final = 0x1B0
LC_SVC_NEW: Final = 0x1C0
LC_PGM_NEW: Final = 0x1D0
LC_MCK_NEW: Final = 0x1E0
LC_IO_NEW: Final = 0x1F0

PGM_OPERATION: Final = 0x01
PGM_PRIVILEGED: Final = 0x02
PGM_EXECUTE: Final = 0x03
PGM_SPECIFICATION: Final = 0x06

#: Program-interruption codes after which the old PSW points *at* the instruction (machine.md section 3).
NULLIFYING: Final = frozenset(
    {0x10, 0x11, 0x16, 0x18, 0x1B, 0x1C, 0x38, 0x39, 0x3A, 0x3B, 0x3D, 0x3E, 0x119}
    | set(range(0x20, 0x30))
    | set(range(0x30, 0x35))
)


def ILC_FOR(first_byte: int) -> int:  # noqa: N802 - the architecture's name
    """Instruction length in bytes from the first opcode byte (bits 0-1: 00 -> 2, 01/10 -> 4, 11 -> 6)."""
    return (2, 4, 4, 6)[first_byte >> 6]

STOPPED: Final = "stopped"
OPERATING: Final = "operating"
CHECK_STOP: Final = "check-stop"


def wrap_address(mask: int, addr: int) -> int:
    """``addr`` wrapped to the addressing mode of a PSW with this mask (24, 31 or 64 bits)."""
    if mask & PSW_MASK_EA:
        return addr & 0xFFFFFFFFFFFFFFFF
    if mask & PSW_MASK_BA:
        return addr & 0x7FFFFFFF
    return addr & 0xFFFFFF


def prefixed(real: int, prefix: int) -> int:
    """The absolute address of a real address under this prefix: the two 4 KiB pages at real 0 and at the
    prefix swap places."""
    if real < 0x2000:
        return real + prefix
    if prefix <= real < prefix + 0x2000:
        return real - prefix
    return real


def psw_invalid(mask: int, addr: int) -> str:
    """Why a 64-bit PSW is invalid when loaded ("" when it is valid).

    An odd instruction address is not checked here: it is recognised on instruction fetch (late), so a
    wait PSW such as QEMU's ``0xfff`` shutdown code is valid.
    """
    if mask & PSW_MASK_BIT12:
        return "bit 12 is one"
    if mask & PSW_MASK_EA and not mask & PSW_MASK_BA:
        return "extended addressing without basic addressing"
    if mask & PSW_MASK_RESERVED:
        return "reserved mask bits are one"
    if not mask & PSW_MASK_EA and addr >> (31 if mask & PSW_MASK_BA else 24):
        return "address beyond the addressing mode"
    return ""

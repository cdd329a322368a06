"""Channel-subsystem control blocks as fixed big-endian records named after the Principles of Operation.

PMCW, SCSW and SCHIB (STSCH/MSCH), ORB (SSCH), CCW formats 0 and 1, IRB (TSCH), the channel-report word
and the measurement blocks. Each record is a ``ctypes.BigEndianStructure`` with the field offset in a
comment and its size asserted at import time; flag words stay whole (their bits are the constants below,
named as in the PoP chapter "I/O Instructions"). ``parse(cls, data)`` builds one from bytes and
``bytes(record)`` packs it.
"""

from __future__ import annotations

import ctypes
from typing import Final, TypeVar

from emulator.hw.records import Record, u8, u16, u32, u64

__all__ = [
    "Pmcw",
    "Scsw",
    "Schib",
    "Orb",
    "Ccw0",
    "Ccw1",
    "Irb",
    "MeasurementBlock0",
    "MeasurementBlock1",
    "parse",
]

_Block = Record  # every layout below derives from the one record base (``emulator.hw.records``)


# -- PMCW (path-management-control word), word 1 flags (bits 0-15 of the halfword at 0x04) -----------------
PMCW_Q: Final = 0x8000  # bit 0: QDIO facility in use (never for zuv's devices)
PMCW_W: Final = 0x4000  # bit 1: reserved for MSCH (must be zero)
PMCW_ISC: Final = 0x3800  # bits 2-4: interruption subclass
PMCW_ISC_SHIFT: Final = 11
PMCW_RES5: Final = 0x0400  # bit 5: ignored by MSCH, stored as zero by STSCH
PMCW_RES67: Final = 0x0300  # bits 6-7: must be zero for MSCH
PMCW_E: Final = 0x0080  # bit 8: enabled
PMCW_LM: Final = 0x0060  # bits 9-10: limit mode
PMCW_MM: Final = 0x0018  # bits 11-12: measurement mode (MBUE, DCTME)
PMCW_MBUE: Final = 0x0010
PMCW_DCTME: Final = 0x0008
PMCW_MP: Final = 0x0004  # bit 13: multipath mode
PMCW_T: Final = 0x0002  # bit 14: timing facility
PMCW_V: Final = 0x0001  # bit 15: device number valid
#: the word-1 flags MSCH takes from the SCHIB (the rest are the model's)
PMCW_MSCH_FLAGS: Final = PMCW_ISC | PMCW_E | PMCW_LM | PMCW_MM | PMCW_MP

# PMCW word 6 (0x18): subchannel type and the measurement/sense characteristics
PMCW_ST: Final = 0x00E00000  # bits 8-10: subchannel type (0 = I/O)
PMCW_MBFC: Final = 0x00000004  # bit 29: measurement-block format control (format 1)
PMCW_XMWME: Final = 0x00000002  # bit 30: extended measurement-word mode enable
PMCW_CSENSE: Final = 0x00000001  # bit 31: concurrent sense
#: word-6 bits MSCH requires to be zero (everything but the subchannel type and bits 29-31)
PMCW_CHARS_RESERVED: Final = 0xFF1FFFF8


class Pmcw(_Block):
    """Path-management-control word (PoP "Subchannel-Information Block"), 28 bytes."""

    _fields_ = [
        ("intparm", u32),  # 0x00 interruption parameter
        ("flags", u16),  # 0x04 Q W ISC E LM MM MP T V
        ("devno", u16),  # 0x06 device number
        ("lpm", u8),  # 0x08 logical-path mask
        ("pnom", u8),  # 0x09 path-not-operational mask
        ("lpum", u8),  # 0x0a last-path-used mask
        ("pim", u8),  # 0x0b path-installed mask
        ("mbi", u16),  # 0x0c measurement-block index
        ("pom", u8),  # 0x0e path-operational mask
        ("pam", u8),  # 0x0f path-available mask
        ("chpid", u8 * 8),  # 0x10 channel-path identifiers
        ("chars", u32),  # 0x18 subchannel type, MBFC, XMWME, CSENSE
    ]


# -- SCSW (subchannel-status word) -------------------------------------------------------------------------
SCSW_KEY: Final = 0xF0000000  # bits 0-3: subchannel key
SCSW_S: Final = 0x08000000  # bit 4: suspend control
SCSW_L: Final = 0x04000000  # bit 5: ESW format
SCSW_CC: Final = 0x03000000  # bits 6-7: deferred condition code
SCSW_F: Final = 0x00800000  # bit 8: CCW format
SCSW_P: Final = 0x00400000  # bit 9: prefetch
SCSW_I: Final = 0x00200000  # bit 10: initial-status-interruption control
SCSW_A: Final = 0x00100000  # bit 11: address-limit-checking control
SCSW_U: Final = 0x00080000  # bit 12: suppress-suspended-interruption control
SCSW_Z: Final = 0x00040000  # bit 13: zero condition code
SCSW_N: Final = 0x00010000  # bit 15: path not operational
FCTL_START: Final = 0x4000  # bits 17-19: function control
FCTL_HALT: Final = 0x2000
FCTL_CLEAR: Final = 0x1000
FCTL_MASK: Final = 0x7000
ACTL_RESUME_PEND: Final = 0x0800  # bits 20-26: activity control
ACTL_START_PEND: Final = 0x0400
ACTL_HALT_PEND: Final = 0x0200
ACTL_CLEAR_PEND: Final = 0x0100
ACTL_SCH_ACTIVE: Final = 0x0080
ACTL_DEV_ACTIVE: Final = 0x0040
ACTL_SUSPENDED: Final = 0x0020
ACTL_MASK: Final = 0x0FE0
STCTL_ALERT: Final = 0x0010  # bits 27-31: status control
STCTL_INTERMEDIATE: Final = 0x0008
STCTL_PRIMARY: Final = 0x0004
STCTL_SECONDARY: Final = 0x0002
STCTL_PENDING: Final = 0x0001
STCTL_MASK: Final = 0x001F

# device status (byte 8 of the SCSW)
DEV_ATTENTION: Final = 0x80
DEV_STATUS_MODIFIER: Final = 0x40
DEV_CU_END: Final = 0x20
DEV_BUSY: Final = 0x10
DEV_CHANNEL_END: Final = 0x08
DEV_DEVICE_END: Final = 0x04
DEV_UNIT_CHECK: Final = 0x02
DEV_UNIT_EXCEPTION: Final = 0x01
# subchannel status (byte 9 of the SCSW)
SCH_PCI: Final = 0x80  # program-controlled interruption
SCH_INCORRECT_LENGTH: Final = 0x40
SCH_PROGRAM_CHECK: Final = 0x20
SCH_PROTECTION_CHECK: Final = 0x10
SCH_DATA_CHECK: Final = 0x08
SCH_CONTROL_CHECK: Final = 0x04
SCH_INTERFACE_CHECK: Final = 0x02
SCH_CHAINING_CHECK: Final = 0x01


class Scsw(_Block):
    """Subchannel-status word (PoP "Subchannel-Status Word", command mode), 12 bytes."""

    _fields_ = [
        ("ctrl", u32),  # 0x00 key S L CC F P I A U Z E N (0-15), FC (17-19), AC (20-26), SC (27-31)
        ("cpa", u32),  # 0x04 CCW address
        ("dstat", u8),  # 0x08 device status
        ("cstat", u8),  # 0x09 subchannel status
        ("count", u16),  # 0x0a residual count
    ]


class Schib(_Block):
    """Subchannel-information block: PMCW, SCSW and the model-dependent area (the format-1 measurement-block
    address with the extended-measurement-block facility), 52 bytes."""

    _fields_ = [
        ("pmcw", Pmcw),  # 0x00
        ("scsw", Scsw),  # 0x1c
        ("mba", u64),  # 0x28 measurement-block address (format 1)
        ("md", u8 * 4),  # 0x30 model dependent
    ]


# -- ORB (operation-request block, command mode) ------------------------------------------------------------
ORB_KEY: Final = 0xF0000000  # bits 0-3: subchannel key
ORB_SPND: Final = 0x08000000  # bit 4: suspend control
ORB_STR: Final = 0x04000000  # bit 5: streaming-mode control
ORB_MOD: Final = 0x02000000  # bit 6: modification control
ORB_SYNC: Final = 0x01000000  # bit 7: synchronization control
ORB_FMT: Final = 0x00800000  # bit 8: format-1 CCWs
ORB_PFCH: Final = 0x00400000  # bit 9: prefetch control
ORB_ISIC: Final = 0x00200000  # bit 10: initial-status-interruption control
ORB_ALCC: Final = 0x00100000  # bit 11: address-limit-checking control
ORB_SSIC: Final = 0x00080000  # bit 12: suppress-suspended-interruption control
ORB_B: Final = 0x00040000  # bit 13: transport mode (zuv's devices run command mode only)
ORB_C64: Final = 0x00020000  # bit 14: format-2 IDAWs
ORB_I2K: Final = 0x00010000  # bit 15: 2 KiB format-2 IDAWs
ORB_LPM: Final = 0x0000FF00  # bits 16-23: logical-path mask
ORB_ILS: Final = 0x00000080  # bit 24: incorrect-length-suppression mode
ORB_MIDAW: Final = 0x00000040  # bit 25: modified-indirect-data-addressing control
ORB_ZERO: Final = 0x0000003E  # bits 26-30: must be zero
ORB_X: Final = 0x00000001  # bit 31: ORB extension
#: bits of word 1 whose setting makes SSCH recognise an operand exception
ORB_INVALID: Final = ORB_B | ORB_ZERO


class Orb(_Block):
    """Operation-request block (command mode), 32 bytes with the ORB extension."""

    _fields_ = [
        ("intparm", u32),  # 0x00 interruption parameter
        ("ctrl", u32),  # 0x04 key S C M Y F P I A U B H T LPM L D X
        ("cpa", u32),  # 0x08 channel-program address
        ("css_priority", u8),  # 0x0c (ORB extension)
        ("res0d", u8),  # 0x0d
        ("cu_priority", u8),  # 0x0e
        ("res0f", u8),  # 0x0f
        ("res10", u32 * 4),  # 0x10
    ]


# -- CCWs ------------------------------------------------------------------------------------------------
CCW_CD: Final = 0x80  # chain data
CCW_CC: Final = 0x40  # chain command
CCW_SLI: Final = 0x20  # suppress length indication
CCW_SKP: Final = 0x10  # skip
CCW_PCI: Final = 0x08  # program-controlled interruption
CCW_IDA: Final = 0x04  # indirect data addressing
CCW_S: Final = 0x02  # suspend
CCW_MIDA: Final = 0x01  # modified indirect data addressing
CMD_TIC: Final = 0x08  # transfer in channel (low four bits 1000)
CMD_SENSE: Final = 0x04
CMD_NOOP: Final = 0x03
CMD_SENSE_ID: Final = 0xE4


class Ccw0(_Block):
    """Format-0 channel-command word: 24-bit data address, 8 bytes."""

    _fields_ = [
        ("cmd", u8),  # 0x00
        ("cda_hi", u8),  # 0x01 data address bits 8-15
        ("cda_lo", u16),  # 0x02 data address bits 16-31
        ("flags", u8),  # 0x04
        ("res05", u8),  # 0x05
        ("count", u16),  # 0x06
    ]


class Ccw1(_Block):
    """Format-1 channel-command word: 31-bit data address, 8 bytes."""

    _fields_ = [
        ("cmd", u8),  # 0x00
        ("flags", u8),  # 0x01
        ("count", u16),  # 0x02
        ("cda", u32),  # 0x04
    ]


# -- IRB (interruption-response block) ---------------------------------------------------------------------
ERW_CONS: Final = 0x04000000  # extended-report word bit 5: concurrent sense (sense data in the ECW)
ERW_SCNT_SHIFT: Final = 16  # bits 10-15: sense count


class Irb(_Block):
    """Interruption-response block: SCSW, format-1 ESW, extended-control and extended-measurement words, 96
    bytes."""

    _fields_ = [
        ("scsw", Scsw),  # 0x00
        ("sublog", u32),  # 0x0c ESW word 0: subchannel logout
        ("erw", u32),  # 0x10 ESW word 1: extended-report word
        ("esw_res", u32 * 3),  # 0x14 ESW words 2-4
        ("ecw", u8 * 32),  # 0x20 extended-control word (concurrent sense data)
        ("emw", u8 * 32),  # 0x40 extended-measurement word
    ]


# -- channel-report word ------------------------------------------------------------------------------------
CRW_RSC_SCH: Final = 0x3  # reporting-source code: subchannel
CRW_RSC_CHP: Final = 0x4  # channel path
CRW_ERC_INIT: Final = 0x02  # error-recovery code: initialized
CRW_ERC_IPARM: Final = 0x04  # installed parameters changed


def crw(rsc: int, erc: int, rsid: int, solicited: bool = False, chained: bool = False) -> int:
    """A channel-report word: S (bit 1), C (bit 3), RSC (4-7), ERC (10-15), RSID (16-31)."""
    return (solicited << 30) | (chained << 28) | (rsc << 24) | (erc << 16) | (rsid & 0xFFFF)


# -- measurement blocks -------------------------------------------------------------------------------------
class MeasurementBlock0(_Block):
    """Format-0 measurement block: 32 bytes at MBO + 32 * MBI."""

    _fields_ = [
        ("ssch_rsch_count", u16),  # 0x00
        ("sample_count", u16),  # 0x02
        ("device_connect_time", u32),  # 0x04
        ("function_pending_time", u32),  # 0x08
        ("device_disconnect_time", u32),  # 0x0c
        ("cu_queuing_time", u32),  # 0x10
        ("device_active_only_time", u32),  # 0x14
        ("res18", u32 * 2),  # 0x18
    ]


class MeasurementBlock1(_Block):
    """Format-1 measurement block: 64 bytes at the subchannel's own measurement-block address."""

    _fields_ = [
        ("ssch_rsch_count", u32),  # 0x00
        ("sample_count", u32),  # 0x04
        ("device_connect_time", u32),  # 0x08
        ("function_pending_time", u32),  # 0x0c
        ("device_disconnect_time", u32),  # 0x10
        ("cu_queuing_time", u32),  # 0x14
        ("device_active_only_time", u32),  # 0x18
        ("device_busy_time", u32),  # 0x1c
        ("initial_command_response_time", u32),  # 0x20
        ("res24", u32 * 7),  # 0x24
    ]


for _cls, _size in (
    (Pmcw, 28),
    (Scsw, 12),
    (Schib, 52),
    (Orb, 32),
    (Ccw0, 8),
    (Ccw1, 8),
    (Irb, 96),
    (MeasurementBlock0, 32),
    (MeasurementBlock1, 64),
):
    assert ctypes.sizeof(_cls) == _size, f"{_cls.__name__} is {ctypes.sizeof(_cls)} bytes, not {_size}"

_B = TypeVar("_B", bound=_Block)


def parse(cls: type[_B], data: bytes) -> _B:
    """A record from exactly its size in bytes (``ValueError`` otherwise)."""
    if len(data) != ctypes.sizeof(cls):
        raise ValueError(f"{cls.__name__} is {ctypes.sizeof(cls)} bytes, got {len(data)}")
    return cls.from_buffer_copy(data)

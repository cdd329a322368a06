"""UVC control-block layouts (UVCBs) as fixed big-endian records named after Linux ``asm/uv.h``.

Each record is a ``ctypes.BigEndianStructure`` with the field offset in a comment and its size asserted at
import time. ``parse(cls, data)`` builds one from bytes (data shorter than the record is zero-extended, so a
short Query block parses), ``bytes(record)`` packs it, ``cls.field.offset`` gives a field's offset.
"""

from __future__ import annotations

import ctypes
from typing import Final, TypeVar

from emulator.hw.records import Record, u8, u16, u32, u64

__all__ = [
    "UvCbHeader",
    "UvCbNodata",
    "UvCbDestroyFast",
    "UvCbQui",
    "UvCbQueryKeys",
    "UvCbInit",
    "UvCbCgc",
    "UvCbCsc",
    "UvCbCts",
    "UvCbCfs",
    "UvCbSsc",
    "UvCbUnp",
    "UvCbCpuSetState",
    "UvCbShare",
    "UvCbDumpStorState",
    "UvCbDumpCpu",
    "UvCbDumpComplete",
    "UvCbAttest",
    "UvCbGuestAddr",
    "UvCbListSecrets",
    "UvCbRetrSecret",
    "LAYOUTS",
    "parse",
    "offset_of",
]

_Block = Record  # every layout below derives from the one record base (``emulator.hw.records``)


class UvCbHeader(_Block):
    """Common 8-byte header (2.3)."""

    _fields_ = [
        ("len", u16),  # 0x00
        ("cmd", u16),  # 0x02
        ("rc", u16),  # 0x04
        ("rrc", u16),  # 0x06
    ]


class UvCbNodata(_Block):
    """uv_cb_nodata: a command whose only input is a handle (0x40 bytes)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("handle", u64),  # 0x18
        ("reserved20", u64 * 4),  # 0x20
    ]


class UvCbDestroyFast(_Block):
    """uv_cb_destroy_fast (0x48 bytes)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("handle", u64),  # 0x18
        ("reserved20", u64 * 5),  # 0x20
    ]


class UvCbQui(_Block):
    """uv_cb_qui: Query Ultravisor Information (0x120 bytes, 5.2)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64),  # 0x08
        ("inst_calls_list", u64 * 4),  # 0x10
        ("reserved30", u64 * 2),  # 0x30
        ("uv_base_stor_len", u64),  # 0x40
        ("reserved48", u64),  # 0x48
        ("conf_base_phys_stor_len", u64),  # 0x50
        ("conf_base_virt_stor_len", u64),  # 0x58
        ("conf_virt_var_stor_len", u64),  # 0x60
        ("cpu_stor_len", u64),  # 0x68
        ("reserved70", u32 * 3),  # 0x70
        ("max_num_sec_conf", u32),  # 0x7c
        ("max_guest_stor_addr", u64),  # 0x80
        ("reserved88", u8 * 0x16),  # 0x88
        ("max_guest_cpu_id", u16),  # 0x9e
        ("uv_feature_indications", u64),  # 0xa0
        ("reserveda8", u64),  # 0xa8
        ("supp_se_hdr_versions", u64),  # 0xb0
        ("supp_se_hdr_pcf", u64),  # 0xb8
        ("reservedc0", u64),  # 0xc0
        ("conf_dump_storage_state_len", u64),  # 0xc8
        ("conf_dump_finalize_len", u64),  # 0xd0
        ("reservedd8", u64),  # 0xd8
        ("supp_att_req_hdr_ver", u64),  # 0xe0
        ("supp_att_pflags", u64),  # 0xe8
        ("reservedf0", u64),  # 0xf0
        ("supp_add_secret_req_ver", u64),  # 0xf8
        ("supp_add_secret_pcf", u64),  # 0x100
        ("supp_secret_types", u64),  # 0x108
        ("max_assoc_secrets", u16),  # 0x110
        ("max_retr_secrets", u16),  # 0x112
        ("reserved114", u8 * 0xC),  # 0x114
    ]


class UvCbQueryKeys(_Block):
    """uv_cb_query_keys: hashes of the installed host keys (0x200 bytes, 4.18)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 3),  # 0x08
        ("key_hashes", (u8 * 32) * 15),  # 0x20
    ]


class UvCbInit(_Block):
    """uv_cb_init: Initialize Ultravisor (0x48 bytes, 4.1)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("stor_origin", u64),  # 0x18
        ("stor_len", u64),  # 0x20
        ("reserved28", u64 * 4),  # 0x28
    ]


class UvCbCgc(_Block):
    """uv_cb_cgc: Create Secure Configuration (0x80 bytes, 4.2)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("guest_handle", u64),  # 0x18
        ("conf_base_stor_origin", u64),  # 0x20
        ("conf_virt_stor_origin", u64),  # 0x28
        ("reserved30", u8 * 6),  # 0x30
        ("flags", u16),  # 0x36
        ("guest_stor_origin", u64),  # 0x38
        ("guest_stor_len", u64),  # 0x40
        ("guest_sca", u64),  # 0x48
        ("guest_asce", u64),  # 0x50
        ("reserved58", u64 * 5),  # 0x58
    ]


class UvCbCsc(_Block):
    """uv_cb_csc: Create Secure CPU (0x60 bytes, 4.4)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("cpu_handle", u64),  # 0x18
        ("guest_handle", u64),  # 0x20
        ("stor_origin", u64),  # 0x28
        ("reserved30", u8 * 6),  # 0x30
        ("num", u16),  # 0x36
        ("state_origin", u64),  # 0x38
        ("reserved40", u64 * 4),  # 0x40
    ]


class UvCbCts(_Block):
    """uv_cb_cts: Convert to Secure Storage, Unpin Page Shared (0x28 bytes, 4.6)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("guest_handle", u64),  # 0x18
        ("gaddr", u64),  # 0x20
    ]


class UvCbCfs(_Block):
    """uv_cb_cfs: Convert from / Destroy Secure Storage, Pin Page Shared (0x20 bytes, 4.7)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("paddr", u64),  # 0x18
    ]


class UvCbSsc(_Block):
    """uv_cb_ssc: Set Secure Configuration Parameters (0x50 bytes, 4.11)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("guest_handle", u64),  # 0x18
        ("sec_header_origin", u64),  # 0x20
        ("sec_header_len", u32),  # 0x28
        ("reserved2c", u32),  # 0x2c
        ("reserved30", u64 * 4),  # 0x30
    ]


class UvCbUnp(_Block):
    """uv_cb_unp: Unpack (0x50 bytes, 4.12)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("guest_handle", u64),  # 0x18
        ("gaddr", u64),  # 0x20
        ("tweak", u64 * 2),  # 0x28
        ("reserved38", u64 * 3),  # 0x38
    ]


class UvCbCpuSetState(_Block):
    """uv_cb_cpu_set_state: Set CPU State (0x50 bytes, 4.14)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("cpu_handle", u64),  # 0x18
        ("reserved20", u8 * 7),  # 0x20
        ("state", u8),  # 0x27
        ("reserved28", u64 * 5),  # 0x28
    ]


class UvCbShare(_Block):
    """uv_cb_share: Set / Remove Shared Access (0x30 bytes, 4.15)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 3),  # 0x08
        ("paddr", u64),  # 0x20
        ("reserved28", u64),  # 0x28
    ]


class UvCbDumpStorState(_Block):
    """uv_cb_dump_stor_state: Dump Configuration Storage State (0x50 bytes, 11.1)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("config_handle", u64),  # 0x18
        ("dump_area_origin", u64),  # 0x20
        ("gaddr", u64),  # 0x28
        ("reserved30", u64 * 4),  # 0x30
    ]


class UvCbDumpCpu(_Block):
    """uv_cb_dump_cpu: Dump CPU State (0x50 bytes, 11.1)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("cpu_handle", u64),  # 0x18
        ("dump_area_origin", u64),  # 0x20
        ("reserved28", u64 * 5),  # 0x28
    ]


class UvCbDumpComplete(_Block):
    """uv_cb_dump_complete: Complete Configuration Dump (0x50 bytes, 11.1)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("config_handle", u64),  # 0x18
        ("dump_area_origin", u64),  # 0x20
        ("reserved28", u64 * 5),  # 0x28
    ]


class UvCbAttest(_Block):
    """uv_cb_attest: Retrieve Attestation Measurement (0x188 bytes, 9.3)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("arcb_addr", u64),  # 0x18
        ("cont_token", u64),  # 0x20
        ("reserved28", u8 * 6),  # 0x28
        ("user_data_len", u16),  # 0x2e
        ("user_data", u8 * 256),  # 0x30
        ("reserved130", u32 * 3),  # 0x130
        ("meas_len", u32),  # 0x13c
        ("meas_addr", u64),  # 0x140
        ("config_uid", u8 * 16),  # 0x148
        ("reserved158", u32),  # 0x158
        ("add_data_len", u32),  # 0x15c
        ("add_data_addr", u64),  # 0x160
        ("reserved168", u64 * 4),  # 0x168
    ]


class UvCbGuestAddr(_Block):
    """uv_cb_guest_addr: Add Secret (0x48 bytes, 10.5)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 3),  # 0x08
        ("addr", u64),  # 0x20
        ("reserved28", u64 * 4),  # 0x28
    ]


class UvCbListSecrets(_Block):
    """uv_cb_list_secrets: List Secrets (0x48 bytes, 10.5)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("reserved18", u8 * 6),  # 0x18
        ("start_idx", u16),  # 0x1e
        ("list_addr", u64),  # 0x20
        ("reserved28", u64 * 4),  # 0x28
    ]


class UvCbRetrSecret(_Block):
    """uv_cb_retr_secr: Retrieve Secret (0x48 bytes, 10.5)."""

    _fields_ = [
        ("header", UvCbHeader),  # 0x00
        ("reserved08", u64 * 2),  # 0x08
        ("secret_idx", u16),  # 0x18
        ("reserved1a", u16),  # 0x1a
        ("buf_size", u32),  # 0x1c
        ("buf_addr", u64),  # 0x20
        ("reserved28", u64 * 4),  # 0x28
    ]


_SIZES: Final = {
    UvCbHeader: 8,
    UvCbNodata: 0x40,
    UvCbDestroyFast: 0x48,
    UvCbQui: 0x120,
    UvCbQueryKeys: 0x200,
    UvCbInit: 0x48,
    UvCbCgc: 0x80,
    UvCbCsc: 0x60,
    UvCbCts: 0x28,
    UvCbCfs: 0x20,
    UvCbSsc: 0x50,
    UvCbUnp: 0x50,
    UvCbCpuSetState: 0x50,
    UvCbShare: 0x30,
    UvCbDumpStorState: 0x50,
    UvCbDumpCpu: 0x50,
    UvCbDumpComplete: 0x50,
    UvCbAttest: 0x188,
    UvCbGuestAddr: 0x48,
    UvCbListSecrets: 0x48,
    UvCbRetrSecret: 0x48,
}
for _cls, _size in _SIZES.items():
    assert ctypes.sizeof(_cls) == _size, (_cls.__name__, hex(ctypes.sizeof(_cls)))
    _cls.SIZE = _size  # type: ignore[attr-defined]

#: Layout class by name (the ``struct`` column of ``firmware.uv_codes.COMMANDS``).
LAYOUTS: Final[dict[str, type[_Block]]] = {c.__name__: c for c in _SIZES}

T = TypeVar("T", bound=ctypes.Structure)


def parse(cls: type[T], data: bytes) -> T:
    """Build a record from bytes; data shorter than the record is zero-extended, longer is cut."""
    size = ctypes.sizeof(cls)
    return cls.from_buffer_copy(bytes(data[:size]).ljust(size, b"\0"))


def offset_of(cls: type[ctypes.Structure], name: str) -> int:
    """Offset of a field of a record (``offset_of(UvCbCgc, "guest_handle") == 0x18``)."""
    return int(getattr(cls, name).offset)

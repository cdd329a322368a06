"""Dumps of secure guests (``secure-execution.md`` 11): Initiate, Storage State, CPU State, Complete.

The owner of the image decrypts a dump with the CCK from its SE header: ``dump_key = HKDF-SHA512(CCK,
seed, "IBM Z Ultravisor Dump", 32)`` opens the completion data (tweak nonce and XTS key) and each CPU's state;
guest pages are the ordinary exports the host makes while reading memory (``firmware.uv_storage``: AES-XTS
with tweak = storage-state component OR nonce). So that a page exported *after* the storage-state call
still matches the component the dump announced, the storage-state call reserves the counter of each secure
page's next export.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from emulator.hw.memory import PAGE_SIZE
from firmware.crypto import aes_gcm_seal, hkdf_sha512
from firmware.se_header import PCF_ALLOW_DUMPING
from firmware.uv_storage import component

if TYPE_CHECKING:
    from firmware import uv_blocks as B
    from firmware.uv import ControlBlock, SecureCpu, Ultravisor

__all__ = [
    "DUMP_INFO",
    "COMPLETION_SIZE",
    "CPU_DUMP_SIZE",
    "SPECIAL_MAPPED",
    "SPECIAL_SHARED",
    "SPECIAL_ZERO",
    "init",
    "storage_state",
    "cpu",
    "complete",
    "dump_key",
]

DUMP_INFO: Final = b"IBM Z Ultravisor Dump"
COMPLETION_SIZE: Final = 288
CPU_DUMP_SIZE: Final = 1568
SPECIAL_MAPPED: Final = 0x04
SPECIAL_SHARED: Final = 0x02
SPECIAL_ZERO: Final = 0x01
ONE_MIB: Final = 1 << 20


@dataclass
class DumpState:
    """A dump in progress: its seed (public, in the completion data)."""

    seed: bytes

    def __repr__(self) -> str:
        return "DumpState(...)"


def dump_key(cck: object, seed: bytes) -> bytes:
    """The 32-byte dump key (11.2)."""
    return hkdf_sha512(cck, seed, DUMP_INFO, 32).expose()  # type: ignore[arg-type]


def init(uv: Ultravisor, handle: int) -> tuple[int, int]:
    """Initiate Configuration Dump; rc/rrc (see ``Ultravisor._cmd_dump_init``)."""
    cfg = uv.secure_config(handle)
    if cfg is None:
        return 0x0020, 0
    if cfg.state != "verified" or cfg.dump is not None:
        return 0x0003, 0
    if not cfg.header.pcf & PCF_ALLOW_DUMPING or cfg.dump_disabled:
        return 0x0101, 0
    cfg.dump = DumpState(seed=uv.random(64))
    return 0x0001, 0


def _area(uv: Ultravisor, cb: ControlBlock, addr: int, length: int) -> list[tuple[int, int]] | None:
    return uv.host_buffer(cb, addr, length, True)


def storage_state(uv: Ultravisor, cb: ControlBlock, blk: B.UvCbDumpStorState) -> tuple[int, int]:
    """Dump Configuration Storage State for the 1 MiB block at ``gaddr``: one 16-byte component per page."""
    cfg = uv.secure_config(blk.config_handle)
    if cfg is None:
        return 0x0020, 0
    if cfg.dump is None:
        return 0x0003, 0
    if blk.gaddr % ONE_MIB or blk.gaddr >= cfg.msl:
        return 0x0102, 0
    length = uv.query.conf_dump_storage_state_len
    pieces = _area(uv, cb, blk.dump_area_origin, length)
    if pieces is None:
        return 0x0103, 0
    out = bytearray()
    mem = uv.mem
    for page in range(blk.gaddr, blk.gaddr + ONE_MIB, PAGE_SIZE):
        frame = cfg.secure.get(page)
        if frame is not None:
            if mem.shared[frame]:
                out += _special(SPECIAL_MAPPED | SPECIAL_SHARED)
                continue
            counter = cfg.reserved.get(page)
            if counter is None:
                cfg.export_counter += 1
                counter = cfg.reserved[page] = cfg.export_counter
            out += component(page, counter)
        elif page in cfg.exports:
            out += component(page, cfg.exports[page][0])
        else:
            mapped = uv.gmap_frame(cfg, page) is not None
            out += _special(SPECIAL_ZERO | (SPECIAL_MAPPED if mapped else 0))
    out = out.ljust(length, b"\0")
    uv.write_pieces(pieces, bytes(out))
    return 0x0001, 0


def _special(flags: int) -> bytes:
    return b"\xff\xff\xff\xff" + bytes(11) + bytes([flags])


def _cpu_plain(c: SecureCpu) -> bytes:
    body = bytearray(CPU_DUMP_SIZE - 0x20 - 16)  # 0x20 .. 0x610

    def put(off: int, data: bytes) -> None:
        body[off - 0x20 : off - 0x20 + len(data)] = data

    put(0x20, struct.pack(">16Q", *c.gprs))
    put(0xA0, struct.pack(">QQ", *c.psw))
    put(0xB8, struct.pack(">I", c.prefix))
    put(0xBC, struct.pack(">I", c.fpc))
    put(0xC4, struct.pack(">I", c.todpr))
    put(0xC8, struct.pack(">Q", c.cputm))
    put(0xD0, struct.pack(">Q", c.ckc))
    put(0xE0, struct.pack(">16I", *(a & 0xFFFFFFFF for a in c.ars)))
    put(0x120, struct.pack(">16Q", *c.crs))
    put(0x1A0, c.ext[:512])  # VRs 0-15 (the FPRs in their left halves), then VRs 16-31 at 0x2A0
    return bytes(body)


def cpu(uv: Ultravisor, cb: ControlBlock, blk: B.UvCbDumpCpu) -> tuple[int, int]:
    """Dump CPU State: the CPU dump v1, sealed with the dump key."""
    c = uv.secure_cpu(blk.cpu_handle)
    if c is None:
        return 0x0021, 0
    cfg = c.config
    if cfg.dump is None:
        return 0x0003, 0
    pieces = _area(uv, cb, blk.dump_area_origin, uv.query.cpu_stor_len)
    if pieces is None:
        return 0x0103, 0
    iv = uv.random(12)
    aad = struct.pack(">II", 1, CPU_DUMP_SIZE) + iv + bytes(12)
    ct, tag = aes_gcm_seal(dump_key(cfg.header.cck, cfg.dump.seed), iv, aad, _cpu_plain(c))
    data = (aad + ct + tag).ljust(uv.query.cpu_stor_len, b"\0")
    uv.write_pieces(pieces, data)
    return 0x0001, 0


def complete(uv: Ultravisor, cb: ControlBlock, blk: B.UvCbDumpComplete) -> tuple[int, int]:
    """Complete Configuration Dump: the sealed completion data (tweak nonce, XTS key); the dump ends."""
    cfg = uv.secure_config(blk.config_handle)
    if cfg is None:
        return 0x0020, 0
    if cfg.dump is None:
        return 0x0003, 0
    pieces = _area(uv, cb, blk.dump_area_origin, uv.query.conf_dump_finalize_len)
    if pieces is None:
        return 0x0103, 0
    iv = uv.random(12)
    aad = struct.pack(">II", 1, COMPLETION_SIZE) + bytes(8) + cfg.dump.seed + iv + bytes(4)
    nonce, xts = cfg.sealer.dump_material()
    ct, tag = aes_gcm_seal(dump_key(cfg.header.cck, cfg.dump.seed), iv, aad, nonce + xts + bytes(96))
    uv.write_pieces(pieces, (aad + ct + tag).ljust(uv.query.conf_dump_finalize_len, b"\0"))
    cfg.dump = None
    return 0x0001, 0


def open_completion(cck: object, data: bytes) -> tuple[bytes, bytes]:
    """Owner side: (tweak nonce, XTS key) from completion data (used by tests and dump tools)."""
    from firmware.crypto import aes_gcm_open

    seed, iv = data[0x10:0x50], data[0x50:0x5C]
    plain = aes_gcm_open(dump_key(cck, seed), iv, data[:0x60], data[0x60:0x110], data[0x110:0x120])
    return plain[:16], plain[16:80]

"""Virtio-like devices behind DIAGNOSE 0x500: a console and a block device that see only guest buffers.

A secure guest's storage is closed to the host, so I/O goes through pages the guest opened with Set
Shared Access (the bounce buffers of Linux's swiotlb, ``secure-execution.md`` 4.15). The devices here
read and write guest storage only through the VM's ``GuestWindow`` (the host view): a buffer in a shared
page works; a buffer in a secure page is a host touch of secure storage (PGM 0x3D), which the
hypervisor resolves by exporting the page - the device then sees ciphertext, and the guest's next touch
imports the page back (integrity-checked by the Ultravisor).

The queue is a small split ring in one guest page, written by the driver and read by the device (zuv's
layout, modelled on virtio's split virtqueue; ``docs/hypervisor.md``)::

    0x000 u32 magic 'ZVQ1'   0x004 u16 num (<= 32)   0x006 u16 avail_idx   0x008 u16 used_idx
    0x010 desc[32]   {u64 addr (guest absolute), u32 len, u16 flags (1 NEXT, 2 WRITE), u16 next}
    0x210 avail[32]  u16 head descriptor of each request
    0x250 used[32]   {u32 id, u32 len}

Notification (Linux's virtio-ccw hypercall): DIAGNOSE 0x500 with GR1 = 3, GR2 = device id, GR3 = queue
index, GR4 = guest absolute address of the queue page; GR2 returns 0 or a negative errno.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import HypervisorError

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vm

__all__ = ["ConsoleDevice", "BlockDevice", "ZvqHeader", "ZVQ_MAGIC", "DEVICE_CONSOLE", "DEVICE_BLOCK"]

ZVQ_MAGIC: Final = 0x5A565131  # "ZVQ1"
ZVQ_MAX: Final = 32
DESC_NEXT: Final = 1
DESC_WRITE: Final = 2
DEVICE_CONSOLE: Final = 1
DEVICE_BLOCK: Final = 2
SECTOR: Final = 512

EINVAL: Final = -22
EIO: Final = -5
EFAULT: Final = -14

BLK_T_IN: Final = 0
BLK_T_OUT: Final = 1
BLK_S_OK: Final = 0
BLK_S_IOERR: Final = 1
BLK_S_UNSUPP: Final = 2


class ZvqDesc(ctypes.BigEndianStructure):
    """One descriptor: a guest buffer."""

    _pack_ = 1
    _fields_ = [
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("flags", ctypes.c_uint16),
        ("next", ctypes.c_uint16),
    ]


class ZvqUsed(ctypes.BigEndianStructure):
    """One used-ring entry: the head descriptor of a finished request and the bytes written."""

    _pack_ = 1
    _fields_ = [("id", ctypes.c_uint32), ("len", ctypes.c_uint32)]


class ZvqHeader(ctypes.BigEndianStructure):
    """The queue page (0x350 bytes used)."""

    _pack_ = 1
    _fields_ = [
        ("magic", ctypes.c_uint32),  # 0x000
        ("num", ctypes.c_uint16),  # 0x004
        ("avail_idx", ctypes.c_uint16),  # 0x006
        ("used_idx", ctypes.c_uint16),  # 0x008
        ("reserved", ctypes.c_uint16 * 3),  # 0x00a
        ("desc", ZvqDesc * ZVQ_MAX),  # 0x010
        ("avail", ctypes.c_uint16 * ZVQ_MAX),  # 0x210
        ("used", ZvqUsed * ZVQ_MAX),  # 0x250
    ]


assert ctypes.sizeof(ZvqDesc) == 16 and ctypes.sizeof(ZvqHeader) == 0x350
assert ZvqHeader.avail.offset == 0x210 and ZvqHeader.used.offset == 0x250


class _QueueDevice:
    """Queue processing shared by the devices: walk new requests, hand each chain to ``request``."""

    device_id = 0

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], int] = {}  # (queue page, queue index) -> next avail index
        self.requests = 0
        self.errors: list[str] = []

    def notify(self, vm: Vm, queue: int, cookie: int) -> int:
        """DIAGNOSE 0x500 for this device: process every new request of the queue at ``cookie``."""
        if queue != 0 or cookie & 0xFFF or cookie + 0x1000 > vm.memory_size:
            return EINVAL
        try:
            q = ZvqHeader.from_buffer_copy(vm.memory.read(cookie, ctypes.sizeof(ZvqHeader)))
        except HypervisorError as e:
            self.errors.append(str(e))
            return EFAULT
        if q.magic != ZVQ_MAGIC or not 1 <= q.num <= ZVQ_MAX:
            self.errors.append(f"queue page {cookie:#x} has no valid ring (magic {q.magic:#x})")
            return EIO
        key = (cookie, queue)
        last = self._last.get(key, 0)
        used = q.used_idx
        while last != q.avail_idx:
            head = q.avail[last % q.num]
            chain = []
            i = head
            for _ in range(q.num):
                if i >= q.num:
                    return EIO
                d = q.desc[i]
                chain.append((d.addr, d.len, bool(d.flags & DESC_WRITE)))
                if not d.flags & DESC_NEXT:
                    break
                i = d.next
            written = self.request(vm, chain)
            q.used[used % q.num].id = head
            q.used[used % q.num].len = written
            used = (used + 1) & 0xFFFF
            last = (last + 1) & 0xFFFF
            self.requests += 1
        self._last[key] = last
        q.used_idx = used
        raw = bytes(q)
        vm.memory.write(cookie + ZvqHeader.used.offset, raw[ZvqHeader.used.offset :])
        vm.memory.write(
            cookie + ZvqHeader.used_idx.offset, raw[ZvqHeader.used_idx.offset : ZvqHeader.used_idx.offset + 2]
        )
        return 0

    def request(self, vm: Vm, chain: list[tuple[int, int, bool]]) -> int:
        """Handle one descriptor chain [(guest address, length, device writes)]; returns bytes written."""
        raise NotImplementedError


class ConsoleDevice(_QueueDevice):
    """The console: queue 0 carries output; every readable buffer is printed.

    Args:
        out: called with the bytes of each request (the VM's console).
    """

    device_id = DEVICE_CONSOLE

    def __init__(self, out: Callable[[bytes], None]) -> None:
        super().__init__()
        self._out = out

    def request(self, vm: Vm, chain: list[tuple[int, int, bool]]) -> int:
        """Print every buffer the guest filled; nothing is written back."""
        for addr, length, write in chain:
            if not write and length:
                self._out(vm.memory.read(addr, min(length, 0x10000)))
        return 0


class BlockDevice(_QueueDevice):
    """A block device: request = header {u32 type, u32 reserved, u64 sector}, data buffers, status byte.

    Args:
        capacity: size in bytes (a multiple of 512), kept in host memory.
    """

    device_id = DEVICE_BLOCK
    _HDR: Final = struct.Struct(">IIQ")

    def __init__(self, capacity: int = 1 << 20) -> None:
        super().__init__()
        if capacity <= 0 or capacity % SECTOR:
            raise HypervisorError(f"block device capacity {capacity} is not a positive multiple of 512")
        self.data = bytearray(capacity)

    def request(self, vm: Vm, chain: list[tuple[int, int, bool]]) -> int:
        """Read, write or flush sectors as the header says; store the status byte."""
        if len(chain) < 2 or chain[0][2] or chain[0][1] < self._HDR.size or not chain[-1][2]:
            self.errors.append("malformed block request chain")
            return 0
        typ, _res, sector = self._HDR.unpack(vm.memory.read(chain[0][0], self._HDR.size))
        status_addr = chain[-1][0]
        pos = sector * SECTOR
        written = 0
        status = BLK_S_OK
        if typ not in (BLK_T_IN, BLK_T_OUT):
            status = BLK_S_UNSUPP
        else:
            for addr, length, write in chain[1:-1]:
                if pos + length > len(self.data) or length % SECTOR or write != (typ == BLK_T_IN):
                    status = BLK_S_IOERR
                    break
                if typ == BLK_T_IN:
                    vm.memory.write(addr, bytes(self.data[pos : pos + length]))
                    written += length
                else:
                    self.data[pos : pos + length] = vm.memory.read(addr, length)
                pos += length
        vm.memory.write(status_addr, bytes([status]))
        return written + 1

"""virtio-ccw devices: the virtio transport over channel I/O (virtio 1.x "Virtio Over Channel I/O"), with
virtio-net (no network backend) and virtio-blk (backed by a file).

A device is a ``CcwDevice`` (control unit type 0x3832, the virtio device id as the control-unit model)
that answers the virtio-ccw commands in its channel programs: SET_VIRTIO_REV (revisions 0-2),
READ/WRITE_FEAT, READ/WRITE_CONF, WRITE/READ_STATUS, SET_VQ, READ_VQ_CONF, VDEV_RESET, SET_IND and
SET_CONF_IND (classic indicators; adapter interruptions are not offered, so SET_IND_ADAPTER is rejected
and a Linux driver falls back to classic indicators). The driver notifies a queue with DIAGNOSE 0x500
function 3 (``notify``); the device processes the queue's split ring at once, sets the queue's bit in the
indicators and makes its subchannel status pending with alert status (an I/O interruption).

Rings and buffers are reached through the machine's ``HostView`` only: a ring or buffer in a secure page
is never read or written; the device then sets DEVICE_NEEDS_RESET and stops, as a virtio device does on
an error in the driver's data.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from emulator.errors import HwError, SecureStorageAccess
from emulator.hw import css_blocks as cb
from emulator.hw.css import (
    CU_TYPE_VIRTIO,
    CcwDevice,
    ChannelCheck,
    ChannelSubsystem,
    CommandReject,
    DataStream,
)
from emulator.hw.host_view import HostView

__all__ = ["VirtioCcwDevice", "VirtioNet", "VirtioBlk", "notify", "DEVICE_TYPES", "make_device"]

# virtio-ccw channel commands
CMD_SET_VQ: Final = 0x13
CMD_VDEV_RESET: Final = 0x33
CMD_SET_IND: Final = 0x43
CMD_SET_CONF_IND: Final = 0x53
CMD_SET_IND_ADAPTER: Final = 0x73
CMD_READ_FEAT: Final = 0x12
CMD_WRITE_FEAT: Final = 0x11
CMD_READ_CONF: Final = 0x22
CMD_WRITE_CONF: Final = 0x21
CMD_WRITE_STATUS: Final = 0x31
CMD_READ_VQ_CONF: Final = 0x32
CMD_SET_VIRTIO_REV: Final = 0x83
CMD_READ_STATUS: Final = 0x72

REV_MAX: Final = 2
QUEUE_MAX: Final = 64
QUEUE_SIZE: Final = 128
F_VERSION_1: Final = 1 << 32
#: VIRTIO_F_ACCESS_PLATFORM: the device reaches the driver's buffers through the platform's DMA mapping (a
#: protected guest's Linux then bounces them through pages it shared, and refuses a device without it)
F_ACCESS_PLATFORM: Final = 1 << 33
STATUS_NEEDS_RESET: Final = 0x40
DESC_F_NEXT: Final = 1
DESC_F_WRITE: Final = 2
AVAIL_F_NO_INTERRUPT: Final = 1
EINVAL: Final = -22
SECTOR: Final = 512


class VirtioError(Exception):
    """The driver's ring or buffers are unusable (bad descriptor chain, storage the device may not touch)."""


@dataclass
class VirtQueue:
    """One split virtqueue as the driver set it up (SET_VQ)."""

    index: int
    num: int = 0
    desc: int = 0
    avail: int = 0
    used: int = 0
    last_avail: int = 0
    used_idx: int = 0

    @property
    def ready(self) -> bool:
        return self.desc != 0 and self.num != 0


class VirtioCcwDevice(CcwDevice):
    """The virtio-ccw transport of one device; a model gives ``device_id``, ``host_features``,
    ``config_bytes`` and ``process``."""

    cu_type = CU_TYPE_VIRTIO
    device_id = 0
    name = "virtio"

    def __init__(self, storage: HostView, access_platform: bool = False) -> None:
        super().__init__()
        self.cu_model = self.device_id
        self.storage = storage
        #: offer VIRTIO_F_ACCESS_PLATFORM (QEMU's ``iommu_platform``, on for a protected guest's devices)
        self.access_platform = access_platform
        self.revision: int | None = None
        self.queues = [VirtQueue(i) for i in range(self.num_queues())]
        self.virtio_reset()

    # -- the model's part -------------------------------------------------------------------------------

    def num_queues(self) -> int:
        """How many virtqueues the device has."""
        return 1

    def host_features(self) -> int:
        """The feature bits the device offers."""
        return F_VERSION_1

    def config_bytes(self, le: bool) -> bytes:
        """The device-specific configuration space (little-endian with VERSION_1, else big-endian)."""
        return b""

    def process(self, vq: VirtQueue) -> bool:
        """Take the queue's available buffers; True if any was used (the driver is then notified)."""
        return False

    def offered_features(self) -> int:
        """The model's features and the transport's: VIRTIO_F_ACCESS_PLATFORM when asked for."""
        return self.host_features() | (F_ACCESS_PLATFORM if self.access_platform else 0)

    # -- state ---------------------------------------------------------------------------------------------

    def virtio_reset(self) -> None:
        """Device reset (VDEV_RESET, status 0): no features, no queues, no indicators."""
        self.status = 0
        self.guest_features = 0
        self.indicators = 0
        self.config_indicators = 0
        for vq in self.queues:
            vq.num = vq.desc = vq.avail = vq.used = vq.last_avail = vq.used_idx = 0

    def reset(self) -> None:
        """Device reset (clear function, subsystem reset): sense cleared, revision forgotten, virtio reset."""
        super().reset()
        self.revision = None
        self.virtio_reset()

    @property
    def le(self) -> bool:
        """Rings and configuration are little-endian (virtio 1), else the guest's big-endian (legacy)."""
        return bool(self.guest_features & F_VERSION_1)

    # -- channel commands ----------------------------------------------------------------------------------

    @staticmethod
    def _need(data: DataStream, n: int) -> None:
        if data.count < n:
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, f"virtio command needs {n} bytes, count {data.count}")

    def command(self, cmd: int, data: DataStream) -> None:
        """Carry out one channel command of the virtio-ccw transport on the CCW's data."""
        if cmd == CMD_SET_VIRTIO_REV:
            self._need(data, 4)
            rev, length = struct.unpack(">HH", data.read(4))
            if self.revision is not None or rev > REV_MAX or length != 0:
                raise CommandReject("revision")
            self.revision = rev
            return
        if self.revision is None:
            self.revision = 0  # a driver that never asks gets the legacy revision
        if cmd == CMD_READ_FEAT:
            self._need(data, 5)
            index = data.fetch_at(4, 1)[0]
            offered = self.offered_features()
            feats = offered if self.revision else offered & ~(F_VERSION_1 | F_ACCESS_PLATFORM)
            word = (feats >> (32 * index)) & 0xFFFFFFFF if index < 2 else 0
            data.write(struct.pack("<I", word))
            data.skip(1)
        elif cmd == CMD_WRITE_FEAT:
            self._need(data, 5)
            word, index = struct.unpack("<IB", data.read(5))
            if index < 2 and (self.revision or index == 0):
                mask = 0xFFFFFFFF << (32 * index)
                offered = (word << (32 * index)) & self.offered_features()
                self.guest_features = (self.guest_features & ~mask) | offered
        elif cmd == CMD_READ_CONF:
            data.write(self.config_bytes(self.le)[: data.count])  # as far as the driver reads
        elif cmd == CMD_WRITE_CONF:
            self.config_write(data.read(data.count))
        elif cmd == CMD_WRITE_STATUS:
            self._need(data, 1)
            status = data.read(1)[0]
            if status == 0:
                self.virtio_reset()
            else:
                self.status = status
        elif cmd == CMD_READ_STATUS and self.revision >= 2:
            data.write(bytes([self.status]))
        elif cmd == CMD_SET_VQ:
            self._set_vq(data)
        elif cmd == CMD_READ_VQ_CONF:
            self._need(data, 4)
            index = int.from_bytes(data.fetch_at(0, 2), "big")
            if index >= len(self.queues):
                raise CommandReject("queue index")
            data.skip(2)
            data.write(QUEUE_SIZE.to_bytes(2, "big"))
        elif cmd == CMD_VDEV_RESET:
            self.virtio_reset()
        elif cmd in (CMD_SET_IND, CMD_SET_CONF_IND):
            self._need(data, 8)
            addr = int.from_bytes(data.read(8), "big")
            if cmd == CMD_SET_IND:
                self.indicators = addr
            else:
                self.config_indicators = addr
        else:
            raise CommandReject(f"command {cmd:#04x}")

    def config_write(self, data: bytes) -> None:
        """WRITE_CONF: the models have no writable configuration fields (written bytes are ignored)."""

    def _set_vq(self, data: DataStream) -> None:
        if self.revision == 0:
            self._need(data, 16)
            queue, align, index, num = struct.unpack(">QIHH", data.read(16))
            desc = queue
            avail = queue + 16 * num
            used = (avail + 6 + 2 * num + align - 1) & ~(align - 1) if align else 0
            if queue and (not align or align & (align - 1)):
                raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "SET_VQ: alignment not a power of two")
        else:
            self._need(data, 32)
            desc, _res, index, num, avail, used = struct.unpack(">QIHHQQ", data.read(32))
        if index >= len(self.queues) or num > QUEUE_SIZE or (num & (num - 1)):
            raise CommandReject("SET_VQ: queue index or size")
        vq = self.queues[index]
        vq.num = num if desc else 0
        vq.desc, vq.avail, vq.used = (desc, avail, used) if desc else (0, 0, 0)
        vq.last_avail = vq.used_idx = 0

    # -- queues -----------------------------------------------------------------------------------------

    def notify(self, index: int) -> int:
        """DIAGNOSE 0x500 function 3 for one of this device's queues: 0, or -EINVAL."""
        if index >= len(self.queues) or not self.queues[index].ready:
            return EINVAL
        if self.status & STATUS_NEEDS_RESET:
            return 0
        vq = self.queues[index]
        try:
            used = self.process(vq)
            if used and not self._u16(vq.avail) & AVAIL_F_NO_INTERRUPT:
                self._signal(self.indicators, 1 << index)
        except (VirtioError, SecureStorageAccess, HwError):
            self.status |= STATUS_NEEDS_RESET
            self._signal(self.config_indicators, 1)
        return 0

    def _signal(self, indicators: int, bit: int) -> None:
        """Set a bit in a classic indicator doubleword and raise the subchannel's alert status."""
        if not indicators:
            return
        try:
            old = int.from_bytes(self.storage.read(indicators, 8), "big")
            self.storage.write(indicators, (old | bit).to_bytes(8, "big"))
        except (SecureStorageAccess, HwError):
            return
        self.notify_subchannel()

    def _u16(self, addr: int) -> int:
        return int.from_bytes(self.storage.read(addr, 2), "little" if self.le else "big")

    def pop(self, vq: VirtQueue) -> tuple[int, list[tuple[int, int, bool]]] | None:
        """The next available descriptor chain: (head, [(address, length, device-writable)])."""
        order = "little" if self.le else "big"
        avail_idx = self._u16(vq.avail + 2)
        if vq.last_avail == avail_idx:
            return None
        slot = vq.avail + 4 + 2 * (vq.last_avail % vq.num)
        head = int.from_bytes(self.storage.read(slot, 2), order)
        vq.last_avail = (vq.last_avail + 1) & 0xFFFF
        chain, i = [], head
        for _ in range(vq.num):
            if i >= vq.num:
                raise VirtioError(f"descriptor index {i} beyond the queue")
            raw = self.storage.read(vq.desc + 16 * i, 16)
            addr, length, flags, nxt = struct.unpack("<QIHH" if self.le else ">QIHH", raw)
            chain.append((addr, length, bool(flags & DESC_F_WRITE)))
            if not flags & DESC_F_NEXT:
                return head, chain
            i = nxt
        raise VirtioError("descriptor chain loops")

    def push(self, vq: VirtQueue, head: int, written: int) -> None:
        """Return a chain to the driver in the used ring."""
        fmt = "<" if self.le else ">"
        slot = vq.used + 4 + 8 * (vq.used_idx % vq.num)
        self.storage.write(slot, struct.pack(fmt + "II", head, written))
        vq.used_idx = (vq.used_idx + 1) & 0xFFFF
        self.storage.write(vq.used + 2, struct.pack(fmt + "H", vq.used_idx))


class VirtioNet(VirtioCcwDevice):
    """virtio-net with no network behind it (QEMU's "nic has no peer"): transmitted frames are consumed
    and dropped, nothing is ever received. Queues: 0 receive, 1 transmit."""

    device_id = 1
    name = "virtio-net-ccw"
    F_MAC: Final = 1 << 5
    F_STATUS: Final = 1 << 16

    def __init__(
        self, storage: HostView, mac: bytes = bytes.fromhex("525400123456"), access_platform: bool = False
    ) -> None:
        self.mac = mac
        super().__init__(storage, access_platform)

    def num_queues(self) -> int:
        """Two queues: receive (0) and transmit (1)."""
        return 2

    def host_features(self) -> int:
        """VERSION_1, a MAC address and the link status."""
        return F_VERSION_1 | self.F_MAC | self.F_STATUS

    def config_bytes(self, le: bool) -> bytes:
        """The MAC address and the status word (link up)."""
        return self.mac + (1).to_bytes(2, "little" if le else "big")  # status: link up

    def process(self, vq: VirtQueue) -> bool:
        """Complete transmitted frames (no backend: they are dropped); receive buffers wait."""
        if vq.index != 1:
            return False  # receive buffers wait for frames that never come
        used = False
        while (item := self.pop(vq)) is not None:
            self.push(vq, item[0], 0)
            used = True
        return used


class VirtioBlk(VirtioCcwDevice):
    """virtio-blk backed by a file (512-byte sectors; a file that is not a multiple of 512 bytes ends at
    its last whole sector). Requests: read, write, flush, get id."""

    device_id = 2
    name = "virtio-blk-ccw"
    F_SEG_MAX: Final = 1 << 2
    F_RO: Final = 1 << 5
    F_BLK_SIZE: Final = 1 << 6
    F_FLUSH: Final = 1 << 9
    T_IN: Final = 0
    T_OUT: Final = 1
    T_FLUSH: Final = 4
    T_GET_ID: Final = 8
    S_OK: Final = 0
    S_IOERR: Final = 1
    S_UNSUPP: Final = 2

    def __init__(
        self, storage: HostView, path: str, readonly: bool = False, access_platform: bool = False
    ) -> None:
        try:  # open for the device's lifetime (``close``); reads and writes go to the file at once
            self.fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        except OSError as e:
            raise HwError(f"virtio-blk: cannot open {path!r}: {e.strerror}") from None
        self.path = path
        self.readonly = readonly
        self.sectors = os.fstat(self.fd).st_size // SECTOR
        super().__init__(storage, access_platform)

    def close(self) -> None:
        """Close the backing file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def host_features(self) -> int:
        """VERSION_1, segment count, block size and flush, and read-only for a read-only file."""
        f = F_VERSION_1 | self.F_SEG_MAX | self.F_BLK_SIZE | self.F_FLUSH
        return f | (self.F_RO if self.readonly else 0)

    def config_bytes(self, le: bool) -> bytes:
        """The virtio-blk configuration: capacity, limits, geometry, block size, topology."""
        e = "<" if le else ">"
        cfg = struct.pack(e + "QII", self.sectors, 0, QUEUE_SIZE - 2)  # capacity, size_max, seg_max
        cfg += struct.pack(e + "HBBI", 0, 0, 0, SECTOR)  # geometry, blk_size
        cfg += struct.pack(e + "BBHI", 0, 0, 0, 0)  # topology
        return cfg + struct.pack(e + "BBH", 0, 0, 1)  # writeback, unused, num_queues

    def process(self, vq: VirtQueue) -> bool:
        """Carry out every available request of the queue; True if any was used."""
        used = False
        while (item := self.pop(vq)) is not None:
            head, chain = item
            self.push(vq, head, self._request(chain))
            used = True
        return used

    def _request(self, chain: list[tuple[int, int, bool]]) -> int:
        """Carry out one request; returns the bytes written into the driver's buffers (data and status)."""
        out = b"".join(self.storage.read(a, n) for a, n, w in chain if not w and n)
        writable = [(a, n) for a, n, w in chain if w and n]
        room = sum(n for _, n in writable)
        if len(out) < 16 or room < 1:
            raise VirtioError("virtio-blk request without header or status byte")
        rtype, _res, sector = struct.unpack("<IIQ" if self.le else ">IIQ", out[:16])
        payload = out[16:]
        try:
            data, status = self._carry_out(rtype, sector, payload, room)
        except OSError:  # the host file failed (a disk error, a file cut short): the driver sees an I/O error
            data, status = b"", self.S_IOERR
        self._store(writable, data + bytes([status]))
        return len(data) + 1

    def _carry_out(self, rtype: int, sector: int, payload: bytes, room: int) -> tuple[bytes, int]:
        data = b""
        status = self.S_OK
        if rtype == self.T_IN:
            want = room - 1
            if want % SECTOR or sector + want // SECTOR > self.sectors:
                status = self.S_IOERR
            else:
                data = self._pread(want, sector * SECTOR)
        elif rtype == self.T_OUT:
            if self.readonly or len(payload) % SECTOR or sector + len(payload) // SECTOR > self.sectors:
                status = self.S_IOERR
            else:
                self._pwrite(payload, sector * SECTOR)
        elif rtype == self.T_FLUSH:
            os.fsync(self.fd)
        elif rtype == self.T_GET_ID:
            data = ("zuv-" + os.path.basename(self.path))[:20].encode().ljust(20, b"\0")[: room - 1]
        else:
            status = self.S_UNSUPP
        return data, status

    def _pread(self, n: int, offset: int) -> bytes:
        parts = []
        while n > 0:
            chunk = os.pread(self.fd, n, offset)
            if not chunk:
                raise OSError(f"virtio-blk: {self.path} is shorter than its capacity")
            parts.append(chunk)
            n, offset = n - len(chunk), offset + len(chunk)
        return b"".join(parts)

    def _pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def _store(self, writable: list[tuple[int, int]], data: bytes) -> None:
        """Data from the start of the writable buffers, the status byte in the very last one."""
        body, status = data[:-1], data[-1:]
        pos = 0
        for a, n in writable:
            if pos >= len(body):
                break
            chunk = body[pos : pos + n]
            self.storage.write(a, chunk)
            pos += len(chunk)
        a, n = writable[-1]
        self.storage.write(a + n - 1, status)


def notify(css: ChannelSubsystem, sid: int, queue: int) -> int:
    """DIAGNOSE 0x500 function 3 (virtio-ccw notification): GR2 subsystem id, GR3 queue; 0 or -EINVAL."""
    if sid >> 16 != 1:
        return EINVAL
    sch = css.subchannel(sid)
    if sch is None or not isinstance(sch.device, VirtioCcwDevice):
        return EINVAL
    return sch.device.notify(queue)


DEVICE_TYPES: Final = ("virtio-net-ccw", "virtio-blk-ccw")


def make_device(spec: str, storage: HostView, access_platform: bool = False) -> VirtioCcwDevice:
    """A device from a QEMU-like ``-device`` string: ``virtio-net-ccw[,mac=52:54:00:12:34:56]`` or
    ``virtio-blk-ccw,file=PATH[,readonly=on]`` (``HwError`` for anything else); ``access_platform``: it
    offers VIRTIO_F_ACCESS_PLATFORM (a hypervisor's device, which a protected guest may use)."""
    kind, *opts = spec.split(",")
    props: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise HwError(f"device option {opt!r} needs a value (key=value)")
        props[key] = value
    if kind == "virtio-net-ccw":
        mac = props.pop("mac", "52:54:00:12:34:56")
        try:
            raw = bytes(int(x, 16) for x in mac.split(":"))
        except ValueError:
            raw = b""
        if len(raw) != 6:
            raise HwError(f"virtio-net-ccw: bad mac {mac!r} (six hex bytes separated by colons)")
        _no_more(kind, props)
        return VirtioNet(storage, raw, access_platform)
    if kind == "virtio-blk-ccw":
        path = props.pop("file", None) or props.pop("drive", None)
        if not path:
            raise HwError("virtio-blk-ccw needs file=PATH")
        ro = props.pop("readonly", "off")
        if ro not in ("on", "off"):
            raise HwError(f"virtio-blk-ccw: readonly must be on or off, not {ro!r}")
        _no_more(kind, props)
        return VirtioBlk(storage, path, readonly=ro == "on", access_platform=access_platform)
    raise HwError(f"unknown device {kind!r} (devices: {', '.join(DEVICE_TYPES)})")


def _no_more(kind: str, props: dict[str, str]) -> None:
    if props:
        raise HwError(f"{kind}: unknown option {', '.join(sorted(props))}")

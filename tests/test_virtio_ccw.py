"""virtio-ccw devices driven the way a Linux driver drives them: channel programs for the transport, split
rings and the DIAGNOSE 0x500 notification for the data, classic indicators and alert status back."""

import struct

import pytest

from emulator.errors import HwError
from emulator.hw import css_blocks as cb
from emulator.hw import virtio_ccw as vc
from emulator.hw.css import ChannelSubsystem
from emulator.hw.memory import PhysicalMemory

SID = 0x00010000
CR6_ISC3 = 0x80000000 >> 3
DESC, AVAIL, USED = 0x10000, 0x11000, 0x12000
IND, CONF_IND = 0x13000, 0x13008


class Driver:
    """Issues single-CCW channel programs and completes them with TSCH, as a driver does."""

    def __init__(self, mem, css):
        self.mem, self.css = mem, css
        s = cb.parse(cb.Schib, css.stsch(SID)[1])
        s.pmcw.flags |= cb.PMCW_E | 3 << cb.PMCW_ISC_SHIFT
        assert css.msch(SID, bytes(s)) == 0

    def ccw(self, cmd, data=b"", count=None, flags=0):
        self.mem.write(0x2000, data.ljust(count or len(data), b"\0"))
        self.mem.write(
            0x1000, struct.pack(">BBHI", cmd, flags, len(data) if count is None else count, 0x2000)
        )
        o = cb.Orb()
        o.ctrl = cb.ORB_FMT | 0x8000
        o.cpa = 0x1000
        assert self.css.ssch(SID, bytes(o)) == 0
        assert self.css.take_io(CR6_ISC3) is not None
        cc, raw = self.css.tsch(SID)
        assert cc == 0
        i = cb.parse(cb.Irb, raw)
        return i.scsw.dstat, i.scsw.cstat, self.mem.read(0x2000, count or len(data))

    def ok(self, cmd, data=b"", count=None):
        dstat, cstat, out = self.ccw(cmd, data, count)
        assert (dstat, cstat) == (0x0C, 0), (hex(cmd), dstat, cstat)
        return out

    def setup(self, queue=0, rev=1):
        self.ok(vc.CMD_SET_VIRTIO_REV, struct.pack(">HH", rev, 0))
        self.ok(vc.CMD_WRITE_STATUS, b"\x03")  # acknowledge, driver
        feats = struct.unpack("<I", self.ok(vc.CMD_READ_FEAT, b"\0\0\0\0\1")[:4])[0]
        assert feats & 1  # VERSION_1 (bit 32)
        self.ok(vc.CMD_WRITE_FEAT, struct.pack("<IB", 1, 1))
        self.ok(vc.CMD_WRITE_STATUS, b"\x0b")  # features OK
        size = struct.unpack(">HH", self.ok(vc.CMD_READ_VQ_CONF, struct.pack(">HH", queue, 0)))[1]
        assert size == vc.QUEUE_SIZE
        self.ok(vc.CMD_SET_VQ, struct.pack(">QIHHQQ", DESC, 0, queue, 8, AVAIL, USED))
        self.ok(vc.CMD_SET_IND, struct.pack(">Q", IND))
        self.ok(vc.CMD_SET_CONF_IND, struct.pack(">Q", CONF_IND))
        self.ok(vc.CMD_WRITE_STATUS, b"\x0f")  # driver OK

    def submit(self, chain, slot=0):
        """Descriptors [(addr, len, writable)] as one chain starting at ``slot``, then make it available."""
        for n, (addr, length, w) in enumerate(chain):
            flags = (vc.DESC_F_WRITE if w else 0) | (vc.DESC_F_NEXT if n + 1 < len(chain) else 0)
            self.mem.write(DESC + 16 * (slot + n), struct.pack("<QIHH", addr, length, flags, slot + n + 1))
        idx = struct.unpack("<H", self.mem.read(AVAIL + 2, 2))[0]
        self.mem.write(AVAIL + 4 + 2 * (idx % 8), struct.pack("<H", slot))
        self.mem.write(AVAIL + 2, struct.pack("<H", idx + 1))


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(bytes([n]) * 512 for n in range(8)))
    return path


def blk(disk, readonly=False):
    mem = PhysicalMemory(4 << 20)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    dev = vc.make_device(
        f"virtio-blk-ccw,file={disk}" + (",readonly=on" if readonly else ""), mem.host_view()
    )
    css.attach(dev)
    return mem, css, dev, Driver(mem, css)


def request(drv, rtype, sector, data_len=512, payload=b"", data_at=0x20000):
    drv.mem.write(0x14000, struct.pack("<IIQ", rtype, 0, sector) + payload)
    chain = [(0x14000, 16, False)]
    if payload:
        chain.append((0x14010, len(payload), False))
    elif data_len:
        chain.append((data_at, data_len, True))
    chain.append((0x15000, 1, True))
    drv.submit(chain)
    return vc.notify(drv.css, SID, 0)


def test_sense_id_names_a_virtio_block_device(disk):
    mem, css, _, drv = blk(disk)
    dstat, cstat, ident = drv.ccw(cb.CMD_SENSE_ID, count=8, flags=cb.CCW_SLI)
    assert (dstat, cstat) == (0x0C, 0)
    assert ident[:4] == b"\xff\x38\x32\x02"  # control unit 0x3832, model = virtio device id 2


def test_configuration_and_a_read_through_the_ring(disk):
    mem, css, dev, drv = blk(disk)
    drv.setup()
    capacity, _size_max, seg_max = struct.unpack("<QII", drv.ok(vc.CMD_READ_CONF, count=16))
    assert (capacity, seg_max) == (8, vc.QUEUE_SIZE - 2)
    assert request(drv, 0, 3, data_len=1024) == 0
    assert mem.read(0x20000, 1024) == bytes([3]) * 512 + bytes([4]) * 512
    assert mem.read(0x15000, 1) == b"\0"  # VIRTIO_BLK_S_OK
    assert mem.read(USED + 2, 2) == b"\1\0" and struct.unpack("<II", mem.read(USED + 4, 8)) == (0, 1025)
    assert mem.read(IND, 8) == (1).to_bytes(8, "big")  # the queue's bit in the classic indicators
    assert css.take_io(CR6_ISC3) == (SID, 0, 3 << 27)
    i = cb.parse(cb.Irb, css.tsch(SID)[1])
    assert i.scsw.ctrl & cb.STCTL_MASK == cb.STCTL_ALERT | cb.STCTL_PENDING


def test_write_flush_and_read_only_drives(disk):
    mem, css, dev, drv = blk(disk)
    drv.setup()
    assert request(drv, 1, 1, payload=b"\xaa" * 512) == 0
    assert mem.read(0x15000, 1) == b"\0"
    assert request(drv, 4, 0, data_len=0) == 0
    assert disk.read_bytes()[512:1024] == b"\xaa" * 512
    assert request(drv, 0, 8) == 0  # beyond the disk's end
    assert mem.read(0x15000, 1) == b"\1"
    dev.close()
    mem, css, dev, drv = blk(disk, readonly=True)
    drv.setup()
    assert request(drv, 1, 2, payload=b"\xbb" * 512) == 0
    assert mem.read(0x15000, 1) == b"\1"  # VIRTIO_BLK_S_IOERR
    assert disk.read_bytes()[1024:1536] == bytes([2]) * 512
    dev.close()


def test_a_buffer_in_a_secure_page_stops_the_device_without_touching_it(disk):
    mem, css, dev, drv = blk(disk)
    drv.setup()
    mem.write(0x20000, b"guest secret")
    mem.set_owner(0x20, 2)  # the data buffer's frame belongs to a secure configuration
    assert request(drv, 0, 0) == 0
    assert mem.read(0x20000, 12) == b"guest secret"  # nothing stored into it
    assert dev.status & vc.STATUS_NEEDS_RESET
    assert mem.read(CONF_IND, 8) == (1).to_bytes(8, "big")  # a configuration-change notification
    assert mem.read(USED + 2, 2) == b"\0\0"
    assert css.take_io(CR6_ISC3) == (SID, 0, 3 << 27) and css.tsch(SID)[0] == 0  # the driver's handler
    mem.set_owner(0x20, 0)
    assert request(drv, 0, 0) == 0 and mem.read(USED + 2, 2) == b"\0\0"  # stopped until reset
    drv.ok(vc.CMD_VDEV_RESET)
    assert dev.status == 0


def test_transport_rejects(disk):
    mem, css, dev, drv = blk(disk)
    assert drv.ccw(vc.CMD_SET_VIRTIO_REV, struct.pack(">HH", 3, 0))[0] == 0x02  # unit check
    drv.ok(vc.CMD_SET_VIRTIO_REV, struct.pack(">HH", 2, 0))
    assert drv.ccw(vc.CMD_SET_VIRTIO_REV, struct.pack(">HH", 1, 0))[0] == 0x02  # only once
    assert drv.ccw(vc.CMD_SET_IND_ADAPTER, bytes(8))[0] == 0x02  # no adapter interruptions
    assert drv.ok(vc.CMD_READ_STATUS, count=1) == b"\0"
    assert drv.ccw(vc.CMD_SET_IND, bytes(4))[1] == cb.SCH_PROGRAM_CHECK  # too short
    assert vc.notify(css, SID, 0) == vc.EINVAL  # no queue set up
    assert vc.notify(css, SID | 5, 0) == vc.EINVAL
    assert vc.notify(css, 0x5, 0) == vc.EINVAL


def test_legacy_revision_0_is_big_endian(disk):
    mem, css, dev, drv = blk(disk)
    assert struct.unpack("<I", drv.ok(vc.CMD_READ_FEAT, b"\0\0\0\0\1")[:4])[0] == 0  # no VERSION_1
    drv.ok(vc.CMD_SET_VQ, struct.pack(">QIHH", DESC, 4096, 0, 8))
    assert struct.unpack(">Q", drv.ok(vc.CMD_READ_CONF, count=8))[0] == 8
    vq = dev.queues[0]
    assert (vq.desc, vq.avail, vq.used) == (DESC, DESC + 128, DESC + 4096)


def test_virtio_net_consumes_transmitted_frames():
    mem = PhysicalMemory(4 << 20)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    css.attach(vc.make_device("virtio-net-ccw,mac=02:00:00:00:00:01", mem.host_view()))
    drv = Driver(mem, css)
    drv.setup(queue=1)
    assert drv.ok(vc.CMD_READ_CONF, count=8) == bytes.fromhex("020000000001") + b"\1\0"
    drv.submit([(0x20000, 60, False)])
    assert vc.notify(css, SID, 1) == 0
    assert mem.read(USED + 2, 2) == b"\1\0" and mem.read(IND, 8) == (2).to_bytes(8, "big")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("virtio-gpu-ccw", "unknown device"),
        ("virtio-blk-ccw", "needs file="),
        ("virtio-blk-ccw,file=/nonexistent/disk", "cannot open"),
        ("virtio-net-ccw,mac=zz", "bad mac"),
        ("virtio-net-ccw,speed=10", "unknown option"),
        ("virtio-net-ccw,mac", "needs a value"),
    ],
)
def test_device_specs_are_checked(spec, message):
    with pytest.raises(HwError, match=message):
        vc.make_device(spec, PhysicalMemory(1 << 20).host_view())


def test_a_file_cut_short_under_the_device_is_an_io_error(disk):
    mem, css, dev, drv = blk(disk)
    drv.setup()
    disk.write_bytes(bytes(512))  # now one sector; the device was told eight
    assert request(drv, 0, 4) == 0
    assert mem.read(0x15000, 1) == b"\1" and mem.read(USED + 2, 2) == b"\1\0"
    dev.close()

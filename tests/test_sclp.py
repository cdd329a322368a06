"""The SCLP behind SERVC, checked against QEMU's rules (machine.md section 4) without a guest."""

import struct

import pytest

from emulator.errors import ProgramException
from emulator.hw.sclp import (
    EVENT_ASCII_CONSOLE,
    SCLP_CMD_READ_CPU_INFO,
    SCLP_CMD_READ_EVENT_DATA,
    SCLP_CMD_READ_SCP_INFO,
    SCLP_CMD_WRITE_EVENT_DATA,
    SCLP_CMD_WRITE_EVENT_MASK,
    Sclp,
)


class Mem:
    def __init__(self, size=1 << 24, prefix=0):
        self.buf = bytearray(size)
        self.memory_size = size
        self.prefix = prefix

    def read(self, real, length):
        return bytes(self.buf[real : real + length])

    def write(self, real, data):
        self.buf[real : real + len(data)] = data


def sccb(mem, addr, length, body=b""):
    mem.write(addr, struct.pack(">HBBBBH", length, 0, 0, 0, 0, 0) + body)


def rc(mem, addr):
    return struct.unpack(">H", mem.read(addr + 6, 2))[0]


@pytest.fixture
def sclp():
    out = []
    s = Sclp(lambda: [0, 1], out.append)
    s.out = out
    return s


@pytest.mark.parametrize(
    "addr, code",
    [(1 << 24, 0x05), (0x10004, 0x06), (0x1000, 0x06), (0x80000000, 0x05)],
)
def test_checks_before_any_command(sclp, addr, code):
    mem = Mem()
    with pytest.raises(ProgramException) as e:
        sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, addr)
    assert e.value.code == code


def test_sccb_in_the_prefix_area_and_short_length_are_specification_exceptions(sclp):
    mem = Mem(prefix=0x20000)
    with pytest.raises(ProgramException) as e:
        sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x21000)
    assert e.value.code == 0x06
    sccb(mem, 0x30000, 4)
    with pytest.raises(ProgramException):
        sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x30000)


def test_read_scp_info_reports_memory_and_cpus(sclp):
    mem = Mem()
    sccb(mem, 0x30000, 4096)
    res = sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x30000)
    assert rc(mem, 0x30000) == 0x0010
    rnmax, rnsize = struct.unpack(">HB", mem.read(0x30008, 3))
    assert rnmax * rnsize << 20 == mem.memory_size
    entries, offset = struct.unpack(">HH", mem.read(0x30010, 4))
    assert (entries, offset) == (2, 128)
    assert mem.read(0x30000 + 128, 1) == b"\x00" and mem.read(0x30000 + 144, 1) == b"\x01"
    assert res.ext_param == 0x30000


def test_short_scp_info_unknown_command_and_boundary(sclp):
    mem = Mem()
    sccb(mem, 0x30000, 100)
    sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x30000)
    assert rc(mem, 0x30000) == 0x0300
    sccb(mem, 0x31000, 64)
    sclp.service_call(mem, 0x12345678, 0x31000)
    assert rc(mem, 0x31000) == 0x01F0
    sccb(mem, 0x32F00, 0x200)
    sclp.service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x32F00)
    assert rc(mem, 0x32F00) == 0x0100


def _mask_sccb(mem, addr, receive, send):
    sccb(mem, addr, 12 + 16, struct.pack(">HH", 0, 4) + struct.pack(">IIII", receive, send, 0, 0))


def test_console_output_and_line_mode_refusal(sclp):
    mem = Mem()
    _mask_sccb(mem, 0x30000, 0x40, 0x40)
    sclp.service_call(mem, SCLP_CMD_WRITE_EVENT_MASK, 0x30000)
    assert rc(mem, 0x30000) == 0x0020
    assert struct.unpack(">I", mem.read(0x30000 + 12 + 12, 4))[0] & 0x40  # we receive ASCII events
    text = b"hi there\n"
    ev = struct.pack(">HBBH", 6 + len(text), EVENT_ASCII_CONSOLE, 0, 0) + text
    sccb(mem, 0x31000, 8 + len(ev), ev)
    sclp.service_call(mem, SCLP_CMD_WRITE_EVENT_DATA, 0x31000)
    assert rc(mem, 0x31000) == 0x0020 and sclp.out == [text]
    line = struct.pack(">HBBH", 6 + 4, 0x02, 0, 0) + b"abcd"
    sccb(mem, 0x32000, 8 + len(line), line)
    sclp.service_call(mem, SCLP_CMD_WRITE_EVENT_DATA, 0x32000)
    assert rc(mem, 0x32000) == 0x40F0 and sclp.out == [text]


def test_console_input(sclp):
    mem = Mem()
    sccb(mem, 0x33000, 4096)
    sclp.service_call(mem, SCLP_CMD_READ_EVENT_DATA, 0x33000)
    assert rc(mem, 0x33000) == 0x60F0  # nothing pending
    _mask_sccb(mem, 0x30000, 0x40, 0x40)
    sclp.service_call(mem, SCLP_CMD_WRITE_EVENT_MASK, 0x30000)
    sclp.feed_input(b"ls\n")
    assert sclp.event_pending
    sccb(mem, 0x33000, 4000)
    sclp.service_call(mem, SCLP_CMD_READ_EVENT_DATA, 0x33000)
    assert rc(mem, 0x33000) == 0x0300  # must be exactly 4096
    sccb(mem, 0x33000, 4096)
    res = sclp.service_call(mem, SCLP_CMD_READ_EVENT_DATA, 0x33000)
    assert rc(mem, 0x33000) == 0x0020 and res.ext_param & 1 == 0
    length, etype = struct.unpack(">HB", mem.read(0x33008, 3))
    assert etype == EVENT_ASCII_CONSOLE and mem.read(0x3300E, length - 6) == b"\x00ls\n"


class SparseMem(Mem):
    """A large memory whose SCCB pages alone exist (for 1 GiB and 3 GiB configurations)."""

    def __init__(self, size):
        self.buf = bytearray(1 << 20)
        self.memory_size = size
        self.prefix = 0


@pytest.mark.parametrize(
    "size, rnsize, rnmax",
    [(128 << 20, 1, 128), (1 << 30, 2, 512), (3 << 30, 4, 768), ((1 << 30) + (3 << 20), 2, 513)],
    ids=["128M", "1G", "3G", "1G+3M"],
)
def test_read_scp_info_reports_at_most_1020_storage_increments(size, rnsize, rnmax):
    """The increment size doubles from 1 MiB until no more than 1020 increments cover the memory, as QEMU's
    SCLP sizes them; a program reads its memory as their product (whole increments only)."""
    mem = SparseMem(size)
    sccb(mem, 0x30000, 4096)
    Sclp(lambda: [0], lambda b: None).service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x30000)
    assert rc(mem, 0x30000) == 0x0010
    got_rnmax, got_rnsize = struct.unpack(">HB", mem.read(0x30008, 3))
    assert (got_rnsize, got_rnmax) == (rnsize, rnmax)
    assert got_rnmax * got_rnsize << 20 <= size < (got_rnmax + 1) * got_rnsize << 20


def test_read_scp_info_uses_the_wide_fields_for_increments_above_128_mib():
    mem = SparseMem(1 << 40)  # 1 TiB: 1 GiB increments, 1024 > 1020, so 2 GiB ones
    sccb(mem, 0x30000, 4096)
    Sclp(lambda: [0], lambda b: None).service_call(mem, SCLP_CMD_READ_SCP_INFO, 0x30000)
    rnmax, rnsize = struct.unpack(">HB", mem.read(0x30008, 3))
    rnsize2, rnmax2 = struct.unpack(">IQ", mem.read(0x30000 + 100, 12))
    assert (rnsize, rnmax) == (0, 512) and (rnsize2, rnmax2) == (2048, 0)


def test_read_cpu_info_lists_the_configured_cpus_after_its_header(sclp):
    mem = Mem()
    for length in (8, 39):  # a header of 24 bytes and one 16-byte entry per CPU: 56 for two
        sccb(mem, 0x30000, length)
        sclp.service_call(mem, SCLP_CMD_READ_CPU_INFO, 0x30000)
        assert rc(mem, 0x30000) == 0x0300
    sccb(mem, 0x30000, 55)
    sclp.service_call(mem, SCLP_CMD_READ_CPU_INFO, 0x30000)
    assert rc(mem, 0x30000) == 0x0300
    sccb(mem, 0x30000, 56)
    sclp.service_call(mem, SCLP_CMD_READ_CPU_INFO, 0x30000)
    assert rc(mem, 0x30000) == 0x0010
    assert struct.unpack(">HHHH", mem.read(0x30008, 8)) == (2, 24, 0, 56)
    assert mem.read(0x30000 + 24, 1) == b"\x00" and mem.read(0x30000 + 40, 1) == b"\x01"

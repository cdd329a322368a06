"""UVC dispatcher conformance: command table, Query, uninitialised UV, lengths, access exceptions, cc 2/3."""

from __future__ import annotations

import random
import struct

import pytest

from emulator.errors import ProgramException
from emulator.hw.memory import OWNER_HOST, PhysicalMemory
from emulator.hypervisor.uvclient import HostArena, UvClient
from firmware import uv_blocks as B
from firmware.uv import AbsoluteControlBlock, Ultravisor, UvCaller
from firmware.uv_codes import BY_CODE, COMMANDS, QUERY_VALUES, Cc, Rc, command, describe, installed_calls

MEM = 0x84000000
UV_BASE = 0x80000000


class Env:
    def __init__(self) -> None:
        self.mem = PhysicalMemory(MEM)
        self.rnd = random.Random(7)
        self.uv = Ultravisor(self.mem, rng=self.rnd.randbytes)
        self.view = self.mem.host_view()
        self.c = UvClient(self.uv, self.view, HostArena(0x100000, 0x7F000000))

    def raw(self, addr: int, data: bytes, caller: UvCaller | None = None) -> int:
        self.view.write(addr, data)
        return self.uv.call(caller or UvCaller("host"), AbsoluteControlBlock(self.view, addr))


@pytest.fixture
def env() -> Env:
    return Env()


HOST_CMDS = [c for c in COMMANDS if c.allowed("host")]
GUEST_ONLY = [c for c in COMMANDS if "guest" in c.callers and "host" not in c.callers]


def test_table_lengths_match_the_layouts_and_bits_are_unique() -> None:
    for c in COMMANDS:
        assert B.LAYOUTS[c.struct].SIZE == c.length
    assert len({c.bit for c in COMMANDS}) == len(COMMANDS)
    assert command("qui").code == 0x0001 and command(0x0100).name == "create_sec_conf"


def test_host_query_sees_host_commands_only_and_guest_query_sees_guest_commands_only() -> None:
    host = installed_calls("host")
    guest = installed_calls("guest")
    # bits 0-7 and 11-27 as in the s390-tools sample host bitmap, bit 34 Query Keys; 8/9 are guest-only
    assert host == (0xFF1FFFF020000000, 0, 0, 0)
    assert guest[0] & (1 << 63 - 8) and guest[0] & (1 << 63 - 9) and guest[0] & (1 << 63)
    assert not guest[0] & (1 << 63 - 1)  # no Init for a guest


def test_query_before_init_reports_the_sizes_and_the_callers_bitmap(env: Env) -> None:
    q = env.c.query()
    assert q.header.rc == Rc.EXECUTED
    assert q.uv_base_stor_len == QUERY_VALUES.uv_base_stor_len
    assert list(q.inst_calls_list) == list(installed_calls("host"))
    assert q.max_guest_cpu_id == QUERY_VALUES.max_guest_cpu_id


def test_query_length_below_0xa8_is_rc_5_and_short_length_is_rc_0x100_with_cc_1(env: Env) -> None:
    res = env.c.call("qui", length=0xA0)
    assert (res.cc, res.rc) == (Cc.ERROR, Rc.INV_LEN)
    res = env.c.call("qui", length=0xA8)
    assert (res.cc, res.rc) == (Cc.ERROR, Rc.MORE_DATA)
    assert res.ok  # "more data" is not an error
    # what fits was stored, nothing beyond the length
    raw = env.view.read(env.c.uvcb_addr, 0x120)
    assert struct.unpack_from(">Q", raw, 0xA0)[0] == QUERY_VALUES.uv_feature_indications
    assert raw[0xA8:] == bytes(0x120 - 0xA8)
    res = env.c.call("qui")
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)


@pytest.mark.parametrize(
    "cmd", [c for c in HOST_CMDS if c.code not in (0x0001, 0x000F)], ids=lambda c: c.name
)
def test_every_host_command_but_init_and_query_is_rc_3_before_init(env: Env, cmd) -> None:
    res = env.c.call(cmd.code)
    assert (res.cc, res.rc) == (Cc.ERROR, Rc.INV_STATE)


@pytest.mark.parametrize("cmd", [c for c in HOST_CMDS if c.code != 0x0001], ids=lambda c: c.name)
def test_every_host_command_checks_its_length_exactly(env: Env, cmd) -> None:
    for delta in (-8, 8):
        res = env.c.call(cmd.code, length=cmd.length + delta)
        assert (res.cc, res.rc) == (Cc.ERROR, Rc.INV_LEN), delta


@pytest.mark.parametrize("code", [0x4242, *(c.code for c in GUEST_ONLY)])
def test_unknown_and_guest_only_commands_are_rc_2_for_the_host(env: Env, code: int) -> None:
    data = struct.pack(">HH", BY_CODE[code].length if code in BY_CODE else 8, code).ljust(0x200, b"\0")
    cc = env.raw(0x10000, data)
    assert cc == Cc.ERROR
    assert struct.unpack(">H", env.view.read(0x10004, 2))[0] == Rc.INV_CMD


def test_host_commands_are_rc_2_for_a_guest(env: Env) -> None:
    env.c.init(UV_BASE)
    g = env.c.create_guest(1 << 20)
    view = env.uv.guest_view(g.handle)
    assert env.c.import_page(g.handle, 0x3000).ok
    caller = UvCaller("guest", g.handle, g.cpu_handles[0])
    for c in HOST_CMDS:
        if c.code == 0x0001:
            continue
        view.write(0x3000, struct.pack(">HH", c.length, c.code).ljust(c.length, b"\0"))
        assert env.uv.call(caller, view.control_block(0x3000)) == Cc.ERROR
        assert struct.unpack(">H", view.read(0x3004, 2))[0] == Rc.INV_CMD, c.name
    # Query from the guest: the guest's own bitmap
    view.write(0x3000, struct.pack(">HH", 0x120, 1).ljust(0x120, b"\0"))
    assert env.uv.call(caller, view.control_block(0x3000)) == Cc.OK
    q = B.parse(B.UvCbQui, view.read(0x3000, 0x120))
    assert list(q.inst_calls_list) == list(installed_calls("guest"))


def test_a_block_in_secure_storage_is_an_access_exception_and_nothing_changes(env: Env) -> None:
    env.c.init(UV_BASE)
    with pytest.raises(ProgramException) as e:
        env.uv.call(UvCaller("host"), AbsoluteControlBlock(env.view, UV_BASE + 0x100))
    assert e.value.code == 0x3D
    assert e.value.teid == (UV_BASE | 0x4 | 0x800)
    assert env.mem.read(UV_BASE + 0x100, 8) == bytes(8)


def test_a_block_whose_tail_is_not_accessible_is_an_access_exception_for_every_command(env: Env) -> None:
    env.c.init(UV_BASE)
    # header in the last 8 bytes before the UV base storage: the rest of the block is secure
    addr = UV_BASE - 8
    for c in HOST_CMDS:
        env.view.write(addr, struct.pack(">HHI", c.length, c.code, 0xDEADBEEF))
        with pytest.raises(ProgramException) as e:
            env.uv.call(UvCaller("host"), AbsoluteControlBlock(env.view, addr))
        assert e.value.code == 0x3D, c.name
        assert env.view.read(addr, 8)[4:] == b"\xde\xad\xbe\xef"  # rc/rrc untouched
    # and at the end of memory: addressing
    addr = MEM - 8
    env.view.write(addr, struct.pack(">HH", 0x40, 0x0101))
    with pytest.raises(ProgramException) as e:
        env.uv.call(UvCaller("host"), AbsoluteControlBlock(env.view, addr))
    assert e.value.code == 0x05


def test_busy_and_partial_are_returned_for_the_next_n_calls_and_change_nothing(env: Env) -> None:
    env.uv.inject_cc(0x0001, Cc.BUSY, 2)
    env.uv.inject_cc(0x000F, Cc.PARTIAL, 1)
    res = env.c.call("qui", retry=False)
    assert res.cc == Cc.BUSY and res.rc == 0
    res = env.c.call("qui")  # the client re-issues: one busy left, then the real answer
    assert res.cc == Cc.OK and res.retries == 1
    q = env.c.query()
    res = env.c.call("init_uv", stor_origin=UV_BASE, stor_len=q.uv_base_stor_len)
    assert res.cc == Cc.OK and res.retries == 1 and env.uv.initialized


def test_inject_rejects_nonsense(env: Env) -> None:
    from emulator.errors import HwError

    with pytest.raises(HwError):
        env.uv.inject_cc(0x0001, 1)
    with pytest.raises(HwError):
        env.uv.inject_cc(0x4242, 2)


def test_load_normal_reset_clears_and_releases_donated_and_secure_storage_and_uninitialises(env: Env) -> None:
    env.c.init(UV_BASE)
    g = env.c.create_guest(1 << 20, cpus=1)
    assert env.c.import_page(g.handle, 0).ok
    env.uv.guest_view(g.handle).write(0, b"guest data")
    frame0 = g.guest_frames[0]
    env.uv.reset()
    assert not env.uv.initialized
    assert env.mem.non_host_frames == 0
    for addr in (UV_BASE, g.base, g.var, frame0):
        assert env.mem.owner[addr >> 12] == OWNER_HOST
        assert env.view.read(addr, 4096) == bytes(4096)
    res = env.c.call("create_sec_conf")
    assert res.rc == Rc.INV_STATE


def test_describe_names_the_command_and_marks_zuv_choices() -> None:
    assert "Initialize Ultravisor" in describe(0x000F, 0x0108) and "2 GiB" in describe(0x000F, 0x0108)
    assert "(zuv)" in describe(0x0200, 0x0107)
    assert "destroy" in describe(0x0100, 0x8104)


def test_per_page_commands_store_only_rc_and_rrc(env: Env) -> None:
    """Import, export, destroy (each succeeding) and Unpack (refused: no SE header) leave every byte of their
    block but rc/rrc as the host wrote it, reserved fields included; the UV stores only those 4 bytes for
    them, which is the whole block as the handler left it (what an event sink is told was stored)."""
    events: list = []
    env.uv.add_event_sink(events.append)
    env.c.init(UV_BASE)
    g = env.c.create_guest(1 << 20)
    frame = g.guest_frames[0x3000]
    blocks = [
        ("conv_to_sec_stor", {"guest_handle": g.handle, "gaddr": 0x3000}, Rc.EXECUTED),
        ("conv_from_sec_stor", {"paddr": frame}, Rc.EXECUTED),
        ("conv_to_sec_stor", {"guest_handle": g.handle, "gaddr": 0x3000}, Rc.EXECUTED),
        ("destr_sec_stor", {"paddr": frame}, Rc.EXECUTED),
        ("unpack_img", {"guest_handle": g.handle, "gaddr": 0x4000, "tweak": (1, 0), "reserved38": (7, 8, 9)},
         Rc.INV_STATE),
    ]  # fmt: skip
    for name, fields, rc in blocks:
        blk = env.c.build(name, reserved08=(0x1111111111111111, 0x2222222222222222), **fields)
        blk.header.rc, blk.header.rrc = 0xAAAA, 0xBBBB
        before = bytes(blk)
        env.raw(0x10000, before)
        after = env.view.read(0x10000, len(before))
        assert struct.unpack_from(">H", after, 4)[0] == rc, name
        assert after[:4] + after[8:] == before[:4] + before[8:], name
        assert events[-1].name == name and events[-1].block == after

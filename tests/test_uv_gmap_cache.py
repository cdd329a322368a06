"""The Ultravisor's kept gmap walks: reused only while every table entry they read is unchanged, whoever
changed it (host view, firmware write, a CPU store straight into the buffer)."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ProgramException
from emulator.hw import dat
from emulator.hw.memory import PhysicalMemory
from emulator.hypervisor.uvclient import HostArena, UvClient
from firmware.uv import Ultravisor

MEM = 0x84000000
UV_BASE = 0x80000000
MSL = 2 << 20


def _env():
    mem = PhysicalMemory(MEM)
    uv = Ultravisor(mem, rng=random.Random(3).randbytes)
    view = mem.host_view()
    c = UvClient(uv, view, HostArena(0x100000, 0x7F000000))
    c.init(UV_BASE)
    g = c.create_guest(MSL)
    return mem, uv, view, c, g


def _fresh(mem, cfg, gaddr):
    """What a walk without any kept state answers."""
    try:
        real, _ = dat.translate(mem.buffer(), lambda r: r, cfg.asce, cfg.mso + gaddr, True, 0, False)
    except ProgramException:
        return None
    return None if real >= mem.size else real >> 12


def test_a_remap_through_the_host_view_is_seen_at_the_next_use():
    mem, uv, view, c, g = _env()
    cfg = uv.secure_config(g.handle)
    first = uv.gmap_frame(cfg, 0x5000)
    assert first == g.guest_frames[0x5000] >> 12 and cfg.walks
    g.gmap.map(0x5000, 0x7E000000)  # the hypervisor edits its page table
    assert uv.gmap_frame(cfg, 0x5123) == 0x7E000
    g.gmap.unmap(0x5000)
    assert uv.gmap_frame(cfg, 0x5000) is None
    # and the Ultravisor's checks follow: importing the unmapped page is rc 0x010A
    assert c.import_page(g.handle, 0x5000).rc == 0x010A


def test_stores_that_bypass_every_listener_are_seen_too():
    mem, uv, view, c, g = _env()
    cfg = uv.secure_config(g.handle)
    assert uv.gmap_frame(cfg, 0x1000) == g.guest_frames[0x1000] >> 12
    pt = g.gmap._page_tables[0]
    buf = mem.buffer()
    struct.pack_into(">Q", buf, pt + 8, 0x7D000000)  # a CPU's store: no Python write path at all
    assert uv.gmap_frame(cfg, 0x1000) == 0x7D000
    struct.pack_into(">Q", buf, g.gmap.segment_table, 0x20)  # segment invalid: every page of it goes
    assert uv.gmap_frame(cfg, 0x1000) is None and uv.gmap_frame(cfg, 0x2000) is None
    struct.pack_into(">Q", buf, g.gmap.segment_table, pt)
    assert uv.gmap_frame(cfg, 0x1000) == 0x7D000


def test_the_secure_guest_decisions_use_the_current_mapping():
    mem, uv, view, c, g = _env()
    assert c.import_page(g.handle, 0x3000).ok
    frame = g.guest_frames[0x3000] >> 12
    assert uv.secure_guest_frame(g.handle, 0x3000) == frame
    struct.pack_into(">Q", mem.buffer(), g.gmap._page_tables[0] + 8 * 3, 0x7C000000)
    assert uv.secure_guest_frame(g.handle, 0x3000) is None  # maps a host frame now: not secure
    try:
        uv.guest_frame_check(g.handle, 0x3000, False)
        raise AssertionError("no exception")
    except ProgramException as e:
        assert e.code == 0x3E


_EDIT = st.tuples(
    st.sampled_from(["pte", "seg"]),
    st.integers(0, (MSL >> 12) - 1),
    st.sampled_from([None, 0x20, 0x400, 0x200, 0x7B000000, 0x7B001000, "orig"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_EDIT, st.integers(0, (MSL >> 12) - 1)), max_size=40))
def test_kept_walks_always_equal_a_fresh_walk(ops):
    mem, uv, view, c, g = _env()
    cfg = uv.secure_config(g.handle)
    buf = mem.buffer()
    pts = g.gmap._page_tables
    st_addr = g.gmap.segment_table
    orig_seg = {sx: struct.unpack_from(">Q", buf, st_addr + 8 * sx)[0] for sx in range(MSL >> 20)}
    for op in ops:
        if isinstance(op, int):
            gaddr = op << 12
            assert uv.gmap_frame(cfg, gaddr) == _fresh(mem, cfg, gaddr)
            continue
        kind, page, value = op
        if kind == "pte":
            addr = pts[page >> 8] + 8 * (page & 0xFF)
            v = (page << 12) + 0x200000 if value == "orig" else (value or 0)
        else:
            addr = g.gmap.segment_table + 8 * (page >> 8)
            v = orig_seg[page >> 8] if value in ("orig", None) else value
        struct.pack_into(">Q", buf, addr, v)
    for p in range(0, MSL, 0x1000):
        assert uv.gmap_frame(cfg, p) == _fresh(mem, cfg, p)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 15)), st.integers(0, 7), st.booleans())
def test_prefix_secure_is_both_prefix_pages_secure(imported, prefix_pair, remap):
    mem, uv, view, c, g = _env()
    for p in imported:
        assert c.import_page(g.handle, p << 12).ok
    if remap:  # the second page of every pair maps elsewhere now
        for p in range(1, 16, 2):
            g.gmap.map(p << 12, 0x7A000000 + (p << 12))
    prefix = prefix_pair << 13
    expect = all(uv.secure_guest_frame(g.handle, prefix + d) is not None for d in (0, 0x1000))
    assert uv.prefix_secure(g.handle, prefix) == expect
    assert uv.prefix_secure(g.handle, MSL) is False and uv.prefix_secure(0xDEAD, 0) is False

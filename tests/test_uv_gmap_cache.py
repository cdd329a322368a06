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
        real = dat.translate(mem.buffer(), lambda r: r, cfg.asce, cfg.mso + gaddr, True, 0, False).address
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


_FLAGS = st.sampled_from([0, 0x20, 0x04, 0x08, 0x0C, 0x200, 0x400, 0x800, 0x600, 0x1, 0x2, 0x3, 0x100])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_segment_walk_equals_dat_translate(data):
    from firmware.uv import _segment_walk

    size = 0x40000
    buf = bytearray(size)
    # segment table at 0x10000 (2048 entries), page tables somewhere inside (or beyond) the buffer
    asce = 0x10000 | data.draw(st.integers(0, 3)) | data.draw(st.sampled_from([0, 0x100, 0x40, 0x80, 0x1C0]))
    vaddr = data.draw(st.one_of(st.integers(0, (1 << 31) - 1), st.integers(0, (1 << 64) - 1)))
    sx = (vaddr >> 20) & 0x7FF
    pto = data.draw(st.sampled_from([0x20000, 0x20800, 0x3F800, 0x3FC00, size, 1 << 40]))
    ste = pto | data.draw(_FLAGS) | data.draw(st.sampled_from([0, 0x40, 0xC0, 0x1]))
    if 0x10000 + 8 * sx + 8 <= size:
        struct.pack_into(">Q", buf, 0x10000 + 8 * sx, ste & (1 << 64) - 1)
    pte = data.draw(st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, 0x80).map(lambda f: f << 12)))
    pte = pte | data.draw(_FLAGS)
    pa = (ste & ~0x7FF) + 8 * ((vaddr >> 12) & 0xFF)  # the page-table origin is 2 KiB aligned
    if pa + 8 <= size:
        struct.pack_into(">Q", buf, pa, pte & (1 << 64) - 1)
    view = memoryview(bytes(buf))
    try:
        expect = dat.translate(view, lambda r: r, asce, vaddr, True, 0, False)[0]
    except ProgramException:
        expect = None
    got = _segment_walk(view, asce, vaddr)
    assert (got[0] if got else None) == expect
    if got:
        assert got[1:] == (0x10000 + 8 * sx, struct.unpack_from(">Q", view, got[1])[0], pa,
                           struct.unpack_from(">Q", view, pa)[0])  # fmt: skip


def test_segment_walk_table_length_and_asce_type():
    from firmware.uv import _segment_walk

    buf = bytearray(0x40000)
    for sx in range(2048):
        struct.pack_into(">Q", buf, 0x10000 + 8 * sx, 0x20000)
    struct.pack_into(">Q", buf, 0x20000 + 8 * 5, 0x7000)
    view = memoryview(bytes(buf))
    for length in range(4):
        for part in range(4):
            vaddr = (part << 29) | 0x5000
            walk = _segment_walk(view, 0x10000 | length, vaddr)
            assert (walk is not None) == (part <= length)
            if walk:
                assert walk[0] == 0x7000 == dat.translate(view, lambda r: r, 0x10000 | length, vaddr, True)[0]
    assert _segment_walk(view, 0x10003, 1 << 31) is None

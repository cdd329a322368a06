"""Physical memory: sizes, lazy cost, owner tags and the host view's 0x3D checks, code invalidation."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import HwError, SecureStorageAccess
from emulator.hw.memory import KEY_C, KEY_R, OWNER_UV, PhysicalMemory


def test_sizes_are_checked():
    with pytest.raises(HwError):
        PhysicalMemory(12345)
    with pytest.raises(HwError):
        PhysicalMemory(0)


def test_big_machine_costs_only_touched_pages():
    mem = PhysicalMemory(4 << 30)
    mem.write(3 << 30, b"hello")
    assert mem.read(3 << 30, 5) == b"hello"
    assert mem.read(0, 4) == bytes(4)


def test_out_of_range_is_an_error():
    mem = PhysicalMemory(1 << 20)
    with pytest.raises(HwError, match="outside memory"):
        mem.read((1 << 20) - 2, 4)


def test_host_view_traps_secure_frames_and_changes_nothing():
    mem = PhysicalMemory(1 << 20)
    host = mem.host_view()
    mem.write(0x5000, b"secret")
    mem.set_owner(5, OWNER_UV)
    with pytest.raises(SecureStorageAccess) as e:
        host.read(0x4FF0, 0x20)
    assert e.value.code == 0x3D and e.value.teid == 0x5000 | 0x4 | 0x800
    with pytest.raises(SecureStorageAccess) as e:
        host.write(0x5008, b"x")
    assert e.value.teid == 0x5000 | 0x4 | 0x400
    assert mem.read(0x5000, 6) == b"secret"
    mem.set_shared(5, True)
    assert host.read(0x5000, 6) == b"secret"


def _outcome(fn):
    try:
        return "ok", fn()
    except SecureStorageAccess as e:
        return "0x3d", e.teid
    except HwError:
        return "range", None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["host", "uv", "shared"]), min_size=4, max_size=4),
    st.sampled_from([0, (1 << 20) - 0x4000]),
    st.integers(-0x10, 0x4010),
    st.integers(0, 0x1100),
)
def test_host_view_fast_paths_decide_like_the_full_check(owners, base, offset, length):
    """read, write (one-frame fast paths) and the firmware's checked window raise exactly what the full
    check raises, at both ends of memory."""
    mem = PhysicalMemory(1 << 20)
    for f, o in enumerate(owners):
        if o != "host":
            mem.set_owner((base >> 12) + f, OWNER_UV)
        if o == "shared":
            mem.set_shared((base >> 12) + f, True)
    host = mem.host_view()
    addr = base + offset
    want_read = _outcome(lambda: host.check(addr, length, False))
    want_write = _outcome(lambda: host.check(addr, length, True))
    got = _outcome(lambda: host.read(addr, length))
    assert got[0] == want_read[0] and (got[0] != "0x3d" or got[1] == want_read[1])
    if got[0] == "ok":
        assert got[1] == mem.read(addr, length)
    got = _outcome(lambda: bytes(mem.checked_window(addr, length)))
    assert got[0] == want_read[0] and (got[0] != "0x3d" or got[1] == want_read[1])
    assert want_read[0] == want_write[0]  # the host view refuses the same frames for both
    before = mem.read(base, 0x4000)
    got = _outcome(lambda: host.write(addr, b"\xaa" * length))
    assert got[0] == want_write[0] and (got[0] != "0x3d" or got[1] == want_write[1])
    if got[0] != "ok":
        assert mem.read(base, 0x4000) == before  # a refused store changes nothing


def test_window_is_read_only_and_the_host_view_has_none():
    mem = PhysicalMemory(1 << 20)
    w = mem.checked_window(0x100, 8)
    with pytest.raises(TypeError):
        w[0] = 1
    assert not hasattr(mem.host_view(), "window")  # a view's .obj is storage: firmware's only


def test_listeners_hear_writes_and_owner_changes():
    mem = PhysicalMemory(1 << 20)
    seen, frames = [], []
    mem.add_invalidate_listener(lambda lo, hi: seen.append((lo, hi)))
    mem.add_owner_listener(frames.append)
    mem.write(0x1000, b"ab")
    mem.set_owner(7, 2)
    assert seen == [(0x1000, 0x1002)] and frames == [7]


def test_load_file_reads_straight_into_storage_and_the_host_view_checks_first():
    import io

    mem = PhysicalMemory(1 << 20)
    heard = []
    mem.add_invalidate_listener(lambda lo, hi: heard.append((lo, hi)))
    data = bytes(range(256)) * 40  # 10240 bytes: three frames
    assert mem.load_file(0x3F00, io.BytesIO(data), len(data)) == len(data)
    assert mem.read(0x3F00, len(data)) == data
    assert heard[-1] == (0x3F00, 0x3F00 + len(data))
    assert mem.load_file(0x10000, io.BytesIO(b"short"), 100) == 5  # the file ended first
    with pytest.raises(HwError):
        mem.load_file((1 << 20) - 4, io.BytesIO(data), 8)
    host = mem.host_view()
    mem.set_owner(0x21, OWNER_UV)
    f = io.BytesIO(data)
    with pytest.raises(SecureStorageAccess) as e:
        host.load_file(0x20000, f, 0x2000)
    assert e.value.teid == 0x21000 | 0x4 | 0x400 and f.tell() == 0  # nothing read, nothing stored
    assert mem.read(0x20000, 0x2000) == bytes(0x2000)


def test_discard_gives_frames_back_zeroed_as_the_hosts_stores_leave_them_and_the_host_view_checks_first():
    mem = PhysicalMemory(1 << 20)
    host = mem.host_view()
    mem.write(0x3000, b"left behind" * 100)
    mem.write(0x7000, b"secret")
    mem.keys[3] = 0x36
    seen = []
    mem.add_invalidate_listener(lambda lo, hi: seen.append((lo, hi)))
    host.discard(0x2000, 0x3000)
    # access-control and fetch-protection bits 0; reference and change set (the host stored the zeros)
    assert mem.read(0x2000, 0x3000) == bytes(0x3000) and mem.keys[2:5] == bytes([KEY_R | KEY_C]) * 3
    assert (0x2000, 0x5000) in seen
    with pytest.raises(HwError, match="whole 4 KiB frames"):
        host.discard(0x2800, 0x1000)
    mem.set_owner(7, OWNER_UV)
    with pytest.raises(SecureStorageAccess):
        host.discard(0x6000, 0x2000)
    assert mem.read(0x7000, 6) == b"secret"  # refused: nothing discarded

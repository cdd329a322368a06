"""Physical memory: sizes, lazy cost, owner tags and the host view's 0x3D checks, code invalidation."""

import pytest

from emulator.errors import HwError, SecureStorageAccess
from emulator.hw.memory import OWNER_UV, PhysicalMemory


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


def test_listeners_hear_writes_and_owner_changes():
    mem = PhysicalMemory(1 << 20)
    seen, frames = [], []
    mem.add_invalidate_listener(lambda lo, hi: seen.append((lo, hi)))
    mem.add_owner_listener(frames.append)
    mem.write(0x1000, b"ab")
    mem.set_owner(7, 2)
    assert seen == [(0x1000, 0x1002)] and frames == [7]

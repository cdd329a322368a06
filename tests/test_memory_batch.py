"""Owner-change notifications in batches (``PhysicalMemory.owner_batch`` / ``set_owner_range``)."""

import pytest

from emulator.errors import SecureStorageAccess
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PhysicalMemory


def _mem():
    m = PhysicalMemory(1 << 20)
    single, batches = [], []
    m.add_owner_listener(single.append)
    m.add_owner_batch_listener(lambda frames: batches.append(list(frames)))
    return m, single, batches


def test_outside_a_batch_every_change_is_told_at_once():
    m, single, batches = _mem()
    m.set_owner(3, 2)
    m.set_shared(3, True)
    assert single == [3, 3] and batches == [[3], [3]]
    assert m.owner[3] == 2 and m.shared[3] == 1


def test_a_batch_tells_batch_listeners_once_at_the_outermost_end():
    m, single, batches = _mem()
    view = m.host_view()
    with m.owner_batch():
        m.set_owner(1, OWNER_UV)
        with m.owner_batch():
            m.set_owner(2, 5)
        assert batches == []  # nested end: still deferred
        assert single == [1, 2]  # per-frame listeners hear every change at once
        assert m.owner[1] == OWNER_UV and m.non_host_frames == 2  # tags change at once
        with pytest.raises(SecureStorageAccess):
            view.read(0x1000, 8)
    assert batches == [[1, 2]]
    with m.owner_batch():
        pass
    assert batches == [[1, 2]]  # an empty batch tells nobody


def test_a_batch_ending_with_an_exception_still_tells():
    m, _single, batches = _mem()
    with pytest.raises(RuntimeError), m.owner_batch():
        m.set_owner(7, OWNER_UV)
        raise RuntimeError("boom")
    assert batches == [[7]]


def test_set_owner_range_and_back():
    m, single, batches = _mem()
    m.set_owner_range(range(4, 8), OWNER_UV)
    assert batches == [[4, 5, 6, 7]] and single == [4, 5, 6, 7] and m.non_host_frames == 4
    m.set_owner_range(range(4, 8), OWNER_HOST)
    assert batches[-1] == [4, 5, 6, 7] and m.non_host_frames == 0
    m.host_view().write(0x4000, b"x" * 0x4000)


def test_removed_batch_listener_is_not_told():
    m = PhysicalMemory(1 << 20)
    seen = []
    m.add_owner_batch_listener(seen.append)
    m.remove_owner_batch_listener(seen.append)
    m.set_owner(1, OWNER_UV)
    assert seen == []

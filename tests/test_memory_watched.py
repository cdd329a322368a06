"""Invalidate listeners that watch frames: skipped for one-frame writes outside them, else told."""

from emulator.hw.memory import PAGE_SIZE, PhysicalMemory


def test_watched_listener_hears_only_its_frames_for_one_frame_writes():
    mem = PhysicalMemory(1 << 20)
    watched: dict[int, object] = {}
    seen, all_seen = [], []
    mem.add_invalidate_listener(lambda lo, hi: seen.append((lo, hi)), watched)
    mem.add_invalidate_listener(lambda lo, hi: all_seen.append((lo, hi)))
    mem.write(0x3000, b"abc")
    mem.fill(0x5000, PAGE_SIZE)
    assert seen == [] and all_seen == [(0x3000, 0x3003), (0x5000, 0x6000)]
    watched[3] = object()  # the listener's live container changes: later writes follow it
    mem.write(0x3FF0, b"x" * 16)
    mem.fill(0x3000, PAGE_SIZE)
    mem.invalidate_code(0x3100, 0x3200)
    assert seen == [(0x3FF0, 0x4000), (0x3000, 0x4000), (0x3100, 0x3200)]
    seen.clear()
    mem.write(0x4FF0, b"y" * 32)  # spans two frames, neither watched: still told
    mem.fill(0x8000, 2 * PAGE_SIZE)
    assert seen == [(0x4FF0, 0x5010), (0x8000, 0xA000)]


def test_remove_forgets_a_watched_listener_and_fill_clears():
    mem = PhysicalMemory(1 << 20)
    seen = []

    def listener(lo, hi):
        seen.append(lo)

    mem.add_invalidate_listener(listener, {1})
    mem.write(0x1000, b"\xff" * PAGE_SIZE)
    mem.fill(0x1000, PAGE_SIZE)
    assert mem.read(0x1000, PAGE_SIZE) == bytes(PAGE_SIZE) and seen == [0x1000, 0x1000]
    mem.remove_invalidate_listener(listener)
    mem.write(0x1000, b"z")
    assert seen == [0x1000, 0x1000]


def test_host_view_check_raises_like_the_access():
    import pytest

    from emulator.errors import SecureStorageAccess

    mem = PhysicalMemory(1 << 20)
    view = mem.host_view()
    mem.set_owner(2, 1)
    view.check(0x1000, PAGE_SIZE, True)
    with pytest.raises(SecureStorageAccess):
        view.check(0x1F00, 0x200, True)
    with pytest.raises(SecureStorageAccess):
        view.read(0x1F00, 0x200)


def test_watched_owner_batch_listener_skips_single_changes_outside_and_hears_batches():
    mem = PhysicalMemory(1 << 20)
    held: set[int] = set()
    seen, all_seen = [], []
    mem.add_owner_batch_listener(lambda frames: seen.append(list(frames)), held)
    mem.add_owner_batch_listener(lambda frames: all_seen.append(list(frames)))
    mem.set_owner(3, 2)
    mem.set_shared(3, True)
    assert seen == [] and all_seen == [[3], [3]]
    held.add(3)
    mem.set_owner(3, 0)
    assert seen == [[3]]
    with mem.owner_batch():
        mem.set_owner(5, 2)
        mem.set_owner(6, 2)
    assert seen == [[3], [5, 6]] and all_seen[-1] == [5, 6]

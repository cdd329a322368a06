"""A host view's access and an Ultravisor command on another thread that makes the frame secure: the host
never reads the plaintext the command writes, and never stores into the frame once it is secure.

A host read checked the owner tag, then copied; a store checked, then stored. An Ultravisor command
(an import: the frame becomes the guest's, then its plaintext is written) that ran between the two
handed the host the plaintext, or had the host's store land in the secure page. Here the command is run
exactly there: from inside the view's tag lookup, after it has read the host's tag.
"""

import threading

import pytest

from emulator.errors import SecureStorageAccess
from emulator.hw.memory import OWNER_HOST, PAGE_SHIFT, PhysicalMemory

FRAME = 5
ADDR = FRAME << PAGE_SHIFT
GUEST = 7  # a secure configuration's tag
PLAINTEXT = b"SECRET-PLAINTEXT" * 4


class Tags:
    """The owner tags, with a hook run once after the view has read the host's tag of ``FRAME``."""

    def __init__(self, tags, after_host_read) -> None:
        self._tags = tags
        self._hook = after_host_read

    def __getitem__(self, i):
        v = self._tags[i]
        if i == FRAME and v == OWNER_HOST and self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        return v

    def __setitem__(self, i, v) -> None:
        self._tags[i] = v

    def __len__(self) -> int:
        return len(self._tags)


def _memory_with_one_secure_frame() -> PhysicalMemory:
    mem = PhysicalMemory(1 << 20)
    mem.set_owner(0, GUEST)  # some secure frame: the views take their slow path only when there is one
    return mem


def _import(mem: PhysicalMemory) -> None:
    """What an import does to the frame: the guest's first, then its plaintext."""
    mem.set_owner(FRAME, GUEST)
    mem.write(ADDR, PLAINTEXT)


def test_a_read_whose_frame_turns_secure_after_its_check_is_refused_not_the_plaintext():
    mem = _memory_with_one_secure_frame()
    mem.owner = Tags(mem.owner, lambda: _import(mem))
    view = mem.host_view()
    with pytest.raises(SecureStorageAccess):
        got = view.read(ADDR, len(PLAINTEXT))
        assert PLAINTEXT not in got  # (the old view returned the plaintext here)


def test_a_store_whose_frame_turns_secure_on_another_thread_does_not_land_in_the_secure_page():
    mem = _memory_with_one_secure_frame()
    done = threading.Event()

    def import_on_another_thread() -> None:
        t = threading.Thread(target=lambda: (_import(mem), done.set()), daemon=True)
        t.start()
        done.wait(0.5)  # the old view let the import run to its end here, between its check and its store

    mem.owner = Tags(mem.owner, import_on_another_thread)
    view = mem.host_view()
    try:
        view.write(ADDR, b"H" * len(PLAINTEXT))
    except SecureStorageAccess:
        pass  # refused (the import came first): as good
    assert done.wait(5)
    assert mem.read(ADDR, len(PLAINTEXT)) == PLAINTEXT  # the guest's page holds what the import wrote

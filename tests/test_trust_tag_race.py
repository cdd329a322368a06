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


def _race_on_another_thread(mem: PhysicalMemory) -> threading.Event:
    """Install the hook: the import runs on another thread once the view has read the host's tag of
    ``FRAME``, and the view waits for it there (the old view let it run to its end between check and act)."""
    done = threading.Event()

    def import_on_another_thread() -> None:
        t = threading.Thread(target=lambda: (_import(mem), done.set()), daemon=True)
        t.start()
        done.wait(0.5)

    mem.owner = Tags(mem.owner, import_on_another_thread)
    return done


def test_a_file_load_whose_frame_turns_secure_on_another_thread_does_not_land_in_the_secure_page():
    import io

    mem = _memory_with_one_secure_frame()
    done = _race_on_another_thread(mem)
    view = mem.host_view()
    try:
        assert view.load_file(ADDR, io.BytesIO(b"F" * len(PLAINTEXT)), len(PLAINTEXT)) == len(PLAINTEXT)
    except SecureStorageAccess:
        pass
    assert done.wait(5)
    assert mem.read(ADDR, len(PLAINTEXT)) == PLAINTEXT  # (the old view's load overwrote the guest's page)


def test_a_discard_whose_frame_turns_secure_on_another_thread_does_not_clear_the_secure_page():
    mem = _memory_with_one_secure_frame()
    mem.write(ADDR, b"h" * 4096)
    done = _race_on_another_thread(mem)
    view = mem.host_view()
    try:
        view.discard(ADDR, 4096)
    except SecureStorageAccess:
        pass
    assert done.wait(5)
    assert mem.read(ADDR, len(PLAINTEXT)) == PLAINTEXT  # (the old view zeroed the guest's page)
    assert mem.owner[FRAME] == GUEST


def test_a_refused_load_or_discard_stores_nothing():
    import io

    mem = _memory_with_one_secure_frame()
    mem.write(0, PLAINTEXT)  # frame 0: secure
    mem.write(4096, b"host" * 1024)  # frame 1: the host's
    view = mem.host_view()
    with pytest.raises(SecureStorageAccess):
        view.load_file(4096 - 16, io.BytesIO(bytes(4096)), 4096)  # from the secure frame into the host's
    with pytest.raises(SecureStorageAccess):
        view.discard(0, 2 * 4096)
    assert mem.read(0, len(PLAINTEXT)) == PLAINTEXT
    assert mem.read(4096, 4096) == b"host" * 1024


@pytest.mark.parametrize("store", [False, True])
def test_a_channel_program_whose_data_frame_turns_secure_after_its_check_gets_a_protection_check(store):
    from emulator.hw import css_blocks as cb
    from emulator.hw.css import ChannelCheck, ChannelSubsystem

    mem = _memory_with_one_secure_frame()
    done = _race_on_another_thread(mem)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    key_before = mem.keys[FRAME]
    with pytest.raises(ChannelCheck) as e:  # (the old channel let SecureStorageAccess through)
        if store:
            css.channel_write(ADDR, b"D" * len(PLAINTEXT), 0)
        else:
            got = css.channel_read(ADDR, len(PLAINTEXT), 0)
            assert PLAINTEXT not in got
    assert e.value.status == cb.SCH_PROTECTION_CHECK
    assert done.wait(5)
    assert mem.read(ADDR, len(PLAINTEXT)) == PLAINTEXT
    assert mem.keys[FRAME] == key_before  # a refused transfer leaves the reference and change bits


def test_an_in_place_object_collected_while_the_tag_lock_is_held_unpins_without_deadlock():
    """A garbage collection inside a host store (under the tag lock) may run the finalizer of a SIE page
    the hardware holds in place; its unpin takes the same lock (the suite hung in destroy_vm's discard)."""
    import gc

    from emulator.hw.hardware import Hardware
    from emulator.hw.sie import SiePage

    mem = PhysicalMemory(1 << 20)
    hw = Hardware(mem)
    page = hw.in_place(ADDR, SiePage)
    cycle: list = [page]
    cycle.append(cycle)  # collected only by the cyclic collector
    del page, cycle
    assert mem.used_in_place.__self__ is mem and FRAME in mem._in_place  # noqa: SLF001
    finished = threading.Event()

    def collect_under_the_lock() -> None:
        with mem.tag_lock:
            gc.collect()
        finished.set()

    threading.Thread(target=collect_under_the_lock, daemon=True).start()
    assert finished.wait(10), "the finalizer's unpin deadlocked on the tag lock"
    assert not mem.used_in_place(FRAME)
    mem.set_owner(FRAME, GUEST)  # the frame may turn secure now


def test_unpack_makes_the_frame_secure_before_it_decrypts(tmp_path) -> None:
    """Unpack decrypted an image page in place while its frame was still host storage (or another
    configuration's shared page) and made it secure afterwards: a host thread reading the frame in that
    window (the decryption is a libcrypto call that lets other threads run) read the image's plaintext.
    Now the frame is the guest's first, as Import does. The test looks at every frame as Unpack takes it:
    it must hold no page of the image's plaintext while the host may still read it."""
    from elftools.elf.elffile import ELFFile

    from emulator.hw import access
    from emulator.hypervisor.boot import DEMO_KERNEL

    plain: list[bytes] = []
    with open(DEMO_KERNEL, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD":
                d = seg.data()
                plain += [d[o : o + 64] for o in range(0, len(d), 4096) if any(d[o : o + 64])]
    assert len(plain) >= 3
    from emulator.api import Host, _machine_of

    with Host(seed=12) as host:
        uv = _machine_of(host).uv
        mem = uv.mem
        seen: list[int] = []
        take = uv._take_frame  # noqa: SLF001 - the test watches the Ultravisor's own step

        def watched(cfg, frame, gaddr):
            if access.may_access(mem, frame) and mem.read(frame << 12, 64) in plain:
                seen.append(gaddr)
            return take(cfg, frame, gaddr)

        uv._take_frame = watched  # noqa: SLF001
        try:
            g = host.boot()
        finally:
            del uv._take_frame  # noqa: SLF001
        assert g.secure and "secret page at" in g.console.decode()
        assert seen == [], [hex(a) for a in seen]

"""Storage ownership, import/export, destroy, pin/unpin, guest sharing: every documented failure, then
success."""

from __future__ import annotations

import random
import struct

import pytest

from emulator.errors import ProgramException, SecureStorageAccess
from emulator.hw.cpu import GuestIntercept
from emulator.hw.memory import OWNER_HOST, PhysicalMemory
from emulator.hypervisor.uvclient import HostArena, UvClient
from firmware.uv import Ultravisor, UvCaller
from firmware.uv_codes import Cc, Rc

MEM = 0x84000000
UV_BASE = 0x80000000


class Env:
    def __init__(self) -> None:
        self.mem = PhysicalMemory(MEM)
        self.uv = Ultravisor(self.mem, rng=random.Random(11).randbytes)
        self.view = self.mem.host_view()
        self.c = UvClient(self.uv, self.view, HostArena(0x100000, 0x7F000000))
        self.c.init(UV_BASE)
        self.g = self.c.create_guest(1 << 20, cpus=1)
        self.gv = self.uv.guest_view(self.g.handle)

    def host(self, gaddr: int) -> int:
        return self.g.guest_frames[gaddr]

    def guest_uvc(self, cmd: int, paddr: int, at: int = 0x1000) -> tuple[int, int]:
        self.gv.write(at, struct.pack(">HH", 0x30, cmd).ljust(0x20, b"\0") + struct.pack(">QQ", paddr, 0))
        cc = self.uv.call(UvCaller("guest", self.g.handle, self.g.cpu_handles[0]), self.gv.control_block(at))
        return cc, struct.unpack(">H", self.gv.read(at + 4, 2))[0]


@pytest.fixture
def env() -> Env:
    return Env()


def test_first_import_gives_the_guest_zeroes_and_the_host_loses_access(env: Env) -> None:
    h = env.host(0x2000)
    env.view.write(h, b"host-chosen content")
    with pytest.raises(ProgramException) as e:
        env.gv.read(0x2000, 4)
    assert e.value.code == 0x3E and e.value.teid == 0x2000 | 0x4 | 0x800
    res = env.c.import_page(env.g.handle, 0x2000)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    assert env.gv.read(0x2000, 4096) == bytes(4096)
    with pytest.raises(SecureStorageAccess) as e2:
        env.view.read(h + 16, 1)
    assert e2.value.teid & ~0xFFF == h and e2.value.teid & 0x4
    with pytest.raises(SecureStorageAccess):
        env.view.write(h, b"x")
    assert env.uv.frame_state(h >> 12) == (env.uv.config_tag(env.g.handle), 0x2000, False)
    assert env.uv.secure_guest_frame(env.g.handle, 0x2000) == h >> 12
    assert env.uv.secure_guest_frame(env.g.handle, 0x3000) is None


def test_import_checks_handle_range_mapping_and_state(env: Env) -> None:
    hnd = env.g.handle
    assert env.c.import_page(hnd + 1, 0x2000).rc == Rc.INV_GHANDLE
    assert env.c.import_page(hnd, 1 << 20).rc == 0x0101
    env.g.gmap.unmap(0x5000)
    assert env.c.import_page(hnd, 0x5000).rc == 0x010A
    env.g.gmap.map(0x5000, UV_BASE)  # a malicious gmap pointing at Ultravisor storage
    assert env.c.import_page(hnd, 0x5000).rc == 0x0105
    assert env.c.import_page(hnd, 0x2000).rc == Rc.EXECUTED
    assert env.c.import_page(hnd, 0x2000).rc == 0x0104  # already secure
    env.g.gmap.map(0x6000, env.host(0x2000))  # two guest pages on one secure frame
    assert env.c.import_page(hnd, 0x6000).rc == 0x0105


def test_a_second_configuration_cannot_import_a_secure_frame_of_the_first(env: Env) -> None:
    other = env.c.create_guest(1 << 20)
    assert env.c.import_page(env.g.handle, 0x2000).ok
    other.gmap.map(0x2000, env.host(0x2000))
    assert env.c.import_page(other.handle, 0x2000).rc == 0x0105
    # the other guest touching it: secure-storage violation for the host
    with pytest.raises(ProgramException) as e:
        env.uv.guest_view(other.handle).read(0x2000, 1)
    assert e.value.code == 0x3F


def test_export_gives_the_host_ciphertext_and_import_restores_the_plaintext(env: Env) -> None:
    assert env.c.import_page(env.g.handle, 0x2000).ok
    secret = (b"the guest's secret " * 250)[:4096]
    env.gv.write(0x2000, secret[:4096])
    h = env.host(0x2000)
    res = env.c.export_page(h)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    ct = env.view.read(h, 4096)
    assert b"secret" not in ct and ct != bytes(4096)
    assert env.mem.owner[h >> 12] == OWNER_HOST
    assert env.c.import_page(env.g.handle, 0x2000).ok
    assert env.gv.read(0x2000, 4096) == secret[:4096]
    # a second export of the same content gives different ciphertext (new counter)
    env.c.export_page(h)
    assert env.view.read(h, 4096) != ct


def test_a_guest_page_is_secure_in_one_frame_and_an_exported_page_comes_back_in_any(env: Env) -> None:
    assert env.c.import_page(env.g.handle, 0x3000).ok
    env.gv.write(0x3000, b"kept across frames")
    a, b = env.host(0x3000), 0x7E000000
    env.g.gmap.map(0x3000, b)  # the hypervisor maps the secure guest page to a second frame
    assert env.c.import_page(env.g.handle, 0x3000).rc == 0x0105
    assert env.mem.owner[b >> 12] == OWNER_HOST
    env.g.gmap.map(0x3000, a)
    assert env.c.export_page(a).ok
    assert env.uv.exported_pages(env.g.handle) == {0x3000: 1}
    env.view.write(b, env.view.read(a, 4096))  # swapped in to another frame, as a host may
    env.g.gmap.map(0x3000, b)
    assert env.c.import_page(env.g.handle, 0x3000).ok
    assert env.uv.secure_guest_frame(env.g.handle, 0x3000) == b >> 12
    assert env.gv.read(0x3000, 18) == b"kept across frames"
    assert env.uv.exported_pages(env.g.handle) == {}
    assert env.c.export_page(a).rc == 0x0107  # the first frame is host storage again


def test_modified_swapped_and_replayed_pages_are_refused_and_nothing_changes(env: Env) -> None:
    hnd = env.g.handle
    for ga, fill in ((0x2000, b"A"), (0x3000, b"B")):
        assert env.c.import_page(hnd, ga).ok
        env.gv.write(ga, fill * 4096)
        assert env.c.export_page(env.host(ga)).ok
    a, b = env.host(0x2000), env.host(0x3000)
    ct_a, ct_b = env.view.read(a, 4096), env.view.read(b, 4096)
    # modified
    env.view.write(a, bytes([ct_a[0] ^ 1]) + ct_a[1:])
    assert env.c.import_page(hnd, 0x2000).rc == 0x0107
    assert env.mem.owner[a >> 12] == OWNER_HOST
    # swapped (page B's ciphertext at A's address)
    env.view.write(a, ct_b)
    assert env.c.import_page(hnd, 0x2000).rc == 0x0107
    # the genuine one still works
    env.view.write(a, ct_a)
    assert env.c.import_page(hnd, 0x2000).ok and env.gv.read(0x2000, 2) == b"AA"
    # replay: export again, then hand back the older ciphertext
    env.gv.write(0x2000, b"C" * 4096)
    assert env.c.export_page(a).ok
    env.view.write(a, ct_a)
    assert env.c.import_page(hnd, 0x2000).rc == 0x0107
    with pytest.raises(ProgramException):
        env.gv.read(0x2000, 1)  # the guest never sees the refused content


def test_a_page_exported_from_one_guest_is_refused_by_another(env: Env) -> None:
    other = env.c.create_guest(1 << 20)
    assert env.c.import_page(env.g.handle, 0x2000).ok
    env.gv.write(0x2000, b"mine" * 1024)
    assert env.c.export_page(env.host(0x2000)).ok
    ct = env.view.read(env.host(0x2000), 4096)
    assert env.c.import_page(other.handle, 0x2000).ok
    assert env.c.export_page(other.guest_frames[0x2000]).ok  # other now has an export record at 0x2000
    env.view.write(other.guest_frames[0x2000], ct)
    assert env.c.import_page(other.handle, 0x2000).rc == 0x0107


def test_export_destroy_and_pin_check_the_frame(env: Env) -> None:
    for name in ("conv_from_sec_stor", "destr_sec_stor", "pin_page_shared"):
        assert env.c.call(name, paddr=MEM).rc == 0x0104, name
        assert env.c.call(name, paddr=UV_BASE).rc == 0x0105, name
    for name in ("conv_from_sec_stor", "pin_page_shared"):
        res = env.c.call(name, paddr=env.host(0x4000))
        assert (res.rc, res.rrc) == (0x0107, 0x000D), name
    assert env.c.import_page(env.g.handle, 0x4000).ok
    assert env.c.call("pin_page_shared", paddr=env.host(0x4000)).rc == 0x0108


def test_destroy_secure_storage_clears_the_page_and_the_next_import_is_zero(env: Env) -> None:
    assert env.c.import_page(env.g.handle, 0x2000).ok
    env.gv.write(0x2000, b"x" * 4096)
    assert env.c.export_page(env.host(0x2000)).ok
    assert env.c.import_page(env.g.handle, 0x2000).ok
    res = env.c.destroy_page(env.host(0x2000))
    assert res.rc == Rc.EXECUTED
    assert env.view.read(env.host(0x2000), 4096) == bytes(4096)
    env.view.write(env.host(0x2000), b"host" * 1024)
    assert env.c.import_page(env.g.handle, 0x2000).ok
    assert env.gv.read(0x2000, 4096) == bytes(4096)


def test_fast_teardown_destroys_config_with_secure_pages_then_the_pages(env: Env) -> None:
    assert env.c.import_page(env.g.handle, 0x2000).ok
    env.gv.write(0x2000, b"s" * 4096)
    env.c.check("destroy_sec_cpu", handle=env.g.cpu_handles[0])
    env.c.check("destroy_sec_conf_fast", handle=env.g.handle)
    h = env.host(0x2000)
    with pytest.raises(SecureStorageAccess):
        env.view.read(h, 1)  # still secure after the configuration is gone
    assert env.c.export_page(h).rc == 0x0106  # no key to export with any more
    assert env.c.destroy_page(h).rc == Rc.EXECUTED
    assert env.view.read(h, 4096) == bytes(4096)


def test_destroy_configuration_clears_and_returns_every_guest_page(env: Env) -> None:
    # kvm-unit-tests' snippets reuse a destroyed guest's storage at once (lib/s390x/uv.c)
    assert env.c.import_page(env.g.handle, 0x2000).ok
    env.gv.write(0x2000, b"s" * 4096)
    env.c.check("destroy_sec_cpu", handle=env.g.cpu_handles[0])
    env.c.check("destroy_sec_conf", handle=env.g.handle)
    h = env.host(0x2000)
    assert env.view.read(h, 4096) == bytes(4096)  # host storage again, and nothing of the guest left
    env.view.write(h, b"host")
    res = env.c.destroy_page(h)  # KVM's teardown order still works: the page is simply not secure
    assert (res.rc, res.rrc) == (0x0001, 0)
    assert env.view.read(h, 4) == b"host"


def test_destroy_of_a_page_that_is_not_secure_is_a_no_op(env: Env) -> None:
    # current firmware's answer (Linux's uv_destroy turns older firmware's rc 0x0107 rrc 0x000D into it)
    h = env.host(0x4000)
    env.view.write(h, b"host data")
    res = env.c.destroy_page(h)
    assert (res.rc, res.rrc) == (0x0001, 0)
    assert env.view.read(h, 9) == b"host data"  # left as it is, not cleared


def test_guest_sharing_pin_unpin_and_unshare_all(env: Env) -> None:
    hnd = env.g.handle
    assert env.c.import_page(hnd, 0x1000).ok  # the page holding the guest's UVCB
    # a page not secure yet: the UVC goes to the host as 0x3E first
    with pytest.raises(ProgramException) as e:
        env.guest_uvc(0x1000, 0x8000)
    assert e.value.code == 0x3E and e.value.teid & ~0xFFF == 0x8000
    assert env.c.import_page(hnd, 0x8000).ok
    env.gv.write(0x8000, b"shared ring")
    assert env.guest_uvc(0x1000, 0x8000) == (Cc.OK, Rc.EXECUTED)
    assert env.guest_uvc(0x1000, 1 << 20) == (Cc.ERROR, 0x0101)
    h = env.host(0x8000)
    assert env.view.read(h, 11) == b"shared ring"
    env.view.write(h, b"host reply")
    assert env.gv.read(0x8000, 10) == b"host reply"
    # pin, then the guest's Remove Shared Access goes to the host first (notification 0x6C)
    assert env.c.call("pin_page_shared", paddr=h).rc == Rc.EXECUTED
    with pytest.raises(GuestIntercept) as ic:
        env.guest_uvc(0x1001, 0x8000)
    assert ic.value.code == 0x6C and ic.value.data["ipa"] == 0xB9A4
    assert env.c.call("unpin_page_shared", guest_handle=hnd + 1, gaddr=0x8000).rc == Rc.INV_GHANDLE
    assert env.c.call("unpin_page_shared", guest_handle=hnd, gaddr=1 << 20).rc == 0x0101
    assert env.c.call("unpin_page_shared", guest_handle=hnd, gaddr=0x1000).rc == 0x0104
    assert env.c.call("unpin_page_shared", guest_handle=hnd, gaddr=0x8000).rc == Rc.EXECUTED
    assert env.guest_uvc(0x1001, 0x8000) == (Cc.OK, Rc.EXECUTED)
    with pytest.raises(SecureStorageAccess):
        env.view.read(h, 1)
    # share again, then Unshare All from the host
    assert env.guest_uvc(0x1000, 0x8000) == (Cc.OK, Rc.EXECUTED)
    assert env.c.call("set_unshare_all", handle=hnd ^ 2).rc == Rc.INV_GHANDLE
    assert env.c.call("set_unshare_all", handle=hnd).rc == Rc.EXECUTED
    with pytest.raises(SecureStorageAccess):
        env.view.read(h, 1)
    assert env.gv.read(0x8000, 10) == b"host reply"


def test_guest_share_length_is_checked(env: Env) -> None:
    assert env.c.import_page(env.g.handle, 0x1000).ok
    env.gv.write(0x1000, struct.pack(">HH", 0x28, 0x1000).ljust(0x30, b"\0"))
    cc = env.uv.call(UvCaller("guest", env.g.handle, env.g.cpu_handles[0]), env.gv.control_block(0x1000))
    assert cc == Cc.ERROR and struct.unpack(">H", env.gv.read(0x1004, 2))[0] == Rc.INV_LEN


def test_a_shared_page_of_another_configuration_moves_on_import(env: Env) -> None:
    other = env.c.create_guest(1 << 20)
    assert env.c.import_page(env.g.handle, 0x1000).ok
    assert env.c.import_page(env.g.handle, 0x8000).ok
    assert env.guest_uvc(0x1000, 0x8000) == (Cc.OK, Rc.EXECUTED)
    other.gmap.map(0x3000, env.host(0x8000))
    assert env.c.import_page(other.handle, 0x3000).ok
    assert env.uv.guest_view(other.handle).read(0x3000, 4096) == bytes(4096)
    with pytest.raises(ProgramException):
        env.gv.read(0x8000, 1)


def test_a_host_owned_frame_never_holds_the_guest_plaintext_during_export_or_import(
    env: Env,
) -> None:
    """Export encrypts the page while it is still the guest's and import makes the frame the guest's before
    it decrypts into it: at every change of the frame's contents the UV reports, a host-owned frame holds no
    plaintext (a host thread reading it between the two steps gets none)."""
    secret = (b"plaintext the host must not see " * 128)[:4096]
    assert env.c.import_page(env.g.handle, 0x2000).ok
    env.gv.write(0x2000, secret)
    h = env.host(0x2000)
    seen: list[tuple[bool, bool]] = []  # (host owns the frame, the frame holds the plaintext)

    def written(lo: int, hi: int) -> None:
        if lo <= h < hi:
            seen.append((env.mem.owner[h >> 12] == OWNER_HOST, env.mem.read(h, 4096) == secret))

    env.mem.add_invalidate_listener(written)
    for _ in range(3):
        assert env.c.export_page(h).ok
        assert env.view.read(h, 4096) != secret
        assert env.c.import_page(env.g.handle, 0x2000).ok
        assert env.gv.read(0x2000, 4096) == secret
    assert (True, True) not in seen and (False, True) in seen

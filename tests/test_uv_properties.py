"""Property tests: random host operations never reveal guest plaintext to the host and never put
host-chosen content into a secure page the guest reads."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import ProgramException, SecureStorageAccess
from emulator.hw.memory import PhysicalMemory
from emulator.hypervisor.uvclient import HostArena, UvClient
from firmware.uv import Ultravisor

MEM = 0x84000000
UV_BASE = 0x80000000
GPAGES = [0x1000 * i for i in range(1, 5)]

op = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(GPAGES)),
    st.tuples(st.just("write"), st.sampled_from(GPAGES), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("export"), st.sampled_from(GPAGES)),
    st.tuples(st.just("import"), st.sampled_from(GPAGES)),
    st.tuples(st.just("flip"), st.sampled_from(GPAGES), st.integers(0, 4095)),
    st.tuples(st.just("swap"), st.sampled_from(GPAGES), st.sampled_from(GPAGES)),
    st.tuples(st.just("save"), st.sampled_from(GPAGES)),
    st.tuples(st.just("replay"), st.sampled_from(GPAGES)),
    st.tuples(st.just("destroy"), st.sampled_from(GPAGES)),
    st.tuples(st.just("guest_write"), st.sampled_from(GPAGES)),
    st.tuples(st.just("guest_read"), st.sampled_from(GPAGES)),
)


def secret_for(gaddr: int, version: int) -> bytes:
    """Guest plaintext: a marker the host must never see, unique per page and version."""
    return (b"GUEST-SECRET-%05x-%04d|" % (gaddr, version) * 200)[:4096]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=40), st.integers(0, 2**32))
def test_host_never_sees_plaintext_and_guest_never_sees_host_content(ops, seed: int) -> None:
    mem = PhysicalMemory(MEM)
    uv = Ultravisor(mem, rng=random.Random(seed).randbytes)
    view = mem.host_view()
    c = UvClient(uv, view, HostArena(0x100000, 0x7F000000))
    c.init(UV_BASE)
    g = c.create_guest(1 << 20)
    gv = uv.guest_view(g.handle)
    # what the guest legitimately holds per page: its last write, zeroes after first import or destroy
    expected: dict[int, bytes] = {}
    versions: dict[int, int] = {}
    saved: dict[int, bytes] = {}
    host_written: set[bytes] = set()

    def host_sees(data: bytes) -> None:
        assert b"GUEST-SECRET" not in data

    for o in ops:
        kind, ga = o[0], o[1]
        h = g.guest_frames[ga]
        if kind == "read":
            try:
                host_sees(view.read(h, 4096))
            except SecureStorageAccess:
                pass
        elif kind == "write":
            try:
                view.write(h, o[2])
                host_written.add(bytes(o[2]))
            except SecureStorageAccess:
                pass
        elif kind == "export":
            c.export_page(h)
            try:
                host_sees(view.read(h, 4096))
            except SecureStorageAccess:
                pass
        elif kind == "import":
            if c.import_page(g.handle, ga).ok:
                expected.setdefault(ga, bytes(4096))
        elif kind == "flip":
            try:
                b = view.read(h + o[2], 1)
                view.write(h + o[2], bytes([b[0] ^ 0x80]))
            except SecureStorageAccess:
                pass
        elif kind == "swap":
            h2 = g.guest_frames[o[2]]
            try:
                a, b = view.read(h, 4096), view.read(h2, 4096)
                view.write(h, b)
                view.write(h2, a)
            except SecureStorageAccess:
                pass
        elif kind == "save":
            try:
                saved[ga] = view.read(h, 4096)
                host_sees(saved[ga])
            except SecureStorageAccess:
                pass
        elif kind == "replay":
            if ga in saved:
                try:
                    view.write(h, saved[ga])
                except SecureStorageAccess:
                    pass
        elif kind == "destroy":
            # Destroy of a page that is not secure (exported: the host holds its ciphertext) is a no-op that
            # succeeds (Linux's uv_destroy semantics): a later import brings the guest's own content back
            was_secure = not view.accessible(h)
            if c.destroy_page(h).ok and was_secure:
                expected[ga] = bytes(4096)
        elif kind == "guest_write":
            try:
                versions[ga] = versions.get(ga, 0) + 1
                data = secret_for(ga, versions[ga])
                gv.write(ga, data)
                expected[ga] = data
            except ProgramException as e:
                assert e.code == 0x3E
        elif kind == "guest_read":
            try:
                got = gv.read(ga, 4096)
            except ProgramException as e:
                assert e.code == 0x3E
                continue
            # the guest sees exactly what it last had: zeroes, or its own latest write
            assert got == expected[ga]
    # finally the host imports every page: whatever it did, each page the guest can read holds the guest's
    # own latest content (or zeroes), never host-chosen or replayed bytes
    for ga in GPAGES:
        if c.import_page(g.handle, ga).ok:
            expected.setdefault(ga, bytes(4096))
        try:
            got = gv.read(ga, 4096)
        except ProgramException:
            continue
        assert got == expected[ga]
        for w in host_written:
            if w.strip(b"\0"):
                assert w not in got or w in expected[ga]

"""The access rules are one rule: every path that writes it out inline for speed (the TLB fill's translate,
the DAT walk's table fetch, the real-address accessors, HostView) decides exactly as
``emulator.hw.access.may_access`` for every owner tag, shared flag and accessor."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ProgramException, SecureStorageAccess
from emulator.hw import access
from emulator.hw.cpu import PSW_MASK_64, PSW_MASK_DAT, GuestMapping
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PhysicalMemory

FRAME = 0x80  # the frame under test (absolute 0x80000), away from the prefix area
TABLE = 0x90  # a segment table whose entry points at a page table in FRAME


def _refused(fn) -> bool:
    try:
        fn()
    except (ProgramException, SecureStorageAccess) as e:
        assert e.code == 0x3D, e
        return True
    return False


@settings(max_examples=60, deadline=None)
@given(
    owner=st.sampled_from([OWNER_HOST, OWNER_UV, 2, 3]),
    shared=st.booleans(),
    guest_tag=st.sampled_from([None, 2, 3]),
)
def test_every_inline_check_decides_as_the_rule(cpu, owner, shared, guest_tag):
    mem = cpu.mem
    cpu.guest = None
    for f in (FRAME, TABLE):
        mem.set_owner(f, OWNER_HOST)
    mem.set_owner(FRAME, owner)
    mem.set_shared(FRAME, shared)
    addr = FRAME << 12
    try:
        # host-side Python
        assert _refused(lambda: mem.host_view().read(addr, 8)) == (not access.may_access(mem, FRAME))
        # a CPU: the host's, or one running a secure guest with an identity mapping
        cpu.guest = None if guest_tag is None else GuestMapping(lambda a, w, f: a, guest_tag)
        expected = not access.may_access(mem, FRAME, cpu.accessor)
        assert _refused(lambda: cpu.read_real(addr + 8, 8)) == expected
        assert _refused(lambda: cpu.table_to_host(addr + 8)) == expected
        cpu.set_psw(PSW_MASK_64, 0x10000)
        if guest_tag is None:  # the TLB fill's decision (a secure guest's mapping decides for it)
            assert _refused(lambda: cpu.translate(addr, mark=False)) == expected
        # the DAT walk through a page table in FRAME: the table fetch is the access
        mem.write(TABLE << 12, ((addr) | 0x0).to_bytes(8, "big"))  # segment entry -> page table at FRAME
        cpu.set_cr(1, (TABLE << 12) | 0x3)
        cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, 0x10000)
        if guest_tag is None:
            assert _refused(lambda: cpu.translate(0x5000, mark=False)) == expected
    finally:
        cpu.guest = None
        cpu.set_psw(PSW_MASK_64, 0x10000)
        mem.set_owner(FRAME, OWNER_HOST)


@settings(max_examples=50, deadline=None)
@given(
    tags=st.dictionaries(st.integers(0, 63), st.tuples(st.sampled_from([OWNER_UV, 2, 3]), st.booleans())),
    first=st.integers(0, 63),
    frames=st.integers(1, 64),
    offset=st.integers(0, 0xFFF),
    accessor=st.sampled_from([access.HOST, 2, 3]),
)
def test_a_range_is_refused_at_its_first_frame_the_rule_refuses(tags, first, frames, offset, accessor):
    """``refused_address`` (one frame at a time for short ranges, all tags compared at once for wide ones)
    names the first byte of the first frame ``may_access`` refuses, or None."""
    mem = PhysicalMemory(1 << 20)
    for f, (tag, shared) in tags.items():
        mem.set_owner(f, tag)
        mem.set_shared(f, shared)
    addr = (first << 12) + offset
    length = min((frames << 12) - offset, mem.size - addr)
    expected = None
    for f in range(addr >> 12, ((addr + length - 1) >> 12) + 1):
        if not access.may_access(mem, f, accessor):
            expected = max(addr, f << 12)
            break
    assert access.refused_address(mem, addr, length, accessor) == expected

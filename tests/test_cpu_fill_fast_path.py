"""A load's TLB fill for a secure guest in real mode asks the guest mapping directly (``Cpu._load_fill``):
it decides exactly what the full translation decides, for every address, prefix, PSW key and storage key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ProgramException
from emulator.hw.cpu import CR0_FPO, CR0_LAP, PSW_MASK_DAT, Cpu, GuestIntercept, GuestMapping, SubPageAccess
from emulator.hw.memory import KEY_C, KEY_F, KEY_R, PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

MEM = 4 << 20
GUEST = 1 << 20  # the guest's storage: guest absolute A is host absolute A + 2 MiB
NOT_SECURE = {0x3000, 0x9000, 0x41000}  # guest pages the mapping refuses (the host must import them)


def _to_host(gaddr: int, write: bool, fetch: bool) -> int:
    if gaddr >= GUEST:
        raise ProgramException(0x05, why="beyond the guest")
    if gaddr & ~0xFFF in NOT_SECURE:
        raise GuestIntercept(0x3E, "not secure", gaddr=gaddr & ~0xFFF, teid=0x400 if write else 0x800)
    return gaddr + (2 << 20)


@pytest.fixture(scope="module")
def cpu():
    c = Cpu(PhysicalMemory(MEM), 0, TodClock(deterministic=True), facility_list(True), 0)
    c.guest = GuestMapping(_to_host, owner_tag=7)
    yield c
    c.close()


def _outcome(f):
    try:
        return f()
    except (ProgramException, GuestIntercept, SubPageAccess) as e:
        return type(e).__name__, getattr(e, "code", None), getattr(e, "teid", None), getattr(e, "data", None)


def _by_translation(cpu: Cpu, vaddr: int):
    """What ``_load_fill`` answered before it had a direct path: the store's translation, else the load's."""
    try:
        host = cpu.translate(vaddr, write=True, page_fill=True, mark=False)
    except (ProgramException, GuestIntercept, SubPageAccess):
        return cpu.translate(vaddr, page_fill=True), False
    keys, frame = cpu.mem.keys, host >> 12
    key = keys[frame]
    keys[frame] = key | KEY_R
    return host, bool(key & KEY_C)


@settings(max_examples=300, deadline=None)
@given(
    page=st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9, 0x10, 0x11, 0x41, 0xFF, 0x100, 0x101])
    | st.integers(0, 0x10F),
    offset=st.integers(0, 0xFFF),
    prefix=st.sampled_from([0, 0x2000, 0x8000, 0x10000, 0x40000]),
    psw_key=st.sampled_from([0, 0, 0, 3, 9]),
    storage_key=st.sampled_from([0, KEY_C, 0x30, 0x30 | KEY_F, 0x50 | KEY_F | KEY_C, 0x90]),
    dat=st.booleans(),
    cr0=st.sampled_from([0, CR0_LAP, CR0_FPO, CR0_LAP | CR0_FPO]),
)
def test_the_direct_path_decides_as_the_translation(
    cpu, page, offset, prefix, psw_key, storage_key, dat, cr0
) -> None:
    vaddr = page << 12 | offset
    cpu.set_prefix(prefix)
    cpu.write_cr(0, cr0)  # low-address protection, fetch-protection override
    cpu.write_cr(1, 0)  # with DAT on, an empty ASCE: both paths take the translation's exception
    cpu.set_psw(0x0000000180000000 | (PSW_MASK_DAT if dat else 0) | psw_key << 52, 0x10000)
    keys = cpu.mem.keys
    frames = range(MEM >> 12)
    for f in frames:
        keys[f] = storage_key
    expected = _outcome(lambda: _by_translation(cpu, vaddr))
    after_translation = bytes(keys)
    for f in frames:
        keys[f] = storage_key
    assert _outcome(lambda: cpu._load_fill(vaddr)) == expected  # noqa: SLF001 - the path under test
    assert bytes(keys) == after_translation  # the same reference bit set, nothing else

"""The hypervisor's normal-guest SIE path: guests in VMs at a non-zero MSO print what ``zuv run`` prints."""

import json
from pathlib import Path

import pytest

from emulator.errors import HypervisorError
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sie import ICPT_INST, SieBlock, SiePage, ipa_ipb
from emulator.hw.tod import TodClock
from emulator.hypervisor.kvm import MIB, HostAllocator, Hypervisor
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "guests/images"
MANIFEST = json.loads((IMAGES / "MANIFEST.json").read_text())["images"]
# Guests that finish in well under a second. Left out: tod and keys (seconds of trapped clock and key
# instructions, no SIE-specific path), pgm and dat (the CPU model stores the DXC and walks LRA tables at
# host absolute addresses, not through the guest mapping: reported to the CPU model's owner).
FAST = [
    n
    for n in ("hello", "sigp", "ext", "svc", "sysinfo", "prefix", "pgm_arch", "pgm", "dat", "keys")
    if n in MANIFEST
]


@pytest.fixture(scope="module")
def hv():
    m = Machine(512 * MIB, 1, deterministic=True)
    yield Hypervisor.on_machine(m)
    m.close()


@pytest.mark.parametrize("name", FAST)
def test_guest_in_a_vm_at_a_nonzero_mso_prints_what_zuv_run_prints(hv, name):
    entry = MANIFEST[name]
    elf = str(IMAGES / next(f for f in entry["files"] if f.endswith(".elf")))
    smp, append = entry.get("smp", 1), entry.get("append", "")
    bare = Machine(128 * MIB, smp, deterministic=True)
    bare.load(elf, append)
    bare_result = bare.run(time_limit=30)
    bare.close()
    vm = hv.create_vm(128 * MIB, smp)
    try:
        assert vm.mso >= 16 * MIB
        vm.load(elf, append)
        result = vm.run(time_limit=30)
        assert result.reason == "all CPUs stopped", result.describe()
        assert result.clean == bare_result.clean
        assert vm.console == bare.console
        assert result.intercepts.get("SERVC", 0) > 0
    finally:
        vm.destroy()


def test_two_vms_get_disjoint_slots_and_their_own_consoles(hv):
    a = hv.create_vm(64 * MIB)
    b = hv.create_vm(64 * MIB)
    try:
        assert a.mso + a.memory_size <= b.mso or b.mso + b.memory_size <= a.mso
        a.load(str(IMAGES / "hello.elf"), "I am a")
        b.load(str(IMAGES / "hello.elf"), "I am b")
        assert a.run(time_limit=30).clean and b.run(time_limit=30).clean
        assert b'"I am a"' in a.console and b'"I am b"' not in a.console
        assert b'"I am b"' in b.console
        # the guest's absolute 0x10480 (command line) is the host's mso + 0x10480
        assert hv.host.read(b.mso + 0x10480, 6) == b"I am b"
    finally:
        a.destroy()
        b.destroy()


def test_guest_memory_ends_at_its_size_not_at_the_host_end(hv):
    vm = hv.create_vm(32 * MIB)
    try:
        with pytest.raises(HypervisorError, match="outside guest memory"):
            vm.read_guest(32 * MIB - 4, 8)
        cpu = vm.vcpus[0].cpu
        vm.load(str(IMAGES / "hello.elf"))
        with pytest.raises(Exception) as e:
            cpu.read_real(32 * MIB, 8)
        assert getattr(e.value, "code", None) == 0x05  # addressing exception in the guest
    finally:
        vm.destroy()


def test_an_intercepted_instruction_leaves_its_text_in_ipa_ipb(hv):
    vm = hv.create_vm(16 * MIB)
    try:
        vm.load(str(IMAGES / "hello.elf"))
        v = vm.vcpus[0]
        ex = hv.enter(v)
        assert ex.icptcode == ICPT_INST == v.sd.icptcode
        assert ex.insn is not None and (v.sd.ipa, v.sd.ipb) == ipa_ipb(ex.insn.raw)
        assert v.sd.psw_addr == ex.insn.pc + ex.insn.ilen  # the PSW designates the next instruction
    finally:
        vm.destroy()


def test_state_description_layout_matches_linux():
    assert SieBlock.cpuflags.offset == 0 and SieBlock.pv_handle_cpu.offset == 0x10
    assert SieBlock.iictl.offset == 0x55 and SieBlock.ipa.offset == 0x56 and SieBlock.ipb.offset == 0x58
    assert SieBlock.mso.offset == 0x80 and SieBlock.eic.offset == 0xC6 and SieBlock.io_int_word.offset == 0xF0
    assert SiePage.pv_grregs.offset == 0x380
    sd = SieBlock()
    sd.prefix = 0x7FFFE000
    assert sd.prefix == 0x7FFFE000 and sd.prefix_ibc == 0x7FFFE000


def test_a_new_vm_in_a_freed_slot_sees_zeros_not_the_last_guest(hv):
    """A VM's memory goes back zeroed: the next VM in the same host range reads none of it (KVM guests get
    fresh anonymous pages)."""
    vm = hv.create_vm(16 * MIB)
    mso = vm.mso
    vm.write_guest(0x10000, b"the previous guest's data")
    vm.destroy()
    vm2 = hv.create_vm(16 * MIB, mso=mso)
    try:
        assert vm2.mso == mso
        assert vm2.read_guest(0x10000, 25) == bytes(25)
    finally:
        vm2.destroy()


def test_a_run_limit_that_is_not_positive_is_refused(hv):
    vm = hv.create_vm(16 * MIB)
    try:
        with pytest.raises(HypervisorError, match="time limit must be positive, not -1"):
            vm.run(time_limit=-1)
        with pytest.raises(HypervisorError, match="instruction limit must be positive, not 0"):
            vm.run(max_insns=0)
    finally:
        vm.destroy()


def test_host_allocator_never_overlaps_and_reuses_freed_ranges():
    al = HostAllocator(256 * MIB, 16 * MIB)
    a = al.alloc_range(100 * MIB)
    b = al.alloc_range(100 * MIB)
    assert a >= 16 * MIB and (a + 100 * MIB <= b or b + 100 * MIB <= a)
    with pytest.raises(HypervisorError, match="exhausted"):
        al.alloc_range(100 * MIB)
    al.free_range(a, 100 * MIB)
    assert al.alloc_range(100 * MIB) == a
    pages = {al.alloc_page() for _ in range(50)}
    assert len(pages) == 50 and all(p % 4096 == 0 and p < 16 * MIB for p in pages)
    # a bounded request that cannot be met says where it looked (an open end must not break the message)
    with pytest.raises(
        HypervisorError, match=r"no free 64 MiB at or above 0x80000000 \(host memory 256 MiB\)"
    ):
        al.alloc_range(64 * MIB, above=1 << 31)
    with pytest.raises(HypervisorError, match=r"ending at or below 0x1000000"):
        al.alloc_range(64 * MIB, below=16 * MIB)


def test_hypervisor_on_a_bare_memory_and_clock():
    mem = PhysicalMemory(64 * MIB)
    h = Hypervisor(mem, TodClock(deterministic=True))
    vm = h.create_vm(32 * MIB)
    vm.load(str(IMAGES / "hello.elf"), "det")
    r1 = vm.run(deterministic=True)
    assert r1.clean and r1.instructions and b'"det"' in vm.console
    with pytest.raises(HypervisorError, match="exhausted"):
        h.create_vm(32 * MIB)

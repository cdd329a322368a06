"""unicorn's TLB and its registered exits are kept small while traps dominate.

In the stock engine every trap pays a scan of the whole TLB; with the engine switched (``emulator.hw.engine``)
the TLB's size costs traps nothing and is left alone, while the exit walk still counts.
"""

import struct

import pytest

from emulator.hw.cpu_handle import hardware_of
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tod import TodClock
from emulator.hypervisor.kvm import MIB, Hypervisor

_WAIT = struct.pack(">QQ", 0x0002000180000000, 0xFFF)


def _kernel(pages: int, diags: int) -> bytes:
    """A flat image: store one byte into each of ``pages`` pages from 1 MiB on, then ``diags`` DIAG 0x9C,
    then a clean disabled wait."""
    code = bytearray()
    code += bytes.fromhex("c031") + struct.pack(">I", 0x100000)  # lgfi %r3,0x100000
    code += bytes.fromhex("c041") + struct.pack(">I", max(pages, 1))  # lgfi %r4,pages
    code += bytes.fromhex("92013000" "a73b1000" "a747fffc")  # 0: mvi 0(%r3),1 ; aghi %r3,4096 ; brctg %r4,0b
    code += bytes.fromhex("c021") + struct.pack(">I", max(diags, 1))  # lgfi %r2,diags
    code += bytes.fromhex("8300009c" "a727fffe")  # 1: diag 0,0,0x9c ; brctg %r2,1b
    larl = 0x10000 + len(code)
    code += bytes.fromhex("c010") + struct.pack(">i", (0x10100 - larl) // 2)  # larl %r1,wait psw
    code += bytes.fromhex("b2b21000")  # lpswe 0(%r1)
    img = bytearray(0x11000)
    img[4:8] = struct.pack(">I", 0x80010000)
    img[0x10000 : 0x10000 + len(code)] = code
    img[0x10100:0x10110] = _WAIT
    return bytes(img)


@pytest.fixture(scope="module")
def hv():
    return Hypervisor(PhysicalMemory(512 * MIB), TodClock())


def _run(hv, tmp_path, image: bytes, diags: int):
    """Boot the flat ``image`` in a 128 MiB VM, run it to its clean stop with ``diags`` DIAG intercepts, and
    return its (destroyed) CPU for inspection."""
    vm = hv.create_vm(128 * MIB)
    try:
        path = tmp_path / "k.bin"
        path.write_bytes(image)
        vm.load(str(path))
        res = vm.run(time_limit=120)
        assert res.clean, res.describe()
        assert res.intercepts.get("DIAG", 0) == diags
        return hardware_of(vm.vcpus[0].cpu)  # the hardware CPU (the hypervisor holds a handle)
    finally:
        vm.destroy()


def test_a_trap_heavy_phase_after_a_large_working_set_lets_the_tlb_shrink_only_where_it_costs(
    hv, tmp_path, engine_mode
):
    cpu = _run(hv, tmp_path, _kernel(16384, 60000), 60000)
    assert cpu.tlb_fills >= 16384  # the sweep grew the TLB (fills beyond its first 256 entries)
    if engine_mode == "stock":
        assert cpu.tlb_shrinks >= 1
    else:  # no trap translates a block any more: flushing the TLB would only cost fills
        assert cpu._switch is not None  # noqa: SLF001
        assert cpu.tlb_shrinks == 0


def test_a_sweep_without_traps_is_left_alone(hv, tmp_path):
    cpu = _run(hv, tmp_path, _kernel(16384, 1), 1)
    assert cpu.tlb_shrinks == 0


def _many_exits_kernel(pages: int, diags: int) -> bytes:
    """Run through ``pages`` code pages whose unexecuted bytes are all DIAG opcodes (every halfword a
    scanner hit, as operand bytes of real code often are), then ``diags`` DIAG 0x9C."""
    base = 0x100000
    img = bytearray(base + (pages + 1) * 0x1000)
    img[4:8] = struct.pack(">I", 0x80010000)
    img[0x10000:0x10006] = bytes.fromhex("c0f4") + struct.pack(">i", (base - 0x10000) // 2)  # brcl 15,base
    for i in range(pages):
        page = base + i * 0x1000
        img[page : page + 0x1000] = bytes.fromhex("8300") * 0x800
        img[page : page + 4] = bytes.fromhex("a7f40800")  # j +4096
    tail = base + pages * 0x1000
    loop = bytes.fromhex("c021") + struct.pack(">I", diags) + bytes.fromhex("8300009c" "a727fffe")
    loop += (
        bytes.fromhex("c010")
        + struct.pack(">i", (0x10100 - (tail + len(loop))) // 2)
        + bytes.fromhex("b2b21000")
    )
    img[tail : tail + len(loop)] = loop
    img[0x10100:0x10110] = _WAIT
    return bytes(img)


def test_exits_of_pages_no_longer_run_leave_unicorn(hv, tmp_path, engine_mode):
    """After the guest ran through pages full of scanner hits, a trap-heavy phase does not keep paying for
    tens of thousands of exits: where unicorn walks every exit after each run, it keeps those of the pages
    fetched since the last flush; where that walk is cut (``exit_walk``), they cost nothing and stay
    registered, and no flush is made for them."""
    cpu = _run(hv, tmp_path, _many_exits_kernel(20, 60000), 60000)
    assert len(cpu._exits) > 20 * 2000  # noqa: SLF001 - every hit is still known to the CPU
    if cpu._walk_cut:  # noqa: SLF001
        assert cpu.registered_exits > 20 * 2000
        assert cpu.tlb_shrinks == 0
    else:
        assert cpu.tlb_shrinks >= 1
        assert cpu.registered_exits < 100


def test_an_error_inside_the_tlb_fill_reaches_the_caller(hv, tmp_path, monkeypatch):
    """The fill hook is registered with the engine directly; a bug in it still surfaces as an exception."""
    from emulator.hw.cpu import Cpu

    def broken(self, *a, **k):
        raise RuntimeError("fill bug")

    vm = hv.create_vm(128 * MIB)
    try:
        path = tmp_path / "k.bin"
        path.write_bytes(_kernel(4, 1))
        vm.load(str(path))
        monkeypatch.setattr(Cpu, "translate", broken)
        with pytest.raises(RuntimeError, match="fill bug"):
            vm.run(time_limit=30)
    finally:
        monkeypatch.undo()
        vm.destroy()


def test_forgetting_the_known_exits_keeps_every_trap(hv, tmp_path, monkeypatch, engine_mode):
    """With a tiny limit the CPU starts its exits afresh many times; every DIAG still traps."""
    from emulator.hw import cpu as cpu_mod

    monkeypatch.setattr(cpu_mod, "_EXITS_LIMIT", 500)
    cpu = _run(hv, tmp_path, _many_exits_kernel(6, 3000), 3000)
    assert len(cpu._exits) <= 500 + 2048  # noqa: SLF001 - forgotten at least once

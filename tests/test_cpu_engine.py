"""Exits stay translated across runs (``emulator.hw.engine``), and every way an exit goes away still works."""

import ctypes
import struct

import pytest
from unicorn import Uc
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN

from emulator.hw import engine
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tod import TodClock
from emulator.hypervisor.kvm import MIB, Hypervisor
from emulator.machine.machine import Machine

_WAIT = struct.pack(">QQ", 0x0002000180000000, 0xFFF)


@pytest.fixture(scope="module")
def hv():
    return Hypervisor(PhysicalMemory(256 * MIB), TodClock())


def _flat(code: bytes) -> bytes:
    img = bytearray(0x11000)
    img[4:8] = struct.pack(">I", 0x80010000)
    img[0x10000 : 0x10000 + len(code)] = code
    img[0x10200:0x10210] = _WAIT
    return bytes(img)


def _stop(at: int) -> bytes:
    """larl %r1,<wait PSW> ; lpswe 0(%r1)"""
    return bytes.fromhex("c010") + struct.pack(">i", (0x10200 - at) // 2) + bytes.fromhex("b2b21000")


def _run(hv, tmp_path, code: bytes):
    vm = hv.create_vm(32 * MIB)
    path = tmp_path / "k.bin"
    path.write_bytes(_flat(code))
    vm.load(str(path))
    return vm, vm.run(time_limit=60)


def test_the_pinned_unicorn_is_switched():
    """unicorn 2.1.4 (the pinned build) is the one measured: its slot is found and every CPU uses it."""
    assert engine.SLOT is not None
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    sw = engine.switch_for(uc)
    assert sw is not None
    cell = ctypes.c_uint64.from_address(uc._uch.value + engine.SLOT.offset)  # noqa: SLF001
    assert cell.value == engine.SLOT.noop
    sw.restore()
    assert cell.value in engine.SLOT.real


def test_a_halting_block_survives_the_run_until_the_cpu_drops_it():
    """The effect itself, in a bare engine: after the exit was dropped from the list the next run still
    halts there (nothing re-translated it), and ``invalidate`` lets the run through."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    sw = engine.switch_for(uc)
    assert sw is not None
    uc.mem_write(0x10000, bytes.fromhex("a7290001" "a72a0001" "a7f4ffff"))  # lghi ; aghi ; j .
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([0x10004, 0x10008])
    uc.emu_start(0x10000, 0)  # the block [0x10000, 0x10004) ends in a halt
    assert uc.reg_read(S.UC_S390X_REG_PC) == 0x10004
    uc.ctl_set_exits([0x10008])
    uc.emu_start(0x10000, 0)
    assert uc.reg_read(S.UC_S390X_REG_PC) == 0x10004
    sw.invalidate(0x10003, 0x10008)  # from exit - 1: the halt is the end of the block that falls into it
    uc.emu_start(0x10000, 0)
    assert (uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2)) == (0x10008, 2)


def test_a_trapped_diag_the_guest_overwrites_runs_as_the_new_instruction(hv, tmp_path, engine_mode):
    """DIAG traps once, the guest stores ``lhi %r9,7`` over it and runs it: no stale halt, no second trap."""
    code = bytearray()
    code += bytes.fromhex("a7890002")  # lghi %r8,2 (two passes)
    code += bytes.fromhex("c060") + struct.pack(">i", 4)  # larl %r6,X (X follows this 6-byte insn +2)
    code += bytes.fromhex("0700")  # nopr
    x = len(code)
    code += bytes.fromhex("8300009c")  # X: diag 0,0,0x9c
    code += bytes.fromhex("c079a7980007")  # iilf %r7,<lhi %r9,7>
    code += bytes.fromhex("50706000")  # st %r7,0(%r6)
    at = len(code)
    code += bytes.fromhex("a787") + struct.pack(">h", (x - at) // 2)  # brctg %r8,X
    code += _stop(0x10000 + len(code))
    assert struct.unpack(">i", code[6:10])[0] * 2 + 4 == x  # larl lands on X
    vm, res = _run(hv, tmp_path, bytes(code))
    try:
        assert res.clean, res.describe()
        assert res.intercepts.get("DIAG", 0) == 1
        assert vm.vcpus[0].cpu.gpr(9) == 7
    finally:
        vm.destroy()


def test_a_removed_breakpoint_no_longer_stops(tmp_path, engine_mode):
    """A breakpoint hit in a loop three times, then removed: the loop runs to its end without another stop."""
    code = bytes.fromhex("a7290064")  # lghi %r2,100
    loop = 0x10000 + len(code)
    code += bytes.fromhex("a73a0001")  # aghi %r3,1
    code += bytes.fromhex("a727fffe")  # brctg %r2,loop
    code += _stop(0x10000 + len(code))
    path = tmp_path / "bp.bin"
    path.write_bytes(_flat(code))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    m.set_breakpoints({loop})
    for n in range(3):
        r = m.run(time_limit=20)
        assert r.reason.startswith("breakpoint") and m.cpus[0].pc == loop
        assert m.cpus[0].gpr(3) == n
    m.set_breakpoints(set())
    r = m.run(time_limit=20)
    assert r.clean, r.describe()
    assert m.cpus[0].gpr(3) == 100


def test_registers_from_the_context_blob_agree_with_register_reads(tmp_path):
    """``psw_gprs_crs`` reads GPRs, PSW address and CRs from one context update, the mask (with its lazily
    kept condition code) from the engine: the same values one-by-one register reads give."""
    code = bytearray()
    for r in range(1, 16):
        code += bytes.fromhex("c0") + bytes([r << 4 | 1]) + struct.pack(">i", 0x1000 * r + r)  # lgfi %rR,...
    code += bytes.fromhex("a70a0001")  # ahi %r0,1 (cc 2: result > 0)
    stop_at = 0x10000 + len(code)
    code += bytes.fromhex("8300009c")  # diag 0,0,0x9c
    code += _stop(0x10000 + len(code))
    path = tmp_path / "regs.bin"
    path.write_bytes(_flat(bytes(code)))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    m.set_breakpoints({stop_at})
    r = m.run(time_limit=20)
    assert r.reason.startswith("breakpoint"), r.describe()
    cpu = m.cpus[0]
    cpu.write_cr(9, 0x1234_5678_9ABC_DEF0)
    mask, addr, gprs, crs = cpu.psw_gprs_crs()
    cpu._stale()  # noqa: SLF001 - forget the caches: read every register from the engine again
    assert (mask, addr) == cpu.psw and addr == stop_at and (mask >> 44) & 3 == 2
    assert gprs == [cpu.gpr(i) for i in range(16)] == [1] + [0x1000 * r + r for r in range(1, 16)]
    assert crs == [cpu.cr(i) for i in range(16)] and crs[9] == 0x1234_5678_9ABC_DEF0


def _branch_to_zero(pgm_new: bytes) -> bytes:
    """A flat kernel that branches to address 0 (a null function pointer): its start PSW's first halfword
    there, 0x0008, is no instruction. ``pgm_new`` is the program-new PSW at 0x1d0."""
    img = bytearray(_flat(bytes.fromhex("a7190000") + bytes.fromhex("07f1")))  # lghi %r1,0 ; br %r1
    img[0x1D0:0x1E0] = pgm_new
    return bytes(img)


@pytest.mark.parametrize("mask", [0x0000000180000000, 0])  # 64-bit and 24-bit addressing
def test_a_branch_to_address_zero_gets_its_operation_exception(tmp_path, engine_mode, mask):
    """unicorn looks up the page before a block that faults while it is translated (its size is 0); at
    address 0 that page is beyond memory. Refused, it made the CPU retry forever; now the guest gets its
    operation exception at once."""
    path = tmp_path / "zero.bin"
    wait = struct.pack(">QQ", 0x0002000000000000 | mask, 0xBAD)
    path.write_bytes(_branch_to_zero(wait))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    m.cpus[0].set_psw(mask, 0x10000)
    r = m.run(time_limit=20)
    assert r.cpus[0].state == "disabled-wait" and r.cpus[0].psw[1] == 0xBAD, r.describe()
    c = m.cpus[0]
    assert int.from_bytes(c.read_real(0x8C, 4), "big") == 0x00020001  # ILC 2, operation exception
    assert int.from_bytes(c.read_real(0x158, 8), "big") == 2  # the old PSW after the 2-byte opcode


def test_a_zero_program_new_psw_ends_in_a_check_stop_not_a_hang(tmp_path, engine_mode):
    """The truncated-image case: the operation exception at 0 loads the zero program-new PSW, which runs
    into the same exception again; the run ends with the loop named."""
    path = tmp_path / "loop.bin"
    path.write_bytes(_branch_to_zero(bytes(16)))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    r = m.run(time_limit=20)
    assert not r.clean
    assert "program-interruption loop: code 0x0001 at 0x0" in r.describe(), r.describe()


def test_a_program_taking_one_exception_again_and_again_is_no_interruption_loop(tmp_path, engine_mode):
    """A test loop meets an invalid opcode at one address 100 times and returns from each program
    interruption with LPSWE (as kvm-unit-tests' sclp test does with SERVC): that is the program's doing,
    not the loop of a broken program-new PSW, and the run ends in the program's own wait."""
    code = (
        bytes.fromhex("a7290064")  # lghi %r2,100
        + bytes.fromhex("0000")  # 0x10004: no instruction (operation exception, old PSW after it)
        + bytes.fromhex("a726ffff")  # brct %r2,0x10004
        + _stop(0x1000A)
    )
    img = bytearray(_flat(code))
    img[0x10100:0x10104] = bytes.fromhex("b2b20150")  # the handler: lpswe 0x150 (the program old PSW)
    img[0x1D0:0x1E0] = struct.pack(">QQ", 0x0000000180000000, 0x10100)
    path = tmp_path / "again.bin"
    path.write_bytes(bytes(img))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    r = m.run(time_limit=20)
    assert r.cpus[0].state == "disabled-wait" and r.cpus[0].psw[1] == 0xFFF, r.describe()
    assert m.cpus[0].gpr(2) == 0


def test_instructions_before_one_that_crosses_out_of_memory_run_and_it_gets_its_exception(
    tmp_path, engine_mode
):
    """A block runs from three AGHIs into a 6-byte BRCL crossing the end of memory. Translating the block
    fails on the page beyond before anything runs; the CPU used to retry it forever. The AGHIs run, and
    the BRCL gets its addressing exception (ILC 2, the PSW advanced past it as QEMU does)."""
    path = tmp_path / "cross.bin"
    img = bytearray(_flat(b""))
    img[0x1D0:0x1E0] = struct.pack(">QQ", 0x0002000180000000, 0xBAD)
    path.write_bytes(img)
    m = Machine(16 * MIB, 1)
    m.load(str(path))
    end = 16 * MIB
    code = bytes.fromhex("a73a0001") * 3 + bytes.fromhex("c0f4")  # aghi %r3,1 (x3) ; brcl 15,... (cut)
    at = end - len(code)
    m.memory.write(at, code)
    m.cpus[0].set_psw(0x0000000180000000, at)
    r = m.run(time_limit=20)
    c = m.cpus[0]
    assert r.cpus[0].state == "disabled-wait" and r.cpus[0].psw[1] == 0xBAD, r.describe()
    assert c.gpr(3) == 3
    assert int.from_bytes(c.read_real(0x8C, 4), "big") == 0x00020005  # ILC 2, addressing
    assert int.from_bytes(c.read_real(0x158, 8), "big") == end  # the BRCL at end - 2, plus 2


def test_a_refusal_that_stops_every_run_before_anything_runs_ends_in_a_named_check_stop(
    tmp_path, monkeypatch
):
    """The safety net behind ``Cpu._unstick``: if unicorn ever stalls on a lookup the CPU does not know
    how to grant, the run ends with where and why instead of spinning (seen with the branch to 0 when the
    known cases are not taken care of)."""
    from emulator.hw import cpu as cpu_mod

    monkeypatch.setattr(cpu_mod.Cpu, "_unstick", lambda self, start, vpage: False)
    path = tmp_path / "zero.bin"
    path.write_bytes(_branch_to_zero(struct.pack(">QQ", 0x0002000180000000, 0xBAD)))
    m = Machine(32 * MIB, 1)
    m.load(str(path))
    r = m.run(time_limit=20)
    assert "no progress at 0x0: unicorn's fetch of the page 0xfffffffffffff000 is refused" in r.describe()
    assert r.seconds < 10


def test_the_pinned_unicorn_has_its_exit_tree_found():
    assert engine.TREE is not None  # the library this project pins: exits are added one at a time


@pytest.mark.parametrize("tree", ["found", "whole-list"])
def test_exits_added_and_discarded_are_exactly_what_the_engine_holds_and_halts_at(tree):
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.ctl_exits_enabled(True)
    # 0x10000: lghi %r2,1 ; then aghi %r2,1 at 0x10004, 0x10008, 0x1000c ; 0x10010: j .
    uc.mem_write(0x10000, bytes.fromhex("a7290001" "a72a0001" "a72a0001" "a72a0001" "a7f4ffff"))
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    exits = engine.ExitList(uc, engine.TREE if tree == "found" else None)
    held = {0x10010}
    exits.set(held)
    exits.add({0x10008, 0x1000C}, held)
    held |= {0x10008, 0x1000C}
    held.discard(0x10008)
    exits.discard(0x10008, held)
    assert sorted(uc.ctl_get_exits()) == sorted(held)
    uc.emu_start(0x10000, 0)
    assert (uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2)) == (0x1000C, 3)
    exits.set(set())
    assert uc.ctl_get_exits_cnt() == 0


def test_the_walk_of_the_exits_after_each_run_is_cut_short_and_every_exit_still_halts():
    """``exit_walk``: unicorn's in-order walk (the one that reads the list out, as after every run) sees the
    sentinel and at most one node more, whatever was added and discarded; lookups still halt at each exit
    and not at address 0 (the sentinel); mended, the walk sees every exit again."""
    assert engine.WALK_STOP  # the pinned library
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.ctl_exits_enabled(True)
    # 0x0: lghi %r2,1 ; then aghi %r2,1 at 0x4 ... 0x3c ; 0x40: j .
    uc.mem_write(0, bytes.fromhex("a7290001" + "a72a0001" * 15 + "a7f4ffff"))
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    exits = engine.ExitList(uc, engine.TREE, walk_stop=True)
    held = set(range(0x1000, 0x9000, 0x26))
    exits.set(held)
    for stop, want in ((0x30, 12), (0x14, 5), (0x8, 2)):
        exits.add({stop}, held)
        held.add(stop)
        assert len([a for a in uc.ctl_get_exits() if a]) <= 1
        uc.ctl_flush_tb()  # (exits are baked into translated blocks: these are translated again)
        uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
        uc.emu_start(0, 0)
        assert (uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2)) == (stop, want)
    for a in sorted(held)[::2]:
        exits.discard(a, held)
        held.discard(a)
    assert len([a for a in uc.ctl_get_exits() if a]) <= 1
    exits.close()
    assert sorted(uc.ctl_get_exits()) == [0, *sorted(held)]

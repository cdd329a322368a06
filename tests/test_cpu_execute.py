"""EXECUTE and EXECUTE RELATIVE LONG whose target zuv must see: trapped instructions (DIAG, STCK, SSM, ...),
relative-addressing instructions, EXECUTE itself and odd targets; and the EXRLs that stay native.

The architecture: the target executes as if it stood at the EXECUTE's address, with the EXECUTE's ILC and
bits 56-63 of R1 ORed into its second byte; the PSW then points after the EXECUTE; an EXECUTE target is an
execute exception (PGM 0x03). Relative addressing is relative to the target's own address. Relative targets
are checked against unicorn running the same instruction natively at the target's address.
"""

import struct
import subprocess

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, PSW_MASK_PSTATE, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000
TARGET = 0x10800  # same page as CODE
FAR = 0x13000  # another page
DATA = 0x20000
PGM_NEW = 0x0BAD0
PSW_31 = 1 << 31  # 31-bit addressing mode
DIAG_44 = bytes.fromhex("83000044")


@pytest.fixture
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW))  # program new PSW: disabled wait
    yield c
    c.close()


def ex(r1: int, b2: int, d2: int = 0) -> bytes:
    return bytes((0x44, r1 << 4, b2 << 4 | d2 >> 8, d2 & 0xFF))


def exrl(r1: int, at: int, target: int) -> bytes:
    return bytes((0xC6, r1 << 4)) + struct.pack(">i", (target - at) // 2)


def start(cpu: Cpu, code: bytes, target: bytes, target_at: int = TARGET, mask: int = PSW_MASK_64) -> None:
    cpu.mem.write(CODE, code + bytes.fromhex("07000700"))
    cpu.mem.write(target_at, target)
    cpu.set_psw(mask, CODE)
    cpu.state = OPERATING


def pgm(cpu: Cpu) -> tuple[int, int, int]:
    """(code, ILC, old PSW address) of the last program interruption."""
    ilc, code = struct.unpack(">HH", cpu.mem.read(0x8C, 4))
    return code, ilc, struct.unpack(">Q", cpu.mem.read(0x158, 8))[0]


@pytest.mark.parametrize("kind", ["EX", "EXRL"])
def test_an_executed_diag_reaches_the_owner_as_if_at_the_execute(cpu, kind):
    code = ex(2, 1) if kind == "EX" else exrl(2, CODE, TARGET)
    start(cpu, code, bytes.fromhex("8300009c"))  # diag %r0,%r0,0x9c; R2's 0x45 makes it diag %r4,%r5
    cpu.set_gpr(1, TARGET)
    cpu.set_gpr(2, 0x45)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.name == "DIAG"
    insn = out.insn
    assert (insn.pc, insn.ilen, insn.r1, insn.r3, insn.address()) == (CODE, len(code), 4, 5, 0x9C)
    insn.finish()
    assert cpu.pc == CODE + len(code)


@pytest.mark.parametrize("kind", ["EX", "EXRL"])
def test_an_executed_privileged_diag_in_problem_state_interrupts_with_the_execute_ilc(cpu, kind):
    code = ex(0, 1) if kind == "EX" else exrl(0, CODE, TARGET)
    start(cpu, code, bytes.fromhex("8300009c"), mask=PSW_MASK_64 | PSW_MASK_PSTATE)
    cpu.set_gpr(1, TARGET)
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x02, len(code), CODE + len(code))


def test_an_executed_stck_stores_the_tod_clock(cpu):
    """unicorn's STCK stores 0: run natively as an EXECUTE target it would too."""
    start(cpu, exrl(0, CODE, TARGET), bytes.fromhex("b2051000"))  # stck 0(%r1)
    cpu.set_gpr(1, DATA)
    before = cpu.tod()
    assert cpu.run(count=1).kind == "limit"
    assert cpu.pc == CODE + 6
    assert struct.unpack(">Q", cpu.mem.read(DATA, 8))[0] >= before > 0


def test_an_executed_spm_switches_fixed_point_overflow_trapping_at_once(cpu):
    """SPM by EXECUTE sets the program mask; the next add that overflows interrupts (PGM 0x08)."""
    add = bytes.fromhex("1a34")  # ar %r3,%r4
    start(cpu, exrl(0, CODE, TARGET) + add, bytes.fromhex("0420"))  # spm %r2
    cpu.set_gpr(2, 0x08000000)  # program mask bit 20 (fixed-point overflow) on
    cpu.set_gpr(3, 0x7FFFFFFF)
    cpu.set_gpr(4, 1)
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x08, 2, CODE + 8)


@pytest.mark.parametrize("kind", ["EX", "EXRL"])
def test_execute_of_execute_is_an_execute_exception(cpu, kind):
    code = ex(0, 1) if kind == "EX" else exrl(0, CODE, TARGET)
    start(cpu, code, exrl(0, TARGET, TARGET) if kind == "EX" else ex(0, 1))
    cpu.set_gpr(1, TARGET)
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x03, len(code), CODE + len(code))


def test_an_odd_execute_target_is_a_specification_exception(cpu):
    start(cpu, ex(0, 1, 1), bytes.fromhex("8300009c"))
    cpu.set_gpr(1, TARGET)
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x06, 4, CODE + 4)


def test_an_execute_target_that_cannot_be_fetched_interrupts_at_the_execute(cpu):
    start(cpu, ex(0, 1), b"")
    cpu.set_gpr(1, 0x200000)  # beyond the 1 MiB of storage: addressing exception
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x05, 2, CODE + 2)  # ILC 2 for a fetch, as QEMU (guests/expected/dat.txt)


def test_exrls_with_harmless_targets_stay_native_and_the_others_are_exits(cpu):
    """The scan makes an EXRL an exit only when its target may need Python, in its own page or (through
    that page's mapping) in another: memcpy-style EXRLs of MVC stay native; EX (its target is in registers)
    is always an exit."""
    code = (exrl(3, CODE, TARGET) + exrl(3, CODE + 6, FAR) + exrl(0, CODE + 12, TARGET + 6)
            + exrl(0, CODE + 18, FAR + 6) + ex(0, 1))  # fmt: skip
    mvc, diag = bytes.fromhex("d20010002000"), bytes.fromhex("8300009c")
    start(cpu, code, mvc + diag)
    cpu.mem.write(FAR, mvc + diag)
    cpu.set_gpr(1, DATA)
    cpu.set_gpr(2, DATA + 0x100)
    cpu.set_gpr(3, 0x0F)
    cpu.mem.write(DATA + 0x100, bytes(range(16)))
    out = cpu.run()
    assert out.kind == "insn" and out.insn.pc == CODE + 12  # both MVCs ran natively, the DIAG came out
    assert cpu.mem.read(DATA, 16) == bytes(range(16))  # R3's 0x0F made it a 16-byte MVC
    exits = cpu._exits
    assert CODE not in exits and CODE + 6 not in exits
    assert {CODE + 12, CODE + 18, CODE + 24} <= exits


@pytest.mark.parametrize("where", [TARGET, FAR], ids=["same page", "other page"])
def test_an_exrl_whose_target_becomes_a_diag_is_trapped_after_the_change(cpu, where):
    start(cpu, exrl(0, CODE, where), bytes.fromhex("a70a0001"), target_at=where)  # ahi %r0,1
    assert cpu.run(count=1).kind == "limit" and cpu.gpr(0) == 1
    assert CODE not in cpu._exits
    cpu.mem.write(where, bytes.fromhex("8300009c"))
    cpu.set_pc(CODE)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.name == "DIAG" and out.insn.pc == CODE


@pytest.mark.parametrize("where", [TARGET, FAR], ids=["same page", "other page"])
def test_an_exrl_whose_target_the_guest_rewrites_into_a_diag_is_trapped(cpu, where):
    """The guest itself stores a DIAG over the target (self-modifying code) and runs the EXRL again."""
    # 0: exrl 0,target ; mvc 0(4,%r4),0(%r5) ; j 0b      (R4 = target, R5 = a DIAG's text)
    code = exrl(0, CODE, where) + bytes.fromhex("d20340005000") + bytes.fromhex("a7f4fffa")
    start(cpu, code, bytes.fromhex("a70a0001"), target_at=where)
    cpu.mem.write(DATA, bytes.fromhex("8300009c"))
    cpu.set_gpr(4, where)
    cpu.set_gpr(5, DATA)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.name == "DIAG" and out.insn.pc == CODE
    assert cpu.gpr(0) == 1  # the first round ran the AHI


def test_an_exrl_whose_far_target_page_is_mapped_elsewhere_is_decided_again(cpu):
    """An EXRL decided native through its target page's mapping: when the guest maps that page to a frame
    holding a DIAG (and purges the TLB), the EXRL's translated block must not run it natively."""
    from emulator.hw.cpu import PSW_MASK_DAT

    seg, pt = 0x40000, 0x41000
    cpu.mem.write(seg, struct.pack(">Q", pt) + struct.pack(">Q", 0x20) * 511)  # segment 0 valid, the rest not
    cpu.mem.write(pt, b"".join(struct.pack(">Q", page << 12) for page in range(256)))  # identity
    cpu.mem.write(0x50000, bytes.fromhex("a70a0001"))  # ahi %r0,1
    cpu.mem.write(0x51000, bytes.fromhex("8300009c"))  # diag
    cpu.mem.write(pt + 8 * 0x13, struct.pack(">Q", 0x50000))  # the target page FAR -> frame 0x50
    # exrl 0,FAR ; ahi %r1,1 ; diag 0,0,0x44
    start(cpu, exrl(0, CODE, FAR) + bytes.fromhex("a71a0001" "83000044"), b"", target_at=CODE + 0x100,
          mask=PSW_MASK_64 | PSW_MASK_DAT)  # fmt: skip
    cpu.set_cr(1, seg)  # primary ASCE: a segment table of 512 entries
    out = cpu.run()  # (uncounted runs: unicorn keeps the translated blocks between them)
    assert out.kind == "insn" and out.insn.pc == CODE + 10 and cpu.gpr(0) == 1 and cpu.gpr(1) == 1
    assert CODE not in cpu._exits
    cpu.mem.write(pt + 8 * 0x13, struct.pack(">Q", 0x51000))  # FAR -> frame 0x51 now
    cpu.flush_tlb()  # what the guest's IPTE or PTLB does
    cpu.set_pc(CODE)
    cpu.set_gpr(1, 0)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.name == "DIAG" and out.insn.pc == CODE
    assert out.insn.address() == 0x9C and cpu.gpr(0) == 1
    out.insn.finish()
    out = cpu.run()  # the instructions after the EXRL, once each
    assert out.kind == "insn" and out.insn.pc == CODE + 10 and out.insn.address() == 0x44
    assert cpu.gpr(1) == 1


def test_an_execute_stopped_before_its_target_runs_the_target_once(cpu):
    """unicorn performs EXECUTE in two blocks, and a run can end between them: here the EXRL's block was
    translated before its address became an exit, so the target's new block halts there with the target
    pending in unicorn. The CPU then performs the EXRL itself, and the target runs once."""
    # nopr ; exrl 2,target ; diag 0,0,0x44
    start(cpu, bytes.fromhex("0700") + exrl(2, CODE + 2, TARGET) + DIAG_44, bytes.fromhex("a70a0001"))
    cpu.set_gpr(2, 0xF0)  # ahi %r15,1
    out = cpu.run()
    assert out.kind == "insn" and out.insn.pc == CODE + 8 and cpu.gpr(15) == 1
    cpu._exits.add(CODE + 2)  # an exit from now on (as when its target changed); the block stays translated
    cpu._register_exits(frozenset((CODE + 2,)))
    cpu.set_gpr(2, 0xE0)  # ahi %r14,1: a new target block, which halts at the exit with its text pending
    cpu.set_pc(CODE)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.pc == CODE + 8
    assert (cpu.gpr(14), cpu.gpr(15)) == (1, 1)


def test_a_pending_execute_target_is_dropped_when_the_cpu_performs_the_execute(cpu):
    """When the CPU emulates an EXECUTE whose target unicorn holds pending (the state above), the pending
    target must not run later in place of the instruction after the EXECUTE."""
    from emulator.hw.cpu import _LAYOUT

    # exrl 0,target (a DIAG) ; ahi %r1,1 ; diag 0,0,0x44
    start(cpu, exrl(0, CODE, TARGET) + bytes.fromhex("a71a0001") + DIAG_44, bytes.fromhex("8300009c"))
    performed = cpu._execute

    def execute_with_target_pending(pc, raw, emulate):  # as unicorn leaves it: the DIAG's text, EXRL's length
        view = cpu._blob()
        view[_LAYOUT.ex_value : _LAYOUT.ex_value + 8] = struct.pack("<Q", 0x8300009C << 32 | 6)
        cpu.uc.context_restore(cpu._ctx)
        cpu._stale()
        return performed(pc, raw, emulate)

    cpu._execute = execute_with_target_pending
    out = cpu.run()
    assert out.kind == "insn" and out.insn.pc == CODE and out.insn.address() == 0x9C
    out.insn.finish()
    cpu._execute = performed
    out = cpu.run()
    assert out.kind == "insn" and out.insn.pc == CODE + 10 and out.insn.address() == 0x44
    assert cpu.gpr(1) == 1


def test_an_ex_whose_target_needs_no_python_runs_natively_from_its_exit(cpu):
    """EX is always an exit; a target that needs no Python then runs natively, counted once, and the exit
    stays: the next EX that targets a DIAG on the loop's back edge is trapped."""
    start(cpu, ex(2, 1), bytes.fromhex("a70a0001"))  # ahi %r0,1; R2's 0xF0 makes it ahi %r15,1
    cpu.set_gpr(1, TARGET)
    cpu.set_gpr(2, 0xF0)
    for n in (1, 2, 3):
        cpu.set_pc(CODE)
        before = cpu.insn_count
        assert cpu.run(count=1).kind == "limit"
        assert cpu.pc == CODE + 4 and cpu.gpr(15) == n and cpu.insn_count == before + 1
    assert CODE in cpu._exits
    # 0: ex %r0,0(%r1) ; lgr %r1,%r3 ; brctg %r9,0b   (R1: the AHI first, then R3: a DIAG)
    start(cpu, ex(0, 1) + bytes.fromhex("b9040013") + bytes.fromhex("a797fffc"), bytes.fromhex("a70a0001"))
    cpu.mem.write(FAR, bytes.fromhex("8300009c"))
    cpu.set_gpr(0, 0)
    cpu.set_gpr(1, TARGET)
    cpu.set_gpr(3, FAR)
    cpu.set_gpr(9, 5)
    out = cpu.run()
    assert out.kind == "insn" and out.insn.name == "DIAG" and out.insn.pc == CODE
    assert cpu.gpr(0) == 1 and cpu.gpr(9) == 4


# -- relative-addressing targets, against unicorn running them natively at the target's address ----------

REGS = {1: 0x0000000012345678, 2: 0x8000000000000007, 3: 0xFFFFFFFFFFFFFFFE, 4: 0x10,
        5: 0x7FFFFFFF00000003, 6: 0x00000000FFFFFFF0, 7: 0xFFFFFFFF80000000}  # fmt: skip


def ri(op: int, ext: int, r1: int, halfwords: int) -> bytes:
    return bytes((op, r1 << 4 | ext)) + struct.pack(">h", halfwords)


def ril(op: int, ext: int, r1: int, halfwords: int) -> bytes:
    return bytes((op, r1 << 4 | ext)) + struct.pack(">i", halfwords)


def rie(r1: int, r2: int, halfwords: int, byte4: int, op2: int) -> bytes:
    return bytes((0xEC, r1 << 4 | r2)) + struct.pack(">h", halfwords) + bytes((byte4, op2))


TO_DATA = (DATA - TARGET) // 2  # halfwords from the target to DATA
RELATIVE_CASES = {
    "BRC taken": ri(0xA7, 4, 0xF, 0x40),
    "BRC not taken": ri(0xA7, 4, 0x1, 0x40),
    "BRAS": ri(0xA7, 5, 9, -0x20),
    "BRCT": ri(0xA7, 6, 4, 0x10),
    "BRCTG": ri(0xA7, 7, 1, 0x10),
    "BRCTH": ril(0xCC, 6, 1, 0x10),
    "BRCL": ril(0xC0, 4, 0x8, 0x1000),
    "BRASL": ril(0xC0, 5, 10, 0x1000),
    "LARL": ril(0xC0, 0, 11, TO_DATA),
    "BRXH": bytes((0x84, 0x24)) + struct.pack(">h", 0x30),
    "BRXLE": bytes((0x85, 0x64)) + struct.pack(">h", 0x30),
    "BRXHG": rie(2, 4, 0x30, 0, 0x44),
    "BRXLG": rie(6, 5, 0x30, 0, 0x45),
    "CRJ": rie(1, 4, 0x30, 0x20, 0x76),
    "CGRJ": rie(2, 3, 0x30, 0x40, 0x64),
    "CLRJ": rie(6, 4, 0x30, 0x20, 0x77),
    "CLGRJ": rie(2, 3, 0x30, 0x20, 0x65),
    "CIJ": rie(7, 0x4, 0x30, 0xF0, 0x7E),
    "CGIJ": rie(3, 0x8, 0x30, 0xFE, 0x7C),
    "CLIJ": rie(4, 0x8, 0x30, 0x10, 0x7F),
    "CLGIJ": rie(4, 0x2, 0x30, 0x01, 0x7D),
    "LRL": ril(0xC4, 0xD, 12, TO_DATA),
    "LGRL": ril(0xC4, 0x8, 12, TO_DATA),
    "LGFRL": ril(0xC4, 0xC, 12, TO_DATA + 2),
    "LLGFRL": ril(0xC4, 0xE, 12, TO_DATA + 2),
    "LHRL": ril(0xC4, 0x5, 12, TO_DATA + 3),
    "LGHRL": ril(0xC4, 0x4, 12, TO_DATA + 3),
    "LLHRL": ril(0xC4, 0x2, 12, TO_DATA + 3),
    "LLGHRL": ril(0xC4, 0x6, 12, TO_DATA + 3),
    "STRL": ril(0xC4, 0xF, 5, TO_DATA + 8),
    "STGRL": ril(0xC4, 0xB, 2, TO_DATA + 8),
    "STHRL": ril(0xC4, 0x7, 1, TO_DATA + 9),
    "CRL": ril(0xC6, 0xD, 1, TO_DATA),
    "CGRL": ril(0xC6, 0x8, 3, TO_DATA),
    "CGFRL": ril(0xC6, 0xC, 7, TO_DATA + 2),
    "CHRL": ril(0xC6, 0x5, 2, TO_DATA + 3),
    "CGHRL": ril(0xC6, 0x4, 3, TO_DATA + 3),
    "CLRL": ril(0xC6, 0xF, 7, TO_DATA),
    "CLGRL": ril(0xC6, 0xA, 5, TO_DATA),
    "CLGFRL": ril(0xC6, 0xE, 6, TO_DATA + 2),
    "CLHRL": ril(0xC6, 0x7, 1, TO_DATA + 3),
    "CLGHRL": ril(0xC6, 0x6, 3, TO_DATA + 3),
    "PFDRL": ril(0xC6, 0x2, 1, TO_DATA),
    "LRL unaligned": ril(0xC4, 0xD, 12, TO_DATA + 1),
    "LGRL unaligned": ril(0xC4, 0x8, 12, TO_DATA + 2),
}


def _state(cpu: Cpu, text: bytes, mask: int) -> None:
    cpu.mem.write(TARGET, text + bytes.fromhex("0700"))
    cpu.mem.write(DATA, bytes.fromhex("12345678 8000fff0 0000000000000000"))
    for r, v in REGS.items():
        cpu.set_gpr(r, v)
    cpu.set_gpr(12, 0x5555555555555555)
    cpu.set_gpr(13, TARGET)  # EX's base register
    cpu.set_psw(mask | 1 << 44, CODE)  # condition code 1
    cpu.state = OPERATING


def _outcome(cpu: Cpu) -> tuple:
    return (cpu.gprs(), (cpu.psw_mask >> 44) & 3, cpu.mem.read(DATA, 16), cpu.mem.read(0x8C, 4))


@pytest.mark.parametrize("mode", [PSW_MASK_64, PSW_31], ids=["64-bit", "31-bit"])
@pytest.mark.parametrize("kind", ["EX", "EXRL"])
@pytest.mark.parametrize("name", list(RELATIVE_CASES))
def test_relative_targets_address_from_the_target_and_continue_after_the_execute(cpu, name, kind, mode):
    text = RELATIVE_CASES[name]
    # unicorn natively, the instruction at the target's own address
    _state(cpu, text, mode)
    cpu.set_pc(TARGET)
    cpu.run(count=1)
    native_pc, native = cpu.pc, _outcome(cpu)
    # the same instruction as the target of an EXECUTE
    code = ex(0, 13) if kind == "EX" else exrl(0, CODE, TARGET)
    cpu.mem.write(CODE, code + bytes.fromhex("0700"))
    cpu.mem.write(0x8C, bytes(4))
    _state(cpu, text, mode)
    cpu.run(count=1)
    executed = _outcome(cpu)
    after_target, after_ex = TARGET + len(text), CODE + len(code)
    if name in ("BRAS", "BRASL"):  # the link is the address after the EXECUTE
        r = text[1] >> 4
        link = after_ex | (0x80000000 if mode == PSW_31 else 0)
        assert executed[0][r] & 0xFFFFFFFF == link & 0xFFFFFFFF
        executed[0][r] = native[0][r]
    if "unaligned" in name:
        assert executed[3] == struct.pack(">HH", len(code), 0x06)
        assert cpu.mem.read(0x158, 8) == struct.pack(">Q", after_ex)
        return
    assert executed == native
    assert cpu.pc == (after_ex if native_pc == after_target else native_pc)


# -- SIE: the interception says the instruction was executed by EXECUTE ----------------------------------


@pytest.mark.toolchain
def test_sie_instruction_interception_of_an_executed_diag_flags_execute(tmp_path):
    from emulator.hypervisor.kvm import MIB, Hypervisor

    src = r"""
    .text
    .globl _start
    _start:
        larl %r1,tmpl
        lghi %r2,0x45
        ex %r2,0(%r1)
        exrl %r0,tmpl
        diag %r0,%r0,0x9c
        larl %r1,waitpsw
        lpswe 0(%r1)
    tmpl: diag %r0,%r0,0x9c
        .align 8
    waitpsw: .quad 0x0002000180000000, 0xfff
    """
    (tmp_path / "g.s").write_text(src)
    subprocess.run(["s390x-linux-gnu-as", "-o", tmp_path / "g.o", tmp_path / "g.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", tmp_path / "g.elf",
                    tmp_path / "g.o"], check=True)  # fmt: skip
    hv = Hypervisor(PhysicalMemory(64 * MIB), TodClock())
    vm = hv.create_vm(16 * MIB)
    seen = []
    def listen(_vm, v, e):
        if e.insn is not None:
            seen.append((v.sd.icptstatus, v.sd.ipa, e.insn.pc, v.sd.psw_addr))

    hv.exit_listeners.append(listen)
    vm.load(str(tmp_path / "g.elf"))
    assert vm.run(time_limit=30).clean
    base = 0x10000
    assert seen == [
        (0x41, 0x8345, base + 0x0A, base + 0x0E),  # EX: ILC 4 in bits 1-2 of the high nibble, R2 ORed in
        (0x61, 0x8300, base + 0x0E, base + 0x14),  # EXRL: 6
        (0x00, 0x8300, base + 0x14, base + 0x18),  # the DIAG itself
    ]


# -- storage-to-storage targets emulated at the EXECUTE (MVC, XC, NC, OC, CLC) ----------------------------

SS_DATA = 0x20FF0  # 16 bytes before a page boundary: operands cross it


def ss(op: int, length: int, b1: int, d1: int, b2: int, d2: int) -> bytes:
    return bytes((op, length, b1 << 4 | d1 >> 8, d1 & 0xFF, b2 << 4 | d2 >> 8, d2 & 0xFF))


SS_CASES = {
    "MVC": ss(0xD2, 0x00, 1, 0x000, 1, 0x100),
    "MVC propagate": ss(0xD2, 0x00, 1, 0x001, 1, 0x000),  # the classic one-byte-right overlap
    "MVC overlap back": ss(0xD2, 0x00, 1, 0x000, 1, 0x003),
    "XC clear": ss(0xD7, 0x00, 1, 0x000, 1, 0x000),
    "XC": ss(0xD7, 0x00, 1, 0x008, 1, 0x100),
    "XC overlap": ss(0xD7, 0x00, 1, 0x002, 1, 0x000),
    "NC": ss(0xD4, 0x00, 1, 0x000, 1, 0x100),
    "OC": ss(0xD6, 0x00, 1, 0x000, 1, 0x104),
    "CLC equal": ss(0xD5, 0x00, 1, 0x200, 1, 0x300),
    "CLC low": ss(0xD5, 0x00, 1, 0x000, 1, 0x100),
    "CLC high": ss(0xD5, 0x00, 1, 0x100, 1, 0x000),
}


def _ss_state(cpu: Cpu, text: bytes) -> None:
    cpu.mem.write(TARGET, text + bytes.fromhex("0700"))
    cpu.mem.write(SS_DATA, bytes((i * 37 + 11) & 0xFF for i in range(0x400)))
    cpu.mem.write(SS_DATA + 0x200, bytes(range(0x40)))
    cpu.mem.write(SS_DATA + 0x300, bytes(range(0x40)))
    cpu.set_gpr(1, SS_DATA)
    cpu.set_gpr(2, 0x1F)  # the EXECUTE's length byte: 32 bytes, over the page boundary
    cpu.set_gpr(13, TARGET)
    cpu.set_psw(PSW_MASK_64 | 3 << 44, CODE)
    cpu.state = OPERATING


@pytest.mark.parametrize("name", list(SS_CASES))
def test_storage_targets_match_the_native_instruction(cpu, name):
    """EX is always an exit, where these targets are emulated (an EXRL of them on its own page runs
    natively)."""
    text = SS_CASES[name]
    _ss_state(cpu, bytes((text[0], 0x1F)) + text[2:])  # natively, with the length the EXECUTE ORs in
    cpu.set_pc(TARGET)
    cpu.run(count=1)
    native = (cpu.gprs(), (cpu.psw_mask >> 44) & 3, cpu.mem.read(SS_DATA, 0x400))
    code = ex(2, 13)
    cpu.mem.write(CODE, code + bytes.fromhex("0700"))
    _ss_state(cpu, text)
    cpu.run(count=1)
    assert (cpu.gprs(), (cpu.psw_mask >> 44) & 3, cpu.mem.read(SS_DATA, 0x400)) == native
    assert cpu.pc == CODE + len(code)


def test_executed_mvc_to_missing_storage_is_an_addressing_exception_storing_nothing(cpu):
    """Suppressed, as the MVC natively (the old PSW after the instruction, here the EXECUTE)."""
    text = ss(0xD2, 0x00, 1, 0x000, 3, 0x000)
    _ss_state(cpu, text)
    cpu.set_gpr(1, (1 << 20) - 8)  # the first operand runs past the end of memory
    cpu.set_gpr(3, SS_DATA)
    cpu.mem.write(CODE, ex(2, 13) + bytes.fromhex("0700"))
    before = cpu.mem.read((1 << 20) - 8, 8)
    assert cpu.run().kind == "disabled_wait"
    assert pgm(cpu) == (0x05, 4, CODE + 4)
    assert cpu.mem.read((1 << 20) - 8, 8) == before

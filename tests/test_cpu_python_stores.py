"""Python's stores into a page that holds code (an emulated STPT into Linux's lowcore, an interruption's PSWs,
a device) drop the translated blocks over what they stored and rescan the page, and nothing more.

Such a store used to drop every translated block and flush the whole TLB, so a kernel storing its CPU timer
into its lowcore at every system call refilled its whole working set and registered all its exits again each
time. The program here reads a working set of pages and stores the CPU timer into its own code page (STPT is
emulated), over and over: the fills stay near one per page. Code Python rewrites runs as rewritten, and a
trapped instruction Python writes traps.
"""

import struct

import pytest

from emulator.hw import engine
from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.mmu import GuestMapping
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000
PAGES = 64
ITERATIONS = 50
WAIT_CODE = 0x600D


def loop_program() -> bytes:
    return bytes.fromhex(
        f"a718{ITERATIONS:04x}"  # LHI 1,ITERATIONS
        "a52e0010"  # outer: LLILH 2,0x0010 (the working set from 1 MiB)
        f"a748{PAGES:04x}"  # LHI 4,PAGES
        "e35020000004"  # inner: LG 5,0(2)
        "c22800001000"  # AGFI 2,4096
        "a746fffa"  # BRCT 4,inner
        "c0a0000003f2"  # LARL 10,CODE+0x800 (in the code's own page)
        "b209a000"  # STPT 0(10)
        "a716ffef"  # BRCT 1,outer
        "b2b20200"  # LPSWE 0x200: disabled wait
    )


@pytest.fixture
def cpu():
    mem = PhysicalMemory(4 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0x0BAD))  # program new PSW: disabled wait
    mem.write(0x200, struct.pack(">QQ", 0x0002000180000000, WAIT_CODE))
    yield c
    c.close()


def start(cpu: Cpu, code: bytes) -> None:
    cpu.mem.write(CODE, code)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING


@pytest.mark.parametrize("sie_guest", [False, True])
def test_stores_into_a_code_page_keep_the_working_set(cpu, sie_guest):
    # a SIE guest's CPU too (a secure Linux's STPT at every system call): its own stores change no
    # configuration, so they drop only the blocks over the store (stores that are not its own, the
    # Ultravisor's Unpack or Destroy clearing a page, still drop everything)
    if sie_guest:
        cpu.guest = GuestMapping(lambda addr, write, fetch: addr)
    cpu.set_cpu_timer(0x7000_0000_0000_0000)
    start(cpu, loop_program())
    ex = cpu.run(timeout_us=60_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", WAIT_CODE)
    stored = struct.unpack(">Q", cpu.mem.read(CODE + 0x800, 8))[0]
    assert 0 < 0x7000_0000_0000_0000 - stored < 60 * 4096 * 1_000_000  # the last STPT landed
    if engine.PHYS_INVALIDATE is not None:
        # one fill per page of the working set and a few more, not one per page per STPT
        assert cpu.tlb_fills < PAGES + 4 * ITERATIONS


def test_code_python_rewrites_runs_as_rewritten(cpu):
    # LGHI 2,1 ; LPSWE 0x200
    start(cpu, bytes.fromhex("a7290001" "b2b20200"))
    assert cpu.run(timeout_us=10_000_000).code == WAIT_CODE
    assert cpu.gpr(2) == 1
    for value in (2, 3):
        cpu.mem.write(CODE + 2, bytes([0, value]))  # LGHI 2,value (no engine call: the CPU's listener)
        cpu.set_psw(PSW_MASK_64, CODE)
        assert cpu.run(timeout_us=10_000_000).code == WAIT_CODE
        assert cpu.gpr(2) == value


def test_a_trapped_instruction_python_writes_traps(cpu):
    # LGHI 2,1 ; LGHI 3,1 ; LPSWE 0x200
    start(cpu, bytes.fromhex("a7290001" "a7390001" "b2b20200"))
    assert cpu.run(timeout_us=10_000_000).code == WAIT_CODE
    cpu.mem.write(CODE + 4, bytes.fromhex("8300009c"))  # DIAG 0,0,0x9C over the second LGHI
    cpu.set_psw(PSW_MASK_64, CODE)
    ex = cpu.run(timeout_us=10_000_000)
    assert ex.kind == "insn" and ex.insn.name == "DIAG"
    assert cpu.pc == CODE + 4 and cpu.gpr(2) == 1

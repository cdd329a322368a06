"""A TLB fill that asks unicorn to stop (the TLB grows: a flush after the run) must not make the instruction
whose access it served run twice.

unicorn rolls the PSW address back to the accessing instruction before it calls the fill, and after a
granted fill the instruction completes; a stop the fill asked for then ended the run with the PSW still at
that instruction, which ran again. A load whose base register is its target (a pointer chase, Linux's
``lg %r1,128(%r1)``) then went two links instead of one. The chase here runs over more pages than the TLB
holds, so the TLB grows several times during it; it must end on exactly the right link.
"""

import struct

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

BASE = 0x100000
PAGES = 2048
STEPS = 100_000
WAIT_CODE = 0x600D


def link(i: int) -> int:
    """The address of the i-th link (one per page, at varying offsets)."""
    i %= PAGES
    return BASE + i * 4096 + 8 * (i % 16)


def test_a_pointer_chase_across_tlb_growth_takes_each_link_once():
    mem = PhysicalMemory(16 << 20)
    cpu = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    try:
        mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0x0BAD))
        mem.write(0x200, struct.pack(">QQ", 0x0002000180000000, WAIT_CODE))
        for i in range(PAGES):
            mem.write(link(i), struct.pack(">Q", link(i + 1)))
        code = (
            bytes.fromhex("a51e0010")  # LLILH 1,0x0010: the first link
            + bytes.fromhex("c021") + struct.pack(">I", STEPS)  # LGFI 2,STEPS
            + bytes.fromhex("e31010000004")  # LG 1,0(1)
            + bytes.fromhex("a727fffd")  # BRCTG 2,*-6
            + bytes.fromhex("b2b20200")  # LPSWE 0x200
        )
        mem.write(0x10000, code)
        cpu.set_cr(0, 0xE0)
        cpu.set_psw(PSW_MASK_64, 0x10000)
        cpu.state = OPERATING
        size = cpu._tlb_size
        ex = cpu.run(timeout_us=60_000_000)
        assert (ex.kind, ex.code) == ("disabled_wait", WAIT_CODE)
        assert cpu._tlb_size > size  # the TLB grew during the chase (the fills asked for stops)
        assert cpu.gpr(1) == link(STEPS)
    finally:
        cpu.close()

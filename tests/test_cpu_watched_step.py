"""A store into a low-address-protected page (pages 0 and 1: Linux's lowcore, its save areas and return PSW)
runs as a watched one-instruction step; the step must leave the rest of the TLB as it was.

A whole flush after each step made every system call of a Linux process refill its working set and register
its exits again. The program here reads a working set of pages, then stores once into page 0 at an
unprotected byte, over and over: the stores all land, and the fills stay near one per page plus a few per
step, not one per page per step. Counted runs (single steps, ``--insns``) take the same steps.
"""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000
PAGES = 64
ITERATIONS = 50
CR0_LOW_ADDRESS_PROTECTION = 1 << 28
WAIT_CODE = 0x600D


def program(store_at: int) -> bytes:
    return bytes.fromhex(
        "a7390000"  # LGHI 3,0
        f"a718{ITERATIONS:04x}"  # LHI 1,ITERATIONS
        "a52e0010"  # outer: LLILH 2,0x0010 (the working set from 1 MiB)
        f"a748{PAGES:04x}"  # LHI 4,PAGES
        "e35020000004"  # inner: LG 5,0(2)
        "c22800001000"  # AGFI 2,4096
        "a746fffa"  # BRCT 4,inner
        f"e3300{store_at:03x}0024"  # STG 3,store_at (page 0)
        "a73b0001"  # AGHI 3,1
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


def start(cpu: Cpu, store_at: int) -> None:
    cpu.mem.write(CODE, program(store_at))
    cpu.set_cr(0, 0xE0 | CR0_LOW_ADDRESS_PROTECTION)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING


def test_watched_stores_land_and_keep_the_working_set(cpu):
    start(cpu, 0x300)
    ex = cpu.run(timeout_us=60_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", WAIT_CODE)
    assert struct.unpack(">Q", cpu.mem.read(0x300, 8))[0] == ITERATIONS - 1  # every store, the last value
    assert cpu.mem.keys[0] & 0x02  # the change bit of the stored frame
    # one fill per page of the working set, plus a handful per step (the stored page, the code)
    assert cpu.tlb_fills < PAGES + 8 * ITERATIONS


def test_a_store_into_protected_bytes_is_refused_in_the_loop(cpu):
    start(cpu, 0x1F8)  # below 512: protected
    ex = cpu.run(timeout_us=60_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", 0x0BAD)
    assert struct.unpack(">HH", cpu.mem.read(0x8C, 4))[1] == 0x04
    assert cpu.mem.read(0x1F8, 8) == bytes(8)


def test_counted_runs_take_the_same_steps(cpu):
    start(cpu, 0x300)
    steps = 0
    while cpu.psw[1] != WAIT_CODE and steps < 100_000:
        cpu.run(count=7)
        steps += 1
    assert cpu.psw[1] == WAIT_CODE
    assert struct.unpack(">Q", cpu.mem.read(0x300, 8))[0] == ITERATIONS - 1

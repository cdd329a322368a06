"""MOVE WITH OPTIONAL SPECIFICATIONS: each operand in the address space and with the key general register 0
names (Linux's copy_to_user from the home space into the user's secondary space), at most 4096 bytes."""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory

HOME_ST, HOME_PT = 0x20000, 0x24000
SEC_ST, SEC_PT = 0x28000, 0x2C000
USER_PAGE, USER_FRAME = 0x50000, 0x60000  # mapped elsewhere in the secondary space only
UNMAPPED = 0x70000  # invalid in the secondary space
SRC = 0x12000
PGM_NEW_ADDR = 0x0BAD0
DAT, HOME_MODE = 1 << 58, 3 << 46
CR0_SECONDARY = 1 << 26
OAC1_SECONDARY = (2 << 6 | 1) << 16  # operand 1: address-space control 10 (secondary), A bit


def _tables(mem: PhysicalMemory) -> None:
    for st, pt in ((HOME_ST, HOME_PT), (SEC_ST, SEC_PT)):
        for i in range(2048):
            mem.write(st + 8 * i, struct.pack(">Q", 0x20))
        mem.write(st, struct.pack(">Q", pt))
        for i in range(256):
            mem.write(pt + 8 * i, struct.pack(">Q", i << 12))
    mem.write(SEC_PT + 8 * (USER_PAGE >> 12), struct.pack(">Q", USER_FRAME))
    mem.write(SEC_PT + 8 * (UNMAPPED >> 12), struct.pack(">Q", 0x400))


def run_mvcos(
    cpu: Cpu, r0: int, dst: int, src: int, length: int, mask: int = DAT | HOME_MODE,
    cr0: int = 0xE0 | CR0_SECONDARY,
) -> dict:
    """Run ``mvcos 0(%r1),0(%r2),%r3`` at 0x10000 in home-space mode; the result or the program check."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x80000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    _tables(mem)
    mem.write(SRC, bytes(range(256)) * 32)
    mem.write(0x10000, bytes.fromhex("c83010002000") + bytes.fromhex("a7f40000"))  # mvcos ; j .
    cpu.set_cr(0, cr0)
    cpu.set_cr(1, SEC_ST | 3)
    cpu.set_cr(7, SEC_ST | 3)
    cpu.set_cr(13, HOME_ST | 3)
    for r, v in ((0, r0), (1, dst), (2, src), (3, length)):
        cpu.set_gpr(r, v)
    cpu.set_psw(PSW_MASK_64 | mask, 0x10000)
    cpu.state = OPERATING
    cpu.run(count=1)
    if cpu.psw[1] == PGM_NEW_ADDR:
        return {
            "pgm": struct.unpack(">H", mem.read(0x8E, 2))[0],
            "teid": struct.unpack(">Q", mem.read(0xA8, 8))[0],
            "old_psw_addr": struct.unpack(">Q", mem.read(0x158, 8))[0],
        }
    return {"pgm": None, "cc": (cpu.psw[0] >> 44) & 3, "pc": cpu.psw[1]}


def test_a_secondary_space_operand_is_translated_through_cr7_not_the_psws_space(cpu):
    r = run_mvcos(cpu, OAC1_SECONDARY, USER_PAGE + 0x10, SRC, 32)
    assert r == {"pgm": None, "cc": 0, "pc": 0x10006}
    assert cpu.mem.read(USER_FRAME + 0x10, 32) == bytes(range(32))
    assert cpu.mem.read(USER_PAGE + 0x10, 32) == bytes(32)  # the home space's page is untouched


def test_a_fault_in_the_secondary_space_names_that_space_and_moves_nothing(cpu):
    r = run_mvcos(cpu, OAC1_SECONDARY, UNMAPPED - 8, SRC, 16)  # crosses into the invalid page
    assert r["pgm"] == 0x11 and r["old_psw_addr"] == 0x10000
    assert r["teid"] & ~0xFFF == UNMAPPED and r["teid"] & 3 == 2  # bits 62-63: secondary
    assert cpu.mem.read(UNMAPPED - 8, 8) == bytes(8)


def test_more_than_4096_bytes_move_4096_with_cc3(cpu):
    r = run_mvcos(cpu, 0, 0x40000, SRC, 5000)  # both operands in the PSW's (home) space
    assert r == {"pgm": None, "cc": 3, "pc": 0x10006}
    assert cpu.mem.read(0x40000, 4097) == (bytes(range(256)) * 16) + b"\0"


@pytest.mark.parametrize(
    "r0, mask, cr0",
    [
        (0, 0, 0xE0 | CR0_SECONDARY),  # DAT off
        (OAC1_SECONDARY, DAT | HOME_MODE, 0xE0),  # a secondary-space operand with CR0 bit 37 off
    ],
    ids=["dat-off", "secondary-without-cr0-control"],
)
def test_special_operation_exceptions_suppress_the_move(cpu, r0, mask, cr0):
    r = run_mvcos(cpu, r0, 0x40000, SRC, 8, mask, cr0)
    assert r["pgm"] == 0x13 and r["old_psw_addr"] == 0x10006  # suppression: the PSW after the instruction
    assert cpu.mem.read(0x40000, 8) == bytes(8)

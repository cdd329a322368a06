"""LCTLG flushes the CPU's translations when a control that DAT or protection reads changes, and only
then: a store allowed before low-address protection is turned on is refused right after it."""

import struct

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu

CODE = 0x10000
DATA = 0x20000  # the control-register images LCTLG loads
PGM_NEW_ADDR = 0x0BAD0
CR0_LAP, CR0_SERVICE = 1 << 28, 1 << 9


def run(cpu: Cpu, new_cr0: int) -> tuple[int | None, int]:
    """mvi 0x100,1; lctlg %c0,%c0,DATA; mvi 0x100,2: the program interruption code (None) and the byte."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    code = (
        bytes.fromhex("92010100")  # mvi 0x100,1
        + bytes.fromhex("eb001000002f")  # lctlg %c0,%c0,0(%r1)
        + bytes.fromhex("92020100")  # mvi 0x100,2
        + bytes.fromhex("0700")
    )
    mem.write(CODE, code)
    mem.write(DATA, struct.pack(">Q", new_cr0))
    cpu.set_cr(0, 0xE0)
    cpu.set_gpr(1, DATA)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    cpu.run(count=3)
    pgm = struct.unpack(">H", mem.read(0x8E, 2))[0] if cpu.psw[1] == PGM_NEW_ADDR else None
    return pgm, mem.read(0x100, 1)[0]


def test_turning_on_low_address_protection_takes_effect_at_the_next_store(cpu):
    assert run(cpu, 0xE0 | CR0_LAP) == (0x04, 1)


def test_opening_an_interruption_subclass_changes_no_access(cpu):
    assert run(cpu, 0xE0 | CR0_SERVICE) == (None, 2)
    assert cpu.cr(0) == 0xE0 | CR0_SERVICE

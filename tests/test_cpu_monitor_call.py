"""MONITOR CALL (MC): a monitor event program interruption (0x40) for an enabled class, nothing otherwise.

Linux's BUG() and WARN() are ``mc 0,0`` with monitor class 0 enabled in CR8 (its monitor-event handler looks
the address up in its bug table: a WARN prints and goes on). unicorn has no MONITOR CALL (an operation
exception), which turned every WARN of a Linux guest into an oops."""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu

CODE = 0x10000
PGM_NEW = 0x0BAD0


@pytest.fixture
def cpu(fresh_cpu):
    # program new PSW: disabled wait
    fresh_cpu.mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW))
    return fresh_cpu


def run(cpu: Cpu, code: bytes, cr8: int) -> None:
    # the MC, then LGHI R3,1 (it ran when R3 is 1) and a disabled wait at 0x600D
    cpu.mem.write(CODE, code + bytes.fromhex("a7390001b2b20000"))
    cpu.mem.write(0, struct.pack(">QQ", 0x0002000180000000, 0x600D))
    cpu.set_cr(8, cr8)
    cpu.set_gpr(2, 0x1000)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    assert cpu.run().kind == "disabled_wait"


def pgm(cpu: Cpu) -> tuple[int, int, int]:
    ilc, code = struct.unpack(">HH", cpu.mem.read(0x8C, 4))
    return code, ilc, struct.unpack(">Q", cpu.mem.read(0x158, 8))[0]


def test_a_monitor_call_of_a_class_cr8_disables_does_nothing(cpu):
    run(cpu, bytes.fromhex("af002123"), cr8=0x7FFF)  # mc 0x123(%r2),0: class 0 off, every other on
    assert cpu.pc == 0x600D and cpu.gpr(3) == 1


@pytest.mark.parametrize("cls", [0, 5, 15])
def test_a_monitor_call_of_an_enabled_class_is_a_monitor_event_after_it(cpu, cls):
    run(cpu, bytes((0xAF, cls, 0x21, 0x23)), cr8=0x8000 >> cls)
    assert cpu.pc == PGM_NEW
    assert pgm(cpu) == (0x40, 4, CODE + 4)  # the instruction completed: the old PSW is after it
    assert cpu.mem.read(0x94, 2) == struct.pack(">H", cls)
    assert cpu.mem.read(0xB0, 8) == struct.pack(">Q", 0x1123)  # the monitor code: D1(B1)


def test_a_monitor_call_with_bits_8_11_of_i2_set_is_a_specification_exception(cpu):
    run(cpu, bytes.fromhex("af102123"), cr8=0xFFFF)
    assert cpu.pc == PGM_NEW and pgm(cpu)[0] == 0x06

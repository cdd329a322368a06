"""An EXECUTE that a run ends in the middle of, and an EXECUTE whose target needs a watched step.

unicorn performs EXECUTE in two blocks (QEMU's ``ex_value``): the EXECUTE's block leaves the target pending
with the PSW at the EXECUTE, and the next block, wherever it starts, is translated as that target. A stop
from another thread (the watchdog at a timer's deadline, a SIGP's kick) lands at a block's entry, so a run
can end between the two. The architecture knows no such state: the CPU is at the instruction boundary
before the EXECUTE, and an interruption taken there returns to the EXECUTE, which then executes its target
once. (Linux oopsed this way once its clock comparator interrupted on time: the external interruption
handler's first instruction was replaced by an executed MVC.)

An EXECUTE's target that stores into a low-address-protected page is run as a watched step from the
EXECUTE's exit: the step must run both, not halt at the exit it starts from.
"""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000
HANDLER = 0x11000
TARGET = 0x12000  # another page than the EXECUTE: its fetch for the target is a TLB fill
PSW_EXT = 1 << 56  # external interruptions enabled
CR0_EMERGENCY = 1 << 14
CR0_LOW_ADDRESS_PROTECTION = 1 << 28
WAIT = struct.pack(">QQ", 0x0002000180000000, 0x600D)  # disabled wait, code 0x600D
AHI_5_1 = bytes.fromhex("a75a0001")
AHI_6_1 = bytes.fromhex("a76a0001")


@pytest.fixture
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0x0BAD))  # program new PSW: disabled wait
    mem.write(0x200, WAIT)
    yield c
    c.close()


def larl(reg: int, at: int, target: int) -> bytes:
    return bytes((0xC0, reg << 4)) + struct.pack(">i", (target - at) // 2)


def exrl(at: int, target: int) -> bytes:
    return bytes((0xC6, 0x00)) + struct.pack(">i", (target - at) // 2)


@pytest.mark.parametrize("kind", ["EX", "EXRL"])
def test_an_interruption_after_a_stop_between_an_execute_and_its_target_returns_to_the_execute(cpu, kind):
    """Another CPU's emergency signal and its kick land while the EXECUTE fetches its target: the handler
    runs its own first instruction, returns to the EXECUTE, and the target runs once."""
    mem = cpu.mem
    if kind == "EX":
        code = larl(2, CODE, TARGET) + bytes.fromhex("44002000")  # LARL 2,TARGET; EX 0,0(2)
    else:
        code = bytes.fromhex("0700" "0700" "0700") + exrl(CODE + 6, TARGET)
    execute_at = CODE + 6
    mem.write(CODE, code + bytes.fromhex("b2b20200"))  # then LPSWE of the disabled wait
    mem.write(TARGET, AHI_5_1)
    mem.write(HANDLER, AHI_6_1 + bytes.fromhex("b2b20130"))  # AHI 6,1; LPSWE of the external old PSW
    mem.write(0x1B0, struct.pack(">QQ", PSW_MASK_64, HANDLER))  # external new PSW, disabled
    fill = cpu._fill

    def kicking_fill(uc, vaddr, access, entry, ud):
        # as SIGP EMERGENCY SIGNAL from another CPU would, at the worst moment: the target's fetch
        if vaddr & ~0xFFF == TARGET and not cpu.emergency_from:
            cpu.emergency_from.add(1)
            cpu.kick()
        return fill(uc, vaddr, access, entry, ud)

    cpu._fill = kicking_fill
    cpu.set_cr(0, 0xE0 | CR0_EMERGENCY)
    cpu.set_psw(PSW_MASK_64 | PSW_EXT, CODE)
    cpu.state = OPERATING
    ex = cpu.run(timeout_us=5_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", 0x600D)
    assert struct.unpack(">H", mem.read(0x86, 2))[0] == 0x1201  # the emergency signal was taken
    assert struct.unpack(">Q", mem.read(0x138, 8))[0] == execute_at  # before the EXECUTE
    assert cpu.gpr(6) == 1  # the handler's own first instruction ran
    assert cpu.gpr(5) == 1  # the target ran once, after the handler


def test_an_executed_store_into_a_low_address_protected_page_completes(cpu):
    """EX (an exit) of ASI into page 0 with low-address protection on, at an unprotected byte: each EX
    stores once and the program goes on (the watched step used to halt at the EX's own exit for ever)."""
    mem = cpu.mem
    mem.write(0x800, bytes.fromhex("eb010300006a"))  # ASI 0x300,1
    mem.write(CODE, bytes.fromhex("a7280800" "44002000" "44002000" "b2b20200"))  # LHI 2,0x800; EX; EX; LPSWE
    cpu.set_cr(0, 0xE0 | CR0_LOW_ADDRESS_PROTECTION)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    ex = cpu.run(timeout_us=5_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", 0x600D)
    assert mem.read(0x300, 4) == bytes.fromhex("00000002")


def test_an_executed_store_into_protected_low_bytes_is_a_protection_exception(cpu):
    """The same EX with its store at byte 0x100 (protected): PGM 0x04 with the EXECUTE's address and ILC,
    nothing stored."""
    mem = cpu.mem
    mem.write(0x800, bytes.fromhex("eb010100006a"))  # ASI 0x100,1
    mem.write(CODE, bytes.fromhex("a7280800" "44002000" "b2b20200"))
    cpu.set_cr(0, 0xE0 | CR0_LOW_ADDRESS_PROTECTION)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    ex = cpu.run(timeout_us=5_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", 0x0BAD)
    ilc, code = struct.unpack(">HH", mem.read(0x8C, 4))
    assert (code, ilc) == (0x04, 4)
    assert struct.unpack(">Q", mem.read(0x158, 8))[0] == CODE + 8  # suppressed: after the EX
    assert mem.read(0x100, 4) == bytes(4)

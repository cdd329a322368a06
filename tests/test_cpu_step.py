"""Single steps (``Cpu.run(count=1)``, the debugger's ``step``) make progress over every instruction."""

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000


@pytest.mark.parametrize(
    ("code", "target"),
    [
        ("44201000", "a70a0001"),  # ex %r2,0(%r1) of ahi %r0,1; R2's low byte 0xF0 makes it ahi %r15,1
        ("c62000000080", "a70a0001"),  # exrl %r2,<CODE+0x100>
    ],
    ids=["EX", "EXRL"],
)
def test_one_step_runs_an_execute_and_its_target(code, target):
    """unicorn counts an EXECUTE and its target as two instructions: a one-instruction run of its own
    would stop between them, at the EXECUTE again, and no step would ever get past it."""
    mem = PhysicalMemory(1 << 20)
    cpu = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    try:
        mem.write(CODE, bytes.fromhex(code) + bytes.fromhex("07000700"))
        mem.write(CODE + 0x100, bytes.fromhex(target))
        cpu.set_gpr(1, CODE + 0x100)
        cpu.set_gpr(2, 0xF0)  # ORed into the target's second byte
        cpu.set_psw(PSW_MASK_64, CODE)
        cpu.state = OPERATING
        before = cpu.insn_count
        assert cpu.run(count=1).kind == "limit"
        assert cpu.pc == CODE + len(code) // 2
        assert cpu.gpr(15) == 1  # the target ran once (%r15 was 0)
        assert cpu.insn_count == before + 1
        cpu.run(count=1)
        assert cpu.pc == CODE + len(code) // 2 + 2
    finally:
        cpu.close()

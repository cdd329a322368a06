"""Nothing the CPU emulates can hang: every trapped instruction either completes (the PSW moves past it or
to where it loads), or interrupts, or goes to the CPU's owner; and a program that takes the same exception
at one instruction in a loop of its own is not mistaken for an interruption loop."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.hw.cpu import (
    CHECK_STOP,
    ILC_FOR,
    OPERATING,
    PSW_MASK_64,
    PSW_MASK_PSTATE,
    Cpu,
)
from emulator.hw.insns import HANDLERS
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

MEM = 4 << 20
CODE = 0x10000
PGM_NEW_ADDR = 0x0BAD0

# register values: mostly addresses inside this small machine (so that operands resolve), some anywhere
VALUES = st.one_of(
    st.integers(0, MEM - 1),
    st.sampled_from([0, 0x1000, 0xFF000, 0x100000, 0x1FFFFF, MEM - 0x1000, 0x7FFFFFFF]),
    st.integers(0, (1 << 64) - 1),
)


@pytest.fixture(scope="module")
def cpu():
    mem = PhysicalMemory(MEM)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def fresh(cpu: Cpu) -> None:
    """Back to a known state: CPU reset, prefix 0, control registers 0, storage keys 0, low core clear."""
    mem = cpu.mem
    cpu.reset_cpu()
    cpu.set_prefix(0)
    for i in range(16):
        cpu.write_cr(i, 0)
    cpu.flush_tlb()
    mem.keys[:] = bytes(len(mem.keys))
    mem.fill(0, 0x4000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))


def encode(key: int, operands: bytes) -> bytes:
    """An instruction with opcode ``key`` (as ``insns.HANDLERS`` keys it) and these operand bytes."""
    if key < 0x100:
        op, ext = key, None
    else:
        op, ext = key >> 8, key & 0xFF
    n = ILC_FOR(op)
    if ext is None:
        return bytes([op]) + operands[: n - 1]
    if op in (0xB2, 0xB9, 0xE5, 0x01):
        return bytes([op, ext]) + operands[: n - 2]
    if op in (0xA7, 0xC2, 0xCC):
        return bytes([op, operands[0] & 0xF0 | ext]) + operands[1 : n - 1]
    return bytes([op]) + operands[:4] + bytes([ext])  # EB, E3, EC: the extension is the last byte


@pytest.mark.parametrize("key", sorted(HANDLERS), ids=lambda k: f"{k:#x}-{HANDLERS[k][0]}")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_emulated_instruction_completes_or_interrupts(cpu, key, data):
    mem = cpu.mem
    fresh(cpu)
    insn = encode(key, data.draw(st.binary(min_size=5, max_size=5)))
    mem.write(CODE, insn + bytes.fromhex("0700"))
    for i in range(16):
        cpu.set_gpr(i, data.draw(VALUES))
    problem = data.draw(st.booleans())
    cpu.set_psw(PSW_MASK_64 | (PSW_MASK_PSTATE if problem else 0), CODE)
    cpu.state = OPERATING
    exit_ = cpu.run(count=1)
    mask, addr = cpu.psw
    assert (
        addr != CODE  # completed, loaded a PSW, or interrupted (the program-new PSW)
        or exit_.kind in ("insn", "intercept", "disabled_wait", "wait")
        or cpu.state == CHECK_STOP
    ), f"{HANDLERS[key][0]} ({insn.hex()}) left the CPU at its own address: {exit_}"


def test_a_program_probing_pages_in_a_loop_is_not_an_interruption_loop(cpu):
    """The same addressing exception at one instruction a hundred times, with a register moving on each
    time (edat's "pud spanning end of memory" does this half a million times), runs to its end."""
    mem = cpu.mem
    fresh(cpu)
    handler = 0x3000
    mem.write(0x1D0, struct.pack(">QQ", PSW_MASK_64, handler))
    mem.write(handler, bytes.fromhex("b2b20150"))  # lpswe 0x150: back after the failing load
    loop = (
        bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2): beyond storage
        + bytes.fromhex("a72b1000")  # aghi %r2,4096
        + bytes.fromhex("a756fffc")  # brct %r5,.-8
    )
    mem.write(CODE, loop + bytes.fromhex("0700"))
    cpu.set_gpr(2, MEM)
    cpu.set_gpr(5, 100)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    for _ in range(2000):
        if cpu.pc == CODE + len(loop) or cpu.state == CHECK_STOP:
            break
        cpu.run(count=1)
    assert cpu.state != CHECK_STOP, cpu.check_stop_reason
    assert cpu.pc == CODE + len(loop)
    assert cpu.gpr(2) == MEM + 100 * 4096


def test_the_same_exception_with_nothing_changing_is_still_an_interruption_loop(cpu):
    mem = cpu.mem
    fresh(cpu)
    mem.write(0x1D0, struct.pack(">QQ", PSW_MASK_64, 0x3000))  # the handler: zeros, an invalid opcode
    cpu.set_psw(PSW_MASK_64, CODE)
    mem.write(CODE, bytes.fromhex("0000"))  # an operation exception, and then the same one at 0x3000
    cpu.state = OPERATING
    for _ in range(200):
        if cpu.state == CHECK_STOP:
            break
        cpu.run(count=1)
    assert cpu.state == CHECK_STOP
    assert "program-interruption loop" in cpu.check_stop_reason

"""SIGP orders on CPUs without a guest program: the resets and what they leave in the CPU."""

import pytest

from emulator.hw.cpu import OPERATING, STOPPED, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sigp import CPU_RESET, INITIAL_CPU_RESET, STORE_STATUS_AT_ADDRESS, sigp
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock


@pytest.fixture
def pair():
    mem = PhysicalMemory(1 << 20)
    clock = TodClock(deterministic=True)
    cpus = {a: Cpu(mem, a, clock, facility_list(False), 0) for a in (0, 1)}
    yield cpus, clock, mem
    for c in cpus.values():
        c.close()


def order(cpus, mem, code, param=0):
    return sigp(cpus[0], code, 1, param, cpus, mem.size, mem.write)


def test_initial_cpu_reset_clears_the_fpc_and_the_cpu_timer_which_then_holds(pair):
    cpus, clock, mem = pair
    target = cpus[1]
    target.state = OPERATING
    target.set_fpc(0x11)
    target.set_cpu_timer(1 << 40)
    assert order(cpus, mem, INITIAL_CPU_RESET) == (0, None)
    assert target.state == STOPPED and target.fpc() == 0
    clock.advance_insns(1 << 20)  # time passes while the target is stopped
    assert target.cpu_timer == 0
    assert order(cpus, mem, STORE_STATUS_AT_ADDRESS, 0x8000) == (0, None)
    assert mem.read(0x8000 + 0x11C, 4) == bytes(4)  # FPC
    assert mem.read(0x8000 + 0x128, 8) == bytes(8)  # CPU timer


def test_the_cpu_timer_steps_only_while_the_cpu_operates(pair):
    cpus, clock, _mem = pair
    cpu = cpus[1]
    cpu.set_cpu_timer(1000)
    clock.advance_insns(300)
    assert cpu.cpu_timer == 1000  # stopped: held
    cpu.state = OPERATING
    clock.advance_insns(300)
    stepped = cpu.cpu_timer
    assert stepped < 1000
    cpu.state = STOPPED
    clock.advance_insns(300)
    assert cpu.cpu_timer == stepped


def test_cpu_reset_keeps_the_fpc(pair):
    cpus, _clock, mem = pair
    cpus[1].set_fpc(0x11)
    assert order(cpus, mem, CPU_RESET) == (0, None)
    assert cpus[1].fpc() == 0x11


def test_clear_reset_zeroes_every_register_the_vectors_whole(fresh_cpu):
    """A clear reset zeroes the general, access and all 32 vector registers, right halves and V16-V31 too:
    the Ultravisor's scrub of a destroyed secure CPU's hardware CPU is a clear reset, and the host gets that
    CPU back (it zeroed only the floating-point registers, V0-V15's left halves, before)."""
    cpu = fresh_cpu
    for i in range(32):
        cpu.set_vr(i, bytes([0x5E, i]) * 8)
    for i in range(16):
        cpu.set_gpr(i, 0x5EC0 + i)
        cpu.set_ar(i, 0x5EC0 + i)
    cpu.reset_clear()
    assert [cpu.vr(i) for i in range(32)] == [bytes(16)] * 32
    assert [cpu.gpr(i) for i in range(16)] == [0] * 16
    assert [cpu.ar(i) for i in range(16)] == [0] * 16
    assert cpu.fpc() == 0

"""A clock comparator or CPU timer set during a free run (SCKC, SPT) interrupts when it is due: the run arms
its watchdog for it instead of running on to the caller's next deadline (none in a free run; a secure guest's
hypervisor only learns the new value at the next SIE exit)."""

import struct

import pytest

from emulator.hw.cpu import OPERATING

CODE = 0x10000
CR0_CPU_TIMER = 1 << 10
CR0_CKC = 1 << 11
ENABLED = 0x0100000180000000  # 64-bit, external interruptions on
WAIT_CODE = 0x600D


def test_a_cpu_timer_set_in_a_free_run_interrupts_the_spinning_program(cpu):
    insn, cr0 = "b2080300", CR0_CPU_TIMER  # SPT 0x300: 2 ms
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1B0, struct.pack(">QQ", 0x0002000180000000, WAIT_CODE))  # external new PSW: disabled wait
    mem.write(CODE, bytes.fromhex(insn + "a7f40000"))  # the timer, then a branch to itself
    cpu.set_cr(0, 0xE0 | cr0)
    cpu.set_cpu_timer(0x7FFFFFFFFFFFFFFF)
    cpu.ckc = 0xFFFFFFFFFFFFFFFF
    mem.write(0x300, struct.pack(">Q", 2000 * 4096))
    cpu.set_psw(ENABLED, CODE)
    cpu.state = OPERATING
    # the caller's deadline is only a safety net: without the rearm the run spins until it
    ex = cpu.run(timeout_us=20_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", WAIT_CODE)
    assert struct.unpack(">H", mem.read(0x86, 2))[0] == 0x1005


@pytest.mark.parametrize("how", ["STOSM", "LCTLG"])
def test_a_clock_comparator_set_before_the_run_interrupts_once_enabled_in_the_run(cpu, how):
    """The run starts with the interruption not enabled (the PSW's external mask off, or CR0's clock-
    comparator subclass off), so its caller arms no deadline for it; the program enables it (STOSM, LCTLG)
    and spins: the interruption comes when the comparator is due. (A Linux boot hung waiting like this: no
    tick once a run began with interruptions off, until something else ended the run.)"""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1B0, struct.pack(">QQ", 0x0002000180000000, WAIT_CODE))  # external new PSW: disabled wait
    if how == "STOSM":
        cpu.set_cr(0, 0xE0 | CR0_CKC)
        mem.write(CODE, bytes.fromhex("ad010300" "a7f40000"))  # STOSM 0x300,0x01 (external on); j .
        mask = ENABLED & ~(1 << 56)
    else:
        cpu.set_cr(0, 0xE0)
        mem.write(0x308, struct.pack(">Q", 0xE0 | CR0_CKC))
        mem.write(CODE, bytes.fromhex("eb000308002f" "a7f40000"))  # LCTLG 0,0,0x308; j .
        mask = ENABLED
    cpu.set_cpu_timer(0x7FFFFFFFFFFFFFFF)
    cpu.ckc = cpu.tod() + 2000 * 4096  # due in 2 ms
    cpu.set_psw(mask, CODE)
    cpu.state = OPERATING
    ex = cpu.run(timeout_us=20_000_000)  # only a safety net
    assert (ex.kind, ex.code, ex.reason) == ("disabled_wait", WAIT_CODE, "")
    assert struct.unpack(">H", mem.read(0x86, 2))[0] == 0x1004

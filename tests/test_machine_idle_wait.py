"""A machine whose CPUs all wait for a timer: a real-time TOD clock keeps the host's time (the wait takes
host time, as on a real machine, and the guest never reads a clock ahead of the host's); a deterministic one
skips the idle time at once. Before, the real-time clock was moved to the timer's deadline too: an idle
Linux at its shell prompt took ~1,200 clock-comparator interruptions a second of host time and its clock
ran four times too fast."""

import threading
import time

import pytest
from conftest import build_elf

from emulator.hw.tod import TOD_PER_US, TodClock, unix_ns_to_tod
from emulator.machine.machine import Machine

#: the guest waits for its clock comparator 200 ms ahead, then stores the TOD it woke at (STCK) at 0xf00
#: beside the one it started at (0xf08) and ends in the disabled wait 0xFFF
WAIT = r"""
    .globl _start
_start:
    larl %r1,extpsw
    mvc 0x1b0(16,%r0),0(%r1)    # external new PSW
    larl %r7,cr0
    stctg %c0,%c0,0(%r7)
    oi 6(%r7),0x08              # clock-comparator subclass (CR0 bit 52)
    lctlg %c0,%c0,0(%r7)
    stck 0xf08
    lg %r1,0xf08
    agfi %r1,200000*4096        # 200 ms
    stg %r1,0(%r7)
    sckc 0(%r7)
    larl %r1,waitpsw
    lpswe 0(%r1)
ext:
    stck 0xf00
    larl %r1,endpsw
    lpswe 0(%r1)
    .align 8
extpsw: .quad 0x0000000180000000, ext
waitpsw: .quad 0x0102000180000000, 0
endpsw: .quad 0x0002000180000000, 0xfff
cr0: .quad 0
"""


def _woke(tmp_path, deterministic: bool) -> tuple[int, int]:
    m = Machine(16 << 20, 1, deterministic=deterministic)
    try:
        m.load(str(build_elf(tmp_path, WAIT)))
        r = m.run(time_limit=30)
        assert r.reason == "all CPUs stopped" and r.clean, r.describe()
        raw = m.memory.read(0xF00, 16)
        return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")
    finally:
        m.close()


@pytest.mark.toolchain
def test_a_real_time_clock_keeps_the_hosts_time_while_every_cpu_waits(tmp_path):
    woke, started = _woke(tmp_path, deterministic=False)
    host = unix_ns_to_tod(time.time_ns())
    assert woke - started >= 200_000 * TOD_PER_US  # the clock comparator's interruption came at its time
    # ... and the guest's clock is not ahead of the host's (it was by the whole wait when idle time was
    # skipped); 20 ms of slack for the host's wall clock against the monotonic one the TOD follows
    assert woke <= host + 20_000 * TOD_PER_US, f"guest clock {(woke - host) // TOD_PER_US} us ahead"


@pytest.mark.toolchain
def test_a_deterministic_clock_skips_the_idle_time(tmp_path):
    woke, started = _woke(tmp_path, deterministic=True)
    assert 200_000 * TOD_PER_US <= woke - started < 201_000 * TOD_PER_US


def test_idle_until_waits_in_real_time_moves_a_deterministic_clock_and_wakes_on_the_event():
    det = TodClock(deterministic=True)
    t = det.now() + 10**9 * TOD_PER_US  # a thousand seconds ahead: moved at once
    det.idle_until(t, threading.Event())
    assert det.now() == t
    real = TodClock()
    far = real.now() + 10**9 * TOD_PER_US
    wake = threading.Event()
    wake.set()  # console input came: the wait ends at once, the clock is not moved
    real.idle_until(far, wake)
    assert real.now() < far - 10**8 * TOD_PER_US
    assert not wake.is_set()  # (consumed)
    before = real.now()
    real.idle_until(far, threading.Event())  # one bounded wait: the clock advanced with the host, no more
    assert before < real.now() < far - 10**8 * TOD_PER_US

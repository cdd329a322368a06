"""A stop from another thread (the watchdog's time slices, an interruption's ``kick``, the Ultravisor's
``hold``, Ctrl-C) ends a run at an instruction boundary: no instruction runs twice.

unicorn 2.1.4 checks for a stop after every load and store too, and an exit there puts the PSW back at the
accessing instruction, already performed (``emulator/hw/exit_checks.py``). A load through the register it
loads (a pointer chase, Linux's ``lg %r1,128(%r1)``) then went one link further at each such stop: a Linux
boot oopsed within a minute. Here a chase runs while another thread stops the CPU every 50 us, in free and
in counted runs; it must end on exactly the right link, with exact instruction counts.
"""

import struct
import threading
import time

import pytest

from emulator.hw import exit_checks
from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

BASE = 0x100000
LINKS = 256
STEPS = 3_000_000
WAIT_CODE = 0x600D
# LLILH 1,0x0010 (the first link) ; LGFI 2,STEPS ; loop: AGHI 3,1 ; LG 1,0(1) ; AGHI 4,1 ; BRCTG 2,loop ;
# LPSWE 0x200 (a disabled wait)
CODE = (
    bytes.fromhex("a51e0010")
    + bytes.fromhex("c021")
    + struct.pack(">I", STEPS)
    + bytes.fromhex("a73b0001")
    + bytes.fromhex("e31010000004")
    + bytes.fromhex("a74b0001")
    + bytes.fromhex("a727fff9")
    + bytes.fromhex("b2b20200")
)
LOOP_INSNS = 4


def link(i: int) -> int:
    """The address of the i-th link (a ring over a few pages, at varying offsets)."""
    i %= LINKS
    return BASE + (i % 8) * 4096 + 16 * i


@pytest.fixture
def chase_cpu():
    mem = PhysicalMemory(16 << 20)
    cpu = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0x0BAD))
    mem.write(0x200, struct.pack(">QQ", 0x0002000180000000, WAIT_CODE))
    for i in range(LINKS):
        mem.write(link(i), struct.pack(">Q", link(i + 1)))
    mem.write(0x10000, CODE)
    cpu.set_cr(0, 0xE0)
    cpu.set_psw(PSW_MASK_64, 0x10000)
    cpu.state = OPERATING
    yield cpu
    cpu.close()


class Stopper:
    """Another thread that stops the CPU's run every 50 us, as the watchdog does, counting its stops."""

    def __init__(self, cpu: Cpu) -> None:
        self.cpu = cpu
        self.stops = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._done.is_set():
            time.sleep(0.00005)
            self.cpu.stop_soon()
            self.stops += 1

    def __enter__(self) -> "Stopper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def test_the_exit_checks_between_accesses_are_found_in_this_unicorn():
    assert exit_checks.OFFSET is not None


def test_free_runs_stopped_from_another_thread_take_each_link_once(chase_cpu):
    cpu = chase_cpu
    with Stopper(cpu) as stopper:
        ex = cpu.run()  # (each stop ends an entry into unicorn; the run goes on to the wait)
    assert (ex.kind, ex.code) == ("disabled_wait", WAIT_CODE)
    assert stopper.stops > 10
    assert (cpu.gpr(3), cpu.gpr(4)) == (STEPS, STEPS)
    assert cpu.gpr(1) == link(STEPS)


def test_counted_runs_stopped_from_another_thread_count_and_chase_exactly(chase_cpu, monkeypatch):
    import emulator.hw.cpu as cpu_mod

    cpu = chase_cpu
    total = 0
    entries = []  # the CPU's entries into unicorn (a stop ends one; the run goes on with another)
    real_start = cpu_mod._uc_emu_start

    def start(*args):
        entries.append(args[4].value)
        return real_start(*args)

    monkeypatch.setattr(cpu_mod, "_uc_emu_start", start)
    with Stopper(cpu) as stopper:
        while True:
            before = cpu.insn_count
            ex = cpu.run(count=1_000_000)
            done = cpu.insn_count - before
            total += done
            if ex.kind == "disabled_wait":
                break
    assert ex.code == WAIT_CODE
    assert stopper.stops > 10 and len(entries) > 10  # the counted runs were cut, many times
    assert cpu.gpr(1) == link(STEPS)
    assert (cpu.gpr(3), cpu.gpr(4)) == (STEPS, STEPS)
    # LLILH, LGFI, the loop, and the LPSWE that loaded the wait PSW
    assert total == 2 + LOOP_INSNS * STEPS + 1

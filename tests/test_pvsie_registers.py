"""The secure-exit register save (``Cpu.psw_gprs_crs``, one context update) reads the same GPRs and CRs as
the CPU's per-register accessors."""

import random

from emulator.hw.cpu import Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock


def test_bulk_read_matches_register_reads():
    cpu = Cpu(PhysicalMemory(1 << 20), 0, TodClock(deterministic=True), facility_list(True), 0)
    rnd = random.Random(7)
    try:
        for _ in range(5):
            for i in range(16):
                cpu.set_gpr(i, rnd.getrandbits(64))
                cpu.write_cr(i, rnd.getrandbits(64))
            _, _, gprs, crs = cpu.psw_gprs_crs()
            cpu._stale()  # noqa: SLF001 - the reads below go to the engine, not to the caches it just filled
            assert gprs == [cpu.gpr(i) for i in range(16)]
            assert crs == [cpu.cr(i) for i in range(16)]
    finally:
        cpu.close()

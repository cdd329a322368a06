"""``Cpu.psw_gprs_crs``: one engine call gives what the per-register reads give, and the caches agree."""

from emulator.hw.cpu import Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tod import TodClock


def test_batch_read_equals_single_reads():
    cpu = Cpu(PhysicalMemory(1 << 20), 0, TodClock(deterministic=True), bytes(256), 0)
    try:
        for i in range(16):
            cpu.set_gpr(i, 0x5A00_0000_0000_0000 | i << 40 | 0x1357)
            cpu.write_cr(i, 0xC300_0000_0000_0000 | i << 40 | 0x2468)
        cpu.write_mask(0x0000_0001_8000_0000 | 2 << 44)
        cpu.set_pc(0x12346)
        mask, addr, gprs, crs = cpu.psw_gprs_crs()
        assert (mask, addr) == cpu.psw
        assert gprs == [cpu.gpr(i) for i in range(16)] == cpu.gprs()
        cpu._stale()  # forget the caches: the engine's values must be the same
        assert crs == [cpu.cr(i) for i in range(16)] and (mask, addr) == cpu.psw
        cpu.set_gpr(3, 7)
        assert cpu.psw_gprs_crs()[2][3] == 7
    finally:
        cpu.close()

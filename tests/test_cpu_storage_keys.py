"""Storage-key and frame-management instructions (``emulator.hw.keys``): SSKE, ISKE, RRBE and PFMF run
one at a time on a CPU, each checked against the Principles of Operation: which keys and bytes change, the
register and condition-code results, and the program exceptions with the old PSW where the architecture
puts it. Also: a key change is seen by the very next access (the TLB does not keep a stale decision)."""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, PSW_MASK_BA, PSW_MASK_PSTATE, Cpu
from emulator.hw.memory import KEY_C, KEY_R, PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

MEM = 4 << 20
CODE = 0x10000
PGM_NEW_ADDR = 0x0BAD0  # the program-new PSW: a disabled wait here
MB = 1 << 20


@pytest.fixture(scope="module")
def machine():
    mem = PhysicalMemory(MEM)
    cpu = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield cpu, mem
    cpu.close()


@pytest.fixture
def cpu(machine):
    cpu, mem = machine
    cpu.reset_cpu()
    cpu.set_prefix(0)
    for i in range(16):
        cpu.write_cr(i, 0)
    cpu.flush_tlb()
    mem.keys[:] = bytes(len(mem.keys))
    mem.fill(0, 0x2000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    return cpu


def rre(op: int, r1: int, r2: int, m3: int = 0) -> bytes:
    return struct.pack(">HBB", op, m3 << 4, r1 << 4 | r2)


def run(cpu: Cpu, code: bytes, regs: dict[int, int], mask: int = PSW_MASK_64) -> dict:
    """Run ``code`` at CODE up to its end (or a program interruption); the outcome."""
    mem = cpu.mem
    mem.write(CODE, code + bytes.fromhex("0700"))
    for r, v in regs.items():
        cpu.set_gpr(r, v)
    cpu.set_psw(mask, CODE)
    cpu.state = OPERATING
    n = 0
    while cpu.pc != PGM_NEW_ADDR and cpu.pc < CODE + len(code) and n < 50:
        cpu.run(count=1)
        n += 1
    if cpu.pc == PGM_NEW_ADDR:
        ilc, code_ = struct.unpack(">HH", mem.read(0x8C, 4))
        old_mask, old_addr = struct.unpack(">QQ", mem.read(0x150, 16))
        return {"pgm": code_, "ilc": ilc, "old_pc": old_addr, "teid": mem.read_u64(0xA8)}
    return {"pgm": None, "cc": (cpu.psw_mask >> 44) & 3, "pc": cpu.pc}


# -- SSKE ------------------------------------------------------------------------------------------------


def test_sske_sets_the_seven_bit_key_of_one_block_and_leaves_the_condition_code(cpu):
    out = run(cpu, rre(0xB22B, 1, 2), {1: 0xFFFFFFFFFFFF_3F, 2: 0x23456}, mask=PSW_MASK_64 | 2 << 44)
    assert out == {"pgm": None, "cc": 2, "pc": CODE + 4}
    assert cpu.mem.keys[0x23] == 0x3E  # bit 63 of R1 is ignored
    assert cpu.mem.keys[0x22] == cpu.mem.keys[0x24] == 0


def test_sske_designates_a_real_address_and_prefixing_applies(cpu):
    cpu.set_prefix(0x40000)
    run(cpu, rre(0xB22B, 1, 2), {1: 0x30, 2: 0x1000})
    assert cpu.mem.keys[0x41] == 0x30  # real 0x1000 is absolute 0x41000 under this prefix
    assert cpu.mem.keys[1] == 0


def test_sske_multiple_block_sets_every_block_up_to_the_next_megabyte_and_advances_r2(cpu):
    r2 = MB + 0xF0000 + 0x123  # the last 16 blocks of the second megabyte
    out = run(cpu, rre(0xB22B, 1, 2, m3=1), {1: 0x50, 2: r2})
    assert out["pgm"] is None
    keys = cpu.mem.keys
    assert keys[0x1F0:0x200] == bytes([0x50]) * 16
    assert keys[0x1EF] == 0 and keys[0x200] == 0
    assert cpu.gpr(2) == 2 * MB | 0x123  # the next 1 MiB boundary, bits 52-63 kept


def test_sske_multiple_block_designates_an_absolute_address(cpu):
    cpu.set_prefix(MB)
    cpu.mem.write(MB + 0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    out = run(cpu, rre(0xB22B, 1, 2, m3=1), {1: 0x20, 2: 0x0})
    assert out["pgm"] is None
    assert cpu.mem.keys[0:2] == bytes([0x20, 0x20])  # absolute 0: no prefixing
    assert cpu.mem.keys[0x100] & 0xF8 == 0  # the prefix area, which real 0 would designate


def test_sske_multiple_block_in_31_bit_mode_keeps_the_high_half_of_r2(cpu):
    out = run(cpu, rre(0xB22B, 1, 2, m3=1), {1: 0x10, 2: 0xABCD0000_000FE001}, mask=PSW_MASK_BA)
    assert out["pgm"] is None
    assert cpu.gpr(2) == 0xABCD0000_00100001
    assert cpu.mem.keys[0xFE:0x100] == bytes([0x10, 0x10])


def test_sske_multiple_block_beyond_storage_sets_the_blocks_before_and_stops_at_the_failing_one(cpu):
    # a machine of 4 MiB: the last megabyte ends at the end of storage; one beyond it fails at once
    out = run(cpu, rre(0xB22B, 1, 2, m3=1), {1: 0x60, 2: MEM + 0x5000})
    assert out["pgm"] == 0x05 and out["old_pc"] == CODE + 4  # addressing: suppressed, PSW after it
    assert cpu.gpr(2) == MEM + 0x5000  # nothing was done: R2 unchanged


def test_sske_single_block_beyond_storage_is_an_addressing_exception(cpu):
    out = run(cpu, rre(0xB22B, 1, 2), {1: 0x60, 2: MEM})
    assert out["pgm"] == 0x05
    assert not any(k & 0xF8 for k in cpu.mem.keys)  # (the code's frame has its reference bit)


def test_conditional_sske_leaves_a_matching_key_alone_and_reports_the_old_key(cpu):
    cpu.mem.keys[0x30] = 0x36  # ACC 3, R and C set
    # MR and MC: R and C are not compared; ACC/F match -> not set, CC 0
    out = run(cpu, rre(0xB22B, 1, 2, m3=0x6), {1: 0xAAAA_AAAA_AAAA_0030, 2: 0x30000})
    assert out["cc"] == 0
    assert cpu.mem.keys[0x30] == 0x36
    assert cpu.gpr(1) == 0xAAAA_AAAA_AAAA_3630  # bits 48-55: the key as it was


def test_conditional_sske_sets_a_key_whose_unmasked_bits_differ(cpu):
    cpu.mem.keys[0x30] = 0x36
    # only MC: the reference bit is compared (R1 has it zero) -> set, CC 1
    out = run(cpu, rre(0xB22B, 1, 2, m3=0x2), {1: 0x30, 2: 0x30000})
    assert out["cc"] == 1
    assert cpu.mem.keys[0x30] == 0x30
    assert (cpu.gpr(1) >> 8) & 0xFF == 0x36


def test_sske_in_problem_state_is_privileged(cpu):
    out = run(cpu, rre(0xB22B, 1, 2), {1: 0x30, 2: 0x30000}, mask=PSW_MASK_64 | PSW_MASK_PSTATE)
    assert out["pgm"] == 0x02
    assert cpu.mem.keys[0x30] == 0


def test_a_store_after_sske_cleared_the_change_bit_sets_it_again(cpu):
    """The TLB entry a first store made lets stores through; SSKE must take that decision away."""
    code = (
        bytes.fromhex("e3302000" "0024")  # stg %r3,0(%r2)
        + rre(0xB22B, 1, 2)  # sske %r1,%r2 (key 0, R and C zero)
        + bytes.fromhex("e3302000" "0024")  # stg %r3,0(%r2)
    )
    out = run(cpu, code, {1: 0, 2: 0x30000, 3: 7})
    assert out["pgm"] is None
    assert cpu.mem.keys[0x30] & KEY_C


# -- ISKE, RRBE ------------------------------------------------------------------------------------------


def test_iske_inserts_the_key_with_bit_63_zero_and_keeps_the_rest_of_r1(cpu):
    cpu.mem.keys[0x31] = 0x5E
    out = run(cpu, rre(0xB229, 1, 2), {1: 0x1234_5678_9ABC_DEFF, 2: 0x31FFF})
    assert out["pgm"] is None
    assert cpu.gpr(1) == 0x1234_5678_9ABC_DE5E


def test_iske_beyond_storage_is_an_addressing_exception(cpu):
    assert run(cpu, rre(0xB229, 1, 2), {1: 0, 2: MEM + 0x1000})["pgm"] == 0x05


def test_rrbe_reports_reference_and_change_bits_and_clears_the_reference_bit(cpu):
    for key, cc in ((0x00, 0), (KEY_C, 1), (KEY_R, 2), (KEY_R | KEY_C, 3)):
        cpu.mem.keys[0x32] = 0x30 | key
        out = run(cpu, rre(0xB22A, 0, 2), {2: 0x32000})
        assert out["cc"] == cc
        assert cpu.mem.keys[0x32] == 0x30 | (key & KEY_C)


def test_a_load_after_rrbe_sets_the_reference_bit_again(cpu):
    code = (
        bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2)
        + rre(0xB22A, 0, 2)  # rrbe 0,%r2
        + bytes.fromhex("e3402000" "0004")  # lg %r4,0(%r2)
    )
    out = run(cpu, code, {2: 0x33000})
    assert out["pgm"] is None
    assert cpu.mem.keys[0x33] & KEY_R


# -- PFMF ------------------------------------------------------------------------------------------------

SK, CF, FSC_1M, FSC_2G = 0x20000, 0x10000, 0x1000, 0x2000


def test_pfmf_sets_the_key_of_a_4k_frame_and_leaves_r2(cpu):
    out = run(cpu, rre(0xB9AF, 1, 2), {1: SK | 0x30, 2: 0x34567})
    assert out["pgm"] is None
    assert cpu.mem.keys[0x34] == 0x30
    assert cpu.gpr(2) == 0x34567


def test_pfmf_clears_a_4k_frame_at_a_real_address(cpu):
    cpu.set_prefix(0x40000)
    cpu.mem.fill(0x40000, 0x1000, 0x55)  # real 0 under this prefix
    cpu.mem.fill(0, 0x1000, 0x55)
    cpu.mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    cpu.mem.write(0x401D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    out = run(cpu, rre(0xB9AF, 1, 2), {1: CF, 2: 0x0})
    assert out["pgm"] is None
    assert cpu.mem.read(0x40000, 0x1000) == bytes(0x1000)
    assert cpu.mem.read(0x200, 16) == b"\x55" * 16  # absolute 0 is not real 0 here
    assert cpu.mem.keys[0x40] & (KEY_R | KEY_C) == KEY_R | KEY_C  # clearing stored into it


def test_pfmf_clears_a_1m_frame_from_the_designated_block_and_advances_r2(cpu):
    cpu.mem.fill(MB, MB, 0x77)
    out = run(cpu, rre(0xB9AF, 1, 2), {1: CF | FSC_1M, 2: MB + 0x80000 + 0x9AB})
    assert out["pgm"] is None
    assert cpu.mem.read(MB, 0x80000) == b"\x77" * 0x80000  # the blocks before the designated one stay
    assert cpu.mem.read(MB + 0x80000, 0x80000) == bytes(0x80000)
    assert cpu.gpr(2) == 2 * MB  # the next frame


def test_pfmf_sets_the_keys_of_a_1m_frame(cpu):
    out = run(cpu, rre(0xB9AF, 1, 2), {1: SK | FSC_1M | 0x18, 2: 2 * MB})
    assert out["pgm"] is None
    assert cpu.mem.keys[0x200:0x300] == bytes([0x18]) * 256
    assert cpu.mem.keys[0x1FF] == 0 and cpu.mem.keys[0x300] == 0


def test_pfmf_2g_frame_stops_at_the_end_of_storage_with_r2_at_the_failing_block(cpu):
    cpu.mem.fill(3 * MB, MB, 0x11)
    out = run(cpu, rre(0xB9AF, 1, 2), {1: SK | CF | FSC_2G | 0x40, 2: 3 * MB})
    assert out["pgm"] == 0x05
    assert cpu.mem.read(3 * MB, MB) == bytes(MB)
    assert cpu.mem.keys[0x300:0x400] == bytes([0x40]) * 256
    assert cpu.gpr(2) == MEM  # resumes at the first block beyond storage


def test_pfmf_conditional_key_setting_keeps_matching_keys(cpu):
    cpu.mem.keys[0x35] = 0x36
    cpu.mem.keys[0x36] = 0x56
    run(cpu, rre(0xB9AF, 1, 2), {1: SK | 0x600 | 0x30, 2: 0x35000})
    run(cpu, rre(0xB9AF, 1, 2), {1: SK | 0x600 | 0x30, 2: 0x36000})
    assert cpu.mem.keys[0x35] == 0x36  # ACC/F matched: unchanged
    assert cpu.mem.keys[0x36] == 0x30


@pytest.mark.parametrize(
    ("r1", "mask", "why"),
    [
        (0x80000000, PSW_MASK_64, "reserved bit 32"),
        (0x100, PSW_MASK_64, "reserved bit 55"),
        (0x1, PSW_MASK_64, "reserved bit 63"),
        (0x3000, PSW_MASK_64, "frame-size code 3"),
        (FSC_2G, 0, "a 2G frame in the 24-bit mode"),
    ],
)
def test_pfmf_specification_exceptions(cpu, r1, mask, why):
    out = run(cpu, rre(0xB9AF, 1, 2), {1: r1 | SK | 0x30, 2: 0x37000}, mask=mask)
    assert out["pgm"] == 0x06, why
    assert cpu.mem.keys[0x37] == 0


def test_pfmf_clearing_a_low_address_block_under_low_address_protection(cpu):
    cpu.write_cr(0, 1 << 28)
    cpu.mem.fill(0x1000, 0x1000, 0x22)
    out = run(cpu, rre(0xB9AF, 1, 2), {1: CF, 2: 0x1000})
    assert out["pgm"] == 0x04
    assert cpu.mem.read(0x1000, 0x1000) == b"\x22" * 0x1000


def test_pfmf_in_problem_state_is_privileged(cpu):
    out = run(cpu, rre(0xB9AF, 1, 2), {1: SK, 2: 0x38000}, mask=PSW_MASK_64 | PSW_MASK_PSTATE)
    assert out["pgm"] == 0x02

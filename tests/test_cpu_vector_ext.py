"""Vector-enhancements facility 1: the instructions unicorn traps, emulated by ``emulator.hw.vector_ext``.

Each instruction runs on a real ``Cpu`` (unicorn raises its program interruption, the CPU emulates it)
with operands whose architectural results are worked out by hand here; the IEEE exceptions, the
vector-processing exception with its VXC, the data exception with vector instructions disabled and the
specification exceptions are checked the same way. The encodings are GNU as 2.40's (``.machine z14``).
"""

import struct
from fractions import Fraction

import pytest

from emulator.hw import bfp, vector_ext
from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list, has_facility, secure_guest_facilities
from emulator.hw.tod import TodClock

CODE = 0x10000
DATA = 0x20000
PGM_NEW_ADDR = 0x0BAD0
CR0_VX_AFP = 0xE0 | 0x60000
FPC_MASK_DIVIDE = 0x40 << 24
FPC_MASK_INEXACT = 0x08 << 24


@pytest.fixture(scope="module")
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def f32(*xs: float) -> bytes:
    return b"".join(struct.pack(">f", x) for x in xs)


def f64(*xs: float) -> bytes:
    return b"".join(struct.pack(">d", x) for x in xs)


def words(*ws: int) -> bytes:
    return b"".join(w.to_bytes(4, "big") for w in ws)


def q(v: int) -> bytes:
    return v.to_bytes(16, "big")


def run(cpu: Cpu, insn: str, regs: dict[int, bytes], fpc: int = 0, cr0: int = CR0_VX_AFP, cc: int = 0):
    """Run one instruction (hex) with these vector registers; the state after it."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x200)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    raw = bytes.fromhex(insn)
    mem.write(CODE, raw + bytes.fromhex("0700"))
    cpu.set_cr(0, cr0)
    for i in range(32):
        cpu.set_vr(i, bytes([0xA5]) * 16)
    for i, v in regs.items():
        cpu.set_vr(i, v)
    cpu.set_fpc(fpc)
    cpu.set_psw(PSW_MASK_64 | cc << 44, CODE)
    cpu.state = OPERATING
    cpu.run(count=1)
    mask, addr = cpu.psw
    out = {"v": {i: cpu.vr(i) for i in range(32)}, "fpc": cpu.fpc(), "dxc": mem.read(0x90, 4)}
    if addr == PGM_NEW_ADDR:
        old_mask, old_addr = struct.unpack(">QQ", mem.read(0x150, 16))
        out.update(pgm=struct.unpack(">HH", mem.read(0x8C, 4)), pc=old_addr, cc=old_mask >> 44 & 3)
    else:
        out.update(pgm=None, pc=addr, cc=mask >> 44 & 3)
    return out


def ok(out: dict) -> dict:
    """The instruction completed (every one here is six bytes long)."""
    assert out["pgm"] is None, out["pgm"]
    assert out["pc"] == CODE + 6
    return out


# -- integer instructions ------------------------------------------------------------------------------------


def test_vbperm_gathers_the_selected_bits_into_bits_48_to_63(cpu):
    src = q(1 << 127 | 1 << 120 | 1)  # bits 0, 7 and 127 set
    idx = bytes([0, 1, 7, 127, 128, 255, 0, 0, 8, 9, 10, 11, 12, 13, 14, 127])
    out = ok(run(cpu, "e71230000085", {2: src, 3: idx}))
    # selected bits: 1, 0, 1, 1, 0 (>= 128), 0, 1, 1, 0 ... 0, 1
    assert out["v"][1] == (0b1011001100000001).to_bytes(8, "big") + bytes(8)


def test_vmsl_sums_the_doubleword_products_and_the_addend_with_the_shift_controls(cpu):
    a, b = q(0xFFFFFFFFFFFFFFFF << 64 | 3), q(0xFFFFFFFFFFFFFFFF << 64 | 5)
    c = q(7)
    out = ok(run(cpu, "e712330040b8", {2: a, 3: b, 4: c}))
    assert int.from_bytes(out["v"][1], "big") == (0xFFFFFFFFFFFFFFFF**2 + 15 + 7) % (1 << 128)
    out = ok(run(cpu, "e71233c040b8", {2: a, 3: b, 4: c}))  # both products doubled
    assert int.from_bytes(out["v"][1], "big") == (2 * 0xFFFFFFFFFFFFFFFF**2 + 30 + 7) % (1 << 128)


def test_vmsl_with_another_element_size_is_a_specification_exception(cpu):
    assert run(cpu, "e712320040b8", {})["pgm"] == (6, 6)


@pytest.mark.parametrize(
    ("insn", "expect"),
    [
        ("e71200001050", bytes.fromhex("0010 0008 0001 0000 0002 0004 0004 0005")),
        ("e71200002050", words(24, 1, 6, 9)),
        ("e71200003050", (25).to_bytes(8, "big") + (15).to_bytes(8, "big")),
    ],
)
def test_vpopct_counts_ones_per_halfword_word_and_doubleword(cpu, insn, expect):
    src = bytes.fromhex("ffff 00ff 8000 0000 0101 0701 0f00 1f00")
    assert ok(run(cpu, insn, {2: src}))["v"][1] == expect


def test_vllezlf_loads_a_word_into_element_0_and_zeroes_the_rest(cpu):
    cpu.mem.write(0x300, bytes.fromhex("deadbeef"))
    out = ok(run(cpu, "e71003006004", {}))
    assert out["v"][1] == bytes.fromhex("deadbeef") + bytes(12)


def test_vnn_vnx_voc_run_natively(cpu):
    a, b = q(0xF0F0 << 112 | 0xFF), q(0xFF00 << 112 | 0x0F)
    before = cpu.traps
    assert ok(run(cpu, "e7123000006e", {2: a, 3: b}))["v"][1] == q(((1 << 128) - 1) ^ (0xF000 << 112 | 0x0F))
    assert cpu.traps == before


# -- binary floating point: short ----------------------------------------------------------------------------


def test_vfasb_adds_four_short_elements_and_the_high_registers(cpu):
    out = ok(run(cpu, "e71230002ee3", {18: f32(1.5, -2, 1e30, 0.1), 19: f32(2.25, 2, 1e30, 0.2)}))
    tenth, fifth = struct.unpack(">ff", f32(0.1, 0.2))
    assert out["v"][17] == f32(3.75, 0, 2e30, tenth + fifth)
    assert out["fpc"] >> 16 & 0xFF == bfp.INEXACT  # 2e30 and 0.1 + 0.2 are inexact


def test_vfssb_vfmsb_vfdsb_vfsqsb(cpu):
    a, b = f32(1, 6, -3, 0.5), f32(4, 3, 0.25, 2)
    assert ok(run(cpu, "e712300020e2", {2: a, 3: b}))["v"][1] == f32(-3, 3, -3.25, -1.5)
    assert ok(run(cpu, "e712300020e7", {2: a, 3: b}))["v"][1] == f32(4, 18, -0.75, 1)
    assert ok(run(cpu, "e712300020e5", {2: a, 3: b}))["v"][1] == f32(0.25, 2, -12, 0.25)
    out = ok(run(cpu, "e712000020ce", {2: f32(4, 2, 0, -0.0)}))
    assert out["v"][1] == f32(2, struct.unpack(">f", f32(2**0.5))[0], 0, -0.0)


def test_vfnmssb_negates_the_product_minus_the_addend(cpu):
    out = ok(run(cpu, "e7123200409e", {2: f32(2, 1, 0, 3), 3: f32(3, 1, 5, 3), 4: f32(1, 1, 0, 9)}))
    assert out["v"][1] == f32(-5, -0.0, -0.0, -0.0)


def test_vfmaxsb_java_mode_and_vfminsb_magnitude_ieee_mode(cpu):
    out = ok(run(cpu, "e712301020ef", {2: f32(1, -0.0) + words(0x7FC00001) + f32(3), 3: f32(2, 0.0, 5, -7)}))
    assert out["v"][1] == f32(2, 0.0) + words(0x7FC00001) + f32(3)
    out = ok(run(cpu, "e712308020ee", {2: f32(-1, 4, -2, 3), 3: f32(2, -5, 2, -3)}))
    assert out["v"][1] == f32(-1, 4, -2, -3)  # smallest magnitude, the operand itself; a tie: the negative


def test_vfmaxdb_magnitude_fmax_mode_returns_the_absolute_value(cpu):
    out = ok(run(cpu, "e71230c030ef", {2: f64(-9, 1), 3: f64(2, -3)}))
    assert out["v"][1] == f64(9, 3)


def test_vfcesbs_sets_all_ones_elements_and_the_condition_code(cpu):
    out = ok(run(cpu, "e712301020e8", {2: f32(1, 2, 3, 4), 3: f32(1, 0, 3, 0)}))
    assert out["v"][1] == words(0xFFFFFFFF, 0, 0xFFFFFFFF, 0)
    assert out["cc"] == 1
    out = ok(run(cpu, "e712301020eb", {2: f32(1, 2, 3, 4), 3: f32(5, 5, 5, 5)}))
    assert out["v"][1] == bytes(16) and out["cc"] == 3


def test_vfkhedbs_signals_on_a_quiet_nan(cpu):
    nan = f64(float("nan"))
    out = ok(run(cpu, "e712301430ea", {2: nan + f64(1), 3: f64(1, 1)}))
    assert out["v"][1] == bytes(8) + bytes([0xFF]) * 8 and out["cc"] == 1
    assert out["fpc"] >> 16 & 0xFF == bfp.INVALID


def test_vfisb_rounds_each_element_in_the_mode_m5_names(cpu):
    src = f32(2.5, -2.5, 1.25, -0.75)
    out = ok(run(cpu, "e712001020c7", {2: src}))  # ties away from zero
    assert out["v"][1] == f32(3, -3, 1, -1) and out["fpc"] >> 16 & 0xFF == bfp.INEXACT
    out = ok(run(cpu, "e712005420c7", {2: src}))  # toward zero, inexact suppressed
    assert out["v"][1] == f32(2, -2, 1, -0.0) and out["fpc"] == 0


def test_vfpso_and_vftci(cpu):
    src = f32(1, -2, 0.0, -0.0)
    assert ok(run(cpu, "e712002020cc", {2: src}))["v"][1] == f32(1, 2, 0, 0)
    assert ok(run(cpu, "e712001020cc", {2: src}))["v"][1] == f32(-1, -2, -0.0, -0.0)
    out = ok(run(cpu, "e7128000204a", {2: src}))  # +zero only
    assert out["v"][1] == words(0, 0, 0xFFFFFFFF, 0) and out["cc"] == 1


# -- extended ------------------------------------------------------------------------------------------------


def x128(value: Fraction) -> bytes:
    bits, _ = bfp.EXTENDED.round(int(value < 0), abs(value), bfp.RNE)
    return q(bits)


def test_wfdxb_divides_binary128_correctly_rounded(cpu):
    out = ok(run(cpu, "e712300840e5", {2: x128(Fraction(1)), 3: x128(Fraction(3))}))
    bits = int.from_bytes(out["v"][1], "big")
    # 1/3 in binary128: exponent -2, fraction 0x5555...5 (112 bits, rounded down)
    assert bits == (0x3FFD << 112) | int("01" * 56, 2)
    assert out["fpc"] >> 16 & 0xFF == bfp.INEXACT


def test_wfmaxb_is_fused_and_wfmsxb_subtracts(cpu):
    one_ulp = Fraction(1, 2**112)
    a = x128(1 + one_ulp)
    out = ok(run(cpu, "e7123408408f", {2: a, 3: a, 4: x128(-(1 + 2 * one_ulp))}))
    assert out["v"][1] == x128(one_ulp * one_ulp)  # (1+u)^2 - (1+2u) = u^2, exact only when fused
    out = ok(run(cpu, "e7123408408e", {2: x128(Fraction(3)), 3: x128(Fraction(5)), 4: x128(Fraction(1))}))
    assert out["v"][1] == x128(Fraction(14))


def test_wflld_and_wflrx_convert_between_long_and_extended(cpu):
    out = ok(run(cpu, "e712000830c4", {2: f64(0.1, 7)}))
    assert out["v"][1] == x128(Fraction(0.1))
    third = x128(Fraction(1, 3))
    out = ok(run(cpu, "e712000840c5", {1: f64(5, 6), 2: third}))
    assert out["v"][1] == f64(1 / 3, 6)
    out = ok(run(cpu, "e712006c40c5", {1: f64(5, 6), 2: third}))  # toward +inf, XxC
    assert out["v"][1][:8] == struct.pack(">Q", struct.unpack(">Q", f64(1 / 3))[0] + 1)
    assert out["fpc"] == 0


def test_wfcxb_compares_binary128(cpu):
    assert ok(run(cpu, "e712000040cb", {1: x128(Fraction(1)), 2: x128(Fraction(2))}))["cc"] == 1
    assert ok(run(cpu, "e712000040cb", {1: x128(Fraction(2)), 2: x128(Fraction(2))}))["cc"] == 0


# -- exceptions ----------------------------------------------------------------------------------------------


def test_an_enabled_ieee_exception_is_a_vector_processing_exception_with_the_element_index(cpu):
    regs = {1: q(0x1234), 2: f32(1, 1, 1, 1), 3: f32(1, 2, 0, 0)}
    out = run(cpu, "e712300020e5", regs, fpc=FPC_MASK_DIVIDE)
    assert out["pgm"] == (6, 0x1B)
    assert out["pc"] == CODE  # PGM 0x1B leaves the old PSW at the instruction (as QEMU does)
    assert out["v"][1] == q(0x1234)  # suppressed
    vxc = 2 << 4 | 2  # element 2, division by zero
    assert out["dxc"] == vxc.to_bytes(4, "big")
    assert out["fpc"] == FPC_MASK_DIVIDE | vxc << 8  # no flags


def test_an_enabled_inexact_reports_the_first_inexact_element(cpu):
    out = run(cpu, "e712300020e5", {2: f32(1, 1, 1, 1), 3: f32(1, 2, 3, 3)}, fpc=FPC_MASK_INEXACT)
    assert out["pgm"] == (6, 0x1B) and out["dxc"] == (2 << 4 | 5).to_bytes(4, "big")


def test_disabled_exceptions_set_the_flags_of_all_elements(cpu):
    out = ok(run(cpu, "e712300020e5", {2: f32(1, 0, 1, 1e38), 3: f32(0, 0, 3, 1e-38)}))
    inf = float("inf")
    assert out["v"][1][:8] == f32(inf) + words(0x7FC00000) and out["v"][1][12:] == f32(inf)
    assert out["fpc"] >> 16 == bfp.INVALID | bfp.DIVIDE | bfp.OVERFLOW | bfp.INEXACT


def test_vector_instructions_disabled_is_a_data_exception_fe(cpu):
    out = run(cpu, "e71230000085", {}, cr0=0xE0 | 0x40000)
    assert out["pgm"] == (6, 0x07) and out["dxc"] == bytes.fromhex("000000fe")
    assert out["fpc"] >> 8 & 0xFF == 0xFE


@pytest.mark.parametrize(
    "insn",
    ["e712300050e3", "e712300120e3", "e712307020ef", "e712300320e8", "e712000030cc", "e712000020c4"],
    ids=["vfa-fpf5", "vfa-m5", "vfmax-m6", "vfce-m5", "vfpso-m5-3", "vfll-short-is-z13-but-m4"],
)
def test_undefined_fields_are_specification_exceptions(cpu, insn):
    raw = bytearray(bytes.fromhex(insn))
    if insn == "e712000030cc":
        raw[3] = 0x30  # VFPSO long with M5 3
    if insn == "e712000020c4":
        raw[4] = 0x50  # VFLL M3 5
    out = run(cpu, raw.hex(), {})
    assert out["pgm"] == (6, 0x06)


def test_every_vxe1_opcode_is_recognised():
    for op in (0xE3, 0xE2, 0xE7, 0xE5, 0xEF, 0xEE, 0x8F, 0x8E, 0x9F, 0x9E, 0xE8, 0xEB, 0xEA, 0xCB, 0xCA, 0xCE,
               0xC7, 0xC4, 0xC5, 0xCC, 0x4A, 0x85, 0xB8, 0x50):  # fmt: skip
        assert vector_ext.handles(bytes([0xE7, 0x12, 0x30, 0, 0x20, op]))
    assert vector_ext.handles(bytes.fromhex("e71001006004"))  # VLLEZ left-aligned word
    assert not vector_ext.handles(bytes.fromhex("e71001003004"))  # VLLEZ doubleword: z13, unicorn's
    assert not vector_ext.handles(bytes.fromhex("e7123000006e"))  # VNN: unicorn's


def test_facility_135_is_offered_with_the_emulation():
    assert vector_ext.OFFERED
    assert has_facility(facility_list(False), 135)
    assert has_facility(secure_guest_facilities(facility_list(True)), 135)


@pytest.mark.parametrize(
    ("execute", "length"),
    [("44000300", 4), ("c60000000180", 6)],  # EX 0(0x300); EXRL to CODE + 0x300
    ids=["ex", "exrl"],
)
def test_a_facility_135_instruction_as_the_target_of_execute(cpu, execute, length):
    src, idx = q(1 << 127), bytes([0, 1] + [200] * 14)
    for target in (0x300, CODE + 0x300):
        cpu.mem.write(target, bytes.fromhex("e71230000085"))  # VBPERM
    cpu.mem.write(CODE + length, bytes.fromhex("0700"))
    out = run(cpu, execute, {2: src, 3: idx})
    assert out["pgm"] is None and out["pc"] == CODE + length  # the PSW after the EXECUTE
    assert out["v"][1] == (0x8000).to_bytes(8, "big") + bytes(8)
    cpu.mem.write(0x300, bytes.fromhex("e712307020ef"))  # VFMAX with M6 7: specification, ILC of the EX
    if length == 4:
        assert run(cpu, execute, {})["pgm"] == (4, 0x06)

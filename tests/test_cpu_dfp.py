"""The decimal-floating-point facility (42): ``emulator.hw.dfp`` and its format and arithmetic modules.

The encodings are checked against GCC 12's (s390x-linux-gnu-gcc, whose libdecnumber lays out _Decimal32/64/
128 constants in DPD; ``1`` as a long DFP is 0x2238000000000001: sign 0, combination 01000 for the biased
exponent 398's two leading bits 01 and leftmost digit 0, exponent continuation 0x8E, declets 000...001).
Each instruction runs on a real ``Cpu``: unicorn raises its operation exception and the CPU emulates it;
results, condition codes, FPC flags and the data exceptions with their DXCs are worked out by hand from the
Principles of Operation, chapter 20. The instruction encodings are GNU as 2.40's.
"""

import struct
from decimal import ROUND_05UP, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation

import pytest
from conftest import build_elf
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.hw import dfp
from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.dfp_arith import INEXACT, INVALID, compute
from emulator.hw.dfp_format import DRM_ROUNDING, EXTENDED, LONG, SHORT, declet_decode, declet_encode
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import MachineInfo, facility_list, has_facility, secure_guest_facilities
from emulator.hw.tod import TodClock
from emulator.machine.machine import Machine

CODE = 0x10000
PGM_NEW_ADDR = 0x0BAD0
CR0_AFP = 0xE0 | 0x40000
FPC_MASK_INVALID = 0x80 << 24
FPC_MASK_DIVIDE = 0x40 << 24
FPC_MASK_OVERFLOW = 0x20 << 24
FPC_MASK_INEXACT = 0x08 << 24
FLAG_INVALID, FLAG_DIVIDE, FLAG_INEXACT = 0x80 << 16, 0x40 << 16, 0x08 << 16

#: (format, value, encoding): GCC's constants
VECTORS = [
    (SHORT, "1", 0x22500001),
    (SHORT, "9999999", 0x6E53FCFF),
    (SHORT, "-3.25E-20", 0xA0F001A5),
    (LONG, "1", 0x2238000000000001),
    (LONG, "0", 0x2238000000000000),
    (LONG, "-1.5", 0xA234000000000015),
    (LONG, "9999999999999999", 0x6E38FF3FCFF3FCFF),
    (LONG, "1E+369", 0x43FC000000000001),
    (LONG, "1E-398", 0x0000000000000001),
    (LONG, "123456789012345.6", 0x263534B9C1E28E56),
    (LONG, "8.88", 0x223000000000006E),
    (LONG, "9.99E-10", 0x22080000000000FF),
    (EXTENDED, "1", 0x22080000000000000000000000000001),
    (EXTENDED, "12345678901234567890123456789.01234", 0x2606D34B9C1E28E56F3C127177823534),
    (EXTENDED, "-0.000", 0xA2074000000000000000000000000000),
]


def L(s: str) -> int:  # noqa: N802 - a long DFP constant
    return LONG.encode(Decimal(s))


def X(s: str) -> int:  # noqa: N802 - an extended DFP constant
    return EXTENDED.encode(Decimal(s))


# -- the format ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "text", "bits"), VECTORS)
def test_encodings_match_gccs_dpd_constants(fmt, text, bits):
    assert fmt.encode(Decimal(text)) == bits
    assert str(fmt.decode(bits)) == text


def test_every_three_digits_round_trip_through_a_declet_and_noncanonical_declets_decode():
    assert sorted(declet_decode(declet_encode(n)) for n in range(1000)) == list(range(1000))
    assert {declet_encode(n) for n in range(1000)}.isdisjoint({0x16E, 0x26E, 0x36E})
    # the 24 noncanonical declets (x x 1 1 x 1 1 1 1 x with pq != 00) decode like their canonical twin
    assert declet_decode(0x3FF) == declet_decode(0x0FF) == 999
    assert declet_decode(0x16E) == declet_decode(0x06E) == 888


def test_special_values_and_their_payloads():
    assert LONG.encode(Decimal("Infinity")) == 0x7800000000000000
    assert LONG.encode(Decimal("-Infinity")) == 0xF800000000000000
    assert LONG.encode(Decimal("NaN")) == 0x7C00000000000000
    assert LONG.encode(Decimal("sNaN")) == 0x7E00000000000000
    assert LONG.decode(0x7C000000000000A3).as_tuple()[1] == (1, 2, 3)
    assert LONG.decode(0xFE00000000000001).is_snan()


@given(
    st.sampled_from([SHORT, LONG, EXTENDED]),
    st.integers(0, 1),
    st.integers(0, 10**34 - 1),
    st.integers(0, 12287),
)
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(fmt, sign, coef, bexp):
    coef %= 10**fmt.digits
    bexp %= fmt.max_bexp + 1
    d = Decimal((sign, tuple(int(c) for c in str(coef)), bexp - fmt.bias))
    bits = fmt.encode(d)
    back = fmt.decode(bits)
    assert back.as_tuple() == d.as_tuple()
    assert fmt.encode(back) == bits


finite_long = st.builds(
    lambda s, c, e: Decimal((s, tuple(int(x) for x in str(c)), e)),
    st.integers(0, 1),
    st.integers(0, 10**16 - 1),
    st.integers(-398, 369),
)


@given(finite_long, finite_long, st.sampled_from(["add", "subtract", "multiply", "divide"]))
@settings(max_examples=300, deadline=None)
def test_the_arithmetic_is_decimal64s(a, b, op):
    """Results without an enabled trap are IEEE 754 decimal64's (decimal's reference contexts)."""
    out = compute(LONG, ROUND_HALF_EVEN, lambda ctx: getattr(ctx, op)(a, b), 0)
    ref = Context(prec=16, Emax=384, Emin=-383, clamp=1, rounding=ROUND_HALF_EVEN, traps=[])
    want = getattr(ref, op)(a, b)
    assert str(out.value) == str(want)
    assert LONG.decode(LONG.encode(out.value)).as_tuple() == want.as_tuple()
    assert bool(out.exc & INEXACT) == bool(ref.flags[Inexact])
    assert bool(out.exc & INVALID) == bool(ref.flags[InvalidOperation])


def test_prepare_for_shorter_precision_increments_a_last_digit_of_0_or_5():
    a, b = Decimal("1000000000000000"), Decimal("0.1")
    out = compute(LONG, ROUND_05UP, lambda ctx: ctx.add(a, b), 0)
    assert out.value == Decimal("1000000000000001")  # truncated ...0, made ...1
    out = compute(LONG, ROUND_05UP, lambda ctx: ctx.add(Decimal("1000000000000003"), b), 0)
    assert out.value == Decimal("1000000000000003")


# -- instructions on a CPU -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def run(cpu, insn: str, fprs=None, gprs=None, fpc: int = 0, cr0: int = CR0_AFP, cc: int = 0):
    """Run one instruction (hex) with these FPRs and GPRs; the state after it."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x200)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    raw = bytes.fromhex(insn)
    mem.write(CODE, raw + bytes.fromhex("0700"))
    cpu.set_cr(0, cr0)
    for i in range(16):
        cpu.set_fpr(i, 0xA5A5A5A5A5A5A5A5)
        cpu.set_gpr(i, 0)
    for i, v in (fprs or {}).items():
        cpu.set_fpr(i, v)
    for i, v in (gprs or {}).items():
        cpu.set_gpr(i, v)
    cpu.set_fpc(fpc)
    cpu.set_psw(PSW_MASK_64 | cc << 44, CODE)
    cpu.state = OPERATING
    cpu.run(count=1)
    mask, addr = cpu.psw
    out = {
        "f": {i: cpu.fpr(i) for i in range(16)},
        "g": {i: cpu.gpr(i) for i in range(16)},
        "fpc": cpu.fpc(),
        "dxc": int.from_bytes(mem.read(0x90, 4), "big"),
    }
    if addr == PGM_NEW_ADDR:
        old_mask, old_addr = struct.unpack(">QQ", mem.read(0x150, 16))
        out.update(pgm=struct.unpack(">HH", mem.read(0x8C, 4)), pc=old_addr, cc=old_mask >> 44 & 3)
    else:
        out.update(pgm=None, pc=addr, cc=mask >> 44 & 3)
    return out


def ok(out, length: int = 4):
    assert out["pgm"] is None, out["pgm"]
    assert out["pc"] == CODE + length
    return out


def ext(out, r: int) -> int:
    return out["f"][r] << 64 | out["f"][r + 2]


def test_the_facility_list_offers_dfp_to_every_kind_of_program():
    assert dfp.OFFERED
    for fl in (facility_list(False), facility_list(True), secure_guest_facilities(facility_list(False))):
        assert has_facility(fl, 42) and has_facility(fl, 37)
        assert has_facility(fl, 48) and has_facility(fl, 80) and not has_facility(fl, 43)


def test_a_machine_that_says_it_is_qemu_tcg_has_no_dfp_as_tcg(tmp_path):
    """``zuv run``'s default machine gives QEMU TCG's identity, and kvm-unit-tests' cpumodel then expects no
    DFP ('TCG does not have DFP': offered, its check was an unexpected pass, a FAIL); its DFP instructions
    are operation exceptions, as on a CPU without the facility. An IBM identity (an LPAR) has it."""
    qemu = Machine(16 << 20, 1)
    ibm = Machine(16 << 20, 1, info=MachineInfo())
    try:
        assert not has_facility(qemu.facilities, 42) and has_facility(qemu.facilities, 37)
        assert not has_facility(qemu.facilities, 48) and not has_facility(qemu.facilities, 80)
        assert has_facility(ibm.facilities, 42)
        for m in (qemu, ibm):
            c = m.cpus[0]
            c.set_cr(0, c.cr(0) | 1 << 18)  # AFP registers
            m.memory.write(0x1D0, (0x0002000180000000).to_bytes(8, "big") + (0xBAD).to_bytes(8, "big"))
            # adtr %f1,%f2,%f3; lpswe 0xf00
            m.memory.write(0x10000, bytes.fromhex(ADTR_1_2_3) + bytes.fromhex("b2b20f00"))
            m.memory.write(0xF00, (0x0002000180000000).to_bytes(8, "big") + (0x600D).to_bytes(8, "big"))
            c.set_psw(PSW_MASK_64, 0x10000)
            c.state = OPERATING
            ex = c.run(timeout_us=5_000_000)
            assert ex.kind == "disabled_wait"
            code = int.from_bytes(m.memory.read(0x8E, 2), "big")
            want = (0xBAD, 0x01) if m is qemu else (0x600D, code)
            assert (ex.code, code) == want, (m.info.manufacturer, ex)
    finally:
        qemu.close()
        ibm.close()


ADTR_1_2_3 = "b3d23012"  # adtr %f1,%f2,%f3
AXTR_1_4_5 = "b3da5014"  # axtr %f1,%f4,%f5 (pairs 0/2 as f1? no: 1/3, 4/6, 5/7)


def test_adtr_adds_with_the_preferred_quantum_and_sets_the_cc(cpu):
    out = ok(run(cpu, ADTR_1_2_3, {2: L("1.50"), 3: L("2.5")}))
    assert out["f"][1] == L("4.00") and out["cc"] == 2 and out["fpc"] == 0
    out = ok(run(cpu, ADTR_1_2_3, {2: L("-7"), 3: L("2.5")}))
    assert LONG.decode(out["f"][1]) == Decimal("-4.5") and out["cc"] == 1
    out = ok(run(cpu, "b3d33012", {2: L("2.50"), 3: L("2.5")}))  # sdtr: 2.50 - 2.5 = 0.00
    assert str(LONG.decode(out["f"][1])) == "0.00" and out["cc"] == 0


def test_an_inexact_sum_rounds_with_the_fpcs_dfp_rounding_mode_and_sets_the_inexact_flag(cpu):
    big = L("9999999999999999")
    out = ok(run(cpu, ADTR_1_2_3, {2: big, 3: L("0.5")}))
    assert LONG.decode(out["f"][1]) == Decimal("1.000000000000000E+16") and out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, ADTR_1_2_3, {2: big, 3: L("0.5")}, fpc=1 << 4))  # DRM 1: toward zero
    assert out["f"][1] == big
    out = ok(run(cpu, "b3d23112", {2: big, 3: L("0.5")}))  # adtra ..,1: M4 1 ties away from 0
    assert LONG.decode(out["f"][1]) == Decimal("1.000000000000000E+16")
    out = ok(run(cpu, "b3d23912", {2: big, 3: L("0.5")}))  # adtra ..,9: M4 8+1 toward zero
    assert out["f"][1] == big


def test_an_enabled_inexact_completes_with_dxc_incremented_or_truncated(cpu):
    out = run(cpu, ADTR_1_2_3, {2: L("9999999999999999"), 3: L("0.5")}, fpc=FPC_MASK_INEXACT)
    assert out["pgm"] == (4, 7) and out["pc"] == CODE + 4
    assert out["dxc"] == 0x0C and out["fpc"] >> 8 & 0xFF == 0x0C
    assert LONG.decode(out["f"][1]) == Decimal("1.000000000000000E+16")  # completed: the result is stored
    assert out["cc"] == 2
    out = run(cpu, "b3d23912", {2: L("9999999999999999"), 3: L("0.5")}, fpc=FPC_MASK_INEXACT)
    assert out["dxc"] == 0x08


def test_mdtr_and_ddtr_leave_the_cc_and_divide_by_zero_traps_suppressed(cpu):
    out = ok(run(cpu, "b3d03012", {2: L("1.5"), 3: L("-2.0")}, cc=3))  # mdtr
    assert str(LONG.decode(out["f"][1])) == "-3.00" and out["cc"] == 3
    out = ok(run(cpu, "b3d13012", {2: L("1"), 3: L("3")}))  # ddtr 1/3
    assert LONG.decode(out["f"][1]) == Decimal("0.3333333333333333") and out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, "b3d13012", {2: L("1"), 3: L("0")}))
    assert LONG.decode(out["f"][1]) == Decimal("Infinity") and out["fpc"] == FLAG_DIVIDE
    out = run(cpu, "b3d13012", {2: L("1"), 3: L("0")}, fpc=FPC_MASK_DIVIDE)
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x40 and out["f"][1] == 0xA5A5A5A5A5A5A5A5


def test_invalid_operations_give_the_default_nan_or_suppress(cpu):
    inf, minf = L("Infinity"), L("-Infinity")
    out = ok(run(cpu, ADTR_1_2_3, {2: inf, 3: minf}))
    assert out["f"][1] == 0x7C00000000000000 and out["cc"] == 3 and out["fpc"] == FLAG_INVALID
    out = run(cpu, ADTR_1_2_3, {2: inf, 3: minf}, fpc=FPC_MASK_INVALID)
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x80 and out["f"][1] == 0xA5A5A5A5A5A5A5A5
    snan = 0x7E00000000000042
    out = ok(run(cpu, ADTR_1_2_3, {2: L("1"), 3: snan}))
    assert out["f"][1] == 0x7C00000000000042 and out["fpc"] == FLAG_INVALID  # quieted, payload kept


def test_an_enabled_overflow_delivers_the_scaled_result(cpu):
    big = L("9.999999999999999E+384")
    out = ok(run(cpu, "b3d03012", {2: big, 3: L("10")}))
    assert out["f"][1] == L("Infinity") and out["fpc"] == (0x20 | 0x08) << 16
    out = run(cpu, "b3d03012", {2: big, 3: L("10")}, fpc=FPC_MASK_OVERFLOW)
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x20
    assert LONG.decode(out["f"][1]) == Decimal("9.999999999999999E+385") * Decimal("1E-576")


def test_an_underflow_is_flagged_when_inexact_and_delivers_the_scaled_result_when_enabled(cpu):
    tiny = L("1E-398")
    out = ok(run(cpu, "b3d03012", {2: tiny, 3: L("0.5")}))  # 5E-399: rounds to 0E-398 (ties to even)
    assert out["f"][1] == L("0E-398") and out["fpc"] == (0x10 | 0x08) << 16
    out = run(cpu, "b3d03012", {2: tiny, 3: L("0.5")}, fpc=0x10 << 24)
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x10  # exact once scaled
    assert LONG.decode(out["f"][1]) == Decimal("5E177")
    out = run(cpu, "b3d13012", {2: tiny, 3: L("3")}, fpc=0x10 << 24)  # 1E-398 / 3, inexact, truncated
    assert out["dxc"] == 0x18
    assert LONG.decode(out["f"][1]) == Decimal("3.333333333333333E-399") * Decimal("1E576")


def test_extended_operands_use_register_pairs(cpu):
    a, b = X("1234567890123456789012345678901234"), X("1")
    out = ok(run(cpu, "b3da5014", {4: a >> 64, 6: a & (2**64 - 1), 5: b >> 64, 7: b & (2**64 - 1)}))
    assert EXTENDED.decode(ext(out, 1)) == Decimal("1234567890123456789012345678901235")
    assert run(cpu, "b3da5024", {})["pgm"] == (4, 6)  # f2 is not the first of a pair


def test_compares_and_compare_biased_exponent(cpu):
    assert ok(run(cpu, "b3e40012", {1: L("1.0"), 2: L("1")}))["cc"] == 0  # cdtr
    assert ok(run(cpu, "b3e40012", {1: L("-3"), 2: L("1")}))["cc"] == 1
    assert ok(run(cpu, "b3e40012", {1: L("3"), 2: L("1")}))["cc"] == 2
    out = ok(run(cpu, "b3e40012", {1: L("NaN"), 2: L("1")}))
    assert out["cc"] == 3 and out["fpc"] == 0
    out = ok(run(cpu, "b3e00012", {1: L("NaN"), 2: L("1")}))  # kdtr: any NaN is invalid
    assert out["cc"] == 3 and out["fpc"] == FLAG_INVALID
    assert run(cpu, "b3e00012", {1: L("NaN"), 2: L("1")}, fpc=FPC_MASK_INVALID)["dxc"] == 0x80
    assert ok(run(cpu, "b3f40012", {1: L("1.0"), 2: L("7.5")}))["cc"] == 0  # cedtr: same exponent
    assert ok(run(cpu, "b3f40012", {1: L("1.00"), 2: L("7.5")}))["cc"] == 1
    assert ok(run(cpu, "b3f40012", {1: L("Infinity"), 2: L("-Infinity")}))["cc"] == 0
    assert ok(run(cpu, "b3f40012", {1: L("Infinity"), 2: L("7")}))["cc"] == 3


def test_load_and_test_load_lengthened_and_load_rounded(cpu):
    out = ok(run(cpu, "b3d60012", {2: L("-0.00")}))  # ltdtr
    assert out["f"][1] == L("-0.00") and out["cc"] == 0
    out = ok(run(cpu, "b3d60012", {2: 0x7E00000000000007}))
    assert out["f"][1] == 0x7C00000000000007 and out["cc"] == 3 and out["fpc"] == FLAG_INVALID
    short = SHORT.encode(Decimal("-3.25E-20")) << 32
    out = ok(run(cpu, "b3d40012", {2: short}))  # ldetr
    assert out["f"][1] == L("-3.25E-20")
    out = ok(run(cpu, "b3d40812", {2: SHORT.encode(Decimal("sNaN5")) << 32}))  # M4 8: stays signaling
    assert out["f"][1] == 0x7E00000000000005 and out["fpc"] == 0
    out = ok(run(cpu, "b3d50012", {1: 0x1111111122222222, 2: L("1.23456789")}))  # ledtr: rounded to 7
    assert out["f"][1] == SHORT.encode(Decimal("1.234568")) << 32 | 0x22222222
    assert out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, "b3d50412", {2: L("1.23456789")}))  # M4 bit 1: inexact suppressed
    assert out["fpc"] == 0
    out = ok(run(cpu, "b3dc0014", {4: L("8.88")}))  # lxdtr
    assert ext(out, 1) == X("8.88")


def test_load_fp_integer_quantize_and_reround(cpu):
    out = ok(run(cpu, "b3d70012", {2: L("-2.5")}))  # fidtr, FPC mode: ties to even
    assert str(LONG.decode(out["f"][1])) == "-2" and out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, "b3d71412", {2: L("-2.5")}))  # M3 1 ties away, M4 4 no inexact
    assert str(LONG.decode(out["f"][1])) == "-3" and out["fpc"] == 0
    out = ok(run(cpu, "b3f53012", {3: L("2.17"), 2: L("0.1")}))  # qadtr: 2.17 (R3) to the quantum 0.1 (R2)
    assert str(LONG.decode(out["f"][1])) == "2.2" and out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, "b3f53012", {3: L("1"), 2: L("1E-16")}))  # needs 17 digits
    assert out["f"][1] == 0x7C00000000000000 and out["fpc"] == FLAG_INVALID
    out = ok(run(cpu, "b3f73012", {3: L("123456")}, {2: 3}))  # rrdtr to 3 digits
    assert str(LONG.decode(out["f"][1])) == "1.23E+5"


def test_conversions_between_dfp_and_binary_integers(cpu):
    out = ok(run(cpu, "b3f10012", {}, {2: (-12345) & (2**64 - 1)}))  # cdgtr
    assert out["f"][1] == L("-12345")
    out = ok(run(cpu, "b3f10012", {}, {2: 2**63 - 1}))  # 19 digits into 16: rounded
    assert LONG.decode(out["f"][1]) == Decimal("9.223372036854776E+18") and out["fpc"] == FLAG_INEXACT
    out = ok(run(cpu, "b3e13012", {2: L("-7.5")}))  # cgdtr M3 3: prepare for shorter precision
    assert out["g"][1] == (-7) & (2**64 - 1) and out["cc"] == 1
    out = ok(run(cpu, "b3e10012", {2: L("1E+20")}))
    assert out["g"][1] == 2**63 - 1 and out["cc"] == 3 and out["fpc"] == FLAG_INVALID
    out = ok(run(cpu, "b3e10012", {2: L("NaN")}))
    assert out["g"][1] == 2**63 and out["cc"] == 3
    out = ok(run(cpu, "b9410012", {2: L("-42")}, {1: 0xFFFFFFFF00000000}))  # cfdtr: bits 32-63 only
    assert out["g"][1] == 0xFFFFFFFFFFFFFFD6 and out["cc"] == 1
    out = ok(run(cpu, "b9420012", {2: L("-1")}))  # clgdtr of a negative: invalid, 0
    assert out["g"][1] == 0 and out["cc"] == 3
    out = ok(run(cpu, "b9530012", {}, {2: 0xFFFFFFFF}))  # cdlftr
    assert out["f"][1] == L("4294967295")


def test_conversions_between_dfp_and_packed_decimal(cpu):
    out = ok(run(cpu, "b3f30012", {}, {2: 0x000000000012345D}))  # cdstr
    assert out["f"][1] == L("-12345")
    out = run(cpu, "b3f30012", {}, {2: 0x00000000001234A5})  # digit A: data exception DXC 0
    assert out["pgm"] == (4, 7) and out["dxc"] == 0
    out = ok(run(cpu, "b3e30012", {2: L("-123.45")}))  # csdtr: the coefficient, sign D
    assert out["g"][1] == 0x000000000012345D
    out = ok(run(cpu, "b3e30112", {2: L("67")}))  # M4 bit 3: plus sign F
    assert out["g"][1] == 0x000000000000067F
    out = ok(run(cpu, "b3f20012", {}, {2: 0x9999999999999999}))  # cdutr
    assert out["f"][1] == L("9999999999999999")
    out = ok(run(cpu, "b3e20012", {2: L("1.5")}))  # cudtr
    assert out["g"][1] == 0x15


def test_exponent_significance_and_insert(cpu):
    assert ok(run(cpu, "b3e50012", {2: L("1.5")}))["g"][1] == 397  # eedtr
    assert ok(run(cpu, "b3e50012", {2: L("sNaN")}))["g"][1] == 2**64 - 3
    assert ok(run(cpu, "b3e70012", {2: L("0.0012300")}))["g"][1] == 5  # esdtr
    assert ok(run(cpu, "b3e70012", {2: L("-0.00")}))["g"][1] == 0
    out = ok(run(cpu, "b3f63012", {3: L("-15")}, {2: 396}))  # iedtr: -15 with biased exponent 396
    assert out["f"][1] == L("-0.15")
    out = ok(run(cpu, "b3f63012", {3: L("15")}, {2: 2**64 - 1}))  # -1: infinity
    assert LONG.decode(out["f"][1]).is_infinite()


#: results a z/Architecture machine gave (recorded in valgrind's s390x DFP test expectations), as
#: (instruction, FPRs, GPRs, expected register or condition code): operands in f4 (f4/f6), f5 (f5/f7)
HARDWARE = [
    ("b3f54015", {4: 0x222000000023C534, 5: 0x222C000000000001}, {}, ("f1", 0x222C0000000008F1)),  # qadtr
    ("b3f54615", {4: 0x222000000023C534, 5: 0x222C000000000001}, {}, ("f1", 0x222C0000000008F2)),  # +inf
    ("b3f54715", {4: 0xA22000000023C534, 5: 0x2238000000000000}, {}, ("f1", 0xA238000000000003)),  # shorter
    ("b3f74012", {4: 0x222000000023D2DE}, {2: 3}, ("f1", 0x2230000000000117)),  # rrdtr to 3 digits
    ("b3f74612", {4: 0x222000000023D2DE}, {2: 3}, ("f1", 0x2230000000000118)),
    ("b3f74312", {4: 0x222000000023D2DE}, {2: 4}, ("f1", 0x222C0000000008F4)),
    ("ed40000a1040", {4: 0x2224014D2E7971A1}, {}, ("f1", 0x6A26C34400000000)),  # sldt by 10
    ("ed4000051041", {4: 0x2224014D2E7971A1}, {}, ("f1", 0x2224000001271778)),  # srdt by 5
    ("b3f64012", {4: 0x2220000000500005}, {2: 391}, ("f1", 0x221C000000500005)),  # iedtr
    ("b3f64012", {4: 0x2238000000000001}, {2: 393}, ("f1", 0x2224000000000001)),
    ("b3e50014", {4: 0x22280000000A0005}, {}, ("r1", 394)),  # eedtr
    ("b3e70014", {4: 0xA2280000000A0005}, {}, ("r1", 6)),  # esdtr
    ("b3d15014", {4: 0x2238000000000022, 5: 0x2238000000000007}, {}, ("f1", 0x2DFCC2D74C2D74C3)),  # 22 / 7
    ("b3d25014", {4: 0xA230000000000194, 5: 0x222C000000000005}, {}, ("cc", 1)),  # adtr: -1.94 + 0.05
    ("b3f40045", {4: 0x7C00000000000000, 5: 0x7C00000000000000}, {}, ("cc", 0)),  # cedtr NaN, NaN
    ("b3e40045", {4: 0x7C00000000000000, 5: 0x7C00000000000000}, {}, ("cc", 3)),  # cdtr NaN, NaN
    ("b3d40014", {4: 0x2DF00002 << 32}, {}, ("f1", 0x2220000000300002)),  # ldetr
    ("b3d50014", {4: 0x22340000000C0004}, {}, ("f1>>32", 0x224C0004)),  # ledtr
    ("b3e11014", {4: 0x2234000000000015}, {}, ("r1", 2)),  # cgdtra 1.5, ties away
    ("b3e13014", {4: 0x2234000000000015}, {}, ("r1", 1)),  # ... prepare for shorter precision
    ("b3e17014", {4: 0xA234000000000011}, {}, ("r1", 2**64 - 2)),  # -1.1 toward -inf
    ("b9431014", {4: 0xA234000000000011}, {}, ("cc", 3)),  # clfdtr -1.1 (-1): invalid
    ("b3f11014", {}, {4: 4294967295}, ("f1", 0x2238000115AFB55B)),  # cdgtra
    ("b9510014", {}, {4: 0x80000000}, ("f1", 0xA23800008C78AF48)),  # cdftr -2147483648
]


@pytest.mark.parametrize(("insn", "fprs", "gprs", "want"), HARDWARE)
def test_results_match_the_hardwares(cpu, insn, fprs, gprs, want):
    out = ok(run(cpu, insn, fprs, gprs), len(insn) // 2)
    where, value = want
    got = {"f1": out["f"][1], "f1>>32": out["f"][1] >> 32, "r1": out["g"][1], "cc": out["cc"]}[where]
    assert got == value


def test_extended_shifts_match_the_hardwares(cpu):
    v = 0x2206C000000000000000014D2E7971A1
    out = ok(run(cpu, "ed40000a1048", {4: v >> 64, 6: v & (2**64 - 1)}), 6)  # slxt by 10
    assert ext(out, 1) == 0x2206C0000000049C5DE2C34400000000
    out = ok(run(cpu, "ed40000a1049", {4: v >> 64, 6: v & (2**64 - 1)}), 6)  # srxt by 10
    assert ext(out, 1) == 0x2206C0000000000000000000000000A3
    q = 0x22068000000000000099E570F483C534
    quantum = 0x22078000000000000000000000008C01
    regs = {4: q >> 64, 6: q & (2**64 - 1), 5: quantum >> 64, 7: quantum & (2**64 - 1)}
    assert ext(ok(run(cpu, "b3fd4015", regs)), 1) == 0x2207800000000000000002CDAB47931D  # qaxtr


def test_shift_significand_and_test_data_class_and_group(cpu):
    out = ok(run(cpu, "ed2030021040", {2: L("1.23")}), 6)  # sldt %f1,%f2,2(%r3): the exponent stays
    assert str(LONG.decode(out["f"][1])) == "123.00"
    out = ok(run(cpu, "ed2030011041", {2: L("1.23")}), 6)  # srdt by 1
    assert str(LONG.decode(out["f"][1])) == "0.12"
    # tdcdt %f1,0x800(%r3): +zero
    assert ok(run(cpu, "ed1038000054", {1: L("0")}), 6)["cc"] == 1
    assert ok(run(cpu, "ed1038000054", {1: L("-0")}), 6)["cc"] == 0
    assert ok(run(cpu, "ed1030020054", {1: L("-sNaN")}), 6)["cc"] == 0
    assert ok(run(cpu, "ed1030010054", {1: L("-sNaN")}), 6)["cc"] == 1
    assert ok(run(cpu, "ed1032000054", {1: L("1E-390")}), 6)["cc"] == 1  # +subnormal (bit 54)
    assert ok(run(cpu, "ed1030800054", {1: L("1E-390")}), 6)["cc"] == 0  # not normal (bit 56)
    # tdgdt: bit 52 safe zero, bit 54 zero with extreme exponent
    assert ok(run(cpu, "ed1038000055", {1: L("0")}), 6)["cc"] == 1
    assert ok(run(cpu, "ed1032000055", {1: L("0E-398")}), 6)["cc"] == 1


def test_without_the_afp_register_control_a_dfp_instruction_is_a_data_exception_dxc_3(cpu):
    out = run(cpu, ADTR_1_2_3, {2: L("1"), 3: L("2")}, cr0=0xE0)
    assert out["pgm"] == (4, 7) and out["dxc"] == 3 and out["f"][1] == 0xA5A5A5A5A5A5A5A5
    assert out["fpc"] == 0


def test_srnmt_sets_the_dfp_rounding_mode_the_next_add_uses(cpu):
    # srnmt 1(%r0): DRM 1, toward zero; unicorn runs SRNMT itself
    out = ok(run(cpu, "b2b90001", {}))
    assert out["fpc"] >> 4 & 7 == 1


def test_an_executed_dfp_instruction_runs_at_the_execute(cpu):
    # ex %r0,8(%r0,%r15): the ADTR at CODE + 6, behind a NOPR the EXECUTE returns to
    out = ok(run(cpu, "4400f008" + "0700" + ADTR_1_2_3, {2: L("1"), 3: L("2")}, {15: CODE - 2}))
    assert out["f"][1] == L("3") and out["cc"] == 2
    # ... and its data exception names the EXECUTE (ILC 4, the PSW after it)
    ex_ddtr = "4400f008" + "0700" + "b3d13012"
    out = run(cpu, ex_ddtr, {2: L("1"), 3: L("0")}, {15: CODE - 2}, fpc=FPC_MASK_DIVIDE)
    assert out["pgm"] == (4, 7) and out["pc"] == CODE + 4 and out["dxc"] == 0x40


# -- a guest program -----------------------------------------------------------------------------------------

GUEST = r"""
    .globl _start
_start:
    larl %r7,cr0
    stctg %c0,%c0,0(%r7)
    oi 5(%r7),0x04              # AFP-register control (CR0 bit 45)
    lctlg %c0,%c0,0(%r7)
    larl %r6,data
    ld %f2,0(%r6)               # 1.10
    ld %f3,8(%r6)               # 2.205
    adtr %f4,%f2,%f3
    std %f4,0xf00
    ipm %r0
    st %r0,0xf08
    cdtr %f2,%f3
    ipm %r0
    st %r0,0xf0c
    mdtr %f5,%f2,%f3
    std %f5,0xf10
    cgdtra %r1,1,%f5,0          # 2.4255 ties away to an integer: 2
    stg %r1,0xf18
    larl %r1,endpsw
    lpswe 0(%r1)
    .balign 8
cr0: .quad 0
endpsw: .quad 0x0002000000000000, 0xfff
data: .quad 0x22300000000000110, 0
"""


@pytest.mark.toolchain
def test_a_guest_program_computes_with_dfp(tmp_path):
    source = GUEST.replace(
        "data: .quad 0x22300000000000110, 0",
        f"data: .quad {L('1.10'):#x}, {L('2.205'):#x}",
    )
    m = Machine(16 << 20, 1, deterministic=True, info=MachineInfo())  # an IBM machine's model: DFP
    try:
        m.load(str(build_elf(tmp_path, source)))
        r = m.run(time_limit=30)
        assert r.clean, r.describe()
        raw = m.memory.read(0xF00, 0x20)
    finally:
        m.close()
    assert int.from_bytes(raw[0:8], "big") == L("3.305")
    assert raw[8] >> 4 & 3 == 2  # the sum is positive
    assert raw[12] >> 4 & 3 == 1  # 1.10 < 2.205
    assert int.from_bytes(raw[16:24], "big") == L("2.42550")
    assert int.from_bytes(raw[24:32], "big") == 2


long_operand = st.one_of(
    finite_long,
    st.sampled_from([Decimal(x) for x in ("Infinity", "-Infinity", "NaN", "-0", "0E+369", "9.99E+384")]),
)
_ARITH = {"b3d2": "add", "b3d3": "subtract", "b3d0": "multiply", "b3d1": "divide"}


@given(long_operand, long_operand, st.sampled_from(sorted(_ARITH)), st.integers(0, 7))
@settings(max_examples=80, deadline=None)
def test_adtr_sdtr_mdtr_ddtr_on_the_cpu_give_decimal64s_results_in_every_mode(cpu, a, b, op, drm):
    a, b = LONG.decode(LONG.encode(a)), LONG.decode(LONG.encode(b))  # as the registers hold them (folded)
    out = ok(run(cpu, op + "3012", {2: LONG.encode(a), 3: LONG.encode(b)}, fpc=drm << 4, cc=3))
    ref = Context(prec=16, Emax=384, Emin=-383, clamp=1, rounding=DRM_ROUNDING[drm], traps=[])
    want = getattr(ref, _ARITH[op])(a, b)
    assert out["f"][1] == LONG.encode(want)
    assert bool(out["fpc"] & FLAG_INEXACT) == bool(ref.flags[Inexact])
    assert bool(out["fpc"] & FLAG_INVALID) == bool(ref.flags[InvalidOperation])
    if op in ("b3d2", "b3d3"):
        assert out["cc"] == (3 if want.is_nan() else 0 if want.is_zero() else 1 if want.is_signed() else 2)
    else:
        assert out["cc"] == 3  # unchanged


# -- zoned and packed fields in storage (facilities 48, 80) --------------------------------------------------

DATA = 0x20000


def rsl(op: int, length: int, r1: int, m3: int) -> str:
    """An RSL-b instruction on the field at 0(%r3) (r3 = DATA)."""
    return f"ed{length - 1:02x}3000{r1:x}{m3:x}{op:02x}"


def run_field(cpu, insn: str, field: bytes, fprs=None, **kw):
    cpu.mem.fill(DATA, 64)
    cpu.mem.write(DATA, field)
    out = run(cpu, insn, fprs, {3: DATA}, **kw)
    out["field"] = cpu.mem.read(DATA, len(field))
    return out


def test_convert_from_zoned(cpu):
    out = ok(run_field(cpu, rsl(0xAA, 4, 1, 8), bytes.fromhex("f1f2f3d4")), 6)  # cdzt, signed
    assert out["f"][1] == L("-1234")
    out = ok(run_field(cpu, rsl(0xAA, 3, 1, 0), b"907"), 6)  # unsigned: the zones (ASCII here) ignored
    assert out["f"][1] == L("907")
    digits = "1234567890123456789012345678901234"
    out = ok(run_field(cpu, rsl(0xAB, 34, 4, 0), digits.encode("cp037")), 6)  # cxzt, 34 digits
    assert ext(out, 4) == X(digits)
    out = run_field(cpu, rsl(0xAA, 2, 1, 0), bytes.fromhex("f1fa"))  # digit A
    assert out["pgm"] == (6, 7) and out["dxc"] == 0 and out["f"][1] == 0xA5A5A5A5A5A5A5A5
    assert run_field(cpu, rsl(0xAA, 2, 1, 8), bytes.fromhex("f171"))["pgm"] == (6, 7)  # sign 7
    assert run_field(cpu, rsl(0xAA, 17, 1, 0), bytes(17))["pgm"] == (6, 6)  # 17 bytes into long


def test_convert_to_zoned(cpu):
    out = ok(run_field(cpu, rsl(0xA8, 4, 2, 8), bytes(4), {2: L("-12.5")}), 6)  # czdt, signed
    assert out["field"] == bytes.fromhex("f0f1f2d5") and out["cc"] == 1
    out = ok(run_field(cpu, rsl(0xA8, 4, 2, 4), bytes(4), {2: L("-12.5")}), 6)  # ASCII zones, no sign
    assert out["field"] == b"0125" and out["cc"] == 1
    out = ok(run_field(cpu, rsl(0xA8, 3, 2, 0xA), bytes(3), {2: L("123456")}), 6)  # digits lost, plus F
    assert out["field"] == bytes.fromhex("f4f5f6") and out["cc"] == 3
    out = ok(run_field(cpu, rsl(0xA8, 2, 2, 0), bytes(2), {2: L("Infinity")}), 6)
    assert out["field"] == bytes.fromhex("f0f0") and out["cc"] == 3


def test_convert_from_and_to_packed(cpu):
    out = ok(run_field(cpu, rsl(0xAE, 3, 1, 8), bytes.fromhex("01234d")), 6)  # cdpt, signed
    assert out["f"][1] == L("-1234")
    out = ok(run_field(cpu, rsl(0xAE, 3, 1, 9), bytes.fromhex("01234b")), 6)  # sign ignored: plus
    assert out["f"][1] == L("1234")
    out = ok(run_field(cpu, rsl(0xAE, 2, 1, 0), bytes.fromhex("9876")), 6)  # unsigned: four digits
    assert out["f"][1] == L("9876")
    out = run_field(cpu, rsl(0xAE, 9, 1, 0), bytes.fromhex("100000000000000001"))  # 18 digits into 16
    assert out["pgm"] == (6, 7) and out["dxc"] == 0
    out = ok(run_field(cpu, rsl(0xAE, 9, 1, 0), bytes.fromhex("009999999999999999")), 6)
    assert out["f"][1] == L("9999999999999999")
    out = ok(run_field(cpu, rsl(0xAC, 2, 2, 8), bytes(2), {2: L("-7")}), 6)  # cpdt, signed
    assert out["field"] == bytes.fromhex("007d") and out["cc"] == 1
    out = ok(run_field(cpu, rsl(0xAC, 1, 2, 0xB), bytes(1), {2: L("-0")}), 6)  # force plus zero, F
    assert out["field"] == bytes.fromhex("0f") and out["cc"] == 0
    big = X("1234567890123456789012345678901234")
    out = ok(run_field(cpu, rsl(0xAD, 18, 4, 8), bytes(18), {4: big >> 64, 6: big & (2**64 - 1)}), 6)  # cpxt
    assert out["field"] == bytes.fromhex("01234567890123456789012345678901234c") and out["cc"] == 2
    assert run_field(cpu, rsl(0xAC, 10, 2, 8), bytes(10))["pgm"] == (6, 6)  # 10 bytes from long


def test_a_trapped_overflow_of_load_rounded_scales_or_gives_the_default_result(cpu):
    out = run(cpu, "b3d50012", {2: L("1E+200")}, fpc=FPC_MASK_OVERFLOW)  # ledtr: 1E200 scaled by 144
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x20
    assert SHORT.decode(out["f"][1] >> 32) == Decimal("1E+56")
    out = run(cpu, "b3d50012", {2: L("1E+300")}, fpc=FPC_MASK_OVERFLOW)  # 1E156 does not fit either
    assert out["pgm"] == (4, 7) and out["dxc"] == 0x20
    assert SHORT.decode(out["f"][1] >> 32) == Decimal("Infinity")


#: long-operand instructions (hex without registers): operands f4 (value), f5, r2; result f1 / r1
_ANY_LONG = ["b3d2", "b3d3", "b3d0", "b3d1", "b3e4", "b3e0", "b3f4", "b3d6", "b3d5", "b3d7", "b3f5", "b3f7",
             "b3e1", "b943", "b3e3", "b3e2", "b3e5", "b3e7", "b3f6", "b3f1", "b3f3", "b3f2"]


@given(st.sampled_from(_ANY_LONG), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 15), st.integers(0, 0xF8), st.integers(0, 7))
@settings(max_examples=150, deadline=None)
def test_any_operands_give_a_result_or_a_data_exception(cpu, op, a, b, g, m, masks, drm):
    """Whatever the register contents, rounding and masks: the instruction completes or takes PGM 7."""
    rrf = "b3d2 b3d3 b3d0 b3d1 b3f5".split()
    insn = op + (f"5{m:x}14" if op in rrf else f"2{m:x}14" if op in ("b3f7", "b3f6") else f"{m:x}014")
    out = run(cpu, insn, {4: a, 5: b}, {2: g, 4: g}, fpc=masks << 24 | drm << 4)
    assert out["pgm"] is None or out["pgm"][1] == 7, out["pgm"]
    assert out["pc"] == CODE + 4

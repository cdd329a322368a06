"""Miscellaneous-instruction-extensions facility 3 (facility 61), emulated by ``emulator.hw.mie3``.

Each instruction runs on a real ``Cpu`` (the page scan traps it, the CPU emulates it) with operands whose
architectural results are worked out by hand here. The encodings are GNU as 2.40's (``.machine z15``).
"""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list, has_facility, secure_guest_facilities
from emulator.hw.tod import TodClock

CODE = 0x10000
DATA = 0x20000
PGM_NEW_ADDR = 0x0BAD0
A = 0x0123456789ABCDEF
B = 0xFF00FF00F0F0F0F0
R1_BEFORE = 0x5555AAAA5555AAAA


@pytest.fixture(scope="module")
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def run(cpu: Cpu, code: str, gprs: dict[int, int], cc: int = 0, insns: int = 1) -> dict:
    """Run ``insns`` instructions of ``code`` (hex) with these general registers; the state after them."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x200)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    raw = bytes.fromhex(code)
    mem.write(CODE, raw + bytes.fromhex("0700"))
    for i in range(16):
        cpu.set_gpr(i, 0)
    for i, v in gprs.items():
        cpu.set_gpr(i, v)
    cpu.set_psw(PSW_MASK_64 | cc << 44, CODE)
    cpu.state = OPERATING
    cpu.run(count=insns)
    mask, addr = cpu.psw
    out = {"r": [cpu.gpr(i) for i in range(16)], "pc": addr, "cc": mask >> 44 & 3, "pgm": None}
    if addr == PGM_NEW_ADDR:
        out["pgm"] = struct.unpack(">HH", mem.read(0x8C, 4))
        out["pc"] = struct.unpack(">QQ", mem.read(0x150, 16))[1]
    return out


def test_the_facility_is_offered():
    assert has_facility(facility_list(False), 61)
    assert has_facility(secure_guest_facilities(facility_list(True)), 61)


M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


@pytest.mark.parametrize(
    ("name", "opcode", "op"),
    [
        ("NCRK", "b9f5", lambda a, b: a & ~b),
        ("NNRK", "b974", lambda a, b: ~(a & b)),
        ("NORK", "b976", lambda a, b: ~(a | b)),
        ("NXRK", "b977", lambda a, b: ~(a ^ b)),
        ("OCRK", "b975", lambda a, b: a | ~b),
    ],
)
def test_the_logical_operations_on_words_keep_the_high_half_of_r1(cpu, name, opcode, op):
    out = run(cpu, opcode + "3012", {1: R1_BEFORE, 2: A, 3: B})
    want = op(A & M32, B & M32) & M32
    assert out["pgm"] is None and out["pc"] == CODE + 4, name
    assert out["r"][1] == (R1_BEFORE & ~M32) | want
    assert out["cc"] == (0 if want == 0 else 1)


@pytest.mark.parametrize(
    ("opcode", "op"),
    [
        ("b9e5", lambda a, b: a & ~b),
        ("b964", lambda a, b: ~(a & b)),
        ("b966", lambda a, b: ~(a | b)),
        ("b967", lambda a, b: ~(a ^ b)),
        ("b965", lambda a, b: a | ~b),
    ],
)
def test_the_logical_operations_on_doublewords(cpu, opcode, op):
    out = run(cpu, opcode + "3012", {1: R1_BEFORE, 2: A, 3: B})
    assert out["r"][1] == op(A, B) & M64 and out["cc"] == 1


def test_a_zero_result_sets_condition_code_0(cpu):
    out = run(cpu, "b9f53012", {2: A, 3: A})  # NCRK of a value with itself
    assert out["r"][1] == 0 and out["cc"] == 0
    out = run(cpu, "b9773012", {2: A, 3: ~A & M64})  # NXRK: not (a xor not a)
    assert out["r"][1] & M32 == 0 and out["cc"] == 0


@pytest.mark.parametrize("cc", [0, 1, 2, 3])
def test_select_takes_r2_when_m4_selects_the_condition_code_else_r3(cpu, cc):
    # selr %r1,%r2,%r3,4 (CC 1 only); selgr ...,4; selfhr ...,4
    selected = cc == 1
    out = run(cpu, "b9f03412", {1: R1_BEFORE, 2: A, 3: B}, cc=cc)
    assert out["r"][1] == (R1_BEFORE & ~M32) | ((A if selected else B) & M32)
    assert out["cc"] == cc and out["pc"] == CODE + 4
    out = run(cpu, "b9e33412", {1: R1_BEFORE, 2: A, 3: B}, cc=cc)
    assert out["r"][1] == (A if selected else B)
    out = run(cpu, "b9c03412", {1: R1_BEFORE, 2: A, 3: B}, cc=cc)
    assert out["r"][1] == (R1_BEFORE & M32) | ((A if selected else B) & ~M32)


def test_select_with_every_condition_code_in_m4_always_takes_r2(cpu):
    for cc in range(4):
        assert run(cpu, "b9e33f12", {2: A, 3: B}, cc=cc)["r"][1] == A


def test_popcnt_with_m3_bit_0_counts_the_whole_register(cpu):
    out = run(cpu, "b9e18012", {2: A})
    assert out["r"][1] == bin(A).count("1") and out["cc"] == 1 and out["pc"] == CODE + 4
    out = run(cpu, "b9e18012", {1: 7, 2: 0})
    assert out["r"][1] == 0 and out["cc"] == 0


def test_popcnt_without_m3_still_counts_each_byte_natively(cpu):
    out = run(cpu, "b9e10012", {2: A})
    per_byte = bytes(bin(b).count("1") for b in A.to_bytes(8, "big"))
    assert out["r"][1] == int.from_bytes(per_byte, "big") and out["cc"] == 1


def test_popcnt_with_m3_as_the_target_of_execute(cpu):
    # ex %r0,8(%r15) with the POPCNT at CODE+8 (after a branch over it)
    out = run(cpu, "4400f008" "a7f40004" "b9e18012", {2: A, 15: CODE})
    assert out["r"][1] == bin(A).count("1") and out["pc"] == CODE + 4


def test_an_and_with_complement_as_the_target_of_execute_relative_long(cpu):
    # exrl %r0,+6 (the NCGRK after the branch), then j over it
    out = run(cpu, "c60000000005" "a7f40003" "b9e53012", {2: A, 3: B})
    assert out["r"][1] == A & ~B & M64 and out["pc"] == CODE + 6


def _mvcrl(cpu: Cpu, first: int, second: int, data: bytes, length: int) -> bytes:
    cpu.mem.fill(DATA, 0x1000)
    cpu.mem.write(DATA, data)
    # mvcrl 0(%r1),0(%r2)
    out = run(cpu, "e50a10002000", {0: length - 1, 1: DATA + first, 2: DATA + second})
    assert out["pgm"] is None and out["pc"] == CODE + 6
    return cpu.mem.read(DATA, len(data))


def test_mvcrl_moves_the_length_in_r0_plus_one(cpu):
    assert _mvcrl(cpu, 16, 0, bytes(range(1, 17)) + bytes(16), 5) == bytes(range(1, 17)) + bytes(
        [1, 2, 3, 4, 5]
    ) + bytes(11)


def test_mvcrl_overlapping_to_the_right_moves_like_memmove(cpu):
    # the first operand two bytes to the right of the second: right to left, every byte as it was
    got = _mvcrl(cpu, 2, 0, b"abcdefgh", 6)
    assert got == b"ababcdef"


def test_mvcrl_overlapping_to_the_left_propagates_from_the_right(cpu):
    # the first operand two bytes to the left: the rightmost bytes are stored first and then read again
    got = _mvcrl(cpu, 0, 2, b"abcdefgh", 6)
    assert got == b"ghghghgh"


def test_mvcrl_to_storage_beyond_memory_is_an_addressing_exception_with_nothing_moved(cpu):
    cpu.mem.fill(DATA, 16)
    cpu.mem.write(DATA, b"0123456789abcdef")
    out = run(cpu, "e50a10002000", {0: 15, 1: (1 << 20) - 8, 2: DATA})
    assert out["pgm"] == (6, 5) and out["pc"] == CODE + 6  # ILC 6, an addressing exception (suppressed)
    assert cpu.mem.read((1 << 20) - 8, 8) == bytes(8)

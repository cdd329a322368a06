"""Specification exceptions unicorn does not recognize: an odd PSW address loaded by LPSWE, an odd EXECUTE
target, a misaligned relative-long operand. Each case runs from a fresh state on one CPU."""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu

CODE = 0x10000
DATA = 0x20000
PGM_NEW_ADDR = 0x0BAD0  # the program-new PSW: a disabled wait here
STOP = bytes.fromhex("0700") * 2


def run(cpu: Cpu, code: bytes, regs: dict | None = None, count: int = 8, at: int = CODE) -> dict:
    """Run ``code`` at ``at`` for ``count`` instructions; the program interruption it took, if any."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    mem.fill(CODE, 0x2000, 0x07)  # no-ops (BCR 0,7) around the code
    mem.write(at, code)
    for i, v in (regs or {}).items():
        cpu.set_gpr(i, v)
    cpu.set_psw(PSW_MASK_64, at)
    cpu.state = OPERATING
    cpu.run(count=count)
    mask, addr = cpu.psw
    if addr != PGM_NEW_ADDR:
        return {"pgm": None, "pc": addr, "regs": cpu.gprs()}
    ilc, code_ = struct.unpack(">HH", mem.read(0x8C, 4))
    old_mask, old_addr = struct.unpack(">QQ", mem.read(0x150, 16))
    return {"pgm": code_, "ilc": ilc, "pc": old_addr, "regs": cpu.gprs()}


def test_lpswe_of_an_odd_address_is_a_specification_exception_with_the_loaded_psw_as_old_psw(cpu):
    cpu.mem.write(DATA, struct.pack(">QQ", PSW_MASK_64, CODE + 0x101))
    r = run(cpu, bytes.fromhex("b2b21000"), regs={1: DATA}, count=1)  # lpswe 0(%r1)
    assert r["pgm"] == 0x06 and r["ilc"] == 0 and r["pc"] == CODE + 0x101


def test_an_odd_wait_psw_address_is_no_exception(cpu):
    """QEMU's shutdown PSW (a disabled wait at 0xfff) fetches nothing."""
    cpu.mem.write(DATA, struct.pack(">QQ", 0x0002000180000000, 0xFFF))
    r = run(cpu, bytes.fromhex("b2b21000"), regs={1: DATA}, count=1)
    assert r["pgm"] is None and r["pc"] == 0xFFF


def test_execute_of_an_odd_target_is_a_specification_exception_and_an_even_one_runs_each_time(cpu):
    # ex %r0,0(%r2) twice; the target is lr %r3,%r4 at DATA
    cpu.mem.write(DATA, bytes.fromhex("1834"))
    r = run(cpu, bytes.fromhex("44002000") * 2 + STOP, regs={2: DATA + 1, 3: 0, 4: 0xDD}, count=2)
    assert r["pgm"] == 0x06 and r["ilc"] == 4 and r["pc"] == CODE + 4 and r["regs"][3] == 0
    # ex; ahi %r3,1; ex: the second EXECUTE (an exit still) copies r4 into r3 again
    r = run(cpu, bytes.fromhex("44002000") + bytes.fromhex("a73a0001") + bytes.fromhex("44002000") + STOP,
            regs={2: DATA, 3: 0, 4: 0xDD}, count=3)
    assert r["pgm"] is None and r["pc"] == CODE + 12 and r["regs"][3] == 0xDD
    r = run(cpu, bytes.fromhex("44002000a73a0001") + STOP, regs={2: DATA, 4: 0xDD}, count=2)
    assert r["regs"][3] == 0xDE


@pytest.mark.parametrize(
    "op, align",
    [(0xC40D, 4), (0xC408, 8), (0xC40F, 4), (0xC60D, 4), (0xC60A, 8)],
    ids=["LRL", "LGRL", "STRL", "CRL", "CLGRL"],
)
def test_a_misaligned_relative_long_operand_is_a_specification_exception(cpu, op, align):
    def insn(target: int) -> bytes:
        return bytes([op >> 8, 0x30 | op & 0xF]) + struct.pack(">i", (target - CODE) // 2)

    r = run(cpu, insn(DATA + align // 2) + STOP, count=1)
    assert r["pgm"] == 0x06 and r["ilc"] == 6 and r["pc"] == CODE + 6
    r = run(cpu, insn(DATA + align) + STOP, count=1)
    assert r["pgm"] is None and r["pc"] == CODE + 6


def test_a_halfword_relative_long_operand_needs_no_alignment(cpu):
    r = run(cpu, bytes([0xC4, 0x35]) + struct.pack(">i", (DATA + 2 - CODE) // 2) + STOP, count=1)  # LHRL
    assert r["pgm"] is None and r["pc"] == CODE + 6

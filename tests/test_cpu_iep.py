"""Instruction-execution protection (facility 130): with CR0 bit 43 on, an instruction fetch from a page
whose page-table entry (or 1 MiB segment-table entry) has the IEP bit is a protection exception whose TEID
carries the ESOP-2 protection code 101; data accesses to the page stay allowed."""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu

SEGMENT_TABLE = 0x20000
PAGE_TABLE = 0x24000
TARGET = 0x30000  # the page tried for execution
PGM_NEW_ADDR = 0x0BAD0
DAT = 1 << 58
CR0_IEP, CR0_EDAT = 1 << 20, 1 << 23
IEP_BIT = 0x100


def fetch_from_target(cpu: Cpu, cr0: int, pte_bits: int = 0, large: bool = False, code: bytes = b"") -> dict:
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    for i in range(2048):
        mem.write(SEGMENT_TABLE + 8 * i, struct.pack(">Q", 0x20))
    if large:  # one 1 MiB frame at 0 (format control, bit 53)
        mem.write(SEGMENT_TABLE, struct.pack(">Q", 0x400 | pte_bits))
    else:
        mem.write(SEGMENT_TABLE, struct.pack(">Q", PAGE_TABLE))
        for i in range(256):
            mem.write(PAGE_TABLE + 8 * i, struct.pack(">Q", i << 12 | (pte_bits if i << 12 == TARGET else 0)))
    mem.write(TARGET, (code or bytes.fromhex("a7f80005")) + bytes.fromhex("0700") * 4)  # lhi %r15,5
    cpu.set_cr(0, 0xE0 | cr0)
    cpu.set_cr(1, SEGMENT_TABLE | 3)
    cpu.set_gpr(15, 0)
    cpu.set_psw(PSW_MASK_64 | DAT, TARGET)
    cpu.state = OPERATING
    cpu.run(count=1)
    if cpu.psw[1] == PGM_NEW_ADDR:
        code_ = struct.unpack(">H", mem.read(0x8E, 2))[0]
        return {"pgm": code_, "teid": struct.unpack(">Q", mem.read(0xA8, 8))[0]}
    return {"pgm": None, "r15": cpu.gpr(15)}


@pytest.mark.parametrize("large", [False, True], ids=["page", "1M-frame"])
def test_a_fetch_from_an_iep_page_is_a_protection_exception_with_code_101(cpu, large):
    cr0 = CR0_IEP | (CR0_EDAT if large else 0)
    r = fetch_from_target(cpu, cr0, IEP_BIT, large)
    assert r["pgm"] == 0x04
    teid = r["teid"]
    assert teid & ~0xFFF == TARGET
    assert (teid >> 7 & 1, teid >> 3 & 1, teid >> 2 & 1) == (1, 0, 1)  # bits 56, 60, 61


def test_without_the_cr0_control_or_the_entry_bit_the_page_executes(cpu):
    assert fetch_from_target(cpu, 0, IEP_BIT) == {"pgm": None, "r15": 5}
    assert fetch_from_target(cpu, CR0_IEP, 0) == {"pgm": None, "r15": 5}


def test_data_accesses_to_an_iep_page_are_allowed(cpu):
    # run from page 0x10000 (not IEP) a load from TARGET: lg %r15,0(%r1)
    cpu.mem.write(0x10000, bytes.fromhex("e3f010000004") + bytes.fromhex("0700") * 2)
    cpu.reset_cpu()
    r = fetch_from_target(cpu, CR0_IEP, IEP_BIT)  # builds the tables (and takes the fetch exception)
    assert r["pgm"] == 0x04
    cpu.set_gpr(1, TARGET)
    cpu.set_psw(PSW_MASK_64 | DAT, 0x10000)
    cpu.run(count=1)
    assert cpu.psw[1] == 0x10006 and cpu.gpr(15) == struct.unpack(">Q", cpu.mem.read(TARGET, 8))[0]


def test_stores_into_former_code_made_iep_are_no_fault_of_the_next_execute(cpu):
    """Linux reuses freed code pages as data (with the IEP bit): storing into one drops its translated code,
    and unicorn's fetch lookup of the page for that is refused; that refusal is not the guest's access and
    must not be delivered as a protection exception of the instruction at the PC (it was, at an EXECUTE:
    Debian's kernel died in __memcpy unpacking its initramfs)."""
    mem = cpu.mem
    q = 0x11000
    code = bytearray()
    code += bytes.fromhex("c0e5") + struct.pack(">i", (q - 0x10000) // 2)  # brasl %r14,Q: Q is code now
    pte_byte = PAGE_TABLE + 8 * (q >> 12) + 6  # the byte of Q's page-table entry holding the IEP bit
    code += bytes.fromhex("c050") + struct.pack(">i", (pte_byte - (0x10000 + len(code))) // 2)  # larl %r5
    code += bytes.fromhex("96015000")  # oi 0(%r5),1: Q's IEP bit on
    code += bytes.fromhex("b20d0000")  # ptlb
    code += bytes.fromhex("c060") + struct.pack(">i", (q + 0x800 - (0x10000 + len(code))) // 2)  # larl %r6
    code += bytes.fromhex("92556000")  # mvi 0(%r6),0x55: a store into Q
    target = 0x10000 + len(code) + 6 + 4 + 4
    code += bytes.fromhex("c070") + struct.pack(">i", (target - (0x10000 + len(code))) // 2)  # larl %r7
    code += bytes.fromhex("44007000")  # ex 0,0(%r7)
    code += bytes.fromhex("a7f40000")  # j .
    code += bytes.fromhex("a7f80007")  # the target: lhi %r15,7
    fetch_from_target(cpu, 0)  # the tables: identity, no IEP yet
    mem.write(0x10000, bytes(code))
    mem.write(q, bytes.fromhex("07fe"))  # Q: br %r14
    cpu.set_cr(0, 0xE0 | CR0_IEP)
    cpu.set_gpr(15, 0)
    cpu.set_psw(PSW_MASK_64 | DAT, 0x10000)
    cpu.run(count=9)
    assert cpu.psw[1] != PGM_NEW_ADDR, struct.unpack(">H", mem.read(0x8E, 2))
    assert (cpu.psw[1], cpu.gpr(15)) == (target - 4, 7)
    assert mem.read(q + 0x800, 1) == b"\x55"

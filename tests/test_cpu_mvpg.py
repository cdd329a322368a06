"""MOVE PAGE (MVPG): the page copy with its access keys, condition-code option and exceptions.

unicorn's MVPG copies without access keys, never sets a condition code for an invalid page and stores no
operand-access identification, so the CPU traps it (``insns._mvpg``). Each case runs the one instruction
under DAT (an identity-mapped first megabyte) from a fresh state.
"""

import struct

import pytest

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu
from emulator.hw.memory import KEY_C, KEY_F, KEY_R, PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

CODE = 0x10000
SEGMENT_TABLE = 0x20000  # 4 blocks (2048 entries), only entry 0 valid
PAGE_TABLE = 0x24000
SRC, DST = 0x30000, 0x40000
PGM_NEW_ADDR = 0x0BAD0  # the program-new PSW: a disabled wait here
DAT = 1 << 58
PROBLEM = 1 << 48
PTE_INVALID, PTE_PROTECT = 0x400, 0x200
KEY_DEST, KEY_SOURCE, CCO = 0x800, 0x400, 0x100  # general register 0 controls
R1, R2 = 4, 5
MVPG = bytes([0xB2, 0x54, 0x00, R1 << 4 | R2])
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(0x1000))


@pytest.fixture(scope="module")
def cpu():
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def run_mvpg(cpu: Cpu, r0: int, pte: dict | None = None, keys: dict | None = None, psw_key: int = 0,
             problem: bool = False, key_mask: int = 0x8000) -> dict:
    """Run MVPG (R1 -> DST, R2 -> SRC, both a few bytes into their page) with general register 0 = ``r0``,
    extra page-table entry bits per page and storage keys per page; what it did."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    mem.write(CODE, MVPG + bytes.fromhex("0700"))
    mem.fill(SEGMENT_TABLE, 0x4000, 0)
    mem.write(SEGMENT_TABLE, struct.pack(">Q", PAGE_TABLE))
    for i in range(1, 2048):
        mem.write(SEGMENT_TABLE + 8 * i, struct.pack(">Q", 0x20))
    for i in range(256):
        mem.write(PAGE_TABLE + 8 * i, struct.pack(">Q", i << 12 | (pte or {}).get(i << 12, 0)))
    mem.write(SRC, PATTERN)
    mem.fill(DST, 0x1000, 0xEE)
    for frame in range(256):
        mem.keys[frame] = 0
    for page, key in (keys or {}).items():
        mem.keys[page >> 12] = key
    cpu.set_cr(0, 0xE0)
    cpu.set_cr(1, SEGMENT_TABLE | 3)
    cpu.set_cr(3, key_mask << 16)
    cpu.set_gpr(0, r0)
    cpu.set_gpr(R1, DST + 0x123)
    cpu.set_gpr(R2, SRC + 0x456)
    cpu.set_psw(PSW_MASK_64 | DAT | psw_key << 52 | (PROBLEM if problem else 0), CODE)
    cpu.state = OPERATING
    cpu.run(count=1)
    mask, addr = cpu.psw
    out = {"dst": mem.read(DST, 0x1000), "src_key": mem.keys[SRC >> 12], "dst_key": mem.keys[DST >> 12]}
    if addr == PGM_NEW_ADDR:
        _ilc, code = struct.unpack(">HH", mem.read(0x8C, 4))
        _old_mask, old_addr = struct.unpack(">QQ", mem.read(0x150, 16))
        teid = struct.unpack(">Q", mem.read(0xA8, 8))[0]
        out.update(pgm=code, pc=old_addr, oai=mem.read(0xA2, 1)[0], teid=teid)
    else:
        out.update(pgm=None, cc=(mask >> 44) & 3, pc=addr)
    return out


def test_mvpg_copies_the_whole_page_and_sets_reference_and_change_bits(cpu):
    r = run_mvpg(cpu, 0)
    assert r["pgm"] is None and r["cc"] == 0 and r["pc"] == CODE + 4
    assert r["dst"] == PATTERN
    assert r["src_key"] & KEY_R and not r["src_key"] & KEY_C
    assert r["dst_key"] & (KEY_R | KEY_C) == KEY_R | KEY_C


@pytest.mark.parametrize(
    "invalid, cc",
    [((SRC,), 2), ((DST,), 1), ((SRC, DST), 2)],
    ids=["source", "destination", "both"],
)
def test_condition_code_option_turns_an_invalid_page_into_a_condition_code(cpu, invalid, cc):
    r = run_mvpg(cpu, CCO, pte=dict.fromkeys(invalid, PTE_INVALID))
    assert r["pgm"] is None and r["cc"] == cc and r["pc"] == CODE + 4
    assert r["dst"] == b"\xee" * 0x1000


@pytest.mark.parametrize("invalid", [SRC, DST], ids=["source", "destination"])
def test_without_the_option_an_invalid_page_is_a_nullifying_page_translation_exception_with_operand_ids(
    cpu, invalid
):
    r = run_mvpg(cpu, 0, pte={invalid: PTE_INVALID})
    assert r["pgm"] == 0x11 and r["pc"] == CODE  # nullified: the old PSW points at the MVPG
    assert r["oai"] == R1 << 4 | R2
    assert r["teid"] & ~0xFFF == invalid
    assert r["teid"] & 0x4  # bit 61: the operand-access identification is valid
    assert r["dst"] == b"\xee" * 0x1000


def test_a_protected_destination_is_a_protection_exception_even_with_the_option(cpu):
    r = run_mvpg(cpu, CCO, pte={DST: PTE_PROTECT})
    assert r["pgm"] == 0x04 and r["dst"] == b"\xee" * 0x1000
    r = run_mvpg(cpu, 0, pte={SRC: PTE_PROTECT})  # a read-only source is fine
    assert r["pgm"] is None and r["cc"] == 0 and r["dst"] == PATTERN


def test_storage_keys_apply_with_the_psw_key_or_the_key_in_register_0(cpu):
    # destination key 3, PSW key 1: a store with the wrong key
    r = run_mvpg(cpu, 0, keys={DST: 0x30}, psw_key=1)
    assert r["pgm"] == 0x04 and r["dst"] == b"\xee" * 0x1000
    r = run_mvpg(cpu, KEY_DEST | 3 << 4, keys={DST: 0x30}, psw_key=1)
    assert r["pgm"] is None and r["cc"] == 0 and r["dst"] == PATTERN
    # a fetch-protected source with key 3
    r = run_mvpg(cpu, 0, keys={SRC: 0x30 | KEY_F, DST: 0x10}, psw_key=1)
    assert r["pgm"] == 0x04
    r = run_mvpg(cpu, KEY_SOURCE | 3 << 4, keys={SRC: 0x30 | KEY_F, DST: 0x10}, psw_key=1)
    assert r["pgm"] is None and r["dst"] == PATTERN
    # the key in register 0 applies to its operand only
    r = run_mvpg(cpu, KEY_SOURCE | 3 << 4, keys={DST: 0x30}, psw_key=1)
    assert r["pgm"] == 0x04


def test_a_key_in_register_0_in_the_problem_state_needs_its_psw_key_mask_bit(cpu):
    r = run_mvpg(cpu, KEY_DEST | 3 << 4, keys={DST: 0x30}, problem=True, key_mask=0x8000)
    assert r["pgm"] == 0x02
    r = run_mvpg(cpu, KEY_DEST | 3 << 4, keys={DST: 0x30}, problem=True, key_mask=0x8000 | 0x8000 >> 3)
    assert r["pgm"] is None and r["cc"] == 0 and r["dst"] == PATTERN


@pytest.mark.parametrize("r0", [KEY_DEST | KEY_SOURCE, 0x1000, 0x8000], ids=["both-keys", "bit51", "bit48"])
def test_reserved_register_0_bits_are_a_specification_exception(cpu, r0):
    r = run_mvpg(cpu, r0)
    assert r["pgm"] == 0x06 and r["pc"] == CODE + 4

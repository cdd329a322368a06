"""Enhanced DAT in the table walk (``emulator.hw.dat``) and on the CPU: EDAT-1 1 MiB frames and region
protection, EDAT-2 2 GiB frames, large frames being absolute (no prefixing), the private-space checks,
and a CR0 change of the EDAT control reaching translations the TLB already holds."""

import struct

import pytest

from emulator.errors import ProgramException
from emulator.hw import dat
from emulator.hw.cpu import OPERATING, PSW_MASK_64, PSW_MASK_DAT, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

R3T, SGT, PGT = 0x10000, 0x20000, 0x30000  # region-third, segment and page table (real addresses)
R3_ASCE = R3T | 0x4 | 0x3  # designation type 1 (region third), table length 3 (2048 entries)
RTTE = 0x4 | 0x3  # region-third entry: TT 1, TL 3
FC, PROT, COMMON, INVALID = 0x400, 0x200, 0x10, 0x20


def tables(rtte: int, ste: int, pte: int = 0x55000) -> memoryview:
    """A 4 MiB storage image: region-third entry 0, segment entry 0 and page entry 5 as given."""
    buf = bytearray(4 << 20)
    struct.pack_into(">Q", buf, R3T, rtte)
    for i in range(1, 2048):
        struct.pack_into(">Q", buf, R3T + 8 * i, INVALID | 0x4)
    struct.pack_into(">Q", buf, SGT, ste)
    for i in range(1, 2048):
        struct.pack_into(">Q", buf, SGT + 8 * i, INVALID)
    for i in range(256):
        struct.pack_into(">Q", buf, PGT + 8 * i, 0x400)
    struct.pack_into(">Q", buf, PGT + 8 * 5, pte)
    return memoryview(buf)


def walk(buf, vaddr, write=False, edat1=False, edat2=False, asce=R3_ASCE):
    return dat.translate(buf, lambda r: r, asce, vaddr, write, 0, edat1, edat2=edat2)


def test_a_segment_entry_s_format_control_is_ignored_without_edat1():
    buf = tables(SGT | RTTE, PGT | FC)
    t = walk(buf, 0x5123)
    assert (t.address, t.absolute) == (0x55123, False)
    assert t.edat_dependent  # the result changes with CR0's EDAT control


def test_edat1_maps_a_1m_frame_at_an_absolute_address():
    buf = tables(SGT | RTTE, 0x300000 | FC)
    t = walk(buf, 0xABCDE, edat1=True)
    assert t == dat.Translation(0x3ABCDE, False, True, True)


def test_a_region_protection_bit_counts_only_with_edat1():
    buf = tables(SGT | RTTE | PROT, PGT)
    assert walk(buf, 0x5000, write=True).address == 0x55000  # ignored
    with pytest.raises(ProgramException) as e:
        walk(buf, 0x5008, write=True, edat1=True)
    assert e.value.code == dat.PGM_PROTECTION
    assert e.value.teid == 0x5000 | dat.TEID_STORE | dat.TEID_DAT_PROT


def test_edat2_maps_a_2g_frame_and_without_it_the_entry_designates_a_segment_table():
    buf = tables(0x80000000 | RTTE | FC, 0)
    t = walk(buf, 0x12345678, edat1=True, edat2=True)
    assert t == dat.Translation(0x80000000 | 0x12345678, False, True, True)
    with pytest.raises(ProgramException) as e:  # a segment table at 2 GiB: beyond this storage
        walk(buf, 0x12345678, edat1=True)
    assert e.value.code == dat.PGM_ADDRESSING


def test_a_protected_large_frame_refuses_stores():
    buf = tables(SGT | RTTE, 0x300000 | FC | PROT)
    assert walk(buf, 0x10, edat1=True).protected
    with pytest.raises(ProgramException) as e:
        walk(buf, 0x10, write=True, edat1=True)
    assert e.value.code == dat.PGM_PROTECTION


def test_common_segments_and_regions_are_translation_specifications_in_a_private_space():
    buf = tables(SGT | RTTE, PGT | COMMON)
    assert walk(buf, 0x5000).address == 0x55000
    with pytest.raises(ProgramException) as e:
        walk(buf, 0x5000, asce=R3_ASCE | 0x100)
    assert e.value.code == dat.PGM_TRANSLATION_SPEC
    buf = tables(SGT | RTTE | COMMON, PGT)
    with pytest.raises(ProgramException) as e:
        walk(buf, 0x5000, edat1=True, edat2=True, asce=R3_ASCE | 0x100)
    assert e.value.code == dat.PGM_TRANSLATION_SPEC


# -- on the CPU ----------------------------------------------------------------------------------------------

CODE = 0x40000
PGM_NEW_ADDR = 0x0BAD0
CR0_EDAT = 1 << 23


@pytest.fixture
def cpu():
    mem = PhysicalMemory(4 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    # identity-map the first 4 MiB with 4 KiB pages: four segments, page tables at 0x100000
    for s in range(4):
        mem.write(SGT + 8 * s, struct.pack(">Q", 0x100000 + 0x800 * s))
        for p in range(256):
            mem.write(0x100000 + 0x800 * s + 8 * p, struct.pack(">Q", (s << 20) | (p << 12)))
    for s in range(4, 2048):
        mem.write(SGT + 8 * s, struct.pack(">Q", INVALID))
    c.set_cr(1, SGT | 0x3)  # a segment-table ASCE
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    yield c
    c.close()


def run(cpu: Cpu, code: bytes, regs: dict[int, int]) -> None:
    cpu.mem.write(CODE, code + bytes.fromhex("0700"))
    for r, v in regs.items():
        cpu.set_gpr(r, v)
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, CODE)
    cpu.state = OPERATING
    while CODE <= cpu.pc < CODE + len(code):
        cpu.run(count=1)
    assert cpu.pc == CODE + len(code), f"stopped at {cpu.pc:#x}"


def test_a_large_frame_is_not_subject_to_prefixing(cpu):
    mem = cpu.mem
    cpu.set_prefix(0x200000)
    mem.write(0x200000 + 0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    mem.write(0x100, b"ABSOLUT0")
    mem.write(0x200100, b"PREFIXED")
    cpu.set_cr(0, CR0_EDAT)
    lg = bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2)
    run(cpu, lg, {2: 0x100})
    assert cpu.gpr(3).to_bytes(8, "big") == b"PREFIXED"  # a page-table entry's frame is real
    mem.write(SGT, struct.pack(">Q", 0 | FC))  # segment 0 as a 1 MiB frame at absolute 0
    cpu.flush_tlb()
    run(cpu, lg, {2: 0x100})
    assert cpu.gpr(3).to_bytes(8, "big") == b"ABSOLUT0"


def test_turning_edat_off_reaches_a_large_frame_the_tlb_holds(cpu):
    mem = cpu.mem
    mem.write(SGT + 8 * 2, struct.pack(">Q", 0x100000 + 0x800 * 2 | FC))  # segment 2: FC on
    # as a 1 MiB frame it is absolute 0x100000 (the page tables); through its page table, itself
    mem.write(0x200018, struct.pack(">Q", 0x2222222222222222))
    mem.write(0x100018, struct.pack(">Q", 0x1111111111111111))
    mem.write(0x300000, struct.pack(">Q", 0))  # CR0 with EDAT off, for lctlg
    code = (
        bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2)
        + bytes.fromhex("eb004000" "002f")  # lctlg %c0,%c0,0(%r4)
        + bytes.fromhex("e3502000" "0004")  # lg %r5,0(%r2)
    )
    cpu.set_cr(0, CR0_EDAT)
    run(cpu, code, {2: 0x200018, 4: 0x300000})
    assert cpu.gpr(3) == 0x1111111111111111  # EDAT on: the 1 MiB frame
    assert cpu.gpr(5) == 0x2222222222222222  # EDAT off: the FC bit is ignored, the page table maps


def test_a_cr0_reload_that_changes_no_translation_control_still_sees_an_invalidated_page(cpu):
    """An LCTLG of CR0 bits no translation depends on keeps the TLB (a kvm-unit-tests interruption handler
    does that twice per interruption); the next access still sees an IPTE made in between."""
    mem = cpu.mem
    mem.write(0x300000, struct.pack(">Q", 0x40000))  # CR0: AFP on (not a translation control)
    mem.write(0x200000, b"FRAME-2M")
    mem.write(0x210000, b"FRAME+64")
    code = (
        bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2)
        + bytes.fromhex("eb004000" "002f")  # lctlg %c0,%c0,0(%r4)
        + bytes.fromhex("b2210061")  # ipte %r6,%r1 (page 0x200000's entry becomes invalid)
        + bytes.fromhex("e3502000" "0004")  # lg %r5,0(%r2): a page-translation exception now
    )
    mem.write(CODE, code + bytes.fromhex("0700"))
    for r, v in {2: 0x200000, 4: 0x300000, 6: 0x100000 + 0x800 * 2, 1: 0x200000}.items():
        cpu.set_gpr(r, v)
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, CODE)
    cpu.state = OPERATING
    for _ in range(4):
        cpu.run(count=1)
    assert cpu.gpr(3).to_bytes(8, "big") == b"FRAME-2M"
    assert cpu.pc == PGM_NEW_ADDR
    assert struct.unpack(">H", mem.read(0x8E, 2))[0] == dat.PGM_PAGE_TRANSLATION


def test_sie_guest_storage_through_a_host_1m_frame_is_not_prefixed(cpu):
    """The level-2 SIE maps guest absolute storage through the host's DAT; a host 1 MiB frame is absolute
    (the host's prefix area must not be swapped in)."""
    from emulator.hw.sie import SieBlock
    from emulator.machine.lpar_sie import _Relocation

    cpu.mem.write(SGT, struct.pack(">Q", 0 | FC))  # host virtual 0-1 MiB: the 1 MiB frame at absolute 0
    cpu.set_cr(0, CR0_EDAT)
    cpu.set_prefix(0x200000)
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, CODE)
    sd = SieBlock()
    sd.mso, sd.msl = 0, 0xFFFFF
    reloc = _Relocation(cpu, sd, cpu.mem.buffer())
    assert reloc.to_host(0x100, False, False) == 0x100  # not 0x200100
    cpu.mem.write(SGT, struct.pack(">Q", 0x100000))  # a page table: page 0 -> real 0, prefixed
    assert reloc.to_host(0x100, False, False) == 0x200100


# -- COMPARE AND REPLACE DAT TABLE ENTRY (enhanced-DAT facility 2), as Linux changes its kernel mapping ------

PT2 = 0x100000 + 0x800 * 2  # the page table of segment 2 (0x200000-0x2fffff)


def crdte(r1: int, r2: int, r3: int = 12, m4: int = 0) -> bytes:
    return bytes((0xB9, 0x8F, r3 << 4 | m4, r1 << 4 | r2))


def _crdte_code() -> bytes:
    return (
        bytes.fromhex("e3302000" "0004")  # lg %r3,0(%r2)
        + crdte(0, 10)  # crdte %r0,%r10,%r12
        + bytes.fromhex("b2220070")  # ipm %r7
        + bytes.fromhex("e3502000" "0004")  # lg %r5,0(%r2)
    )


def _setup_crdte(cpu: Cpu, regs: dict[int, int]) -> None:
    cpu.mem.write(0x200000, b"FRAME-2M")
    cpu.mem.write(0x210000, b"FRAME+64")
    cpu.mem.write(CODE, _crdte_code() + bytes.fromhex("0700"))
    for r, v in {2: 0x200000, 12: SGT | 0x3, **regs}.items():
        cpu.set_gpr(r, v)
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, CODE)
    cpu.state = OPERATING


def test_crdte_replaces_a_page_table_entry_and_the_tlb_forgets_the_old_one(cpu):
    _setup_crdte(cpu, {0: 0x200000, 1: 0x210000, 10: PT2 | 0x00, 11: 0x200000})
    cpu.run(count=4)
    assert cpu.gpr(3).to_bytes(8, "big") == b"FRAME-2M"
    assert (cpu.gpr(7) >> 28) & 3 == 0  # replaced
    assert cpu.gpr(5).to_bytes(8, "big") == b"FRAME+64"  # the translation the TLB held is gone
    assert cpu.mem.read(PT2, 8) == struct.pack(">Q", 0x210000)


def test_crdte_with_a_different_entry_loads_it_and_replaces_nothing(cpu):
    _setup_crdte(cpu, {0: 0x123000, 1: 0x210000, 10: PT2, 11: 0x200000})
    cpu.run(count=4)
    assert (cpu.gpr(7) >> 28) & 3 == 1
    assert cpu.gpr(0) == 0x200000  # the current entry
    assert cpu.gpr(5).to_bytes(8, "big") == b"FRAME-2M"
    assert cpu.mem.read(PT2, 8) == struct.pack(">Q", 0x200000)


def test_crdte_on_a_segment_table_indexes_by_segment(cpu):
    """Designation type 0b100 (0x10 in R2): the segment index of R2+1 selects the entry; made invalid,
    the next access to the segment is a segment-translation exception."""
    _setup_crdte(cpu, {0: PT2, 1: INVALID, 10: SGT | 0x10, 11: 0x2ABCDE})
    for _ in range(4):
        cpu.run(count=1)
    assert cpu.mem.read(SGT + 16, 8) == struct.pack(">Q", INVALID)
    assert cpu.pc == PGM_NEW_ADDR
    assert struct.unpack(">H", cpu.mem.read(0x8E, 2))[0] == dat.PGM_SEGMENT_TRANSLATION


@pytest.mark.parametrize(
    "regs",
    [{10: PT2 | 0x04, 11: 0}, {10: PT2 | 0x08, 11: 0}, {10: PT2 | 0x0C, 11: 0}],
    ids=["001", "010", "011"],
)
def test_crdte_with_a_reserved_designation_type_is_a_specification_exception(cpu, regs):
    _setup_crdte(cpu, {0: 0x200000, 1: 0x210000, **regs})
    cpu.run(count=2)
    assert cpu.pc == PGM_NEW_ADDR
    assert struct.unpack(">H", cpu.mem.read(0x8E, 2))[0] == 0x06
    assert cpu.mem.read(PT2, 8) == struct.pack(">Q", 0x200000)


def test_crdte_with_an_odd_register_is_a_specification_exception(cpu):
    cpu.mem.write(CODE, crdte(1, 10) + bytes.fromhex("0700"))
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    cpu.run(count=1)
    assert struct.unpack(">H", cpu.mem.read(0x8E, 2))[0] == 0x06


def test_crdte_without_facility_78_is_an_operation_exception():
    fac = bytearray(facility_list(False))
    fac[78 // 8] &= ~(0x80 >> (78 % 8))
    mem = PhysicalMemory(1 << 20)
    c = Cpu(mem, 0, TodClock(), bytes(fac), 0)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    mem.write(CODE, crdte(0, 10) + bytes.fromhex("0700"))
    c.set_psw(PSW_MASK_64, CODE)
    c.state = OPERATING
    c.run(count=1)
    assert struct.unpack(">H", mem.read(0x8E, 2))[0] == 0x01
    c.close()

"""Dynamic address translation in Python: the z/Architecture table walk the CPU's TLB fill uses.

The walk follows the Principles of Operation ("Dynamic Address Translation"): an address-space-control element
(ASCE) designates a region-first, region-second, region-third or segment table; each entry is checked for the
invalid bit, the table type, the table offset/length, and the DAT-protection bit. With the enhanced-DAT
facility 1 enabled (CR0 bit 40) a segment entry with the format-control bit maps a 1 MiB frame and region
entries carry a DAT-protection bit; with enhanced-DAT 2 as well (facility 78) a region-third entry with the
format-control bit maps a 2 GiB frame. A large frame's address is absolute: prefixing does not apply to it
(only a page-table entry's frame address is real). Table origins are real addresses: the caller passes
``real_to_abs`` (prefixing, and for a SIE guest the guest-memory mapping).

Exceptions are raised as ``ProgramException`` with the code and the translation-exception identification
(TEID) that the machine stores at 0xA8: the failing page, the fetch/store indication (0x800 / 0x400), the
DAT-protection bit (0x4) and the address-space identifier (0 primary, 2 secondary, 3 home).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, NamedTuple

from emulator.errors import ProgramException

__all__ = [
    "PGM_PROTECTION",
    "PGM_ADDRESSING",
    "PGM_SEGMENT_TRANSLATION",
    "PGM_PAGE_TRANSLATION",
    "PGM_TRANSLATION_SPEC",
    "PGM_ASCE_TYPE",
    "PGM_REGION_FIRST",
    "PGM_REGION_SECOND",
    "PGM_REGION_THIRD",
    "PGM_SECURE_STORAGE",
    "Translation",
    "translate",
    "teid",
]

PGM_PROTECTION: Final = 0x04
PGM_ADDRESSING: Final = 0x05
PGM_SEGMENT_TRANSLATION: Final = 0x10
PGM_PAGE_TRANSLATION: Final = 0x11
PGM_TRANSLATION_SPEC: Final = 0x12
PGM_ASCE_TYPE: Final = 0x38
PGM_REGION_FIRST: Final = 0x39
PGM_REGION_SECOND: Final = 0x3A
PGM_REGION_THIRD: Final = 0x3B
PGM_SECURE_STORAGE: Final = 0x3D

TEID_STORE: Final = 0x400
TEID_FETCH: Final = 0x800
TEID_DAT_PROT: Final = 0x4
#: TEID protection code 101 (bits 56, 60, 61 with ESOP-2): instruction-execution protection
TEID_IEP: Final = 0x84

_ENTRY_INVALID: Final = 0x20  # bit 58 of region and segment entries
_PTE_INVALID: Final = 0x400  # bit 53
_PTE_PROTECT: Final = 0x200  # bit 54
_PTE_ZERO: Final = 0x800  # bit 52 must be zero
_ENTRY_IEP: Final = 0x100  # bit 55 of a page-table entry or a 1 MiB segment-table entry
_SEG_FC: Final = 0x400  # bit 53: format control (1 MiB frame, EDAT-1)
_SEG_PROTECT: Final = 0x200  # bit 54
_SEG_COMMON: Final = 0x10  # bit 59: common segment
_RTE_PROTECT: Final = 0x200  # bit 54 (with EDAT-1)
_RTTE_FC: Final = 0x400  # bit 53 of a region-third entry: format control (2 GiB frame, EDAT-2)
_RTTE_COMMON: Final = 0x10  # bit 59 of a region-third entry: common region (EDAT-2)
_ASCE_PRIVATE: Final = 0x100  # bit 55: private-space control
_ASCE_REAL: Final = 0x20  # bit 58: real-space control
_SFAA: Final = 0xFFFFFFFFFFF00000  # segment-frame absolute address (bits 0-43)
_RFAA: Final = 0xFFFFFFFF80000000  # region-frame absolute address (bits 0-32)

_u64 = struct.Struct(">Q").unpack_from

# region levels: (index shift, translation-exception code, table type value TT)
_LEVELS: Final = (
    (53, PGM_REGION_FIRST, 3),
    (42, PGM_REGION_SECOND, 2),
    (31, PGM_REGION_THIRD, 1),
)


def teid(vaddr: int, write: bool, asid: int, dat_prot: bool = False) -> int:
    """The translation-exception identification for an access exception at ``vaddr``."""
    return (
        (vaddr & ~0xFFF & 0xFFFFFFFFFFFFFFFF)
        | (TEID_STORE if write else TEID_FETCH)
        | (TEID_DAT_PROT if dat_prot else 0)
        | asid
    )


class Translation(NamedTuple):
    """The result of a table walk.

    ``address`` is a real address, or an absolute one when ``absolute`` is set (a 1 MiB or 2 GiB frame of
    enhanced DAT, whose entry holds an absolute frame address: no prefixing). ``protected``: a
    DAT-protection bit covers the page. ``edat_dependent``: an entry of the walk had a bit whose meaning
    depends on whether enhanced DAT is enabled (a region entry's DAT-protection bit, a format-control or
    common-region bit), so the result may change when CR0's EDAT control does.
    """

    address: int
    protected: bool
    absolute: bool
    edat_dependent: bool = False


def translate(
    buf: memoryview,
    real_to_abs: Callable[[int], int],
    asce: int,
    vaddr: int,
    write: bool,
    asid: int = 0,
    edat1: bool = False,
    iep: bool = False,
    edat2: bool = False,
) -> Translation:
    """Translate a virtual address through the tables designated by ``asce``.

    ``edat1``: the enhanced-DAT facility 1 applies (installed and CR0 bit 40 on); ``edat2``: facility 2
    as well (installed; it is enabled by the same control bit). A store to a DAT-protected page raises
    PGM 0x04 here when ``write`` is set; otherwise the result says whether the page is protected.

    ``iep``: the access is an instruction fetch with instruction-execution protection on (CR0 bit 43):
    a page whose page-table entry (or, for a 1 MiB or 2 GiB frame, segment- or region-third-table entry)
    has its IEP bit (55) set raises PGM 0x04 with the TEID's protection code for IEP (bits 56 and 61,
    ESOP-2).

    Raises: ProgramException: translation exceptions (0x10, 0x11, 0x12, 0x38-0x3B), protection (0x04) for a
    store to a DAT-protected page or a fetch from an IEP page, addressing (0x05) when a table lies outside
    memory, secure-storage access (0x3D) when ``real_to_abs`` refuses a table entry in secure storage (the
    TEID's bit 61, as ``access.secure_teid`` sets it).
    """
    vaddr &= 0xFFFFFFFFFFFFFFFF
    if asce & _ASCE_REAL:
        return Translation(vaddr, False, False)
    edat2 = edat2 and edat1
    dependent = 0

    def exc(code: int, dat_prot: bool = False, entry_real: int | None = None) -> ProgramException:
        e = ProgramException(code, teid(vaddr, write, asid, dat_prot))
        e.entry_real = entry_real  # type: ignore[attr-defined] - LRA reports the invalid entry's address
        return e

    def entry(table_real: int, index: int) -> int:
        try:
            addr = real_to_abs(table_real + index * 8)
        except ProgramException as e:
            # a table in secure storage is the walk's own access exception (PGM 0x3D, ``access``), with the
            # TEID of the address being translated; anything else a table access refuses is addressing
            if e.code == PGM_SECURE_STORAGE:
                raise exc(PGM_SECURE_STORAGE, dat_prot=True) from None
            raise exc(PGM_ADDRESSING) from None
        if addr + 8 > len(buf):
            raise exc(PGM_ADDRESSING)
        return int(_u64(buf, addr)[0])

    dt = (asce >> 2) & 3
    origin = asce & ~0xFFF & 0xFFFFFFFFFFFFFFFF
    length = asce & 3
    offset = 0
    protected = False
    # the designated table must cover the high-order bits of the address
    if dt == 0 and vaddr >> 31:
        raise exc(PGM_ASCE_TYPE)
    if dt == 1 and vaddr >> 42:
        raise exc(PGM_ASCE_TYPE)
    if dt == 2 and vaddr >> 53:
        raise exc(PGM_ASCE_TYPE)
    for shift, code, tt in _LEVELS:
        if tt > dt:
            continue
        index = (vaddr >> shift) & 0x7FF
        if not offset <= index >> 9 <= length:
            raise exc(code)
        e = entry(origin, index)
        if e & _ENTRY_INVALID:
            raise exc(code, entry_real=origin + index * 8)
        if (e >> 2) & 3 != tt:
            raise exc(PGM_TRANSLATION_SPEC)
        dependent |= e & (_RTE_PROTECT | (_RTTE_FC | _RTTE_COMMON if tt == 1 else 0))
        if edat1 and e & _RTE_PROTECT:  # without EDAT-1 the bit is ignored
            protected = True
        if tt == 1 and edat2:
            if e & _RTTE_COMMON and asce & _ASCE_PRIVATE:
                raise exc(PGM_TRANSLATION_SPEC)
            if e & _RTTE_FC:
                if iep and e & _ENTRY_IEP:  # a 2 GiB frame's entry has the IEP bit too (bit 55)
                    raise ProgramException(PGM_PROTECTION, teid(vaddr, False, asid) | TEID_IEP)
                return _frame(exc, (e & _RFAA) | (vaddr & ~_RFAA), protected, write)
        origin = e & ~0xFFF & 0xFFFFFFFFFFFFFFFF
        offset = (e >> 6) & 3
        length = e & 3
    sx = (vaddr >> 20) & 0x7FF
    if not offset <= sx >> 9 <= length:
        raise exc(PGM_SEGMENT_TRANSLATION)
    e = entry(origin, sx)
    if e & _ENTRY_INVALID:
        raise exc(PGM_SEGMENT_TRANSLATION, entry_real=origin + sx * 8)
    if (e >> 2) & 3 != 0:
        raise exc(PGM_TRANSLATION_SPEC)
    if e & _SEG_COMMON and asce & _ASCE_PRIVATE:
        raise exc(PGM_TRANSLATION_SPEC)
    if e & _SEG_PROTECT:
        protected = True
    dependent |= e & _SEG_FC
    if edat1 and e & _SEG_FC:  # without EDAT-1 the bit is ignored and the entry designates a page table
        if iep and e & _ENTRY_IEP:
            raise ProgramException(PGM_PROTECTION, teid(vaddr, False, asid) | TEID_IEP)
        return _frame(exc, (e & _SFAA) | (vaddr & ~_SFAA), protected, write)
    pto = e & ~0x7FF & 0xFFFFFFFFFFFFFFFF
    pte = entry(pto, (vaddr >> 12) & 0xFF)
    if pte & _PTE_INVALID:
        raise exc(PGM_PAGE_TRANSLATION, entry_real=pto + ((vaddr >> 12) & 0xFF) * 8)
    if pte & _PTE_ZERO:
        raise exc(PGM_TRANSLATION_SPEC)
    if pte & _PTE_PROTECT:
        protected = True
    if iep and pte & _ENTRY_IEP:
        raise ProgramException(PGM_PROTECTION, teid(vaddr, False, asid) | TEID_IEP)
    if protected and write:
        raise exc(PGM_PROTECTION, dat_prot=True)
    return Translation(
        (pte & ~0xFFF & 0xFFFFFFFFFFFFFFFF) | (vaddr & 0xFFF), protected, False, bool(dependent)
    )


def _frame(exc: Callable[..., ProgramException], absolute: int, protected: bool, write: bool) -> Translation:
    """A large frame's translation: its absolute address, and DAT protection for a store."""
    if protected and write:
        raise exc(PGM_PROTECTION, dat_prot=True)
    return Translation(absolute, protected, True, True)

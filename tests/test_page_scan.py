"""A page scanned again over the range a store changed finds exactly the exits a whole scan finds.

Pages are drawn from the bytes that make hits (trapped opcodes, EXECUTE RELATIVE LONGs with targets in and
out of the page, relative-long loads, STNSM/STOSM) so that stores create, destroy and move them, EXRL targets
included; the whole scan of the new bytes is the reference.
"""

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.hw.page_scan import rescan, scan

#: bytes that start or feed hits: EXRL (C6x0), LRL-style (C4/C6 with an extension), DIAG, SSM, STNSM,
#: STOSM, LPSWE, SERVC, LCTLG's 0xEB..0x2F, no-ops
_INTERESTING = [
    0xC6, 0x00, 0x10, 0xC4, 0x0D, 0x83, 0x80, 0xAC, 0xAD, 0xB2, 0xB2, 0x20, 0xEB, 0x2F, 0x07, 0xFF,
]  # fmt: skip


_SIX_BYTE_HITS = [
    bytes.fromhex("e31020000003"), bytes.fromhex("e31020000004"), bytes.fromhex("eb0f0000002f"),
    bytes.fromhex("eb0f0000002e"), bytes.fromhex("c41800000001"), bytes.fromhex("c41800000002"),
]


def _exrl(at: int, target: int, r1: int = 0) -> bytes:
    return bytes([0xC6, r1 << 4]) + struct.pack(">i", (target - at) // 2)


@st.composite
def page_and_store(draw):
    page = bytearray(random.Random(draw(st.integers(0, 2**32))).randbytes(0x1004))
    planted = []
    for _ in range(draw(st.integers(0, 40))):  # hits and EXRLs sprinkled over the page
        at = draw(st.integers(0, 0xFFA)) & ~1
        kind = draw(st.integers(0, 3))
        if kind == 0:
            page[at : at + 6] = _exrl(at, draw(st.integers(-0x800, 0x1800)) & ~1, draw(st.integers(0, 1)))
        elif kind == 1:  # six-byte hits, decided by their last bytes: LRAG (E3..03), LCTLG (EB..2F), LGRL
            page[at : at + 6] = draw(st.sampled_from(_SIX_BYTE_HITS))
        else:
            page[at : at + 2] = bytes(draw(st.sampled_from(_INTERESTING)) for _ in range(2))
        planted.append(at)
    if planted and draw(st.booleans()):  # a store into (the tail of) a planted instruction
        lo = min(0xFFF, draw(st.sampled_from(planted)) + draw(st.integers(0, 6)))
    else:
        lo = draw(st.integers(0, 0xFFF))
    hi = draw(st.integers(lo + 1, min(0x1000, lo + 64)))
    data = draw(st.one_of(
        st.binary(min_size=hi - lo, max_size=hi - lo),
        st.lists(st.sampled_from(_INTERESTING), min_size=hi - lo, max_size=hi - lo).map(bytes),
    ))  # fmt: skip
    return bytes(page), lo, hi, data, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(page_and_store())
def test_a_rescan_of_the_stored_range_equals_a_whole_scan(case):
    page, lo, hi, data, fpo = case
    old = scan(page, fpo)
    new_page = page[:lo] + data + page[hi:]
    assert rescan(new_page, old, lo, hi, fpo) == scan(new_page, fpo)


def test_a_store_into_an_exrl_target_redecides_the_exrl():
    page = bytearray(0x1000)
    page[0x100:0x106] = _exrl(0x100, 0x800)  # EXRL of a no-op target: native, no exit
    page[0x800:0x802] = bytes.fromhex("0700")
    old = scan(bytes(page), False)
    assert 0x100 not in old.hits and (0x100, 0x800) in old.near
    page[0x800:0x804] = bytes.fromhex("8300009c")  # the target becomes a DIAG: the EXRL must trap
    new = rescan(bytes(page), old, 0x800, 0x804, False)
    assert 0x100 in new.hits and 0x800 in new.hits
    assert new == scan(bytes(page), False)

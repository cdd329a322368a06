"""The page scan: which offsets of a 4 KiB code page are exits, scanned whole or again over a changed range.

The patterns and the per-instruction decisions are ``traps``'s; this module applies them to a page. A hit at
offset ``h`` depends on the bytes ``h .. h+5`` only, except an EXECUTE RELATIVE LONG's, which also depends on
its target's bytes: so a store into ``[lo, hi)`` changes only the hits from ``lo - 5`` to ``hi`` and those of
the page's EXRLs whose target overlaps the store (``PageScan.near`` keeps them all). ``rescan`` scans just
that, and gives what a whole scan of the new bytes gives (a property ``tests/test_page_scan.py`` checks):
Linux stores its CPU timer and save areas into its lowcore, which holds code, at every system call.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final, NamedTuple

from emulator.hw.traps import (
    _EXRL_FAR,
    _EXRL_NATIVE,
    _SYSTEM_MASK_OPS,
    _TRAP_RES,
    _exrl_decision,
    _rl_misaligned,
    _system_mask_native,
)

__all__ = ["PageScan", "scan", "rescan"]

#: a hit's decision reads at most this many bytes from its offset (the longest instruction)
_REACH: Final = 6


class PageScan(NamedTuple):
    """A page's scan: ``hits`` the offsets that are exits (ascending); ``far`` those of them that are
    EXECUTE RELATIVE LONGs with a target on another page (decided at each fetch fill through that page's
    mapping); ``near`` (offset, target offset) of every EXRL whose target lies in the page, exit or not."""

    hits: tuple[int, ...]
    far: frozenset[int]
    near: tuple[tuple[int, int], ...]


def _hits(page: bytes, fpo: bool, start: int, end: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """The hits at offsets [start, end) (``start`` even), the far EXRLs among them, and the near EXRLs."""
    found: list[int] = []
    far: list[int] = []
    near: list[tuple[int, int]] = []
    # (the search ends where a hit before ``end`` could still read: a store's rescan looks at its few bytes,
    # not at the rest of the page)
    for m in _TRAP_RES[1 if fpo else 0].finditer(page, start, min(0x1000, end + _REACH - 1)):
        h = m.start()
        if h >= end:
            break
        if h & 1:
            continue
        op = page[h]
        if op in _SYSTEM_MASK_OPS and _system_mask_native(op, page[h + 1]):
            continue
        if op in (0xC4, 0xC6) and page[h + 1] & 0xF:
            # a relative-long load, store or compare: an exit only if its operand is misaligned
            if not _rl_misaligned(page, h, h):
                continue
        elif op == 0xC6:
            # an EXECUTE RELATIVE LONG is an exit only if its target may need Python; one whose target lies
            # on another page is decided at each fetch fill of the page
            if h + 6 <= 0x1000:
                t = h + 2 * int.from_bytes(page[h + 2 : h + 6], "big", signed=True)
                if 0 <= t < 0x1000:
                    near.append((h, t))
            decision = _exrl_decision(page, h, fpo)
            if decision == _EXRL_NATIVE:
                continue
            if decision == _EXRL_FAR:
                far.append(h)
        found.append(h)
    return found, far, near


def scan(page: bytes, fpo: bool) -> PageScan:
    """Scan a whole page (its 4 KiB, and up to 4 bytes of the next page for operands that cross into it).
    ``fpo``: the fixed-point-overflow mask is on (the signed arithmetic is trapped too)."""
    found, far, near = _hits(page, fpo, 0, 0x1000)
    return PageScan(tuple(found), frozenset(far), tuple(near))


def rescan(page: bytes, old: PageScan, lo: int, hi: int, fpo: bool) -> PageScan:
    """The scan of ``page`` whose bytes [lo, hi) (offsets) changed since ``old`` was its scan."""
    start = max(0, lo - (_REACH - 1)) & ~1
    found, far, near = _hits(page, fpo, start, hi)
    if not old.near and not near:
        # the common case, a data store near no EXECUTE RELATIVE LONG: only the hits in the range can change
        i, j = bisect_left(old.hits, start), bisect_left(old.hits, hi)
        if old.hits[i:j] == tuple(found) and sorted(h for h in old.far if start <= h < hi) == far:
            return old
    hits = {h for h in old.hits if not start <= h < hi}
    hits.update(found)
    for h, t in old.near:  # EXRLs outside the range whose target overlaps it: decided again
        if not start <= h < hi and t < hi and t + _REACH > lo:
            hits.discard(h)
            if _exrl_decision(page, h, fpo) != _EXRL_NATIVE:
                hits.add(h)
    return PageScan(
        tuple(sorted(hits)),
        frozenset(h for h in old.far if not start <= h < hi).union(far),
        tuple(sorted([n for n in old.near if not start <= n[0] < hi] + near)),
    )

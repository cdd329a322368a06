"""The Linux kernel's own symbol table (kallsyms), found and decoded in a decompressed kernel image.

``scripts/kallsyms`` links these arrays into the kernel's read-only data (all big-endian on s390x):

* ``kallsyms_num_syms`` (u32) and ``kallsyms_names``: one entry per symbol, a length (one byte; two when
  the first has bit 0x80: low 7 bits, then the next byte's value times 128) and that many token numbers;
  the expanded text is the symbol's type letter (``t``, ``T``, ``d``, ...) and its name;
* ``kallsyms_markers`` (u32): the offset in ``kallsyms_names`` of every 256th entry;
* ``kallsyms_token_table``: 256 NUL-terminated strings, ``kallsyms_token_index`` (u16): where each starts;
* ``kallsyms_offsets`` (u32 per symbol) and ``kallsyms_relative_base`` (u64): address = base + offset.

Kernels before 6.4 put the offsets and the base first, then the count, names, markers, token table and
index; 6.4 and later put the count first and the offsets and base after the token index. Nothing here
needs the vmlinux: the token table is found by its single-character tokens ``"0".."9"`` (digits occur in
symbol names, so they stay tokens of their own), the index by agreeing with it, and every other array by
its place next to them, each checked against the others (the markers against the names, the offsets
sorted and the count matching), so a table that does not decode whole is an error, never a half-table.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from emulator.errors import LoadError

__all__ = ["KallsymsTable", "find_kallsyms", "Symbol"]

_DIGITS: Final = re.compile(re.escape(b"".join(bytes([c]) + b"\0" for c in b"0123456789")))


@dataclass(frozen=True)
class Symbol:
    """One kernel symbol: its name, address and ``nm`` type letter."""

    name: str
    address: int
    kind: str


@dataclass(frozen=True)
class KallsymsTable:
    """A decoded kallsyms table and where its arrays lie in the image (offsets into the image)."""

    symbols: tuple[Symbol, ...]
    relative_base: int
    names_at: int
    token_table_at: int
    offsets_at: int
    base_at: int  # where kallsyms_relative_base lies
    layout: str  # "6.4+" (count first) or "pre-6.4" (offsets first)

    def by_name(self) -> dict[str, int]:
        """Name -> address; where a name occurs twice (static functions of several files) the first."""
        out: dict[str, int] = {}
        for s in self.symbols:
            out.setdefault(s.name, s.address)
        return out


def _u16(img: bytes, at: int) -> int:
    return int(struct.unpack_from(">H", img, at)[0])


def _u32(img: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", img, at)[0])


def _tokens(img: bytes, digits_at: int) -> tuple[int, int, list[bytes]] | None:
    """(token table offset, token index offset, the 256 tokens) for a digits run at ``digits_at``, or None
    when no token index after it agrees with a table there."""
    limit = min(len(img) - 512, digits_at + 8192)
    q = (digits_at + 20 + 1) & ~1
    while q <= limit:
        if img[q] == 0 and img[q + 1] == 0:  # token_index[0] == 0
            idx = struct.unpack_from(">256H", img, q)
            start = digits_at - idx[0x30]
            if start >= 0 and all(idx[i] < idx[i + 1] for i in range(255)):
                end = start + idx[255]
                nul = img.find(b"\0", end, q)
                ok = (
                    nul >= 0
                    and q - (nul + 1) < 8  # the index follows the table, aligned
                    and all(img[start + idx[0x30 + k]: start + idx[0x30 + k] + 2] == bytes([0x30 + k, 0])
                            for k in range(10))  # fmt: skip
                    and all(img[start + i - 1] == 0 for i in idx[1:])
                )
                if ok:
                    toks = [img[start + idx[i]: img.index(b"\0", start + idx[i])] for i in range(256)]
                    return start, q, toks
        q += 2
    return None


def _entry(img: bytes, at: int) -> tuple[int, int]:
    """(token count, offset of the first token) of the names entry at ``at``."""
    n = img[at]
    if n & 0x80:
        return (n & 0x7F) | (img[at + 1] << 7), at + 2
    return n, at + 1


def _markers(img: bytes, table_at: int) -> Iterator[tuple[int, list[int]]]:
    """Candidates (offset, values) for ``kallsyms_markers``: u32 values rising from 0, ending just before
    the token table or, where ``kallsyms_seqs_of_names`` (3 bytes per symbol, 6.2 to 6.3 and backports)
    lies between them, 3 * count bytes (aligned) before it."""
    for end in range(table_at, max(0, table_at - (3 << 20)), -4):
        room = table_at - end  # alignment, or the seqs_of_names between: 3 * count, padded to 8
        if room < 8:
            nm_range = range(1, 1 << 14)
        else:
            count = -(-(room - 7) // 3)
            if count * 3 > room:
                continue
            nm = -(-count // 256)
            nm_range = range(nm, nm + 1)
        for nm in nm_range:
            at = end - 4 * nm
            if at < 0 or _u32(img, at) != 0:
                if room < 8:
                    continue
                break
            vals = list(struct.unpack_from(f">{nm}I", img, at))
            if all(vals[i] < vals[i + 1] for i in range(nm - 1)):
                yield at, vals
            break


def _names(img: bytes, markers_at: int, markers: list[int]) -> tuple[int, int, int] | None:
    """(offset of ``kallsyms_num_syms``, of ``kallsyms_names``, the symbol count): the count is a u32 in
    ((markers - 1) * 256, markers * 256] before the names, and the names walk from there to the markers."""
    lo, hi = (len(markers) - 1) * 256, len(markers) * 256
    last = markers[-1]
    at = (markers_at - last - 8) & ~3
    floor = max(0, markers_at - last - 256 * 1024)
    while at >= floor:
        n = _u32(img, at)
        if lo < n <= hi:
            for names_at in (at + 4, at + 8):
                if _walk_ok(img, names_at, n, markers, markers_at):
                    return at, names_at, n
        at -= 4
    return None


def _walk_ok(img: bytes, names_at: int, count: int, markers: list[int], markers_at: int) -> bool:
    off = 0
    for i in range(count):
        if i % 256 == 0 and markers[i >> 8] != off:
            return False
        length, first = _entry(img, names_at + off)
        if length == 0:
            return False
        off = first + length - names_at
        if names_at + off > markers_at:
            return False
    return markers_at - (names_at + off) < 8


def _offsets(img: bytes, at: int, count: int) -> tuple[list[int], int, int] | None:
    """The u32 offsets at ``at``, the u64 relative base after them and where it is, if they look like
    kallsyms': nondecreasing (symbols are sorted by address) and not all one value."""
    if at < 0 or at + 4 * count + 16 > len(img):
        return None
    offs = list(struct.unpack_from(f">{count}I", img, at))
    if offs[-1] == offs[0] or any(offs[i] > offs[i + 1] for i in range(count - 1)):
        return None  # not sorted, or all one value (zeros after the table): not the offsets
    base_at = (at + 4 * count + 7) & ~7
    return offs, int(struct.unpack_from(">Q", img, base_at)[0]), base_at


def find_kallsyms(img: bytes) -> KallsymsTable:
    """Find and decode the kallsyms table of a decompressed kernel image.

    Raises:
        LoadError: the image holds no kallsyms table that decodes whole.
    """
    for m in _DIGITS.finditer(img):
        tok = _tokens(img, m.start())
        if tok is None:
            continue
        table_at, index_at, tokens = tok
        for markers_at, markers in _markers(img, table_at):
            nm = _names(img, markers_at, markers)
            if nm is not None:
                break
        else:
            continue
        count_at, names_at, count = nm
        # 6.4+: the offsets follow the token index; before: they precede the base and the count
        candidates = [((index_at + 512 + 7) & ~7, "6.4+"), ((count_at - 8 - 4 * count) & ~7, "pre-6.4")]
        for offsets_at, layout in candidates:
            found = _offsets(img, offsets_at, count)
            if found is None:
                continue
            offs, base, base_at = found
            if layout == "pre-6.4" and base_at != count_at - 8:
                continue
            syms = _decode(img, names_at, count, tokens, offs, base)
            return KallsymsTable(tuple(syms), base, names_at, table_at, offsets_at, base_at, layout)
    raise LoadError("no kallsyms table in the kernel image (a kernel built without CONFIG_KALLSYMS?)")


def _decode(img: bytes, names_at: int, count: int, tokens: list[bytes], offs: list[int], base: int
            ) -> list[Symbol]:  # fmt: skip
    out: list[Symbol] = []
    strs = [t.decode("latin-1") for t in tokens]
    at = names_at
    for i in range(count):
        length, first = _entry(img, at)
        text = "".join(map(strs.__getitem__, img[first: first + length]))
        at = first + length
        out.append(Symbol(text[1:], base + offs[i], text[:1]))
    return out

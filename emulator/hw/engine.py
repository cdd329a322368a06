"""unicorn's TB-invalidation slot, found and switched: exits are not translated again after every run; the
exit list kept in one buffer (``ExitList``).

After each ``emu_start`` unicorn drops the translated blocks at every registered exit (``resume_all_vcpus``
calls ``uc->uc_invalidate_tb(uc, exit - 1, 1)`` for each), so that a later run *starting* at an exit
executes the instruction there instead of halting. Each invalidation also drops the zero-length halting
block of the exit and the block just before it, so every trap costs one or two fresh translations
(~3 us measured) plus a TLB lookup per exit. The CPU never starts a run at an exit: it emulates the
instruction at an exit in Python, and steps over a stale exit (``Cpu._native_step``) only after dropping
that address's blocks itself. So the engine's invalidation after a run does nothing the CPU needs.

This module finds, in the loaded ``libunicorn`` (from its ELF symbol table, read with pyelftools), the
s390x engine's ``uc_invalidate_tb`` and a function whose whole body is a return, and the offset of the
``uc_invalidate_tb`` slot in ``uc_struct`` (by looking for the function's address in a live engine). A CPU
then keeps the no-op in its engine's slot and puts the real function back around its own invalidations
(``Switch.invalidate``). unicorn 2.1.4 calls the slot from five places: the exits after a run,
``UC_CTL_TB_REMOVE_CACHE``, deleting a hook that instrumented code ranges, unmapping memory, and moving a
region out for a memory snapshot; the CPU reaches the second only through ``Switch.invalidate``, adds only
hooks that instrument no code ranges (the counting hook unicorn adds itself for counted runs goes with a
flush of every block), and neither unmaps memory nor takes snapshots.

Anything unexpected (no symbol table, no or several candidate slots, a no-op that is not a bare return,
the self-test run giving another result) leaves the engine as unicorn made it: ``switch_for`` returns None
and traps cost what they cost before.
"""

from __future__ import annotations

import ctypes
import logging
import re
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from unicorn import Uc, UcError
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_CTL_IO_WRITE, UC_CTL_UC_EXITS, UC_MODE_BIG_ENDIAN
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from emulator.hw.exit_walk import SENTINEL_VALUE, WalkStop

__all__ = ["ExitList", "Switch", "switch_for", "SLOT", "WALK_STOP"]

log = logging.getLogger(__name__)

_SYM: Final = struct.Struct("<IBBHQQ")  # Elf64_Sym (little-endian hosts: x86-64, aarch64)
_STT_FUNC: Final = 2
#: bare returns: x86-64 ``ret``, ``endbr64; ret``; aarch64 ``ret``
_RETURNS: Final = (b"\xc3", b"\xf3\x0f\x1e\xfa\xc3", b"\xc0\x03\x5f\xd6")
#: how much of uc_struct is searched for the slot: its first 4 KiB (the struct is ~16 KiB in 2.1.4, the
#: function pointers sit near its start; reading past its end could leave the heap)
_SCAN_WORDS: Final = 512


@dataclass(frozen=True)
class _Slot:
    offset: int  # of uc_invalidate_tb in uc_struct
    real: frozenset[int]  # addresses of the engine's uc_invalidate_tb (one per target in the library)
    noop: int  # address of a function that only returns


def _symbols(lib: Path, names: tuple[bytes, ...]) -> tuple[dict[bytes, list[int]], list[tuple[int, int]]]:
    """Values of the named symbols, and (value, size) of every function symbol of at most 8 bytes."""
    with lib.open("rb") as f:
        elf = ELFFile(f)
        if elf.elfclass != 64 or not elf.little_endian:
            raise ELFError("not a 64-bit little-endian library")
        symtab, strtab = elf.get_section_by_name(".symtab"), elf.get_section_by_name(".strtab")
        if symtab is None or strtab is None:
            raise ELFError("the library has no symbol table (stripped)")
        f.seek(symtab["sh_offset"])
        syms = f.read(symtab["sh_size"])
        f.seek(strtab["sh_offset"])
        strs = f.read(strtab["sh_size"])
    # pyelftools decodes ~40,000 symbols per second; the library has ~53,000: look them up in the raw tables
    found: dict[bytes, list[int]] = {}
    for name in names:
        values = found[name] = []
        for m in re.finditer(b"\0" + re.escape(name) + b"\0", strs):
            for hit in re.finditer(re.escape(struct.pack("<I", m.start() + 1)), syms):
                if hit.start() % _SYM.size == 0:
                    values.append(_SYM.unpack_from(syms, hit.start())[4])
    whole = syms[: len(syms) - len(syms) % _SYM.size]
    small = [
        (value, size)
        for _name, info, _other, shndx, value, size in _SYM.iter_unpack(whole)
        if info & 0xF == _STT_FUNC and shndx and 0 < size <= 8
    ]
    return found, small


def _find_slot() -> _Slot:
    lib = Path(_uclib._name)  # noqa: SLF001 - the library the binding loaded
    found, small = _symbols(lib, (b"uc_invalidate_tb", b"uc_emu_start"))
    if len(found[b"uc_emu_start"]) != 1 or not found[b"uc_invalidate_tb"]:
        raise LookupError("uc_emu_start / uc_invalidate_tb not in the symbol table")
    base = ctypes.cast(_uclib.uc_emu_start, ctypes.c_void_p).value - found[b"uc_emu_start"][0]
    real = frozenset(base + v for v in found[b"uc_invalidate_tb"])
    noop = next(
        (base + v for v, size in small if ctypes.string_at(base + v, size) in _RETURNS), None
    )  # fmt: skip
    if noop is None:
        raise LookupError("no function in the library is a bare return")
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)  # initialises the engine (the slot is filled at its first use)
    words = struct.unpack(f"<{_SCAN_WORDS}Q", ctypes.string_at(uc._uch.value, 8 * _SCAN_WORDS))  # noqa: SLF001
    hits = [i for i, w in enumerate(words) if w in real]
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} candidate uc_invalidate_tb slots in uc_struct")
    slot = _Slot(8 * hits[0], real, noop)
    _self_test(uc, slot)
    return slot


def _self_test(uc: Uc, slot: _Slot) -> None:
    """With the no-op in place an exit traps, and its halting block survives the run (a run after the
    exit was dropped from the list still halts there); ``Switch.invalidate`` then removes it."""
    # 0x10000: lghi %r2,1 ; 0x10004: aghi %r2,1 ; 0x10008: aghi %r2,1 ; 0x1000c: j .
    uc.mem_write(0x10000, bytes.fromhex("a7290001" "a72a0001" "a72a0001" "a7f4ffff"))
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    uc.ctl_exits_enabled(True)
    sw = Switch(uc, slot)
    seen = []
    try:
        for exits, drop in (([0x10004, 0x1000C], False), ([0x1000C], False), ([0x1000C], True)):
            uc.ctl_set_exits(exits)
            if drop:
                sw.invalidate(0x10000, 0x10010)
            uc.emu_start(0x10000, 0)
            seen.append((uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2)))
    finally:
        sw.restore()
    if seen != [(0x10004, 1), (0x10004, 1), (0x1000C, 3)]:
        raise LookupError(f"self-test gave {seen}")


class Switch:
    """One engine's slot: the no-op while it runs, the real function for the owner's invalidations."""

    __slots__ = ("_cell", "_real", "_noop", "_uc")

    def __init__(self, uc: Uc, slot: _Slot) -> None:
        self._uc = uc
        self._cell = ctypes.c_uint64.from_address(uc._uch.value + slot.offset)  # noqa: SLF001
        real = self._cell.value
        if real not in slot.real:
            raise LookupError("the engine's slot does not hold uc_invalidate_tb")
        self._real = real
        self._noop = slot.noop
        self._cell.value = slot.noop

    def invalidate(self, begin: int, end: int) -> None:
        """Drop the translated blocks in [begin, end) (``ctl_remove_cache``) with the real function.

        An exit's halt is either a zero-length block at the exit (any such block on the page goes) or the
        end of the block that falls into it, which ends at the exit: to drop that one, begin at exit - 1.
        """
        cell = self._cell
        cell.value = self._real
        try:
            self._uc.ctl_remove_cache(begin, end)
        finally:
            cell.value = self._noop

    def restore(self) -> None:
        """Give the engine its own function back for good."""
        self._cell.value = self._real


def _load() -> _Slot | None:
    try:
        return _find_slot()
    except (OSError, ELFError, LookupError, ValueError, AttributeError) as e:
        log.info("unicorn's exits stay as they are (every trap re-translates its exit): %s", e)
        return None


#: The calibrated slot, or None when this unicorn build is not the one measured (then nothing is switched).
SLOT: Final = _load()


def switch_for(uc: Uc) -> Switch | None:
    """Switch this (initialised) engine's invalidation slot, or None when that is not possible."""
    if SLOT is None:
        return None
    try:
        return Switch(uc, SLOT)
    except LookupError as e:
        log.info("unicorn engine left as it is: %s", e)
        return None


#: ``uc_ctl``'s request code for writing the exit list (the binding's encoding: op, argument count,
#: control)
_CTL_SET_EXITS: Final = (UC_CTL_IO_WRITE << 30) | (2 << 26) | UC_CTL_UC_EXITS
#: glib's GTree as unicorn's copy lays it out (``g_tree_new_full``): the key comparison at 8, the key's
#: destroy function at 16, the node count (32 bits) at 40
_GTREE_COMPARE, _GTREE_KEY_DESTROY, _GTREE_NNODES = 0x08, 0x10, 0x28
#: how far into the engine handle ``uc_struct.ctl_exits`` is looked for (the struct is ~16 KiB in 2.1.4)
_TREE_SCAN_BYTES: Final = 0x8000


@dataclass(frozen=True)
class _Tree:
    """Where an engine keeps its exits (``uc_struct.ctl_exits``, a GTree keyed by malloc'ed addresses) and
    the library's own functions to add and remove one."""

    offset: int
    insert: Callable[[int, int, int], None]  # g_tree_insert(tree, key, value)
    remove: Callable[[int, int], int]  # g_tree_remove(tree, &key)
    malloc: Callable[[int], int]  # g_malloc: the keys' allocator (the tree frees them with g_free)


def _readable_ranges() -> list[tuple[int, int]]:
    """[start, end) of this process's readable mappings."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            if perms[0] == "r":
                lo, hi = span.split("-")
                out.append((int(lo, 16), int(hi, 16)))
    return out


def _find_tree() -> _Tree:
    names = (b"uc_emu_start", b"g_tree_insert", b"g_tree_remove", b"g_malloc", b"g_free", b"uc_exits_cmp")
    found, _small = _symbols(Path(_uclib._name), names)  # noqa: SLF001 - the library the binding loaded
    if any(len(found[n]) != 1 for n in names):
        raise LookupError("the exit tree's functions are not each once in the symbol table")
    base = ctypes.cast(_uclib.uc_emu_start, ctypes.c_void_p).value - found[b"uc_emu_start"][0]
    at = {n: base + found[n][0] for n in names}
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([0x10000, 0x10002, 0x10004])
    ranges = _readable_ranges()

    def readable(addr: int, size: int) -> bool:
        return any(lo <= addr and addr + size <= hi for lo, hi in ranges)

    handle = uc._uch.value  # noqa: SLF001
    span = next((min(hi, handle + _TREE_SCAN_BYTES) - handle for lo, hi in ranges if lo <= handle < hi), 0)
    words = struct.unpack(f"<{span // 8}Q", ctypes.string_at(handle, span // 8 * 8))
    hits = []
    for i, w in enumerate(words):
        if w & 7 or not readable(w, 0x30):
            continue
        compare, destroy = struct.unpack_from("<QQ", ctypes.string_at(w + _GTREE_COMPARE, 16))
        nnodes = ctypes.c_uint32.from_address(w + _GTREE_NNODES).value
        if compare == at[b"uc_exits_cmp"] and destroy == at[b"g_free"] and nnodes == 3:
            hits.append(8 * i)
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} candidate exit trees in uc_struct")
    tree = _Tree(
        hits[0],
        ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(at[b"g_tree_insert"]),
        ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(at[b"g_tree_remove"]),
        ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(at[b"g_malloc"]),
    )
    _tree_self_test(uc, tree)
    return tree


def _tree_self_test(uc: Uc, tree: _Tree) -> None:
    """An exit added to the tree halts a run there and counts; one removed no longer does."""
    # 0x10000: lghi %r2,1 ; 0x10004: aghi %r2,1 ; 0x10008: aghi %r2,1 ; 0x1000c: j .
    uc.mem_write(0x10000, bytes.fromhex("a7290001" "a72a0001" "a72a0001" "a7f4ffff"))
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    lst = ExitList(uc, tree)
    lst.set([0x1000C])
    lst.add([0x10008])
    lst.discard(0x1000C)
    uc.emu_start(0x10000, 0)
    got = (uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2), uc.ctl_get_exits_cnt())
    if got != (0x10008, 2, 1):
        raise LookupError(f"exit tree self-test gave {got}")


class ExitList:
    """An engine's exit list, registered one exit at a time where that is possible.

    The binding's ``ctl_set_exits`` makes unicorn drop its whole exit tree and insert every exit again; the
    CPU adds the exits of each newly fetched code page, so with thousands registered (a kernel's working
    set) each fetch fill of a new code page cost milliseconds (~0.25 us per registered exit in C, as much
    again for the binding's array and the sort in Python). Where ``TREE`` was found (the tree's place in
    the engine and the library's ``g_tree_insert``/``g_tree_remove``, checked by a run), adding and removing
    exits touches only those exits; otherwise the whole list goes through ``uc_ctl`` from one growing
    buffer.

    The tree's keys are pointers to the addresses. unicorn allocates each with ``g_malloc`` and the tree
    frees them; here the tree is told to free none (its key-destroy function set to NULL, as the engine
    never inserts a key itself once this list owns it: ``set`` empties the tree and adds through ``add``),
    and each address has one slot, for good, in arrays this list keeps: an exit registered again (every
    fetch fill of a page after a TLB flush registers its exits again) costs one foreign call, not three.
    """

    __slots__ = ("_h", "_buf", "_tree", "_where", "_slots", "_chunks", "_free", "_stop")

    #: addresses per array of slots
    _CHUNK = 4096

    def __init__(self, uc: Uc, tree: _Tree | None = None, walk_stop: bool = False) -> None:
        self._h = uc._uch  # noqa: SLF001 - the engine handle the binding's own calls use
        self._buf = (ctypes.c_uint64 * 1024)()
        self._tree = tree if tree is not None else TREE
        #: the engine's exit tree (it lives as long as the engine)
        self._where = 0
        #: address -> the address of its slot (a key of the tree), and the arrays holding the slots
        self._slots: dict[int, int] = {}
        self._chunks: list[ctypes.Array[ctypes.c_uint64]] = []
        self._free = 0
        #: the sentinel that cuts unicorn's walk of the tree after each run short (``exit_walk``), or None
        self._stop: WalkStop | None = None
        if self._tree is not None:
            self._where = ctypes.c_uint64.from_address(self._h.value + self._tree.offset).value
            self.set(())  # (any key unicorn allocated goes while the tree still frees keys)
            ctypes.c_uint64.from_address(self._where + _GTREE_KEY_DESTROY).value = 0
            if walk_stop:
                self._stop = WalkStop(self._where)
                self._tree.insert(self._where, self._stop.key, SENTINEL_VALUE)
                self._stop.cut()

    @property
    def walk_cut(self) -> bool:
        """Whether unicorn's walk of the exits after each run is cut short (``exit_walk``)."""
        return self._stop is not None

    def set(self, addrs: Collection[int]) -> None:
        """Register exactly these exits."""
        n = 0 if self._where else len(addrs)
        if n > len(self._buf):
            self._buf = (ctypes.c_uint64 * max(n, 2 * len(self._buf)))()
        self._buf[:n] = list(addrs)[:n]
        stop = self._stop
        if stop is not None:
            stop.mend()  # (unicorn empties the tree by its walk)
        status = _uclib.uc_ctl(
            self._h, _CTL_SET_EXITS, ctypes.cast(self._buf, ctypes.c_void_p), ctypes.c_size_t(n)
        )
        if status:
            raise UcError(status)
        if self._where:  # the tree is empty now: the slots may start afresh, and the exits go in one by one
            if len(self._slots) > 4 * len(addrs) + 65536:
                self._slots, self._chunks, self._free = {}, [], 0
            if stop is not None:
                self._tree.insert(self._where, stop.key, SENTINEL_VALUE)  # type: ignore[union-attr]
            self.add(addrs)

    def close(self) -> None:
        """Mend the walk's cut (before the engine frees its tree by walking it)."""
        if self._stop is not None:
            self._stop.mend()
            self._stop = None

    def _slot(self, addr: int) -> int:
        chunk = self._free // self._CHUNK
        if chunk == len(self._chunks):
            self._chunks.append((ctypes.c_uint64 * self._CHUNK)())
        i = self._free % self._CHUNK
        arr = self._chunks[chunk]
        arr[i] = addr
        self._free += 1
        key = self._slots[addr] = ctypes.addressof(arr) + 8 * i
        return key

    def add(self, new: Collection[int], registered: Collection[int] = ()) -> None:
        """Register the exits ``new`` too (none of them registered yet; ``registered``: those that are)."""
        tree = self._tree
        if tree is None:
            self.set([*registered, *new])
            return
        where, insert, slots, stop = self._where, tree.insert, self._slots, self._stop
        if stop is not None:
            stop.mend()
        for addr in new:
            key = slots.get(addr)
            if key is None:
                key = self._slot(addr)
            insert(where, key, 1)  # (address 0: the sentinel's value becomes 1, an exit)
        if stop is not None:
            stop.cut()

    def discard(self, addr: int, registered: Collection[int] = ()) -> None:
        """Unregister one exit (``registered``: the exits that stay)."""
        if self._tree is None:
            self.set(registered)
            return
        stop = self._stop
        if stop is not None:
            stop.mend()
            if addr == 0:  # the sentinel stays, as no exit
                self._tree.insert(self._where, stop.key, SENTINEL_VALUE)
                stop.cut()
                return
        key = ctypes.c_uint64(addr)
        self._tree.remove(self._where, ctypes.addressof(key))
        if stop is not None:
            stop.cut()


def _load_tree() -> _Tree | None:
    try:
        return _find_tree()
    except (OSError, ELFError, LookupError, ValueError, AttributeError, UcError) as e:
        log.info("unicorn's exit list is set whole at each change: %s", e)
        return None


#: Where engines keep their exits, or None when this unicorn build is not the one measured.
TREE: Final = _load_tree()


def _walk_stop_self_test(tree: _Tree) -> None:
    """``exit_walk``'s cut on a scratch engine: after adds and discards (rotations of the tree) unicorn's walk
    (the same ``g_tree_foreach`` that reads the exit list out) sees the sentinel and at most one node more,
    a run from address 0 passes it and halts at the first exit left, and mended, the walk sees every exit."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.ctl_exits_enabled(True)
    # 0x0: lghi %r2,1 ; then aghi %r2,1 at 0x4, 0x8, 0xc ; 0x10: j .
    uc.mem_write(0, bytes.fromhex("a7290001" "a72a0001" "a72a0001" "a72a0001" "a7f4ffff"))
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    lst = ExitList(uc, tree, walk_stop=True)
    many = set(range(0x1000, 0x3000, 0x42))
    held = {0xC, 0x10} | many
    lst.set({0x10})
    lst.add({0x8, 0xC} | many)
    lst.discard(0x8)
    lst.add({0})
    lst.discard(0)
    for a in sorted(many)[::3]:
        lst.discard(a)
        held.discard(a)
    walked = [a for a in uc.ctl_get_exits() if a]
    uc.emu_start(0, 0)
    ran = (uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R2))
    lst.close()
    mended = sorted(uc.ctl_get_exits())
    if len(walked) > 1 or ran != (0xC, 3) or mended != [0, *sorted(held)]:
        raise LookupError(f"exit-walk self-test gave {walked}, {ran}, {len(mended)} exits mended")


def _load_walk_stop() -> bool:
    if TREE is None:
        return False
    try:
        _walk_stop_self_test(TREE)
    except (LookupError, UcError, ValueError) as e:
        log.info("unicorn walks every exit after each run: %s", e)
        return False
    return True


#: ``ExitList(walk_stop=True)`` cuts unicorn's walk of the exits after each run short (``exit_walk``)
WALK_STOP: Final = _load_walk_stop()


#: QEMU's ``tb_invalidate_phys_range(uc, start, end)``: drop every translated block whose bytes overlap a
#: range of the engine's RAM (``ram_addr_t``), whichever virtual address and address space it was translated
#: at. A CPU maps the machine's one buffer first and only, at 0, so its RAM offsets are host absolute
#: addresses. Unlike ``UC_CTL_TB_REMOVE_CACHE`` it needs no instruction-fetch lookup of a virtual address
#: in the current space (a page of another space's code stays reachable) and drops no more than the range
#: (plus the zero-length blocks of its pages, as unicorn's copy does).
_PhysInvalidate = Callable[[int, int, int], None]


def _find_phys_invalidate() -> _PhysInvalidate:
    fn = getattr(_uclib, "tb_invalidate_phys_range_s390x")
    fn.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
    fn.restype = None
    _phys_invalidate_self_test(fn)
    return fn  # type: ignore[no-any-return]


def _phys_invalidate_self_test(fn: _PhysInvalidate) -> None:
    """Code changed behind the engine's back (as Python's stores change it) runs as it was until its range is
    invalidated, and as it is now afterwards; an invalidation of another range keeps the block."""
    buf = ctypes.create_string_buffer(0x20000)
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map_ptr(0, 0x20000, 7, ctypes.addressof(buf))
    # 0x10000: lghi %r2,1 ; 0x10004: j 0x10010 ; 0x10010: lr %r0,%r0 ; 0x10012: (until). unicorn drops the
    # blocks at until - 1 after each run: the first block stays translated
    buf[0x10000:0x10008] = bytes.fromhex("a7290001" "a7f40006")
    buf[0x10010:0x10012] = bytes.fromhex("1800")
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    seen = []
    for step in ("run", "store", "other", "range"):
        if step == "store":
            buf[0x10003] = 2  # lghi %r2,2, unseen by the engine
        elif step == "other":
            fn(uc._uch.value, 0x11000, 0x11008)  # noqa: SLF001
        elif step == "range":
            fn(uc._uch.value, 0x10003, 0x10004)  # noqa: SLF001
        uc.emu_start(0x10000, 0x10012)
        seen.append(uc.reg_read(S.UC_S390X_REG_R2))
    if seen != [1, 1, 1, 2]:
        raise LookupError(f"physical invalidation self-test gave {seen}")


def _load_phys_invalidate() -> _PhysInvalidate | None:
    try:
        return _find_phys_invalidate()
    except (AttributeError, LookupError, UcError) as e:
        log.info("translated code is dropped by virtual address only: %s", e)
        return None


#: ``(engine handle, start, end)``, or None when this unicorn build does not export it or its self-test fails.
PHYS_INVALIDATE: Final = _load_phys_invalidate()

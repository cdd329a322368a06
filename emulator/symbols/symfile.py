"""Symbol files: a ``System.map`` (``nm`` output), an ELF's symbol table, a Linux kernel image's kallsyms;
and an ELF that holds only symbols, for gdb (``write_symbol_elf``).

``read_symbols(path)`` tells them apart by content: ``\\x7fELF`` is an ELF (a ``vmlinux``, a guest
program: pyelftools), ``S390EP`` at 0x10008 a kernel image (``linux.kernel_symbols``), anything else must be
text lines ``ADDRESS TYPE NAME``. A kernel's own files (``System.map``, ``vmlinux``) carry link addresses;
``offset`` moves them to where the kernel runs (``linux.KernelLayout.offset``).
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from emulator.errors import LoadError

__all__ = ["SymbolFile", "read_symbols", "parse_system_map", "elf_symbols", "write_symbol_elf"]

_MAP_LINE: Final = re.compile(r"^\s*([0-9a-fA-F]{1,16})\s+([A-Za-z?-])\s+(\S+)(?:\s+\[\S+\])?\s*$")
#: nm's types of symbols that name no address in the kernel image (absolute values, weak undefined)
_NOT_AN_ADDRESS: Final = frozenset("aAUvw")


@dataclass(frozen=True)
class SymbolFile:
    """Symbols read from a file: name -> address (as the file gives them, plus ``offset``)."""

    symbols: dict[str, int]
    kind: str  # "System.map", "ELF", "kallsyms"
    description: str
    notes: list[str] = field(default_factory=list)
    linux: bool = False  # a kernel's symbols (link addresses, or kallsyms under nokaslr)


def parse_system_map(text: str, name: str = "System.map") -> tuple[dict[str, int], dict[str, str]]:
    """Name -> address and name -> type of ``nm``-format lines (``System.map``, ``/proc/kallsyms``).

    Raises:
        LoadError: a line that is no ``ADDRESS TYPE NAME``, or no symbol at all (the Debian image package's
            83-byte stub says it is one: its text is reported).
    """
    syms: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _MAP_LINE.match(line)
        if m is None:
            if not syms:
                raise LoadError(f"{name}: not a System.map (line {n}: {line.strip()[:80]!r}; expected "
                                f"'ADDRESS TYPE NAME' as nm prints)")  # fmt: skip
            raise LoadError(f"{name}:{n}: not 'ADDRESS TYPE NAME': {line.strip()[:80]!r}")
        addr, kind, sym = int(m.group(1), 16), m.group(2), m.group(3)
        if kind in _NOT_AN_ADDRESS:
            continue
        if sym not in syms:
            syms[sym] = addr
            kinds[sym] = kind
    if not syms:
        raise LoadError(f"{name}: no symbols in it")
    return syms, kinds


def elf_symbols(data: bytes, name: str) -> dict[str, int]:
    """The function, object and untyped symbols an ELF defines (not sections, files or undefined ones).

    Raises:
        LoadError: a broken ELF, or one without a symbol table (a stripped file).
    """
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    syms: dict[str, int] = {}
    try:
        elf = ELFFile(io.BytesIO(data))
        tables = [s for s in elf.iter_sections() if isinstance(s, SymbolTableSection)]
        for sec in sorted(tables, key=lambda s: s.name != ".symtab"):
            for sym in sec.iter_symbols():
                if (sym.name and sym["st_shndx"] != "SHN_UNDEF" and sym["st_shndx"] != "SHN_ABS"
                        and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT")):  # fmt: skip
                    syms.setdefault(sym.name, sym["st_value"])
    except (ELFError, ValueError, KeyError, IndexError, AssertionError, struct.error) as e:
        raise LoadError(f"{name}: broken ELF file: {e or type(e).__name__}") from None
    if not syms:
        raise LoadError(f"{name}: the ELF has no symbol table (stripped?)")
    return syms


def read_symbols(path: str | Path, *, offset: int = 0) -> SymbolFile:
    """The symbols of ``path``: an ELF, a kernel image (its kallsyms) or a System.map; ``offset`` is added
    to the addresses of an ELF or a System.map (kallsyms come at their run-time addresses already).

    Raises:
        LoadError: an unreadable file or one that is none of these (one line saying what it is not).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: cannot read: {e.strerror or e}") from None
    if data[:4] == b"\x7fELF":
        syms = elf_symbols(data, str(path))
        linux = "start_kernel" in syms
        return SymbolFile(_moved(syms, offset), "ELF", f"{p.name} (ELF, {len(syms)} symbols)", linux=linux)
    from emulator.symbols.kernel_image import is_linux_image

    if is_linux_image(data):
        from emulator.symbols.linux import kernel_symbols

        ks = kernel_symbols(p)
        return SymbolFile(_moved(ks.symbols, offset), "kallsyms", ks.source, linux=True)
    if b"\0" in data[:4096]:
        raise LoadError(f"{path}: not a symbol file (an ELF, a System.map or an s390x kernel image)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LoadError(f"{path}: not a symbol file (byte {e.start} is not UTF-8 text)") from None
    syms, _ = parse_system_map(text, str(path))
    linux = "start_kernel" in syms
    return SymbolFile(_moved(syms, offset), "System.map", f"{p.name} (System.map, {len(syms)} symbols)",
                      linux=linux)  # fmt: skip


def _moved(syms: dict[str, int], offset: int) -> dict[str, int]:
    if not offset:
        return dict(syms)
    return {n: (a + offset) & 0xFFFF_FFFF_FFFF_FFFF for n, a in syms.items()}


def write_symbol_elf(symbols: dict[str, int], path: str | Path) -> None:
    """Write an s390x ELF holding only ``symbols`` (a ``.text`` section without contents spanning them and
    a symbol table), for ``gdb``'s ``symbol-file``/``add-symbol-file``: gdb then names addresses, stops at
    ``break NAME`` and shows ``bt`` and ``x/i`` with names, with no ``vmlinux`` at hand."""
    if not symbols:
        raise LoadError("no symbols to write")
    items = sorted(symbols.items(), key=lambda kv: (kv[1], kv[0]))
    lo, hi = items[0][1], items[-1][1]
    shstr = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    strtab = bytearray(b"\0")
    syms = bytearray(24)  # the null symbol
    for name, addr in items:
        off = len(strtab)
        strtab += name.encode("utf-8", "replace") + b"\0"
        # st_name, st_info (GLOBAL FUNC), st_other, st_shndx 1 (.text), st_value, st_size
        syms += struct.pack(">IBBHQQ", off, 0x12, 0, 1, addr, 0)
    ehsize, shentsize = 64, 64
    sym_off = ehsize
    str_off = sym_off + len(syms)
    shstr_off = str_off + len(strtab)
    sh_off = (shstr_off + len(shstr) + 7) & ~7
    pad = sh_off - (shstr_off + len(shstr))
    ident = b"\x7fELF" + bytes([2, 2, 1, 0]) + bytes(8)  # 64-bit, big-endian, version 1, System V
    header = ident + struct.pack(">HHIQQQIHHHHHH", 2, 22, 1, lo, 0, sh_off, 0, ehsize, 0, 0, shentsize, 5, 4)

    def sh(name: int, kind: int, flags: int, addr: int, off: int, size: int, link: int = 0, info: int = 0,
           align: int = 1, entsize: int = 0) -> bytes:  # fmt: skip
        return struct.pack(">IIQQQQIIQQ", name, kind, flags, addr, off, size, link, info, align, entsize)

    sections = (
        sh(0, 0, 0, 0, 0, 0)
        + sh(1, 8, 0x6, lo, sh_off, hi - lo + 0x10000, align=4)  # .text: NOBITS, alloc+exec, to 64 KiB on
        + sh(7, 2, 0, 0, sym_off, len(syms), link=3, info=1, align=8, entsize=24)  # .symtab
        + sh(15, 3, 0, 0, str_off, len(strtab))  # .strtab
        + sh(23, 3, 0, 0, shstr_off, len(shstr))  # .shstrtab
    )
    Path(path).write_bytes(header + bytes(syms) + bytes(strtab) + shstr + bytes(pad) + sections)

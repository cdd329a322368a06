"""Program loading the way QEMU's ``-kernel`` does it: ELF segments or a flat image, start PSW, command line.

Rules (``machine.md`` section 1, QEMU ``hw/s390x/ipl.c``): every PT_LOAD of an ``EM_S390`` 64-bit
big-endian ELF at ``p_paddr`` with its bss zeroed; a flat image at absolute 0, started at 0x10000 when the
bytes at 0x10008 read ``S390EP``, else at the word at bytes 4-7 masked with 0x7fffffff; an ELF entry of
0x800 starts at 0x10000. The command line goes to 0x10480 when the start address is 0x10000 (at most
0x380 bytes, or the size the image stores at 0x10430). An initial RAM disk (``-initrd``) goes to 8 MiB, or the
first MiB boundary at least 1 MiB above the program's end, and its address and size are stored at 0x10408 and
0x10410 for the kernel's IPL code to find.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from emulator.errors import LoadError
from emulator.hw import access
from emulator.hw.memory import PhysicalMemory

__all__ = ["LoadedProgram", "load_program", "load_initrd", "EM_S390", "CMDLINE_ADDR", "INITRD_START"]

EM_S390: Final = 22
CMDLINE_ADDR: Final = 0x10480
CMDLINE_SIZE_ADDR: Final = 0x10430
CMDLINE_DEFAULT_MAX: Final = 0x380
KERNEL_START: Final = 0x10000
INITRD_START: Final = 0x800000
INITRD_START_ADDR: Final = 0x10408
INITRD_SIZE_ADDR: Final = 0x10410


@dataclass(frozen=True)
class LoadedProgram:
    """What the loader put into memory."""

    path: str
    kind: str  # "elf" or "flat"
    entry: int
    segments: tuple[tuple[int, int], ...]  # (address, size in memory)
    symbols: dict[str, int]


def _check_range(path: str, what: str, addr: int, size: int, mem: PhysicalMemory) -> None:
    """The loader is the host: a range must fit in memory and lie in storage the host may touch
    (``emulator.hw.access``), or nothing is loaded there."""
    if addr < 0 or size < 0 or addr + size > mem.size:
        raise LoadError(
            f"{path}: {what} at {addr:#x}+{size:#x} does not fit in memory of {mem.size:#x} bytes"
            " (use --memory to enlarge it)"
        )
    # a VM's guest window (the hypervisor's loader) exports a secure page before it touches it
    bad = access.refused_address(mem, addr, size) if isinstance(mem, PhysicalMemory) else None
    if bad is not None:
        raise LoadError(f"{path}: {what} at {addr:#x}+{size:#x} reaches secure storage at {bad:#x}")


def _load_elf(path: str, data: bytes, mem: PhysicalMemory) -> LoadedProgram:
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != "EM_S390":
            raise LoadError(f"{path}: ELF for machine {elf['e_machine']}, not s390x (EM_S390)")
        if elf.elfclass != 64 or elf.little_endian:
            raise LoadError(f"{path}: not a 64-bit big-endian ELF (class {elf.elfclass})")
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        if not loads:
            raise LoadError(f"{path}: ELF has no loadable segment")
        segments = []
        for seg in loads:
            paddr, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
            if filesz > memsz:
                raise LoadError(f"{path}: segment at {paddr:#x} has file size above its memory size")
            if seg["p_offset"] + filesz > len(data):
                raise LoadError(f"{path}: segment at {paddr:#x} runs past the end of the file (truncated?)")
            _check_range(path, "segment", paddr, memsz, mem)
            segments.append((paddr, memsz, seg.data()))
        for paddr, memsz, body in segments:
            mem.write(paddr, body)
            if memsz > len(body):
                mem.fill(paddr + len(body), memsz - len(body))
        symbols: dict[str, int] = {}
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            for sym in symtab.iter_symbols():  # type: ignore[attr-defined]
                if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT"):
                    symbols.setdefault(sym.name, sym["st_value"])
        entry = elf["e_entry"]
        return LoadedProgram(path, "elf", entry, tuple((a, m) for a, m, _ in segments), symbols)
    except ELFError as e:
        raise LoadError(f"{path}: broken ELF file: {e}") from None
    except (ValueError, KeyError, IndexError, AssertionError) as e:
        raise LoadError(f"{path}: broken ELF file: {e or type(e).__name__}") from None


def _load_flat(path: str, f: BinaryIO, size: int, mem: PhysicalMemory) -> LoadedProgram:
    """A memory image from absolute 0, read from the file straight into storage (``load_file``) when the
    memory offers it (big SE images: no copy of the whole file in between)."""
    if size < 8:
        raise LoadError(f"{path}: flat image of {size} bytes is too short to hold a start PSW")
    _check_range(path, "flat image", 0, size, mem)
    f.seek(0)
    loader = getattr(mem, "load_file", None)
    if loader is not None:
        done = loader(0, f, size)
    else:
        data = f.read(size)
        mem.write(0, data)
        done = len(data)
    if done != size:
        raise LoadError(f"{path}: the file ended after {done} of {size} bytes while it was loaded")
    head = mem.read(0, 8)
    if size >= 0x1000E and mem.read(0x10008, 6) == b"S390EP":
        entry = KERNEL_START
    else:
        entry = int.from_bytes(head[4:8], "big") & 0x7FFFFFFF
    return LoadedProgram(path, "flat", entry, ((0, size),), {})


def load_program(path: str | Path, mem: PhysicalMemory, cmdline: str = "") -> tuple[LoadedProgram, int]:
    """Load an ELF or flat image; returns the program and the start address.

    Raises:
        LoadError: a missing or unreadable file, a non-s390x or broken ELF, a segment outside memory,
            a command line too long for the program.
    """
    p = str(path)
    try:
        with open(p, "rb") as raw:
            f: BinaryIO = raw
            st = os.fstat(raw.fileno())
            size = st.st_size
            magic = f.read(4)
            if not stat.S_ISREG(st.st_mode):  # a pipe or device: no size, no seeking; read it all
                data = magic + f.read()
                f, size = io.BytesIO(data), len(data)
            if not magic:
                raise LoadError(f"{p}: empty file")
            if magic == b"\x7fELF":
                f.seek(0)
                prog = _load_elf(p, f.read(), mem)
            else:
                prog = _load_flat(p, f, size, mem)
    except OSError as e:
        raise LoadError(f"{p}: cannot read: {e.strerror or e}") from None
    start = prog.entry
    if prog.kind == "elf" and start == 0x800:
        start = KERNEL_START
    if start >= mem.size or start & 1:
        raise LoadError(f"{p}: start address {start:#x} is outside memory or odd")
    if start == KERNEL_START:
        limit = CMDLINE_DEFAULT_MAX
        if mem.size > CMDLINE_SIZE_ADDR + 8:
            _check_range(p, "the program's command-line size", CMDLINE_SIZE_ADDR, 8, mem)
            stored = mem.read_u64(CMDLINE_SIZE_ADDR)
            if stored:
                limit = stored
        raw = cmdline.encode("ascii", "replace")
        if len(raw) + 1 > limit:
            raise LoadError(
                f"{p}: command line of {len(raw)} bytes exceeds the program's {limit - 1}-byte limit"
            )
        _check_range(p, "command line", CMDLINE_ADDR, len(raw) + 1, mem)
        mem.write(CMDLINE_ADDR, raw + b"\0")
    return prog, start


def load_initrd(path: str | Path, prog: LoadedProgram, mem: PhysicalMemory) -> tuple[int, int]:
    """Place an initial RAM disk after the program and announce it in the kernel's parameter area (QEMU's
    ``-initrd``); returns its address and size.

    Raises: LoadError: a missing or unreadable file, an initrd that does not fit in memory, a program that
    does not start at 0x10000 (nothing there would read the parameter area).
    """
    p = str(path)
    end = max((a + s for a, s in prog.segments), default=0)
    if mem.size <= INITRD_SIZE_ADDR + 8 or not any(a <= INITRD_START_ADDR < a + s for a, s in prog.segments):
        raise LoadError(
            f"{p}: --initrd needs a Linux kernel image (a program with a parameter area at 0x10400)"
        )
    addr = INITRD_START
    while end + 0x100000 > addr:
        addr += 0x100000
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LoadError(f"{p}: cannot read: {e.strerror or e}") from None
    _check_range(p, "initrd", addr, len(data), mem)
    _check_range(p, "the initrd parameters", INITRD_START_ADDR, 16, mem)
    mem.write(addr, data)
    mem.write_u64(INITRD_START_ADDR, addr)
    mem.write_u64(INITRD_SIZE_ADDR, len(data))
    return addr, len(data)

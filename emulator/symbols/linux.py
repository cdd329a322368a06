"""Where a Linux kernel's symbols are at run time, and its symbols recovered from the image alone.

Link addresses (``System.map``, a ``vmlinux``, kallsyms) start at ``_text`` = 0x100000 on s390x. With
``nokaslr`` the decompressor puts the kernel there, identity-mapped, up to Linux 6.9; from 6.10 on the kernel
runs in a virtual space of its own at ``CONFIG_KERNEL_IMAGE_BASE`` (default 0x3FFE0000000) plus its link
address (``_text`` at 0x3FFE0100000). Without ``nokaslr`` a kernel built with ``CONFIG_RANDOMIZE_BASE``
(the decompressor then knows the word ``nokaslr``) picks a random offset when the machine offers random
numbers (zuv's CPACF does), so no fixed address holds.

``kernel_symbols`` decompresses the kernel inside the image and decodes its kallsyms (``kallsyms.py``);
the result is kept as a ``System.map`` in ``$ZUV_CACHE/symbols`` (``~/.cache/zuv``), named by the image's
SHA-256, so the next session reads it in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from emulator.errors import LoadError
from emulator.symbols.kallsyms import KallsymsTable, find_kallsyms
from emulator.symbols.kernel_image import decompressed_kernel, is_linux_image

__all__ = ["KernelLayout", "KernelSymbols", "kernel_layout", "kernel_symbols", "LINK_BASE", "IMAGE_BASE"]

#: ``_text``'s link address on s390x (``TEXT_OFFSET``), where the decompressor puts the kernel without KASLR
LINK_BASE: Final = 0x100000
#: ``CONFIG_KERNEL_IMAGE_BASE``'s default: the kernel's virtual base without KASLR from Linux 6.10 on
IMAGE_BASE: Final = 0x3FFE0000000
#: the decompressor's copy of the kernel's version line: "6.12.107+deb13-s390x (builder@host) #1 SMP ..."
_VERSION: Final = re.compile(rb"(\d+)\.(\d+)\.\d+[^\s\x00]* \([^)\x00]*\) #\d+")
_R_390_RELATIVE: Final = 12
_R_390_64: Final = 22


@dataclass(frozen=True)
class KernelLayout:
    """How a kernel image's link addresses become run-time addresses."""

    version: str  # "6.12.107+deb13-s390x"; "" when the image does not say
    offset: int  # added to a link address under nokaslr (0, or IMAGE_BASE from 6.10 on)
    kaslr: bool  # the decompressor can randomise the kernel's place (it parses "nokaslr")

    def note(self, cmdline: str) -> str:
        """What the user should know about these addresses with this command line ("" when nothing)."""
        if self.kaslr and "nokaslr" not in cmdline.split():
            return ("the kernel may place itself at a random address (KASLR; the command line has no "
                    "nokaslr): symbols assume nokaslr's layout, so boot with --append '... nokaslr' (or, "
                    "stopped in the kernel, symbols --kaslr)")  # fmt: skip
        return ""


def kernel_layout(data: bytes) -> KernelLayout:
    """The layout of an s390x kernel image, from its decompressor (cheap: nothing is decompressed)."""
    head = data[: 1 << 20]
    m = _VERSION.search(head)
    version = m.group(0).split(b" ")[0].decode() if m else ""
    major_minor = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    offset = IMAGE_BASE if major_minor >= (6, 10) else 0
    return KernelLayout(version, offset, b"nokaslr" in data)


@dataclass(frozen=True)
class KernelSymbols:
    """A kernel's symbols recovered from its image: run-time addresses under nokaslr's layout."""

    symbols: dict[str, int]
    kinds: dict[str, str]  # name -> nm type letter
    layout: KernelLayout
    source: str  # where they came from, for the user ("kallsyms in vmlinuz (xz)", "cached ...")


def _cache_dir() -> Path:
    base = os.environ.get("ZUV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zuv")  # fmt: skip
    return Path(base) / "symbols"


def kernel_symbols(path: str | Path, *, cache: bool = True) -> KernelSymbols:
    """The symbols of the kernel in the image at ``path``, from its kallsyms (or the cache of an earlier
    decoding), at their run-time addresses under nokaslr.

    Raises:
        LoadError: not a kernel image, an unreadable file, or no kallsyms that decode.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: cannot read: {e.strerror or e}") from None
    if not is_linux_image(data):
        raise LoadError(f"{path}: not an s390x Linux kernel image (no S390EP at 0x10008)")
    layout = kernel_layout(data)
    cached = _cache_dir() / f"{hashlib.sha256(data).hexdigest()[:24]}.map"
    if cache and cached.is_file():
        from emulator.symbols.symfile import parse_system_map

        try:
            syms, kinds = parse_system_map(cached.read_text(encoding="utf-8"), str(cached))
            return KernelSymbols(syms, kinds, layout, f"kallsyms of {Path(path).name} (cached: {cached})")
        except (OSError, UnicodeDecodeError, LoadError):
            pass  # decode again
    fmt, img = decompressed_kernel(data)
    table = find_kallsyms(img)
    base = _link_base(img, table)
    syms: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for s in table.symbols:
        if s.name not in syms:
            syms[s.name] = s.address - table.relative_base + base + layout.offset
            kinds[s.name] = s.kind
    if cache:
        _store(cached, syms, kinds)
    return KernelSymbols(syms, kinds, layout, f"kallsyms of {Path(path).name} ({fmt}, {len(syms)} symbols)")


def _link_base(img: bytes, table: KallsymsTable) -> int:
    """``kallsyms_relative_base`` as the kernel sees it. A relocatable kernel before 6.10 leaves that
    doubleword 0 in the image for the decompressor's relocation (an ``R_390_64``/``R_390_RELATIVE`` entry
    in the image's ``.rela.dyn``, whose offset is the doubleword's link address): the image starts at
    ``_text``, so that offset less the doubleword's place in the image is ``_text``'s link address."""
    if table.relative_base != 0:
        return table.relative_base
    for link in (LINK_BASE, 0):
        needle = struct.pack(">Q", table.base_at + link)
        at = img.find(needle)
        while at >= 0:
            info = img[at + 8: at + 16]
            if len(info) == 8 and int.from_bytes(info[4:], "big") in (_R_390_64, _R_390_RELATIVE):
                return link
            at = img.find(needle, at + 1)
    return LINK_BASE


def _store(path: Path, syms: dict[str, int], kinds: dict[str, str]) -> None:
    """Keep the decoded table as a System.map (a cache that cannot be written is no error)."""
    ordered = sorted(syms.items(), key=lambda kv: (kv[1], kv[0]))
    lines = [f"{a:016x} {kinds.get(n, 't')} {n}" for n, a in ordered]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass

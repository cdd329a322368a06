"""SE image builder and parser (what pvimg/genprotimg write), and the tools' shared plumbing.

The pvimg command line itself is ``emulator.image.pvimg_cli``; the hostkey tool ``emulator.image.hostkey``.

Image layout (a memory image loaded at absolute 0, spec 8.1; details in docs/se-image.md)::

    0x00000  short PSW -> 0x11000 (stage3a entry)              plaintext
    0x0C000  image metadata "SeImgLnx" (28 bytes)              plaintext
    0x10000  stage3a (init stub; entry 0x11000; stage3a_args)  plaintext
    0x14000  SE header (where pvextract-hdr looks)              plaintext
    next 4K  kernel (tweak 40), ramdisk (50), parmfile (60),   secure: AES-256-XTS per page, measured
             stage3b (70, argument block patched)
    next 4K  IPL parameter block, PV type 5                     plaintext

genprotimg 2.35's layout (no metadata; IPIB at 0x13000, header at 0x14000) is parsed and booted too.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import stat
import struct
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from firmware.crypto import (
    CryptoError,
    DeterministicRng,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    SystemRng,
    aes_xts_encrypt,
)
from firmware.machine_identity import MachineIdentity, MachineIdentityError
from firmware.se_digests import PAGE_SIZE, ImageDigests, page_tweak
from firmware.se_header import (
    MAGIC as HDR_MAGIC,
)
from firmware.se_header import (
    PCF_DEFAULT,
    PCF_NO_COMP_ENCRYPTION,
    PSW_MASK_DEFAULT,
    SeHeaderBuildError,
    SeHeaderError,
    build_header,
    header_size,
)

from . import pki
from .toollog import info, no_verify_warning

__all__ = [
    "ImageError",
    "ImgMetadata",
    "IpibPvComponent",
    "IplParameterBlockPv",
    "ImageComponent",
    "SeImage",
    "COMP_KERNEL",
    "COMP_RAMDISK",
    "COMP_PARMFILE",
    "COMP_STAGE3B",
    "STAGE3A_LOAD_ADDRESS",
    "STAGE3A_ENTRY",
    "METADATA_ADDRESS",
    "bootloader_dir",
    "load_kernel",
    "prepare_cmdline",
    "build_image",
    "parse_image",
    "read_se_header",
]

# Component kinds = tweak prefixes (spec 8.1).
COMP_SHORT_PSW, COMP_METADATA, COMP_STAGE3A = 10, 20, 30
COMP_KERNEL, COMP_RAMDISK, COMP_PARMFILE, COMP_STAGE3B = 40, 50, 60, 70
COMP_SEHDR, COMP_IPIB = 80, 90
_COMP_NAMES = {
    COMP_SHORT_PSW: "short PSW", COMP_METADATA: "image metadata", COMP_STAGE3A: "stage3a",
    COMP_KERNEL: "kernel", COMP_RAMDISK: "ramdisk", COMP_PARMFILE: "parmfile", COMP_STAGE3B: "stage3b",
    COMP_SEHDR: "SE header", COMP_IPIB: "IPIB",
}

STAGE3A_LOAD_ADDRESS = 0x10000
STAGE3A_ENTRY = 0x11000
STAGE3A_MAX_END = 0x13000
#: where the SE header is at the lowest: s390-tools' pvextract-hdr searches from here; genprotimg before the
#: Rust pvimg (2.35) put the IPIB at 0x13000 below it and wrote no image metadata
SE_HDR_ADDRESS = 0x14000
LEGACY_IPIB_ADDRESS = 0x13000
METADATA_ADDRESS = 0xC000
IMAGE_LOAD_ADDRESS = 0x10000  # Linux kernel entry; stage3b moves the kernel here
MAX_COMMAND_LINE_SIZE_ADDR = 0x10430
LEGACY_COMMAND_LINE_SIZE = 896
IMG_META_MAGIC = b"SeImgLnx"
SHORT_PSW_BIT12 = 0x0008000000000000
IPL_PBT_PV = 5
#: the short (ESA) PSW at 0 that IPLs the image into stage3a, 31-bit ("create" writes it; a Linux image's
#: IPL PSW differs)
_SHORT_PSW = struct.pack(
    ">Q", SHORT_PSW_BIT12 | (PSW_MASK_DEFAULT & 0xFFFFFFFF00000000) | 0x80000000 | STAGE3A_ENTRY
)


class ImageError(Exception):
    """Bad input to the builder or a malformed image (exit status 2 in the CLIs)."""


def _round_up(n: int, a: int = PAGE_SIZE) -> int:
    return (n + a - 1) // a * a


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class ImgMetadata:
    """Image metadata at 0xC000 (28 bytes, packed): magic, hdr_off, version, ipib_off."""

    magic: bytes
    hdr_off: int
    version: int
    ipib_off: int

    FMT = ">8sQIQ"
    SIZE = 28

    def pack(self) -> bytes:
        """The 28 bytes."""
        return struct.pack(self.FMT, self.magic, self.hdr_off, self.version, self.ipib_off)

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ImgMetadata:
        """Parse 28 bytes at offset."""
        return cls(*struct.unpack_from(cls.FMT, data, offset))


@dataclass(frozen=True)
class IpibPvComponent:
    """One PV IPIB component entry (24 bytes): tweak prefix, guest address, length."""

    tweak_pref: int
    addr: int
    len: int

    FMT = ">QQQ"
    SIZE = 24


@dataclass(frozen=True)
class IplParameterBlockPv:
    """IPL parameter block of type 5 (PV), spec 8.2."""

    components: tuple[IpibPvComponent, ...]
    pv_hdr_addr: int
    pv_hdr_size: int
    flags: int = 0
    version: int = 1
    loadparm: bytes = bytes(8)
    pv_version: int = 1

    HDR_FMT = ">IB2xBIB3x8s87xB4xIQQ"
    HDR_SIZE = 0x88

    @property
    def size(self) -> int:
        """Total length 0x88 + 24 * n."""
        return self.HDR_SIZE + IpibPvComponent.SIZE * len(self.components)

    def pack(self) -> bytes:
        """The IPIB bytes."""
        head = struct.pack(
            self.HDR_FMT, self.size, self.flags, self.version, self.size - 8, IPL_PBT_PV, self.loadparm,
            self.pv_version, len(self.components), self.pv_hdr_addr, self.pv_hdr_size,
        )
        return head + b"".join(
            struct.pack(IpibPvComponent.FMT, c.tweak_pref, c.addr, c.len) for c in self.components
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> IplParameterBlockPv:
        """Parse and check an IPIB at offset (length, block type, component count)."""
        if len(data) < offset + cls.HDR_SIZE:
            raise ImageError("IPIB truncated")
        (size, flags, version, blk_len, pbt, loadparm, pv_version, n, hdr_addr, hdr_size) = (
            struct.unpack_from(cls.HDR_FMT, data, offset)
        )
        if pbt != IPL_PBT_PV:
            raise ImageError(f"IPIB block type {pbt} is not 5 (PV)")
        need = cls.HDR_SIZE + IpibPvComponent.SIZE * n  # genprotimg 2.35 gives the page (0x1000) as length
        if size < need or blk_len < need - 8 or size > PAGE_SIZE:
            raise ImageError(f"IPIB length {size:#x} (block {blk_len:#x}) does not fit {n} components")
        if len(data) < offset + size:
            raise ImageError("IPIB truncated")
        comps = tuple(
            IpibPvComponent(*struct.unpack_from(IpibPvComponent.FMT, data, offset + cls.HDR_SIZE + 24 * i))
            for i in range(n)
        )
        return cls(comps, hdr_addr, hdr_size, flags, version, loadparm, pv_version)


assert struct.calcsize(ImgMetadata.FMT) == ImgMetadata.SIZE
assert struct.calcsize(IplParameterBlockPv.HDR_FMT) == IplParameterBlockPv.HDR_SIZE


@dataclass(frozen=True)
class ImageComponent:
    """A component of the built image: kind, address, original and stored (page-padded) size, tweak prefix."""

    kind: int
    addr: int
    size: int
    stored_size: int
    tweak_pref: int | None  # None: plaintext component

    @property
    def name(self) -> str:
        """Human name of the kind."""
        return _COMP_NAMES.get(self.kind, str(self.kind))

    @property
    def secure(self) -> bool:
        """Encrypted and measured (unpacked by the UV)."""
        return self.tweak_pref is not None


@dataclass(frozen=True)
class SeImage:
    """A built or parsed SE image."""

    data: bytes
    header_addr: int
    header_size: int
    ipib_addr: int
    ipib: IplParameterBlockPv
    components: tuple[ImageComponent, ...] = ()

    @property
    def header(self) -> bytes:
        """The SE header bytes."""
        return self.data[self.header_addr:self.header_addr + self.header_size]

    def secure_pages(self):
        """(gaddr, tweak, stored page) of every secure page, in Unpack order (from the IPIB)."""
        for comp in self.ipib.components:
            for off in range(0, _round_up(comp.len), PAGE_SIZE):
                yield (
                    comp.addr + off,
                    page_tweak(comp.tweak_pref, off),
                    self.data[comp.addr + off : comp.addr + off + PAGE_SIZE],
                )


# ------------------------------------------------------------------------------------------------ inputs


def bootloader_dir() -> Path:
    """Where the prebuilt stage3a.bin / stage3b.bin live (guests/images of the repository)."""
    return Path(__file__).resolve().parents[2] / "guests" / "images"


def _read_bootloader(directory: Path | None, name: str) -> bytes:
    path = (directory or bootloader_dir()) / f"{name}.bin"
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(
            f"cannot read the {name} loader {path}: {exc.strerror} (build it with tools/build_guests.py)"
        )


def load_kernel(data: bytes) -> tuple[bytes, int]:
    """The kernel as a memory image from absolute 0, and its entry address.

    An s390x ELF is flattened (PT_LOAD segments at their physical addresses, BSS zero-filled, nothing
    below 0x10000 allowed); any other file is taken as a memory image from 0 like Linux's ``image``,
    entered at 0x10000. Either must extend beyond 0x10000.
    """
    if data[:4] == b"\x7fELF":
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            elf = ELFFile(io.BytesIO(data))
            if elf["e_machine"] != "EM_S390" or elf.elfclass != 64 or elf.little_endian:
                raise ImageError("kernel ELF is not a 64-bit big-endian s390x executable")
            segs = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_memsz"] > 0]
            if not segs:
                raise ImageError("kernel ELF has no loadable segment")
            low = min(s["p_paddr"] for s in segs)
            if low < IMAGE_LOAD_ADDRESS:
                raise ImageError(f"kernel ELF loads at {low:#x}, below 0x10000 (lowcore/IPL area)")
            end = max(s["p_paddr"] + s["p_memsz"] for s in segs)
            if end > 1 << 32:
                raise ImageError("kernel ELF loads above 4 GiB")
            for s in segs:  # a cut-off file would leave the kernel's tail out of the image, silently
                if s["p_filesz"] > s["p_memsz"] or s["p_offset"] + s["p_filesz"] > len(data):
                    raise ImageError(
                        f"kernel ELF is truncated or corrupt: a segment's {s['p_filesz']} bytes at file "
                        f"offset {s['p_offset']:#x} go beyond the file's {len(data)} bytes"
                    )
            image = bytearray(end)
            for s in segs:
                image[s["p_paddr"]:s["p_paddr"] + s["p_filesz"]] = s.data()
            return bytes(image), elf["e_entry"]
        except ELFError as exc:
            raise ImageError(f"malformed kernel ELF: {exc}") from None
    if len(data) <= IMAGE_LOAD_ADDRESS:
        raise ImageError("kernel image must be a memory image from address 0 larger than 64 KiB (or an ELF)")
    return bytes(data), IMAGE_LOAD_ADDRESS


def prepare_cmdline(text: bytes, kernel_image: bytes, check: bool = True) -> bytes:
    """Parmfile -> the command-line component as IBM's pvimg and genprotimg make it: the file's bytes as
    they are (newlines and all) and a NUL unless the last byte is one already (an empty file gives a lone
    NUL; s390-tools' ``Cmdline`` reader), checked against the kernel's command-line limit unless ``check``
    is off (pvimg's ``--no-component-check``: that limit is part of its component check)."""
    out = bytes(text) if text.endswith(b"\0") else bytes(text) + b"\0"
    if not check:
        return out
    limit = LEGACY_COMMAND_LINE_SIZE
    if len(kernel_image) >= MAX_COMMAND_LINE_SIZE_ADDR + 8:
        declared = int.from_bytes(
            kernel_image[MAX_COMMAND_LINE_SIZE_ADDR : MAX_COMMAND_LINE_SIZE_ADDR + 8], "big"
        )
        limit = declared or limit
    if len(out) > limit:
        raise ImageError(
            f"the kernel command line has {len(out)} bytes with its NUL; the kernel accepts {limit}"
        )
    return out


# ------------------------------------------------------------------------------------------------ build


def build_image(
    *,
    kernel: bytes,
    host_keys: Sequence[EllipticCurvePublicKey],
    rng: Rng,
    ramdisk: bytes | None = None,
    parmfile: bytes | None = None,
    pcf: int = PCF_DEFAULT,
    scf: int = 0,
    cck: Secret | None = None,
    xts_key: Secret | None = None,
    protection_key: Secret | None = None,
    psw_addr: int | None = None,
    stage3a: bytes | None = None,
    stage3b: bytes | None = None,
    loader_dir: Path | None = None,
    check_cmdline: bool = True,
) -> SeImage:
    """Build an SE image (what ``pvimg create`` writes).

    Raises:
        ImageError: bad kernel/ramdisk/parmfile/loader, or a header the architecture cannot express.
    """
    kimage, entry = load_kernel(kernel)
    stage3a = stage3a if stage3a is not None else _read_bootloader(loader_dir, "stage3a")
    stage3b = stage3b if stage3b is not None else _read_bootloader(loader_dir, "stage3b")
    if (
        len(stage3a) < 0x1000 + 24
        or STAGE3A_LOAD_ADDRESS + len(stage3a) > STAGE3A_MAX_END
        or any(stage3a[-24:])
    ):
        raise ImageError("stage3a.bin is not a stage3a loader (size or parameter block)")
    if len(stage3b) < 64 + 8 or any(stage3b[-64:]):
        raise ImageError("stage3b.bin is not a stage3b loader (argument block)")
    if xts_key is None:
        while True:
            xts_key = Secret(rng.random_bytes(64), "XTS key")
            if xts_key.expose()[:32] != xts_key.expose()[32:]:
                break
    cmdline = prepare_cmdline(parmfile, kimage, check_cmdline) if parmfile is not None else None
    encrypt = not pcf & PCF_NO_COMP_ENCRYPTION

    out = bytearray()
    comps: list[ImageComponent] = []
    digests = ImageDigests()
    # The header goes right after stage3a, at 0x14000 at the lowest, where s390-tools' pvextract-hdr looks
    # (as pvimg lays it out); the secure components follow it.
    hdr_addr = max(_round_up(STAGE3A_LOAD_ADDRESS + len(stage3a)), SE_HDR_ADDRESS)
    next_addr = _round_up(hdr_addr + header_size(len(host_keys)))

    def place(addr: int, blob: bytes) -> None:
        if len(out) < addr + len(blob):
            out.extend(bytes(addr + len(blob) - len(out)))
        out[addr:addr + len(blob)] = blob

    def add_secure(kind: int, blob: bytes) -> ImageComponent:
        nonlocal next_addr
        if not blob:
            raise ImageError(f"the {_COMP_NAMES[kind]} is empty")
        pref = (kind << 48) | int.from_bytes(rng.random_bytes(6), "big")
        addr, stored = next_addr, _round_up(len(blob))
        padded = blob + bytes(stored - len(blob))
        for off in range(0, stored, PAGE_SIZE):
            tweak = page_tweak(pref, off)
            page = padded[off:off + PAGE_SIZE]
            if encrypt:
                try:
                    page = aes_xts_encrypt(xts_key, tweak, page)
                except CryptoError as exc:
                    raise ImageError(f"component key: {exc}") from None
            digests.add_page(addr + off, tweak, page)
            place(addr + off, page)
        comp = ImageComponent(kind, addr, len(blob), stored, pref)
        comps.append(comp)
        next_addr = addr + stored
        return comp

    k = add_secure(COMP_KERNEL, kimage)
    r = add_secure(COMP_RAMDISK, ramdisk) if ramdisk else None
    p = add_secure(COMP_PARMFILE, cmdline) if cmdline else None
    args = struct.pack(
        ">8Q",
        k.addr, k.size,
        p.addr if p else 0, p.size if p else 0,
        r.addr if r else 0, r.size if r else 0,
        PSW_MASK_DEFAULT, entry,
    )
    s3b = add_secure(COMP_STAGE3B, stage3b[:-64] + args)

    try:
        header = build_header(
            host_keys=host_keys, psw_addr=s3b.addr if psw_addr is None else psw_addr, digests=digests,
            xts_key=xts_key, rng=rng, pcf=pcf, scf=scf, cck=cck, protection_key=protection_key,
        )
    except SeHeaderBuildError as exc:
        raise ImageError(str(exc)) from None
    assert len(header) == header_size(len(host_keys))
    place(hdr_addr, header)
    comps.insert(0, ImageComponent(COMP_SEHDR, hdr_addr, len(header), _round_up(len(header)), None))
    ipib_addr = next_addr
    ipib = IplParameterBlockPv(
        components=tuple(IpibPvComponent(c.tweak_pref, c.addr, c.stored_size) for c in comps if c.secure),
        pv_hdr_addr=hdr_addr,
        pv_hdr_size=len(header),
    )
    place(ipib_addr, ipib.pack())
    comps.append(ImageComponent(COMP_IPIB, ipib_addr, ipib.size, ipib.size, None))

    parms = STAGE3A_LOAD_ADDRESS + len(stage3a) - 24
    place(
        STAGE3A_LOAD_ADDRESS,
        stage3a[:-24] + struct.pack(">QQQ", hdr_addr - parms, len(header), ipib_addr - parms),
    )
    comps.insert(0, ImageComponent(COMP_STAGE3A, STAGE3A_LOAD_ADDRESS, len(stage3a), len(stage3a), None))
    place(METADATA_ADDRESS, ImgMetadata(IMG_META_MAGIC, hdr_addr, 1, ipib_addr).pack())
    comps.insert(0, ImageComponent(COMP_METADATA, METADATA_ADDRESS, ImgMetadata.SIZE, ImgMetadata.SIZE, None))
    place(0, _SHORT_PSW)
    comps.insert(0, ImageComponent(COMP_SHORT_PSW, 0, 8, 8, None))
    return SeImage(bytes(out), hdr_addr, len(header), ipib_addr, ipib, tuple(comps))


# ------------------------------------------------------------------------------------------------ parse


def _legacy_ipib(data: bytes) -> bool:
    """True if a PV IPL parameter block (type 5) starts at 0x13000, as genprotimg 2.35 writes it."""
    off = LEGACY_IPIB_ADDRESS
    return len(data) >= off + IplParameterBlockPv.HDR_SIZE and data[off + 12] == IPL_PBT_PV


def parse_image(data: bytes) -> SeImage:
    """Locate and parse the SE header and IPIB of an image.

    The image metadata at 0xC000 names both (pvimg's layout); without it (genprotimg 2.35) the header is
    the first 'IBMSecEx' at a page boundary and the IPIB the PV block at 0x13000 that points to that
    header, else the page after the header. A file that starts with the header magic is taken as a bare
    SE header (no IPIB).
    """
    if data[:8] == HDR_MAGIC:
        size = struct.unpack_from(">I", data, 12)[0] if len(data) >= 16 else 0
        return SeImage(bytes(data), 0, size, -1, IplParameterBlockPv((), 0, size))
    hdr_addr = ipib_addr = None
    if len(data) >= METADATA_ADDRESS + ImgMetadata.SIZE:
        meta = ImgMetadata.parse(data, METADATA_ADDRESS)
        if meta.magic == IMG_META_MAGIC:
            hdr_addr, ipib_addr = meta.hdr_off, meta.ipib_off
    if hdr_addr is None:
        for off in range(0, len(data) - 16, PAGE_SIZE):
            if data[off:off + 8] == HDR_MAGIC:
                hdr_addr = off
                break
        else:
            raise ImageError("no SE header in the image (no metadata, no 'IBMSecEx' at a page boundary)")
    if hdr_addr + 16 > len(data):
        raise ImageError(f"SE header offset {hdr_addr:#x} beyond the image")
    size = struct.unpack_from(">I", data, hdr_addr + 12)[0]
    if hdr_addr + size > len(data):
        raise ImageError(f"SE header at {hdr_addr:#x} claims {size:#x} bytes beyond the end of the image")
    if ipib_addr is None:
        ipib_addr = _round_up(hdr_addr + size)
        if _legacy_ipib(data) and LEGACY_IPIB_ADDRESS < hdr_addr:
            legacy = IplParameterBlockPv.parse(data, LEGACY_IPIB_ADDRESS)
            if legacy.pv_hdr_addr in (0, hdr_addr):  # genprotimg 2.35 leaves it 0: stage3a fills it in
                ipib_addr = LEGACY_IPIB_ADDRESS
    ipib = IplParameterBlockPv.parse(data, ipib_addr)
    if ipib.pv_hdr_addr == 0:  # as stage3a fills it in before DIAG 308
        ipib = replace(ipib, pv_hdr_addr=hdr_addr, pv_hdr_size=size)
    return SeImage(bytes(data), hdr_addr, size, ipib_addr, ipib)


#: how far s390-tools looks for the header in an image without metadata: 0x15 page starts (0 to 0x14000)
HEADER_SEARCH_PAGES = 0x15
#: the largest header s390-tools reads (its guard against a forged size)
MAX_HEADER_SIZE = 1024 * PAGE_SIZE


def read_se_header(data: bytes) -> bytes:
    """The SE header of an image or a bare header, found as s390-tools' tools find it (``pvimg info``,
    ``test``, ``pvattest``/``pvsecret --hdr``, ``pvextract-hdr``): at the metadata's header offset when the
    image has metadata at 0xC000, else at the first of 0x15 page starts that holds 'IBMSecEx'; then the size
    the header gives. Nothing past it is needed (a cut image whose header is whole still answers).

    Raises:
        ImageError: no header there, or it is cut short or claims more than 1024 pages.
    """
    offsets: Sequence[int] = range(0, HEADER_SEARCH_PAGES * PAGE_SIZE, PAGE_SIZE)
    if len(data) >= METADATA_ADDRESS + ImgMetadata.SIZE:
        meta = ImgMetadata.parse(data, METADATA_ADDRESS)
        if meta.magic == IMG_META_MAGIC:
            offsets = (meta.hdr_off,)
    at = next((o for o in offsets if data[o:o + 8] == HDR_MAGIC), None)
    if at is None:
        raise ImageError("No Secure Execution header found.")
    size = struct.unpack_from(">I", data, at + 12)[0] if len(data) >= at + 16 else 0
    if not 16 <= size <= MAX_HEADER_SIZE or at + size > len(data):
        raise ImageError(f"the SE header at {at:#x} is cut short or has an invalid size ({size:#x} bytes)")
    return bytes(data[at:at + size])


def _image_start(path: str | Path) -> tuple[int, bytes, ImgMetadata | None] | None:
    """A regular file's size, first 8 bytes and image metadata (None if absent); None: not readable."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            head = f.read(8)
            f.seek(METADATA_ADDRESS)
            raw = f.read(ImgMetadata.SIZE)
    except OSError:
        return None
    meta = ImgMetadata.parse(raw) if len(raw) == ImgMetadata.SIZE else None
    return st.st_size, head, meta if meta is not None and meta.magic == IMG_META_MAGIC else None


def _legacy_layout(path: str | Path) -> bool:
    """True if the file holds the fixed part of a PV IPIB at 0x13000 (genprotimg 2.35, no metadata)."""
    try:
        with open(path, "rb") as f:
            f.seek(LEGACY_IPIB_ADDRESS)
            raw = f.read(IplParameterBlockPv.HDR_SIZE)
    except OSError:
        return False
    return len(raw) == IplParameterBlockPv.HDR_SIZE and raw[12] == IPL_PBT_PV


def starts_like_image(path: str | Path) -> bool:
    """True if the file starts like an SE image: ``create``'s short PSW at 0, or the image metadata."""
    start = _image_start(path)
    return start is not None and (start[1] == _SHORT_PSW or start[2] is not None)


def check_layout(path: str | Path) -> None:
    """Refuse a file that starts like an SE image (``starts_like_image``) but does not hold all of it.

    Cut short, it would load as a flat kernel and run into zeros. Checked: the metadata, and that the file
    reaches the end of the fixed part of the IPL parameter block it points to, which ``create`` writes
    last. No field is interpreted: what the block says (the header, the components) is left to the
    hypervisor and the Ultravisor, whose checks give a tampered image its architected result. Other files
    pass; an unreadable one is left to the loader.

    Raises:
        ImageError: the file is a truncated SE image; the message says where it ends and what is missing.
    """
    start = _image_start(path)
    if start is None:
        return
    size, head, meta = start
    if meta is None:
        if head == _SHORT_PSW and not _legacy_layout(path):
            raise ImageError(
                f"{path}: a truncated SE image: it starts with stage3a's PSW but ends at {size:#x}, before "
                f"the image metadata at {METADATA_ADDRESS:#x} or genprotimg 2.35's IPL parameter block at "
                f"{LEGACY_IPIB_ADDRESS:#x}"
            )
        return
    if size < meta.ipib_off + IplParameterBlockPv.HDR_SIZE:
        raise ImageError(
            f"{path}: a truncated SE image: it ends at {size:#x}, before the end of its IPL parameter "
            f"block's fixed part at {meta.ipib_off:#x}+{IplParameterBlockPv.HDR_SIZE:#x}"
        )


# ----------------------------------------------------------------------------------------------- CLI plumbing


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise _UsageError(message)


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _time(text: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _rng(seed: str | None) -> Rng:
    return DeterministicRng(seed) if seed is not None else SystemRng()


def _bundled_pki_dir() -> Path:
    return MachineIdentity.bundled_dir("zuv-demo") / "pki"


def _run(prog: str, argv: Sequence[str] | None, build, handler, input_error: int = 2) -> int:
    """Parse and run; usage errors exit 2, bad input ``input_error`` (s390-tools' tools: 1), a failed
    verification or a refused header 1; one line on stderr, never a traceback."""
    parser = build()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        return handler(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except _UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (ImageError, MachineIdentityError, CryptoError, pki.PkiFormatError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return input_error
    except pki.PkiError as exc:
        print(f"{prog}: verification failed: {exc}", file=sys.stderr)
        return 1
    except SeHeaderError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


# ----------------------------------------------------------------------------------------- host-key documents


def host_keys_from_hkds(
    a, prog: str = "pvimg", read: Callable[[str | Path, str], bytes] | None = None
) -> list[EllipticCurvePublicKey]:
    """The public host keys of ``a.hkds``, verified against the PKI (``--cert``, ``--crl``, ``--root-ca``,
    ``--time``) unless ``a.no_verify``; ``read`` raises the calling tool's own error for unreadable files."""
    read = read or _read
    if a.no_verify:  # warned before the documents are read, as s390-tools
        no_verify_warning(a, prog)
    docs = [
        (path, pki.load_certificate(read(path, "host-key document"), f"host-key document {path}"))
        for path in a.hkds
    ]
    if a.no_verify:
        for path, _ in docs:
            info(a, f"Use host-key document at '{path}'")
        return [pki.describe_unverified(d).public_key for _, d in docs]
    pki_dir = Path(a.pki) if getattr(a, "pki", None) else None
    if not a.cert and pki_dir is None:
        raise pki.PkiError(
            "give the IBM Z signing-key and intermediate CA certificates with --cert (or a PKI directory of "
            "your own with --pki), or disable the verification with --no-verify (at your own risk)"
        )
    certs = [c for path in a.cert for c in pki.load_certificates(read(path, "certificate"), str(path))]
    crls = [pki.load_crl(read(path, "CRL"), str(path)) for path in a.crl]
    if pki_dir is not None:  # hostkey init-pki's layout: certificates, CRLs and the root CA in one place
        loaded = pki.Pki.load(pki_dir)
        certs += [loaded.signing_cert, loaded.inter_cert]
        if not a.crl:
            crls += loaded.crls
    root_path = Path(a.root_ca) if a.root_ca else (pki_dir or _bundled_pki_dir()) / "root-ca.crt"
    roots = pki.load_certificates(read(root_path, "root CA"), str(root_path))
    keys = []
    for path, doc in docs:
        try:
            keys.append(
                pki.verify_host_key_document(doc, certs=certs, roots=roots, crls=crls, now=a.time).public_key
            )
        except pki.PkiError as exc:
            hint = ""
            if not a.root_ca and pki_dir is None:
                hint = (" (checked against zuv's emulated root CA: for a PKI of your own, give its root CA "
                        "with --root-ca, or its directory with --pki)")  # fmt: skip
            raise pki.PkiError(f"{path}: {exc}{hint}") from None
        info(a, f"Use host-key document at '{path}'")
    return keys

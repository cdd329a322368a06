"""An s390x Linux kernel image (``vmlinuz``, bzImage): recognised, and its compressed kernel decompressed.

The image is the decompressor (``arch/s390/boot``) with the real kernel inside it as one compressed blob,
in the format the kernel was configured with (``CONFIG_KERNEL_GZIP/XZ/LZMA/ZSTD/...``; Debian 12 uses xz,
Debian 13 zstd). The blob is found by its format's magic number and decompressed from there until its end
(trailing bytes, such as the size the kernel's build appends, are ignored). gzip, xz and lzma come from
Python; zstd from the system's libzstd (``libzstd.so.1``, on every Debian system since apt needs it) through
ctypes, else the ``zstd`` program. What comes out is the kernel's memory image from ``_text`` on, which holds
its own symbol table (``kallsyms.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import lzma
import re
import shutil
import subprocess
import zlib
from typing import Final

from emulator.errors import LoadError

__all__ = ["is_linux_image", "decompressed_kernel", "FORMATS"]

#: The parameter area's "S390EP" marker at 0x10008 (QEMU looks for it to load a kernel with -initrd).
_S390EP: Final = b"S390EP"
_S390EP_AT: Final = 0x10008
#: magic numbers of the formats zuv can decompress
FORMATS: Final = {
    "gzip": b"\x1f\x8b\x08",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
    "lzma": b"\x5d\x00\x00",
}
#: the smallest output that can be a kernel (the decompressor holds small blobs of its own too)
_MIN_KERNEL: Final = 1 << 20
_LIMIT: Final = 512 << 20


def is_linux_image(data: bytes) -> bool:
    """True when ``data`` is an s390x Linux kernel image (its parameter area carries ``S390EP``)."""
    return data[_S390EP_AT: _S390EP_AT + len(_S390EP)] == _S390EP


def decompressed_kernel(data: bytes) -> tuple[str, bytes]:
    """The format and the decompressed kernel of an s390x kernel image.

    Raises:
        LoadError: no blob of a known format decompresses to something kernel-sized.
    """
    tried: list[str] = []
    for fmt, magic in FORMATS.items():
        for m in re.finditer(re.escape(magic), data):
            try:
                out = _DECOMPRESS[fmt](data[m.start():])
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, LoadError) as e:
                tried.append(f"{fmt} at {m.start():#x}: {e}")
                continue
            if len(out) >= _MIN_KERNEL:
                return fmt, out
    note = f" ({'; '.join(tried[:3])})" if tried else ""
    raise LoadError(f"no compressed kernel found in the image (gzip, xz, lzma or zstd){note}")


def _gzip(blob: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(blob, _LIMIT)


def _xz(blob: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(blob, _LIMIT)


def _lzma(blob: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(blob, _LIMIT)


class _InBuf(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuf(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


def _libzstd() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.ZSTD_createDStream.restype = ctypes.c_void_p
    lib.ZSTD_freeDStream.argtypes = [ctypes.c_void_p]
    lib.ZSTD_initDStream.argtypes = [ctypes.c_void_p]
    lib.ZSTD_initDStream.restype = ctypes.c_size_t
    lib.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.POINTER(_OutBuf), ctypes.POINTER(_InBuf)]
    lib.ZSTD_decompressStream.restype = ctypes.c_size_t
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
    lib.ZSTD_getErrorName.restype = ctypes.c_char_p
    return lib


def _zstd(blob: bytes) -> bytes:
    """One zstd frame from the start of ``blob`` (what follows the frame is ignored)."""
    lib = _libzstd()
    if lib is None:
        return _zstd_program(blob)
    ds = lib.ZSTD_createDStream()
    if not ds:
        raise LoadError("libzstd: cannot create a decompression stream")
    try:
        lib.ZSTD_initDStream(ds)
        src = ctypes.create_string_buffer(blob, len(blob))
        inb = _InBuf(ctypes.cast(src, ctypes.c_void_p), len(blob), 0)
        chunks: list[bytes] = []
        out = ctypes.create_string_buffer(1 << 22)
        total = 0
        while True:
            outb = _OutBuf(ctypes.cast(out, ctypes.c_void_p), len(out), 0)
            r = lib.ZSTD_decompressStream(ds, ctypes.byref(outb), ctypes.byref(inb))
            if lib.ZSTD_isError(r):
                raise LoadError(f"zstd: {lib.ZSTD_getErrorName(r).decode()}")
            chunks.append(out.raw[: outb.pos])
            total += outb.pos
            if r == 0 or total > _LIMIT:  # the frame is complete
                break
            if inb.pos >= inb.size and outb.pos < outb.size:
                raise LoadError("zstd: the frame is truncated")
        return b"".join(chunks)
    finally:
        lib.ZSTD_freeDStream(ds)


def _zstd_program(blob: bytes) -> bytes:
    exe = shutil.which("zstd")
    if exe is None:
        raise LoadError("a zstd-compressed kernel needs libzstd or the zstd program (apt-get install zstd)")
    r = subprocess.run([exe, "-dc"], input=blob, capture_output=True, check=False)
    if not r.stdout:
        raise LoadError(f"zstd: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


_DECOMPRESS: Final = {"gzip": _gzip, "xz": _xz, "zstd": _zstd, "lzma": _lzma}

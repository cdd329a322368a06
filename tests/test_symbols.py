"""Symbols without the kernel's debug package: kallsyms decoded from synthetic tables in both layouts Linux
has used, a synthetic kernel image compressed each way, System.map and ELF symbol files, and the ELF of
symbols written for gdb."""

from __future__ import annotations

import gzip
import lzma
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from emulator.errors import LoadError
from emulator.symbols.kallsyms import find_kallsyms
from emulator.symbols.kernel_image import decompressed_kernel, is_linux_image
from emulator.symbols.linux import IMAGE_BASE, LINK_BASE, kernel_layout, kernel_symbols
from emulator.symbols.symfile import parse_system_map, read_symbols, write_symbol_elf

ROOT = Path(__file__).resolve().parent.parent
TOKENS = ["start_", "kernel", "_init", "sched", "do_", "__", "irq", "page", "_lock", "s390"]


def _align(buf: bytearray, n: int = 8) -> None:
    buf.extend(bytes(-len(buf) % n))


def _table(entries: list[tuple[str, int]], *, layout: str, seqs: bool = False,
           base: int = LINK_BASE) -> tuple[bytearray, int]:  # fmt: skip
    """kallsyms as scripts/kallsyms lays it out (big-endian), ``entries`` = (type letter + name, address)
    sorted by address; returns the bytes and the offset of kallsyms_relative_base in them."""
    used = sorted({c for text, _ in entries for c in text.encode()})
    free = [c for c in range(256) if c not in used]
    tokens = [b""] * 256
    for c in used:
        tokens[c] = bytes([c])
    multi = dict(zip(free, (t.encode() for t in TOKENS)))
    for c, t in multi.items():
        tokens[c] = t
    by_len = sorted(multi.items(), key=lambda kv: -len(kv[1]))

    def encode(text: bytes) -> bytes:
        out, i = bytearray(), 0
        while i < len(text):
            for code, t in by_len:
                if text.startswith(t, i):
                    out.append(code)
                    i += len(t)
                    break
            else:
                out.append(text[i])
                i += 1
        return bytes(out)

    names, markers = bytearray(), []
    for i, (text, _) in enumerate(entries):
        if i % 256 == 0:
            markers.append(len(names))
        enc = encode(text.encode())
        n = len(enc)
        names += bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
        names += enc
    offsets = b"".join(struct.pack(">I", a - base) for _, a in entries)
    table = b"".join(t + b"\0" for t in tokens)
    index, at = b"", 0
    for t in tokens:
        index += struct.pack(">H", at)
        at += len(t) + 1
    seq = b"".join(i.to_bytes(3, "big") for i in sorted(range(len(entries)), key=lambda i: entries[i][0][1:]))
    buf = bytearray()

    def head() -> None:
        buf.extend(struct.pack(">I", len(entries)))
        _align(buf)
        buf.extend(names)
        _align(buf)
        buf.extend(b"".join(struct.pack(">I", m) for m in markers))
        _align(buf)
        if seqs:
            buf.extend(seq)
            _align(buf)
        buf.extend(table)
        _align(buf)
        buf.extend(index)
        _align(buf)

    if layout == "6.4+":
        head()
        buf.extend(offsets)
        _align(buf)
        base_at = len(buf)
        buf.extend(struct.pack(">Q", base))
    else:
        buf.extend(offsets)
        _align(buf)
        base_at = len(buf)
        buf.extend(struct.pack(">Q", base))
        head()
    return buf, base_at


def _entries(n: int = 700, base: int = LINK_BASE) -> list[tuple[str, int]]:
    rnd = random.Random(n)
    out = [("T_text", base), ("Tstart_kernel", base + 0x40), ("Tschedule", base + 0x100)]
    addr = base + 0x200
    for i in range(n - 4):
        kind = rnd.choice("tTdDbBrR")
        stem = rnd.choice(["do_", "sched_", "irq_", "page_lock_", "s390_", "__init_", "x"])
        out.append((f"{kind}{stem}{i}_{rnd.randrange(10**6)}", addr))
        addr += rnd.randrange(0, 0x400, 2)
    out.append(("T" + "".join(chr(97 + i % 26) + str(i % 10) for i in range(100)), addr))  # 200 tokens
    return out


def _in_filler(table: bytes, at: int = 0x12340) -> bytes:
    rnd = random.Random(7)
    return bytes(rnd.randrange(256) for _ in range(at)) + bytes(table) + bytes(4096)


@pytest.mark.parametrize("layout,seqs", [("6.4+", False), ("6.4+", True), ("pre-6.4", False),
                                         ("pre-6.4", True)])  # fmt: skip
def test_kallsyms_decodes_both_layouts(layout, seqs):
    entries = _entries()
    buf, _ = _table(entries, layout=layout, seqs=seqs)
    t = find_kallsyms(_in_filler(buf))
    assert t.layout == layout and t.relative_base == LINK_BASE
    assert [(s.kind + s.name, s.address) for s in t.symbols] == entries
    assert len(t.symbols[-1].name) == 200  # a two-byte length


def test_kallsyms_absent_or_damaged_is_an_error():
    with pytest.raises(LoadError, match="no kallsyms table"):
        find_kallsyms(_in_filler(b"no symbols here"))
    buf, _ = _table(_entries(), layout="6.4+")
    names_at = 8  # the first entry's length byte, after kallsyms_num_syms and its padding
    buf[names_at] = 0  # an empty entry: the markers no longer agree with the names
    with pytest.raises(LoadError):
        find_kallsyms(_in_filler(buf))


def _kernel_image(payload: bytes, *, version: str = "6.12.107+deb13-s390x", nokaslr: bool = True) -> bytes:
    head = bytearray(0x20000)
    head[0x10008:0x1000E] = b"S390EP"
    banner = f"{version} (builder@example) #1 SMP Debian {version}".encode() + b"\0"
    head[0x18000: 0x18000 + len(banner)] = banner
    if nokaslr:
        head[0x19000:0x19008] = b"nokaslr\0"
    return bytes(head) + payload + struct.pack("<I", len(payload))


def _zstd(data: bytes) -> bytes:
    exe = shutil.which("zstd")
    if exe is None:
        pytest.skip("the zstd program is not installed (apt-get install zstd)")
    return subprocess.run([exe, "-c", "-3"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("fmt", ["gzip", "xz", "lzma", "zstd"])
def test_kernel_image_decompressed_each_way(fmt):
    kernel = _in_filler(_table(_entries(), layout="6.4+")[0]) + bytes(1 << 20)
    compress = {"gzip": lambda d: gzip.compress(d, mtime=0), "xz": lzma.compress,
                "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), "zstd": _zstd}  # fmt: skip
    blob = compress[fmt](kernel)
    image = _kernel_image(blob)
    assert is_linux_image(image)
    assert decompressed_kernel(image) == (fmt, kernel)


def test_kernel_symbols_from_the_image_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("ZUV_CACHE", str(tmp_path / "cache"))
    entries = _entries()
    kernel = _in_filler(_table(entries, layout="6.4+")[0], at=0) + bytes(1 << 20)
    for version, offset in (("6.12.107+deb13-s390x", IMAGE_BASE), ("6.1.0-50-s390x", 0)):
        path = tmp_path / f"vmlinuz-{version}"
        path.write_bytes(_kernel_image(lzma.compress(kernel), version=version))
        ks = kernel_symbols(path)
        assert ks.layout.version == version and ks.layout.offset == offset
        assert ks.symbols["start_kernel"] == LINK_BASE + 0x40 + offset and ks.kinds["schedule"] == "T"
        assert "cached" not in ks.source and "xz" in ks.source
        again = kernel_symbols(path)  # from the cache: the same table
        assert "cached" in again.source and again.symbols == ks.symbols


def test_relocatable_kernel_relative_base_from_its_relocation(tmp_path, monkeypatch):
    """6.1 leaves kallsyms_relative_base 0 in the image for the decompressor's R_390_64 relocation: the
    relocation's target (the doubleword's link address) less its place in the image is _text's link
    address; without a relocation found, s390's 0x100000."""
    monkeypatch.setenv("ZUV_CACHE", str(tmp_path / "cache"))
    buf, base_at = _table(_entries(), layout="pre-6.4")
    buf[base_at: base_at + 8] = bytes(8)
    for link, rela_type in ((0, 22), (0, 12), (None, 0)):
        kernel = bytearray(_in_filler(buf, at=0x1000))
        if link is not None:
            kernel += struct.pack(">QQQ", link + 0x1000 + base_at, (0x283 << 32) | rela_type, 0)
        kernel += bytes(1 << 20)
        path = tmp_path / f"vmlinuz-{link}-{rela_type}"
        path.write_bytes(_kernel_image(lzma.compress(bytes(kernel)), version="6.1.0-50-s390x"))
        ks = kernel_symbols(path)
        text = LINK_BASE if link is None else link
        assert (ks.symbols["_text"], ks.symbols["start_kernel"]) == (text, text + 0x40)


def test_kernel_layout_and_kaslr_note():
    old = kernel_layout(_kernel_image(b"", version="6.1.0-50-s390x"))
    new = kernel_layout(_kernel_image(b"", version="6.12.107+deb13-s390x"))
    assert (old.offset, new.offset) == (0, IMAGE_BASE) and old.kaslr
    assert "KASLR" in new.note("console=ttysclp0") and new.note("console=ttysclp0 nokaslr") == ""
    fixed = kernel_layout(_kernel_image(b"", nokaslr=False))
    assert not fixed.kaslr and fixed.note("") == ""


def test_system_map_and_its_errors(tmp_path):
    text = ("0000000000100000 T _text\n0000000000f09950 T start_kernel\n0000000000000000 A _abs\n"
            "0000000000a2a0e0 t schedule\n00000000001000f0 t helper\t[mod]\n")  # fmt: skip
    syms, kinds = parse_system_map(text)
    assert syms == {"_text": 0x100000, "start_kernel": 0xF09950, "schedule": 0xA2A0E0, "helper": 0x1000F0}
    assert kinds["schedule"] == "t"
    stub = "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
    with pytest.raises(LoadError, match="not a System.map .*linux-image-<version>-dbg"):
        parse_system_map(stub)
    with pytest.raises(LoadError, match=r"map:2: not 'ADDRESS TYPE NAME'"):
        parse_system_map("0000000000100000 T _text\nhello\n", "map")
    f = tmp_path / "System.map"
    f.write_text(text)
    sf = read_symbols(f, offset=IMAGE_BASE)
    assert sf.kind == "System.map" and sf.linux and sf.symbols["start_kernel"] == IMAGE_BASE + 0xF09950
    binary = tmp_path / "blob"
    binary.write_bytes(b"\x00\x01" * 100)
    with pytest.raises(LoadError, match="not a symbol file"):
        read_symbols(binary)
    with pytest.raises(LoadError, match="cannot read"):
        read_symbols(tmp_path / "missing")


def test_elf_symbols_and_the_gdb_symbol_file(tmp_path):
    sf = read_symbols(ROOT / "guests/images/hello.elf")
    assert sf.kind == "ELF" and "main" in sf.symbols and not sf.linux
    syms = {"_text": 0x3FFE0100000, "start_kernel": 0x3FFE1622950, "schedule": 0x3FFE0C0DB48}
    out = tmp_path / "syms.elf"
    write_symbol_elf(syms, out)
    assert read_symbols(out).symbols == syms
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.fail("gdb-multiarch is not installed (tools/setup.sh installs it)")
    cmds = ["-ex", "info symbol 0x3ffe1622960", "-ex", "info address schedule"]
    r = subprocess.run([gdb, "-nx", "-batch", *cmds, str(out)], capture_output=True, text=True, timeout=60)
    assert "start_kernel + 16 in section .text" in r.stdout, r.stdout + r.stderr
    assert "0x3ffe0c0db48" in r.stdout

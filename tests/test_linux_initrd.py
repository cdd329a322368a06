"""QEMU's ``-initrd`` contract in ``zuv run --initrd``, and the Linux guest's initramfs builder."""

import subprocess
import sys
from pathlib import Path

import pytest

from emulator.errors import LoadError
from emulator.hw.memory import PhysicalMemory
from emulator.machine.loader import INITRD_START, load_initrd, load_program

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import linux_guest  # noqa: E402


def _kernel(tmp_path, size):
    """A flat image that looks like an s390x kernel: S390EP at 0x10008, a parameter area at 0x10400."""
    img = bytearray(size)
    img[0x10008:0x1000E] = b"S390EP"
    path = tmp_path / "vmlinuz"
    path.write_bytes(bytes(img))
    return path


def test_initrd_placed_at_8m_and_announced(tmp_path):
    mem = PhysicalMemory(32 << 20)
    prog, start = load_program(_kernel(tmp_path, 0x20000), mem, "console=ttysclp0")
    rd = tmp_path / "initrd"
    rd.write_bytes(b"070701" + bytes(range(256)) * 10)
    addr, size = load_initrd(rd, prog, mem)
    assert (start, addr, size) == (0x10000, INITRD_START, 2566)
    assert mem.read_u64(0x10408) == INITRD_START and mem.read_u64(0x10410) == 2566
    assert mem.read(INITRD_START, size) == rd.read_bytes()
    assert mem.read(0x10480, 16) == b"console=ttysclp0"


def test_initrd_moves_above_a_big_kernel(tmp_path):
    mem = PhysicalMemory(64 << 20)
    prog, _ = load_program(_kernel(tmp_path, 0x7F0001), mem)  # ends past 8 MiB - 1 MiB
    rd = tmp_path / "initrd"
    rd.write_bytes(b"x" * 100)
    addr, _ = load_initrd(rd, prog, mem)
    assert addr == 0x900000 and mem.read_u64(0x10408) == 0x900000


def test_initrd_errors(tmp_path):
    mem = PhysicalMemory(16 << 20)
    prog, _ = load_program(_kernel(tmp_path, 0x20000), mem)
    big = tmp_path / "big"
    big.write_bytes(b"y" * (9 << 20))
    with pytest.raises(LoadError, match="does not fit in memory"):
        load_initrd(big, prog, mem)
    with pytest.raises(LoadError, match="cannot read"):
        load_initrd(tmp_path / "missing", prog, mem)
    small = tmp_path / "small.bin"
    small.write_bytes((0x80000000 | 0x100).to_bytes(8, "big") + bytes(0x200))
    prog2, _ = load_program(small, mem)
    with pytest.raises(LoadError, match="needs a Linux kernel image"):
        load_initrd(big, prog2, mem)


def test_cli_initrd_error_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "run", "-m", "16M", "--initrd",
                        str(tmp_path / "nope"), str(_kernel(tmp_path, 0x20000))],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert p.returncode == 2 and "nope: cannot read" in p.stderr and "Traceback" not in p.stderr


def _parse_newc(data):
    """(name, mode, body) of each member of a newc cpio archive."""
    out, off = [], 0
    while True:
        assert data[off:off + 6] == b"070701"
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, fsize, nsize = f[1], f[6], f[11]
        name = data[off + 110: off + 110 + nsize - 1].decode()
        off = (off + 110 + nsize + 3) & ~3
        body = data[off: off + fsize]
        off = (off + fsize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, body))


def test_initramfs_holds_busybox_and_init():
    members = {n: (m, b) for n, m, b in _parse_newc(linux_guest.build_initramfs(b"\x7fELFbusybox"))}
    assert members["bin/busybox"] == (0o100755, b"\x7fELFbusybox")
    assert members["bin/sh"] == (0o120777, b"busybox")
    mode, init = members["init"]
    assert mode == 0o100755 and init.startswith(b"#!/bin/busybox sh\n")
    assert linux_guest.USERSPACE_MARKER.encode() in init
    assert all(members[d][0] == 0o040755 for d in ("dev", "proc", "sys"))

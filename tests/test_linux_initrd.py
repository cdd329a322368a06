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
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    assert p.returncode == 2 and "nope: cannot read" in p.stderr and "Traceback" not in p.stderr


def test_initramfs_runs_busybox_init_with_a_console():
    members = linux_guest.read_newc(linux_guest.build_initramfs(b"\x7fELFbusybox"))
    assert members["bin/busybox"] == (0o100755, b"\x7fELFbusybox")
    assert members["bin/sh"] == (0o120777, b"busybox")
    assert members["init"] == (0o120777, b"bin/busybox")  # busybox init: `poweroff` asks it to power off
    assert members["dev/console"][0] == 0o020600  # the kernel opens it for init before devtmpfs is mounted
    assert b"::sysinit:/etc/init.d/rcS" in members["etc/inittab"][1]
    assert b"respawn:-/bin/sh" in members["etc/inittab"][1]
    mode, rcs = members["etc/init.d/rcS"]
    assert mode == 0o100755 and rcs.startswith(b"#!/bin/sh\n")
    assert linux_guest.USERSPACE_MARKER.encode() in rcs
    assert all(members[d][0] == 0o040755 for d in ("dev", "proc", "sys", "etc/init.d"))


def test_console_node_numbers():
    data = linux_guest.build_initramfs(b"bb")
    at = data.index(b"dev/console") - 110
    fields = [int(data[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
    assert (fields[9], fields[10]) == (5, 1)  # rdevmajor, rdevminor: /dev/console


def test_a_cached_initramfs_is_rebuilt_around_its_busybox(tmp_path, monkeypatch):
    monkeypatch.setenv("ZUV_CACHE", str(tmp_path))
    root = tmp_path / "linux"
    root.mkdir()
    (root / "vmlinuz").write_bytes(b"kernel")
    old = linux_guest.build_initramfs(b"\x7fELFold-busybox", rc_script="#!/bin/sh\necho old\n")
    (root / "initrd.cpio").write_bytes(old)
    kernel, initrd = linux_guest.build()
    assert kernel == root / "vmlinuz"
    assert initrd.read_bytes() == linux_guest.build_initramfs(b"\x7fELFold-busybox")

#!/usr/bin/env python3
"""A root file system for the Linux guest on a virtio-blk disk: an ext4 image, the initramfs that enters it.

``--disk FILE`` writes a disk image (an MBR, one Linux partition from sector 2048) whose partition holds an
ext4 file system made by ``mke2fs -d`` (e2fsprogs; no root privileges needed): the guest's static busybox
with a link for each of its applets in ``/bin``, ``/sbin/init`` (busybox init), ``/etc/inittab`` and the
start-up script ``/etc/init.d/rcS``. That script prints ``ROOT_MARKER`` with the root's line of
``/proc/mounts``, counts the boots of the disk in ``/var/lib/zuv/boot-count`` (written to the disk: the next
boot reads it) and prints ``zuv-linux: boot N of this disk``; with ``zuv.poweroff`` on the kernel's command
line it then powers the machine off, else init keeps a shell on the console. At ``poweroff`` init syncs and
remounts the root read-only, so the file system is clean on the host's file.

``--initrd FILE`` writes the initramfs: busybox, the kernel's virtio_blk, ext4 and its helpers (crc16,
mbcache, crc32c, jbd2; modules in Debian's kernel, kept beside the guest by ``tools/linux_guest.py``) and a
shell script as ``/init`` that loads them, waits for the root device (``root=`` on the command line, default
``/dev/vda1``), mounts it and ``switch_root``s into its ``/sbin/init``.

    tools/linux_rootfs.py [--release trixie] --disk root.img [--size 64M] --initrd root.cpio
    zuv run -m 512M --drive root.img --initrd root.cpio --append "console=ttysclp0" KERNEL
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_guest  # noqa: E402
from linux_guest import GuestError, _cpio_entry  # noqa: E402

ROOT_MARKER = "zuv-linux: root file system up"
BOOT_COUNT = "var/lib/zuv/boot-count"
#: where the partition starts (sector 2048, as fdisk puts it) and the default disk size
PART_START = 2048
SECTOR = 512
DEFAULT_SIZE = 64 << 20
#: on the kernel's command line: the root's start-up script powers off after its marker lines
POWEROFF_PARAM = "zuv.poweroff"

#: the initramfs's /init: the modules in their order, the root device, switch_root into the disk's init
INIT_SCRIPT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "zuv-initramfs: insmod $m failed"
done
root=/dev/vda1
for arg in $(cat /proc/cmdline); do
    case "$arg" in root=/dev/*) root="${{arg#root=}}" ;; esac
done
n=0
while [ ! -b "$root" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
echo "zuv-initramfs: mounting $root"
if ! mount -t ext4 "$root" /newroot; then
    echo "zuv-initramfs: cannot mount $root as the root file system; a shell:"
    exec sh
fi
umount /proc /sys
mount -o move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""
#: the applets the initramfs's script uses (links to busybox in its /bin)
INIT_APPLETS = ("sh", "mount", "umount", "insmod", "sleep", "cat", "switch_root")

#: the root file system's start-up script (busybox init's sysinit)
RC_SCRIPT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mount -o remount,rw /
echo "{ROOT_MARKER}: $(grep ' / ' /proc/mounts)"
n=$(cat /{BOOT_COUNT} 2>/dev/null)
n=$((${{n:-0}} + 1))
echo "$n" > /{BOOT_COUNT}
sync
echo "zuv-linux: boot $n of this disk"
case " $(cat /proc/cmdline) " in *" {POWEROFF_PARAM} "*) poweroff ;; esac
"""
#: the root's init table: the start-up script, a shell on the console, and at poweroff a sync and the root
#: remounted read-only (the file system clean on the disk)
INITTAB = """::sysinit:/etc/init.d/rcS
console::respawn:-/bin/sh
::shutdown:/bin/sync
::shutdown:/bin/mount -o remount,ro /
"""


def applets(busybox: bytes) -> list[str]:
    """The applet names a busybox binary holds (its sorted, NUL-separated name list: ``[``, ``[[``, ...)."""
    start = busybox.find(b"[\0[[\0")
    if start < 0:
        raise GuestError("no applet list in the busybox binary")
    names = []
    pos = start
    while (end := busybox.index(b"\0", pos)) > pos:
        names.append(busybox[pos:end].decode("ascii"))
        pos = end + 1
    if names != sorted(names) or len(names) < 10:
        raise GuestError("the busybox binary's applet list is not a sorted list of names")
    return names


def _populate(tree: Path, busybox: bytes) -> None:
    """The root file system's files under ``tree``."""
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc/init.d", "var/lib/zuv"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "bin" / "busybox").write_bytes(busybox)
    os.chmod(tree / "bin" / "busybox", 0o755)
    for name in applets(busybox):
        if name != "busybox":
            os.symlink("busybox", tree / "bin" / name)
    os.symlink("../bin/busybox", tree / "sbin" / "init")
    (tree / "etc" / "inittab").write_text(INITTAB)
    (tree / "etc" / "init.d" / "rcS").write_text(RC_SCRIPT)
    os.chmod(tree / "etc" / "init.d" / "rcS", 0o755)
    os.chmod(tree / "tmp", 0o1777)


def make_disk(busybox: bytes, size: int = DEFAULT_SIZE) -> bytes:
    """The disk image: an MBR with one Linux partition (type 0x83) from ``PART_START`` to the end, holding
    an ext4 file system with the root (``mke2fs -d``)."""
    if size % SECTOR or size < (PART_START + 8192) * SECTOR:
        raise GuestError(f"a disk of {size} bytes: want a multiple of 512 of at least 5 MiB")
    sectors = size // SECTOR - PART_START
    mbr = bytearray(SECTOR)
    entry = bytes([0, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
    mbr[446 : 446 + 16] = entry + PART_START.to_bytes(4, "little") + sectors.to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    with tempfile.TemporaryDirectory() as tmp:
        tree, part = Path(tmp) / "root", Path(tmp) / "part.img"
        _populate(tree, busybox)
        with open(part, "wb") as f:
            f.truncate(sectors * SECTOR)
        linux_guest._run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "zuv-root", "-E", "root_owner=0:0",
                          "-d", str(tree), str(part)])  # fmt: skip
        # mke2fs -d copies the builder's user and group: the files belong to root on the guest
        owners = "".join(f"sif /{p.relative_to(tree)} {field} 0\n" for p in sorted(tree.rglob("*"))
                         for field in ("uid", "gid"))  # fmt: skip
        (Path(tmp) / "owners").write_text(owners)
        linux_guest._run(["debugfs", "-w", "-f", str(Path(tmp) / "owners"), str(part)])
        return bytes(mbr) + bytes((PART_START - 1) * SECTOR) + part.read_bytes()


def make_initrd(busybox: bytes, modules: dict[str, bytes]) -> bytes:
    """The initramfs (newc cpio) that mounts the root and switches to it; ``modules`` (name -> .ko) load in
    their order."""
    order = [n.removesuffix(".ko") for n in modules]
    files: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in
                                           ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")]
    files += [("dev/console", 0o020600, b""), ("bin/busybox", 0o100755, busybox)]
    files += [(f"bin/{a}", 0o120777, b"busybox") for a in INIT_APPLETS]
    files += [(f"lib/modules/{n}", 0o100644, body) for n, body in modules.items()]
    files.append(("init", 0o100755, INIT_SCRIPT.format(modules=" ".join(order)).encode()))
    out = bytearray()
    for ino, (name, mode, body) in enumerate(files, 1):
        out += _cpio_entry(name, mode, body, ino=ino, rdev=(5, 1) if name == "dev/console" else (0, 0))
    out += _cpio_entry("TRAILER!!!", 0)
    out += b"\0" * (-len(out) % 512)
    return bytes(out)


def guest_busybox(release: str) -> bytes:
    """The cached guest's static busybox (from its initramfs; the guest is built if missing)."""
    _, initrd = linux_guest.build(release=release)
    member = linux_guest.read_newc(initrd.read_bytes()).get("bin/busybox")
    if member is None:
        raise GuestError(f"{initrd} holds no bin/busybox: rebuild it with tools/linux_guest.py --rebuild")
    return member[1]


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text[-1:].upper() in units:
            return int(text[:-1]) * units[text[-1].upper()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M)") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--release", choices=sorted(linux_guest.RELEASES), default=linux_guest.DEFAULT_RELEASE,
                    help="the Debian release of the guest (its busybox and kernel modules)")
    ap.add_argument("--disk", metavar="FILE", help="write the disk image with the root file system")
    ap.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="the disk's size (default 64M)")
    ap.add_argument("--initrd", metavar="FILE", help="write the initramfs that mounts the root and enters it")
    args = ap.parse_args(argv)
    if not (args.disk or args.initrd):
        ap.error("nothing to do: give --disk FILE and/or --initrd FILE")
    try:
        busybox = guest_busybox(args.release)
        if args.disk:
            Path(args.disk).write_bytes(make_disk(busybox, args.size))
            print(f"disk {args.disk}")
        if args.initrd:
            Path(args.initrd).write_bytes(make_initrd(busybox, linux_guest.kept_modules(args.release)))
            print(f"initrd {args.initrd}")
    except (GuestError, OSError, subprocess.SubprocessError) as e:
        print(f"linux_rootfs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

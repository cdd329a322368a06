#!/usr/bin/env python3
"""Fetch Debian's stock s390x kernel and busybox and build a Linux guest (kernel + initramfs) into a cache.

The guest: ``vmlinuz`` from ``linux-image-<version>-s390x`` (a plain s390x kernel image, as QEMU's ``-kernel``
takes it) and ``initrd.cpio``, a newc cpio archive with the static busybox as ``/init`` (busybox init): its
start-up script mounts proc, sys and devtmpfs and prints a marker line, then init keeps a shell on the
console; ``poweroff`` in it powers the machine off. Files land in ``$ZUV_CACHE`` or ``~/.cache/zuv``, under
``linux/``; a second run reuses them. Fetching needs ``dpkg --add-architecture s390x`` and ``apt-get update``
once, as root (``--setup``).

    tools/linux_guest.py [--setup]        # prints the kernel and initrd paths
    zuv run --initrd INITRD --append "console=ttysclp0" KERNEL
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

META_PACKAGE = "linux-image-s390x:s390x"
BUSYBOX_PACKAGE = "busybox-static:s390x"
USERSPACE_MARKER = "zuv-linux: userspace up"

#: run once by busybox init before the shell: the applets as commands, the kernel's file systems, the marker
RC_SCRIPT = f"""#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "{USERSPACE_MARKER}"
"""

#: busybox init's table: the start-up script, a shell on the console (a new one when it exits), and at
#: ``poweroff``/``reboot`` a sync; init then powers the machine off (or reboots it)
INITTAB = """::sysinit:/etc/init.d/rcS
console::respawn:-/bin/sh
::shutdown:/bin/sync
"""


class GuestError(Exception):
    """The Debian packages could not be fetched or unpacked."""


def cache_dir() -> Path:
    """Where the guest's files live: ``$ZUV_CACHE/linux`` or ``~/.cache/zuv/linux``."""
    base = os.environ.get("ZUV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zuv")
    return Path(base) / "linux"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GuestError(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise GuestError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def setup_apt() -> None:
    """Enable the s390x architecture in dpkg and refresh apt's package lists (needs root)."""
    if "s390x" not in _run(["dpkg", "--print-foreign-architectures"]).split():
        _run(["dpkg", "--add-architecture", "s390x"])
    _run(["apt-get", "update", "-q"])


def kernel_package() -> str:
    """The versioned kernel package the meta package ``linux-image-s390x`` depends on."""
    out = _run(["apt-cache", "show", META_PACKAGE])
    m = re.search(r"^Depends:.*?(linux-image-[0-9][^\s,]*-s390x)", out, re.M)
    if not m:
        raise GuestError(f"apt-cache show {META_PACKAGE}: no versioned kernel package in its Depends")
    return m.group(1) + ":s390x"


def _download(package: str, into: Path) -> Path:
    """``apt-get download`` one package into ``into``; returns the .deb."""
    name = package.split(":")[0]
    _run(["apt-get", "download", "-q", package], cwd=into)
    debs = sorted(into.glob(f"{name}_*.deb"))
    if not debs:
        raise GuestError(f"apt-get download {package} left no {name}_*.deb")
    return debs[-1]


def _cpio_entry(
    name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    """One member of a newc ("070701") cpio archive, padded to 4 bytes (``rdev``: a device node's numbers)."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(busybox: bytes, rc_script: str = RC_SCRIPT, inittab: str = INITTAB) -> bytes:
    """A newc cpio with /bin/busybox, /init (busybox as init), /etc/inittab, /etc/init.d/rcS and
    /dev/console (the kernel opens it for init before anything is mounted)."""
    out = bytearray()
    ino = 1
    for d in ("bin", "dev", "proc", "sys", "tmp", "root", "etc", "etc/init.d"):
        out += _cpio_entry(d, 0o040755, ino=ino)
        ino += 1
    out += _cpio_entry("dev/console", 0o020600, ino=ino, rdev=(5, 1))
    out += _cpio_entry("bin/busybox", 0o100755, busybox, ino=ino + 1)
    out += _cpio_entry("bin/sh", 0o120777, b"busybox", ino=ino + 2)
    out += _cpio_entry("init", 0o120777, b"bin/busybox", ino=ino + 3)
    out += _cpio_entry("etc/inittab", 0o100644, inittab.encode(), ino=ino + 4)
    out += _cpio_entry("etc/init.d/rcS", 0o100755, rc_script.encode(), ino=ino + 5)
    out += _cpio_entry("TRAILER!!!", 0)
    out += b"\0" * (-len(out) % 512)
    return bytes(out)


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, body) of each member of a newc cpio archive (up to its trailer)."""
    out: dict[str, tuple[int, bytes]] = {}
    off = 0
    while data[off : off + 6] == b"070701":
        f = [int(data[off + 6 + 8 * i : off + 14 + 8 * i], 16) for i in range(13)]
        mode, fsize, nsize = f[1], f[6], f[11]
        name = data[off + 110 : off + 110 + nsize - 1].decode()
        off = (off + 110 + nsize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[off : off + fsize])
        off = (off + fsize + 3) & ~3
    raise GuestError("not a complete newc cpio archive")


def build(setup: bool = False) -> tuple[Path, Path]:
    """Fetch what is missing and build the guest; returns (kernel, initrd). A cached initramfs that this
    builder would now make differently (a changed init set-up) is rebuilt around its own busybox."""
    root = cache_dir()
    kernel, initrd = root / "vmlinuz", root / "initrd.cpio"
    if kernel.exists() and initrd.exists():
        old = initrd.read_bytes()
        busybox = read_newc(old).get("bin/busybox")
        if busybox is None:
            raise GuestError(f"{initrd} holds no bin/busybox: rebuild it with --rebuild")
        new = build_initramfs(busybox[1])
        if new != old:
            tmp_initrd = root / "initrd.cpio.tmp"
            tmp_initrd.write_bytes(new)
            os.replace(tmp_initrd, initrd)
        return kernel, initrd
    if setup:
        setup_apt()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's download user must be able to write here
        kdeb = _download(kernel_package(), work)
        bdeb = _download(BUSYBOX_PACKAGE, work)
        _run(["dpkg-deb", "-x", str(kdeb), str(work / "k")])
        _run(["dpkg-deb", "-x", str(bdeb), str(work / "b")])
        images = sorted((work / "k" / "boot").glob("vmlinuz-*"))
        maps = sorted((work / "k" / "boot").glob("System.map-*"))
        if not images:
            raise GuestError(f"{kdeb.name} holds no boot/vmlinuz-*")
        busybox = work / "b" / "bin" / "busybox"
        if not busybox.exists():
            raise GuestError(f"{bdeb.name} holds no bin/busybox")
        if maps:
            os.replace(maps[-1], root / "System.map")
        (root / "version").write_text(images[-1].name.removeprefix("vmlinuz-") + "\n")
        tmp_initrd = work / "initrd.cpio"
        tmp_initrd.write_bytes(build_initramfs(busybox.read_bytes()))
        os.replace(tmp_initrd, initrd)
        os.replace(images[-1], kernel)
    return kernel, initrd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="add the s390x architecture and run apt-get update")
    ap.add_argument("--rebuild", action="store_true", help="fetch and build again")
    args = ap.parse_args(argv)
    if args.rebuild:
        for name in ("vmlinuz", "initrd.cpio"):
            (cache_dir() / name).unlink(missing_ok=True)
    try:
        kernel, initrd = build(setup=args.setup)
    except GuestError as e:
        print(f"linux_guest: {e}", file=sys.stderr)
        return 1
    print(f"kernel {kernel}\ninitrd {initrd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fetch Debian's stock s390x kernel and busybox and build a Linux guest (kernel + initramfs) into a cache.

The guest: ``vmlinuz`` from ``linux-image-<version>-s390x`` (a plain s390x kernel image, as QEMU's ``-kernel``
takes it) and ``initrd.cpio``, a newc cpio archive with the static busybox as ``/init`` (busybox init): its
start-up script mounts proc, sys and devtmpfs and prints a marker line, then init keeps a shell on the
console; ``poweroff`` in it powers the machine off. Files land in ``$ZUV_CACHE`` or ``~/.cache/zuv``, under
``linux/``; a second run reuses them. Fetching needs ``dpkg --add-architecture s390x`` and ``apt-get update``
once, as root (``--setup``).

``--release trixie`` takes Debian 13's kernel instead (6.12: protected-virtualisation guest support is no
longer an option there, so as a Secure Execution guest it knows itself one, bounces its DMA through shared
pages and has ``/dev/uv``); its apt lists live in the cache (``apt-trixie/``, a sources list the script
writes), so the system's apt sources stay as they are, and the guest goes to ``linux-trixie/``. Its
initramfs also holds the kernel's ``uvdevice`` module, which the start-up script loads (``/dev/uv``).

    tools/linux_guest.py [--setup] [--release trixie]   # prints the kernel and initrd paths
    zuv run --initrd INITRD --append "console=ttysclp0" KERNEL

Attestation from inside the guest (``docs/linux.md``): ``--attest REQUEST -o INITRD`` writes the guest's
initramfs with ``guests/linux/uvattest.c`` (built static with ``s390x-linux-gnu-gcc``) and the pvattest
request; its start-up script attests through /dev/uv and powers off. ``--response CONSOLE_LOG REQUEST -o
RESPONSE`` turns what it printed into the response ``zuv pvattest verify`` checks.
"""

from __future__ import annotations

import argparse
import lzma
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


#: the releases a guest can come from: None, the system's apt sources (Debian 12 on this project's hosts);
#: else the archive line of a sources list the script keeps in the cache
RELEASES: dict[str, str | None] = {
    "bookworm": None,
    "trixie": "http://deb.debian.org/debian trixie main",
}
DEFAULT_RELEASE = "bookworm"

#: kernel modules put into the initramfs when the kernel package has them (path in the package's module
#: tree -> name in /lib/modules of the initramfs); the start-up script loads each
MODULES = {
    "kernel/drivers/s390/char/uvdevice.ko.xz": "uvdevice.ko",
    "kernel/drivers/block/virtio_blk.ko.xz": "virtio_blk.ko",  # a --drive disk appears as /dev/vda
}

#: kernel modules kept beside the guest (``modules/``, in their load order) for the initramfs other tools
#: build: the virtio-blk disk and the ext4 file system with what it needs (``tools/linux_rootfs.py``)
KEPT_MODULES = {
    "kernel/drivers/block/virtio_blk.ko.xz": "virtio_blk.ko",
    "kernel/lib/crc16.ko.xz": "crc16.ko",
    "kernel/fs/mbcache.ko.xz": "mbcache.ko",
    "kernel/crypto/crc32c_generic.ko.xz": "crc32c_generic.ko",  # jbd2's and ext4's metadata checksums
    "kernel/fs/jbd2/jbd2.ko.xz": "jbd2.ko",
    "kernel/fs/ext4/ext4.ko.xz": "ext4.ko",
}

#: run after the usual start-up (``--disk``): what the kernel found on the virtio-blk disk, the first bytes
#: of its first partition, then power off
DISK_STEPS = """echo "prot_virt_guest=$(cat /sys/firmware/uv/prot_virt_guest)"
echo "zuv-linux: partitions"
cat /proc/partitions
echo "zuv-linux: vda1 reads: $(dd if=/dev/vda1 bs=64 count=1 2>/dev/null)"
poweroff -f
"""
#: where ``make_disk`` puts the first partition (sector 2048, as fdisk does) and its length in sectors
DISK_PART_START = 2048
DISK_PART_SECTORS = 2048


class GuestError(Exception):
    """The Debian packages could not be fetched or unpacked."""


def _cache_base() -> Path:
    return Path(os.environ.get("ZUV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zuv"))


def cache_dir(release: str = DEFAULT_RELEASE) -> Path:
    """Where the guest's files live: ``$ZUV_CACHE/linux`` or ``~/.cache/zuv/linux`` (another release:
    ``linux-<release>``)."""
    return _cache_base() / ("linux" if release == DEFAULT_RELEASE else f"linux-{release}")


class _Apt:
    """apt-get / apt-cache for one release: the system's sources, or a private state in the cache (its own
    sources list, package lists and download cache; s390x only)."""

    def __init__(self, release: str) -> None:
        if release not in RELEASES:
            raise GuestError(f"unknown release {release!r} (known: {', '.join(RELEASES)})")
        self.archive = RELEASES[release]
        self.opts: list[str] = []
        if self.archive is not None:
            state = _cache_base() / f"apt-{release}"
            for d in ("lists/partial", "cache/archives/partial"):
                (state / d).mkdir(parents=True, exist_ok=True)
            sources = state / "sources.list"
            sources.write_text(
                f"deb [arch=s390x signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {self.archive}\n"
            )
            self.opts = [
                f"-oDir::Etc::SourceList={sources}",
                "-oDir::Etc::SourceParts=/nonexistent",
                f"-oDir::State::Lists={state / 'lists'}",
                f"-oDir::Cache={state / 'cache'}",
                "-oAPT::Architecture=s390x",
                "-oAPT::Architectures::=s390x",
                "-oDebug::NoLocking=1",
            ]
            self.lists = state / "lists"

    def get(self, *args: str, cwd: Path | None = None) -> str:
        return _run(["apt-get", *self.opts, *args], cwd=cwd)

    def cache(self, *args: str) -> str:
        return _run(["apt-cache", *self.opts, *args])

    def update_if_needed(self) -> None:
        """A private state's lists are fetched once (``--setup`` refreshes them)."""
        if self.archive is not None and not any(self.lists.glob("*Packages*")):
            self.get("update", "-q")


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GuestError(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise GuestError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def setup_apt(apt: _Apt | None = None) -> None:
    """Enable the s390x architecture in dpkg and refresh apt's package lists (needs root)."""
    if "s390x" not in _run(["dpkg", "--print-foreign-architectures"]).split():
        _run(["dpkg", "--add-architecture", "s390x"])
    (apt or _Apt(DEFAULT_RELEASE)).get("update", "-q")


def kernel_packages(apt: _Apt | None = None) -> list[str]:
    """The versioned kernel package the meta package ``linux-image-s390x`` depends on, then the release's
    other kernel image packages, newest first (a mirror may lag behind its own lists)."""
    apt = apt or _Apt(DEFAULT_RELEASE)
    out = apt.cache("show", META_PACKAGE)
    m = re.search(r"^Depends:.*?(linux-image-[0-9][^\s,]*-s390x)", out, re.M)
    if not m:
        raise GuestError(f"apt-cache show {META_PACKAGE}: no versioned kernel package in its Depends")
    names = set(re.findall(r"^(linux-image-[0-9][^\s]*-s390x)$", apt.cache("pkgnames", "linux-image-"), re.M))
    others = sorted(names - {m.group(1)}, key=_version_key, reverse=True)
    return [n + ":s390x" for n in [m.group(1), *others]]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def kernel_package() -> str:
    """The versioned kernel package the meta package ``linux-image-s390x`` depends on."""
    return kernel_packages()[0]


def _download(package: str, into: Path, apt: _Apt | None = None) -> Path:
    """``apt-get download`` one package into ``into``; returns the .deb."""
    name = package.split(":")[0]
    (apt or _Apt(DEFAULT_RELEASE)).get("download", "-q", package, cwd=into)
    debs = sorted(into.glob(f"{name}_*.deb"))
    if not debs:
        raise GuestError(f"apt-get download {package} left no {name}_*.deb")
    return debs[-1]


def _download_kernel(apt: _Apt, into: Path) -> Path:
    """The newest kernel image package the mirror serves (the first of ``kernel_packages`` that downloads)."""
    problems = []
    for package in kernel_packages(apt)[:4]:
        try:
            return _download(package, into, apt)
        except GuestError as e:
            problems.append(str(e))
    raise GuestError("no kernel package could be downloaded: " + "; ".join(problems))


def _cpio_entry(
    name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    """One member of a newc ("070701") cpio archive, padded to 4 bytes (``rdev``: a device node's numbers)."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(
    busybox: bytes,
    rc_script: str = RC_SCRIPT,
    inittab: str = INITTAB,
    modules: dict[str, bytes] | None = None,
    files: dict[str, tuple[int, bytes]] | None = None,
) -> bytes:
    """A newc cpio with /bin/busybox, /init (busybox as init), /etc/inittab, /etc/init.d/rcS and
    /dev/console (the kernel opens it for init before anything is mounted); ``modules`` (name -> .ko) go to
    /lib/modules, and the start-up script loads each before its marker line; ``files`` (path -> (mode,
    body)) are added as they are (in directories the archive has)."""
    out = bytearray()
    ino = 1
    if modules:
        loads = "".join(f"insmod /lib/modules/{name}\n" for name in sorted(modules))
        rc_script = rc_script.replace('echo "', loads + 'echo "', 1)
    dirs = ["bin", "dev", "proc", "sys", "tmp", "root", "etc", "etc/init.d"]
    if modules:
        dirs += ["lib", "lib/modules"]
    for d in dirs:
        out += _cpio_entry(d, 0o040755, ino=ino)
        ino += 1
    for name in sorted(modules or {}):
        out += _cpio_entry(f"lib/modules/{name}", 0o100644, (modules or {})[name], ino=ino)
        ino += 1
    out += _cpio_entry("dev/console", 0o020600, ino=ino, rdev=(5, 1))
    out += _cpio_entry("bin/busybox", 0o100755, busybox, ino=ino + 1)
    out += _cpio_entry("bin/sh", 0o120777, b"busybox", ino=ino + 2)
    out += _cpio_entry("init", 0o120777, b"bin/busybox", ino=ino + 3)
    out += _cpio_entry("etc/inittab", 0o100644, inittab.encode(), ino=ino + 4)
    out += _cpio_entry("etc/init.d/rcS", 0o100755, rc_script.encode(), ino=ino + 5)
    for i, (name, (mode, body)) in enumerate(sorted((files or {}).items())):
        out += _cpio_entry(name, mode, body, ino=ino + 6 + i)
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


#: the attestation program's source (built with the s390x cross compiler, statically)
UVATTEST_SOURCE = Path(__file__).resolve().parent.parent / "guests" / "linux" / "uvattest.c"

#: run after the usual start-up (``--attest``): the attestation through /dev/uv, then power off
ATTEST_STEPS = """echo "prot_virt_guest=$(cat /sys/firmware/uv/prot_virt_guest)"
/bin/uvattest /request.bin
echo "uvattest: exit $?"
poweroff -f
"""


def build_uvattest(work: Path) -> bytes:
    """``guests/linux/uvattest.c`` built as a static s390x program (``s390x-linux-gnu-gcc``)."""
    out = work / "uvattest"
    _run(["s390x-linux-gnu-gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
          str(UVATTEST_SOURCE)])  # fmt: skip
    _run(["s390x-linux-gnu-strip", str(out)])
    return out.read_bytes()


def attest_initramfs(initrd: bytes, uvattest: bytes, request: bytes) -> bytes:
    """The guest's initramfs (its busybox and modules) with /bin/uvattest and the attestation request as
    /request.bin; its start-up script attests after the marker line and powers the machine off."""
    members = read_newc(initrd)
    busybox = members.get("bin/busybox")
    if busybox is None:
        raise GuestError("the initramfs holds no bin/busybox")
    modules = {n.removeprefix("lib/modules/"): m[1] for n, m in members.items() if n.endswith(".ko")}
    files = {"bin/uvattest": (0o100755, uvattest), "request.bin": (0o100644, request)}
    return build_initramfs(busybox[1], RC_SCRIPT + ATTEST_STEPS, modules=modules, files=files)


def disk_initramfs(initrd: bytes) -> bytes:
    """The guest's initramfs (its busybox and modules, virtio_blk among them) whose start-up script shows
    the virtio-blk disk (``DISK_STEPS``) after the marker line and powers the machine off."""
    members = read_newc(initrd)
    busybox = members.get("bin/busybox")
    if busybox is None:
        raise GuestError("the initramfs holds no bin/busybox")
    modules = {n.removeprefix("lib/modules/"): m[1] for n, m in members.items() if n.endswith(".ko")}
    if "virtio_blk.ko" not in modules:
        raise GuestError("the initramfs holds no virtio_blk.ko: rebuild the guest with --rebuild")
    return build_initramfs(busybox[1], RC_SCRIPT + DISK_STEPS, modules=modules)


def make_disk(text: bytes) -> bytes:
    """A disk image with an MBR partition table: one Linux partition (type 0x83) at ``DISK_PART_START``
    whose first bytes are ``text``."""
    mbr = bytearray(512)
    entry = bytes([0, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
    entry += DISK_PART_START.to_bytes(4, "little") + DISK_PART_SECTORS.to_bytes(4, "little")
    mbr[446 : 446 + 16] = entry
    mbr[510:512] = b"\x55\xaa"
    disk = bytearray((DISK_PART_START + DISK_PART_SECTORS) * 512)
    disk[:512] = mbr
    disk[DISK_PART_START * 512 : DISK_PART_START * 512 + len(text)] = text
    return bytes(disk)


def attestation_response(console: str, request: bytes) -> bytes:
    """The pvattest exchange response for ``request`` from what uvattest printed on the guest's console
    (its measurement, additional data and configuration UID); ``zuv pvattest verify`` checks it."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:  # (run as a script: the project's packages are beside tools/)
        sys.path.insert(0, root)
    from firmware.attestation import RequestFormatError, exchange_response, parse_exchange

    try:
        req = parse_exchange(request)
    except RequestFormatError as e:
        raise GuestError(f"the request: {e}") from None
    found = dict(re.findall(r"uvattest: (measurement|additional|cuid) ([0-9a-f]+)", console))
    if "measurement" not in found or "cuid" not in found:
        m = re.search(r"uvattest: ioctl (-?\d+) rc (0x[0-9a-f]+) rrc (0x[0-9a-f]+)", console)
        why = f"the UVC answered rc {m.group(2)} rrc {m.group(3)}" if m else "no uvattest output"
        raise GuestError(f"no measurement in the console output: {why}")
    add = bytes.fromhex(found["additional"]) if "additional" in found else None
    return exchange_response(
        req.arcb, bytes.fromhex(found["measurement"]), add, None, bytes.fromhex(found["cuid"])
    )


def _modules(tree: Path, table: dict[str, str] | None = None) -> dict[str, bytes]:
    """The modules of ``table`` (default ``MODULES``) a kernel package's module tree holds (name ->
    decompressed .ko; a package may ship them compressed with xz or not)."""
    out = {}
    for kdir in sorted(tree.glob("*/")):
        for rel, name in (MODULES if table is None else table).items():
            for path in (kdir / rel, kdir / rel.removesuffix(".xz")):
                if path.exists():
                    body = path.read_bytes()
                    out[name] = lzma.decompress(body) if path.suffix == ".xz" else body
                    break
    return out


def _keep_modules(package_tree: Path, root: Path) -> None:
    """Store the ``KEPT_MODULES`` of an unpacked kernel package in ``root/modules``."""
    kept = {}
    for tree in (package_tree / "lib" / "modules", package_tree / "usr" / "lib" / "modules"):
        kept.update(_modules(tree, KEPT_MODULES))
    (root / "modules").mkdir(exist_ok=True)
    for name, body in kept.items():
        (root / "modules" / name).write_bytes(body)


def kept_modules(release: str = DEFAULT_RELEASE) -> dict[str, bytes]:
    """The guest's ``KEPT_MODULES`` (name -> .ko), in their load order. A guest built before they were
    kept gets them from its kernel's package (the exact version the cached vmlinuz came from)."""
    root = cache_dir(release)
    want = list(KEPT_MODULES.values())
    if not all((root / "modules" / n).exists() for n in want):
        version = (root / "version").read_text().strip() if (root / "version").exists() else ""
        if not version:
            raise GuestError(f"no guest in {root}: run tools/linux_guest.py first")
        apt = _Apt(release)
        apt.update_if_needed()
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            work = Path(tmp)
            os.chmod(work, 0o755)  # apt's download user must be able to write here
            try:
                deb = _download(f"linux-image-{version}:s390x", work, apt)
            except GuestError as e:
                raise GuestError(f"{e} (the mirror may have moved on: run with --rebuild)") from None
            _run(["dpkg-deb", "-x", str(deb), str(work / "k")])
            _keep_modules(work / "k", root)
    missing = [n for n in want if not (root / "modules" / n).exists()]
    if missing:
        raise GuestError(f"the kernel package of {root} has no {', '.join(missing)}")
    return {n: (root / "modules" / n).read_bytes() for n in want}


def build(setup: bool = False, release: str = DEFAULT_RELEASE) -> tuple[Path, Path]:
    """Fetch what is missing and build the guest; returns (kernel, initrd). A cached initramfs that this
    builder would now make differently (a changed init set-up) is rebuilt around its own busybox and
    modules."""
    root = cache_dir(release)
    kernel, initrd = root / "vmlinuz", root / "initrd.cpio"
    if kernel.exists() and initrd.exists():
        old = initrd.read_bytes()
        members = read_newc(old)
        busybox = members.get("bin/busybox")
        if busybox is None:
            raise GuestError(f"{initrd} holds no bin/busybox: rebuild it with --rebuild")
        modules = {n.removeprefix("lib/modules/"): m[1] for n, m in members.items() if n.endswith(".ko")}
        new = build_initramfs(busybox[1], modules=modules)
        if new != old:
            tmp_initrd = root / "initrd.cpio.tmp"
            tmp_initrd.write_bytes(new)
            os.replace(tmp_initrd, initrd)
        return kernel, initrd
    apt = _Apt(release)
    if setup:
        setup_apt(apt)
    apt.update_if_needed()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's download user must be able to write here
        kdeb = _download_kernel(apt, work)
        bdeb = _download(BUSYBOX_PACKAGE, work, apt)
        _run(["dpkg-deb", "-x", str(kdeb), str(work / "k")])
        _run(["dpkg-deb", "-x", str(bdeb), str(work / "b")])
        images = sorted((work / "k" / "boot").glob("vmlinuz-*"))
        maps = sorted((work / "k" / "boot").glob("System.map-*"))
        configs = sorted((work / "k" / "boot").glob("config-*"))
        if not images:
            raise GuestError(f"{kdeb.name} holds no boot/vmlinuz-*")
        found = [p for p in (work / "b" / "bin", work / "b" / "usr" / "bin") if (p / "busybox").exists()]
        if not found:
            raise GuestError(f"{bdeb.name} holds no bin/busybox nor usr/bin/busybox")
        busybox = found[0] / "busybox"
        if maps:
            os.replace(maps[-1], root / "System.map")
        if configs:
            os.replace(configs[-1], root / "config")
        modules: dict[str, bytes] = {}
        for tree in (work / "k" / "lib" / "modules", work / "k" / "usr" / "lib" / "modules"):
            modules.update(_modules(tree))
        _keep_modules(work / "k", root)
        (root / "version").write_text(images[-1].name.removeprefix("vmlinuz-") + "\n")
        tmp_initrd = work / "initrd.cpio"
        if release == DEFAULT_RELEASE:
            modules = {}  # (Debian 12's uvdevice is built in as no module; the default guest stays as it was)
        tmp_initrd.write_bytes(build_initramfs(busybox.read_bytes(), modules=modules))
        os.replace(tmp_initrd, initrd)
        os.replace(images[-1], kernel)
    return kernel, initrd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="add the s390x architecture and run apt-get update")
    ap.add_argument("--rebuild", action="store_true", help="fetch and build again")
    ap.add_argument("--release", choices=sorted(RELEASES), default=DEFAULT_RELEASE,
                    help=f"the Debian release whose kernel and busybox to take (default {DEFAULT_RELEASE})")
    ap.add_argument("--attest", metavar="REQUEST",
                    help="write the guest's initramfs with uvattest and this pvattest request to -o")
    ap.add_argument("--response", nargs=2, metavar=("CONSOLE_LOG", "REQUEST"),
                    help="write the attestation response from uvattest's console output to -o")
    ap.add_argument("--disk", action="store_true",
                    help="write the guest's initramfs that shows its virtio-blk disk and powers off to -o")
    ap.add_argument("--make-disk", metavar="TEXT",
                    help="write a disk image (an MBR, one partition starting with TEXT) to -o")
    ap.add_argument("-o", "--output", help="where --attest / --response / --disk / --make-disk write")
    args = ap.parse_args(argv)
    if (args.attest or args.response or args.disk or args.make_disk) and not args.output:
        ap.error("--attest, --response, --disk and --make-disk need -o FILE")
    try:
        if args.response:
            log, request = (Path(p).read_bytes() for p in args.response)
            Path(args.output).write_bytes(attestation_response(log.decode(errors="replace"), request))
            print(f"response {args.output}")
            return 0
        if args.make_disk is not None:
            Path(args.output).write_bytes(make_disk(args.make_disk.encode()))
            print(f"disk {args.output}")
            return 0
        if args.disk:
            _, initrd = build(setup=args.setup, release=args.release)
            Path(args.output).write_bytes(disk_initramfs(initrd.read_bytes()))
            print(f"initrd {args.output}")
            return 0
        if args.attest:
            _, initrd = build(setup=args.setup, release=args.release)
            with tempfile.TemporaryDirectory() as tmp:
                uvattest = build_uvattest(Path(tmp))
            out = attest_initramfs(initrd.read_bytes(), uvattest, Path(args.attest).read_bytes())
            Path(args.output).write_bytes(out)
            print(f"initrd {args.output}")
            return 0
    except (GuestError, OSError) as e:
        print(f"linux_guest: {e}", file=sys.stderr)
        return 1
    if args.rebuild:
        for name in ("vmlinuz", "initrd.cpio"):
            (cache_dir(args.release) / name).unlink(missing_ok=True)
    try:
        kernel, initrd = build(setup=args.setup, release=args.release)
    except GuestError as e:
        print(f"linux_guest: {e}", file=sys.stderr)
        return 1
    print(f"kernel {kernel}\ninitrd {initrd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

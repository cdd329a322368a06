"""The Linux guest's root file system (``tools/linux_rootfs.py``): the disk image holds an ext4 file system
(e2fsprogs' ``debugfs`` and ``e2fsck`` read it) with busybox, init and the start-up script, and the
initramfs loads the modules in order and switches to the disk's init. The boots from it are in
``tests/test_linux_rootfs_boot.py``."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import linux_guest  # noqa: E402
import linux_rootfs  # noqa: E402

#: a stand-in for the static busybox: some bytes, then its sorted applet name list as busybox stores it
BUSYBOX = b"\x7fELF" + bytes(100) + b"[\0[[\0ash\0cat\0mount\0poweroff\0sh\0switch_root\0sync\0umount\0\0tail"

needs_e2fsprogs = pytest.mark.skipif(
    not (shutil.which("mke2fs") and shutil.which("debugfs") and shutil.which("e2fsck")),
    reason="needs e2fsprogs (mke2fs, debugfs, e2fsck)",
)


def _partition(disk: bytes, tmp_path: Path) -> Path:
    """The MBR's first partition, checked, as a file of its own."""
    assert disk[510:512] == b"\x55\xaa"
    entry = disk[446:462]
    assert entry[4] == 0x83
    start, count = int.from_bytes(entry[8:12], "little"), int.from_bytes(entry[12:16], "little")
    assert start == linux_rootfs.PART_START and (start + count) * 512 == len(disk)
    part = tmp_path / "part.img"
    part.write_bytes(disk[start * 512 :])
    return part


def _debugfs(part: Path, request: str) -> str:
    done = subprocess.run(["debugfs", "-R", request, str(part)], capture_output=True, text=True, check=True)
    return done.stdout


@needs_e2fsprogs
def test_the_disk_holds_a_clean_ext4_root_with_busybox_init_and_its_scripts(tmp_path):
    disk = linux_rootfs.make_disk(BUSYBOX, 8 << 20)
    assert len(disk) == 8 << 20
    part = _partition(disk, tmp_path)
    fsck = subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "zuv-root" in _debugfs(part, "stats")
    assert "extent" in _debugfs(part, "features") and "has_journal" in _debugfs(part, "features")
    assert _debugfs(part, "cat /bin/busybox").encode("latin-1", "replace")[:4] == b"\x7fELF"
    assert '"../bin/busybox"' in _debugfs(part, "stat /sbin/init")
    listing = _debugfs(part, "ls /bin")
    for applet in ("sh", "mount", "switch_root", "poweroff", "[["):
        assert f" {applet} " in f" {listing} "
    assert _debugfs(part, "cat /etc/init.d/rcS") == linux_rootfs.RC_SCRIPT
    assert "::shutdown:/bin/mount -o remount,ro /" in _debugfs(part, "cat /etc/inittab")
    assert "Mode:  0755" in _debugfs(part, "stat /etc/init.d/rcS")
    for path in ("/bin/busybox", "/bin/sh", "/etc/init.d", "/var/lib/zuv"):  # root's, whoever built it
        assert "User:     0   Group:     0" in _debugfs(part, f"stat {path}")
    assert "Type: directory" in _debugfs(part, "stat /var/lib/zuv")
    assert "Mode:  01777" in _debugfs(part, "stat /tmp")


def test_the_start_up_script_counts_boots_and_powers_off_when_asked():
    rc = linux_rootfs.RC_SCRIPT
    assert f"{linux_rootfs.ROOT_MARKER}: $(grep ' / ' /proc/mounts)" in rc
    assert "> /var/lib/zuv/boot-count" in rc and rc.index("sync") < rc.index("boot $n of this disk")
    assert f'*" {linux_rootfs.POWEROFF_PARAM} "*) poweroff' in rc


def test_the_initramfs_loads_its_modules_in_order_and_switches_to_the_disk():
    modules = {"virtio_blk.ko": b"v", "crc16.ko": b"c", "ext4.ko": b"e"}
    members = linux_guest.read_newc(linux_rootfs.make_initrd(BUSYBOX, modules))
    init_mode, init = members["init"]
    assert init_mode == 0o100755 and init.startswith(b"#!/bin/sh\n")
    assert b"for m in virtio_blk crc16 ext4; do" in init
    assert b"exec switch_root /newroot /sbin/init" in init
    assert members["lib/modules/ext4.ko"] == (0o100644, b"e")
    assert members["bin/busybox"] == (0o100755, BUSYBOX)
    assert members["bin/switch_root"] == (0o120777, b"busybox")
    assert members["newroot"][0] == 0o040755
    assert members["dev/console"][0] == 0o020600


def test_applets_come_from_busybox_and_a_binary_without_a_list_is_refused():
    assert linux_rootfs.applets(BUSYBOX) == ["[", "[[", "ash", "cat", "mount", "poweroff", "sh",
                                             "switch_root", "sync", "umount"]  # fmt: skip
    with pytest.raises(linux_guest.GuestError, match="no applet list"):
        linux_rootfs.applets(b"\x7fELF not busybox")
    with pytest.raises(linux_guest.GuestError, match="not a sorted list"):
        linux_rootfs.applets(b"[\0[[\0sh\0ash\0cat\0d\0e\0f\0g\0h\0i\0\0")


def test_bad_sizes_are_refused(tmp_path, capsys):
    with pytest.raises(linux_guest.GuestError, match="at least 5 MiB"):
        linux_rootfs.make_disk(BUSYBOX, 1 << 20)
    with pytest.raises(SystemExit):
        linux_rootfs.main(["--disk", str(tmp_path / "d.img"), "--size", "lots"])
    assert "not a size: 'lots'" in capsys.readouterr().err

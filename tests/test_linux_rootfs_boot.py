"""Debian's kernel runs from a root file system on a virtio-blk disk (``zuv run --drive``): the initramfs
mounts the ext4 partition and switches to it, the disk's init prints its marker, and what it writes there
reaches the host's file; the next boot of the same file reads it back (issue 23, deliverable 2).

Two boots of a minute or more each (``docs/linux.md``), so this runs where ``ZUV_LINUX`` is set, as
``tests/test_linux_boot.py`` does: ``bash tools/test.sh`` runs both beside the suite.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from linux_boot_gate import KERNEL, LIMIT_S, MARKS, ROOT, linux_guest

import linux_rootfs  # isort: skip - in tools/, which linux_boot_gate puts on the path

pytestmark = MARKS


def _boot(disk: Path, initrd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "emulator.cli", "run", "-m", "512M", "--time-limit", str(LIMIT_S),
           "--drive", str(disk), "--initrd", str(initrd),
           "--append", f"console=ttysclp0 {linux_rootfs.POWEROFF_PARAM}", str(KERNEL)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=LIMIT_S + 60)  # fmt: skip
    text = done.stdout.decode("ascii", "replace")
    assert done.returncode == 0, f"exit {done.returncode}:\n{text[-3000:]}"
    return text


def test_the_kernel_switches_to_the_disks_root_whose_writes_persist_across_boots(tmp_path):
    try:
        modules = linux_guest.kept_modules()
    except linux_guest.GuestError as e:
        pytest.skip(f"the kernel's modules: {e}")
    busybox = linux_rootfs.guest_busybox(linux_guest.DEFAULT_RELEASE)
    disk, initrd = tmp_path / "root.img", tmp_path / "root.cpio"
    disk.write_bytes(linux_rootfs.make_disk(busybox))
    initrd.write_bytes(linux_rootfs.make_initrd(busybox, modules))
    first = _boot(disk, initrd)
    assert f"{linux_rootfs.ROOT_MARKER}: /dev/vda1 / ext4 rw" in first, first[-3000:]
    assert "zuv-linux: boot 1 of this disk" in first
    assert "Requesting system poweroff" in first
    # the count reached the host's file, and the file system was left clean (remounted read-only at poweroff)
    part = tmp_path / "part.img"
    part.write_bytes(disk.read_bytes()[linux_rootfs.PART_START * 512 :])
    fsck = subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    count = subprocess.run(["debugfs", "-R", f"cat /{linux_rootfs.BOOT_COUNT}", str(part)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert count.stdout.strip() == "1"
    second = _boot(disk, initrd)
    assert "zuv-linux: boot 2 of this disk" in second, second[-3000:]

"""Debian's stock s390x kernel with the busybox initramfs boots on ``zuv run`` to a shell on the SCLP console:
a command typed there runs, and ``poweroff`` ends the run with exit status 0 (issue 23, deliverable 1).

The guest comes from ``tools/linux_guest.py`` (Debian's packages, built into ``$ZUV_CACHE/linux``); the boot
takes minutes of CPU, so the test runs only where ``ZUV_LINUX`` is set and the guest has been built:
``bash tools/test.sh`` (the README's test command, which CI runs) fetches the guest and runs this test in a
process of its own beside the rest of the suite; ``ZUV_LINUX=1 bash tools/test.sh tests/test_linux_boot.py``
runs it alone.
"""

import os
import queue
import subprocess
import sys
import threading

import pytest
from linux_boot_gate import INITRD, KERNEL, LIMIT_S, MARKS, ROOT, linux_guest

pytestmark = MARKS


class Console:
    """``zuv run`` of the Linux guest with its console on pipes: wait for output, type lines."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "emulator.cli", "run", "-m", "512M", "--time-limit", str(LIMIT_S),
               "--initrd", str(INITRD), "--append", "console=ttysclp0", str(KERNEL)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        self.text = ""
        self._chunks: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            self._chunks.put(chunk)
        self._chunks.put(b"")

    def expect(self, needle: str) -> str:
        """Read until ``needle`` appears (or the run ends: then the test fails with what was seen)."""
        while needle not in self.text:
            chunk = self._chunks.get()
            if not chunk:
                pytest.fail(f"zuv ended before {needle!r}; the console's last lines:\n{self.text[-3000:]}")
            self.text += chunk.decode("ascii", "replace")
        return self.text

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()


def test_debian_kernel_boots_to_a_shell_that_runs_commands_and_powers_off():
    con = Console()
    try:
        con.expect(linux_guest.USERSPACE_MARKER)
        con.type("echo zuv-$((6*7)) $(cat /proc/sys/kernel/ostype)")
        con.expect("zuv-42 Linux")
        con.type("poweroff")
        con.expect("Requesting system poweroff")
        assert con.proc.wait(timeout=LIMIT_S) == 0, con.text[-2000:]
    finally:
        if con.proc.poll() is None:
            con.proc.kill()
            con.proc.wait()

#!/usr/bin/env python3
"""Run a bare-metal s390x image under qemu-system-s390x -kernel and return its console output."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

QEMU = "qemu-system-s390x"


class QemuError(Exception):
    """qemu could not run the image, timed out, or the guest crashed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def qemu_command(path: str | os.PathLike, smp: int = 1, append: str = "") -> list[str]:
    """The reference command line: the brief's `qemu-system-s390x -M s390-ccw-virtio -accel tcg -nographic
    -kernel IMAGE [-smp N] [-append S]`, plus options that change nothing the guest sees: no reboot, and a
    guest crash (a disabled wait whose address does not end in 0xfff) ends qemu with exit status 1."""
    cmd = [QEMU, "-M", "s390-ccw-virtio", "-accel", "tcg", "-nographic", "-kernel", str(path)]
    if smp != 1:
        cmd += ["-smp", str(smp)]
    if append:
        cmd += ["-append", append]
    cmd += ["-no-reboot", "-action", "panic=exit-failure"]
    return cmd


def clean_output(raw: bytes) -> str:
    """The guest's console output from qemu's stdout. With -nographic and stdin not a terminal, qemu
    writes nothing of its own to stdout (its messages, such as "terminating on signal", go to stderr,
    which is not part of the output), and the SCLP console passes the guest's bytes through unchanged,
    so nothing is stripped: the bytes are only decoded as Latin-1 (one character per byte)."""
    return raw.decode("latin-1")


def run_qemu(path: str | os.PathLike, smp: int = 1, append: str = "", timeout: float = 30) -> str:
    """Run the image and return its console output; raise QemuError on a timeout, a crash or a qemu error."""
    if not Path(path).is_file():
        raise QemuError(f"no such image: {path}")
    cmd = qemu_command(path, smp=smp, append=append)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise QemuError(f"cannot run {QEMU}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise QemuError(f"timed out after {timeout} s", clean_output(out)) from None
    text = clean_output(out)
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip()
        message = f"qemu exited with status {proc.returncode}" + (f": {detail}" if detail else "")
        raise QemuError(message, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("elf", help="image to run (ELF or flat)")
    parser.add_argument("--smp", type=int, default=1, help="number of CPUs")
    parser.add_argument("--append", default="", help="kernel command line")
    parser.add_argument("--timeout", type=float, default=30, help="seconds before qemu is killed")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(run_qemu(args.elf, smp=args.smp, append=args.append, timeout=args.timeout))
    except QemuError as exc:
        sys.stdout.write(exc.output)
        sys.stdout.flush()
        print(f"qemu_run: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The host's trap and export demo on a Secure Execution Linux guest: the hypervisor reads Linux's memory.

Boots a Linux SE image (``docs/linux.md``, "As a Secure Execution guest") through ``emulator.api`` as its
hypervisor, and once Linux is up (its start-up script's marker line, or with ``--early`` the kernel's first
Ultravisor call, a few seconds in) acts as a hostile host may:

1. the page map the host can know: which guest pages are secure (a host touch takes PGM 0x3D), shared by
   Linux (its SWIOTLB bounce buffers, Set Shared Access) or still the host's;
2. a host read of secure pages of Linux's memory: refused, PGM 0x3D, nothing read;
3. exports them (Convert from Secure Storage): the host now reads their bytes, which are ciphertext (the
   kernel's own plaintext of the page, where the host knows it from the image, is nowhere in them);
4. imports one back (Convert to Secure Storage, the Ultravisor checks its integrity) and leaves the others
   exported: Linux touches them, the hypervisor imports each on its 0x3E exit, and Linux goes on (with the
   shell up, a command typed on the console is answered).

    tools/secure_linux_demo.py IMAGE [--memory 512M] [--pages 64] [--early] [--kernel VMLINUZ]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.api import Guest, Host, SecureStorageAccess  # noqa: E402
from emulator.options import parse_size  # noqa: E402

USERSPACE_MARKER = b"zuv-linux: userspace up"
PROMPT = re.compile(rb"[/~] # ")  # busybox ash as root in / (Debian 13 shows it as ~)
KERNEL_AT = 0x10000  # stage3b moves the kernel image here before it enters it


@dataclass
class DemoReport:
    """What the host saw."""

    page_counts: dict[str, int] = field(default_factory=dict)
    pages: list[int] = field(default_factory=list)
    refused: int = 0  # host reads of those pages that took PGM 0x3D
    exported: int = 0  # exports answered rc 0x0001
    ciphertext_sample: bytes = b""
    plaintext_seen: bool = False  # the kernel's bytes of a page appeared in what the host read
    imported: int = 0  # the one explicit import (rc 0x0001)
    refused_after_import: bool = False
    host_imports: int = 0  # Convert to Secure Storage calls of the hypervisor after the exports
    touched_back: int = 0  # pages left exported that Linux touched (the hypervisor imported them)
    went_on: bool = False
    answer: str = ""
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


def _pick(guest: Guest, n: int, start: int) -> list[int]:
    """``n`` secure guest pages from ``start`` up (Linux's memory the host may not touch)."""
    out = []
    for g in range(start, guest.memory_size, 0x1000):
        if guest.page_state(g) == "secure":
            out.append(g)
            if len(out) == n:
                break
    return out


def host_attack(guest: Guest, host: Host, pages: list[int], kernel: bytes, report: DemoReport) -> None:
    """Steps 2-4 on ``pages``: read (refused), export (ciphertext), one import; the rest stay exported."""
    report.pages = pages
    for g in pages:
        try:
            guest.read(g, 64)
        except SecureStorageAccess as e:
            if e.code == 0x3D:
                report.refused += 1
    report.say(f"host reads of {len(pages)} secure pages of Linux's memory: {report.refused} refused "
               f"(PGM 0x3D)")
    for g in pages:
        if guest.export(g).rc == 0x0001:
            report.exported += 1
            data = guest.read(g, 0x1000)
            off = g - KERNEL_AT
            plain = kernel[off : off + 0x1000] if 0 <= off < len(kernel) else b""
            if plain.strip(b"\0") and (plain[:64] in data or data == plain):
                report.plaintext_seen = True
            if not report.ciphertext_sample:
                report.ciphertext_sample = data[:32]
    report.say(f"exported {report.exported} pages (Convert from Secure Storage, rc 0x0001); the host reads "
               f"ciphertext, e.g. {pages[0]:#x}: {report.ciphertext_sample.hex()}...; the kernel's plaintext "
               f"in it: {'YES' if report.plaintext_seen else 'no'}")  # fmt: skip
    first = pages[0]
    res = guest.import_page(first)
    report.imported = int(res.rc == 0x0001)
    report.refused_after_import = not guest.try_read(first, 16).ok
    report.say(f"imported {first:#x} again: rc {res.rc:#06x}; a host read of it now: "
               f"{'refused (PGM 0x3D)' if report.refused_after_import else 'allowed'}; the other "
               f"{len(pages) - 1} stay exported until Linux touches them")  # fmt: skip


def _imports_since(host: Host, seq: int) -> int:
    return sum(1 for e in host.uv_log(seq) if e.caller == "host" and e.code == 0x0200)


def demo(image: Path, memory: int, npages: int, early: bool, kernel: bytes, time_limit: float) -> DemoReport:
    """Boot ``image``, attack Linux's memory as its host, and let Linux go on."""
    report = DemoReport()
    # to the shell the runs are counted (a deterministic clock that advances with the executed instructions):
    # free-running, the secure Linux stalls after /init (docs/linux.md)
    insns = None if early else 1 << 60
    with Host(seed=1, deterministic=not early) as host:
        guest = host.boot(image, memory=memory, run=False)
        if early:  # the decompressor's first Ultravisor call (Query), ~50 ms of the kernel's time
            guest.break_on_uvc("qui")
            r = guest.run(time_limit=time_limit)
        else:
            r = guest.run(until=USERSPACE_MARKER, time_limit=time_limit, max_insns=insns)
        if not guest.secure or (not early and USERSPACE_MARKER not in guest.console):
            raise SystemExit(f"secure_linux_demo: Linux did not get there: {r.reason} {guest.cpu_detail}")
        if not early:
            guest.run(until=PROMPT, time_limit=time_limit, max_insns=insns)
        states = [guest.page_state(g) for g in range(0, guest.memory_size, 0x1000)]
        report.page_counts = {s: states.count(s) for s in ("secure", "shared", "host")}
        counts = ", ".join(f"{n} {s}" for s, n in report.page_counts.items())
        report.say(f"guest pages as the host sees them: {counts}")
        # early: the kernel image's pages after its first 64 KiB (the decompressor's code and the compressed
        # kernel, whose plaintext the host knows: it loaded the image); at the shell: its memory above 1 MiB
        pages = _pick(guest, npages, KERNEL_AT + 0x10000 if early else 0x100000)
        host_attack(guest, host, pages, kernel, report)
        seq = len(host.uv_log())
        if early:
            guest.break_on_exit(0x68)  # its next intercepted instruction: Linux ran on through the pages
            r = guest.run(time_limit=time_limit)
            report.went_on = guest.cpu_detail == "" and bool(guest.take_events())
        else:
            guest.type("echo linux goes on: $((6*7))\n")
            r = guest.run(until=b"linux goes on: 42", time_limit=time_limit, max_insns=insns)
            report.went_on = b"linux goes on: 42" in guest.console
            report.answer = "linux goes on: 42" if report.went_on else r.reason
        report.host_imports = _imports_since(host, seq)
        report.touched_back = sum(guest.page_state(g) == "secure" for g in report.pages[1:])
        went = "yes" if report.went_on else f"NO ({r.reason})"
        report.say(f"Linux went on: {went}; the hypervisor imported {report.host_imports} pages at Linux's "
                   f"touches (0x3E), {report.touched_back} of the {len(report.pages) - 1} left exported "
                   f"among them")  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path, help="the Linux SE image (zuv pvimg create)")
    ap.add_argument("--memory", "-m", default="512M", help="guest memory (default 512M)")
    ap.add_argument("--pages", type=int, default=64, help="secure pages to read and export (default 64)")
    ap.add_argument("--early", action="store_true",
                    help="attack at the kernel's first UV call, not at the shell")
    ap.add_argument("--kernel", type=Path, help="the vmlinuz packed in the image (to look for its plaintext)")
    ap.add_argument("--time-limit", type=float, default=1800.0, help="seconds each run may take")
    args = ap.parse_args(argv)
    kernel = args.kernel.read_bytes() if args.kernel else b""
    memory = parse_size(args.memory)
    report = demo(args.image, memory, max(1, args.pages), args.early, kernel, args.time_limit)
    for line in report.lines:
        print(f"[host] {line}")
    ok = report.refused == len(report.pages) and report.exported == len(report.pages) and report.went_on
    return 0 if ok and not report.plaintext_seen else 1


if __name__ == "__main__":
    sys.exit(main())

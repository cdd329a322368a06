#!/usr/bin/env python3
"""Attack demo: a malicious hypervisor replays, swaps and modifies exported pages of a secure guest.

Threat: the host keeps an old exported copy of the guest's page (a balance of 100), lets the guest update
it (balance 5), exports again, and then hands the *old* ciphertext back on import, hoping the guest
resumes with the old value. It also tries another page's ciphertext and a one-bit change.
Expected defence: Convert to Secure Storage refuses each with rc 0x0107 (integrity check failed), the page
stays non-secure, and the guest never sees the forged content; the genuine latest copy still imports.

Run: python3 tools/attack_replay.py [--seed N]   (exit status 0 when every defence held)
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.errors import ProgramException  # noqa: E402
from emulator.hw.memory import PhysicalMemory  # noqa: E402
from emulator.hypervisor.uvclient import HostArena, UvClient  # noqa: E402
from firmware.uv import Ultravisor  # noqa: E402

MEM = 0x84000000
UV_BASE = 0x80000000
GADDR = 0x9000
OTHER = 0xA000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="seed of the Ultravisor's random source")
    args = ap.parse_args(argv)

    mem = PhysicalMemory(MEM)
    uv = Ultravisor(mem, rng=random.Random(args.seed).randbytes)
    host = UvClient(uv, mem.host_view(), HostArena(0x100000, UV_BASE))
    host.init(UV_BASE)
    guest = host.create_guest(1 << 20)
    gview = uv.guest_view(guest.handle)  # the guest's own CPU view
    frame, other = guest.guest_frames[GADDR], guest.guest_frames[OTHER]

    for ga, text in ((GADDR, b"balance=100"), (OTHER, b"other page")):
        host.import_page(guest.handle, ga)
        gview.write(ga, text)
    print(f"guest: page {GADDR:#x} holds {gview.read(GADDR, 11)!r}")

    host.export_page(frame)
    old = host.read(frame, 4096)
    print(f"host:  exported and saved a copy: {old[:24].hex()}...")
    host.import_page(guest.handle, GADDR)
    gview.write(GADDR, b"balance=5  ")
    print(f"guest: spends; page now holds {gview.read(GADDR, 11)!r}")
    host.export_page(frame)
    latest = host.read(frame, 4096)
    host.export_page(other)
    other_ct = host.read(other, 4096)
    print(f"host:  exported again:          {latest[:24].hex()}...")

    ok = True
    forgeries = (
        ("replay of the old copy", old),
        ("another page's ciphertext", other_ct),
        ("latest copy with one bit flipped", bytes([latest[0] ^ 1]) + latest[1:]),
    )
    for what, data in forgeries:
        host.write(frame, data)
        res = host.import_page(guest.handle, GADDR)
        print(f"host:  import {what} -> {res}")
        if res.ok:
            ok = False
        try:
            seen = gview.read(GADDR, 11)
            print(f"guest: sees {seen!r}   DEFENCE FAILED")
            ok = False
        except ProgramException as e:
            print(f"guest: cannot touch the page (the host gets PGM {e.code:#04x} again); nothing forged reached it")

    host.write(frame, latest)
    res = host.import_page(guest.handle, GADDR)
    print(f"host:  import the genuine latest copy -> {res}")
    seen = gview.read(GADDR, 11)
    print(f"guest: sees {seen!r}")
    ok = ok and res.ok and seen == b"balance=5  "
    print("result:", "every defence held" if ok else "A DEFENCE FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

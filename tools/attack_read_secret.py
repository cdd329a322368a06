#!/usr/bin/env python3
"""Attack demo: a malicious hypervisor tries to read a secure guest's secret.

Threat: the host owns all memory and the page tables; it reads the frame that backs the guest's secret
page, then forces the page out with Convert from Secure Storage and reads again.
Expected defence: the direct read is refused with PGM 0x3D (secure-storage access) and nothing is read;
the exported page is ciphertext that contains no trace of the secret.

Run: python3 tools/attack_read_secret.py [--seed N]   (exit status 0 when every defence held)
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.errors import SecureStorageAccess  # noqa: E402
from emulator.hw.memory import PhysicalMemory  # noqa: E402
from emulator.hypervisor.uvclient import HostArena, UvClient  # noqa: E402
from firmware.uv import Ultravisor  # noqa: E402

MEM = 0x84000000  # 2 GiB + 64 MiB: the Ultravisor base storage must lie above 2 GiB
UV_BASE = 0x80000000
SECRET_GADDR = 0x7000
SECRET = b"TOP SECRET: the launch code is 0000"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="seed of the Ultravisor's random source")
    args = ap.parse_args(argv)

    mem = PhysicalMemory(MEM)
    uv = Ultravisor(mem, rng=random.Random(args.seed).randbytes)
    host = UvClient(uv, mem.host_view(), HostArena(0x100000, UV_BASE))
    host.init(UV_BASE)
    guest = host.create_guest(1 << 20)
    frame = guest.guest_frames[SECRET_GADDR]
    print(f"secure configuration {guest.handle:#x}; guest page {SECRET_GADDR:#x} lives in host frame {frame:#x}")

    # the guest touches its page (the host imports it on the 0x3E fault), then stores its secret
    print("host:  import guest page ->", host.import_page(guest.handle, SECRET_GADDR))
    uv.guest_view(guest.handle).write(SECRET_GADDR, SECRET)  # the guest's own store, through its CPU's view
    print(f"guest: stored {SECRET!r} at {SECRET_GADDR:#x}")

    ok = True
    seen = host.try_read(frame, 64)
    if isinstance(seen, SecureStorageAccess):
        print(f"host:  read frame {frame:#x} -> refused: PGM {seen.code:#04x}, TEID {seen.teid:#x}")
    else:
        print(f"host:  read frame {frame:#x} -> {seen!r}   DEFENCE FAILED")
        ok = False
    try:
        host.write(frame, b"host was here")
        print("host:  write into the frame succeeded   DEFENCE FAILED")
        ok = False
    except SecureStorageAccess as e:
        print(f"host:  write into the frame -> refused: PGM {e.code:#04x}")

    print("host:  export the page ->", host.export_page(frame))
    page = host.read(frame, 4096)
    print(f"host:  frame now reads {page[:32].hex()}... ({len(page)} bytes)")
    if SECRET in page or b"TOP SECRET" in page:
        print("host:  the secret is visible   DEFENCE FAILED")
        ok = False
    else:
        print("host:  no trace of the secret in the exported page")

    print("host:  import it back ->", host.import_page(guest.handle, SECRET_GADDR))
    back = uv.guest_view(guest.handle).read(SECRET_GADDR, len(SECRET))
    print(f"guest: reads {back!r}")
    ok = ok and back == SECRET
    print("result:", "every defence held" if ok else "A DEFENCE FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

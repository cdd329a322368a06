"""The suite's Secure Execution runs (``NAME_PV``): each test's ``s390x/NAME.pv.bin``, made by zuv's pvimg as
the suite's ``GENPROTIMG``, booted by ``zuv boot`` as a secure guest of zuv's hypervisor and Ultravisor.

The upstream runner starts a ``NAME_PV`` run beside each test when it runs under KVM (never under TCG:
QEMU's TCG has no Protected Virtualization), with ``s390x/Makefile``'s images:
``GENPROTIMG --no-verify --overwrite --no-component-check --host-key-document HKD --comm-key CCK
--x-pcf 0xe0 [--parmfile s390x/selftest.parmfile] --image NAME.bin -o NAME.pv.bin``. ``tools/conformance.py``
builds them with ``tools/genprotimg`` (``pvimg create``) as ``GENPROTIMG`` and runs them here; there is no
QEMU figure.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

REPO = Path(__file__).resolve().parent.parent
#: the image generator the suite's Makefile calls as GENPROTIMG (it asks ``GENPROTIMG --help`` which options
#: exist, then calls it with pvimg create's options): zuv's genprotimg, ``pvimg create`` as s390-tools' is
GENPROTIMG = f"{sys.executable} {REPO / 'tools' / 'genprotimg'}"
PV_SUFFIX = "_PV"


#: what zuv's PV images are made of: a change to one of them makes the images again
PV_INPUTS = ("emulator/image/pvimg.py", "emulator/image/pvimg_cli.py", "firmware/se_header.py",
             "firmware/crypto.py", "guests/images/stage3a.bin", "guests/images/stage3b.bin")  # fmt: skip


def pv_build(tree: Path, host_key_document: Path) -> None:
    """Make every ``s390x/*.pv.bin`` of a built tree with zuv's genprotimg, once per content of zuv's image
    code (a stamp holds its digest; make cannot tell that zuv's pvimg changed), one builder at a time (a
    lock: trees are shared by every checkout whose suite, host-key document and header tool are the same).
    A test whose image cannot be made has none, and its run is reported as not built. The host-key document
    is given as a copy dated 1970, so that make remakes none of the tree's other files for it."""
    digest = hashlib.sha256(b"".join((REPO / f).read_bytes() for f in PV_INPUTS if (REPO / f).exists()))
    stamp = tree / "s390x" / ".zuv-pv-built"
    with open(tree / ".zuv-pv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == digest.hexdigest():
            return
        for old in (tree / "s390x").glob("*.pv.bin"):
            old.unlink()
        hkd = tree / ".zuv-pv-host-key-document.crt"
        hkd.write_bytes(host_key_document.read_bytes())
        os.utime(hkd, (0, 0))
        make = ["make", "-k", "test_cases_pv", f"GENPROTIMG={GENPROTIMG}", f"HOST_KEY_DOCUMENT={hkd}"]
        subprocess.run(make, cwd=tree, capture_output=True, text=True)
        stamp.write_text(digest.hexdigest())


def pv_image(tree: Path, elf_name: str) -> Path:
    """The PV image of a test's ELF (``NAME.elf`` -> ``NAME.pv.bin``)."""
    return tree / "s390x" / (Path(elf_name).stem + ".pv.bin")


#: ``-device MODEL-s390x-cpu`` properties of the configuration topology (drawer, book, socket, polarization):
#: zuv offers no topology facility (11), so a CPU is added by its address alone, as on a machine without
#: one, and the test sees no topology (topology-3 skips itself so, as its ``zuv run`` does)
_TOPOLOGY_PROPS: Final = ("drawer-id", "book-id", "socket-id", "entitlement", "dedicated")


def _without_topology(device: str) -> str:
    """A ``-device`` CPU with its topology properties left out (``_TOPOLOGY_PROPS``)."""
    kind, *props = device.split(",")
    return ",".join([kind, *(p for p in props if p.partition("=")[0] not in _TOPOLOGY_PROPS)])


def pv_command(memory_mib: int, timeout: float, image: Path, cpus: int = 1,
               cpu_devices: list[str] | tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """``zuv boot`` of a test's PV image: its memory and CPUs (those at start and those of ``-device
    MODEL-s390x-cpu,core-id=N``), no attack demonstration."""
    devices = [arg for d in cpu_devices for arg in ("--device", _without_topology(d))]
    return [sys.executable, "-m", "emulator.cli", "boot", "--memory", f"{memory_mib}M", "--cpus", str(cpus),
            *devices, "--time-limit", str(timeout), "--no-attack", str(image)]  # fmt: skip

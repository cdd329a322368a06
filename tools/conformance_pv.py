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
import shlex
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


#: ``-device`` models of unittests.cfg and the ``zuv boot`` options that give a secure guest the same device
#: (the watchdog: QEMU under KVM passes a protected guest's DIAG 0x288 to its diag288 device as any guest's)
_BOOT_WATCHDOGS: Final = {"diag288": ("--watchdog", "diag288")}
#: ``-device`` models ``zuv boot --device`` takes (CPU models by their suffix; channel devices as they are)
_BOOT_DEVICES: Final = ("virtio-net-ccw", "virtio-blk-ccw", "-s390x-cpu")


def pv_device_options(qemu_params: str) -> list[str]:
    """The ``zuv boot`` options for a test's QEMU devices (unittests.cfg's ``qemu_params``): the upstream
    runner starts a PV run with the same options as the test's other run, so its CPUs (without their
    topology, ``_without_topology``), its channel devices, its watchdog with its action, and the VM's name
    and UUID; the rest (``-m``, ``-smp``, ``-cpu``, ...) is not a device."""
    params = shlex.split(qemu_params)
    out: list[str] = []
    for i, opt in enumerate(params):
        arg = params[i + 1] if i + 1 < len(params) else ""
        if opt == "-device":
            model = arg.split(",")[0]
            if model in _BOOT_WATCHDOGS:
                out += _BOOT_WATCHDOGS[model]
            elif model.endswith(_BOOT_DEVICES):
                out += ["--device", _without_topology(arg) if model.endswith("-s390x-cpu") else arg]
        elif opt == "--watchdog-action":
            out += ["--watchdog-action", arg]
        elif opt in ("-name", "--uuid", "-uuid"):  # the VM's name and UUID (STSI 3.2.2)
            out += ["--" + opt.lstrip("-"), arg]
    return out


def pv_command(
    memory_mib: int, timeout: float, image: Path, cpus: int = 1, qemu_params: str = ""
) -> list[str]:
    """``zuv boot`` of a test's PV image: its memory, its CPUs (those at start and those of ``-device
    MODEL-s390x-cpu,core-id=N``) and its devices (``pv_device_options``), no attack demonstration."""
    devices = pv_device_options(qemu_params)
    return [sys.executable, "-m", "emulator.cli", "boot", "--memory", f"{memory_mib}M", "--cpus", str(cpus),
            *devices, "--time-limit", str(timeout), "--no-attack", str(image)]  # fmt: skip

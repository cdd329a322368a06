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

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the image generator the suite's Makefile calls as GENPROTIMG (it asks ``GENPROTIMG --help`` which options
#: exist, then calls it with pvimg create's options): zuv's genprotimg, ``pvimg create`` as s390-tools' is
GENPROTIMG = f"{sys.executable} {REPO / 'tools' / 'genprotimg'}"
PV_SUFFIX = "_PV"


def pv_build(tree: Path, host_key_document: Path, gen_se_header: str) -> None:
    """(Re)make every ``s390x/*.pv.bin`` of a built tree with zuv's pvimg (a test whose image cannot be made
    has none, and its run is reported as not built). The images are made afresh on every run (~0.3 s of
    pvimg per test): make cannot tell that zuv's pvimg changed."""
    for old in (tree / "s390x").glob("*.pv.bin"):
        old.unlink()
    make = ["make", "-k", "test_cases_pv", f"GENPROTIMG={GENPROTIMG}",
            f"HOST_KEY_DOCUMENT={host_key_document}", f"GEN_SE_HEADER={gen_se_header}"]  # fmt: skip
    subprocess.run(make, cwd=tree, capture_output=True, text=True)


def pv_image(tree: Path, elf_name: str) -> Path:
    """The PV image of a test's ELF (``NAME.elf`` -> ``NAME.pv.bin``)."""
    return tree / "s390x" / (Path(elf_name).stem + ".pv.bin")


def pv_command(memory_mib: int, timeout: float, image: Path) -> list[str]:
    """``zuv boot`` of a test's PV image: its memory, one CPU (``zuv boot`` starts secure guests with one),
    no attack demonstration."""
    return [sys.executable, "-m", "emulator.cli", "boot", "--memory", f"{memory_mib}M",
            "--time-limit", str(timeout), "--no-attack", str(image)]  # fmt: skip

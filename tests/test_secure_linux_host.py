"""The host's trap and export demo on a Secure Execution Linux guest (``tools/secure_linux_demo.py``): the
hypervisor reads Linux's memory and is refused, exports pages and reads ciphertext, imports one, and Linux
runs on through the pages it left exported (the hypervisor imports them at Linux's touches). Needs the
cached Debian 13 guest (``tools/linux_guest.py --release trixie``); at the kernel's first Ultravisor call,
a few seconds in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import linux_guest  # noqa: E402
import secure_linux_demo  # noqa: E402

CACHE = linux_guest.cache_dir("trixie")
pytestmark = pytest.mark.skipif(
    not (CACHE / "vmlinuz").exists() or not (CACHE / "initrd.cpio").exists(),
    reason="no Debian 13 Linux guest cached: run tools/linux_guest.py --release trixie",
)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    img = build_image(kernel=(CACHE / "vmlinuz").read_bytes(), ramdisk=(CACHE / "initrd.cpio").read_bytes(),
                      parmfile=b"console=ttysclp0 nokaslr",
                      host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng("secure linux host"))  # fmt: skip
    path = tmp_path_factory.mktemp("selinux") / "linux.se"
    path.write_bytes(img.data)
    return path


def test_the_host_is_refused_linux_memory_reads_ciphertext_and_linux_goes_on(image):
    kernel = (CACHE / "vmlinuz").read_bytes()
    r = secure_linux_demo.demo(image, 512 << 20, 16, True, kernel, 300.0)
    assert r.page_counts["secure"] > 1000 and len(r.pages) == 16
    # the pages hold the kernel image's own bytes (the decompressor's code and the compressed kernel),
    # which the host knows, so it could tell them in what it reads
    offs = [g - secure_linux_demo.KERNEL_AT for g in r.pages]
    assert all(kernel[o : o + 0x1000].strip(b"\0") for o in offs)
    assert r.refused == 16  # PGM 0x3D each, nothing read
    assert r.exported == 16 and not r.plaintext_seen and len(set(r.ciphertext_sample)) > 16
    assert r.imported == 1 and r.refused_after_import
    # Linux ran on to its next intercepted instruction, through the pages it had to have imported again
    assert r.went_on and r.touched_back >= 1 and r.host_imports >= r.touched_back

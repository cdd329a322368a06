"""DIAGNOSE 0x10 (release pages) of a secure guest under zuv's hypervisor: the range checked as for every
guest (``emulator.hw.diag.release_ranges``, KVM's ``diag_release_pages``), a good one completed (it was a
specification exception whatever the range), a bad one a specification exception."""

import subprocess

import pytest
from test_secure_sigp_status import _image

from emulator.hypervisor.boot import SecureHost, load_image

pytestmark = pytest.mark.toolchain

#: At 0x10000: release the pages R2..R3 names; a program interruption ends in a disabled wait at its code
#: (the program-new PSW at 0x1d0), the DIAGNOSE completed in a disabled wait at 0x600d.
GUEST = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    llilf %r2,START
    llilf %r3,END
    diag %r2,%r3,0x10
    larl %r1,donepsw
    lpswe 0(%r1)
pgm:
    llgh %r4,0x8e
    larl %r1,failpsw
    stg %r4,8(%r1)
    lpswe 0(%r1)
    .align 8
pgmnew:  .quad 0x0000000180000000, pgm
donepsw: .quad 0x0002000180000000, 0x600d
failpsw: .quad 0x0002000180000000, 0
"""


def _code(tmp_path, start: int, end: int) -> bytes:
    src = GUEST.replace("START", hex(start)).replace("END", hex(end))
    (tmp_path / "g.s").write_text(src)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", tmp_path / "g.o", tmp_path / "g.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", tmp_path / "g.elf",
                    tmp_path / "g.o"], check=True)  # fmt: skip
    subprocess.run(["s390x-linux-gnu-objcopy", "-O", "binary", tmp_path / "g.elf", tmp_path / "g.bin"],
                   check=True)  # fmt: skip
    return (tmp_path / "g.bin").read_bytes()


@pytest.mark.parametrize(
    ("start", "end", "wait"),
    [
        (0x30000, 0x31000, 0x600D),  # two pages: done
        (0x1000, 0x31000, 0x06),  # from the low 8 KiB: specification exception
        (0x30800, 0x31000, 0x06),  # unaligned start
        (0x31000, 0x30000, 0x06),  # end below start
    ],
    ids=["two-pages", "low-8k", "unaligned", "end-below-start"],
)
def test_a_secure_guests_diag10_is_checked_as_every_guests(tmp_path, start, end, wait):
    host = SecureHost("zuv-demo", seed=31)
    vm = host.hv.create_vm(64 << 20, 1, name="diag10")
    try:
        load_image(vm, _image(tmp_path, _code(tmp_path, start, end), f"diag10-{start:x}-{end:x}"))
        res = vm.run(time_limit=60)
        assert vm.pv is not None, res.describe()
        assert vm.vcpus[0].disabled_wait == wait, res.describe()
    finally:
        vm.destroy()

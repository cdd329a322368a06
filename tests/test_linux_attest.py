"""Attestation from inside a Linux secure guest (issue 23, deliverable 3): the initramfs that carries the
attestation program and its request, and the response made from what the program prints. The boot itself
takes minutes (docs/linux.md); here the pieces around it, and the program built when the cross compiler is
there."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import linux_guest as L  # noqa: E402

from firmware.attestation import exchange_request, parse_exchange  # noqa: E402

MEAS = bytes(range(64))
CUID = bytes(range(100, 116))


def test_the_attestation_initramfs_keeps_busybox_and_modules_and_attests_after_start_up():
    base = L.build_initramfs(b"BUSYBOX", modules={"uvdevice.ko": b"KO"})
    out = L.read_newc(L.attest_initramfs(base, b"UVATTEST", b"REQUEST"))
    assert out["bin/busybox"][1] == b"BUSYBOX" and out["lib/modules/uvdevice.ko"][1] == b"KO"
    assert out["bin/uvattest"] == (0o100755, b"UVATTEST") and out["request.bin"][1] == b"REQUEST"
    rc = out["etc/init.d/rcS"][1].decode()
    # the module (/dev/uv) first, then the marker, the attestation and the power-off
    steps = ("insmod /lib/modules/uvdevice.ko", L.USERSPACE_MARKER, "/bin/uvattest /request.bin")
    steps += ("poweroff -f",)
    order = [rc.index(x) for x in steps]
    assert order == sorted(order)


def test_the_response_carries_the_measurement_and_cuid_uvattest_printed():
    request = exchange_request(b"\x01" * 0x1A0)
    log = (
        "zuv-linux: userspace up\r\nuvattest: ioctl 0 rc 0x0001 rrc 0x0000\r\n"
        f"uvattest: measurement {MEAS.hex()}\r\nuvattest: cuid {CUID.hex()}\r\nuvattest: exit 0\r\n"
    )
    resp = parse_exchange(L.attestation_response(log, request))
    assert resp.is_response and resp.arcb == b"\x01" * 0x1A0
    assert (resp.measurement, resp.cuid, resp.additional) == (MEAS, CUID, None)


def test_a_refused_attestation_is_one_clear_error():
    request = exchange_request(b"\x01" * 0x1A0)
    with pytest.raises(L.GuestError, match="rc 0x0105 rrc 0x0000"):
        L.attestation_response("uvattest: ioctl -1 rc 0x0105 rrc 0x0000\n", request)
    with pytest.raises(L.GuestError, match="no uvattest output"):
        L.attestation_response("Kernel panic\n", request)


@pytest.mark.skipif(shutil.which("s390x-linux-gnu-gcc") is None, reason="no s390x cross compiler")
def test_the_attestation_program_builds_static_for_s390x(tmp_path):
    binary = L.build_uvattest(tmp_path)
    assert binary[:4] == b"\x7fELF" and binary[18:20] == b"\x00\x16"  # ELF, big-endian, EM_S390
    assert b"/dev/uv" in binary and b".interp" not in binary  # static: no program interpreter

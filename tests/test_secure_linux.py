"""A stock Linux kernel as a Secure Execution guest (issue 23, deliverable 3): the secure-guest paths it
needs, each with a small secure guest of its own (the Linux boot itself takes minutes; docs/linux.md)."""

import pytest

from emulator.hypervisor.boot import SecureHost, boot, load_image
from emulator.image.pvimg import build_image
from firmware import crypto as c
from firmware.machine_identity import MachineIdentity

DEMO = MachineIdentity.bundled("zuv-demo")

#: entered at 0x10000 (a memory image from 0): external new PSW -> handler; SERVC Read SCP Info with the
#: external mask off; then CR0's service-signal subclass on (STCTG/OI/LCTLG) and STOSM 0x01, and a spin
#: loop (Linux's ``sclp_sync_wait``); the handler loads the disabled wait PSW at 0x600D.
#:   larl r1,extpsw; mvc 0x1b0(16,r0),0(r1); lgfi r2,0x20000; mvhhi 0(r2),0x1000; lgfi r1,0x20001
#:   servc r1,r2; stctg c0,c0,0x300; oi 0x306,2; lctlg c0,c0,0x300; stosm 0x320,1
#:   spin: j spin;  handler: larl r1,waitpsw; lpswe 0(r1)
#:   extpsw: .quad 0x0000000180000000, handler;  waitpsw: .quad 0x0002000180000000, 0x600d
SPIN_FOR_SERVICE_SIGNAL = bytes.fromhex(
    "c01000000024d20f01b01000c02100020000e54420001000c01100020001b2200012eb000300002596020306eb0003"
    "00002fad010320a7f40000c0100000000fb2b21000070707070000000180000000000000000001003a000200018000"
    "0000000000000000600d"
)


def _secure_boot(tmp_path, code: bytes, seed: str):
    rng = c.DeterministicRng(seed)
    image = build_image(kernel=bytes(0x10000) + code, host_keys=[DEMO.public_key], rng=rng)
    path = tmp_path / "guest.se"
    path.write_bytes(image.data)
    # the limit only ends a guest that never gets its interruption (it spins for ever then)
    return boot(SecureHost("zuv-demo", seed=3), path, attack=False, time_limit=30)


def test_a_service_signal_held_while_disabled_reaches_a_guest_that_enables_and_spins(tmp_path):
    r = _secure_boot(tmp_path, SPIN_FOR_SERVICE_SIGNAL, "ext request")
    assert r.failure is None and r.secure
    cpu = r.run.cpus[0]
    assert cpu.state == "disabled-wait" and "0x600d" in cpu.detail, r.run.describe()
    # the SERVC's interruption was held (the guest had the external mask off); its enabling ended the SIE
    assert r.intercepts.get("SERVC") == 1 and r.intercepts.get("external request") == 1


def _linux_guest():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import linux_guest

    cache = linux_guest.cache_dir()
    return cache / "vmlinuz", cache / "initrd.cpio"


@pytest.mark.skipif(not all(p.exists() for p in _linux_guest()),
                    reason="no Linux guest cached: run tools/linux_guest.py --setup")  # fmt: skip
def test_debians_kernel_packed_with_its_initramfs_unpacks_and_asks_the_ultravisor_as_a_secure_guest(tmp_path):
    kernel, initrd = _linux_guest()
    image = build_image(kernel=kernel.read_bytes(), ramdisk=initrd.read_bytes(), parmfile=b"console=ttysclp0",
                        host_keys=[DEMO.public_key], rng=c.DeterministicRng("linux"))
    path = tmp_path / "linux.se"
    path.write_bytes(image.data)
    host = SecureHost("zuv-demo", seed=5)
    vm = host.hv.create_vm(512 << 20, 1, name="linux")
    guest_calls = []

    def sink(e):
        if e.caller.kind == "guest":
            guest_calls.append((e.name, e.cc, e.rc))

    host.uv.add_event_sink(sink)
    try:
        load_image(vm, path)
        # stage3a's secure IPL (the UV unpacks and verifies ~7 MB), stage3b moves the kernel to 0x10000 and
        # the decompressor's uv_query_info asks the Ultravisor (facility 158) as Linux does: Query, rc 0x100
        vm.run(time_limit=120, stop_when=lambda: bool(guest_calls))
        assert vm.pv_failure is None and vm.pv is not None
        assert guest_calls[0] == ("qui", 1, 0x100)
    finally:
        vm.destroy()

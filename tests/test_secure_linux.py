"""A stock Linux kernel as a Secure Execution guest (issue 23, deliverable 3): the secure-guest paths it
needs, each with a small secure guest of its own (the Linux boot itself takes minutes; docs/linux.md)."""

from emulator.hypervisor.boot import SecureHost, boot
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
    image = build_image(kernel=bytes(0x10000) + code, host_keys=[DEMO.public_key], rng=c.DeterministicRng(seed))
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

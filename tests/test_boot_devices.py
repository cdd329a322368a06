"""The devices ``zuv boot`` gives a guest of zuv's hypervisor, as QEMU's ``-device`` under KVM. The DIAGNOSE
0x288 watchdog (``--watchdog diag288``): a secure guest's DIAG reaches the host as an instruction
interception and arms the VM's timer, whose expiry does the chosen action; without the device, and for an
odd R1, the guest gets a specification exception. A channel device (``--device virtio-net-ccw``) is a
subchannel of the guest, secure or not. The VM's identity in STSI 3.2.2 (``--name``, ``--uuid``) with KVM's
control-program identifier."""

import pytest

from emulator.hw.css_blocks import PMCW_E
from emulator.hypervisor.boot import BlockDevice, ConsoleDevice, SecureHost, boot, load_image
from emulator.hypervisor.watchdog import add_watchdog

#: Sets its restart and program new PSWs, arms the watchdog (DIAG 0x288 init, 15 s, restart action: GR0-2)
#: and waits enabled for external interruptions of no subclass, which nothing but the watchdog's restart
#: interruption (inject-nmi) ends: the restart new PSW ends in a disabled wait at 0x288. A program
#: interruption ends in a disabled wait at its code. Assembled with GNU as -march=z13, linked at 0x10000:
#:   larl r2,rpsw; mvc 0x1a0(16,r0),0(r2); larl r2,pgmpsw; mvc 0x1d0(16,r0),0(r2); lghi r0,0; lghi r1,15;
#:   lghi r2,0; diag r0,r2,0x288; larl r2,waitpsw; lpswe 0(r2)
#:   done: larl r2,donepsw; lpswe 0(r2)
#:   pgm: llgh r4,0x8e; larl r2,donepsw; stg r4,8(r2); lpswe 0(r2)
#:   rpsw: .quad 0x180000000,done; pgmpsw: .quad 0x180000000,pgm; waitpsw: .quad 0x0102000180000000,0
#:   donepsw: .quad 0x0002000180000000,0x288
_BITE = bytes.fromhex(
    "c0200000002cd20f01a02000c0200000002ed20f01d02000a7090000a719000fa729000083020288c02000000028b2b22000"
    "c0200000002bb2b22000e340008e0091c02000000023e34020080024b2b220000707070707070000000180000000000000000"
    "00100320000000180000000000000000001003c010200018000000000000000000000000002000180000000000000000000"
    "0288"
)
#: DIAG 0x288 with an odd R1 (``diag r1,r3,0x288``) whose registers, read as the even pair GR0-1 would not
#: be, say init for 15 s with the restart action (GR1 0, GR2 15, GR3 0): a specification exception (a
#: disabled wait at 6), else a disabled wait at 0x600d. Assembled as ``_BITE``:
#:   larl r2,pgmpsw; mvc 0x1d0(16,r0),0(r2); lghi r1,0; lghi r2,15; lghi r3,0; diag r1,r3,0x288;
#:   larl r2,donepsw; lpswe 0(r2); pgm: (as _BITE's); pgmpsw: .quad 0x180000000,pgm;
#:   donepsw: .quad 0x0002000180000000,0x600d
_ODD_R1 = bytes.fromhex(
    "c02000000020d20f01d02000a7190000a729000fa739000083130288c0200000001ab2b22000e340008e0091c020000000"
    "12e34020080024b2b2200007070707000000018000000000000000000100260002000180000000000000000000600d"
)


def _se_image(tmp_path, code: bytes, name: str):
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    kernel = bytes(0x10000) + code + bytes(0x1000)
    img = build_image(kernel=kernel, host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng(name))  # fmt: skip
    path = tmp_path / f"{name}.se"
    path.write_bytes(img.data)
    return path


def _flat_image(tmp_path, code: bytes, name: str):
    """A normal guest's flat image (QEMU ``-kernel``): a short PSW at 0 starting it at 0x10000."""
    path = tmp_path / f"{name}.bin"
    path.write_bytes((0x0008000080010000).to_bytes(8, "big") + bytes(0x10000 - 8) + code)
    return path


def _waits(r) -> dict[int, str]:
    return {c.address: c.detail for c in r.run.cpus}


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "normal"])
def test_the_watchdog_bites_with_a_restart_interruption(tmp_path, secure):
    """Armed for 15 s, the watchdog expires while the guest waits (a deterministic clock skips the idle
    time to its deadline; a real-time one would wait the 15 s) and inject-nmi makes a restart interruption
    on CPU 0; a secure guest's DIAG is a 0x68 interception the host completes."""
    image = (_se_image if secure else _flat_image)(tmp_path, _BITE, "bite")
    r = boot(SecureHost("zuv-demo", seed=31, deterministic=True), image, attack=False, time_limit=60,
             watchdog="diag288", watchdog_action="inject-nmi", deterministic=True)  # fmt: skip
    assert r.secure is secure
    assert _waits(r) == {0: "disabled wait 0x288"}, r.run.describe()
    assert r.intercepts.get("DIAG 0x288" if secure else "DIAG") == 1


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "normal"])
def test_without_the_device_diag_288_is_a_specification_exception(tmp_path, secure):
    image = (_se_image if secure else _flat_image)(tmp_path, _BITE, "nodev")
    r = boot(SecureHost("zuv-demo", seed=32), image, attack=False, time_limit=60)
    assert _waits(r) == {0: "disabled wait 0x6"}, r.run.describe()


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "normal"])
def test_an_odd_r1_is_a_specification_exception_although_the_registers_would_arm_it(tmp_path, secure):
    """The host of a secure guest sees R1 and R1+1 as registers 0 and 1: the Ultravisor refuses an odd R1
    itself (the host could not tell), as the hypervisor does for a normal guest."""
    image = (_se_image if secure else _flat_image)(tmp_path, _ODD_R1, "odd")
    r = boot(SecureHost("zuv-demo", seed=33), image, attack=False, time_limit=60, watchdog="diag288")
    assert _waits(r) == {0: "disabled wait 0x6"}, r.run.describe()


def test_the_reset_action_ipls_the_secure_guest_again_and_poweroff_ends_the_run(tmp_path):
    """``reset`` (QEMU's default) is a system reset: the secure configuration goes and the image is IPLed
    again, so the guest arms the watchdog once more; ``poweroff`` ends the run at the expiry (deterministic
    clocks: the idle time to each expiry is skipped)."""
    image = _se_image(tmp_path, _BITE, "reset")
    r = boot(SecureHost("zuv-demo", seed=34, deterministic=True), image, attack=False, time_limit=60,
             watchdog="diag288", watchdog_action="poweroff", deterministic=True)  # fmt: skip
    assert r.run.reason == "the watchdog expired (powered off: --watchdog-action poweroff)"
    host = SecureHost("zuv-demo", seed=35, deterministic=True)
    vm = host.hv.create_vm(128 << 20, 1, name="reset")
    try:
        vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001
        vm.add_device(BlockDevice(1 << 20))
        vm.channel.add_device("virtio-net-ccw")
        wd = add_watchdog(vm, "reset")
        load_image(vm, image)
        sch = vm.channel.css.subchannels[0]
        sch.pmcw.flags |= PMCW_E  # as a guest's MSCH enables it
        res = vm.run(time_limit=60, stop_when=lambda: wd.expiries >= 2, deterministic=True)
        assert res.reason == "stop condition met", res.describe()
        assert res.intercepts.get("DIAG 0x288") == 2  # armed by the guest's first and second IPL
        assert vm.pv is None  # the reset made the VM normal; its next run IPLs the image again
        assert not sch.enabled  # the system reset reset the channel subsystem
    finally:
        vm.destroy()
    with pytest.raises(ValueError, match="unknown watchdog action"):
        boot(host, image, attack=False, watchdog="diag288", watchdog_action="explode")


#: STORE SUBCHANNEL of 0.0.0000 (subsystem id 0x00010000) into a SCHIB at 0x10048; ends in a disabled wait
#: at the PMCW's flags halfword shifted left by 8, or'ed with the condition code. Assembled as ``_BITE``:
#:   llilf r1,0x10000; larl r5,schib; stsch 0(r5); ipm r4; srl r4,28; llgh r6,4(r5); sllg r6,r6,8;
#:   ogr r4,r6; larl r2,donepsw; stg r4,8(r2); lpswe 0(r2); donepsw: .quad 0x0002000180000000,0
_STSCH = bytes.fromhex(
    "c01f00010000c05000000021b2345000b22200408840001ce36050040091eb660008000db9810046c02000000008e340200800"
    "24b2b220000002000180000000000000000000000000"
).ljust(0x48 + 64, b"\0")


def test_a_channel_device_of_zuv_boot_is_a_subchannel_of_the_secure_guest(tmp_path):
    """``zuv boot --device virtio-net-ccw`` (kvm-unit-tests' skey_PV and css_PV runs have QEMU's ``-device
    virtio-net-ccw``): the secure guest's STSCH of 0.0.0000 stores a valid device (cc 0, enabled-device
    bits: device number valid); without it the subchannel is not operational (cc 3)."""
    image = _se_image(tmp_path, _STSCH, "stsch")
    r = boot(SecureHost("zuv-demo", seed=36), image, attack=False, time_limit=60, devices=("virtio-net-ccw",))
    assert r.secure and r.intercepts.get("I/O 0xb234") == 1, r.intercepts
    wait = int(_waits(r)[0].rpartition(" ")[2], 16)
    assert wait & 3 == 0 and wait >> 8 & 0x0001, f"{wait:#x}"  # cc 0, PMCW device number valid
    r = boot(SecureHost("zuv-demo", seed=36), image, attack=False, time_limit=60)
    assert _waits(r) == {0: "disabled wait 0x3"}


#: STSI 3.2.2 into 0x20000, then a disabled wait at the first 8 bytes of the VM's control-program identifier
#: (``_STSI_CPI``), or at the first 4 bytes of its name above the first 4 of its UUID (``_STSI_NAME``), all
#: EBCDIC. Assembled as ``_BITE``: llilf r0,0x30000002; lghi r1,2; llilf r5,0x20000; stsi 0(r5);
#: lg r4,0x38(r5) (or: llgf r4,0x2c(r5); sllg r4,r4,32; llgf r6,0x50(r5); ogr r4,r6); larl r2,donepsw;
#: stg r4,8(r2); lpswe 0(r2); donepsw: .quad 0x0002000180000000,0
_STSI_CPI = bytes.fromhex(
    "c00f30000002a7190002c05f00020000b27d5000e34050380004c0200000000be34020080024b2b22000070707070707"
    "00020001800000000000000000000000"
)
_STSI_NAME = bytes.fromhex(
    "c00f30000002a7190002c05f00020000b27d5000e340502c0016eb440020000de36050500016b9810046c0200000000b"
    "e34020080024b2b2200007070707070700020001800000000000000000000000"
)


def test_a_guest_of_the_hypervisor_sees_kvm_and_its_name_and_uuid_in_stsi_322(tmp_path):
    """STSI 3.2.2 of a secure guest (and of a normal one) names the hypervisor as KVM does ("KVM/Linux": Linux
    and kvm-unit-tests tell KVM by it; their css, epsw, stsi and diag308 checks run only there) and the VM
    as QEMU's ``-name`` and ``--uuid`` (``zuv boot --name --uuid``), "KVMguest" and a zero UUID without."""
    host = SecureHost("zuv-demo", seed=37)
    for secure in (True, False):
        image = (_se_image if secure else _flat_image)(tmp_path, _STSI_CPI, "cpi")
        r = boot(host, image, attack=False, time_limit=60)
        assert r.secure is secure
        assert _waits(r) == {0: f"disabled wait {int.from_bytes('KVM/Linu'.encode('cp037'), 'big'):#x}"}
    image = _se_image(tmp_path, _STSI_NAME, "name")
    uuid = bytes.fromhex("0fb84a86727c11eabc550242ac130003")
    r = boot(host, image, attack=False, time_limit=60, name="kvm-unit-test", uuid=uuid)
    assert _waits(r) == {0: f"disabled wait {int.from_bytes('kvm-'.encode('cp037') + uuid[:4], 'big'):#x}"}
    r = boot(host, image, attack=False, time_limit=60)
    assert _waits(r) == {0: f"disabled wait {int.from_bytes('KVMg'.encode('cp037') + bytes(4), 'big'):#x}"}

"""Secure boot end to end: the bundled demo image, images for several machines, wrong keys and tampering."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import LoadError
from emulator.hypervisor.boot import DEMO_IMAGE, SecureHost, boot, build_demo_image
from emulator.hypervisor.pv import KVM_PV_SET_SEC_PARMS, KVM_PV_VERIFY
from emulator.image.pvimg import parse_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_host():
    return SecureHost("zuv-demo", seed=7)


@pytest.fixture(scope="module")
def other_host():
    return SecureHost("zuv-other", seed=8)


def _boot(host, data, tmp_path, name="img.se", attack=False):
    p = tmp_path / name
    p.write_bytes(data)
    return boot(host, p, attack=attack, time_limit=60)


def test_bundled_demo_image_rebuilds_byte_for_byte_and_parses():
    data = DEMO_IMAGE.read_bytes()
    assert build_demo_image() == data
    img = parse_image(data)
    assert img.header[:8] == b"IBMSecEx" and len(img.ipib.components) == 2  # kernel and stage3b


def test_bundled_demo_boots_and_the_hypervisors_read_of_the_secret_is_trapped(demo_host):
    r = boot(demo_host, DEMO_IMAGE, time_limit=60)
    text = r.console.decode()
    assert r.failure is None and r.run.clean, r.run.describe()
    assert "Hello from a secure guest" in text and "a secure guest)" in text
    assert "read back through the bounce buffer: ok" in text
    assert "secret intact: yes" in text and "EXIT: STATUS=1" in text
    t = r.trap
    assert t is not None and t.trapped and t.code == 0x3D
    assert not t.secret_visible and b"zuv secret" not in t.seen
    # the guest's later touch of the exported page imported it back (0x3E) and found its secret intact
    assert r.intercepts.get("host program interruption 0x3e", 0) >= 1
    assert r.intercepts.get("PV instruction", 0) >= 8 and r.intercepts.get("PV prefix not secure", 0) >= 1


def test_image_for_another_machine_fails_with_no_matching_key_slot(other_host):
    r = boot(other_host, DEMO_IMAGE, attack=False, time_limit=60)
    f = r.failure
    assert f is not None and (f.cmd, f.rc, f.rrc) == (KVM_PV_SET_SEC_PARMS, 0x0108, 0x0005)
    assert "no key slot" in r.failure_text() and "KVM_PV_SET_SEC_PARMS" in r.failure_text()
    assert not r.secure and not r.run.clean
    # stage3a got the packed error and stopped with its documented disabled-wait code
    assert any(c.state == "disabled-wait" and "0x3a000a" in c.detail for c in r.run.cpus)


def test_an_image_with_several_host_keys_boots_on_each_machine(demo_host, other_host, tmp_path):
    data = build_demo_image(("zuv-other", "zuv-demo"), seed="two machines")
    for host in (demo_host, other_host):
        r = _boot(host, data, tmp_path)
        assert r.failure is None and r.run.clean and r.secure
        assert "secret intact: yes" in r.console.decode()


def _tamper(data, offset):
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def test_tampered_component_fails_verify_with_pld_mismatch(demo_host, tmp_path):
    img = parse_image(DEMO_IMAGE.read_bytes())
    kernel = img.ipib.components[0]
    r = _boot(demo_host, _tamper(img.data, kernel.addr + 0x1234), tmp_path)
    assert r.failure is not None and (r.failure.cmd, r.failure.rc, r.failure.rrc) == (
        KVM_PV_VERIFY,
        0x0102,
        0x001B,
    )
    assert "PLD" in r.failure.message or "page" in r.failure.message.lower()


def test_tampered_tweak_in_the_ipl_block_fails_verify_with_tld_mismatch(demo_host, tmp_path):
    img = parse_image(DEMO_IMAGE.read_bytes())
    off = img.ipib_addr + 0x88 + 7  # last byte of component 0's tweak prefix (the random part)
    r = _boot(demo_host, _tamper(img.data, off), tmp_path)
    assert r.failure is not None and (r.failure.cmd, r.failure.rc, r.failure.rrc) == (
        KVM_PV_VERIFY,
        0x0102,
        0x001C,
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_tampered_header_byte_fails_set_secure_parameters(demo_host, tmp_path, data):
    img = parse_image(DEMO_IMAGE.read_bytes())
    off = data.draw(st.integers(0, img.header_size - 1), label="header offset")
    r = _boot(demo_host, _tamper(img.data, img.header_addr + off), tmp_path)
    assert r.failure is not None, f"header byte {off:#x} tampered but the boot succeeded"
    assert r.failure.cmd == KVM_PV_SET_SEC_PARMS or (r.failure.cmd, r.failure.rc) == (KVM_PV_VERIFY, 0x0102)
    assert r.failure.rc in (0x0104, 0x0106, 0x0108, 0x0109, 0x010A, 0x0102)
    assert not r.run.clean


def _run_demo_to_its_secret(vm) -> None:
    """Boot the demo image in ``vm`` (console and block device) and run it until it has its secret page."""
    from emulator.hypervisor.virtio import BlockDevice, ConsoleDevice

    vm.add_device(ConsoleDevice(vm._console_write))
    vm.add_device(BlockDevice())
    vm.load(str(DEMO_IMAGE))
    r = vm.run(time_limit=30, stop_when=lambda: b"secret page at" in vm.console)
    assert r.reason == "stop condition met" and vm.pv is not None


def test_the_hypervisor_sees_only_the_state_description_and_forged_handles_give_validity(demo_host):
    from emulator.errors import HypervisorError
    from emulator.hw.sie import ICPT_VALIDITY
    from firmware.uv_sie import VIR_CONFIG_HANDLE, VIR_NOT_OPERATING

    vm = demo_host.hv.create_vm(64 << 20)
    try:
        _run_demo_to_its_secret(vm)
        v = vm.vcpus[0]
        with pytest.raises(HypervisorError, match="secure"):
            v.cpu  # the registers of a secure vCPU are not the hypervisor's
        good = v.sd.pv_handle_config
        v.sd.pv_handle_config = good ^ 1
        ex = demo_host.hv.enter(v)
        assert ex.icptcode == ICPT_VALIDITY == v.sd.icptcode and v.sd.ipb >> 16 == VIR_CONFIG_HANDLE
        v.sd.pv_handle_config = good
        vm.pv.set_cpu_state(v, 2)  # stopped: entering it is a validity interception too
        ex = demo_host.hv.enter(v)
        assert ex.icptcode == ICPT_VALIDITY and v.sd.ipb >> 16 == VIR_NOT_OPERATING
        vm.pv.set_cpu_state(v, 1)
        r = vm.run(time_limit=30)
        assert r.clean and b"secret intact: yes" in vm.console
    finally:
        vm.destroy()
    assert demo_host.memory.non_host_frames == demo_host.uv.base_len >> 12  # only the UV's own storage left


def test_zuv_without_arguments_boots_the_demo_non_interactively():
    p = subprocess.run([sys.executable, "-m", "emulator.cli"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "Hello from a secure guest" in p.stdout and "secret intact: yes" in p.stdout
    assert (
        "secret page 0x" in p.stdout and "trapped (PGM 0x3d" in p.stdout and "secret visible: no" in p.stdout
    )
    assert "Traceback" not in p.stderr


def test_zuv_boot_deterministic_boots_the_demo_and_its_guest_says_the_same_each_time():
    # (a secure Linux guest reaches user space this way while free runs still corrupt it: docs/linux.md)
    outs = []
    for _ in range(2):
        cmd = [sys.executable, "-m", "emulator.cli", "boot", "--deterministic"]
        p = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert p.returncode == 0, p.stderr
        assert "Hello from a secure guest" in p.stdout and "secret visible: no" in p.stdout
        outs.append([line for line in p.stdout.splitlines() if not line.startswith("[hypervisor]")])
    assert outs[0] == outs[1]


def test_zuv_boot_on_the_wrong_machine_says_which_check_failed():
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "boot", "--machine", "zuv-other"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                       cwd=ROOT)  # fmt: skip
    assert p.returncode == 1
    assert "rc 0x0108 rrc 0x0005" in p.stderr and "KVM_PV_SET_SEC_PARMS" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("cut", "says"),
    [
        (5000, "it starts with stage3a's PSW but ends at 0x1388, before the image metadata at 0xc000"),
        (0x20000, "ends at 0x20000, before the end of its IPL parameter block's fixed part"),
        (-0x50, "before the end of its IPL parameter block's fixed part"),
    ],
)
def test_a_truncated_image_is_refused_before_it_runs(demo_host, tmp_path, cut, says):
    """Cut short, an SE image would load as a flat kernel and run into zeros; it is refused with where it
    ends, and the VM is gone again."""
    frames = demo_host.memory.non_host_frames
    with pytest.raises(LoadError, match="a truncated SE image") as e:
        _boot(demo_host, DEMO_IMAGE.read_bytes()[:cut], tmp_path)
    assert says in str(e.value)
    assert demo_host.memory.non_host_frames == frames


def test_an_image_cut_inside_its_component_list_gets_the_ultravisors_rc(demo_host, tmp_path):
    """The IPL parameter block's fixed part is there, the end of its component list is not: what it lists
    is the Ultravisor's to check, and Verify finds the address list changed."""
    r = _boot(demo_host, DEMO_IMAGE.read_bytes()[:-8], tmp_path)
    f = r.failure
    assert f is not None and (f.cmd, f.rc, f.rrc) == (KVM_PV_VERIFY, 0x0102, 0x001A), r.failure_text()


def test_zuv_boot_of_a_truncated_image_says_so_in_one_line(tmp_path):
    p = tmp_path / "cut.se"
    p.write_bytes(DEMO_IMAGE.read_bytes()[:5000])
    r = subprocess.run([sys.executable, "-m", "emulator.cli", "boot", str(p)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        f"zuv: {p}: a truncated SE image: it starts with stage3a's PSW but ends at 0x1388, before the image "
        "metadata at 0xc000 or genprotimg 2.35's IPL parameter block at 0x13000"
    )
    assert "Traceback" not in r.stderr


def test_a_secure_guest_of_more_than_2_gib_runs_through_a_region_third_gmap():
    """Secure Execution has no 2 GiB limit (the Ultravisor takes any guest size up to its maximum guest
    address and walks whatever ASCE the host gives): a 3 GiB guest gets a region-third table over two
    segment tables, boots, and a page above 2 GiB is made secure through it (the host then cannot read it)."""
    from emulator.errors import SecureStorageAccess

    host = SecureHost("zuv-demo", seed=11)
    vm = host.hv.create_vm(3 << 30)
    try:
        _run_demo_to_its_secret(vm)
        assert vm.pv.asce & 0xC == 0x4  # designation type: region-third table
        high = (5 << 29) + 0x3000  # 2.5 GiB: the second segment table's
        assert vm.pv.import_page(high).ok
        with pytest.raises(SecureStorageAccess):
            host.hv.host.read(vm.mso + high, 8)
        assert not vm.pv.import_page(3 << 30).ok  # beyond the guest's storage: no mapping
        r = vm.run(time_limit=30)
        assert r.clean and b"secret intact: yes" in vm.console
    finally:
        vm.destroy()


#: A secure guest bringing up its second CPU, as Linux and kvm-unit-tests do (s390x, assembled from):
#:   0x10000 CPU 0: lghi r3,1; sigp r0,r3,0x0b (initial CPU reset of CPU 1); llilf r1,0x20000;
#:           sigp r0,r3,0x0d (set prefix 0x20000); jnz fail; larl r2,rpsw; mvc 0x1a0(16,r1),0(r2) (its restart
#:           new PSW); sigp r0,r3,0x06 (restart); jnz fail; llilf r5,0x30000; 1: lt r4,0(r5); jz 1b;
#:           larl r2,donepsw; stg r4,8(r2); lpswe 0(r2) (disabled wait at what CPU 1 stored)
#:           fail: lpswe failpsw (disabled wait 0xbad); rpsw: 64-bit PSW at 0x10100; donepsw; failpsw
#:   0x10100 CPU 1: llilf r5,0x30000; stpx 0(r5); lpswe c1psw (disabled wait 0x1)
_SMP_GUEST = bytes.fromhex(
    "a7390001ae03000bc01f00020000ae03000da774001cc02000000021d20f11a02000ae030006a7740012c05f00030000"
    "e34050000012a784fffdc02000000017e34020080024b2b22000c02000000017b2b2200007070707000000018000000000"
    "000000000101000002000180000000000000000000000000020001800000000000000000000bad"
).ljust(0x100, b"\0") + bytes.fromhex(
    "c05f00030000b2115000c02000000007b2b220000707070700020001800000000000000000000001"
)


def test_a_secure_guest_brings_up_its_second_cpu_with_set_prefix_and_restart(tmp_path):
    """``zuv boot --cpus 2``: CPU 0 resets CPU 1, gives it a lowcore with SIGP SET PREFIX (only the
    Ultravisor can set a secure CPU's prefix: it performs the order and tells the host), and starts it with
    SIGP RESTART (the Ultravisor's restart injection is the new CPU's first PSW); CPU 1 stores its prefix
    (STPX) where CPU 0 waits for it, and CPU 0 ends in a disabled wait at that value."""
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    assert len(_SMP_GUEST) == 0x128
    kernel = bytes(0x10000) + _SMP_GUEST + bytes(0x21000 - len(_SMP_GUEST))
    img = build_image(kernel=kernel, host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng("smp"))  # fmt: skip
    path = tmp_path / "smp.se"
    path.write_bytes(img.data)
    r = boot(SecureHost("zuv-demo", seed=12), path, attack=False, time_limit=60, cpus=2)
    assert r.failure is None and r.secure
    waits = {c.address: c.detail for c in r.run.cpus}
    assert waits == {0: "disabled wait 0x20000", 1: "disabled wait 0x1"}, r.run.describe()
    assert r.intercepts.get("SIGP (notification)") == 1  # the set prefix, told the host

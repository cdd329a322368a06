"""The facility list each kind of guest sees (STFLE): a normal guest of zuv's hypervisor on a machine with an
Ultravisor gets the unpack facility (161, for its secure IPL) but not the Ultravisor-call facility (158: its
UVC is an operation exception, and kvm-unit-tests' library asks the Ultravisor whenever 158 is offered); a
secure guest gets 158 and not 161, from the Ultravisor; the bare machine without one gets neither."""

import re
from pathlib import Path

import pytest
from conftest import RESTART_CPU1, build_elf

from emulator.hypervisor.boot import SecureHost, boot
from emulator.image.pvimg import build_image
from emulator.machine.machine import Machine
from firmware import crypto as c
from firmware.machine_identity import MachineIdentity

ROOT = Path(__file__).resolve().parent.parent
SYSINFO = ROOT / "guests" / "images" / "sysinfo.elf"


def _bits(console: bytes) -> dict[int, int]:
    line = next(x for x in console.decode().splitlines() if x.startswith("stfle:"))
    return {int(b): int(v) for b, v in re.findall(r"(\d+)=(\d)", line)}


@pytest.fixture(scope="module")
def host():
    return SecureHost("zuv-demo", seed=3)


def test_a_normal_guest_of_the_hypervisor_gets_unpack_but_not_the_ultravisor_call(host, tmp_path):
    r = boot(host, SYSINFO, attack=False, time_limit=60)
    assert not r.secure and r.run.clean, r.run.describe()
    bits = _bits(r.console)
    assert bits[158] == 0 and bits[161] == 1
    assert bits[129] == 1  # the rest of the list as the hypervisor offers it


def test_a_secure_guest_gets_the_ultravisor_call_and_not_unpack(host, tmp_path):
    keys = [MachineIdentity.bundled("zuv-demo").public_key]
    image = build_image(kernel=SYSINFO.read_bytes(), host_keys=keys, rng=c.DeterministicRng("facilities"))
    path = tmp_path / "sysinfo.se"
    path.write_bytes(image.data)
    r = boot(host, path, attack=False, time_limit=60)
    assert r.secure and r.run.clean, r.run.describe()
    bits = _bits(r.console)
    assert bits[158] == 1 and bits[161] == 0
    assert bits[129] == 1
    # the hardware CPU goes back to the host with the host's list: the next normal guest is as before
    again = boot(host, SYSINFO, attack=False, time_limit=60)
    assert _bits(again.console)[158] == 0 and _bits(again.console)[161] == 1


def test_the_bare_machine_without_an_ultravisor_offers_neither():
    m = Machine(128 << 20, 1, deterministic=True)
    try:
        m.load(str(SYSINFO), "")
        m.run(time_limit=30)
        bits = _bits(bytes(m.console))
    finally:
        m.close()
    assert bits[158] == 0 and bits[161] == 0


#: CPU 1 is restarted into a disabled wait (code 0x123); CPU 0 waits for its flag, stops it, and ends in the
#: disabled wait 0xFFF (a clean end)
STOP_A_WAITING_CPU = RESTART_CPU1 + r"""
    larl %r5,flag
1:  cli 0(%r5),1
    jne 1b
    lghi %r6,20000
2:  brctg %r6,2b                # CPU 1 loads its wait meanwhile
    sigp %r4,%r3,5              # stop CPU 1: the program took it over
    larl %r1,endpsw
    lpswe 0(%r1)
cpu1:
    larl %r5,flag
    mvi 0(%r5),1
    larl %r1,waitpsw
    lpswe 0(%r1)
    .align 8
rstpsw: .quad 0x0000000180000000, cpu1
waitpsw: .quad 0x0002000180000000, 0x123
endpsw: .quad 0x0002000180000000, 0xfff
flag: .byte 0
"""


@pytest.mark.toolchain
def test_a_cpu_left_in_a_disabled_wait_and_then_stopped_by_the_program_is_no_crash(tmp_path):
    # kvm-unit-tests' firq under zuv boot with 3 CPUs ended "CPU 1 in disabled wait ... (a crash)": the
    # hypervisor's SIGP did not end the record of a wait the program then stopped (the machine's and the
    # secure VM's did)
    from emulator.hypervisor.kvm import Hypervisor

    elf = build_elf(tmp_path, STOP_A_WAITING_CPU)
    m = Machine(256 << 20, 1, deterministic=True)
    try:
        vm = Hypervisor.on_machine(m).create_vm(64 << 20, 2)
        vm.load(str(elf))
        r = vm.run(time_limit=30)
    finally:
        m.close()
    assert r.reason == "all CPUs stopped" and r.clean, r.describe()
    assert [c.state for c in r.cpus] == ["disabled-wait", "stopped"]

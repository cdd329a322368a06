"""CPUs added as devices (QEMU's ``-device <model>-s390x-cpu,core-id=N``) and the service signal as a floating
interruption: taken by whichever CPU is enabled for it."""

import pytest

from emulator.errors import MachineError
from emulator.hw.cpu import CR0_SERVICE_SC, OPERATING, PSW_MASK_64, PSW_MASK_EXT, STOPPED
from emulator.machine.machine import Machine


def test_cpu_devices_add_stopped_cpus_at_their_core_ids():
    m = Machine(16 << 20, 1)
    m.add_device("qemu-s390x-cpu,core-id=2")
    m.add_device("s390x-cpu,core-id=1")
    assert sorted(m.cpus) == [0, 1, 2]
    assert m.cpus[2].state == STOPPED and m.cpus[2].address == 2
    assert all(c.tlb_group == m.cpus[0].tlb_group and len(c.tlb_group) == 3 for c in m.cpus.values())
    assert all(c.io_source is m.css for c in m.cpus.values())


@pytest.mark.parametrize("spec, message", [
    ("qemu-s390x-cpu", "core-id"),
    ("qemu-s390x-cpu,core-id=x", "core-id"),
    ("qemu-s390x-cpu,core-id=0", "already"),
    ("qemu-s390x-cpu,core-id=999", "between"),
    ("max-s390x-cpu,core-id=3,dedicated=maybe", "dedicated"),
    ("max-s390x-cpu,core-id=3,socket-id=x", "socket-id"),
    ("max-s390x-cpu,core-id=3,threads=2", "threads"),
])
def test_bad_cpu_devices_are_refused_with_one_line(spec, message):
    m = Machine(16 << 20, 1)
    with pytest.raises(MachineError, match=message):
        m.add_device(spec)
    assert sorted(m.cpus) == [0]


def test_cpu_devices_keep_their_topology():
    m = Machine(16 << 20, 1)
    m.add_device("max-s390x-cpu,core-id=31,drawer-id=0,book-id=1,socket-id=0,entitlement=high,dedicated=true")
    assert m.cpu_topology[31] == {"drawer-id": "0", "book-id": "1", "socket-id": "0", "entitlement": "high",
                                  "dedicated": "true"}


def _enable_service_signal(cpu, on=True):
    cpu.state = OPERATING
    cpu.set_psw(PSW_MASK_64 | (PSW_MASK_EXT if on else 0), 0x1000)
    cpu.set_cr(0, (cpu.cr(0) | CR0_SERVICE_SC) if on else cpu.cr(0) & ~CR0_SERVICE_SC)


def test_a_service_signal_goes_to_a_cpu_enabled_for_it():
    m = Machine(16 << 20, 3)
    _enable_service_signal(m.cpus[0], on=False)
    _enable_service_signal(m.cpus[2])
    m._service_signal(0x1234, m.cpus[0])
    assert m.cpus[2].ext_pending["service"] == 0x1234 and "service" not in m.cpus[0].ext_pending


def test_the_issuer_holds_it_until_another_cpu_is_enabled():
    m = Machine(16 << 20, 2)
    _enable_service_signal(m.cpus[0], on=False)
    _enable_service_signal(m.cpus[1], on=False)
    m._service_signal(0x10, m.cpus[0])
    assert m.cpus[0].ext_pending["service"] == 0x10
    m._route_service_signal()
    assert "service" in m.cpus[0].ext_pending  # nobody can take it yet
    _enable_service_signal(m.cpus[1])
    m._route_service_signal()
    assert m.cpus[1].ext_pending["service"] == 0x10 and "service" not in m.cpus[0].ext_pending

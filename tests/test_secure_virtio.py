"""A secure guest's virtio-ccw disk (``zuv boot --drive``): channel I/O whose control blocks the Ultravisor
moves through the SIDA, I/O interruptions injected through ``iictl``, the CCWs, virtqueue and buffers in
pages the guest shared, and the architected results when the host's side is pointed at a secure page.

The guest is ``guests/se_virtio`` (its own checks print what it saw); the disk is a file in ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.hypervisor.boot import SecureHost, boot
from emulator.hypervisor.channel_io import GuestChannelStorage, VmChannel
from emulator.hypervisor.kvm import MIB

GUEST = Path(__file__).resolve().parents[1] / "guests" / "images" / "se_virtio.elf"
SECTOR0 = b"zuv disk: sector zero text here!"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    img = build_image(kernel=GUEST.read_bytes(), host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng("se_virtio"))  # fmt: skip
    path = tmp_path_factory.mktemp("sev") / "se_virtio.se"
    path.write_bytes(img.data)
    return path


def _disk(tmp_path: Path) -> Path:
    disk = tmp_path / "disk.img"
    disk.write_bytes(SECTOR0.ljust(512, b".") + bytes(512 * 7))
    return disk


def test_a_secure_guest_reads_and_writes_its_disk_through_shared_pages(image, tmp_path):
    disk = _disk(tmp_path)
    host = SecureHost("zuv-demo", seed=21, deterministic=True)
    events = []
    host.uv.add_event_sink(events.append)
    r = boot(host, image, attack=False, time_limit=60, drives=(str(disk),), deterministic=True)
    out = r.console.decode()
    assert r.failure is None and r.secure and r.run.clean, out
    lines = out.splitlines()
    assert "stsch: cc 0, devno 0000, disabled" in lines
    assert "msch: cc 0, now enabled, subclass 3" in lines  # the SCHIB went in through the SIDA
    assert "sense id (interruption): status 0c00, cu 3832 model 02" in lines  # IRB out through the SIDA
    assert "no-operation (tpi): status 0c00" in lines
    assert "virtio: revision 2 accepted, VERSION_1 offered, ACCESS_PLATFORM offered" in lines
    assert "virtio-blk: set up ok, capacity 8 sectors" in lines
    assert f'read sector 0 (bounce buffer): status 0, "{SECTOR0.decode()}"' in lines
    assert "read sector 1 back: status 0, as written" in lines
    assert disk.read_bytes()[512:1024] == b"w" * 512  # the write reached the file
    # the Ultravisor's own checks of the operands (the host is not asked): specification, operand
    assert "ssch with an ORB off its word boundary: program interruption 0x6" in lines
    assert "stsch of a subsystem id without its one bit: program interruption 0x15" in lines
    # pointed at a page the guest did not share, the host's side touches nothing
    assert "channel program into the secret page: status 0010 (protection check)" in lines
    assert "virtio-blk read into the secret page: not used" in lines
    assert "device status 4f: needs reset" in lines
    assert "secret page unchanged" in lines
    assert lines[-1] == "EXIT: STATUS=1"
    assert r.intercepts["I/O 0xb233"] >= 12 and r.intercepts["I/O request"] >= 1
    # the two pages the guest shared, and no page the host exported (it never resolved a refusal)
    assert [e.name for e in events if e.caller.kind == "guest"].count("set_shared_access") == 2
    assert not [e for e in events if e.name == "conv_from_sec_stor"]


def test_without_a_disk_the_secure_guest_finds_no_subchannel(image):
    r = boot(SecureHost("zuv-demo", seed=22, deterministic=True), image, attack=False, time_limit=60,
             deterministic=True)  # fmt: skip
    assert r.failure is None and r.secure
    assert "stsch: cc 3" in r.console.decode()


def test_the_channel_storage_refuses_a_secure_page_and_exports_nothing():
    host = SecureHost("zuv-demo", seed=23)
    vm = host.hv.create_vm(4 * MIB, 1)
    try:
        ch = vm.channel
        assert isinstance(ch, VmChannel) and isinstance(ch.storage, GuestChannelStorage)
        ch.storage.write(0x5000, b"shared bytes")
        assert vm.memory.read(0x5000, 12) == b"shared bytes"  # guest address A is host mso + A
        with pytest.raises(Exception, match="outside the guest's storage"):
            ch.storage.read(4 * MIB - 4, 8)
    finally:
        vm.destroy()


def test_console_input_queued_from_another_thread_reaches_a_secure_guest(tmp_path):
    """``zuv boot`` forwards its standard input with ``Vm.queue_console``: the run loop feeds each line to
    the SCLP between SIE entries (the guest is told with a service signal through ``iictl``)."""
    import threading

    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    elf = GUEST.parent / "echo.elf"
    img = build_image(kernel=elf.read_bytes(), host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng("echo"))  # fmt: skip
    path = tmp_path / "echo.se"
    path.write_bytes(img.data)

    def typing(vm):  # another thread, as zuv boot's standard-input pump
        t = threading.Thread(target=lambda: [vm.queue_console(b"hello\n"), vm.queue_console(b"quit\n")])
        t.start()
        t.join()

    r = boot(SecureHost("zuv-demo", seed=24), path, attack=False, time_limit=60, on_vm=typing)
    assert r.failure is None and r.secure and r.run.clean, r.console
    assert r.console.decode().splitlines()[1:] == ["echo 1: hello", "echo 2: quit", "EXIT: STATUS=1"]

"""The ccw guest on zuv with a virtio-net-ccw and a virtio-blk-ccw device: channel I/O instructions, I/O
interruptions through the lowcore (PSW bit 6, CR6), TPI, and a disk read and written through virtio-ccw;
the same image under qemu-system-s390x with the same devices prints the same, but for one line."""

import shutil
import subprocess
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guests/images/ccw.elf"
SECTOR0 = b"zuv disk: sector zero...".ljust(512, b".")

DEVICE = """  ssch while disabled: cc 3
  msch: cc 0, now enabled with subclass 3
  sense id (interruption): status 0c00, cu 3832 model {model:02x}, residual 0
  sense id (tpi), count 4, no SLI: status 0c40
  no-operation: status 0c00
"""
EXPECTED = (
    "subchannel 00010000: devno 0000, device valid, path mask 80, chpid 00, disabled\n"
    + DEVICE.format(model=1)
    + "  unknown command then sense: status 0200 / 0c00, sense byte 0 80\n"
    + "subchannel 00010001: devno 0001, device valid, path mask 80, chpid 00, disabled\n"
    + DEVICE.format(model=2)
    + """stsch beyond the last subchannel: cc 3 after 2 subchannels
tsch of subchannel 0xffff: cc 3
stcrw with no report: cc 1, crw 00000000
rchp 0: cc 0; machine checks 1, channel report pending yes, PSW and registers valid yes
stcrw: cc 0, source 4 (channel path), recovery 02, id 0000
stcrw again: cc 1
rchp of a path not installed: cc 3
virtio-blk: revision 1 accepted, VERSION_1 offered yes
virtio-blk: queue and indicators set up ok, capacity 8 sectors
virtio-blk: read sector 0: status 0, "zuv disk: sector zero..."
virtio-blk: wrote sector 1: status 0
virtio-blk: flush: status 0
virtio-blk: read sector 1 back: status 0, as written
virtio-blk: read beyond the disk: status 1
EXIT: STATUS=1
"""
)


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(SECTOR0 + bytes(7 * 512))
    return path


def test_channel_io_and_a_virtio_disk_on_zuv(disk):
    m = Machine(64 << 20, deterministic=True)
    m.add_device("virtio-net-ccw")
    m.add_device(f"virtio-blk-ccw,file={disk}")
    m.load(str(IMAGE))
    result = m.run(time_limit=60)
    m.close()
    assert m.console.decode() == EXPECTED
    assert result.clean, result.describe()
    assert disk.read_bytes()[512:1024] == b"w" * 512  # the guest's write reached the file


def test_without_devices_nothing_is_found(disk):
    m = Machine(64 << 20, deterministic=True)
    m.load(str(IMAGE))
    m.run(time_limit=60)
    assert m.console.decode().splitlines() == [
        "stsch beyond the last subchannel: cc 3 after 0 subchannels",
        "tsch of subchannel 0xffff: cc 3",
        "EXIT: STATUS=1",
    ]


def test_zuv_run_devices_on_the_command_line(disk, capsys):
    argv = ["run", "--deterministic", "--device", "virtio-net-ccw", "--drive", str(disk), str(IMAGE)]
    assert main(argv) == 0
    assert capsys.readouterr().out == EXPECTED
    assert main(["run", "--device", "virtio-gpu-ccw", str(IMAGE)]) == 2
    assert "unknown device 'virtio-gpu-ccw'" in capsys.readouterr().err
    assert main(["run", "--drive", str(disk.parent / "missing.img"), str(IMAGE)]) == 2
    assert "cannot open" in capsys.readouterr().err


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-s390x") is None, reason="qemu-system-s390x is not installed")
def test_qemu_prints_the_same_but_for_the_short_sense_id(disk):
    """QEMU 7.2 ends a SENSE ID whose count is shorter than its data (no SLI) with a program check (0x20);
    the architecture's answer, zuv's, is incorrect length with channel end and device end (0c40)."""
    cmd = [
        "qemu-system-s390x", "-M", "s390-ccw-virtio", "-accel", "tcg", "-nographic", "-nodefaults",
        "-chardev", "stdio,id=c", "-device", "sclpconsole,chardev=c", "-kernel", str(IMAGE),
        "-device", "virtio-net-ccw", "-drive", f"file={disk},if=none,id=d0,format=raw",
        "-device", "virtio-blk-ccw,drive=d0", "-no-reboot",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False).stdout
    assert out.decode().replace("no SLI: status 0020", "no SLI: status 0c40") == EXPECTED


def test_the_console_takes_devices_too(disk):
    from emulator.console.cli import build_session_from_args
    from emulator.console.commands import execute

    session = build_session_from_args(["--device", "virtio-net-ccw", "--drive", str(disk), str(IMAGE)])
    machine = session.machine  # type: ignore[attr-defined]
    assert [s.device.name for s in machine.css.subchannels] == ["virtio-net-ccw", "virtio-blk-ccw"]
    info = execute(session, "info").plain()  # type: ignore[arg-type]
    assert "device 0.0.0000: virtio-net-ccw (subchannel 0x00010000, disabled)" in info
    assert f"device 0.0.0001: virtio-blk-ccw, {disk} (subchannel 0x00010001, disabled)" in info
    machine.close()

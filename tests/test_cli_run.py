"""``zuv run``: console on stdout, exit status and one clear line for every kind of bad input."""

import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "guests/images/hello.elf"


def zuv(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_run_prints_console_and_exits_zero():
    p = zuv("run", str(HELLO), "--append", "quiet=0")
    assert p.returncode == 0, p.stderr
    assert 'cmdline: "quiet=0"' in p.stdout
    assert "EXIT: STATUS=1" in p.stdout
    assert "Traceback" not in p.stderr


def _elf_header(machine=22, cls=2, data=2):
    ident = b"\x7fELF" + bytes([cls, data, 1]) + bytes(9)
    return ident + struct.pack(">HHIQQQIHHHHHH", 2, machine, 1, 0x10000, 64, 0, 0, 64, 56, 1, 64, 0, 0)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"\x7fELF\x02\x02\x01" + bytes(20), "broken ELF"),
        (_elf_header(machine=62), "not s390x"),
        (_elf_header(cls=1), "ELF"),
        (b"abc", "too short"),
    ],
)
def test_bad_programs_get_one_line_and_status_2(tmp_path, content, message):
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    p = zuv("run", str(f))
    assert p.returncode == 2
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_segment_outside_memory(tmp_path):
    header = bytearray(_elf_header())
    header[32:40] = struct.pack(">Q", 64)  # e_phoff
    phdr = struct.pack(">IIQQQQQQ", 1, 7, 0x1000, 0x40000000, 0x40000000, 16, 16, 0x1000)
    f = tmp_path / "far.elf"
    f.write_bytes(bytes(header) + phdr + bytes(0x1000))
    p = zuv("run", str(f), "--memory", "1M")
    assert p.returncode == 2 and "does not fit in memory" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "args, message", [(["--memory", "lots"], "memory size"), (["--cpus", "0"], "--cpus")]
)
def test_bad_options(args, message):
    p = zuv("run", str(HELLO), *args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_missing_file():
    p = zuv("run", "no/such/file.elf")
    assert p.returncode == 2 and "cannot read" in p.stderr


def test_instruction_limit_is_reported(tmp_path):
    p = zuv("run", str(HELLO), "--max-insns", "500")
    assert p.returncode == 1
    assert "instruction limit reached" in p.stderr


def test_disabled_wait_code_is_a_crash(tmp_path):
    # a flat image whose start PSW is a disabled wait with code 0x1234 (not ...fff)
    img = bytearray(0x11000)
    img[0:8] = struct.pack(">II", 0x00080000, 0x80010000)
    img[0x10000:0x10008] = bytes.fromhex("b2b2 f000 0000 0000")[:8]  # lpswe 0(%r15)? replaced below
    # lpswe 0x10010 ; psw at 0x10010
    img[0x10000:0x10004] = bytes.fromhex("b2b20000")
    img[0x10000 + 2 : 0x10000 + 4] = (0x0000 | 0x010).to_bytes(2, "big")  # D2=0x010 (B2=0): real 0x10
    img[0x10:0x20] = struct.pack(">QQ", 0x0002000180000000, 0x1234)
    f = tmp_path / "dw.bin"
    f.write_bytes(bytes(img))
    p = zuv("run", str(f))
    assert p.returncode == 1
    assert "0x1234" in p.stderr


def test_standard_input_reaches_the_sclp_console():
    p = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "run", str(ROOT / "guests/images/echo.elf")],
        input="first line\nquit\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    assert "echo 1: first line\necho 2: quit\n" in p.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--memory", "-5"], "must be positive"),
        (["--memory", "2T"], "multiple of 1 MiB up to"),
        (["--max-insns", "-5"], "instruction limit must be positive"),
        (["--time-limit", "0"], "time limit must be positive"),
    ],
)
def test_absurd_limits_and_sizes(args, message):
    p = zuv("run", str(HELLO), *args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_bare_memory_number_is_mib_like_qemu():
    from emulator.machine.machine import parse_size

    assert parse_size("128") == 128 << 20
    assert parse_size("2.2G") == (int(2.2 * (1 << 30)) + 0xFFFFF) & ~0xFFFFF
    assert parse_size("4096K") == 4 << 20


def test_guest_failure_status_is_the_exit_code():
    # bench_sieve refuses a sieve larger than storage with EXIT: STATUS=5: zuv exits 5, as kvm-unit-tests'
    # runner reads a status (1 is success, 77 a skip)
    p = zuv("run", str(ROOT / "guests/images/bench_sieve.elf"), "--append", "n=500000000")
    assert p.stdout.endswith("EXIT: STATUS=5\n")
    assert p.returncode == 5
    assert "guest reported a failure (EXIT: STATUS=5)" in p.stderr


def test_guest_success_prints_nothing_on_stderr():
    p = zuv("run", str(HELLO))
    assert p.returncode == 0 and p.stderr == ""


def test_machine_needs_ultravisor_and_must_exist():
    p = zuv("run", str(HELLO), "--machine", "zuv-other")
    assert p.returncode == 2 and "--ultravisor" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = zuv("run", str(HELLO), "--ultravisor", "--machine", "no/such/machine")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "no machine 'no/such/machine': not a machine directory" in p.stderr  # and the ones zuv has:
    assert "zuv hostkey new-machine DIR" in p.stderr and "bundled machine (zuv-demo, zuv-other)" in p.stderr
    p = zuv("run", str(HELLO), "--ultravisor", "--machine", "zuv-other")
    assert p.returncode == 0, p.stderr


def test_a_bad_uuid_is_one_clear_line():
    p = zuv("run", str(HELLO), "--uuid", "not-a-uuid")
    assert p.returncode == 2 and "not a UUID" in p.stderr and "Traceback" not in p.stderr

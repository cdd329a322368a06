"""Guests under qemu-system-s390x -kernel (the reference): each comparable test guest prints exactly its
expected file, the benchmarks print results that Python recomputes, and qemu_run reports failures."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import qemu_run  # noqa: E402

IMAGES = ROOT / "guests" / "images"
MANIFEST = json.loads((IMAGES / "MANIFEST.json").read_text())["images"]

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which(qemu_run.QEMU) is None, reason="qemu-system-s390x is not installed"),
]


def _cases():
    for name, entry in sorted(MANIFEST.items()):
        if not entry["expected"]:
            continue
        arch_only = pytest.mark.skip(reason="architecture-only: qemu TCG differs by design")
        marks = [] if entry["qemu"] else [arch_only]
        yield pytest.param(name, marks=marks, id=name)


def _run(name: str, append: str | None = None) -> str:
    entry = MANIFEST[name]
    append = entry["append"] if append is None else append
    return qemu_run.run_qemu(IMAGES / f"{name}.elf", smp=entry["smp"], append=append, timeout=30)


@pytest.mark.parametrize("name", list(_cases()))
def test_guest_output_under_qemu_is_the_expected_file(name):
    expected = (ROOT / MANIFEST[name]["expected"]).read_text()
    assert _run(name) == expected


def test_hello_echoes_another_command_line():
    out = _run("hello", append="x=1 y=two")
    assert 'cmdline: "x=1 y=two" (9 bytes)\n' in out
    assert out.endswith("EXIT: STATUS=1\n")


def _primes_below(n: int) -> int:
    sieve = bytearray([1]) * n
    sieve[:2] = b"\0\0"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


@pytest.mark.parametrize("n", [1000000, 65537])
def test_bench_sieve_counts_primes_with_dat(n):
    assert _run("bench_sieve", append=f"n={n}") == f"bench_sieve: n={n} primes={_primes_below(n)}\n"


def test_bench_sieve_refuses_more_than_storage():
    out = _run("bench_sieve", append="n=500000000")
    assert "does not fit" in out and out.endswith("EXIT: STATUS=5\n")


def test_bench_alu_sums():
    assert _run("bench_alu", append="n=123457") == "bench_alu: n=123457 a=123457 b=370371\n"


def test_bench_store_checksum():
    words, rounds = 8192, 37
    checksum = sum(1 + (words - i) for i in range(words))  # the last round stores 1 + (words - i)
    assert _run("bench_store", append=f"n={rounds}") == (
        f"bench_store: n={rounds} words={words} stores={rounds * words} checksum={checksum}\n"
    )


def test_missing_image_is_a_clear_error(tmp_path):
    with pytest.raises(qemu_run.QemuError, match="no such image"):
        qemu_run.run_qemu(tmp_path / "nothing.elf")


CRASH_S = """    .section .head,"ax"
    .globl _start
_start:
    larl    %r1,psw
    lpswe   0(%r1)
    .align  8
psw:
    .quad   0x0002000180000000, 0xabc   /* disabled wait, not a clean-shutdown code */
"""


@pytest.mark.toolchain
@pytest.mark.skipif(shutil.which("s390x-linux-gnu-gcc") is None, reason="no s390x cross toolchain")
def test_disabled_wait_crash_is_reported_and_cli_fails(tmp_path):
    src = tmp_path / "crash.S"
    src.write_text(CRASH_S)
    elf = tmp_path / "crash.elf"
    subprocess.run(
        [
            "s390x-linux-gnu-gcc",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            f"-Wl,-T,{ROOT / 'guests/runtime/guest.ld'}",
            "-o",
            str(elf),
            str(src),
        ],
        check=True,
    )
    with pytest.raises(qemu_run.QemuError, match="status 1"):
        qemu_run.run_qemu(elf, timeout=20)
    cli = [sys.executable, str(ROOT / "tools/qemu_run.py"), str(elf)]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 1 and "qemu_run:" in proc.stderr


def test_cli_prints_console_and_exits_zero():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/qemu_run.py"), str(IMAGES / "svc.elf"), "--timeout", "30"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "guests/expected/svc.txt").read_text()

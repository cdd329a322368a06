"""Every command line value is checked once (``emulator.options``), and every bad input or closed pipe ends in
one line and an exit status, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "guests" / "images"
HELLO = IMAGES / "hello.elf"


def zuv(*args: str, stdin: str | None = "", **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
        input=stdin, **kw,
    )  # fmt: skip


def _in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """``zuv ARGS`` in this process (argument errors end before anything runs): status and output."""
    from emulator.cli import main

    try:
        status = main(args)
    except SystemExit as e:  # argparse's error exit
        status = int(e.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out, err)


def _one_line_error(p: subprocess.CompletedProcess[str], status: int = 2) -> None:
    assert p.returncode == status, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "Error:" not in p.stderr.replace("error:", "")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", str(HELLO), "--memory", "1K"], "below the 1 MiB storage increment"),
        (["run", str(HELLO), "--memory", "0"], "must be positive"),
        (["run", str(HELLO), "--memory", "inf"], "cannot read memory size"),
        (["console", str(HELLO), "--memory", "2T"], "up to 1T"),
        (["console", str(HELLO), "--memory", "lots"], "cannot read memory size"),
        (["boot", "--memory", "0"], "must be positive"),
        (["boot", "--memory", "1K"], "below the 1 MiB storage increment"),
    ],
)
def test_memory_sizes_are_checked_before_anything_runs(args, message, capsys):
    p = _in_process(args, capsys)
    _one_line_error(p)
    assert message in p.stderr and "booting" not in p.stderr  # zuv boot: no banner before the error


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", str(HELLO), "--time-limit", "inf"], "finite"),
        (["run", str(HELLO), "--time-limit", "nan"], "finite"),
        (["run", str(HELLO), "--time-limit", "-1"], "positive"),
        (["run", str(HELLO), "--time-limit", "1e300"], "at most"),
        (["run", str(HELLO), "--time-limit", "soon"], "must be seconds"),
        (["boot", "--time-limit", "inf"], "finite"),
        (["verifier", "demo", "--time-limit", "nan"], "finite"),
    ],
)
def test_time_limits_must_be_finite_positive_seconds(args, message, capsys):
    p = _in_process(args, capsys)
    _one_line_error(p)
    assert "time limit" in p.stderr and message in p.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", str(HELLO), "--cpus", "999"], "at most 248"),
        (["console", str(HELLO), "--cpus", "0"], "must be positive"),
        (["run", str(HELLO), "--max-insns", "many"], "whole number"),
        (["verifier", "serve", "--port", "99999"], "65535"),
        (["verifier", "demo", "--port", "-1"], "65535"),
        (["hostkey", "init-pki", "/nonexistent/pki", "--years", "0"], "--years must be positive"),
    ],
)
def test_numbers_out_of_range_are_one_line(args, message, capsys):
    p = _in_process(args, capsys)
    _one_line_error(p)
    assert message in p.stderr


#: ``python -m emulator.cli`` with a 16 GiB address space, so that a 512 GiB machine's mmap fails on any host,
#: whatever its overcommit policy. The new interpreter sets the limit itself: set between fork and exec it
#: applied to the copy of the test process, which the suite's machines make larger than 16 GiB, and the
#: child failed before zuv ran (ENOMEM)
_SMALL_ADDRESS_SPACE = (
    "import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30)); "
    "runpy.run_module('emulator.cli', run_name='__main__', alter_sys=True)"
)


def test_a_memory_the_host_cannot_give_is_one_line():
    for command in (["run", str(HELLO)], ["console", str(HELLO)]):
        p = subprocess.run(
            [sys.executable, "-c", _SMALL_ADDRESS_SPACE, *command, "--memory", "512G"], capture_output=True,
            text=True, timeout=120, cwd=ROOT, input="",
        )  # fmt: skip
        _one_line_error(p)
        assert "cannot reserve 524288 MiB for the machine's memory on this host" in p.stderr


def test_a_size_that_is_not_whole_mib_is_rounded_up_and_said():
    p = zuv("run", str(HELLO), "--memory", "1536K")
    assert p.returncode == 0 and "rounded up to 2M" in p.stderr


def test_unknown_options_show_the_subcommands_usage():
    p = zuv("run", str(HELLO), "--bogus")
    _one_line_error(p)
    assert "usage: zuv run" in p.stderr and "unrecognized arguments: --bogus" in p.stderr
    p = zuv("console", "--bogus")
    assert p.returncode == 2 and "usage: zuv console" in p.stderr


def test_run_freeze_without_gdb_is_refused():
    p = zuv("run", "-S", str(HELLO))  # it ran the program at once: zuv run has no monitor to say cont
    _one_line_error(p)
    assert "-S holds the CPUs until gdb says continue: add -s or --gdb" in p.stderr


def test_a_script_that_is_not_text_is_refused(tmp_path):
    script = tmp_path / "binary.zuv"
    script.write_bytes(bytes(range(256)))
    p = zuv("console", str(HELLO), "--script", str(script))
    _one_line_error(p)
    assert "not a text file of console commands" in p.stderr
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "console", str(HELLO)], input=bytes(range(256)),
                       capture_output=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2 and b"not UTF-8" in p.stderr and b"Traceback" not in p.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", str(HELLO)],
        ["console", str(HELLO)],
        ["--help"],
        ["pvimg", "info", str(IMAGES / "secure_demo.se")],
        ["boot"],
        ["verifier", "demo"],  # said "zuv verifier: error: [Errno 32] Broken pipe", exit 2
    ],
)
def test_output_into_a_closed_pipe_ends_quietly(args):
    """``zuv ... | head -0``: the reader is gone before the first write."""
    p = subprocess.Popen([sys.executable, "-m", "emulator.cli", *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    p.stdout.close()  # type: ignore[union-attr]
    err = p.stderr.read().decode()  # type: ignore[union-attr]
    assert p.wait(timeout=120) in (0, 141), err  # 141: 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize(
    "tool",
    [
        ["tools/pvimg.py", "info", "--print-schema", "json"],  # a traceback through `| head` (se-image.md)
        ["tools/genprotimg", "--help"],
        ["tools/hostkey.py", "verify", "firmware/machines/zuv-demo/host-key-document.crt"],
        ["tools/gen_se_header.py", "--help"],
    ],
)
def test_the_tools_the_docs_run_directly_end_quietly_into_a_closed_pipe(tool):
    p = subprocess.Popen([sys.executable, *tool], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    p.stdout.close()  # type: ignore[union-attr]
    err = p.stderr.read().decode()  # type: ignore[union-attr]
    assert p.wait(timeout=120) in (0, 141), err  # 0: argparse's --help ends before the pipe is seen
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_boot_refuses_a_missing_image_before_its_banner_and_names_a_normal_guest():
    p = zuv("boot", "no/such/image.se")
    _one_line_error(p)
    assert "cannot read" in p.stderr and "booting" not in p.stderr
    p = zuv("boot", str(HELLO))
    assert "not a Secure Execution image: a normal guest" in p.stderr and "(Secure Execution)" not in p.stderr


def test_run_on_a_secure_execution_image_says_to_boot_it():
    p = zuv("run", str(IMAGES / "secure_demo.se"))
    assert p.returncode == 1 and "is a Secure Execution image" in p.stderr and "zuv boot" in p.stderr
    p = zuv("run", str(HELLO), "--max-insns", "100")
    assert "Secure Execution" not in p.stderr


def test_end_of_standard_input_is_named_when_the_program_waits_for_more():
    p = zuv("run", str(IMAGES / "echo.elf"), stdin="one line\n")
    assert "echo 1: one line" in p.stdout
    assert "end of console input (stdin closed) while the program waits for more" in p.stderr


def test_boot_exits_with_the_guest_s_failure_status_as_run_does():
    p = zuv("boot", str(IMAGES / "attest_demo.se"))  # no verifier behind the mailbox: the agent gives up
    assert "EXIT: STATUS=3" in p.stdout
    assert p.returncode == 3 and "the guest reported a failure (EXIT: STATUS=3): exit code 3" in p.stderr
    p = zuv("boot")
    assert p.returncode == 0 and "EXIT: STATUS=1" in p.stdout and "failure" not in p.stderr


@pytest.mark.parametrize("spec, why", [
    ("e1000", "must be a CPU (s390x-cpu,core-id=N) or one of virtio-net-ccw, virtio-blk-ccw"),
    ("virtio-net-ccw,mac=zz", "virtio-net-ccw: bad mac 'zz'"),
    ("virtio-blk-ccw", "virtio-blk-ccw needs file=PATH"),
    ("s390x-cpu", "needs core-id=N"),
    ("qemu-s390x-cpu,core-id=x", "needs core-id=N"),
    ("s390x-cpu,core-id=1,socket-id=0", "options not offered: socket-id"),
    ("s390x-cpu,core-id=248", "between 0 and 247"),
])  # fmt: skip
def test_boot_device_takes_cpus_with_their_address_and_channel_devices(spec, why, capsys):
    """``zuv boot --device``: a CPU as QEMU's ``-device MODEL-s390x-cpu,core-id=N`` or a virtio-ccw device as
    ``zuv run --device`` takes it, else one line."""
    p = _in_process(["boot", "--device", spec, str(IMAGES / "secure_demo.se")], capsys)
    _one_line_error(p)
    assert why in p.stderr


def test_boot_device_refuses_an_address_in_use_in_one_line():
    image = str(IMAGES / "secure_demo.se")
    p = zuv("boot", "--cpus", "2", "--device", "s390x-cpu,core-id=1", "--no-attack", image)
    _one_line_error(p)
    assert "has a CPU with address 1 already" in p.stderr

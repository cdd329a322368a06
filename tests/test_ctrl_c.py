"""Ctrl-C stops any run cleanly - ``zuv run``, ``zuv boot``, bare ``zuv``, console scripts and the interactive
console - and a second Ctrl-C never leaves unicorn running under a dying interpreter (which crashed with a
segmentation fault)."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_console_tmux import _session, _tmux, _wait_for  # the tmux helpers (tests/ is on the path)

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "guests" / "images"
ALU = IMAGES / "bench_alu.elf"
FOREVER = "n=1000000000000"


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "emulator.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip


def _running(p: subprocess.Popen[bytes], threads: int = 2, timeout: float = 60.0) -> None:
    """Wait until the process runs its worker thread (the guest is about to run or running)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert p.poll() is None, p.communicate()
        if len(os.listdir(f"/proc/{p.pid}/task")) >= threads:
            time.sleep(0.5)  # into the guest
            return
        time.sleep(0.05)
    raise AssertionError("the run did not start")


def _interrupt(p: subprocess.Popen[bytes], times: int = 1) -> tuple[int, str, str]:
    for _ in range(times):
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out.decode(), err.decode()


def _wait_count(name: str, text: str, n: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux("capture-pane", "-p", "-t", name)
        if screen.count(text) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear {n} times:\n{screen}")


def _wait_gone(name: str, text: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    screen = text
    while text in screen:
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} stayed on the screen:\n{screen}")
        time.sleep(0.05)
        screen = _tmux("capture-pane", "-p", "-t", name)


#: the console's status line while a run goes on in the background
RUNNING = "running  (stop or Ctrl-C)"


def _loop_image(tmp_path: Path) -> Path:
    """A flat image whose code at 0x10000 branches to itself for ever (``j .``)."""
    img = bytearray(0x11000)
    img[0:8] = struct.pack(">II", 0x00080000, 0x80010000)  # IPL PSW: 31-bit, start at 0x10000
    img[0x10000:0x10004] = bytes.fromhex("a7f40000")
    f = tmp_path / "loop.bin"
    f.write_bytes(bytes(img))
    return f


def test_ctrl_c_stops_zuv_run_and_reports_where():
    p = _spawn("run", str(ALU), "--append", FOREVER)
    _running(p)
    rc, _out, err = _interrupt(p)
    assert rc == 1, err
    assert "zuv: interrupted (Ctrl-C)" in err and "CPU 0: running PSW" in err
    assert "Traceback" not in err and "KeyError" not in err


def test_a_second_ctrl_c_quits_at_once_without_a_crash():
    p = _spawn("run", str(ALU), "--append", FOREVER)
    _running(p)
    rc, _out, err = _interrupt(p, times=2)
    assert rc in (1, 130), (rc, err)  # stopped by the first, or ended by the second: never a signal death
    assert "Traceback" not in err


def test_ctrl_c_stops_a_boot_in_the_middle_of_its_run(tmp_path):
    p = _spawn("boot", str(_loop_image(tmp_path)), "--no-attack")
    _running(p)
    rc, _out, err = _interrupt(p)
    assert rc == 1, err
    assert "zuv: interrupted (Ctrl-C)" in err and "Traceback" not in err


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_ctrl_c_at_any_moment_of_bare_zuv_is_clean(delay):
    """Bare ``zuv`` without a terminal boots the secure demo; Ctrl-C may land in start-up, the boot or
    teardown."""
    p = _spawn()
    time.sleep(delay)
    rc, _out, err = _interrupt(p)
    # -SIGINT: the signal came before Python took it over (start-up), the default death every program has
    assert rc in (0, 1, 130, -signal.SIGINT), (rc, err)
    assert "Traceback" not in err


#: the ``zuv`` script's start, Ctrl-C arriving while ``emulator.cli`` imports the hardware (an import hook
#: sends it: on a loaded machine the imports take seconds and a Ctrl-C lands there)
_CTRL_C_IN_THE_IMPORTS = """
import os, signal, sys
__file__ = "/usr/bin/zuv"
class CtrlC:
    def find_spec(self, name, path, target=None):
        if name == "emulator.hw.diag":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
from emulator.cli import main
print("not reached", file=sys.stderr)
sys.exit(main())
"""


@pytest.mark.parametrize("program", ["zuv", "a program importing zuv"])
def test_ctrl_c_while_zuv_imports_ends_it_without_a_traceback(program):
    code = _CTRL_C_IN_THE_IMPORTS
    if program != "zuv":
        code = code.replace('__file__ = "/usr/bin/zuv"', 'sys.argv[0] = "zuv"')  # its own handler stays
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    assert p.returncode == -signal.SIGINT, (p.returncode, p.stderr)  # as any program's Ctrl-C, both
    if program == "zuv":
        assert p.stderr == ""
    else:  # Python's KeyboardInterrupt, for the importing program to answer (this one does not)
        assert p.stderr.rstrip().endswith("KeyboardInterrupt"), p.stderr


def test_ctrl_c_stops_a_script_s_long_continue_and_ends_the_script(tmp_path):
    script = tmp_path / "long.zuv"
    script.write_text("break alu_loop\ncontinue\ndelete\ncontinue\nregs\n")
    p = _spawn("console", str(ALU), "--append", FOREVER, "--script", str(script))
    _running(p)
    time.sleep(0.5)
    rc, out, err = _interrupt(p)
    assert rc == 130, (out, err)
    assert "interrupted (Ctrl-C)" in out and "script interrupted (Ctrl-C)" in out
    assert "(zuv) regs" not in out and "Traceback" not in err


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (tools/setup.sh)")
def test_the_interactive_console_stops_long_steps_and_runs_and_steps_again():
    cmd = f"{sys.executable} -m emulator.cli console {ALU} --append {FOREVER}; echo EXITED=$?"
    with _session(cmd, 132, 40) as name:
        _wait_for(name, "(zuv)")
        _tmux("send-keys", "-t", name, "break alu_loop", "Enter")
        _tmux("send-keys", "-t", name, "continue", "Enter")
        _wait_for(name, "=> 0x10834 <alu_loop>")
        _tmux("send-keys", "-t", name, "-l", "delete")  # literally: tmux reads "delete" as the Delete key
        _tmux("send-keys", "-t", name, "Enter")
        _wait_for(name, "deleted 1 breakpoint")
        _tmux("send-keys", "-t", name, "step 1000000000", "Enter")  # hours of single steps
        _wait_for(name, "(zuv) step 1000000000")
        _wait_gone(name, "view host")  # the prompt took the line (its status line is gone): the step runs
        _tmux("send-keys", "-t", name, "C-c")
        _wait_count(name, "interrupted (Ctrl-C)", 1)
        _wait_for(name, "=> 0x")  # the step's stop and where it is
        _tmux("send-keys", "-t", name, "continue", "Enter")
        _wait_for(name, RUNNING)
        _tmux("send-keys", "-t", name, "C-c")
        _wait_count(name, "interrupted (Ctrl-C)", 2)
        _tmux("send-keys", "-t", name, "step 3", "Enter")
        _wait_for(name, "stepped 3 instructions")
        _tmux("send-keys", "-t", name, "continue --insns 3000", "Enter")
        _wait_for(name, "instruction limit reached")
        _tmux("send-keys", "-t", name, "continue", "Enter")
        _wait_for(name, RUNNING)
        _tmux("send-keys", "-t", name, "quit 4", "Enter")  # quit while it runs: stops it, then leaves
        _wait_for(name, "EXITED=4")

"""End to end: the real ``zuv console`` in a terminal (tmux), typed at like a person would."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (tools/setup.sh)")


#: the socket of the current session's own tmux server (``_session`` makes one per session): no two sessions,
#: of this test, a parallel run or a user's tmux, share a server, so no earlier session's kill can take a
#: server away, half shut down, under the next new-session
_SOCKET = ""


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-S", _SOCKET, *args], capture_output=True, text=True, check=True).stdout


def _wait_for(session: str, text: str, timeout: float = 60.0) -> str:
    """The screen once ``text`` is on it (the deadline only bounds a failing test: zuv may take seconds to
    start on a loaded machine)."""
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear on the screen:\n{screen}")


@contextlib.contextmanager
def _session(cmd: str, width: int, height: int) -> Iterator[str]:
    """A detached tmux session of this size running ``cmd`` in the repository: its name; killed after."""
    global _SOCKET  # noqa: PLW0603 - one session at a time in a test process
    name = f"zuv-{uuid.uuid4().hex[:8]}"
    _SOCKET = os.path.join(tempfile.gettempdir(), f"zuv-tmux-{os.getpid()}-{name}")
    shell = f"cd {ROOT} && {cmd}; sleep 30"
    _tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), shell)
    try:
        yield name
    finally:
        subprocess.run(["tmux", "-S", _SOCKET, "kill-server"], capture_output=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_SOCKET)


def test_console_in_a_terminal_breaks_steps_completes_and_quits():
    cmd = f"{sys.executable} -m emulator.cli console tests/console_scripts/probe.elf; echo EXITED=$?"
    with _session(cmd, 132, 40) as name:
        _wait_for(name, "(zuv)")
        screen = _wait_for(name, "non-secure")  # the status line
        assert "PSW 0000000180000000 0000000000020000" in screen and "view host" in screen
        _tmux("send-keys", "-t", name, "break bu", "Tab")
        _wait_for(name, "break bump")
        _tmux("send-keys", "-t", name, "Enter")
        _wait_for(name, "breakpoint 1: addr   at 0x20064 (bump)")
        _tmux("send-keys", "-t", name, "continue", "Enter")
        screen = _wait_for(name, "=> 0x20064 <bump>: larl %r5, 0x21008")
        _tmux("send-keys", "-t", name, "step 2", "Enter")
        _wait_for(name, "stepped 2 instructions")
        _tmux("send-keys", "-t", name, "view owner", "Enter")
        screen = _wait_for(name, "view owner ")
        _tmux("send-keys", "-t", name, "frobnicate", "Enter")
        _wait_for(name, "error: unknown command 'frobnicate'")
        _tmux("send-keys", "-t", name, "quit 7", "Enter")
        _wait_for(name, "EXITED=7")


def test_bare_zuv_on_a_terminal_opens_the_console_on_the_secure_demo():
    with _session(f"{sys.executable} -m emulator.cli; echo EXITED=$?", 160, 50) as name:
        _wait_for(name, "(zuv)")
        _wait_for(name, "non-secure")  # stage3a runs as a normal guest until the secure IPL
        _tmux("send-keys", "-t", name, "break uvc set_sh", "Tab")
        _wait_for(name, "break uvc set_shared_access")
        _tmux("send-keys", "-t", name, "Enter")
        _wait_for(name, "breakpoint 1: uvc    UVC 0x1000 Set Shared Access")
        _tmux("send-keys", "-t", name, "continue", "Enter")
        # the host's view by default: the guest's UV call is seen once the Ultravisor's log has it
        _wait_for(name, "(completed)")
        screen = _wait_for(name, "secure guest ")  # the status line
        # the host view: the PC, not the secure instruction there
        assert "=> 0x1083a (SD) <share+0x3a>  (secure storage: PGM 0x3D for the host)" in screen
        _tmux("send-keys", "-t", name, "regs", "Enter")
        _wait_for(name, "PSW (SD, not authoritative)")
        _tmux("send-keys", "-t", name, "dual abs:0x15000 16", "Enter")
        _wait_for(name, "needs the machine's debug capability")
        _tmux("send-keys", "-t", name, "debug secure on", "Enter")
        _wait_for(name, "the machine's debug capability is now in use")
        _tmux("send-keys", "-t", name, "dual abs:0x15000 16", "Enter")
        _wait_for(name, "trap: PGM 0x3D secure-storage access")
        _tmux("send-keys", "-t", name, "quit", "Enter")
        _wait_for(name, "EXITED=0")

"""End to end: the real ``zuv console`` in a terminal (tmux), typed at like a person would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (tools/setup.sh)")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _wait_for(session: str, text: str, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear on the screen:\n{screen}")


def test_console_in_a_terminal_breaks_steps_completes_and_quits():
    name = f"zuv-{uuid.uuid4().hex[:8]}"
    cmd = f"cd {ROOT} && {sys.executable} -m emulator.cli console tests/console_scripts/probe.elf; echo EXITED=$?; sleep 30"
    _tmux("new-session", "-d", "-s", name, "-x", "132", "-y", "40", cmd)
    try:
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
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)

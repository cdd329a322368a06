"""The console in an 80-column terminal: tables laid out for the width, long lines wrapped, uvlog's one-line
form, the status line; and the real program in an 80-column tmux window."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from emulator.console.cli import open_session
from emulator.console.commands import _execute, execute
from emulator.console.render import Output, reflow
from emulator.console.status import status_line
from emulator.hypervisor.boot import DEMO_IMAGE

PROBE = "tests/console_scripts/probe.elf"


def _widest(out: Output) -> int:
    return max((len(line) for line in out.plain().splitlines()), default=0)


def test_fit_wraps_long_lines_at_spaces_with_a_hanging_indent_and_keeps_styles():
    out = Output().add(("addr", "0x1234"), "  ", ("error", "word " * 30)).text("short")
    fitted = out.fit(40)
    lines = fitted.plain().splitlines()
    assert all(len(line) <= 40 for line in lines) and lines[-1] == "short"
    assert all(line.startswith("    ") for line in lines[1:-1])  # continuation lines indented
    assert " ".join(line.strip() for line in lines[:-1]).split() == ["0x1234"] + ["word"] * 30
    assert ("addr", "0x1234") in fitted.lines[0] and all(
        style == "error" for line in fitted.lines[1:-1] for style, text in line if text.strip()
    )
    long_word = Output().text("x" * 100).fit(40).plain().splitlines()  # cut where there is no space
    assert [len(line) for line in long_word] == [40, 40, 28] and out.fit(200) is out


def test_reflow_refills_paragraphs_and_keeps_table_rows_in_their_column():
    doc = """First line of a paragraph that is long enough to be wrapped somewhere in the middle of it.
    Still the paragraph.

    term one      its text, which goes on and on and on and on and on and on and on and on and on
                  and continues here
    t2            short"""
    lines = reflow(doc, 50)
    assert all(len(line) <= 50 for line in lines)
    assert lines[0].startswith("First line") and "Still the paragraph." in " ".join(lines[:4])
    row = next(i for i, line in enumerate(lines) if line.startswith("term one"))
    assert lines[row].index("its text") == 14 and lines[row + 1].startswith(" " * 14 + "on")
    assert "and continues here" in " ".join(lines[row:])
    assert any(line.startswith("t2            short") for line in lines)


def test_every_commands_help_keeps_its_table_rows_on_lines_of_their_own():
    # a docstring whose last paragraph was not indented like the rest ran its table into one paragraph
    from emulator.console.cmdbase import REGISTRY
    from emulator.console.render import _TABLE_ROW

    s = open_session(PROBE, deterministic=True)
    for name, cmd in REGISTRY.items():
        terms = [m.group(1) for line in cmd.help.splitlines() if (m := _TABLE_ROW.match(line.strip()))]
        shown = _execute(s, f"help {name}").plain().splitlines()
        for term in terms:
            assert any(line.startswith(term + " ") for line in shown), (name, term, shown)


def test_tables_are_laid_out_for_80_columns_without_wrapping():
    s = open_session(PROBE, deterministic=True)
    assert s.columns == 80
    for cmd in ("help", "help break", "help x", "regs all", "psw", "breaks", "dis", "x/8xg sp",
                "mem 0x20000 64", "info", "cpu", "dual counter 48", "pages"):  # fmt: skip
        out = _execute(s, cmd)  # before the safety net (Output.fit): the command's own layout
        assert out.ok and _widest(out) <= 80, (cmd, out.plain())
    assert len(_execute(s, "regs").plain().splitlines()[0].split()) == 6  # three registers a row
    s.columns = 132  # a wide terminal: four registers a row, dual with 16 bytes a row
    assert len(_execute(s, "regs").plain().splitlines()[0].split()) == 8


def test_secure_views_fit_80_columns_and_uvlog_has_a_one_line_form():
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)  # dual's owner column
    s.add_breakpoint("secure")
    s.cont()  # the hypervisor's read of the secret page: secure, shared, exported and donated pages exist
    for cmd in ("regs", "pages", "dual abs:0x15000 48", "uvlog 5", "uvlog --brief", "breaks",
                "help uvlog", "info"):  # fmt: skip
        out = _execute(s, cmd)
        assert out.ok and _widest(out) <= 80 or cmd == "info", (cmd, out.plain())  # info: the image's path
    brief = execute(s, "uvlog --brief").plain().splitlines()
    assert "#6-#61" in brief[5] and "0x0301 Unpack x56  cc 0 rc 0x0001" in brief[5]
    assert len(brief) < len(s.uv_calls()) / 3  # runs of the same call are one line
    assert execute(s, "uvlog --last 2 --brief").plain() == execute(s, "uvlog 2 --brief").plain()
    assert len(execute(s, "uvlog --last 2 --brief").plain().splitlines()) == 2
    full = execute(s, "uvlog all").plain()
    assert full.count("\n#") + 1 == len(s.uv_calls()) and "guest_handle" in full
    assert "needs a count" in execute(s, "uvlog --last").plain()
    # the status bar: a compact form in 80 columns, the long one (and the status command) when there is room
    compact = "".join(t for _, t in status_line(s, 80))
    assert len(compact) <= 80 and " bp 1 " in compact and "PSW " in compact
    assert "breakpoints 1" in "".join(t for _, t in status_line(s, 160))
    assert "breakpoints 1" in execute(s, "status").plain()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (tools/setup.sh)")
def test_the_console_in_an_80_column_terminal_wraps_nothing():
    import tests.test_console_tmux as term

    # a tmux server of this test's own: the other tmux tests' last kill-session cannot take it away
    saved, term._SOCKET = term._SOCKET, f"zuv-layout-{os.getpid()}"
    try:
        _in_80_columns(term)
    finally:
        term._SOCKET = saved


def _in_80_columns(term: object) -> None:
    _session, _tmux, _wait_for = term._session, term._tmux, term._wait_for  # type: ignore[attr-defined]
    cmd = f"{sys.executable} -m emulator.cli console {PROBE}; echo EXITED=$?"
    with _session(cmd, 80, 200) as name:
        _wait_for(name, "(zuv)")
        for typed, seen in (("help", "[address]."), ("regs", "addressing 64-bit"), ("help break", "frame:N"),
                            ("dual counter 32", "storage key")):  # fmt: skip
            _tmux("send-keys", "-t", name, typed, "Enter")
            _wait_for(name, seen)
        _wait_for(name, " bp 0")  # the status bar, redrawn after the output: its compact form
        # -J: lines the terminal wrapped come back joined
        joined = _tmux("capture-pane", "-p", "-J", "-t", name, "-S", "-")
        status = [line for line in joined.splitlines() if line.lstrip().startswith("CPU 0")]
        assert status and all(len(line) <= 80 for line in status)
        assert max(len(line.rstrip()) for line in joined.splitlines()) <= 80, joined
        _tmux("send-keys", "-t", name, "quit", "Enter")
        _wait_for(name, "EXITED=0")


def test_the_interactive_console_pages_long_output_and_scripts_get_it_whole():
    """Output longer than the terminal (40 rows here) stops after each screenful with gdb's question: q
    leaves the rest out (one line says so), c shows the rest, Enter the next screenful; `pager off` shows it
    whole; a script gets it whole, plain."""
    import io

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output.plain_text import PlainTextOutput

    from emulator.console.app import MORE, run_interactive, run_script

    s = open_session(PROBE)
    listing = execute(s, "x/60i _start").plain().splitlines()
    assert len(listing) == 60
    line38, line39, last = listing[37].split()[0], listing[38].split()[0], listing[-1].split()[0]
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("x/60i _start\rq" "x/60i _start\rc" "x/60i _start\r "
                       "pager off\rx/60i _start\rquit\r")  # fmt: skip
        assert run_interactive(s, input=pipe, output=PlainTextOutput(buf)) == 0
    text = buf.getvalue()
    first, rest = text.split("(22 more lines not shown: pager off shows long output whole)", 1)
    assert MORE in first and f"{line38} <" in first and f"{line39} <" not in first  # 38 lines: 40 rows - 2
    assert rest.count(f"{last} <") == 3  # c: the rest; space: the next screenful; pager off: whole
    assert MORE not in rest.rsplit("pager off", 1)[1]
    out = io.StringIO()
    assert run_script(s, ["x/60i _start"], out) == 0
    assert MORE not in out.getvalue() and len(out.getvalue().splitlines()) == 61

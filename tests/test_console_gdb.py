"""gdb-class console commands: Enter repeats stepping, x/NFU, set in the views that allow it, conditional and
temporary breakpoints, display, info SUBCOMMAND, named branch targets (the transcript gdb.zuv covers the
probe guest's session; these tests cover the interactive repeat and the secure host's refusals)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.plain_text import PlainTextOutput

from emulator.console.app import repeat_line, repeatable, run_interactive
from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.session import Session
from emulator.hypervisor.boot import DEMO_IMAGE
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "console_scripts" / "probe.elf"


def probe() -> Session:
    m = Machine(16 << 20, deterministic=True)
    return Session(m, m.load(str(PROBE)))


def run(s: Session, line: str) -> str:
    return execute(s, line).plain().rstrip("\n")


def test_enter_repeats_step_next_and_x_but_nothing_else():
    assert repeatable("step 2") == "step 2"
    assert repeatable("n") == "n"
    assert repeatable("x/4xw counter") == "x/4xw"
    assert repeatable("regs") is None and repeatable("continue") is None
    assert repeat_line("", "step 2") == "step 2" and repeat_line("regs", "step 2") == "regs"
    s = probe()
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("step 2\r\r\rregs\r\rquit\r")
        run_interactive(s, input=pipe, output=PlainTextOutput(buf))
    assert buf.getvalue().count("stepped 2 instructions") == 3  # the empty line after regs repeats nothing
    assert s.machine.cpus[0].pc == _pc_after(6)


def _pc_after(n: int) -> int:
    s = probe()
    s.step(n)
    return s.cpu.pc


def test_x_continues_where_it_ended_and_refuses_bad_formats():
    s = probe()
    run(s, "set {long}counter = 0x1122334455667788")
    assert run(s, "x/2xw counter").splitlines()[0].endswith("0x11223344  0x55667788")
    assert run(s, "x").startswith("0x21008 <calls>:  0x00000000")  # format kept, address goes on
    assert run(s, "x/1dw counter") == "0x21000 <counter>:  287454020"
    assert run(s, "x/1dh abs:0x21006") == "0x21006:  30600"
    run(s, "set {char}counter = 0xff")
    assert run(s, "x/1db counter") == "0x21000 <counter>:  -1"
    run(s, "set {int}counter = -2")  # a negative value stores its two's complement, as gdb's set does
    assert run(s, "x/1xw counter") == "0x21000 <counter>:  0xfffffffe"
    run(s, "set {short}counter = -32768")
    assert run(s, "x/1dh counter") == "0x21000 <counter>:  -32768"
    assert "-129 does not fit in 1 byte" in run(s, "set {char}counter = -129")
    assert "unknown format letter" in run(s, "x/2z counter")
    assert "outside memory" in run(s, "x/2xg host:0xfffff8")


def test_conditional_breakpoint_stops_only_when_it_holds_and_tbreak_once():
    s = probe()
    run(s, "break bump if [counter] == 4")
    stop = s.cont()
    assert s.cpu.pc == s.symbols["bump"] and s.cpu.gpr(2) == 4, stop.reason
    assert "error" in run(s, "break bump if r99 == 1")  # a bad condition is refused when set
    s2 = probe()
    run(s2, "tbreak bump")
    assert "temporary breakpoint 1" in s2.cont().reason and not s2.breakpoints
    assert s2.cont().kind == "end"  # deleted: the four further calls do not stop


@pytest.fixture(scope="module")
def secure():
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)
    s.add_breakpoint("uvc", "set_shared_access")
    s.cont()
    s.delete_breakpoint(None)
    assert s.is_secure()
    yield s
    s.close()


def test_set_on_a_secure_guest_refused_in_the_host_view_as_the_host_would(secure):
    s = secure
    s.set_view("host")
    pc = s.cpu.pc
    before = run(s, "x/2xw pc")
    assert "the Ultravisor holds its registers" in run(s, "set r2 = 1")
    out = run(s, f"set {{int}}{pc:#x} = 0")
    assert out.startswith("error:") and "PGM 0x3D" in out, out
    s.set_view("owner")
    try:
        code = run(s, "x/1xw pc").splitlines()[-1]
        assert "0x" in code and "trap" not in code
        r2 = s.cpu.gpr(2)  # the owner view sets it through the debug capability (the same value here)
        assert "debug capability" in run(s, f"set r2 = {r2}") and s.cpu.gpr(2) == r2
    finally:
        s.set_view("host")
    assert run(s, "x/2xw pc") == before


def test_info_subcommands_and_named_branch_targets():
    s = probe()
    assert run(s, "info reg") == run(s, "regs")
    assert run(s, "info b") == run(s, "breaks") == "no breakpoints"
    assert run(s, "info pages") == run(s, "pages")
    assert "say which of" in run(s, "info zork")
    assert "jl      0x2001c <loop>" in run(s, "dis loop 6")
    assert "brasl   %r14, 0x20064 <bump>" in run(s, "x/3i loop")
    run(s, "break loop")
    run(s, "continue")
    assert run(s, "step 2").endswith(": brasl %r14, 0x20064 <bump>")  # the stop line names the target too
    m = Machine(16 << 20, 2, deterministic=True)  # a relative-long load names its operand's symbol too
    sigp = Session(m, m.load(str(ROOT / "guests" / "images" / "sigp.elf")))
    assert run(sigp, "x/1i main+0x146").endswith("lgrl    %r1, 0x14000 <cpu1_done>")


FRAMES = ROOT / "tests" / "console_scripts" / "frames.elf"


def frames_session() -> Session:
    m = Machine(16 << 20, deterministic=True)
    return Session(m, m.load(str(FRAMES)))


def _bt(s: Session) -> list[str]:
    return [line.split()[2] for line in run(s, "bt").splitlines()]


@pytest.mark.parametrize("cfi", [True, False], ids=["dwarf-cfi", "back-chain"])
def test_bt_and_finish_walk_the_nested_calls(cfi):
    """frames.elf: cmain -> outer -> middle -> leaf, built with the back chain and .eh_frame; both ways give
    the same callers, and finish returns to each with its value in r2."""
    from emulator.console.unwind import CfiTable

    s = frames_session()
    if not cfi:
        s._cfi = CfiTable("")  # no DWARF: the back chain alone
    assert bool(s.cfi()) is cfi
    run(s, "break leaf")
    s.cont()
    assert _bt(s) == ["<leaf>", "<middle+0x22>", "<outer+0x20>", "<cmain+0x20>", "<_start+0x16>"]
    run(s, "delete")
    out = run(s, "finish")
    assert "value returned: r2 = 0xd" in out and s.cpu.pc == s.symbols["middle"] + 0x22  # leaf(12) = 13
    assert _bt(s)[:2] == ["<middle+0x22>", "<outer+0x20>"]
    assert "value returned: r2 = 0x27" in run(s, "finish")  # middle: 13 * 3
    assert s.cpu.pc == s.symbols["outer"] + 0x20


def test_bt_and_finish_by_the_prologue_in_the_bundled_guests():
    """The bundled guests have no unwind tables and no back chain: bt and finish read what each function's
    prologue saved (STMG) and took (LAY/AGHI) on the stack (bt showed frame 0 alone, finish found no
    caller)."""
    m = Machine(16 << 20, deterministic=True)
    s = Session(m, m.load(str(ROOT / "guests" / "images" / "hello.elf")))
    run(s, "break printf")
    s.cont()
    run(s, "delete")
    run(s, "step 3")  # inside printf, after its STMG and LAY
    assert _bt(s) == ["<printf+0x10>", "<main+0x1c>", "<rt_start64+0x44>"]
    assert "(prologue)" in run(s, "bt").splitlines()[1]
    assert "value returned: r2 = 0x24" in run(s, "finish") and s.cpu.pc == s.symbols["main"] + 0x1C
    # the secure demo, owner view: its guest's share() called from main, before its Set Shared Access
    d = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)
    run(d, "break uvc set_shared_access")
    d.cont()
    run(d, "view owner")
    assert _bt(d)[:2] == ["<share+0x36>", "<main+0x98>"]
    run(d, "delete")
    run(d, "finish")
    assert d.cpu.pc == d.symbols["main"] + 0x98


def test_finish_in_the_outermost_frame_says_so():
    s = probe()  # at _start: no CFI, r14 is 0
    out = run(s, "finish")
    assert out.startswith("error: finish: no caller found"), out


def test_history_is_kept_across_sessions(tmp_path, monkeypatch):
    from emulator.console.app import history_path, persistent_history

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert history_path() == tmp_path / "zuv" / "console_history"
    with create_pipe_input() as pipe:
        pipe.send_text("print 6 + 7\rquit\r")
        out = PlainTextOutput(io.StringIO())
        run_interactive(probe(), input=pipe, output=out, history=persistent_history())
    again = list(persistent_history().load_history_strings())  # a new session reads the file
    assert again[:2] == ["quit", "print 6 + 7"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "zuv" / "console_history"))  # a file, not a dir
    assert type(persistent_history()).__name__ == "InMemoryHistory"


def test_log_appends_each_command_and_its_output(tmp_path):
    s = probe()
    path = tmp_path / "session.log"
    assert run(s, f"log {path}") == f"logging to {path}"
    run(s, "step 2")
    run(s, "print r1")
    run(s, "log off")
    run(s, "print r15")  # not logged
    text = path.read_text()
    assert "(zuv) step 2\nstepped 2 instructions" in text
    assert "(zuv) print r1\n0x20098 = 131224 <pgm_psw>" in text and "print r15" not in text
    assert run(s, f"log {tmp_path / 'no' / 'such' / 'dir'}").startswith("error: log:")

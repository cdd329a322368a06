"""The console: scripted sessions against their transcripts, bad input, the Python API, the special
breakpoints, the interactive application through a pipe, and the non-interactive ``zuv console``."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.plain_text import PlainTextOutput

from emulator.console.app import ConsoleCompleter, run_interactive, run_script
from emulator.console.cli import build_session_from_args
from emulator.console.commands import REGISTRY, execute
from emulator.console.providers import Intercept, Providers, UvCall, discover
from emulator.console.session import Session
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "console_scripts"
PROBE = "tests/console_scripts/probe.elf"


def probe(**kw) -> Session:
    m = Machine(16 << 20, deterministic=True, **kw)
    return Session(m, m.load(str(ROOT / PROBE)))


# -- transcripts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.zuv")))
def test_scripted_session_matches_its_transcript(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = SCRIPTS / script
    header = path.read_text().splitlines()[0]
    assert header.startswith("# zuv console "), "first line names the console arguments"
    session = build_session_from_args(shlex.split(header[len("# zuv console ") :]))
    out = io.StringIO()
    status = run_script(session, path.read_text().splitlines(), out)
    got = f"{out.getvalue()}[exit status {status}]\n"
    expected = path.with_suffix(".out")
    if os.environ.get("ZUV_UPDATE_TRANSCRIPTS"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_every_command_has_usage_help_and_a_group():
    for cmd in REGISTRY.values():
        assert cmd.usage.split()[0] == cmd.name and cmd.summary and cmd.help, cmd.name
    s = probe()
    text = execute(s, "help").plain()
    for name in REGISTRY:
        assert f"  {name}" in text
    assert "aliases: s, si, stepi" in execute(s, "help step").plain()


def test_no_input_crashes_the_console():
    s = probe()
    for line in ["", "   ", "'unbalanced", "x 0x", "b uvc 0x4242", "p [[[", "watch host:0x7fffff0 64",
                 "until ()", "regs all", "dis 0 3", "sym zzz*", "cpu 0", "d all",
                 "translate 0xffffffffffffffff"]:  # fmt: skip
        out = execute(s, line)
        assert "Traceback" not in out.plain()
        assert all(len(line) for line in out.plain().splitlines()) or out.plain() == ""


# -- execution control through the Python API ------------------------------------------------------------


def test_step_next_and_until_move_the_pc_where_they_say():
    s = probe()
    s.step(5)
    assert s.cpu.pc == s.symbols["loop"]
    s.step(2)  # aghi, stg
    assert s.cpu.pc == s.symbols["loop"] + 0xA  # the brasl
    s.next()  # runs bump entirely
    assert s.cpu.pc == s.symbols["loop"] + 0x10
    assert s.machine.memory.read_u64(s.symbols["calls"]) == 1
    s.step(1)  # cghi
    stop = s.until()  # at jl (backward branch): leave the loop
    assert stop.kind == "step" and s.cpu.pc == s.symbols["do_uvc"]
    assert s.cpu.gpr(2) == 5


def test_a_breakpoint_set_after_its_block_ran_still_stops():
    s = probe()
    s.add_breakpoint("addr", "do_uvc")
    s.add_breakpoint("addr", "bump")
    assert s.cont().pc == s.symbols["bump"]
    s.delete_breakpoint(None)
    s.add_breakpoint("addr", "loop+4")  # inside a block unicorn has already translated
    assert s.cont().pc == s.symbols["loop"] + 4


def test_watchpoint_stops_after_the_store_with_old_and_new_value_and_ignores_the_rest_of_the_page():
    s = probe()
    bp = s.add_breakpoint("watch", "calls")
    stop = s.cont()
    assert stop.kind == "watch" and stop.breakpoint is bp
    assert stop.details == ["value 0000000000000000 -> 0000000000000001"]
    assert s.cpu.pc == s.symbols["bump"] + 0x16  # after the stg in bump, not at counter's stg (same page)
    assert s.cont().details == ["value 0000000000000001 -> 0000000000000002"]
    assert s.machine.cpus[0].watch_frames == {0x21: False}
    s.delete_breakpoint(None)
    assert s.machine.cpus[0].watch_frames == {}
    assert s.cont().kind == "end"
    assert s.machine.memory.read_u64(s.symbols["calls"]) == 5


def test_read_watchpoint_and_firmware_store_watch():
    s = probe()
    s.add_breakpoint("watch", "calls", access=True)
    stop = s.cont()
    assert stop.kind == "watch" and s.cpu.pc == s.symbols["bump"] + 0xC  # after the lg
    s.delete_breakpoint(None)
    s.add_breakpoint("watch", "abs:0x21010")  # pgm_count
    s.machine.memory.write(0x21010, b"\1" * 8)  # a firmware store while stopped is remembered, not reported
    s.running = True
    s.machine.memory.write(0x21010, b"\2" * 8)
    s.running = False
    assert any("firmware store" in d for _, d in s._take_hits())


def test_uvc_breakpoint_stops_before_the_call_and_step_executes_it():
    s = probe()
    s.add_breakpoint("uvc", "qui")
    stop = s.cont()
    assert stop.kind == "uvc" and s.cpu.pc == s.symbols["do_uvc"] + 0x10
    assert "UVC 0x0001 Query Ultravisor Information" in stop.reason and "not executed yet" in stop.reason
    s.step()
    assert s.cpu.pc == s.symbols["pgm_handler"]  # no UV at level 3: operation exception
    s.add_breakpoint("uvc", "create_sec_conf")
    assert s.cont().kind == "end"


def _firmware_uvc(machine: Machine, tag: int):
    """A stand-in UV behind the UVC instruction: it makes the secret page secure (what Convert to Secure
    does)."""

    def handler(cpu, insn):
        machine.memory.set_owner(0x22, tag)
        insn.finish(0)

    machine.insn_handlers["UVC"] = handler


def test_page_state_and_secure_storage_breakpoints():
    s = probe()
    _firmware_uvc(s.machine, 2)
    s.add_breakpoint("page", "frame:0x22")
    s.add_breakpoint("secure")
    stop = s.cont()
    assert (
        stop.kind == "page"
        and "frame 0x22 (host 0x22000): non-secure -> secure (config tag 2)" in stop.reason
    )
    stop = s.cont()
    assert stop.kind == "secure" and "PGM 0x3D" in stop.reason and "at 0x22000" in stop.reason
    assert s.cpu.pc == s.symbols["pgm_handler"]
    host_view = execute(s, "mem secret 8").plain()
    assert "trap: PGM 0x3D secure-storage access (secure frame 0x22)" in host_view
    assert "5ec2e7da" not in host_view
    s.set_view("owner")
    owner_view = execute(s, "mem secret 8").plain()
    assert "5ec2e7da 7a000001" in owner_view and "emulator privilege" in owner_view
    pages = execute(s, "pages").plain()
    assert "0x0000022000-0x0000022fff       1 page   secure     owner tag 2" in pages
    dual = execute(s, "dual 0x22000 16").plain().splitlines()
    assert "5ec2e7da" in dual[1].split("|")[0] and "trap" in dual[1].split("|")[1] and "secure" in dual[1]


class _FakeHypervisor:
    """A provider pair standing in for the hypervisor and the UV log (the protocols the console plugs
    into)."""

    def __init__(self):
        self.subs = []
        self.log = []

    def subscribe(self, cb):
        self.subs.append(cb)
        return lambda: self.subs.remove(cb)

    def calls(self):
        return self.log


def test_sie_and_logged_uvc_breakpoints_through_providers():
    m = Machine(16 << 20, deterministic=True)
    prog = m.load(str(ROOT / PROBE))
    icpt, uvlog = _FakeHypervisor(), _FakeHypervisor()
    base = discover(m)
    s = Session(m, prog, providers=Providers(base.page_map, uv_log=uvlog, intercepts=icpt))
    s.add_breakpoint("sie", "0x68")
    s.add_breakpoint("uvc", "0x0201")
    assert len(icpt.subs) == 1 and len(uvlog.subs) == 1

    def on_diag(cpu, insn):
        pass

    calls = []

    def handler(cpu, insn):  # during the run, the "hypervisor" reports an intercept and a logged UV call
        icpt.subs[0](Intercept(0, 0x1C))  # not the code we break on
        icpt.subs[0](Intercept(0, 0x68, "DIAG 0x500", secure=True))
        call = UvCall(1, "host", 0x0201, 1, 0x0107, 0, (("paddr", "0x22000"),))
        uvlog.log.append(call)
        uvlog.subs[0](call)
        calls.append(1)
        insn.finish(0)

    m.insn_handlers["UVC"] = handler
    stop = s.cont()
    assert stop.kind == "sie" and "0x68 (PV instruction) on vCPU 0 (secure): DIAG 0x500" in stop.reason
    assert any("UVC 0x0201 Convert from Secure Storage from host: cc 1 rc 0x0107" in d for d in stop.details)
    log = execute(s, "uvlog").plain()
    assert "0x0201 Convert from Secure Storage" in log and "rc 0x0107" in log and "paddr" in log
    s.close()
    assert icpt.subs == [] and uvlog.subs == []


def test_continue_time_limit_and_stop_from_another_thread():
    import threading

    m = Machine(16 << 20)
    s = Session(m, m.load(str(ROOT / PROBE)))
    m.cpus[0].set_psw(m.cpus[0].psw[0], s.symbols["after_secret"] + 0)  # run, then loop forever below
    m.memory.write(s.symbols["after_secret"], bytes.fromhex("a7f40000"))  # j . (a tight loop)
    stop = s.cont(time_limit=0.2)
    assert stop.kind == "limit"
    t = threading.Timer(0.2, s.stop)
    t.start()
    stop = s.cont()
    t.join()
    assert stop.kind == "halt" and "stopped by the user" in stop.reason


def test_a_stop_between_the_sessions_check_and_the_machines_run_is_not_lost():
    """The machine's run forgets a halt request made before it began; a stop that lands after cont's own
    check and before that (here: at the very start of the run) is asked for again until cont has seen it."""
    m = Machine(16 << 20)
    s = Session(m, m.load(str(ROOT / PROBE)))
    m.cpus[0].set_psw(m.cpus[0].psw[0], s.symbols["after_secret"] + 0)
    m.memory.write(s.symbols["after_secret"], bytes.fromhex("a7f40000"))  # j . (a tight loop)
    run = m.run

    def stopped_on_the_way(**kw):
        s.stop("interrupted (Ctrl-C)")  # after cont's check, before run clears the machine's request
        return run(**kw)

    m.run = stopped_on_the_way  # type: ignore[method-assign]
    stop = s.cont(time_limit=30)
    assert stop.kind == "halt" and stop.reason == "interrupted (Ctrl-C)"  # not "time limit reached"
    m.run = run  # type: ignore[method-assign]
    assert "stepped 2 instructions" in execute(s, "step 2").plain()  # nothing left over


def test_ctrl_c_between_commands_does_not_end_the_interactive_console(monkeypatch):
    """SIGINT while no prompt is shown and no command runs (here: while a command's output is shown, as a
    user stops a long listing) is answered by the console, not by asyncio's default handler (which ended the
    console with exit status 130); a run started afterwards is not stopped by it."""
    import signal
    import threading

    import emulator.console.app as app

    shown = app.print_formatted_text
    sent = []

    def show(text, *a, **kw):
        shown(text, *a, **kw)
        if not sent and "stepped" in str(text):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # the output is being shown: no prompt, nothing runs

    monkeypatch.setattr(app, "print_formatted_text", show)
    s = probe()
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        def user() -> None:  # quit after the run's end (a quit while it runs stops it: "console closed")
            pipe.send_text("step\rcontinue\r")
            for _ in range(3000):  # at most a minute: then quit anyway, and the assertion below says why
                if "all CPUs stopped" in buf.getvalue():
                    break
                threading.Event().wait(0.02)
            pipe.send_text("quit 3\r")

        t = threading.Thread(target=user, daemon=True)
        t.start()
        try:
            status = run_interactive(s, input=pipe, output=PlainTextOutput(buf))
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C while the output was shown ended the console")
    assert sent and status == 3
    assert "all CPUs stopped" in buf.getvalue() and "interrupted" not in buf.getvalue()


# -- the interactive application ----------------------------------------------------------------------------


def test_interactive_console_through_a_pipe():
    s = probe()
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("break bump\rstep 2\rregs\rquit 4\r")
        status = run_interactive(s, input=pipe, output=PlainTextOutput(buf))
    assert status == 4
    text = buf.getvalue()
    assert "breakpoint 1: addr   at 0x20064 (bump)" in text
    assert "stepped 2 instructions" in text
    assert "r1  0000000000020098" in text and "address 0x2000c" in text
    assert s.cpu.pc == 0x2000C


def test_interactive_continue_runs_in_the_background_and_ends_at_eof():
    s = probe()
    with create_pipe_input() as pipe:
        pipe.send_text("break after_uvc\rcontinue\r")
        pipe.close()
        assert run_interactive(s, input=pipe, output=DummyOutput()) == 0
    assert s.cpu.pc == s.symbols["after_uvc"]


def test_completion_of_commands_symbols_registers_and_event_names():
    s = probe()
    c = ConsoleCompleter(s)

    def words(text):
        return [x.text for x in c.get_completions(Document(text), None)]

    assert "step" in words("st") and "stop" in words("st")
    assert words("break bu") == ["bump"]
    assert "create_sec_conf" in words("break uvc cr")
    assert "0x68" in words("break sie 0x6")
    assert "r15" in words("mem r1")
    assert words("view o") == ["owner"]
    assert "all" in words("regs a")


# -- zuv console without a terminal -------------------------------------------------------------------------


def zuv(*args, stdin="", timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", "console", *args], input=stdin, capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_stdin_commands_run_non_interactively_with_a_status():
    p = zuv(PROBE, stdin="break bump\ncontinue\nassert r2 == 1\n")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "breakpoint 1 at 0x20064 <bump>" in p.stdout
    p = zuv(PROBE, stdin="assert r2 == 1\n")
    assert p.returncode == 1 and "assertion failed" in p.stdout


def test_empty_stdin_runs_the_default_script():
    p = zuv()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "(zuv) continue" in p.stdout and "Hello from a bare-metal s390x guest" in p.stdout
    assert "all CPUs stopped" in p.stdout


def test_bad_program_and_missing_script_exit_2_with_one_line(tmp_path):
    p = zuv(str(tmp_path / "missing.elf"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "cannot read" in p.stderr
    p = zuv(PROBE, "--script", str(tmp_path / "nope.zuv"))
    assert p.returncode == 2 and "cannot read" in p.stderr


def test_a_file_that_is_no_script_is_refused_before_anything_runs(tmp_path):
    """A script is checked whole first: a line that is no console command (an ELF's text, C source, a
    README, a typo) is bad input: exit 2 with FILE:LINE and the line, and nothing runs (no stdout)."""
    cases = {
        "notes.md": ("# title\n\nregs\nRun it like this:\n",
                     "notes.md:4: unknown command 'Run' in 'Run it like this:'"),
        "typo.zuv": ("break bump\ncontinue\nsetp\n", "typo.zuv:3: unknown command 'setp'"),
        "zeros.bin": ("regs\n" + "\0" * 64, "zeros.bin:2: control character '\\x00' in column 1"),
        "quote.zuv": ('print "r2\n', "quote.zuv:1: cannot split"),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        p = zuv(PROBE, "--script", str(tmp_path / name))
        assert p.returncode == 2 and p.stdout == "", (name, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (name, p.stderr)
        assert want in p.stderr, (name, p.stderr)
    p = zuv(str(ROOT / "guests/images/hello.elf"), "--script", str(ROOT / "guests/images/hello.elf"))
    assert p.returncode == 2 and "not a text file of console commands" in p.stderr
    p = zuv(PROBE, stdin="regs\nfoo bar\n")  # commands from stdin: the same check
    assert p.returncode == 2 and "standard input:2: unknown command 'foo'" in p.stderr and p.stdout == ""
    # a command that fails at run time is no bad input: the script goes on, status 1
    (tmp_path / "fails.zuv").write_text("print nosuchsymbol\nregs\n")
    p = zuv(PROBE, "--script", str(tmp_path / "fails.zuv"))
    assert p.returncode == 1 and "(zuv) regs" in p.stdout


def test_translate_through_an_enhanced_dat_large_frame_shows_its_absolute_address():
    """A 1 MiB frame (EDAT-1) maps to an absolute address: the console shows it, unprefixed, as both the
    real and the absolute address; a 4 KiB page's real address is prefixed."""
    import struct

    s = probe()
    c = s.cpu
    mem = s.machine.memory
    sgt, pgt = 0x200000, 0x201000
    mem.write(sgt, struct.pack(">Q", 0x300000 | 0x400))  # segment 0: a 1 MiB frame at absolute 3 MiB
    mem.write(sgt + 8, struct.pack(">Q", pgt))  # segment 1: a page table mapping page 0 to real 0
    mem.write(pgt, struct.pack(">Q", 0))
    for i in range(2, 2048):
        mem.write(sgt + 8 * i, struct.pack(">Q", 0x20))
    c.set_cr(1, sgt)
    c.set_cr(0, 1 << 23)  # EDAT on
    c.set_prefix(0x100000)
    c.set_psw(c.psw[0] | 1 << 58, c.psw[1])  # DAT on
    assert s.translate(0x1234) == (0x301234, 0x301234, 0x301234)
    assert s.translate(0x100234) == (0x234, 0x100234, 0x100234)  # real 0 is the prefix area

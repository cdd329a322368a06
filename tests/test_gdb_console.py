"""The GDB stub on a console session (``zuv console --gdb``, the ``gdbserver`` command): the host view of a
secure guest refuses its pages and registers, the machine's debug capability (``--debug-secure``) reads them;
gdb-multiarch in batch mode against ``zuv console`` on the secure demo; the console gets the machine back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# the stub tests' client (tests/ is on the path)
from test_gdbstub import HELLO, MAIN, Client, _listening, listening_port

from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.gdbserve import serve_gdb
from emulator.gdb.stub import frame
from emulator.hypervisor.boot import DEMO_IMAGE, DEMO_KERNEL

ROOT = Path(__file__).resolve().parent.parent
SECRET = 0x15000  # the demo's secret page (guest real = absolute: the demo runs without DAT)
SECRET_TEXT = b"zuv secret: the launch code is"
SHARE_UVC = 0x10836  # share+0x36: the demo's Set Shared Access


def _at_share():
    """The secure demo stopped before its first Set Shared Access (a secure guest by then)."""
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)  # stops before the guest's UVC
    execute(s, "break uvc set_shared_access")
    execute(s, "continue")
    assert s.is_secure() and s.cpu.pc == SHARE_UVC
    return s


def _serve(s, **kw):
    """Serve gdb for the session on a thread; the client and the thread's result box."""
    box: dict[str, str] = {}
    lines: list[str] = []
    listening = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if "waiting for gdb" in line:
            listening.set()

    def serve() -> None:
        box["line"] = serve_gdb(s, "0", log=log, **kw)  # port 0: any free port, named in its line

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert listening.wait(60), lines
    return Client(listening_port("\n".join(lines))), t, box


def test_host_view_of_a_secure_guest_refuses_its_pages_registers_and_breakpoints() -> None:
    s = _at_share()
    c, t, box = _serve(s, debug_secure=False)  # the host view, though the session has the capability
    assert c.ask("?") == "T05thread:1;"
    assert c.ask("p1") == f"{SHARE_UVC:016x}"  # the state description's PSW: what the host sees
    assert c.ask("p4") == "x" * 16 and c.ask("p53") == "x" * 16  # r2, cr0: unavailable
    g = c.ask("g")
    assert g.startswith(f"0000200180000000{SHARE_UVC:016x}") and set(g[32:]) == {"x"}
    assert c.ask(f"m{SECRET:x},10") == "E14"  # PGM 0x3D for the host: a memory error
    assert c.ask(f"M{SECRET:x},2:4142") == "E14"
    assert c.ask("P4=0000000000001234") == "E00"  # no register writes into a secure CPU
    assert c.ask(f"Z0,{SHARE_UVC + 4:x},2") == "E01"  # the host cannot stop a secure guest where it likes
    assert c.ask(f"Z2,{SECRET:x},8") == "E01"
    c.raw(frame(b"D"))
    assert c.reply() == "OK"
    t.join(30)
    assert "the console has the machine: CPU 0 operating at 0x10836" in box["line"]
    owner = s.read("abs", SECRET, 16, owner=True)[0].data
    assert owner is not None and owner.startswith(SECRET_TEXT[:16])  # nothing was stored


def test_debug_capability_reads_the_secure_cpu_and_page_and_writes_the_record() -> None:
    s = _at_share()
    s.set_view("host")
    c, t, box = _serve(s, debug_secure=True)
    assert c.ask("p4") == f"{s.cpu.gpr(2):016x}" and s.cpu.gpr(2) == 0x2AA90  # r2: the UVCB address
    assert bytes.fromhex(c.ask(f"m{SECRET:x},1e")) == SECRET_TEXT
    assert c.ask("p33") == "x" * 16  # v0l: the secure CPU's record keeps no vector registers
    r5 = s.cpu.gpr(5)
    assert c.ask("P7=00000000cafe0005") == "OK" and s.cpu.gpr(5) == 0xCAFE0005  # r5, in the UV's record
    assert c.ask(f"P7={r5:016x}") == "OK"
    assert c.ask("s").startswith("T05")  # steps the UVC: executed, the PSW after it
    assert c.ask("p1") == f"{SHARE_UVC + 4:016x}"
    assert c.ask(f"Z0,{SHARE_UVC + 4:x},2") == "OK"
    c.raw(frame(b"D"))
    assert c.reply() == "OK"
    t.join(30)
    last = s.uv_calls()[-1]  # the step executed the guest's Set Shared Access
    assert (last.caller, last.cmd, last.rc) == ("guest", 0x1000, 1)
    # the console's breakpoint is back, gdb's is gone: the next Set Shared Access stops the console
    assert execute(s, "continue").plain().startswith("breakpoint 1: UVC 0x1000 Set Shared Access")


def test_console_gdbserver_on_a_plain_program_hands_the_machine_back() -> None:
    s = open_session(str(HELLO), cpus=1)
    c, t, box = _serve(s)
    assert c.ask(f"Z0,{MAIN:x},2") == "OK"
    assert c.ask("c") == "T05thread:1;"
    assert c.ask("p1") == f"{MAIN:016x}"
    assert c.ask("P4=0000000000000042") == "OK"  # a plain machine's CPU: the host's own registers
    c.raw(frame(b"D"))
    assert c.reply() == "OK"
    t.join(30)
    assert s.cpu.pc == MAIN and s.cpu.gpr(2) == 0x42
    assert "Hello from a bare-metal s390x guest" in execute(s, "continue").plain()


def test_gdb_breakpoints_and_watchpoints_do_not_outlive_a_kill() -> None:
    s = open_session(str(HELLO), cpus=1)  # a console with no breakpoints of its own
    c, t, box = _serve(s)
    assert c.ask(f"Z0,{MAIN:x},2") == "OK" and c.ask("Z2,10000,8") == "OK"
    c.raw(frame(b"k"))
    t.join(30)
    assert s.machine.cpus[0].breakpoints == set() and s.machine.cpus[0].watch_frames == {}
    out = execute(s, "continue").plain()
    assert "Hello from a bare-metal s390x guest" in out and "breakpoint" not in out


def test_gdbserver_command_errors_are_one_line() -> None:
    s = open_session(str(HELLO), cpus=1)
    assert "gdbserver takes PORT" in execute(s, "gdbserver udp::1").plain()
    assert "usage: gdbserver" in execute(s, "gdbserver 1 2").plain()


def _console(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    script = tmp_path / "s.zuv"
    script.write_text("break uvc set_shared_access\ncontinue\ngdbserver 0\nstatus\ncontinue\n")
    return subprocess.Popen([sys.executable, "-m", "emulator.cli", "console", "--deterministic", *extra,
                             "--script", str(script), str(DEMO_IMAGE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize("debug", [False, True])
def test_gdb_multiarch_on_zuv_console_on_the_secure_demo(tmp_path: Path, debug: bool) -> None:
    if shutil.which("gdb-multiarch") is None:
        pytest.fail("gdb-multiarch is missing: run tools/setup.sh")
    zuv = _console(tmp_path, *(["--debug-secure"] if debug else []))
    try:
        port = listening_port(_listening(zuv))
        gdb = subprocess.run(
            ["gdb-multiarch", "-nx", "-batch", "-ex", f"target remote 127.0.0.1:{port}",
             "-ex", "info registers pswa r2", "-ex", f"x/s {SECRET:#x}", "-ex", "info threads",
             "-ex", "detach", str(DEMO_KERNEL)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out, _err = zuv.communicate(timeout=120)
    finally:
        zuv.kill()
    transcript = gdb.stdout + gdb.stderr
    # with the capability the console stopped before the guest's UVC; without it, once the Ultravisor's log
    # shows it completed (the host cannot stop a secure guest before its own UV call)
    pc, off = (0x10836, 54) if debug else (0x1083A, 58)
    assert f"0x{pc:016x} in share ()" in transcript
    assert f"{pc:#x} <share+{off}>" in transcript  # pswa
    assert "Thread 1 (CPU 0 operating)" in transcript and "detached" in transcript
    if debug:
        assert "r2             0x2aa90" in transcript
        assert '"zuv secret: the launch code is 0451-ALPHA' in transcript
    else:
        assert "r2             <unavailable>" in transcript
        assert "Cannot access memory at address 0x15000" in transcript and "0451-ALPHA" not in transcript
    # the console took the machine back and ran the demo on
    assert f"gdb session ended (exit code 0); the console has the machine: CPU 0 operating at {pc:#x}" in out
    assert "breakpoint 1: UVC 0x1000 Set Shared Access" in out.split("(zuv) status", 1)[1]


def test_a_session_opened_with_the_capability_serves_the_owner_view_and_ctrl_c_ends_the_wait() -> None:
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)
    execute(s, "break uvc set_shared_access")
    execute(s, "continue")
    c, t, box = _serve(s)  # no debug_secure argument: the session's grant decides
    assert bytes.fromhex(c.ask(f"m{SECRET:x},1e")) == SECRET_TEXT
    c.raw(frame(b"D"))
    assert c.reply() == "OK"
    t.join(30)
    # waiting for a gdb that never comes: the console's stop (Ctrl-C) ends the wait
    box2: dict[str, str] = {}
    waiting = threading.Event()

    def serve() -> None:
        box2["line"] = serve_gdb(s, "0", log=lambda line: "waiting for gdb" in line and waiting.set())

    t2 = threading.Thread(target=serve, daemon=True)
    t2.start()
    assert waiting.wait(60)  # the stub listens: the stop lands in its wait for gdb
    s.stop("interrupted (Ctrl-C)")
    t2.join(10)
    assert not t2.is_alive() and box2["line"].startswith("no gdb attached")
    assert "operating" in execute(s, "status").plain()  # the console goes on


def test_zuv_console_gdb_option_serves_gdb_before_the_script(tmp_path: Path) -> None:
    script = tmp_path / "s.zuv"
    script.write_text("regs\ncontinue\n")
    zuv = subprocess.Popen([sys.executable, "-m", "emulator.cli", "console", "--gdb", "tcp::0",
                            "--script", str(script), str(HELLO)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        waiting = _listening(zuv)
        c = Client(listening_port(waiting))
        assert c.ask(f"Z0,{MAIN:x},2") == "OK" and c.ask("c") == "T05thread:1;"
        c.raw(frame(b"D"))
        assert c.reply() == "OK"
        out, err = zuv.communicate(timeout=60)
    finally:
        zuv.kill()
    assert "gdb session ended (exit code 0); the console has the machine: CPU 0 operating at 0x10800" in err
    assert "(zuv) regs" in out and "Hello from a bare-metal s390x guest" in out and zuv.returncode == 0


def test_debug_capability_watchpoint_stops_at_the_guest_reading_its_secret() -> None:
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)
    execute(s, "break uvc set_shared_access")
    execute(s, "continue")
    c, t, box = _serve(s)
    assert c.ask(f"Z3,{SECRET:x},8") == "OK"  # rwatch on the secret page: the secure guest's own read
    assert c.ask("c") == f"T05thread:1;rwatch:{SECRET:x};"
    pc = int(c.ask("p1"), 16)
    assert s.symbolize(pc).startswith("main")  # the demo's digest of its secret, inlined in main
    c.raw(frame(b"k"))  # kill: the gdb session ends, the console keeps the machine
    t.join(30)
    assert "secret intact: yes" in execute(s, "continue").plain()

"""The console on a secure host: the bundled SE demo in the hypervisor's VM loop, both points of view, the
hypervisor's and the Ultravisor's providers, every breakpoint kind on a secure guest, the interactive app."""

from __future__ import annotations

import ctypes
import io
import subprocess
import sys
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.plain_text import PlainTextOutput

from emulator.console.app import run_interactive
from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.secure import SecureMachine, is_se_image, owner_machine
from emulator.errors import SecureStorageAccess
from emulator.hypervisor.boot import DEMO_IMAGE, DEMO_KERNEL

ROOT = Path(__file__).resolve().parent.parent
SECRET = 0x15000  # guest absolute address of the demo's secret page (it prints it)


def demo(**kw):
    """The secure demo in a console session with the machine's debug capability (asked for by name: these
    tests stop before the guest's own UV calls and at its addresses, and look at it as its owner)."""
    kw.setdefault("deterministic", True)
    kw.setdefault("debug_secure", True)
    return open_session(str(DEMO_IMAGE), **kw)


def test_se_images_are_recognised_and_boot_on_a_secure_host():
    assert is_se_image(DEMO_IMAGE) and not is_se_image(DEMO_KERNEL) and not is_se_image(ROOT / "missing.se")
    s = demo()
    assert isinstance(s.machine, SecureMachine)
    assert s.symbols["main"] > 0 and s.program.kind == "se-image"
    info = execute(s, "info").plain()
    assert "secure: not yet" in info and "provider intercepts: HypervisorIntercepts" in info
    assert "non-secure" in execute(s, "status").plain()  # stage3a: a normal SIE guest


def test_guest_uvc_breakpoint_stops_before_step_executes_it_and_continue_does_not_stop_twice():
    s = demo()
    s.add_breakpoint("uvc", "set_shared_access")
    stop = s.cont()
    assert stop.kind == "uvc" and "not executed yet" in stop.reason and s.cpu.pc == s.symbols["share"] + 0x36
    assert s.is_secure()
    n = len(s.uv_calls())
    stop = s.step()
    assert s.cpu.pc == s.symbols["share"] + 0x3A
    assert any("0x1000 Set Shared Access by guest: cc 0 rc 0x0001" in d for d in stop.details)
    assert s.uv_calls()[n].caller == "guest" and s.uv_calls()[n].fields == (("paddr", "0x19000"),)
    # continue from the next stop: the UVC runs once (no second stop on its completion), the next one stops
    stop = s.cont()
    assert stop.kind == "uvc" and s.cpu.pc == s.symbols["share"] + 0x36
    before = len(s.uv_calls())
    stop = s.cont()
    assert stop.kind == "uvc" and len(s.uv_calls()) == before + 1


def test_break_uvc_walks_the_secure_boot_one_hypervisor_call_at_a_time():
    s = demo()
    s.add_breakpoint("uvc", "unpack_img")
    gaddrs, tweaks = [], []
    for i in range(56):  # the demo's components: 56 pages, one Unpack each, every one stopped before
        stop = s.cont()
        assert stop.kind == "uvc" and "before UVC 0x0301 Unpack (host)" in stop.reason, stop.reason
        assert s.suspended and s.machine.paused_call.code == 0x0301
        fields = dict(s.machine.paused_call.fields)
        gaddrs.append(int(fields["gaddr"], 16))
        tweaks.append(fields["tweak"].split())
        assert any(line.startswith("UVCB at host ") for line in stop.details)
        unpacked = [c for c in s.uv_calls() if c.cmd == 0x0301]
        assert len(unpacked) == i  # the call is not issued yet: the log has the ones before it
    assert gaddrs[0] == SECRET and gaddrs == sorted(gaddrs)
    for prev, cur in zip(tweaks, tweaks[1:]):  # the second tweak word: the page's offset in its component
        assert cur[1] == "0" or (cur[0] == prev[0] and int(cur[1], 16) == int(prev[1], 16) + 0x1000)
    assert len({t[0] for t in tweaks}) == 2  # two components
    # step issues the last Unpack and stops before the hypervisor's next call, Verify; step again: Set CPU
    # State; a third step issues it and the guest goes on at its entry
    stop = s.step()
    assert stop.kind == "uvc" and "stopped before UVC 0x0302 Verify (host)" in stop.reason
    assert any("0x0301 Unpack by host: cc 0 rc 0x0001" in d for d in stop.details)
    assert "Verify" not in execute(s, "uvlog 1").plain()
    assert "stopped before UVC 0x0330 Set CPU State" in s.step().reason
    stop = s.step()
    assert not s.suspended
    assert stop.reason.startswith("the hypervisor finished its work: the guest goes on at")
    assert [c.cmd for c in s.uv_calls()][-3:] == [0x0301, 0x0302, 0x0330]
    assert s.is_secure() and s.cpu_state() == "operating"
    s.delete_breakpoint(None)
    stop = s.cont()  # and then the guest runs to its end
    assert stop.kind == "end" and b"EXIT: STATUS=1" in bytes(s.machine.console)


def test_a_boot_stopped_inside_the_hypervisor_can_be_looked_at_and_closed():
    s = demo()
    s.add_breakpoint("uvc", "verify")
    s.cont()
    for cmd in ("status", "regs", "pages", "uvlog 2", "info", "dual abs:0x15000 16", "breaks", "psw"):
        out = execute(s, cmd).plain()
        assert "Traceback" not in out and "error" not in out.lower(), (cmd, out)
    assert "0x0301 Unpack" in execute(s, "uvlog 1").plain()
    # a guest UVC breakpoint keeps working after the boot
    s.add_breakpoint("uvc", "set_shared_access")
    stop = s.cont()  # issues Verify (once), ends the boot, stops before the guest's own UVC
    assert "Set Shared Access on CPU 0" in stop.reason and "not executed yet" in stop.reason
    assert [c.cmd for c in s.uv_calls()].count(0x0302) == 1
    # closing a session whose machine waits inside the hypervisor unwinds the boot
    s2 = demo()
    s2.add_breakpoint("uvc", "unpack_img")
    s2.cont()
    assert s2.suspended
    s2.machine.close()
    assert not s2.suspended and not s2.machine.vm.pv


def test_host_view_hides_a_secure_cpus_registers_and_shows_the_state_description():
    s = demo()
    s.add_breakpoint("uvc", "set_shared_access")
    s.cont()
    owner_r12 = f"{s.cpu.gpr(12):016x}"
    host = execute(s, "regs").plain()
    assert "its registers are held by the Ultravisor" in host and "PSW (SD, not authoritative)" in host
    assert owner_r12 not in host and "r12" not in host
    assert "held by the Ultravisor" in execute(s, "psw").plain()
    assert "held by the Ultravisor" in execute(s, "regs cr").plain()
    s.set_view("owner")
    owner = execute(s, "regs").plain()
    assert "owner view (emulator privilege" in owner and f"r12 {owner_r12}" in owner
    # the owner view's registers are the Ultravisor's record of the secure CPU
    scpu = owner_machine(s.machine).uv.secure_cpu(s.machine.vm.pv.cpu_handles[0])
    assert s.cpu.gprs() == scpu.gprs and s.cpu.psw == scpu.psw


def test_dual_shows_plaintext_trap_then_ciphertext_after_the_hypervisors_read():
    s = demo()
    s.add_breakpoint("addr", "share")
    s.cont()
    rows = execute(s, f"dual abs:{SECRET:#x} 16").plain().splitlines()
    assert "7a757620 73656372" in rows[1].split("|")[0]  # "zuv secr"
    host_column = " ".join(r.split("|")[1].strip() for r in rows[1:])  # 80 columns: the note wraps in it
    assert "trap: PGM 0x3D secure-storage access" in host_column and "secure" in rows[1].split("|")[2]
    s.delete_breakpoint(None)
    s.add_breakpoint("secure")
    stop = s.cont()
    assert stop.kind == "secure" and f"guest {SECRET:#x}" in stop.reason and "read" in stop.reason
    text = execute(s, f"dual abs:{SECRET:#x} 16").plain()
    assert "exported" in text and "ciphertext of export 1" in text and "trap" not in text
    row = text.splitlines()[1].split("|")
    assert row[0].split()[1:] == row[1].split()[1:] and "7a757620" not in row[0]
    assert "exported   owner tag 0\n    guest 0x15000" in execute(s, "pages").plain()  # 80 columns: 2 lines
    s.columns = 160
    assert "exported   owner tag 0  guest 0x15000" in execute(s, "pages").plain()
    assert s.cont().kind == "end" and b"secret intact: yes" in s.machine.console


def test_sie_breakpoints_come_from_the_hypervisors_exit_stream():
    s = demo()
    s.add_breakpoint("sie", "0x70")
    stop = s.cont()
    assert (
        stop.kind == "sie"
        and "0x70 (PV prefix pages not secure) on vCPU 0 (secure): prefix 0x0" in stop.reason
    )
    s.delete_breakpoint(None)
    s.add_breakpoint("sie", "0x68")
    stop = s.cont()
    assert "DIAG 0x500 (ipa 0x8302 ipb 0x50000000)" in stop.reason
    assert "pv_grregs 0-7                0 3 0 0 19000 500" in execute(s, "regs").plain()
    stop = s.step()
    assert any("completed the intercepted instruction" in d for d in stop.details)
    s.delete_breakpoint(None)
    s.add_breakpoint("sie")  # any: the host program interruption 0x3e of the re-import comes too
    seen = []
    while s.cpu.state == "operating" and (stop := s.cont()).kind == "sie":
        seen.append(stop.reason)
    assert any("host program interruption 0x3e for guest page 0x15000" in r for r in seen)
    assert any("0x1c (enabled wait)" in r or "0x68" in r for r in seen)


def test_step_into_an_interception_reports_it():
    s = demo()
    s.add_breakpoint("sie", "0x68")
    s.cont()
    s.delete_breakpoint(None)
    stop = s.step()  # the entry completes the intercepted DIAG first
    assert any("completed the intercepted instruction" in d for d in stop.details)
    stop = s.step(100_000)  # stops early at the next interception
    assert stop.reason.startswith("stepped ") and int(stop.reason.split()[1]) < 100_000
    assert any("SIE interception 0x68 (PV instruction): DIAG 0x500" in d for d in stop.details), stop.details
    assert any(
        "the hypervisor emulated it; the Ultravisor completes the instruction" in d for d in stop.details
    )


def test_watchpoint_on_secure_guest_memory_sees_the_exports_and_imports():
    s = demo()
    s.add_breakpoint("addr", "share")
    s.cont()
    s.delete_breakpoint(None)
    s.add_breakpoint("watch", "secret")
    stop = s.cont()
    assert stop.kind == "watch" and "firmware store" in stop.reason  # the Ultravisor's export: ciphertext
    s.set_view("owner")  # the host view shows no value of a secure page (tests/test_trust_console.py)
    stop = s.cont()
    assert stop.kind == "watch" and "-> 7a75762073656372" in stop.reason  # the import: plaintext again


def test_break_secure_catches_host_side_python_and_not_the_consoles_own_reads():
    s = demo()
    s.add_breakpoint("addr", "share")
    s.cont()
    s.add_breakpoint("secure")
    host = s.machine.hv.host  # the hypervisor's host view
    addr = s.machine.vm.mso + SECRET
    execute(s, f"mem host:{addr:#x} 8")  # the console's own host-view read: trapped, not a hit
    assert s._take_hits() == []
    s.running = True  # as during continue: the hypervisor's code touches the page
    with pytest.raises(SecureStorageAccess):
        host.read(addr, 8)
    s.running = False
    hits = s._take_hits()
    assert len(hits) == 1 and f"at host {addr:#x} (guest {SECRET:#x})" in hits[0][1]
    s.delete_breakpoint(None)
    assert owner_machine(s.machine).memory.secure_access_listeners == []


def test_uv_event_sink_gives_structured_events():
    s = demo()
    events = []
    owner_machine(s.machine).uv.add_event_sink(events.append)
    s.add_breakpoint("addr", "main")
    s.cont()
    owner_machine(s.machine).uv.remove_event_sink(events.append)
    names = [e.name for e in events]
    assert names[:3] == ["qui", "init_uv", "create_sec_conf"] and "verify_img" in names
    cfg = events[2]
    assert (
        cfg.caller.kind == "host"
        and cfg.cc == 0
        and cfg.rc == 1
        and len(cfg.block) == ctypes.sizeof(cfg.layout)
    )
    fields = dict(cfg.fields())
    assert fields["guest_stor_len"] == 128 << 20 and fields["guest_handle"] == s.machine.vm.pv.handle
    n = len(events)
    s.step()
    assert len(events) == n  # removed


def test_continue_to_the_end_and_a_time_limit():
    s = demo(deterministic=False)
    stop = s.cont(time_limit=60)
    assert stop.kind == "end" and "all CPUs stopped" in stop.reason
    assert "secret intact: yes" in bytes(s.machine.console).decode()
    assert "error: CPU 0 is stopped" in execute(s, "step").plain()


def test_interactive_console_on_the_secure_demo_through_a_pipe():
    s = demo()
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("break uvc set_shared_access\rcontinue\r")
        pipe.close()
        assert run_interactive(s, input=pipe, output=PlainTextOutput(buf)) == 0
    assert s.cpu.pc == s.symbols["share"] + 0x36
    buf = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("step\rregs\rview owner\rregs\rdual abs:0x15000 16\rquit 5\r")
        assert run_interactive(s, input=pipe, output=PlainTextOutput(buf)) == 5
    text = buf.getvalue()
    assert "0x1000 Set Shared Access by guest: cc 0 rc 0x0001" in text
    assert "PSW (SD, not authoritative)" in text and "owner view (emulator privilege" in text
    assert "trap: PGM 0x3D" in text and "secure-storage access" in text


def test_zuv_console_on_an_se_image_from_stdin():
    p = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "console", str(DEMO_IMAGE), "--deterministic",
         "--debug-secure"],
        input="break uvc set_shared_access\ncontinue\nstep\nassert pc == share+0x3a\nuvlog 1\n",
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Set Shared Access" in p.stdout and "ok: pc == share+0x3a" in p.stdout


def test_zuv_console_on_a_truncated_se_image_says_where_it_ends(tmp_path):
    """Cut before its metadata, the file no longer parses as an SE image; it still starts like one, so the
    console takes the secure path, which refuses it in one line (it used to run it as a flat kernel)."""
    cut = tmp_path / "cut.se"
    cut.write_bytes(DEMO_IMAGE.read_bytes()[:5000])
    assert is_se_image(cut)
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "console", str(cut)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"zuv: {cut}: a truncated SE image: it starts with stage3a's PSW but ends at 0x1388, before the "
        "image metadata at 0xc000 or genprotimg 2.35's IPL parameter block at 0x13000"
    )

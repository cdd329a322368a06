"""The GDB remote stub (``emulator.gdb``): the protocol as GDB speaks it, checked with a socket client, and a
gdb-multiarch session in batch mode against ``zuv run -S --gdb``."""

import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator.gdb.stub import GdbStub, checksum, escape_binary, frame, parse_endpoint
from emulator.gdb.target import REGISTERS, TARGET_XML
from emulator.hw.memory import OWNER_UV
from emulator.machine.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "guests/images/hello.elf"
MAIN = 0x10800  # hello.elf's main


class Client:
    """A minimal GDB: sends packets, checks acknowledgements and checksums."""

    def __init__(self, port: int) -> None:
        # the stub's process starts slowly on a loaded machine (>5 s at load 10)
        until = time.monotonic() + 60
        while time.monotonic() < until:
            try:
                self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
                self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""

    def raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def reply(self) -> str:
        while True:
            self.buf = self.buf.lstrip(b"+")
            start, end = self.buf.find(b"$"), self.buf.find(b"#")
            if start >= 0 and end > start and len(self.buf) >= end + 3:
                payload, cs = self.buf[start + 1 : end], self.buf[end + 1 : end + 3]
                self.buf = self.buf[end + 3 :]
                assert int(cs, 16) == checksum(payload)
                self.s.sendall(b"+")
                return payload.decode("latin-1")
            chunk = self.s.recv(65536)
            assert chunk, "the stub closed the connection"
            self.buf += chunk

    def ask(self, payload: str) -> str:
        self.s.sendall(frame(payload.encode()))
        return self.reply()


@pytest.fixture
def session():
    """A loaded hello.elf machine (2 CPUs) under a stub serving on an ephemeral port, not started (-S)."""
    m = Machine(64 << 20, 2, console_out=lambda b: None)
    m.load(str(HELLO))
    stub = GdbStub(m, port=0)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("code", stub.serve(start_running=False)), daemon=True)
    t.start()
    c = Client(stub.port)
    yield m, c, t, box
    stub.close()


def test_framing_and_endpoints():
    assert frame(b"OK") == b"$OK#9a"
    assert escape_binary(b"a#b$c}d*") == b"a}\x03b}\x04c}]d}\x0a"
    assert parse_endpoint("tcp::1234") == ("127.0.0.1", 1234)
    assert parse_endpoint("tcp:0.0.0.0:99") == ("0.0.0.0", 99)
    assert parse_endpoint("tcp::0") == ("127.0.0.1", 0)  # any free port: the stub's line names it
    for bad in ("udp::1", "tcp::", "tcp::70000", "1234"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_target_description_has_gdb_s390_features():
    for feature in ("s390.core", "s390.acr", "s390.fpr", "s390.vx", "s390.cr", "s390.virt"):
        assert f'"org.gnu.gdb.{feature}"' in TARGET_XML
    names = [r.name for r in REGISTERS]
    assert names[:4] == ["pswm", "pswa", "r0", "r1"] and "cr15" in names and "v31" in names


def test_registers_memory_and_threads(session):
    m, c, _t, _box = session
    assert "qXfer:features:read+" in c.ask("qSupported:multiprocess+")
    xml = c.ask("qXfer:features:read:target.xml:0,fff")
    assert xml[0] in "ml" and "s390:64-bit" in xml
    assert c.ask("?").startswith("T05thread:1;")
    assert c.ask("qfThreadInfo") == "m1,2" and c.ask("qsThreadInfo") == "l"
    regs = bytes.fromhex(c.ask("g"))
    assert len(regs) == sum(r.bits // 8 for r in REGISTERS)
    pswm, pswa = struct.unpack(">QQ", regs[:16])
    assert pswa == 0x10000 and pswm == m.cpus[0].psw[0]
    assert c.ask("P4=00000000deadbeef") == "OK" and m.cpus[0].gpr(2) == 0xDEADBEEF  # r2 is register 4
    assert c.ask("p4") == "00000000deadbeef"
    code = bytes.fromhex(c.ask("m10000,8"))
    assert code == m.memory.read(0x10000, 8)
    assert c.ask("M20000,4:cafef00d") == "OK" and m.memory.read(0x20000, 4) == bytes.fromhex("cafef00d")
    assert c.ask("Hg2") == "OK" and c.ask("p1") == "0000000000000000"  # CPU 1's PSW address: not started
    assert c.ask("Hg9") == "E01" and c.ask("T9") == "E01" and c.ask("T2") == "OK"
    assert c.ask("mffffffffffff0000,4") == "E14"  # beyond storage: refused, no traceback


def test_breakpoint_step_and_continue_to_the_end(session):
    m, c, t, box = session
    assert c.ask(f"Z0,{MAIN:x},2") == "OK"
    assert c.ask("c").startswith("T05thread:1;")
    assert m.cpus[0].pc == MAIN
    assert c.ask("vCont;s:1").startswith("T05")
    assert m.cpus[0].pc == MAIN + 6  # stmg is six bytes
    assert c.ask(f"z0,{MAIN:x},2") == "OK"
    assert c.ask("c") == "W00"  # hello.elf ends with EXIT: STATUS=1
    t.join(10)
    assert box["code"] == 0


def test_secure_storage_is_refused_to_the_debugger(session):
    m, c, _t, _box = session
    m.memory.set_owner(0x30, OWNER_UV)  # frame 0x30 (absolute 0x30000) now belongs to the Ultravisor
    assert c.ask("m30000,10") == "E14"
    assert c.ask("M30000,2:4142") == "E14"


def test_a_stop_on_another_cpu_selects_its_thread_for_the_registers():
    """GDB reads the registers of the thread a stop reply names without an Hg first (QEMU's stub selects
    it): CPU 1 stopping at a breakpoint must answer g and p with CPU 1's PSW, not CPU 0's (gdb said "Thread 2
    received signal SIGTRAP ... in main ()" instead of "Thread 2 hit Breakpoint 1 ... in cpu1_main ()")."""
    from elftools.elf.elffile import ELFFile

    sigp = ROOT / "guests" / "images" / "sigp.elf"
    with open(sigp, "rb") as f:
        cpu1_main = next(x["st_value"] for x in ELFFile(f).get_section_by_name(".symtab").iter_symbols()
                         if x.name == "cpu1_main")  # fmt: skip
    m = Machine(64 << 20, 2, console_out=lambda b: None)
    m.load(str(sigp))
    lines: list[str] = []
    stub = GdbStub(m, port=0, log=lines.append)
    t = threading.Thread(target=stub.serve, kwargs={"start_running": False}, daemon=True)
    t.start()
    try:
        c = Client(stub.port)
        assert c.ask("Hg1") == "OK"  # CPU 0 selected before the run
        assert c.ask(f"Z0,{cpu1_main:x},2") == "OK"
        assert c.ask("c") == "T05thread:2;"
        assert c.ask("p1") == f"{cpu1_main:016x}"  # pswa of CPU 1
        assert c.ask("g")[16:32] == f"{cpu1_main:016x}"
        assert c.ask(f"z0,{cpu1_main:x},2") == "OK"
        c.raw(frame(b"k"))
        t.join(10)
        assert lines[-1] == "gdb killed the program"  # said, as QEMU's "Terminated via GDBstub"
    finally:
        stub.close()


@pytest.mark.toolchain
def test_interrupt_stops_a_running_machine(tmp_path):
    # a guest that spins forever
    (tmp_path / "spin.s").write_text(".text\n.globl _start\n_start: j _start\n")
    subprocess.run(["s390x-linux-gnu-as", "-o", tmp_path / "spin.o", tmp_path / "spin.s"], check=True)
    ld = ["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-o", tmp_path / "spin.elf", tmp_path / "spin.o"]
    subprocess.run(ld, check=True)
    m = Machine(16 << 20, 1, console_out=lambda b: None)
    m.load(str(tmp_path / "spin.elf"))
    stub = GdbStub(m, port=0)
    t = threading.Thread(target=stub.serve, kwargs={"start_running": False}, daemon=True)
    t.start()
    c = Client(stub.port)
    c.raw(frame(b"c"))
    time.sleep(0.3)
    c.raw(b"\x03")
    assert c.reply().startswith("T02thread:1;")  # SIGINT
    assert c.ask("p1") == f"{0x10000:016x}"
    c.raw(frame(b"k"))
    t.join(10)
    stub.close()


def test_gdb_multiarch_session(tmp_path):
    if shutil.which("gdb-multiarch") is None:
        pytest.fail("gdb-multiarch is missing: run tools/setup.sh")
    zuv = subprocess.Popen([sys.executable, "-m", "emulator.cli", "run", "-S", "--cpus", "2",
                            "--gdb", "tcp::0", str(HELLO)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        waiting = _listening(zuv)
        port = listening_port(waiting)
        gdb = subprocess.run(
            ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture s390:64-bit",
             "-ex", f"target remote 127.0.0.1:{port}", "-ex", "info registers pswa",
             "-ex", f"break *{MAIN:#x}", "-ex", "continue", "-ex", "stepi", "-ex", "info registers pswa r15",
             "-ex", "x/2i $pc", "-ex", "info threads", "-ex", "delete", "-ex", "continue", str(HELLO)],
            capture_output=True, text=True, timeout=120,
        )
        out, err = zuv.communicate(timeout=60)
    finally:
        zuv.kill()
    transcript = gdb.stdout
    assert "0x10000 <_start>" in transcript
    assert "Breakpoint 1, 0x0000000000010800 in main ()" in transcript
    assert "0x10806 <main+6>" in transcript and "lay\t%r15,-200(%r15)" in transcript
    assert "Thread 1 (CPU 0 operating)" in transcript and "Thread 2 (CPU 1 stopped)" in transcript
    assert "exited normally" in transcript
    assert "Hello from a bare-metal s390x guest" in out and zuv.returncode == 0
    assert f"waiting for gdb on 127.0.0.1:{port}" in waiting and "gdb attached" in err


def listening_port(text: str) -> int:
    """The port in a stub's "waiting for gdb on HOST:PORT" line (it was given port 0: any free one, so no
    other process can take it between a choice and the bind)."""
    m = re.search(r"waiting for gdb on [^\s]+:(\d+)", text)
    assert m is not None, text
    return int(m.group(1))


def _listening(zuv: subprocess.Popen[str]) -> str:
    """Standard error of a starting ``zuv ... --gdb`` up to its line saying it listens (or its end): gdb's
    ``target remote`` gives up after its connect timeout, shorter than a loaded machine's start of zuv."""
    seen = ""
    while "waiting for gdb" not in seen:
        line = zuv.stderr.readline()
        if not line:
            break
        seen += line
    return seen


WATCHED = r"""
.text
.globl _start
_start:
    larl %r1,val
    lghi %r2,0
loop:
    aghi %r2,1
    lg %r3,8(%r1)               # reads `other`, in the same frame as `val`
    stg %r2,0(%r1)              # writes `val`
    j loop
    .align 4096
val:   .quad 0
other: .quad 0x77
"""


@pytest.mark.toolchain
def test_watchpoints_stop_after_the_access_they_watch(tmp_path):
    (tmp_path / "w.s").write_text(WATCHED)
    subprocess.run(["s390x-linux-gnu-as", "-o", tmp_path / "w.o", tmp_path / "w.s"], check=True)
    subprocess.run(
        ["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-o", tmp_path / "w.elf", tmp_path / "w.o"], check=True
    )
    m = Machine(16 << 20, 1, console_out=lambda b: None)
    prog = m.load(str(tmp_path / "w.elf"))
    val, other = prog.symbols["val"], prog.symbols["other"]
    stub = GdbStub(m, port=0)
    t = threading.Thread(target=stub.serve, kwargs={"start_running": False}, daemon=True)
    t.start()
    c = Client(stub.port)
    assert c.ask(f"Z2,{val:x},8") == "OK"
    # each store stops once, after it: the new value is there, the read of `other` never stops
    for n in (1, 2):
        assert c.ask("c") == f"T05thread:1;watch:{val:x};"
        assert c.ask(f"m{val:x},8") == f"{n:016x}"
    assert c.ask(f"z2,{val:x},8") == "OK" and c.ask(f"Z3,{other:x},8") == "OK"
    assert c.ask("c") == f"T05thread:1;rwatch:{other:x};"
    assert c.ask(f"z3,{other:x},8") == "OK" and c.ask(f"Z4,{val:x},8") == "OK"
    assert c.ask("c") == f"T05thread:1;awatch:{val:x};"
    assert c.ask("Z2,ffffffffffff0000,8") == "E01"  # not addressable: refused
    c.raw(frame(b"k"))
    t.join(10)
    stub.close()


def test_a_program_that_ends_before_gdb_attaches_ends_the_stub():
    # QEMU's -gdb without -S: the program runs at once; when it ends with nobody attached, so does zuv
    m = Machine(64 << 20, 1, console_out=lambda b: None)
    m.load(str(HELLO))
    stub = GdbStub(m, port=0)
    try:
        assert stub.serve(start_running=True) == 0
    finally:
        stub.close()


def test_a_run_is_over_with_its_result_in_place_before_the_stub_is_woken(monkeypatch):
    """The run's thread sets ``over`` (result and exit code in place) before it writes the wake byte: the
    stub's loop, woken, saw the thread still alive and waited another second on the socket (a continue of
    0.18 s took 1.17 s through the stub)."""
    import emulator.gdb.stub as stub_mod

    m = Machine(64 << 20, 1, console_out=lambda b: None)
    m.load(str(HELLO))
    stub = GdbStub(m, port=0)
    seen = []
    runs = []  # the run, known before its thread starts (a short run ends before _start_run returns)
    real_write = stub_mod.os.write

    class Run(stub_mod._Run):  # noqa: SLF001 - the run record
        def __init__(self) -> None:
            super().__init__()
            runs.append(self)

    def write(fd, data):
        if fd == stub._wake_w:  # noqa: SLF001 - the wake pipe
            seen.append((runs[0].over.is_set(), stub._done))  # noqa: SLF001
        return real_write(fd, data)

    monkeypatch.setattr(stub_mod, "_Run", Run)
    monkeypatch.setattr(stub_mod.os, "write", write)
    try:
        run = stub._start_run()  # noqa: SLF001 - one run to the program's end
        run.join()
        assert seen == [(True, 0)] and not run.alive()
    finally:
        stub.close()

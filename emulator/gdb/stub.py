"""The GDB remote serial protocol over TCP for one zuv ``Machine``: registers, memory, breakpoints, stepping,
continuing and interrupting, each CPU a thread (thread id = CPU address + 1), as QEMU's gdbstub serves it.

Registers and memory go through a ``TargetAccess``: ``CpuAccess`` (``zuv run``) reads and writes through the
selected CPU's own translation (DAT, prefixing) with every check the CPU makes, owner tags included: a secure
guest's storage is refused to the debugger (``E14``) exactly as to the host. Reads and writes do not set
reference or change bits. A write drops translated code through the memory's listeners, so a patched
instruction runs as patched. ``zuv console`` serves its session's host view or, with the machine's debug
capability, the owner view (``emulator/console/gdbserve.py``); a register the view does not show is sent as
unavailable (GDB prints ``<unavailable>``).
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from emulator.errors import EmulatorError
from emulator.gdb.target import REGISTERS, TARGET_XML, Reg, read_register, write_register
from emulator.hw.cpu import OPERATING, Cpu, CpuExit
from emulator.hw.results import RunResult

__all__ = ["GdbStub", "TargetAccess", "CpuAccess", "parse_endpoint", "checksum", "frame", "escape_binary"]

SIGTRAP = 5
SIGINT = 2
_EFAULT = "E14"


class StubMachine(Protocol):
    """What the stub needs of a machine (``emulator.machine.machine.Machine`` has it)."""

    cpus: dict[int, Cpu]

    def run(self, max_insns: int | None = None, time_limit: float | None = None) -> RunResult: ...
    def step(self, count: int = 1, cpu: int = 0) -> CpuExit: ...
    def set_breakpoints(self, addrs: set[int]) -> None: ...
    def request_halt(self, reason: str = "halted") -> None: ...


class TargetAccess(Protocol):
    """How the stub reads and writes registers and memory of a CPU (by CPU address): the point of view."""

    def read_register(self, cpu: int, reg: Reg) -> bytes | None:
        """The register's big-endian bytes, or None when this view does not show it (unavailable)."""
        ...

    def write_register(self, cpu: int, reg: Reg, data: bytes) -> bool:
        """Set the register; False when this view may not."""
        ...

    def pieces(self, cpu: int, addr: int, length: int) -> list[tuple[int, int]] | None:
        """(host absolute, length) per page of a virtual range of the CPU, or None when this view may not
        touch all of it (no translation, beyond storage, a page the view may not access)."""
        ...

    def read(self, host: int, length: int) -> bytes:
        """Bytes at host absolute ``host`` (a piece ``pieces`` gave)."""
        ...

    def write(self, host: int, data: bytes) -> None:
        """Store at host absolute ``host`` (a piece ``pieces`` gave; drops translated code)."""
        ...

    def may_break(self) -> bool:
        """Whether this view may set breakpoints and watchpoints."""
        ...


class CpuAccess:
    """The view of ``zuv run``'s stub: each CPU's own registers, and memory through its checked translation
    (DAT, prefixing, owner tags: a secure page is refused as to the host)."""

    def __init__(self, machine: StubMachine) -> None:
        self._m = machine

    def _cpu(self, which: int) -> Cpu:
        cpus = self._m.cpus
        return cpus[which] if which in cpus else cpus[min(cpus)]

    def read_register(self, cpu: int, reg: Reg) -> bytes | None:
        """The register of the CPU."""
        return read_register(self._cpu(cpu), reg)

    def write_register(self, cpu: int, reg: Reg, data: bytes) -> bool:
        """Set the register of the CPU."""
        return write_register(self._cpu(cpu), reg, data)

    def pieces(self, cpu: int, addr: int, length: int) -> list[tuple[int, int]] | None:
        """The range through the CPU's translation with every check it makes (no reference bits)."""
        c = self._cpu(cpu)
        out: list[tuple[int, int]] = []
        while length > 0:
            n = min(length, 0x1000 - (addr & 0xFFF))
            try:
                host = c.translate(addr, write=False, mark=False)
            except Exception:  # noqa: BLE001 - any refusal (access exception, intercept) is EFAULT
                return None
            if host + n > c.mem.size:
                return None
            out.append((host, n))
            addr, length = (addr + n) & 0xFFFFFFFFFFFFFFFF, length - n
        return out

    def read(self, host: int, length: int) -> bytes:
        """Storage (the translation checked it)."""
        return self._cpu(min(self._m.cpus)).mem.read(host, length)

    def write(self, host: int, data: bytes) -> None:
        """Store (the translation checked it)."""
        self._cpu(min(self._m.cpus)).mem.write(host, data)

    def may_break(self) -> bool:
        """Breakpoints are the CPUs' exits: always."""
        return True


def parse_endpoint(text: str) -> tuple[str, int]:
    """QEMU's ``-gdb`` device: ``tcp::PORT`` (loopback here) or ``tcp:HOST:PORT``; port 0 is any free port
    (the stub's "waiting for gdb on HOST:PORT" line names it); ValueError if malformed."""
    kind, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            f"--gdb takes tcp::PORT or tcp:HOST:PORT with a port 0-65535 (0: any free port), not {text!r}"
        )
    return host or "127.0.0.1", int(port)


def checksum(data: bytes) -> int:
    """The packet checksum: the sum of the bytes modulo 256."""
    return sum(data) & 0xFF


def frame(payload: bytes) -> bytes:
    """``$payload#cs``."""
    return b"$" + payload + b"#" + f"{checksum(payload):02x}".encode()


def escape_binary(data: bytes) -> bytes:
    """Binary data in a reply: ``#``, ``$``, ``}`` and ``*`` escaped as ``}`` and the byte XOR 0x20."""
    out = bytearray()
    for b in data:
        if b in (0x23, 0x24, 0x7D, 0x2A):
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


class GdbStub:
    """Serve one GDB connection for ``machine``; ``serve`` returns the exit code for the process.

    Args:
        machine: the machine to debug (loaded, not running).
        host, port: where to listen (QEMU's ``-gdb tcp::PORT``; loopback unless a host is given).
        log: called with one line per event worth telling the user (listening, attached, detached).
        access: the point of view on registers and memory (default ``CpuAccess``: each CPU's own).
        detach_runs: ``D`` lets the program run on to its end (``zuv run``); False: the stub returns with
            the machine stopped where GDB left it (``zuv console`` takes over again).
    """

    def __init__(self, machine: StubMachine, host: str = "127.0.0.1", port: int = 1234,
                 log: Callable[[str], None] | None = None, *, access: TargetAccess | None = None,
                 detach_runs: bool = True) -> None:  # fmt: skip
        self.m = machine
        self.access: TargetAccess = access if access is not None else CpuAccess(machine)
        self._detach_runs = detach_runs
        #: polled while the stub waits for GDB (or for its next packet): True ends the session (Ctrl-C)
        self.cancelled: Callable[[], bool] = lambda: False
        self._log = log or (lambda _line: None)
        self._sock = socket.create_server((host, port))
        self.port = self._sock.getsockname()[1]
        self._conn: socket.socket | None = None
        self._buf = b""
        self._breakpoints: set[int] = set()
        #: (address, length, Z kind "2" write / "3" read / "4" access) -> its (host absolute, length) pieces
        self._watches: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
        self._g = self._c = min(machine.cpus)  # the CPUs the g and c operations address
        self._last_signal = SIGTRAP
        self._stopped_cpu = self._g
        self._result: RunResult | None = None
        self._done: int | None = None
        #: True once GDB connected
        self.attached = False
        self._no_ack = False
        self._wake_r, self._wake_w = os.pipe()  # a finished run wakes the wait on the connection

    # -- the connection ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the listening socket and the connection."""
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        for s in (self._conn, self._sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def serve(self, start_running: bool = False) -> int:
        """Wait for GDB, then answer it until it detaches, kills, or the program ends. ``start_running``:
        the machine runs until GDB connects (QEMU without ``-S``); else it waits for GDB's continue."""
        self._log(f"waiting for gdb on {self._sock.getsockname()[0]}:{self.port}")
        runner = None
        if start_running:
            runner = self._start_run()
            # the program may end before anyone attaches (QEMU's -gdb without -S then exits too)
            while not self._accept_ready():
                if not runner.alive() and self._done is not None:
                    how = self._result.describe() if self._result else "stopped"
                    self._log(f"the program ended before gdb attached: {how}")
                    return self._done
                select.select([self._sock, self._wake_r], [], [], 1.0)
        while not start_running and not select.select([self._sock], [], [], 0.25)[0]:
            if self.cancelled():
                self._log("no gdb attached: cancelled")
                return 0
        self._conn, peer = self._sock.accept()
        self.attached = True
        self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._log(f"gdb attached from {peer[0]}:{peer[1]}")
        if runner is not None:
            self.m.request_halt("gdb attached")
            runner.join()
            if self._done is not None:
                self._send_exit()
                return self._done
            self._last_signal = SIGINT
        try:
            while True:
                payload = self._read_packet()
                if payload is None:
                    self._log("gdb went away")
                    return self._done if self._done is not None else 0
                reply = self._dispatch(payload)
                if reply is not None:
                    self._send(reply)
                if self._done is not None:
                    return self._done
        finally:
            self.close()

    def _accept_ready(self) -> bool:
        """A connection is waiting (the wake pipe's byte, if any, is taken)."""
        ready = select.select([self._sock, self._wake_r], [], [], 0)[0]
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
        return self._sock in ready

    def _read_packet(self, poll: bool = False) -> bytes | None:
        """The next packet's payload (acknowledged), ``b"\\x03"`` for an interrupt, None at end of stream;
        with ``poll`` only what has arrived already (``b""`` if nothing)."""
        conn = self._conn
        assert conn is not None
        while True:
            buf = self._buf.lstrip(b"+-")
            if buf.startswith(b"\x03"):
                self._buf = buf[1:]
                return b"\x03"
            start = buf.find(b"$")
            end = buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(buf) >= end + 3:
                payload, cs = buf[start + 1 : end], buf[end + 1 : end + 3]
                self._buf = buf[end + 3 :]
                ok = cs.lower() == f"{checksum(payload):02x}".encode()
                if not self._no_ack:
                    conn.sendall(b"+" if ok else b"-")
                if ok:
                    return _unescape(payload)
                continue
            self._buf = buf
            try:
                while not poll and not select.select([conn], [], [], 0.25)[0]:
                    if self.cancelled():
                        return None
                if poll:
                    ready = select.select([conn, self._wake_r], [], [], 1.0)[0]
                    if self._wake_r in ready:  # the run ended (``_start_run`` wrote a byte): the caller looks
                        os.read(self._wake_r, 64)
                        return b""
                    if not ready:
                        return b""
                data = conn.recv(65536)
            except (OSError, ValueError):  # the stub was closed meanwhile (a closed socket's fd is -1)
                return None
            if not data:
                return None
            self._buf += data

    def _send(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        assert self._conn is not None
        try:
            self._conn.sendall(frame(payload))
        except OSError:
            pass

    # -- running ---------------------------------------------------------------------------------------

    def _start_run(self) -> _Run:
        run = _Run()

        def work() -> None:
            try:
                try:
                    res = self.m.run()
                except EmulatorError as e:
                    self._log(f"the run failed: {e}")
                    self._done = 1
                    return
                self._result = res
                if res.reason in ("all CPUs stopped", "check stop") or not any(
                    c.state == OPERATING for c in self.m.cpus.values()
                ):
                    self._done = res.guest_exit_code() if res.clean else 1
            finally:
                # over, with its result in place, before the loop waiting on the connection wakes: it used
                # to wake while the thread was still alive and wait another second (a continue cost 1 s)
                run.over.set()
                try:
                    os.write(self._wake_w, b"x")
                except (OSError, ValueError):
                    pass  # the stub was closed meanwhile (its descriptors are -1 then)

        run.thread = threading.Thread(target=work, name="zuv-gdb-run", daemon=True)
        run.thread.start()
        return run

    def _continue(self) -> str | None:
        """Run until a breakpoint, a watchpoint, the end, or GDB's interrupt; the stop reply (None: sent)."""
        while True:
            reply = self._run_once()
            last = getattr(self.m, "last_stop", None)
            if reply is None or last is None or last[1].kind != "watch":
                return reply
            cpu_addr, _ex = last
            hit = self._step_unwatched(cpu_addr)  # the access happens: GDB looks at the value after it
            if hit is not None:
                self._stopped_cpu = self._g = self._c = cpu_addr
                return f"T{SIGTRAP:02x}thread:{cpu_addr + 1:x};{hit[0]}:{hit[1]:x};"
            if self._done is not None:
                self._send_exit()
                return None

    def _run_once(self) -> str | None:
        runner = self._start_run()
        while runner.alive():
            got = self._read_packet(poll=True)
            if got is None:  # GDB went away: stop the machine and end
                self.m.request_halt("gdb went away")
                runner.join()
                self._done = self._done if self._done is not None else 0
                return None
            if got == b"\x03":
                self.m.request_halt("interrupted by gdb")
                self._last_signal = SIGINT
        runner.join()
        if self._done is not None:
            self._send_exit()
            return None
        last = getattr(self.m, "last_stop", None)
        if last is not None:
            self._stopped_cpu = last[0]
            self._last_signal = SIGTRAP
        return self._stop_reply()

    def _send_exit(self) -> None:
        self._log(f"the program ended: {self._result.describe() if self._result else 'stopped'}")
        self._send(f"W{(self._done or 0) & 0xFF:02x}")

    def _step(self, cpu_addr: int) -> str | None:
        try:
            self.m.step(1, cpu=cpu_addr)
        except EmulatorError:
            pass  # a stopped CPU does not step; GDB still gets its stop
        self._stopped_cpu = cpu_addr
        self._last_signal = SIGTRAP
        return self._stop_reply()

    def _stop_reply(self) -> str:
        """The stop packet; the stopped CPU becomes the selected one for registers and resumption (GDB
        reads the registers of the thread a stop names without an Hg first, as QEMU's stub has it)."""
        self._g = self._c = self._stopped_cpu
        return f"T{self._last_signal:02x}thread:{self._stopped_cpu + 1:x};"

    # -- packets ---------------------------------------------------------------------------------------

    def _dispatch(self, p: bytes) -> str | bytes | None:
        text = p.decode("latin-1")
        head = text[:1]
        try:
            if text == "\x03":
                return self._stop_reply()
            if head == "?":
                return self._stop_reply()
            if head == "q" or head == "Q":
                return self._query(text)
            if head == "H":
                return self._select(text)
            if head == "T":
                return "OK" if int(text[1:], 16) - 1 in self.m.cpus else "E01"
            if head == "g":
                return "".join(self._reg_hex(r) for r in REGISTERS)
            if head == "G":
                return self._write_all(text[1:])
            if head == "p":
                n = int(text[1:], 16)
                return self._reg_hex(REGISTERS[n]) if n < len(REGISTERS) else "E00"
            if head == "P":
                n, _, value = text[1:].partition("=")
                reg = REGISTERS[int(n, 16)] if int(n, 16) < len(REGISTERS) else None
                ok = reg is not None and self.access.write_register(self._g, reg, bytes.fromhex(value))
                return "OK" if ok else "E00"
            if head == "m":
                addr, _, length = text[1:].partition(",")
                return self._read_memory(int(addr, 16), int(length, 16))
            if head == "M":
                where, _, data = text[1:].partition(":")
                addr, _, _length = where.partition(",")
                return self._write_memory(int(addr, 16), bytes.fromhex(data))
            if head in ("Z", "z"):
                return self._breakpoint(head == "Z", text[1:])
            if head == "c":
                return self._continue()
            if head == "s":
                return self._step(self._c if self._c in self.m.cpus else self._g)
            if text.startswith("vCont?"):
                return "vCont;c;C;s;S"
            if text.startswith("vCont;"):
                return self._vcont(text[6:])
            if head == "D":
                self._detach()
                return None
            if head == "k":
                self._log("gdb killed the program")  # as QEMU's "Terminated via GDBstub"
                self._done = 0
                return None
        except (ValueError, IndexError):
            return "E01"
        return ""

    def _reg_hex(self, reg: Reg) -> str:
        """The register in hex as ``g``/``p`` send it; ``x`` digits when the view does not show it."""
        data = self.access.read_register(self._g, reg)
        return "x" * (reg.bits // 4) if data is None else data.hex()

    def _query(self, text: str) -> str:
        if text.startswith("qSupported"):
            return "PacketSize=4000;qXfer:features:read+;vContSupported+;QStartNoAckMode+"
        if text == "QStartNoAckMode":
            self._send("OK")
            self._no_ack = True
            return None  # type: ignore[return-value]  # already answered before the mode changes
        if text.startswith("qXfer:features:read:"):
            annex, _, span = text[len("qXfer:features:read:") :].partition(":")
            if annex != "target.xml":
                return "E00"
            off, _, length = span.partition(",")
            chunk = TARGET_XML.encode()[int(off, 16) : int(off, 16) + int(length, 16)]
            more = int(off, 16) + int(length, 16) < len(TARGET_XML)
            return ((b"m" if more else b"l") + escape_binary(chunk)).decode("latin-1")
        if text == "qAttached":
            return "1"
        if text == "qC":
            return f"QC{self._g + 1:x}"
        if text == "qfThreadInfo":
            return "m" + ",".join(f"{a + 1:x}" for a in sorted(self.m.cpus))
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qThreadExtraInfo,"):
            a = int(text.split(",", 1)[1], 16) - 1
            c = self.m.cpus.get(a)
            return f"CPU {a} {c.state if c is not None else 'absent'}".encode().hex()
        if text.startswith("qSymbol"):
            return "OK"
        return ""

    def _select(self, text: str) -> str:
        op, tid = text[1:2], int(text[2:], 16) if text[2:] not in ("-1", "") else 0
        addr = tid - 1 if tid > 0 else min(self.m.cpus)
        if addr not in self.m.cpus:
            return "E01"
        if op == "g":
            self._g = addr
        else:
            self._c = addr
        return "OK"

    def _vcont(self, actions: str) -> str | None:
        for action in actions.split(";"):
            verb, _, tid = action.partition(":")
            if verb[:1] in ("s", "S"):
                target = int(tid, 16) - 1 if tid and tid != "-1" else self._c
                return self._step(target if target in self.m.cpus else min(self.m.cpus))
        return self._continue()

    def _write_all(self, hex_text: str) -> str:
        off, ok = 0, True
        for reg in REGISTERS:
            n = reg.bits // 4
            if off + n > len(hex_text):
                break
            chunk = hex_text[off : off + n]
            if "x" not in chunk:  # GDB sends back what it read: an unavailable register stays untouched
                ok = self.access.write_register(self._g, reg, bytes.fromhex(chunk)) and ok
            off += n
        return "OK" if ok else "E01"

    def _pages(self, addr: int, length: int, write: bool) -> list[tuple[int, int]] | None:
        """(host absolute, length) per page of a debugger access through the selected CPU; None: refused."""
        return self.access.pieces(self._g, addr, length)

    def _read_memory(self, addr: int, length: int) -> str:
        pages = self._pages(addr, min(length, 0x1000), False)
        if pages is None:
            return _EFAULT
        return b"".join(self.access.read(h, n) for h, n in pages).hex()

    def _write_memory(self, addr: int, data: bytes) -> str:
        pages = self._pages(addr, len(data), True)
        if pages is None:
            return _EFAULT
        off = 0
        for h, n in pages:
            self.access.write(h, data[off : off + n])
            off += n
        return "OK"

    # -- watchpoints: the CPUs refuse the TLB fill of a watched frame, so an access stops before it happens

    def _watch_hit(self, accesses: list[tuple[int, int, bool]], before: dict) -> tuple[str, int] | None:
        """The (stop-reply key, watched address) of the watchpoint the step's accesses hit, or None (another
        part of a watched frame, or a kind of access the watchpoint does not want). A store that Python
        emulated (no traced access) counts when the watched bytes changed."""
        read = self.access.read
        for key, hosts in self._watches.items():
            vaddr, _length, kind = key
            for addr, size, write in accesses:
                if kind == "2" and not write or kind == "3" and write:
                    continue
                if any(addr < h + n and h < addr + size for h, n in hosts):
                    return {"2": "watch", "3": "rwatch", "4": "awatch"}[kind], vaddr
            if kind != "3" and before.get(key) != b"".join(read(h, n) for h, n in hosts):
                return {"2": "watch", "4": "awatch"}[kind], vaddr
        return None

    def _arm_watches(self) -> None:
        frames: dict[int, bool] = {}
        for (_vaddr, _length, kind), hosts in self._watches.items():
            for h, n in hosts:
                for frame in range(h >> 12, (h + n - 1 >> 12) + 1):
                    frames[frame] = frames.get(frame, False) or kind != "2"
        for c in self.m.cpus.values():
            c.watch_frames = dict(frames)
            c.flush_tlb()

    def _step_unwatched(self, cpu_addr: int) -> tuple[str, int] | None:
        """Step the instruction a watched frame stopped, with the watch off, tracing its accesses; the hit."""
        cpu = self.m.cpus[cpu_addr]
        read = self.access.read
        before = {k: b"".join(read(h, n) for h, n in hosts) for k, hosts in self._watches.items()}
        cpu.watch_frames = {}

        def step() -> None:
            try:
                self.m.step(1, cpu=cpu_addr)
            except EmulatorError:
                pass

        try:
            accesses = cpu.step_tracing_accesses(step)
        finally:
            self._arm_watches()
        return self._watch_hit(accesses, before)

    def _breakpoint(self, insert: bool, spec: str) -> str:
        kind, addr, size = spec.split(",")[:3]
        if insert and kind in ("0", "1", "2", "3", "4") and not self.access.may_break():
            return "E01"  # the view may not stop the guest where it chooses (a secure guest's host view)
        if kind in ("2", "3", "4"):
            key = (int(addr, 16), int(size, 16), kind)
            if insert:
                pages = self._pages(key[0], key[1], False)
                if pages is None or not key[1]:
                    return "E01"
                self._watches[key] = pages
            else:
                self._watches.pop(key, None)
            self._arm_watches()
            return "OK"
        if kind not in ("0", "1"):
            return ""
        a = int(addr, 16)
        if insert:
            self._breakpoints.add(a)
        else:
            self._breakpoints.discard(a)
        self.m.set_breakpoints(set(self._breakpoints))
        return "OK"

    def _detach(self) -> None:
        self._send("OK")
        self.m.set_breakpoints(set())
        self._watches.clear()
        self._arm_watches()
        if not self._detach_runs:
            self._log("gdb detached; the machine stays where it stopped")
            self._done = 0
            return
        self._log("gdb detached; the program runs on")
        runner = self._start_run()
        runner.join()
        if self._done is None:
            self._done = 0


class _Run:
    """A run of the machine on its own thread ("zuv-gdb-run"): ``over`` is set once its result is in place."""

    def __init__(self) -> None:
        self.over = threading.Event()
        self.thread: threading.Thread | None = None

    def alive(self) -> bool:
        """True until the run has ended and its result is in place."""
        return not self.over.is_set()

    def join(self) -> None:
        """Wait for the thread."""
        if self.thread is not None:
            self.thread.join()


def _unescape(payload: bytes) -> bytes:
    """A packet's payload with ``}`` escapes undone."""
    if b"}" not in payload:
        return payload
    out = bytearray()
    it = iter(payload)
    for b in it:
        if b == 0x7D:
            out.append(next(it, 0) ^ 0x20)
        else:
            out.append(b)
    return bytes(out)

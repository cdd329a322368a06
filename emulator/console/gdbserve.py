"""``gdbserver`` and ``zuv console --gdb``: the GDB remote stub on a console session, in the host view or,
with the machine's debug capability given by name (``--debug-secure``), the owner view.

The console hands the machine to GDB until GDB detaches (or kills, or goes away, or Ctrl-C), then takes it
back where GDB left it: its own breakpoints are put back. While GDB holds the machine the console waits.

The host view is what the hypervisor may see (``docs/security.md``). For a vCPU running a secure guest:
memory through the host's checks, so a secure page (and DAT tables in secure storage) is a GDB memory
error (the architecture's PGM 0x3D for the host, ``E14``); the PSW is the state description's, every other
register unavailable; no register writes; no breakpoints or watchpoints in an SE image's guest (the host
cannot stop a secure guest where it chooses). The owner view reads as the Ultravisor does: the secure CPU's
registers from its record (vector registers, which the record does not hold, stay unavailable), plaintext
memory, breakpoints anywhere, register writes into the record (loaded at the next SIE entry).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

from emulator.console.cmdbase import command
from emulator.console.errors import ConsoleError
from emulator.console.render import Output
from emulator.console.session_storage import refused
from emulator.gdb.target import Reg, read_register, write_register

if TYPE_CHECKING:
    from emulator.console.session import Session

__all__ = ["SessionAccess", "serve_gdb", "grant_debug_secure", "DEBUG_SECURE_LABEL"]

#: What the owner view of the stub is, in the words the console uses for its own owner view.
DEBUG_SECURE_LABEL: Final = "owner view through the machine's debug capability (emulator privilege)"

#: Sessions whose stub has the machine's debug capability (``zuv console --debug-secure``).

#: The secure CPU record's fields by register kind (``firmware.uv.SecureCpu``); vector halves are not kept.
_RECORD: Final = {"gpr": "gprs", "acr": "ars", "cr": "crs", "fpr": "fprs"}


class SessionAccess:
    """The stub's point of view on a console session (``emulator.gdb.stub.TargetAccess``).

    Args:
        session: the console session.
        owner: serve the owner view (the machine's debug capability); False: the host view.
    """

    def __init__(self, session: Session, owner: bool) -> None:
        self._s = session
        self.owner = owner

    def _cpu(self, cpu: int) -> Any:
        cpus = self._s.machine.cpus
        return cpus[cpu] if cpu in cpus else cpus[min(cpus)]

    def _record(self, c: Any) -> Any:
        """The Ultravisor's record of a secure vCPU of an SE image's VM, or None (a CPU of a plain machine:
        its registers are live in the CPU)."""
        m = self._s.machine
        vm = getattr(m, "vm", None)
        vcpu = getattr(c, "vcpu", None)
        if vm is None or vcpu is None or vm.pv is None:
            return None
        debug = getattr(m, "debug", None)  # the Ultravisor's record: the debug capability's
        return None if debug is None else debug.secure_cpu(vm, vcpu.address)

    def read_register(self, cpu: int, reg: Reg) -> bytes | None:
        """A register as the view shows it; None: unavailable."""
        c = self._cpu(cpu)
        if not self._s.is_secure(c):
            return read_register(c, reg)
        rec = self._record(c)
        if not self.owner:
            vcpu = getattr(c, "vcpu", None)
            if vcpu is not None and reg.kind in ("pswm", "pswa"):  # the state description's (host storage)
                sd = vcpu.sd
                return (sd.psw_mask if reg.kind == "pswm" else sd.psw_addr).to_bytes(8, "big")
            return None
        if rec is None:
            return read_register(c, reg)
        kind, i = reg.kind, reg.index
        if kind in ("pswm", "pswa"):
            value = rec.psw[0 if kind == "pswm" else 1]
        elif kind in _RECORD:
            value = getattr(rec, _RECORD[kind])[i]
        elif kind in ("fpc", "prefix", "ckc", "cputm"):
            value = getattr(rec, kind)
        else:
            return None  # vector registers: the record keeps no more than the floating-point halves
        return (value & ((1 << reg.bits) - 1)).to_bytes(reg.bits // 8, "big")

    def write_register(self, cpu: int, reg: Reg, data: bytes) -> bool:
        """Set a register the view may set: the owner view writes a secure CPU's record; the host view of a
        secure CPU and a VM's vCPUs between entries (the hypervisor's loop holds them) refuse."""
        c = self._cpu(cpu)
        if len(data) != reg.bits // 8:
            return False
        secure = self._s.is_secure(c)
        if secure and not self.owner:
            return False
        rec = self._record(c) if secure else None
        if rec is None:
            if getattr(c, "vcpu", None) is not None:
                return False
            return write_register(c, reg, data)
        value, kind, i = int.from_bytes(data, "big"), reg.kind, reg.index
        if kind == "pswm":
            rec.psw = (value, rec.psw[1])
        elif kind == "pswa":
            rec.psw = (rec.psw[0], value)
        elif kind in _RECORD:
            getattr(rec, _RECORD[kind])[i] = value
        elif kind in ("fpc", "prefix", "ckc", "cputm"):
            setattr(rec, kind, value)
        else:
            return False
        return True

    def pieces(self, cpu: int, addr: int, length: int) -> list[tuple[int, int]] | None:
        """Host absolute pieces of a virtual range of the CPU as the view may access them, else None."""
        if length <= 0 or addr + length > 1 << 64:
            return None
        try:
            segs = self._s.read("virt", addr, length, owner=self.owner, cpu=self._cpu(cpu))
        except ConsoleError:
            return None
        if any(seg.data is None or seg.host is None for seg in segs):
            return None
        return [(seg.host, len(seg.data)) for seg in segs]  # type: ignore[misc, arg-type]

    def read(self, host: int, length: int) -> bytes:
        """Storage at a host address ``pieces`` gave: as firmware (owner) or through the host's checks."""
        mem = self._s.machine.memory
        return mem.read(host, length) if self.owner else mem.host_view().read(host, length)

    def write(self, host: int, data: bytes) -> None:
        """Store at a host address ``pieces`` gave (the host view checks the frame again first)."""
        mem = self._s.machine.memory
        if not self.owner and refused(mem, host, len(data)) is not None:
            return
        mem.write(host, data)  # drops translated code

    def may_break(self) -> bool:
        """The owner view may; the host view of an SE image's guest may not (its code is the owner's)."""
        return self.owner or getattr(self._s.machine, "cpu_secure", None) is None


def grant_debug_secure(session: Session) -> None:
    """Give the session's GDB stub the machine's debug capability (``zuv console --debug-secure``): every
    ``gdbserver`` of this session serves the owner view."""
    session.grant_debug_secure()


def serve_gdb(session: Session, endpoint: str, *, debug_secure: bool | None = None, log: Any = None) -> str:
    """Serve GDB on ``endpoint`` (``PORT``, ``tcp::PORT``, ``tcp:HOST:PORT``) until it detaches, kills or
    goes away; the machine stays where GDB left it and the session's breakpoints come back. Returns a line
    for the user.

    Args:
        session: the console session.
        endpoint: where to listen (a bare port is the loopback address).
        debug_secure: serve the owner view (the machine's debug capability, named as such); None: as
            ``grant_debug_secure`` gave it to the session.
        log: called with the stub's lines (waiting, attached, detached); default: standard error.

    Raises:
        ConsoleError: a bad endpoint, a port that cannot be listened on, or a running machine.
    """
    from emulator.gdb.stub import GdbStub, parse_endpoint

    if endpoint.isdigit():
        endpoint = f"tcp::{endpoint}"
    try:
        host, port = parse_endpoint(endpoint)
    except ValueError as e:
        raise ConsoleError(str(e).replace("--gdb takes", "gdbserver takes PORT,")) from None
    if log is None:
        def log(line: str) -> None:
            print(f"zuv: {line}", file=sys.stderr, flush=True)  # noqa: T201 - the console's own stderr
    if debug_secure is None:
        debug_secure = session.debug_secure and hasattr(session.machine, "grant_debug")
    view = SessionAccess(session, owner=debug_secure)
    try:
        stub = GdbStub(session.machine, host, port, log=log, access=view, detach_runs=False)  # type: ignore[arg-type]
    except OSError as e:
        raise ConsoleError(f"cannot listen for gdb on {host}:{port}: {e.strerror or e}") from None
    if debug_secure:
        log(DEBUG_SECURE_LABEL)
    stub.cancelled = lambda: session._stop_reason is not None  # noqa: SLF001 - Ctrl-C or stop
    saved = {n: b.enabled for n, b in session.breakpoints.items()}
    for n in saved:  # GDB's breakpoints only while GDB holds the machine
        session.enable_breakpoint(n, False)
    try:
        code = stub.serve(start_running=False)
    finally:
        stub.close()
        for n, on in saved.items():
            if n in session.breakpoints:
                session.enable_breakpoint(n, on)
        session._install()  # noqa: SLF001 - gdb's breakpoints and watchpoints out (also after kill)
        session._take_hits()  # noqa: SLF001 - hits of the console's observers while GDB ran are not stops
        session.discard_stop()
    if not stub.attached:
        return "no gdb attached (stopped waiting); the console has the machine"
    cpu = session.cpu
    where = f"CPU {cpu.address} {cpu.state}" + (f" at {cpu.pc:#x}" if cpu.state == "operating" else "")
    return f"gdb session ended (exit code {code}); the console has the machine: {where}"


@command(
    "gdbserver",
    "gdbserver [PORT|tcp::PORT|tcp:HOST:PORT] [--debug-secure]",
    "serve gdb (remote protocol) on this session until gdb detaches",
    group="session",
)
def _gdbserver(s: Session, args: list[str]) -> Output:
    """Serve the GDB remote protocol (default tcp::1234, loopback) for gdb-multiarch:
    ``target remote :PORT``. The console waits while gdb holds the machine; gdb's ``detach`` (or ``kill``,
    or Ctrl-C here) gives it back where gdb stopped it, with the console's breakpoints.

    The host view is served: a secure guest's pages are memory errors (PGM 0x3D for the host), its
    registers unavailable but the state description's PSW. ``--debug-secure`` (here, or ``zuv console
    --debug-secure``) uses the machine's debug capability: the owner view, an emulator privilege (no real
    machine gives a host this)."""
    words = [a for a in args if a != "--debug-secure"]
    if len(words) > 1 or any(a.startswith("-") for a in words):
        raise ConsoleError("usage: gdbserver [PORT|tcp::PORT|tcp:HOST:PORT] [--debug-secure]")
    if "--debug-secure" in args:
        s.grant_debug_secure()  # asked for by name
    line = serve_gdb(s, words[0] if words else "tcp::1234", debug_secure="--debug-secure" in args or None)
    return Output().add(line)

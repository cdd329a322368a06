"""A debugging session over one machine: execution control, breakpoints of every kind, and inspection.

This is the console's Python API; the commands (``commands.py``) are a thin layer that parses words and
formats what these methods return. Everything here is built so that ``continue`` runs at machine speed:

* address breakpoints are unicorn exits (``Machine.set_breakpoints``);
* watchpoints refuse the TLB fill of the watched frames (``Cpu.watch_frames``), so only accesses to those
  frames stop the CPU; Python-side writes (SCLP, Ultravisor) are seen by a memory invalidate listener;
* UVC breakpoints use ``Machine.insn_filter`` (called only for instructions the CPU hands back anyway) and
  the Ultravisor's call log; SIE breakpoints the hypervisor's interception stream;
* secure-storage breakpoints observe program interruptions (``Cpu.pgm_observer``); page-state breakpoints
  the memory's owner-tag listeners.

Observers run on the thread that runs the machine; they record a hit and call ``request_halt``.

``Session`` (here: selection, views, expressions, symbols, reset and reload) is ``execution.ExecutionControl``
(step, continue, stop and why the machine stopped) over ``breakpoints.BreakpointControl`` (breakpoints and
their observers) over ``storage_views.StorageViews`` (storage in every address space).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TextIO

from emulator.console.breakpoints import BP_KINDS, Breakpoint  # noqa: F401 - importable here
from emulator.console.errors import ConsoleError
from emulator.console.execution import ExecutionControl, Stop
from emulator.console.expr import evaluate, parse_number
from emulator.console.providers import Providers, discover
from emulator.console.storage_views import SPACES, Segment
from emulator.console.viewcpu import HostViewCpu
from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from emulator.console.unwind import CfiTable
    from emulator.hw.cpu import Cpu
    from emulator.machine.loader import LoadedProgram
    from emulator.machine.machine import Machine

__all__ = ["Session", "Breakpoint", "Stop", "Segment", "VIEWS", "SPACES", "OWNER_LABEL"]

VIEWS: Final = ("host", "owner")
OWNER_LABEL: Final = "owner view (emulator privilege: no real machine shows this)"


class Session(ExecutionControl):
    """A debugging session: one machine, a selected CPU, a point of view, breakpoints.

    Args:
        machine: the machine to debug (loaded and ready to run).
        program: what was loaded (for symbols).
        view: ``"host"`` (what the hypervisor can see) or ``"owner"`` (the guest owner's view).
        providers: views from lower layers (default: ``discover(machine)``).
    """

    def __init__(
        self,
        machine: Machine,
        program: LoadedProgram | None = None,
        *,
        view: str = "host",
        providers: Providers | None = None,
    ) -> None:
        if view not in VIEWS:
            raise ConsoleError(f"unknown view {view!r} (views: {', '.join(VIEWS)})")
        self.machine = machine
        self.program = program
        self.symbols: dict[str, int] = dict(program.symbols) if program is not None else {}
        self._by_addr = sorted((a, n) for n, a in self.symbols.items())
        #: where the symbols come from when not the program's ELF (``symcmds.SymbolSource``: a System.map, a
        #: vmlinux, a kernel image's kallsyms); kept across ``reset`` and read again by ``reload``
        self.symbol_source: object | None = None
        self.kernel_cmdline = ""  # the kernel command line the program was loaded with (KASLR's note)
        self._other_sorted: tuple[object, list[tuple[int, str]]] = (None, [])  # ``symbolize``
        self.cpu_address = min(machine.cpus)
        self.view = "host"
        if view == "owner":
            self.set_view(view)
        self.providers = providers if providers is not None else discover(machine)
        self._uv_log = None
        if providers is None and self.providers.uv_log is None and getattr(machine, "uv", None) is not None:
            from emulator.console.uvlog import MachineUvLog

            self._uv_log = MachineUvLog(machine.uv)  # type: ignore[attr-defined]
            self.providers.uv_log = self._uv_log
            self.providers.sources["uv_log"] = "MachineUvLog (the Ultravisor's event sink)"
        self.breakpoints: dict[int, Breakpoint] = {}
        self._next_number = 1
        self._temp: set[int] = set()
        self._temp_scope = ""  # where the temporary stop of next/until/finish is (``scope_of``)
        self._hits: list[tuple[Breakpoint, str | Callable[[], str]]] = []
        self._more_hits: dict[int, int] = {}  # breakpoint number -> hits after its first in this stop
        self._hits_lock = threading.Lock()
        self._uvc_skip: tuple[int, int] | None = None
        self._stepping = False
        self._listeners: dict[str, Callable[[], None]] = {}
        self._owner_seen: dict[int, tuple[int, int]] = {}
        self.running = False
        #: why the user asked the current step or run to stop (``stop``, Ctrl-C), until it has stopped
        self._stop_reason: str | None = None
        self._ran = threading.Event()  # set when a cont has ended (a stop's _insist ends with it)
        self.last_stop: Stop | None = None
        self.console_seen = 0  # bytes of machine.console already shown
        #: ``display`` expressions, shown after every stop: (format like x's ``/NFU`` or "", expression)
        self.displays: dict[int, tuple[str, str]] = {}
        self._cfi: CfiTable | None = None
        #: builds a new machine with the session's options and loads a program into it: ``rebuild(path)
        #: -> (machine, program)`` (``open_session`` sets it); None: ``restart`` is refused
        self.rebuild: Callable[[str], tuple[Machine, LoadedProgram]] | None = None
        self._hinted = False  # the first stop before a hypervisor's UV call said what continue and step do
        self.log_file: TextIO | None = None  # ``log FILE``: every command and its output are appended here
        #: the width command output is laid out for (the terminal's in the interactive console; 80 for
        #: scripts): tables adapt to it, longer lines wrap (``Output.fit``)
        self.columns = 80
        #: the interactive console shows output longer than the terminal a screenful at a time (``pager``)
        self.pager = True
        self.x_format = ("x", "w")  # x's last format and unit (gdb's defaults)
        self.x_next: tuple[str, int] | None = None  # where x without an address goes on: (space, address)
        self._record_tlbs()
        self._install()

    def _record_tlbs(self) -> None:
        """Have every CPU keep what its TLB fills grant from a flush on (``Cpu.tlb_record``, ``info tlb``)."""
        for c in self.machine.cpus.values():
            if getattr(c, "tlb_record", None) is None:
                c.tlb_record = {}
                c.flush_tlb()

    def tlb_entries(self, cpu: Cpu | None = None) -> list[tuple[int, int, int, int]] | None:
        """The selected CPU's TLB as its fills granted it since the last flush: (address space: ASC, or -1
        with DAT off; virtual page; host frame; UC_PROT rights) sorted; None when the CPU keeps no record."""
        c = cpu if cpu is not None else self.cpu
        rec = getattr(c, "tlb_record", None)
        if rec is None:
            return None
        return sorted((space, page, frame, perms) for (space, page), (frame, perms) in list(rec.items()))

    # -- basics ----------------------------------------------------------------------------------------

    @property
    def cpu(self) -> Cpu:
        """The selected CPU."""
        return self.machine.cpus[self.cpu_address]

    def select_cpu(self, address: int) -> None:
        """Select the CPU that registers, memory (virtual) and ``step`` refer to."""
        if address not in self.machine.cpus:
            raise ConsoleError(
                f"no CPU {address} (CPUs: {', '.join(str(a) for a in sorted(self.machine.cpus))})"
            )
        self.cpu_address = address

    def set_view(self, view: str) -> None:
        """Switch the point of view: ``host`` or ``owner`` (on a secure machine only with its debug
        capability: ``grant_debug_secure``)."""
        if view not in VIEWS:
            raise ConsoleError(f"unknown view {view!r} (views: {', '.join(VIEWS)})")
        if view == "owner":
            self.require_debug_secure()
        self.view = view

    @property
    def debug_secure(self) -> bool:
        """True when the session uses the machine's debug capability (a machine without one: always)."""
        grant = getattr(self.machine, "grant_debug", None)
        return grant is None or self.machine.debug is not None  # type: ignore[attr-defined]

    def require_debug_secure(self) -> None:
        """Raise ``ConsoleError`` (one line: how to get it) unless the session has the debug capability."""
        if not self.debug_secure:
            from emulator.console.secure import NEEDS_DEBUG

            raise ConsoleError(NEEDS_DEBUG[0].upper() + NEEDS_DEBUG[1:])

    def grant_debug_secure(self) -> bool:
        """Ask the machine for its debug capability, by name (``debug secure on``, ``zuv console
        --debug-secure``): the owner view of the secure guest. True when it was not in use before."""
        grant = getattr(self.machine, "grant_debug", None)
        if grant is None or self.machine.debug is not None:  # type: ignore[attr-defined]
            return False
        grant()
        self._apply_debug()
        return True

    def _apply_debug(self) -> None:
        """Hooks kept while the secure CPU was out of reach go to it now."""
        self._install()

    def is_secure(self, cpu: Cpu | None = None) -> bool:
        """True when the CPU runs a secure guest (the machine says so for its vCPUs; otherwise: the CPU's
        guest mapping carries an owner tag)."""
        c = cpu if cpu is not None else self.cpu
        hook = getattr(self.machine, "cpu_secure", None)
        if hook is not None:
            return bool(hook(c.address))
        return c.guest is not None and c.guest.owner_tag is not None

    def value(self, text: str, *, owner: bool = False, symbols: dict[str, int] | None = None) -> int:
        """Evaluate an address or value expression on the selected CPU, as the view shows it (``view_cpu``;
        ``owner``: the CPU itself, for the debugger's own decisions) with the symbols of what it runs
        (``symbol_table``; or ``symbols``)."""
        cpu = self.cpu if owner else self.view_cpu()
        table = symbols if symbols is not None else self.symbol_table()
        return evaluate(text, cpu, table, self._read_u64)

    def view_cpu(self, cpu: Cpu | None = None) -> Cpu:
        """The CPU as the view may show it: in the host view a secure CPU's registers are the Ultravisor's
        (refused, saying how to see them) and its PSW is the SIE state description's (``HostViewCpu``)."""
        c = cpu if cpu is not None else self.cpu
        if self.view == "host" and self.is_secure(c):
            sd_psw = getattr(self.machine, "sd_psw", None)
            psw = sd_psw(c.address) if sd_psw is not None else None
            return HostViewCpu(c, psw)  # type: ignore[return-value]
        return c

    @property
    def scoped(self) -> bool:
        """True when the program's symbols apply only where the machine says it runs (an SE image: in the
        secure guest, not in stage3a before the secure IPL); address breakpoints then have a scope too."""
        return getattr(self.machine, "program_runs", None) is not None

    def symbol_table(self, cpu: Cpu | None = None) -> dict[str, int]:
        """The symbols that name what the CPU runs: the program's, except where the machine runs another
        program (an SE image's stage3a before the secure IPL: its own symbols when the machine knows them)."""
        runs = getattr(self.machine, "program_runs", None)
        if runs is None or runs((cpu if cpu is not None else self.cpu).address):
            return self.symbols
        return getattr(self.machine, "loader_symbols", {})  # type: ignore[no-any-return]

    def scope_of(self, cpu: Cpu | None = None) -> str:
        """Where the CPU is: "secure" (the program's guest) or "normal" (before the secure IPL); "" when the
        session has no scopes."""
        if not self.scoped:
            return ""
        return "secure" if self.is_secure(cpu) else "normal"

    def resolve_address(self, spec: str, scope: str | None = None) -> tuple[int, str]:
        """An address breakpoint's address and scope: the spec in the selected CPU's scope, else (a symbol of
        the program while another program runs, an SE image's ``main`` in stage3a) in the program's scope;
        ``scope`` given: in that scope's symbols (``reload``)."""
        here = self.scope_of()
        if scope is None or scope == here:
            try:
                return self.value(spec), here
            except ConsoleError as e:
                if not self.scoped or here == "secure":
                    raise
                first = e
            try:
                return self.value(spec, symbols=self.symbols), "secure"
            except ConsoleError:
                raise first from None
        table = self.symbols if scope == "secure" else getattr(self.machine, "loader_symbols", {})
        return self.value(spec, symbols=table), scope

    def holds(self, text: str) -> bool:
        """Whether a condition holds: ``E1 OP E2`` (==, !=, <, <=, >, >=, unsigned) or ``E`` (not zero); the
        debugger's own decision, on the CPU itself (a breakpoint in a secure guest has the capability)."""
        for op in ("==", "!=", "<=", ">=", "<", ">"):
            if op in text:
                lhs, rhs = text.split(op, 1)
                a, b = self.value(lhs, owner=True), self.value(rhs, owner=True)
                return {"==": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b}[op]
        return self.value(text, owner=True) != 0

    def read_u64(self, vaddr: int) -> int:
        """The doubleword at a virtual address as the view may read it (else ConsoleError)."""
        return self._read_u64(vaddr)

    def cfi(self) -> CfiTable:
        """The program's DWARF call-frame table (empty without an ELF that has one), read once."""
        if self._cfi is None:
            from emulator.console.unwind import CfiTable

            self._cfi = CfiTable(str(self.program.path) if self.program is not None else "")
        return self._cfi

    def _read_u64(self, vaddr: int) -> int:
        seg = self.read("virt", vaddr, 8)
        data = b"".join(s.data or b"" for s in seg)
        if len(data) != 8:
            note = next((s.note for s in seg if s.data is None), "unreadable")
            raise ConsoleError(f"cannot read [{vaddr:#x}]: {note}")
        return int.from_bytes(data, "big")

    def set_symbols(self, symbols: dict[str, int]) -> None:
        """Name the program's addresses with ``symbols`` (a System.map, a vmlinux, kallsyms: ``symcmds``)."""
        self.symbols = dict(symbols)
        self._by_addr = sorted((a, n) for n, a in self.symbols.items())

    def replace_symbol_breakpoints(self) -> list[str]:
        """Place the address breakpoints given as symbols where the (new) symbols put them; notes."""
        notes = []
        for bp in self.breakpoints.values():
            if bp.kind != "addr" or parse_number(bp.spec) is not None:
                continue
            try:
                new = self.resolve_address(bp.spec, bp.scope or None)[0]
            except ConsoleError as e:
                bp.enabled = False
                notes.append(f"breakpoint {bp.number} ({bp.spec}) disabled: {e}")
                continue
            if new != bp.address:
                bp.address = new
                notes.append(f"breakpoint {bp.number} ({bp.spec}) now at {new:#x}")
        self._install()
        return notes

    def symbolize(self, addr: int, cpu: Cpu | None = None) -> str:
        """``name+0xoff`` for the nearest symbol at or below ``addr`` in the symbols of what the CPU runs
        (``symbol_table``; "" when there is none)."""
        import bisect

        table = self.symbol_table(cpu)
        if table is self.symbols:
            by_addr = self._by_addr
        else:  # another program's (stage3a's): sorted once
            if self._other_sorted[0] is not table:
                self._other_sorted = (table, sorted((a, n) for n, a in table.items()))
            by_addr = self._other_sorted[1]
        i = bisect.bisect_right(by_addr, (addr, "\U0010ffff")) - 1
        if i < 0:
            return ""
        base, name = by_addr[i]
        off = addr - base
        if off > 0x10000:
            return ""
        return name if off == 0 else f"{name}+{off:#x}"

    def cpu_state(self, cpu: Cpu | None = None) -> str:
        """operating / wait / disabled-wait / stopped / check-stop."""
        c = cpu if cpu is not None else self.cpu
        if c.state == "operating":
            return "wait" if c.psw[0] & (1 << 49) else "operating"
        if c.state == "stopped" and c.check_stop_reason.startswith("disabled wait"):
            return "disabled-wait"
        return c.state

    # -- reset and reload ----------------------------------------------------------------------------------

    def restart(self, *, reread: bool = False, path: str | None = None) -> list[str]:
        """``reset``: a new machine of the same configuration with the program loaded again, started at its
        entry; ``reread`` (``reload``): also read the program's symbols and DWARF again (``path``: another
        program of the same kind) and place address breakpoints where their specs now point. Breakpoints,
        watchpoints (placed again from their specs), displays, the view and the log are kept. Returns notes
        for the user (breakpoints that could not be placed again: disabled). The old machine is closed
        only once the new one was built (a file that does not load leaves the session as it was)."""
        if self.rebuild is None:
            raise ConsoleError("this session was given its machine: it cannot build a new one")
        if self.running:
            raise ConsoleError("the machine is running: stop it first (stop or Ctrl-C)")
        target = path if path is not None else (str(self.program.path) if self.program is not None else "")
        if not target:
            raise ConsoleError("no program to load")
        old = self.machine
        abandon = getattr(old, "abandon", None)
        if abandon is not None:
            abandon()  # a boot suspended before a hypervisor's UV call unwinds first
        try:
            machine, program = self.rebuild(target)
        except EmulatorError as e:
            raise ConsoleError(f"cannot load {target}: {e}") from None
        for unsubscribe in list(self._listeners.values()):
            unsubscribe()
        self._listeners.clear()
        if self._uv_log is not None:
            self._uv_log.close()
            self._uv_log = None
        if getattr(old, "debug", None) is not None and hasattr(machine, "grant_debug"):
            machine.grant_debug()  # type: ignore[attr-defined] - the capability the session asked for stays
        old.close()  # type: ignore[attr-defined]
        notes: list[str] = []
        self.machine, self.program = machine, program
        if reread and self.symbol_source is not None:
            from emulator.console.symcmds import load_symbols

            src = self.symbol_source
            try:
                load_symbols(self, src.path, src.offset)  # type: ignore[attr-defined]
            except ConsoleError as e:
                notes.append(f"symbols not read again (the old ones stay): {e}")
            self._cfi = None
        elif reread:
            self.symbols = dict(program.symbols)
            self._by_addr = sorted((a, n) for n, a in self.symbols.items())
            self._cfi = None
        elif self.symbol_source is None and dict(program.symbols) != self.symbols:
            notes.append("the program's symbols changed on disk: reload reads them again (breakpoints "
                         "stay at their addresses)")  # fmt: skip
        self.providers = discover(machine)
        if self.providers.uv_log is None and getattr(machine, "uv", None) is not None:
            from emulator.console.uvlog import MachineUvLog

            self._uv_log = MachineUvLog(machine.uv)  # type: ignore[attr-defined]
            self.providers.uv_log = self._uv_log
            self.providers.sources["uv_log"] = "MachineUvLog (the Ultravisor's event sink)"
        self.cpu_address = min(machine.cpus)
        self._temp.clear()
        self._hits.clear()
        self._more_hits.clear()
        self._uvc_skip = None
        self._owner_seen = {}
        self.last_stop = None
        self.console_seen = 0
        self.x_next = None
        self._record_tlbs()
        for bp in self.breakpoints.values():
            bp.hits = 0
            try:
                if bp.kind == "addr" and reread:
                    bp.address = self.resolve_address(bp.spec, bp.scope or None)[0]
                elif bp.kind == "watch":
                    bp.address = self._watch_host_address(bp.spec, bp.length)
                    bp.old = machine.memory.read(bp.address, bp.length)
                elif bp.kind == "page" and bp.code is not None and bp.code >= machine.memory.frames:
                    raise ConsoleError(f"frame {bp.code:#x} is outside memory")
            except ConsoleError as e:
                bp.enabled = False
                notes.append(f"breakpoint {bp.number} ({bp.spec}) disabled: {e}")
        self._install()
        return notes

    def close(self) -> None:
        """Remove every hook this session installed."""
        self.breakpoints.clear()
        self._temp.clear()
        if self._uv_log is not None:
            self._uv_log.close()
            self._uv_log = None
        self._install()

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
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TextIO

from emulator.console.disasm import Instruction, branch_target, disassemble, is_call
from emulator.console.errors import ConsoleError
from emulator.console.expr import evaluate
from emulator.console.providers import Intercept, PageInfo, Providers, UvCall, discover
from emulator.console.tables import SIE_INTERCEPTS, pgm_name, uv_command
from emulator.errors import EmulatorError, ProgramException, SecureStorageAccess
from emulator.hw import access, dat
from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from emulator.hw.sysinfo import FAC_EDAT2

if TYPE_CHECKING:
    from emulator.console.hostcalls import HostUvc
    from emulator.console.unwind import CfiTable
    from emulator.hw.cpu import Cpu, Insn
    from emulator.machine.loader import LoadedProgram
    from emulator.machine.machine import Machine, RunResult

__all__ = ["Session", "Breakpoint", "Stop", "Segment", "VIEWS", "SPACES", "OWNER_LABEL"]

VIEWS: Final = ("host", "owner")
#: Address spaces: virtual (the selected CPU's DAT), real (prefixing), guest absolute, host absolute.
SPACES: Final = ("virt", "real", "abs", "host")
OWNER_LABEL: Final = "owner view (emulator privilege: no real machine shows this)"
BP_KINDS: Final = ("addr", "watch", "uvc", "sie", "secure", "page")

_MEM_OPERAND: Final = re.compile(r"(-?(?:0x[0-9a-fA-F]+|\d+))\(([^)]*)\)")
_PSW_DAT: Final = 1 << 58
_PSW_EA: Final = 1 << 32
_PSW_BA: Final = 1 << 31
_CR0_EDAT: Final = 1 << 23


@dataclass
class Breakpoint:
    """A place or an event to stop at."""

    number: int
    kind: str  # one of BP_KINDS
    spec: str  # as the user wrote it
    address: int | None = None  # addr: virtual address; watch: host absolute address
    length: int = 0  # watch: bytes
    access: bool = False  # watch: stop on reads too
    code: int | None = None  # uvc: command code; sie: interception code; page: frame (None: any)
    enabled: bool = True
    hits: int = 0
    old: bytes = b""  # watch: the bytes last seen
    condition: str = ""  # addr: stop only when this holds (``Session.holds``)
    temporary: bool = False  # addr: deleted when it stops the machine (tbreak)

    def describe(self) -> str:
        """One line: what this breakpoint stops at."""
        if self.kind == "addr":
            what = f"at {self.address:#x}" + (f" ({self.spec})" if self.spec != f"{self.address:#x}" else "")
        elif self.kind == "watch":
            assert self.address is not None
            what = (
                f"{'access' if self.access else 'store'} to host {self.address:#x}+{self.length}"
                + (f" ({self.spec})" if self.spec else "")
            )
        elif self.kind == "uvc":
            cmd = uv_command(self.code) if self.code is not None else None
            what = "any UVC" if self.code is None else f"UVC {self.code:#06x} {cmd.name if cmd else ''}".rstrip()
        elif self.kind == "sie":
            what = (
                "any SIE interception"
                if self.code is None
                else f"SIE interception {self.code:#04x} ({SIE_INTERCEPTS.get(self.code, 'unknown')})"
            )
        elif self.kind == "secure":
            what = "host access to secure storage (PGM 0x3D)"
        else:
            what = "any page-state change" if self.code is None else f"page-state change of frame {self.code:#x}"
        what += f" if {self.condition}" if self.condition else ""
        what += " (temporary)" if self.temporary else ""
        return f"{self.number}: {self.kind:<6} {what}" + ("" if self.enabled else " [disabled]") + (
            f" hits={self.hits}" if self.hits else ""
        )


@dataclass
class Stop:
    """Why execution stopped, for the user."""

    kind: str  # "step", "breakpoint", "watch", "uvc", "sie", "secure", "page", "end", "halt", "limit"
    reason: str
    cpu: int
    pc: int | None
    breakpoint: Breakpoint | None = None
    details: list[str] = field(default_factory=list)
    result: RunResult | None = None


@dataclass(frozen=True)
class Segment:
    """Part of a memory read: bytes, or why the view shows none (a trap, a translation exception)."""

    address: int  # in the space that was asked for
    data: bytes | None
    note: str = ""
    host: int | None = None  # host absolute address of the first byte, when known


class _Trap(Exception):  # noqa: N818 - control flow inside reads
    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


class Session:
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
        self.cpu_address = min(machine.cpus)
        self.view = view
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
        self.last_stop: Stop | None = None
        self.console_seen = 0  # bytes of machine.console already shown
        #: ``display`` expressions, shown after every stop: (format like x's ``/NFU`` or "", expression)
        self.displays: dict[int, tuple[str, str]] = {}
        self._cfi: CfiTable | None = None
        self.log_file: TextIO | None = None  # ``log FILE``: every command and its output are appended here
        #: the width command output is laid out for (the terminal's in the interactive console; 80 for
        #: scripts): tables adapt to it, longer lines wrap (``Output.fit``)
        self.columns = 80
        self.x_format = ("x", "w")  # x's last format and unit (gdb's defaults)
        self.x_next: tuple[str, int] | None = None  # where x without an address goes on: (space, address)
        self._install()

    # -- basics ----------------------------------------------------------------------------------------

    @property
    def cpu(self) -> Cpu:
        """The selected CPU."""
        return self.machine.cpus[self.cpu_address]

    def select_cpu(self, address: int) -> None:
        """Select the CPU that registers, memory (virtual) and ``step`` refer to."""
        if address not in self.machine.cpus:
            raise ConsoleError(f"no CPU {address} (CPUs: {', '.join(str(a) for a in sorted(self.machine.cpus))})")
        self.cpu_address = address

    def set_view(self, view: str) -> None:
        """Switch the point of view: ``host`` or ``owner``."""
        if view not in VIEWS:
            raise ConsoleError(f"unknown view {view!r} (views: {', '.join(VIEWS)})")
        self.view = view

    def is_secure(self, cpu: Cpu | None = None) -> bool:
        """True when the CPU runs a secure guest (the machine says so for its vCPUs; otherwise: the CPU's
        guest mapping carries an owner tag)."""
        c = cpu if cpu is not None else self.cpu
        hook = getattr(self.machine, "cpu_secure", None)
        if hook is not None:
            return bool(hook(c.address))
        return c.guest is not None and c.guest.owner_tag is not None

    def value(self, text: str) -> int:
        """Evaluate an address or value expression on the selected CPU."""
        return evaluate(text, self.cpu, self.symbols, self._read_u64)

    def holds(self, text: str) -> bool:
        """Whether a condition holds: ``E1 OP E2`` (==, !=, <, <=, >, >=, unsigned) or ``E`` (not zero)."""
        for op in ("==", "!=", "<=", ">=", "<", ">"):
            if op in text:
                lhs, rhs = text.split(op, 1)
                a, b = self.value(lhs), self.value(rhs)
                return {"==": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b}[op]
        return self.value(text) != 0

    def read_u64(self, vaddr: int) -> int:
        """The doubleword at a virtual address of the selected CPU, read as the view may (else ConsoleError)."""
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

    def symbolize(self, addr: int) -> str:
        """``name+0xoff`` for the nearest symbol at or below ``addr`` ("" when there is none)."""
        import bisect

        i = bisect.bisect_right(self._by_addr, (addr, "\U0010ffff")) - 1
        if i < 0:
            return ""
        base, name = self._by_addr[i]
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

    # -- breakpoints -----------------------------------------------------------------------------------

    def add_breakpoint(
        self, kind: str, spec: str = "", *, access: bool = False, length: int = 8, condition: str = "",
        temporary: bool = False,
    ) -> Breakpoint:  # fmt: skip
        """Add a breakpoint of ``kind`` (see ``BP_KINDS``) described by ``spec``.

        ``addr``: an address expression or symbol. ``watch``: an expression (virtual address of the
        selected CPU, or ``abs:E`` / ``host:E``), ``length`` bytes, ``access`` to stop on reads too.
        ``uvc``: a command code or short name (empty: any). ``sie``: an interception code (empty: any).
        ``secure``: no spec. ``page``: an absolute address or ``frame:N`` (empty: any frame).
        ``condition`` (addr only): stop only when it holds (``holds``); ``temporary``: delete at the stop.
        """
        spec = spec.strip()
        bp = Breakpoint(self._next_number, kind, spec, condition=condition.strip(), temporary=temporary)
        if (condition or temporary) and kind != "addr":
            raise ConsoleError("conditions and temporary breakpoints are for addresses (break LOC if EXPR)")
        if kind == "addr":
            if not spec:
                raise ConsoleError("break needs an address or a symbol")
            bp.address = self.value(spec)
            if bp.condition:
                self.holds(bp.condition)  # a mistake in the condition is an error now, not at the stop
        elif kind == "watch":
            if not spec:
                raise ConsoleError("watch needs an address")
            if not 1 <= length <= PAGE_SIZE:
                raise ConsoleError(f"watch length {length} must be 1..{PAGE_SIZE}")
            bp.address = self._watch_host_address(spec, length)
            bp.length, bp.access = length, access
            bp.old = self.machine.memory.read(bp.address, length)
        elif kind == "uvc":
            bp.code = self._uvc_code(spec) if spec else None
        elif kind == "sie":
            if spec:
                bp.code = self._int(spec, "interception code")
                if bp.code not in SIE_INTERCEPTS:
                    raise ConsoleError(
                        f"unknown SIE interception code {bp.code:#x} (known: "
                        + ", ".join(f"{c:#x}" for c in SIE_INTERCEPTS)
                        + ")"
                    )
        elif kind == "secure":
            if spec:
                raise ConsoleError("break secure takes no argument")
        elif kind == "page":
            if spec:
                frame = self._int(spec[6:], "frame") if spec.startswith("frame:") else self.value(spec) >> PAGE_SHIFT
                if frame >= self.machine.memory.frames:
                    raise ConsoleError(f"frame {frame:#x} is outside memory ({self.machine.memory.frames:#x} frames)")
                bp.code = frame
        else:
            raise ConsoleError(f"unknown breakpoint kind {kind!r} (kinds: {', '.join(BP_KINDS)})")
        self.breakpoints[bp.number] = bp
        self._next_number += 1
        self._install()
        return bp

    def delete_breakpoint(self, number: int | None) -> None:
        """Delete one breakpoint, or all with None."""
        if number is None:
            self.breakpoints.clear()
        elif self.breakpoints.pop(number, None) is None:
            raise ConsoleError(f"no breakpoint {number}")
        self._install()

    def enable_breakpoint(self, number: int, enabled: bool) -> None:
        """Enable or disable a breakpoint."""
        bp = self.breakpoints.get(number)
        if bp is None:
            raise ConsoleError(f"no breakpoint {number}")
        bp.enabled = enabled
        if bp.kind == "watch" and bp.address is not None:
            bp.old = self.machine.memory.read(bp.address, bp.length)
        self._install()

    def _int(self, text: str, what: str) -> int:
        from emulator.console.expr import parse_number

        v = parse_number(text.strip())
        if v is None:
            raise ConsoleError(f"bad {what} {text.strip()!r} (write decimal or 0x-prefixed hex)")
        return v

    def _uvc_code(self, spec: str) -> int:
        from emulator.console.expr import parse_number
        from emulator.console.tables import uv_commands

        v = parse_number(spec)
        if v is not None:
            if uv_command(v) is None:
                raise ConsoleError(f"unknown UVC command code {v:#06x}")
            return v
        want = re.sub(r"[\s_-]+", "_", spec.strip().lower())
        for c in uv_commands():
            if want in (c.short, re.sub(r"[\s_-]+", "_", c.name.lower())):
                return c.code
        near = [c.short for c in uv_commands() if c.short.startswith(want[:4])]
        hint = f"did you mean {', '.join(near)}?" if near else "Tab completes the short names"
        raise ConsoleError(f"unknown UVC command {spec!r} ({hint})")

    def _watch_host_address(self, spec: str, length: int) -> int:
        space = "virt"
        for prefix in SPACES:
            if spec.startswith(prefix + ":"):
                space, spec = prefix, spec[len(prefix) + 1 :]
        addr = self.value(spec)
        if (addr & (PAGE_SIZE - 1)) + length > PAGE_SIZE:  # one frame per watch: its TLB fills are refused
            raise ConsoleError(
                f"a watched range must not cross a page boundary ({space} {addr:#x}+{length} ends in the "
                "next page; watch each page's part)"
            )
        try:
            host = self._to_host(space, addr, owner=True)
            end = self._to_host(space, addr + length - 1, owner=True)
        except _Trap as t:
            raise ConsoleError(f"cannot watch {space} {addr:#x}: {t.note}") from None
        if end - host != length - 1:
            raise ConsoleError("a watched range must not cross a page boundary")
        return host

    def _install(self) -> None:
        """Make the machine stop where the enabled breakpoints say, and nowhere else."""
        m = self.machine
        on = [b for b in self.breakpoints.values() if b.enabled]
        kinds = {b.kind for b in on}
        m.set_breakpoints({b.address for b in on if b.kind == "addr" and b.address is not None} | self._temp)
        frames: dict[int, bool] = {}
        for b in on:
            if b.kind == "watch" and b.address is not None:
                for f in range(b.address >> PAGE_SHIFT, ((b.address + b.length - 1) >> PAGE_SHIFT) + 1):
                    frames[f] = frames.get(f, False) or b.access
        self._set_watch_frames(frames)
        self._listen("watch", "watch" in kinds, self._add_invalidate)
        m.insn_filter = self._insn_filter if "uvc" in kinds or self._uv_log is not None else None
        if hasattr(m, "host_uvc_filter"):  # the hypervisor's own UV calls stop before they are issued
            m.host_uvc_filter = self._host_uvc if "uvc" in kinds else None
        self._listen("uvlog", "uvc" in kinds and self.providers.uv_log is not None, self._subscribe_uv)
        self._listen("sie", "sie" in kinds and self.providers.intercepts is not None, self._subscribe_sie)
        for c in m.cpus.values():
            c.pgm_observer = self._pgm_observer if "secure" in kinds else None
        self._listen("secure", "secure" in kinds, self._add_secure_access)
        self._listen("page", "page" in kinds, self._add_owner)

    def _set_watch_frames(self, frames: dict[int, bool]) -> None:
        for c in self.machine.cpus.values():
            if c.watch_frames != frames:
                c.watch_frames = dict(frames)
                c.flush_tlb()

    def _listen(self, key: str, want: bool, attach: Callable[[], Callable[[], None]]) -> None:
        have = key in self._listeners
        if want and not have:
            self._listeners[key] = attach()
        elif not want and have:
            self._listeners.pop(key)()

    def _add_invalidate(self) -> Callable[[], None]:
        mem = self.machine.memory
        mem.add_invalidate_listener(self._python_write)
        return lambda: mem.remove_invalidate_listener(self._python_write)

    def _add_secure_access(self) -> Callable[[], None]:
        mem = self.machine.memory
        mem.add_secure_access_listener(self._host_secure_access)
        return lambda: mem.remove_secure_access_listener(self._host_secure_access)

    def _add_owner(self) -> Callable[[], None]:
        mem = self.machine.memory
        self._owner_seen = {}
        mem.add_owner_listener(self._owner_changed)
        return lambda: mem.remove_owner_listener(self._owner_changed)

    def _subscribe_uv(self) -> Callable[[], None]:
        assert self.providers.uv_log is not None
        return self.providers.uv_log.subscribe(self._uv_called)

    def _subscribe_sie(self) -> Callable[[], None]:
        assert self.providers.intercepts is not None
        return self.providers.intercepts.subscribe(self._intercepted)

    def _hit(self, bp: Breakpoint, detail: str | Callable[[], str], halt: bool = True) -> None:
        """Record a breakpoint hit; a callable ``detail`` is rendered when the stop is reported."""
        bp.hits += 1
        with self._hits_lock:
            if any(b is bp for b, _ in self._hits):  # the same breakpoint again before the machine stopped
                self._more_hits[bp.number] = self._more_hits.get(bp.number, 0) + 1
                return
            self._hits.append((bp, detail))
        if halt and self.running and not self._stepping:
            self.machine.request_halt(f"breakpoint {bp.number}" + (f": {detail}" if isinstance(detail, str) else ""))

    # -- observers (run on the machine's thread) ----------------------------------------------------------

    def _insn_filter(self, cpu: Cpu, insn: Insn) -> str | None:
        if insn.name != "UVC":
            return None
        if self._uv_log is not None:
            self._uv_log.before_uvc(cpu, cpu.gpr(insn.r2))
        if self._stepping:
            return None
        if self._uvc_skip == (cpu.address, insn.pc):
            self._uvc_skip = None
            return None
        uvcb = cpu.gpr(insn.r2)
        cmd, length = None, None
        try:
            head = self._read_space("virt", uvcb, 8, owner=True, cpu=cpu, asc=3)
            length, cmd = int.from_bytes(head[0:2], "big"), int.from_bytes(head[2:4], "big")
        except _Trap:
            pass
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "uvc" and (bp.code is None or bp.code == cmd):
                c = uv_command(cmd) if cmd is not None else None
                what = f"UVC {cmd:#06x} {c.name if c else '(unknown command)'}" if cmd is not None else "UVC"
                detail = f"{what} on CPU {cpu.address} at {insn.pc:#x}, UVCB at {uvcb:#x}" + (
                    f" len {length:#x}" if length is not None else " (not readable)"
                )
                self._uvc_skip = (cpu.address, insn.pc)
                self._hit(bp, detail + " (not executed yet)", halt=False)  # the machine halts on the reason
                return f"breakpoint {bp.number}: {detail}"
        return None

    def _host_uvc(self, call: HostUvc) -> str | None:
        """The machine's ``host_uvc_filter``: the hypervisor is about to issue ``call``."""
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "uvc" and (bp.code is None or bp.code == call.code):
                detail = f"before {call.headline()}"
                self._hit(bp, detail, halt=False)  # the machine's work is suspended at the call
                return f"breakpoint {bp.number}: {detail}"
        return None

    def _uv_called(self, call: UvCall) -> None:
        if call.cpu is not None:
            return  # a CPU's own UVC: the instruction filter stopped before it
        if call.caller == "host" and hasattr(self.machine, "host_uvc_filter"):
            return  # the hypervisor's own call: ``_host_uvc`` stopped before it
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "uvc" and (bp.code is None or bp.code == call.cmd):
                c = uv_command(call.cmd)
                self._hit(
                    bp,
                    f"UVC {call.cmd:#06x} {c.name if c else ''} from {call.caller}: cc {call.cc} rc {call.rc:#06x} "
                    f"rrc {call.rrc:#06x} (completed)",
                )
                return

    def _intercepted(self, icpt: Intercept) -> None:
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "sie" and (bp.code is None or bp.code == icpt.code):
                self._hit(
                    bp,
                    f"SIE interception {icpt.code:#04x} ({SIE_INTERCEPTS.get(icpt.code, 'unknown')}) on vCPU "
                    f"{icpt.cpu}{' (secure)' if icpt.secure else ''}" + (f": {icpt.detail}" if icpt.detail else ""),
                )
                return

    def _pgm_observer(self, cpu: Cpu, code: int, teid: int | None) -> None:
        if code & 0x7F != 0x3D or self.is_secure(cpu):
            return
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "secure":
                where = f" at {teid & ~0xFFF & 0xFFFFFFFFFFFFFFFF:#x} (TEID {teid:#x})" if teid is not None else ""
                self._hit(bp, f"host CPU {cpu.address}: secure-storage access (PGM 0x3D){where}, pc {cpu.pc:#x}")
                return

    def _host_secure_access(self, addr: int, write: bool) -> None:
        if not self.running and not self._stepping:
            return  # the console's own reads in the host view
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "secure":
                page = self.providers.page_map.page(addr >> PAGE_SHIFT)
                where = f" (guest {page.guest_abs:#x})" if page.guest_abs is not None else ""
                self._hit(bp, f"the host (hypervisor code) {'stored to' if write else 'read'} {page.state} storage "
                              f"at host {addr:#x}{where}: PGM 0x3D secure-storage access")  # fmt: skip
                return

    def _python_write(self, lo: int, hi: int) -> None:
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "watch" and bp.address is not None:
                if lo < bp.address + bp.length and bp.address < hi:
                    new = self.machine.memory.read(bp.address, bp.length)
                    if new != bp.old:
                        # told while the Ultravisor is still at work: the old value is shown as the frame was
                        # before the store (an export's plaintext: hidden), the new one as the frame is at
                        # the stop (an import stores the plaintext before the frame becomes secure: hidden)
                        at, old_s = bp.address, self.shown(bp.address, bp.old)
                        bp.old = new
                        self._hit(bp, lambda: f"firmware store to host {at:#x}: {old_s} -> {self.shown(at, new)}")

    def _owner_changed(self, frame: int) -> None:
        mem = self.machine.memory
        now = (mem.owner[frame], mem.shared[frame])
        before = self._owner_seen.get(frame)
        if before is None:
            before = self._prior_state(frame, now)
        self._owner_seen[frame] = now
        if before == now:
            return
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "page" and (bp.code is None or bp.code == frame):
                self._hit(
                    bp,
                    f"frame {frame:#x} (host {frame << PAGE_SHIFT:#x}): {_state_name(*before)} -> {_state_name(*now)}",
                )
                return

    @staticmethod
    def _prior_state(frame: int, now: tuple[int, int]) -> tuple[int, int]:
        # set_owner clears the shared flag and tells listeners after the change: a frame seen for the first
        # time was host-owned unless the change was only to its shared flag
        owner, shared = now
        return (owner, 1 - shared) if owner >= 2 and shared else (0, 0)

    # -- execution -----------------------------------------------------------------------------------

    def step(self, count: int = 1) -> Stop:
        """Execute ``count`` instructions on the selected CPU (watched values are checked after each)."""
        if count < 1:
            raise ConsoleError("step count must be at least 1")
        cpu = self.cpu
        self._check_can_run(cpu)
        watches = [b for b in self.breakpoints.values() if b.enabled and b.kind == "watch"]
        saved = dict(cpu.watch_frames)
        self._hits.clear()
        self._stepping = True
        self._uvc_skip = None
        details: list[str] = []
        done = 0
        was_suspended = self.suspended
        log = self.providers.uv_log
        calls_before = len(log.calls()) if log is not None else 0
        try:
            cpu.watch_frames = {}
            cpu.flush_tlb()
            for _ in range(count):
                if self._stop_reason is not None:  # stop / Ctrl-C during a long step N
                    details.append(self._stop_reason)
                    break
                ex = self.machine.step(1, self.cpu_address)
                if ex.kind == "halt":  # a stop request that arrived after the last run ended
                    ex = self.machine.step(1, self.cpu_address)
                done += ex.data.get("executed", 1)
                changed = self._watch_changes(watches)
                note = getattr(self.machine, "last_step_note", "")
                if note:
                    details.append(note)
                if changed or self._hits or note or ex.kind in ("disabled_wait", "check_stop", "stopped", "wait"):
                    details += changed
                    break
                if cpu.state != "operating":
                    break
        except EmulatorError as e:
            raise ConsoleError(str(e)) from None
        finally:
            self._stepping = False
            self._stop_reason = None
            cpu.watch_frames = saved
            cpu.flush_tlb()
        if log is not None:
            new = list(log.calls())[calls_before:]
            for c in new[:4]:
                cmd = uv_command(c.cmd)
                details.append(f"UV call #{c.seq}: {c.cmd:#06x} {cmd.name if cmd else 'unknown'} by {c.caller}: "
                               f"cc {c.cc} rc {c.rc:#06x} rrc {c.rrc:#06x}")  # fmt: skip
            if len(new) > 4:
                details.append(f"... and {len(new) - 4} more UV calls (uvlog)")
        hits = [f"breakpoint {bp.number}: {d}" for bp, d in self._take_hits()]
        state = self.cpu_state(cpu)
        reason = f"stepped {done} instruction{'s' if done != 1 else ''}"
        if self.suspended:  # inside the hypervisor's work: the step went to its next UV call
            note = getattr(self.machine, "last_step_note", "")
            details = [d for d in details if d != note]
            if hits:  # a breakpoint on that call: it names the call
                reason, hits = hits[0], hits[1:]
            else:
                call = getattr(self.machine, "paused_call", None)
                reason = f"stopped before {call.headline()}" if call is not None else note
            details += hits + self.paused_details()
            stop = Stop("uvc", reason, cpu.address, cpu.pc, details=details)
            self.last_stop = stop
            return stop
        details += hits
        note = getattr(self.machine, "last_step_note", "")
        if was_suspended and note.startswith("the hypervisor finished"):  # the step issued its last call
            details = [d for d in details if d != note]
            reason = note
        elif state != "operating":
            reason += f"; CPU {cpu.address} is now {state}" + (
                f" ({cpu.check_stop_reason})" if cpu.check_stop_reason else ""
            )
        stop = Stop("step", reason, cpu.address, cpu.pc, details=details)
        self.last_stop = stop
        return stop

    @property
    def suspended(self) -> bool:
        """True while the machine waits before one of the hypervisor's own UV calls (``paused_call``)."""
        return bool(getattr(self.machine, "suspended", False))

    def paused_details(self) -> list[str]:
        """While the machine waits before a hypervisor's UV call: its block (host view) and what to do."""
        call = getattr(self.machine, "paused_call", None) if self.suspended else None
        if call is None:
            return []
        return call.lines() + ["(continue or step issues it; uvlog: the calls so far)"]

    def _check_can_run(self, cpu: Cpu) -> None:
        if self.running:
            raise ConsoleError("the machine is running: stop it first (stop or Ctrl-C)")
        if self.suspended:
            return  # the hypervisor's work goes on, whatever the CPU's state is meanwhile
        if cpu.state != "operating":
            why = f" ({cpu.check_stop_reason})" if cpu.check_stop_reason else ""
            raise ConsoleError(f"CPU {cpu.address} is {self.cpu_state(cpu)}{why}: it cannot run")

    def current_instruction(self, owner: bool = True) -> Instruction | None:
        """The instruction at the selected CPU's PC, or None when it cannot be read: ``owner`` True (the
        debugger's own decisions: step over calls, operand ranges) reads as firmware; False as the host
        view reads (a secure guest's code is then not readable)."""
        pc = self.cpu.pc
        try:
            code = self._read_space("virt", pc, 6, owner=owner)
        except _Trap:
            try:
                code = self._read_space("virt", pc, 2, owner=owner)
            except _Trap:
                return None
        return next(disassemble(code, pc, 1), None)

    def shown(self, host: int, data: bytes) -> str:
        """``data`` (read at host absolute ``host``) in hex as the current view may show it: the host view
        shows no byte of a frame the host may not touch (``emulator.hw.access``)."""
        if self.view == "owner" or access.refused_address(self.machine.memory, host, len(data)) is None:
            return data.hex()
        return "(secure storage: hidden in the host view)"

    def next(self) -> Stop:
        """Step one instruction, stepping over subroutine calls (branch-and-save)."""
        insn = self.current_instruction()
        if insn is not None and is_call(insn):
            return self.cont(temp=insn.address + insn.size)
        return self.step(1)

    def until(self, location: str | None = None) -> Stop:
        """Run to ``location``; without one, run until the instruction after a backward branch."""
        if location:
            return self.cont(temp=self.value(location))
        insn = self.current_instruction()
        if insn is not None:
            target = branch_target(insn)
            if target is not None and target <= insn.address:
                return self.cont(temp=insn.address + insn.size)
        return self.next()

    def cont(self, *, time_limit: float | None = None, max_insns: int | None = None, temp: int | None = None) -> Stop:
        """Run all CPUs at full speed until a breakpoint, the end of the program, a limit or ``stop``."""
        import time

        self._check_can_run(self.cpu)
        if temp is not None:
            self._temp = {temp}
            self._install()
        deadline = None if time_limit is None else time.monotonic() + time_limit
        self.running = True
        try:
            while True:
                self._hits.clear()
                if self._stop_reason is not None:  # a stop that came before or between the machine's runs
                    cpu = self.cpu
                    stop = Stop("halt", self._stop_reason, cpu.address, cpu.pc)
                    break
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining == 0.0:
                    cpu = self.cpu
                    stop = Stop("limit", "time limit reached", cpu.address, cpu.pc)
                    break
                try:
                    res = self.machine.run(max_insns=max_insns, time_limit=remaining)
                except EmulatorError as e:
                    raise ConsoleError(f"the machine failed: {e}") from None
                stop = self._classify(res, temp)
                if stop is not None:
                    break
        finally:
            self.running = False
            self._stop_reason = None
            if temp is not None:
                self._temp = set()
                self._install()
        self.last_stop = stop
        return stop

    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask a running machine, or a step of many instructions, to stop (thread-safe); the machine stays
        steppable."""
        self._stop_reason = reason
        self.machine.request_halt(reason)

    def discard_stop(self) -> None:
        """Forget a stop request that found nothing running (it must not end the next step at once)."""
        self._stop_reason = None

    def _take_hits(self) -> list[tuple[Breakpoint, str]]:
        with self._hits_lock:
            hits, self._hits = self._hits, []
            more, self._more_hits = self._more_hits, {}
        return [(bp, (d if isinstance(d, str) else d()) + (
                    f" (and {more[bp.number]} more hit{'s' if more[bp.number] != 1 else ''} of this "
                    "breakpoint before the machine stopped)" if bp.number in more else ""))
                for bp, d in hits]  # fmt: skip

    def _classify(self, res: RunResult, temp: int | None) -> Stop | None:
        m = self.machine
        hits = self._take_hits()
        at = m.stopped_at
        cpu_addr, pc = (at[0], at[1]) if at is not None else (self.cpu_address, None)
        if hits:
            bp, detail = hits[0]
            details = [f"breakpoint {b.number}: {d}" for b, d in hits[1:]]
            c = m.cpus[cpu_addr] if at is not None else self.cpu
            details = self.paused_details() + details
            return Stop(bp.kind, f"breakpoint {bp.number}: {detail}", c.address, c.pc, bp, details, res)
        last = m.last_stop
        if last is not None:
            cpu_addr, ex = last
            if ex.kind == "breakpoint":
                pc = ex.code
                self.cpu_address = cpu_addr
                if pc == temp:
                    return Stop("step", f"reached {self._where(pc)}", cpu_addr, pc, result=res)
                bps = self.breakpoints.values()
                here = [b for b in bps if b.enabled and b.kind == "addr" and b.address == pc]
                for bp in here:
                    note = ""
                    if bp.condition:
                        try:
                            if not self.holds(bp.condition):
                                continue
                        except ConsoleError as e:  # as gdb: a condition that cannot be evaluated stops
                            note = f" (condition {bp.condition!r} failed: {e})"
                    bp.hits += 1
                    if bp.temporary:
                        self.delete_breakpoint(bp.number)
                    kind = "temporary breakpoint" if bp.temporary else "breakpoint"
                    why = f"{kind} {bp.number} at {self._where(pc)}{note}"
                    return Stop("breakpoint", why, cpu_addr, pc, bp, result=res)
                if here:
                    return None  # no condition held: run on (the machine resumes over the breakpoint)
                return Stop("breakpoint", f"breakpoint at {self._where(pc)}", cpu_addr, pc, result=res)
            if ex.kind == "watch":
                return self._watch_stop(cpu_addr, ex.code, ex.data.get("host", 0), bool(ex.data.get("write")), res)
        kind = {"all CPUs stopped": "end", "check stop": "end", "instruction limit reached": "limit",
                "time limit reached": "limit"}.get(res.reason, "halt")  # fmt: skip
        reason = res.describe()
        if kind == "end":
            states = ", ".join(f"CPU {c.address} {c.state}" + (f" ({c.detail})" if c.detail else "") for c in res.cpus)
            reason = f"{res.reason}: {states}"
        return Stop(kind, reason, self.cpu_address, self.cpu.pc, result=res)

    def _watch_stop(self, cpu_addr: int, vaddr: int, host: int, write: bool, res: RunResult) -> Stop | None:
        """A refused fill on a watched frame: execute the access, then decide whether it touched the range."""
        cpu = self.machine.cpus[cpu_addr]
        pc = cpu.pc
        operands = self._operand_ranges(cpu)
        watches = [b for b in self.breakpoints.values() if b.enabled and b.kind == "watch" and b.address is not None]
        saved = dict(cpu.watch_frames)
        self._stepping = True
        try:
            cpu.watch_frames = {}
            cpu.flush_tlb()
            self.machine.step(1, cpu_addr)
        finally:
            self._stepping = False
            cpu.watch_frames = saved
            cpu.flush_tlb()
        for bp in watches:
            assert bp.address is not None
            touched = (write or bp.access) and any(
                lo < bp.address + bp.length and bp.address < hi for lo, hi in operands
            )
            new = self.machine.memory.read(bp.address, bp.length)
            if touched or new != bp.old:
                bp.hits += 1
                kind = "store" if write else "read"
                detail = f"{kind} by the instruction at {self._where(pc)}"
                old_s, new_s = self.shown(bp.address, bp.old), self.shown(bp.address, new)
                change = f"value {old_s} -> {new_s}" if new != bp.old else f"value {new_s} (unchanged)"
                bp.old = new
                self.cpu_address = cpu_addr
                return Stop("watch", f"watchpoint {bp.number}: {detail}", cpu_addr, cpu.pc, bp, [change], res)
        return None  # another address in a watched frame: carry on

    def _operand_ranges(self, cpu: Cpu) -> list[tuple[int, int]]:
        """Host ranges the storage operands of the instruction at the PC may touch (8 bytes unless known)."""
        insn = self.current_instruction()
        if insn is None:
            return []
        out = []
        for m in _MEM_OPERAND.finditer(insn.operands):
            disp = int(m.group(1), 0)
            inside = [t.strip() for t in m.group(2).split(",")] if m.group(2) else []
            length = 8
            ea = disp
            for t in inside:
                if t.startswith("%r"):
                    ea += cpu.gpr(int(t[2:]))
                elif t:
                    length = int(t, 0)
            try:
                lo = self._to_host("virt", cpu.wrap(ea), owner=True, cpu=cpu)
            except _Trap:
                continue
            out.append((lo, lo + length))
        return out

    def _watch_changes(self, watches: list[Breakpoint]) -> list[str]:
        out = []
        for bp in watches:
            assert bp.address is not None
            new = self.machine.memory.read(bp.address, bp.length)
            if new != bp.old:
                bp.hits += 1
                out.append(
                    f"watchpoint {bp.number}: value {self.shown(bp.address, bp.old)} -> {self.shown(bp.address, new)}"
                )
                bp.old = new
        return out

    def _where(self, addr: int) -> str:
        sym = self.symbolize(addr)
        return f"{addr:#x}" + (f" <{sym}>" if sym else "")

    # -- memory ---------------------------------------------------------------------------------------

    def _to_host(self, space: str, addr: int, *, owner: bool, cpu: Cpu | None = None, asc: int | None = None) -> int:
        """Host absolute address of ``addr`` in ``space`` (no storage-key or reference-bit side effects)."""
        c = cpu if cpu is not None else self.cpu
        mem = self.machine.memory
        if space == "host":
            host = addr
        else:
            if space == "virt":
                _real, absolute = self._dat(c, addr, owner, asc)
            elif space == "real":
                absolute = c.real_to_abs(addr)
            elif space == "abs":
                absolute = addr
            else:
                raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
            host = self._guest_to_host(c, absolute)
        if not 0 <= host < mem.size:
            raise _Trap(f"outside memory (size {mem.size:#x})")
        return host

    def _guest_to_host(self, cpu: Cpu, absolute: int) -> int:
        hook = getattr(self.machine, "guest_abs_to_host", None)
        if hook is not None:  # a VM: the hypervisor's mapping of guest absolute storage (its memory slot)
            try:
                return int(hook(absolute))
            except ConsoleError as e:
                raise _Trap(str(e)) from None
        g = cpu.guest
        if g is None:
            return absolute
        try:
            return g.to_host(absolute, False, False)
        except ProgramException as e:
            raise _Trap(f"guest absolute {absolute:#x} is not mapped (PGM {e.code:#04x} {pgm_name(e.code)})") from None
        except Exception as e:  # noqa: BLE001 - a GuestIntercept: the page is not imported yet
            raise _Trap(f"guest absolute {absolute:#x}: {e}") from None

    def _dat(self, cpu: Cpu, vaddr: int, owner: bool, asc: int | None) -> tuple[int, int]:
        """(real, absolute) of a virtual address (for a large frame both are its absolute address)."""
        mask = cpu.psw[0]
        if not mask & _PSW_DAT:
            return vaddr, cpu.real_to_abs(vaddr)
        if asc is None:
            asc = (mask >> 46) & 3
        cr = (1, 1, 7, 13)[asc]
        mem = self.machine.memory
        host_view = mem.host_view()

        def table_real_to_host(real: int) -> int:
            host = self._guest_to_host(cpu, cpu.real_to_abs(real))
            if not owner and not host_view.accessible(host):  # a host read: the host's tables only
                raise _Trap(f"DAT tables at host {host:#x} are in secure storage (PGM 0x3D for the host)")
            return host

        try:
            edat1 = bool(cpu.cr(0) & _CR0_EDAT)
            t = dat.translate(
                mem.buffer().toreadonly(),
                table_real_to_host,
                cpu.cr(cr),
                vaddr,
                False,
                asc,
                edat1,
                edat2=edat1 and cpu.has_facility(FAC_EDAT2),
            )
        except ProgramException as e:
            raise _Trap(f"PGM {e.code:#04x} {pgm_name(e.code)} translating {vaddr:#x}") from None
        # a large frame (enhanced DAT) maps to an absolute address, which has no real address of its own
        return t.address, t.address if t.absolute else cpu.real_to_abs(t.address)

    def _read_space(
        self, space: str, addr: int, length: int, *, owner: bool = False, cpu: Cpu | None = None, asc: int | None = None
    ) -> bytes:
        out = b""
        for seg in self.read(space, addr, length, owner=owner, cpu=cpu, asc=asc):
            if seg.data is None:
                raise _Trap(seg.note)
            out += seg.data
        return out

    def read(
        self,
        space: str,
        addr: int,
        length: int,
        *,
        owner: bool | None = None,
        cpu: Cpu | None = None,
        asc: int | None = None,
    ) -> list[Segment]:
        """Read memory the way the current view can: page by page, with a note where a page cannot be read.

        ``owner`` overrides the view (True: firmware reads, plaintext of secure frames).
        """
        if space not in SPACES:
            raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
        if not 0 < length <= 1 << 20:
            raise ConsoleError(f"length {length} must be between 1 and {1 << 20}")
        if not 0 <= addr or addr + length > 1 << 64:
            raise ConsoleError(f"{addr:#x}+{length} runs past the end of the 64-bit address space")
        as_owner = self.view == "owner" if owner is None else owner
        mem = self.machine.memory
        hv = mem.host_view()
        segs: list[Segment] = []
        pos, end = addr, addr + length
        while pos < end:
            n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
            try:
                host = self._to_host(space, pos, owner=as_owner, cpu=cpu, asc=asc)
                if host + n > mem.size:
                    raise _Trap(f"outside memory (size {mem.size:#x})")
                if as_owner:
                    data = mem.read(host, n)
                else:
                    try:
                        data = hv.read(host, n)
                    except SecureStorageAccess:
                        state = self.providers.page_map.page(host >> PAGE_SHIFT).state
                        raise _Trap(f"trap: PGM 0x3D secure-storage access ({state} frame {host >> PAGE_SHIFT:#x})")
                segs.append(Segment(pos, data, host=host))
            except _Trap as t:
                segs.append(Segment(pos, None, t.note))
            pos += n
        return segs

    def write(self, space: str, addr: int, data: bytes) -> None:
        """Store ``data`` the way the current view may: the host view as a host access (a secure or donated
        frame refuses it with the trap the host would get), the owner view as firmware (plaintext)."""
        if space not in SPACES:
            raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
        if not 0 <= addr or addr + len(data) > 1 << 64:
            raise ConsoleError(f"{addr:#x}+{len(data)} runs past the end of the 64-bit address space")
        owner = self.view == "owner"
        mem = self.machine.memory
        pos, end, parts = addr, addr + len(data), []
        while pos < end:  # translate every page first: nothing is stored unless all of it can be
            n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
            try:
                host = self._to_host(space, pos, owner=owner)
            except _Trap as t:
                raise ConsoleError(f"cannot store at {space} {pos:#x}: {t.note}") from None
            if host + n > mem.size:
                raise ConsoleError(f"cannot store at {space} {pos:#x}: outside memory (size {mem.size:#x})")
            if not owner and access.refused_address(mem, host, n) is not None:
                frame = host >> PAGE_SHIFT
                state = self.providers.page_map.page(frame).state
                raise ConsoleError(
                    f"trap: PGM 0x3D secure-storage access ({state} frame {frame:#x}): the host cannot store "
                    "there (view owner to write as the guest owner)"
                )
            parts.append((host, data[pos - addr : pos - addr + n]))
            pos += n
        for host, chunk in parts:
            mem.write(host, chunk)  # checked above for the host view; drops translated code

    def translate(self, vaddr: int, asc: int | None = None) -> tuple[int, int, int]:
        """(real, guest absolute, host absolute) of a virtual address of the selected CPU (owner view)."""
        c = self.cpu
        try:
            real, absolute = self._dat(c, vaddr, True, asc)
            return real, absolute, self._guest_to_host(c, absolute)
        except _Trap as t:
            raise ConsoleError(t.note) from None

    # -- the Ultravisor's and the hypervisor's views --------------------------------------------------------

    def page_info(self, frame: int) -> PageInfo:
        """The page map's entry for a host frame."""
        if not 0 <= frame < self.machine.memory.frames:
            raise ConsoleError(f"frame {frame:#x} is outside memory ({self.machine.memory.frames:#x} frames)")
        return self.providers.page_map.page(frame)

    def uv_calls(self) -> list[UvCall] | None:
        """The UV-call log, or None when the machine has no Ultravisor log to show."""
        log = self.providers.uv_log
        return None if log is None else list(log.calls())

    def close(self) -> None:
        """Remove every hook this session installed."""
        self.breakpoints.clear()
        self._temp.clear()
        if self._uv_log is not None:
            self._uv_log.close()
            self._uv_log = None
        self._install()


def _state_name(owner: int, shared: int) -> str:
    if owner == 0:
        return "non-secure"
    if owner == 1:
        return "donated"
    return f"{'shared' if shared else 'secure'} (config tag {owner})"

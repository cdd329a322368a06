"""The session's breakpoints of every kind and the observers that hit them on the machine's thread.

``BreakpointControl`` is a part of ``Session`` (a base class, over ``storage_views.StorageViews``): address
breakpoints are unicorn exits, watchpoints refused TLB fills and a memory listener, UVC and SIE breakpoints
the owner's instruction filter and the Ultravisor's and hypervisor's streams, secure-storage and page-state
breakpoints the program-interruption observer and the owner-tag listeners.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from emulator.console.errors import ConsoleError
from emulator.console.providers import Intercept, UvCall
from emulator.console.tables import SIE_INTERCEPTS, uv_command
from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from emulator.console.hostcalls import HostUvc
    from emulator.hw.cpu import Cpu, Insn
from emulator.console.storage_views import SPACES, StorageViews, _Trap

BP_KINDS: Final = ("addr", "watch", "uvc", "sie", "secure", "page")


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
    #: addr on an SE image: "secure" (in the secure guest, the program's) or "normal" (stage3a, before the
    #: secure IPL); "" where the machine runs one program
    scope: str = ""

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
            what = (
                "any UVC" if self.code is None else f"UVC {self.code:#06x} {cmd.name if cmd else ''}".rstrip()
            )
        elif self.kind == "sie":
            what = (
                "any SIE interception"
                if self.code is None
                else f"SIE interception {self.code:#04x} ({SIE_INTERCEPTS.get(self.code, 'unknown')})"
            )
        elif self.kind == "secure":
            what = "host access to secure storage (PGM 0x3D)"
        else:
            what = (
                "any page-state change" if self.code is None else f"page-state change of frame {self.code:#x}"
            )
        what += {"secure": " in the secure guest",
                 "normal": " in stage3a (before the secure IPL)"}.get(self.scope, "")  # fmt: skip
        what += f" if {self.condition}" if self.condition else ""
        what += " (temporary)" if self.temporary else ""
        return f"{self.number}: {self.kind:<6} {what}" + ("" if self.enabled else " [disabled]") + (
            f" hits={self.hits}" if self.hits else ""
        )


class BreakpointControl(StorageViews):
    """Breakpoints and their observers (a base class of ``Session``)."""

    if TYPE_CHECKING:  # provided by Session
        breakpoints: dict[int, Breakpoint]
        running: bool
        _next_number: int
        _temp: set[int]
        _temp_scope: str
        _hits: list[tuple[Breakpoint, str | Callable[[], str]]]
        _more_hits: dict[int, int]
        _hits_lock: threading.Lock
        _stepping: bool
        _listeners: dict[str, Callable[[], None]]
        _uv_log: Any

        def is_secure(self, cpu: Cpu | None = None) -> bool:
            """Whether the CPU runs a secure guest (``Session``)."""

        scoped: bool

        def value(self, text: str, *, owner: bool = False, symbols: dict[str, int] | None = None) -> int:
            """The value of an expression (``Session``)."""

        def resolve_address(self, spec: str, scope: str | None = None) -> tuple[int, str]:
            """An address breakpoint's address and scope (``Session``)."""

        @property
        def debug_secure(self) -> bool:
            """Whether the session has the machine's debug capability (``Session``)."""

        def holds(self, text: str) -> bool:
            """Whether a condition holds (``Session``)."""

        def shown(self, host: int, data: bytes) -> str:
            """A watched frame's bytes as the view may show them (``Session``)."""

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
            bp.address, bp.scope = self.resolve_address(spec)
            if bp.scope == "secure" and not self.debug_secure:  # the host cannot stop a secure guest
                from emulator.console.secure import NEEDS_DEBUG

                raise ConsoleError(f"break {spec}: an address in the secure guest: {NEEDS_DEBUG}")
            if bp.condition:
                self.holds(bp.condition)  # a mistake in the condition is an error now, not at the stop
        elif kind == "watch":
            if not spec:
                raise ConsoleError("watch needs an address")
            if not 1 <= length <= PAGE_SIZE:
                raise ConsoleError(f"watch length {length} must be 1..{PAGE_SIZE}")
            if self.is_secure() and not self.debug_secure:  # the host cannot watch a secure CPU's accesses
                from emulator.console.secure import NEEDS_DEBUG

                raise ConsoleError(f"watch {spec}: CPU {self.cpu_address} runs a secure guest: {NEEDS_DEBUG}")
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
                frame = (
                    self._int(spec[6:], "frame")
                    if spec.startswith("frame:")
                    else self.value(spec) >> PAGE_SHIFT
                )
                if frame >= self.machine.memory.frames:
                    raise ConsoleError(
                        f"frame {frame:#x} is outside memory ({self.machine.memory.frames:#x} frames)"
                    )
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
        addrs = [b for b in on if b.kind == "addr" and b.address is not None]
        if self.scoped:  # each set where its program runs (the machine places them as the vCPUs change)
            temp = self._temp if self._temp_scope else set()
            m.set_breakpoints({b.address for b in addrs if b.scope != "secure"}  # type: ignore[call-arg]
                              | (temp if self._temp_scope == "normal" else set()),
                              {b.address for b in addrs if b.scope != "normal"}
                              | (temp if self._temp_scope == "secure" else set()))  # fmt: skip
        else:
            m.set_breakpoints({b.address for b in addrs} | self._temp)
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
            self.machine.request_halt(
                f"breakpoint {bp.number}" + (f": {detail}" if isinstance(detail, str) else "")
            )

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
        if call.cpu is not None and getattr(self.machine, "guest_uvc_stops", True):
            return  # a CPU's own UVC: the instruction filter stopped before it
        if call.caller == "host" and hasattr(self.machine, "host_uvc_filter"):
            return  # the hypervisor's own call: ``_host_uvc`` stopped before it
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "uvc" and (bp.code is None or bp.code == call.cmd):
                c = uv_command(call.cmd)
                self._hit(
                    bp,
                    f"UVC {call.cmd:#06x} {c.name if c else ''} from {call.caller}: "
                    f"cc {call.cc} rc {call.rc:#06x} rrc {call.rrc:#06x} (completed)",
                )
                return

    def _intercepted(self, icpt: Intercept) -> None:
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "sie" and (bp.code is None or bp.code == icpt.code):
                self._hit(
                    bp,
                    f"SIE interception {icpt.code:#04x} ({SIE_INTERCEPTS.get(icpt.code, 'unknown')}) on vCPU "
                    f"{icpt.cpu}{' (secure)' if icpt.secure else ''}"
                    + (f": {icpt.detail}" if icpt.detail else ""),
                )
                return

    def _pgm_observer(self, cpu: Cpu, code: int, teid: int | None) -> None:
        if code & 0x7F != 0x3D or self.is_secure(cpu):
            return
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "secure":
                where = (
                    f" at {teid & ~0xFFF & 0xFFFFFFFFFFFFFFFF:#x} (TEID {teid:#x})"
                    if teid is not None
                    else ""
                )
                self._hit(
                    bp, f"host CPU {cpu.address}: secure-storage access (PGM 0x3D){where}, pc {cpu.pc:#x}"
                )
                return

    def _host_secure_access(self, addr: int, write: bool) -> None:
        if not self.running and not self._stepping:
            return  # the console's own reads in the host view
        for bp in self.breakpoints.values():
            if bp.enabled and bp.kind == "secure":
                page = self.providers.page_map.page(addr >> PAGE_SHIFT)
                where = f" (guest {page.guest_abs:#x})" if page.guest_abs is not None else ""
                self._hit(
                    bp,
                    f"the host (hypervisor code) {'stored to' if write else 'read'} {page.state} storage "
                    f"at host {addr:#x}{where}: PGM 0x3D secure-storage access",
                )
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
                        self._hit(
                            bp, lambda: f"firmware store to host {at:#x}: {old_s} -> {self.shown(at, new)}"
                        )

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
                    f"frame {frame:#x} (host {frame << PAGE_SHIFT:#x}): "
                    f"{_state_name(*before)} -> {_state_name(*now)}",
                )
                return

    @staticmethod
    def _prior_state(frame: int, now: tuple[int, int]) -> tuple[int, int]:
        # set_owner clears the shared flag and tells listeners after the change: a frame seen for the first
        # time was host-owned unless the change was only to its shared flag
        owner, shared = now
        return (owner, 1 - shared) if owner >= 2 and shared else (0, 0)


def _state_name(owner: int, shared: int) -> str:
    if owner == 0:
        return "non-secure"
    if owner == 1:
        return "donated"
    return f"{'shared' if shared else 'secure'} (config tag {owner})"

"""Breakpoints, events and the explicit debug capability of the public API (``emulator.api`` re-exports
them): stop a guest's run at an address, a UV call, a SIE exit or a host access to secure storage, iterate
over what a run met, and, only when asked for by name, the guest owner's view of a secure guest.

What the host may set (``docs/api.md``): breakpoints on UV calls (after each completes: the UV log the
API already gives), on SIE exits (the exits the hypervisor handles) and on its own accesses to secure
storage (PGM 0x3D), on any guest; address breakpoints on a normal guest (the hypervisor's own guest, as
KVM's guest debugging). An address breakpoint in a guest booted from an SE image needs the machine's debug
capability (``Host.debug_capability``): no real hypervisor can stop a secure guest where it chooses.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from emulator.errors import HypervisorError
from emulator.hw.memory import PAGE_SIZE

if TYPE_CHECKING:
    from emulator.api import Exit, RunOutcome, UvLogEntry
    from emulator.hw.sie import SieExit
    from emulator.hypervisor.kvm import Vm, VmResult
    from emulator.machine.secure_debug import SecureDebug

__all__ = [
    "Event", "Breakpoint", "DebugCapability", "SecureRegisters", "DebugCapabilityRequired", "GuestDebugging",
    "elf_symbols",
]  # fmt: skip

log = logging.getLogger("zuv.api")

#: Breakpoint kinds, and the kind of ``Event`` that ends a run.
KINDS: Final = ("address", "uvc", "exit", "secure-access")
#: ``callback(event) -> bool | None``: called when a breakpoint is hit; True stops the run, anything else
#: lets it go on (a breakpoint without a callback always stops it).
Callback = Callable[["Event"], "bool | None"]


def elf_symbols(path: str | Path) -> dict[str, int]:
    """The function and object symbols of an ELF file (the kernel an SE image was built from names the
    secure guest's addresses: ``guests/images/secure_demo.elf`` for the demo).

    Raises:
        HypervisorError: the file cannot be read as an ELF file.
    """
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    out: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            for sec in ELFFile(f).iter_sections():
                if isinstance(sec, SymbolTableSection):
                    for sym in sec.iter_symbols():
                        if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT") \
                                and sym["st_shndx"] != "SHN_UNDEF":  # fmt: skip
                            out[sym.name] = sym["st_value"]
    except (OSError, ELFError) as e:
        raise HypervisorError(f"{path}: cannot read symbols: {getattr(e, 'strerror', None) or e}") from None
    return out


class DebugCapabilityRequired(HypervisorError):
    """The operation is the guest owner's (emulator privilege): pass ``debug=host.debug_capability()``."""


@dataclass(frozen=True)
class Event:
    """What stopped (or was seen by) a run: a breakpoint's hit, or the end of a run (``kind == "end"``).

    ``address``: the guest address of an address breakpoint, or the host address a refused host access
    touched (``secure-access``; ``guest_address`` then names the guest page when it is this guest's).
    """

    kind: str  # one of KINDS, or "end"
    detail: str
    cpu: int | None = None
    address: int | None = None
    guest_address: int | None = None
    write: bool = False  # secure-access: a store
    exit: Exit | None = None
    uvc: UvLogEntry | None = None
    outcome: RunOutcome | None = None  # end: how the run ended
    breakpoint: int | None = None  # the breakpoint's number

    def __str__(self) -> str:
        where = f" (breakpoint {self.breakpoint})" if self.breakpoint is not None else ""
        return f"{self.kind}: {self.detail}{where}"


class Breakpoint:
    """A stop condition of one guest (made by ``Guest.break_at``, ``break_on_uvc``, ``break_on_exit``,
    ``break_on_secure_access``). ``hits`` counts its hits; ``remove()`` takes it away."""

    def __init__(self, owner: GuestDebugging, number: int, kind: str, spec: str, match: Any,
                 callback: Callback | None) -> None:  # fmt: skip
        self._owner = owner
        self.number = number
        self.kind = kind
        self.spec = spec
        self._match = match  # address (int), UVC code (int|None), (code|None, name|None), None
        self.callback = callback
        self.hits = 0

    def remove(self) -> None:
        """Delete the breakpoint (nothing happens if it is gone already)."""
        self._owner._remove(self)  # noqa: SLF001 - its guest's table

    def __repr__(self) -> str:
        return f"Breakpoint({self.number}, {self.kind}, {self.spec!r}, hits={self.hits})"


@dataclass(frozen=True)
class SecureRegisters:
    """A secure CPU's registers as the Ultravisor keeps them (``DebugCapability.registers``)."""

    psw: tuple[int, int]
    gprs: tuple[int, ...]
    crs: tuple[int, ...]
    ars: tuple[int, ...]
    fprs: tuple[int, ...]
    fpc: int
    prefix: int


class DebugCapability:
    """The machine's debug capability: the guest owner's view of a secure guest, an emulator privilege (no
    real machine gives a hypervisor this). Made only by ``Host.debug_capability()``, asked for by name; the
    attack playbook never asks for one, and nothing else in the API hands one out.

    Example::

        >>> from emulator.api import Host
        >>> with Host(seed=1) as host:
        ...     guest = host.boot()
        ...     debug = host.debug_capability()
        ...     debug.read(guest, guest.secret_page, 11), hex(debug.registers(guest).psw[1]) != "0x0"
        (b'zuv secret:', True)
    """

    def __init__(self, secure_debug: SecureDebug) -> None:
        self._debug = secure_debug

    def __repr__(self) -> str:
        return "DebugCapability(emulator privilege)"

    def registers(self, guest: GuestDebugging, cpu: int = 0) -> SecureRegisters:
        """The registers of vCPU ``cpu``: a secure CPU's from the Ultravisor's record.

        Raises:
            HypervisorError: the vCPU is not a secure CPU (a normal guest's are the host's: ``Guest``).
        """
        rec = self._debug.secure_cpu(guest._vm, guest._vcpu(cpu).address)  # noqa: SLF001
        if rec is None:
            raise HypervisorError(f"{guest._vm.name} CPU {cpu} is not a secure CPU")  # noqa: SLF001
        return SecureRegisters(
            tuple(rec.psw),
            tuple(rec.gprs),
            tuple(rec.crs),
            tuple(rec.ars),
            tuple(rec.fprs),
            rec.fpc,
            rec.prefix,
        )

    def read(self, guest: GuestDebugging, gaddr: int, length: int) -> bytes:
        """Guest storage as the Ultravisor reads it: the plaintext of secure pages (an exported page reads
        as its ciphertext, which is what its frame holds)."""
        guest._check(gaddr, length)  # noqa: SLF001
        out = bytearray()
        pos, end = gaddr, gaddr + length
        while pos < end:
            n = min(end, (pos | (PAGE_SIZE - 1)) + 1) - pos
            out += self._debug.read_absolute(guest.frame(pos), n)  # type: ignore[attr-defined]
            pos += n
        return bytes(out)

    def _set_breakpoints(self, vm: Vm, addrs: set[int]) -> None:
        for a in vm.vcpus:
            self._debug.hardware_cpu(vm, a).set_breakpoints(addrs)


class GuestDebugging:
    """``Guest``'s breakpoints and events (a base class of ``emulator.api.Guest``)."""

    _vm: Vm
    _owner: Any

    def _init_debugging(self, se_image: bool) -> None:
        self._se_image = se_image
        self._bps: dict[int, Breakpoint] = {}
        self._bp_next = 1
        self._hits: list[tuple[Event, bool]] = []
        self._running = False
        self._addr_debug: DebugCapability | None = None
        self._resume_pc: tuple[int, int] | None = None
        self._unsub_uvc: Callable[[], None] | None = None
        self._secure_listener = False
        self._hooks_pv: object = None  # the VM's secure configuration the address breakpoints were placed for

    # -- making breakpoints -----------------------------------------------------------------------------

    def _add(self, kind: str, spec: str, match: Any, callback: Callback | None) -> Breakpoint:
        bp = Breakpoint(self, self._bp_next, kind, spec, match, callback)
        self._bp_next += 1
        self._bps[bp.number] = bp
        self._install()
        return bp

    def _remove(self, bp: Breakpoint) -> None:
        if self._bps.pop(bp.number, None) is not None:
            self._install()

    @property
    def breakpoints(self) -> list[Breakpoint]:
        """The guest's breakpoints, oldest first."""
        return list(self._bps.values())

    def break_at(self, address: int, *, callback: Callback | None = None,
                 debug: DebugCapability | None = None) -> Breakpoint:  # fmt: skip
        """Stop before any vCPU executes the instruction at guest (virtual) ``address``.

        Args:
            address: the instruction's address as the guest's PSW shows it.
            callback: called with the ``Event``; the run stops only if it returns True.
            debug: the machine's debug capability, required for a guest booted from an SE image.

        Raises:
            DebugCapabilityRequired: the guest was booted from an SE image and ``debug`` is None.
        """
        if self._se_image and not isinstance(debug, DebugCapability):
            raise DebugCapabilityRequired(
                f"{self._vm.name} is a Secure Execution image: an address breakpoint in it is the guest "
                "owner's (pass debug=host.debug_capability())")
        if debug is not None:
            self._addr_debug = debug
        return self._add("address", f"{address:#x}", address & 0xFFFFFFFFFFFFFFFF, callback)

    def break_on_uvc(
        self, command: str | int | None = None, *, callback: Callback | None = None
    ) -> Breakpoint:
        """Stop after each Ultravisor call of this guest's runs completes (the host's own and the guest's,
        as the UV log shows them), or only after ``command`` (a ``firmware.uv_codes`` name such as
        ``"set_shared_access"``, or the code). A guest's call stops the run at the SIE exit after it: the
        callback is called once the Ultravisor's frames are gone (``emulator/hw/seal.py``).

        Raises:
            HypervisorError: an unknown command.
        """
        from firmware.uv_codes import BY_CODE, BY_NAME

        code = None
        if command is not None:
            cmd = BY_NAME.get(command) if isinstance(command, str) else BY_CODE.get(command)
            if cmd is None:
                raise HypervisorError(f"unknown UVC {command!r} (names and codes: firmware/uv_codes.py)")
            code = cmd.code
        return self._add("uvc", "any" if command is None else str(command), code, callback)

    def break_on_exit(self, code: int | str | None = None, *, callback: Callback | None = None) -> Breakpoint:
        """Stop after a SIE exit of this guest (the hypervisor handles it first): any, one interception code
        (``0x04``, ``0x68``, ...) or an exit's name as ``Exit.name`` gives it."""
        return self._add(
            "exit",
            "any" if code is None else (f"{code:#04x}" if isinstance(code, int) else code),
            code,
            callback,
        )

    def break_on_secure_access(self, *, callback: Callback | None = None) -> Breakpoint:
        """Stop after the host touched secure storage and took PGM 0x3D (the hypervisor's device models, the
        script's own ``read``/``write``, any host-side access through the host view)."""
        return self._add("secure-access", "host access to secure storage", None, callback)

    # -- the hooks -------------------------------------------------------------------------------------

    def _install(self) -> None:
        kinds = {bp.kind for bp in self._bps.values()}
        addrs = {bp._match for bp in self._bps.values() if bp.kind == "address"}  # noqa: SLF001
        self._set_hw_breakpoints(addrs)
        host = self._owner
        if "uvc" in kinds and self._unsub_uvc is None:
            self._unsub_uvc = host.on_uvc(self._uvc_done)
        elif "uvc" not in kinds and self._unsub_uvc is not None:
            self._unsub_uvc()
            self._unsub_uvc = None
        host_view = self._vm.hv.host
        if "secure-access" in kinds and not self._secure_listener:
            host_view.add_secure_access_listener(self._secure_access)
            self._secure_listener = True
        elif "secure-access" not in kinds and self._secure_listener:
            host_view.remove_secure_access_listener(self._secure_access)
            self._secure_listener = False

    def _set_hw_breakpoints(self, addrs: set[int]) -> None:
        vm = self._vm
        if vm.destroyed:
            return
        if self._addr_debug is not None:
            self._addr_debug._set_breakpoints(vm, addrs)  # noqa: SLF001
            return
        for v in vm.vcpus.values():
            if not v.secure:
                v.cpu.set_breakpoints(addrs)

    def _close_debugging(self) -> None:
        self._bps.clear()
        if self._unsub_uvc is not None:
            self._unsub_uvc()
            self._unsub_uvc = None
        if self._secure_listener:
            self._vm.hv.host.remove_secure_access_listener(self._secure_access)
            self._secure_listener = False

    def _hit(self, bp: Breakpoint, event: Event) -> None:
        bp.hits += 1
        stop = True
        if bp.callback is not None:
            stop = bp.callback(event) is True
        self._hits.append((event, stop))
        if stop and self._running:  # a hit outside a run (the script's own access) only records
            self._vm.request_halt(f"breakpoint {bp.number}: {event.detail}")

    def _uvc_done(self, entry: UvLogEntry) -> None:
        if not self._running:
            return
        for bp in list(self._bps.values()):
            if bp.kind == "uvc" and bp._match in (None, entry.code):  # noqa: SLF001
                self._hit(bp, Event("uvc", str(entry), uvc=entry, breakpoint=bp.number))

    def _secure_access(self, addr: int, write: bool) -> None:
        vm = self._vm
        gaddr = addr - vm.mso if vm.mso <= addr < vm.mso + vm.memory_size else None
        what = "store" if write else "fetch"
        detail = f"host {what} at host {addr:#x}" + (f" (guest {gaddr:#x})" if gaddr is not None else "") + \
            ": PGM 0x3D secure-storage access"  # fmt: skip
        for bp in list(self._bps.values()):
            if bp.kind == "secure-access":
                self._hit(bp, Event("secure-access", detail, address=addr, guest_address=gaddr, write=write,
                                    breakpoint=bp.number))  # fmt: skip

    def _debug_exit(self, cpu: int, ex: SieExit, e: Exit) -> None:
        """Called by ``Guest``'s exit listener for every SIE exit of this guest."""
        if not self._running:
            return
        if ex.reason == "breakpoint" and not ex.icptcode and not ex.host_pgm:
            pc = ex.data.get("pc")
            self._resume_pc = (cpu, pc) if pc is not None else None
            for bp in list(self._bps.values()):
                if bp.kind == "address" and bp._match == pc:  # noqa: SLF001
                    self._hit(bp, Event("address", f"CPU {cpu} at {pc:#x}", cpu=cpu, address=pc,
                                        breakpoint=bp.number))  # fmt: skip
            return
        for bp in list(self._bps.values()):
            want = bp._match  # noqa: SLF001
            if bp.kind == "exit" and (want is None or want in (e.icptcode, e.name)):
                what = f"interception {e.icptcode:#04x} ({e.name})" if e.icptcode else e.name
                self._hit(bp, Event("exit", f"CPU {cpu}: {what}", cpu=cpu, exit=e, breakpoint=bp.number))

    # -- running with breakpoints -------------------------------------------------------------------------

    def _follow_ipl(self) -> bool:
        """Place the address breakpoints again when the VM's vCPUs changed hands since they were placed: at
        the secure IPL the Ultravisor adopts the hardware CPUs and drops the host's hooks (a breakpoint given
        with the debug capability before the IPL must still stop the secure guest). True when they had."""
        pv = self._vm.pv
        if pv is self._hooks_pv or self._vm.destroyed:
            return False
        self._hooks_pv = pv
        addrs = {bp._match for bp in self._bps.values() if bp.kind == "address"}  # noqa: SLF001
        self._set_hw_breakpoints(addrs)
        return True

    def _resume_over(self) -> None:
        """A vCPU stopped at an address breakpoint executes that instruction first (one SIE entry with
        the breakpoint out), so a run resumes instead of stopping at once."""
        self._follow_ipl()
        where, self._resume_pc = self._resume_pc, None
        if where is None or self._vm.destroyed:
            return
        cpu, pc = where
        addrs = {bp._match for bp in self._bps.values() if bp.kind == "address"}  # noqa: SLF001
        if pc not in addrs or not self._vm.vcpus[cpu].operating:
            return
        self._set_hw_breakpoints(addrs - {pc})
        try:
            ex, done = self._vm.step(cpu, 1)
            if ex.reason == "halt" and not done and not ex.icptcode:  # the stop request of the last run
                self._vm.step(cpu, 1)
        finally:
            self._set_hw_breakpoints(addrs)

    def _run_vm(self, stop: Callable[[], bool] | None, time_limit: float, max_insns: int | None) -> VmResult:
        """Run until a breakpoint that stops, the CPUs stop, ``stop()`` or a limit; an address breakpoint
        whose callbacks let the run go on is stepped over and the run goes on."""
        deadline = time.monotonic() + time_limit
        self._hits = []

        def stop_when() -> bool:  # the caller's condition, or the secure IPL (the breakpoints follow it)
            return self._vm.pv is not self._hooks_pv or (stop is not None and stop())

        while True:
            self._resume_over()
            self._running = True
            try:
                r = self._vm.run(max_insns=max_insns, time_limit=max(0.001, deadline - time.monotonic()),
                                 stop_when=stop_when)  # fmt: skip
            finally:
                self._running = False
            if (self._follow_ipl() and r.reason == "stop condition met" and not (stop is not None and stop())
                    and time.monotonic() < deadline):  # fmt: skip
                if max_insns is not None:  # a counted run goes on with what is left of its count
                    max_insns -= r.instructions or 0
                    if max_insns <= 0:
                        return r
                continue  # only the IPL stopped the run: it goes on
            at_breakpoint = self._vm.debug_stop is not None
            self._vm.debug_stop = None
            addrs = {bp._match for bp in self._bps.values() if bp.kind == "address"}  # noqa: SLF001
            go_on = (at_breakpoint and self._resume_pc is not None and self._resume_pc[1] in addrs
                     and not any(s for _e, s in self._hits))  # fmt: skip
            if not go_on or max_insns is not None or time.monotonic() >= deadline:
                return r

    def take_events(self) -> list[Event]:
        """The breakpoint hits of the last run or step (callbacks' too), oldest first; taken once."""
        out, self._hits = [e for e, _s in self._hits], []
        return out

    def events(self, until: bytes | str | re.Pattern[bytes] | None = None, *,
               time_limit: float = 30.0) -> Iterator[Event]:  # fmt: skip
        """Run the guest and yield each breakpoint hit as it stops the run (the run goes on when the
        caller asks for the next event), and last an ``end`` event with the run's ``RunOutcome``. The run
        ends when the CPUs stop, the console's new output matches ``until``, or after ``time_limit``
        seconds in all.

        Example::

            >>> from emulator.api import Host
            >>> with Host(seed=1) as host:
            ...     guest = host.boot(run=False)
            ...     bp = guest.break_on_uvc("set_shared_access")
            ...     seen = [(e.kind, e.uvc.caller if e.uvc else e.outcome.reason) for e in guest.events()]
            >>> seen[0], seen[-1], bp.hits == len(seen) - 1
            (('uvc', 'guest'), ('end', 'all CPUs stopped'), True)
        """
        from emulator.api import RunOutcome, _pattern

        deadline = time.monotonic() + time_limit
        stop = None
        if until is not None:
            pat, start = _pattern(until), len(self._vm.console)
            stop = lambda: pat.search(self._vm.console, start) is not None  # noqa: E731
        while True:
            r = self._run_vm(stop, max(0.001, deadline - time.monotonic()), None)
            stopped = any(s for _e, s in self._hits)
            hits, self._hits = [e for e, _s in self._hits], []
            yield from hits
            if not stopped or r.reason in ("all CPUs stopped", "stop condition met") \
                    or time.monotonic() >= deadline:  # fmt: skip
                yield Event("end", r.reason, outcome=RunOutcome._of(r))  # noqa: SLF001
                return

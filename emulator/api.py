"""The public Python API for attack-demo authors: boot a guest, act as its hypervisor by the host's paths.

A ``Host`` is an emulated IBM Z machine with an Ultravisor (the host keys of one machine) and zuv's KVM-like
hypervisor. ``Host.boot`` loads an image into a new VM and runs it; the ``Guest`` it returns lets a script
do what a (malicious) hypervisor can do, and nothing more:

* read and write guest storage through the host's view (``Guest.read``/``write``): a secure page raises
  ``SecureStorageAccess``, the architecture's PGM 0x3D, and nothing is accessed;
* issue host Ultravisor calls and get their condition code, rc and rrc (``Guest.uvc``, ``export``,
  ``import_page``, ``destroy_page``, ``prepare_reset``, ``set_cpu_state``, ``cpu_reset``);
* change the guest's mapping (``remap``: the host owns the page tables the Ultravisor walks);
* enter SIE and see its exits (``step``, ``run``, ``on_exit``) with the state description and SIDA the
  hardware hands back (``state_description``, ``sida``);
* drive the shared (virtio-like) queue pages and their device models (``queue``, ``notify``);
* read the Ultravisor call log (``Host.uv_log``, ``on_uvc``) and run the attestation and secret-release
  flow against a relying party (``RelyingParty``);
* stop a run at breakpoints (a UV call, a SIE exit, a host access to secure storage, an address of a
  normal guest) with callbacks, or iterate over what a run meets (``Guest.events``; ``emulator.api_debug``).

The guest owner's view of a secure guest (its registers, its plaintext, address breakpoints in it) is the
machine's debug capability, an emulator privilege no real host has: ``Host.debug_capability()`` hands it
out only when asked for by name, and the attack playbook never asks.

Nothing returned reaches a secure guest's plaintext: no ``PhysicalMemory``, no CPU of a secure guest, no
Ultravisor object. Output goes to the caller as return values, events and ``logging`` (loggers ``zuv.api``
and ``emulator.*``; configure ``logging`` to see them); the library never prints.

Example: the bundled secure demo guest, stopped where it announces its secret page::

    >>> from emulator.api import Host, SecureStorageAccess
    >>> host = Host(seed=1)
    >>> guest = host.boot()                      # runs until "secret page at 0x..."
    >>> guest.secure, hex(guest.secret_page)
    (True, '0x15000')
    >>> try:
    ...     guest.read(guest.secret_page, 16)
    ... except SecureStorageAccess as e:
    ...     print(f"PGM {e.code:#04x}")
    PGM 0x3d
    >>> guest.run().clean, b"secret intact: yes" in guest.console
    (True, True)
    >>> guest.destroy()
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from emulator.api_attest import ATTEST_IMAGE, AttestOutcome, RelyingParty
from emulator.api_debug import (
    Breakpoint,
    DebugCapability,
    DebugCapabilityRequired,
    Event,
    GuestDebugging,
    SecureRegisters,
    elf_symbols,
)
from emulator.api_pictures import draw_page_map, draw_uv_calls, host_page_map, slot_pages
from emulator.api_storage import Access, GuestStorage
from emulator.console.providers import PageInfo
from emulator.errors import EmulatorError, HypervisorError, SecureStorageAccess
from emulator.hw import seal
from emulator.hw.memory import PAGE_SIZE
from emulator.hypervisor.boot import DEMO_IMAGE, GUEST_MEMORY, SecureHost, load_image
from emulator.hypervisor.uvclient import UvResult
from emulator.hypervisor.virtio import DEVICE_BLOCK, DEVICE_CONSOLE, ZvqHeader

if TYPE_CHECKING:
    from emulator.hw.sie import SieExit
    from emulator.hypervisor.kvm import Vm, VmResult

__all__ = [
    "Host",
    "Guest",
    "Access",
    "Exit",
    "StateDescription",
    "RunOutcome",
    "UvLogEntry",
    "AttestOutcome",
    "UvResult",
    "SecureStorageAccess",
    "EmulatorError",
    "DEMO_IMAGE",
    "ATTEST_IMAGE",
    "SECRET_LINE",
    "DEVICE_CONSOLE",
    "DEVICE_BLOCK",
    "RelyingParty",
    "PageInfo",
    "Breakpoint",
    "Event",
    "DebugCapability",
    "DebugCapabilityRequired",
    "SecureRegisters",
    "elf_symbols",
    "draw_uv_calls",
]

log = logging.getLogger("zuv.api")
# A library logs and the application decides: without a handler of the caller's, Python's last-resort
# handler would put the hypervisor's warnings (a guest it had to stop) on stderr in the middle of a script.
logging.getLogger("emulator").addHandler(logging.NullHandler())
logging.getLogger("zuv").addHandler(logging.NullHandler())

#: The line the bundled demo guest prints when a host may try its secret page.
SECRET_LINE: Final = re.compile(rb"secret page at (0x[0-9a-fA-F]+)")
_MIB: Final = 1 << 20


@dataclass(frozen=True)
class Exit:
    """One SIE exit as the host sees it: the interception code and IPA/IPB from the state description, or
    the host program interruption (0x3E/0x3F: the host must import or free a page) with its TEID."""

    cpu: int
    icptcode: int
    name: str
    ipa: int = 0
    ipb: int = 0
    host_pgm: int = 0
    teid: int = 0


@dataclass(frozen=True)
class StateDescription:
    """What the host may read of a vCPU after SIE: selected fields of the state description and the PV
    register save area (``pv_grregs``: only the operand registers of the intercepted instruction)."""

    psw: tuple[int, int]
    icptcode: int
    ipa: int
    ipb: int
    prefix: int
    gg14: int
    gg15: int
    pv_grregs: tuple[int, ...]
    raw: bytes  # the whole 4 KiB SIE page (host storage)


@dataclass(frozen=True)
class RunOutcome:
    """How a ``Guest.run`` ended."""

    reason: str
    clean: bool
    exit_line: str | None
    detail: str

    @classmethod
    def _of(cls, r: VmResult) -> RunOutcome:
        return cls(r.reason, r.clean, r.exit_line, r.detail)


@dataclass(frozen=True)
class UvLogEntry:
    """One completed Ultravisor call: who called it (``host`` or ``guest``), the command, cc, rc, rrc.

    ``fields`` are the host's control-block fields (host storage); a guest's call shows the command and
    its result only (its block is in secure storage).
    """

    seq: int
    caller: str
    code: int
    name: str
    cc: int
    rc: int
    rrc: int
    fields: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return (f"#{self.seq} {self.caller}: {self.name} ({self.code:#06x}) cc {self.cc} rc {self.rc:#06x} "
                f"rrc {self.rrc:#06x}")


#: the key of a host's sealed machine (``_machine_of``): module-private, outside the host's reach
_OWNER: Final = object()


def _machine_of(host: Host) -> SecureHost:
    """The machine behind ``host`` (its ``PhysicalMemory`` and ``Ultravisor``): the emulator's own privilege,
    for the referee of the attack playbook and tests that judge what the host got, never for attacks (a
    module function, outside the host side's reach: ``ARCHITECTURE.md``)."""
    return host._machine(_OWNER)  # noqa: SLF001


class Host:
    """An emulated IBM Z machine with an Ultravisor and zuv's hypervisor.

    Args:
        machine: a bundled machine name (``zuv-demo``, ``zuv-other``) or a machine directory; its host keys
            are the ones the Ultravisor holds.
        seed: seed of the Ultravisor's random numbers (handles, UIDs) for repeatable runs; its keys (export,
            wrapping) come from the OS's entropy whatever the seed.
        deterministic: a deterministic TOD clock.

    Raises:
        EmulatorError: the machine cannot be loaded.

    Example::

        >>> from emulator.api import Host
        >>> with Host(seed=1) as host:
        ...     host.uvc("qui").rc == 1
        True
    """

    def __init__(
        self, machine: str = "zuv-demo", *, seed: int | None = None, deterministic: bool = False
    ) -> None:
        machine_ = SecureHost(machine, deterministic=deterministic, seed=seed)
        self._name = machine_.name
        #: the hypervisor: what a host holds (its host view, its UV client and gate, its VMs)
        self._hv = machine_.hv
        self._log: list[UvLogEntry] = []
        self._subs: list[Callable[[UvLogEntry], None]] = []
        machine_.uv.add_event_sink(self._event, host=True)  # the host's: at the gate, a guest's block hidden
        self._guests: list[Guest] = []
        self._debug_given = False

        def owner(key: object) -> SecureHost:
            """The machine itself (its storage and Ultravisor): the owner's, sealed (``_machine_of``)."""
            if key is not _OWNER:
                raise DebugCapabilityRequired("the machine's storage and Ultravisor are not the host's")
            return machine_

        self._machine = seal.gate(owner)  # a closure and a gate (``seal``): nothing leads to the machine

    @property
    def name(self) -> str:
        """The machine's name."""
        return self._name

    def debug_capability(self) -> DebugCapability:
        """The machine's debug capability: the guest owner's view of secure guests (the Ultravisor's record
        of a secure CPU's registers, plaintext storage, address breakpoints in a secure guest). An emulator
        privilege, asked for by name: no real machine gives a hypervisor this, and an attack that uses it
        proves nothing (``debug_given`` tells)."""
        from emulator.machine.secure_debug import SecureDebug

        self._debug_given = True
        log.warning(
            "%s: the debug capability was handed out (emulator privilege: the owner's view)", self.name
        )
        m = self._machine(_OWNER)
        return DebugCapability(SecureDebug(m.hv, m.memory, m.uv))

    @property
    def debug_given(self) -> bool:
        """True once ``debug_capability`` was called on this host."""
        return self._debug_given

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy every guest of this host and detach from the Ultravisor."""
        for g in list(self._guests):
            g.destroy()
        try:
            self._machine(_OWNER).uv.remove_event_sink(self._event)
        except ValueError:
            pass

    # -- the UV log ------------------------------------------------------------------------------------

    def _event(self, ev: Any) -> None:
        entry = _log_entry(len(self._log) + 1, ev)
        self._log.append(entry)
        for sub in list(self._subs):  # (called at the gate, when the Ultravisor's frames are gone)
            sub(entry)

    def uv_log(self, since: int = 0) -> list[UvLogEntry]:
        """Every Ultravisor call completed since the host was made (entries after sequence ``since``)."""
        return self._log[since:]

    def on_uvc(self, callback: Callable[[UvLogEntry], None]) -> Callable[[], None]:
        """Call ``callback`` after each completed Ultravisor call, once the call has returned to the host (a
        guest's call: at the SIE exit after it; ``emulator/hw/seal.py``); returns the function that
        unsubscribes."""
        self._subs.append(callback)
        return lambda: self._subs.remove(callback)

    def draw_uv_log(self, path: str | Path, *, since: int = 0, format: str | None = None) -> int:  # noqa: A002
        """``draw_uv_calls`` of the UV calls after sequence ``since``; returns the bytes written."""
        return draw_uv_calls(self._log[since:], path, title=f"Ultravisor calls on {self.name}", format=format)

    def page_map(self) -> list[PageInfo]:
        """Every frame that is not plain host storage, as the host can know it (``api_pictures``)."""
        h = self._machine(_OWNER)  # plain data about frames, no contents (``api_pictures``)
        return host_page_map(h.memory, h.uv, lambda: list(h.hv.vms))

    # -- host storage and calls ------------------------------------------------------------------------

    def uvc(self, cmd: int | str, **fields: Any) -> UvResult:
        """Issue a host UVC (name from ``firmware.uv_codes``, e.g. ``"qui"``, or its code) with the given
        control-block fields; the block lives in host storage. Returns cc, rc, rrc and the stored block."""
        from firmware.uv_codes import BY_CODE, BY_NAME

        if cmd not in (BY_CODE if isinstance(cmd, int) else BY_NAME):
            raise HypervisorError(f"unknown UVC {cmd!r} (names and codes: firmware/uv_codes.py)")
        return self._hv.pv_host().client.call(cmd, **fields)

    def alloc_page(self) -> int:
        """A free page of host storage for the attacker's own data; returns its host absolute address."""
        addr = self._hv.alloc.alloc_page()
        self._hv.host.write(addr, bytes(PAGE_SIZE))
        return addr

    def read(self, addr: int, length: int) -> bytes:
        """Read host absolute storage as the host. Raises ``SecureStorageAccess`` (PGM 0x3D) on a secure or
        Ultravisor frame; nothing is read then."""
        return self._hv.host.read(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        """Write host absolute storage as the host. Raises ``SecureStorageAccess`` (PGM 0x3D) on a secure or
        Ultravisor frame; nothing is written then."""
        self._hv.host.write(addr, data)

    # -- guests ------------------------------------------------------------------------------------------

    def boot(
        self,
        image: str | Path | None = None,
        *,
        memory: int = GUEST_MEMORY,
        until: bytes | str | re.Pattern[bytes] | None = SECRET_LINE,
        time_limit: float = 30.0,
        console_out: Callable[[bytes], None] | None = None,
        run: bool = True,
    ) -> Guest:
        """Create a VM, load ``image`` (an SE image: the secure IPL protects it; any other image boots as a
        normal guest) and run it until its console matches ``until`` (default: the demo guest's secret
        line; None: until its CPUs stop); with ``run=False`` it is loaded and not started. The guest gets the
        console device (id 1) and a 1 MiB block device (id 2) behind DIAGNOSE 0x500, as ``zuv boot`` does.

        Raises:
            EmulatorError: the image cannot be loaded (``LoadError``) or the VM cannot be made.
        """
        from emulator.hypervisor.virtio import BlockDevice, ConsoleDevice

        path = Path(image) if image is not None else DEMO_IMAGE
        vm = self._hv.create_vm(memory, 1, console_out=console_out, name=path.name)
        try:
            vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001 - the VM's console sink
            vm.add_device(BlockDevice(_MIB))
            load_image(vm, path)
        except BaseException:
            vm.destroy()
            raise
        from emulator.image.pvimg import starts_like_image

        g = Guest(self, vm, se_image=starts_like_image(path))
        self._guests.append(g)
        if run:
            g.run(until=until, time_limit=time_limit)
        return g


def _log_entry(seq: int, ev: Any) -> UvLogEntry:
    """A UV event (``Ultravisor.add_event_sink``) as the host may see it: a guest's block stays hidden."""
    from emulator.console.hostviews import format_field
    from firmware.uv_codes import BY_CODE

    cmd = BY_CODE.get(ev.code)
    host = ev.caller.kind != "guest"
    fields = tuple((n, format_field(v)) for n, v in ev.fields()) if host else ()
    title = cmd.title if cmd is not None else f"UVC {ev.code:#06x}"
    return UvLogEntry(seq, "host" if host else "guest", ev.code, title, ev.cc, ev.rc, ev.rrc, fields)


def _pattern(until: bytes | str | re.Pattern[bytes]) -> re.Pattern[bytes]:
    if isinstance(until, re.Pattern):
        return until
    return re.compile(re.escape(until.encode() if isinstance(until, str) else until))


class Guest(GuestStorage, GuestDebugging):
    """One VM as its hypervisor sees it (made by ``Host.boot``). Guest addresses are guest absolute.

    Breakpoints and events (``break_at``, ``break_on_uvc``, ``break_on_exit``, ``break_on_secure_access``,
    ``events``, ``take_events``) come from ``emulator.api_debug.GuestDebugging``; storage (``read``,
    ``write``, ``try_read``, ``try_write``, ``frame``, ``page_state``, ``pages``, ``remap``) from
    ``emulator.api_storage.GuestStorage``."""

    def __init__(self, host: Host, vm: Vm, *, se_image: bool = False) -> None:
        self._owner = host
        self._vm = vm
        self._listeners: list[Callable[[Exit], None]] = []
        self._init_debugging(se_image)
        vm.hv.exit_listeners.append(self._exit)

    # -- identity and console ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The VM's name (the image's file name)."""
        return self._vm.name

    @property
    def secure(self) -> bool:
        """True while the VM is a secure configuration (after a successful secure IPL)."""
        return self._vm.pv is not None

    @property
    def handle(self) -> int:
        """The secure configuration's handle (0 for a normal guest)."""
        pv = self._vm.pv
        return pv.handle if pv is not None else 0

    @property
    def cpu_handles(self) -> dict[int, int]:
        """Secure CPU handles by vCPU address (empty for a normal guest)."""
        pv = self._vm.pv
        return dict(pv.cpu_handles) if pv is not None else {}

    @property
    def memory_size(self) -> int:
        """Guest storage in bytes."""
        return self._vm.memory_size

    @property
    def console(self) -> bytes:
        """Everything the guest wrote to its consoles (SCLP and the console device)."""
        return bytes(self._vm.console)

    def type(self, text: str | bytes) -> None:
        """Console input, as a user types it on the SCLP console (an event for the guest and a service
        signal); the guest reads it during the next ``run``."""
        self._vm.feed_console(text.encode() if isinstance(text, str) else text)

    @property
    def secret_page(self) -> int:
        """The page the demo guest announced with ``secret page at 0x...``.

        Raises:
            HypervisorError: the guest has not announced one.
        """
        m = SECRET_LINE.search(self.console)
        if m is None:
            raise HypervisorError(f"{self.name} has not announced a secret page")
        return int(m.group(1), 16)

    @property
    def secure_boot_failure(self) -> str:
        """Why the secure IPL failed (the step and the Ultravisor's rc/rrc), or ""."""
        f = self._vm.pv_failure
        return f.message if f is not None else ""

    @property
    def cpu_detail(self) -> str:
        """Why a vCPU stopped abnormally (the hypervisor's crash reason, a check stop), or ""."""
        return next((v.detail for v in self._vm.vcpus.values() if v.detail), "")

    @property
    def host_traps(self) -> list[tuple[int, bool]]:
        """Host touches of this guest's storage that hit a secure page, each a PGM 0x3D the hypervisor took
        (guest address, store?): the device models' accesses, resolved by exporting the page."""
        return list(self._vm.memory.trapped)

    # -- running ------------------------------------------------------------------------------------------

    def run(
        self,
        until: bytes | str | re.Pattern[bytes] | None = None,
        *,
        time_limit: float = 30.0,
        max_insns: int | None = None,
    ) -> RunOutcome:
        """Run the vCPUs until they stop, the console matches ``until`` (new output only), a breakpoint
        stops the run (its ``Event``s: ``take_events``), or a limit. A vCPU stopped at an address breakpoint
        executes that instruction first."""
        stop = None
        if until is not None:
            pat, start = _pattern(until), len(self._vm.console)
            stop = lambda: pat.search(self._vm.console, start) is not None  # noqa: E731
        r = self._run_vm(stop, time_limit, max_insns)
        log.info("%s: run ended: %s", self.name, r.reason)
        return RunOutcome._of(r)

    def step(self, cpu: int = 0, count: int = 1) -> tuple[Exit, int]:
        """One SIE entry of vCPU ``cpu`` with a budget of ``count`` instructions; its exit is handled as the
        hypervisor's run loop handles it. Returns the exit and the instructions executed."""
        address = self._vcpu(cpu).address
        self._resume_over()
        self._running = True
        try:
            ex, done = self._vm.step(address, count)
        finally:
            self._running = False
            self._vm.debug_stop = None
        return self._as_exit(cpu, ex), done

    def on_exit(self, callback: Callable[[Exit], None]) -> Callable[[], None]:
        """Call ``callback(exit)`` at every SIE exit of this guest, before the hypervisor handles it (the
        moment a hypervisor may change the state description, the SIDA or shared pages); returns the
        function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    @contextmanager
    def exits(self) -> Iterator[list[Exit]]:
        """Collect the SIE exits of the block's runs into a list."""
        seen: list[Exit] = []
        off = self.on_exit(seen.append)
        try:
            yield seen
        finally:
            off()

    def _as_exit(self, cpu: int, ex: SieExit) -> Exit:
        sd = self._vcpu(cpu).sd
        return Exit(cpu, ex.icptcode, ex.name, sd.ipa if ex.icptcode else 0, sd.ipb if ex.icptcode else 0,
                    ex.host_pgm, ex.teid if ex.host_pgm else 0)  # fmt: skip

    def _exit(self, vm: Vm, v: Any, ex: SieExit) -> None:
        if vm is not self._vm or not (self._listeners or self._bps):
            return
        e = self._as_exit(v.address, ex)
        for cb in list(self._listeners):
            cb(e)
        if self._bps:
            self._debug_exit(v.address, ex, e)

    # -- the Ultravisor, as the host calls it ----------------------------------------------------------------

    def uvc(self, cmd: int | str, **fields: Any) -> UvResult:
        """Issue a host UVC with the given control-block fields (see ``Host.uvc``)."""
        return self._owner.uvc(cmd, **fields)

    def export(self, gaddr: int) -> UvResult:
        """Convert from Secure Storage of the page's frame: the Ultravisor encrypts it in place and the
        host may read its ciphertext (rc 0x0001)."""
        return self.uvc("conv_from_sec_stor", paddr=self.frame(gaddr) & ~0xFFF)

    def import_page(self, gaddr: int) -> UvResult:
        """Convert to Secure Storage of a guest page: the Ultravisor checks and decrypts an exported page
        (rc 0x0107 when its integrity check fails) or takes a fresh one cleared."""
        pv = self._pv()
        return pv.import_page(gaddr)

    def destroy_page(self, gaddr: int) -> UvResult:
        """Destroy Secure Storage of the page's frame: cleared and made non-secure, no copy kept."""
        return self.uvc("destr_sec_stor", paddr=self.frame(gaddr) & ~0xFFF)

    def prepare_reset(self) -> UvResult:
        """Prepare Reset of the configuration (the first call of every guest reboot)."""
        return self.uvc("prepare_reset", handle=self._pv().handle)

    def cpu_reset(self, kind: str = "clear", cpu: int = 0) -> UvResult:
        """Perform (Initial / Clear) CPU Reset of secure CPU ``cpu``: ``kind`` normal, initial or clear."""
        cmd = {"normal": "cpu_reset", "initial": "cpu_reset_initial", "clear": "cpu_reset_clear"}.get(kind)
        if cmd is None:
            raise HypervisorError(f"unknown reset kind {kind!r} (normal, initial, clear)")
        return self.uvc(cmd, handle=self._pv().cpu_handles[self._vcpu(cpu).address])

    def set_cpu_state(self, state: str, cpu: int = 0) -> UvResult:
        """Set CPU State of secure CPU ``cpu``: ``stopped``, ``operating`` or ``load`` (operating, load: the
        start of a reboot, allowed only after Prepare Reset)."""
        from emulator.hypervisor.pv import CPU_STATE_OPR, CPU_STATE_OPR_LOAD, CPU_STATE_STP

        code = {"stopped": CPU_STATE_STP, "operating": CPU_STATE_OPR, "load": CPU_STATE_OPR_LOAD}.get(state)
        if code is None:
            raise HypervisorError(f"unknown CPU state {state!r} (stopped, operating, load)")
        pv = self._pv()
        return pv.set_cpu_state(self._vcpu(cpu), code)

    def donated_storage(self) -> list[tuple[str, int, int]]:
        """The host storage the hypervisor donated to the Ultravisor for this configuration (what, host
        address, length): configuration base and variable storage, each secure CPU's storage. The host
        knows these ranges (it gave them) and may not touch them while the configuration lives."""
        pv = self._vm.pv
        return list(pv.donated) if pv is not None else []

    def _vcpu(self, cpu: int) -> Any:
        v = self._vm.vcpus.get(cpu)
        if v is None:
            raise HypervisorError(f"{self.name} has no CPU {cpu} (CPUs: {sorted(self._vm.vcpus)})")
        return v

    def _pv(self) -> Any:
        pv = self._vm.pv
        if pv is None:
            raise HypervisorError(f"{self.name} is not a secure guest")
        return pv

    def page_map(self) -> list[PageInfo]:
        """``Host.page_map`` for this guest: its memory slot and the storage donated for it."""
        return slot_pages(self._owner.page_map(), self._vm.mso, self._vm.memory_size, self.donated_storage())

    def draw_pages(self, path: str | Path, *, format: str | None = None) -> int:  # noqa: A002
        """Draw ``page_map`` into ``path`` (SVG or PNG by ``format`` or the extension; ``draw_page_map``)."""
        return draw_page_map(self.page_map(), path, f"page map of {self.name}", format)

    # -- what SIE hands back ---------------------------------------------------------------------------

    def state_description(self, cpu: int = 0) -> StateDescription:
        """The vCPU's SIE page as the host reads it (host storage)."""
        v = self._vcpu(cpu)
        raw = self._vm.hv.host.read(v.page_addr, PAGE_SIZE)
        sd, page = v.sd, v.page
        return StateDescription((sd.psw_mask, sd.psw_addr), sd.icptcode, sd.ipa, sd.ipb, sd.prefix, sd.gg14,
                                sd.gg15, tuple(page.pv_grregs), raw)  # fmt: skip

    def write_state_description(self, data: bytes, offset: int = 0, cpu: int = 0) -> None:
        """Store into the vCPU's SIE page (host storage: the hypervisor may write any field before the next
        entry; the Ultravisor decides at SIE entry what it accepts, else a validity interception)."""
        if offset < 0 or offset + len(data) > PAGE_SIZE:
            raise HypervisorError(f"SIE page range {offset:#x}+{len(data):#x} is outside the page")
        self._vm.hv.host.write(self._vcpu(cpu).page_addr + offset, data)

    def sida(self, cpu: int = 0) -> bytes:
        """The vCPU's secure-instruction data area (one page of host storage; b"" for a normal guest)."""
        addr = self._vcpu(cpu).sd.sidad & ~0xFFF
        return self._vm.hv.host.read(addr, PAGE_SIZE) if addr else b""

    # -- shared queues and devices ----------------------------------------------------------------------

    def queue(self, gaddr: int) -> ZvqHeader:
        """The virtio-like queue in the guest page at ``gaddr`` (a copy; see ``write_queue``).

        Raises:
            SecureStorageAccess: the page is not shared.
        """
        return ZvqHeader.from_buffer_copy(self.read(gaddr, ctypes.sizeof(ZvqHeader)))

    def write_queue(self, gaddr: int, q: ZvqHeader) -> None:
        """Store a (modified) queue back into the guest page at ``gaddr``."""
        self.write(gaddr, bytes(q))

    def notify(self, device: int, queue_gaddr: int) -> int:
        """Run device ``device``'s model on the queue at ``queue_gaddr`` as a guest's DIAGNOSE 0x500 would
        (its accesses go through the hypervisor's guest window: a secure page is exported first); returns
        the notification's result (0 or a negative errno)."""
        dev = self._vm.devices.get(device)
        if dev is None:
            raise HypervisorError(f"{self.name} has no device {device}")
        return dev.notify(self._vm, 0, queue_gaddr)

    # -- end ----------------------------------------------------------------------------------------------

    @property
    def destroyed(self) -> bool:
        """True after ``destroy``."""
        return self._vm.destroyed

    def destroy(self) -> None:
        """Tear the VM down (KVM_PV_DISABLE for a secure guest: every secure page destroyed)."""
        self._close_debugging()
        if not self._vm.destroyed:
            self._vm.destroy()
        try:
            self._vm.hv.exit_listeners.remove(self._exit)
        except ValueError:
            pass
        if self in self._owner._guests:
            self._owner._guests.remove(self)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

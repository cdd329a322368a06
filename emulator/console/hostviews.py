"""Providers over a secure host: the hypervisor's SIE exits, the Ultravisor's call log, the UV's page map.

What the hypervisor and the Ultravisor publish (``Hypervisor.exit_listeners``, ``Ultravisor.add_event_sink``,
``Ultravisor.frame_state`` / ``exported_pages`` and the owner tags of ``PhysicalMemory``) turned into the
console's provider records (``emulator.console.providers``). Nothing here changes the machine.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from emulator.console.providers import Intercept, PageInfo, UvCall
from emulator.hw import seal
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PAGE_SHIFT

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.memory import PhysicalMemory
    from emulator.hw.sie import SieExit
    from emulator.hypervisor.kvm import Hypervisor, Vcpu, Vm
    from firmware.uv import Ultravisor, UvEvent

__all__ = ["UvEventLog", "HypervisorIntercepts", "SecureHostPageMap", "intercept_detail", "format_field"]

_NONZERO: Final = re.compile(rb"[^\x00]")


def format_field(value: int | tuple[int, ...]) -> str:
    """A UVCB field for the log: hex, arrays as their first eight elements."""
    if isinstance(value, tuple):
        return " ".join(f"{v:x}" for v in value[:8]) + (" ..." if len(value) > 8 else "")
    return f"{value:#x}"


class UvEventLog:
    """A ``UvCallLogProvider`` over the Ultravisor's event sink: every completed UVC, decoded.

    Args:
        uv: the Ultravisor whose events are logged (the sink is registered at once; ``close`` removes it).
        caller_name: ``caller_name(caller) -> (text, vcpu or None)`` for guest callers (default: the
            configuration handle and the secure CPU's number as the UV records them).
    """

    def __init__(
        self, uv: Ultravisor, caller_name: Callable[[Any], tuple[str, int | None]] | None = None
    ) -> None:
        self._caller_name = caller_name
        # closures: the log holds no Ultravisor (the host side's reach, ``ARCHITECTURE.md``)
        self._detach = lambda: uv.remove_event_sink(self._event)
        self._cpu_num = lambda h: (c.num if (c := uv.secure_cpu(h)) is not None else None)
        self._calls: list[UvCall] = []
        self._subs: list[Callable[[UvCall], None]] = []
        self._pending = threading.local()
        uv.add_event_sink(self._event)

    def close(self) -> None:
        """Detach from the Ultravisor."""
        try:
            self._detach()
        except ValueError:
            pass

    # -- UvCallLogProvider ------------------------------------------------------------------------------

    def calls(self) -> list[UvCall]:
        """Every call so far, oldest first."""
        return list(self._calls)

    def subscribe(self, callback: Callable[[UvCall], None]) -> Callable[[], None]:
        """Call ``callback`` after each call completes."""
        self._subs.append(callback)
        return lambda: self._subs.remove(callback)

    # -- feeding --------------------------------------------------------------------------------------

    def before_uvc(self, cpu: Cpu, uvcb: int) -> None:
        """A host CPU is about to execute UVC on the block at virtual ``uvcb`` (``Machine.insn_filter``)."""
        self._pending.value = (cpu.address, uvcb)

    def _name(self, ev: UvEvent) -> tuple[str, int | None]:
        caller = ev.caller
        if caller.kind != "guest":
            return "host", None
        if self._caller_name is not None:
            return self._caller_name(caller)
        return f"guest {caller.config_handle or 0:#x}", self._cpu_num(caller.cpu_handle or 0)

    def _event(self, ev: UvEvent) -> None:
        caller, cpu = self._name(ev)
        fields: tuple[tuple[str, str], ...] = tuple((n, format_field(v)) for n, v in ev.fields())
        pending = getattr(self._pending, "value", None)
        if pending is not None and ev.caller.kind == "host":
            self._pending.value = None
            cpu = pending[0]
            fields = (("uvcb", f"{pending[1]:#x} (CPU {cpu})"),) + fields
        if ev.injected:
            fields = (("injected", f"cc {ev.cc} (nothing done)"),) + fields
        call = UvCall(len(self._calls) + 1, caller, ev.code, ev.cc, ev.rc, ev.rrc, fields, cpu)
        self._calls.append(call)
        for cb in list(self._subs):
            cb(call)


#: (IPA of a 0x68/0x6C exit, name); DIAG and SIGP details come from pv_grregs.
_PV_IPA: Final = {0x8302: "DIAG", 0xB220: "SERVC", 0xB27D: "STSI", 0xAE24: "SIGP", 0xB9A4: "UVC"}


def intercept_detail(v: Vcpu, ex: SieExit) -> str:
    """What an interception was about, from what the hypervisor sees (SD, pv_grregs, the exit)."""
    sd = v.sd
    code = ex.icptcode
    if ex.host_pgm:
        return (
            f"host program interruption {ex.host_pgm:#04x} for guest page {ex.teid & ~0xFFF:#x}: {ex.reason}"
        )
    if code in (0x68, 0x6C):
        name = _PV_IPA.get(sd.ipa, f"ipa {sd.ipa:#06x}")
        regs = v.page.pv_grregs
        if sd.ipa == 0x8302:
            name += f" {regs[5]:#x}"
        elif sd.ipa == 0xAE24:
            name += f" order {regs[5] & 0xFF:#x}"
        return f"{name} (ipa {sd.ipa:#06x} ipb {sd.ipb:#010x})"
    if code == 0x04 and ex.insn is not None:
        return f"{ex.insn.name} at {ex.insn.pc:#x}"
    if code == 0x70:
        return f"prefix {sd.prefix:#x}"
    if code == 0x1C:
        return f"PSW {sd.psw_mask:016x} {sd.psw_addr:016x}"
    if code == 0x20:
        return f"reason {sd.ipb >> 16:#06x}"
    return ex.reason


class HypervisorIntercepts:
    """An ``InterceptProvider`` over ``Hypervisor.exit_listeners``: interceptions and host program
    interruptions during SIE (code 0), not the host's own exits (time slices, halts, debugger stops)."""

    def __init__(self, hv: Hypervisor) -> None:
        self._hv = hv

    def subscribe(self, callback: Callable[[Intercept], None]) -> Callable[[], None]:
        """Call ``callback`` on every interception of every VM of the hypervisor."""

        def listener(vm: Vm, v: Vcpu, ex: SieExit) -> None:
            if not ex.icptcode and not ex.host_pgm:
                return
            callback(Intercept(v.address, ex.icptcode, intercept_detail(v, ex), v.secure))

        self._hv.exit_listeners.append(listener)
        return lambda: self._hv.exit_listeners.remove(listener)


class SecureHostPageMap:
    """The page map of a secure host: owner tags, the UV's zone-security entries (guest address, shared),
    the pages the host holds exported (ciphertext the UV can import again) and what each donation is for.

    Args:
        memory: host memory.
        uv: the Ultravisor.
        vms: ``vms() -> list of Vm`` (their memory slots, names and configuration handles).
    """

    def __init__(self, memory: PhysicalMemory, uv: Ultravisor, vms: Callable[[], list[Vm]]) -> None:
        self._mem = memory
        self._uv = uv
        self._vms = vms

    def _donations(self) -> dict[int, str]:
        uv = self._uv
        out: dict[int, str] = {}
        if uv.initialized:
            for f in range(uv.base_origin >> PAGE_SHIFT, (uv.base_origin + uv.base_len) >> PAGE_SHIFT):
                out[f] = "Ultravisor base storage"
        for cfg in uv.configs():
            for f in range(cfg.base_origin >> PAGE_SHIFT, (cfg.base_origin + cfg.base_len) >> PAGE_SHIFT):
                out[f] = f"base storage of configuration {cfg.handle:#x}"
            for f in cfg.var_frames:
                out[f] = f"variable storage of configuration {cfg.handle:#x}"
            for c in cfg.cpus.values():
                first = c.stor_origin >> PAGE_SHIFT
                for f in range(first, first + (uv.query.cpu_stor_len >> PAGE_SHIFT)):
                    out[f] = f"storage of secure CPU {c.num} of configuration {cfg.handle:#x}"
        return out

    def _exported(self) -> dict[int, tuple[int, int, str]]:
        """Host frame -> (guest address, export counter, VM name) of every page the host holds exported."""
        out = {}
        for vm in self._vms():
            pv = vm.pv
            if pv is None or not pv.handle:
                continue
            for g, n in self._uv.exported_pages(pv.handle).items():
                frame = (vm.mso + g) >> PAGE_SHIFT
                if self._mem.owner[frame] == OWNER_HOST:
                    out[frame] = (g, n, vm.name)
        return out

    def _vm_of(self, tag: int) -> str:
        for vm in self._vms():
            if vm.pv is not None and vm.pv.handle and self._uv.config_tag(vm.pv.handle) == tag:
                return f"VM {vm.name}, configuration {vm.pv.handle:#x}"
        return f"configuration tag {tag}"

    def _info(
        self, frame: int, donations: dict[int, str] | None, exported: dict[int, tuple[int, int, str]]
    ) -> PageInfo:
        mem = self._mem
        owner = mem.owner[frame]
        shared = bool(mem.shared[frame])
        if owner == OWNER_HOST:
            hit = exported.get(frame)
            if hit is not None:
                g, n, name = hit
                return PageInfo(
                    frame,
                    "exported",
                    owner,
                    False,
                    g,
                    f"VM {name}: ciphertext of export {n} (the UV keeps its integrity value)",
                )
            return PageInfo(frame, "non-secure", owner)
        if owner == OWNER_UV:
            if donations is None:
                donations = self._donations()
            return PageInfo(frame, "donated", owner, False, None, donations.get(frame, ""))
        _tag, gaddr, shared = self._uv.frame_state(frame)
        return PageInfo(frame, "shared" if shared else "secure", owner, shared, gaddr, self._vm_of(owner))

    def page(self, frame: int) -> PageInfo:
        """The state of one frame."""
        return self._info(frame, None, self._exported())

    def pages(self) -> Iterator[PageInfo]:
        """Frames that are not plain host storage (donated, secure, shared, exported), in frame order."""
        exported = self._exported()
        frames = set(exported)
        if self._mem.non_host_frames:
            raw = self._mem.owner.tobytes()
            size = self._mem.owner.itemsize
            frames.update(m.start() // size for m in _NONZERO.finditer(raw))
        donations = self._donations()
        for frame in sorted(frames):
            yield self._info(frame, donations, exported)


class SealedPageMap:
    """A page map (``PageMapProvider``) whose provider is held by closures only: ``SecureHostPageMap``
    reads the storage's owner tags and the Ultravisor's records, and a console session holds this instead
    (the host side's reach, ``ARCHITECTURE.md``)."""

    __slots__ = ("page", "pages")

    def __init__(self, provider: SecureHostPageMap) -> None:
        # gates (``seal``), and the pages as a list's iterator: a generator's frame would hold the provider
        self.page: Callable[[int], PageInfo] = seal.gate(lambda frame: provider.page(frame))
        self.pages: Callable[[], Iterator[PageInfo]] = seal.gate(lambda: iter(list(provider.pages())))

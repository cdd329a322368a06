"""The console's machine for Secure Execution images: a secure host running one VM in the hypervisor's loop.

``SecureMachine`` gives ``Session`` the face of a ``Machine`` (CPUs, ``run``, ``step``, breakpoints,
``insn_filter``, ``request_halt``, console) over ``emulator.hypervisor``: the image boots like ``zuv boot``
(stage3a as a normal SIE guest, the secure IPL, then the secure guest under format-4 SIE), and when the
demo guest prints ``secret page at 0x...`` the hypervisor tries to read that page (trapped, then exported),
as ``zuv boot`` does.

How the debugger's stops reach a VM without per-instruction cost: address breakpoints and watchpoints are
the hardware CPU's exits and refused TLB fills, which end SIE with a debugger exit (``Vm.debug_stop``); a
secure guest's UVC is offered to the debug capability's hook (``SecureDebug.insn_filter``) before the
Ultravisor runs it (stop before);
``step`` is ``Vm.step`` (one SIE entry with a budget of one instruction). The hypervisor's own UV calls (the
secure boot's, an export) stop before they are issued too: with a ``host_uvc_filter`` installed, a run or
a step is work on its own thread (``hostcalls.Work``) that the hypervisor's before-call hook suspends;
the next ``run`` or ``step`` resumes it (a step to the hypervisor's next call).

Registers: ``VcpuCpu`` shows a vCPU. For a secure vCPU the register file is the Ultravisor's record of the
secure CPU (the owner view: an emulator privilege); what the host may see is the SIE state description
(``host_state``). The machine's debug capability (``SecureDebug``: the secure vCPU's hardware CPU, stops
before the guest's own UV calls) exists only once asked for by name (``grant_debug``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from emulator.console.errors import ConsoleError
from emulator.console.hostcalls import HostUvc, Runner, Work
from emulator.console.hostviews import (
    HypervisorIntercepts,
    SealedPageMap,
    SecureHostPageMap,
    UvEventLog,
    intercept_detail,
)
from emulator.console.session_storage import SessionStorage
from emulator.console.tables import uv_command
from emulator.console.vcpu import NEEDS_DEBUG, VcpuCpu, quiet_exit
from emulator.errors import EmulatorError, MachineError
from emulator.hw import seal
from emulator.hw.cpu import CpuExit
from emulator.machine.machine import check_run_limits
from emulator.machine.secure_debug import SecureDebug

if TYPE_CHECKING:
    from emulator.hw.results import RunResult
    from emulator.hw.sie import SieExit
    from emulator.hypervisor.boot import SecureHost, TrapReport
    from emulator.machine.loader import LoadedProgram
    from firmware.uv_codes import UvCommand

__all__ = ["SecureMachine", "VcpuCpu", "is_se_image", "NEEDS_DEBUG"]

_SECRET_LINE: Final = re.compile(rb"secret page at (0x[0-9a-fA-F]+)")


def _loader_symbols(image: str) -> dict[str, int]:
    """stage3a's symbols (the bundled ``stage3a.elf``) if the image's stage3a is the bundled one else {}."""
    from emulator.image.pvimg import STAGE3A_LOAD_ADDRESS, bootloader_dir

    folder = bootloader_dir()
    try:
        with open(image, "rb") as f:
            f.seek(STAGE3A_LOAD_ADDRESS)
            ours = (folder / "stage3a.bin").read_bytes()[:-24]  # its parameter block differs per image
            if f.read(len(ours)) != ours:
                return {}
        return _elf_symbols(folder / "stage3a.elf")
    except (OSError, ConsoleError):
        return {}


def _elf_symbols(path: str | Path) -> dict[str, int]:
    """The function, object and untyped symbols an ELF defines (ConsoleError: not readable)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    syms: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            for sec in ELFFile(f).iter_sections():
                if isinstance(sec, SymbolTableSection):
                    for sym in sec.iter_symbols():
                        kind = sym["st_info"]["type"]
                        if sym.name and kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") \
                                and sym["st_shndx"] != "SHN_UNDEF":  # fmt: skip
                            syms[sym.name] = sym["st_value"]
    except (OSError, ELFError) as e:
        raise ConsoleError(f"{path}: cannot read symbols: {getattr(e, 'strerror', None) or e}") from None
    return syms


def _guest_symbols(path: str | Path) -> dict[str, int]:
    """The secure guest's symbols: an ELF's, else a System.map's or a Linux kernel image's own (kallsyms, at
    the addresses the kernel runs at with nokaslr: the image packed into the SE image is encrypted, the
    ``vmlinuz`` it was packed from is not)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"\x7fELF":
                return _elf_symbols(path)
    except OSError as e:
        raise ConsoleError(f"{path}: cannot read symbols: {e.strerror or e}") from None
    from emulator.errors import LoadError
    from emulator.symbols.symfile import read_symbols

    try:
        return read_symbols(path).symbols
    except LoadError as e:
        raise ConsoleError(str(e)) from None


def is_se_image(path: str | Path) -> bool:
    """True if the file is a Secure Execution image (``pvimg create``): it starts like one (a truncated
    one is then refused where it is loaded, with where it ends) or parses as one."""
    from emulator.image.pvimg import parse_image, starts_like_image

    if starts_like_image(path):
        return True
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if b"IBMSecEx" not in data[: 1 << 20]:
        return False
    try:
        parse_image(data)
    except EmulatorError:
        return False
    except Exception:  # noqa: BLE001 - any parse failure means: not an SE image
        return False
    return True


#: the key that opens a session machine's sealed owner parts (``owner_machine``): module-private
_OWNER: Final = object()


def owner_machine(machine: SecureMachine) -> SecureHost:
    """The secure host behind a console machine (its storage object, Ultravisor and hypervisor): the
    console's own privilege as the machine's owner (a new VM on the same host) and the tests' door; a module
    function, outside the host side's reach (``ARCHITECTURE.md``)."""
    return machine._owner(_OWNER)  # noqa: SLF001


class SecureMachine:
    """A secure host with one VM booted from an SE image, driven like a ``Machine`` by the console.

    Args:
        host: the secure host (memory, Ultravisor with the machine's host keys, hypervisor).
        image: the SE image.
        memory: guest memory in bytes.
        symbols: an ELF whose symbols name the guest's addresses (the kernel the image was built from).
        attack: when the guest prints ``secret page at 0x...``, let the hypervisor try to read that page.
        deterministic: count-based scheduling (with the host's deterministic clock, repeatable runs).
    """

    level: Final = 3
    #: a secure host has an Ultravisor (held by the session's closures only: ``owner_machine``)
    has_ultravisor: Final = True

    def __init__(
        self,
        host: SecureHost,
        image: str | Path,
        memory: int,
        *,
        symbols: str | Path | None = None,
        attack: bool = True,
        deterministic: bool = False,
    ) -> None:
        from emulator.hypervisor.boot import load_image
        from emulator.hypervisor.virtio import BlockDevice, ConsoleDevice

        storage, uv = host.memory, host.uv
        #: the machine's name (its host keys' identity)
        self.name: str = host.name
        self.hv = host.hv
        #: the machine's storage as the session holds it (``SessionStorage``: the bytes of a frame the host
        #: may not touch only with the debug capability); the storage object and the Ultravisor are held by
        #: closures only (the host side's reach, ``ARCHITECTURE.md``): ``owner_machine`` opens them
        self.memory = SessionStorage(storage, host.hv.host, lambda: self.debug is not None)

        def owner(key: object) -> SecureHost:
            if key is not _OWNER:
                raise ConsoleError(f"the machine's storage and Ultravisor: {NEEDS_DEBUG}")
            return host

        def cpu_num(handle: int) -> int | None:
            cpu = uv.secure_cpu(handle)
            return cpu.num if cpu is not None else None

        # gates (``seal``): an exception leaves them without the frames holding the host and the Ultravisor
        self._owner, self._cpu_num = seal.gate(owner), seal.gate(cpu_num)
        self._grant = seal.gate(lambda: SecureDebug(host.hv, storage, uv))
        self._page_map = SealedPageMap(SecureHostPageMap(storage, uv, lambda: list(self.hv.vms)))
        #: the machine's debug capability over the secure guest (emulator privilege: no real host has it);
        #: None until asked for by name (``grant_debug``: ``zuv console --debug-secure``, ``debug secure on``)
        self.debug: SecureDebug | None = None
        self.tod = host.clock
        self.info = host.hv.info
        self.deterministic = deterministic
        self.image = str(image)
        self.attack = attack
        self.trap: TrapReport | None = None
        self._attacked = False
        self.vm = vm = host.hv.create_vm(memory, 1, name=Path(image).name)
        try:
            vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001 - the VM's console sink
            vm.add_device(BlockDevice(1 << 20))
            start = load_image(vm, self.image)
        except BaseException:
            vm.destroy()
            raise
        self.cpus: dict[int, VcpuCpu] = {a: VcpuCpu(self, v) for a, v in vm.vcpus.items()}
        #: the ELF the guest's symbols come from (None: no symbols)
        self.symbols_path = None if symbols is None else str(symbols)
        self.program = self._program(start, symbols)
        #: stage3a's symbols when the image's stage3a is the bundled one (it names its code before the
        #: secure IPL, where the program's symbols do not apply: ``program_runs``)
        self.loader_symbols: dict[str, int] = _loader_symbols(self.image)
        self._bp_sets: tuple[set[int], set[int]] = (set(), set())  # breakpoints (normal, secure)
        self._hooks_pv = vm.pv  # the VM's secure configuration the hooks were placed for
        #: the VM's secure configuration and the SIE engine's entries at the secure IPL (``sd_stale``)
        self._ipl_entries: tuple[object, int] | None = None
        self._halt_reason: str | None = None
        self.stopped_at: tuple[int, int] | None = None
        self.last_stop: tuple[int, CpuExit] | None = None
        #: What the last ``step`` ended with when it was more than an instruction (an interception).
        self.last_step_note = ""
        self.input_open = False
        self._log = UvEventLog(uv, self._caller_name)
        self._guest_uvc_filter: Callable[..., str | None] | None = None
        self._host_filter: Callable[[HostUvc], str | None] | None = None
        #: the machine's work (a run or a step) while it runs on its own thread, or waits suspended
        self._work: Work | None = None
        self._runner = Runner()  # the one thread that runs that work (started at the first)
        self._uvc_step = False  # resumed by a step: suspend before the hypervisor's next UV call
        self._yield = False  # resumed work ends when the hypervisor is back in its loop
        #: the hypervisor's UV call the suspended work waits before, and why it stopped there
        self.paused_call: HostUvc | None = None
        self._pause_reason = ""

    def _program(self, start: int, symbols: str | Path | None) -> LoadedProgram:
        from emulator.machine.loader import LoadedProgram

        syms = {} if symbols is None else _guest_symbols(symbols)
        return LoadedProgram(self.image, "se-image", start, (), syms)

    def _caller_name(self, caller: Any) -> tuple[str, int | None]:
        pv = self.vm.pv
        num = self._cpu_num(caller.cpu_handle or 0)
        if pv is not None and caller.config_handle == pv.handle:
            return "guest", num
        return f"guest {caller.config_handle or 0:#x}", num

    # -- what the console asks ----------------------------------------------------------------------

    @property
    def console(self) -> bytearray:
        """The guest's console output so far."""
        return self.vm.console

    def console_providers(self) -> dict[str, object]:
        """The hypervisor's and the Ultravisor's views: page map, UV-call log, SIE interceptions."""
        return {
            "page_map": self._page_map,
            "uv_log": self._log,
            "intercepts": HypervisorIntercepts(self.hv),
        }

    def cpu_secure(self, address: int) -> bool:
        """True while the vCPU is a secure CPU (from the secure IPL on)."""
        return self.vm.vcpus[address].secure

    def guest_abs_to_host(self, absolute: int) -> int:
        """The host address of guest absolute ``absolute`` (the gmap maps A to MSO + A)."""
        if not 0 <= absolute < self.vm.memory_size:
            raise ConsoleError(
                f"guest absolute {absolute:#x} is beyond guest memory ({self.vm.memory_size:#x})"
            )
        return self.vm.mso + absolute

    def host_state(self, address: int) -> list[tuple[str, str]]:
        """What the hypervisor sees of a secure vCPU: the SIE state description and the PV register area."""
        v = self.vm.vcpus[address]
        sd = v.sd
        regs = v.page.pv_grregs
        return [
            ("PSW (SD, not authoritative)", f"{sd.psw_mask:016x} {sd.psw_addr:016x}"),
            ("prefix (SD)", f"{sd.prefix:#x}"),
            ("cr0 cr6 cr14 (SD)", f"{sd.gcr[0]:x} {sd.gcr[6]:x} {sd.gcr[14]:x}"),
            ("last interception", f"code {sd.icptcode:#04x} ipa {sd.ipa:#06x} ipb {sd.ipb:#010x}"),
            ("pv_grregs 0-7", " ".join(f"{regs[i]:x}" for i in range(8))),
            ("pv_grregs 8-15", " ".join(f"{regs[i]:x}" for i in range(8, 16))),
            ("configuration handle", f"{sd.pv_handle_config:#x}"),
            ("CPU handle", f"{sd.pv_handle_cpu:#x}"),
        ]

    def describe(self) -> list[str]:
        """Lines for ``info``."""
        vm, pv = self.vm, self.vm.pv
        lines = [
            f"secure host {self.name}: {self.memory.size >> 20} MiB host memory, hypervisor with "
            f"{len(self.hv.vms)} VM(s)",
            f"VM {vm.name}: {vm.memory_size >> 20} MiB of guest memory at host {vm.mso:#x}, "
            f"{len(vm.vcpus)} vCPU(s)",
        ]
        if pv is not None:
            lines.append(
                f"secure: yes (configuration {pv.handle:#x}, {pv.imports} imports, {pv.exports} exports)"
            )
        elif vm.pv_failure is not None:
            lines.append(f"secure: no (the secure IPL failed: {vm.pv_failure.message})")
        else:
            lines.append("secure: not yet (stage3a runs as a normal guest until the secure IPL)")
        if self.trap is not None:
            t = self.trap
            lines.append(
                f"hypervisor read of the secret page {t.gaddr:#x}: "
                f"{'trapped (PGM 0x3d)' if t.trapped else 'not trapped'}, then exported"
            )
        return lines

    # -- hooks the session installs -----------------------------------------------------------------

    def grant_debug(self) -> SecureDebug:
        """The machine's debug capability over the secure guest, asked for by name (``zuv console
        --debug-secure``, ``open_session(debug_secure=True)``, the console's ``debug secure on``): the owner
        view (the Ultravisor's record of the secure CPU's registers, plaintext storage, the hardware CPU that
        runs it, stops before the guest's own UV calls). An emulator privilege: no real host has it."""
        if self.debug is None:
            self.debug = self._grant()
            self.debug.insn_filter = self._guest_uvc_filter
            self._place_hooks()  # the hooks kept while the secure CPU was out of reach go to it now
        return self.debug

    @property
    def guest_uvc_stops(self) -> bool:
        """True when ``insn_filter`` stops before a secure guest's UVC (the debug capability is in use);
        otherwise the guest's UV calls are seen only in the Ultravisor's log, once they completed."""
        return self.debug is not None

    @property
    def insn_filter(self) -> Any:
        """Offered each secure guest's UVC before the Ultravisor runs it: only through the debug capability
        (``SecureDebug.insn_filter``, the owner's privilege); kept until it is granted."""
        return self._guest_uvc_filter

    @insn_filter.setter
    def insn_filter(self, fn: Any) -> None:
        self._guest_uvc_filter = fn
        if self.debug is not None:
            self.debug.insn_filter = fn

    def set_breakpoints(self, addrs: set[int], secure: set[int] | None = None) -> None:
        """Stop before a vCPU executes one of these (guest virtual) addresses: ``addrs`` while it runs a
        normal guest (stage3a, before the secure IPL), ``secure`` (None: the same) while it runs the secure
        guest, which only the machine's debug capability reaches. Each vCPU gets its set again when it
        changes hands (``_place_hooks``)."""
        self._bp_sets = (set(addrs), set(addrs if secure is None else secure))
        for c in self.cpus.values():
            c.set_breakpoints(self._bp_sets[c.vcpu.secure])

    def _place_hooks(self) -> None:
        """The vCPUs changed hands (the secure IPL adopted their hardware CPUs, which dropped the host's
        hooks; a teardown gave them back), or the debug capability came: each vCPU the console reaches gets
        the console's hooks and the breakpoints of what it runs; a secure vCPU without the capability none."""
        pv = self.vm.pv
        if pv is not None and self._hooks_pv is not pv:  # the secure IPL: the SD's PSW is stale until an exit
            self._ipl_entries = (pv, pv.engine.entries)
        self._hooks_pv = pv
        for c in self.cpus.values():
            c.place_hooks()
            c.set_breakpoints(self._bp_sets[c.vcpu.secure])

    def program_runs(self, address: int) -> bool:
        """True when the vCPU runs the program the symbols come from (the secure guest); False while stage3a
        runs before the secure IPL (``loader_symbols`` name its code)."""
        return self.vm.vcpus[address].secure

    def sd_psw(self, address: int) -> tuple[int, int]:
        """The vCPU's PSW as the hypervisor has it: the SIE state description's (not authoritative)."""
        return self.vm.vcpus[address].psw

    def sd_stale(self, address: int) -> bool:
        """True while a secure vCPU's SD still holds the hypervisor's PSW from before the secure IPL (the
        Ultravisor writes the secure CPU's into it at the first SIE exit; Set CPU State writes none)."""
        pv = self.vm.pv
        return (pv is not None and self.vm.vcpus[address].secure
                and self._ipl_entries == (pv, pv.engine.entries))  # fmt: skip

    def request_halt(self, reason: str = "halted") -> None:
        """Stop a running ``run`` soon (thread-safe)."""
        self._halt_reason = reason
        self.vm.request_halt(reason)

    def feed_console(self, data: bytes) -> None:
        """Console input for the guest (an SCLP event with a service signal)."""
        self.vm.feed_console(data)

    def close_input(self) -> None:
        """No more console input."""
        self.input_open = False

    @property
    def instructions(self) -> int:
        """Instructions the vCPUs executed."""
        return sum(self.hv.insn_count(v) for v in self.vm.vcpus.values())

    # -- the demo's hypervisor read ------------------------------------------------------------------

    def _stop_when(self) -> bool:
        """Checked after every SIE exit: resumed work ends (``_yield``), the demo's read is due, the vCPUs
        changed hands (the secure IPL: the console's hooks are placed again before the next entry)."""
        return self._yield or self.vm.pv is not self._hooks_pv or self._attack_due()

    def _attack_due(self) -> bool:
        return (
            self.attack and not self._attacked and self.vm.pv is not None
            and _SECRET_LINE.search(bytes(self.vm.console)) is not None
        )  # fmt: skip

    def _do_attack(self) -> None:
        from emulator.hypervisor.boot import read_secret_attempt

        m = _SECRET_LINE.search(bytes(self.vm.console))
        assert m is not None
        self._attacked = True
        self.trap = read_secret_attempt(self.vm, int(m.group(1), 16), b"zuv secret:")

    # -- execution --------------------------------------------------------------------------------------

    def _suppress(self, cpu: VcpuCpu) -> tuple[set[int], int] | None:
        """Take the breakpoint at the vCPU's PC out for one entry (the debugger resumes over it)."""
        pc = cpu.pc
        if pc not in cpu.breakpoints:
            return None
        saved = set(cpu.breakpoints)
        cpu.set_breakpoints(saved - {pc})
        return saved, pc

    # -- stops before the hypervisor's own UV calls (``hostcalls``) -----------------------------------------

    @property
    def host_uvc_filter(self) -> Callable[[HostUvc], str | None] | None:
        """Offered each of the hypervisor's own UV calls before it is issued (the boot's, an export); a
        returned reason suspends the machine's work there (``suspended``) until ``run`` or ``step``."""
        return self._host_filter

    @host_uvc_filter.setter
    def host_uvc_filter(self, fn: Callable[[HostUvc], str | None] | None) -> None:
        self._host_filter = fn
        self._update_hook()

    @property
    def suspended(self) -> bool:
        """True while the machine's work waits before one of the hypervisor's UV calls (``paused_call``)."""
        return self._work is not None and self._work.suspended

    def _update_hook(self) -> None:
        want = self._host_filter is not None or self._work is not None
        self.hv.before_uvc = self._before_host_uvc if want else None

    def _before_host_uvc(self, cmd: UvCommand, raw: bytes, addr: int) -> None:
        """``Hypervisor.before_uvc``: suspend the work here when the filter (or a step) says so."""
        work = self._work
        if work is None or work.abandoned or not work.on_thread():
            return  # not inside work the console can suspend (or the work is being given up)
        known = uv_command(cmd.code)
        call = HostUvc(cmd.code, known.name if known else cmd.name, addr, cmd, raw)
        if self._uvc_step:
            reason = "stopped before the hypervisor's next UV call"
        else:
            f = self._host_filter
            reason = f(call) if f is not None else None
            if reason is None:
                return
        self._uvc_step = False
        self.paused_call, self._pause_reason = call, reason
        try:
            work.suspend()
        finally:
            self.paused_call = None

    def _in_work(self, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run ``fn`` as suspendable work when a host UV call may stop it: (True, its value) when it
        finished, (False, None) when it suspended before a call."""
        if self._host_filter is None:
            return True, fn()
        self._yield = False
        work = self._work = Work(fn, self._runner)
        self._update_hook()
        return self._settle(work.start())

    def _settle(self, finished: bool) -> tuple[bool, Any]:
        work = self._work
        assert work is not None
        if not finished:
            return False, None
        self._work = None
        self._yield = self._uvc_step = False
        self._update_hook()
        return True, work.result()

    def _resume(self, step: bool) -> bool:
        """Resume suspended work; it ends when the hypervisor returns to its loop (``_yield``). ``step``: it
        suspends again before the hypervisor's next UV call, whatever it is. True: the work finished."""
        work = self._work
        assert work is not None
        self._yield, self._uvc_step = True, step
        finished, _ = self._settle(work.resume())
        return finished

    def abandon(self) -> None:
        """Give suspended work up (close, reset): the hypervisor's work unwinds as after a failure."""
        work = self._work
        if work is not None:
            work.abandon()
            self._work = None
            self._uvc_step = self._yield = False
            self._update_hook()

    def _paused_exit(self) -> CpuExit:
        self.last_step_note = self._pause_reason
        return CpuExit("limit", data={"executed": 0, "paused": True})

    def _paused_result(self, t0: float) -> RunResult:
        self.stopped_at = self.last_stop = None
        res = self.vm._result(self._pause_reason, t0, False)  # noqa: SLF001 - the VM's record
        res.clean = False
        return res

    # -- execution, as the session asks for it ------------------------------------------------------------

    def step(self, count: int = 1, cpu: int = 0) -> CpuExit:
        """Execute ``count`` instructions of one vCPU (an interception ends the step early). Suspended before
        a hypervisor's UV call: issue it and stop before the next one (or where the hypervisor goes back to
        the guest)."""
        self.last_step_note = ""
        if self._work is not None:
            if not self._resume(step=True):
                return self._paused_exit()
            c = self.cpus[cpu]
            if c.state != "operating":
                where = f" (CPU {cpu} {c.state})"
            elif c.vcpu.secure:  # the host knows no secure PSW before an interception: the SE header's
                where = (f" at {c.pc:#x}" if c.reachable() else "") + (
                    f" (the Ultravisor's PSW; the SD keeps the hypervisor's copy, {c.vcpu.psw[1]:#x}, until "
                    "the first interception)")
            else:
                where = f" at {c.pc:#x}"
            self.last_step_note = "the hypervisor finished its work: the guest goes on" + where
            return self._cpu_exit(c, None, 0)
        if self._host_filter is not None and count == 1:
            # the SIE entry here; only an exit whose handling may call the Ultravisor runs as work (a hand-off
            # to the work's thread per step made the step's tail: p95 ~3 ms on a loaded machine)
            c = self.cpus[cpu]
            self._check_operating(c)
            entered = (*self._enter(c), self._completes(c))
            if quiet_exit(entered[0]) and not self._attack_due():
                return self._step(1, cpu, entered)
            finished, ex = self._in_work(lambda: self._step(1, cpu, entered))
        else:
            finished, ex = self._in_work(lambda: self._step(count, cpu))
        return ex if finished else self._paused_exit()

    def run(self, max_insns: int | None = None, time_limit: float | None = None) -> RunResult:
        """Run the VM until its vCPUs stop, a limit, a debugger stop or ``request_halt``."""
        check_run_limits(max_insns, time_limit)
        t0 = time.monotonic()
        if self._work is not None and not self._resume(step=False):
            return self._paused_result(t0)
        finished, res = self._in_work(lambda: self._run(max_insns, time_limit))
        return res if finished else self._paused_result(t0)

    def _check_operating(self, c: VcpuCpu) -> None:
        if c.state != "operating":
            raise MachineError(f"CPU {c.vcpu.address} is {c.state}; it cannot step")

    def _completes(self, c: VcpuCpu) -> bool:
        """True when the vCPU's next SIE entry completes an intercepted instruction (UV's half of 0x68)."""
        pv = self.vm.pv
        return bool(pv is not None and c.vcpu.secure
                    and pv.engine.pending_completion(pv.cpu_handles.get(c.vcpu.address, 0)))  # fmt: skip

    def _enter(self, c: VcpuCpu) -> tuple[SieExit, int]:
        """One SIE entry with a budget of one instruction, resuming over a breakpoint at the PC; its exit is
        not handled yet (``Vm.handle_exit``) unless it was a stop request that came late (then again)."""
        address = c.vcpu.address
        if self.vm.pv is not self._hooks_pv:
            self._place_hooks()
        saved = self._suppress(c)
        try:
            sie, done = self.vm.step_entry(address, 1)
            if sie.reason == "halt" and done == 0 and not sie.icptcode:  # a stop request that came late
                self.vm.handle_exit(c.vcpu, sie)
                sie, done = self.vm.step_entry(address, 1)
        finally:
            if saved is not None:
                c.set_breakpoints(saved[0])
        return sie, done

    def _step(self, count: int, cpu: int, entered: tuple[SieExit, int, bool] | None = None) -> CpuExit:
        """``count`` one-instruction SIE entries, each exit handled as ``run`` handles it; ``entered``: the
        first entry was made already (its exit, instructions, whether it completed an instruction)."""
        c = self.cpus[cpu]
        if entered is None:
            self._check_operating(c)
        self.last_step_note = ""
        ex = CpuExit("limit")
        for _ in range(count):
            if entered is not None:
                sie, done, completes = entered
                entered = None
            else:
                completes = self._completes(c)
                sie, done = self._enter(c)
            self.vm.handle_exit(c.vcpu, sie)
            ex = self._cpu_exit(c, sie, done)
            if self._yield:
                break  # resumed work: the hypervisor is back in its loop
            if completes and not self.last_step_note:
                self.last_step_note = ("the SIE entry completed the intercepted instruction with the "
                                       "hypervisor's results (the Ultravisor's half of 0x68)")  # fmt: skip
            if self._attack_due():
                self._do_attack()
            if self.last_step_note or ex.kind != "limit":
                break
        return ex

    def _cpu_exit(self, c: VcpuCpu, sie: SieExit | None, done: int) -> CpuExit:
        v = c.vcpu
        data = {"executed": done}
        if sie is not None and (sie.icptcode or sie.host_pgm):
            what = (f"SIE interception {sie.icptcode:#04x} ({sie.name})" if sie.icptcode
                    else f"SIE ended with a {sie.name}")  # fmt: skip
            detail = intercept_detail(v, sie)
            handled = {
                0x68: (
                    "the hypervisor emulated it; the Ultravisor completes the instruction at the next "
                    "SIE entry"
                ),
                0x6C: "the hypervisor was notified; nothing to complete",
                0x70: "the hypervisor imported the prefix pages",
                0x04: "the hypervisor emulated it",
            }.get(sie.icptcode, "the hypervisor imported the page; the guest retries" if sie.host_pgm else "")
            self.last_step_note = f"{what}: {detail}" + (f"; {handled}" if handled else "")
        if v.detail:
            return CpuExit("check_stop", reason=v.detail, data=data)
        if v.disabled_wait is not None:
            return CpuExit("disabled_wait", code=v.disabled_wait, data=data)
        if not v.operating:
            return CpuExit("stopped", data=data)
        if sie is not None and sie.icptcode == 0x1C:
            return CpuExit("wait", data=data)
        return CpuExit("limit", data=data)

    def _run(self, max_insns: int | None, time_limit: float | None) -> RunResult:
        t0 = time.monotonic()
        deadline = None if time_limit is None else t0 + time_limit
        self._halt_reason = None
        self.stopped_at = None
        self.last_stop = None
        self.vm.debug_stop = None
        budget = max_insns
        for c in self.cpus.values():  # resume over a breakpoint a vCPU is stopped at
            if c.state == "operating":
                saved = self._suppress(c)
                if saved is not None:
                    try:
                        self.vm.step(c.vcpu.address, 1)
                    finally:
                        c.set_breakpoints(saved[0])
                    if budget is not None:
                        budget -= 1
        if self._yield:  # resumed work: the hypervisor is back in its loop
            return self.vm._result("resumed", t0, budget is not None)  # noqa: SLF001
        while True:
            if self._halt_reason is not None:
                res = self.vm._result(self._halt_reason, t0, budget is not None)  # noqa: SLF001 - the VM's record
                break
            if budget is not None and budget <= 0:
                res = self.vm._result("instruction limit reached", t0, True)  # noqa: SLF001
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                res = self.vm._result("time limit reached", t0, budget is not None)  # noqa: SLF001
                break
            before = self.instructions
            res = self.vm.run(max_insns=budget, time_limit=left, deterministic=self.deterministic,
                              stop_when=self._stop_when)  # fmt: skip
            if budget is not None:
                budget -= self.instructions - before
            if self.vm.pv is not self._hooks_pv:
                self._place_hooks()
            if res.reason != "stop condition met" or self._yield:
                break
            if self._attack_due():
                self._do_attack()  # a break secure on the trapped read halts here
        if self._halt_reason is not None and res.reason != self._halt_reason:
            res.reason = self._halt_reason
            res.clean = False
        stop = self.vm.debug_stop
        if stop is not None:
            addr, sie = stop
            c = self.cpus[addr]
            if sie.reason == "breakpoint":
                self.last_stop = (addr, CpuExit("breakpoint", code=c.pc))
            elif sie.reason == "watch":
                self.last_stop = (addr, CpuExit("watch", code=sie.data.get("vaddr", 0), data=dict(sie.data)))
            self.stopped_at = (addr, c.pc)
        return res

    def close(self) -> None:
        """Tear the VM down and detach from the Ultravisor."""
        self.abandon()
        self._runner.close()
        self.host_uvc_filter = None
        self._log.close()
        self.insn_filter = None
        self.vm.destroy()

"""The KVM-like hypervisor: VMs with a memory slot in host memory, vCPUs run through SIE, intercept handling.

The hypervisor is untrusted. It reaches host memory only through ``PhysicalMemory.host_view()`` (a secure
page raises PGM 0x3D there and is exported through the Ultravisor before the host may touch it again),
learns about a guest only from the state description and SIDA that SIE hands back, and reuses the device
models of ``emulator.hw`` (SCLP, SIGP, STSI) for its guests, exactly as the bare machine does for
``zuv run``. A VM's guest absolute address A lives at host absolute ``mso + A``; the guest sees memory
from 0 to its size.

Secure guests (protected virtualisation) are entered and managed by ``emulator.hypervisor.pv``; the
intercept handlers here serve both kinds and read their operands from wherever the kind puts them
(guest registers for a normal guest, the PV register save area and the SIDA for a secure one).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from emulator.errors import HypervisorError, ProgramException
from emulator.hw.cpu import (
    CHECK_STOP,
    PSW_MASK_64,
    PSW_MASK_EXT,
    PSW_MASK_IO,
    PSW_MASK_MCHECK,
    PSW_MASK_WAIT,
    Insn,
)
from emulator.hw.cpu_handle import CpuHandle
from emulator.hw.cpu_handle import group as cpu_group
from emulator.hw.diag import Diag288
from emulator.hw.hardware import Hardware
from emulator.hw.memory import PAGE_SIZE, PhysicalMemory
from emulator.hw.results import CpuResult, RunResult, run_limits_problem
from emulator.hw.sclp import Sclp, merge_service_parameter
from emulator.hw.sie import (
    CPUSTAT_STOPPED,
    ICPT_INST,
    ICPT_PROGI,
    ICPT_STOP,
    ICPT_WAIT,
    Sie,
    SieExit,
    SiePage,
)
from emulator.hw.sysinfo import MachineInfo, normal_guest_facilities
from emulator.hw.tod import TodClock
from firmware.uv_gate import UvGate

if TYPE_CHECKING:
    from emulator.hypervisor.pv import PvHost, PvVm
    from emulator.hypervisor.pv_ipl import ProtectFailure
    from firmware.uv_codes import UvCommand
from emulator.hypervisor.channel_io import VmChannel
from emulator.hypervisor.floating import place_service_signal, route_service_signal
from emulator.hypervisor.hostmem import HOST_RESERVED, MIB, GuestWindow, HostAllocator
from emulator.hypervisor.intercepts import _HANDLERS
from emulator.hypervisor.services import GuestServices
from emulator.hypervisor.watchdog import expire as watchdog_expire

__all__ = ["Hypervisor", "Vm", "Vcpu", "VmResult", "VcpuResult", "HostAllocator", "GuestWindow"]
SLICE: Final = 20_000
#: the longest free SIE entry of one vCPU while others operate (us)
TIME_SLICE_US: Final = 2_000
#: SIE exits that are a debugger's stops (``SieExit.reason`` with no interception code): the guest did not
#: move; the run loop halts so the debugger can look (``Vm.debug_stop``).
DEBUG_EXITS: Final = frozenset({"breakpoint", "watch", "filtered"})
#: ``listener(vm, vcpu, exit)``: told about every SIE exit before the hypervisor handles it.
ExitListener = Callable[["Vm", "Vcpu", SieExit], None]


class Device(Protocol):
    """A device model behind DIAGNOSE 0x500 notifications (``emulator.hypervisor.virtio``)."""

    device_id: int

    def notify(self, vm: Vm, queue: int, cookie: int) -> int:
        """Handle a notification; returns the value for GR2 (0 or a negative errno)."""
        ...


#: How one vCPU ended (the machine's record).
VcpuResult = CpuResult
#: How a VM run ended (the machine's record, with the interception counts filled in).
VmResult = RunResult


class Vcpu:
    """One virtual CPU: its SIE page in host memory, the hardware CPU SIE runs it on, and its state.

    For a normal guest the guest's register file is reachable (SIE shares it with the host); once the VM
    is secure the hardware CPU belongs to the Ultravisor's SIE and the hypervisor only sees the SIE page.
    """

    def __init__(self, vm: Vm, address: int, cpu: CpuHandle, page_addr: int, page: SiePage) -> None:
        self.vm = vm
        self.address = address
        self._cpu: CpuHandle | None = cpu
        self.page_addr = page_addr
        self.page = page
        self.sd = page.sie_block
        self.sd.icpua = address
        self.sd.mso = vm.mso
        self.sd.msl = vm.memory_size - 1
        self.sd.cpuflags = CPUSTAT_STOPPED
        self.disabled_wait: int | None = None
        self.detail = ""
        self.sida_addr = 0

    # -- the guest's register file (normal guests only) ---------------------------------------------

    @property
    def cpu(self) -> CpuHandle:
        """The hardware CPU of a normal guest as the hypervisor holds it (``CpuHandle``: its registers are
        the host's to read and write, its accesses checked by the CPU; the CPU itself is the hardware's)."""
        if self._cpu is None:
            raise HypervisorError(f"vCPU {self.address} is secure: its registers belong to the Ultravisor")
        return self._cpu

    @property
    def secure(self) -> bool:
        """True while the vCPU runs as a secure CPU (format-4 SD)."""
        return self._cpu is None

    @property
    def operating(self) -> bool:
        """True unless the vCPU is stopped (cpuflags STOPPED)."""
        return not self.sd.cpuflags & CPUSTAT_STOPPED

    def set_operating(self, on: bool) -> None:
        """Start or stop the vCPU (KVM_SET_MP_STATE for a normal vCPU)."""
        if on:
            self.sd.cpuflags &= ~CPUSTAT_STOPPED
            self.disabled_wait = None
        else:
            self.sd.cpuflags |= CPUSTAT_STOPPED

    @property
    def psw(self) -> tuple[int, int]:
        """The guest PSW as the SD holds it."""
        return self.sd.psw_mask, self.sd.psw_addr

    def set_psw(self, mask: int, addr: int) -> None:
        """Set the guest PSW in the SD (taken at the next SIE entry)."""
        self.sd.psw_mask, self.sd.psw_addr = mask, addr

    def set_cc(self, cc: int) -> None:
        """Set the condition code in the SD's guest PSW."""
        self.sd.psw_mask = (self.sd.psw_mask & ~(3 << 44)) | (cc & 3) << 44


class Vm:
    """One virtual machine: a memory slot, vCPUs, an SCLP with a console, devices, and a run loop.

    Created by ``Hypervisor.create_vm``. ``load`` puts a program into guest memory the way
    ``qemu-system-s390x -kernel`` does; ``run`` runs the vCPUs until they stop.
    """

    def __init__(
        self,
        hv: Hypervisor,
        name: str,
        mso: int,
        memory_size: int,
        cpus: int,
        console_out: Callable[[bytes], None] | None,
    ) -> None:
        self.hv = hv
        self.name = name
        self.mso = mso
        self.memory_size = memory_size
        self.memory = GuestWindow(hv.host, mso, memory_size)
        self.console = bytearray()
        self._console_out = console_out
        self.sclp = Sclp(lambda: sorted(self.vcpus), self._console_write)
        self.devices: dict[int, Device] = {}
        #: the channel subsystem: virtio-ccw devices behind subchannels (``channel_io``)
        self.channel = VmChannel(hv.host, mso, memory_size)
        self.vcpus: dict[int, Vcpu] = {}
        self.facilities = normal_guest_facilities(hv.ultravisor is not None)
        for addr in range(cpus):
            self._add_vcpu(addr)
        self.ipl_parameters: bytes | None = None
        #: the identity its STSI shows: the machine's, and at level 3 the VM's name and UUID (QEMU's ``-name``
        #: and ``--uuid``, ``boot(name=, uuid=)``) with KVM's control-program identifier
        self.info = hv.info
        #: the DIAGNOSE 0x288 watchdog device (``watchdog.add_watchdog``), or None: DIAG 0x288 is refused
        self.watchdog: Diag288 | None = None
        self.pv_ipl_parameters: bytes | None = None
        self.pv: PvVm | None = None
        #: why the last secure IPL (DIAG 0x308 subcode 10) failed, or None
        self.pv_failure: ProtectFailure | None = None
        self.program_path: str | None = None
        self._cmdline = ""
        self._halt_reason: str | None = None
        #: console input from other threads (``queue_console``), fed by the run loop between SIE entries
        self._console_in: deque[bytes] = deque()
        #: console input may still come (``queue_console``): CPUs that wait with nothing else to end the
        #: wait keep the run going until it comes or ``close_input``
        self.input_open = False
        self._input_event = threading.Event()
        self.intercepts: dict[str, int] = {}
        self.destroyed = False
        #: (vCPU address, exit) of the last debugger stop (``DEBUG_EXITS``) seen by ``handle_exit``.
        self.debug_stop: tuple[int, SieExit] | None = None

    # -- construction ----------------------------------------------------------------------------------

    def _add_vcpu(self, addr: int) -> Vcpu:
        hv = self.hv
        cpu = hv.hardware.new_cpu(addr, hv.clock, self.facilities, hv.info.cpuid(addr))  # a CpuHandle
        cpu.guest_memory_size = self.memory_size
        page_addr = hv.alloc.alloc_page()
        hv.host.write(page_addr, bytes(PAGE_SIZE))
        page = hv.sie_page(page_addr)
        v = Vcpu(self, addr, cpu, page_addr, page)
        hv.engine.relocate(cpu, v.sd)
        self.vcpus[addr] = v
        cpu_group(x._cpu for x in self.vcpus.values() if x._cpu is not None)
        return v

    def add_vcpu(self, addr: int) -> Vcpu:
        """Add a stopped vCPU with CPU address ``addr``, as QEMU's ``-device s390x-cpu,core-id=N`` (CPU
        hot-plug; the guest starts it with SIGP). Before the VM is secure: KVM_PV_ENABLE gives every vCPU
        there is then a secure CPU. Raises ``HypervisorError`` for an address in use or out of range."""
        if self.pv is not None:
            raise HypervisorError(f"VM {self.name} is secure: its CPUs were fixed when it became secure")
        if not 0 <= addr < 248:
            raise HypervisorError(f"a CPU address must be between 0 and 247, not {addr}")
        if addr in self.vcpus:
            raise HypervisorError(f"VM {self.name} has a CPU with address {addr} already")
        return self._add_vcpu(addr)

    def _console_write(self, data: bytes) -> None:
        self.console += data
        if self._console_out is not None:
            self._console_out(data)

    def add_device(self, dev: Device) -> None:
        """Attach a device model reachable with DIAGNOSE 0x500 (GR2 = its device id)."""
        self.devices[dev.device_id] = dev

    # -- loading ---------------------------------------------------------------------------------------

    def load(self, path: str, cmdline: str = "") -> int:
        """Load an ELF or flat image into guest memory (QEMU ``-kernel`` rules); CPU 0 starts at its entry.

        Returns the start address. Raises ``LoadError`` for a bad program.
        """
        from emulator.machine.loader import load_program  # the loader is shared with the bare machine

        _prog, start = load_program(path, self.memory, cmdline)  # type: ignore[arg-type]
        self.program_path, self._cmdline = path, cmdline
        self.ipl(start)
        return start

    def ipl(self, start: int, mask: int = PSW_MASK_64) -> None:
        """Initial reset of every vCPU; CPU 0 starts at ``start``."""
        for v in self.vcpus.values():
            v.cpu.reset_initial()
            self.hv.engine.forget(v.cpu)
            v.set_operating(False)
            v.set_psw(0, 0)
        v0 = self.vcpus[0]
        v0.set_psw(mask, start)
        v0.set_operating(True)

    # -- control ---------------------------------------------------------------------------------------

    def request_halt(self, reason: str = "halted") -> None:
        """Stop a running ``run`` soon (thread-safe)."""
        self._halt_reason = reason
        self.hv.halt_cpus(self)

    def feed_console(self, data: bytes) -> None:
        """Console input (an SCLP event; the guest is told with a service signal)."""
        self.sclp.feed_input(data)
        self.inject_service_signal(1)

    def queue_console(self, data: bytes) -> None:
        """Console input from another thread (a user typing while the VM runs): the run loop feeds it
        (``feed_console``) before its next SIE entry; a running entry is ended for it."""
        self._console_in.append(data)
        self._input_event.set()
        self.hv.halt_cpus(self)

    def close_input(self) -> None:
        """No more console input will come (end of file): CPUs that wait only for it end the run."""
        self.input_open = False
        self._input_event.set()

    def inject_service_signal(self, param: int) -> None:
        """Make a service-signal external interruption pending, merged with one that is
        (``sclp.merge_service_parameter``; floating: any vCPU enabled for it takes it; ``PvVm.floating`` in a
        secure VM, ``emulator.hypervisor.floating`` in a normal one)."""
        v = self.vcpus[min(self.vcpus)]
        if self.pv is not None and v.secure:
            floating = self.pv.floating
            floating["service"] = merge_service_parameter(floating.get("service"), param)
        else:
            place_service_signal(self, param, v)

    # -- running ---------------------------------------------------------------------------------------

    def run(
        self,
        max_insns: int | None = None,
        time_limit: float | None = None,
        stop_when: Callable[[], bool] | None = None,
        deterministic: bool = False,
    ) -> VmResult:
        """Run the vCPUs until all have stopped, a limit is reached, ``stop_when()`` holds or a halt.

        vCPUs run free (a timer-deadline timeout bounds each SIE entry; several take turns in time slices of
        at most ``TIME_SLICE_US``); an instruction limit or ``deterministic`` use count-based slices in
        CPU-address order.
        """
        if self.destroyed:
            raise HypervisorError(f"VM {self.name} was destroyed")
        problem = run_limits_problem(max_insns, time_limit)
        if problem is not None:
            raise HypervisorError(problem)
        t0 = time.monotonic()
        timer = None
        # before the timer starts: a timer that fires before this line (a busy thread beside the run's)
        # would otherwise be forgotten and the run never end
        self._halt_reason = None
        if time_limit is not None:
            timer = threading.Timer(time_limit, self.request_halt, args=("time limit reached",))
            timer.daemon = True
            timer.start()
        counted = deterministic or max_insns is not None
        budget = max_insns
        clock = self.hv.clock
        try:
            while True:
                if self.watchdog is not None and self.watchdog.deadline is not None:
                    watchdog_expire(self)
                operating = [v for v in self.vcpus.values() if v.operating]
                if not operating:
                    return self._result("all CPUs stopped", t0, counted)
                if self._halt_reason is not None:
                    return self._result(self._halt_reason, t0, counted)
                if stop_when is not None and stop_when():
                    return self._result("stop condition met", t0, counted)
                if budget is not None and budget <= 0:
                    return self._result("instruction limit reached", t0, counted)
                while self._console_in:
                    self.feed_console(self._console_in.popleft())
                if len(self.vcpus) > 1 and self.vcpus[min(self.vcpus)]._cpu is not None:  # a normal VM
                    route_service_signal(self)
                progressed = False
                if not counted:
                    # free SIE entries, also with several vCPUs: each in turn until the first timer of any
                    # of them, for at most a time slice when there are several (counted slices would drop
                    # every translated block at each change between counted and free code, ``Cpu._counting``)
                    if len(operating) == 1:  # (one vCPU: its deadline alone)
                        d = self.hv.timer_deadline(operating[0])
                        timeout = clock.us_until(d) + 1 if d is not None else 0
                    else:
                        deadlines = [d for v in operating if (d := self.hv.timer_deadline(v)) is not None]
                        timeout = clock.us_until(min(deadlines)) + 1 if deadlines else 0
                        timeout = min(timeout, TIME_SLICE_US) if timeout else TIME_SLICE_US
                    for v in operating:
                        if not v.operating:  # stopped by another vCPU's SIGP in this round: not entered
                            continue
                        progressed = self.handle_exit(v, self.hv.enter(v, timeout_us=timeout)) or progressed
                        if self._halt_reason is not None:
                            break
                else:
                    for v in operating:
                        if not v.operating:  # stopped by another vCPU's SIGP in this round: not entered
                            continue
                        n = SLICE if budget is None else min(SLICE, budget)
                        before = self.hv.insn_count(v)
                        ex = self.hv.enter(v, count=n)
                        done = self.hv.insn_count(v) - before
                        clock.advance_insns(done)
                        if budget is not None:
                            budget -= done
                        progressed = self.handle_exit(v, ex) or progressed
                        if self._halt_reason is not None or (budget is not None and budget <= 0):
                            break
                if not progressed and not self._pass_idle():
                    if self.input_open:  # console input may still come (zuv boot's standard input)
                        self._input_event.wait(0.05)
                        self._input_event.clear()
                        continue
                    return self._result(
                        "all CPUs wait with no interruption that can end the wait", t0, counted
                    )
        finally:
            if timer is not None:
                timer.cancel()

    def _pass_idle(self) -> bool:
        """Every operating vCPU waits: let time pass towards the next timer deadline
        (``TodClock.idle_until``). False: nothing will come."""
        ops = [v for v in self.vcpus.values() if v.operating]
        if not ops:
            return True
        if any(self.hv.interrupt_ready(v) for v in ops):
            return True
        deadlines = [d for v in ops if (d := self.hv.timer_deadline(v)) is not None]
        if not deadlines:
            return False
        self.hv.clock.idle_until(min(deadlines), self._input_event)
        return True

    def _count(self, name: str) -> None:
        self.intercepts[name] = self.intercepts.get(name, 0) + 1

    def step(self, address: int = 0, count: int = 1) -> tuple[SieExit, int]:
        """A debugger's step: one SIE entry of vCPU ``address`` with a budget of ``count`` instructions, its
        exit handled as ``run`` handles it. Returns the exit and the instructions the vCPU executed (an
        entry can end before the first one: an interception, a wait, an import the host must do first)."""
        ex, done = self.step_entry(address, count)
        self.handle_exit(self.vcpus[address], ex)
        return ex, done

    def step_entry(self, address: int = 0, count: int = 1) -> tuple[SieExit, int]:
        """The SIE entry of ``step`` alone: the caller hands the exit to ``handle_exit`` (a debugger that
        handles an exit that may make the hypervisor call the Ultravisor where it can stop before it)."""
        if self.destroyed:
            raise HypervisorError(f"VM {self.name} was destroyed")
        v = self.vcpus[address]
        hv = self.hv
        before = hv.insn_count(v)
        ex = hv.enter(v, count=max(1, count))
        done = hv.insn_count(v) - before
        hv.clock.advance_insns(done)
        return ex, done

    def handle_exit(self, v: Vcpu, ex: SieExit) -> bool:
        """Handle one SIE exit of a vCPU; True if the guest made progress (False: it only waits)."""
        code = ex.icptcode
        listeners = self.hv.exit_listeners
        if listeners:
            for listener in list(listeners):
                listener(self, v, ex)
        if not code and not ex.host_pgm and ex.reason in DEBUG_EXITS:
            self.debug_stop = (v.address, ex)
            if self._halt_reason is None:
                pc = ex.data.get("pc")
                where = f" at {pc:#x}" if pc is not None else ""
                self._halt_reason = ex.detail or f"{ex.reason}{where} on CPU {v.address}"
            return True
        if self.pv is not None and v._cpu is None:  # v.secure, inline (hot path)
            name, counts = ex.name, self.intercepts  # (``_count``, inline)
            counts[name] = counts.get(name, 0) + 1
            return self.pv.handle_exit(v, ex)
        if code == ICPT_INST:
            assert ex.insn is not None
            self._count(ex.insn.name)
            self._instruction(v, ex.insn)
            return True
        if code == ICPT_WAIT:
            mask = v.sd.psw_mask
            if mask & PSW_MASK_WAIT and not mask & (PSW_MASK_EXT | PSW_MASK_IO | PSW_MASK_MCHECK):
                v.disabled_wait = v.sd.psw_addr
                v.set_operating(False)
                return True
            return False
        if code == ICPT_STOP:
            v.set_operating(False)
            return True
        if code == ICPT_PROGI:
            return True
        if ex.reason == "check_stop":
            v.detail = ex.detail
            v.set_operating(False)
            v.cpu.state = CHECK_STOP
            return True
        if ex.host_pgm:
            raise HypervisorError(
                f"VM {self.name}: {ex.name} at guest {ex.teid:#x} in a normal guest ({ex.reason})"
            )
        if ex.reason == "breakpoint":
            self._halt_reason = f"breakpoint at {ex.data.get('pc', 0):#x} on CPU {v.address}"
        return True  # a host interruption: the time slice ended

    def _instruction(self, v: Vcpu, insn: Insn) -> None:
        """Emulate an intercepted instruction of a normal guest (the PSW already points past it)."""
        cpu = v.cpu
        try:
            handler = _HANDLERS.get(insn.name)
            if handler is None:
                raise ProgramException(0x01, why=f"{insn.name} is not available to a guest")
            handler(self, v, insn)
        except ProgramException as e:
            cpu.program_interrupt(e.code, e.ilc if e.ilc is not None else insn.ilen, e.teid, pc=insn.pc)
            v.set_psw(*cpu.psw)

    def _result(self, reason: str, t0: float, counted: bool) -> VmResult:
        cpus = []
        clean = reason == "all CPUs stopped"
        detail = ""
        for addr, v in sorted(self.vcpus.items()):
            if v.disabled_wait is not None:
                code = v.disabled_wait
                cpus.append(VcpuResult(addr, "disabled-wait", v.psw, f"disabled wait {code:#x}"))
                if code & 0xFFF != 0xFFF:
                    clean = False
                    detail = detail or f"CPU {addr} in disabled wait with code {code:#x} (a crash)"
            elif v.detail:
                cpus.append(VcpuResult(addr, "check-stop", v.psw, v.detail))
                clean = False
                detail = detail or f"CPU {addr} check-stopped: {v.detail}"
            elif not v.operating:
                cpus.append(VcpuResult(addr, "stopped", v.psw))
            else:
                cpus.append(VcpuResult(addr, "wait" if v.sd.psw_mask & PSW_MASK_WAIT else "running", v.psw))
        exit_line = None
        for line in bytes(self.console).decode("ascii", "replace").splitlines():
            if line.startswith("EXIT: STATUS="):
                exit_line = line.strip()
        insns = sum(self.hv.insn_count(v) for v in self.vcpus.values()) if counted else None
        return VmResult(
            reason, clean, cpus, insns, time.monotonic() - t0, exit_line, detail, dict(self.intercepts)
        )

    # -- host access to guest memory --------------------------------------------------------------------

    def read_guest(self, gaddr: int, length: int) -> bytes:
        """Read guest absolute storage as the hypervisor (a secure page is exported first: ciphertext)."""
        return self.memory.read(gaddr, length)

    def write_guest(self, gaddr: int, data: bytes) -> None:
        """Write guest absolute storage as the hypervisor (a secure page is exported first)."""
        self.memory.write(gaddr, data)

    def destroy(self) -> None:
        """Tear the VM down: leave secure mode, release the vCPUs and the memory slot."""
        if self.destroyed:
            return
        if self.pv is not None:
            self.pv.disable()
        self.channel.close()
        self.hv.destroy_vm(self)
        self.destroyed = True

class Hypervisor(GuestServices):
    """The KVM-like hypervisor of one host: its memory allocator, the SIE engine and the VMs.

    Args:
        hardware: the machine's hardware (``emulator.hw.hardware.Hardware``: the host view of storage, new
            CPUs, owner batches); a ``PhysicalMemory`` is wrapped in one (the composition root's shortcut).
            The hypervisor keeps no storage object: every access it makes is the host's, checked.
        clock: the host TOD clock (shared with the vCPUs).
        info: identity strings the guests see (STSI, STIDP).
        ultravisor: the Ultravisor (firmware) of the machine, or None; secure guests need one. The hypervisor
            keeps only its gate (``firmware.uv_gate.UvGate``: UVC on a block at a host address, Query's
            numbers, the Ultravisor's half of SIE), never the Ultravisor object.
        reserved: host memory kept below the guest slots.
    """

    def __init__(
        self,
        hardware: Hardware | PhysicalMemory,
        clock: TodClock,
        info: MachineInfo | None = None,
        ultravisor: object | None = None,
        reserved: int = HOST_RESERVED,
    ) -> None:
        if isinstance(hardware, PhysicalMemory):
            hardware = Hardware(hardware)
        self.hardware = hardware
        self.host = hardware.host
        self.clock = clock
        self.info = info or MachineInfo()
        #: the Ultravisor's gate (None: a machine without one)
        if ultravisor is not None and not isinstance(ultravisor, UvGate):
            ultravisor = UvGate(ultravisor)  # type: ignore[arg-type]
        self.ultravisor: UvGate | None = ultravisor  # type: ignore[assignment]
        self.alloc = HostAllocator(hardware.size, reserved)
        #: the SIE instruction for normal guests (``emulator.hw.sie.Sie``: its engine is the hardware's)
        self.engine = Sie(hardware.size)
        self.vms: list[Vm] = []
        self._pv_host: PvHost | None = None
        #: Debuggers: told about every SIE exit of every VM (``ExitListener``); empty: no cost.
        self.exit_listeners: list[ExitListener] = []
        self._before_uvc: Callable[[UvCommand, bytes, int], None] | None = None

    @classmethod
    def on_machine(cls, machine: object, reserved: int = HOST_RESERVED) -> Hypervisor:
        """A hypervisor running in the LPAR of a ``Machine`` (its memory, clock, identity and Ultravisor)."""
        return cls(
            Hardware(machine.memory),  # type: ignore[attr-defined]
            machine.tod,  # type: ignore[attr-defined]
            machine.info,  # type: ignore[attr-defined]
            getattr(machine, "uv", None),
            reserved,
        )

    @property
    def before_uvc(self) -> Callable[[UvCommand, bytes, int], None] | None:
        """Called before each of the hypervisor's own UVCs (``UvClient.before_call``: the command, the
        block's bytes in host memory, their address); a debugger may stop there. None: no cost."""
        return self._before_uvc

    @before_uvc.setter
    def before_uvc(self, fn: Callable[[UvCommand, bytes, int], None] | None) -> None:
        self._before_uvc = fn
        if self._pv_host is not None:
            self._pv_host.client.before_call = fn

    def pv_host(self) -> PvHost:
        """The Ultravisor connection (created, and the Ultravisor initialised, on first use)."""
        if self._pv_host is None:
            from emulator.hypervisor.pv import PvHost

            self._pv_host = PvHost(self, self.ultravisor)  # type: ignore[arg-type]
        return self._pv_host


    def sie_page(self, addr: int) -> SiePage:
        """The SIE page at host page ``addr`` (the SD lives in host storage; the hardware reads it there)."""
        if addr & 0xFFF or addr < 0 or addr + 0x1000 > self.host.size:
            raise HypervisorError(f"SIE page {addr:#x} is not a page of storage")
        if not self.host.accessible(addr):
            raise HypervisorError(f"SIE page {addr:#x} is not host storage")
        # at the page's address, holding no view of storage: ``from_buffer`` would keep a view of all of it
        # (``_objects``), a door past the host's checks for whoever holds the page
        return self.hardware.in_place(addr, SiePage)  # host storage for as long as the page object lives

    # -- VMs -------------------------------------------------------------------------------------------

    def create_vm(
        self,
        memory_size: int = 128 * MIB,
        cpus: int = 1,
        console_out: Callable[[bytes], None] | None = None,
        name: str = "",
        mso: int | None = None,
    ) -> Vm:
        """Create a VM with ``memory_size`` bytes of guest memory (whole MiB) and ``cpus`` vCPUs.

        The slot comes from free host memory (or exactly at ``mso`` when given). Raises
        ``HypervisorError`` when the host has no room.
        """
        if memory_size <= 0 or memory_size % MIB:
            raise HypervisorError(f"guest memory {memory_size:#x} must be a positive multiple of 1 MiB")
        if not 1 <= cpus <= 248:
            raise HypervisorError(f"a VM has 1 to 248 vCPUs, not {cpus}")
        if mso is None:
            base = self.alloc.alloc_range(memory_size)
        else:
            base = self.alloc.alloc_range(memory_size, above=mso, below=mso + memory_size)
        self.host.write(base, bytes(0))  # range check
        vm = Vm(self, name or f"vm{len(self.vms)}", base, memory_size, cpus, console_out)
        self.vms.append(vm)
        return vm

    def destroy_vm(self, vm: Vm) -> None:
        """Release the vCPUs, SIE pages and the memory slot of a VM (not secure any more), the slot zeroed."""
        for v in vm.vcpus.values():
            if v._cpu is not None:
                v._cpu.close()
            self.alloc.free_page(v.page_addr)
        # the next VM gets zeroed memory, as a new KVM guest gets fresh anonymous pages: nothing of this
        # guest (its shared buffers, its image, pages the host held exported) reaches another one
        self.host.discard(vm.mso, vm.memory_size)
        self.alloc.free_range(vm.mso, vm.memory_size)
        if vm in self.vms:
            self.vms.remove(vm)

    # -- entering guests -------------------------------------------------------------------------------

    def enter(self, v: Vcpu, count: int = 0, timeout_us: int = 0) -> SieExit:
        """One SIE execution of a vCPU."""
        vm = v.vm
        if vm.pv is not None and v._cpu is None:  # v.secure, inline (hot path)
            return vm.pv.enter(v, count, timeout_us)
        return self.engine.enter(v.cpu, v.page, count, timeout_us)

    def insn_count(self, v: Vcpu) -> int:
        """Instructions the vCPU executed (exact in counted runs)."""
        vm = v.vm
        if vm.pv is not None and v.secure:
            return vm.pv.insn_count(v)
        return v.cpu.insn_count

    def timer_deadline(self, v: Vcpu) -> int | None:
        """TOD value at which an enabled timer interruption of the vCPU becomes pending, or the VM's
        watchdog expires if that comes first."""
        vm = v.vm
        if vm.pv is not None and v._cpu is None:  # v.secure, inline (hot path)
            d = vm.pv.timer_deadline(v)
        else:
            d = v.cpu.next_timer_deadline()
        wd = vm.watchdog
        if wd is not None and wd.deadline is not None and (d is None or wd.deadline < d):
            return wd.deadline
        return d

    def interrupt_ready(self, v: Vcpu) -> bool:
        """True if the vCPU has an interruption pending that it is enabled for (so a wait ends)."""
        vm = v.vm
        if vm.pv is not None and v.secure:
            return vm.pv.interrupt_ready(v)
        cpu = v.cpu
        if cpu.restart_pending:
            return True
        return cpu.ext_deliverable() is not None  # the SIE reads the same pending state

    def halt_cpus(self, vm: Vm) -> None:
        """Ask every vCPU of a VM to leave SIE soon (thread-safe)."""
        for v in vm.vcpus.values():
            if v._cpu is not None:
                v._cpu.request_halt()
        if vm.pv is not None:
            vm.pv.halt()

"""The machine API: memory, TOD, CPUs and the SCLP of one configuration, its scheduler and its run results.

A ``Machine`` runs a bare-metal program the way ``qemu-system-s390x -kernel`` does: the program is the
only guest of zuv's hypervisor (STSI level 3) and sees the whole memory from absolute 0; or, with
``level=2``, the program runs in the LPAR itself (STSI level 2, and it may call the Ultravisor as the
host). The instructions the CPU hands back (DIAG, SERVC, SIGP, STSI, UVC, channel I/O) are answered
here through the shared device models in ``emulator.hw``.

Scheduling: CPUs run free in unicorn's JIT (time limits stop them from a timer); with several operating,
those with work take turns in time slices of at most ``TIME_SLICE_US``. In deterministic mode (or with an
instruction limit) they take turns in instruction-count slices in CPU-address order instead, so the same
program and input give the same output and the same instruction counts.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from emulator.errors import HwError, MachineError
from emulator.hw.cpu import (
    CHECK_STOP,
    OPERATING,
    PSW_MASK_64,
    PSW_MASK_WAIT,
    STOPPED,
    Cpu,
    CpuExit,
    Insn,
)
from emulator.hw.css import ChannelSubsystem, Subchannel
from emulator.hw.diag import WATCHDOG_ACTIONS, WATCHDOG_MODELS, Diag288
from emulator.hw.memory import PhysicalMemory
from emulator.hw.results import CpuResult, RunResult, run_limits_problem
from emulator.hw.sclp import Sclp
from emulator.hw.sysinfo import MachineInfo, facility_list
from emulator.hw.tod import TodClock
from emulator.hw.virtio_ccw import VirtioBlk, make_device
from emulator.machine.loader import LoadedProgram, load_initrd, load_program
from emulator.machine.lpar_sie import SCLP_CPU_FEATURE_SIEF2, LparSie
from emulator.machine.owner_insns import OwnerInsns
from emulator.options import MAX_CPUS, parse_size

__all__ = ["Machine", "RunResult", "CpuResult", "check_run_limits", "parse_size"]

SLICE: Final = 20_000
#: the longest free run of one CPU while others operate (us): the loop then routes what came for them and
#: gives the next CPU with work its turn
TIME_SLICE_US: Final = 2_000
def check_run_limits(max_insns: int | None, time_limit: float | None) -> None:
    """Refuse a run limit that is not positive (``MachineError``): the checks of every ``run``."""
    problem = run_limits_problem(max_insns, time_limit)
    if problem is not None:
        raise MachineError(problem)


def _cpu_topology(kind: str, props: dict[str, str]) -> dict[str, str]:
    """The topology options of a CPU device, checked as QEMU checks them; ``MachineError`` for the rest."""
    out = {}
    for key in ("socket-id", "book-id", "drawer-id"):
        value = props.pop(key, None)
        if value is not None:
            if not value.isdigit():
                raise MachineError(f"{kind}: {key} must be a number, not {value!r}")
            out[key] = value
    choices = (("entitlement", ("low", "medium", "high")), ("dedicated", ("true", "false", "on", "off")))
    for key, allowed in choices:
        value = props.pop(key, None)
        if value is not None:
            if value not in allowed:
                raise MachineError(f"{kind}: {key} must be one of {', '.join(allowed)}, not {value!r}")
            out[key] = value
    if props:
        raise MachineError(f"{kind}: options zuv does not offer: {', '.join(sorted(props))}")
    return out


class Machine(OwnerInsns):
    """An emulated IBM Z configuration.

    Args:
        memory: RAM size in bytes (multiple of 1 MiB).
        cpus: number of CPUs (CPU 0 starts, the others are stopped until SIGP).
        deterministic: deterministic TOD and count-based scheduling even with one CPU.
        level: 3 (a VM of zuv's hypervisor, like QEMU/KVM) or 2 (the LPAR itself); None: 3, or 2 with an
            Ultravisor, which belongs to the LPAR (a VM has no host Ultravisor calls: level 3 with one is
            refused).
        console_out: called with every chunk of console output.
        ultravisor: install the machine's Ultravisor (facilities 158/161; host UVCs at level 2), or pass
            an already-built one (its memory must be this machine's: build it from ``machine.memory``).
        watchdog: the watchdog device the program may use (``"diag288"``: DIAGNOSE 0x288, QEMU's
            ``-device diag288``), or None (DIAG 0x288 is then a specification exception, as in QEMU).
        watchdog_action: what the watchdog does when it expires (``emulator.hw.diag.WATCHDOG_ACTIONS``,
            QEMU's ``--watchdog-action``; default ``reset``, QEMU's).
        uv_machine: with ``ultravisor=True``, the machine whose Ultravisor is installed, with its host
            keys (a bundled name or a machine directory): SE headers for its host-key document open.
        uv_seed: seed of that Ultravisor's random numbers (handles, UIDs; its keys never follow a seed);
            None: 0 when deterministic, else the OS's.

    Raises:
        MachineError: a bad size, CPU count, level or machine (one line).
    """

    def __init__(
        self,
        memory: int = 128 << 20,
        cpus: int = 1,
        *,
        deterministic: bool = False,
        level: int | None = None,
        console_out: Callable[[bytes], None] | None = None,
        ultravisor: object | bool | None = None,
        info: MachineInfo | None = None,
        watchdog: str | None = None,
        watchdog_action: str = "reset",
        uv_machine: str = "zuv-demo",
        uv_seed: int | None = None,
    ) -> None:
        if not 1 <= cpus <= MAX_CPUS:
            raise MachineError(f"--cpus must be between 1 and {MAX_CPUS}, not {cpus}")
        if watchdog is not None and watchdog not in WATCHDOG_MODELS:
            raise MachineError(f"unknown watchdog {watchdog!r} (one of {', '.join(WATCHDOG_MODELS)})")
        if watchdog_action not in WATCHDOG_ACTIONS:
            raise MachineError(
                f"unknown watchdog action {watchdog_action!r} (one of {', '.join(WATCHDOG_ACTIONS)})"
            )
        #: the DIAGNOSE 0x288 watchdog, or None when the machine has none
        self.watchdog = Diag288(watchdog_action) if watchdog is not None else None
        if level is None:
            level = 2 if ultravisor else 3
        if level not in (2, 3):
            raise MachineError(f"level must be 2 (LPAR) or 3 (VM), not {level}")
        if level == 3 and ultravisor:
            raise MachineError("the Ultravisor is the LPAR's (level 2), a VM has none: --ultravisor with "
                               "--level 3 is refused")  # fmt: skip
        self.memory = PhysicalMemory(memory)
        self.tod = TodClock(deterministic=deterministic)
        self.deterministic = deterministic
        self.level = level
        self.info = info or (MachineInfo.qemu_compatible() if level == 3 else MachineInfo())
        self.uv = None
        self.console = bytearray()
        self._console_out = console_out
        if ultravisor is True:
            self.uv = self._machine_ultravisor(uv_machine, uv_seed)
        elif ultravisor:
            self.uv = ultravisor
        # a machine that says it is QEMU's TCG (``zuv run``'s default, level 3) has TCG's CPU model in this
        # too: no decimal floating point, which kvm-unit-tests' cpumodel expects missing there ('TCG does
        # not have DFP': offered, its check is an unexpected pass); an LPAR (level 2) and the guests of
        # zuv's hypervisor (a KVM host: ``zuv boot``, secure ones too) have it
        self.facilities = facility_list(bool(ultravisor), decimal_fp=self.info.manufacturer != "QEMU")
        self.cpus: dict[int, Cpu] = {}
        self.cpu_topology = {}
        self.sclp = Sclp(lambda: sorted(self.cpus), self._console_write)
        #: the channel subsystem (``add_device`` puts devices behind its subchannels)
        self.css = ChannelSubsystem(self.memory.host_view(), self.memory.keys)
        for addr in range(cpus):
            self._add_cpu(addr)
        #: SIE for the machine's programs: an LPAR's SIE facility at level 2, and at level 3 the nested
        #: virtualisation a KVM host with ``nested=1`` offers its guests (vSIE); the SCLP announces SIEF2
        self.sie: LparSie | None = LparSie(
            self.memory, self.tod, self.facilities, self.uv if level == 2 else None  # type: ignore[arg-type]
        )
        self.sclp.cpu_features = bytes([SCLP_CPU_FEATURE_SIEF2])
        self.program: LoadedProgram | None = None
        self._start = 0
        self._cmdline = ""
        self._initrd: str | None = None
        self._halt_reason: str | None = None
        self._insns_before = 0
        self._lock = threading.Lock()
        self._running_cpu: Cpu | None = None
        self.ipl_parameters: bytes | None = None
        #: disabled-wait codes by CPU address (how each CPU that stopped that way ended)
        self._disabled_wait: dict[int, int] = {}
        #: True while console input may still arrive (a waiting program then waits instead of ending).
        self.input_open = False
        #: True once console input that was open has ended (``close_input``): a wait then has a known cause.
        self.input_closed = False
        self._input_event = threading.Event()
        #: console input from other threads while ``run`` runs (``feed_console``), fed by the run loop
        self._console_in: deque[bytes] = deque()
        #: the thread running ``run`` (None between runs)
        self._run_thread: int | None = None
        #: a CPU that gave the others its turn in a free run (a yield, a signal to another CPU): its run ends
        #: and the next round starts after it
        self._handoff: Cpu | None = None
        self._free_run = False
        self.insn_handlers: dict[str, Callable[[Cpu, Insn], None]] = {}
        #: Debugger hook: called before each instruction handed back by a CPU is answered; a returned
        #: reason leaves the instruction unexecuted (the PSW still points at it) and halts ``run``.
        self.insn_filter: Callable[[Cpu, Insn], str | None] | None = None
        #: owner instruction name -> this machine's ``_insn_*`` method (None: not available)
        self._insn_methods: dict[str, Callable[[Cpu, Insn], None] | None] = {}
        #: The CPU exit that ended the last ``run`` at a breakpoint or watchpoint: (CPU address, exit).
        self.last_stop: tuple[int, CpuExit] | None = None

    #: per CPU address, the topology QEMU's CPU device gave it (``socket-id``, ``book-id``, ``drawer-id``,
    #: ``entitlement``, ``dedicated``): kept for the configuration-topology facility (11), which zuv does not
    #: offer yet, so programs see none of it (STSI 15 is refused; kvm-unit-tests' topology tests skip)
    cpu_topology: dict[int, dict[str, str]]

    def _add_cpu(self, addr: int) -> Cpu:
        """A new CPU with address ``addr``, stopped (CPU 0 is started by the load); every CPU's TLB group
        (IPTE and friends reach all of them) and the I/O source it takes interruptions from."""
        if addr in self.cpus:
            raise MachineError(f"there is a CPU with address {addr} already")
        if not 0 <= addr < MAX_CPUS:
            raise MachineError(f"a CPU address must be between 0 and {MAX_CPUS - 1}, not {addr}")
        cpu = self.cpus[addr] = Cpu(self.memory, addr, self.tod, self.facilities, self.info.cpuid(addr))
        cpu.io_source = self.css
        cpu.owner_insn = self._owner_insn
        group = list(self.cpus.values())
        for c in group:
            c.tlb_group = group
        return cpu

    def _machine_ultravisor(self, machine: str, seed: int | None) -> object:
        """The Ultravisor of ``machine`` on this memory, with its host keys."""
        from firmware.machine_identity import MachineIdentityError  # noqa: PLC0415 - optional layer
        from firmware.uv_machine import machine_ultravisor  # noqa: PLC0415

        if seed is None and self.deterministic:
            seed = 0
        rng = random.Random(seed).randbytes if seed is not None else None
        try:
            _, uv = machine_ultravisor(
                self.memory, machine, rng=rng, cpu_prefixes=lambda: [c.prefix for c in self.cpus.values()]
            )
        except MachineIdentityError as e:
            raise MachineError(str(e)) from None
        return uv

    # -- devices --------------------------------------------------------------------------------------

    def add_device(self, spec: str) -> Subchannel | Cpu:
        """Attach a device from a QEMU-like ``-device`` string: ``virtio-net-ccw``,
        ``virtio-blk-ccw,file=PATH[,readonly=on]`` behind the next subchannel, or a CPU
        (``s390x-cpu,core-id=N``, also QEMU's model-named ``qemu-s390x-cpu``/``max-s390x-cpu``/...: a stopped
        CPU with address N, as QEMU's CPU hot-plug); ``MachineError`` if bad."""
        kind, _, opts = spec.partition(",")
        if kind == "s390x-cpu" or kind.endswith("-s390x-cpu"):
            props = dict(o.partition("=")[::2] for o in opts.split(",") if o)
            core = props.pop("core-id", None)
            if core is None or not core.isdigit():
                raise MachineError(f"{kind} needs core-id=N (the CPU address), not {spec!r}")
            topology = _cpu_topology(kind, props)
            cpu = self._add_cpu(int(core))
            self.cpu_topology[cpu.address] = topology
            return cpu
        try:
            device = make_device(spec, self.memory.host_view())
        except HwError as e:
            raise MachineError(str(e)) from None
        return self.css.attach(device)

    def describe(self) -> list[str]:
        """One line per channel-attached device (the console's ``info``)."""
        lines = []
        for sch in self.css.subchannels:
            d = sch.device
            state = f"enabled, subclass {sch.isc}" if sch.enabled else "disabled"
            if sch.status_pending:
                state += ", status pending"
            backing = f", {d.path}" + (" read-only" if d.readonly else "") if isinstance(d, VirtioBlk) else ""
            where = f"subchannel {sch.sid:#010x}"
            lines.append(f"device 0.0.{sch.number:04x}: {d.name}{backing} ({where}, {state})")
        return lines

    # -- loading --------------------------------------------------------------------------------------

    def load(self, path: str, cmdline: str = "", initrd: str | None = None) -> LoadedProgram:
        """Load a program (and an initial RAM disk) and make CPU 0 ready to start at its entry (QEMU
        ``-kernel``, ``-append``, ``-initrd``)."""
        prog, start = load_program(path, self.memory, cmdline)
        if initrd is not None:
            load_initrd(initrd, prog, self.memory)
        self.program, self._start, self._cmdline, self._initrd = prog, start, cmdline, initrd
        self._ipl(start)
        return prog

    def _ipl(self, start: int) -> None:
        if self.watchdog is not None:
            self.watchdog.reset()
        self._disabled_wait.clear()
        for c in self.cpus.values():
            c.reset_initial()
        cpu0 = self.cpus[0]
        cpu0.set_psw(PSW_MASK_64, start)
        cpu0.state = OPERATING

    def _console_write(self, data: bytes) -> None:
        self.console += data
        if self._console_out is not None:
            self._console_out(data)

    # -- control --------------------------------------------------------------------------------------

    def request_halt(self, reason: str = "halted") -> None:
        """Stop a running ``run`` soon (thread-safe)."""
        self._halt_reason = reason
        for c in self.cpus.values():
            c.request_halt()

    def feed_console(self, data: bytes) -> None:
        """Console input for the program (it arrives as an SCLP event with a service signal).

        From another thread while ``run`` runs (``zuv run``'s standard input) it is queued, and the run loop
        feeds it between CPU runs (CPU 0's run is ended for it): the SCLP's buffer and the pending service
        signal belong to the CPUs' thread. Fed from the input thread itself, the input's signal could be
        merged with a SERVC's completion the CPU was making pending at the same moment, and one of the two
        was lost (Linux then read the line typed only at its SCLP driver's 30 s retry)."""
        run_thread = self._run_thread
        if run_thread is not None and run_thread != threading.get_ident():
            self._console_in.append(data)
            self._input_event.set()
            self.cpus[min(self.cpus)].request_halt()
            if self._run_thread is not None:
                return
            self._drain_console()  # the run ended meanwhile (its own drain may have taken it already)
            return
        self._feed_now(data)

    def _drain_console(self) -> None:
        while True:
            try:
                data = self._console_in.popleft()
            except IndexError:
                return
            self._feed_now(data)

    def _feed_now(self, data: bytes) -> None:
        self.sclp.feed_input(data)
        if self.sclp.event_pending:  # only a program that asked for console input is told
            cpu0 = self.cpus[min(self.cpus)]
            self._service_signal(1, cpu0)
            cpu0.kick()
        self._input_event.set()

    def close_input(self) -> None:
        """No more console input will come (end of file): a machine waiting only for it may end."""
        self.input_open = False
        self.input_closed = True
        self._input_event.set()

    @property
    def instructions(self) -> int:
        """Instructions counted so far (exact in counted mode; trapped instructions only otherwise)."""
        return sum(c.insn_count for c in self.cpus.values())

    # -- debugging ----------------------------------------------------------------------------------

    def set_breakpoints(self, addrs: set[int]) -> None:
        """Stop ``run`` before any CPU executes one of these virtual addresses (no cost between stops)."""
        for c in self.cpus.values():
            c.set_breakpoints(addrs)

    def step(self, count: int = 1, cpu: int = 0) -> CpuExit:
        """Execute ``count`` instructions on one CPU (interrupt deliveries do not count), then stop.

        Resumes over a breakpoint at the current address. Returns the CPU's last exit.
        """
        c = self.cpus[cpu]
        if c.state != OPERATING:
            raise MachineError(f"CPU {cpu} is {c.state}; it cannot step")
        ex = CpuExit("limit")
        for _ in range(count):
            ex = c.run(count=1, resume=True)
            self.tod.advance_insns(1)
            if ex.kind not in ("limit",):
                self._step(c, ex)
                if c.state != OPERATING or ex.kind in ("wait", "disabled_wait", "check_stop"):
                    break
        return ex

    # -- running -------------------------------------------------------------------------------------

    def run(self, max_insns: int | None = None, time_limit: float | None = None) -> RunResult:
        """Run until every CPU has stopped, a limit is reached, or ``request_halt``."""
        check_run_limits(max_insns, time_limit)
        t0 = time.monotonic()
        self._insns_before = self.instructions  # RunResult.instructions: this run's, not the machine's total
        timer = None
        # before the timer starts: a timer that fires before this line (a busy thread beside the run's)
        # would otherwise be forgotten and the run never end
        self._halt_reason = None
        if time_limit is not None:
            timer = threading.Timer(time_limit, self.request_halt, args=("time limit reached",))
            timer.daemon = True
            timer.start()
        self.stopped_at: tuple[int, int] | None = None
        self.last_stop = None
        self._run_thread = threading.get_ident()
        budget = max_insns
        counted = self.deterministic or max_insns is not None
        self._free_run, self._handoff = not counted, None
        for c in self.cpus.values():  # resume over breakpoints the CPUs are stopped at
            if c.state == OPERATING and c.pc in c.breakpoints:
                self._step(c, c.run(count=1, resume=True))
        try:
            while True:
                if self._console_in:
                    self._drain_console()
                if self.watchdog is not None and self.watchdog.deadline is not None:
                    self._watchdog_check()
                operating = [c for c in self.cpus.values() if c.state == OPERATING]
                if len(self.cpus) > 1:  # also from a holder that stopped to the one CPU still operating
                    self._route_service_signal()
                if any(c.state == CHECK_STOP for c in self.cpus.values()):
                    return self._result("check stop", t0, counted)
                if not operating:
                    return self._result("all CPUs stopped", t0, counted)
                if self._halt_reason is not None:
                    return self._result(self._halt_reason, t0, counted)
                if budget is not None and budget <= 0:
                    return self._result("instruction limit reached", t0, counted)
                runnable = [c for c in operating if not self._idle(c)]
                if not runnable:
                    if not self._pass_idle(operating):
                        if self.input_open:  # console input may still end the wait
                            self._input_event.wait(0.05)
                            self._input_event.clear()
                            continue
                        why = "all CPUs wait with no interruption that can end the wait"
                        if self.input_closed:
                            why = "end of console input (stdin closed) while the program waits for more"
                        return self._result(why, t0, counted)
                    continue
                if not counted:
                    # free runs in unicorn's JIT, also with several CPUs: each CPU with work in turn, until
                    # the first timer of any operating CPU and for at most a time slice when others operate
                    # (a waiting one wakes for its timer, a trap of a running one or an event from outside,
                    # which the loop routes between slices). Counted slices would drop every translated
                    # block at each change between counted and free code (``_counting``).
                    deadlines = [d for c in operating if (d := c.next_timer_deadline()) is not None]
                    deadline = self._earliest(min(deadlines) if deadlines else None)
                    timeout = self.tod.us_until(deadline) + 1 if deadline is not None else 0
                    if len(operating) > 1:
                        timeout = min(timeout, TIME_SLICE_US) if timeout else TIME_SLICE_US
                    if self._handoff in runnable:  # the CPUs after the one that gave its turn go first
                        i = runnable.index(self._handoff) + 1
                        runnable = runnable[i:] + runnable[:i]
                    self._handoff = None
                    for cpu in runnable:
                        if cpu.state != OPERATING:  # stopped by another CPU's SIGP in this round
                            continue
                        self._step(cpu, cpu.run(timeout_us=timeout))
                        if self._halt_reason is not None or self._handoff is not None:
                            break
                    continue
                for cpu in runnable:
                    n = SLICE if budget is None else min(SLICE, budget)
                    before = cpu.insn_count
                    ex = cpu.run(count=n)
                    done = cpu.insn_count - before
                    self.tod.advance_insns(done)
                    if budget is not None:
                        budget -= done
                    self._step(cpu, ex)
                    if self._halt_reason is not None or (budget is not None and budget <= 0):
                        break
        finally:
            self._run_thread = None
            self._drain_console()  # input that came as the run ended
            self._free_run = False  # (steps and counted runs hand nothing off)
            if timer is not None:
                timer.cancel()

    def _hand_off(self, cpu: Cpu) -> None:
        """``cpu`` yields (DIAG 0x44/0x9C) or signalled another CPU: in a free run with other CPUs operating,
        its run ends there and the others go first (a cross-CPU call's sender would otherwise spin out its
        time slice, up to ``TIME_SLICE_US``, before its target could answer)."""
        if not self._free_run or sum(c.state == OPERATING for c in self.cpus.values()) < 2:
            return
        self._handoff = cpu

    def _idle(self, cpu: Cpu) -> bool:
        """A waiting CPU with nothing deliverable does not need a turn."""
        mask = cpu.psw_mask
        if not mask & PSW_MASK_WAIT:
            return False
        if cpu.restart_pending:
            return False
        if cpu._ext_deliverable() is not None:  # noqa: SLF001 - same package family
            return False
        return not cpu.io_deliverable() and not cpu.mcheck_deliverable()

    def _pass_idle(self, operating: list[Cpu]) -> bool:
        """Every running CPU waits: let time pass towards the next timer (``TodClock.idle_until``), or give
        up. True if a timer may end the wait."""
        if any(not c.interrupt_possible() for c in operating if c.psw[0] & PSW_MASK_WAIT):
            # a disabled wait: that CPU is finished
            for c in operating:
                if c.psw[0] & PSW_MASK_WAIT and not c.interrupt_possible():
                    c.state = STOPPED
                    c.check_stop_reason = f"disabled wait {c.pc:#x}"
            return True
        deadlines = [d for c in operating if (d := c.next_timer_deadline()) is not None]
        if self.watchdog is not None and self.watchdog.deadline is not None:
            deadlines.append(self.watchdog.deadline)
        if not deadlines:
            return False
        self.tod.idle_until(min(deadlines), self._input_event)
        return True

    def _earliest(self, deadline: int | None) -> int | None:
        """A CPU's next timer deadline, or the watchdog's if that comes first (TOD values)."""
        wd = self.watchdog.deadline if self.watchdog is not None else None
        if wd is None:
            return deadline
        return wd if deadline is None else min(wd, deadline)

    def _watchdog_check(self) -> None:
        """Take the watchdog's action if it has expired (QEMU's ``watchdog_perform_action``)."""
        assert self.watchdog is not None
        action = self.watchdog.expire(self.tod.now())
        if action is None or action in ("none", "debug"):
            return
        if action == "inject-nmi":  # s390x's NMI is a restart interruption on CPU 0 (QEMU s390_nmi)
            cpu0 = self.cpus[0]
            if cpu0.state != CHECK_STOP:
                cpu0.restart_pending = True
                cpu0.state = OPERATING
                self._disabled_wait.pop(0, None)
        elif action == "reset" and self.program is not None:
            self.load(self.program.path, self._cmdline, self._initrd)  # a system reset re-IPLs the program
        else:
            what = {"pause": "paused", "reset": "reset"}.get(action, "powered off")
            self._halt_reason = f"the watchdog expired ({what}: --watchdog-action {action})"

    def _step(self, cpu: Cpu, ex: CpuExit) -> None:
        kind = ex.kind
        if kind == "insn":
            assert ex.insn is not None
            self._handle_insn(cpu, ex.insn)
        elif kind == "disabled_wait":
            cpu.state = STOPPED
            cpu.check_stop_reason = f"disabled wait {ex.code:#x}"
            self._disabled_wait[cpu.address] = ex.code
        elif kind == "check_stop":
            cpu.state = CHECK_STOP
        elif kind == "intercept":
            cpu.state = CHECK_STOP
            cpu.check_stop_reason = f"unexpected intercept {ex.code:#x}: {ex.reason}"
        elif kind == "breakpoint":
            self._halt_reason = f"breakpoint at {ex.code:#x} on CPU {cpu.address}"
            self.stopped_at = (cpu.address, ex.code)
            self.last_stop = (cpu.address, ex)
        elif kind == "watch":
            what = "store" if ex.data.get("write") else "access"
            self._halt_reason = f"watchpoint: {what} at {ex.code:#x} on CPU {cpu.address}"
            self.stopped_at = (cpu.address, cpu.pc)
            self.last_stop = (cpu.address, ex)
        # "wait", "limit", "halt", "stopped", "handled" (an instruction ``_owner_insn`` did): the loop decides

    def _result(self, reason: str, t0: float, counted: bool) -> RunResult:
        cpus = []
        dw = self._disabled_wait
        clean = True
        detail = ""
        for addr, c in sorted(self.cpus.items()):
            if addr in dw:
                state = "disabled-wait"
                code = dw[addr]
                d = f"disabled wait {code:#x}"
                if code & 0xFFF != 0xFFF:
                    clean = False
                    detail = detail or f"CPU {addr} in disabled wait with code {code:#x} (a crash)"
            elif c.state == CHECK_STOP:
                state, d = "check-stop", c.check_stop_reason
                clean = False
                detail = detail or f"CPU {addr} check-stopped: {d}"
            elif c.state == STOPPED:
                state, d = "stopped", ""
            else:
                state, d = ("wait" if c.psw[0] & PSW_MASK_WAIT else "running"), ""
            cpus.append(CpuResult(addr, state, c.psw, d))
        if reason != "all CPUs stopped" and reason != "check stop":
            clean = False
        exit_line = None
        for line in bytes(self.console).decode("ascii", "replace").splitlines():
            if line.startswith("EXIT: STATUS="):
                exit_line = line.strip()
        return RunResult(
            reason,
            clean,
            cpus,
            self.instructions - self._insns_before if counted else None,
            time.monotonic() - t0,
            exit_line,
            detail,
        )

    def close(self) -> None:
        """Release the CPUs and the devices."""
        if self.sie is not None:
            self.sie.close()
        for c in self.cpus.values():
            c.close()
        for sch in self.css.subchannels:
            closer = getattr(sch.device, "close", None)
            if closer is not None:
                closer()

"""Execution control of a console session: step, next, until, continue, stop, and why the machine stopped."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from emulator.console.breakpoints import Breakpoint, BreakpointControl
from emulator.console.disasm import Instruction, branch_target, disassemble, is_call
from emulator.console.errors import ConsoleError
from emulator.console.session_storage import refused
from emulator.console.storage_views import _Trap
from emulator.console.tables import uv_command
from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.machine.machine import RunResult

__all__ = ["ExecutionControl", "Stop"]

_MEM_OPERAND: Final = re.compile(r"(-?(?:0x[0-9a-fA-F]+|\d+))\(([^)]*)\)")


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


class ExecutionControl(BreakpointControl):
    """Running and stepping the machine, and the stops it makes (a base class of ``Session``)."""

    if TYPE_CHECKING:  # provided by Session
        cpu_address: int
        last_stop: Stop | None
        _stop_reason: str | None
        _ran: threading.Event
        _uvc_skip: tuple[int, int] | None
        _hinted: bool

        def cpu_state(self, cpu: Cpu | None = None) -> str:
            """The CPU's state in words (``Session``)."""

        def scope_of(self, cpu: Cpu | None = None) -> str:
            """Where the CPU runs, for scoped breakpoints (``Session``)."""

        def symbolize(self, addr: int, cpu: Cpu | None = None) -> str:
            """The symbol at an address (``Session``)."""

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
            if saved:  # a step sees its own accesses to watched frames (compared after it): none refused
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
                if (
                    changed
                    or self._hits
                    or note
                    or ex.kind in ("disabled_wait", "check_stop", "stopped", "wait")
                ):
                    details += changed
                    break
                if cpu.state != "operating":
                    break
        except EmulatorError as e:
            raise ConsoleError(str(e)) from None
        finally:
            self._stepping = False
            self._stop_reason = None
            if saved:
                cpu.watch_frames = saved
                cpu.flush_tlb()
        if log is not None:
            new = list(log.calls())[calls_before:]
            for c in new[:4]:
                cmd = uv_command(c.cmd)
                details.append(
                    f"UV call #{c.seq}: {c.cmd:#06x} {cmd.name if cmd else 'unknown'} by {c.caller}: "
                    f"cc {c.cc} rc {c.rc:#06x} rrc {c.rrc:#06x}"
                )
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
        if self._hinted:
            return call.lines()
        self._hinted = True  # the first such stop says what to do
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
        if self.view == "owner" or refused(self.machine.memory, host, len(data)) is None:
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

    def cont(
        self, *, time_limit: float | None = None, max_insns: int | None = None, temp: int | None = None
    ) -> Stop:
        """Run all CPUs at full speed until a breakpoint, the end of the program, a limit or ``stop``."""
        import time

        self._check_can_run(self.cpu)
        if temp is not None:
            self._temp, self._temp_scope = {temp}, self.scope_of()
            self._install()
        deadline = None if time_limit is None else time.monotonic() + time_limit
        self.running = True
        self._ran.clear()
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
            self._ran.set()
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
        if self.running:  # the machine's run forgets a request made before it began: asked again until seen
            threading.Thread(target=self._insist, args=(reason,), name="zuv-stop", daemon=True).start()

    def _insist(self, reason: str) -> None:
        while self.running and self._stop_reason == reason and not self._ran.wait(0.05):
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
                scope = self.scope_of(m.cpus[cpu_addr])
                here = [b for b in bps if b.enabled and b.kind == "addr" and b.address == pc
                        and b.scope in ("", scope)]  # fmt: skip
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
                return self._watch_stop(
                    cpu_addr, ex.code, ex.data.get("host", 0), bool(ex.data.get("write")), res
                )
        kind = {"all CPUs stopped": "end", "check stop": "end", "instruction limit reached": "limit",
                "time limit reached": "limit"}.get(res.reason, "halt")  # fmt: skip
        reason = res.describe()
        if kind == "end":
            states = ", ".join(
                f"CPU {c.address} {c.state}" + (f" ({c.detail})" if c.detail else "") for c in res.cpus
            )
            reason = f"{res.reason}: {states}"
        return Stop(kind, reason, self.cpu_address, self.cpu.pc, result=res)

    def _watch_stop(self, cpu_addr: int, vaddr: int, host: int, write: bool, res: RunResult) -> Stop | None:
        """A refused fill on a watched frame: execute the access, then decide whether it touched the range."""
        cpu = self.machine.cpus[cpu_addr]
        pc = cpu.pc
        operands = self._operand_ranges(cpu)
        watches = [
            b for b in self.breakpoints.values() if b.enabled and b.kind == "watch" and b.address is not None
        ]
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
                    f"watchpoint {bp.number}: value {self.shown(bp.address, bp.old)} -> "
                    f"{self.shown(bp.address, new)}"
                )
                bp.old = new
        return out

    def _where(self, addr: int) -> str:
        sym = self.symbolize(addr)
        return f"{addr:#x}" + (f" <{sym}>" if sym else "")

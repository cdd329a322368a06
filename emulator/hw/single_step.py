"""The CPU's watched single steps: tracing its data accesses, past sub-page protection, native at an exit."""

from __future__ import annotations

from collections.abc import Callable

from unicorn import Uc, UcError
from unicorn.unicorn_const import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE

from emulator.errors import ProgramException
from emulator.hw import dat
from emulator.hw.arch import ILC_FOR, PSW_MASK_DAT
from emulator.hw.exits import CpuExit
from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT
from emulator.hw.mmu import SubPageAccess
from emulator.hw.watchdog import _WATCHDOG

__all__ = ["SingleSteps"]


class SingleSteps:
    """Single steps of a CPU with a hook or past an exit (a base class of ``Cpu``)."""

    def step_tracing_accesses(self, step: Callable[[], object]) -> list[tuple[int, int, bool]]:
        """Call ``step`` (one instruction of this CPU, e.g. ``Machine.step``) recording each data access
        unicorn makes meanwhile as (host absolute address, size, store?): the debugger's exact watchpoints.
        A hook per access, so for single steps only; translated code is dropped before and after so that
        no block keeps the hook. Accesses that Python emulation makes (trapped instructions) are not seen."""
        seen: list[tuple[int, int, bool]] = []

        def record(_uc: Uc, access: int, address: int, size: int, _value: int, _ud: object) -> None:
            seen.append((address, size, access == UC_MEM_WRITE))

        uc = self.uc
        hook = uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, record)
        uc.ctl_flush_tb()
        self.flush_tlb()
        try:
            step()
        finally:
            uc.hook_del(hook)
            uc.ctl_flush_tb()
            self.flush_tlb()
        return seen

    def _watched_step(self, f: SubPageAccess) -> int:
        """Run the one instruction at the PC with the sub-page-protected page granted, watching the bytes
        it touches; undo it and raise PGM 0x04 if it touched a protected byte. Returns 1 if it completed."""
        pc = self.pc
        uc = self.uc
        ctx = uc.context_save()
        # the page as a read (for a store, the store check is exactly what the watched step decides)
        host_page = self.translate(f.vpage, mark=False)
        snapshot = bytes(self._buf[host_page : host_page + 0x1000])
        touched: list[int] = []

        vpage = f.vpage

        def watch(_uc: Uc, _access: int, address: int, size: int, _value: int, _ud: object) -> None:
            # unicorn's hooks see the address it runs with: the virtual one (the page's, not its frame's,
            # which prefixing moves), or for a SIE guest the host's
            for base in (vpage, host_page):
                if base <= address < base + 0x1000:
                    touched.extend(range(address - base, min(address - base + size, 0x1000)))
                    return

        hook = uc.hook_add(UC_HOOK_MEM_WRITE if f.write else UC_HOOK_MEM_READ, watch)
        self._probe = (f.vpage, f.write)
        # the instruction may stand at an exit (an EXECUTE, performed natively from its exit): the step runs
        # it, so unicorn must not halt there, also once a fill of the code's page registers its exits again
        self._step_at = pc
        if pc in self._uc_exits:
            self._uc_exits.discard(pc)
            self._exit_list.discard(pc, self._uc_exits)
        # After a free run (blocks translated without unicorn's count hook) the step ends at an exit after
        # the instruction: it accessed storage, so it is no branch (EXECUTE's target runs in the EXECUTE's
        # block). A counted step there would have to drop every translated block first (``_counting``).
        raw = self._fetch_insn(pc)
        after = self.wrap(pc + ILC_FOR(raw[0])) if raw is not None and self._uncounted_blocks else -1
        temporary = after >= 0 and after not in self._uc_exits
        if temporary:
            self._exit_list.add((after,), self._uc_exits)
            self._uc_exits.add(after)
        end = after + 1 if after > pc else pc + 6  # the blocks at the instruction, and those at the exit
        self._remove_cache(pc, end)
        self._flush_page(f.vpage)  # (the refused page: only its entries can hold a decision the step changes)
        self._fault = None
        self._stale()
        if after < 0 and self._uncounted_blocks:
            self._counting()
        try:
            # unicorn counts an EXECUTE and its target apart: one step is both
            count = 0 if after >= 0 else 2 if self._is_execute(pc) else 1
            self._stop_asked = False
            uc.emu_start(pc, 0xFFFFFFFFFFFFFFFF, 0, count)
            err = None
        except UcError as e:
            err = None if self._fill_retry and self._fault is None else e  # (refused for a stop: runs again)
        finally:
            self._fill_retry = False
            self._stale()
            undone = self._drop_pending_execute()  # stopped between an EXECUTE and its target: not run
            uc.hook_del(hook)
            self._probe = None
            self._step_at = -1
            if temporary and after not in self._exits:
                self._uc_exits.discard(after)
                self._exit_list.discard(after, self._uc_exits)
            self._remove_cache(pc, end)
            frame = host_page >> PAGE_SHIFT
            if f.write and touched and frame in self._code_pages:
                # it stored into code (Linux's lowcore holds an LPSWE): only what it stored is scanned again
                self._code_changed(frame, host_page + min(touched), host_page + max(touched) + 1)
            if self._smc_frames:  # (its other stores, into other frames)
                self._rescan_smc()
            # the entry the step granted goes; the rest of the TLB stays (a whole flush made every watched
            # step refill the working set and register its exits again: Linux's system calls store to the
            # lowcore several times each)
            self._flush_page(f.vpage)
            if pc in self._exits:
                self._register_exits({pc})
        if f.rule == "low-address protection":
            # (the hook misses stores unicorn's helpers make straight into host memory, an EXECUTE'd MVC's:
            # a change of the protected bytes counts too)
            bad = [o for o in touched if o < 512] or self._buf[host_page : host_page + 512] != snapshot[:512]
        else:
            bad = [o for o in touched if o >= 2048]
        if bad:
            self.mem.write(host_page, snapshot)
            uc.context_restore(ctx)
            self._stale()
            raw = self._fetch_insn(pc)
            ilc = ILC_FOR(raw[0]) if raw else 2
            asid = (self.psw[0] >> 46) & 3 if self.psw[0] & PSW_MASK_DAT else 0
            self.program_interrupt(
                dat.PGM_PROTECTION, ilc, f.vpage | (0x400 if f.write else 0x800) | asid, pc=pc
            )
            return 0
        if err is not None and self._fault is not None:
            fault = self._fault
            self._fault = None
            if isinstance(fault, ProgramException):
                self._deliver_fault(fault, self.pc)
            return 0
        if self._intr_info is not None:
            intno, code, ilen = self._intr_info
            self._intr_info = None
            if intno == 2:
                self.deliver_svc(code, ilen, self.pc)
            else:
                self.program_interrupt(code, ilen or 2, pc=self.pc)
            return 0
        if undone:
            return 0
        frame = host_page >> PAGE_SHIFT
        self.mem.keys[frame] |= KEY_R | (KEY_C if f.write and touched else 0)
        return 1

    def _native_step(self, pc: int, keep: bool = False) -> CpuExit | None:
        """Run one instruction natively at an exit address whose instruction is not a trapped one.

        ``keep`` leaves the exit in place afterwards (a breakpoint); otherwise it was stale and goes.
        """
        self._exits.discard(pc)
        if pc in self._uc_exits:
            self._uc_exits.discard(pc)
            self._exit_list.discard(pc, self._uc_exits)
        # the blocks that halt at pc: the zero-length one at pc, and (unless the exit stays, as a breakpoint
        # or an EXECUTE's does) the one that falls into it (it ends at pc: unicorn's own exit invalidation
        # starts at pc - 1 for it); not back across a page start, whose page may not translate (the whole
        # invalidation would be skipped)
        self._remove_cache(pc if keep or not pc & 0xFFF else pc - 1, pc + 1 if keep else pc + 6)
        saved, counted = self.breakpoints, self.insn_count
        armed = self._armed  # the one-instruction run disarms the time slice of the run this step is part of
        self.breakpoints = set()
        try:
            result = self.run(count=1)
        finally:
            self.breakpoints = saved
            self.insn_count = counted  # the caller counts the instruction at its exit
            if armed:
                _WATCHDOG.arm(self, armed)
                self._armed = armed
            if keep:
                self._exits.add(pc)
                if pc not in self._uc_exits:
                    self._exit_list.add((pc,), self._uc_exits)
                    self._uc_exits.add(pc)
                self._remove_cache(pc, pc + 1)  # the block that ran the instruction at pc
        return None if result.kind == "limit" else result

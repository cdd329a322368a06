"""One s390x CPU on unicorn: its state and the run loop, over the CPU's parts in its base classes.

``Cpu`` is ``tlb.TlbFill`` (the TLB fill and the exits) over ``traps.TrapDispatch`` (trapped instructions)
over ``registers.Registers`` over ``interrupts.InterruptDelivery`` over ``mmu.StorageAccess`` (the access
path); ``cpu_engine.EngineBinding`` makes and hooks its engine. These CPU modules, ``unicorn_abi`` (the
engine's C interface) and ``engine`` are the only ones that import unicorn. The design (measured in
``docs/benchmarks.md``, argued in ``ARCHITECTURE.md``):

* Guest code runs in unicorn's JIT with no per-instruction or per-block Python callback.
* Memory: every CPU maps the machine's one buffer with ``mem_map_ptr`` and runs under ``UC_TLB_VIRTUAL``:
  a Python TLB fill does prefixing, DAT, key-controlled protection, owner-tag (Secure Execution) checks and,
  for SIE guests, the guest-to-host memory mapping, once per page until the TLB is flushed. Data fills
  grant read+write without execute, fetch fills read+execute: that keeps unicorn's store fast path.
* Instructions unicorn gets wrong or ignores in supervisor state (DIAG, SIGP, SERVC, STSI, STCK, STFLE,
  SSKE, LPSWE, SPX, ...) are *exits*: every fetch fill scans its page for their opcodes and adds each hit
  as an exit address, so emulation stops before such an instruction and Python emulates it.
* Exits stay translated across runs (``engine``): unicorn would drop and re-translate every exit's
  halting block after every run; the CPU never starts a run at an exit, and drops blocks itself when an
  exit goes away.
* UVC, SIE and real exceptions arrive through ``UC_HOOK_INTR``; the program-interruption code is read from
  the context blob at offsets calibrated (and checked) at import time.
* Interrupts are delivered architecturally (old/new PSW swap in the lowcore at the prefix) by the CPU's
  base class ``interrupts.InterruptDelivery``, which stores through the access path of its own base class
  ``mmu.StorageAccess`` (prefixing, DAT, the guest mapping, the access rules of ``access``). The
  architecture's constants and pure helpers are in ``arch`` (and still importable from here).

Instructions that belong to the owner of the CPU (the LPAR machine, or the hypervisor for a SIE guest) are
returned as a ``CpuExit`` of kind ``"insn"``: DIAG, SERVC, SIGP, STSI, UVC, SIE and the channel-subsystem
instructions. The owner answers with ``Insn.finish(cc)`` or ``Cpu.program_interrupt``.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from unicorn import UcError
from unicorn.unicorn_const import (
    UC_ERR_EXCEPTION,
)

from emulator.errors import ProgramException
from emulator.hw import exit_checks, low_stores
from emulator.hw.arch import (  # noqa: F401
    ASC_ACCESS_REG,
    ASC_HOME,
    ASC_PRIMARY,
    ASC_SECONDARY,
    CHECK_STOP,
    CR0_CKC_SC,
    CR0_CPU_TIMER_SC,
    CR0_EDAT,
    CR0_EMERGENCY_SC,
    CR0_EXTERNAL_CALL_SC,
    CR0_FPO,
    CR0_IEP,
    CR0_LAP,
    CR0_SERVICE_SC,
    CR0_SPO,
    CR14_CHANNEL_REPORT_SC,
    ILC_FOR,
    LC_DXC,
    LC_EXT_CODE,
    LC_EXT_CPU_ADDR,
    LC_EXT_NEW,
    LC_EXT_OLD,
    LC_EXT_PARAM,
    LC_IO_NEW,
    LC_IO_OLD,
    LC_IO_SID,
    LC_MCESAD,
    LC_MCIC,
    LC_MCK_NEW,
    LC_MCK_OLD,
    LC_PGM_CODE,
    LC_PGM_ILC,
    LC_PGM_NEW,
    LC_PGM_OLD,
    LC_RESTART_NEW,
    LC_RESTART_OLD,
    LC_STFL,
    LC_SVC_CODE,
    LC_SVC_ILC,
    LC_SVC_NEW,
    LC_SVC_OLD,
    LC_TEID,
    MCIC_CP,
    MCIC_VALID,
    MCIC_VR,
    NULLIFYING,
    OPERATING,
    PGM_EXECUTE,
    PGM_OPERATION,
    PGM_PRIVILEGED,
    PGM_SPECIFICATION,
    PSW_MASK_64,
    PSW_MASK_ASC,
    PSW_MASK_BA,
    PSW_MASK_BIT12,
    PSW_MASK_CC,
    PSW_MASK_DAT,
    PSW_MASK_EA,
    PSW_MASK_EXT,
    PSW_MASK_FPO,
    PSW_MASK_IO,
    PSW_MASK_KEY,
    PSW_MASK_MCHECK,
    PSW_MASK_PER,
    PSW_MASK_PSTATE,
    PSW_MASK_RESERVED,
    PSW_MASK_WAIT,
    STOPPED,
    prefixed,
    psw_invalid,
    wrap_address,
)

# the architecture's names, defined in ``arch`` and still importable from here
from emulator.hw.attention import Attention, PendingInterruptions, PendingSignals
from emulator.hw.cpu_engine import EngineBinding
from emulator.hw.engine import WALK_STOP, ExitList
from emulator.hw.execute import EXECUTE_KEYS
from emulator.hw.exits import CpuExit, Insn, WatchHit
from emulator.hw.interrupts import IoSource
from emulator.hw.memory import PhysicalMemory
from emulator.hw.mmu import GuestIntercept, GuestMapping, SubPageAccess
from emulator.hw.native_ssm import SSM_RESERVED, NativeSsm
from emulator.hw.page_scan import PageScan
from emulator.hw.run_control import RunControl
from emulator.hw.single_step import SingleSteps
from emulator.hw.tlb import TlbFill
from emulator.hw.tod import TodClock
from emulator.hw.traps import OWNER_INSNS, RL_ALIGNMENT, _is_trapped, _opcode_key  # noqa: F401 - importable from here
from emulator.hw.traps import late_emulator as _late_emulator
from emulator.hw.unicorn_abi import (  # noqa: F401 - _LAYOUT: importable from here
    _LAYOUT,
    _PC_C,
    _TLB_FILL_CB,
    _UNTIL_C,
    _ZERO_U64_C,
    _tlb_flush_page,
    _uc_direct,
    _uc_emu_start,
    _uc_reg_read,
)
from emulator.hw.watchdog import _WATCHDOG, OwnTimer

__all__ = [
    "Cpu",
    "CpuExit",
    "Insn",
    "PSW_MASK_DAT",
    "PSW_MASK_IO",
    "PSW_MASK_EXT",
    "PSW_MASK_KEY",
    "PSW_MASK_MCHECK",
    "PSW_MASK_WAIT",
    "RL_ALIGNMENT",
    "PSW_MASK_PSTATE",
    "PSW_MASK_ASC",
    "PSW_MASK_64",
    "ILC_FOR",
    "NULLIFYING",
    "GuestMapping",
    "WatchHit",
    "prefixed",
    "wrap_address",
]

_CR0_TIMERS: Final = CR0_CKC_SC | CR0_CPU_TIMER_SC
#: the PSW bits the run loop's lane compares with the CPU's scan mode (``_fpo``): a wait PSW never matches
_WAIT_FPO: Final = PSW_MASK_WAIT | PSW_MASK_FPO
#: Runs in a row that stop where they started after the same refused lookup before the CPU check-stops
#: with "no progress" (a few ms; far more than any known case of unicorn's own lookups needs)
_STUCK_LIMIT: Final = 10000
#: Known exits beyond which the CPU starts them afresh (``_forget_exits``): ~8,700 code pages' worth
_EXITS_LIMIT: Final = 1 << 18


class Cpu(RunControl, SingleSteps, NativeSsm, TlbFill, Attention, OwnTimer, EngineBinding):
    """One CPU of the machine: a unicorn instance plus the architecture unicorn leaves out.

    Args:
        memory: the machine's absolute storage (shared by all CPUs).
        address: the CPU address (SIGP, STAP).
        clock: the machine's TOD clock (shared by all CPUs).
        facilities: the facility list STFL/STFLE store (bytes, bit 0 = MSB of byte 0).
        cpuid: the value STIDP stores.
    """

    def __init__(
        self,
        memory: PhysicalMemory,
        address: int,
        clock: TodClock,
        facilities: bytes,
        cpuid: int,
    ) -> None:
        self.mem = memory
        self.address = address
        self.clock = clock
        self.facilities = facilities
        self.cpuid = cpuid
        self._init_engine(memory)
        #: successful translations of the instruction emulation (``mmu.translate``), valid until the next TLB
        #: flush: (virtual page | the access's kind in the low bits: 0 for a load) -> host frame address
        self._xc: dict[int, int] = {}
        #: successful DAT walks by address space, valid until a flush other than a change of address space
        #: (the hardware's TLB is tagged by address space: Linux switches CR1 at every system call):
        #: (ASCE, virtual page, store, IEP fetch, EDAT-1, ASID) -> (real page, absolute, EDAT-dependent)
        self._dc: dict[tuple[int, int, bool, bool, bool, int], tuple[int, bool, bool]] = {}
        #: frames some TLB entry or cached translation of this CPU maps (owner changes elsewhere need no
        #: flush)
        self._tlb_frames: set[int] = set()
        #: a debugger's copy of what the TLB fills granted since the last flush, or None (nothing kept):
        #: (address space: ASC, or -1 with DAT off; virtual page) -> (host frame, UC_PROT rights)
        self.tlb_record: dict[tuple[int, int], tuple[int, int]] | None = None
        #: a translation since the last TLB flush depends on CR0's enhanced-DAT control (``load_crs``)
        self._edat_dependent = False
        #: trapped instructions by address (bytes, opcode key, name, trapped?, the decoded ``Insn`` of one
        #: to emulate or hand over), valid as long as the TLB (and the code) is
        self._icache: dict[int, tuple[bytes, int, str, bool, Insn | None]] = {}
        self._stale()
        self._state = STOPPED
        self.prefix = 0
        self.ckc = 0xFFFFFFFFFFFFFFFF
        #: the CPU timer's value at ``_cpu_timer_set_at`` (while operating) or its held value (otherwise)
        self._cpu_timer = 0x7FFFFFFFFFFFFFFF
        self._cpu_timer_set_at = clock.now()
        self.tod_programmable = 0
        self._init_attention()
        #: "service" -> param; "external_call" -> cpu address (every change raises the attention flag)
        self.ext_pending: dict[str, int] = PendingInterruptions(self)
        #: the machine's pending I/O interruptions (its channel subsystem), None: no I/O (``IoSource``)
        self.io_source: IoSource | None = None
        self.emergency_from: set[int] = PendingSignals(self)
        self.breakpoints: set[int] = set()
        self.insn_count = 0
        self._guest: GuestMapping | None = None
        self._uc_psa = -1
        self.guest_memory_size = 0
        self.tlb_group: list[Cpu] = [self]
        self.check_stop_reason = ""
        # trap bookkeeping
        self._exits: set[int] = set()  # every known trap address (the Python side's decisions)
        #: the exits registered in unicorn: breakpoints, and the exits of pages fetch-filled (unicorn looks
        #: at exits when it translates, and translating a page needs its fetch fill first; after every run
        #: it also walks all of them unless that walk is cut: then they stay over TLB flushes)
        self._uc_exits: set[int] = set()
        #: the same exits, as unicorn holds them (its walk of them after each run cut short: ``exit_walk``)
        self._exit_list = ExitList(self.uc, walk_stop=WALK_STOP and self._switch is not None)
        self._walk_cut = self._exit_list.walk_cut
        if self._walk_cut:
            self._ns_exit = 0.0  # (the walk after a run sees two nodes whatever the count)
        #: frame -> trapped offsets, one cache per scan (fixed-point-overflow mask off, on)
        self._scan_caches: tuple[dict[int, PageScan], dict[int, PageScan]] = ({}, {})
        self._scan_cache = self._scan_caches[0]
        self._fpo = 0  # the PSW's fixed-point-overflow mask bit as the scan knows it (0 or PSW_MASK_FPO)
        self._page_exits: dict[tuple[int, int], frozenset[int]] = {}  # (virtual page, frame) -> its exits
        #: frame -> the virtual pages with an entry in ``_page_exits`` (forgetting a frame's is then no scan)
        self._frame_vpages: dict[int, set[int]] = {}
        #: frame -> offsets of its EXECUTE RELATIVE LONGs whose targets lie on another page
        self._far_exrl: dict[int, frozenset[int]] = {}
        #: EXRL address -> the frame of its target, for EXRLs on another page than their target decided native
        self._far_native: dict[int, int] = {}
        #: target frame -> (virtual page, frame) of the EXRLs decided native from it
        self._exrl_deps: dict[int, set[tuple[int, int]]] = {}
        #: virtual pages whose translated blocks must go before the next run (an EXRL no longer native)
        self._stale_code: set[int] = set()
        self._code_pages: dict[int, set[int]] = {}  # frame -> virtual page addresses fetched from it
        self._smc_frames: set[int] = set()
        self._smc_digest: dict[int, int] = {}
        self._fault: ProgramException | GuestIntercept | WatchHit | None = None
        self._fault_where: tuple[int, bool] = (0, False)
        self._refused_code: set[int] = set()
        self._own_lookup = False  # a fill comes from the CPU's own ``_remove_cache``
        self._intr_info: tuple[int, int, int] | None = None
        #: a fill or interruption hook ran since the last full look at a run's end (``_run``'s lane)
        self._hooked = False
        self._halt = False  # set by request_halt from any thread (a plain attribute store is atomic)
        #: blocks may have been translated by an uncounted run: they do not count (see ``_counting``)
        self._uncounted_blocks = False
        self._fills = 0
        self._tlb_size = 256
        self._want_flush = False
        self._armed = 0.0
        self._probe: tuple[int, bool] | None = None
        #: a fill of this run asked unicorn to stop (``TlbFill._fill``); ``_fill_retry``: a data fill was
        #: refused for it, so the instruction starts again after the stop (``TlbFill._fill_hook``)
        self._stop_asked = False
        self._fill_retry = False
        #: the address a watched step runs from: its fills register no unicorn exit there (-1: none)
        self._step_at = -1
        #: the page before a block whose first instruction faults while it is translated (``_phantom_fill``)
        self._phantom: int | None = None
        #: runs in a row that stopped where they started after the same refused lookup (``run``)
        self._stuck = 0
        self._stuck_at: tuple[int, int] = (0, 0)
        self._pgm_last: tuple[int, int] | None = None
        self._pgm_repeat = 0
        self._ctx: Any = None  # a reused unicorn context for reading hidden CPU state (``_blob``)
        self._ctx_view: memoryview | None = None
        self._ctx_arg: Any = None
        self.tlb_fills = 0
        #: flushes made only to let unicorn's TLB shrink (see ``_tlb_policy_after_trap``)
        self.tlb_shrinks = 0
        self._tlb_traps = 0  # traps since the last flush
        self._flushed_at = time.monotonic()
        self.traps = 0
        #: Debugger hooks (empty / None: no cost). ``watch_frames`` maps a host frame to True (stop on any
        #: data access) or False (stop on stores): its data fills are refused, so the access stops the CPU
        #: before it happens with ``CpuExit("watch")``. Flush the TLB after changing it.
        self.watch_frames: dict[int, bool] = {}
        #: Called as ``pgm_observer(cpu, code, teid)`` before each program interruption is delivered.
        self.pgm_observer: Callable[[Cpu, int, int | None], None] | None = None
        #: SIE of a level-2 host (``emulator.machine.lpar_sie``): called as ``pgm_intercept(cpu, code, ilc,
        #: teid, pc)`` before a program interruption is delivered; True: it ends SIE instead (not delivered).
        self.pgm_intercept: Callable[[Cpu, int, int, int | None, int], bool] | None = None
        #: The owner's instructions handled without leaving ``run`` (a trap round trip through the owner's
        #: loop costs more than the instruction): called as ``owner_insn(cpu, insn)`` for a supervisor-state
        #: owner instruction outside SIE; ``None`` hands it over as usual (``CpuExit("insn")``), ``True``:
        #: done, the run goes on, ``False``: done, but the owner's loop must look (``CpuExit("handled")``).
        self.owner_insn: Callable[[Cpu, Insn], bool | None] | None = None
        # one-frame writes elsewhere: no call
        memory.add_invalidate_listener(self._invalidate, self._code_pages)
        memory.add_owner_batch_listener(self._owner_changed, self._tlb_frames)  # else: no call
        #: held for the whole of ``run`` (unicorn, the TLB fills, the emulation of trapped instructions and
        #: interruptions: every storage access of the CPU's thread); ``hold`` (a UV command's shoot-down,
        #: ``PhysicalMemory.quiesced``) takes it from another thread, ``run`` lets it go at the top of its
        #: loop (an instruction boundary) while ``_holds`` is not 0 and waits there until the hold ends
        self._run_lock = threading.RLock()
        self._run_cond = threading.Condition(self._run_lock)
        self._holds = 0
        self._waiting = False  # the run waits at its top for holds to end
        #: a run that waited for a hold is owed one entry into unicorn before the next hold takes the CPU:
        #: a host issuing page commands back to back cannot keep its guest from running
        self._owed = False
        self._init_native_ssm()
        memory.add_cpu(self)
        self.write_mask(PSW_MASK_64)
        self.reset_initial()

    def close(self) -> None:
        """Detach from memory (the CPU is going away)."""
        self._disarm()
        self._exit_list.close()
        self.mem.remove_invalidate_listener(self._invalidate)
        self.mem.remove_owner_batch_listener(self._owner_changed)
        self.mem.remove_cpu(self)

    # -- running ---------------------------------------------------------------------------------------------

    def run(self, count: int = 0, timeout_us: int = 0, resume: bool = False) -> CpuExit:
        """Run until something needs the owner; ``count`` limits instructions, ``timeout_us`` time.

        Trapped instructions that belong to the CPU itself are emulated here without returning.
        ``resume`` executes the instruction at a breakpoint the CPU is stopped at instead of reporting it.
        The run lock is held throughout; a ``hold`` of another thread gets in at the top of the loop.
        """
        with self._run_lock:  # a shoot-down in progress on another thread: wait until it is done
            ex = self._run(count, timeout_us, resume)
            self._owed = False  # (a run that ends owes nothing: the next hold takes the CPU at once)
            return ex

    def _run(self, count: int, timeout_us: int, resume: bool) -> CpuExit:
        """``run``, with the run lock held."""
        emulate = _emulate or _load_emulate()
        q, qm, qc = self._q, self._qm, self._qc  # the engine's registers in place (None: engine calls)
        pc_arg, limit_arg = ctypes.c_uint64(), ctypes.c_size_t()  # emu_start's, reused (limit 0: none)
        counted = count > 0
        budget = count
        deadline = 0.0
        timer_at = 0.0  # this CPU's own timer deadline set during the run (monotonic seconds), 0: none
        if timeout_us:
            deadline = time.monotonic() + timeout_us / 1e6
            if abs(deadline - self._armed) > 1e-4:
                _WATCHDOG.arm(self, deadline)
                self._armed = deadline
        elif self._armed:
            _WATCHDOG.disarm(self)
            self._armed = 0.0
        if not counted:
            # the caller's deadline counts only the timers enabled now (its PSW may have external
            # interruptions off): the run arms for those CR0 opens, so one the program enables during the run
            # (STOSM, LPSWE, LCTLG) comes when due, not at whatever ends the run next (a Linux boot hung so)
            self.timers_changed = True
        # the lane: after a trap emulated in a free run, straight back into unicorn while the CPU's attention
        # flag is clear (``attention``); else the loop's top, in full
        lane = False
        lane_ok = q is not None and self._qx >= 0 and not counted
        qx = self._qx
        while True:
            if (
                lane
                and not self._attn
                # the PSW neither waits nor changed its fixed-point-overflow mask (as _fpo knows it)
                and q[qm] & _WAIT_FPO == self._fpo
                and q[qm + 1] not in self._exits  # (the next trap, or a breakpoint)
                and (
                    (src := self.io_source) is None
                    or not (src.pending and q[qm] & PSW_MASK_IO or src.crw_mcheck and q[qm] & PSW_MASK_MCHECK)
                )
            ):
                lane = False
                pc = q[qm + 1]
                start = pc
                self._mask_c = self._pc_c = None  # _stale(), inline
                self._stop_asked = False
                pc_arg.value = pc
                mask = q[qm] & ~PSW_MASK_CC
            else:
                lane = False
                if self._holds:
                    self._waiting = True
                    self._run_cond.wait_for(self._no_holds)  # lets the lock go (every level) meanwhile
                    self._waiting = False
                state = self._state
                if state != OPERATING:
                    if state == CHECK_STOP:
                        return CpuExit("check_stop", reason=self.check_stop_reason)
                    return CpuExit("stopped")
                # the PSW (its condition code decides nothing here), inline: the caches, or the engine's state
                mask = self._mask_c
                if q is not None:
                    if mask is None:
                        mask = q[qm] & ~PSW_MASK_CC
                    pc = q[qm + 1]
                else:
                    mask = self._mask_bits()
                    pc = self.pc
                if mask & PSW_MASK_FPO != self._fpo:  # set natively (an SPM as the target of EXECUTE)
                    self._fpo_changed(mask & PSW_MASK_FPO)
                if mask & PSW_MASK_MCHECK and self.io_source is not None and self.io_source.crw_mcheck:
                    if self.deliver_crw_mcheck():
                        continue
                if (
                    mask & PSW_MASK_EXT
                    and (
                        self.ext_pending
                        or self.emergency_from
                        or (q[qc] if q is not None else self.cr(0)) & _CR0_TIMERS  # CR0, inline
                    )
                    or self._restart_pending
                ) and self.deliver_pending():  # (only an enabled external interruption or a restart, here)
                    if lane_ok and self._uncounted_blocks and self._free_checks and not deadline:
                        self._attention(q[qm] & ~PSW_MASK_CC)  # the handler's first run: by the lane
                        lane = True
                    continue
                if self._ext_request and mask & PSW_MASK_EXT and self.cr(0) & self._ext_request:
                    return CpuExit("ext_request")
                if self._io_request and mask & PSW_MASK_IO and self.cr(6) & self._io_request:
                    return CpuExit("io_request")
                if mask & PSW_MASK_IO and self.io_source is not None and self.io_source.pending:
                    if self.deliver_io():
                        continue
                if mask & PSW_MASK_WAIT:
                    if not self.interrupt_possible():
                        return CpuExit("disabled_wait", code=pc)
                    return CpuExit("wait")
                if self._halt:
                    self._halt = False
                    return CpuExit("halt")
                if counted and budget <= 0:
                    return CpuExit("limit")
                at_bp = pc in self.breakpoints
                if at_bp and not resume:
                    return CpuExit("breakpoint", code=pc)
                if pc in self._exits:
                    # an exit at the current PC: emulate it without entering unicorn
                    resume = False
                    result = self._at_exit(pc, emulate, None, at_bp)
                    if counted:
                        budget -= 1
                        self.insn_count += 1
                    if result is not None:
                        return result
                    continue
                self._fault = None
                self._intr_info = None
                if deadline and time.monotonic() >= deadline:
                    self._disarm()
                    return CpuExit("limit")
                if self._timers_changed and not counted:
                    timer_at = self._arm_own_timer(deadline)
                if self._ssm_native and not self._quiet():
                    self._ssm_trap_again()
                self._mask_c = self._pc_c = None  # _stale(), inline: hooks read fresh values during the run
                if q is None:
                    self._cr_c = [None] * 16
                start = pc
                limit = budget if counted else 0
                if limit == 1 and self._is_execute(pc):
                    limit = 2  # unicorn counts an EXECUTE and its target apart: one step is both
                if limit:
                    if self._uncounted_blocks:
                        self._counting()
                else:
                    self._uncounted_blocks = True
                    if not self._free_checks:  # (unicorn drops every block the counted runs translated)
                        self._free_checks = True
                        exit_checks.set_free(self._h.value, True)
                # uc.emu_start, called the way the register calls are (ready ctypes arguments)
                uc = self.uc
                uc._hook_exception = None  # noqa: SLF001 - the binding's slot for exceptions inside hooks
                pc_arg.value = pc
                if counted:
                    limit_arg.value = limit
                self._stop_asked = False
                if lane_ok:
                    self._attention(mask)
            self._run_counted = bool(limit)
            status = _uc_emu_start(self._h, pc_arg, _UNTIL_C, _ZERO_U64_C, limit_arg)
            self._run_counted = False
            self._owed = False
            if (
                lane_ok
                and not status
                and not self._hooked  # no fill or interruption hook ran: nothing of theirs to look at
                and not q[qx]  # no EXECUTE target pending
                and not self._smc_frames
                and not (self._ssm_native and (q[qm] ^ mask) & (PSW_MASK_DAT | SSM_RESERVED))
            ):
                # the run's end when only an exit stopped it: what follows below, reduced to what can apply
                self._mask_c = self._pc_c = None  # _stale(), inline
                pc = q[qm + 1]
                if pc in self._exits and not self._halt and pc not in self.breakpoints:
                    self._tlb_traps += 1
                    if self._tlb_traps & 31 == 0:
                        self._tlb_policy_after_trap()
                    hit = self._icache.get(pc)
                    if hit is not None and (insn := hit[4]) is not None:
                        self.traps += 1
                        fn = insn.handler
                        if fn is not None and not (insn.privileged and q[qm] & PSW_MASK_PSTATE):
                            try:  # _dispatch's common case, inline: a CPU-local handler
                                result = fn(self, insn)
                            except ProgramException as e:
                                ilc = e.ilc if e.ilc is not None else insn.ilen
                                self.program_interrupt(e.code, ilc, e.teid, pc=insn.pc)
                                result = None
                            except GuestIntercept as e:
                                return CpuExit("intercept", code=e.code, reason=e.reason, data=dict(e.data))
                        else:
                            result = self._dispatch(insn, emulate)
                        if result is not None:
                            return result
                        lane = True
                    continue
            self._hooked = False  # (the hooks' traces are all looked at below)
            err = UcError(status) if status else None
            if self._fill_retry:  # a data fill refused for a stop it asked for: the instruction restarts
                self._fill_retry = False
                if err is not None and err.errno == UC_ERR_EXCEPTION and self._fault is None:
                    err = None
            if uc._hook_exception is not None:  # noqa: SLF001 - a bug in a hook: show it, not the refusal
                raise uc._hook_exception from None  # noqa: SLF001 - it caused
            self._mask_c = self._pc_c = None  # _stale(), inline
            if q is None:
                self._cr_c = [None] * 16
            # a stop between an EXECUTE and its target: the CPU is before the EXECUTE, which runs again
            undone = self._drop_pending_execute()
            if counted:
                executed = self._executed(budget)
                if self._emu_count.value != limit and err is None and self._intr_info is None:
                    # cut by a stop from another thread (``stop_soon``): the count hook stopped before the
                    # instruction it counted (unless the run ended at an exit, where nothing is counted)
                    if self.pc not in self._uc_exits:
                        executed = max(0, min(self._emu_counter.value - 1, budget))
                executed = max(0, executed - undone)
                self.insn_count += executed
                budget -= executed
            if self._smc_frames:
                self._rescan_smc()
            if self._ssm_native and (self._mask_bits() ^ mask) & (PSW_MASK_DAT | SSM_RESERVED):
                self._after_native_ssm(mask)
            if self._want_flush:
                self._want_flush = False
                self._engine_flush()
            if self._stale_code:
                for vpage in self._stale_code:
                    self._remove_cache(vpage, vpage + 0x1000)
                self._stale_code.clear()
            if len(self._exits) > _EXITS_LIMIT:
                self._forget_exits()
            if self._refused_code:
                self._prune_exits()
            if self._fault is not None and not self._real_fault():
                # a lookup unicorn made after the run (its exit invalidation), not the guest's access;
                # unicorn then also reports UC_ERR_EXCEPTION for a run that ended normally
                f_why = self._fault
                self._fault = None
                if err is not None and err.errno == UC_ERR_EXCEPTION:
                    err = None
                if self.pc == start:
                    if self._unstick(start, self._fault_where[0]):
                        continue
                    # a refusal seen again and again with the PC where it was: no progress, say so
                    stuck = (start, self._fault_where[0])
                    self._stuck = self._stuck + 1 if stuck == self._stuck_at else 1
                    self._stuck_at = stuck
                    if self._stuck >= _STUCK_LIMIT:
                        self._stuck = 0
                        self.state = CHECK_STOP
                        self.check_stop_reason = (
                            f"no progress at {start:#x}: unicorn's fetch of the page {stuck[1]:#x} is "
                            f"refused again and again ({f_why})"
                        )
                        continue
            if self._fault is not None:
                f = self._fault
                self._fault = None
                if isinstance(f, GuestIntercept):
                    if counted and executed and not self._fault_where[1]:
                        # unicorn counted the instruction whose operand access ended SIE; it is nullified
                        # and runs again after the host's work (a block's fetch fault is met before its count)
                        self.insn_count -= 1
                    return CpuExit("intercept", code=f.code, reason=f.reason, data=dict(f.data))
                if isinstance(f, SubPageAccess):
                    done = low_stores.refused(self, f)
                    if done < 0:
                        done = self._watched_step(f)
                    if counted:
                        budget -= done
                        self.insn_count += done
                    continue
                if isinstance(f, WatchHit):
                    return CpuExit("watch", code=f.vaddr, data={"host": f.host, "write": int(f.write)})
                fpc = self.pc
                self._deliver_fault(f, fpc, self._fault_where[1])
                continue
            if err is not None:
                self.state = CHECK_STOP
                self.check_stop_reason = f"unicorn stopped with {err} at {self.pc:#x}"
                continue
            if self._intr_info is not None:
                intno, code, ilen = self._intr_info
                self._intr_info = None
                ipc = self.pc
                # unicorn's own int_pgm_ilen is sometimes stale (seen on AFP data exceptions: the value of
                # an earlier exception): the ILC is the length of the instruction at the PC (for an
                # EXECUTE target, the PC is at the EX/EXRL, whose length the architecture wants)
                first = self._fetch_insn(ipc)
                if first is not None:
                    ilen = ILC_FOR(first[0])
                if intno == 2:
                    self.deliver_svc(code, ilen, ipc)
                    continue
                if code == 0x07 and self._guest is not None:
                    self._move_dxc()
                if code in (PGM_OPERATION, PGM_SPECIFICATION) and first is not None:
                    late = _late_emulator(first)  # vector_ext's or dfp's instructions
                    if late is not None:
                        self._dispatch(Insn(self, ipc, first, "late", _opcode_key(first)), late)
                        continue
                    if _opcode_key(first) in EXECUTE_KEYS and self.executes_vector_ext(ipc, first):
                        r = self._execute(ipc, first, emulate)  # (an EXRL the page scan left native)
                        if r is not None:
                            return r
                        continue
                if code == PGM_OPERATION:
                    raw = self._fetch_insn(ipc)
                    if raw is not None and raw[0] == 0xAF:  # MONITOR CALL: unicorn has none (insns._mc)
                        self._dispatch(Insn(self, ipc, raw, "MC", 0xAF), emulate)
                        continue
                    if raw is not None and _opcode_key(raw) in OWNER_INSNS:
                        r = self._at_exit(ipc, emulate, raw)
                        if r is not None:
                            return r
                        continue
                self.program_interrupt(code, ilen or 2, pc=ipc)
                continue
            pc = q[qm + 1] if q is not None else self.pc
            if self._halt:
                self._halt = False
                return CpuExit("halt")
            if pc in self._exits:
                self._tlb_traps += 1
                if self._tlb_traps & 31 == 0:
                    self._tlb_policy_after_trap()
                if not counted and pc not in self.breakpoints:
                    # the trap the run stopped for, emulated at once: what the top of the loop checks first
                    # (pending interruptions, holds, states) is asynchronous to this instruction boundary and
                    # is looked at right after it, as it would be had it come an instruction later
                    hit = self._icache.get(pc)
                    if hit is not None and hit[4] is not None:
                        self.traps += 1
                        result = self._dispatch(hit[4], emulate)
                        if result is not None:
                            return result
                        lane = lane_ok
                continue  # handled at the top of the loop (breakpoints are exits too)
            if counted and budget <= 0:
                return CpuExit("limit")
            if deadline and time.monotonic() >= deadline:
                self._disarm()
                return CpuExit("limit")
            if timer_at and time.monotonic() >= timer_at:  # the top of the loop delivers it
                timer_at = 0.0
                if deadline:
                    _WATCHDOG.arm(self, deadline)
                    self._armed = deadline
                else:
                    self._disarm()
            # an emu_stop from a fill (self-modifying code): just go on. A run that stopped where it
            # started, at no exit, may have met a halting block left from an exit since dropped: drop it.
            if pc == start:
                self._remove_cache(pc, pc + 1)


_emulate: Callable[[Cpu, Insn], CpuExit | None] | None = None


def _load_emulate() -> Callable[[Cpu, Insn], CpuExit | None]:
    """The instruction emulator (``insns`` imports this module, so it is bound on first use)."""
    global _emulate  # noqa: PLW0603 - a one-time binding
    from emulator.hw.insns import emulate  # noqa: PLC0415

    _emulate = emulate
    return emulate

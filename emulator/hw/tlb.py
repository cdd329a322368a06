"""A CPU's TLB on the engine: the per-page fill, the exits it registers, self-modifying code, flush policy.

``TlbFill`` is a part of ``Cpu`` (a base class, above ``traps.TrapDispatch``): unicorn calls the fill once per
page until a flush; it translates through the access path of ``mmu`` (prefixing, DAT, the guest mapping, the
access rules), and a fetch fill registers the page's exits from the scan in ``traps``.
"""

from __future__ import annotations

import ctypes
import time
import zlib
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final

from unicorn import Uc
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

from emulator.errors import ProgramException
from emulator.hw import dat, page_scan
from emulator.hw.arch import CHECK_STOP, ILC_FOR, PSW_MASK_DAT, PSW_MASK_KEY
from emulator.hw.engine import PHYS_INVALIDATE
from emulator.hw.exits import WatchHit
from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT
from emulator.hw.mmu import GuestIntercept, SubPageAccess
from emulator.hw.page_scan import PageScan
from emulator.hw.traps import TrapDispatch, _execute_may_trap
from emulator.hw.unicorn_abi import _tlb_flush_page, _TlbEntry

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.engine import ExitList, Switch

_TLB_MAX: Final = 1 << 20
_TLB_MIN: Final = 64  # QEMU's smallest dynamic TLB (CPU_TLB_DYN_MIN_BITS)
#: What the trap round trip and a TLB fill cost, in ns, to weigh a flush (``_tlb_policy_after_trap``).
#: A Python TLB fill costs ~3 us. Per trap: unicorn's stock engine translates the trap's halting block
#: again after every run, and each translation scans every TLB entry (~1.2 ns each); it also walks every
#: registered exit after every run (~26 ns each, ~6 ns with the engine switched, ``engine``, which also
#: leaves no translation to scan the TLB). A watched code frame costs its CRC at every return to Python.
_NS_FILL: Final = 3000
_NS_ENTRY: Final = {False: 1.2, True: 0.0}  # by "engine switched"
_NS_EXIT: Final = {False: 26.0, True: 6.0}
_NS_SMC_FRAME: Final = 1900.0
#: QEMU's dynamic TLB shrinks at a flush once a 100 ms window of low use has passed.
_RESIZE_WINDOW: Final = 0.12
#: (virtual page, frame) pairs whose exit sets are kept ready for their next fetch fill
_PAGE_EXITS_KEPT: Final = 16384
#: Below this many registered exits the walk is not worth a flush.
_EXITS_KEPT: Final = 64
#: Registered exits kept over a TLB flush when the engine's walk of them is cut (~30 a code page: a Linux
#: kernel and its user space register ~40,000)
_EXITS_BOUND: Final = 1 << 17


class TlbFill(TrapDispatch):
    """The TLB fill and the exits it registers (a base class of ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu
        _switch: Switch | None
        _ns_entry: float
        _ns_exit: float
        _walk_cut: bool
        breakpoints: set[int]
        watch_frames: dict[int, bool]
        pgm_observer: Callable[[Cpu, int, int | None], None] | None
        tlb_group: list[Cpu]
        tlb_record: dict[tuple[int, int], tuple[int, int]] | None
        tlb_fills: int
        tlb_shrinks: int
        _exits: set[int]
        _uc_exits: set[int]
        _page_exits: dict[tuple[int, int], frozenset[int]]
        _frame_vpages: dict[int, set[int]]
        _far_exrl: dict[int, frozenset[int]]
        _far_native: dict[int, int]
        _exrl_deps: dict[int, set[tuple[int, int]]]
        _stale_code: set[int]
        _code_pages: dict[int, set[int]]
        _smc_frames: set[int]
        _smc_digest: dict[int, int]
        _fault: ProgramException | GuestIntercept | WatchHit | None
        _fault_where: tuple[int, bool]
        _refused_code: set[int]
        _own_lookup: bool
        _exit_list: ExitList
        _fills: int
        _tlb_size: int
        _tlb_traps: int
        _want_flush: bool
        _flushed_at: float
        _probe: tuple[int, bool] | None
        _stop_asked: bool
        _fill_retry: bool
        _cpu_state: int | None
        _step_at: int
        _phantom: int | None
        _h: ctypes.c_void_p
        _ssm_native: dict[int, int]
    @property
    def registered_exits(self) -> int:
        """How many exits unicorn holds now (it walks all of them after every run)."""
        return len(self._uc_exits)

    # -- TLB and translated code -------------------------------------------------------------------------

    def flush_tlb(self) -> None:
        """Forget every translation decision (after CR, prefix, key, PSW or ownership changes)."""
        self.switch_space()
        self._dc.clear()
        self._edat_dependent = False

    def switch_space(self) -> None:
        """An address-space designation (CR1, CR7 or CR13) changed: unicorn's TLB, which is not tagged by
        address space, goes, and with it every decision of the current spaces; the DAT walks stay, by
        address space (``_dc``), as the hardware's TLB keeps the entries of a space while another is loaded
        (only a purge drops them: IPTE, IDTE, CSP, PTLB, each a ``flush_tlb``). Linux loads CR1 at every
        system call and interruption from user space and back: each page's fill after it no longer walks
        the tables in Python."""
        self._engine_flush()
        self._xc.clear()
        self._tlb_frames.clear()
        if self.tlb_record is not None:
            self.tlb_record.clear()
        self._icache.clear()

    def _engine_flush(self) -> None:
        """Flush unicorn's TLB (where QEMU's dynamic TLB also resizes) and start counting anew.

        Every page needs a fetch fill again before it is translated or run, and that fill registers the
        page's exits (those not registered yet). The registered exits stay over the flush: an operating
        system flushes at every switch of address space (Linux loads CR1 at each system call and
        interruption from user space, and the TLB goes with it, as in QEMU), and registering each page's
        exits again after each flush was ~12% of a Linux boot. An exit left from another mapping of its
        address is stale: a run that stops there steps the instruction natively and unregisters it
        (``_native_step``). With the engine's walk of the exits cut (``exit_walk``) more exits cost nothing
        per run; above ``_EXITS_BOUND`` they start afresh from the breakpoints.

        The watched code is checked once more *before* the flush: dropping a changed page's blocks looks
        the page up (``_remove_cache``), which makes a fetch entry for it; made after the flush, that entry
        outlived the flush, and the page's next blocks were translated from it without the fill.
        """
        if self._smc_frames:
            # no entry will let the guest store anywhere after the flush: check the watched code once more,
            # then watch only frames that get a writable entry again
            self._rescan_smc()
            self._smc_frames.clear()
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self._fills = 0
        self._tlb_traps = 0
        self._flushed_at = time.monotonic()
        if len(self._uc_exits) > (_EXITS_BOUND if self._walk_cut else len(self.breakpoints)):
            self._drop_exits()

    def _drop_exits(self) -> None:
        """Unregister every exit but the breakpoints (each page's next fetch fill registers its own)."""
        if len(self._uc_exits) > len(self.breakpoints):
            self._uc_exits = set(self.breakpoints)
            self._exit_list.set(self._uc_exits)

    def _flush_page(self, vpage: int) -> None:
        """Drop unicorn's TLB entries for the virtual page ``vpage`` (every address space, QEMU's
        ``tlb_flush_page``), and what the debugger's record holds of it. Python's translation caches stay:
        no decision changed. Without the engine's CPUState (another unicorn build) the whole TLB goes."""
        if self._cpu_state is None:
            self.flush_tlb()
            return
        _tlb_flush_page(self._cpu_state, vpage)
        record = self.tlb_record
        if record is not None:
            for key in [k for k in record if k[1] == vpage]:
                del record[key]

    def _register_exits(self, addrs: set[int] | frozenset[int]) -> None:
        """Make sure unicorn knows these exits (before any block holding them is translated)."""
        new = addrs - self._uc_exits
        if new and self._step_at in new:  # a watched step runs the instruction there (``_watched_step``)
            new = new - {self._step_at}
        if new:
            self._exit_list.add(new, self._uc_exits)
            self._uc_exits |= new

    def _tlb_policy_after_trap(self) -> None:
        """Keep unicorn's TLB small while traps, not fills, dominate.

        In the stock engine every trap makes unicorn translate a block, and every translation scans the
        whole TLB, so a TLB grown for a large working set makes each later trap dearer (raw unicorn: 3.1 us
        per trap at 256 entries, 48.8 us at 64 Ki; with the engine switched, ``engine``, no block is
        translated again and the TLB's size does not matter). After every run unicorn also walks every
        registered exit (~26 ns each, ~6 ns switched; real s390x code gives ~30 scanner hits per page, most
        of them operand bytes), and the CPU checks every watched code frame (~1.9 us each). When the traps
        since the last flush cost more than the fills would (weighted 4:1 against flapping), the TLB is
        flushed once per resize window: QEMU then shrinks it to what the window used, and the exits
        registered fall back to those of the pages fetched again. Python's caches stay: no decision changed.
        """
        if (
            (
                (self._tlb_size > _TLB_MIN and self._ns_entry)
                or len(self._uc_exits) > _EXITS_KEPT
                or self._smc_frames
            )
            and self._tlb_traps
            * (
                self._ns_entry * self._tlb_size
                + self._ns_exit * len(self._uc_exits)
                + _NS_SMC_FRAME * len(self._smc_frames)
            )
            > 4 * _NS_FILL * max(self._fills, 1)
            and time.monotonic() - self._flushed_at > _RESIZE_WINDOW
        ):
            used = self._fills
            self._engine_flush()
            self.tlb_shrinks += 1
            # a guess at what QEMU will settle on (it shrinks only after a whole window of low use)
            self._tlb_size = max(_TLB_MIN, 1 << max(2 * used, 1).bit_length(), self._tlb_size // 2)

    def _invalidate(self, lo: int, hi: int) -> None:
        """Python stored into host storage [lo, hi) (an emulated instruction such as STPT into the lowcore, an
        interruption's PSWs, a device, the Ultravisor): the frames holding scanned code in it are scanned
        again and the translated blocks over the range dropped, by physical address (``_code_changed``).

        Without the engine's physical invalidation every block and the whole TLB go (each page's next fetch
        fill registers its exits again): a Linux kernel's STPT into its lowcore, which holds code, did that
        at every system call and interruption."""
        first, last = lo >> PAGE_SHIFT, (hi - 1) >> PAGE_SHIFT
        code = self._code_pages
        frames = [f for f in (range(first, last + 1) if last - first < 64 else list(code)) if f in code]
        frames = [f for f in frames if first <= f <= last]
        if not frames:
            return
        if PHYS_INVALIDATE is None or (self._guest is not None and self.mem.replacing_code):
            # (a SIE guest's CPU and storage replaced by the firmware, ``PhysicalMemory.invalidate_code``: a
            # guest's pages come and go with its configuration's, and the Ultravisor's stores into them (an
            # Unpack's, a Destroy's clearing) come with such changes: everything goes. Stores, the CPU's
            # own (a secure Linux's STPT into its lowcore at every system call, an interruption's PSWs)
            # and the devices', drop only the blocks over the store, as for a CPU in the LPAR)
            for frame in frames:
                self._forget_scan(frame)
            self.uc.ctl_flush_tb()
            self.flush_tlb()
            return
        for frame in frames:
            base = frame << PAGE_SHIFT
            self._code_changed(frame, max(lo, base), min(hi, base + 0x1000))

    def storage_keys_changed(self, frames: Collection[int]) -> None:
        """Storage keys of these host frames changed: every CPU of the group that holds a translation
        decision about one of them (protection, reference and change recording) flushes its TLB."""
        for c in self.tlb_group:
            held = c._tlb_frames  # noqa: SLF001 - the group's CPUs are this class
            if len(frames) <= len(held):
                hit = any(f in held for f in frames)
            else:
                hit = any(f in frames for f in held)
            if hit:
                c.flush_tlb()

    def flush_group_tlbs(self) -> None:
        """Flush the TLB of every CPU that shares this one's storage (IPTE, IDTE, CSP with purge)."""
        for c in self.tlb_group:
            c.flush_tlb()

    def _owner_changed(self, frames: list[int]) -> None:
        # once per change, or once per owner_batch; only when a decision about one of the frames is held
        if not self._tlb_frames.isdisjoint(frames):  # (a batch: every frame a boot unpacked, in one C loop)
            self.flush_tlb()

    def drop_debugger_hooks(self) -> None:
        """Forget every debugger hook: breakpoints, watched frames, the program-interruption observer, the TLB
        record. The CPU changes hands (the Ultravisor adopts it for a secure CPU): a hook its former owner
        placed must not reach what the new one runs on it."""
        self.set_breakpoints(set())
        self.watch_frames = {}
        self.pgm_observer = None
        self.tlb_record = None
        self.flush_tlb()

    def set_breakpoints(self, addrs: set[int]) -> None:
        """Stop before executing any of these (virtual) addresses; no cost between stops."""
        removed = self.breakpoints - addrs
        added = addrs - self._exits
        self.breakpoints = set(addrs)
        self._exits |= addrs
        self._uc_exits |= addrs
        self._exit_list.set(self._uc_exits)
        if removed or added:
            # exits are baked into translated blocks: a block translated before the exit was added
            # would run through it
            self.uc.ctl_flush_tb()

    # -- the TLB fill (runs inside unicorn, once per page until a flush) ----------------------------------

    def _fill_hook(self, _handle: int, vaddr: int, access: int, entry: int, _ud: int) -> bool:
        """The engine's TLB fill callback: ``entry`` is the address of unicorn's ``uc_tlb_entry``."""
        self._hooked = self._attn = True  # the run's end looks at what the fill may have left (``Cpu._run``)
        try:
            granted = self._fill(self.uc, vaddr, access, _TlbEntry.from_address(entry), None)
            if granted and self._stop_asked and access != 18:
                # unicorn rolled the PSW address back to this access's instruction before the fill, and
                # the stop this fill asked for ended the run with it there once the access had completed:
                # the instruction ran twice (a pointer-chasing load went two links). Refused, the
                # instruction starts again after the stop (``Cpu._run`` drops the error)
                self._fill_retry = True
                self._fills -= 1
                return False
            return granted
        except BaseException as e:  # noqa: BLE001 - handed to emu_start, as the binding's hooks do
            uc = self.uc
            if uc._hook_exception is None:  # noqa: SLF001
                uc._hook_exception = e  # noqa: SLF001
            uc.emu_stop()
            return False

    def _fill(self, uc: Uc, vaddr: int, access: int, entry: object, _ud: object) -> bool:
        self.tlb_fills += 1
        self._fills += 1
        if (
            self._fills > self._tlb_size
            and self._tlb_size < _TLB_MAX
            and self._fills * _NS_FILL > self._tlb_traps * self._tlb_size * self._ns_entry
        ):
            # unicorn's TLB only grows at a flush (QEMU's dynamic TLB doubles when >70% was used):
            # a working set larger than the TLB would otherwise miss into Python forever
            self._tlb_size *= 2
            self._want_flush = True
            self._stop_asked = True
            uc.emu_stop()
        write = access == 17
        fetch = access == 18
        store_ok = False
        try:
            if write or fetch:
                host = self.translate(vaddr, write=write, fetch=fetch, page_fill=True)
            else:
                host, store_ok = self._load_fill(vaddr)
        except SubPageAccess as e:
            if self._probe != (vaddr & ~0xFFF, write):
                return self._refuse(e, vaddr, fetch)
            try:  # the watched step checks the bytes itself: translate without the sub-page rule
                host = self.translate(vaddr, fetch=fetch, mark=False)
            except (ProgramException, GuestIntercept) as e2:
                return self._refuse(e2, vaddr, fetch)
        except (ProgramException, GuestIntercept) as e:
            if fetch and vaddr & ~0xFFF == self._phantom:
                return self._phantom_fill(entry)
            return self._refuse(e, vaddr, fetch)
        frame = host >> PAGE_SHIFT
        watch = self.watch_frames
        if watch and not fetch and frame in watch and (write or watch[frame]):
            return self._refuse(WatchHit(vaddr, host, write), vaddr, False)
        entry.paddr = host & ~0xFFF  # type: ignore[attr-defined]
        if self.tlb_record is not None:
            self._record(vaddr, frame, fetch, write or (store_ok and frame not in watch))
        if fetch:
            entry.perms = UC_PROT_READ | UC_PROT_EXEC  # type: ignore[attr-defined]
            pages = self._code_pages.get(frame)
            if pages is None:
                pages = self._code_pages[frame] = set()
                if frame in self._tlb_frames:
                    # new code in a frame the TLB may already let the guest store into: watch it
                    self._smc_frames.add(frame)
            self._tlb_frames.add(frame)
            pages.add(vaddr & ~0xFFF)
            self._add_exits(vaddr & ~0xFFF, frame)
            return True
        self._tlb_frames.add(frame)
        if write or (store_ok and frame not in self.watch_frames):
            entry.perms = UC_PROT_READ | UC_PROT_WRITE  # type: ignore[attr-defined]
            if frame in self._code_pages:
                # stores can reach a page holding scanned code: rescan it whenever the CPU is back in Python
                self._smc_frames.add(frame)
        else:
            entry.perms = UC_PROT_READ  # type: ignore[attr-defined]
        return True

    def _record(self, vaddr: int, frame: int, fetch: bool, store: bool) -> None:
        """Keep what a fill granted in ``tlb_record`` (a debugger's ``info tlb``): (address space, virtual
        page) -> (host frame, rights as UC_PROT bits); the rights of one page's fills add up."""
        rec = self.tlb_record
        assert rec is not None
        mask = self._mask()
        space = (mask >> 46) & 3 if mask & PSW_MASK_DAT else -1
        key = (space, vaddr & ~0xFFF & 0xFFFFFFFFFFFFFFFF)
        perms = UC_PROT_READ | (UC_PROT_EXEC if fetch else 0) | (UC_PROT_WRITE if store else 0)
        old = rec.get(key)
        if old is not None and old[0] == frame:
            perms |= old[1]
        rec[key] = (frame, perms)

    def _refuse(self, e: Exception, vaddr: int, fetch: bool) -> bool:
        """Refuse a fill; the first refusal of a run is the fault the CPU will deliver.

        unicorn itself also looks up code pages after a run: at the end of every ``emu_start`` it
        invalidates the translated blocks of every exit address, translating each exit's page as an
        instruction fetch. A refusal there is no guest event; ``_real_fault`` tells them apart.
        """
        if self._own_lookup:  # ``_remove_cache``'s lookup: nothing the guest did
            return False
        if self._fault is None:
            self._fault = e  # type: ignore[assignment]
            self._fault_where = (vaddr & ~0xFFF, fetch)
        if fetch:
            self._refused_code.add(vaddr & ~0xFFF)
        # a refused fill makes no TLB entry: it does not count towards the TLB's growth (a program taking
        # an exception page after page, as kvm-unit-tests' edat does 491,520 times, would otherwise grow
        # and flush the TLB every few hundred exceptions and refill its whole working set each time)
        self._fills -= 1
        return False

    def _prune_exits(self) -> None:
        """Drop exits on pages that no longer translate, where unicorn's own engine would look each of them
        up after every run (with the switched engine nothing does); they come back with the page's next
        fetch fill, which always precedes its translation.

        Exits are known by virtual address, and unicorn keeps a TLB per address space: a page refused in
        one space may still be held for fetches in another (Linux's lowcore page is code in the kernel's
        home space and unmapped in a user's primary space), whose blocks would then be translated without
        the exits. So the TLB goes too, in every space, and each page's next fill registers its exits."""
        pc_page = self.pc & ~0xFFF
        gone = {p for p in self._refused_code if p != pc_page}
        self._refused_code.clear()
        if not gone or self._switch is not None:
            return
        keep = {a for a in self._exits if a & ~0xFFF not in gone or a in self.breakpoints}
        if len(keep) != len(self._exits):
            self._exits = keep
            self._engine_flush()

    def _real_fault(self) -> bool:
        """True if the recorded fault belongs to the instruction at the PC (see ``_refuse``): a fetch of its
        own bytes, or of the target of an EXECUTE at the PC."""
        vpage, fetch = self._fault_where
        if not fetch:
            return True
        pc = self.pc
        return vpage in (pc & ~0xFFF, self.wrap(pc + 5) & ~0xFFF) or self._is_execute(pc)

    def _unstick(self, start: int, vpage: int) -> bool:
        """After a run that stopped at ``start`` with nothing run and a refused fetch of ``vpage`` that is
        no fault of the instruction at ``start``: make the next run get on, if this is one of unicorn's two
        cases; True if so.

        * The page before ``start``, ``start`` at a page start: the lookup of a size-0 block's "second
          page" (``_phantom_fill``), granted once.
        * The page after: the block from ``start`` runs on into an instruction that crosses into that
          page, and translating it fails before anything runs. An exit at that instruction ends the block
          before it; run there, its own fetch fault is delivered (``_real_fault``).
        """
        before = (start - 1) & 0xFFFFFFFFFFFFF000  # unicorn does not wrap it to the addressing mode
        if not start & 0xFFF and vpage in (before, self.wrap(before)):
            if self._phantom is not None:  # granted, and still nothing ran
                self._phantom = None
                self.state = CHECK_STOP
                self.check_stop_reason = f"unicorn cannot translate the block at {start:#x}"
                return True
            self._phantom = vpage
            return True
        if vpage != self.wrap((start | 0xFFF) + 1):
            return False
        try:
            host = self.translate(start, fetch=True, mark=False)
        except (ProgramException, GuestIntercept):
            return False
        buf, end = self._buf, (start | 0xFFF) + 1
        at = start
        while at < end:
            n = ILC_FOR(buf[host + at - start])
            if at + n > end:
                break
            at += n
        if at >= end or at == start or at in self._exits:
            return False
        self._exits.add(at)  # a stale exit to the CPU: the instruction there is stepped natively
        self._register_exits(frozenset((at,)))
        self._remove_cache(start, at)
        return True

    def _phantom_fill(self, entry: object) -> bool:
        """Grant unicorn's lookup of the page before a block that faults in its first instruction.

        QEMU 5.0's ``tb_gen_code`` finds a block's second page at ``pc + size - 1``; a block whose first
        instruction raises an exception while it is translated (an invalid opcode, a privileged one in
        problem state) has size 0, so at the start of a page that is the page before, which the guest
        never touches. Refused, unicorn would stop without running anything, again and again (a branch
        to address 0, or to a page after an invalid one). The entry maps host frame 0 read-only: the
        block raises its exception at once, the run ends there, and the TLB is flushed after it.
        """
        self._phantom = None
        entry.paddr = 0  # type: ignore[attr-defined]
        entry.perms = UC_PROT_READ | UC_PROT_EXEC  # type: ignore[attr-defined]
        self._want_flush = True
        return True

    def _load_fill(self, vaddr: int) -> tuple[int, bool]:
        """A load's TLB fill: the page's host address, and whether the entry may let stores through too
        (the page translates for a store and its change bit is already set, so no store goes unrecorded).

        One translation serves both where the page translates for a store (the usual case): every check a
        load makes, a store makes as strictly (DAT and key protection, the owner and the guest mapping,
        whose address does not depend on the access), so the store's translation stands for the load's,
        and the load's reference bit is set here. Otherwise the load is translated on its own, with its
        own exceptions.

        A secure guest's fill in real mode with PSW key 0, outside the low pages and the prefix area (a
        boot's loader copying the kernel), asks its guest mapping directly: translate would do nothing
        else there (no DAT, no prefixing, no key or low-address protection, and the owner check is the
        mapping's own), and this path is taken once per page of such a copy.
        """
        g = self._guest
        try:
            if (
                g is not None
                and g.owner_tag is not None
                and not self._mask_bits() & (PSW_MASK_DAT | PSW_MASK_KEY)
                and vaddr & ~0x1FFF
                and not 0 <= vaddr - self.prefix < 0x2000
            ):
                host = g.to_host(vaddr, True, False)
            else:
                host = self.translate(vaddr, write=True, page_fill=True, mark=False)
        except ProgramException as e:
            if e.code == dat.PGM_ADDRESSING and g is None:
                raise  # a table or the page beyond storage: the load's own walk would end the same way
            return self.translate(vaddr, page_fill=True), False
        except (GuestIntercept, SubPageAccess):
            return self.translate(vaddr, page_fill=True), False
        keys = self.mem.keys
        frame = host >> PAGE_SHIFT
        key = keys[frame]
        keys[frame] = key | KEY_R
        return host, bool(key & KEY_C)

    def _page_bytes(self, frame: int) -> bytes:
        """A frame's bytes as the scan reads them: its 4 KiB and 4 more of the next frame, if any."""
        base = frame << PAGE_SHIFT
        return bytes(self._buf[base : min(base + 0x1004, self.mem.size)])

    def _scan(self, frame: int) -> tuple[int, ...]:
        """The offsets of the frame's exits (``page_scan``), kept until its bytes change."""
        done = self._scan_cache.get(frame)
        if done is None:
            page = self._page_bytes(frame)
            done = self._keep_scan(frame, page_scan.scan(page, bool(self._fpo)), page)
        return done.hits

    def _keep_scan(self, frame: int, done: PageScan, page: bytes) -> PageScan:
        if done.far:
            self._far_exrl[frame] = done.far
        else:
            self._far_exrl.pop(frame, None)
        self._scan_cache[frame] = done
        self._smc_digest[frame] = zlib.crc32(page[:0x1000])
        return done

    def _forget_exits(self) -> None:
        """Start the set of known exits afresh (it only grows, ~30 per code page): drop every translated
        block (they may hold halts at exits about to be forgotten) and the TLB, so that each page's exits
        come back with its next fetch fill."""
        self._exits = set(self.breakpoints)
        self._page_exits.clear()
        self._frame_vpages.clear()
        self._far_native.clear()
        self._exrl_deps.clear()
        self.uc.ctl_flush_tb()
        self.flush_tlb()
        self._drop_exits()

    def _forget_scan(self, frame: int) -> set[tuple[int, int]]:
        """The frame's bytes changed: scan it again at its next use. Returns the (virtual page, frame) pairs
        whose EXECUTE RELATIVE LONGs were decided native from a target in this frame (decide them again)."""
        for cache in self._scan_caches:
            cache.pop(frame, None)
        self._native_ssm_code_changed(frame)
        self._far_exrl.pop(frame, None)
        vpages = self._frame_vpages.pop(frame, None)
        if vpages:
            page_exits = self._page_exits
            for vpage in vpages:
                page_exits.pop((vpage, frame), None)
        return self._exrl_deps.pop(frame, set())

    def _add_exits(self, vpage: int, frame: int) -> None:
        """The exits of a page being fetch-filled (known to Python and registered in unicorn).

        A page with EXECUTE RELATIVE LONGs whose targets lie on other pages is not kept: each of its fetch
        fills decides those again through the targets' current mapping (``_far_target_native``).
        """
        key = (vpage, frame)
        page = self._page_exits.get(key)
        if page is None:
            offsets = self._scan(frame)
            far = self._far_exrl.get(frame)
            if far:
                native = {off for off in far if self._far_target_native(vpage, frame, off)}
                page = frozenset(vpage + off for off in offsets if off not in native)
            else:
                if len(self._page_exits) >= _PAGE_EXITS_KEPT:  # a bound for guests with many address spaces
                    self._page_exits.clear()
                    self._frame_vpages.clear()
                page = self._page_exits[key] = frozenset(vpage + off for off in offsets)
                self._frame_vpages.setdefault(frame, set()).add(vpage)
        if self._ssm_native and page:
            page = self._native_ssm_left_out(page, frame)
        if page:
            self._exits |= page
            self._register_exits(page)

    def _far_target_native(self, vpage: int, frame: int, off: int) -> bool:
        """Whether the EXECUTE RELATIVE LONG at ``vpage + off`` (its target on another page) may run natively:
        its target translates for an instruction fetch now and cannot need Python (``_execute_may_trap``).

        The target's frame is then watched as code: a change of its bytes decides the EXRL again (and drops
        its translated blocks, ``_rescan_smc``). If an EXRL decided native before is no longer (its target
        page was mapped elsewhere), its translated blocks are dropped before anything more runs.
        """
        buf = self._buf
        at = (frame << PAGE_SHIFT) + off
        pc = vpage + off
        target = self.wrap(pc + 2 * int.from_bytes(buf[at + 2 : at + 6], "big", signed=True))
        native = False
        tframe = -1
        try:
            host = self.translate(target, fetch=True, mark=False)
            n = ILC_FOR(buf[host])
            if (target & 0xFFF) + n <= 0x1000:
                text = bytes(buf[host : host + n])
                native = not _execute_may_trap(text, bool(buf[at + 1] >> 4), bool(self._fpo))
                tframe = host >> PAGE_SHIFT
        except (ProgramException, GuestIntercept):
            pass
        if native:
            self._far_native[pc] = tframe
            self._scan(tframe)  # its digest, for the change check
            pages = self._code_pages.get(tframe)
            if pages is None:
                pages = self._code_pages[tframe] = set()
                if tframe in self._tlb_frames:  # the TLB may already let the guest store into it: watch it
                    self._smc_frames.add(tframe)
            pages.add(target & ~0xFFF)
            self._exrl_deps.setdefault(tframe, set()).add((vpage, frame))
        elif self._far_native.pop(pc, None) is not None:
            self._stale_code.add(vpage)
            self.uc.emu_stop()
        return native

    def _rescan_smc(self) -> None:
        """Guest stores hit pages that hold code: rescan those whose bytes changed for trapped instructions.

        The frames stay watched (their TLB entries keep write access), so this runs at every return to
        Python; a changed page gets new exits and its translations dropped (``_code_changed``).
        """
        buf = self._buf
        for frame in list(self._smc_frames):
            base = frame << PAGE_SHIFT
            digest = zlib.crc32(buf[base : base + 0x1000])
            if self._smc_digest.get(frame) == digest:
                continue
            self._code_changed(frame)

    def _code_changed(self, frame: int, lo: int = -1, hi: int = -1) -> None:
        """The bytes of a frame holding scanned code changed: Python stored into host [lo, hi), which unicorn
        cannot see, or (lo < 0) the guest stored into it somewhere, which unicorn saw (it drops the blocks a
        store overlaps).

        A Python store: the stored range is scanned again (``page_scan.rescan``). When the exits stand, the
        usual case of a data store into a page that also holds code (Linux's lowcore: save areas, timers
        and the return PSW next to its LPSWE, stored into at every system call), only the blocks over the
        store go; otherwise the exits of each virtual page the frame is code at are registered again and
        all its blocks go, for exits are baked into blocks as they are translated. A guest store: the frame
        is code no more until it is fetched from again (below). Either way EXECUTE RELATIVE LONGs elsewhere
        that execute an instruction of this frame are decided again and their blocks dropped.
        """
        old = self._scan_cache.get(frame)
        had_native_ssm = frame in self._ssm_native.values()
        base = frame << PAGE_SHIFT
        phys = PHYS_INVALIDATE
        new = None
        if old is not None and lo >= 0:  # only the stored range and what depends on it (``page_scan``)
            page = self._page_bytes(frame)
            new = page_scan.rescan(page, old, lo - base, hi - base, bool(self._fpo))
            if (
                new.hits == old.hits
                and new.far == old.far
                and phys is not None
                and not had_native_ssm
                and frame not in self._exrl_deps
            ):
                # the usual case, a data store (Linux's lowcore at every system call): the exits stand,
                # only the blocks over the store go
                for cache in self._scan_caches:
                    if cache is not self._scan_cache:
                        cache.pop(frame, None)
                self._keep_scan(frame, new, page)
                self._icache.clear()
                phys(self._h.value, lo, hi)
                return
        dependents = self._forget_scan(frame)
        self._icache.clear()
        if lo < 0 and phys is not None and self._cpu_state is not None and self._guest is None:
            # a guest store: the frame is code no more until it is fetched from again (its translated blocks
            # and fetch entries go, so the next fetch fill scans it and registers its exits). A frame that
            # held code once and is data now (freed init code, a reused page) is then neither checked nor
            # scanned at every return to Python, as long as it is not executed.
            self._smc_frames.discard(frame)
            phys(self._h.value, base, base + 0x1000)
            for vpage in self._code_pages.pop(frame, ()):
                self._flush_page(vpage)
            for vpage, f in dependents:
                self._add_exits(vpage, f)
                phys(self._h.value, f << PAGE_SHIFT, (f + 1) << PAGE_SHIFT)
            return
        if new is not None:
            self._keep_scan(frame, new, page)
        else:
            self._scan(frame)
            new = self._scan_cache[frame]
        same = old is not None and new.hits == old.hits and new.far == old.far and not had_native_ssm
        for vpage in list(self._code_pages.get(frame, ())):
            self._add_exits(vpage, frame)
            if phys is None and not same:
                self._remove_cache(vpage, vpage + 0x1000)
        if phys is not None:
            if not same:
                phys(self._h.value, base, base + 0x1000)
            elif lo >= 0:
                phys(self._h.value, lo, hi)
        for vpage, f in dependents:  # EXRLs elsewhere that execute an instruction of this frame
            self._add_exits(vpage, f)
            if phys is not None:
                phys(self._h.value, f << PAGE_SHIFT, (f + 1) << PAGE_SHIFT)
            else:
                self._remove_cache(vpage, vpage + 0x1000)

    def _remove_cache(self, begin: int, end: int) -> None:
        """Drop unicorn's translated blocks in [begin, end) (with its real invalidation, see ``engine``).

        unicorn looks the range up as an instruction fetch, in the current address space: a page that does
        not translate there, or that is now instruction-execution protected (code the guest freed and
        reuses as data), is refused, and that refusal is no access of the guest's: it must not become the
        fault of the instruction at the PC, nor drop the page's exits (``_refuse``).
        """
        self._own_lookup = True
        try:
            if self._switch is not None:
                self._switch.invalidate(begin, end)
            else:
                self.uc.ctl_remove_cache(begin, end)
        finally:
            self._own_lookup = False

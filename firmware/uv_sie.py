"""SIE for secure guests (format-4 state description): the part of SIE the Ultravisor performs.

Trusted code: it runs a secure CPU on a hardware CPU and is the only place where the secure CPU's
registers and the secure guest's storage meet the host. What the host gets back is what a real format-4
SIE exit leaves in the SIE page (``secure-execution.md`` section 7):

* the interception code; for a PV instruction intercept (0x68) the *normalised* instruction text in
  IPA/IPB, the operand registers the host needs in ``pv_grregs`` and the instruction's data in the SIDA;
  the secure CPU stays "pending for completion" and the next entry completes the instruction with the
  host's results (registers, SIDA contents, condition code, or a program interruption through ``iictl``);
* for a PV notification (0x6C) the instruction was done (or, for Remove Shared Access of a pinned page,
  will be re-issued); the host may not change anything;
* 0x70 when a prefix page is not secure; a *host* program interruption 0x3E/0x3F (``SieExit.host_pgm``)
  when the guest touched a page that is not secure (the host imports it and re-enters: the guest sees
  nothing);
* the guest PSW, prefix and CR0/CR6/CR14 so the host can decide which interruptions are deliverable (the
  PSW is not authoritative: entering never loads it);
* validity interceptions (0x20, reason code in ``ipb >> 16``) for a state description the Ultravisor
  refuses.

Interruptions reach a secure guest only through ``iictl`` (7.5): the host names the class and its data,
this code checks that the guest is enabled (else validity) and performs the PSW swap. One the guest is not
enabled for yet, the host names at entry (``run``'s ``ext_request``): the SIE ends with interception 0x10
once the guest enables it, so the host can inject it then.

Guest UVCs (Set/Remove Shared Access, attestation, secrets) are executed here by calling the Ultravisor
as the guest; they never leave SIE unless the Ultravisor asks for a notification or the host must import
a page first.

Normalisation map (zuv's choice where the sources only give the DIAGNOSE example, 13.6; see
``docs/hypervisor.md``): DIAGNOSE ``ipa 0x8302 ipb 0x50000000`` with the code in GR5, R1's value in GR0,
R1+1 in GR1, R3 in GR2 (0x500: the virtio registers GR1-GR4 as they are); SERVC ``ipa 0xB220 ipb
0x00240000``: command in GR2, a dummy SCCB address 0x43000 in GR4, the SCCB in the SIDA; STSI ``ipa
0xB27D ipb 0``: GR0/GR1 as they are, the 4 KiB block through the SIDA; SIGP ``ipa 0xAE24 ipb
0x50000000``: R1 in GR2, R1+1 in GR3, R3 (CPU address) in GR4, the order code in GR5.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from emulator.errors import ProgramException, SecureStorageAccess
from emulator.hw import access
from emulator.hw.arch import (
    LC_EXT_NEW,
    LC_EXT_OLD,
    LC_IO_NEW,
    LC_IO_OLD,
    LC_MCK_NEW,
    LC_MCK_OLD,
    LC_RESTART_NEW,
    LC_RESTART_OLD,
)
from emulator.hw.cpu import (
    OPERATING,
    PSW_MASK_EXT,
    PSW_MASK_IO,
    PSW_MASK_MCHECK,
    STOPPED,
    Cpu,
    GuestIntercept,
    GuestMapping,
    Insn,
)
from emulator.hw.host_view import HostSpan
from emulator.hw.memory import OWNER_HOST, PAGE_SHIFT
from emulator.hw.sie import (
    ICPT_PV_NOTIFY,
    ICPT_PV_PREF,
    ICPT_VALIDITY,
    IICTL_EXT,
    IICTL_IO,
    IICTL_MCHK,
    IICTL_NONE,
    IICTL_OPERAND,
    IICTL_RESTART,
    IICTL_SPECIFICATION,
    SDF_PV,
    SieExit,
    SiePage,
)
from emulator.hw.sysinfo import secure_guest_facilities
from firmware.uv_sie_codes import (
    DUMMY_SCCB,
    VIR_ASCE,
    VIR_CONCURRENT,
    VIR_CONFIG_HANDLE,
    VIR_CPU_HANDLE,
    VIR_CPU_TIMER,
    VIR_FORMAT,
    VIR_INJECT_DISABLED,
    VIR_INJECT_INVALID,
    VIR_NAMES,
    VIR_NOT_OPERATING,
    VIR_SD_ORIGIN,
    VIR_SIDA,
    sie_exit_of,  # fmt: skip
)
from firmware.uv_sie_intercept import SecureIntercepts, _Pending

if TYPE_CHECKING:
    from firmware.uv import SecureCpu, Ultravisor

__all__ = ["PvSieEngine", "DUMMY_SCCB", "VIR_CONFIG_HANDLE", "VIR_CPU_HANDLE", "VIR_NOT_OPERATING",
           "VIR_INJECT_DISABLED", "VIR_INJECT_INVALID", "VIR_FORMAT", "VIR_CONCURRENT", "VIR_ASCE",
           "VIR_CPU_TIMER", "VIR_SIDA", "VIR_NAMES"]  # the codes re-exported from ``uv_sie_codes``

_EXT_SUBCLASS: Final = {0x2401: 1 << 9, 0x1201: 1 << 14, 0x1202: 1 << 13, 0x1004: 1 << 11, 0x1005: 1 << 10}
_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")


_MASK64: Final = 0xFFFFFFFFFFFFFFFF


class _SecureMapping:
    """Guest absolute -> host absolute for a secure guest: the Ultravisor's per-page decision.

    A page that is not secure for this configuration is a *host* event (PGM 0x3E / 0x3F during SIE),
    reported to the CPU as ``GuestIntercept`` so that SIE ends with the guest untouched.
    """

    def __init__(self, uv: Ultravisor, handle: int, tag: int, wrapping_key: Any = None) -> None:
        self.uv = uv
        self.handle = handle
        self.mapping = GuestMapping(self.to_host, tag, wrapping_key)
        # the Ultravisor's live records and storage (never replaced), for the hit path below
        self._configs, self._buf, self._owner = uv._configs, uv._buf, uv.mem.owner  # noqa: SLF001 - firmware

    def to_host(self, guest_abs: int, write: bool, fetch: bool) -> int:
        # ``guest_frame_check``'s common outcome written out (every SCCB, lowcore and TLB fill of a secure
        # guest comes here): the configuration exists, the address is inside its storage, ``_gmap``'s kept
        # segment-table walk still holds (both table entries re-read now), and the frame it names is secure
        # for this configuration at this guest page. Anything else takes the full decision below.
        cfg = self._configs.get(self.handle)
        if cfg is not None and guest_abs < cfg.msl:
            hit = cfg.walks.get((cfg.mso + guest_abs) & ~0xFFF)
            if hit is not None and len(hit) == 5:
                buf = self._buf
                if _U64.unpack_from(buf, hit[1])[0] == hit[2] and _U64.unpack_from(buf, hit[3])[0] == hit[4]:
                    frame = hit[0]
                    if self._owner[frame] == cfg.tag and cfg.frames.get(frame) == guest_abs & ~0xFFF:
                        return frame << PAGE_SHIFT | (guest_abs & 0xFFF)
        try:
            frame = self.uv.guest_frame_check(self.handle, guest_abs, write)
        except ProgramException as e:
            if e.code in (0x3E, 0x3F):
                raise GuestIntercept(e.code, e.why, teid=e.teid or 0, gaddr=guest_abs & ~0xFFF) from None
            raise
        return frame << PAGE_SHIFT | (guest_abs & 0xFFF)


class PvSieEngine(SecureIntercepts):
    """The Ultravisor's half of SIE: format-4 entries of secure CPUs on hardware CPUs.

    Args:
        uv: the Ultravisor (its records of secure configurations and CPUs, its UVC entry point).
        sida: ``sida(page) -> HostSpan`` of the SIDA the SD designates (host storage, checked at each access).
    """

    def __init__(self, uv: Ultravisor, sida: Callable[[SiePage], HostSpan]) -> None:
        self.uv = uv
        self._host_sida = sida
        #: (SIE page address, SIDA designation, owner-tag generation) of the last span ``_host_sida`` gave,
        #: and that span (``_sida``: the same SIDA while no owner tag changed is the same decision)
        self._span_key: tuple[int, int, int] = (-1, -1, -1)
        self._span: HostSpan | None = None
        self._pending: dict[int, _Pending] = {}  # cpu handle -> instruction awaiting completion
        self._loaded: dict[int, tuple[object, ...]] = {}  # cpu handle -> snapshot of the record at exit
        self._maps: dict[int, _SecureMapping] = {}  # config handle -> mapping
        self._running: set[int] = set()
        #: config handle -> real SCCB address of its last SERVC: the service signal is a floating interruption
        #: (the host may inject it into any of the configuration's CPUs; one SCLP request is outstanding)
        self._sccbs: dict[int, int] = {}
        self._raw: dict[int, memoryview] = {}  # SIE page address -> its bytes (``_page_bytes``)
        #: (SIDA designation, owner-tag generation) of the last SIDA found host storage (still so if no tag
        #: changed since), the tag generation, and the Ultravisor's live records (two lookups without a call)
        self._sida_ok, self._tag_gen = (-1, -1), uv.mem.tag_gen
        self._uv_cpus, self._uv_configs = uv._cpus, uv._configs  # noqa: SLF001 - firmware, one trust domain
        #: cpu handle -> (CPU timer at the last exit, TOD when the last SIE ended): the reference of the
        #: CPU-timer check at entry (7.4)
        self._left: dict[int, tuple[int, int]] = {}
        self.entries = 0
        #: cpu handle -> the hardware CPU that runs that secure CPU (``adopt``): the Ultravisor's, not the
        #: hypervisor's; the hypervisor names it by the state description's CPU handle (``run``)
        self._hw: dict[int, Cpu] = {}
        #: cpu handle -> the facility list the host gave the hardware CPU (back to it at release)
        self._host_facilities: dict[int, bytes] = {}
        self._ran: set[int] = set()  # cpu handles whose hardware CPU has held the secure CPU's state
        #: Debugger hook (``Hypervisor.insn_filter``): offered each owner instruction of a secure guest before
        #: it is handled; a returned reason leaves it unexecuted and ends SIE (reason "filtered").
        self.insn_filter: Callable[[Cpu, Insn], str | None] | None = None

    # -- the hardware CPUs of secure CPUs ---------------------------------------------------------------

    def adopt(self, cpu_handle: int, cpu: Cpu) -> None:
        """The hardware CPU ``cpu`` runs the secure CPU ``cpu_handle`` from now on (the vCPU became secure):
        the Ultravisor keeps it; the host names it by the CPU handle in the state description. The host's
        debugger hooks on it (breakpoints, watched frames, observers) stay behind: none reaches the guest."""
        cpu.drop_debugger_hooks()
        self._hw[cpu_handle] = cpu
        self._host_facilities[cpu_handle] = cpu.facilities
        cpu.facilities = secure_guest_facilities(cpu.facilities)  # STFLE of the secure guest: UVC, no unpack

    def release(self, cpu_handle: int) -> Cpu | None:
        """Give the hardware CPU of a destroyed secure CPU back to the host, scrubbed: when it ever held the
        secure CPU's state, a clear reset (registers, PSW, prefix, timers) and no guest mapping, so that no
        register value nor translation of the secure guest goes back with it."""
        cpu = self._hw.pop(cpu_handle, None)
        self.forget(cpu_handle)
        facilities = self._host_facilities.pop(cpu_handle, None)
        if cpu is not None and facilities is not None:
            cpu.facilities = facilities
        if cpu is not None and cpu_handle in self._ran:
            self._ran.discard(cpu_handle)
            self._scrub(cpu)
        return cpu

    def _scrub(self, cpu: Cpu) -> None:
        for handle in [h for h, snap in self._loaded.items() if snap[0] is cpu]:
            del self._loaded[handle]
        cpu.reset_clear()
        if isinstance(cpu.guest, GuestMapping) and any(cpu.guest is m.mapping for m in self._maps.values()):
            cpu.guest = None  # drops every translation of the secure guest (TLB flush)
        cpu.flush_tlb()

    def run(
        self, page: SiePage, count: int = 0, timeout_us: int = 0, ext_request: int = 0, io_request: int = 0
    ) -> SieExit:
        """SIE on the hardware CPU of the secure CPU the SD names (``enter`` on it).

        ``ext_request``: the CR0 subclass bits of external interruptions the host holds but could not inject
        (the guest disabled for them): the SIE ends with interception 0x10 (external request) as soon as the
        guest's PSW and CR0 enable one of them, so the host can inject it (KVM's ``CPUSTAT_EXT_INT`` and its
        intercept of LCTL on CR0, in one). ``io_request``: the same for I/O interruptions, CR6 subclass
        bits (interception 0x18, I/O request)."""
        handle = page.sie_block.pv_handle_cpu  # read once: the host may rewrite its SD meanwhile
        cpu = self._hw.get(handle)
        if cpu is None:
            return self._validity(page, VIR_CPU_HANDLE)
        if not (ext_request or io_request):  # (both are 0 outside this call: nothing to set or clear)
            return self.enter(cpu, page, count, timeout_us, cpu_handle=handle)
        cpu.ext_request, cpu.io_request = ext_request, io_request
        try:
            return self.enter(cpu, page, count, timeout_us, cpu_handle=handle)
        finally:
            cpu.ext_request = cpu.io_request = 0

    def insn_count(self, cpu_handle: int) -> int:
        """Instructions the secure CPU's hardware CPU executed (0 for an unknown handle)."""
        cpu = self._hw.get(cpu_handle)
        return cpu.insn_count if cpu is not None else 0

    def halt(self, cpu_handles: Iterable[int]) -> None:
        """Ask the hardware CPUs of these secure CPUs to leave SIE soon (any thread)."""
        for h in cpu_handles:
            cpu = self._hw.get(h)
            if cpu is not None:
                cpu.request_halt()

    def purge_tlb(self, config_handle: int) -> None:
        """Purge every translation of the configuration's guest (IPTE / IDTE of the host's gmap entry): the
        hardware CPUs that run its secure CPUs forget what they translated."""
        m = self._maps.get(config_handle)
        if m is None:
            return
        for cpu in self._hw.values():
            if cpu.guest is m.mapping:
                cpu.flush_tlb()

    @staticmethod
    def _validity(page: SiePage, vir: int) -> SieExit:
        sd = page.sie_block
        sd.icptcode = ICPT_VALIDITY
        sd.ipa = 0
        sd.ipb = vir << 16
        return SieExit(ICPT_VALIDITY, reason=VIR_NAMES.get(vir, ""), data={"vir": vir})

    def enter(
        self, cpu: Cpu, page: SiePage, count: int = 0, timeout_us: int = 0, asce: int | None = None,
        cpu_handle: int | None = None,
    ) -> SieExit:
        """Run the secure CPU named by the SD on ``cpu`` until the host must act.

        ``asce``: the host's CR1 at SIE (a hypervisor program's SIE; zuv's own hypervisor has none to give):
        it must be the configuration's ASCE, else a validity interception. ``cpu_handle``: the SD's CPU
        handle as ``run`` read it to find ``cpu`` (the SD is host storage: read again, another thread of the
        host could have made it name another secure CPU, whose registers ``cpu`` would then have run with).
        """
        self.entries += 1
        sd = page.sie_block
        if sd.sdf != SDF_PV:
            return self._validity(page, VIR_FORMAT)
        scpu = self._uv_cpus.get(sd.pv_handle_cpu if cpu_handle is None else cpu_handle)  # (``secure_cpu``)
        if scpu is None:
            return self._validity(page, VIR_CPU_HANDLE)
        cfg = scpu.config
        vir = 0
        # the injection control is read once: the check below and the injection decide by the same value (the
        # SD is host storage, rewritten by another thread of the host at will: review 4)
        iictl = sd.iictl
        if cfg.handle != sd.pv_handle_config or cfg.handle not in self._uv_configs:  # (``secure_config``)
            vir = VIR_CONFIG_HANDLE
        elif ctypes.addressof(page) != self.uv.mem.address + scpu.state_origin:
            # a secure CPU runs from the state description it was created with (KVM gives its SIE block
            # as the state origin): a copy of it in another page, whole handles and all, does not run it
            vir = VIR_SD_ORIGIN
        elif asce is not None and asce != cfg.asce:
            vir = VIR_ASCE
        elif scpu.state != 1 or not (scpu.psw_loaded or iictl == IICTL_RESTART):
            # CPU_STATE_OPR with its PSW loaded, or a CPU started by a restart (SIGP RESTART of a CPU the
            # guest brought up: the restart new PSW of its lowcore is its first)
            vir = VIR_NOT_OPERATING
        elif (sd.sidad, self._tag_gen[0]) != self._sida_ok and not self._sida_host_storage(sd):
            vir = VIR_SIDA  # (``_sida_host_storage``'s remembered decision, inline)
        elif scpu.handle in self._running:
            vir = VIR_CONCURRENT
        elif sd.cputm != scpu.cputm:  # (``_cpu_timer_check``'s first case inline: the value it left, taken)
            vir = self._cpu_timer_check(cpu, sd, scpu)
        if vir:
            self._left[scpu.handle] = (self._left.get(scpu.handle, (scpu.cputm, 0))[0], cpu.tod())
            return self._validity(page, vir)
        self._running.add(scpu.handle)
        self._ran.add(scpu.handle)
        try:
            return self._enter(cpu, page, scpu, count, timeout_us, iictl)
        except SecureStorageAccess:  # a SIDA page left the host after the entry's check: nothing copied, the
            self._save(cpu, page, scpu)  # instruction unfinished (issued again), the entry's result for it
            return self._validity(page, VIR_SIDA)
        finally:
            self._running.discard(scpu.handle)

    def _sida_host_storage(self, sd: Any) -> bool:
        """True if every page of the SIDA the SD designates is storage the host may touch (the engine
        copies instruction data into it for the host: a secure page there would hand the host plaintext)."""
        sidad = sd.sidad  # (``sida_origin`` and ``sida_size`` from one field read)
        key = (sidad, self._tag_gen[0])
        if key == self._sida_ok:  # decided so since the last tag change
            return True
        mem = self.uv.mem
        addr, size = sidad & ~0xFFF, ((sidad & 0xFF) + 1) << 12
        if addr + size > mem.size:
            return False
        if size == 0x1000:  # the common one-page SIDA: access.may_access written out
            frame = addr >> PAGE_SHIFT
            ok = mem.owner[frame] == OWNER_HOST or bool(mem.shared[frame])
        else:
            ok = access.refused_address(mem, addr, size, access.HOST) is None
        if ok:
            self._sida_ok = key
        return ok

    def _cpu_timer_check(self, cpu: Cpu, sd: Any, scpu: SecureCpu) -> int:
        """The CPU timer the host gives at entry (7.4): it may not be above the value at the last exit, nor
        below it by more than the time since the last SIE ended (both in CPU-timer units, 1/4096 us); 0 when
        it is taken (then the secure CPU runs on with it), else the validity reason.

        With no exit recorded, or when the Ultravisor changed the CPU's timer since (a CPU reset), the
        host's value is taken as it is: the host starts the timer of a new or reset CPU."""
        entry = sd.cputm
        kept = scpu.cputm
        if entry == kept:  # the value the last exit left, or the one the UV set since: always taken
            return 0
        left = self._left.get(scpu.handle)
        if left is not None and left[0] == kept:
            ref, since = left
            signed_entry = entry - (1 << 64) if entry >> 63 else entry
            signed_ref = ref - (1 << 64) if ref >> 63 else ref
            if signed_entry > signed_ref or signed_ref - signed_entry > cpu.tod() - since:
                return VIR_CPU_TIMER
        if entry != scpu.cputm:
            scpu.cputm = entry
            self._loaded.pop(scpu.handle, None)  # the next load puts the host's timer into the CPU
        return 0

    def _enter(
        self, cpu: Cpu, page: SiePage, scpu: SecureCpu, count: int, timeout_us: int, iictl: int
    ) -> SieExit:
        sd = page.sie_block
        cfg = scpu.config
        m = self._maps.get(cfg.handle)
        if m is None or m.uv is not self.uv:
            m = self._maps[cfg.handle] = _SecureMapping(self.uv, cfg.handle, cfg.tag, cfg.wrapping_key)
        if cpu.guest is not m.mapping:
            cpu.guest = m.mapping
            cpu.guest_memory_size = cfg.msl
            cpu.flush_tlb()
        snap = self._loaded.get(scpu.handle)  # the record's lists as the last exit left them on ``cpu``
        if snap is None or snap[0] is not cpu or snap[1] is not scpu.psw or snap[2] is not scpu.gprs or (
            snap[3] is not scpu.crs
        ):
            self._load(cpu, scpu)
        cpu.state = OPERATING
        # 0. both prefix pages must be secure before the CPU runs or anything is stored into its lowcore (an
        # injection's PSW swap, a completion): the intercepted instruction and the injection stay pending
        if not self.uv.prefix_secure(cfg.handle, cpu.prefix):
            self._save(cpu, page, scpu)
            sd.icptcode = ICPT_PV_PREF
            return SieExit(ICPT_PV_PREF)
        # 1 and 2 store into the guest's storage outside the CPU's run: under its run lock, so that no UV
        # command takes a page away meanwhile (no Ultravisor call is made inside); most entries have neither
        completed = False
        if iictl != IICTL_NONE or scpu.handle in self._pending:
            with cpu.exclusive():
                # 1. complete an intercepted instruction with the host's results
                pending = self._pending.pop(scpu.handle, None)
                if iictl in (IICTL_SPECIFICATION, IICTL_OPERAND):
                    sd.iictl = IICTL_NONE
                    if pending is None:
                        self._save(cpu, page, scpu)
                        return self._validity(page, VIR_INJECT_INVALID)
                    code = 0x06 if iictl == IICTL_SPECIFICATION else 0x15
                    cpu.program_interrupt(code, pending.insn.ilen, pc=pending.insn.pc)
                elif pending is not None:
                    try:
                        self._complete(cpu, page, pending, scpu)
                        completed = True
                    except ProgramException as e:  # the guest's operand went away meanwhile: its own one
                        cpu.program_interrupt(e.code, e.ilc or pending.insn.ilen, e.teid, pc=pending.insn.pc)
                    except GuestIntercept as e:
                        self._pending[scpu.handle] = pending  # complete after the host imported the page
                        return self._host_exit(cpu, page, scpu, e.code, e.data.get("teid", 0), e.reason)
                # 2. interruption injection
                if iictl not in (IICTL_NONE, IICTL_SPECIFICATION, IICTL_OPERAND):
                    vir = self._inject(cpu, page, scpu, iictl)
                    if vir:
                        self._save(cpu, page, scpu)
                        return self._validity(page, vir)
        # 3. run. A completed instruction is the entry's first of ``count`` (a debugger's step of one ends
        # with it: the guest moved one instruction, as the step says)
        if completed and count:
            cpu.insn_count += 1
            if count == 1:
                return self._leave(cpu, page, scpu, SieExit(0, reason="limit"))
            count -= 1
        while True:
            ex = cpu.run(count=count, timeout_us=timeout_us)
            if ex.kind == "insn":
                assert ex.insn is not None
                out = self._instruction(cpu, page, scpu, ex.insn)
                if out is None:
                    if count:
                        return self._leave(cpu, page, scpu, SieExit(0, reason="limit"))
                    continue  # done inside SIE (a guest UVC): keep running
                self._save(cpu, page, scpu)  # (``_leave``, inline: an intercept is never a check stop)
                sd.icptcode = out.icptcode
                return out
            if ex.kind == "notify":  # SET PREFIX, done: the host hears of the new prefix (7.3)
                assert ex.insn is not None
                self._sida(page)[:4] = _U32.pack(cpu.prefix)
                sd.ipa, sd.ipb = 0xB210, 0
                return self._leave(cpu, page, scpu, SieExit(ICPT_PV_NOTIFY))
            return self._leave(cpu, page, scpu, sie_exit_of(ex))

    def _leave(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, out: SieExit) -> SieExit:
        sd = page.sie_block
        if out.reason == "check_stop":
            scpu.state = 3  # CPU_STATE_CHKSTP
            cpu.state = OPERATING
        self._save(cpu, page, scpu)
        sd.icptcode = out.icptcode
        return out

    def _host_exit(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, code: int, teid: int, why: str) -> SieExit:
        self._save(cpu, page, scpu)
        page.sie_block.icptcode = 0
        return SieExit(0, host_pgm=code, teid=teid, reason=why)

    # -- the secure CPU's registers: the UV record <-> the hardware CPU --------------------------------

    def _load(self, cpu: Cpu, scpu: SecureCpu) -> None:
        """Put the UV's record of the secure CPU into the hardware CPU (``_enter`` calls it unless the
        record is there already). Another secure CPU's record that was there is no more (a host CPU's guest
        CPU in the LPAR runs whichever secure CPU its SIE names: before, A, then B, then A again on one
        hardware CPU ran A with B's registers, A's snapshot still taken as loaded)."""
        for handle in [h for h, snap in self._loaded.items() if snap[0] is cpu and h != scpu.handle]:
            del self._loaded[handle]
        for i, v in enumerate(scpu.gprs):
            cpu.set_gpr(i, v)
        raw = scpu.engine_ext()
        if raw is not None:
            cpu.load_extended_raw(raw, scpu.fpc)
        else:
            cpu.set_extended_state(scpu.ext, scpu.fpc)
        for i, v in enumerate(scpu.crs):
            cpu.set_cr(i, v)
        if cpu.prefix != scpu.prefix:
            cpu.set_prefix(scpu.prefix)
        cpu.ckc = scpu.ckc
        cpu.set_cpu_timer(scpu.cputm)
        cpu.tod_programmable = scpu.todpr
        cpu.set_psw(*scpu.psw)
        cpu.ext_pending.clear()
        cpu.emergency_from.clear()
        cpu.restart_pending = False

    def _save(self, cpu: Cpu, page: SiePage, scpu: SecureCpu) -> None:
        """Record the secure CPU's state in the UV; show the host what format-4 SIE shows it.

        The whole state: the next entry may load the record into the CPU again (a CPU timer the host set, a
        debugger's write, the hardware CPU having run something else), and a dump reads it. The PSW, GPRs
        and CRs are read from the engine's state in place (``Cpu.psw_gprs_crs``); the vector and access
        registers are copied as the engine keeps them (``Cpu.extended_raw``, 576 bytes, no conversion: the
        record converts them when something reads them, ``SecureCpu.ext``).
        """
        mask, addr, gprs, crs = cpu.psw_gprs_crs()
        raw = cpu.extended_raw()
        if raw is not None:
            ext, scpu.fpc = raw
            scpu.keep_engine_ext(ext)
        else:
            scpu.ext, scpu.fpc = cpu.extended_state()
        psw = scpu.psw = (mask, addr)
        scpu.gprs = gprs
        scpu.crs = crs
        prefix = scpu.prefix = cpu.prefix
        ckc = scpu.ckc = cpu.ckc
        now = cpu.clock.now()  # one reading for the timer and the exit's time (``Cpu.tod``, inline)
        cputm = scpu.cputm = cpu.cpu_timer_at(now) & _MASK64
        scpu.todpr = cpu.tod_programmable
        self._loaded[scpu.handle] = (cpu, psw, gprs, crs)
        self._left[scpu.handle] = (cputm, now)
        sd = page.sie_block
        sd.psw_mask = mask
        sd.psw_addr = addr
        sd.prefix = prefix
        gcr = sd.gcr
        gcr[0], gcr[6], gcr[14] = crs[0], crs[6], crs[14]
        sd.ckc = ckc
        sd.cputm = cputm

    def reload(self, cpu_handle: int) -> None:
        """The UV's record of a secure CPU changed outside SIE (a debugger's write through the debug
        capability): the next entry puts the whole record into the hardware CPU."""
        self._loaded.pop(cpu_handle, None)

    def forget(self, cpu_handle: int) -> None:
        """Drop what the engine keeps for a secure CPU (it was destroyed)."""
        self._loaded.pop(cpu_handle, None)
        self._pending.pop(cpu_handle, None)
        self._left.pop(cpu_handle, None)

    def drop_cpu(self, cpu: Cpu) -> None:
        """The hardware CPU ran something else (a normal guest): the next entry of a secure CPU on it loads
        the Ultravisor's record again."""
        for handle in [h for h, snap in self._loaded.items() if snap[0] is cpu]:
            del self._loaded[handle]

    def pending_completion(self, cpu_handle: int) -> bool:
        """True while an instruction of the secure CPU waits for the host's results (0x68)."""
        return cpu_handle in self._pending

    # -- interruption injection (iictl) ------------------------------------------------------------------

    def _inject(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, iictl: int) -> int:
        """Inject the interruption ``iictl`` (the entry's one reading) names, with its data from the SD read
        once, field by field, into locals: the check and the stored interruption code use the same values
        (a host thread rewriting the SD between them injected a class the guest had disabled)."""
        sd = page.sie_block
        mask = cpu.psw_mask
        cr0 = cpu.cr(0)
        if iictl == IICTL_EXT:
            eic, param, cpuaddr = sd.eic, sd.eiparams, sd.extcpuaddr
            sub = _EXT_SUBCLASS.get(eic)
            if not mask & PSW_MASK_EXT or sub is None or not cr0 & sub:
                return VIR_INJECT_DISABLED
            if eic == 0x2401 and (param & ~0xFFF) == DUMMY_SCCB:
                param = (self._sccbs.get(scpu.config.handle, 0) & ~3) | (param & 3)
            code = _U32.pack(param) + _U16.pack(cpuaddr) + _U16.pack(eic)
            cpu.interrupt_with(0x80, code, LC_EXT_OLD, LC_EXT_NEW)
        elif iictl == IICTL_IO:
            word, sid, snr, parm = sd.io_int_word, sd.subchannel_id, sd.subchannel_nr, sd.io_int_parm
            if not mask & PSW_MASK_IO or not cpu.cr(6) & (0x80000000 >> (word >> 27 & 7)):
                return VIR_INJECT_DISABLED
            code = _U16.pack(sid) + _U16.pack(snr) + _U32.pack(parm) + _U32.pack(word)
            cpu.interrupt_with(0xB8, code, LC_IO_OLD, LC_IO_NEW)
        elif iictl == IICTL_MCHK:
            if not mask & PSW_MASK_MCHECK:
                return VIR_INJECT_DISABLED
            cpu.interrupt_with(0xE8, _U64.pack(sd.mcic), LC_MCK_OLD, LC_MCK_NEW)
        elif iictl == IICTL_RESTART:
            cpu.swap_psw(LC_RESTART_OLD, LC_RESTART_NEW)
            scpu.psw_loaded = True
        else:
            return VIR_INJECT_INVALID
        sd.iictl = IICTL_NONE
        return 0

    # -- queries for the host --------------------------------------------------------------------------

    @staticmethod
    def stopped(cpu: Cpu) -> bool:
        """True if the hardware CPU is stopped."""
        return cpu.state == STOPPED

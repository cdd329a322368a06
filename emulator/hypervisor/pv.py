"""Protected virtualisation in the hypervisor: the secure-guest lifecycle and the secure intercept handlers.

What KVM's ``arch/s390/kvm/pv.c`` and QEMU's ``hw/s390x/pv.c`` do, through the Ultravisor client
(``emulator.hypervisor.uvclient``) and nothing else:

* lifecycle (``secure-execution.md`` 12.1): enable (gmap, donated base/variable storage, SCA, Create
  Secure Configuration, a SIDA and Create Secure CPU per vCPU), set secure parameters (the SE header),
  unpack every component page in order, verify, Set CPU State, prepare reset, unshare all, disable
  (destroy the CPUs, the configuration, then every guest page that may still be secure);
* the secure IPL of DIAGNOSE 0x308 subcodes 8, 9 and 10 (8.3) is in ``emulator.hypervisor.pv_ipl``;
* the intercepts of a secure vCPU: PV instruction (0x68), PV notification (0x6C), prefix not secure
  (0x70), host program interruptions 0x3E/0x3F (import the page), wait and validity;
* interruptions for secure vCPUs, injected only through ``iictl`` (7.5);
* host touches of a secure page: export it first (``arch_make_folio_accessible``).
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Final

from emulator.errors import HypervisorError, ProgramException, SecureStorageAccess
from emulator.hw.cpu import PSW_MASK_EXT, PSW_MASK_IO, PSW_MASK_WAIT
from emulator.hw.cpu_handle import CpuHandle
from emulator.hw.diag import release_ranges
from emulator.hw.memory import PAGE_SIZE
from emulator.hw.sclp import merge_service_parameter
from emulator.hw.sie import (
    ICPT_EXTREQ,
    ICPT_IOREQ,
    ICPT_PV_INSTR,
    ICPT_PV_NOTIFY,
    ICPT_PV_PREF,
    ICPT_STOP,
    ICPT_VALIDITY,
    ICPT_WAIT,
    IICTL_EXT,
    IICTL_IO,
    IICTL_NONE,
    IICTL_RESTART,
    IICTL_SPECIFICATION,
    SDF_NORMAL,
    SDF_PV,
    SieExit,
    SiePage,
)
from emulator.hw.sysinfo import stsi
from emulator.hypervisor.pv_sigp import pv_sigp
from emulator.hypervisor.sida import Sida, SidaSccb
from emulator.hypervisor.uvclient import HostArena, UvClient, UvResult
from emulator.hypervisor.watchdog import diag288
from firmware.uv_codes import describe
from firmware.uv_gate import UvGate
from firmware.uv_sie import VIR_NAMES

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Hypervisor, Vcpu, Vm

__all__ = [
    "PvError",
    "PvHost",
    "PvVm",
    "KVM_PV_SET_SEC_PARMS",
    "KVM_PV_UNPACK",
    "KVM_PV_VERIFY",
]

log = logging.getLogger("emulator.hypervisor.pv")

# KVM_PV_* command numbers (include/uapi/linux/kvm.h), used in the packed secure-IPL error (8.3 step 5)
KVM_PV_ENABLE: Final = 0
KVM_PV_DISABLE: Final = 1
KVM_PV_SET_SEC_PARMS: Final = 2
KVM_PV_UNPACK: Final = 3
KVM_PV_VERIFY: Final = 4
KVM_PV_PREP_RESET: Final = 5
KVM_PV_UNSHARE_ALL: Final = 6
PV_CMD_NAMES: Final = {
    KVM_PV_ENABLE: "KVM_PV_ENABLE",
    KVM_PV_DISABLE: "KVM_PV_DISABLE",
    KVM_PV_SET_SEC_PARMS: "KVM_PV_SET_SEC_PARMS",
    KVM_PV_UNPACK: "KVM_PV_UNPACK",
    KVM_PV_VERIFY: "KVM_PV_VERIFY",
    KVM_PV_PREP_RESET: "KVM_PV_PREP_RESET",
    KVM_PV_UNSHARE_ALL: "KVM_PV_UNSHARE_ALL",
}

CPU_STATE_OPR: Final = 1
CPU_STATE_STP: Final = 2
CPU_STATE_OPR_LOAD: Final = 5

MAX_HEADER: Final = 2 * PAGE_SIZE
_SEG_INVALID: Final = 0x20
_REGION_INVALID: Final = 0x20
_PTE_INVALID: Final = 0x400
_ASCE_P: Final = 0x100
#: designation types (ASCE bits 60-61, a region entry's TT), table lengths (bits 62-63: 4 pages)
_DT_SEGMENT: Final = 0x0
_DT_REGION3: Final = 0x4
_TL_FULL: Final = 0x3
#: the guest storage one region-third table maps (2048 segment tables of 2 GiB); KVM's gmap grows further
_GMAP_LIMIT: Final = 1 << 42
_SEGS_PER_TABLE: Final = 2048
#: intercept-count names of DIAG notifications, by DIAG code (made once each)
_NOTIFY_NAMES: dict[int, str] = {}


class PvError(HypervisorError):
    """A protected-virtualisation step failed: ``cmd`` names the KVM_PV step, rc/rrc come from the UV."""

    def __init__(self, cmd: int, msg: str, rc: int = 0, rrc: int = 0) -> None:
        super().__init__(f"{PV_CMD_NAMES.get(cmd, cmd)}: {msg}", rc, rrc)
        self.cmd = cmd
        self.detail = msg


def _fail(cmd: int, res: UvResult) -> PvError:
    return PvError(cmd, describe(res.cmd.code, res.rc, res.rrc), res.rc, res.rrc)


# -- the host side of PV: the UV client and its arena -------------------------------------------------


class PvHost:
    """The hypervisor's Ultravisor connection: the client, UV initialisation (``prot_virt=1``), the arena.

    Args:
        hv: the hypervisor (its allocator and host view).
        uv: the machine's Ultravisor as the host reaches it (``firmware.uv_gate.UvGate``).
    """

    def __init__(self, hv: Hypervisor, uv: UvGate) -> None:
        self.hv = hv
        self._sidas: dict[int, Sida] = {}  # SIDA designation -> its ``Sida`` (``sida``)
        start = hv.alloc.alloc_range(1 << 20)
        self.client = UvClient(uv, hv.host, HostArena(start, start + (1 << 20)))
        self.client.before_call = hv.before_uvc  # a debugger's stop point, from the first call (Query) on
        self.query = self.client.query()
        #: the Ultravisor's half of SIE for secure CPUs, behind its gate (``PvSie``)
        self.engine = uv.sie()  # (the engine finds the SIDA in the state description itself)
        if not uv.initialized():
            n = self.query.uv_base_stor_len
            origin = hv.alloc.alloc_range(n, above=1 << 31)
            res = self.client.call("init_uv", stor_origin=origin, stor_len=n)
            if not res.ok:
                raise PvError(KVM_PV_ENABLE, f"Ultravisor initialisation failed: {res}", res.rc, res.rrc)
            log.info("Ultravisor initialised with %#x bytes at %#x", n, origin)

    def sida(self, page: SiePage) -> Sida:
        """The SIDA of ``page`` as the hypervisor touches it: host storage, checked at every access (one
        ``Sida`` per SIDA designation: it holds the origin and size alone)."""
        sidad = page.sie_block.sidad
        sida = self._sidas.get(sidad)
        if sida is None:
            sida = self._sidas[sidad] = Sida(self.hv.host, sidad & ~0xFFF, ((sidad & 0xFF) + 1) << 12)
        return sida


# -- one secure VM ------------------------------------------------------------------------------------


class PvVm:
    """The secure side of one VM: handles, donated storage, the gmap, SIDAs and the secure vCPUs' state.

    Created by ``enable`` (KVM_PV_ENABLE); ``disable`` (KVM_PV_DISABLE) turns the VM back into a normal one.
    """

    def __init__(self, vm: Vm) -> None:
        hv = vm.hv
        if hv.ultravisor is None:
            raise PvError(KVM_PV_ENABLE, "this machine has no Ultravisor")
        if vm.memory_size > _GMAP_LIMIT:
            raise PvError(KVM_PV_ENABLE, "secure guests of zuv have at most 4 TiB (one region-third table)")
        self.vm = vm
        self.hv = hv
        self.host = hv.pv_host()
        self.client = self.host.client
        self.engine = self.host.engine
        self.handle = 0
        self.cpu_handles: dict[int, int] = {}
        #: vCPU address -> the hardware CPU the Ultravisor gave back when its secure CPU was destroyed
        self._released: dict[int, CpuHandle] = {}
        self.cpu_stor: dict[int, int] = {}
        #: storage donated to the Ultravisor: (what, host address, length), as KVM keeps it to free it later
        self.donated: list[tuple[str, int, int]] = []
        self.possibly_secure: set[int] = set()  # guest pages that may be secure (Linux: PG_arch_1)
        self.ext: dict[int, dict[str, int]] = {}
        #: floating external interruptions ("service": its parameter): any vCPU enabled for one takes it
        self.floating: dict[str, int] = {}
        self.restart: set[int] = set()
        self.emergency: dict[int, set[int]] = {}
        self.exports = 0
        self.imports = 0
        self._arena_range = (0, 0)
        self.asce = 0
        self.verified = False

    # -- lifecycle ------------------------------------------------------------------------------------

    def _arena(self) -> HostArena:
        q = self.host.query
        size = self.vm.memory_size
        tables = -(-(size >> 20) // _SEGS_PER_TABLE)  # segment tables of the gmap
        need = (tables + 1) * 0x8000 + (size >> 20) * 0x800 + q.conf_base_phys_stor_len
        need += q.conf_base_phys_stor_len
        need += self.hv.ultravisor.query.var_stor_len(size) + 0x4000 + 2 * PAGE_SIZE
        need += len(self.vm.vcpus) * (q.cpu_stor_len + 2 * PAGE_SIZE)
        need = (need + (1 << 20) - 1) & ~((1 << 20) - 1)
        start = self.hv.alloc.alloc_range(need)
        self._arena_range = (start, need)
        return HostArena(start, start + need)

    def _build_gmap(self, arena: HostArena) -> int:
        """DAT tables mapping guest absolute A to host mso + A (KVM's gmap); returns the ASCE: a segment
        table for up to 2 GiB, else a region-third table over one segment table per 2 GiB (as KVM's
        ``gmap_create`` picks the ASCE type by the guest's size)."""
        view = self.hv.host
        n_seg = self.vm.memory_size >> 20
        seg_tables = []
        for first in range(0, n_seg, _SEGS_PER_TABLE):
            st = arena.alloc(0x4000, 0x4000)
            segs = []
            for sx in range(first, min(first + _SEGS_PER_TABLE, n_seg)):
                pt = arena.alloc(0x800, 0x800)
                base = self.vm.mso + (sx << 20)
                view.write(pt, struct.pack(">256Q", *range(base, base + (1 << 20), PAGE_SIZE)))
                segs.append(pt)
            pad = _SEGS_PER_TABLE - len(segs)
            view.write(st, struct.pack(f">{len(segs)}Q", *segs) + struct.pack(">Q", _SEG_INVALID) * pad)
            seg_tables.append(st)
        if len(seg_tables) == 1:
            return seg_tables[0] | _ASCE_P | _DT_SEGMENT | _TL_FULL
        r3 = arena.alloc(0x4000, 0x4000)
        entries = [st | _DT_REGION3 | _TL_FULL for st in seg_tables]
        pad = _SEGS_PER_TABLE - len(entries)
        view.write(r3, struct.pack(f">{len(entries)}Q", *entries)
                   + struct.pack(">Q", _REGION_INVALID | _DT_REGION3) * pad)  # fmt: skip
        return r3 | _ASCE_P | _DT_REGION3 | _TL_FULL

    def enable(self) -> None:
        """KVM_PV_ENABLE: Create Secure Configuration and a secure CPU per vCPU; rolls back on failure."""
        vm, q = self.vm, self.host.query
        arena = self._arena()
        try:
            self.asce = self._build_gmap(arena)
            base = arena.alloc(q.conf_base_phys_stor_len, q.conf_base_phys_stor_len)
            var_len = self.hv.ultravisor.query.var_stor_len(vm.memory_size)  # type: ignore[attr-defined]
            var = arena.alloc(var_len)
            sca = arena.alloc(0x4000, 0x4000)
            res = self.client.call(
                "create_sec_conf",
                conf_base_stor_origin=base,
                conf_virt_stor_origin=var,
                guest_stor_origin=0,
                guest_stor_len=vm.memory_size,
                guest_sca=sca,
                guest_asce=self.asce,
            )
            if not res.ok:
                if res.rc & 0x8000:
                    self.client.call("destroy_sec_conf", handle=res.block.guest_handle)
                raise _fail(KVM_PV_ENABLE, res)
            self.handle = int(res.block.guest_handle)
            self.donated = [("configuration base storage", base, q.conf_base_phys_stor_len),
                            ("configuration variable storage", var, var_len)]  # fmt: skip
            for addr, v in sorted(vm.vcpus.items()):
                sida = arena.alloc(PAGE_SIZE)
                self.hv.host.write(sida, bytes(PAGE_SIZE))
                v.sd.sidad = sida  # one page: size bits 0
                stor = arena.alloc(q.cpu_stor_len)
                res = self.client.call(
                    "create_sec_cpu",
                    guest_handle=self.handle,
                    stor_origin=stor,
                    state_origin=v.page_addr,
                    num=addr,
                )
                if not res.ok:
                    raise _fail(KVM_PV_ENABLE, res)
                self.cpu_handles[addr] = int(res.block.cpu_handle)
                self.cpu_stor[addr] = stor
                self.donated.append((f"secure CPU {addr} storage", stor, q.cpu_stor_len))
        except BaseException:
            self._teardown()
            raise
        for addr, v in vm.vcpus.items():
            sd = v.sd
            sd.sdf = SDF_PV
            sd.pv_handle_cpu = self.cpu_handles[addr]
            sd.pv_handle_config = self.handle
            self.engine.adopt(sd.pv_handle_cpu, v.cpu)  # the hardware CPU now belongs to the Ultravisor
            v._cpu = None  # noqa: SLF001 - the vCPU's registers now belong to the Ultravisor
            v.set_operating(False)
            self.ext[addr] = {}
            self.emergency[addr] = set()
        vm.pv = self
        vm.memory.on_secure = self._make_accessible
        log.info("VM %s is secure: configuration %#x, %d CPUs", vm.name, self.handle, len(self.cpu_handles))

    def _teardown(self) -> None:
        for addr, h in list(self.cpu_handles.items()):
            self.client.call("destroy_sec_cpu", handle=h)
            cpu = self.engine.release(h)  # scrubbed when it ran the secure CPU
            if cpu is not None:
                self._released[addr] = cpu
            del self.cpu_handles[addr]
        if self.handle:
            self.client.call("destroy_sec_conf", handle=self.handle)
            self.handle = 0
        call, mso = self.client.call, self.vm.mso
        with self.hv.hardware.owner_batch():  # no CPU runs here: the CPUs flush their TLBs once, at the end
            for g in sorted(self.possibly_secure):
                call("destr_sec_stor", paddr=mso + g)
        self.possibly_secure.clear()
        if self._arena_range[1]:
            self.hv.alloc.free_range(*self._arena_range)
            self._arena_range = (0, 0)

    def disable(self, reset_cpus: bool = True) -> None:
        """KVM_PV_DISABLE: destroy the secure CPUs and the configuration, then destroy every page that may
        still be secure; the vCPUs become normal again, stopped (with ``reset_cpus`` their registers are
        cleared: a secure CPU's registers never go back to the host; a VM that never ran secure keeps its)."""
        vm = self.vm
        self._teardown()
        for addr, v in vm.vcpus.items():
            cpu = self._released.pop(addr, None)
            if cpu is not None:
                v._cpu = cpu  # noqa: SLF001
                self.hv.engine.forget(cpu)
                if reset_cpus:
                    cpu.reset_clear()
            sd = v.sd
            sd.sdf = SDF_NORMAL
            sd.pv_handle_cpu = sd.pv_handle_config = 0
            sd.sidad = 0
            sd.iictl = IICTL_NONE
            v.set_operating(False)
        vm.pv = None
        vm.memory.on_secure = None
        log.info("VM %s is not secure any more", vm.name)

    def set_sec_parms(self, header: bytes) -> None:
        """KVM_PV_SET_SEC_PARMS: hand a host copy of the SE header (at most 8 KiB) to the Ultravisor."""
        if not 0 < len(header) <= MAX_HEADER:
            raise PvError(KVM_PV_SET_SEC_PARMS, f"SE header of {len(header)} bytes (at most 8 KiB)")
        start = self._hdr_pages()
        self.hv.host.write(start, header)
        res = self.client.call("set_sec_conf_params", guest_handle=self.handle, sec_header_origin=start,
                               sec_header_len=len(header))  # fmt: skip
        if not res.ok:
            raise _fail(KVM_PV_SET_SEC_PARMS, res)

    def _hdr_pages(self) -> int:
        addr = getattr(self, "_hdr_addr", 0)
        if not addr:
            start, n = self._arena_range
            addr = self._hdr_addr = start + n - 2 * PAGE_SIZE
        return addr

    def unpack(self, addr: int, size: int, tweak: int) -> None:
        """KVM_PV_UNPACK: Unpack every page of one component (``tweak[1]`` = the page's offset)."""
        if addr & 0xFFF or size & 0xFFF:
            raise PvError(KVM_PV_UNPACK, f"component {addr:#x}+{size:#x} is not page aligned")
        with self.hv.hardware.owner_batch():  # no CPU runs here: the CPUs flush their TLBs once, at the end
            done, res = self.client.unpack_range(self.handle, addr, size, tweak)
        self.possibly_secure.update(range(addr, addr + done, PAGE_SIZE))
        if res is not None:
            raise _fail(KVM_PV_UNPACK, res)

    def verify(self) -> None:
        """KVM_PV_VERIFY."""
        res = self.client.call("verify_img", handle=self.handle)
        if not res.ok:
            raise _fail(KVM_PV_VERIFY, res)
        self.verified = True

    def set_cpu_state(self, v: Vcpu, state: int) -> UvResult:
        """KVM_SET_MP_STATE of a secure vCPU: Set CPU State (STP, OPR, OPR_LOAD); the SD follows."""
        res = self.client.call("cpu_set_state", cpu_handle=self.cpu_handles[v.address], state=state)
        if res.ok:
            v.set_operating(state != CPU_STATE_STP)
        return res

    def prep_reset(self) -> None:
        """KVM_PV_PREP_RESET."""
        res = self.client.call("prepare_reset", handle=self.handle)
        if not res.ok:
            raise _fail(KVM_PV_PREP_RESET, res)

    def unshare_all(self) -> None:
        """KVM_PV_UNSHARE_ALL."""
        res = self.client.call("set_unshare_all", handle=self.handle)
        if not res.ok:
            raise _fail(KVM_PV_UNSHARE_ALL, res)

    def cpu_reset(self, v: Vcpu, kind: str) -> None:
        """KVM_S390_{NORMAL,INITIAL,CLEAR}_RESET of a secure vCPU ("normal", "initial", "clear")."""
        cmd = {"normal": "cpu_reset", "initial": "cpu_reset_initial", "clear": "cpu_reset_clear"}[kind]
        res = self.client.call(cmd, handle=self.cpu_handles[v.address])
        if not res.ok:
            raise HypervisorError(f"{kind} reset of secure CPU {v.address}: {res}", res.rc, res.rrc)
        self.ext[v.address].clear()
        self.emergency[v.address].clear()
        self.restart.discard(v.address)

    def restart_cpu(self, v: Vcpu) -> None:
        """Make a restart interruption pending for a secure vCPU (injected at its next entry) and start it
        if it is stopped, as KVM_S390_RESTART and SIGP RESTART do."""
        self.restart.add(v.address)
        if not v.operating:
            self.set_cpu_state(v, CPU_STATE_OPR)

    # -- storage ----------------------------------------------------------------------------------------

    def _make_accessible(self, e: SecureStorageAccess) -> None:
        """The host touched a secure guest page (PGM 0x3D): export it so the access can be retried."""
        res = self.client.call("conv_from_sec_stor", paddr=e.addr & ~0xFFF)
        if not res.ok:
            raise HypervisorError(f"host access to {e.addr:#x} cannot be resolved: {res}", res.rc, res.rrc)
        self.exports += 1

    def import_page(self, gaddr: int) -> UvResult:
        """Convert to Secure Storage of one guest page (after a 0x3E)."""
        page = gaddr & ~0xFFF
        res = self.client.call("conv_to_sec_stor", guest_handle=self.handle, gaddr=page)
        if res.ok:
            self.possibly_secure.add(page)
            self.imports += 1
        return res

    # -- running -----------------------------------------------------------------------------------------

    def pending_ext(self, v: Vcpu) -> dict[str, int]:
        """Local external interruptions the hypervisor holds for a secure vCPU (the floating ones are in
        ``floating``)."""
        return self.ext[v.address]

    def _deliverable(self, v: Vcpu) -> tuple[int, int, int, int] | None:
        """(iictl, eic, param, cpu address) of the interruption to inject now, from the SD's PSW and CR0."""
        if v.address in self.restart:
            return IICTL_RESTART, 0, 0, 0
        sd = v.sd
        if sd.psw_mask & PSW_MASK_EXT:
            cr0 = sd.gcr[0]
            ext = self.ext[v.address]
            em = self.emergency[v.address]
            if em and cr0 & (1 << 14):
                return IICTL_EXT, 0x1201, 0, min(em)
            if "external_call" in ext and cr0 & (1 << 13):
                return IICTL_EXT, 0x1202, 0, ext["external_call"]
            if "service" in self.floating and cr0 & (1 << 9):
                return IICTL_EXT, 0x2401, self.floating["service"], 0
        if sd.psw_mask & PSW_MASK_IO and self.vm.channel.deliverable(sd.gcr[6]):
            return IICTL_IO, 0, 0, 0  # taken from the channel subsystem at the injection
        return None

    def interrupt_ready(self, v: Vcpu) -> bool:
        """True if an interruption can be injected into the vCPU now."""
        return self._deliverable(v) is not None

    def timer_deadline(self, v: Vcpu) -> int | None:
        """Clock-comparator deadline of an enabled secure vCPU (the SD shows CKC, CPU timer and CR0)."""
        sd = v.sd
        if not sd.psw_mask & PSW_MASK_EXT:
            return None
        out = []
        if sd.gcr[0] & (1 << 11):
            out.append(sd.ckc)
        if sd.gcr[0] & (1 << 10):
            t = sd.cputm - (1 << 64) if sd.cputm >> 63 else sd.cputm
            out.append(self.hv.clock.now() + max(t, 0) + 1)
        return min(out) if out else None

    def insn_count(self, v: Vcpu) -> int:
        """Instructions the vCPU's hardware CPU executed."""
        return self.engine.insn_count(self.cpu_handles.get(v.address, 0))

    def purge_tlb(self) -> None:
        """IPTE / IDTE on the gmap the hypervisor gave the Ultravisor: every CPU forgets the guest's
        translations (the host changed a page-table entry)."""
        if self.handle:
            self.engine.purge_tlb(self.handle)

    def halt(self) -> None:
        """Ask the hardware CPUs to leave SIE soon."""
        self.engine.halt(list(self.cpu_handles.values()))  # a copy: a teardown may empty the map meanwhile

    def enter(self, v: Vcpu, count: int, timeout_us: int) -> SieExit:
        """Inject what is deliverable (iictl), then SIE on the vCPU's hardware CPU."""
        sd = v.sd
        if sd.iictl == IICTL_NONE:
            d = self._deliverable(v)
            if d is not None:
                iictl, eic, param, src = d
                sd.iictl = iictl
                if iictl == IICTL_RESTART:
                    self.restart.discard(v.address)
                elif iictl == IICTL_IO:
                    taken = self.vm.channel.take(sd.gcr[6])
                    assert taken is not None
                    sid, sd.io_int_parm, sd.io_int_word = taken
                    sd.subchannel_id, sd.subchannel_nr = sid >> 16, sid & 0xFFFF
                else:
                    sd.eic, sd.eiparams, sd.extcpuaddr = eic, param, src
                    if eic == 0x2401:
                        del self.floating["service"]
                    elif eic == 0x1202:
                        del self.ext[v.address]["external_call"]
                    elif eic == 0x1201:
                        self.emergency[v.address].discard(src)
        io_request = self.vm.channel.request_bits()  # the guest is disabled for these: 0x18 once it enables
        return self.engine.run(v.page, count, timeout_us, self._ext_request(v), io_request)

    def _ext_request(self, v: Vcpu) -> int:
        """CR0 subclass bits of the external interruptions held for ``v`` that are still pending after the
        injection (the guest is disabled for them): the SIE's external request, so that the guest's
        enabling ends the SIE (a guest spinning enabled for a service signal would otherwise never get it)."""
        bits = (1 << 9) if "service" in self.floating else 0
        if "external_call" in self.ext[v.address]:
            bits |= 1 << 13
        if self.emergency[v.address]:
            bits |= 1 << 14
        return bits

    def handle_exit(self, v: Vcpu, ex: SieExit) -> bool:
        """Handle a secure vCPU's SIE exit; True if the guest made progress."""
        code = ex.icptcode
        if ex.host_pgm in (0x3E, 0x3F):
            gaddr = ex.teid & ~0xFFF
            if ex.host_pgm == 0x3F:  # a frame still secure for someone else: destroy, else export
                res = self.client.call("destr_sec_stor", paddr=self.vm.mso + gaddr)
                if not res.ok:
                    self.client.call("conv_from_sec_stor", paddr=self.vm.mso + gaddr)
            res = self.import_page(gaddr)
            if not res.ok and res.rc != 0x0104:
                self._crash(v, f"guest page {gaddr:#x} cannot be made secure ({res})")
            return True
        if code == ICPT_PV_PREF:
            for p in (v.sd.prefix, v.sd.prefix + PAGE_SIZE):
                res = self.import_page(p)
                if not res.ok and res.rc != 0x0104:
                    self._crash(v, f"prefix page {p:#x} cannot be made secure ({res})")
            return True
        if code == ICPT_PV_INSTR:
            self._pv_instruction(v)
            return True
        if code == ICPT_PV_NOTIFY:
            self._pv_notification(v)
            return True
        if code in (ICPT_EXTREQ, ICPT_IOREQ):  # the guest enabled for a held interruption: the next entry
            return True  # injects it
        if code == ICPT_WAIT:
            mask = v.sd.psw_mask
            if mask & PSW_MASK_WAIT and not mask & (0x7 << 56 | 1 << 50):
                v.disabled_wait = v.sd.psw_addr
                self.set_cpu_state(v, CPU_STATE_STP)
                return True
            return False
        if code == ICPT_VALIDITY:
            vir = v.sd.ipb >> 16
            self._crash(v, f"validity interception {vir:#06x}: {VIR_NAMES.get(vir, 'unknown reason')}")
            return True
        if code == ICPT_STOP:
            v.set_operating(False)
            return True
        if ex.reason == "check_stop":
            self._crash(v, f"secure CPU check-stopped: {ex.detail}")
            return True
        if ex.reason == "breakpoint":
            return True
        return True  # host interruption (time slice)

    def _crash(self, v: Vcpu, why: str) -> None:
        v.detail = why
        v.set_operating(False)
        log.warning("VM %s CPU %d: %s", self.vm.name, v.address, why)

    # -- 0x68: emulate for the Ultravisor -----------------------------------------------------------------

    def _pv_instruction(self, v: Vcpu) -> None:
        sd, regs = v.sd, v.page.pv_grregs
        ipa = sd.ipa
        vm = self.vm
        try:
            if ipa == 0x8302:
                self._diag(v, regs[5])
                vm._count(f"DIAG {regs[5]:#x}")  # noqa: SLF001
            elif ipa == 0xB220:
                self._servc(v)
                vm._count("SERVC")  # noqa: SLF001
            elif ipa == 0xB27D:
                cc, new_r0, block = stsi(vm.info, 3, regs[0], regs[1], len(vm.vcpus))
                if block is not None:
                    self.host.sida(v.page).write(0, block)
                if new_r0 is not None:
                    regs[0] = new_r0
                v.set_cc(cc)
                vm._count("STSI")  # noqa: SLF001
            elif ipa == 0xAE24:
                cc, status = pv_sigp(self, v, regs[5] & 0xFF, regs[4] & 0xFFFF, regs[3])
                if status is not None:
                    regs[2] = status
                v.set_cc(cc)
                vm._count("SIGP")  # noqa: SLF001
            else:  # the channel subsystem, its blocks in the SIDA (``channel_io``)
                cc = vm.channel.secure_instruction(ipa, regs, self.host.sida(v.page), sd.gcr[6])
                if cc is not None:
                    v.set_cc(cc)
                vm._count(f"I/O {ipa:#06x}")  # noqa: SLF001
        except ProgramException as e:
            sd.iictl = IICTL_SPECIFICATION if e.code == 0x06 else 0x11
            log.debug("VM %s CPU %d: program exception %#x injected: %s", vm.name, v.address, e.code, e.why)

    def _diag(self, v: Vcpu, code: int) -> None:
        regs = v.page.pv_grregs
        if code == 0x500:
            regs[2] = self.hv.virtio_notify(self.vm, regs[1], regs[2], regs[3], regs[4])
            return
        if code == 0x308:
            self._diag308(v)
            return
        if code == 0x288:  # R1, R1+1 and R3 as registers 0, 1 and 2 (the Ultravisor checked R1's parity)
            diag288(self.vm, 0, regs[0], regs[1], regs[2])
            return
        if code == 0x10:
            # release pages, R1 and R3 as registers 0 and 2: the range checked as for every guest (KVM's
            # diag_release_pages: a specification exception for a bad one); the host cannot discard a
            # secure page's contents without the Ultravisor, and the DIAGNOSE is a hint: the pages stay
            release_ranges(regs[0], regs[2], v.sd.prefix)
            return
        raise ProgramException(0x06, why=f"DIAGNOSE {code:#x} is not supported")

    def _diag308(self, v: Vcpu) -> None:
        """DIAGNOSE 0x308 of a secure guest, as QEMU's handle_diag_308 takes it: the Ultravisor gives R1's
        value as register 0, R1+1 as 1 and the subcode as 2, and the IPL parameter block of subcodes 5 (set)
        and 6 (store) in the SIDA; the response code goes to register 1. The secure IPL subcodes (8, 9, 10)
        and the re-IPLs are refused with a specification exception (7.7), as is a block outside the guest's
        storage (QEMU's addressing exception cannot be injected into a secure guest, 7.5)."""
        regs = v.page.pv_grregs
        subcode, addr = regs[2], regs[0]
        if subcode not in (5, 6):
            raise ProgramException(0x06, why=f"DIAG 0x308 subcode {subcode:#x}: not for a secure guest")
        if addr & 0xFFF:
            raise ProgramException(0x06, why="IPL parameter block not on a 4 KiB boundary")
        if addr + 0x1000 > self.vm.memory_size:
            raise ProgramException(0x06, why="IPL parameter block beyond the guest's storage")
        sida = self.host.sida(v.page)
        if subcode == 5:
            length = int.from_bytes(sida.read(0, 4), "big")
            if 8 <= length <= 0x1000:
                self.vm.ipl_parameters = sida.read(0, length)
                regs[1] = 0x0001
            else:
                regs[1] = 0x0402
        elif self.vm.ipl_parameters is None:
            regs[1] = 0x0102
        else:
            sida.write(0, self.vm.ipl_parameters)
            regs[1] = 0x0001

    def _servc(self, v: Vcpu) -> None:
        if self.floating.get("service", 0) & ~3:  # busy until a vCPU took the pending completion
            v.set_cc(2)
            return
        regs = v.page.pv_grregs
        sida = self.host.sida(v.page)
        res = self.vm.sclp.service_call(SidaSccb(sida, regs[4], self.vm.memory_size), regs[2], regs[4])
        self.floating["service"] = merge_service_parameter(self.floating.get("service"), res.ext_param)
        v.set_cc(0)

    # -- 0x6C: the Ultravisor tells ----------------------------------------------------------------------

    def _pv_notification(self, v: Vcpu) -> None:
        sd, regs = v.sd, v.page.pv_grregs
        if sd.ipa == 0x8302:
            code = regs[5]
            name = _NOTIFY_NAMES.get(code)
            if name is None:
                name = _NOTIFY_NAMES[code] = f"DIAG {code:#x} (notification)"
            self.vm._count(name)  # noqa: SLF001
            if code == 0x308 and regs[2] in (0, 1):
                self.reset_protocol(v, clear=regs[2] == 0)
            return
        if sd.ipa == 0xB210:  # SET PREFIX, done: the next entry's prefix check (0x70) imports the new area
            self.vm._count("SPX (notification)")  # noqa: SLF001
            return
        if sd.ipa == 0xAE24:  # SIGP the Ultravisor performed (SET PREFIX): emulated as KVM does at a 0x6C,
            pv_sigp(self, v, regs[5] & 0xFF, regs[4] & 0xFFFF, regs[3])  # its result not the guest's
            self.vm._count("SIGP (notification)")  # noqa: SLF001
            return
        if sd.ipa == 0xB9A4:  # Remove Shared Access of a pinned page: unpin, the guest re-issues the UVC
            sida = self.host.sida(v.page).read(0, 0x30)
            gaddr = struct.unpack_from(">Q", sida, 0x20)[0]
            self.client.call("unpin_page_shared", guest_handle=self.handle, gaddr=gaddr)
            self.vm._count("UVC (notification)")  # noqa: SLF001

    def reset_protocol(self, initiator: Vcpu, clear: bool) -> None:
        """The guest asked for a reset (DIAG 0x308 subcode 0 or 1): stop every CPU, Unshare All, Prepare
        Reset, reset the CPUs (clear: every CPU clear-reset; else initial reset of the initiator, normal of
        the others), then Set CPU State OPR_LOAD on the initiator (its PSW from guest absolute 0)."""
        vm = self.vm
        for x in vm.vcpus.values():
            self.set_cpu_state(x, CPU_STATE_STP)
        self.unshare_all()
        self.prep_reset()
        self.floating.clear()  # the subsystem reset clears floating interruptions (QEMU's machine reset)
        for x in vm.vcpus.values():
            self.cpu_reset(x, "clear" if clear else ("initial" if x is initiator else "normal"))
        res = self.set_cpu_state(initiator, CPU_STATE_OPR_LOAD)
        if not res.ok and res.rc == 0x0102:  # absolute page 0 is not secure: import it, then load
            self.import_page(0)
            res = self.set_cpu_state(initiator, CPU_STATE_OPR_LOAD)
        if not res.ok:
            self._crash(initiator, f"reset of the secure guest failed: {res}")

"""The SIE instruction of a program running in the LPAR (level 2): format-2 state descriptions, guest storage
through MSO/MSL and the host program's DAT, interception codes stored in the state description.

A level-2 program (a hypervisor such as KVM, or kvm-unit-tests' SIE tests) runs its guests with SIE; the
machine then acts as the hardware: it reads the state description (SD, Linux ``struct kvm_s390_sie_block``)
at the operand address, runs the guest on a CPU of its own (one unicorn CPU per host CPU, made at the first
SIE) until the guest needs its host, and stores the guest's state and the interception back into the SD.

Architecture followed (as Linux ``arch/s390/kvm`` and kvm-unit-tests ``lib/s390x/sie.c`` use it):

- Guest storage: a guest absolute address plus MSO is a host *virtual* address, translated with the ASCE in
  the host's CR1 at SIE (the host loads its "guest ASCE" there before SIE); it must not exceed MSL (the
  start of the last 1 MiB block) unless the SD's storage-limit-suppression flag (``CPUSTAT_SM``) is on, in
  which case MSO and MSL are ignored. A host translation exception ends SIE as a program interruption of the
  host, with the old PSW at the SIE instruction and the TEID of the host virtual address.
- Registers: guest GRs 0-13, the floating-point and access registers are the host's at SIE (the host loads
  them before SIE and stores them after); GRs 14 and 15 are ``gg14``/``gg15``; the PSW, CRs, prefix, CPU
  timer and clock comparator are the SD's. At the end all of them go back to the same places.
- Interceptions: instructions the machine does not interpret in a guest (DIAG, SIGP, SERVC, STSI, I/O, UVC,
  SIE, ...) end SIE with code 0x04 and IPA/IPB, the PSW after the instruction; program interruptions with
  code 0x08 (``iprcc``, ``pgmilc``, the PSW as the interruption would have stored it) when the SD's
  ``ictl`` asks for them (``ICTL_PINT``), operation exceptions with 0x2C under ``ICTL_OPEREXC``; an
  enabled or disabled wait with 0x1C; a stopped guest CPU with 0x28; an SD the machine cannot run (format,
  relocation; format 4 on a machine without an Ultravisor) with a validity interception 0x20 and its reason
  in ``ipb``. A format-4 SD (``sdf = 2``) on a machine with an Ultravisor runs a secure guest
  (``lpar_pvsie``). Other program interruptions are
  interpreted: the guest takes them through its own lowcore.
- STFLE in the guest stores the facility list the SD's ``fac`` field designates (format 0, below 2 GiB).
- A time slice (10 ms) that ends with nothing to intercept returns to the host with code 0, the PSW after
  SIE: the host's own interruptions are then taken, and its SIE loop enters again.
"""

from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import dat
from emulator.hw.cpu import (
    CR0_EDAT,
    NULLIFYING,
    OPERATING,
    PSW_MASK_DAT,
    STOPPED,
    Cpu,
    CpuExit,
    GuestIntercept,
    GuestMapping,
    Insn,
    prefixed,
)
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sie import (
    CPUSTAT_STOPPED,
    ICPT_INST,
    ICPT_OPEREXC,
    ICPT_PARTEXEC,
    ICPT_PROGI,
    ICPT_STOP,
    ICPT_VALIDITY,
    ICPT_WAIT,
    SDF_PV,
    SieBlock,
    ipa_ipb,
)
from emulator.hw.sysinfo import FAC_EDAT2
from emulator.hw.tod import TodClock
from emulator.machine.lpar_pvsie import LparPvSie

if TYPE_CHECKING:
    from firmware.uv import Ultravisor

__all__ = ["LparSie", "ICTL_PINT", "ICTL_OPEREXC", "CPUSTAT_SM", "SCLP_CPU_FEATURE_SIEF2"]

ICTL_OPEREXC: Final = 0x80000000
ICTL_PINT: Final = 0x20000000
#: ``eca``: MOVE PAGE is interpreted (partial-execution interception when a host page is missing)
ECA_MVPGI: Final = 0x01000000
#: ``cpuflags``: storage-limit suppression (guest absolute = host virtual, MSO/MSL ignored)
CPUSTAT_SM: Final = 0x00000080
#: Read SCP Info CPU entry, first feature byte: the SIE facility (SIEF2) is installed.
SCLP_CPU_FEATURE_SIEF2: Final = 0x08
#: validity-interception reason codes (``ipb`` bits 0-15), as KVM's vsie reports them
VIR_FORMAT: Final = 0x0001  # an SD format this machine does not run (sdf)
VIR_MSO: Final = 0x1001  # MSO/MSL not 1 MiB aligned, or MSL below MSO
VIR_PREFIX: Final = 0x1037  # the guest prefix lies beyond guest storage
SLICE_US: Final = 10_000
_SD_SIZE: Final = ctypes.sizeof(SieBlock)


class _HostPgm(Exception):  # noqa: N818 - an architectural event of the host, not an error
    """A host program interruption that ends SIE (host DAT or addressing for a guest access)."""


class _Relocation:
    """Guest absolute -> host absolute for one SIE entry: MSO/MSL (unless suppressed), then the host's DAT."""

    __slots__ = ("host", "buf", "mso", "limit", "asce", "edat", "edat2", "mapping")

    def __init__(self, host: Cpu, sd: SieBlock, buf: memoryview) -> None:
        self.host = host
        self.buf = buf
        suppressed = bool(sd.cpuflags & CPUSTAT_SM)
        self.mso = 0 if suppressed else sd.mso
        self.limit = None if suppressed else (sd.msl | 0xFFFFF) - sd.mso
        # the host's primary ASCE when the host runs with DAT on (as every hypervisor does); a host program
        # with DAT off has its guests' storage at host real addresses
        self.asce = host.cr(1) if host.psw[0] & PSW_MASK_DAT else None
        self.edat = bool(host.cr(0) & CR0_EDAT)
        self.edat2 = self.edat and host.has_facility(FAC_EDAT2)
        self.mapping = GuestMapping(self.to_host, None)

    def pte_real(self, vaddr: int) -> int | None:
        """The host real address of the page-table entry for host virtual ``vaddr`` (None: no host DAT, or an
        invalid region or segment entry, or a large page, on the way)."""
        if self.asce is None:
            return None
        buf, table_to_host = self.buf, self.host.table_to_host
        level = (self.asce >> 2) & 3  # 3 region-first ... 0 segment table
        origin = self.asce & ~0xFFF & 0xFFFFFFFFFFFFFFFF
        while True:
            index = (vaddr >> (20 + 11 * level)) & 0x7FF
            try:  # a table in secure storage is not the host's to read (emulator.hw.access)
                entry_abs = table_to_host(origin + index * 8)
            except ProgramException:
                return None
            if entry_abs + 8 > len(buf):
                return None
            entry = int.from_bytes(buf[entry_abs : entry_abs + 8], "big")
            if entry & 0x20 or (level == 0 and entry & 0x400):  # invalid; a segment entry's large frame
                return None
            if level == 0:
                return (entry & ~0x7FF & 0xFFFFFFFFFFFFFFFF) + ((vaddr >> 12) & 0xFF) * 8
            origin = entry & ~0xFFF & 0xFFFFFFFFFFFFFFFF
            level -= 1

    def to_host(self, guest_abs: int, write: bool, fetch: bool) -> int:
        limit = self.limit
        if limit is not None and guest_abs > limit:
            raise ProgramException(0x05, why=f"guest absolute {guest_abs:#x} is beyond the SD's MSL")
        host = self.host
        vaddr = (self.mso + guest_abs) & 0xFFFFFFFFFFFFFFFF
        try:
            if self.asce is not None:
                # the host's table fetches, checked as the host CPU's own (PGM 0x3D from secure storage)
                t = dat.translate(
                    self.buf, host.table_to_host, self.asce, vaddr, write, 0, self.edat, edat2=self.edat2
                )
                # a large frame (enhanced DAT) is an absolute address already
                absolute = t.address if t.absolute else host.real_to_abs(t.address)
            else:
                absolute = host.real_to_abs(vaddr)
        except ProgramException as e:
            why = f"host {e} for guest absolute {guest_abs:#x}"
            raise GuestIntercept(e.code, why, teid=e.teid or 0) from None
        if absolute >= host.mem.size:
            raise GuestIntercept(0x05, f"guest absolute {guest_abs:#x} maps beyond host storage",
                                 teid=vaddr & ~0xFFF)
        return absolute


class LparSie:
    """SIE for the programs of one machine's LPAR: one guest CPU per host CPU, made at its first SIE."""

    def __init__(
        self, memory: PhysicalMemory, clock: TodClock, facilities: bytes, ultravisor: Ultravisor | None = None
    ) -> None:
        self._memory = memory
        #: format-4 SIE (secure guests) when the machine has an Ultravisor
        self.pv = LparPvSie(ultravisor, memory) if ultravisor is not None else None
        self._buf = memory.buffer()
        self._clock = clock
        self._facilities = facilities
        self._guests: dict[int, Cpu] = {}
        #: SIE executions and their interception codes, for the curious (the console, tests)
        self.entries = 0
        self.intercepts: dict[int, int] = {}

    def close(self) -> None:
        """Release the guest CPUs."""
        for g in self._guests.values():
            g.close()
        self._guests.clear()

    def _guest_cpu(self, host: Cpu) -> Cpu:
        g = self._guests.get(host.address)
        if g is None:
            g = self._guests[host.address] = Cpu(self._memory, host.address, self._clock, self._facilities,
                                                 host.cpuid)
        return g

    def execute(self, host: Cpu, insn: Insn) -> None:
        """Perform SIE for ``host`` (the instruction ``insn``); raises ProgramException for the host."""
        sd_real = insn.address()
        if sd_real & 0x1FF:
            raise ProgramException(0x06, why=f"SIE state description {sd_real:#x} is not 512-byte aligned")
        # the SD is designated by a real address; the host CPU's real accesses are checked (addressing,
        # secure storage) like any other
        sd = SieBlock.from_buffer_copy(host.read_real(sd_real, _SD_SIZE))
        self.entries += 1
        if sd.sdf == SDF_PV and self.pv is not None:  # format 4: the Ultravisor runs the secure CPU
            code = self.pv.execute(host, insn, self._guest_cpu(host), sd_real)
            self.intercepts[code] = self.intercepts.get(code, 0) + 1
            return
        code = self._run(host, insn, sd)
        self.intercepts[code] = self.intercepts.get(code, 0) + 1
        host.write_real(sd_real, bytes(sd))

    def _validity(self, sd: SieBlock) -> int:
        """The reason the SD cannot be run (a validity interception), or 0."""
        if sd.sdf != 0:
            return VIR_FORMAT
        if not sd.cpuflags & CPUSTAT_SM and (sd.mso & 0xFFFFF or sd.msl & 0xFFFFF or sd.msl < sd.mso):
            return VIR_MSO
        return 0

    def _run(self, host: Cpu, insn: Insn, sd: SieBlock) -> int:
        """Run the guest of ``sd`` once; returns the interception code stored (0: none, back to the host)."""
        sd.icptcode = 0
        why = self._validity(sd)
        if why:
            return self._intercept(host, insn, sd, ICPT_VALIDITY, ipb=why << 16)
        if sd.cpuflags & CPUSTAT_STOPPED:
            return self._intercept(host, insn, sd, ICPT_STOP)
        g = self._guest_cpu(host)
        if self.pv is not None:  # the guest CPU may have held a secure CPU's registers
            self.pv.engine.drop_cpu(g)
        reloc = _Relocation(host, sd, self._buf)
        g.guest = reloc.mapping  # flushes the guest CPU's TLB: the host's tables may have changed
        g.guest_memory_size = reloc.limit + 1 if reloc.limit is not None else host.mem.size
        self._load(host, g, sd)
        pgm: list[tuple[int, int, int | None, int]] = []
        ictl = sd.ictl

        def observe(cpu: Cpu, code: int, ilc: int, teid: int | None, pc: int) -> bool:
            if ictl & ICTL_PINT or (code == 0x01 and ictl & ICTL_OPEREXC):
                pgm.append((code, ilc, teid, pc))
                cpu.request_halt()
                return True
            return False

        g.pgm_intercept = observe
        try:
            ex = g.run(timeout_us=SLICE_US)
        finally:
            g.pgm_intercept = None
        if pgm:
            code, ilc, teid, pc = pgm[0]
            self._store(host, g, sd)
            if code == 0x01 and ictl & ICTL_OPEREXC:
                sd.ipa, sd.ipb = ipa_ipb(self._fetch(g, pc))
                sd.psw_addr = pc
                return self._intercept(host, insn, sd, ICPT_OPEREXC)
            sd.iprcc, sd.pgmilc = code, ilc
            if teid is not None:  # the translation-exception code, 8 bytes at 0xe8 (Linux's ``tecmc``)
                struct.pack_into(">Q", memoryview(sd).cast("B"), 0xE8, teid & 0xFFFFFFFFFFFFFFFF)
            sd.psw_addr = pc if code in NULLIFYING else g.wrap(pc + ilc)
            return self._intercept(host, insn, sd, ICPT_PROGI)
        return self._exit(host, insn, g, sd, ex, reloc)

    @staticmethod
    def _fetch(g: Cpu, pc: int) -> bytes:
        try:
            return g.read_virtual(pc, 6)
        except ProgramException:
            return g.read_virtual(pc, 2)

    def _exit(self, host: Cpu, insn: Insn, g: Cpu, sd: SieBlock, ex: CpuExit, reloc: _Relocation) -> int:
        kind = ex.kind
        if (
            kind == "intercept"
            and ex.code in (0x10, 0x11)
            and sd.eca & ECA_MVPGI
            and self._mvpg_pei(g, sd, reloc)
        ):
            self._store(host, g, sd)  # the guest PSW still designates the MVPG: the host resolves and retries
            return self._intercept(host, insn, sd, ICPT_PARTEXEC)
        if kind == "intercept" and ex.code in (0x04, 0x05, 0x10, 0x11, 0x12, 0x38, 0x39, 0x3A, 0x3B, 0x3D):
            # the host's DAT (or storage) refused a guest access: a program interruption of the host at SIE
            self._store(host, g, sd)
            host.program_interrupt(ex.code, insn.ilen, ex.data.get("teid"), pc=insn.pc)
            return 0
        if kind == "insn":
            gi = ex.insn
            assert gi is not None
            sd.ipa, sd.ipb = ipa_ipb(gi.raw)
            # executed by EXECUTE: bit 7 of the status, the EXECUTE's length in bits 1-2 of the high nibble
            sd.icptstatus = gi.ex_ilen << 4 | 1 if gi.ex_ilen else 0
            gi.finish()  # the guest PSW designates the next instruction (after the EXECUTE for a target)
            self._store(host, g, sd)
            return self._intercept(host, insn, sd, ICPT_INST)
        self._store(host, g, sd)
        if kind in ("wait", "disabled_wait"):
            return self._intercept(host, insn, sd, ICPT_WAIT)
        if kind == "stopped":
            return self._intercept(host, insn, sd, ICPT_STOP)
        if kind == "check_stop":
            g.state = OPERATING  # the SD, not this CPU, holds the guest; the host decides what comes next
            return self._intercept(host, insn, sd, ICPT_VALIDITY, ipb=0x2000 << 16)
        # the slice ended (or a halt): back to the host with no interception, the host PSW after SIE
        insn.finish()
        return 0

    @staticmethod
    def _mvpg_pei(g: Cpu, sd: SieBlock, reloc: _Relocation) -> bool:
        """MOVE PAGE interpreted (``ECA_MVPGI``) met a host page that is not mapped: store the
        partial-execution identification, the real addresses of the host page-table entries of the first
        (0xc0) and second (0xc8) operand, and say so. Only for a guest running with DAT off, whose operands
        are guest real addresses; False when the instruction is no MVPG or an operand's host tables end above
        the page table (the host then takes the translation exception itself)."""
        pc = g.pc
        try:
            raw = g.read_virtual(pc, 4)
        except (ProgramException, GuestIntercept):
            return False
        if raw[:2] != b"\xb2\x54" or g.psw[0] & PSW_MASK_DAT:
            return False
        ptes = []
        for r in (raw[3] >> 4, raw[3] & 0xF):
            guest_abs = prefixed(g.wrap(g.gpr(r)) & ~0xFFF, g.prefix)
            pte = reloc.pte_real(reloc.mso + guest_abs)
            if pte is None:
                return False
            ptes.append(pte)
        struct.pack_into(">QQ", memoryview(sd).cast("B"), 0xC0, *ptes)
        return True

    def _intercept(self, host: Cpu, insn: Insn, sd: SieBlock, code: int, ipb: int | None = None) -> int:
        sd.icptcode = code
        if ipb is not None:
            sd.ipa, sd.ipb = 0, ipb
        insn.finish()
        return code

    def _load(self, host: Cpu, g: Cpu, sd: SieBlock) -> None:
        """The guest's state at SIE entry: from the SD and the host's registers."""
        gprs = host.gprs()
        for i in range(14):
            g.set_gpr(i, gprs[i])
        g.set_gpr(14, sd.gg14)
        g.set_gpr(15, sd.gg15)
        for i in range(16):
            g.set_fpr(i, host.fpr(i))
            g.set_ar(i, host.ar(i))
            g.write_cr(i, sd.gcr[i])
        g.set_fpc(host.fpc())
        g.set_prefix(sd.prefix)
        g.ckc = sd.ckc
        g.set_cpu_timer(sd.cputm)
        fac = sd.fac & 0x7FFFFFF8
        if fac:
            n = len(self._facilities)
            g.facilities = host.read_real(fac, n) if fac + n <= host.mem.size else self._facilities
        else:
            g.facilities = self._facilities
        g.set_psw(sd.psw_mask, sd.psw_addr)
        g.state = OPERATING
        g.flush_tlb()

    def _store(self, host: Cpu, g: Cpu, sd: SieBlock) -> None:
        """The guest's state at SIE exit: into the SD and the host's registers."""
        gprs = g.gprs()
        for i in range(14):
            host.set_gpr(i, gprs[i])
        sd.gg14, sd.gg15 = gprs[14], gprs[15]
        for i in range(16):
            host.set_fpr(i, g.fpr(i))
            host.set_ar(i, g.ar(i))
            sd.gcr[i] = g.cr(i)
        host.set_fpc(g.fpc())
        sd.psw_mask, sd.psw_addr = g.psw
        sd.prefix = g.prefix
        sd.ckc = g.ckc
        sd.cputm = g.cpu_timer & 0xFFFFFFFFFFFFFFFF
        if g.state == STOPPED:
            sd.cpuflags |= CPUSTAT_STOPPED

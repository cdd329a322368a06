"""The SIE instruction as the machine performs it: state descriptions, guest mapping, interception codes.

This module is the *hardware* half of running a guest (``secure-execution.md`` section 7): it owns the
unicorn ``Cpu`` of each virtual CPU and turns what the CPU reports (``CpuExit``) into the interception
code, IPA/IPB and guest PSW of the state description (SD), the way SIE ends on a real machine. The
hypervisor (``emulator.hypervisor.kvm``) only sees the SD, the SIDA and, for normal guests, the guest's
register file (which a normal guest's SIE shares with its host anyway).

For a secure guest (SD format 4, ``sdf = 2``) the Ultravisor's half of SIE lives in
``firmware.uv_sie`` (it needs the UV's view of secure CPUs); this module then only provides the
layouts and the codes.

Layouts: ``SieBlock`` is Linux's ``struct kvm_s390_sie_block`` (512 bytes) and ``SiePage`` its 4 KiB
``struct sie_page`` with the PV register save area ``pv_grregs`` at 0x380.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Final

from emulator.errors import ProgramException
from emulator.hw import seal
from emulator.hw.cpu import OPERATING, STOPPED, Cpu, CpuExit, GuestMapping, Insn
from emulator.hw.cpu_handle import CpuHandle, hardware_of

__all__ = [
    "SieBlock",
    "SiePage",
    "SieExit",
    "SieEngine",
    "ICPT_INST",
    "ICPT_PROGI",
    "ICPT_EXTREQ",
    "ICPT_IOREQ",
    "ICPT_WAIT",
    "ICPT_VALIDITY",
    "ICPT_STOP",
    "ICPT_OPEREXC",
    "ICPT_MCHKREQ",
    "ICPT_INT_ENABLE",
    "ICPT_PV_INSTR",
    "ICPT_PV_NOTIFY",
    "ICPT_PV_PREF",
    "ICPT_NAMES",
    "IICTL_NONE",
    "IICTL_MCHK",
    "IICTL_EXT",
    "IICTL_IO",
    "IICTL_RESTART",
    "IICTL_SPECIFICATION",
    "IICTL_OPERAND",
    "SDF_NORMAL",
    "SDF_PV",
    "CPUSTAT_STOPPED",
    "CPUSTAT_WAIT",
    "ipa_ipb",
]

# -- interception codes (kvm_host.h ICPT_*, secure-execution.md 7.3) ------------------------------------
ICPT_INST: Final = 0x04
ICPT_PROGI: Final = 0x08
ICPT_EXTREQ: Final = 0x10
ICPT_EXTINT: Final = 0x14
ICPT_IOREQ: Final = 0x18
ICPT_WAIT: Final = 0x1C
ICPT_VALIDITY: Final = 0x20
ICPT_STOP: Final = 0x28
ICPT_OPEREXC: Final = 0x2C
ICPT_PARTEXEC: Final = 0x38
ICPT_IOINST: Final = 0x40
ICPT_KSS: Final = 0x5C
ICPT_MCHKREQ: Final = 0x60
ICPT_INT_ENABLE: Final = 0x64
ICPT_PV_INSTR: Final = 0x68
ICPT_PV_NOTIFY: Final = 0x6C
ICPT_PV_PREF: Final = 0x70

ICPT_NAMES: Final = {
    0: "none (host interruption)",
    ICPT_INST: "instruction",
    ICPT_PROGI: "program interruption",
    ICPT_EXTREQ: "external request",
    ICPT_EXTINT: "external interruption",
    ICPT_IOREQ: "I/O request",
    ICPT_WAIT: "wait state",
    ICPT_VALIDITY: "validity",
    ICPT_STOP: "stop request",
    ICPT_OPEREXC: "operation exception",
    ICPT_PARTEXEC: "partial execution",
    ICPT_IOINST: "I/O instruction",
    ICPT_KSS: "keyless subset",
    ICPT_MCHKREQ: "mask notification (machine-check mask)",
    ICPT_INT_ENABLE: "mask notification (interruption enablement)",
    ICPT_PV_INSTR: "PV instruction",
    ICPT_PV_NOTIFY: "PV notification",
    ICPT_PV_PREF: "PV prefix not secure",
}

# -- interruption-injection control (iictl, secure-execution.md 7.5) ------------------------------------
IICTL_NONE: Final = 0x00
IICTL_MCHK: Final = 0x01
IICTL_EXT: Final = 0x02
IICTL_IO: Final = 0x03
IICTL_RESTART: Final = 0x04
IICTL_SPECIFICATION: Final = 0x10
IICTL_OPERAND: Final = 0x11

#: State-description formats (``sdf``): 0 = normal guest, 2 = secure guest (format 4).
SDF_NORMAL: Final = 0
SDF_PV: Final = 2

#: ``cpuflags`` bits (kvm_host.h CPUSTAT_*).
CPUSTAT_STOPPED: Final = 0x80000000
CPUSTAT_WAIT: Final = 0x10000000


@seal.admit
class SieBlock(ctypes.BigEndianStructure):
    """The state description (Linux ``struct kvm_s390_sie_block``), 512 bytes; offsets in the comments."""

    _pack_ = 1
    _fields_ = [
        ("cpuflags", ctypes.c_uint32),  # 0x000
        ("prefix_ibc", ctypes.c_uint32),  # 0x004: bit 1-18 prefix >> 13, bits 20-31 IBC
        ("reserved08", ctypes.c_uint8 * 4),  # 0x008
        ("prog0c", ctypes.c_uint32),  # 0x00c
        ("pv_handle_cpu", ctypes.c_uint64),  # 0x010 (format 4)
        ("pv_handle_config", ctypes.c_uint64),  # 0x018 (format 4)
        ("prog20", ctypes.c_uint32),  # 0x020
        ("reserved24", ctypes.c_uint8 * 4),  # 0x024
        ("cputm", ctypes.c_uint64),  # 0x028
        ("ckc", ctypes.c_uint64),  # 0x030
        ("epoch", ctypes.c_uint64),  # 0x038
        ("svcc", ctypes.c_uint32),  # 0x040
        ("lctl", ctypes.c_uint16),  # 0x044
        ("icpua", ctypes.c_uint16),  # 0x046
        ("ictl", ctypes.c_uint32),  # 0x048
        ("eca", ctypes.c_uint32),  # 0x04c
        ("icptcode", ctypes.c_uint8),  # 0x050
        ("icptstatus", ctypes.c_uint8),  # 0x051
        ("ihcpu", ctypes.c_uint16),  # 0x052
        ("reserved54", ctypes.c_uint8),  # 0x054
        ("iictl", ctypes.c_uint8),  # 0x055
        ("ipa", ctypes.c_uint16),  # 0x056
        ("ipb", ctypes.c_uint32),  # 0x058
        ("scaoh", ctypes.c_uint32),  # 0x05c
        ("fpf", ctypes.c_uint8),  # 0x060
        ("ecb", ctypes.c_uint8),  # 0x061
        ("ecb2", ctypes.c_uint8),  # 0x062
        ("ecb3", ctypes.c_uint8),  # 0x063
        ("scaol", ctypes.c_uint32),  # 0x064
        ("sdf", ctypes.c_uint8),  # 0x068
        ("epdx", ctypes.c_uint8),  # 0x069
        ("cpnc", ctypes.c_uint8),  # 0x06a
        ("reserved6b", ctypes.c_uint8),  # 0x06b
        ("todpr", ctypes.c_uint32),  # 0x06c
        ("gd", ctypes.c_uint32),  # 0x070
        ("reserved74", ctypes.c_uint8 * 12),  # 0x074
        ("mso", ctypes.c_uint64),  # 0x080
        ("msl", ctypes.c_uint64),  # 0x088
        ("psw_mask", ctypes.c_uint64),  # 0x090
        ("psw_addr", ctypes.c_uint64),  # 0x098
        ("gg14", ctypes.c_uint64),  # 0x0a0
        ("gg15", ctypes.c_uint64),  # 0x0a8
        ("reservedb0", ctypes.c_uint8 * 8),  # 0x0b0
        ("hpid", ctypes.c_uint8),  # 0x0b8
        ("reservedb9", ctypes.c_uint8 * 7),  # 0x0b9
        ("eiparams", ctypes.c_uint32),  # 0x0c0 (union with mcic)
        ("extcpuaddr", ctypes.c_uint16),  # 0x0c4
        ("eic", ctypes.c_uint16),  # 0x0c6
        ("reservedc8", ctypes.c_uint32),  # 0x0c8
        ("pgmilc", ctypes.c_uint16),  # 0x0cc
        ("iprcc", ctypes.c_uint16),  # 0x0ce
        ("dxc", ctypes.c_uint32),  # 0x0d0 (union with faddr)
        ("mcn", ctypes.c_uint16),  # 0x0d4
        ("perc", ctypes.c_uint8),  # 0x0d6
        ("peratmid", ctypes.c_uint8),  # 0x0d7
        ("peraddr", ctypes.c_uint64),  # 0x0d8
        ("eai", ctypes.c_uint8),  # 0x0e0
        ("peraid", ctypes.c_uint8),  # 0x0e1
        ("oai", ctypes.c_uint8),  # 0x0e2
        ("armid", ctypes.c_uint8),  # 0x0e3
        ("reservede4", ctypes.c_uint8 * 4),  # 0x0e4
        ("subchannel_id", ctypes.c_uint16),  # 0x0e8 (union with tecmc)
        ("subchannel_nr", ctypes.c_uint16),  # 0x0ea
        ("io_int_parm", ctypes.c_uint32),  # 0x0ec
        ("io_int_word", ctypes.c_uint32),  # 0x0f0
        ("reservedf4", ctypes.c_uint8 * 8),  # 0x0f4
        ("crycbd", ctypes.c_uint32),  # 0x0fc
        ("gcr", ctypes.c_uint64 * 16),  # 0x100
        ("sidad", ctypes.c_uint64),  # 0x180 (union with gbea)
        ("reserved188", ctypes.c_uint8 * 8),  # 0x188
        ("sdnxo", ctypes.c_uint64),  # 0x190
        ("reserved198", ctypes.c_uint8 * 8),  # 0x198
        ("fac", ctypes.c_uint32),  # 0x1a0
        ("reserved1a4", ctypes.c_uint8 * 20),  # 0x1a4
        ("cbrlo", ctypes.c_uint64),  # 0x1b8
        ("reserved1c0", ctypes.c_uint8 * 8),  # 0x1c0
        ("ecd", ctypes.c_uint32),  # 0x1c8
        ("reserved1cc", ctypes.c_uint8 * 18),  # 0x1cc
        ("pp", ctypes.c_uint64),  # 0x1de
        ("reserved1e6", ctypes.c_uint8 * 2),  # 0x1e6
        ("itdba", ctypes.c_uint64),  # 0x1e8
        ("riccbd", ctypes.c_uint64),  # 0x1f0
        ("gvrd", ctypes.c_uint64),  # 0x1f8
    ]

    @property
    def prefix(self) -> int:
        """The guest prefix (an 8 KiB-aligned guest absolute address)."""
        return ((self.prefix_ibc >> 13) & 0x3FFFF) << 13

    @prefix.setter
    def prefix(self, value: int) -> None:
        self.prefix_ibc = (self.prefix_ibc & 0x80001FFF) | (value & 0x7FFFE000)

    @property
    def mcic(self) -> int:
        """Machine-check interruption code for injection (overlays eiparams/extcpuaddr/eic)."""
        return self.eiparams << 32 | self.extcpuaddr << 16 | self.eic

    @mcic.setter
    def mcic(self, value: int) -> None:
        self.eiparams, self.extcpuaddr, self.eic = (
            value >> 32 & 0xFFFFFFFF,
            value >> 16 & 0xFFFF,
            value & 0xFFFF,
        )

    @property
    def sida_origin(self) -> int:
        """Host absolute address of the SIDA (``sidad`` without its size bits)."""
        return self.sidad & ~0xFFF

    @property
    def sida_size(self) -> int:
        """SIDA size in bytes: low 8 bits of ``sidad`` = pages - 1."""
        return ((self.sidad & 0xFF) + 1) << 12


@seal.admit
class SiePage(ctypes.BigEndianStructure):
    """The 4 KiB SIE page (Linux ``struct sie_page``): the SD, then the PV register save area at 0x380."""

    _pack_ = 1
    _fields_ = [
        ("sie_block", SieBlock),  # 0x000
        ("mcck_info", ctypes.c_uint8 * 0x18),  # 0x200
        ("reserved218", ctypes.c_uint8 * 360),  # 0x218
        ("pv_grregs", ctypes.c_uint64 * 16),  # 0x380
        ("reserved400", ctypes.c_uint8 * 512),  # 0x400
        ("itdb", ctypes.c_uint8 * 256),  # 0x600
        ("reserved700", ctypes.c_uint8 * 2304),  # 0x700
    ]


assert ctypes.sizeof(SieBlock) == 0x200
assert SieBlock.icptcode.offset == 0x50 and SieBlock.sdf.offset == 0x68 and SieBlock.sidad.offset == 0x180
assert SieBlock.psw_mask.offset == 0x90 and SieBlock.gcr.offset == 0x100 and SieBlock.fac.offset == 0x1A0
assert ctypes.sizeof(SiePage) == 0x1000 and SiePage.pv_grregs.offset == 0x380


def ipa_ipb(raw: bytes) -> tuple[int, int]:
    """IPA (first halfword) and IPB (next four bytes, zero-padded) of an instruction's text."""
    text = raw.ljust(6, b"\0")
    return int.from_bytes(text[0:2], "big"), int.from_bytes(text[2:6], "big")


@dataclass(slots=True)
class SieExit:
    """How one SIE execution ended, as the host sees it.

    ``icptcode`` is the interception code also stored in the SD (0 when SIE ended for a host reason:
    time slice, halt request, or a host program interruption in ``host_pgm``). ``insn`` is the
    intercepted instruction for a normal guest's instruction interception (the hardware decoded it; the
    hypervisor could equally read it from guest memory). For a host program interruption during SIE
    (0x3D/0x3E/0x3F: the secure-storage exceptions) ``teid`` carries the guest address.
    """

    icptcode: int
    host_pgm: int = 0
    teid: int = 0
    insn: Insn | None = None
    reason: str = ""
    data: dict[str, int] = field(default_factory=dict)
    detail: str = ""

    @property
    def name(self) -> str:
        """Name of the interception (or of the host event)."""
        if self.host_pgm:
            return f"host program interruption {self.host_pgm:#04x}"
        name = ICPT_NAMES.get(self.icptcode)
        return name if name is not None else f"interception {self.icptcode:#x}"


class _NormalMapping:
    """Guest absolute -> host absolute for a format-2 SD: host = MSO + guest, below the limit MSL."""

    __slots__ = ("mso", "size", "mapping")

    def __init__(self, mso: int, size: int) -> None:
        self.mso = mso
        self.size = size
        self.mapping = GuestMapping(self.to_host, None)

    def to_host(self, guest_abs: int, write: bool, fetch: bool) -> int:
        if guest_abs >= self.size:
            raise ProgramException(
                0x05, why=f"guest absolute {guest_abs:#x} is beyond guest memory {self.size:#x}"
            )
        return self.mso + guest_abs


class SieEngine:
    """SIE for normal guests: relocation by MSO/MSL from the SD, CPU exits turned into interception codes.

    One engine serves every vCPU of a host. ``enter`` runs the guest CPU ``cpu`` described by ``page``
    until an interception or a host event and returns a ``SieExit``; the interception data is in the SD.
    """

    def __init__(self, host_memory_size: int) -> None:
        self._host_size = host_memory_size
        self.entries = 0
        self._last_psw: dict[int, tuple[int, int]] = {}  # id(cpu) -> guest PSW stored at its last exit
        #: id(the CPU's Insn) -> (that Insn, the hypervisor's copy with the handle as its CPU): a CPU keeps
        #: one decoded Insn per exit, so the copy is made once per exit, not once per interception
        self._copies: dict[int, tuple[Insn, Insn]] = {}

    def relocate(self, cpu: Cpu | CpuHandle, sd: SieBlock) -> None:
        """Point the CPU's guest mapping at the SD's MSO/MSL (done at every entry; cheap when unchanged)."""
        cpu = hardware_of(cpu)
        mso, size = sd.mso, sd.msl + 1 if sd.msl else 0
        g = cpu.guest
        current = getattr(g, "_zuv_normal", None)
        if current is not None and current.mso == mso and current.size == size and g.owner_tag is None:
            return
        if mso & 0xFFFFF or size & 0xFFFFF or mso + size > self._host_size:
            raise ValueError(f"SD relocation {mso:#x}+{size:#x} is not 1 MiB aligned inside host memory")
        nm = _NormalMapping(mso, size)
        nm.mapping._zuv_normal = nm  # type: ignore[attr-defined]
        cpu.guest = nm.mapping
        cpu.guest_memory_size = size
        cpu.flush_tlb()

    def forget(self, cpu: Cpu | CpuHandle) -> None:
        """The CPU's registers were changed outside SIE (a reset): load the SD's PSW at the next entry."""
        self._last_psw.pop(id(hardware_of(cpu)), None)

    def enter(self, handle: Cpu | CpuHandle, page: SiePage, count: int = 0, timeout_us: int = 0) -> SieExit:
        """Run a normal guest CPU (format-2 SD) until it needs the host.

        The guest PSW goes in from ``sd.psw_mask/psw_addr`` and comes back there; for an instruction
        interception the PSW designates the next instruction (KVM rewinds it to retry). Raises
        ``ValueError`` for an SD the hardware would answer with a validity interception in the host's
        own code (a relocation outside host memory) - that is a hypervisor bug, not a guest event.

        ``handle``: the CPU as the hypervisor holds it (``CpuHandle``); an intercepted instruction comes back
        with the handle as its CPU, so that the exit leads to no hardware CPU.
        """
        cpu = hardware_of(handle)
        sd = page.sie_block
        self.entries += 1
        self.relocate(cpu, sd)
        psw = (sd.psw_mask, sd.psw_addr)
        if self._last_psw.get(id(cpu)) != psw:  # the host changed the guest PSW since the last exit
            cpu.set_psw(*psw)
        if sd.cpuflags & CPUSTAT_STOPPED:
            sd.icptcode = ICPT_STOP
            return SieExit(ICPT_STOP)
        if cpu.state == STOPPED:
            cpu.state = OPERATING  # the SD, not the CPU, records whether the guest CPU is stopped
        ex = cpu.run(count=count, timeout_us=timeout_us)
        out = self._exit(handle, sd, ex)
        psw = cpu.psw
        sd.psw_mask, sd.psw_addr = psw
        self._last_psw[id(cpu)] = psw
        return out

    def _exit(self, handle: Cpu | CpuHandle, sd: SieBlock, ex: CpuExit) -> SieExit:
        kind = ex.kind
        if kind == "insn":
            insn = ex.insn
            assert insn is not None
            sd.ipa, sd.ipb = ipa_ipb(insn.raw)
            sd.icptcode = ICPT_INST
            # executed by EXECUTE: bit 7 of the status, the EXECUTE's length in bits 1-2 of the high nibble
            # (KVM's kvm_s390_get_ilen reads it to step back over the EXECUTE, not the target)
            sd.icptstatus = insn.ex_ilen << 4 | 1 if insn.ex_ilen else 0
            insn.finish()  # the PSW designates the next instruction (after the EXECUTE for a target)
            if insn.cpu is not handle:  # the hypervisor's copy: its CPU is the handle (the CPU keeps its own)
                known = self._copies.get(id(insn))
                c = known[1] if known is not None and known[0] is insn else None
                if c is not None and c.cpu is handle and c.pc == insn.pc and c.name is insn.name:
                    insn = c
                else:
                    if len(self._copies) >= 4096:
                        self._copies.clear()
                    copy = Insn(handle, insn.pc, insn.raw, insn.name,  # type: ignore[arg-type]
                                insn.opcode, insn.ex_ilen, insn.target)  # fmt: skip
                    self._copies[id(insn)] = (insn, copy)
                    insn = copy
            return SieExit(ICPT_INST, insn=insn)
        if kind in ("wait", "disabled_wait"):
            sd.icptcode = ICPT_WAIT
            return SieExit(ICPT_WAIT, reason=kind)
        if kind == "stopped":
            sd.icptcode = ICPT_STOP
            return SieExit(ICPT_STOP)
        if kind == "check_stop":
            # the guest CPU check-stopped (an interruption loop, an invalid new PSW): SIE ends for the host
            sd.icptcode = 0
            return SieExit(0, reason="check_stop", data={}, detail=ex.reason)
        if kind == "intercept":
            sd.icptcode = 0
            return SieExit(
                0, host_pgm=ex.code, teid=ex.data.get("teid", 0), reason=ex.reason, data=dict(ex.data)
            )
        # limit, halt, breakpoint: SIE ended for the host (a host interruption); nothing to intercept
        sd.icptcode = 0
        return SieExit(0, reason=kind, data={"pc": ex.code} if kind == "breakpoint" else {})


class Sie:
    """The SIE instruction for normal guests (format-2 state descriptions) as a hypervisor issues it: its
    engine (``SieEngine``, which keeps the CPUs' last exits) is held by the closures only (the host side's
    reach, ``ARCHITECTURE.md``). ``enter(cpu, page, count, timeout_us)``, ``relocate(cpu, sd)`` and
    ``forget(cpu)`` take the vCPU's ``CpuHandle``."""

    __slots__ = ("enter", "relocate", "forget")

    def __init__(self, host_memory_size: int) -> None:
        engine = SieEngine(host_memory_size)
        engine_enter = engine.enter

        def enter(cpu: Cpu | CpuHandle, page: SiePage, count: int = 0, timeout_us: int = 0) -> SieExit:
            """``SieEngine.enter``: run the normal guest CPU until it needs the host."""
            return engine_enter(cpu, page, count, timeout_us)

        def relocate(cpu: Cpu | CpuHandle, sd: SieBlock) -> None:
            """``SieEngine.relocate``: point the CPU's guest mapping at the SD's MSO/MSL."""
            engine.relocate(cpu, sd)

        def forget(cpu: Cpu | CpuHandle) -> None:
            """``SieEngine.forget``: the CPU's registers changed outside SIE."""
            engine.forget(cpu)

        # gates (``seal``): an exception leaves them without the engine's frames (the hardware CPUs)
        self.enter, self.relocate, self.forget = seal.gate(enter), seal.gate(relocate), seal.gate(forget)

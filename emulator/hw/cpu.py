"""One s390x CPU on unicorn: registers, the TLB fill, exits and runs (access path: mmu; delivery: interrupts).

This module and its helper ``engine`` are the only ones that import unicorn. The design (measured in
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
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final

from unicorn import Uc, UcError
from unicorn import s390x_const as S
from unicorn.unicorn_const import (
    UC_ARCH_S390X,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_EXCEPTION,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MEM_WRITE,
    UC_MODE_BIG_ENDIAN,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
)
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from emulator.errors import HwError, ProgramException
from emulator.hw import access, dat

# the architecture's names, defined in ``arch`` and still importable from here
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
from emulator.hw.engine import switch_for
from emulator.hw.execute import EXECUTE_KEYS, RELATIVE, STORAGE, emulate_relative, emulate_storage
from emulator.hw.fixedpoint import OPCODES as _FPO_OPCODES
from emulator.hw.fixedpoint import scan_pattern as _fpo_scan_pattern
from emulator.hw.interrupts import InterruptDelivery, IoSource
from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT, PhysicalMemory
from emulator.hw.mmu import GuestIntercept, GuestMapping, SubPageAccess
from emulator.hw.tod import TodClock

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



# -- trapped opcodes ---------------------------------------------------------------------------------------
# (first byte, second byte or None for "any") of each instruction the CPU emulates in Python. Two-byte
# opcode keys for the B2/B9/E5 groups; 0xEB..0x2F (LCTLG) has its second opcode byte at offset 5.
_B2_TRAPS: Final = bytes(
    [
        0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0D, 0x10, 0x11, 0x12, 0x14, 0x19, 0x20, 0x21,
        0x23, 0x29, 0x2A, 0x2B, 0x2C, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A,
        0x3B, 0x3C, 0x46, 0x4B, 0x50, 0x54, 0x5F, 0x76, 0x78, 0x79, 0x7C, 0x7D, 0xB0, 0xB1, 0xB2,
    ]
)  # fmt: skip
_B9_TRAPS: Final = bytes(
    [0x05, 0x25, 0x8A, 0x8E, 0x8F, 0xA4, 0xAF]
    # the message-security-assist (CPACF) instructions, emulated by ``cpacf``: unicorn knows only the
    # query function (and reports no other) of all but KMA
    + [0x1E, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F, 0x3C, 0x3E, 0x3F]
)
_ONE_BYTE_TRAPS: Final = bytes([0x04, 0x4F, 0xB1, 0x80, 0x82, 0x83, 0xAC, 0xAD, 0xAE, 0xB7])
_E3_TRAPS: Final = bytes([0x03, 0x06, 0x0E, 0x13])  # LRAG, CVBY, CVBG, LRAY (see insns.py)

#: relative-long instructions whose storage operand must be aligned (opcode key -> alignment in bytes):
#: LGRL, STGRL, LGFRL, LRL, LLGFRL, STRL and the compares CGRL, CLGRL, CGFRL, CRL, CLGFRL, CLRL. unicorn
#: does not check; the target is fixed by the instruction's address, so the page scan keeps only the
#: misaligned ones as exits and those raise the specification exception (``insns._misaligned_rl``)
RL_ALIGNMENT: Final = {
    0xC408: 8, 0xC40B: 8, 0xC40C: 4, 0xC40D: 4, 0xC40E: 4, 0xC40F: 4,
    0xC608: 8, 0xC60A: 8, 0xC60C: 4, 0xC60D: 4, 0xC60E: 4, 0xC60F: 4,
}  # fmt: skip
_RL_SECOND: Final = bytes(sorted({r << 4 | (k & 0xF) for k in RL_ALIGNMENT for r in range(16)}))

_TRAP_ALTERNATIVES: Final = (
    b"[\\xc4\\xc6]["
    + b"".join(b"\\x%02x" % b for b in _RL_SECOND)
    + b"]....|["
    + b"".join(b"\\x%02x" % b for b in _ONE_BYTE_TRAPS)
    + b"]|\\x01\\x07|\\xe3....[\\x03\\x06\\x0e\\x13]|\\xb2["
    + b"".join(b"\\x%02x" % b for b in _B2_TRAPS)
    + b"]|\\xb9["
    + b"".join(b"\\x%02x" % b for b in _B9_TRAPS)
    + b"]|\\xe5\\x01|\\xeb....\\x2f"
    + b"|\\x44|\\xc6[\\x00\\x10\\x20\\x30\\x40\\x50\\x60\\x70\\x80\\x90\\xa0\\xb0\\xc0\\xd0\\xe0\\xf0]"
)
#: the page scan: (fixed-point-overflow mask off, on); with the mask on, the signed arithmetic that can
#: overflow is trapped too (``fixedpoint``)
_TRAP_RES: Final = (
    re.compile(b"(?=(" + _TRAP_ALTERNATIVES + b"))", re.DOTALL),
    re.compile(b"(?=(" + _TRAP_ALTERNATIVES + b"|" + _fpo_scan_pattern() + b"))", re.DOTALL),
)

#: Instructions returned to the owner of the CPU (name by opcode).
OWNER_INSNS: Final = {
    0x83: "DIAG",
    0xAE: "SIGP",
    0xB220: "SERVC",
    0xB27D: "STSI",
    0xB9A4: "UVC",
    0xB214: "SIE",
    0xB230: "CSCH",
    0xB231: "HSCH",
    0xB232: "MSCH",
    0xB233: "SSCH",
    0xB234: "STSCH",
    0xB235: "TSCH",
    0xB236: "TPI",
    0xB237: "SAL",
    0xB238: "RSCH",
    0xB239: "STCRW",
    0xB23A: "STCPS",
    0xB23B: "RCHP",
    0xB23C: "SCHM",
    0xB276: "XSCH",
    0xB25F: "CHSC",
}


def _opcode_key(b: bytes) -> int:
    op = b[0]
    if op in (0xB2, 0xB9, 0xE5, 0x01):
        return op << 8 | b[1]
    if op in (0xEB, 0xE3, 0xEC):
        return op << 8 | b[5]
    if op in (0xA7, 0xC0, 0xC2, 0xC4, 0xC6, 0xCC):  # the extension is bits 12-15
        return op << 8 | b[1] & 0xF
    return op


def _rl_misaligned(raw: bytes, off: int, addr: int) -> bool:
    """True if the relative-long instruction at ``raw[off:]``, at address ``addr`` (or its offset in the
    page: a page is aligned beyond any operand's alignment), designates a storage operand its alignment
    does not allow."""
    align = RL_ALIGNMENT.get(raw[off] << 8 | raw[off + 1] & 0xF)
    if align is None or len(raw) < off + 6:
        return False
    return bool((addr + 2 * int.from_bytes(raw[off + 2 : off + 6], "big", signed=True)) % align)


# -- unicorn context-blob calibration ----------------------------------------------------------------------


@dataclass(frozen=True)
class _BlobLayout:
    regs: int
    psw_mask: int
    psa: int
    int_pgm_code: int
    int_pgm_ilen: int
    int_svc_code: int
    int_svc_ilen: int
    counter: int  # offset of uc_struct.emu_counter from the engine handle
    ex_value: int = -1  # the EXECUTE target unicorn holds pending (CPUS390XState.ex_value)


def _calibrate() -> _BlobLayout:
    """Find the hidden CPU fields in unicorn's context blob and check them on real exceptions.

    unicorn exposes neither the program-interruption code nor the prefix register; both live in the
    ``CPUS390XState`` copy that ``context_save`` makes. The offsets are found with marker values and then
    verified by running a divide-by-zero (PGM 0x09, ILC 2) and an SVC 5, so a different unicorn build fails
    here with a clear message instead of delivering wrong interrupt codes.
    """
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.reg_write(S.UC_S390X_REG_R0, 0x1122334455667788)
    uc.reg_write(S.UC_S390X_REG_PC, 0x0123456789ABCDE0)
    uc.reg_write(S.UC_S390X_REG_CR0, 0x0FEDCBA987654321)
    blob = bytes(uc.context_save())
    le = struct.Struct("<Q")
    regs = blob.find(le.pack(0x1122334455667788))
    mask = blob.find(le.pack(0x0123456789ABCDE0)) - 8
    if regs < 0 or mask < 0 or blob.find(le.pack(0x0FEDCBA987654321)) != mask + 96:
        raise HwError("unicorn's s390x context layout is not the one zuv was built for (need unicorn 2.1.4)")
    layout = _BlobLayout(regs, mask, mask + 56, mask + 64, mask + 68, mask + 72, mask + 76, -1)
    # check with real exceptions
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.mem_write(0x10000, bytes.fromhex("1d24" "0a05" "a7f4ffff"))  # dr %r2,%r4 ; svc 5 ; j .
    uc.reg_write(S.UC_S390X_REG_PSWM, PSW_MASK_64)
    seen: list[tuple[int, int, int]] = []

    def hook(uc_: Uc, intno: int, _ud: object) -> None:
        b = bytes(uc_.context_save())
        if intno == 3:
            code, ilen = struct.unpack_from("<II", b, layout.int_pgm_code)
        else:
            code, ilen = struct.unpack_from("<II", b, layout.int_svc_code)
        seen.append((intno, code, ilen))
        pc = uc_.reg_read(S.UC_S390X_REG_PC)
        uc_.reg_write(S.UC_S390X_REG_PC, pc + 2)

    uc.hook_add(UC_HOOK_INTR, hook)
    uc.emu_start(0x10000, 0x10004)
    if seen != [(3, 0x09, 2), (2, 5, 2)]:
        raise HwError(f"unicorn's interrupt codes do not read back as expected ({seen}); unsupported unicorn build")
    # instruction counter: run a loop with a known count and find emu_counter/emu_count in uc_struct
    uc.emu_start(0x10004, 0xFFFFFFFFFFFFFFFF, 0, 1234)
    base = uc._uch.value  # noqa: SLF001 - the engine handle; calibrated and checked below
    raw = ctypes.string_at(base, 4096)
    hit = raw.find(struct.pack("<QQ", 1235, 1234))
    if hit < 0:
        raise HwError("cannot find unicorn's instruction counter; unsupported unicorn build")
    # the pending EXECUTE target: unicorn performs "ex %r2,0(%r1)" in two blocks, the EX's and the target's
    # (its text ORed with R2 held in ex_value). Run it once to an exit beyond (the EX's block stays
    # translated), then make the EX's address an exit and run it again with a new R2: the target's new
    # block halts there before it runs, its text pending
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    uc.ctl_exits_enabled(True)
    uc.mem_write(0x10000, bytes.fromhex("44201000" "07000700"))
    uc.mem_write(0x10100, bytes.fromhex("1a34"))  # ar %r3,%r4
    uc.reg_write(S.UC_S390X_REG_R1, 0x10100)
    uc.reg_write(S.UC_S390X_REG_PSWM, PSW_MASK_64)
    uc.ctl_set_exits([0x10006])
    uc.emu_start(0x10000, 0)
    uc.ctl_set_exits([0x10000, 0x10006])
    uc.reg_write(S.UC_S390X_REG_R2, 0x56)
    uc.emu_start(0x10000, 0)
    ex_value = bytes(uc.context_save()).find(le.pack(0x1A76 << 48 | 4))  # ar %r7,%r6 and the EX's length
    if ex_value < 0 or uc.reg_read(S.UC_S390X_REG_PC) != 0x10000:
        raise HwError("cannot find unicorn's pending EXECUTE target; unsupported unicorn build")
    return _BlobLayout(regs, mask, mask + 56, mask + 64, mask + 68, mask + 72, mask + 76, hit, ex_value)


_LAYOUT: Final = _calibrate()


# -- records -----------------------------------------------------------------------------------------------


@dataclass
class Insn:
    """An instruction the CPU hands to its owner, decoded far enough to emulate it."""

    cpu: Cpu
    pc: int
    raw: bytes
    name: str
    opcode: int
    #: for the target of EXECUTE / EXECUTE RELATIVE LONG: the EXECUTE's length (the target executes at the
    #: EXECUTE's address with its ILC, and the PSW then points after the EXECUTE), else 0
    ex_ilen: int = 0
    #: the address of an EXECUTE target (relative addressing is relative to it)
    target: int = 0

    @property
    def ilen(self) -> int:
        """Instruction length in bytes (of the EXECUTE for an EXECUTE target: its ILC is the EXECUTE's)."""
        return self.ex_ilen or ILC_FOR(self.raw[0])

    @property
    def r1(self) -> int:
        """R1 field (RS, RRE: bits 8-11 or 24-27 depending on format)."""
        if self.raw[0] in (0xB2, 0xB9):
            return self.raw[3] >> 4
        return self.raw[1] >> 4

    @property
    def r2(self) -> int:
        """R2 (RRE) or R3 (RS) field."""
        if self.raw[0] in (0xB2, 0xB9):
            return self.raw[3] & 0xF
        return self.raw[1] & 0xF

    @property
    def r3(self) -> int:
        """R3 field of an RS/RRF instruction."""
        if self.raw[0] == 0xB9:
            return self.raw[2] >> 4
        return self.raw[1] & 0xF

    @property
    def m_fields(self) -> int:
        """Bits 16-23 of an RRF/RRE instruction (the M3/M4 fields, which must be 0 for UVC)."""
        return self.raw[2]

    @property
    def b2d2(self) -> tuple[int, int]:
        """Base register and 12-bit displacement of an S/RS-format second operand."""
        return self.raw[2] >> 4, (self.raw[2] & 0xF) << 8 | self.raw[3]

    def address(self) -> int:
        """The effective second-operand address D2(B2), wrapped to the addressing mode."""
        b, d = self.b2d2
        return self.cpu.wrap(d + (self.cpu.gpr(b) if b else 0))

    def _disp(self) -> int:
        """Bits 20-31 of the instruction, and for a six-byte one bits 32-39 above them (signed 20 bits)."""
        raw = self.raw
        d = (raw[2] & 0xF) << 8 | raw[3]
        if len(raw) == 6:
            d |= raw[4] << 12
            if d & 0x80000:
                d -= 0x100000
        return d

    def rx_address(self) -> int:
        """D2(X2,B2) of an RX instruction, or of an RXY one (six bytes: 20-bit signed displacement)."""
        raw, gpr = self.raw, self.cpu.gpr
        x2, b2 = raw[1] & 0xF, raw[2] >> 4
        return self.cpu.wrap(self._disp() + (gpr(x2) if x2 else 0) + (gpr(b2) if b2 else 0))

    def rsy_address(self) -> int:
        """D2(B2) (or D1(B1)) of an RSY or SIY instruction: base in bits 16-19, 20-bit signed displacement."""
        b = self.raw[2] >> 4
        return self.cpu.wrap(self._disp() + (self.cpu.gpr(b) if b else 0))

    def finish(self, cc: int | None = None) -> None:
        """Complete the instruction: set the condition code (if given) and step past it."""
        cpu = self.cpu
        if cc is not None:
            cpu.set_cc(cc)
        cpu.set_pc(self.pc + (self.ex_ilen or (2, 4, 4, 6)[self.raw[0] >> 6]))  # + self.ilen, inline


#: CR0 bits no translation or protection decision reads: the external and I/O-related subclass masks
#: (bits 48-63) and the AFP-register and vector enablement (bits 45-46, which unicorn reads when it looks a
#: block up). A program that only opens or closes an interruption class keeps its TLB.
_CR0_NO_TRANSLATION: Final = 0xFFFF | 1 << 18 | 1 << 17
#: control registers that designate address spaces, or lead to them in access-register translation
_TLB_CRS: Final = frozenset({1, 2, 5, 7, 8, 13})


@dataclass
class CpuExit:
    """Why ``Cpu.run`` returned.

    kind: ``"insn"`` (an instruction for the owner: ``insn``), ``"wait"`` (enabled wait, nothing
    deliverable), ``"disabled_wait"`` (``code`` = PSW address), ``"stopped"`` (the CPU is stopped),
    ``"limit"`` (the instruction budget or time slice ran out), ``"halt"`` (``request_halt``),
    ``"breakpoint"`` (PC at a breakpoint), ``"check_stop"`` (``reason``: a program-interruption loop,
    an invalid new PSW, an emulator fault), ``"intercept"`` (a SIE-guest condition for the hypervisor:
    ``code`` and ``reason``), ``"watch"`` (a data access to a frame in ``watch_frames``, not yet
    performed: ``code`` = virtual address, ``data`` = host address and write flag), ``"notify"`` (a secure
    guest's instruction that completed but that its host must hear of: ``insn``, its PSW already after it),
    ``"handled"`` (the owner handled ``insn`` through ``owner_insn`` and wants its loop to look).
    """

    kind: str
    insn: Insn | None = None
    code: int = 0
    reason: str = ""
    data: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchHit:
    """A data access to a watched frame, refused in the TLB fill (the debugger's watchpoints)."""

    vaddr: int
    host: int
    write: bool




# -- time slices -------------------------------------------------------------------------------------------


class _Watchdog:
    """One thread that stops CPUs at their time-slice deadlines.

    unicorn's own ``emu_start`` timeout starts and joins a thread on every call (about 190 us against
    7 us without it), which would make every trap of a guest with an armed timer 25x dearer. Deadlines
    are absolute (monotonic seconds); a fired deadline keeps firing every millisecond until the CPU
    disarms it, so a stop that lands while the CPU is briefly outside unicorn is not lost.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._due: dict[Cpu, float] = {}
        self._thread: threading.Thread | None = None

    def arm(self, cpu: Cpu, deadline: float) -> None:
        with self._cv:
            self._due[cpu] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="zuv-watchdog", daemon=True)
                self._thread.start()
            self._cv.notify()

    def disarm(self, cpu: Cpu) -> None:
        with self._cv:
            self._due.pop(cpu, None)

    def _loop(self) -> None:
        with self._cv:
            while True:
                if not self._due:
                    self._cv.wait()
                    continue
                cpu, when = min(self._due.items(), key=lambda kv: kv[1])
                now = time.monotonic()
                if when > now:
                    self._cv.wait(when - now)
                    continue
                cpu.uc.emu_stop()
                self._due[cpu] = now + 0.001


_WATCHDOG: Final = _Watchdog()


# -- the CPU -----------------------------------------------------------------------------------------------

# The engine's register calls without ctypes argument conversion (the binding declares argtypes, which
# costs ~0.4 of a call's ~0.8 us): every argument is passed as a ready ctypes object.
_uc_direct: Final = ctypes.CDLL(_uclib._name)  # noqa: SLF001 - the library the binding loaded
_uc_reg_read: Final = _uc_direct.uc_reg_read
_uc_reg_write: Final = _uc_direct.uc_reg_write
_uc_context_save: Final = _uc_direct.uc_context_save
_uc_emu_start: Final = _uc_direct.uc_emu_start
_uc_emu_start.restype = ctypes.c_int
#: Runs in a row that stop where they started after the same refused lookup before the CPU check-stops
#: with "no progress" (a few ms; far more than any known case of unicorn's own lookups needs)
_STUCK_LIMIT: Final = 10000
_UNTIL_C: Final = ctypes.c_uint64(0xFFFFFFFFFFFFFFFF)  # ignored with exits enabled (they end the run)
_ZERO_U64_C: Final = ctypes.c_uint64(0)  # no engine timeout: the watchdog thread ends time slices
_uc_context_size: Final = _uc_direct.uc_context_size
_uc_context_size.restype = ctypes.c_size_t
_Q_LE: Final = struct.Struct("<Q")  # unicorn's context blob is in host byte order (little-endian hosts)
_16Q_LE: Final = struct.Struct("<16Q")
for _f in (_uc_reg_read, _uc_reg_write, _uc_context_save):
    _f.restype = ctypes.c_int
_GPR: Final = [getattr(S, f"UC_S390X_REG_R{i}") for i in range(16)]
_CR: Final = [getattr(S, f"UC_S390X_REG_CR{i}") for i in range(16)]
_AR: Final = [getattr(S, f"UC_S390X_REG_A{i}") for i in range(16)]
_FPR: Final = [getattr(S, f"UC_S390X_REG_F{i}") for i in range(16)]
_PC: Final = S.UC_S390X_REG_PC
_PSWM: Final = S.UC_S390X_REG_PSWM
#: the same register ids as ready ctypes arguments (see _uc_direct)
_GPR_C: Final = [ctypes.c_int(r) for r in _GPR]
_CR_C: Final = [ctypes.c_int(r) for r in _CR]
_PC_C: Final = ctypes.c_int(_PC)
_PSWM_C: Final = ctypes.c_int(_PSWM)


class _TlbEntry(ctypes.Structure):
    """unicorn's ``uc_tlb_entry``: what a TLB fill hook hands back (host address and permissions)."""

    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]


#: ``bool fill(uc_engine *uc, uint64_t addr, uc_mem_type type, uc_tlb_entry *result, void *user_data)``
_TLB_FILL_CB: Final = ctypes.CFUNCTYPE(
    ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p
)
_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")

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
#: Known exits beyond which the CPU starts them afresh (``_forget_exits``): ~8,700 code pages' worth
_EXITS_LIMIT: Final = 1 << 18
#: (virtual page, frame) pairs whose exit sets are kept ready for their next fetch fill
_PAGE_EXITS_KEPT: Final = 16384
#: Below this many registered exits the walk is not worth a flush.
_EXITS_KEPT: Final = 64


class Cpu(InterruptDelivery):
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
        self._buf = memory.buffer()
        uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        uc.mem_map_ptr(0, memory.size, UC_PROT_ALL, memory.address)
        uc.ctl_exits_enabled(True)
        # the TLB fill hook is registered with the engine directly: the binding's wrappers (a decorator
        # layer, a struct copy of the entry) cost ~0.7 us of a fill; exceptions are still handed to
        # ``emu_start`` the binding's way (``_fill_hook``)
        self._fill_cb = _TLB_FILL_CB(self._fill_hook)
        uc._zuv_fill_cb = self._fill_cb  # type: ignore[attr-defined]  # lives as long as the engine
        hh = ctypes.c_size_t()
        if _uc_direct.uc_hook_add(
            uc._uch,  # noqa: SLF001 - the engine handle
            ctypes.byref(hh),
            ctypes.c_int(UC_HOOK_TLB_FILL),
            self._fill_cb,
            ctypes.c_void_p(0),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
        ):
            raise HwError("unicorn refused the TLB fill hook")
        uc.hook_add(UC_HOOK_INTR, self._intr)
        self.uc = uc
        #: the engine's TB-invalidation slot, switched so that exits survive runs (None: unicorn's own way)
        self._switch = switch_for(uc)
        self._ns_entry = _NS_ENTRY[self._switch is not None]
        self._ns_exit = _NS_EXIT[self._switch is not None]
        self._h = uc._uch  # noqa: SLF001 - the engine handle, for direct register access
        self._rv = ctypes.c_uint64()
        self._rp = ctypes.byref(self._rv)
        self._xc: dict[tuple[int, bool, bool, int | None], int] = {}
        #: frames some TLB entry or cached translation of this CPU maps (owner changes elsewhere need no flush)
        self._tlb_frames: set[int] = set()
        #: a translation since the last TLB flush depends on CR0's enhanced-DAT control (``load_crs``)
        self._edat_dependent = False
        #: trapped instructions by address (bytes, opcode key, name, trapped?), valid as long as the TLB
        #: (and the code) is
        self._icache: dict[int, tuple[bytes, int, str, bool]] = {}
        self._stale()
        self._state = STOPPED
        self.prefix = 0
        self.ckc = 0xFFFFFFFFFFFFFFFF
        #: the CPU timer's value at ``_cpu_timer_set_at`` (while operating) or its held value (otherwise)
        self._cpu_timer = 0x7FFFFFFFFFFFFFFF
        self._cpu_timer_set_at = clock.now()
        self.tod_programmable = 0
        self.ext_pending: dict[str, int] = {}  # "service" -> param; "external_call" -> cpu address
        #: the machine's pending I/O interruptions (its channel subsystem), None: no I/O (``IoSource``)
        self.io_source: IoSource | None = None
        self.emergency_from: set[int] = set()
        self.restart_pending = False
        self.breakpoints: set[int] = set()
        self.insn_count = 0
        self._guest: GuestMapping | None = None
        self._uc_psa = -1
        self.guest_memory_size = 0
        self.tlb_group: list[Cpu] = [self]
        self.check_stop_reason = ""
        # trap bookkeeping
        self._exits: set[int] = set()  # every known trap address (the Python side's decisions)
        #: the exits registered in unicorn: breakpoints, and the exits of pages fetch-filled since the last
        #: TLB flush (unicorn looks at exits when it translates, and translating a page needs its fetch
        #: fill first; after every run it also walks all of them, so fewer is cheaper)
        self._uc_exits: set[int] = set()
        #: frame -> trapped offsets, one cache per scan (fixed-point-overflow mask off, on)
        self._scan_caches: tuple[dict[int, tuple[int, ...]], dict[int, tuple[int, ...]]] = ({}, {})
        self._scan_cache = self._scan_caches[0]
        self._fpo = 0  # the PSW's fixed-point-overflow mask bit as the scan knows it (0 or PSW_MASK_FPO)
        self._page_exits: dict[tuple[int, int], frozenset[int]] = {}  # (virtual page, frame) -> its exits
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
        self._intr_info: tuple[int, int, int] | None = None
        self._halt = False  # set by request_halt from any thread (a plain attribute store is atomic)
        #: blocks may have been translated by an uncounted run: they do not count (see ``_counting``)
        self._uncounted_blocks = False
        self._fills = 0
        self._tlb_size = 256
        self._want_flush = False
        self._armed = 0.0
        self._probe: tuple[int, bool] | None = None
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
        memory.add_invalidate_listener(self._invalidate, self._code_pages)  # one-frame writes elsewhere: no call
        memory.add_owner_batch_listener(self._owner_changed, self._tlb_frames)  # else: no call
        #: held while unicorn runs this CPU; ``hold`` (a UV command's shoot-down, ``PhysicalMemory.quiesced``)
        #: takes it from another thread so that the CPU is outside unicorn while a page is taken away
        self._run_lock = threading.RLock()
        memory.add_cpu(self)
        self.write_mask(PSW_MASK_64)
        self.reset_initial()

    def close(self) -> None:
        """Detach from memory (the CPU is going away)."""
        self._disarm()
        self.mem.remove_invalidate_listener(self._invalidate)
        self.mem.remove_owner_batch_listener(self._owner_changed)
        self.mem.remove_cpu(self)

    # -- registers -----------------------------------------------------------------------------------

    def gpr(self, i: int) -> int:
        """General register ``i``."""
        return self._rd(_GPR_C[i])

    def set_gpr(self, i: int, value: int) -> None:
        """Set general register ``i``."""
        self._wr(_GPR_C[i], value)

    def gprs(self) -> list[int]:
        """All 16 general registers, read in one go from the context blob."""
        return list(struct.unpack("<16Q", self._hidden(_LAYOUT.regs, 128)))

    def psw_gprs_crs(self) -> tuple[int, int, list[int], list[int]]:
        """PSW mask, PSW address, the 16 general and the 16 control registers: the mask from the engine
        (unicorn folds the lazily kept condition code into it), the rest from one context update
        (``_blob``); the PSW and control-register caches take the values read."""
        mv = self._blob()
        addr = _Q_LE.unpack_from(mv, _LAYOUT.psw_mask + 8)[0]
        gprs = list(_16Q_LE.unpack_from(mv, _LAYOUT.regs))
        crs = list(_16Q_LE.unpack_from(mv, _LAYOUT.psw_mask + 96))
        self._pc_c = addr
        self._cr_c = crs[:]
        return self._mask(), addr, gprs, crs

    # Register access goes straight to the engine through ctypes (a third of the binding's cost) and
    # caches the PSW and control registers until unicorn runs again: a trap round trip reads them a
    # dozen times. Every Python-side write goes through the setters below, which keep the caches true.

    def _rd(self, reg: ctypes.c_int) -> int:
        _uc_reg_read(self._h, reg, self._rp)
        return self._rv.value

    def _wr(self, reg: ctypes.c_int, value: int) -> None:
        self._rv.value = value & 0xFFFFFFFFFFFFFFFF
        _uc_reg_write(self._h, reg, self._rp)

    def _stale(self) -> None:
        """unicorn ran (or a context was restored): forget the cached PSW and control registers."""
        self._mask_c = None
        self._pc_c = None
        self._cr_c = [None] * 16

    def _mask(self) -> int:
        m = self._mask_c
        if m is None:
            m = self._mask_c = self._rd(_PSWM_C)
        return m

    def crs(self) -> list[int]:
        """All 16 control registers (after a run, read in one context update rather than 16 reads)."""
        c = self._cr_c
        if None in c:
            c = self._cr_c = list(_16Q_LE.unpack_from(self._blob(), _LAYOUT.psw_mask + 96))
        return c[:]

    def cr(self, i: int) -> int:
        """Control register ``i``."""
        v = self._cr_c[i]
        if v is None:
            # all sixteen from one read of the engine's state (CR0 follows the PSW mask by 96 bytes, as
            # ``_calibrate`` checks): an LCTLG of all of them then costs one engine call, not sixteen
            self._cr_c[:] = _16Q_LE.unpack_from(self._blob(), _LAYOUT.psw_mask + 96)
            v = self._cr_c[i]
        return v

    def write_cr(self, i: int, value: int) -> None:
        """Set control register ``i`` without flushing the TLB (the caller flushes once)."""
        value &= 0xFFFFFFFFFFFFFFFF
        self._wr(_CR_C[i], value)
        self._cr_c[i] = value

    def load_crs(self, values: dict[int, int]) -> None:
        """Load control registers as LCTL and LCTLG do, flushing the TLB only when a value its decisions
        depend on changed: an address-space designation (CR1, CR7, CR13, and CR2, CR5, CR8 of access-register
        translation), or a CR0 bit other than the interruption subclass masks and the AFP and vector
        enablement (``_CR0_NO_TRANSLATION``), except the enhanced-DAT control while no translation the TLB
        holds depends on it (``dat.Translation.edat_dependent``).

        A program's interruption handler that switches CR0 (a kvm-unit-tests handler loads its own CR0 and
        then the interrupted one back) thus keeps the TLB, as the hardware's keeps its entries.
        """
        flush = False
        current = self.crs()
        for i, value in values.items():
            value &= 0xFFFFFFFFFFFFFFFF
            old = current[i]
            if old == value:
                continue
            self.write_cr(i, value)
            if i in _TLB_CRS:
                flush = True
            elif i == 0:
                diff = (old ^ value) & ~_CR0_NO_TRANSLATION
                flush = flush or bool(diff & ~CR0_EDAT) or bool(diff & CR0_EDAT and self._edat_dependent)
        if flush:
            self.flush_tlb()

    def set_cr(self, i: int, value: int) -> None:
        """Set control register ``i``; translation-relevant registers flush the TLB."""
        self.write_cr(i, value)
        if i in (0, 1, 7, 13):
            self.flush_tlb()

    def ar(self, i: int) -> int:
        """Access register ``i``."""
        return int(self.uc.reg_read(_AR[i]))

    def set_ar(self, i: int, value: int) -> None:
        """Set access register ``i``."""
        self.uc.reg_write(_AR[i], value & 0xFFFFFFFF)

    def fpr(self, i: int) -> int:
        """Floating-point register ``i`` (64 bits)."""
        return int(self.uc.reg_read(_FPR[i]))

    def set_fpr(self, i: int, value: int) -> None:
        """Set floating-point register ``i``."""
        self.uc.reg_write(_FPR[i], value & 0xFFFFFFFFFFFFFFFF)

    def vr(self, i: int) -> bytes:
        """Vector register ``i`` (16 bytes, big-endian)."""
        hi = int(self.uc.reg_read(getattr(S, f"UC_S390X_REG_F{i}")))
        lo = int(self.uc.reg_read(getattr(S, f"UC_S390X_REG_F{i}_HI")))
        return _U64.pack(hi) + _U64.pack(lo)

    def set_vr(self, i: int, value: bytes) -> None:
        """Set vector register ``i`` from 16 big-endian bytes (its left half is floating-point register ``i``)."""
        self.uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}"), int.from_bytes(value[:8], "big"))
        self.uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}_HI"), int.from_bytes(value[8:16], "big"))

    def fpc(self) -> int:
        """Floating-point-control register."""
        return int(self.uc.reg_read(S.UC_S390X_REG_FPC))

    def set_fpc(self, value: int) -> None:
        """Set the floating-point-control register."""
        self.uc.reg_write(S.UC_S390X_REG_FPC, value & 0xFFFFFFFF)

    @property
    def psw(self) -> tuple[int, int]:
        """The current PSW as (mask, address)."""
        return self._mask(), self.pc

    @property
    def registered_exits(self) -> int:
        """How many exits unicorn holds now (it walks all of them after every run)."""
        return len(self._uc_exits)

    @property
    def psw_mask(self) -> int:
        """The current PSW mask alone (the address is not read)."""
        return self._mask()

    def write_mask(self, mask: int) -> None:
        """Set the PSW mask without flushing the TLB (the caller knows no translation bit changed)."""
        mask &= 0xFFFFFFFFFFFFFFFF
        self._wr(_PSWM_C, mask)
        self._mask_c = mask
        if mask & PSW_MASK_FPO != self._fpo:
            self._fpo_changed(mask & PSW_MASK_FPO)

    def _fpo_changed(self, fpo: int) -> None:
        """The fixed-point-overflow mask changed: scan code pages for the other set of trapped opcodes.

        unicorn never raises the fixed-point-overflow interruption, so while the mask is on the signed
        arithmetic that can overflow is trapped and emulated (``fixedpoint``). Every page's exits come
        back with its next fetch fill from the scan of the new mode (both modes' scans are kept).
        """
        self._fpo = fpo
        self._scan_cache = self._scan_caches[1 if fpo else 0]
        self._forget_exits()

    def set_psw(self, mask: int, addr: int) -> None:
        """Load a PSW (no validity checks: use ``load_psw`` for architectural loads)."""
        old = self._mask()
        self.write_mask(mask)
        self.set_pc(addr)
        if (old ^ mask) & (PSW_MASK_DAT | PSW_MASK_KEY | PSW_MASK_ASC | PSW_MASK_PSTATE):
            self.flush_tlb()

    @property
    def pc(self) -> int:
        """The PSW instruction address."""
        v = self._pc_c
        if v is None:
            v = self._pc_c = self._rd(_PC_C)
        return v

    def set_pc(self, addr: int) -> None:
        """Set the PSW instruction address."""
        addr &= 0xFFFFFFFFFFFFFFFF
        self._wr(_PC_C, addr)
        self._pc_c = addr

    def set_cc(self, cc: int) -> None:
        """Set the condition code in the PSW."""
        self.write_mask((self._mask() & ~PSW_MASK_CC) | (cc & 3) << 44)

    @property
    def problem_state(self) -> bool:
        """True when the PSW's P bit is set."""
        return bool(self._mask() & PSW_MASK_PSTATE)

    def wrap(self, addr: int) -> int:
        """Wrap an address to the current addressing mode (24, 31 or 64 bits)."""
        return wrap_address(self._mask(), addr)

    def set_prefix(self, prefix: int) -> None:
        """Set the prefix register."""
        self.prefix = prefix & 0x7FFFE000
        self._sync_uc_psa()
        self.flush_tlb()

    @property
    def guest(self) -> GuestMapping | None:
        """The SIE guest mapping this CPU runs under (None: the CPU runs in the LPAR)."""
        return self._guest

    @guest.setter
    def guest(self, mapping: GuestMapping | None) -> None:
        self._guest = mapping
        self._sync_uc_psa()
        self.flush_tlb()

    def _move_dxc(self) -> None:
        """unicorn stored a DXC at its psa: if the guest's prefix page moved since, carry the code over."""
        stored_at = self._uc_psa
        self._sync_uc_psa()
        if stored_at != self._uc_psa and stored_at >= 0 and access.may_access(
            self.mem, stored_at >> PAGE_SHIFT, self.accessor
        ):
            dxc = self.mem.read(stored_at + LC_DXC, 4)
            self._lowcore_write(LC_DXC, dxc)

    def _sync_uc_psa(self) -> None:
        """Point unicorn's own prefix at the host absolute address of this CPU's lowcore.

        unicorn stores a few lowcore fields itself (the data-exception code at 0x90) at ``psa + offset``
        in its physical space, which is host absolute storage. For a SIE guest that is the guest's
        prefix relocated to the host; if it is not mappable yet (a secure guest's prefix before import)
        the host's own lowcore at absolute 0 takes the store instead of some unrelated host page.
        """
        host = self.prefix
        if self._guest is not None:
            try:
                host = self._guest.to_host(self.prefix, False, False)
            except Exception:  # noqa: BLE001 - a mapping refuses with architectural exceptions
                host = 0
        if host == self._uc_psa:
            return
        self._uc_psa = host
        ctx = self.uc.context_save()
        ptr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        assert ptr is not None
        ctypes.memmove(ptr + _LAYOUT.psa, struct.pack("<Q", host), 8)
        self.uc.context_restore(ctx)
        self._stale()

    # -- timers -----------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The CPU's state: ``OPERATING`` (running or waiting), ``STOPPED`` or ``CHECK_STOP``."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if (value == OPERATING) != (self._state == OPERATING):
            # the CPU timer steps in the operating state (waiting included) and holds its value while the
            # CPU is stopped or check-stopped (Principles of Operation, "CPU Timer")
            held = self.cpu_timer
            self._state = value
            self.set_cpu_timer(held)
        self._state = value

    @property
    def cpu_timer(self) -> int:
        """The CPU timer (signed 64 bits), decremented by the TOD clock while the CPU is operating."""
        if self._state != OPERATING:
            return self._cpu_timer
        return self._cpu_timer - (self.clock.now() - self._cpu_timer_set_at)

    def set_cpu_timer(self, value: int) -> None:
        """Set the CPU timer (SPT)."""
        value &= 0xFFFFFFFFFFFFFFFF
        if value >= 1 << 63:
            value -= 1 << 64
        self._cpu_timer = value
        self._cpu_timer_set_at = self.tod()

    def tod(self) -> int:
        """This CPU's view of the TOD clock."""
        return self.clock.now()

    # -- resets ------------------------------------------------------------------------------------------

    def reset_initial(self) -> None:
        """Initial CPU reset: CR0 = 0xE0, CR14 = 0xC2000000, prefix 0, FPC and timers cleared, PSW 0, the
        CPU stopped."""
        for i in range(16):
            self.write_cr(i, 0)
        self.write_cr(0, 0xE0)
        self.write_cr(14, 0xC2000000)
        self.set_prefix(0)
        self.ckc = 0
        self.tod_programmable = 0
        self.set_fpc(0)
        self.reset_cpu()
        self.set_cpu_timer(0)
        self.write_mask(0)
        self.set_pc(0)

    def reset_cpu(self) -> None:
        """CPU reset: pending interrupts cleared, the CPU stopped, the program-interruption loop count
        started anew."""
        self.ext_pending.clear()
        self.emergency_from.clear()
        self.restart_pending = False
        self.state = STOPPED
        self._pgm_last = None
        self._pgm_repeat = 0
        self.flush_tlb()

    def reset_clear(self) -> None:
        """Clear reset of the CPU: initial reset plus registers zeroed."""
        self.reset_initial()
        for i in range(16):
            self.set_gpr(i, 0)
            self.set_ar(i, 0)
            self.set_fpr(i, 0)

    # -- TLB and translated code -------------------------------------------------------------------------

    def flush_tlb(self) -> None:
        """Forget every translation decision (after CR, prefix, key, PSW or ownership changes)."""
        self._engine_flush()
        self._xc.clear()
        self._tlb_frames.clear()
        self._icache.clear()
        self._edat_dependent = False

    def _engine_flush(self) -> None:
        """Flush unicorn's TLB (where QEMU's dynamic TLB also resizes) and start counting anew.

        Every page needs a fetch fill again before it is translated or run, and that fill registers the
        page's exits again, so unicorn keeps only the breakpoints meanwhile.
        """
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self._fills = 0
        self._tlb_traps = 0
        self._flushed_at = time.monotonic()
        if self._smc_frames:
            # no entry lets the guest store anywhere now: check the watched code once more, then watch
            # only frames that get a writable entry again
            self._rescan_smc()
            self._smc_frames.clear()
        if len(self._uc_exits) > len(self.breakpoints):
            self._uc_exits = set(self.breakpoints)
            self.uc.ctl_set_exits(sorted(self._uc_exits))

    def _register_exits(self, addrs: set[int] | frozenset[int]) -> None:
        """Make sure unicorn knows these exits (before any block holding them is translated)."""
        if not addrs <= self._uc_exits:
            self._uc_exits |= addrs
            self.uc.ctl_set_exits(sorted(self._uc_exits))

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
        first, last = lo >> PAGE_SHIFT, (hi - 1) >> PAGE_SHIFT
        hit = False
        for frame in range(first, last + 1) if last - first < 64 else list(self._code_pages):
            if frame in self._code_pages and first <= frame <= last:
                self._forget_scan(frame)
                hit = True
        if hit:
            self.uc.ctl_flush_tb()
            self.flush_tlb()

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
        held = self._tlb_frames
        if any(f in held for f in frames):
            self.flush_tlb()

    def set_breakpoints(self, addrs: set[int]) -> None:
        """Stop before executing any of these (virtual) addresses; no cost between stops."""
        removed = self.breakpoints - addrs
        added = addrs - self._exits
        self.breakpoints = set(addrs)
        self._exits |= addrs
        self._uc_exits |= addrs
        self.uc.ctl_set_exits(sorted(self._uc_exits))
        if removed or added:
            # exits are baked into translated blocks: a block translated before the exit was added
            # would run through it
            self.uc.ctl_flush_tb()

    # -- the TLB fill (runs inside unicorn, once per page until a flush) ----------------------------------

    def _fill_hook(self, _handle: int, vaddr: int, access: int, entry: int, _ud: int) -> bool:
        """The engine's TLB fill callback: ``entry`` is the address of unicorn's ``uc_tlb_entry``."""
        try:
            return self._fill(self.uc, vaddr, access, _TlbEntry.from_address(entry), None)
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
        if self.watch_frames and not fetch and frame in self.watch_frames and (write or self.watch_frames[frame]):
            return self._refuse(WatchHit(vaddr, host, write), vaddr, False)
        entry.paddr = host & ~0xFFF  # type: ignore[attr-defined]
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

    def _refuse(self, e: Exception, vaddr: int, fetch: bool) -> bool:
        """Refuse a fill; the first refusal of a run is the fault the CPU will deliver.

        unicorn itself also looks up code pages after a run: at the end of every ``emu_start`` it
        invalidates the translated blocks of every exit address, translating each exit's page as an
        instruction fetch. A refusal there is no guest event; ``_real_fault`` tells them apart.
        """
        if self._fault is None:
            self._fault = e  # type: ignore[assignment]
            self._fault_where = (vaddr & ~0xFFF, fetch)
        if fetch:
            self._refused_code.add(vaddr & ~0xFFF)
        return False

    def _prune_exits(self) -> None:
        """Drop exits on pages that no longer translate (unicorn would look each of them up after every
        run); they come back with the page's next fetch fill, which always precedes its translation."""
        pc_page = self.pc & ~0xFFF
        gone = {p for p in self._refused_code if p != pc_page}
        self._refused_code.clear()
        if not gone:
            return
        keep = {a for a in self._exits if a & ~0xFFF not in gone or a in self.breakpoints}
        if len(keep) != len(self._exits):
            self._exits = keep
            self._uc_exits &= keep
            self.uc.ctl_set_exits(sorted(self._uc_exits))

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
                and not self._mask() & (PSW_MASK_DAT | PSW_MASK_KEY)
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

    def _scan(self, frame: int) -> tuple[int, ...]:
        hits = self._scan_cache.get(frame)
        if hits is None:
            base = frame << PAGE_SHIFT
            page = bytes(self._buf[base : base + 0x1000 + 4]) if base + 0x1004 <= self.mem.size else bytes(
                self._buf[base : base + 0x1000]
            )
            fpo = bool(self._fpo)
            scan = _TRAP_RES[1 if fpo else 0]
            # an EXECUTE RELATIVE LONG is an exit only if its target may need Python; one whose target lies
            # on another page is decided at each fetch fill of this page (``_add_exits``)
            found, far = [], []
            for m in scan.finditer(page, 0, 0x1000):
                h = m.start()
                if h & 1:
                    continue
                if page[h] in _SYSTEM_MASK_OPS and _system_mask_native(page[h], page[h + 1]):
                    continue
                if page[h] in (0xC4, 0xC6) and page[h + 1] & 0xF:
                    # a relative-long load, store or compare: an exit only if its operand is misaligned
                    if not _rl_misaligned(page, h, h):
                        continue
                elif page[h] == 0xC6:
                    decision = _exrl_decision(page, h, fpo)
                    if decision == _EXRL_NATIVE:
                        continue
                    if decision == _EXRL_FAR:
                        far.append(h)
                found.append(h)
            hits = tuple(found)
            if far:
                self._far_exrl[frame] = frozenset(far)
            else:
                self._far_exrl.pop(frame, None)
            self._scan_cache[frame] = hits
            self._smc_digest[frame] = zlib.crc32(page[:0x1000])
        return hits

    def _forget_exits(self) -> None:
        """Start the set of known exits afresh (it only grows, ~30 per code page): drop every translated
        block (they may hold halts at exits about to be forgotten) and the TLB, so that each page's exits
        come back with its next fetch fill."""
        self._exits = set(self.breakpoints)
        self._page_exits.clear()
        self._far_native.clear()
        self._exrl_deps.clear()
        self.uc.ctl_flush_tb()
        self.flush_tlb()

    def _forget_scan(self, frame: int) -> set[tuple[int, int]]:
        """The frame's bytes changed: scan it again at its next use. Returns the (virtual page, frame) pairs
        whose EXECUTE RELATIVE LONGs were decided native from a target in this frame (decide them again)."""
        for cache in self._scan_caches:
            cache.pop(frame, None)
        self._far_exrl.pop(frame, None)
        if any(f == frame for _, f in self._page_exits):
            self._page_exits = {k: v for k, v in self._page_exits.items() if k[1] != frame}
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
                page = self._page_exits[key] = frozenset(vpage + off for off in offsets)
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

    # -- program interrupts from unicorn ------------------------------------------------------------------

    def _blob(self) -> memoryview:
        """unicorn's CPU state now, as the bytes of one reused context updated in place (one engine call,
        ~0.3 us; a fresh ``context_save`` and its copy cost ~2.6 us). Offsets: ``_LAYOUT``."""
        view = self._ctx_view
        if view is None:
            ctx = self._ctx = self.uc.context_save()
            ptr = ctypes.cast(ctx.context, ctypes.c_void_p).value or 0
            size = _uc_context_size(self._h)
            view = self._ctx_view = memoryview((ctypes.c_char * size).from_address(ptr)).cast("B")
            self._ctx_arg = ctx.context
        elif _uc_context_save(self._h, self._ctx_arg):
            raise HwError("uc_context_save failed")
        return view

    def _hidden(self, offset: int, length: int) -> bytes:
        """Bytes of unicorn's CPU state at a calibrated context-blob offset (``_blob``)."""
        return bytes(self._blob()[offset : offset + length])

    def _intr(self, uc: Uc, intno: int, _ud: object) -> None:
        if intno == 3:
            code, ilen = struct.unpack("<II", self._hidden(_LAYOUT.int_pgm_code, 8))
        elif intno == 2:
            code, ilen = struct.unpack("<II", self._hidden(_LAYOUT.int_svc_code, 8))
        else:
            code, ilen = 0, 0
        self._intr_info = (intno, code, ilen)
        uc.emu_stop()

    # -- running ---------------------------------------------------------------------------------------------

    def kick(self) -> None:
        """Make a running ``run`` look at pending interruptions now (thread-safe; it does not return)."""
        self.uc.emu_stop()

    def hold(self) -> None:
        """Take the CPU out of unicorn and keep it out until ``unhold`` (any thread): a running CPU is stopped
        at its next instruction boundary and its ``run`` waits before it enters unicorn again (it does not
        return: the guest goes on afterwards). Then its TLB may be flushed from this thread."""
        lock = self._run_lock
        while not lock.acquire(timeout=0.0005):
            self.uc.emu_stop()

    def unhold(self) -> None:
        """End a ``hold``."""
        self._run_lock.release()

    def request_halt(self) -> None:
        """Stop a running ``run`` as soon as possible (thread-safe: debugger, Ctrl-C, limits)."""
        self._halt = True
        self.uc.emu_stop()

    def run(self, count: int = 0, timeout_us: int = 0, resume: bool = False) -> CpuExit:
        """Run until something needs the owner; ``count`` limits instructions, ``timeout_us`` time.

        Trapped instructions that belong to the CPU itself are emulated here without returning.
        ``resume`` executes the instruction at a breakpoint the CPU is stopped at instead of reporting it.
        """
        emulate = _emulate or _load_emulate()
        counted = count > 0
        budget = count
        deadline = 0.0
        if timeout_us:
            deadline = time.monotonic() + timeout_us / 1e6
            if abs(deadline - self._armed) > 1e-4:
                _WATCHDOG.arm(self, deadline)
                self._armed = deadline
        elif self._armed:
            _WATCHDOG.disarm(self)
            self._armed = 0.0
        while True:
            if self.state == CHECK_STOP:
                return CpuExit("check_stop", reason=self.check_stop_reason)
            if self.state == STOPPED:
                return CpuExit("stopped")
            mask = self._mask_c  # self.psw, inline (the caches; the engine only when they were reset)
            if mask is None:
                mask = self._mask_c = self._rd(_PSWM_C)
            pc = self._pc_c
            if pc is None:
                pc = self._pc_c = self._rd(_PC_C)
            if mask & PSW_MASK_FPO != self._fpo:  # set natively (an SPM as the target of EXECUTE)
                self._fpo_changed(mask & PSW_MASK_FPO)
            if mask & PSW_MASK_MCHECK and self.io_source is not None and self.io_source.crw_mcheck:
                if self.deliver_crw_mcheck():
                    continue
            if (mask & PSW_MASK_EXT or self.restart_pending) and self.deliver_pending():
                continue  # (only an enabled external interruption or a restart can be delivered here)
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
                result = self._at_exit(pc, emulate, keep=at_bp)
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
            self._mask_c = self._pc_c = None  # _stale(), inline: hooks read fresh values during the run
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
            # uc.emu_start, called the way the register calls are (ready ctypes arguments)
            uc = self.uc
            uc._hook_exception = None  # noqa: SLF001 - the binding's slot for exceptions inside hooks
            with self._run_lock:  # a shoot-down in progress on another thread: wait until it is done
                status = _uc_emu_start(
                    self._h, ctypes.c_uint64(pc), _UNTIL_C, _ZERO_U64_C, ctypes.c_size_t(limit)
                )
            err = UcError(status) if status else None
            if uc._hook_exception is not None:  # noqa: SLF001 - a bug in a hook: show it, not the refusal
                raise uc._hook_exception from None  # noqa: SLF001 - it caused
            self._mask_c = self._pc_c = None  # _stale(), inline
            self._cr_c = [None] * 16
            if counted:
                executed = self._executed(budget)
                self.insn_count += executed
                budget -= executed
            if self._smc_frames:
                self._rescan_smc()
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
                if self._rd(_PC_C) == start:
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
                if code == PGM_OPERATION:
                    raw = self._fetch_insn(ipc)
                    if raw is not None and _opcode_key(raw) in OWNER_INSNS:
                        r = self._at_exit(ipc, emulate, raw)
                        if r is not None:
                            return r
                        continue
                self.program_interrupt(code, ilen or 2, pc=ipc)
                continue
            pc = self._pc_c = self._rd(_PC_C)
            if self._halt:
                self._halt = False
                return CpuExit("halt")
            if pc in self._exits:
                self._tlb_traps += 1
                if self._tlb_traps & 31 == 0:
                    self._tlb_policy_after_trap()
                continue  # handled at the top of the loop (breakpoints are exits too)
            if counted and budget <= 0:
                return CpuExit("limit")
            if deadline and time.monotonic() >= deadline:
                self._disarm()
                return CpuExit("limit")
            # an emu_stop from a fill (self-modifying code): just go on. A run that stopped where it
            # started, at no exit, may have met a halting block left from an exit since dropped: drop it.
            if pc == start:
                self._remove_cache(pc, pc + 1)

    def _counting(self) -> None:
        """Drop the blocks an uncounted run translated, before a counted one.

        unicorn counts instructions with a code hook that it adds when a run has a count, and a block only
        calls the hooks that existed when it was translated: a block from an uncounted run (a ``continue``,
        a time-limited run) never counts, so a counted run that reaches one runs on past its count (a step
        after a stop froze). unicorn itself drops every block when the count hook goes (a counted run
        followed by an uncounted one), so only this direction needs the flush (~30 us, once per switch).
        """
        self._uncounted_blocks = False
        self.uc.ctl_flush_tb()

    def _remove_cache(self, begin: int, end: int) -> None:
        """Drop unicorn's translated blocks in [begin, end) (with its real invalidation, see ``engine``)."""
        if self._switch is not None:
            self._switch.invalidate(begin, end)
        else:
            self.uc.ctl_remove_cache(begin, end)

    def _disarm(self) -> None:
        if self._armed:
            _WATCHDOG.disarm(self)
            self._armed = 0.0

    def _is_execute(self, pc: int) -> bool:
        """Whether the instruction at ``pc`` is EXECUTE or EXECUTE RELATIVE LONG."""
        raw = self._fetch_insn(pc)
        return raw is not None and (raw[0] == 0x44 or (raw[0] == 0xC6 and raw[1] & 0xF == 0))

    def _executed(self, budget: int) -> int:
        """Instructions the last counted run executed (unicorn's counter, at most the budget)."""
        n = ctypes.c_size_t.from_address(self.uc._uch.value + _LAYOUT.counter).value  # noqa: SLF001
        return min(n, budget)

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

        def watch(_uc: Uc, _access: int, address: int, size: int, _value: int, _ud: object) -> None:
            if host_page <= address < host_page + 0x1000:
                touched.extend(range(address - host_page, min(address - host_page + size, 0x1000)))

        hook = uc.hook_add(UC_HOOK_MEM_WRITE if f.write else UC_HOOK_MEM_READ, watch)
        self._probe = (f.vpage, f.write)
        self._remove_cache(pc, pc + 6)
        self.flush_tlb()
        self._fault = None
        self._stale()
        if self._uncounted_blocks:
            self._counting()
        try:
            uc.emu_start(pc, 0xFFFFFFFFFFFFFFFF, 0, 1)
            err = None
        except UcError as e:
            err = e
        finally:
            self._stale()
            uc.hook_del(hook)
            self._probe = None
            self._remove_cache(pc, pc + 6)
            self.flush_tlb()
        if f.rule == "low-address protection":
            bad = [o for o in touched if o < 512]
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
        frame = host_page >> PAGE_SHIFT
        self.mem.keys[frame] |= KEY_R | (KEY_C if f.write and touched else 0)
        return 1

    def _deliver_fault(self, f: ProgramException, pc: int, fetch: bool = False) -> None:
        """Deliver a refused access of the instruction at ``pc``. For an instruction fetch (its own bytes or
        an EXECUTE target) the ILC is architecturally arbitrary; zuv stores 2, as QEMU does."""
        raw = None if fetch else self._fetch_insn(pc)
        ilc = f.ilc if f.ilc is not None else (ILC_FOR(raw[0]) if raw is not None else 2)
        self.program_interrupt(f.code, ilc, f.teid, pc=pc)

    def _fetch_insn(self, pc: int) -> bytes | None:
        """The (up to) 6 bytes of the instruction at ``pc``, or None when it cannot be fetched."""
        try:
            return self._fetch_text(pc)
        except (ProgramException, GuestIntercept):
            return None

    def _rescan_smc(self) -> None:
        """Guest stores hit pages that hold code: rescan those whose bytes changed for trapped instructions.

        The frames stay watched (their TLB entries keep write access), so this runs at every return to
        Python; a changed page gets new exits and its translations dropped.
        """
        buf = self._buf
        for frame in list(self._smc_frames):
            base = frame << PAGE_SHIFT
            digest = zlib.crc32(buf[base : base + 0x1000])
            if self._smc_digest.get(frame) == digest:
                continue
            dependents = self._forget_scan(frame)
            self._icache.clear()
            for vpage in list(self._code_pages.get(frame, ())):
                self._add_exits(vpage, frame)
                self._remove_cache(vpage, vpage + 0x1000)
            for vpage, f in dependents:  # EXRLs elsewhere that execute an instruction of this frame
                self._add_exits(vpage, f)
                self._remove_cache(vpage, vpage + 0x1000)

    def _at_exit(
        self, pc: int, emulate: Callable[[Cpu, Insn], CpuExit | None], raw: bytes | None = None, keep: bool = False
    ) -> CpuExit | None:
        """Emulate the trapped instruction at ``pc`` (or run it natively if the page changed)."""
        self.traps += 1
        if raw is None:
            hit = self._icache.get(pc)
            if hit is None:
                raw = self._fetch_insn(pc)
                if raw is None:
                    # the page is gone: let unicorn take the fetch fault natively
                    return self._native_step(pc, keep)
                key = _opcode_key(raw)
                trapped = (
                    _is_trapped(key)
                    or (self._fpo and key in _FPO_OPCODES)
                    or (key in RL_ALIGNMENT and _rl_misaligned(raw, 0, pc))
                )
                hit = self._icache[pc] = (raw, key, OWNER_INSNS.get(key) or f"{key:#x}", trapped)
            raw, key, name, trapped = hit
        else:
            key = _opcode_key(raw)
            name = OWNER_INSNS.get(key) or f"{key:#x}"
            trapped = (
                _is_trapped(key)
                or bool(self._fpo and key in _FPO_OPCODES)
                or (key in RL_ALIGNMENT and _rl_misaligned(raw, 0, pc))
            )
        if not trapped:
            return self._native_step(pc, keep)
        if key in EXECUTE_KEYS:
            return self._execute(pc, raw, emulate)
        return self._dispatch(Insn(self, pc, raw, name, key), emulate)

    def _dispatch(self, insn: Insn, emulate: Callable[[Cpu, Insn], CpuExit | None]) -> CpuExit | None:
        """Emulate a trapped instruction (or hand it to the owner); deliver its program interruption."""
        key, name, pc = insn.opcode, insn.name, insn.pc
        try:
            if key in OWNER_INSNS:  # the owner's: DIAG, SERVC, SIGP, STSI, UVC, SIE, channel I/O
                if (self._mask_c if self._mask_c is not None else self._mask()) & PSW_MASK_PSTATE:
                    raise ProgramException(PGM_PRIVILEGED, why=f"{name} in problem state")
                if self.owner_insn is not None and self._guest is None:
                    done = self.owner_insn(self, insn)
                    if done is not None:
                        return None if done else CpuExit("handled", insn=insn)
                return CpuExit("insn", insn=insn)
            return emulate(self, insn)
        except ProgramException as e:
            ilc = e.ilc if e.ilc is not None else insn.ilen
            self.program_interrupt(e.code, ilc, e.teid, pc=pc)
            return None
        except GuestIntercept as e:
            return CpuExit("intercept", code=e.code, reason=e.reason, data=dict(e.data))

    def _execute(
        self, pc: int, raw: bytes, emulate: Callable[[Cpu, Insn], CpuExit | None]
    ) -> CpuExit | None:
        """EXECUTE or EXECUTE RELATIVE LONG at an exit: the target runs as if it stood at the EXECUTE.

        The target's address comes from D2(X2,B2) (EX) or is relative to the EXECUTE (EXRL); an odd one is a
        specification exception. The target is fetched as an instruction (a refused fetch is the EXECUTE's
        interruption with ILC 2, as QEMU stores it for any instruction fetch), and bits 56-63 of R1 (unless
        R1 is 0) are ORed
        into its second byte. An EXECUTE target is an execute exception (PGM 0x03). A trapped target is
        emulated (or handed to the owner) with the EXECUTE's address and ILC, so its PSW ends after the
        EXECUTE; a relative-addressing one is emulated by ``execute``; any other runs natively, as unicorn
        runs EXECUTE right for those.
        """
        ilen = len(raw)
        self._drop_pending_execute()
        try:
            if raw[0] == 0x44:
                x2, b2 = raw[1] & 0xF, raw[2] >> 4
                d2 = (raw[2] & 0xF) << 8 | raw[3]
                target = self.wrap(d2 + (self.gpr(x2) if x2 else 0) + (self.gpr(b2) if b2 else 0))
            else:
                target = self.wrap(pc + 2 * int.from_bytes(raw[2:6], "big", signed=True))
            if target & 1:
                raise ProgramException(PGM_SPECIFICATION, why=f"EXECUTE target {target:#x} is odd")
            try:
                text = self._fetch_text(target)
            except ProgramException as e:
                e.ilc = 2 if e.ilc is None else e.ilc  # as QEMU (and unicorn's own fetch of a target)
                raise
            r1 = raw[1] >> 4
            if r1:
                text = bytes((text[0], text[1] | (self.gpr(r1) & 0xFF))) + text[2:]
            key = _opcode_key(text)
            if key in EXECUTE_KEYS:
                raise ProgramException(PGM_EXECUTE, why=f"EXECUTE of EXECUTE at {target:#x}")
            rel = RELATIVE.get(key)
            if rel is not None:
                emulate_relative(self, Insn(self, pc, text, rel[0], key, ilen, target))
                return None
            ss = STORAGE.get(key)
            if ss is not None:
                emulate_storage(self, Insn(self, pc, text, ss[0], key, ilen, target))
                return None
        except ProgramException as e:
            self.program_interrupt(e.code, e.ilc if e.ilc is not None else ilen, e.teid, pc=pc)
            return None
        except GuestIntercept as e:
            return CpuExit("intercept", code=e.code, reason=e.reason, data=dict(e.data))
        if _is_trapped(key) or (self._fpo and key in _FPO_OPCODES):
            insn = Insn(self, pc, text, OWNER_INSNS.get(key) or f"{key:#x}", key, ilen, target)
            return self._dispatch(insn, emulate)
        return self._native_step(pc, keep=True)

    def _drop_pending_execute(self) -> None:
        """Forget a target unicorn holds pending for the EXECUTE at the PC (``ex_value``).

        unicorn performs EXECUTE in two steps, and a run can end between them: a time slice or halt, or the
        target's block halting at an exit the EXECUTE's own block was translated without. The target would
        then run at the next start, wherever that starts. Here the EXECUTE is performed again from the
        start (it has no other effect), so the pending target must go.
        """
        mv = self._blob()
        off = _LAYOUT.ex_value
        if any(mv[off : off + 8]):
            mv[off : off + 8] = bytes(8)
            self.uc.context_restore(self._ctx)
            self._stale()

    def _fetch_text(self, addr: int) -> bytes:
        """The instruction at ``addr`` (its length from its first byte), fetched with every check; raises
        the fetch's ``ProgramException`` or ``GuestIntercept``."""
        first = self.translate(addr, fetch=True)
        n = ILC_FOR(self._buf[first])
        if (addr & 0xFFF) + n <= 0x1000:
            return bytes(self._buf[first : first + n])
        head = bytes(self._buf[first : (first | 0xFFF) + 1])
        second = self.translate(self.wrap((addr | 0xFFF) + 1), fetch=True)
        return head + bytes(self._buf[second : second + n - len(head)])

    def _native_step(self, pc: int, keep: bool = False) -> CpuExit | None:
        """Run one instruction natively at an exit address whose instruction is not a trapped one.

        ``keep`` leaves the exit in place afterwards (a breakpoint); otherwise it was stale and goes.
        """
        self._exits.discard(pc)
        self._uc_exits.discard(pc)
        self.uc.ctl_set_exits(sorted(self._uc_exits))
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
                self._uc_exits.add(pc)
                self.uc.ctl_set_exits(sorted(self._uc_exits))
                self._remove_cache(pc, pc + 1)  # the block that ran the instruction at pc
        return None if result.kind == "limit" else result


_emulate: Callable[[Cpu, Insn], CpuExit | None] | None = None


def _load_emulate() -> Callable[[Cpu, Insn], CpuExit | None]:
    """The instruction emulator (``insns`` imports this module, so it is bound on first use)."""
    global _emulate  # noqa: PLW0603 - a one-time binding
    from emulator.hw.insns import emulate  # noqa: PLC0415

    _emulate = emulate
    return emulate


_SYSTEM_MASK_OPS: Final = (0xAC, 0xAD)  # STNSM, STOSM


def _system_mask_native(op: int, i2: int) -> bool:
    """Whether an STNSM or STOSM with immediate ``i2`` runs natively: one that can only turn the I/O and
    external masks off (STNSM keeping PER, DAT and the reserved bits: Linux's ``local_irq_save`` is
    ``stnsm 0xfc``) or changes nothing (STOSM 0). Neither makes an interruption deliverable or changes a
    translation, and unicorn performs both right (the store through the TLB, then the mask); every other
    one is trapped, so the CPU sees each interruption that becomes deliverable and each DAT change."""
    return i2 | 0x03 == 0xFF if op == 0xAC else i2 == 0


def _is_trapped(key: int) -> bool:
    if key in OWNER_INSNS or key in EXECUTE_KEYS:
        return True
    if key < 0x100:
        return key in _ONE_BYTE_TRAPS
    hi, lo = key >> 8, key & 0xFF
    if hi == 0xB2:
        return lo in _B2_TRAPS
    if hi == 0xB9:
        return lo in _B9_TRAPS
    if hi == 0xE5:
        return lo == 0x01
    if hi == 0xEB:
        return lo == 0x2F
    if hi == 0xE3:
        return lo in _E3_TRAPS
    if hi == 0x01:
        return lo == 0x07
    return False


#: (target's first two bytes and byte 5, R1 nonzero, fixed-point-overflow mode) -> ``_execute_may_trap``
_EXECUTE_DECIDED: dict[tuple[bytes, bool, bool], bool] = {}


def _execute_may_trap(text: bytes, any_or: bool, fpo: bool) -> bool:
    """Whether EXECUTE of the instruction ``text`` may run one that unicorn cannot run as its target: a
    trapped instruction, a relative-addressing one (``execute.RELATIVE``) or an EXECUTE. With ``any_or``
    (R1 is not 0) the target's second byte may get any bits ORed in, so every opcode that gives counts."""
    k = (text[:2] + text[5:6], any_or, fpo)
    hit = _EXECUTE_DECIDED.get(k)
    if hit is None:
        b1 = text[1]
        hit = False
        for v in (v for v in range(256) if v | b1 == v) if any_or else (b1,):
            key = _opcode_key(bytes((text[0], v)) + text[2:])
            if _is_trapped(key) or key in RELATIVE or (fpo and key in _FPO_OPCODES):
                hit = True
                break
        _EXECUTE_DECIDED[k] = hit
    return hit


_EXRL_NATIVE: Final = 0
_EXRL_EXIT: Final = 1
_EXRL_FAR: Final = 2


def _exrl_decision(page: bytes, off: int, fpo: bool) -> int:
    """Whether the EXECUTE RELATIVE LONG at ``off`` of a scanned page must be an exit: not when its target,
    in the same page, cannot need Python (``_execute_may_trap``); ``_EXRL_FAR`` when the target lies on
    another page (decided with that page's mapping at each fetch fill, ``Cpu._far_target_native``)."""
    if off + 6 > 0x1000:
        return _EXRL_EXIT  # the EXRL itself crosses into the next page
    t = off + 2 * int.from_bytes(page[off + 2 : off + 6], "big", signed=True)
    if t < 0 or t >= 0x1000:
        return _EXRL_FAR
    if t + ILC_FOR(page[t]) > 0x1000:
        return _EXRL_EXIT
    if _execute_may_trap(page[t : t + ILC_FOR(page[t])], bool(page[off + 1] >> 4), fpo):
        return _EXRL_EXIT
    return _EXRL_NATIVE


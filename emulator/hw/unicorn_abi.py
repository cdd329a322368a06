"""unicorn's C interface as the CPU calls it: direct entry points, register ids, the context-blob layout.

The engine's calls without the binding's argument conversion (every argument a ready ctypes object), the TLB
fill's entry type, and the hidden CPU fields of unicorn's context blob (the program-interruption code, the
prefix, the instruction counter, the pending EXECUTE target), calibrated and checked against real
exceptions when this module is imported.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Final

from unicorn import Uc
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_HOOK_INTR, UC_MODE_BIG_ENDIAN
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from emulator.errors import HwError
from emulator.hw.arch import PSW_MASK_64

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
    vregs: int = -1  # the 32 vector registers (16 bytes each: the left doubleword, then the right one)
    aregs: int = -1  # the 16 access registers (4 bytes each)
    fpc: int = -1  # the floating-point-control register (4 bytes)


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
        raise HwError(
            f"unicorn's interrupt codes do not read back as expected ({seen}); unsupported unicorn build"
        )
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
    vregs, aregs, fpc = _extended_offsets()
    return _BlobLayout(
        regs, mask, mask + 56, mask + 64, mask + 68, mask + 72, mask + 76, hit, ex_value, vregs, aregs, fpc
    )


def _extended_offsets() -> tuple[int, int, int]:
    """Where the vector registers, access registers and FPC lie in the context blob (marker values); -1 for
    each when they are not found where this unicorn build keeps them (the registers then go through engine
    calls)."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    for i in range(32):
        uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}"), 0x5EC0000000000011 | i << 8)
        uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}_HI"), 0x5EC0000000000022 | i << 8)
    for i in range(16):
        uc.reg_write(getattr(S, f"UC_S390X_REG_A{i}"), 0xA5A50000 | i)
    uc.reg_write(S.UC_S390X_REG_FPC, 0x80000003)
    blob = bytes(uc.context_save())
    vregs = blob.find(struct.pack("<QQ", 0x5EC0000000000011, 0x5EC0000000000022))
    want = b"".join(
        struct.pack("<QQ", 0x5EC0000000000011 | i << 8, 0x5EC0000000000022 | i << 8) for i in range(32)
    )
    aregs = blob.find(struct.pack("<16I", *(0xA5A50000 | i for i in range(16))))
    fpc = blob.find(struct.pack("<I", 0x80000003))
    if vregs < 0 or blob[vregs : vregs + 512] != want or aregs < 0 or fpc < 0:
        return -1, -1, -1
    return vregs, aregs, fpc


_LAYOUT: Final = _calibrate()


# The engine's register calls without ctypes argument conversion (the binding declares argtypes, which
# costs ~0.4 of a call's ~0.8 us): every argument is passed as a ready ctypes object.
_uc_direct: Final = ctypes.CDLL(_uclib._name)  # noqa: SLF001 - the library the binding loaded
_uc_reg_read: Final = _uc_direct.uc_reg_read
_uc_reg_write: Final = _uc_direct.uc_reg_write
_uc_context_save: Final = _uc_direct.uc_context_save
_uc_emu_start: Final = _uc_direct.uc_emu_start
_uc_emu_start.restype = ctypes.c_int
_UNTIL_C: Final = ctypes.c_uint64(0xFFFFFFFFFFFFFFFF)  # ignored with exits enabled (they end the run)
_ZERO_U64_C: Final = ctypes.c_uint64(0)  # no engine timeout: the watchdog thread ends time slices
#: QEMU's flush of one page from a CPU's TLB (every MMU index; the page's victim entries and jump-cache slots
#: too), exported by libunicorn; it takes the engine's ``CPUState`` (``live_env.cpu_state``). None: not there
_tlb_flush_page: Final = getattr(_uc_direct, "tlb_flush_page_s390x", None)
if _tlb_flush_page is not None:
    _tlb_flush_page.argtypes = (ctypes.c_void_p, ctypes.c_uint64)
    _tlb_flush_page.restype = None
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

"""The engine's CPU state (``CPUS390XState``) in place: registers read and written without an engine call.

Every ``uc_reg_read``/``uc_reg_write`` through ctypes costs ~0.4 us, and a trapped instruction reads and
writes the PSW, a few general and control registers: most of a trap's Python time was these calls. unicorn
keeps each CPU's registers in one C structure (``uc->cpu``'s ``env``), which ``context_save`` copies; its
address is found here once per engine build: the offset in ``uc_struct`` of a pointer into the CPU object
and the offset from there of the general registers, found with marker values in a scratch engine (only
pointers into readable, writable mappings of this process are looked at) and checked on a second one.

What may be read and written directly, between runs (never while unicorn runs the CPU):

* the general registers, the control registers and the PSW address (plain fields; a run starts at the
  address it is given);
* the PSW mask except its condition code, which unicorn keeps lazily (``cc_op``): the mask's CC bits in the
  structure are stale. ``cc_op`` 0-3 *is* the condition code (``CC_OP_CONST0..3``, what a mask written
  through the engine leaves); any other value needs the engine's computation (``uc_reg_read``).

A different unicorn build whose layout does not match fails the check and leaves ``LIVE`` None: the CPU then
uses the engine calls as before.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Final

from unicorn import Uc
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN

__all__ = ["LIVE", "LiveLayout", "cpu_state", "env_view"]

_Q = struct.Struct("<Q")


@dataclass(frozen=True)
class LiveLayout:
    """Where a CPU's registers live, as offsets (bytes)."""

    cpu_ptr: int  # in uc_struct: a pointer into the CPU object
    regs: int  # from that pointer: general register 0
    psw_mask: int  # from general register 0 (the PSW address follows, the 16 CRs 96 bytes after the mask)
    cc_op: int  # from general register 0: unicorn's lazy condition-code operation (uint32)
    size: int  # bytes from general register 0 to the end of the CRs

    @property
    def q_mask(self) -> int:
        """Index of the PSW mask among 8-byte words from general register 0."""
        return self.psw_mask // 8


def _rw_maps() -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps", encoding="ascii") as f:
        for line in f:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                lo, hi = (int(x, 16) for x in span.split("-"))
                out.append((lo, hi))
    return out


def _in_maps(maps: list[tuple[int, int]], p: int) -> tuple[int, int] | None:
    for lo, hi in maps:
        if lo <= p < hi:
            return lo, hi
    return None


def _marked(uc: Uc, seed: int) -> bytes:
    marks = [0x5A17C0DE00000000 | seed << 16 | i << 8 | 0x33 for i in range(16)]
    for i, v in enumerate(marks):
        uc.reg_write(getattr(S, f"UC_S390X_REG_R{i}"), v)
    return b"".join(_Q.pack(v) for v in marks)


def _blob_offsets(uc: Uc) -> tuple[int, int, int]:
    """(R0, PSW mask, cc_op) offsets in the context blob, found with marker values."""
    uc.reg_write(S.UC_S390X_REG_R0, 0x1122334455667788)
    uc.reg_write(S.UC_S390X_REG_PC, 0x0123456789ABCDE0)
    uc.reg_write(S.UC_S390X_REG_CR0, 0x0FEDCBA987654321)
    blob = bytes(uc.context_save())
    regs = blob.find(_Q.pack(0x1122334455667788))
    mask = blob.find(_Q.pack(0x0123456789ABCDE0)) - 8
    if regs < 0 or mask < 0 or blob[mask + 96 : mask + 104] != _Q.pack(0x0FEDCBA987654321):
        raise LookupError("context layout")
    # cc_op: the 32-bit field that follows the condition code of a mask written through the engine
    seen: set[int] | None = None
    for cc in (1, 2, 3, 1):
        uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000 | cc << 44)
        b = bytes(uc.context_save())
        hits = {o for o in range(regs, len(b) - 3, 4) if struct.unpack_from("<I", b, o)[0] == cc}
        seen = hits if seen is None else seen & hits
    if not seen or len(seen) != 1:
        raise LookupError("cc_op")
    return regs, mask, seen.pop()


def _find() -> LiveLayout | None:
    try:
        scratch = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        regs_b, mask_b, cc_b = _blob_offsets(scratch)
        uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        pattern = _marked(uc, 1)
        maps = _rw_maps()
        base = uc._uch.value  # noqa: SLF001 - the engine handle (a uc_struct pointer)
        home = _in_maps(maps, base)
        if home is None:
            return None
        n = min(0x1000, home[1] - base)  # the CPU pointer is among uc_struct's first fields
        raw = ctypes.string_at(base, n)
        for off in range(0, n - 7, 8):
            p = _Q.unpack_from(raw, off)[0]
            span = _in_maps(maps, p)
            if span is None:
                continue
            k = ctypes.string_at(p, min(0x10000, span[1] - p)).find(pattern)
            if k >= 0 and k % 8 == 0:
                # the first pointer whose object holds the registers at the same offset in another engine
                layout = LiveLayout(off, k, mask_b - regs_b, cc_b - regs_b, mask_b + 96 + 128 - regs_b)
                if _check(layout):
                    return layout
        return None
    except (LookupError, OSError, ValueError):
        return None


def _env_address(uc: Uc, layout: LiveLayout) -> int:
    base = uc._uch.value  # noqa: SLF001 - the engine handle
    return ctypes.c_uint64.from_address(base + layout.cpu_ptr).value + layout.regs


def env_view(uc: Uc, layout: LiveLayout) -> memoryview:
    """The engine's registers of ``uc`` as 8-byte words (host byte order) from general register 0 (after a
    first register access: the engine makes its CPU then)."""
    addr = _env_address(uc, layout)
    return memoryview((ctypes.c_char * layout.size).from_address(addr)).cast("B").cast("Q")


def cpu_state(uc: Uc, layout: LiveLayout) -> int | None:
    """The address of the engine's ``CPUState`` of ``uc`` (what QEMU's TLB calls take), or None.

    The pointer the layout found in ``uc_struct`` is the CPU object's start if that object holds, before the
    registers, both its ``env_ptr`` (the registers open ``CPUS390XState``, so that is where they are) and its
    ``uc`` back pointer (the engine handle): QEMU's ``CPUState`` has both; only read, never written.
    """
    base = uc._uch.value  # noqa: SLF001 - the engine handle
    cpu = ctypes.c_uint64.from_address(base + layout.cpu_ptr).value
    span = _in_maps(_rw_maps(), cpu)
    if span is None or cpu + layout.regs > span[1]:
        return None
    words = memoryview(ctypes.string_at(cpu, layout.regs - layout.regs % 8)).cast("Q")
    env = cpu + layout.regs
    return cpu if env in words and base in words else None


def _check(layout: LiveLayout) -> bool:
    """On a fresh engine: the registers read back both ways, and ``cc_op`` is the condition code."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    pattern = _marked(uc, 2)  # (the engine makes its CPU at the first register access)
    maps = _rw_maps()
    ptr = ctypes.c_uint64.from_address(uc._uch.value + layout.cpu_ptr).value  # noqa: SLF001
    span = _in_maps(maps, ptr)
    if span is None or ptr + layout.regs + layout.size > span[1]:
        return False
    q = env_view(uc, layout)
    if q.tobytes()[:128] != pattern:
        return False
    q[7] = 0x0BADC0FFEE
    if uc.reg_read(S.UC_S390X_REG_R7) != 0x0BADC0FFEE:
        return False
    uc.reg_write(S.UC_S390X_REG_PC, 0x4242)
    uc.reg_write(S.UC_S390X_REG_CR3, 0x77)
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0704200180000000)
    m = layout.q_mask
    if q[m] & ~(3 << 44) != 0x0704000180000000 or q[m + 1] != 0x4242 or q[m + 12 + 3] != 0x77:
        return False
    cc = ctypes.c_uint32.from_address(ctypes.addressof(ctypes.c_char.from_buffer(q)) + layout.cc_op)
    if cc.value != 2:
        return False
    q[m + 1] = 0x5000
    return bool(uc.reg_read(S.UC_S390X_REG_PC) == 0x5000)


#: the layout of this unicorn build, or None (then registers go through the engine's calls)
LIVE: Final = _find()

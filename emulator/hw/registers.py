"""A CPU's registers on the engine: GPRs, CRs, ARs, FPRs, VRs, the PSW, prefix, CPU timer and the resets.

``Registers`` is a part of ``Cpu`` (a base class, above the interruption delivery ``interrupts``): register
access goes straight to the engine through ctypes (``unicorn_abi``), with the PSW and control registers cached
until unicorn runs again; the guest mapping and unicorn's own prefix follow the prefix register.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from array import array
from typing import TYPE_CHECKING, Any, Final

from unicorn import Uc
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN

from emulator.errors import HwError
from emulator.hw import access
from emulator.hw.arch import (
    CR0_CKC_SC,
    CR0_CPU_TIMER_SC,
    CR0_EDAT,
    LC_DXC,
    OPERATING,
    PSW_MASK_ASC,
    PSW_MASK_BA,
    PSW_MASK_CC,
    PSW_MASK_DAT,
    PSW_MASK_EA,
    PSW_MASK_EXT,
    PSW_MASK_FPO,
    PSW_MASK_IO,
    PSW_MASK_KEY,
    PSW_MASK_MCHECK,
    PSW_MASK_PSTATE,
    PSW_MASK_WAIT,
    STOPPED,
)
from emulator.hw.interrupts import InterruptDelivery
from emulator.hw.live_env import LIVE, env_view
from emulator.hw.memory import PAGE_SHIFT
from emulator.hw.mmu import GuestMapping
from emulator.hw.tod import TodClock

if TYPE_CHECKING:
    from emulator.hw.page_scan import PageScan
from emulator.hw.unicorn_abi import (
    _16Q_LE,
    _AR,
    _CR_C,
    _FPR,
    _GPR_C,
    _LAYOUT,
    _PC_C,
    _PSWM_C,
    _Q_LE,
    _U64,
    _uc_context_save,
    _uc_context_size,
    _uc_reg_read,
    _uc_reg_write,
)

_U32: Final = struct.Struct(">I")
_U32_LE: Final = struct.Struct("<I")

#: CR0 bits no translation or protection decision reads: the external and I/O-related subclass masks
#: (bits 48-63) and the AFP-register and vector enablement (bits 45-46, which unicorn reads when it looks a
#: block up). A program that only opens or closes an interruption class keeps its TLB.
_CR0_NO_TRANSLATION: Final = 0xFFFF | 1 << 18 | 1 << 17
_CR0_TIMER_SUBCLASSES: Final = CR0_CKC_SC | CR0_CPU_TIMER_SC
#: control registers that designate address spaces, or lead to them in access-register translation
_TLB_CRS: Final = frozenset({1, 2, 5, 7, 8, 13})
#: the address-space designations: a change switches spaces (``TlbFill.switch_space``), it purges nothing
_ASCE_CRS: Final = frozenset({1, 7, 13})
#: PSW bits whose turning on makes the run loop look (``attention``): an interruption class enabled, a wait
_PSW_ATTENTION: Final = PSW_MASK_EXT | PSW_MASK_IO | PSW_MASK_MCHECK | PSW_MASK_WAIT
_PSW_ATTENTION_ALWAYS: Final = PSW_MASK_IO | PSW_MASK_MCHECK | PSW_MASK_WAIT

#: the vector registers (32 x 16 bytes: each the left doubleword, then the right one, in host byte order)
#: and the access registers right after them (16 x 4 bytes), as the engine keeps them
_EXT_LEN: Final = 512 + 64
_FPC_FMT: Final = struct.Struct("=I")
_MARK_LEFT: Final = 0x7E50000000000011
_MARK_RIGHT: Final = 0x7E50000000000022


def _ext_offsets() -> tuple[int, int]:
    """(vector registers, FPC) as byte offsets in the engine's state in place (``live_env``: from general
    register 0), found from the context blob's calibrated offsets (the blob is a copy of the same structure)
    and checked on a scratch engine; (-1, -1) where they are not reachable so."""
    lay = _LAYOUT
    if LIVE is None or lay.vregs < 0 or lay.aregs != lay.vregs + 512:
        return -1, -1
    at, fpc = lay.vregs - lay.regs, lay.fpc - lay.regs
    if at < 0 or fpc < 0 or at + _EXT_LEN > LIVE.size or fpc + 4 > LIVE.size:
        return -1, -1
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    for i in range(16):
        uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}"), _MARK_LEFT | i << 8)
        uc.reg_write(getattr(S, f"UC_S390X_REG_F{i}_HI"), _MARK_RIGHT | i << 8)
        uc.reg_write(_AR[i], 0xA7A70000 | i)
    uc.reg_write(S.UC_S390X_REG_FPC, 0x00000702)
    qb = env_view(uc, LIVE).cast("B")
    vrs = b"".join(struct.pack("=QQ", _MARK_LEFT | i << 8, _MARK_RIGHT | i << 8) for i in range(16))
    ars = struct.pack("=16I", *(0xA7A70000 | i for i in range(16)))
    if qb[at : at + 256] != vrs or qb[at + 512 : at + 576] != ars:
        return -1, -1
    if _FPC_FMT.unpack_from(qb, fpc)[0] != 0x702:
        return -1, -1
    return at, fpc


_EXT_AT, _FPC_AT = _ext_offsets()


def decode_extended(raw: bytes) -> bytes:
    """``extended_raw``'s bytes in ``extended_state``'s form: the vector registers big-endian, 16 bytes
    each, then the access registers, 4 bytes each, big-endian."""
    v, a = array("Q"), array("I")
    v.frombytes(raw[:512])
    a.frombytes(raw[512:576])
    if sys.byteorder == "little":
        v.byteswap()
        a.byteswap()
    return v.tobytes() + a.tobytes()


def _encode_extended(ext: bytes) -> bytes:
    """``decode_extended`` undone: ``extended_state``'s form as the engine keeps it."""
    return decode_extended(ext)  # a byte swap of each doubleword and word is its own inverse


class Registers(InterruptDelivery):
    """The CPU's registers, PSW, timers and resets (a base class of ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu (the state) and TlbFill (the flushes)
        uc: Uc
        clock: TodClock
        _h: Any
        _rv: ctypes.c_uint64
        _rp: Any
        _mask_c: int | None
        _pc_c: int | None
        _q: memoryview | None
        _qb: memoryview | None
        _qm: int
        _qc: int
        _cc_op: ctypes.c_uint32 | None
        _cr_c: list[int | None]
        _ctx: Any
        _ctx_view: memoryview | None
        _ctx_arg: Any
        _state: str
        _cpu_timer: int
        _cpu_timer_set_at: int
        _uc_psa: int
        _fpo: int
        _scan_caches: tuple[dict[int, PageScan], dict[int, PageScan]]
        _scan_cache: dict[int, PageScan]
        _xc: dict[int, int]
        _icache: dict[int, Any]
        timers_changed: bool
        _attn: bool

        def flush_tlb(self) -> None:
            """Forget every translation decision (``tlb.TlbFill``)."""

        def switch_space(self) -> None:
            """An address-space designation changed (``tlb.TlbFill``)."""

        def _forget_exits(self) -> None: ...
    # -- registers -----------------------------------------------------------------------------------

    def gpr(self, i: int) -> int:
        """General register ``i``."""
        q = self._q
        return q[i] if q is not None else self._rd(_GPR_C[i])

    def set_gpr(self, i: int, value: int) -> None:
        """Set general register ``i``."""
        q = self._q
        if q is not None:
            q[i] = value & 0xFFFFFFFFFFFFFFFF
        else:
            self._wr(_GPR_C[i], value)

    def gprs(self) -> list[int]:
        """All 16 general registers, read in one go from the context blob."""
        return list(struct.unpack("<16Q", self._hidden(_LAYOUT.regs, 128)))

    def psw_gprs_crs(self) -> tuple[int, int, list[int], list[int]]:
        """PSW mask, PSW address, the 16 general and the 16 control registers: the mask from the engine
        (unicorn folds the lazily kept condition code into it), the rest from the engine's state in place
        (``live_env``), else from one context update (``_blob``); the PSW and control-register caches take
        the values read."""
        q = self._q
        if q is not None:
            qc = self._qc
            addr = self._pc_c = q[self._qm + 1]
            return self._mask(), addr, q[0:16].tolist(), q[qc : qc + 16].tolist()
        mv = self._blob()
        addr = _Q_LE.unpack_from(mv, _LAYOUT.psw_mask + 8)[0]
        gprs = list(_16Q_LE.unpack_from(mv, _LAYOUT.regs))
        crs = list(_16Q_LE.unpack_from(mv, _LAYOUT.psw_mask + 96))
        self._pc_c = addr
        self._cr_c = crs[:]
        return self._mask(), addr, gprs, crs

    def extended_state(self) -> tuple[bytes, int]:
        """The vector registers (32 x 16 bytes: VR 0-15's left halves are the FPRs) and then the access
        registers (16 x 4 bytes), big-endian, and the FPC: the rest of the state an Ultravisor keeps for a
        secure CPU. From the engine's state in place (``extended_raw``), else from one context update
        (~0.5 us against ~20 us through register reads)."""
        raw = self.extended_raw()
        if raw is not None:
            return decode_extended(raw[0]), raw[1]
        lay = _LAYOUT
        if lay.vregs < 0:
            out = b"".join(self.vr(i) for i in range(32)) + b"".join(_U32.pack(self.ar(i)) for i in range(16))
            return out, self.fpc()
        mv = self._blob()
        v, a = array("Q"), array("I")
        v.frombytes(mv[lay.vregs : lay.vregs + 512])
        a.frombytes(mv[lay.aregs : lay.aregs + 64])
        if sys.byteorder == "little":
            v.byteswap()
            a.byteswap()
        return v.tobytes() + a.tobytes(), _U32_LE.unpack_from(mv, lay.fpc)[0]

    def extended_raw(self) -> tuple[bytes, int] | None:
        """The vector and access registers as the engine keeps them (``decode_extended`` gives
        ``extended_state``'s form; ``load_extended_raw`` puts them back), and the FPC: one copy of 576
        bytes of the engine's state in place, no engine call and no conversion (~0.2 us against ~1.5 us for
        ``extended_state``). None where the engine's state is not reachable in place."""
        qb = self._qb
        if qb is None or _EXT_AT < 0:
            return None
        return qb[_EXT_AT : _EXT_AT + _EXT_LEN].tobytes(), _FPC_FMT.unpack_from(qb, _FPC_AT)[0]

    def load_extended_raw(self, raw: bytes, fpc: int) -> None:
        """Set the vector and access registers from ``extended_raw``'s bytes, and the FPC."""
        qb = self._qb
        if qb is None or _EXT_AT < 0:
            self.set_extended_state(decode_extended(raw), fpc)
            return
        qb[_EXT_AT : _EXT_AT + _EXT_LEN] = raw
        self.set_fpc(fpc)

    def set_extended_state(self, ext: bytes, fpc: int) -> None:
        """Set the vector and access registers and the FPC from ``extended_state``'s form."""
        qb = self._qb
        if qb is not None and _EXT_AT >= 0:
            self.load_extended_raw(_encode_extended(ext), fpc)
            return
        for i in range(32):
            self.set_vr(i, ext[16 * i : 16 * i + 16])
        for i in range(16):
            self.set_ar(i, _U32.unpack_from(ext, 512 + 4 * i)[0])
        self.set_fpc(fpc)

    # Register access reads and writes the engine's CPU state in place (``live_env``: ~0.05 us against
    # ~0.4 us for an engine call through ctypes); with another unicorn build it goes straight to the engine
    # through ctypes (a third of the binding's cost) and caches the PSW and control registers until
    # unicorn runs again: a trap round trip reads them a dozen times. Every Python-side write goes through
    # the setters below, which keep the caches true.

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
            cc = self._cc_op
            if cc is not None and cc.value <= 3:  # the condition code itself (unicorn's CC_OP_CONST0..3)
                m = self._mask_c = self._q[self._qm] & ~PSW_MASK_CC | cc.value << 44  # type: ignore[index]
            else:  # kept lazily: the engine computes it
                m = self._mask_c = self._rd(_PSWM_C)
        return m

    @property
    def psw_mask_bits(self) -> int:
        """The PSW mask with its condition code left out (zero): for decisions on the other bits, without
        the engine's computation of the condition code it keeps lazily."""
        return self._mask_bits()

    def _mask_bits(self) -> int:
        """The PSW mask with its condition code left out (zero): what every decision but a stored or
        extracted PSW reads, without the engine's computation of a lazily kept condition code."""
        m = self._mask_c
        if m is not None:
            return m
        q = self._q
        return q[self._qm] & ~PSW_MASK_CC if q is not None else self._mask()

    def crs(self) -> list[int]:
        """All 16 control registers (after a run, read in one context update rather than 16 reads)."""
        q = self._q
        if q is not None:
            return q[self._qc : self._qc + 16].tolist()
        c = self._cr_c
        if None in c:
            c = self._cr_c = list(_16Q_LE.unpack_from(self._blob(), _LAYOUT.psw_mask + 96))
        return c[:]

    def cr(self, i: int) -> int:
        """Control register ``i``."""
        q = self._q
        if q is not None:
            return q[self._qc + i]
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
        q = self._q
        if q is not None:
            q[self._qc + i] = value
        else:
            self._wr(_CR_C[i], value)
            self._cr_c[i] = value

    def load_crs(self, values: dict[int, int]) -> None:
        """Load control registers as LCTL and LCTLG do, flushing the TLB only when a value its decisions
        depend on changed: an address-space designation (CR1, CR7, CR13: a switch of space, which keeps the
        spaces' DAT walks, ``TlbFill.switch_space``; CR2, CR5, CR8 of access-register translation), or a
        CR0 bit other than the interruption subclass masks and the AFP and vector enablement
        (``_CR0_NO_TRANSLATION``), except the enhanced-DAT control while no translation the TLB
        holds depends on it (``dat.Translation.edat_dependent``).

        A program's interruption handler that switches CR0 (a kvm-unit-tests handler loads its own CR0 and
        then the interrupted one back) thus keeps the TLB, as the hardware's keeps its entries.
        """
        flush = switch = False
        current = self.crs()
        for i, value in values.items():
            value &= 0xFFFFFFFFFFFFFFFF
            old = current[i]
            if old == value:
                continue
            self.write_cr(i, value)
            if i in _ASCE_CRS:
                switch = True
            elif i in _TLB_CRS:
                flush = True
            elif i == 0:
                if (old ^ value) & _CR0_TIMER_SUBCLASSES:
                    self.timers_changed = True  # a run arms its watchdog for the timers CR0 opens now
                diff = (old ^ value) & ~_CR0_NO_TRANSLATION
                flush = flush or bool(diff & ~CR0_EDAT) or bool(diff & CR0_EDAT and self._edat_dependent)
        if flush:
            self.flush_tlb()
        elif switch:
            self.switch_space()

    def load_cr(self, i: int, value: int) -> None:
        """``load_crs`` of one register (a handler opening or closing an interruption subclass), without the
        dictionary and the copy of all sixteen."""
        value &= 0xFFFFFFFFFFFFFFFF
        q = self._q
        old = q[self._qc + i] if q is not None else self.cr(i)
        if old == value:
            return
        self.write_cr(i, value)
        if i in _ASCE_CRS:
            self.switch_space()
        elif i in _TLB_CRS:
            self.flush_tlb()
        elif i == 0:
            if (old ^ value) & _CR0_TIMER_SUBCLASSES:
                self.timers_changed = True  # a run arms its watchdog for the timers CR0 opens now
            diff = (old ^ value) & ~_CR0_NO_TRANSLATION
            if diff & ~CR0_EDAT or (diff & CR0_EDAT and self._edat_dependent):
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
        """Set vector register ``i`` from 16 big-endian bytes (its left half is floating-point register
        ``i``)."""
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
    def psw_mask(self) -> int:
        """The current PSW mask alone (the address is not read)."""
        return self._mask()

    def write_mask(self, mask: int) -> None:
        """Set the PSW mask without flushing the TLB (the caller knows no translation bit changed)."""
        mask &= 0xFFFFFFFFFFFFFFFF
        q = self._q
        if q is not None:  # what the engine's write does: the mask, and the condition code as its cc_op
            q[self._qm] = mask
            self._cc_op.value = (mask >> 44) & 3  # type: ignore[union-attr]
        else:
            self._wr(_PSWM_C, mask)
        self._mask_c = mask
        self._attn = True  # (a mask written as a whole: the run loop looks, ``attention``)
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
        q = self._q
        if q is None:
            old = self._mask_bits()
            self.write_mask(mask)
            self.set_pc(addr)
        else:  # write_mask and set_pc, inline (every LPSWE and interruption comes here)
            qm = self._qm
            old = q[qm]
            mask &= 0xFFFFFFFFFFFFFFFF
            q[qm] = self._mask_c = mask
            self._cc_op.value = (mask >> 44) & 3  # type: ignore[union-attr]
            q[qm + 1] = self._pc_c = addr & 0xFFFFFFFFFFFFFFFF
            if mask & PSW_MASK_FPO != self._fpo:
                self._fpo_changed(mask & PSW_MASK_FPO)
        changed = old ^ mask
        on = changed & mask
        if on & _PSW_ATTENTION and (
            on & _PSW_ATTENTION_ALWAYS
            # external interruptions enabled: what is pending raised the flag already (``attention``), a
            # timer CR0 opens did not while they were disabled
            or q is None
            or self.ext_pending  # type: ignore[attr-defined]
            or self.emergency_from  # type: ignore[attr-defined]
            or q[self._qc] & _CR0_TIMER_SUBCLASSES
        ):  # an interruption class enabled, or a wait: the run loop looks
            self._attn = True
        if changed & (PSW_MASK_DAT | PSW_MASK_KEY):
            self.flush_tlb()
        elif changed & (PSW_MASK_ASC | PSW_MASK_PSTATE):
            # unicorn keeps a TLB per address space (its MMU index), and no fill decides by the problem-state
            # bit: only Python's caches of the PSW's translations and decoded instructions go. A flush here
            # made every system call of a Linux process refill its whole working set twice.
            self._xc.clear()
            self._icache.clear()

    @property
    def pc(self) -> int:
        """The PSW instruction address."""
        q = self._q
        if q is not None:
            return q[self._qm + 1]
        v = self._pc_c
        if v is None:
            v = self._pc_c = self._rd(_PC_C)
        return v

    def set_pc(self, addr: int) -> None:
        """Set the PSW instruction address."""
        addr &= 0xFFFFFFFFFFFFFFFF
        q = self._q
        if q is not None:
            q[self._qm + 1] = addr
        else:
            self._wr(_PC_C, addr)
        self._pc_c = addr

    def set_cc(self, cc: int) -> None:
        """Set the condition code in the PSW."""
        q = self._q
        if q is None:
            self.write_mask((self._mask_bits() & ~PSW_MASK_CC) | (cc & 3) << 44)
            return
        # write_mask, inline: no other bit changes (the fixed-point-overflow mask stays)
        mask = self._mask_c = (q[self._qm] & ~PSW_MASK_CC) | (cc & 3) << 44
        q[self._qm] = mask
        self._cc_op.value = cc & 3  # type: ignore[union-attr]

    def complete(self, next_pc: int, cc: int | None) -> None:
        """An emulated instruction completes: the condition code (if not None) and the PSW address after it,
        in one call (``Insn.finish``: every trapped instruction ends here)."""
        q = self._q
        if q is None:
            if cc is not None:
                self.set_cc(cc)
            self.set_pc(next_pc)
            return
        qm = self._qm
        if cc is not None:  # set_cc, inline
            mask = self._mask_c = (q[qm] & ~PSW_MASK_CC) | (cc & 3) << 44
            q[qm] = mask
            self._cc_op.value = cc & 3  # type: ignore[union-attr]
        q[qm + 1] = self._pc_c = next_pc & 0xFFFFFFFFFFFFFFFF

    @property
    def problem_state(self) -> bool:
        """True when the PSW's P bit is set."""
        return bool(self._mask_bits() & PSW_MASK_PSTATE)

    def operand_address(self, b: int, d: int) -> int:
        """``d`` plus general register ``b`` (none for 0), wrapped to the addressing mode: a D(B) operand
        address (``gpr`` and ``wrap`` in one call: every trapped instruction's operand comes here)."""
        q = self._q
        if q is None:
            return self.wrap(d + self._rd(_GPR_C[b]) if b else d)
        a = d + q[b] if b else d
        m = self._mask_c
        if m is None:
            m = q[self._qm]
        if m & PSW_MASK_EA:
            return a & 0xFFFFFFFFFFFFFFFF
        return a & (0x7FFFFFFF if m & PSW_MASK_BA else 0xFFFFFF)

    def wrap(self, addr: int) -> int:
        """Wrap an address to the current addressing mode (24, 31 or 64 bits)."""
        m = self._mask_c  # _mask_bits() and wrap_address, inline (every operand address comes here)
        if m is None:
            q = self._q
            m = q[self._qm] if q is not None else self._mask()
        if m & PSW_MASK_EA:
            return addr & 0xFFFFFFFFFFFFFFFF
        return addr & (0x7FFFFFFF if m & PSW_MASK_BA else 0xFFFFFF)

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
        self._attn = True  # the run loop looks (``attention``)
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

    def cpu_timer_at(self, tod: int) -> int:
        """``cpu_timer`` when the TOD clock reads ``tod`` (a value of ``tod()`` the caller read already)."""
        if self._state != OPERATING:
            return self._cpu_timer
        return self._cpu_timer - (tod - self._cpu_timer_set_at)

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
        """Clear reset of the CPU: initial reset plus registers zeroed: general, access, and all 32 vector
        registers whole (the floating-point registers are their left halves). The Ultravisor's scrub of a
        destroyed secure CPU's hardware CPU relies on it: no register of the secure guest goes back."""
        self.reset_initial()
        zero = bytes(16)
        for i in range(16):
            self.set_gpr(i, 0)
            self.set_ar(i, 0)
        for i in range(32):
            self.set_vr(i, zero)

    # -- unicorn's hidden CPU state ----------------------------------------------------------------------

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

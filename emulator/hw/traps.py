"""The instructions a CPU traps: the opcode tables, the page scan's patterns, and their emulation at an exit.

``TrapDispatch`` is a part of ``Cpu`` (a base class, above ``registers.Registers``): a trapped instruction at
an exit is fetched, decoded and emulated (``insns``, EXECUTE's target included) or handed to the owner. The
TLB fill (``tlb``) scans every page it fetch-fills with the patterns and decisions here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import dfp, mie3, vector_ext
from emulator.hw.arch import ILC_FOR, PGM_EXECUTE, PGM_PRIVILEGED, PGM_SPECIFICATION, PSW_MASK_PSTATE
from emulator.hw.crossspace import MVCOS
from emulator.hw.execute import EXECUTE_KEYS, RELATIVE, STORAGE, emulate_relative, emulate_storage
from emulator.hw.exits import CpuExit, Insn
from emulator.hw.fixedpoint import OPCODES as _FPO_OPCODES
from emulator.hw.fixedpoint import scan_pattern as _fpo_scan_pattern
from emulator.hw.mmu import GuestIntercept
from emulator.hw.registers import Registers
from emulator.hw.unicorn_abi import _LAYOUT

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu

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
    # the miscellaneous-instruction-extensions facility 3's, emulated by ``mie3`` (unicorn has none of them)
    + [k & 0xFF for k in sorted(mie3.OPCODES) if k >> 8 == 0xB9]
)
_E5_TRAPS: Final = bytes([0x01] + [k & 0xFF for k in sorted(mie3.OPCODES) if k >> 8 == 0xE5])
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
    + b"]|\\xe5["
    + b"".join(b"\\x%02x" % b for b in _E5_TRAPS)
    + b"]|\\xeb....\\x2f"
    # POPULATION COUNT with M3 bit 0 (``mie3``; the byte-wise form runs natively)
    + b"|\\xb9\\xe1[\\x80-\\xff]"
    + b"|\\x44|[\\xc6\\xc8][\\x00\\x10\\x20\\x30\\x40\\x50\\x60\\x70\\x80\\x90\\xa0\\xb0\\xc0\\xd0\\xe0\\xf0]"
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
    if op in (0xA7, 0xC0, 0xC2, 0xC4, 0xC6, 0xC8, 0xCC):  # the extension is bits 12-15
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
        return lo in _E5_TRAPS
    if hi == 0xEB:
        return lo == 0x2F
    if hi == 0xE3:
        return lo in _E3_TRAPS
    if hi == 0x01:
        return lo == 0x07
    return key == MVCOS


def late_emulator(raw: bytes) -> Callable[[Cpu, Insn], None] | None:
    """The emulation of an instruction unicorn raises an operation or specification exception for and the
    CPU then executes (``vector_ext``'s vector enhancements 1, ``dfp``'s decimal floating point), or None."""
    if raw[0] == 0xE7:
        return vector_ext.emulate if vector_ext.OFFERED and vector_ext.handles(raw) else None
    if dfp.OFFERED and dfp.handles(raw):
        return dfp.emulate
    return None


def _trapped_form(key: int, raw: bytes) -> bool:
    """Whether an instruction whose opcode alone does not make it trapped is trapped in this form: POPULATION
    COUNT with M3 bit 0 (``mie3``)."""
    return key == mie3.POPCNT and mie3.popcnt_extended(raw)


#: (target's first three bytes and byte 5, R1 nonzero, fixed-point-overflow mode) -> ``_execute_may_trap``
_EXECUTE_DECIDED: dict[tuple[bytes, bool, bool], bool] = {}


def _execute_may_trap(text: bytes, any_or: bool, fpo: bool) -> bool:
    """Whether EXECUTE of the instruction ``text`` may run one that unicorn cannot run as its target: a
    trapped instruction, a relative-addressing one (``execute.RELATIVE``) or an EXECUTE. With ``any_or``
    (R1 is not 0) the target's second byte may get any bits ORed in, so every opcode that gives counts."""
    k = (text[:3] + text[5:6], any_or, fpo)
    hit = _EXECUTE_DECIDED.get(k)
    if hit is None:
        b1 = text[1]
        hit = False
        for v in (v for v in range(256) if v | b1 == v) if any_or else (b1,):
            key = _opcode_key(bytes((text[0], v)) + text[2:])
            if (
                _is_trapped(key)
                or key in RELATIVE
                or (fpo and key in _FPO_OPCODES)
                or _trapped_form(key, text)
            ):
                hit = True
                break
        _EXECUTE_DECIDED[k] = hit
    return hit


#: ``insns.HANDLERS`` (opcode key -> mnemonic, privileged, handler), bound at first use (``insns`` imports
#: the CPU)
_HANDLERS: dict[int, tuple[str, bool, Callable[[Cpu, Insn], CpuExit | None]]] | None = None


def _load_handlers() -> dict[int, tuple[str, bool, Callable[[Cpu, Insn], CpuExit | None]]]:
    global _HANDLERS  # noqa: PLW0603 - a one-time binding
    from emulator.hw.insns import HANDLERS  # noqa: PLC0415

    _HANDLERS = HANDLERS
    return HANDLERS


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


class TrapDispatch(Registers):
    """A trapped instruction at an exit: fetched, decoded, emulated or handed to the owner (a base class of
    ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu
        traps: int
        _q: memoryview | None
        _qm: int
        _icache: dict[int, tuple[bytes, int, str, bool, Insn | None]]
        owner_insn: Callable[[Cpu, Insn], bool | None] | None
        _qx: int

        def _native_step(self, pc: int, keep: bool = False) -> CpuExit | None: ...

    def _is_execute(self, pc: int) -> bool:
        """Whether the instruction at ``pc`` is EXECUTE or EXECUTE RELATIVE LONG."""
        raw = self._fetch_insn(pc)
        return raw is not None and (raw[0] == 0x44 or (raw[0] == 0xC6 and raw[1] & 0xF == 0))

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

    def _at_exit(
        self,
        pc: int,
        emulate: Callable[[Cpu, Insn], CpuExit | None],
        raw: bytes | None = None,
        keep: bool = False,
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
                    or _trapped_form(key, raw)
                )
                name = OWNER_INSNS.get(key) or f"{key:#x}"
                # the decoded instruction itself is kept too (handlers only read it), with its CPU-local
                # handler resolved
                insn = None
                if trapped and key not in EXECUTE_KEYS:
                    insn = Insn(self, pc, raw, name, key)
                    entry = None if key in OWNER_INSNS else (_HANDLERS or _load_handlers()).get(key)
                    if entry is not None:
                        insn.name, insn.privileged, insn.handler = entry
                hit = self._icache[pc] = (raw, key, name, trapped, insn)
            raw, key, name, trapped, insn = hit
            if insn is not None:
                return self._dispatch(insn, emulate)
        else:
            key = _opcode_key(raw)
            name = OWNER_INSNS.get(key) or f"{key:#x}"
            trapped = (
                _is_trapped(key)
                or bool(self._fpo and key in _FPO_OPCODES)
                or (key in RL_ALIGNMENT and _rl_misaligned(raw, 0, pc))
                or _trapped_form(key, raw)
            )
        if not trapped:
            return self._native_step(pc, keep)
        if key in EXECUTE_KEYS:
            return self._execute(pc, raw, emulate)
        return self._dispatch(Insn(self, pc, raw, name, key), emulate)

    def _dispatch(self, insn: Insn, emulate: Callable[[Cpu, Insn], CpuExit | None]) -> CpuExit | None:
        """Emulate a trapped instruction (or hand it to the owner); deliver its program interruption."""
        try:
            fn = insn.handler
            if fn is not None:  # resolved with its decoding: ``emulate``'s lookup and checks, inline
                if insn.privileged:
                    q = self._q  # the PSW mask in place (or through the engine)
                    if (q[self._qm] if q is not None else self._mask_bits()) & PSW_MASK_PSTATE:
                        raise ProgramException(PGM_PRIVILEGED, why=f"{insn.name} in problem state")
                return fn(self, insn)
            key = insn.opcode
            if key in OWNER_INSNS:  # the owner's: DIAG, SERVC, SIGP, STSI, UVC, SIE, channel I/O
                if self._mask_bits() & PSW_MASK_PSTATE:
                    raise ProgramException(PGM_PRIVILEGED, why=f"{insn.name} in problem state")
                if self.owner_insn is not None and self._guest is None:
                    done = self.owner_insn(self, insn)
                    if done is not None:
                        return None if done else CpuExit("handled", insn=insn)
                return CpuExit("insn", insn=insn)
            return emulate(self, insn)
        except ProgramException as e:
            ilc = e.ilc if e.ilc is not None else insn.ilen
            self.program_interrupt(e.code, ilc, e.teid, pc=insn.pc)
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
            target = self._execute_address(pc, raw)
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
            late = late_emulator(text)
            if late is not None:
                late(self, Insn(self, pc, text, "late", key, ilen, target))
                return None
        except ProgramException as e:
            self.program_interrupt(e.code, e.ilc if e.ilc is not None else ilen, e.teid, pc=pc)
            return None
        except GuestIntercept as e:
            return CpuExit("intercept", code=e.code, reason=e.reason, data=dict(e.data))
        if _is_trapped(key) or (self._fpo and key in _FPO_OPCODES) or _trapped_form(key, text):
            insn = Insn(self, pc, text, OWNER_INSNS.get(key) or f"{key:#x}", key, ilen, target)
            return self._dispatch(insn, emulate)
        return self._native_step(pc, keep=True)

    def _execute_address(self, pc: int, raw: bytes) -> int:
        """The target address of the EX (D2(X2,B2)) or EXRL (relative to ``pc``) in ``raw``."""
        if raw[0] == 0x44:
            x2, b2 = raw[1] & 0xF, raw[2] >> 4
            d2 = (raw[2] & 0xF) << 8 | raw[3]
            return self.wrap(d2 + (self.gpr(x2) if x2 else 0) + (self.gpr(b2) if b2 else 0))
        return self.wrap(pc + 2 * int.from_bytes(raw[2:6], "big", signed=True))

    def executes_vector_ext(self, pc: int, raw: bytes) -> bool:
        """Whether the EX/EXRL ``raw`` at ``pc`` executes an instruction ``vector_ext`` or ``dfp`` emulates
        (unicorn raises the target's operation or specification exception at the EXECUTE)."""
        try:
            target = self._execute_address(pc, raw)
            text = self._fetch_text(target) if not target & 1 else b""
        except (ProgramException, GuestIntercept):
            return False
        r1 = raw[1] >> 4
        if r1 and text:
            text = bytes((text[0], text[1] | (self.gpr(r1) & 0xFF))) + text[2:]
        return bool(text) and late_emulator(text) is not None

    def _drop_pending_execute(self) -> bool:
        """Forget a target unicorn holds pending for the EXECUTE at the PC (``ex_value``); True if one was.

        unicorn performs EXECUTE in two steps (QEMU's ``ex_value``): the EXECUTE's block leaves the target
        pending with the PSW still at the EXECUTE, and the next block, wherever it starts, is translated as
        that target. A run can end between them: a stop from another thread (the watchdog's timer deadline,
        a kick, a hold) lands at the next block's entry, or a fill asks for a stop while the EXECUTE fetches
        its target. Nothing of the EXECUTE is done yet (it has no other effect), so the CPU is at the
        instruction boundary before it, as long as the pending target goes: every run's end drops it
        (``Cpu._run``, the watched step). Kept, the first block of whatever ran next was the target instead
        (an interruption's handler lost its first instruction to a store of the EXECUTE's: QEMU delivers no
        interruption while a target is pending; here the EXECUTE runs again after the interruption).
        """
        q, qx = self._q, self._qx
        if q is not None and qx >= 0:  # in place, ~0.05 us (every run's end asks)
            if not q[qx]:
                return False
            q[qx] = 0
            return True
        mv = self._blob()
        off = _LAYOUT.ex_value
        if not any(mv[off : off + 8]):
            return False
        mv[off : off + 8] = bytes(8)
        self.uc.context_restore(self._ctx)
        self._stale()
        return True

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

"""The vector-enhancements facility 1 (z14, facility 135) instructions unicorn 2.1.4 does not execute.

unicorn runs the z13 vector facility and three instructions of this one natively (VNN, VNX, VOC, measured),
and raises an operation or specification exception for the rest. The CPU hands those here from its
program-interruption path (``emulate``), so the emulation costs nothing until such an instruction runs:

- VECTOR BIT PERMUTE, VECTOR MULTIPLY SUM LOGICAL, VECTOR POPULATION COUNT for halfwords, words and
  doublewords, VECTOR LOAD LOGICAL ELEMENT AND ZERO of a left-aligned word;
- VECTOR FP MAXIMUM / MINIMUM (all M6 modes) and NEGATIVE MULTIPLY AND ADD / SUBTRACT;
- the short (binary32) and extended (binary128) forms of the vector floating-point instructions: add,
  subtract, multiply, divide, square root, multiply and add / subtract, compare (equal, high, high or equal,
  with the signaling SQ bit), compare scalar and compare and signal scalar, load FP integer, load
  lengthened and rounded, perform sign operation, test data class immediate; and the signaling compares
  (SQ) for long operands.

The arithmetic is ``bfp``'s (exact, one rounding). Elements are processed from the leftmost; an IEEE
exception whose FPC mask bit is one is a vector-processing exception (PGM 0x1B) whose vector-exception code
(element index, exception) goes to the FPC's DXC byte and to real location 144-147: the instruction is
suppressed (no element stored, no FPC flag set). Otherwise the flags of all elements are ORed into the FPC.
A vector instruction with the vector-enablement control (CR0 bit 46) off is a data exception, DXC 0xFE.
Field values the architecture does not define are specification exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import bfp
from emulator.hw.arch import LC_DXC, PGM_OPERATION, PGM_SPECIFICATION
from emulator.hw.bfp import EXTENDED, FORMATS, INVALID, LONG, SHORT, Format

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.exits import Insn

__all__ = ["FACILITY", "OFFERED", "PGM_VECTOR_PROCESSING", "emulate", "handles", "minmax"]

FACILITY: Final = 135
#: whether the CPU offers facility 135 (``sysinfo`` lists it then) and so executes these instructions
OFFERED: Final = True
PGM_DATA: Final = 0x07
PGM_VECTOR_PROCESSING: Final = 0x1B
_CR0_AFP: Final = 1 << 18
_CR0_VECTOR: Final = 1 << 17
_DXC_VECTOR_DISABLED: Final = 0xFE

_M128 = (1 << 128) - 1


# -- operands ------------------------------------------------------------------------------------------------


def _v(raw: bytes, field_byte: int, high: bool, rxb_bit: int) -> int:
    """A vector register number: the 4-bit field plus its RXB extension bit."""
    nib = raw[field_byte] >> 4 if high else raw[field_byte] & 0xF
    return nib | (0x10 if raw[4] & rxb_bit else 0)


def _v1(raw: bytes) -> int:
    return _v(raw, 1, True, 8)


def _v2(raw: bytes) -> int:
    return _v(raw, 1, False, 4)


def _v3(raw: bytes) -> int:
    return _v(raw, 2, True, 2)


def _v4(raw: bytes) -> int:
    return _v(raw, 4, True, 1)


def _read(cpu: Cpu, i: int) -> int:
    return int.from_bytes(cpu.vr(i), "big")


def _write(cpu: Cpu, i: int, value: int) -> None:
    cpu.set_vr(i, (value & _M128).to_bytes(16, "big"))


def _elements(value: int, width: int) -> list[int]:
    n = 128 // width
    mask = (1 << width) - 1
    return [value >> (128 - width * (k + 1)) & mask for k in range(n)]


def _join(elems: list[int], width: int) -> int:
    out = 0
    for e in elems:
        out = out << width | e
    return out


def _spec(why: str) -> ProgramException:
    return ProgramException(PGM_SPECIFICATION, why=why)


# -- IEEE exceptions of a vector instruction -----------------------------------------------------------------

# the vector-interruption code of each IEEE exception, in the order the architecture reports them
_VIC: Final = ((bfp.INVALID, 1), (bfp.DIVIDE, 2), (bfp.OVERFLOW, 3), (bfp.UNDERFLOW, 4), (bfp.INEXACT, 5))


class _Ieee:
    """Collects the IEEE exceptions of an instruction's elements; raises the first enabled one."""

    def __init__(self, cpu: Cpu, xxc: bool = False) -> None:
        self.cpu = cpu
        self.fpc = cpu.fpc()
        self.masks = self.fpc >> 24
        self.xxc = xxc
        self.flags = 0

    @property
    def mode(self) -> int:
        return self.fpc & 7

    def element(self, index: int, exc: int) -> None:
        flags = bfp.ieee_flags(exc, self.masks, self.xxc)
        trap = flags & self.masks
        for bit, vic in _VIC:
            if trap & bit:
                vxc = index << 4 | vic
                self.cpu.set_fpc(self.fpc & ~0xFF00 | vxc << 8)
                self.cpu._lowcore_write(LC_DXC, vxc.to_bytes(4, "big"))  # noqa: SLF001 - the CPU's lowcore
                raise ProgramException(PGM_VECTOR_PROCESSING, why=f"vector IEEE exception, VXC {vxc:#04x}")
        self.flags |= flags

    def done(self) -> None:
        if self.flags:
            self.cpu.set_fpc(self.fpc | self.flags << 16)


def _mode(ieee: _Ieee, m: int) -> int:
    """The rounding mode an M field (VFI, VFLR) names: 0 the FPC's, else the method it selects."""
    if m not in bfp.M_FIELD_MODES:
        raise _spec(f"rounding method {m}")
    mode = bfp.M_FIELD_MODES[m]
    return ieee.mode if mode is None else mode


def _fmt(fpf: int) -> Format:
    if fpf not in FORMATS:
        raise _spec(f"floating-point format {fpf}")
    return FORMATS[fpf]


def _element_loop(
    cpu: Cpu,
    fmt: Format,
    se: bool,
    ieee: _Ieee,
    sources: list[int],
    op: Callable[..., tuple[int, int]],
) -> int:
    """Apply ``op`` to the elements of the source registers (only element 0 with ``se``): the result."""
    w = fmt.bits
    cols = [_elements(_read(cpu, s), w) for s in sources]
    out = [0] * (128 // w)
    for k in range(1 if se else 128 // w):
        bits, exc = op(*(c[k] for c in cols))
        ieee.element(k, exc)
        out[k] = bits
    return _join(out, w)


# -- the handlers --------------------------------------------------------------------------------------------

Handler = Callable[["Cpu", bytes], "int | None"]  # returns the condition code to set, or None


def _vbperm(cpu: Cpu, raw: bytes) -> int | None:
    src = _read(cpu, _v2(raw))
    idx = _elements(_read(cpu, _v3(raw)), 8)
    bits = 0
    for b in idx:
        bits = bits << 1 | (src >> (127 - b) & 1 if b < 128 else 0)
    _write(cpu, _v1(raw), bits << 64)  # the 16 bits go to bits 48-63 of the vector
    return None


def _vmsl(cpu: Cpu, raw: bytes) -> int | None:
    m5, m6 = raw[2] & 0xF, raw[3] >> 4
    if m5 != 3:
        raise _spec(f"VMSL element size {m5}")
    a = _elements(_read(cpu, _v2(raw)), 64)
    b = _elements(_read(cpu, _v3(raw)), 64)
    even, odd = a[0] * b[0], a[1] * b[1]
    if m6 & 8:
        even <<= 1
    if m6 & 4:
        odd <<= 1
    _write(cpu, _v1(raw), even + odd + _read(cpu, _v4(raw)))
    return None


def _vpopct(cpu: Cpu, raw: bytes) -> int | None:
    m3 = raw[4] >> 4
    if m3 > 3:
        raise _spec(f"VPOPCT element size {m3}")
    w = 8 << m3
    _write(cpu, _v1(raw), _join([bin(e).count("1") for e in _elements(_read(cpu, _v2(raw)), w)], w))
    return None


def _vllez_lf(cpu: Cpu, raw: bytes) -> int | None:
    x2, b2 = raw[1] & 0xF, raw[2] >> 4
    d2 = (raw[2] & 0xF) << 8 | raw[3]
    addr = cpu.wrap(d2 + (cpu.gpr(x2) if x2 else 0) + (cpu.gpr(b2) if b2 else 0))
    word = int.from_bytes(cpu.read_virtual(addr, 4), "big")
    _write(cpu, _v1(raw), word << 96)
    return None


def _vrr_c_fp(cpu: Cpu, raw: bytes) -> tuple[Format, bool, int, int]:
    """Format, single-element bit, M5 and M6 of a VRR-c floating-point instruction (V1, V2, V3)."""
    m4, m5, m6 = raw[4] >> 4, raw[3] & 0xF, raw[3] >> 4
    return _fmt(m4), bool(m5 & 8), m5, m6


def _binary(op: Callable[[Format, int, int, int], tuple[int, int]]) -> Handler:
    def handler(cpu: Cpu, raw: bytes) -> int | None:
        fmt, se, m5, _ = _vrr_c_fp(cpu, raw)
        if m5 & 7:
            raise _spec("reserved M5 bits")
        ieee = _Ieee(cpu)
        mode = ieee.mode
        result = _element_loop(cpu, fmt, se, ieee, [_v2(raw), _v3(raw)], lambda a, b: op(fmt, a, b, mode))
        _write(cpu, _v1(raw), result)
        ieee.done()
        return None

    return handler


def _sub(fmt: Format, a: int, b: int, mode: int) -> tuple[int, int]:
    return bfp.add(fmt, a, b, mode, negate_b=True)


def _minmax(is_min: bool) -> Handler:
    def handler(cpu: Cpu, raw: bytes) -> int | None:
        fmt, se, m5, m6 = _vrr_c_fp(cpu, raw)
        if m5 & 7 or m6 & 7 > 4:
            raise _spec(f"VFMIN/VFMAX M5 {m5} M6 {m6}")
        ieee = _Ieee(cpu)
        result = _element_loop(
            cpu, fmt, se, ieee, [_v2(raw), _v3(raw)], lambda a, b: minmax(fmt, a, b, is_min, m6)
        )
        _write(cpu, _v1(raw), result)
        ieee.done()
        return None

    return handler


def minmax(fmt: Format, a: int, b: int, is_min: bool, m6: int) -> tuple[int, int]:
    """VECTOR FP MINIMUM / MAXIMUM of one element pair in mode ``m6``: 0 IEEE minNum/maxNum, 1 Java
    Math.min/max, 2 C-style (a < b ? a : b), 3 C++ std::min/max, 4 fmin/fmax; +8 the same on magnitudes
    (the IEEE mode: minNumMag/maxNumMag, returning the operand; the others compare and return the
    absolute values)."""
    kind, magnitude = m6 & 7, bool(m6 & 8)
    snan = fmt.is_snan(a) or fmt.is_snan(b)
    if kind == 0:
        if fmt.is_nan(a) or fmt.is_nan(b):
            if not snan and not (fmt.is_nan(a) and fmt.is_nan(b)):
                return (b if fmt.is_nan(a) else a), 0
            nan = bfp.pick_nan(fmt, a, b)
            assert nan is not None
            return nan
        if magnitude:
            rel, _ = bfp.compare(fmt, a & ~fmt.sign_bit, b & ~fmt.sign_bit, False)
            if rel != 0:
                return ((a if rel == 1 else b) if is_min else (b if rel == 1 else a)), 0
        return _plain(fmt, a, b, is_min), 0
    if magnitude:
        a &= ~fmt.sign_bit
        b &= ~fmt.sign_bit
    if fmt.is_nan(a) or fmt.is_nan(b):
        exc = INVALID if snan else 0
        if kind == 1:  # Java: the NaN, a signaling one quieted
            if fmt.is_snan(a):
                return fmt.quiet(a), exc
            if fmt.is_snan(b):
                return fmt.quiet(b), exc
            return (a if fmt.is_nan(a) else b), exc
        if kind == 4:  # fmin/fmax: the other operand
            return (a if fmt.is_nan(b) else b), exc
        return (b if kind == 2 else a), INVALID  # the C and C++ comparisons signal on any NaN
    if fmt.is_zero(a) and fmt.is_zero(b):
        neg_a = fmt.sign(a)
        if kind == 2:
            return b, 0
        if kind == 3:
            return a, 0
        if is_min:
            return (a if neg_a else b), 0
        return (b if neg_a else a), 0
    return _plain(fmt, a, b, is_min), 0


def _plain(fmt: Format, a: int, b: int, is_min: bool) -> int:
    """The smaller (larger) of two non-NaN operands; of two equal ones the negative (positive) one."""
    rel, _ = bfp.compare(fmt, a, b, False)
    if rel == 0:
        if fmt.sign(a) == fmt.sign(b):
            return a
        neg, pos = (a, b) if fmt.sign(a) else (b, a)
        return neg if is_min else pos
    a_low = rel == 1
    return (a if a_low else b) if is_min else (b if a_low else a)


def _fma(negate_c: bool, negate_result: bool) -> Handler:
    def handler(cpu: Cpu, raw: bytes) -> int | None:
        m5, m6 = raw[3] & 0xF, raw[2] & 0xF
        fmt, se = _fmt(m6), bool(m5 & 8)
        if m5 & 7:
            raise _spec("reserved M5 bits")
        ieee = _Ieee(cpu)
        mode = ieee.mode
        result = _element_loop(
            cpu,
            fmt,
            se,
            ieee,
            [_v2(raw), _v3(raw), _v4(raw)],
            lambda a, b, c: bfp.fma(fmt, a, b, c, mode, negate_c, negate_result),
        )
        _write(cpu, _v1(raw), result)
        ieee.done()
        return None

    return handler


def _compare(relation: Callable[[int], bool]) -> Handler:
    def handler(cpu: Cpu, raw: bytes) -> int | None:
        fmt, se, m5, m6 = _vrr_c_fp(cpu, raw)
        if m5 & 3 or m6 & 0xE:
            raise _spec(f"vector FP compare M5 {m5} M6 {m6}")
        signaling, set_cc = bool(m5 & 4), bool(m6 & 1)
        ieee = _Ieee(cpu)
        ones = (1 << fmt.bits) - 1
        matches: list[bool] = []

        def one(a: int, b: int) -> tuple[int, int]:
            rel, exc = bfp.compare(fmt, a, b, signaling)
            hit = relation(rel)
            matches.append(hit)
            return (ones if hit else 0), exc

        result = _element_loop(cpu, fmt, se, ieee, [_v2(raw), _v3(raw)], one)
        _write(cpu, _v1(raw), result)
        ieee.done()
        if not set_cc:
            return None
        return 0 if all(matches) else 1 if any(matches) else 3

    return handler


def _scalar_compare(signaling: bool) -> Handler:
    def handler(cpu: Cpu, raw: bytes) -> int | None:
        m3, m4 = raw[4] >> 4, raw[3] & 0xF
        fmt = _fmt(m3)
        if m4:
            raise _spec(f"WFC/WFK M4 {m4}")
        width = fmt.bits
        a = _elements(_read(cpu, _v1(raw)), width)[0]
        b = _elements(_read(cpu, _v2(raw)), width)[0]
        ieee = _Ieee(cpu)
        rel, exc = bfp.compare(fmt, a, b, signaling)
        ieee.element(0, exc)
        ieee.done()
        return rel

    return handler


def _vrr_a_fp(raw: bytes) -> tuple[int, int, int]:
    """M3, M4, M5 of a VRR-a instruction."""
    return raw[4] >> 4, raw[3] & 0xF, raw[3] >> 4


def _vfsq(cpu: Cpu, raw: bytes) -> int | None:
    m3, m4, _ = _vrr_a_fp(raw)
    fmt, se = _fmt(m3), bool(m4 & 8)
    if m4 & 7:
        raise _spec("reserved M4 bits")
    ieee = _Ieee(cpu)
    mode = ieee.mode
    _write(cpu, _v1(raw), _element_loop(cpu, fmt, se, ieee, [_v2(raw)], lambda a: bfp.sqrt(fmt, a, mode)))
    ieee.done()
    return None


def _vfi(cpu: Cpu, raw: bytes) -> int | None:
    m3, m4, m5 = _vrr_a_fp(raw)
    fmt, se = _fmt(m3), bool(m4 & 8)
    if m4 & 3:
        raise _spec("reserved M4 bits")
    ieee = _Ieee(cpu, xxc=bool(m4 & 4))
    mode = _mode(ieee, m5)
    result = _element_loop(cpu, fmt, se, ieee, [_v2(raw)], lambda a: bfp.round_to_integer(fmt, a, mode))
    _write(cpu, _v1(raw), result)
    ieee.done()
    return None


def _vfll(cpu: Cpu, raw: bytes) -> int | None:
    """VECTOR FP LOAD LENGTHENED: short to long (the even elements) or long to extended (element 0)."""
    m3, m4, _ = _vrr_a_fp(raw)
    se = bool(m4 & 8)
    if m3 not in (2, 3) or m4 & 7:
        raise _spec(f"VFLL M3 {m3} M4 {m4}")
    src, dst = (SHORT, LONG) if m3 == 2 else (LONG, EXTENDED)
    elems = _elements(_read(cpu, _v2(raw)), src.bits)
    ieee = _Ieee(cpu)
    count = 1 if se or dst is EXTENDED else 2
    out = [0] * (128 // dst.bits)
    for k in range(count):
        bits, exc = bfp.convert(src, dst, elems[2 * k], ieee.mode)
        ieee.element(2 * k if src is SHORT else 0, exc)
        out[k] = bits
    _write(cpu, _v1(raw), _join(out, dst.bits))
    ieee.done()
    return None


def _vflr(cpu: Cpu, raw: bytes) -> int | None:
    """VECTOR FP LOAD ROUNDED: long to short (into the even word elements) or extended to long."""
    m3, m4, m5 = _vrr_a_fp(raw)
    se = bool(m4 & 8)
    if m3 not in (3, 4) or m4 & 3:
        raise _spec(f"VFLR M3 {m3} M4 {m4}")
    src, dst = (LONG, SHORT) if m3 == 3 else (EXTENDED, LONG)
    ieee = _Ieee(cpu, xxc=bool(m4 & 4))
    mode = _mode(ieee, m5)
    elems = _elements(_read(cpu, _v2(raw)), src.bits)
    if dst is LONG:
        bits, exc = bfp.convert(src, dst, elems[0], mode)
        ieee.element(0, exc)
        old = _read(cpu, _v1(raw))
        _write(cpu, _v1(raw), bits << 64 | old & ((1 << 64) - 1))  # the right doubleword: unpredictable, kept
    else:
        out = [0, 0, 0, 0]
        for k in range(1 if se else 2):
            bits, exc = bfp.convert(src, dst, elems[k], mode)
            ieee.element(k, exc)
            out[2 * k] = bits
        _write(cpu, _v1(raw), _join(out, 32))
    ieee.done()
    return None


def _vfpso(cpu: Cpu, raw: bytes) -> int | None:
    m3, m4, m5 = _vrr_a_fp(raw)
    fmt, se = _fmt(m3), bool(m4 & 8)
    if m4 & 7 or m5 > 2:
        raise _spec(f"VFPSO M4 {m4} M5 {m5}")
    sb = fmt.sign_bit
    op = (lambda a: a ^ sb, lambda a: a | sb, lambda a: a & ~sb)[m5]
    elems = _elements(_read(cpu, _v2(raw)), fmt.bits)
    out = [0] * len(elems)
    for k in range(1 if se else len(elems)):
        out[k] = op(elems[k])
    _write(cpu, _v1(raw), _join(out, fmt.bits))
    return None


def _vftci(cpu: Cpu, raw: bytes) -> int | None:
    i3 = raw[2] << 4 | raw[3] >> 4
    m5, m4 = raw[3] & 0xF, raw[4] >> 4
    fmt, se = _fmt(m4), bool(m5 & 8)
    if m5 & 7:
        raise _spec("reserved M5 bits")
    elems = _elements(_read(cpu, _v2(raw)), fmt.bits)
    ones = (1 << fmt.bits) - 1
    out = [0] * len(elems)
    hits = []
    for k in range(1 if se else len(elems)):
        hit = bool(fmt.data_class(elems[k]) & i3)
        hits.append(hit)
        out[k] = ones if hit else 0
    _write(cpu, _v1(raw), _join(out, fmt.bits))
    return 0 if all(hits) else 1 if any(hits) else 3


# opcode (byte 5) -> (mnemonic, handler, the formats unicorn itself runs: those are not ours)
_FP: Final[dict[int, tuple[str, Handler]]] = {
    0xE3: ("VFA", _binary(bfp.add)),
    0xE2: ("VFS", _binary(_sub)),
    0xE7: ("VFM", _binary(bfp.mul)),
    0xE5: ("VFD", _binary(bfp.div)),
    0xEF: ("VFMAX", _minmax(False)),
    0xEE: ("VFMIN", _minmax(True)),
    0x8F: ("VFMA", _fma(False, False)),
    0x8E: ("VFMS", _fma(True, False)),
    0x9F: ("VFNMA", _fma(False, True)),
    0x9E: ("VFNMS", _fma(True, True)),
    0xE8: ("VFCE", _compare(lambda rel: rel == 0)),
    0xEB: ("VFCH", _compare(lambda rel: rel == 2)),
    0xEA: ("VFCHE", _compare(lambda rel: rel in (0, 2))),
    0xCB: ("WFC", _scalar_compare(False)),
    0xCA: ("WFK", _scalar_compare(True)),
    0xCE: ("VFSQ", _vfsq),
    0xC7: ("VFI", _vfi),
    0xC4: ("VFLL", _vfll),
    0xC5: ("VFLR", _vflr),
    0xCC: ("VFPSO", _vfpso),
    0x4A: ("VFTCI", _vftci),
}

_OTHER: Final[dict[int, tuple[str, Handler]]] = {
    0x85: ("VBPERM", _vbperm),
    0xB8: ("VMSL", _vmsl),
    0x50: ("VPOPCT", _vpopct),
}


def _lookup(raw: bytes) -> tuple[str, Handler] | None:
    if len(raw) < 6 or raw[0] != 0xE7:
        return None
    op = raw[5]
    if op == 0x04:  # VLLEZ: only the left-aligned word (M3 6) is this facility's
        return ("VLLEZ", _vllez_lf) if raw[4] >> 4 == 6 else None
    return _FP.get(op) or _OTHER.get(op)


def handles(raw: bytes) -> bool:
    """Whether ``raw`` is an instruction this module emulates (any form of it: unicorn traps only those
    it does not run, and an undefined field value is the specification exception raised here)."""
    return _lookup(raw) is not None


def emulate(cpu: Cpu, insn: Insn) -> None:
    """Execute the trapped instruction ``insn`` (``handles(insn.raw)``): its result, condition code and
    PSW, or a ``ProgramException`` (the CPU delivers it with the instruction's ILC)."""
    found = _lookup(insn.raw)
    if found is None:
        raise ProgramException(PGM_OPERATION, why=f"{insn.raw.hex()} is not an instruction")
    name, handler = found
    cr0 = cpu.cr(0)
    if not cr0 & _CR0_VECTOR:
        if cr0 & _CR0_AFP:
            cpu.set_fpc(cpu.fpc() & ~0xFF00 | _DXC_VECTOR_DISABLED << 8)
        cpu._lowcore_write(LC_DXC, _DXC_VECTOR_DISABLED.to_bytes(4, "big"))  # noqa: SLF001
        raise ProgramException(PGM_DATA, why=f"{name} with vector instructions disabled (CR0 bit 46)")
    insn.finish(handler(cpu, insn.raw))

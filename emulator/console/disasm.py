"""Disassembly of s390x code with capstone, plus a table for the instructions capstone 5 does not know.

capstone stops at UVC, SERVC and a few newer or privileged opcodes (``unicorn-s390x.md`` section 5); the
fallback table decodes them from their architected formats (RRE, RRF) so a listing never ends early.
Bytes that are not an instruction at all are shown as ``.short``/``.long``/``.quad`` data of the length the
first opcode byte gives (ILC), so the listing stays aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import capstone

__all__ = ["Instruction", "disassemble", "insn_length", "FALLBACK", "is_call", "branch_target"]


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: address, bytes, mnemonic, operands, and where the decoding came from."""

    address: int
    raw: bytes
    mnemonic: str
    operands: str
    source: str  # "capstone", "table" or "data"

    @property
    def size(self) -> int:
        """Length in bytes."""
        return len(self.raw)


def insn_length(first_byte: int) -> int:
    """Instruction length from the first opcode byte (bits 0-1: 00 -> 2, 01/10 -> 4, 11 -> 6)."""
    return (2, 4, 4, 6)[first_byte >> 6]


def _rre(raw: bytes) -> str:
    return f"%r{raw[3] >> 4}, %r{raw[3] & 0xF}"


def _rrf_m4(raw: bytes) -> str:
    m = raw[2] & 0xF
    return f"%r{raw[3] >> 4}, %r{raw[3] & 0xF}" + (f", {m}" if m else "")


def _rrf_r3(raw: bytes) -> str:
    return f"%r{raw[3] >> 4}, %r{raw[3] & 0xF}, %r{raw[2] >> 4}"


def _rre_r1(raw: bytes) -> str:
    return f"%r{raw[3] >> 4}"


def _none(raw: bytes) -> str:
    return ""


#: Opcodes capstone 5 lacks: (two-byte opcode) -> (mnemonic, operand formatter). Formats from the PoP.
FALLBACK: Final[dict[int, tuple[str, Callable[[bytes], str]]]] = {
    0xB9A4: ("uvc", _rrf_m4),  # RRF-c: UVC R1,R2,M3 (Ultravisor Call)
    0xB220: ("servc", _rre),  # RRE: SERVC R1,R2 (Service Call)
    0xB9A1: ("tpei", _rre),  # RRE: Test Pending External Interruption
    0xB9AB: ("essa", _rrf_m4),  # RRF-c: Extract and Set Storage Attributes
    0xB247: ("msta", _rre_r1),  # RRE: Modify Stacked State
    0xB24A: ("esta", _rre),  # RRE: Extract Stacked State
    0xB256: ("sthyi", _rre),  # RRE: Store Hypervisor Information
    0xB938: ("sortl", _rre),  # RRE: Sort Lists
    0xB939: ("dfltcc", _rrf_r3),  # RRF-a: Deflate Conversion Call
    0xB93A: ("kdsa", _rre),  # RRE: Compute Digital Signature Authentication
    0xB93B: ("nnpa", _none),  # RRE: Neural Network Processing Assist
}


_MD: capstone.Cs | None = None


def _capstone() -> capstone.Cs:
    global _MD
    if _MD is None:
        _MD = capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)
    return _MD


def _decode_one(code: bytes, address: int) -> Instruction:
    n = insn_length(code[0])
    if len(code) < n:
        raw = code[:2] if len(code) >= 2 else code
        return Instruction(address, raw, ".short" if len(raw) == 2 else ".byte", raw.hex(), "data")
    for i in _capstone().disasm(code[:n], address, count=1):
        return Instruction(address, bytes(i.bytes), i.mnemonic, i.op_str, "capstone")
    key = code[0] << 8 | code[1]
    hit = FALLBACK.get(key)
    raw = bytes(code[:n])
    if hit is not None:
        name, fmt = hit
        return Instruction(address, raw, name, fmt(raw), "table")
    word = {2: ".short", 4: ".long", 6: ".quad"}[n]
    return Instruction(address, raw, word, "0x" + raw.hex(), "data")


def disassemble(code: bytes, address: int, count: int | None = None) -> Iterator[Instruction]:
    """Decode ``code`` (found at ``address``) one instruction at a time, ``count`` at most."""
    off = 0
    done = 0
    while off + 1 < len(code) and (count is None or done < count):
        insn = _decode_one(code[off:], address + off)
        yield insn
        off += insn.size
        done += 1


#: Branch-and-link mnemonics: ``next`` steps over them.
_CALLS: Final = frozenset({"brasl", "bras", "basr", "bas", "brasl", "jas", "jasl", "bassm", "basm"})


def is_call(insn: Instruction) -> bool:
    """True for a branch that saves a return address (a subroutine call)."""
    return insn.mnemonic in _CALLS


def branch_target(insn: Instruction) -> int | None:
    """The target of a relative branch (from capstone's operand text), or None."""
    if insn.source != "capstone" or not (insn.mnemonic.startswith(("j", "br", "cij", "cgij", "crj", "cgrj"))):
        return None
    last = insn.operands.rsplit(",", 1)[-1].strip()
    try:
        return int(last, 0)
    except ValueError:
        return None

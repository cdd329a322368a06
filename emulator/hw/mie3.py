"""The miscellaneous-instruction-extensions facility 3 (z15, facility 61), which unicorn 2.1.4 does not have.

unicorn (QEMU 5.0's TCG) raises an operation exception for the facility's new instructions and runs POPULATION
COUNT's earlier form only: it ignores the M3 field, so ``popcnt r1,r2,8`` would silently give the count of
each byte instead of the whole register's. The page scan therefore traps these (``traps``; POPCNT only with
M3 bit 0 one, so the byte-wise form stays native) and they are emulated here as the Principles of Operation
define them:

- AND WITH COMPLEMENT, NAND, NOR, NOT EXCLUSIVE OR, OR WITH COMPLEMENT (NCRK, NNRK, NORK, NXRK, OCRK on bits
  32-63, bits 0-31 of R1 unchanged; the G forms on 64 bits): R1 = R2 op R3, condition code 0 for a zero
  result, 1 otherwise;
- SELECT (SELR bits 32-63, SELGR 64 bits, SELFHR bits 0-31): R1 gets R2 when the condition code is one M4
  selects (M4 bit 8 >> CC), else R3; the rest of R1 and the condition code are unchanged;
- POPULATION COUNT with M3 bit 0 (value 8): R1 = the number of one bits of R2, condition code 0 when zero,
  1 otherwise (the other M3 bits are ignored);
- MOVE RIGHT TO LEFT: L = bits 56-63 of general register 0 plus one bytes of the second operand are moved to
  the first, the rightmost byte first, so an overlap propagates as that order gives; the condition code is
  unchanged. Both operands' pages are checked (fetch, then store) before any byte is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.exits import Insn

__all__ = ["FACILITY", "HANDLERS", "OPCODES", "POPCNT", "popcnt_extended"]

FACILITY: Final = 61
#: POPULATION COUNT: trapped only in its extended form (``popcnt_extended``)
POPCNT: Final = 0xB9E1
MVCRL: Final = 0xE50A

_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF
_HIGH: Final = _M64 ^ _M32

Handler = Callable[["Cpu", "Insn"], None]
#: opcode key -> (mnemonic, privileged, handler), merged into ``insns.HANDLERS``
HANDLERS: dict[int, tuple[str, bool, Handler]] = {}


def popcnt_extended(raw: bytes) -> bool:
    """Whether the POPULATION COUNT ``raw`` counts the whole register (M3 bit 0): the form unicorn gets
    wrong."""
    return bool(raw[2] & 0x80)


def _rrf(raw: bytes) -> tuple[int, int, int, int]:
    """R1, R2, R3 and M4 of an RRF-a instruction (R3 in bits 16-19, M4 in 20-23, R1 24-27, R2 28-31)."""
    return raw[3] >> 4, raw[3] & 0xF, raw[2] >> 4, raw[2] & 0xF


def _logical(op: Callable[[int, int], int], wide: bool) -> Handler:
    def run(cpu: Cpu, insn: Insn) -> None:
        r1, r2, r3, _m4 = _rrf(insn.raw)
        result = op(cpu.gpr(r2), cpu.gpr(r3)) & (_M64 if wide else _M32)
        cpu.set_gpr(r1, result if wide else (cpu.gpr(r1) & _HIGH) | result)
        insn.finish(0 if result == 0 else 1)

    return run


_LOGICAL: Final = {
    "NC": (0xB9F5, 0xB9E5, lambda a, b: a & ~b),
    "NN": (0xB974, 0xB964, lambda a, b: ~(a & b)),
    "NO": (0xB976, 0xB966, lambda a, b: ~(a | b)),
    "NX": (0xB977, 0xB967, lambda a, b: ~(a ^ b)),
    "OC": (0xB975, 0xB965, lambda a, b: a | ~b),
}
for _name, (_short, _wide, _op) in _LOGICAL.items():
    HANDLERS[_short] = (_name + "RK", False, _logical(_op, False))
    HANDLERS[_wide] = (_name + "GRK", False, _logical(_op, True))


def _select(keep: int) -> Handler:
    """SELECT into the bits of R1 that ``keep`` leaves out (``keep``: the bits of R1 that stay)."""

    def run(cpu: Cpu, insn: Insn) -> None:
        r1, r2, r3, m4 = _rrf(insn.raw)
        cc = (cpu.psw_mask >> 44) & 3
        chosen = cpu.gpr(r2 if m4 & (8 >> cc) else r3)
        cpu.set_gpr(r1, (cpu.gpr(r1) & keep) | (chosen & ~keep & _M64))
        insn.finish()

    return run


HANDLERS[0xB9F0] = ("SELR", False, _select(_HIGH))
HANDLERS[0xB9E3] = ("SELGR", False, _select(0))
HANDLERS[0xB9C0] = ("SELFHR", False, _select(_M32))


def _popcnt(cpu: Cpu, insn: Insn) -> None:
    raw = insn.raw
    value = cpu.gpr(raw[3] & 0xF)
    if popcnt_extended(raw):
        result = value.bit_count()
    else:  # the earlier form (trapped only as the target of EXECUTE with its M3 field ORed in): per byte
        result = int.from_bytes(bytes(b.bit_count() for b in value.to_bytes(8, "big")), "big")
    cpu.set_gpr(raw[3] >> 4, result)
    insn.finish(0 if result == 0 else 1)


HANDLERS[POPCNT] = ("POPCNT", False, _popcnt)


def _mvcrl(cpu: Cpu, insn: Insn) -> None:
    raw = insn.raw
    first = cpu.operand_address(raw[2] >> 4, (raw[2] & 0xF) << 8 | raw[3])
    second = cpu.operand_address(raw[4] >> 4, (raw[4] & 0xF) << 8 | raw[5])
    length = (cpu.gpr(0) & 0xFF) + 1
    source = cpu.read_virtual(second, length)
    # the bytes as the right-to-left order stores them: a source byte a higher store already replaced is
    # read as replaced (first operand to the left of an overlapping second one)
    stored: dict[int, int] = {}
    for i in range(length - 1, -1, -1):
        stored[cpu.wrap(first + i)] = stored.get(cpu.wrap(second + i), source[i])
    cpu.write_virtual(first, bytes(stored[cpu.wrap(first + i)] for i in range(length)))
    insn.finish()


HANDLERS[MVCRL] = ("MVCRL", False, _mvcrl)

#: the opcode keys the page scan traps unconditionally (POPCNT only in its extended form)
OPCODES: Final = frozenset(k for k in HANDLERS if k != POPCNT)

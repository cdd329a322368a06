"""The decimal-floating-point facility (42, with 48 and 80), which unicorn 2.1.4 does not have, emulated.

unicorn (QEMU 5.0's TCG) raises an operation exception for every DFP instruction (B3D0-B3FF, the facility
37 conversions B941-B95B, ED40-ED59, and the zoned and packed conversions EDA8-EDAF of facilities 48 and
80). The CPU hands those here from its program-interruption path, as it does ``vector_ext``'s, so the
emulation costs nothing until a DFP instruction runs: no page-scan trap, no per-instruction hook. The
instructions themselves are ``dfp_insns``' (arithmetic, comparisons, loads, rounding, shifts, tests),
``dfp_convert``'s (binary and packed conversions, exponent and significance) and ``dfp_storage``'s (zoned
and packed fields in storage); their operands are encoded and decoded by ``dfp_format`` and computed by
``dfp_arith``.

A DFP instruction with the AFP-register control (CR0 bit 45) zero is a data exception with DXC 3 (the FPC
is not changed then). SET DFP ROUNDING MODE (SRNMT), LOAD FPC AND SIGNAL and SET FPC AND SIGNAL are
unicorn's own. PFPO (facility 44, conversions between binary and decimal floating point) is not emulated
nor offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import dfp_convert, dfp_insns, dfp_storage
from emulator.hw.arch import LC_DXC, PGM_OPERATION
from emulator.hw.dfp_cpu import PGM_DATA, Dfp

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.exits import Insn

__all__ = ["FACILITIES", "FACILITY", "HANDLERS", "OFFERED", "emulate", "handles"]

FACILITY: Final = 42
#: decimal floating point and its zoned (48) and packed (80) conversions, all emulated here
FACILITIES: Final = (42, 48, 80)
#: whether the CPU offers these facilities (``sysinfo`` lists them then) and so executes the instructions
OFFERED: Final = True
_CR0_AFP: Final = 1 << 18
_DXC_DFP_INSTRUCTION: Final = 0x03

#: opcode key (the first byte and, for B3/B9, the second; for ED, the sixth) -> (mnemonic, handler)
HANDLERS: Final = {**dfp_insns.HANDLERS, **dfp_convert.HANDLERS, **dfp_storage.HANDLERS}


def _key(raw: bytes) -> int:
    if raw[0] == 0xED:
        return 0xED00 | (raw[5] if len(raw) >= 6 else 0)
    return raw[0] << 8 | (raw[1] if len(raw) >= 2 else 0)


def handles(raw: bytes) -> bool:
    """Whether ``raw`` is a DFP instruction this module emulates."""
    return len(raw) >= 4 and raw[0] in (0xB3, 0xB9, 0xED) and _key(raw) in HANDLERS


def emulate(cpu: Cpu, insn: Insn) -> None:
    """Execute the DFP instruction ``insn`` (``handles(insn.raw)``): its result, FPC flags, condition code
    and PSW, or a ``ProgramException`` (the CPU delivers it with the instruction's ILC)."""
    found = HANDLERS.get(_key(insn.raw))
    if found is None:
        raise ProgramException(PGM_OPERATION, why=f"{insn.raw.hex()} is not a DFP instruction")
    if not cpu.has_facility(FACILITY):  # (a machine with QEMU TCG's CPU model: ``sysinfo.facility_list``)
        raise ProgramException(PGM_OPERATION, why=f"{found[0]}: no decimal floating point (facility 42)")
    name, handler = found
    if not cpu.cr(0) & _CR0_AFP:
        cpu._lowcore_write(LC_DXC, _DXC_DFP_INSTRUCTION.to_bytes(4, "big"))  # noqa: SLF001
        raise ProgramException(PGM_DATA, why=f"{name} with the AFP-register control off (CR0 bit 45)")
    insn.name = name
    handler(Dfp(cpu, insn))

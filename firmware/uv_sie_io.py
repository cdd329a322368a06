"""A secure guest's channel-subsystem instructions as the Ultravisor hands them to the host: operands
through the SIDA.

Trusted code, part of the Ultravisor's SIE (``firmware/uv_sie.py``). The host emulates the channel
subsystem, but it may not reach the guest's storage, so the Ultravisor moves each instruction's control
block between the guest's operand and the SIDA, always at SIDA offset 0 (QEMU's ``ioinst.c`` reads and
writes its blocks there for a protected guest): before the intercept it checks what the guest CPU checks
first (the operand's alignment: specification exception; a subsystem-identification word without its one
bit: operand exception; the operand's access exceptions), copies a fetched block (ORB, SCHIB, the CHSC
request page) into the SIDA, and at the completion stores the block the host left there (SCHIB, IRB, CRW,
the CHSC response page, TPI's interruption code) into the guest's operand, as the condition code says.

The channel program itself (its CCWs, IDAWs and data areas) is never copied: the channel subsystem reaches
it in the guest's storage as the host, so a secure guest puts it into pages it shared (Linux's DMA pool
and SWIOTLB bounce buffers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, Insn

__all__ = ["IoOperand", "prepare", "complete"]

PGM_SPECIFICATION: Final = 0x06
PGM_OPERAND: Final = 0x15

#: instruction -> (operand alignment, bytes fetched into the SIDA, bytes stored from it, GR1 is a subsystem
#: id); CHSC's operand is the 4 KiB page GR R1 names (request in, response out), the others' the second
#: operand's address; TPI's stored length depends on its operand (two words, or three at real 0xB8)
_OPERANDS: Final[dict[str, tuple[int, int, int, bool]]] = {
    "SSCH": (4, 32, 0, True),
    "MSCH": (4, 52, 0, True),
    "STSCH": (4, 0, 52, True),
    "TSCH": (4, 0, 96, True),
    "STCRW": (4, 0, 4, False),
    "STCPS": (32, 0, 32, False),
    "TPI": (4, 0, 8, False),
    "CHSC": (0x1000, 0x1000, 0x1000, False),
    "CSCH": (0, 0, 0, True),
    "HSCH": (0, 0, 0, True),
    "XSCH": (0, 0, 0, True),
    "RSCH": (0, 0, 0, True),
    "RCHP": (0, 0, 0, False),
    "SCHM": (0, 0, 0, False),
    "SAL": (0, 0, 0, False),
}


@dataclass
class IoOperand:
    """What the completion needs: the instruction's operand address (never shown to the host) and the
    bytes to store from the SIDA on which condition codes."""

    name: str
    address: int
    store: int
    store_ccs: tuple[int, ...]


def _probe_store(cpu: Cpu, addr: int, length: int) -> None:
    cpu.translate(addr, write=True, mark=False)
    last = cpu.wrap(addr + length - 1)
    if last >> 12 != addr >> 12:
        cpu.translate(last, write=True, mark=False)


def prepare(cpu: Cpu, insn: Insn, sida: memoryview, regs: object) -> IoOperand:
    """Check the instruction's operands as the guest CPU does before the host is asked and put a fetched
    block into the SIDA; the registers the host needs go to ``regs`` (``pv_grregs``: GR1, and GR2 for
    SCHM). Raises ``ProgramException`` for what the guest gets at once (the host is not asked)."""
    name = insn.name
    align, fetch, store, uses_sid = _OPERANDS.get(name, (0, 0, 0, False))
    regs[1] = cpu.gpr(1)  # type: ignore[index]
    if name == "SCHM":
        regs[2] = cpu.gpr(2)  # type: ignore[index]
    addr = 0
    if name == "CHSC":
        addr = cpu.wrap(cpu.gpr(insn.r1))
    elif align:
        addr = insn.address()
    if align and addr & (align - 1):
        why = f"{name} operand {addr:#x} not on a {align}-byte boundary"
        raise ProgramException(PGM_SPECIFICATION, why=why)
    if name == "TPI" and not addr:
        store = 0  # the interruption code goes to the lowcore (real 0xB8): no access exception possible
    if store:
        _probe_store(cpu, addr, store)
    if fetch:
        block = cpu.read_virtual(addr, fetch)
        if name == "CHSC":
            length = int.from_bytes(block[:2], "big")
            if length < 16 or length > 4088 or length & 7:
                raise ProgramException(PGM_OPERAND, why=f"CHSC request length {length:#x}")
        sida[:fetch] = block
    if uses_sid and (cpu.gpr(1) & 0xFFFFFFFF) >> 16 != 1:
        raise ProgramException(PGM_OPERAND, why=f"{name}: GR1 is not a subchannel's subsystem id")
    ccs: tuple[int, ...] = {"STSCH": (0,), "TSCH": (0, 1), "STCRW": (0, 1), "TPI": (1,), "CHSC": (0,),
                            "STCPS": (0, 1, 2, 3)}.get(name, ())  # fmt: skip
    if name == "TPI" and not addr:
        store = 12
    return IoOperand(name, addr, store, ccs)


def complete(cpu: Cpu, op: IoOperand, sida: memoryview, cc: int) -> None:
    """Store the block the host left in the SIDA into the guest's operand when ``cc`` says one was
    stored (TPI with operand 0: the three words at real 0xB8)."""
    if not op.store or cc not in op.store_ccs:
        return
    data = bytes(sida[: op.store])
    if op.name == "TPI" and not op.address:
        cpu.write_real(0xB8, data)
    else:
        cpu.write_virtual(op.address, data)

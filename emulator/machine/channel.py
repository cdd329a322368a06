"""The channel-subsystem instructions as the machine answers them: operand checks and the CPU's own operand
accesses around ``emulator.hw.css``.

Each handler follows the order the architecture gives the checks: specification (operand alignment),
then the access exceptions of the operand, then the operand exception for an invalid subsystem id or
control block, then the condition code. The SCHIB, ORB, IRB and CHSC blocks are fetched and stored through
the issuing CPU's translation (DAT, key-controlled and low-address protection) like any operand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from emulator.errors import ProgramException
from emulator.hw import chsc
from emulator.hw.cpu import Cpu, Insn
from emulator.hw.css import PGM_OPERAND, ChannelSubsystem

__all__ = ["HANDLERS"]

PGM_SPECIFICATION: Final = 0x06
SCHIB_SIZE: Final = 52
ORB_SIZE: Final = 32
IRB_SIZE: Final = 96


def _aligned(addr: int, n: int, what: str) -> int:
    if addr & (n - 1):
        raise ProgramException(PGM_SPECIFICATION, why=f"{what} operand {addr:#x} not on a {n}-byte boundary")
    return addr


def _probe_store(cpu: Cpu, addr: int, length: int) -> None:
    """Raise the access exception a store of ``length`` bytes at ``addr`` would raise, storing nothing."""
    cpu.translate(addr, write=True, mark=False)
    last = cpu.wrap(addr + length - 1)
    if last >> 12 != addr >> 12:
        cpu.translate(last, write=True, mark=False)


def _sid(css: ChannelSubsystem, cpu: Cpu) -> int:
    sid = cpu.gpr(1) & 0xFFFFFFFF
    css.check_sid(sid)
    return sid


def _store_block(cpu: Cpu, insn: Insn, name: str, size: int, op: Callable[[int], tuple[int, bytes | None]],
                 css: ChannelSubsystem) -> None:
    """STSCH and TSCH: the operand is checked for the store first, then the subsystem id, then the block
    the subchannel gives (if any) is stored and the condition code set."""
    addr = _aligned(insn.address(), 4, name)
    sid = cpu.gpr(1) & 0xFFFFFFFF
    _probe_store(cpu, addr, size)
    css.check_sid(sid)
    cc, block = op(sid)
    if block is not None:
        cpu.write_virtual(addr, block)
    insn.finish(cc)


def _stsch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    _store_block(cpu, insn, "STSCH", SCHIB_SIZE, css.stsch, css)


def _tsch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    _store_block(cpu, insn, "TSCH", IRB_SIZE, css.tsch, css)


def _msch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    addr = _aligned(insn.address(), 4, "MSCH")
    schib = cpu.read_virtual(addr, SCHIB_SIZE)
    insn.finish(css.msch(_sid(css, cpu), schib))


def _ssch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    addr = _aligned(insn.address(), 4, "SSCH")
    orb = cpu.read_virtual(addr, ORB_SIZE)
    insn.finish(css.ssch(_sid(css, cpu), orb))


def _rsch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    insn.finish(css.rsch(_sid(css, cpu)))


def _hsch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    insn.finish(css.hsch(_sid(css, cpu)))


def _csch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    insn.finish(css.csch(_sid(css, cpu)))


def _xsch(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    insn.finish(css.xsch(_sid(css, cpu)))


def _tpi(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    """TEST PENDING INTERRUPTION: operand 0 stores the three words at 0xB8 of the lowcore, else two words
    (subsystem id, interruption parameter) at the operand; cc 1 if an interruption was taken."""
    addr = _aligned(insn.address(), 4, "TPI")
    if addr:
        _probe_store(cpu, addr, 8)  # the interruption is not taken if it cannot be stored
    taken = css.take_io(cpu.cr(6))
    if taken is None:
        insn.finish(0)
        return
    sid, param, ident = taken
    words = sid.to_bytes(4, "big") + param.to_bytes(4, "big")
    if addr:
        cpu.write_virtual(addr, words)
    else:
        cpu.write_real(0xB8, words + ident.to_bytes(4, "big"))
    insn.finish(1)


def _stcrw(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    addr = _aligned(insn.address(), 4, "STCRW")
    _probe_store(cpu, addr, 4)  # a report is not lost to an access exception
    word = css.stcrw()
    cpu.write_virtual(addr, (word or 0).to_bytes(4, "big"))
    insn.finish(1 if word is None else 0)


def _stcps(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    """STORE CHANNEL PATH STATUS: no channel path is ever active between instructions: 32 zero bytes."""
    addr = _aligned(insn.address(), 32, "STCPS")
    cpu.write_virtual(addr, bytes(32))
    insn.finish()


def _rchp(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    insn.finish(css.rchp(cpu.gpr(1)))


def _schm(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    css.schm(cpu.gpr(1), cpu.gpr(2))
    insn.finish()


def _sal(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    css.sal(cpu.gpr(1))
    insn.finish()


def _chsc(css: ChannelSubsystem, cpu: Cpu, insn: Insn) -> None:
    """CHANNEL SUBSYSTEM CALL: the request block at GR R1 (4 KiB aligned), the response after it."""
    addr = cpu.gpr(insn.r1)
    addr = _aligned(cpu.wrap(addr), 0x1000, "CHSC")
    header = cpu.read_virtual(addr, 4)
    length = int.from_bytes(header[:2], "big")
    if length < 16 or length > 4088 or length & 7:
        raise ProgramException(PGM_OPERAND, why=f"CHSC request length {length:#x}")
    response = chsc.call(css, cpu.read_virtual(addr, length))
    cpu.write_virtual(addr + length, response[: 0x1000 - length])
    insn.finish(0)


HANDLERS: Final[dict[str, Callable[[ChannelSubsystem, Cpu, Insn], None]]] = {
    "STSCH": _stsch,
    "MSCH": _msch,
    "SSCH": _ssch,
    "TSCH": _tsch,
    "RSCH": _rsch,
    "HSCH": _hsch,
    "CSCH": _csch,
    "XSCH": _xsch,
    "TPI": _tpi,
    "STCRW": _stcrw,
    "STCPS": _stcps,
    "RCHP": _rchp,
    "SCHM": _schm,
    "SAL": _sal,
    "CHSC": _chsc,
}

"""A secure guest's intercepted instructions (0x68/0x6C): what the Ultravisor shows the host and completes.

The classification of an owner instruction of a secure guest into a PV instruction intercept (0x68, the
normalised text and operand registers in the SIE page, its data in the SIDA), a PV notification (0x6C) or
an instruction performed inside SIE (guest UVCs, SIGP SET PREFIX between secure CPUs), and the completion
of a 0x68 intercept with the host's results at the next entry. The normalisation map is in ``uv_sie``'s
docstring. ``SecureIntercepts`` is a base class of ``PvSieEngine``: the engine's state, one trust domain.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.cpu import Cpu, GuestIntercept, Insn
from emulator.hw.diag import DIAG308_BLOCK_SUBCODES, IPL_BLOCK_SIZE, diag308_check
from emulator.hw.host_view import HostSpan
from emulator.hw.sclp import sccb_check
from emulator.hw.sie import ICPT_PV_INSTR, ICPT_PV_NOTIFY, SieExit, SiePage
from emulator.hw.sysinfo import stsi_operand_check
from firmware import uv_sie_io
from firmware.uv_guest_view import GuestCpuControlBlock
from firmware.uv_sie_codes import DUMMY_SCCB
from firmware.uv_sigp import SIGP_SET_PREFIX, set_prefix_target, status_store

if TYPE_CHECKING:
    from firmware.uv import SecureCpu, Ultravisor
    from firmware.uv_sie import _SecureMapping

_U16: Final = struct.Struct(">H")
_ZERO_GRREGS: Final = bytes(128)
_GRREGS_AT: Final = SiePage.pv_grregs.offset
_GRREGS_END: Final = _GRREGS_AT + 128


@dataclass
class _Pending:
    """An instruction intercepted with 0x68, waiting for the host's results."""

    insn: Insn
    kind: str  # "diag", "servc", "stsi", "sigp", "io"
    r1: int = 0
    r3: int = 0
    address: int = 0  # SCCB / STSI operand / IPL parameter block real address (never shown to the host)
    length: int = 0
    diag_code: int = 0
    subcode: int = 0  # DIAGNOSE 0x308's; SIGP's order code (its parameter in ``address``)
    target: int = 0  # SIGP's CPU address
    io: uv_sie_io.IoOperand | None = None  # a channel-subsystem instruction's operand


class SecureIntercepts:
    """The owner instructions of a secure guest: intercepts for the host, completions with its results."""

    uv: Ultravisor
    _host_sida: Callable[[SiePage], HostSpan]
    _span_key: tuple[int, int, int]
    _span: HostSpan | None
    _tag_gen: list[int]
    _pending: dict[int, _Pending]
    _loaded: dict[int, tuple[object, ...]]
    _maps: dict[int, _SecureMapping]
    _sccbs: dict[int, int]
    _raw: dict[int, memoryview]
    insn_filter: Callable[[Cpu, Insn], str | None] | None

    def _sida(self, page: SiePage) -> HostSpan:
        """The SIDA the SD designates, as the host gives it (``PvHost._sida``: every page of it checked as
        host storage, and again at each access of the span). The span of the last call is given again while
        the page, its SIDA designation and every owner tag are what they were then (the check would decide
        the same); the span itself still checks each access."""
        key = (ctypes.addressof(page), page.sie_block.sidad, self._tag_gen[0])
        span = self._span
        if key != self._span_key or span is None:
            span = self._span = self._host_sida(page)
            self._span_key = key
        return span

    def _page_bytes(self, page: SiePage) -> memoryview:
        """The SIE page's 4 KiB as bytes (kept by address: SIE pages live in the machine's storage, which
        outlives this engine, and a hypervisor reuses a few page addresses)."""
        addr = ctypes.addressof(page)
        view = self._raw[addr] = memoryview((ctypes.c_char * 0x1000).from_address(addr)).cast("B")
        return view

    def _instruction(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, insn: Insn) -> SieExit | None:
        """Handle an owner instruction of the secure guest; None when it was completed inside SIE."""
        flt = self.insn_filter
        if flt is not None:
            why = flt(cpu, insn)
            if why is not None:
                return SieExit(0, reason="filtered", detail=why)
        try:
            if insn.name == "UVC":  # the Ultravisor's own call (its page commands hold this CPU)
                return self._classify(cpu, page, scpu, insn)
            # the guest's operands (an SCCB, an IPL block, a channel-subsystem block) are read into the SIDA
            # under the CPU's run lock, as the completion stores them: no Ultravisor command takes a page
            # away (or hands its frame to another configuration) between a read's check and its copy
            with cpu.exclusive():
                return self._classify(cpu, page, scpu, insn)
        except GuestIntercept as e:
            if e.code in (0x3E, 0x3F):
                return SieExit(0, host_pgm=e.code, teid=e.data.get("teid", 0), reason=e.reason)
            raise
        except ProgramException as e:
            if e.code in (0x3E, 0x3F):  # the UV touched a page the host must import first
                return SieExit(0, host_pgm=e.code, teid=e.teid or 0, reason=e.why)
            cpu.program_interrupt(e.code, e.ilc if e.ilc is not None else insn.ilen, e.teid, pc=insn.pc)
            return None

    def _pv_instr(self, page: SiePage, scpu: SecureCpu, pending: _Pending, ipa: int, ipb: int) -> SieExit:
        sd = page.sie_block
        sd.ipa, sd.ipb = ipa, ipb
        self._pending[scpu.handle] = pending
        return SieExit(ICPT_PV_INSTR)

    @staticmethod
    def _notify(page: SiePage, insn: Insn, ipa: int, ipb: int, done: bool = True) -> SieExit:
        sd = page.sie_block
        sd.ipa, sd.ipb = ipa, ipb
        if done:
            insn.finish()
        return SieExit(ICPT_PV_NOTIFY)

    def _classify(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, insn: Insn) -> SieExit | None:
        page_bytes = self._raw.get(ctypes.addressof(page))
        if page_bytes is None:
            page_bytes = self._page_bytes(page)
        page_bytes[_GRREGS_AT:_GRREGS_END] = _ZERO_GRREGS  # one slice store (a ctypes call costs ~2x)
        regs = page.pv_grregs
        name = insn.name
        if name == "UVC":
            return self._uvc(cpu, page, scpu, insn)
        if name == "DIAG":
            raw = insn.raw  # RS format: 83 R1R3 B2D2 D2D2
            b2, d2 = raw[2] >> 4, (raw[2] & 0xF) << 8 | raw[3]
            code = (d2 + (cpu.gpr(b2) if b2 else 0)) & 0xFFFF  # low 16 bits: no addressing mode changes them
            r1, r3 = raw[1] >> 4, raw[1] & 0xF
            regs[5] = code
            if code in (0x44, 0x9C):
                regs[0] = cpu.gpr(r1)
                return self._notify(page, insn, 0x8302, 0x50000000)
            if code == 0x308:
                subcode = cpu.gpr(r3)  # all of R3 (as QEMU reads it): 0x10001 is an invalid subcode, no reset
                regs[2] = subcode
                if subcode in (0, 1):
                    # the secure CPU stops operating until the host completed the reset protocol (7.7)
                    self.uv.guest_reset_requested(scpu.handle)
                    return self._notify(page, insn, 0x8302, 0x50000000)
                if subcode in DIAG308_BLOCK_SUBCODES:
                    # the host sees R1 as register 0 and gets the block in the SIDA: the Ultravisor checks
                    # R1's parity and the block's page here (QEMU leaves them to it), so that it reads and
                    # stores one whole page of the guest's storage and never crosses into the next
                    addr = cpu.gpr(r1)
                    diag308_check(subcode, r1, addr, scpu.config.msl, unpack=True)
                    regs[0] = addr
                    regs[1] = cpu.gpr((r1 + 1) & 15)
                    if subcode in (5, 8):  # set: the block goes to the host in the SIDA
                        self._sida(page)[:IPL_BLOCK_SIZE] = cpu.read_real(addr, IPL_BLOCK_SIZE)
                    pending = _Pending(insn, "diag", r1, r3, address=addr, diag_code=code, subcode=subcode)
                    return self._pv_instr(page, scpu, pending, 0x8302, 0x50000000)
            if code == 0x500:
                for i in (1, 2, 3, 4):
                    regs[i] = cpu.gpr(i)
            else:
                if code == 0x288 and r1 & 1:  # the host sees R1 and R1+1 as registers 0 and 1: a pair
                    raise ProgramException(0x06, why="DIAG 0x288 needs an even R1")
                regs[0], regs[1], regs[2] = cpu.gpr(r1), cpu.gpr((r1 + 1) & 15), cpu.gpr(r3)
            return self._pv_instr(
                page, scpu, _Pending(insn, "diag", r1, r3, diag_code=code), 0x8302, 0x50000000
            )
        if name == "SERVC":
            sccb = cpu.gpr(insn.r2)
            sccb_check(sccb, cpu.prefix, scpu.config.msl)  # the hardware's checks, before the host sees it
            # The SIDA is one page: it holds the part of the SCCB in the SCCB's own page. The host sees the
            # SCCB at a dummy address with the real page offset, so the SCLP's boundary check (0x0100 for a
            # page-crossing or longer SCCB) comes out as it would for the real address. The rest of that page
            # is read at once (one frame: one translation and one check decide for the length and the
            # contents alike); only the SCCB's bytes go to the SIDA.
            off = sccb & 0xFFF
            rest = memoryview(cpu.read_real(sccb, 0x1000 - off))
            length = _U16.unpack_from(rest)[0]
            sccb_check(sccb, cpu.prefix, scpu.config.msl, length)
            n = min(length, 0x1000 - off)
            self._sida(page).write(0, rest[:n])
            regs[2] = cpu.gpr(insn.r1) & 0xFFFFFFFF
            regs[4] = DUMMY_SCCB | off
            self._sccbs[scpu.config.handle] = sccb
            sd = page.sie_block  # (``_pv_instr``, inline)
            sd.ipa, sd.ipb = 0xB220, 0x00240000
            self._pending[scpu.handle] = _Pending(insn, "servc", address=sccb, length=n)
            return SieExit(ICPT_PV_INSTR)
        if name == "STSI":
            addr = insn.address()
            fc = (cpu.gpr(0) >> 28) & 0xF
            stsi_operand_check(cpu.gpr(0), addr)  # the hardware's check, before the host sees it
            if fc not in (0, 15):
                cpu.translate(addr, write=True)  # the operand must be accessible before the host is asked
            regs[0], regs[1] = cpu.gpr(0), cpu.gpr(1)
            self._sida(page)[:0x1000] = bytes(0x1000)
            return self._pv_instr(page, scpu, _Pending(insn, "stsi", address=addr), 0xB27D, 0)
        if name == "SIGP":
            r1, r3 = insn.r1, insn.r3
            regs[2], regs[3], regs[4] = cpu.gpr(r1), cpu.gpr(r1 | 1), cpu.gpr(r3)
            order = regs[5] = insn.address() & 0xFF
            if order == SIGP_SET_PREFIX:
                try:
                    return self._sigp_set_prefix(cpu, page, scpu, insn, regs[4] & 0xFFFF, regs[3])
                except LookupError:
                    pass  # no such secure CPU: the host's answer
            pending = _Pending(insn, "sigp", r1, r3, address=regs[3], subcode=order, target=regs[4] & 0xFFFF)
            return self._pv_instr(page, scpu, pending, 0xAE24, 0x50000000)
        if name == "SIE":
            raise ProgramException(0x01, why="SIE is not available to a secure guest")
        # channel-subsystem instructions: their control blocks through the SIDA (``uv_sie_io``)
        op = uv_sie_io.prepare(cpu, insn, self._sida(page), regs)
        return self._pv_instr(page, scpu, _Pending(insn, "io", io=op), insn.opcode & 0xFFFF, 0)

    def _sigp_set_prefix(
        self, cpu: Cpu, page: SiePage, scpu: SecureCpu, insn: Insn, target_num: int, param: int
    ) -> SieExit | None:
        """SIGP SET PREFIX between secure CPUs, performed here (``uv_sie_codes.set_prefix_target``); a
        refusal stores its status (cc 1) and stays in SIE, a new prefix is told the host with a
        notification (0x6C, the normalised SIGP text). Raises ``LookupError`` when the address names no
        secure CPU of the configuration: the host answers then (cc 3)."""
        target, status = set_prefix_target(scpu.config, target_num, param)
        if status:
            cpu.set_gpr(insn.r1, (cpu.gpr(insn.r1) & ~0xFFFFFFFF) | status)
            insn.finish(1)
            return None
        self._loaded.pop(target.handle, None)  # its next entry loads the record, the new prefix with it
        insn.finish(0)
        return self._notify(page, insn, 0xAE24, 0x50000000, done=False)

    def _uvc(self, cpu: Cpu, page: SiePage, scpu: SecureCpu, insn: Insn) -> SieExit | None:
        from firmware.uv import UvCaller

        if insn.m_fields:
            raise ProgramException(0x06, why="UVC with nonzero M fields")
        cb = GuestCpuControlBlock(cpu, cpu.gpr(insn.r2))
        caller = UvCaller("guest", scpu.config.handle, scpu.handle)
        try:
            cc = self.uv.call(caller, cb)
        except GuestIntercept as e:
            if e.code == ICPT_PV_NOTIFY:
                # the host must act first (unpin); the guest re-issues the UVC afterwards
                sida = getattr(e, "sida", b"")
                self._sida(page)[: len(sida)] = sida
                return self._notify(page, insn, e.data.get("ipa", 0xB9A4), e.data.get("ipb", 0), done=False)
            raise
        insn.finish(cc)
        return None

    # -- completion of a 0x68 intercept -----------------------------------------------------------------

    def _complete(self, cpu: Cpu, page: SiePage, p: _Pending, scpu: SecureCpu) -> None:
        sd = page.sie_block
        regs = page.pv_grregs
        cc = (sd.psw_mask >> 44) & 3
        if p.kind == "diag":
            if p.diag_code == 0x500:
                cpu.set_gpr(2, regs[2])
            elif p.diag_code == 0x308:
                cpu.set_gpr((p.r1 + 1) & 15, regs[1])
                if p.subcode in (6, 9) and regs[1] == 0x0001:  # store: the host left the block in the SIDA
                    sida = self._sida(page)
                    # at most the rest of the block's page (the classification checked it is one aligned
                    # page of the guest's storage), whatever length the host wrote into the block
                    room = IPL_BLOCK_SIZE - (p.address & (IPL_BLOCK_SIZE - 1))
                    n = min(int.from_bytes(bytes(sida[:4]), "big"), room)
                    cpu.write_real(p.address, bytes(sida[:n]))
            p.insn.finish()
            return
        if p.kind == "servc":
            cpu.write_real(p.address, self._sida(page).read(0, p.length))
        elif p.kind == "stsi":
            fc = (cpu.gpr(0) >> 28) & 0xF
            if cc == 0 and fc not in (0, 15):
                cpu.write_virtual(p.address, bytes(self._sida(page)[:0x1000]))
            if fc == 0:
                cpu.set_gpr(0, regs[0])
        elif p.kind == "io" and p.io is not None:
            uv_sie_io.complete(cpu, p.io, self._sida(page), cc)
        elif p.kind == "sigp":
            if cc == 1:
                cpu.set_gpr(p.r1, (cpu.gpr(p.r1) & ~0xFFFFFFFF) | (regs[2] & 0xFFFFFFFF))
            elif cc == 0:  # an accepted status order: the target's status from the UV's record (uv_sigp)
                store = status_store(scpu.config, p.subcode, p.target, p.address)
                if store is not None:
                    addr, data = store  # within one page (512- or 1024-byte aligned): one mapping
                    cpu.mem.write(self._maps[scpu.config.handle].to_host(addr, True, False), data)
        p.insn.finish(cc)

"""Emulation of the instructions the CPU traps: PSW and control loads, clocks, prefix, facilities, TLB.

Each handler gets the CPU and the decoded ``Insn`` (at an exit, before the instruction ran). It either
completes the instruction (``insn.finish``), raises ``ProgramException`` (delivered by the CPU with the
instruction's ILC), or returns a ``CpuExit``. Instructions that belong to the CPU's owner (DIAG, SIGP, SERVC,
STSI, UVC, SIE, channel I/O) never come here: the CPU hands them over itself, after the problem-state check.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from emulator.errors import ProgramException
from emulator.hw import access, cpacf, crossspace, dat, fixedpoint, keys, mie3
from emulator.hw.cpu import (
    CR0_EDAT,
    PGM_PRIVILEGED,
    PGM_SPECIFICATION,
    PSW_MASK_ASC,
    PSW_MASK_BIT12,
    PSW_MASK_DAT,
    PSW_MASK_EA,
    PSW_MASK_KEY,
    PSW_MASK_PSTATE,
    PSW_MASK_WAIT,
    RL_ALIGNMENT,
    Cpu,
    CpuExit,
    Insn,
    psw_invalid,
)
from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT
from emulator.hw.sysinfo import FAC_EDAT2

__all__ = ["emulate", "HANDLERS"]

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_PSW = struct.Struct(">QQ")
_ADDR = 0xFFFFFFFFFFFFFFFF

Handler = Callable[[Cpu, Insn], "CpuExit | None"]
#: opcode key -> (mnemonic, privileged, handler); the fixed-point arithmetic trapped while the PSW's
#: fixed-point-overflow mask is on comes from ``fixedpoint``, the message-security-assist instructions
#: from ``cpacf``, the storage-key and frame-management instructions from ``keys``, MVCOS from ``crossspace``,
#: the miscellaneous-instruction-extensions facility 3 from ``mie3``
HANDLERS: dict[int, tuple[str, bool, Handler]] = (
    dict(fixedpoint.HANDLERS)
    | dict(cpacf.HANDLERS)
    | dict(keys.HANDLERS)
    | dict(crossspace.HANDLERS)
    | dict(mie3.HANDLERS)
)


def _handler(opcode: int, name: str, privileged: bool = True) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[opcode] = (name, privileged, fn)
        return fn

    return deco


def _spec(why: str) -> ProgramException:
    return ProgramException(PGM_SPECIFICATION, why=why)


def _aligned(addr: int, n: int) -> int:
    if addr % n:
        raise _spec(f"operand {addr:#x} is not aligned on {n} bytes")
    return addr


def _si_address(cpu: Cpu, raw: bytes) -> int:
    b1 = raw[2] >> 4
    d = (raw[2] & 0xF) << 8 | raw[3]
    return cpu.wrap(d + (cpu.gpr(b1) if b1 else 0))


def emulate(cpu: Cpu, insn: Insn) -> CpuExit | None:
    """Emulate one trapped CPU-local instruction (the CPU hands the owner's instructions over itself)."""
    entry = HANDLERS.get(insn.opcode)
    if entry is None:  # a trapped opcode without a handler is an emulator gap: say so architecturally
        raise ProgramException(0x01, why=f"opcode {insn.opcode:#x} is not implemented")
    name, privileged, fn = entry
    insn.name = name
    if privileged and cpu._mask_bits() & PSW_MASK_PSTATE:  # noqa: SLF001 - problem_state, one call less
        raise ProgramException(PGM_PRIVILEGED, why=f"{name} in problem state")
    return fn(cpu, insn)


# -- PSW ---------------------------------------------------------------------------------------------------


def load_psw(cpu: Cpu, insn: Insn, mask: int, addr: int) -> None:
    """Load a new PSW architecturally; an invalid one raises PGM 0x06 with ILC 0 at the new PSW.

    An odd instruction address counts too unless the PSW is a wait PSW (which fetches nothing, such as
    QEMU's ``0xfff`` shutdown code): unicorn would fetch from the odd address, where the architecture
    recognizes a specification exception with the loaded PSW as the old PSW.
    """
    cpu.set_psw(mask, addr)
    if psw_invalid(mask, addr) or (addr & 1 and not mask & PSW_MASK_WAIT):
        cpu.program_interrupt(PGM_SPECIFICATION, 0, pc=addr)
    else:
        cpu.psw_loaded()


@_handler(0xB2B2, "LPSWE")
def _lpswe(cpu: Cpu, insn: Insn) -> None:
    a = insn.address()
    if a & 7:
        raise _spec(f"operand {a:#x} is not aligned on 8 bytes")
    host = cpu._xc.get(a & ~0xFFF) if a & 0xFFF != 0xFF8 else None  # noqa: SLF001 - read_virtual's hit, inline
    if host is not None:
        mask, addr = _PSW.unpack_from(cpu._mm, host | (a & 0xFFF))  # noqa: SLF001
    else:
        mask, addr = _PSW.unpack(cpu.read_virtual(a, 16))
    # load_psw, inline (every interruption handler ends here)
    cpu.set_psw(mask, addr)
    if psw_invalid(mask, addr) or (addr & 1 and not mask & PSW_MASK_WAIT):
        cpu.program_interrupt(PGM_SPECIFICATION, 0, pc=addr)
    else:
        cpu._pgm_repeat = 0  # noqa: SLF001 - psw_loaded(), inline
        cpu._pgm_last = None  # noqa: SLF001


@_handler(0x82, "LPSW")
def _lpsw(cpu: Cpu, insn: Insn) -> None:
    a = _aligned(insn.address(), 8)
    short = _U64.unpack(cpu.read_virtual(a, 8))[0]
    if not short & PSW_MASK_BIT12:
        # the short PSW must have bit 12 on; the check is made on the loaded PSW (ILC 0)
        mask = short & 0xFFFFFFFF00000000
        cpu.set_psw(mask, short & 0x7FFFFFFF)
        cpu.program_interrupt(PGM_SPECIFICATION, 0, pc=short & 0x7FFFFFFF)
        return
    mask = (short & 0xFFFFFFFF00000000 & ~PSW_MASK_BIT12) | (short & 0x80000000)
    load_psw(cpu, insn, mask, short & 0x7FFFFFFF)


@_handler(0x80, "SSM")
def _ssm(cpu: Cpu, insn: Insn) -> None:
    byte = cpu.read_virtual(insn.address(), 1)[0]
    mask = cpu.psw_mask
    if byte & 0xB8:  # bits 0, 2-4 must be zero
        raise _spec(f"SSM mask byte {byte:#x} has reserved bits")
    cpu.set_psw((mask & ~(0xFF << 56)) | byte << 56, insn.pc + insn.ilen)  # finish(), in one write
    if not insn.ex_ilen:
        cpu.ssm_trapped(insn.pc)


def _stxsm(cpu: Cpu, insn: Insn, op: Callable[[int, int], int]) -> None:
    mask = cpu.psw_mask
    cpu.write_virtual(_si_address(cpu, insn.raw), bytes([mask >> 56]))
    new = op(mask >> 56, insn.raw[1])
    cpu.set_psw((mask & ~(0xFF << 56)) | new << 56, insn.pc + insn.ilen)  # finish(), in one write


@_handler(0xAD, "STOSM")
def _stosm(cpu: Cpu, insn: Insn) -> None:
    _stxsm(cpu, insn, lambda a, b: a | b)


@_handler(0xAC, "STNSM")
def _stnsm(cpu: Cpu, insn: Insn) -> None:
    _stxsm(cpu, insn, lambda a, b: a & b)


@_handler(0x04, "SPM", privileged=False)
def _spm(cpu: Cpu, insn: Insn) -> None:
    """SET PROGRAM MASK: bits 34-35 of R1 become the condition code, bits 36-39 the program mask (trapped
    because the fixed-point-overflow mask changes which instructions the CPU must emulate)."""
    bits = (cpu.gpr(insn.raw[1] >> 4) >> 24) & 0x3F
    mask = (cpu.psw_mask & ~(0x3F << 40)) | bits << 40
    insn.finish()
    cpu.write_mask(mask)


@_handler(0xB20A, "SPKA", privileged=False)
def _spka(cpu: Cpu, insn: Insn) -> None:
    key = (insn.address() >> 4) & 0xF
    if cpu.problem_state and not (cpu.cr(3) >> (31 - key)) & 1:
        raise ProgramException(PGM_PRIVILEGED, why="PSW-key mask forbids this key")
    mask = cpu.psw_mask
    insn.finish()
    cpu.set_psw((mask & ~PSW_MASK_KEY) | key << 52, cpu.pc)


def _sac(cpu: Cpu, insn: Insn) -> None:
    code = (insn.address() >> 8) & 0xF
    asc = {0: 0, 1: 2, 2: 1, 3: 3}.get(code)
    if asc is None:
        raise _spec(f"address-space control {code} is not defined")
    if not cpu.psw[0] & PSW_MASK_DAT and asc != 0:
        raise ProgramException(0x13, why="SAC with DAT off")
    mask = cpu.psw_mask
    insn.finish()
    cpu.set_psw((mask & ~PSW_MASK_ASC) | asc << 46, cpu.pc)


HANDLERS[0xB219] = ("SAC", False, _sac)
HANDLERS[0xB279] = ("SACF", False, _sac)


# -- control registers, TLB ------------------------------------------------------------------------------


def _load_cr(cpu: Cpu, insn: Insn, addr: int, width: int) -> None:
    """LCTL/LCTLG: the TLB is flushed only when a value a translation decision reads changed
    (``Cpu.load_crs``)."""
    rr = insn.raw[1]
    r1, r3 = rr >> 4, rr & 0xF
    if r1 == r3:  # one register (a handler opening or closing an interruption subclass)
        v = _WORDS[width][1].unpack(cpu.read_virtual(addr, width))[0]
        if width == 4:
            v |= cpu.cr(r1) & ~0xFFFFFFFF
        cpu.load_cr(r1, v)
        insn.finish()
        return
    n = (r3 - r1) % 16 + 1
    loaded = _WORDS[width][n].unpack(cpu.read_virtual(addr, n * width))
    current = cpu.crs()
    if width == 8 and r1 <= r3 and current[r1 : r3 + 1] == list(loaded):
        insn.finish()  # (a handler reloading the registers it saved, unchanged)
        return
    values = {}  # only the registers whose value changes
    for k in range(n):
        i = (r1 + k) % 16
        v = loaded[k] if width == 8 else (current[i] & ~0xFFFFFFFF) | loaded[k]
        if v != current[i]:
            values[i] = v
    if values:
        cpu.load_crs(values)
    insn.finish()


#: width -> count -> the big-endian words LCTL (4) and LCTLG (8) load
_WORDS = {w: [struct.Struct(f">{n}{'Q' if w == 8 else 'I'}") for n in range(17)] for w in (4, 8)}


@_handler(0xB7, "LCTL")
def _lctl(cpu: Cpu, insn: Insn) -> None:
    _load_cr(cpu, insn, _aligned(insn.address(), 4), 4)


@_handler(0xEB2F, "LCTLG")
def _lctlg(cpu: Cpu, insn: Insn) -> None:
    a = insn.rsy_address()
    if a & 7:
        raise _spec(f"operand {a:#x} is not aligned on 8 bytes")
    rr = insn.raw[1]
    r1, r3 = rr >> 4, rr & 0xF
    q = cpu._q  # noqa: SLF001 - the engine's registers in place (None: through the engine)
    n = r3 - r1 + 1
    host = cpu._xc.get(a & ~0xFFF) if q is not None and n > 0 else None  # noqa: SLF001 - read_virtual's hit
    if host is not None and (a & 0xFFF) + 8 * n <= 0x1000:
        # the operand in one page whose translation the CPU holds (an interruption handler saving and
        # restoring CR0, or all sixteen), read where it lies; registers whose values are already there are not
        # loaded again
        loaded = _WORDS[8][n].unpack_from(cpu._mm, host | (a & 0xFFF))  # noqa: SLF001
        qc = cpu._qc + r1  # noqa: SLF001
        if n == 1:
            if q[qc] != loaded[0]:  # type: ignore[index]
                cpu.load_cr(r1, loaded[0])
        else:
            current = q[qc : qc + n].tolist()  # type: ignore[index]
            if current != list(loaded):  # only the registers whose value changes (``_load_cr``)
                cpu.load_crs({r1 + k: v for k, v in enumerate(loaded) if v != current[k]})
        q[cpu._qm + 1] = cpu._pc_c = insn.next_pc & _ADDR  # type: ignore[index]  # noqa: SLF001 - complete()
        return
    if r1 == r3:  # one register: _load_cr's first case and finish(), inline
        cpu.load_cr(r1, _U64.unpack(cpu.read_virtual(a, 8))[0])
        cpu.complete(insn.next_pc, None)
        return
    _load_cr(cpu, insn, a, 8)


@_handler(0xB20D, "PTLB")
def _ptlb(cpu: Cpu, insn: Insn) -> None:
    cpu.flush_tlb()
    insn.finish()


@_handler(0xB221, "IPTE")
def _ipte(cpu: Cpu, insn: Insn) -> None:
    r1, r2 = insn.raw[3] >> 4, insn.raw[3] & 0xF
    pto = cpu.gpr(r1) & ~0x7FF & 0xFFFFFFFFFFFFFFFF
    px = (cpu.gpr(r2) >> 12) & 0xFF
    real = pto + 8 * px
    pte = _U64.unpack(cpu.read_real(real, 8))[0]
    cpu.write_real(real, _U64.pack(pte | 0x400))
    cpu.flush_group_tlbs()
    insn.finish()


@_handler(0xB98E, "IDTE")
def _idte(cpu: Cpu, insn: Insn) -> None:
    r1, r2 = insn.raw[3] >> 4, insn.raw[3] & 0xF
    g2 = cpu.gpr(r2)
    if not g2 & 0x800:  # invalidation-and-clearing: mark the designated entries invalid
        g1 = cpu.gpr(r1)
        origin = g1 & ~0xFFF & 0xFFFFFFFFFFFFFFFF
        dt = (g1 >> 2) & 3
        shift = (20, 31, 42, 53)[dt]
        index = (g2 >> shift) & 0x7FF
        count = (g2 & 0x7FF) + 1
        for k in range(count):
            real = origin + 8 * ((index + k) & 0x7FF)
            e = _U64.unpack(cpu.read_real(real, 8))[0]
            cpu.write_real(real, _U64.pack(e | 0x20))
    cpu.flush_group_tlbs()
    insn.finish()


#: CRDTE's designation-type codes (R2 bits 59-61) -> (table-origin mask, index shift, index mask, name)
_CRDTE_TABLES: dict[int, tuple[int, int, int, str]] = {
    0b000: (~0x7FF, 12, 0xFF, "page table"),
    0b100: (~0xFFF, 20, 0x7FF, "segment table"),
    0b101: (~0xFFF, 31, 0x7FF, "region-third table"),
    0b110: (~0xFFF, 42, 0x7FF, "region-second table"),
    0b111: (~0xFFF, 53, 0x7FF, "region-first table"),
}


@_handler(0xB98F, "CRDTE")
def _crdte(cpu: Cpu, insn: Insn) -> None:
    """COMPARE AND REPLACE DAT TABLE ENTRY (enhanced-DAT facility 2): the entry designated by the table
    origin and type in R2 and the index the address in R2+1 selects is compared with R1; equal, it is replaced
    by R1+1 and the TLB entries formed through it are cleared (in every CPU, or this one's with the
    local-clearing bit of M4), CC 0; unequal, R1 receives it, CC 1. Table entries are real addresses."""
    r3, m4, r1, r2 = insn.raw[2] >> 4, insn.raw[2] & 0xF, insn.raw[3] >> 4, insn.raw[3] & 0xF
    del r3  # the ASCE names the translations to clear; zuv clears more (all of them), as the PoP allows
    if not cpu.has_facility(FAC_EDAT2):
        raise ProgramException(0x01, why="CRDTE without the enhanced-DAT facility 2")
    if r1 & 1 or r2 & 1:
        raise _spec("CRDTE needs even R1 and R2")
    g2 = cpu.gpr(r2)
    table = _CRDTE_TABLES.get((g2 >> 2) & 7)
    if table is None:
        raise _spec(f"CRDTE designation type {(g2 >> 2) & 7:#05b} is reserved")
    origin_mask, shift, index_mask, _name = table
    real = (g2 & origin_mask & 0xFFFFFFFFFFFFFFFF) + 8 * ((cpu.gpr(r2 + 1) >> shift) & index_mask)
    cur = _U64.unpack(cpu.read_real(real, 8))[0]
    if cur != cpu.gpr(r1):
        cpu.set_gpr(r1, cur)
        insn.finish(1)
        return
    cpu.write_real(real, _U64.pack(cpu.gpr(r1 + 1)))
    if m4 & 1:
        cpu.flush_tlb()
    else:
        cpu.flush_group_tlbs()
    insn.finish(0)


def _csp(cpu: Cpu, insn: Insn, width: int) -> None:
    r1, r2 = insn.raw[3] >> 4, insn.raw[3] & 0xF
    if r1 & 1:
        raise _spec("CSP needs an even R1")
    g2 = cpu.gpr(r2)
    real = cpu.wrap(g2 & ~(width - 1))
    fmt = _U64 if width == 8 else _U32
    cur = fmt.unpack(cpu.read_real(real, width))[0]
    mask = (1 << (8 * width)) - 1
    expect = cpu.gpr(r1) & mask
    if cur == expect:
        cpu.write_real(real, fmt.pack(cpu.gpr(r1 + 1) & mask))
        if g2 & 1:
            cpu.flush_group_tlbs()
        insn.finish(0)
    else:
        cpu.set_gpr(r1, (cpu.gpr(r1) & ~mask) | cur)
        insn.finish(1)


HANDLERS[0xB250] = ("CSP", True, lambda cpu, insn: _csp(cpu, insn, 4))
HANDLERS[0xB98A] = ("CSPG", True, lambda cpu, insn: _csp(cpu, insn, 8))


def _real_access(cpu: Cpu, insn: Insn, width: int, store: bool) -> None:
    r1, r2 = insn.raw[3] >> 4, insn.raw[3] & 0xF
    real = _aligned(cpu.wrap(cpu.gpr(r2)), width)
    fmt = _U64 if width == 8 else _U32
    if store:
        cpu.write_real(real, fmt.pack(cpu.gpr(r1) & ((1 << (8 * width)) - 1)))
    else:
        v = fmt.unpack(cpu.read_real(real, width))[0]
        cpu.set_gpr(r1, v if width == 8 else (cpu.gpr(r1) & ~0xFFFFFFFF) | v)
    insn.finish()


HANDLERS[0xB24B] = ("LURA", True, lambda c, i: _real_access(c, i, 4, False))
HANDLERS[0xB246] = ("STURA", True, lambda c, i: _real_access(c, i, 4, True))
HANDLERS[0xB905] = ("LURAG", True, lambda c, i: _real_access(c, i, 8, False))
HANDLERS[0xB925] = ("STURG", True, lambda c, i: _real_access(c, i, 8, True))


# -- prefix, CPU identity, facilities -----------------------------------------------------------------


@_handler(0xB210, "SPX")
def _spx(cpu: Cpu, insn: Insn) -> CpuExit | None:
    a = _aligned(insn.address(), 4)
    value = _U32.unpack(cpu.read_virtual(a, 4))[0] & 0x7FFFE000
    limit = cpu.guest_memory_size if cpu.guest is not None else cpu.mem.size
    if value + 0x2000 > limit:
        raise ProgramException(dat.PGM_ADDRESSING, why=f"prefix {value:#x} is outside memory")
    if cpu.accessor is access.HOST and cpu.mem.non_host_frames:
        # the prefix area is the CPU's own storage for every interruption: never secure storage for the host
        # (``access.prefix_refused``); a secure guest's SET PREFIX is the Ultravisor's to check
        for page in (value, value + 0x1000):
            host = cpu._abs_to_host(page, True, False)  # noqa: SLF001 - same-layer helper
            if access.prefix_refused(cpu.mem, host & ~0xFFF):
                raise access.secure_storage_exception(page, True, why=f"SPX: {page:#x} is secure storage")
    insn.finish()
    cpu.set_prefix(value)
    g = cpu.guest
    if g is not None and g.owner_tag is not None:
        # a secure guest's SET PREFIX is done, and its host must be told (format-4 SIE: a PV notification,
        # interception 0x6C with the new prefix in the SIDA; secure-execution.md 7.3): the run ends here
        return CpuExit("notify", insn=insn)
    return None


@_handler(0xB211, "STPX")
def _stpx(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(_aligned(insn.address(), 4), _U32.pack(cpu.prefix))
    insn.finish()


@_handler(0xB212, "STAP")
def _stap(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(_aligned(insn.address(), 2), _U16.pack(cpu.address))
    insn.finish()


@_handler(0xB202, "STIDP")
def _stidp(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(_aligned(insn.address(), 8), _U64.pack(cpu.cpuid))
    insn.finish()


@_handler(0xB2B1, "STFL")
def _stfl(cpu: Cpu, insn: Insn) -> None:
    cpu.write_real(0xC8, cpu.facilities[:4].ljust(4, b"\0"))
    insn.finish()


@_handler(0xB2B0, "STFLE", privileged=False)
def _stfle(cpu: Cpu, insn: Insn) -> None:
    a = _aligned(insn.address(), 8)
    ours = (len(cpu.facilities) + 7) // 8
    want = (cpu.gpr(0) & 0xFF) + 1
    n = min(want, ours)
    cpu.write_virtual(a, cpu.facilities.ljust(8 * ours, b"\0")[: 8 * n])
    cpu.set_gpr(0, (cpu.gpr(0) & ~0xFF) | (ours - 1))
    insn.finish(0 if want >= ours else 3)


# -- clocks ------------------------------------------------------------------------------------------


@_handler(0xB205, "STCK", privileged=False)
def _stck(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(insn.address(), _U64.pack(cpu.tod()))
    insn.finish(0)


@_handler(0xB27C, "STCKF", privileged=False)
def _stckf(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(insn.address(), _U64.pack(cpu.tod()))
    insn.finish(0)


@_handler(0xB278, "STCKE", privileged=False)
def _stcke(cpu: Cpu, insn: Insn) -> None:
    tod = cpu.tod()
    data = b"\0" + _U64.pack(tod) + bytes(5) + _U16.pack(cpu.tod_programmable)
    cpu.write_virtual(insn.address(), data)
    insn.finish(0)


@_handler(0xB204, "SCK")
def _sck(cpu: Cpu, insn: Insn) -> None:
    a = _aligned(insn.address(), 8)
    cpu.clock.set(_U64.unpack(cpu.read_virtual(a, 8))[0])
    insn.finish(0)


@_handler(0xB206, "SCKC")
def _sckc(cpu: Cpu, insn: Insn) -> None:
    a = _aligned(insn.address(), 8)
    cpu.ckc = _U64.unpack(cpu.read_virtual(a, 8))[0]
    cpu.timers_changed = True
    insn.finish()


@_handler(0xB207, "STCKC")
def _stckc(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(_aligned(insn.address(), 8), _U64.pack(cpu.ckc))
    insn.finish()


@_handler(0xB208, "SPT")
def _spt(cpu: Cpu, insn: Insn) -> None:
    a = _aligned(insn.address(), 8)
    cpu.set_cpu_timer(_U64.unpack(cpu.read_virtual(a, 8))[0])
    cpu.timers_changed = True
    insn.finish()


@_handler(0xB209, "STPT")
def _stpt(cpu: Cpu, insn: Insn) -> None:
    cpu.write_virtual(_aligned(insn.address(), 8), _U64.pack(cpu.cpu_timer & 0xFFFFFFFFFFFFFFFF))
    insn.finish()


# -- MOVE PAGE ------------------------------------------------------------------------------------------

#: lowcore byte where a page-translation exception of MVPG stores its R1 and R2 fields
LC_OP_ACCESS_ID = 0xA2
_MVPG_KEY_DEST = 0x800  # GR0 bit 52: the destination is accessed with the key in bits 56-59
_MVPG_KEY_SOURCE = 0x400  # GR0 bit 53: the source is accessed with that key
_MVPG_CCO = 0x100  # GR0 bit 55: a page-translation exception sets a condition code instead
TEID_MVPG = 0x4  # TEID bit 61 of MVPG's page-translation exception: the operand-access id is stored


def _page_with_key(cpu: Cpu, vaddr: int, write: bool, key: int) -> int:
    """Host address of the page at ``vaddr``, checked as an access with access key ``key`` (no R/C)."""
    saved = cpu.psw_mask
    if key == (saved >> 52) & 0xF:
        return cpu.translate(vaddr, write=write, mark=False)
    cpu.write_mask((saved & ~PSW_MASK_KEY) | key << 52)  # translate reads the access key from the PSW
    try:
        return cpu.translate(vaddr, write=write, mark=False)
    finally:
        cpu.write_mask(saved)


def _mvpg_page_fault(cpu: Cpu, e: ProgramException, r1: int, r2: int) -> None:
    """A page-translation exception of MVPG names its operands: R1 and R2 in the operand-access
    identification, and TEID bit 61 set to say that it is stored."""
    cpu.write_real(LC_OP_ACCESS_ID, bytes([r1 << 4 | r2]))
    if e.teid is not None:
        e.teid |= TEID_MVPG


@_handler(0xB254, "MVPG", privileged=False)
def _mvpg(cpu: Cpu, insn: Insn) -> None:
    """MOVE PAGE: copy the 4 KiB page at R2 to the page at R1 (both addresses rounded down to a page).

    General register 0 holds the controls: bits 48-51 must be zero; bit 52 or 53 (not both) selects the
    key in bits 56-59 for the destination or the source (in the problem state only a key the PSW-key
    mask in CR3 allows); bit 55 is the condition-code option, which turns a page-translation exception
    on the source into CC 2 and on the destination into CC 1. Without it, such an exception stores
    R1 and R2 in the operand-access identification at real 0xA2 and sets TEID bit 61.
    Protection and addressing exceptions are recognized either way; the source is checked first.
    """
    r0 = cpu.gpr(0)
    r1, r2 = insn.r1, insn.r2
    pkey = (cpu.psw_mask >> 52) & 0xF
    skey = dkey = pkey
    if r0 & (_MVPG_KEY_DEST | _MVPG_KEY_SOURCE):
        key = (r0 >> 4) & 0xF
        if cpu.problem_state and not (cpu.cr(3) >> (31 - key)) & 1:
            raise ProgramException(PGM_PRIVILEGED, why=f"MVPG: key {key} is not in the PSW-key mask")
        if r0 & _MVPG_KEY_DEST:
            dkey = key
        if r0 & _MVPG_KEY_SOURCE:
            skey = key
    if r0 & 0xF000 or r0 & (_MVPG_KEY_DEST | _MVPG_KEY_SOURCE) == _MVPG_KEY_DEST | _MVPG_KEY_SOURCE:
        raise _spec("MVPG: general register 0 bits 48-51 must be zero and bits 52-53 not both one")
    src = cpu.wrap(cpu.gpr(r2)) & ~0xFFF
    dst = cpu.wrap(cpu.gpr(r1)) & ~0xFFF
    cco = r0 & _MVPG_CCO
    try:
        # the last byte of the page: the fetch-protection override never applies to a whole page
        hsrc = _page_with_key(cpu, src | 0xFFF, False, skey) & ~0xFFF
    except ProgramException as e:
        if e.code == dat.PGM_PAGE_TRANSLATION:
            if cco:
                insn.finish(2)
                return
            _mvpg_page_fault(cpu, e, r1, r2)
        raise
    try:
        hdst = _page_with_key(cpu, dst, True, dkey)
    except ProgramException as e:
        if e.code == dat.PGM_PAGE_TRANSLATION:
            if cco:
                insn.finish(1)
                return
            _mvpg_page_fault(cpu, e, r1, r2)
        raise
    mem = cpu.mem
    mem.keys[hsrc >> PAGE_SHIFT] |= KEY_R
    mem.keys[hdst >> PAGE_SHIFT] |= KEY_R | KEY_C
    mem.write(hdst, mem.read(hsrc, 0x1000))
    insn.finish(0)


def _misaligned_rl(cpu: Cpu, insn: Insn) -> None:
    """A relative-long instruction whose storage operand is not aligned as it must be (the CPU traps only
    those: ``cpu.RL_ALIGNMENT``): a specification exception."""
    raise _spec(f"{insn.opcode:#x}: relative-long operand at {insn.pc:#x} is misaligned")


for _key in RL_ALIGNMENT:
    HANDLERS[_key] = (f"{_key:#x}", False, _misaligned_rl)


# -- instructions unicorn lacks -------------------------------------------------------------------------


@_handler(0x0107, "SCKPF")
def _sckpf(cpu: Cpu, insn: Insn) -> None:
    r0 = cpu.gpr(0)
    if r0 & 0xFFFF0000:
        raise _spec("SCKPF: bits 32-47 of general register 0 must be zero")
    cpu.tod_programmable = r0 & 0xFFFF
    insn.finish()


@_handler(0xAF, "MC", privileged=False)
def _mc(cpu: Cpu, insn: Insn) -> None:
    """MONITOR CALL D1(B1),I2: a monitor event (PGM 0x40, the instruction completed) when CR8's monitor
    mask (bits 48-63, class 0 leftmost) enables the class in bits 12-15 of I2, storing the class at real
    0x94 and the first-operand address (the monitor code) at 0xB0; else nothing. Bits 8-11 of I2 nonzero
    are a specification exception. Linux's BUG() and WARN() are ``mc 0,0`` with class 0 enabled: unicorn
    has no MONITOR CALL and raised an operation exception, so every WARN became an oops. The CPU calls
    this at that operation exception (nothing is scanned for it)."""
    raw = insn.raw
    if raw[1] & 0xF0:
        raise _spec("MC: bits 8-11 of I2 must be zero")
    cls = raw[1] & 0xF
    if cpu.cr(8) & (0x8000 >> cls):
        code = _si_address(cpu, raw)
        cpu.write_real(0x94, cls.to_bytes(2, "big"))
        cpu.write_real(0xB0, code.to_bytes(8, "big"))
        raise ProgramException(0x40, why=f"monitor event, class {cls}")
    insn.finish()


def _cvb(cpu: Cpu, insn: Insn, size: int, bits: int) -> None:
    """CONVERT TO BINARY: packed decimal to a signed binary integer."""
    r1 = insn.raw[1] >> 4
    data = cpu.read_virtual(insn.rx_address(), size)
    digits = data.hex()
    sign = digits[-1]
    body = digits[:-1]
    if any(c not in "0123456789" for c in body) or sign in "0123456789":
        cpu.write_real(0x90, (0).to_bytes(4, "big"))  # DXC 0: decimal operand data
        raise ProgramException(0x07, why="CVB: invalid digit or sign")
    value = int(body) * (-1 if sign in "bd" else 1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= value <= hi:
        # the result is the low-order bits, then a fixed-point-divide exception
        fixedpoint.put_result(cpu, r1, value, bits)
        raise ProgramException(0x09, why="CVB: result does not fit")
    fixedpoint.put_result(cpu, r1, value, bits)
    insn.finish()


HANDLERS[0x4F] = ("CVB", False, lambda c, i: _cvb(c, i, 8, 32))
HANDLERS[0xE306] = ("CVBY", False, lambda c, i: _cvb(c, i, 8, 32))
HANDLERS[0xE30E] = ("CVBG", False, lambda c, i: _cvb(c, i, 16, 64))


def _lra(cpu: Cpu, insn: Insn, width: int) -> None:
    """LOAD REAL ADDRESS: translate in Python (unicorn's helper would walk host-absolute tables). ``width``
    64 (LRAG), or 0: the addressing mode's (LRA, LRAY: 32 bits unless in the 64-bit mode)."""
    r1 = insn.raw[1] >> 4
    vaddr = insn.rx_address()
    mask = cpu.psw_mask
    width = width or (64 if mask & PSW_MASK_EA else 32)
    asc = (mask >> 46) & 3
    asce = cpu.cr((1, 1, 7, 13)[asc])

    def put(value: int) -> None:
        fixedpoint.put_result(cpu, r1, value, width)

    edat1 = bool(cpu.cr(0) & CR0_EDAT)
    # the CPU's DAT walks by address space (``StorageAccess.translate``'s, with the TLB's lifetime: a purge
    # drops them) answer too: Linux's kernel writes (s390_kernel_write: LRA, then STURG, per 8 bytes) patch
    # its ~34,000 ftrace call sites at boot, each with a whole walk in Python before
    dc_key = (asce, vaddr & 0xFFFFFFFFFFFFF000, False, False, edat1, asc)
    walked = cpu._dc.get(dc_key)  # noqa: SLF001 - the CPU's own cache, same layer
    try:
        if walked is not None:
            real = walked[0] | (vaddr & 0xFFF)
        else:
            # a large frame's address is absolute and is returned as it is, as the table entry holds it
            real = cpu.walk_tables(dc_key, vaddr)[0]
    except ProgramException as e:
        entry = getattr(e, "entry_real", None)
        if e.code in (dat.PGM_REGION_FIRST, dat.PGM_REGION_SECOND, dat.PGM_REGION_THIRD,
                      dat.PGM_SEGMENT_TRANSLATION) and entry is not None:
            put(entry)
            insn.finish(1)
        elif e.code == dat.PGM_PAGE_TRANSLATION and entry is not None:
            put(entry)
            insn.finish(2)
        elif e.code in (dat.PGM_ASCE_TYPE, dat.PGM_REGION_FIRST, dat.PGM_REGION_SECOND, dat.PGM_REGION_THIRD,
                        dat.PGM_SEGMENT_TRANSLATION):
            put(e.code)  # a length violation: the interruption code in bits 48-63
            insn.finish(3)
        else:
            raise
        return
    if width == 32 and real >> 31:
        raise ProgramException(0x13, why="LRA: real address above 2 GiB in a 32-bit register")
    put(real)
    insn.finish(0)


HANDLERS[0xB1] = ("LRA", True, lambda c, i: _lra(c, i, 0))
HANDLERS[0xE313] = ("LRAY", True, lambda c, i: _lra(c, i, 0))
HANDLERS[0xE303] = ("LRAG", True, lambda c, i: _lra(c, i, 64))

"""CPACF: the message-security-assist instructions, their query functions and the MSA facility bits.

All twelve: KM, KMC, KMA, KMF, KMO, KMCTR, KIMD, KLMD, KMAC, PCC, PRNO and PCKMO.

Natively unicorn 2.1.4 (QEMU 5.0 TCG) knows only the query function of eleven of them, and its query
reports nothing but query, so every real function is a specification exception; KMA is an operation
exception. The CPU therefore traps all twelve opcodes and ``insns.emulate`` hands them here. Each instruction
follows the Principles of Operation, chapter 7 "Message-Security-Assist", as Linux
``arch/s390/include/asm/cpacf.h`` and QEMU ``target/s390x/tcg/crypto_helper.c`` use it:

- general register 0 holds the function code (bits 57-63) and the modifier bit 56 (decipher), KMA's flags
  (bits 53-55: hash subkey supplied, last AAD, last plaintext/ciphertext) and KMF's cipher-feedback length
  (bits 32-39); general register 1 addresses the parameter block;
- the register fields are checked first (even and non-zero where they name an address/length pair: a
  specification exception), then the modifier bit of the functions that have none, then whether the
  function is installed (query bit), then the operands;
- function code 0 (query) stores the 16-byte bit mask of installed functions;
- a CPU-determined amount is processed per execution: at most ``LIMIT`` bytes of the instruction's data
  (less for GHASH and, without OpenSSL, the SHA functions, which then run in Python), and never past an
  operand page that cannot be accessed once some data was processed. The registers then name the rest
  and the condition code is 3 (partial completion); the program branches back (``brc 1``), and the
  access exception is recognised when that page comes first;
- functions with a protected (encrypted) key find the machine's wrapping-key verification pattern after
  the key in the parameter block; a pattern that does not match ends the instruction with CC 1.

The cryptography itself is in ``cpacf_crypto`` (the CPU's one crypto home) and ``cpacf_sha``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import cpacf_crypto as cc
from emulator.hw.cpacf_sha import SHA1, SHA256, SHA512, Sha, pad

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, CpuExit, Insn

__all__ = ["HANDLERS", "OPCODES", "FACILITIES", "FUNCTIONS", "query_mask", "LIMIT"]

PGM_SPECIFICATION: Final = 0x06
_PSW_EA: Final = 1 << 32
_PSW_BA: Final = 1 << 31

#: opcode -> mnemonic of every message-security-assist instruction
OPCODES: Final = {
    0xB91E: "KMAC",
    0xB928: "PCKMO",
    0xB929: "KMA",
    0xB92A: "KMF",
    0xB92B: "KMO",
    0xB92C: "PCC",
    0xB92D: "KMCTR",
    0xB92E: "KM",
    0xB92F: "KMC",
    0xB93C: "PRNO",
    0xB93E: "KIMD",
    0xB93F: "KLMD",
}

#: STFLE bits of the message-security-assist levels implemented: MSA (17), MSA extension 3 (76: PCKMO and
#: protected keys), 4 (77: KMF, KMO, KMCTR, PCC, GHASH, XTS), 5 (57: PRNO), 8 (146: KMA)
FACILITIES: Final = (17, 57, 76, 77, 146)

# function codes
_DEA, _TDEA128, _TDEA192 = 1, 2, 3
_AES128, _AES192, _AES256 = 18, 19, 20
_PAES128, _PAES192, _PAES256 = 26, 27, 28
_XTS128, _XTS256, _PXTS128, _PXTS256 = 50, 52, 58, 60
_GHASH = 65
_PRNG = 67  # KMC-PRNG (ANSI X9.17 under TDEA-192)
_DRNG = 3  # PRNO SHA-512-DRNG: generate, or seed with the modifier bit
_TRNG_QUERY_RATIO, _TRNG = 112, 114

_CIPHERS: Final = frozenset(
    {_DEA, _TDEA128, _TDEA192, _AES128, _AES192, _AES256, _PAES128, _PAES192, _PAES256}
)
_XTS: Final = frozenset({_XTS128, _XTS256, _PXTS128, _PXTS256})

#: installed function codes per instruction (what the query function reports)
FUNCTIONS: Final[dict[str, frozenset[int]]] = {
    "KM": _CIPHERS | _XTS | {0},
    "KMC": _CIPHERS | {0, _PRNG},
    "KMF": _CIPHERS | {0},
    "KMO": _CIPHERS | {0},
    "KMCTR": _CIPHERS | {0},
    "KMAC": _CIPHERS | {0},
    "KMA": frozenset({0, _AES128, _AES192, _AES256, _PAES128, _PAES192, _PAES256}),
    "KIMD": frozenset({0, 1, 2, 3, _GHASH}),
    "KLMD": frozenset({0, 1, 2, 3}),
    "PCC": _CIPHERS | _XTS | {0},
    "PCKMO": frozenset({0, _AES128, _AES192, _AES256}),
    "PRNO": frozenset({0, _DRNG, _TRNG_QUERY_RATIO, _TRNG}),
}

#: the most data bytes one execution processes (then CC 3)
LIMIT: Final = 64 * 1024
#: the SHA functions' share per execution when they run in Python (~120 us per SHA-256 block)
SHA_PYTHON_LIMIT: Final = 4 * 1024
#: GHASH's share per execution (Python big-integer arithmetic, ~3 us per block)
_GHASH_LIMIT: Final = 16 * 1024


def sha_limit(alg: Sha) -> int:
    """How many message bytes one KIMD/KLMD execution processes at most with this algorithm."""
    return LIMIT if alg.fast else SHA_PYTHON_LIMIT

_SHAS: Final[dict[int, Sha]] = {1: SHA1, 2: SHA256, 3: SHA512}


def query_mask(name: str) -> bytes:
    """The 16-byte query result of instruction ``name``: bit n (from the left) set for function code n."""
    out = bytearray(16)
    for fc in FUNCTIONS[name]:
        out[fc >> 3] |= 0x80 >> (fc & 7)
    return bytes(out)


def _spec(why: str) -> ProgramException:
    return ProgramException(PGM_SPECIFICATION, why=why)


# -- operand registers --------------------------------------------------------------------------------------


class _Regs:
    """Address and length registers in the current addressing mode (24/31-bit modes keep the high bits)."""

    def __init__(self, cpu: Cpu) -> None:
        self.cpu = cpu
        mask = cpu.psw_mask
        self.bits = 64 if mask & _PSW_EA else 31 if mask & _PSW_BA else 24

    def addr(self, r: int) -> int:
        return self.cpu.wrap(self.cpu.gpr(r))

    def length(self, r: int) -> int:
        v = self.cpu.gpr(r)
        return v if self.bits == 64 else v & 0xFFFFFFFF

    def advance(self, r: int, n: int) -> None:
        """Add ``n`` to the address in ``r`` (only the addressing mode's bits change)."""
        cpu = self.cpu
        old = cpu.gpr(r)
        new = cpu.wrap(old + n)
        if self.bits == 64:
            cpu.set_gpr(r, new)
        elif self.bits == 31:
            cpu.set_gpr(r, (old & ~0xFFFFFFFF) | (new & 0x7FFFFFFF))
        else:
            cpu.set_gpr(r, (old & ~0xFFFFFF) | (new & 0xFFFFFF))

    def consume(self, r: int, n: int) -> None:
        """Subtract ``n`` from the length in ``r``."""
        cpu = self.cpu
        old = cpu.gpr(r)
        if self.bits == 64:
            cpu.set_gpr(r, old - n)
        else:
            cpu.set_gpr(r, (old & ~0xFFFFFFFF) | ((old - n) & 0xFFFFFFFF))


def _reach(cpu: Cpu, addr: int, n: int, write: bool) -> tuple[int, ProgramException | None]:
    """How many bytes from ``addr`` (up to ``n``) can be accessed, and the exception that stops the rest."""
    done = 0
    while done < n:
        a = cpu.wrap(addr + done)
        try:
            cpu.translate(a, write=write)
        except ProgramException as e:
            return done, e
        done += min(n - done, 0x1000 - (a & 0xFFF))
    return n, None


def _plan(cpu: Cpu, operands: list[tuple[int, bool]], n: int, unit: int, last: bool = False) -> int:
    """The amount (at most ``n``) every operand can be accessed for, a multiple of ``unit`` unless it is
    all of ``n`` and ``last`` says that ends the operand (a final partial unit).

    Raises the access exception of the first inaccessible operand byte when not even one unit can be done.
    """
    ok, first = n, None
    for addr, write in operands:
        got, exc = _reach(cpu, addr, ok, write)
        if exc is not None:
            ok = got
            first = first or exc
    if ok < n or not last:
        ok -= ok % unit
    if ok == 0 and n and first is not None:
        raise first
    return ok


def _param(cpu: Cpu, size: int, write: bool = False) -> tuple[int, bytes]:
    """The parameter block (address in GR1): its address and ``size`` bytes, checked for a later store."""
    addr = cpu.wrap(cpu.gpr(1))
    data = cpu.read_virtual(addr, size)
    if write:
        _, exc = _reach(cpu, addr, size, True)
        if exc is not None:
            raise exc
    return addr, data


# -- keys ----------------------------------------------------------------------------------------------------

_KEY_LEN: Final = {_DEA: 8, _TDEA128: 16, _TDEA192: 24, _AES128: 16, _AES192: 24, _AES256: 32,
                   _PAES128: 16, _PAES192: 24, _PAES256: 32}  # fmt: skip
#: PCKMO's function code for a protected AES key of this length (names the key type inside the wrapping)
_AES_TYPE: Final = {16: _AES128, 24: _AES192, 32: _AES256}


def _key_field(fc: int) -> int:
    """Bytes of the key field in the parameter block (a protected key carries its 32-byte WKVP)."""
    return _KEY_LEN[fc] + (cc.WKVP_LEN if fc in (_PAES128, _PAES192, _PAES256) else 0)


def _cipher(cpu: Cpu, fc: int, field: bytes) -> cc.BlockCipher | None:
    """The block cipher of a cipher function code from its key field; None when the WKVP does not match."""
    n = _KEY_LEN[fc]
    if fc in (_DEA, _TDEA128, _TDEA192):
        return cc.tdea(field[:n])
    if fc in (_AES128, _AES192, _AES256):
        return cc.aes(field[:n])
    return _protected_aes(cpu, field[:n], field[n : n + cc.WKVP_LEN])


def _wrapping_key(cpu: Cpu) -> cc.WrappingKey:
    """The CPU's wrapping key: a secure guest's configuration's (the Ultravisor gives it with the guest
    mapping), else the machine's (the host's CPUs and its normal guests)."""
    g = cpu.guest
    wk = g.wrapping_key if g is not None else None
    return wk if wk is not None else cc.wrapping_key_for(cpu.mem)


def _protected_aes(cpu: Cpu, protected: bytes, wkvp: bytes) -> cc.BlockCipher | None:
    wk = _wrapping_key(cpu)
    if wkvp != wk.wkvp:
        return None
    return cc.aes(wk.unwrap(_AES_TYPE[len(protected)], protected))


# -- the instructions ------------------------------------------------------------------------------------

Handler = Callable[["Cpu", "Insn"], "CpuExit | None"]
HANDLERS: dict[int, tuple[str, bool, Handler]] = {}

# which register fields each instruction requires to be even and non-zero (R1, R2, R3), and whether it
# has a modifier bit
_REG_CHECKS: Final = {
    "KMA": (True, True, True),
    "KMCTR": (True, True, True),
    "KM": (True, True, False),
    "KMC": (True, True, False),
    "KMF": (True, True, False),
    "KMO": (True, True, False),
    "PRNO": (True, True, False),
    "KMAC": (False, True, False),
    "KIMD": (False, True, False),
    "KLMD": (False, True, False),
    "PCC": (False, False, False),
    "PCKMO": (False, False, False),
}
_NO_MODIFIER: Final = frozenset({"KMAC", "KIMD", "KLMD", "PCC", "PCKMO"})


def _decode(cpu: Cpu, insn: Insn, name: str) -> tuple[int, int, int, int, bool]:
    """Check the register fields, modifier and function code: (fc, r1, r2, r3, decipher)."""
    raw = insn.raw
    r1, r2, r3 = raw[3] >> 4, raw[3] & 0xF, raw[2] >> 4
    c1, c2, c3 = _REG_CHECKS[name]
    if name == "KMA" and r3 in (r1, r2):
        raise _spec("KMA: R3 designates the same register as R1 or R2")
    for check, r, field in ((c3, r3, "R3"), (c1, r1, "R1"), (c2, r2, "R2")):
        if check and (r & 1 or r == 0):
            raise _spec(f"{name}: {field} must designate an even register other than 0")
    gr0 = cpu.gpr(0)
    fc, decipher = gr0 & 0x7F, bool(gr0 & 0x80)
    if decipher and name in _NO_MODIFIER:
        raise _spec(f"{name}: the modifier bit is not defined")
    if fc not in FUNCTIONS[name]:
        raise _spec(f"{name}: function code {fc} is not installed")
    return fc, r1, r2, r3, decipher


def _instruction(name: str, privileged: bool = False) -> Callable[[Callable[..., int | None]], Handler]:
    """Register a handler that gets (cpu, regs, fc, r1, r2, r3, decipher) and returns the CC (None: keep)."""

    def deco(fn: Callable[..., int | None]) -> Handler:
        opcode = next(op for op, n in OPCODES.items() if n == name)
        mask = query_mask(name)

        def handler(cpu: Cpu, insn: Insn) -> None:
            fc, r1, r2, r3, decipher = _decode(cpu, insn, name)
            if fc == 0:
                cpu.write_virtual(cpu.wrap(cpu.gpr(1)), mask)
                insn.finish(None if name == "PCKMO" else 0)
                return
            insn.finish(fn(cpu, _Regs(cpu), fc, r1, r2, r3, decipher))

        HANDLERS[opcode] = (name, privileged, handler)
        return fn

    return deco


def _data(
    cpu: Cpu, regs: _Regs, r1: int | None, r2: int, unit: int, limit: int = LIMIT, extra: int | None = None
) -> tuple[int, bytes]:
    """Plan one execution's share of the second operand (R2, R2+1), checking R1 (output) and ``extra``
    (another input as long as the data, KMCTR's counters) too. The length must be a multiple of ``unit``."""
    total = regs.length(r2 + 1)
    if total % unit:
        raise _spec(f"operand length {total} is not a multiple of {unit}")
    n = min(total, limit - limit % unit)
    ops = [(regs.addr(r2), False)]
    if r1 is not None:
        ops.append((regs.addr(r1), True))
    if extra is not None:
        ops.append((regs.addr(extra), False))
    n = _plan(cpu, ops, n, unit)
    return n, cpu.read_virtual(regs.addr(r2), n)


def _done(regs: _Regs, r1: int | None, r2: int, n: int, out: bytes | None = None) -> int:
    """Store the output, step the operand registers over ``n`` bytes and give the condition code."""
    if out is not None and r1 is not None:
        regs.cpu.write_virtual(regs.addr(r1), out)
        regs.advance(r1, n)
    regs.advance(r2, n)
    regs.consume(r2 + 1, n)
    return 3 if regs.length(r2 + 1) else 0


def _xts_key(cpu: Cpu, fc: int, after: int) -> tuple[int, bytes, int, object]:
    """An XTS function's parameter block (its key field, then ``after`` bytes) and the AES of that key:
    (block address, block, key-field length, cipher or None for a protected key that does not verify)."""
    klen = 16 if fc in (_XTS128, _PXTS128) else 32
    field = klen + (cc.WKVP_LEN if fc in (_PXTS128, _PXTS256) else 0)
    pb, block = _param(cpu, field + after, write=True)
    if fc in (_PXTS128, _PXTS256):
        ciph = _protected_aes(cpu, block[:klen], block[klen:field])
    else:
        ciph = cc.aes(block[:klen])
    return pb, block, field, ciph


@_instruction("KM")
def _km(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, _r3: int, decipher: bool) -> int:
    """CIPHER MESSAGE: ECB, or XTS from the XTS parameter after the key (which KM steps on)."""
    if fc in _XTS:
        pb, block, field, ciph = _xts_key(cpu, fc, 16)
        if ciph is None:
            return 1
        n, data = _data(cpu, regs, r1, r2, 16)
        if not n:
            return 0
        out, t = cc.xts(ciph, block[field:], data, decipher)
        cpu.write_virtual(cpu.wrap(pb + field), t)
        return _done(regs, r1, r2, n, out)
    _, block = _param(cpu, _key_field(fc))
    ciph = _cipher(cpu, fc, block)
    if ciph is None:
        return 1
    n, data = _data(cpu, regs, r1, r2, ciph.block)
    if not n:
        return 0
    out = ciph.decrypt(data) if decipher else ciph.encrypt(data)
    return _done(regs, r1, r2, n, out)


def _chained(fc: int) -> int:
    return 8 if fc in (_DEA, _TDEA128, _TDEA192) else 16


def _chaining(
    cpu: Cpu, regs: _Regs, fc: int, r1: int | None, r2: int, unit_of: Callable[[int], int],
    op: Callable[[cc.BlockCipher, bytes, bytes], tuple[bytes | None, bytes]],
) -> int:  # fmt: skip
    """The instructions whose parameter block is chaining value then key (KMC, KMF, KMO, KMAC)."""
    b = _chained(fc)
    pb, block = _param(cpu, b + _key_field(fc), write=True)
    ciph = _cipher(cpu, fc, block[b:])
    if ciph is None:
        return 1
    n, data = _data(cpu, regs, r1, r2, unit_of(b))
    if not n:
        return 0
    out, cv = op(ciph, block[:b], data)
    cpu.write_virtual(pb, cv)
    return _done(regs, r1, r2, n, out)


@_instruction("KMC")
def _kmc(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, _r3: int, decipher: bool) -> int:
    """CIPHER MESSAGE WITH CHAINING: CBC; the chaining value becomes the last ciphertext block. KMC-PRNG
    runs the ANSI X9.17 generator (chaining value, then a TDEA-192 key)."""
    if fc == _PRNG:
        return _chaining(cpu, regs, _TDEA192, r1, r2, lambda b: b, lambda c, cv, d: cc.x917_prng(c, cv, d))
    return _chaining(cpu, regs, fc, r1, r2, lambda b: b, lambda c, cv, d: c.cbc(cv, d, decipher))


@_instruction("KMO")
def _kmo(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, _r3: int, _decipher: bool) -> int:
    """CIPHER MESSAGE WITH OUTPUT FEEDBACK: OFB (the same for both directions)."""
    return _chaining(cpu, regs, fc, r1, r2, lambda b: b, lambda c, cv, d: c.ofb(cv, d))


@_instruction("KMF")
def _kmf(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, _r3: int, decipher: bool) -> int:
    """CIPHER MESSAGE WITH CIPHER FEEDBACK: CFB with the feedback length (LCFB) in GR0 bits 32-39."""
    lcfb = (cpu.gpr(0) >> 24) & 0xFF
    if not 1 <= lcfb <= _chained(fc):
        raise _spec(f"KMF: cipher-feedback length {lcfb} is not 1 to the block size")
    return _chaining(cpu, regs, fc, r1, r2, lambda _b: lcfb, lambda c, cv, d: c.cfb(cv, d, lcfb, decipher))


@_instruction("KMAC")
def _kmac(cpu: Cpu, regs: _Regs, fc: int, _r1: int, r2: int, _r3: int, _decipher: bool) -> int:
    """COMPUTE MESSAGE AUTHENTICATION CODE: the CBC-MAC chaining value over the message blocks."""
    return _chaining(cpu, regs, fc, None, r2, lambda b: b, lambda c, cv, d: (None, c.cbc_mac(cv, d)))


@_instruction("KMCTR")
def _kmctr(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, r3: int, _decipher: bool) -> int:
    """CIPHER MESSAGE WITH COUNTER: each block XOR the enciphered counter block the third operand holds."""
    _, block = _param(cpu, _key_field(fc))
    ciph = _cipher(cpu, fc, block)
    if ciph is None:
        return 1
    n, data = _data(cpu, regs, r1, r2, ciph.block, extra=r3)
    if not n:
        return 0
    counters = cpu.read_virtual(regs.addr(r3), n)
    out = ciph.ctr(counters, data)
    regs.advance(r3, n)
    return _done(regs, r1, r2, n, out)


@_instruction("KIMD")
def _kimd(cpu: Cpu, regs: _Regs, fc: int, _r1: int, r2: int, _r3: int, _decipher: bool) -> int:
    """COMPUTE INTERMEDIATE MESSAGE DIGEST: SHA-1/256/512 blocks or GHASH, continuing from the ICV."""
    if fc == _GHASH:
        pb, block = _param(cpu, 32, write=True)
        n, data = _data(cpu, regs, None, r2, 16, _GHASH_LIMIT)
        if not n:
            return 0
        cpu.write_virtual(pb, cc.ghash(block[16:32], block[:16], data))
        return _done(regs, None, r2, n)
    alg = _SHAS[fc]
    pb, block = _param(cpu, alg.state, write=True)
    n, data = _data(cpu, regs, None, r2, alg.block, sha_limit(alg))
    if not n:
        return 0
    cpu.write_virtual(pb, alg.compress(block, data))
    return _done(regs, None, r2, n)


@_instruction("KLMD")
def _klmd(cpu: Cpu, regs: _Regs, fc: int, _r1: int, r2: int, _r3: int, _decipher: bool) -> int:
    """COMPUTE LAST MESSAGE DIGEST: whole blocks, then the rest padded with the message bit length."""
    alg = _SHAS[fc]
    pb, block = _param(cpu, alg.state + alg.mbl, write=True)
    state, mbl = block[: alg.state], int.from_bytes(block[alg.state :], "big")
    total = regs.length(r2 + 1)
    whole = total - total % alg.block
    n = 0
    if whole:
        n = _plan(cpu, [(regs.addr(r2), False)], min(whole, sha_limit(alg)), alg.block)
        state = alg.compress(state, cpu.read_virtual(regs.addr(r2), n))
    try:
        if n < whole:
            raise _spec("not the last block yet")  # caught below: partial completion
        tail = cpu.read_virtual(cpu.wrap(regs.addr(r2) + n), total - n)
    except ProgramException:
        if not n:
            raise
        cpu.write_virtual(pb, state)
        _done(regs, None, r2, n)
        return 3
    cpu.write_virtual(pb, alg.compress(state, pad(alg, tail, mbl)))
    return _done(regs, None, r2, total)


#: KMA's parameter block before the key: reserved (12), counter value CV (4), tag T (16), hash subkey H (16),
#: total AAD length TAADL (8), total plaintext/ciphertext length TPCL (8), J0 (16); lengths in bits
_KMA_BLOCK: Final = struct.Struct(">12sI16s16sQQ16s")


@_instruction("KMA")
def _kma(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, r3: int, decipher: bool) -> int:
    """CIPHER MESSAGE WITH AUTHENTICATION: GCM over the AAD (R3 pair) and the text (R2 pair) into R1."""
    gr0 = cpu.gpr(0)
    lpc, laad, hs = bool(gr0 & 0x100), bool(gr0 & 0x200), bool(gr0 & 0x400)
    pb, block = _param(cpu, _KMA_BLOCK.size + _key_field(fc), write=True)
    ciph = _cipher(cpu, fc, block[_KMA_BLOCK.size :])
    if ciph is None:
        return 1
    reserved, cv, tag, h, taadl, tpcl, j0 = _KMA_BLOCK.unpack_from(block)
    if not hs:
        h = ciph.encrypt(bytes(16))
    aad_len, text_len = regs.length(r3 + 1), regs.length(r2 + 1)
    if aad_len % 16 and not laad:
        raise _spec("KMA: AAD length is not a multiple of 16 and LAAD is zero")
    if text_len % 16 and not lpc:
        raise _spec("KMA: text length is not a multiple of 16 and LPC is zero")
    budget = LIMIT
    # the additional authenticated data first, then the text; a final partial block only with LAAD/LPC
    n_aad = min(aad_len, budget)
    n_aad = _plan(cpu, [(regs.addr(r3), False)], n_aad, 16, last=n_aad == aad_len)
    if n_aad:
        aad = cpu.read_virtual(regs.addr(r3), n_aad)
        tag = cc.ghash(h, tag, aad + bytes(-n_aad % 16))
        regs.advance(r3, n_aad)
        regs.consume(r3 + 1, n_aad)
        budget -= n_aad
    n_text = 0
    if n_aad == aad_len and budget >= 16:
        n_text = min(text_len, budget - budget % 16)
        try:
            n_text = _plan(cpu, [(regs.addr(r2), False), (regs.addr(r1), True)], n_text, 16,
                           last=n_text == text_len)
        except ProgramException:
            if not n_aad:
                raise
            n_text = 0
    if n_text:
        data = cpu.read_virtual(regs.addr(r2), n_text)
        blocks = -(-n_text // 16)
        counters = b"".join(j0[:12] + ((cv + 1 + k) & 0xFFFFFFFF).to_bytes(4, "big") for k in range(blocks))
        out = ciph.ctr(counters, data + bytes(-n_text % 16))[:n_text]
        cv = (cv + blocks) & 0xFFFFFFFF
        tag = cc.ghash(h, tag, (data if decipher else out) + bytes(-n_text % 16))
        cpu.write_virtual(regs.addr(r1), out)
        regs.advance(r1, n_text)
        regs.advance(r2, n_text)
        regs.consume(r2 + 1, n_text)
    complete = n_aad == aad_len and n_text == text_len
    if complete and laad and lpc:
        tag = cc.ghash(h, tag, struct.pack(">QQ", taadl, tpcl))
        tag = bytes(a ^ b for a, b in zip(tag, ciph.encrypt(j0), strict=True))
    cpu.write_virtual(pb, _KMA_BLOCK.pack(reserved, cv, tag, h, taadl, tpcl, j0))
    return 0 if complete else 3


@_instruction("PCC")
def _pcc(cpu: Cpu, regs: _Regs, fc: int, _r1: int, _r2: int, _r3: int, _decipher: bool) -> int:
    """PERFORM CRYPTOGRAPHIC COMPUTATION: Compute Last Block CMAC, or Compute XTS Parameter."""
    if fc in _XTS:
        pb, block, field, ciph = _xts_key(cpu, fc, 64)
        if ciph is None:
            return 1
        tweak = block[field : field + 16]
        seq = int.from_bytes(block[field + 16 : field + 32], "big")
        # the block sequential number counts blocks; it and the intermediate bit index are kept as given
        cpu.write_virtual(cpu.wrap(pb + field + 48), cc.xts_parameter(ciph, tweak, seq))
        return 0
    b = _chained(fc)
    pb, block = _param(cpu, 1 + 2 * b + _key_field(fc), write=True)
    ciph = _cipher(cpu, fc, block[1 + 2 * b :])
    if ciph is None:
        return 1
    ml = block[0]
    if ml > 8 * b:
        raise _spec(f"PCC: message length {ml} bits exceeds the block")
    mac = cc.cmac_last_block(ciph, block[1 + b : 1 + 2 * b], block[1 : 1 + b], ml)
    cpu.write_virtual(cpu.wrap(pb + 1 + b), mac)
    return 0


@_instruction("PCKMO", privileged=True)
def _pckmo(cpu: Cpu, regs: _Regs, fc: int, _r1: int, _r2: int, _r3: int, _decipher: bool) -> None:
    """PERFORM CRYPTOGRAPHIC KEY MANAGEMENT OPERATION: make a protected key from a clear key in place
    (the key field then holds the protected key, followed by the wrapping-key verification pattern). The
    condition code is unchanged."""
    klen = _KEY_LEN[fc]
    pb, block = _param(cpu, klen + cc.WKVP_LEN, write=True)
    wk = _wrapping_key(cpu)
    cpu.write_virtual(pb, wk.wrap(fc, block[:klen]) + wk.wkvp)
    return None


@_instruction("PRNO")
def _prno(cpu: Cpu, regs: _Regs, fc: int, r1: int, r2: int, _r3: int, decipher: bool) -> int:
    """PERFORM RANDOM NUMBER OPERATION: the SHA-512 deterministic generator (seed with the modifier bit),
    the true-random-number generator (raw and conditioned entropy, both from the host's entropy source)
    and its raw-to-conditioned ratio query."""
    if fc == _DRNG:
        return _drng(cpu, regs, r1, r2, decipher)
    if fc == _TRNG_QUERY_RATIO:
        pb, _ = _param(cpu, 8, write=True)
        cpu.write_virtual(pb, struct.pack(">II", 1, 1))
        return 0
    budget = LIMIT
    for r in (r1, r2):
        total = regs.length(r + 1)
        n = min(total, budget)
        try:
            n = _plan(cpu, [(regs.addr(r), True)], n, 1)
        except ProgramException:
            if budget == LIMIT:  # nothing stored yet: the exception, as the instruction is suppressed
                raise
            return 3  # the first operand is done: partial completion, the next execution faults
        if n:
            cpu.write_virtual(regs.addr(r), cc.random_bytes(n))
            regs.advance(r, n)
            regs.consume(r + 1, n)
            budget -= n
        if n < total:
            return 3
    return 0


# the SHA-512-DRNG parameter block: reserved (4), reseed counter (4), stream bytes (8), V (112), C (112);
# V and C are the 111-byte values of the Hash_DRBG, right-aligned
_DRNG_BLOCK: Final = struct.Struct(">IIQ112s112s")


def _drng(cpu: Cpu, regs: _Regs, r1: int, r2: int, seed: bool) -> int:
    """PRNO SHA-512-DRNG (NIST SP 800-90A Hash_DRBG): seed (instantiate when the reseed counter is zero,
    else reseed) from the second operand, or generate into the first operand."""
    pb, block = _param(cpu, _DRNG_BLOCK.size, write=True)
    res, counter, stream, v, c = _DRNG_BLOCK.unpack(block)
    v, c = v[1:], c[1:]
    if seed:
        # the seed operand is taken whole (a seed is not partially completed), read a share at a time;
        # an access exception anywhere in it suppresses the operation (nothing is stored before the end)
        n, addr = regs.length(r2 + 1), regs.addr(r2)
        parts = (cpu.read_virtual(cpu.wrap(addr + off), min(LIMIT, n - off)) for off in range(0, n, LIMIT))
        v, c = cc.drbg_seed(v, counter, parts)
        cpu.write_virtual(pb, _DRNG_BLOCK.pack(res, 1, stream, b"\0" + v, b"\0" + c))
        return 0
    total = regs.length(r1 + 1)
    n = _plan(cpu, [(regs.addr(r1), True)], min(total, LIMIT), 1)
    if not n:
        return 0
    out, v = cc.drbg_generate(v, c, counter, n)
    cpu.write_virtual(regs.addr(r1), out)
    cpu.write_virtual(pb, _DRNG_BLOCK.pack(res, (counter + 1) & 0xFFFFFFFF, (stream + n) & (2**64 - 1),
                                           b"\0" + v, b"\0" + c))
    regs.advance(r1, n)
    regs.consume(r1 + 1, n)
    return 3 if n < total else 0

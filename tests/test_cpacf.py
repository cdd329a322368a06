"""CPACF: each message-security-assist function, run as a guest instruction, gives ``cryptography``'s result.

Every test assembles the instruction at CODE, sets the registers and the parameter block as Linux
``arch/s390/include/asm/cpacf.h`` and the crypto drivers do, runs it on a CPU (trapped and emulated by
``emulator.hw.cpacf``) and re-executes it while it ends with CC 3, as the ``brc 1`` after every CPACF
instruction does. Results are compared with ``cryptography`` computing the same thing on its own.
"""

import hashlib
import os
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB, CFB8, OFB
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emulator.hw import cpacf
from emulator.hw.cpacf_sha import SHA1, SHA256, SHA512, pad
from emulator.hw.cpu import OPERATING, PSW_MASK_64, PSW_MASK_BA, PSW_MASK_PSTATE, Cpu, _is_trapped
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock

MEM = 4 << 20
CODE = 0x10000
PARAM = 0x20000
SRC = 0x100000
DST = 0x200000
CTR = 0x300000
AAD = 0x380000
PGM_NEW_ADDR = 0x0BAD0
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KM, KMC, KMA, KMF, KMO, KMCTR = 0xB92E, 0xB92F, 0xB929, 0xB92A, 0xB92B, 0xB92D
KIMD, KLMD, KMAC, PCC, PRNO, PCKMO = 0xB93E, 0xB93F, 0xB91E, 0xB92C, 0xB93C, 0xB928
DECRYPT = 0x80


@pytest.fixture(scope="module")
def cpu():
    c = Cpu(PhysicalMemory(MEM), 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def rre(op: int, r1: int, r2: int) -> bytes:
    return struct.pack(">HBB", op, 0, r1 << 4 | r2)


def rrf(op: int, r1: int, r2: int, r3: int) -> bytes:
    return struct.pack(">HBB", op, r3 << 4, r1 << 4 | r2)


def execute(cpu: Cpu, insn: bytes, regs: dict[int, int], mask: int = PSW_MASK_64, again: bool = True) -> dict:
    """Run ``insn`` with these registers (re-executing it while CC is 3 when ``again``); the outcome:
    condition codes seen, program interruption (ILC, code) if any, and the general registers."""
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x200)
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
    mem.write(CODE, insn + bytes.fromhex("0700"))
    for i, v in regs.items():
        cpu.set_gpr(i, v)
    ccs = []
    cc_before = 2
    while True:
        cpu.set_psw(mask | cc_before << 44, CODE)
        cpu.state = OPERATING
        cpu.run(count=1)
        m, addr = cpu.psw
        if addr == PGM_NEW_ADDR:
            return {"ccs": ccs, "pgm": struct.unpack(">HH", mem.read(0x8C, 4)), "regs": cpu.gprs()}
        assert addr == CODE + len(insn)
        ccs.append((m >> 44) & 3)
        if ccs[-1] != 3 or not again:
            return {"ccs": ccs, "pgm": None, "regs": cpu.gprs()}


def cipher_regs(fc: int, src: int = SRC, dst: int = DST, n: int = 0) -> dict[int, int]:
    """Linux's cpacf_km/kmc/... register use: R0 function, R1 parameter block, R2/R3 source, R4 target."""
    return {0: fc, 1: PARAM, 2: src, 3: n, 4: dst}


def ecb(alg, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(alg, modes.ECB())
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


AES_FC = {16: 18, 24: 19, 32: 20}
DEA_FC = {8: 1, 16: 2, 24: 3}


def dea_alg(key: bytes) -> TripleDES:
    return TripleDES(key * 3 if len(key) == 8 else key + key[:8] if len(key) == 16 else key)


# -- what the machine reports --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(cpacf.FUNCTIONS))
def test_the_query_function_stores_the_installed_functions(cpu, name):
    op = next(k for k, v in cpacf.OPCODES.items() if v == name)
    cpu.mem.fill(PARAM, 16, 0xFF)
    out = execute(cpu, rrf(op, 2, 4, 6), {0: 0, 1: PARAM})
    mask = cpu.mem.read(PARAM, 16)
    assert out["pgm"] is None
    assert {fc for fc in range(128) if mask[fc >> 3] & 0x80 >> (fc & 7)} == set(cpacf.FUNCTIONS[name])
    assert out["ccs"] == ([2] if name == "PCKMO" else [0])  # PCKMO leaves the condition code alone


def test_stfle_reports_the_message_security_assist_levels():
    fl = facility_list(False)
    for bit in (17, 76, 77, 57, 146):
        assert fl[bit // 8] & 0x80 >> (bit % 8), bit


def test_every_cpacf_opcode_is_trapped_and_handled():
    from emulator.hw.insns import HANDLERS

    for op in cpacf.OPCODES:
        assert _is_trapped(op) and op in HANDLERS


@pytest.mark.parametrize(
    ("insn", "regs", "why"),
    [
        (rre(KM, 3, 4), {0: 18}, "R1 odd"),
        (rre(KM, 2, 0), {0: 18}, "R2 zero"),
        (rrf(KMCTR, 2, 4, 5), {0: 18}, "R3 odd"),
        (rrf(KMA, 2, 4, 2), {0: 18}, "KMA R3 = R1"),
        (rre(KIMD, 0, 2), {0: 2 | DECRYPT}, "KIMD has no modifier"),
        (rre(KM, 2, 4), {0: 127}, "function not installed"),
        (rre(KM, 4, 2), {0: 18, 1: PARAM, 3: 15}, "length not a multiple of the block"),
        (rre(KMF, 4, 2), {0: 18, 1: PARAM, 3: 16}, "KMF with LCFB 0"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_uses_are_specification_exceptions_and_change_nothing(cpu, insn, regs, why):
    cpu.mem.write(DST, bytes(16))
    regs = {1: PARAM, 2: SRC, 4: DST, **regs}
    out = execute(cpu, insn, regs)
    assert out["pgm"] == (4, 0x06), why
    assert all(out["regs"][r] == v for r, v in regs.items())
    assert cpu.mem.read(DST, 16) == bytes(16)


def test_pckmo_is_privileged(cpu):
    out = execute(cpu, rre(PCKMO, 0, 0), {0: 18, 1: PARAM}, mask=PSW_MASK_64 | PSW_MASK_PSTATE)
    assert out["pgm"] == (4, 0x02)


# -- ciphers ----------------------------------------------------------------------------------------------

KEYS = st.sampled_from([8, 16, 24, 16, 24, 32]).flatmap(
    lambda n: st.tuples(st.just(n), st.binary(min_size=n, max_size=n))
)


@SLOW
@given(key=KEYS, blocks=st.integers(0, 40), decrypt=st.booleans())
def test_km_is_ecb(cpu, key, blocks, decrypt):
    klen, k = key
    aes = klen in (16, 32) or (klen == 24 and blocks % 2)  # 24-byte keys: AES or TDEA-192
    alg, fc, b = (algorithms.AES(k), AES_FC[klen], 16) if aes else (dea_alg(k), DEA_FC[klen], 8)
    data = os.urandom(blocks * b)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(fc | (DECRYPT if decrypt else 0), n=len(data)))
    assert out["ccs"] == [0] and out["pgm"] is None
    assert cpu.mem.read(DST, len(data)) == ecb(alg, data, decrypt)
    assert out["regs"][2] == SRC + len(data) and out["regs"][3] == 0 and out["regs"][4] == DST + len(data)


@SLOW
@given(key=KEYS, blocks=st.integers(1, 20), split=st.integers(0, 20), decrypt=st.booleans())
def test_kmc_is_cbc_and_chains_through_the_parameter_block(cpu, key, blocks, split, decrypt):
    klen, k = key
    aes = klen != 8
    alg, fc, b = (algorithms.AES(k), AES_FC[klen], 16) if aes else (dea_alg(k), DEA_FC[klen], 8)
    iv, data = os.urandom(b), os.urandom(blocks * b)
    cut = min(split, blocks) * b
    cpu.mem.write(PARAM, iv + k)
    cpu.mem.write(SRC, data)
    f = fc | (DECRYPT if decrypt else 0)
    execute(cpu, rre(KMC, 4, 2), cipher_regs(f, n=cut))  # two calls continue one chain
    execute(cpu, rre(KMC, 4, 2), cipher_regs(f, src=SRC + cut, dst=DST + cut, n=len(data) - cut))
    c = Cipher(alg, modes.CBC(iv))
    ctx = c.decryptor() if decrypt else c.encryptor()
    want = ctx.update(data) + ctx.finalize()
    assert cpu.mem.read(DST, len(data)) == want
    assert cpu.mem.read(PARAM, b) == (data if decrypt else want)[-b:]


@SLOW
@given(key=st.sampled_from([16, 24, 32]), blocks=st.integers(1, 30))
def test_kmctr_enciphers_the_counter_blocks_the_third_operand_holds(cpu, key, blocks):
    k, nonce = os.urandom(key), os.urandom(16)
    data = os.urandom(blocks * 16)
    start = int.from_bytes(nonce, "big")
    counters = b"".join(((start + i) % (1 << 128)).to_bytes(16, "big") for i in range(blocks))
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    cpu.mem.write(CTR, counters)
    out = execute(cpu, rrf(KMCTR, 4, 2, 6), {**cipher_regs(AES_FC[key], n=len(data)), 6: CTR})
    e = Cipher(algorithms.AES(k), modes.CTR(nonce)).encryptor()
    assert cpu.mem.read(DST, len(data)) == e.update(data) + e.finalize()
    assert out["regs"][6] == CTR + len(data)


@SLOW
@given(key=st.sampled_from([16, 32]), lcfb=st.sampled_from([1, 16]), n=st.integers(1, 20),
       decrypt=st.booleans())
def test_kmf_is_cfb_with_the_feedback_length_in_gr0(cpu, key, lcfb, n, decrypt):
    k, iv = os.urandom(key), os.urandom(16)
    data = os.urandom(n * lcfb)
    cpu.mem.write(PARAM, iv + k)
    cpu.mem.write(SRC, data)
    f = lcfb << 24 | AES_FC[key] | (DECRYPT if decrypt else 0)
    execute(cpu, rre(KMF, 4, 2), cipher_regs(f, n=len(data)))
    c = Cipher(algorithms.AES(k), CFB(iv) if lcfb == 16 else CFB8(iv))
    ctx = c.decryptor() if decrypt else c.encryptor()
    want = ctx.update(data) + ctx.finalize()
    assert cpu.mem.read(DST, len(data)) == want
    assert cpu.mem.read(PARAM, 16) == (iv + (data if decrypt else want))[-16:]


def test_kmf_with_an_eight_byte_feedback_continues_like_one_long_cfb64(cpu):
    k, iv, data = os.urandom(16), os.urandom(16), os.urandom(64)
    cpu.mem.write(PARAM, iv + k)
    cpu.mem.write(SRC, data)
    execute(cpu, rre(KMF, 4, 2), cipher_regs(8 << 24 | 18, n=64))
    reg, want = iv, b""
    for off in range(0, 64, 8):  # CFB-64 by its definition over AES-ECB
        c = bytes(a ^ b for a, b in zip(data[off : off + 8], ecb(algorithms.AES(k), reg)[:8], strict=True))
        want += c
        reg = reg[8:] + c
    assert cpu.mem.read(DST, 64) == want and cpu.mem.read(PARAM, 16) == reg


@SLOW
@given(key=KEYS, blocks=st.integers(1, 20))
def test_kmo_is_ofb(cpu, key, blocks):
    klen, k = key
    alg, fc, b = (algorithms.AES(k), AES_FC[klen], 16) if klen != 8 else (dea_alg(k), 1, 8)
    iv, data = os.urandom(b), os.urandom(blocks * b)
    cpu.mem.write(PARAM, iv + k)
    cpu.mem.write(SRC, data)
    execute(cpu, rre(KMO, 4, 2), cipher_regs(fc, n=len(data)))
    e = Cipher(alg, OFB(iv)).encryptor()
    assert cpu.mem.read(DST, len(data)) == e.update(data) + e.finalize()


@SLOW
@given(key=st.sampled_from([16, 32]), blocks=st.integers(1, 30), decrypt=st.booleans())
def test_pcc_and_km_xts_give_xts_aes(cpu, key, blocks, decrypt):
    """Linux's xts-aes-s390: PCC makes the XTS parameter from the tweak key and the tweak, KM continues."""
    k1, k2, tweak = os.urandom(key), os.urandom(key), os.urandom(16)
    fc = 50 if key == 16 else 52
    cpu.mem.write(PARAM, k2 + tweak + bytes(32) + bytes(16))  # key, tweak, block 0, bit index 0, XTS param
    assert execute(cpu, rre(PCC, 0, 0), {0: fc, 1: PARAM})["ccs"] == [0]
    xts_param = cpu.mem.read(PARAM + key + 48, 16)
    assert xts_param == ecb(algorithms.AES(k2), tweak)
    data = os.urandom(blocks * 16)
    cpu.mem.write(PARAM, k1 + xts_param)
    cpu.mem.write(SRC, data)
    execute(cpu, rre(KM, 4, 2), cipher_regs(fc | (DECRYPT if decrypt else 0), n=len(data)))
    c = Cipher(algorithms.AES(k1 + k2), modes.XTS(tweak))
    ctx = c.decryptor() if decrypt else c.encryptor()
    assert cpu.mem.read(DST, len(data)) == ctx.update(data) + ctx.finalize()


def test_pcc_xts_parameter_for_a_later_block_continues_the_sequence(cpu):
    k2, tweak = os.urandom(16), os.urandom(16)
    params = []
    for seq in (0, 5):
        cpu.mem.write(PARAM, k2 + tweak + seq.to_bytes(16, "big") + bytes(32))
        execute(cpu, rre(PCC, 0, 0), {0: 50, 1: PARAM})
        params.append(cpu.mem.read(PARAM + 64, 16))
    # KM-XTS over 5 blocks from the block-0 parameter leaves the block-5 parameter behind
    cpu.mem.write(PARAM, os.urandom(16) + params[0])
    execute(cpu, rre(KM, 4, 2), cipher_regs(50, n=80))
    assert cpu.mem.read(PARAM + 16, 16) == params[1]


@SLOW
@given(key=KEYS, blocks=st.integers(0, 6), last=st.integers(0, 16))
def test_kmac_and_pcc_last_block_compute_cmac(cpu, key, blocks, last):
    """KMAC runs the CBC-MAC over the whole blocks, PCC's Compute Last Block CMAC finishes it."""
    klen, k = key
    aes = klen != 8
    alg, fc, b = (algorithms.AES(k), AES_FC[klen], 16) if aes else (dea_alg(k), DEA_FC[klen], 8)
    msg = os.urandom(blocks * b + min(last, b))
    # the last block (1 to b bytes; none for the empty message) goes to PCC, the blocks before it to KMAC
    head = (len(msg) - 1) // b * b if msg else 0
    cpu.mem.write(PARAM, bytes(b) + k)
    cpu.mem.write(SRC, msg)
    execute(cpu, rre(KMAC, 0, 2), {0: fc, 1: PARAM, 2: SRC, 3: head})
    icv = cpu.mem.read(PARAM, b)
    assert icv == (Cipher(alg, modes.CBC(bytes(b))).encryptor().update(msg[:head])[-b:] if head else bytes(b))
    tail = msg[head:]
    cpu.mem.write(PARAM, bytes([8 * len(tail)]) + tail.ljust(b, b"\0") + icv + k)
    assert execute(cpu, rre(PCC, 0, 0), {0: fc, 1: PARAM})["ccs"] == [0]
    c = cmac.CMAC(alg)
    c.update(msg)
    assert cpu.mem.read(PARAM + 1 + b, b) == c.finalize()


# -- digests ---------------------------------------------------------------------------------------------

SHAS = {1: (hashlib.sha1, 64, 20, 8), 2: (hashlib.sha256, 64, 32, 8), 3: (hashlib.sha512, 128, 64, 16)}
IVS = {
    1: bytes.fromhex("67452301efcdab8998badcfe10325476c3d2e1f0"),
    2: struct.pack(">8I", 0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                   0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19),
    3: struct.pack(">8Q", 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                   0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179),
}  # fmt: skip


@SLOW
@given(fc=st.sampled_from([1, 2, 3]), n=st.integers(0, 600))
def test_kimd_then_klmd_is_the_sha_digest(cpu, fc, n):
    """Linux's sha_common.c: KIMD over the whole blocks, KLMD over the rest with the message bit length."""
    ref, block, state, mbl = SHAS[fc]
    msg = os.urandom(n)
    whole = n - n % block
    cpu.mem.write(SRC, msg)
    cpu.mem.write(PARAM, IVS[fc])
    assert execute(cpu, rre(KIMD, 0, 2), {0: fc, 1: PARAM, 2: SRC, 3: whole})["ccs"] == [0]
    cpu.mem.write(PARAM + state, (8 * n).to_bytes(mbl, "big"))
    out = execute(cpu, rre(KLMD, 0, 2), {0: fc, 1: PARAM, 2: SRC + whole, 3: n - whole})
    assert out["ccs"] == [0] and out["regs"][3] == 0 and out["regs"][2] == SRC + n
    assert cpu.mem.read(PARAM, state) == ref(msg).digest()


def test_a_long_klmd_completes_in_parts(cpu):
    msg = os.urandom(3 * cpacf.sha_limit(SHA256) + 100)
    cpu.mem.write(SRC, msg)
    cpu.mem.write(PARAM, IVS[2] + (8 * len(msg)).to_bytes(8, "big"))
    out = execute(cpu, rre(KLMD, 0, 2), {0: 2, 1: PARAM, 2: SRC, 3: len(msg)})
    assert out["ccs"] == [3, 3, 3, 0]
    assert cpu.mem.read(PARAM, 32) == hashlib.sha256(msg).digest()


@pytest.mark.parametrize("alg", [SHA1, SHA256, SHA512], ids=lambda a: a.name)
@pytest.mark.parametrize("how", ["compress", "compress_python"])
@SLOW
@given(n=st.integers(0, 700))
def test_both_compression_functions_give_the_digest(alg, how, n):
    """OpenSSL's block function (when libcrypto is there) and the Python one: both are SHA."""
    ref = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}[alg.name]
    iv = IVS[{"SHA-1": 1, "SHA-256": 2, "SHA-512": 3}[alg.name]]
    msg = os.urandom(n)
    whole = n - n % alg.block
    fn = getattr(alg, how)
    assert fn(fn(iv, msg[:whole]), pad(alg, msg[whole:], 8 * n)) == ref(msg).digest()


def test_openssl_runs_the_sha_functions_where_libcrypto_is():
    import ctypes.util

    if ctypes.util.find_library("crypto") is None:
        pytest.skip("no libcrypto on this host: the Python functions run")
    assert SHA1.fast and SHA256.fast and SHA512.fast


def ghash_reference(h: bytes, data: bytes) -> bytes:
    """GHASH by NIST SP 800-38D's bit-by-bit multiplication, independent of the emulator's tables."""
    hv, y = int.from_bytes(h, "big"), 0
    for off in range(0, len(data), 16):
        x, z, v = y ^ int.from_bytes(data[off : off + 16], "big"), 0, hv
        for i in range(127, -1, -1):
            if x >> i & 1:
                z ^= v
            v = (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1
        y = z
    return y.to_bytes(16, "big")


@SLOW
@given(h=st.binary(min_size=16, max_size=16), blocks=st.integers(1, 8))
def test_kimd_ghash(cpu, h, blocks):
    data = os.urandom(16 * blocks)
    cpu.mem.write(PARAM, bytes(16) + h)
    cpu.mem.write(SRC, data)
    execute(cpu, rre(KIMD, 0, 2), {0: 65, 1: PARAM, 2: SRC, 3: len(data)})
    assert cpu.mem.read(PARAM, 16) == ghash_reference(h, data)


@SLOW
@given(key=st.sampled_from([16, 24, 32]), aad=st.integers(0, 70), text=st.integers(0, 100),
       step=st.sampled_from([16, 32, 1000]), decrypt=st.booleans())  # fmt: skip
def test_kma_is_gcm_also_in_pieces(cpu, key, aad, text, step, decrypt):
    """Linux's gcm-aes-s390: zeroed parameter block, CV 1, J0 = IV || 1, lengths in bits; the AAD and text
    may come in whole-block pieces with LAAD and LPC on the last one."""
    k, iv = os.urandom(key), os.urandom(12)
    a, p = os.urandom(aad), os.urandom(text)
    gcm = AESGCM(k)
    ct_tag = gcm.encrypt(iv, p, a)
    src = ct_tag[:-16] if decrypt else p
    block = struct.pack(">12xI16x16xQQ", 1, 8 * aad, 8 * text) + iv + struct.pack(">I", 1) + k
    cpu.mem.write(PARAM, block)
    cpu.mem.write(AAD, a)
    cpu.mem.write(SRC, src)
    done_a = done_p = 0
    while True:
        na = min(aad - done_a, step)
        np_ = min(text - done_p, step) if done_a + na == aad else 0
        laad = done_a + na == aad
        flags = (0x200 if laad else 0) | (0x100 if laad and done_p + np_ == text else 0)
        regs = {0: AES_FC[key] | flags | (DECRYPT if decrypt else 0), 1: PARAM, 2: SRC + done_p, 3: np_,
                4: DST + done_p, 6: AAD + done_a, 7: na}  # fmt: skip
        out = execute(cpu, rrf(KMA, 4, 2, 6), regs)
        assert out["pgm"] is None and out["ccs"][-1] == 0
        done_a, done_p = done_a + na, done_p + np_
        if done_a == aad and done_p == text:
            break
    want = p if decrypt else ct_tag[:-16]
    assert cpu.mem.read(DST, text) == want
    assert cpu.mem.read(PARAM + 16, 16) == ct_tag[-16:]  # the tag, over the ciphertext either way


# -- protected keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [16, 24, 32])
def test_pckmo_hides_the_key_and_the_protected_key_enciphers_like_the_clear_one(cpu, key):
    clear = os.urandom(key)
    cpu.mem.write(PARAM, clear + bytes(32))
    out = execute(cpu, rre(PCKMO, 0, 0), {0: AES_FC[key], 1: PARAM})
    assert out["pgm"] is None and out["ccs"] == [2]  # condition code unchanged
    protected = cpu.mem.read(PARAM, key + 32)
    assert clear not in cpu.mem.read(PARAM - 0x1000, 0x3000)  # the clear key is gone from storage
    wkvp = protected[key:]
    # the same key protected again: the same blob (one wrapping key per machine)
    cpu.mem.write(PARAM, clear + bytes(32))
    execute(cpu, rre(PCKMO, 0, 0), {0: AES_FC[key], 1: PARAM})
    assert cpu.mem.read(PARAM, key + 32) == protected
    data = os.urandom(64)
    cpu.mem.write(SRC, data)
    cpu.mem.write(PARAM, protected)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(AES_FC[key] + 8, n=64))  # KM-Encrypted-AES
    assert out["ccs"] == [0]
    assert cpu.mem.read(DST, 64) == ecb(algorithms.AES(clear), data)
    # a different verification pattern (another wrapping key): CC 1, nothing done
    cpu.mem.write(PARAM, protected[:key] + bytes(a ^ 1 for a in wkvp))
    cpu.mem.fill(DST, 64)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(AES_FC[key] + 8, n=64))
    assert out["ccs"] == [1] and out["regs"][3] == 64 and cpu.mem.read(DST, 64) == bytes(64)


def test_another_machine_cannot_use_a_protected_key(cpu):
    other = Cpu(PhysicalMemory(MEM), 0, TodClock(), facility_list(False), 0)
    try:
        for c in (cpu, other):
            c.mem.write(PARAM, bytes(range(16)) + bytes(32))
            execute(c, rre(PCKMO, 0, 0), {0: 18, 1: PARAM})
        mine, theirs = cpu.mem.read(PARAM, 48), other.mem.read(PARAM, 48)
        assert mine != theirs
        cpu.mem.write(PARAM, theirs)
        assert execute(cpu, rre(KM, 4, 2), cipher_regs(26, n=16))["ccs"] == [1]
    finally:
        other.close()


def test_protected_xts_and_cbc_work_as_linux_paes_uses_them(cpu):
    k1, k2, tweak, iv = os.urandom(32), os.urandom(32), os.urandom(16), os.urandom(16)
    prot = []
    for k in (k1, k2):
        cpu.mem.write(PARAM, k + bytes(32))
        execute(cpu, rre(PCKMO, 0, 0), {0: 20, 1: PARAM})
        prot.append(cpu.mem.read(PARAM, 64))
    cpu.mem.write(PARAM, prot[1] + tweak + bytes(48))
    assert execute(cpu, rre(PCC, 0, 0), {0: 60, 1: PARAM})["ccs"] == [0]
    xts_param = cpu.mem.read(PARAM + 64 + 48, 16)
    data = os.urandom(96)
    cpu.mem.write(SRC, data)
    cpu.mem.write(PARAM, prot[0] + xts_param)
    assert execute(cpu, rre(KM, 4, 2), cipher_regs(60, n=96))["ccs"] == [0]
    e = Cipher(algorithms.AES(k1 + k2), modes.XTS(tweak)).encryptor()
    assert cpu.mem.read(DST, 96) == e.update(data) + e.finalize()
    cpu.mem.write(PARAM, iv + prot[0])
    assert execute(cpu, rre(KMC, 4, 2), cipher_regs(28, n=96))["ccs"] == [0]
    e = Cipher(algorithms.AES(k1), modes.CBC(iv)).encryptor()
    assert cpu.mem.read(DST, 96) == e.update(data) + e.finalize()


# -- random numbers -------------------------------------------------------------------------------------


def test_prno_trng_fills_both_operands(cpu):
    cpu.mem.fill(SRC, 300)
    cpu.mem.fill(DST, 200)
    out = execute(cpu, rre(PRNO, 2, 4), {0: 114, 1: PARAM, 2: SRC, 3: 300, 4: DST, 5: 200})
    assert out["ccs"] == [0]
    assert out["regs"][2:6] == [SRC + 300, 0, DST + 200, 0]
    assert cpu.mem.read(SRC, 300) != bytes(300) and cpu.mem.read(DST, 200) != bytes(200)
    out = execute(cpu, rre(PRNO, 2, 4), {0: 112, 1: PARAM})
    assert out["ccs"] == [0] and cpu.mem.read(PARAM, 8) == struct.pack(">II", 1, 1)


# -- partial completion, access exceptions, addressing modes ------------------------------------------


def test_a_long_operand_ends_with_cc3_and_the_registers_on_the_rest(cpu):
    k, data = os.urandom(16), os.urandom(cpacf.LIMIT + 4096)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(18, n=len(data)), again=False)
    assert out["ccs"] == [3]
    assert out["regs"][2:5] == [SRC + cpacf.LIMIT, 4096, DST + cpacf.LIMIT]
    out = execute(cpu, rre(KM, 4, 2), {i: out["regs"][i] for i in range(5)})
    assert out["ccs"] == [0] and cpu.mem.read(DST, len(data)) == ecb(algorithms.AES(k), data)


def test_an_inaccessible_page_stops_the_operation_before_it_then_interrupts(cpu):
    """The target runs past the end of storage: the first execution does the accessible part and ends with
    CC 3, the next one starts at the inaccessible page and takes the addressing exception."""
    k, data = os.urandom(16), os.urandom(8192)
    dst = MEM - 4096
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(18, dst=dst, n=8192))
    assert out["ccs"] == [3] and out["pgm"] == (4, 0x05)
    assert out["regs"][2:5] == [SRC + 4096, 4096, MEM]
    assert cpu.mem.read(dst, 4096) == ecb(algorithms.AES(k), data[:4096])


def test_in_31_bit_mode_only_the_low_register_half_moves(cpu):
    k, data = os.urandom(16), os.urandom(32)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    high = 0xABCD0000 << 32
    regs = {0: 18, 1: PARAM, 2: high | SRC, 3: high | 32, 4: high | DST}
    out = execute(cpu, rre(KM, 4, 2), regs, mask=PSW_MASK_BA)
    assert out["ccs"] == [0]
    assert out["regs"][2:5] == [high | (SRC + 32), high, high | (DST + 32)]
    assert cpu.mem.read(DST, 32) == ecb(algorithms.AES(k), data)


# NIST CAVS Hash_DRBG SHA-512 "Count 0" (no reseed, no additional input), the vector Linux's s390 prng
# driver checks PRNO with at start-up: the seed, the working state after instantiation, and the output of
# the second of two 256-byte generate requests.
NIST_SEED = bytes.fromhex(
    "6b50a7d8f8a55d7a3df8bb40bcc3b722d8708de67fda010b03c4c84d72096f8c3ec649cc6256d9fa31db7a2904aaf025"
)
NIST_V0 = bytes.fromhex(
    "00ade36f9a01c776613435f54e247422219a2989c7932e601ee814248dd503f1655d082272d5ad95e1231e8aa713d92b"
    "5ebcbb80ab8de579ab5b474eddee6b038f0f5c5ea91a83ddd388b2754bce8336574bf15cca7e09c0d389c6e0dac4817e"
    "5bf9e101c19205eaf52fc6c6c78fbcf4"
)
NIST_C0 = bytes.fromhex(
    "00f4a3e5a0726395c64f48d08b5b5f8e6b961f16edbc66944531d7477322a586cec04cac63b83950bfe6596c3858991f"
    "27a79d712ab37bf9fb1786aa9981aa43e437d31e6ee5e6eec2ed954f530e468acc45a5db690d81c93292bc8f33e6f609"
    "7c8e05190df1b6ccf302219025eced0e"
)
NIST_OUT = bytes.fromhex(
    "95b7f17e9802d3577392c6a9c08083b67dd1292265b5f42d237f1c55bb9b10bfcfd82c77a378b8266a0099143b3c2d64"
    "611eeeb69acdc055957c139e8b190c7a06955f2c797c2778de940396a501f40e91396acf8d7e45ebdbb53bbf8c975230"
    "d2f0ff9106c76119ae498e7fbc03d90f8e4c51627aed5c8d4263d5d2b978873a0de596ee6dc7f7c29e37eee8b34c90dd"
    "1cf6a9ddb22b4cbd086b14b35de93da2d5cb1806698cbd7bbb67bfe3d31fd2d1dbd2a1e058a3eb99d7e51f1a938eed5e"
    "1c1de23a6b4345d3191409f92f39b3670d8dbfb635d8e6a36932d81033d1448d63b403ddf88e121b6e819ac381226c13"
    "21e4b08644f6727c368c5a9f7a4b3ee2"
)


def test_prno_sha512_drng_passes_the_nist_vector_linux_checks(cpu):
    cpu.mem.fill(PARAM, 240)
    cpu.mem.write(SRC, NIST_SEED)
    out = execute(cpu, rre(PRNO, 2, 4), {0: 0x83, 1: PARAM, 2: 0, 3: 0, 4: SRC, 5: len(NIST_SEED)})
    assert out["ccs"] == [0]
    assert cpu.mem.read(PARAM + 16, 112) == NIST_V0 and cpu.mem.read(PARAM + 128, 112) == NIST_C0
    assert struct.unpack(">IIQ", cpu.mem.read(PARAM, 16)) == (0, 1, 0)
    for _ in range(2):
        out = execute(cpu, rre(PRNO, 2, 4), {0: 3, 1: PARAM, 2: DST, 3: 256, 4: 0, 5: 0})
        assert out["ccs"] == [0] and out["regs"][2:4] == [DST + 256, 0]
    assert cpu.mem.read(DST, 256) == NIST_OUT
    assert struct.unpack(">IIQ", cpu.mem.read(PARAM, 16)) == (0, 3, 512)  # reseed counter, stream bytes


def test_prno_reseed_changes_the_state_and_keeps_generating(cpu):
    cpu.mem.fill(PARAM, 240)
    cpu.mem.write(SRC, NIST_SEED)
    execute(cpu, rre(PRNO, 2, 4), {0: 0x83, 1: PARAM, 4: SRC, 5: len(NIST_SEED)})
    execute(cpu, rre(PRNO, 2, 4), {0: 3, 1: PARAM, 2: DST, 3: 64})
    execute(cpu, rre(PRNO, 2, 4), {0: 0x83, 1: PARAM, 4: SRC, 5: 16})  # reseed: counter back to 1
    assert struct.unpack(">IIQ", cpu.mem.read(PARAM, 16)) == (0, 1, 64)
    assert cpu.mem.read(PARAM + 16, 112) != NIST_V0


def test_kmc_prng_is_the_x917_generator(cpu):
    cv, key, data = os.urandom(8), os.urandom(24), os.urandom(64)
    cpu.mem.write(PARAM, cv + key)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KMC, 4, 2), cipher_regs(67, n=64))
    assert out["ccs"] == [0]
    alg, v, want = TripleDES(key), cv, b""
    for off in range(0, 64, 8):  # ANSI X9.17: I = E(D), R = E(I ^ V), V = E(R ^ I)
        i = ecb(alg, data[off : off + 8])
        r = ecb(alg, bytes(a ^ b for a, b in zip(i, v, strict=True)))
        v = ecb(alg, bytes(a ^ b for a, b in zip(r, i, strict=True)))
        want += r
    assert cpu.mem.read(DST, 64) == want and cpu.mem.read(PARAM, 8) == v


def test_chaining_and_gcm_state_carry_over_partial_completion(cpu):
    """KMC and KMA over more than one execution's share: the chaining value, counter and tag stored at
    CC 3 continue exactly where one long operation would be."""
    k, iv = os.urandom(32), os.urandom(16)
    data = os.urandom(cpacf.LIMIT + 48)
    cpu.mem.write(PARAM, iv + k)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KMC, 4, 2), cipher_regs(20, n=len(data)))
    assert out["ccs"] == [3, 0]
    e = Cipher(algorithms.AES(k), modes.CBC(iv)).encryptor()
    assert cpu.mem.read(DST, len(data)) == e.update(data) + e.finalize()
    a, p, nonce = os.urandom(cpacf.LIMIT + 20), data[: cpacf.LIMIT + 5], os.urandom(12)
    cpu.mem.write(PARAM, struct.pack(">12xI16x16xQQ", 1, 8 * len(a), 8 * len(p)) + nonce + b"\0\0\0\1" + k)
    cpu.mem.write(AAD, a)
    regs = {0: 20 | 0x300, 1: PARAM, 2: SRC, 3: len(p), 4: DST, 6: AAD, 7: len(a)}
    out = execute(cpu, rrf(KMA, 4, 2, 6), regs)
    assert out["ccs"] == [3, 3, 0]
    want = AESGCM(k).encrypt(nonce, p, a)
    assert cpu.mem.read(DST, len(p)) == want[:-16] and cpu.mem.read(PARAM + 16, 16) == want[-16:]


def test_a_cpacf_instruction_as_the_target_of_execute(cpu):
    """EX of a KM: the target is emulated as if at the EX, and the PSW moves past the EX."""
    k, data = os.urandom(16), os.urandom(32)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    cpu.mem.write(CODE + 0x100, rre(KM, 4, 2))
    out = execute(cpu, bytes.fromhex("44009100"), {**cipher_regs(18, n=32), 9: CODE})  # ex 0,0x100(%r9)
    assert out["ccs"] == [0] and out["regs"][2:5] == [SRC + 32, 0, DST + 32]
    assert cpu.mem.read(DST, 32) == ecb(algorithms.AES(k), data)


def test_in_24_bit_mode_addresses_wrap_and_keep_their_high_byte(cpu):
    k, data = os.urandom(16), os.urandom(32)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    high = 0x12345678AB << 24
    regs = {0: 18, 1: PARAM, 2: high | SRC, 3: (0xCAFE << 32) | 32, 4: high | DST}
    out = execute(cpu, rre(KM, 4, 2), regs, mask=0)
    assert out["ccs"] == [0]
    assert out["regs"][2:5] == [high | (SRC + 32), 0xCAFE << 32, high | (DST + 32)]
    assert cpu.mem.read(DST, 32) == ecb(algorithms.AES(k), data)


def test_a_protected_target_suppresses_the_whole_operation(cpu):
    """Low-address protection on the first target page: PGM 0x04, registers and storage as before."""
    k, data = os.urandom(16), os.urandom(64)
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    cpu.mem.write(0x100, bytes(64))
    cpu.reset_cpu()
    cpu.write_cr(0, cpu.cr(0) | 1 << 28)  # CR0 bit 35: low-address protection
    try:
        mem = cpu.mem
        mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, PGM_NEW_ADDR))
        mem.write(CODE, rre(KM, 4, 2))
        for i, v in cipher_regs(18, dst=0x100, n=64).items():
            cpu.set_gpr(i, v)
        cpu.set_psw(PSW_MASK_64, CODE)
        cpu.state = OPERATING
        cpu.run(count=1)
        assert cpu.psw[1] == PGM_NEW_ADDR and struct.unpack(">HH", mem.read(0x8C, 4)) == (4, 0x04)
        assert cpu.gprs()[2:5] == [SRC, 64, 0x100]
        assert mem.read(0x100, 64) == bytes(64)
    finally:
        cpu.write_cr(0, cpu.cr(0) & ~(1 << 28))


def test_trng_with_an_inaccessible_second_operand_completes_the_first_then_interrupts(cpu):
    cpu.mem.fill(DST, 64)
    regs = {0: 114, 1: PARAM, 2: DST, 3: 64, 4: MEM + 0x1000, 5: 32}  # the second operand beyond storage
    out = execute(cpu, rre(PRNO, 2, 4), regs)
    assert out["ccs"] == [3] and out["pgm"] == (4, 0x05)
    assert out["regs"][2:6] == [DST + 64, 0, MEM + 0x1000, 32]
    assert cpu.mem.read(DST, 64) != bytes(64)


@SLOW
@given(fits=st.integers(1, 600), more=st.integers(1, 300), fc=st.sampled_from([18, 20, 2]))
def test_an_operation_running_into_inaccessible_storage_ends_exactly_there(cpu, fits, more, fc):
    """Whatever the block where the target leaves storage: every accessible block is done (CC 3), then the
    next execution interrupts with the registers on the first inaccessible byte."""
    klen, b = {18: (16, 16), 20: (32, 16), 2: (16, 8)}[fc]
    k = os.urandom(klen)
    data = os.urandom((fits + more) * b)
    dst = MEM - fits * b
    cpu.mem.write(PARAM, k)
    cpu.mem.write(SRC, data)
    out = execute(cpu, rre(KM, 4, 2), cipher_regs(fc, dst=dst, n=len(data)))
    assert out["pgm"] == (4, 0x05) and set(out["ccs"]) == {3}
    assert out["regs"][2:5] == [SRC + fits * b, more * b, MEM]
    alg = algorithms.AES(k) if b == 16 else dea_alg(k)
    assert cpu.mem.read(dst, fits * b) == ecb(alg, data[: fits * b])


ADDRESSES = st.one_of(st.sampled_from([PARAM, SRC, DST, CTR, AAD, MEM - 16, MEM, 0, 0x200]),
                      st.integers(0, (1 << 64) - 1))
LENGTHS = st.one_of(st.integers(0, 300), st.integers(0, 20).map(lambda n: 16 * n),
                    st.sampled_from([1 << 40, (1 << 64) - 1, 0x10000]))
FIELDS = st.sampled_from([2, 4, 6, 8, 10, 12] * 3 + [0, 1, 9])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_operands_end_in_a_condition_code_or_a_program_interruption(cpu, data):
    """Fuzz: any instruction, register fields, function code, flags, addresses and lengths, in any addressing
    mode, ends one execution architecturally (a condition code, or a specification, protection or addressing
    exception), never in a Python error."""
    op = data.draw(st.sampled_from(sorted(cpacf.OPCODES)))
    name = cpacf.OPCODES[op]
    installed = st.sampled_from(sorted(cpacf.FUNCTIONS[name] - {0}) or [0])
    fc = data.draw(st.one_of(installed, installed, installed, st.integers(0, 127)))
    flags = data.draw(st.one_of(st.just(0), st.integers(0, (1 << 64) - 1))) & ~0xFF
    gr0 = flags | fc | data.draw(st.sampled_from([0, 0, DECRYPT]))
    r1, r2, r3 = (data.draw(FIELDS) for _ in range(3))
    regs = {i: data.draw(ADDRESSES) for i in range(1, 16)}
    for r in (3, 5, 7, 9):
        regs[r] = data.draw(LENGTHS)
    regs[0] = gr0
    cpu.mem.write(PARAM, os.urandom(512))
    mask = data.draw(st.sampled_from([PSW_MASK_64, PSW_MASK_BA, 0]))
    out = execute(cpu, rrf(op, r1, r2, r3), regs, mask=mask, again=False)
    event(f"{name} {'cc %d' % out['ccs'][0] if out['pgm'] is None else 'pgm %#x' % out['pgm'][1]}")
    if out["pgm"] is None:
        assert out["ccs"][0] in (0, 1, 2, 3)
    else:
        assert out["pgm"][0] == 4 and out["pgm"][1] in (0x04, 0x05, 0x06)

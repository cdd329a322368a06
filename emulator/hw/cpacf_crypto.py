"""The CPU's one crypto home: CPACF's ciphers, chaining modes, GHASH, CMAC and the machine's key wrapping.

Every cryptographic primitive the message-security-assist instructions use comes from here, and this is
the only module of the CPU that imports ``cryptography`` (AES, TDEA, SHA-256/512, random numbers). The
modes are those of the Principles of Operation's CPACF functions, whose state lives in the program's
parameter block rather than in a library object: CBC and OFB chain through the block the instruction stores
back, CFB feeds back ``s`` bytes, the counter mode takes its counter blocks from storage (KMCTR), XTS starts
from the already-enciphered tweak (the "XTS parameter" PCC computes), GHASH and CMAC continue from a stored
value. Where ``cryptography`` has the mode itself (ECB, CBC, OFB, CFB, CFB8) it does the work; the rest
is the mode's own few XORs on top of its block cipher. The SHA compression functions KIMD/KLMD need with a
caller-supplied chaining value come from OpenSSL's libcrypto block functions (``openssl_sha``), checked
against the Python ones in ``cpacf_sha``, which stand in without that library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import os
import struct
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB, CFB8, OFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BlockCipher",
    "WrappingKey",
    "aes",
    "tdea",
    "xts",
    "ghash",
    "cmac_last_block",
    "xts_parameter",
    "sha512",
    "drbg_seed",
    "drbg_generate",
    "x917_prng",
    "random_bytes",
    "openssl_sha",
    "wrapping_key_for",
]

_GCM_R: Final = 0xE1 << 120
_MASK128: Final = (1 << 128) - 1


def _xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equally long strings (one big-integer operation)."""
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


class BlockCipher:
    """A block cipher under one key (AES or TDEA), with the CPACF chaining modes on top of it."""

    def __init__(self, algorithm: algorithms.AES | TripleDES, block: int) -> None:
        self._alg = algorithm
        self.block = block
        self._ecb = Cipher(algorithm, modes.ECB())

    def encrypt(self, data: bytes) -> bytes:
        """Encipher whole blocks independently (KM, the ECB mode)."""
        e = self._ecb.encryptor()
        return e.update(data) + e.finalize()

    def decrypt(self, data: bytes) -> bytes:
        """Decipher whole blocks independently."""
        d = self._ecb.decryptor()
        return d.update(data) + d.finalize()

    def cbc(self, icv: bytes, data: bytes, decrypt: bool) -> tuple[bytes, bytes]:
        """CBC (KMC): the result and the chaining value to store back (the last ciphertext block)."""
        c = Cipher(self._alg, modes.CBC(icv))
        ctx = c.decryptor() if decrypt else c.encryptor()
        out = ctx.update(data) + ctx.finalize()
        last = (data if decrypt else out)[-self.block :]
        return out, last

    def cbc_mac(self, icv: bytes, data: bytes) -> bytes:
        """The CBC-MAC chaining value after ``data`` (KMAC): the last block of the CBC encipherment."""
        return self.cbc(icv, data, False)[1]

    def ofb(self, icv: bytes, data: bytes) -> tuple[bytes, bytes]:
        """OFB (KMO): the result and the next chaining value (the last cipher output block)."""
        ctx = Cipher(self._alg, OFB(icv)).encryptor()
        stream = ctx.update(bytes(len(data)))
        return _xor(data, stream), stream[-self.block :]

    def cfb(self, icv: bytes, data: bytes, s: int, decrypt: bool) -> tuple[bytes, bytes]:
        """CFB with ``s``-byte feedback (KMF's LCFB): the result and the next chaining value.

        The chaining value after the operation is the last block-size bytes of ICV || ciphertext.
        """
        b = self.block
        if s == b:
            mode: modes.Mode | None = CFB(icv)
        elif s == 1:
            mode = CFB8(icv)
        else:
            mode = None
        if mode is not None:
            c = Cipher(self._alg, mode)
            ctx = c.decryptor() if decrypt else c.encryptor()
            out = ctx.update(data) + ctx.finalize()
        else:
            reg, parts = icv, []
            for off in range(0, len(data), s):
                seg = data[off : off + s]
                o = _xor(seg, self.encrypt(reg)[:s])
                parts.append(o)
                reg = (reg + (seg if decrypt else o))[-b:]
            out = b"".join(parts)
        cipher_text = data if decrypt else out
        return out, (icv + cipher_text)[-b:]

    def ctr(self, counters: bytes, data: bytes) -> bytes:
        """Counter mode with the counter blocks given (KMCTR): data XOR E(counter_i)."""
        return _xor(data, self.encrypt(counters))


def aes(key: bytes) -> BlockCipher:
    """AES-128/192/256 under ``key``."""
    return BlockCipher(algorithms.AES(key), 16)


def tdea(key: bytes) -> BlockCipher:
    """DEA (8-byte key), TDEA-128 (K1 K2 K1) or TDEA-192 (K1 K2 K3); parity bits are ignored, as by DEA."""
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]
    return BlockCipher(TripleDES(key), 8)


def _xts_stream(t: bytes, n: int) -> tuple[bytes, bytes]:
    """The tweaks for ``n`` blocks from T (IEEE 1619: multiply by alpha, little-endian), and the next T."""
    v = int.from_bytes(t, "little")
    out = []
    for _ in range(n):
        out.append(v.to_bytes(16, "little"))
        v <<= 1
        if v >> 128:
            v = (v & _MASK128) ^ 0x87
    return b"".join(out), v.to_bytes(16, "little")


def xts(cipher: BlockCipher, t: bytes, data: bytes, decrypt: bool) -> tuple[bytes, bytes]:
    """XTS from the XTS parameter ``t`` (the enciphered tweak of the first block): result and next ``t``."""
    stream, nxt = _xts_stream(t, len(data) // 16)
    mid = _xor(data, stream)
    mid = cipher.decrypt(mid) if decrypt else cipher.encrypt(mid)
    return _xor(mid, stream), nxt


def xts_parameter(cipher: BlockCipher, tweak: bytes, block_number: int) -> bytes:
    """PCC's Compute XTS Parameter: E(tweak) multiplied by alpha ``block_number`` times."""
    t = int.from_bytes(cipher.encrypt(tweak), "little")
    # alpha^j by square-and-multiply over GF(2^128) in XTS's little-endian convention
    power, base, j = 1, 2, block_number
    while j:
        if j & 1:
            power = _gf_xts_mul(power, base)
        base = _gf_xts_mul(base, base)
        j >>= 1
    return _gf_xts_mul(t, power).to_bytes(16, "little")


def _gf_xts_mul(a: int, b: int) -> int:
    """Multiply in GF(2^128) mod x^128 + x^7 + x^2 + x + 1, bit i of the integer = coefficient of x^i."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a >> 128:
            a = (a & _MASK128) ^ 0x87
    return r


# -- GHASH (KIMD-GHASH and KMA's GCM) -----------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _ghash_tables(h: int) -> tuple[tuple[int, ...], ...]:
    """Per byte position, the products X*H of every byte value there (GCM bit order: MSB = x^0)."""
    single = []
    v = h
    for _ in range(128):
        single.append(v)
        v = (v >> 1) ^ _GCM_R if v & 1 else v >> 1
    tables = []
    for i in range(16):
        t = [0] * 256
        for b in range(1, 256):
            low = b & -b
            t[b] = t[b ^ low] ^ single[8 * i + 8 - low.bit_length()]
        tables.append(tuple(t))
    return tuple(tables)


def ghash(h: bytes, icv: bytes, data: bytes) -> bytes:
    """GHASH of whole 16-byte blocks, continuing from ``icv``: Y_i = (Y_{i-1} XOR X_i) * H."""
    tables = _ghash_tables(int.from_bytes(h, "big"))
    y = int.from_bytes(icv, "big")
    for off in range(0, len(data), 16):
        x = y ^ int.from_bytes(data[off : off + 16], "big")
        y = 0
        for i, tab in enumerate(tables):
            y ^= tab[(x >> (120 - 8 * i)) & 0xFF]
    return y.to_bytes(16, "big")


# -- CMAC (PCC Compute Last Block CMAC) ------------------------------------------------------------------


def _dbl(v: int, bits: int) -> int:
    r = 0x87 if bits == 128 else 0x1B
    v <<= 1
    if v >> bits:
        v = (v & ((1 << bits) - 1)) ^ r
    return v


def cmac_last_block(cipher: BlockCipher, icv: bytes, message: bytes, ml_bits: int) -> bytes:
    """The CMAC (NIST SP 800-38B) after its last block: ``message`` holds ``ml_bits`` valid bits.

    A full block is XORed with subkey K1; a shorter one is padded with a one bit and zeros and XORed with
    K2. The result is E(ICV XOR block), the MAC, which PCC stores in the ICV field.
    """
    b = cipher.block
    bits = 8 * b
    k1 = _dbl(int.from_bytes(cipher.encrypt(bytes(b)), "big"), bits)
    m = int.from_bytes(message, "big")
    if ml_bits == bits:
        last = m ^ k1
    else:
        keep = m >> (bits - ml_bits) << (bits - ml_bits) if ml_bits else 0
        last = keep | 1 << (bits - ml_bits - 1)
        last ^= _dbl(k1, bits)
    return cipher.encrypt((last ^ int.from_bytes(icv, "big")).to_bytes(b, "big"))


# -- hashes and random numbers ----------------------------------------------------------------------------


def sha512(data: bytes) -> bytes:
    """SHA-512 of ``data``."""
    h = hashes.Hash(hashes.SHA512())
    h.update(data)
    return h.finalize()


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


#: Hash_DRBG with SHA-512 (NIST SP 800-90A): seed length 888 bits
DRBG_SEEDLEN: Final = 111


def _hash_df(parts: Iterable[bytes], nbytes: int) -> bytes:
    """SP 800-90A Hash_df: SHA-512(counter || bits requested || data) for counters 1, 2, ... until
    ``nbytes`` are made; ``data`` comes in parts (a long seed operand is read piecewise)."""
    hs = []
    for counter in range(1, -(-nbytes // 64) + 1):
        h = hashes.Hash(hashes.SHA512())
        h.update(bytes([counter]) + (8 * nbytes).to_bytes(4, "big"))
        hs.append(h)
    for part in parts:
        for h in hs:
            h.update(part)
    return b"".join(h.finalize() for h in hs)[:nbytes]


def drbg_seed(v: bytes, reseed_counter: int, seed: Iterable[bytes]) -> tuple[bytes, bytes]:
    """PRNO SHA-512-DRNG seed: instantiate (reseed counter 0) or reseed; the new V and C (111 bytes each).

    ``seed`` is the seed operand in parts, in order.
    """
    prefix = [] if reseed_counter == 0 else [b"\x01" + v]
    new_v = _hash_df(itertools.chain(prefix, seed), DRBG_SEEDLEN)
    return new_v, _hash_df([b"\x00" + new_v], DRBG_SEEDLEN)


def drbg_generate(v: bytes, c: bytes, reseed_counter: int, n: int) -> tuple[bytes, bytes]:
    """PRNO SHA-512-DRNG generate (no additional input): ``n`` bytes and the next V."""
    mod = 1 << (8 * DRBG_SEEDLEN)
    data, out = int.from_bytes(v, "big"), []
    for _ in range(-(-n // 64)):
        out.append(sha512(data.to_bytes(DRBG_SEEDLEN, "big")))
        data = (data + 1) % mod
    h = int.from_bytes(sha512(b"\x03" + v), "big")
    new_v = (int.from_bytes(v, "big") + h + int.from_bytes(c, "big") + reseed_counter) % mod
    return b"".join(out)[:n], new_v.to_bytes(DRBG_SEEDLEN, "big")


def x917_prng(cipher: BlockCipher, cv: bytes, data: bytes) -> tuple[bytes, bytes]:
    """KMC-PRNG, the ANSI X9.17 generator under TDEA: per 8-byte block D, I = E(D), R = E(I XOR V),
    V = E(R XOR I); the R blocks and the final V."""
    v, out = cv, []
    for off in range(0, len(data), 8):
        i = cipher.encrypt(data[off : off + 8])
        r = cipher.encrypt(_xor(i, v))
        v = cipher.encrypt(_xor(r, i))
        out.append(r)
    return b"".join(out), v


# -- SHA compression through OpenSSL's block functions -------------------------------------------------------
#
# KIMD/KLMD continue a digest from a chaining value in storage; ``cryptography`` and ``hashlib`` only hash
# from the standard initial value. OpenSSL's libcrypto (the library Python's ``hashlib`` itself runs on)
# still exports the SHA*_Update functions over a context whose chaining words can be set, so whole blocks go
# through OpenSSL's compression function; ``cpacf_sha`` has the same functions in Python and is used
# when the library or its context layout is not the expected one (checked once against it).

#: name -> (Init, Update symbols, context bytes, word format of the chaining value in the context)
_OPENSSL_SHA: Final = {
    "SHA-1": ("SHA1_Init", "SHA1_Update", 96, "5I"),
    "SHA-256": ("SHA256_Init", "SHA256_Update", 112, "8I"),
    "SHA-512": ("SHA512_Init", "SHA512_Update", 216, "8Q"),
}


class _OpenSslSha:
    """One SHA algorithm's compression function in libcrypto, over a context whose chaining value is set."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        init, update, self._size, words = _OPENSSL_SHA[name]
        self._init = getattr(lib, init)
        self._update = getattr(lib, update)
        self._init.argtypes = [ctypes.c_void_p]
        self._update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        self._host = struct.Struct("=" + words)  # the context keeps the words in host byte order
        self._be = struct.Struct(">" + words)

    def compress(self, state: bytes, data: bytes) -> bytes:
        ctx = ctypes.create_string_buffer(self._size)
        self._init(ctx)
        self._host.pack_into(ctx, 0, *self._be.unpack(state))
        self._update(ctx, data, len(data))  # whole blocks only: nothing stays buffered
        return self._be.pack(*self._host.unpack_from(ctx, 0))


def openssl_sha(name: str) -> Callable[[bytes, bytes], bytes] | None:
    """OpenSSL's compression function for ``name`` (SHA-1, SHA-256, SHA-512), or None without libcrypto."""
    return _openssl_shas().get(name)


@functools.cache
def _openssl_shas() -> dict[str, Callable[[bytes, bytes], bytes]]:
    path = ctypes.util.find_library("crypto")
    if path is None:
        return {}
    try:
        lib = ctypes.CDLL(path)
        return {name: _OpenSslSha(lib, name).compress for name in _OPENSSL_SHA}
    except (OSError, AttributeError):
        return {}


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the host's entropy source (PRNO's true-random-number generator)."""
    return os.urandom(n)


# -- protected keys: the machine's wrapping key -----------------------------------------------------------

#: length of the wrapping-key verification pattern that follows a protected AES key
WKVP_LEN: Final = 32


@dataclass
class WrappingKey:
    """The machine's AES wrapping key for protected keys (PCKMO and the encrypted-key functions).

    It is made from the host's entropy when the machine's storage is first used by a CPACF function and
    lives only here: a guest sees protected keys and the verification pattern (WKVP), never the key.
    A protected key is the clear key enciphered with XTS-AES-256 under the wrapping key, the tweak naming
    the function code's key type, so it keeps the clear key's length as on the real machine (key then
    WKVP in the parameter block) and a protected key of one type does not decipher as another.
    """

    _key: bytes = field(default_factory=lambda: os.urandom(64), repr=False)

    @property
    def wkvp(self) -> bytes:
        """The verification pattern: a digest of the wrapping key (it identifies the key, reveals nothing)."""
        return sha256(b"zuv CPACF wrapping-key verification pattern" + self._key)

    def _xts(self, key_type: int) -> Cipher[modes.XTS]:
        return Cipher(algorithms.AES(self._key), modes.XTS(key_type.to_bytes(16, "big")))

    def wrap(self, key_type: int, clear: bytes) -> bytes:
        """The protected form of a clear AES key (16, 24 or 32 bytes)."""
        e = self._xts(key_type).encryptor()
        return e.update(clear) + e.finalize()

    def unwrap(self, key_type: int, protected: bytes) -> bytes:
        """The clear key inside a protected key made by ``wrap`` with the same ``key_type``."""
        d = self._xts(key_type).decryptor()
        return d.update(protected) + d.finalize()


_WRAPPING_KEYS: weakref.WeakKeyDictionary[object, WrappingKey] = weakref.WeakKeyDictionary()


def wrapping_key_for(machine_storage: object) -> WrappingKey:
    """The wrapping key of the machine that owns ``machine_storage`` (all its CPUs share one)."""
    wk = _WRAPPING_KEYS.get(machine_storage)
    if wk is None:
        wk = _WRAPPING_KEYS[machine_storage] = WrappingKey()
    return wk

"""The SHA-1, SHA-256 and SHA-512 compression functions (FIPS 180-4) that KIMD and KLMD run.

KIMD continues a digest from the chaining value the program keeps in its parameter block, and KLMD pads
with the message bit length the program supplies; both need the bare compression function with a
caller-supplied state, which neither ``cryptography`` nor ``hashlib`` exposes. OpenSSL's block function
does the work when libcrypto offers it (``cpacf_crypto.openssl_sha``, checked here at import against the
Python functions written out below, which otherwise do it); the tests check both against
``cryptography``'s digests of the same messages. States are the big-endian words H0..Hn as the parameter
block holds them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from emulator.hw.cpacf_crypto import openssl_sha

__all__ = ["Sha", "SHA1", "SHA256", "SHA512", "pad"]

_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF

_K256: Final = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip

_K512: Final = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC, 0x3956C25BF348B538,
    0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118, 0xD807AA98A3030242, 0x12835B0145706FBE,
    0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2, 0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235,
    0xC19BF174CF692694, 0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5, 0x983E5152EE66DFAB,
    0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4, 0xC6E00BF33DA88FC2, 0xD5A79147930AA725,
    0x06CA6351E003826F, 0x142929670A0E6E70, 0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED,
    0x53380D139D95B3DF, 0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30, 0xD192E819D6EF5218,
    0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8, 0x19A4C116B8D2D0C8, 0x1E376C085141AB53,
    0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8, 0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373,
    0x682E6FF3D6B2B8A3, 0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B, 0xCA273ECEEA26619C,
    0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178, 0x06F067AA72176FBA, 0x0A637DC5A2C898A6,
    0x113F9804BEF90DAE, 0x1B710B35131C471B, 0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC,
    0x431D67C49C100D4C, 0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)  # fmt: skip


def _sha1_block(h: list[int], block: bytes) -> None:
    w = list(struct.unpack(">16I", block))
    for t in range(16, 80):
        x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w.append(((x << 1) | (x >> 31)) & _M32)
    a, b, c, d, e = h
    for t in range(80):
        if t < 20:
            f, k = (b & c) | (~b & d), 0x5A827999
        elif t < 40:
            f, k = b ^ c ^ d, 0x6ED9EBA1
        elif t < 60:
            f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
        else:
            f, k = b ^ c ^ d, 0xCA62C1D6
        tmp = (((a << 5) | (a >> 27)) + f + e + k + w[t]) & _M32
        a, b, c, d, e = tmp, a, ((b << 30) | (b >> 2)) & _M32, c, d
    for i, v in enumerate((a, b, c, d, e)):
        h[i] = (h[i] + v) & _M32


def _sha256_block(h: list[int], block: bytes) -> None:
    w = list(struct.unpack(">16I", block))
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = ((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)
        s1 = ((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M32)
    a, b, c, d, e, f, g, hh = h
    for t in range(64):
        s1 = ((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))
        t1 = (hh + (s1 & _M32) + ((e & f) ^ (~e & g)) + _K256[t] + w[t]) & _M32
        s0 = ((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))
        t2 = ((s0 & _M32) + ((a & b) ^ (a & c) ^ (b & c))) & _M32
        a, b, c, d, e, f, g, hh = (t1 + t2) & _M32, a, b, c, (d + t1) & _M32, e, f, g
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _M32


def _sha512_block(h: list[int], block: bytes) -> None:
    w = list(struct.unpack(">16Q", block))
    for t in range(16, 80):
        x, y = w[t - 15], w[t - 2]
        s0 = ((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)
        s1 = ((y >> 19) | (y << 45)) ^ ((y >> 61) | (y << 3)) ^ (y >> 6)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M64)
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        s1 = ((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46)) ^ ((e >> 41) | (e << 23))
        t1 = (hh + (s1 & _M64) + ((e & f) ^ (~e & g)) + _K512[t] + w[t]) & _M64
        s0 = ((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30)) ^ ((a >> 39) | (a << 25))
        t2 = ((s0 & _M64) + ((a & b) ^ (a & c) ^ (b & c))) & _M64
        a, b, c, d, e, f, g, hh = (t1 + t2) & _M64, a, b, c, (d + t1) & _M64, e, f, g
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _M64


@dataclass(frozen=True)
class Sha:
    """One SHA algorithm as KIMD/KLMD see it: block size, chaining-value size, message-bit-length size."""

    name: str
    block: int  # bytes per message block
    state: int  # bytes of chaining value (ICV / digest) in the parameter block
    mbl: int  # bytes of the message bit length (KLMD's parameter block, after the chaining value)
    _word: str
    _fn: object

    def compress(self, state: bytes, data: bytes) -> bytes:
        """Run the compression function over whole blocks of ``data`` starting from ``state``: OpenSSL's
        when libcrypto offers it and gave this module's result on the start-up check, else Python's."""
        fast = _FAST.get(self.name)
        if fast is not None:
            return fast(state, data)
        return self.compress_python(state, data)

    @property
    def fast(self) -> bool:
        """Whether OpenSSL's compression function runs this algorithm."""
        return self.name in _FAST

    def compress_python(self, state: bytes, data: bytes) -> bytes:
        """The compression function in Python (the reference)."""
        fmt = f">{self.state // struct.calcsize(self._word)}{self._word}"
        h = list(struct.unpack(fmt, state))
        fn = self._fn
        for off in range(0, len(data), self.block):
            fn(h, data[off : off + self.block])  # type: ignore[operator]
        return struct.pack(fmt, *h)


SHA1: Final = Sha("SHA-1", 64, 20, 8, "I", _sha1_block)
SHA256: Final = Sha("SHA-256", 64, 32, 8, "I", _sha256_block)
SHA512: Final = Sha("SHA-512", 128, 64, 16, "Q", _sha512_block)


def pad(alg: Sha, tail: bytes, mbl_bits: int) -> bytes:
    """The last block(s) KLMD hashes: ``tail`` (shorter than a block), 0x80, zeros, the bit length."""
    lenbytes = (mbl_bits & ((1 << (8 * alg.mbl)) - 1)).to_bytes(alg.mbl, "big")
    body = tail + b"\x80"
    total = -(-(len(body) + alg.mbl) // alg.block) * alg.block
    return body + bytes(total - len(body) - alg.mbl) + lenbytes


def _fast_functions() -> dict[str, object]:
    """OpenSSL's compression functions that give the Python functions' results on a known input."""
    out = {}
    for alg in (SHA1, SHA256, SHA512):
        fn = openssl_sha(alg.name)
        state = bytes(range(1, alg.state + 1))
        data = bytes(range(2 * alg.block))
        if fn is not None and fn(state, data) == alg.compress_python(state, data):
            out[alg.name] = fn
    return out


_FAST: Final = _fast_functions()

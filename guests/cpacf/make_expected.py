#!/usr/bin/env python3
"""Write guests/expected/cpacf.txt: what the cpacf guest must print, computed with Python's cryptography.

Every result line is computed here from the same inputs as the guest (``pattern`` is its ``pattern``)
with ``cryptography`` and ``hashlib``, independently of the emulator; the query masks are the functions
zuv installs (``emulator.hw.cpacf.FUNCTIONS``), and the known-answer lines (FIPS-197, RFC 4493, SHA of
"abc", the NIST Hash_DRBG vector) are checked here against their published values too.
"""

import hashlib
import struct
import sys
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB, CFB8, OFB
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from emulator.hw.cpacf import FUNCTIONS  # noqa: E402

BIG = 200 * 1024


def pattern(n: int, seed: int) -> bytes:
    """The guest's test data: ``n`` bytes of the pattern it fills its buffers with (``seed`` shifts it)."""
    return bytes((i * 7 + seed + (i >> 8)) & 0xFF for i in range(n))


def fnv(data: bytes) -> str:
    """FNV-1a (32 bits) of ``data`` as the guest prints it: 8 hex digits."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"


def run(cipher: Cipher, data: bytes, decrypt: bool = False) -> bytes:
    """``data`` through ``cipher`` (encrypted, or decrypted with ``decrypt``), as one call."""
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def mask(name: str) -> str:
    """The 16-byte query mask (hex) of the function codes zuv offers for the instruction ``name``."""
    out = bytearray(16)
    for fc in FUNCTIONS[name]:
        out[fc >> 3] |= 0x80 >> (fc & 7)
    return out.hex()


def expected() -> str:
    """The guest's whole expected output, line by line, computed with ``cryptography``."""
    lines = ["stfle msa: 17=1 76=1 77=1 57=1 146=1 155=0"]
    for name in ("KMAC", "KM", "KMC", "KIMD", "KLMD", "PCKMO", "KMF", "KMO", "PCC", "KMCTR", "PRNO", "KMA"):
        lines.append(f"query {name}: {mask(name)}")
    src = pattern(BIG, 1)

    fips_pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    ct = run(Cipher(algorithms.AES(bytes(range(16))), modes.ECB()), fips_pt)
    assert ct.hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"  # FIPS-197 appendix C.1
    lines.append(f"km aes-128 fips-197 cc=0 ct: {ct.hex()}")
    k = pattern(32, 2)
    lines.append(f"km aes-256 {BIG} bytes cc=0 fnv={fnv(run(Cipher(algorithms.AES(k), modes.ECB()), src))}")
    lines.append("km aes-256 decrypt in place cc=0 round trip ok")
    p = pattern(48, 3)
    out = run(Cipher(algorithms.AES(p[16:]), modes.CBC(p[:16])), src)
    lines.append(f"kmc aes-256 cbc cc=0 fnv={fnv(out)} icv: {out[-16:].hex()}")
    p = pattern(32, 4)
    out = run(Cipher(TripleDES(p[8:]), modes.CBC(p[:8])), src[:4096])
    lines.append(f"kmc tdea-192 cbc cc=0 fnv={fnv(out)}")
    lines.append(f"km dea cc=0 fnv={fnv(run(Cipher(TripleDES(pattern(8, 5) * 3), modes.ECB()), src[:4096]))}")
    out = run(Cipher(algorithms.AES(pattern(16, 6)), modes.CTR(pattern(16, 7))), src)  # a 128-bit count
    lines.append(f"kmctr aes-128 cc=0 fnv={fnv(out)}")
    p = pattern(40, 8)
    out = run(Cipher(algorithms.AES(p[16:]), CFB8(p[:16])), src[:1000])
    lines.append(f"kmf aes-192 cfb-8 cc=0 fnv={fnv(out)}")
    out = run(Cipher(algorithms.AES(p[16:]), CFB(p[:16])), src[:4096])
    lines.append(f"kmf aes-192 cfb-128 cc=0 fnv={fnv(out)}")
    p = pattern(32, 9)
    out = run(Cipher(algorithms.AES(p[16:]), OFB(p[:16])), src[:4096])
    lines.append(f"kmo aes-128 ofb cc=0 fnv={fnv(out)}")

    p = pattern(48, 10)
    key2, tweak = p[:32], p[32:]
    xts_param = run(Cipher(algorithms.AES(key2), modes.ECB()), tweak)
    lines.append(f"pcc xts-aes-256 cc=0 xts parameter: {xts_param.hex()}")
    key1 = pattern(32, 11)
    out = run(Cipher(algorithms.AES(key1 + key2), modes.XTS(tweak)), src[:4096])
    lines.append(f"km xts-aes-256 cc=0 fnv={fnv(out)}")

    sealed = AESGCM(pattern(32, 13)).encrypt(pattern(12, 12), src[:100], src[1000:1020])
    lines.append(f"kma gcm-aes-256 cc=0 ct fnv={fnv(sealed[:100])} tag: {sealed[100:].hex()}")
    c = cmac.CMAC(algorithms.AES(bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")))
    c.update(bytes.fromhex("6bc1bee22e409f96e93d7e117393172a"))
    mac = c.finalize()
    assert mac.hex() == "070a16b46b4d4144f79bdd9dd04a287c"  # RFC 4493 example 2
    lines.append(f"pcc cmac aes-128 rfc4493 cc=0 mac: {mac.hex()}")
    c = cmac.CMAC(algorithms.AES(pattern(16, 14)))
    c.update(src[:4095])
    lines.append(f"kmac+pcc cmac aes-128 4095 bytes cc=0 mac: {c.finalize().hex()}")

    for name, fn in (("sha-1", hashlib.sha1), ("sha-256", hashlib.sha256), ("sha-512", hashlib.sha512)):
        for msg in (b"abc", src[: BIG - 5]):
            lines.append(f"{name} {len(msg)} bytes cc=0: {fn(msg).hexdigest()}")
    lines.append(f"kimd ghash 256 bytes: {ghash(pattern(16, 15), src[:256]).hex()}")

    lines += [
        "pckmo aes-256: clear key left in the block no",
        "km encrypted-aes-256 cc=0 same ciphertext as the clear key yes",
        "km encrypted-aes-256 with a wrong pattern cc=1 output untouched yes",
    ]
    lines.append(f"prno sha512-drng cc=0 second 256 bytes start: {hash_drbg_sha512()[:32].hex()}")
    lines.append("prno trng cc=0 raw filled conditioned filled")
    lines.append("km length 15: code=0x0006 ilc=4")
    lines.append("EXIT: STATUS=1")
    return "\n".join(lines) + "\n"


def ghash(h: bytes, data: bytes) -> bytes:
    """GHASH (NIST SP 800-38D) from zero, bit by bit."""
    hv, y = int.from_bytes(h, "big"), 0
    for off in range(0, len(data), 16):
        x, z, v = y ^ int.from_bytes(data[off : off + 16], "big"), 0, hv
        for i in range(127, -1, -1):
            if x >> i & 1:
                z ^= v
            v = (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1
        y = z
    return y.to_bytes(16, "big")


def hash_drbg_sha512() -> bytes:
    """NIST SP 800-90A Hash_DRBG, SHA-512, CAVS count 0: the second of two 256-byte outputs."""
    seed = bytes.fromhex(
        "6b50a7d8f8a55d7a3df8bb40bcc3b722d8708de67fda010b03c4c84d72096f8c3ec649cc6256d9fa31db7a2904aaf025"
    )

    def df(data: bytes, n: int) -> bytes:
        out, i = b"", 1
        while len(out) < n:
            out += hashlib.sha512(bytes([i]) + struct.pack(">I", 8 * n) + data).digest()
            i += 1
        return out[:n]

    v = df(seed, 111)
    c = df(b"\0" + v, 111)
    mod = 1 << 888
    out = b""
    for counter in (1, 2):
        data, out = int.from_bytes(v, "big"), b""
        for _ in range(4):
            out += hashlib.sha512(data.to_bytes(111, "big")).digest()
            data = (data + 1) % mod
        h = int.from_bytes(hashlib.sha512(b"\3" + v).digest(), "big")
        v = ((int.from_bytes(v, "big") + h + int.from_bytes(c, "big") + counter) % mod).to_bytes(111, "big")
    assert out[:4].hex() == "95b7f17e"  # the vector's returned bits start
    return out


if __name__ == "__main__":
    path = ROOT / "guests" / "expected" / "cpacf.txt"
    path.write_text(expected())
    sys.stdout.write(f"wrote {path}\n")

"""Cryptography of the Ultravisor and its tools (spec 8.6, 9, 10.4, 11.2).

This is the firmware's crypto module: `cryptography` (which `uv_storage`'s per-page sealing also uses
directly) and, for the Ultravisor's per-page AES-XTS, OpenSSL's libcrypto through its EVP interface
(:class:`EvpXts`, the one firmware use of libcrypto).

Everything here is a thin, typed layer over `cryptography` with the conventions of the
Secure Execution architecture built in:

* EC keys are NIST P-521 (secp521r1). On the wire a public key is the 160-byte
  ``X || Y`` encoding, each coordinate left-zero-padded big-endian to 80 bytes
  (:func:`ec_pub_to_coords`, :func:`ec_pub_from_coords`).
* The public host-key hash (PHKH) is ``SHA-256(X || Y)`` over that encoding (:func:`phkh`).
* The key-slot KDF is ``K = SHA-256(ECDH(priv, pub) || 00 00 00 01)`` where the ECDH result is the
  66-byte shared X coordinate as OpenSSL derives it (:func:`key_slot_kdf`).
* Key wrapping: ``wrpk || kst = AES-256-GCM(K, IV = 12 zero bytes, AAD = empty, key)``
  (:func:`wrap_key`, :func:`unwrap_key`).
* Components and exported pages: AES-256-XTS with a 64-byte key (key1 || key2) and a 16-byte tweak
  used as the XTS IV bytes as given (:func:`aes_xts_encrypt`, :func:`aes_xts_decrypt`).
* HKDF-SHA512 (add-secret extension secret, dump key) and HMAC-SHA512 (attestation).

Key material travels in :class:`Secret` (redacted ``repr``, explicit :meth:`Secret.expose`).
Randomness is a parameter (:class:`Rng`): :class:`SystemRng` for real use, :class:`DeterministicRng`
for reproducible images and golden files. Errors are :class:`CryptoError`; anything whose failure
depends on a secret (a GCM tag) collapses into one :class:`CryptoError` without detail.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import hashlib
import hmac as _hmac
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CryptoError",
    "Secret",
    "Rng",
    "SystemRng",
    "DeterministicRng",
    "EllipticCurvePrivateKey",
    "EllipticCurvePublicKey",
    "P521_ORDER",
    "EC_COORD_SIZE",
    "EC_PUB_SIZE",
    "ECDH_SHARED_SIZE",
    "AES256_KEY_SIZE",
    "XTS_KEY_SIZE",
    "GCM_IV_SIZE",
    "GCM_TAG_SIZE",
    "sha256",
    "sha512",
    "Sha512",
    "BackgroundSha512",
    "hmac_sha512",
    "hkdf_sha512",
    "generate_p521_key",
    "p521_key_from_scalar",
    "ec_pub_to_coords",
    "ec_pub_from_coords",
    "phkh",
    "ecdh_shared",
    "key_slot_kdf",
    "aes_gcm_seal",
    "aes_gcm_open",
    "wrap_key",
    "unwrap_key",
    "aes_xts_encrypt",
    "aes_xts_decrypt",
    "constant_time_eq",
    "private_key_to_pem",
    "private_key_from_pem",
    "public_key_to_pem",
    "public_key_from_pem",
    "certificate_public_key",
    "EvpXts",
    "evp_xts",
]

#: Order n of the NIST P-521 base point.
P521_ORDER = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
#: A P-521 coordinate as stored in SE structures: 66 significant bytes left-padded to 80.
EC_COORD_SIZE = 80
EC_PUB_SIZE = 2 * EC_COORD_SIZE
_P521_BYTES = 66
#: Length of the ECDH shared secret (the X coordinate) for P-521.
ECDH_SHARED_SIZE = _P521_BYTES
AES256_KEY_SIZE = 32
XTS_KEY_SIZE = 64
GCM_IV_SIZE = 12
GCM_TAG_SIZE = 16
_KDF_COUNTER = b"\x00\x00\x00\x01"


class CryptoError(Exception):
    """A cryptographic operation failed: bad key or parameter, or an authentication tag mismatch."""


class Secret:
    """Key material with a redacted ``repr``; the bytes come out only through :meth:`expose`.

    Equality is constant-time; a Secret is unhashable so it cannot leak through dict keys.
    """

    __slots__ = ("_value", "_label")

    def __init__(self, value: bytes, label: str = "secret") -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("Secret wraps bytes")
        self._value = bytes(value)
        self._label = label

    def expose(self) -> bytes:
        """The key bytes. Call only where the bytes are fed into a cipher or written to a key file."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"<Secret {self._label}: {len(self._value)} bytes>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return _hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):  # pickling would write the key somewhere unexpected
        raise TypeError("Secret objects cannot be pickled")


class Rng(Protocol):
    """Source of random bytes (injected everywhere keys, IVs or tweaks are chosen)."""

    def random_bytes(self, n: int) -> bytes:
        """Return n random bytes."""
        ...


class SystemRng:
    """The operating system's CSPRNG."""

    def random_bytes(self, n: int) -> bytes:
        """Return n bytes from ``os.urandom``."""
        return os.urandom(n)

    def __repr__(self) -> str:
        return "SystemRng()"


class DeterministicRng:
    """Reproducible byte stream for tests and golden files: SHA-512(seed || u64 counter) blocks.

    Not for real keys: anyone who knows the seed knows every key derived from it.
    """

    def __init__(self, seed: bytes | int | str) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=False)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = hashlib.sha512(b"zuv-deterministic-rng\x00" + bytes(seed)).digest()
        self._counter = 0
        self._buf = b""

    def random_bytes(self, n: int) -> bytes:
        """Return the next n bytes of the stream."""
        while len(self._buf) < n:
            self._buf += hashlib.sha512(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def __repr__(self) -> str:
        return "DeterministicRng(<seed>)"


# --------------------------------------------------------------------------------------------- hashes


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes)."""
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def sha512(data: bytes) -> bytes:
    """SHA-512 digest (64 bytes)."""
    h = hashes.Hash(hashes.SHA512())
    h.update(data)
    return h.finalize()


class Sha512:
    """Running SHA-512 (the UV's PLD/ALD/TLD accumulators); :meth:`digest` does not end the stream."""

    def __init__(self) -> None:
        self._h = hashes.Hash(hashes.SHA512())

    def update(self, data: bytes) -> None:
        """Feed data."""
        self._h.update(data)

    def digest(self) -> bytes:
        """Digest of everything fed so far; more data may follow."""
        return self._h.copy().finalize()


#: Bytes a :class:`BackgroundSha512` collects before its worker hashes them, and chunks it lets be in flight.
_BG_CHUNK = 1 << 20
_BG_IN_FLIGHT = 4
_bg_lock = threading.Lock()
_bg_worker: tuple[int, ThreadPoolExecutor] | None = None


def _bg_submit(fn: object, data: object) -> Future[None] | None:
    """Run ``fn(data)`` on the process's one hashing thread (FIFO); None when no thread can take it."""
    global _bg_worker
    with _bg_lock:
        if _bg_worker is None or _bg_worker[0] != os.getpid():  # a forked child has no worker thread
            _bg_worker = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="zuv-sha512"))
        pool = _bg_worker[1]
    try:
        return pool.submit(fn, data)  # type: ignore[arg-type]
    except RuntimeError:  # interpreter shutdown: hash on the caller's thread
        return None


class BackgroundSha512:
    """Running SHA-512 of a long stream fed in small pieces, hashed on a worker thread (the Unpack PLD).

    ``update`` copies each piece into a 1 MiB chunk (~0.2 us per 4 KiB page against ~3.7 us to hash it);
    each full chunk goes to one hashing thread shared by the process. ``cryptography`` hashes without holding
    the GIL, so on a machine with a second core the hashing overlaps the caller's Python work on the next
    pieces. Chunks are hashed in the order they were fed (one thread, first in first out), so the digest is
    that of :class:`Sha512` fed the same bytes; :meth:`digest` waits for what was fed so far. At most four
    chunks wait at a time (the feeder then waits for the oldest); their buffers are reused. Where no thread
    can be started, the chunk is hashed on the caller's thread. Not for concurrent feeders.
    """

    __slots__ = ("_h", "_buf", "_pos", "_pending")

    def __init__(self) -> None:
        self._h = hashes.Hash(hashes.SHA512())
        self._buf = bytearray(_BG_CHUNK)
        self._pos = 0
        self._pending: collections.deque[tuple[Future[None], bytearray]] = collections.deque()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed data (copied before this returns: the caller may overwrite it)."""
        n = len(data)
        pos = self._pos
        if pos + n > _BG_CHUNK:
            self._ship()
            pos = 0
            if n > _BG_CHUNK:  # a piece bigger than a chunk: hashed here, after what was fed before it
                self._drain()
                self._h.update(data)
                return
        self._buf[pos : pos + n] = data
        self._pos = pos + n

    def _ship(self) -> None:
        buf, pos = self._buf, self._pos
        if not pos:
            return
        data = buf if pos == _BG_CHUNK else memoryview(buf)[:pos]
        fut = _bg_submit(self._h.update, data)
        if fut is None:
            self._drain()
            self._h.update(data)
            self._pos = 0
            return
        pending = self._pending
        pending.append((fut, buf))
        if len(pending) >= _BG_IN_FLIGHT or pending[0][0].done():
            old, self._buf = pending.popleft()
            old.result()
        else:
            self._buf = bytearray(_BG_CHUNK)
        self._pos = 0

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            pending.popleft()[0].result()

    def digest(self) -> bytes:
        """Digest of everything fed so far (waits for the worker); more data may follow."""
        self._ship()
        self._drain()
        return self._h.copy().finalize()


def hmac_sha512(key: Secret | bytes, data: bytes) -> bytes:
    """HMAC-SHA512 (attestation measurement, spec 9.4)."""
    from cryptography.hazmat.primitives import hmac

    k = key.expose() if isinstance(key, Secret) else bytes(key)
    h = hmac.HMAC(k, hashes.SHA512())
    h.update(data)
    return h.finalize()


def hkdf_sha512(ikm: Secret | bytes, salt: bytes, info: bytes, length: int) -> Secret:
    """HKDF-SHA512 (RFC 5869): extension secret (spec 10.4) and dump key (spec 11.2)."""
    k = ikm.expose() if isinstance(ikm, Secret) else bytes(ikm)
    return Secret(HKDF(algorithm=hashes.SHA512(), length=length, salt=salt, info=info).derive(k), "hkdf")


def constant_time_eq(a: bytes, b: bytes) -> bool:
    """Compare two byte strings in time independent of where they differ."""
    return _hmac.compare_digest(a, b)


# --------------------------------------------------------------------------------------------- EC P-521


def p521_key_from_scalar(scalar: int) -> EllipticCurvePrivateKey:
    """The P-521 private key with the given scalar (1 <= scalar < n)."""
    if not 1 <= scalar < P521_ORDER:
        raise CryptoError("P-521 private scalar out of range")
    return ec.derive_private_key(scalar, ec.SECP521R1())


def generate_p521_key(rng: Rng) -> EllipticCurvePrivateKey:
    """A fresh P-521 key pair whose scalar comes from rng (rejection sampling, no modulo bias)."""
    while True:
        raw = int.from_bytes(rng.random_bytes(_P521_BYTES), "big") & ((1 << 521) - 1)
        if 1 <= raw < P521_ORDER:
            return p521_key_from_scalar(raw)


def _as_public(key: EllipticCurvePrivateKey | EllipticCurvePublicKey) -> EllipticCurvePublicKey:
    if isinstance(key, EllipticCurvePrivateKey):
        return key.public_key()
    if isinstance(key, EllipticCurvePublicKey):
        return key
    raise CryptoError(f"not an EC key: {type(key).__name__}")


def ec_pub_to_coords(key: EllipticCurvePrivateKey | EllipticCurvePublicKey) -> bytes:
    """The 160-byte SE encoding ``X || Y`` of a P-521 public key (each coordinate padded to 80 bytes)."""
    pub = _as_public(key)
    if not isinstance(pub.curve, ec.SECP521R1):
        raise CryptoError(f"host and customer keys must be P-521, not {pub.curve.name}")
    nums = pub.public_numbers()
    return nums.x.to_bytes(EC_COORD_SIZE, "big") + nums.y.to_bytes(EC_COORD_SIZE, "big")


def ec_pub_from_coords(data: bytes) -> EllipticCurvePublicKey:
    """Parse the 160-byte ``X || Y`` encoding; raises CryptoError unless it is a valid P-521 point."""
    if len(data) != EC_PUB_SIZE:
        raise CryptoError("EC public key encoding must be 160 bytes")
    xb, yb = data[:EC_COORD_SIZE], data[EC_COORD_SIZE:]
    pad = EC_COORD_SIZE - _P521_BYTES
    if any(xb[:pad]) or any(yb[:pad]):
        raise CryptoError("EC coordinate padding is not zero")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP521R1()
        ).public_key()
    except ValueError:
        raise CryptoError("point is not on P-521") from None


def phkh(key: EllipticCurvePrivateKey | EllipticCurvePublicKey) -> bytes:
    """Public host-key hash: SHA-256 over the 160-byte coordinate encoding (spec 8.6, 4.18)."""
    return sha256(ec_pub_to_coords(key))


def ecdh_shared(priv: EllipticCurvePrivateKey, pub: EllipticCurvePublicKey) -> Secret:
    """ECDH on P-521: the 66-byte shared X coordinate."""
    try:
        return Secret(priv.exchange(ec.ECDH(), pub), "ecdh")
    except ValueError:
        raise CryptoError("ECDH failed") from None


def key_slot_kdf(priv: EllipticCurvePrivateKey, pub: EllipticCurvePublicKey) -> Secret:
    """Key-slot key ``SHA-256(ECDH(priv, pub) || 00 00 00 01)`` (spec 8.6); symmetric in the two parties."""
    shared = ecdh_shared(priv, pub)
    return Secret(sha256(shared.expose() + _KDF_COUNTER), "key-slot key")


# --------------------------------------------------------------------------------------------- AES


def _key_bytes(key: Secret | bytes, size: int, what: str) -> bytes:
    k = key.expose() if isinstance(key, Secret) else bytes(key)
    if len(k) != size:
        raise CryptoError(f"{what} must be {size} bytes")
    return k


def aes_gcm_seal(key: Secret | bytes, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM encryption; returns (ciphertext, 16-byte tag)."""
    k = _key_bytes(key, AES256_KEY_SIZE, "AES-256-GCM key")
    if len(iv) != GCM_IV_SIZE:
        raise CryptoError("GCM IV must be 12 bytes")
    out = AESGCM(k).encrypt(bytes(iv), bytes(plaintext), bytes(aad))
    return out[:-GCM_TAG_SIZE], out[-GCM_TAG_SIZE:]


def aes_gcm_open(key: Secret | bytes, iv: bytes, aad: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """AES-256-GCM decryption; raises CryptoError (no detail) when the tag does not authenticate."""
    k = _key_bytes(key, AES256_KEY_SIZE, "AES-256-GCM key")
    if len(iv) != GCM_IV_SIZE or len(tag) != GCM_TAG_SIZE:
        raise CryptoError("GCM IV must be 12 bytes and the tag 16 bytes")
    try:
        return AESGCM(k).decrypt(bytes(iv), bytes(ciphertext) + bytes(tag), bytes(aad))
    except InvalidTag:
        raise CryptoError("authentication failed") from None


def wrap_key(kek: Secret, key: Secret) -> tuple[bytes, bytes]:
    """Wrap a 32-byte protection key for a key slot: ``(wrpk, kst)`` (spec 8.6, IV = 12 zero bytes)."""
    return aes_gcm_seal(kek, bytes(GCM_IV_SIZE), b"", _key_bytes(key, AES256_KEY_SIZE, "protection key"))


def unwrap_key(kek: Secret, wrpk: bytes, kst: bytes) -> Secret:
    """Unwrap a key slot's protection key; CryptoError when the key-slot tag does not authenticate."""
    return Secret(aes_gcm_open(kek, bytes(GCM_IV_SIZE), b"", wrpk, kst), "protection key")


def _xts(key: Secret | bytes, tweak: bytes, data: bytes, encrypt: bool) -> bytes:
    k = _key_bytes(key, XTS_KEY_SIZE, "AES-256-XTS key")
    if len(tweak) != 16:
        raise CryptoError("XTS tweak must be 16 bytes")
    if len(data) < 16:
        raise CryptoError("XTS data must be at least 16 bytes")
    try:
        cipher = Cipher(algorithms.AES(k), modes.XTS(bytes(tweak)))
    except ValueError:  # key1 == key2 is refused by OpenSSL (IEEE 1619 weak-key rule)
        raise CryptoError("invalid AES-256-XTS key (both halves equal)") from None
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(bytes(data)) + ctx.finalize()


def aes_xts_encrypt(key: Secret | bytes, tweak: bytes, plaintext: bytes) -> bytes:
    """AES-256-XTS encryption of one data unit (a 4 KiB page) with a 16-byte tweak."""
    return _xts(key, tweak, plaintext, True)


def aes_xts_decrypt(key: Secret | bytes, tweak: bytes, ciphertext: bytes) -> bytes:
    """AES-256-XTS decryption of one data unit with a 16-byte tweak."""
    return _xts(key, tweak, ciphertext, False)


# ------------------------------------------------------------------------- XTS through libcrypto's EVP


@functools.cache
def _libcrypto() -> Any:
    """OpenSSL's libcrypto with the EVP cipher functions typed, or None where it cannot be loaded."""
    path = ctypes.util.find_library("crypto")
    if path is None:
        return None
    try:
        lib = ctypes.PyDLL(path)  # the GIL stays held: a call lasts about a microsecond
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = (ctypes.c_void_p,)
        lib.EVP_CIPHER_CTX_free.restype = None
        lib.EVP_aes_256_xts.restype = ctypes.c_void_p
        lib.EVP_CipherInit_ex.restype = ctypes.c_int
        lib.EVP_CipherUpdate.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


class EvpXts:
    """AES-256-XTS of many data units under one key, through libcrypto's EVP interface: one context per
    direction, keyed once; each unit only sets its 16-byte tweak (``EVP_CipherInit_ex`` keeps the key) and
    runs one update. ~1.2 us per 4 KiB page, against ~1.7 us through ``cryptography``'s binding, whose
    context per unit costs four ABC ``isinstance`` checks and two property reads in Python. Not for
    concurrent use. Made by :func:`evp_xts`; callers compare it with ``cryptography`` before trusting it
    (``uv_storage.XtsKey``). The contexts are freed (and cleansed by OpenSSL) with the object.
    """

    __slots__ = ("_init", "_update", "_enc", "_dec", "_out", "_outl", "_outl_ref", "__weakref__")

    def __init__(self, lib: Any, key: bytes) -> None:
        self._init, self._update = lib.EVP_CipherInit_ex, lib.EVP_CipherUpdate
        cipher = ctypes.c_void_p(lib.EVP_aes_256_xts())
        ctxs = []
        for enc in (1, 0):
            ctx = lib.EVP_CIPHER_CTX_new()
            if not ctx:
                raise CryptoError("libcrypto: no cipher context")
            weakref.finalize(self, lib.EVP_CIPHER_CTX_free, ctx)
            if self._init(ctypes.c_void_p(ctx), cipher, None, bytes(key), bytes(16), enc) != 1:
                raise CryptoError("invalid AES-256-XTS key")  # OpenSSL refuses equal halves
            ctxs.append(ctypes.c_void_p(ctx))
        self._enc, self._dec = ctxs
        self._out = ctypes.create_string_buffer(4096)
        self._outl = ctypes.c_int()
        self._outl_ref = ctypes.byref(self._outl)

    def _run(self, ctx: ctypes.c_void_p, tweak: bytes, data: bytes | bytearray | memoryview) -> bytes:
        if len(tweak) != 16:
            raise CryptoError("XTS tweak must be 16 bytes")
        n = len(data)
        if n < 16:
            raise CryptoError("XTS data must be at least 16 bytes")
        out = self._out if n <= len(self._out) else ctypes.create_string_buffer(n)
        if (
            self._init(ctx, None, None, None, tweak, -1) != 1
            or self._update(ctx, out, self._outl_ref, bytes(data), n) != 1
            or self._outl.value != n
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")
        return out.raw[:n]

    # ``encrypt`` and ``decrypt`` run a 4 KiB page with its 16-byte tweak inline (the Ultravisor's
    # every export, import and Unpack) and leave every other unit to ``_run``'s checks.

    def encrypt(self, tweak: bytes, data: bytes | bytearray | memoryview) -> bytes:
        """One data unit encrypted with the 16-byte ``tweak``."""
        if len(data) != 4096 or len(tweak) != 16:
            return self._run(self._enc, tweak, data)
        out = self._out
        if type(data) is not bytes:
            data = bytes(data)
        if (
            self._init(self._enc, None, None, None, tweak, -1) != 1
            or self._update(self._enc, out, self._outl_ref, data, 4096) != 1
            or self._outl.value != 4096
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")
        return out.raw

    def decrypt(self, tweak: bytes, data: bytes | bytearray | memoryview) -> bytes:
        """One data unit decrypted with the 16-byte ``tweak``."""
        if len(data) != 4096 or len(tweak) != 16:
            return self._run(self._dec, tweak, data)
        out = self._out
        if type(data) is not bytes:
            data = bytes(data)
        if (
            self._init(self._dec, None, None, None, tweak, -1) != 1
            or self._update(self._dec, out, self._outl_ref, data, 4096) != 1
            or self._outl.value != 4096
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")
        return out.raw

    def encrypt_at(self, tweak: bytes, address: int) -> None:
        """Encrypt the 4 KiB page at process ``address`` in place (an exported page in storage: no copy out
        and back). The caller owns the page and tells whoever watches storage that it changed."""
        if len(tweak) != 16:
            raise CryptoError("XTS tweak must be 16 bytes")
        page = ctypes.c_void_p(address)
        if (
            self._init(self._enc, None, None, None, tweak, -1) != 1
            or self._update(self._enc, page, self._outl_ref, page, 4096) != 1
            or self._outl.value != 4096
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")

    def decrypt_into(self, tweak: bytes, data: bytes, address: int) -> None:
        """Decrypt the 4 KiB unit ``data`` to the page at process ``address`` (an imported page: checked
        ciphertext to storage, no intermediate copy). The caller owns the page and tells whoever watches
        storage that it changed."""
        if len(tweak) != 16 or len(data) != 4096 or type(data) is not bytes:
            raise CryptoError("XTS needs a 16-byte tweak and a 4 KiB unit of bytes")
        if (
            self._init(self._dec, None, None, None, tweak, -1) != 1
            or self._update(self._dec, ctypes.c_void_p(address), self._outl_ref, data, 4096) != 1
            or self._outl.value != 4096
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")

    def decrypt_at(self, tweak: bytes, address: int) -> None:
        """Decrypt the 4 KiB page at process ``address`` in place (an Unpack page in storage: no copy out
        and back). The caller owns the page and tells whoever watches storage that it changed."""
        if len(tweak) != 16:
            raise CryptoError("XTS tweak must be 16 bytes")
        page = ctypes.c_void_p(address)
        if (
            self._init(self._dec, None, None, None, tweak, -1) != 1
            or self._update(self._dec, page, self._outl_ref, page, 4096) != 1
            or self._outl.value != 4096
        ):
            raise CryptoError("libcrypto AES-256-XTS failed")


def evp_xts(key: bytes) -> EvpXts | None:
    """An :class:`EvpXts` for the 64-byte ``key``, or None where libcrypto is missing or refuses it."""
    lib = _libcrypto()
    if lib is None or len(key) != XTS_KEY_SIZE:
        return None
    try:
        return EvpXts(lib, key)
    except (CryptoError, AttributeError, OSError):
        return None


# --------------------------------------------------------------------------------------------- PEM


def private_key_to_pem(key: EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (emulated machines' keys are committed on purpose)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_pem(data: bytes) -> EllipticCurvePrivateKey:
    """Load an unencrypted P-521 private key from PEM (text before the PEM block is ignored)."""
    start = data.find(b"-----BEGIN")
    try:
        key = serialization.load_pem_private_key(data[max(start, 0):], password=None)
    except (ValueError, TypeError):
        raise CryptoError("not an unencrypted PEM private key") from None
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP521R1):
        raise CryptoError("host keys must be EC P-521 keys")
    return key


def public_key_to_pem(key: EllipticCurvePrivateKey | EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the public half."""
    return _as_public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(data: bytes) -> EllipticCurvePublicKey:
    """Load a P-521 public key from SubjectPublicKeyInfo PEM."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise CryptoError("not a PEM public key") from None
    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP521R1):
        raise CryptoError("host keys must be EC P-521 keys")
    return key


def certificate_public_key(data: bytes) -> EllipticCurvePublicKey:
    """The P-521 public key of an X.509 certificate (PEM or DER), e.g. a host-key document."""
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError:
        raise CryptoError("not an X.509 certificate") from None
    key = cert.public_key()
    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP521R1):
        raise CryptoError("the certificate's key is not an EC P-521 key")
    return key

"""Add-secret requests (spec 10): the ASRCB, secret types and headers, building, parsing and opening."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from firmware.crypto import (
    EC_PUB_SIZE,
    GCM_IV_SIZE,
    GCM_TAG_SIZE,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    aes_gcm_open,
    aes_gcm_seal,
    constant_time_eq,
    ec_pub_to_coords,
    generate_p521_key,
    hkdf_sha512,
    sha256,
)
from firmware.se_header import KeySlot, msb0
from firmware.uv_request import (
    ASRCB_MAGIC,
    CUID_SIZE,
    PROTECTION_KEY_SIZE,
    REQUEST_VERSION_V1,
    BootHdrTags,
    BuiltRequest,
    RequestFormatError,
    RequestHeader,
    _key_slots,
)

# ------------------------------------------------------------------------------------------------ ASRCB

ASRCB_FLAG_DISABLE_DUMP: Final = msb0(0)
ASRCB_FLAGS_SUPPORTED: Final = ASRCB_FLAG_DISABLE_DUMP
ASRCB_USER_DATA_SIZE: Final = 512
ASRCB_TAGS_OFFSET: Final = 0x038
ASRCB_CUID_OFFSET: Final = 0x108
ASRCB_USER_DATA_OFFSET: Final = 0x218
ASRCB_CUST_KEY_OFFSET: Final = 0x418
ASRCB_SLOTS_OFFSET: Final = 0x4B8
EXT_SECRET_SIZE: Final = 32
EXT_SECRET_INFO: Final = b"IBM Z Ultravisor Add-Secret"
#: user-data types of the magic's last two bytes: none, unsigned, ECDSA P-521, RSA-2048, RSA-3072 signed
ASRCB_USER_DATA_TYPES: Final = (0, 1, 2, 3, 4)
MAX_PLAINTEXT: Final = 8190


@dataclass(frozen=True)
class SecretType:
    """One secret type (spec 10.3): code, name, allowed value lengths, whether List / Retrieve show it."""

    code: int
    name: str
    lengths: tuple[int, ...]  # empty: any multiple of 16 up to 8192 (plaintext)
    listable: bool
    retrievable: bool

    def length_ok(self, n: int) -> bool:
        """True if a secret value of n bytes is valid for the type."""
        if self.code == 0x03:
            return 16 <= n <= MAX_PLAINTEXT + 2 and n % 16 == 0
        return n in self.lengths


SECRET_TYPES: Final[dict[int, SecretType]] = {
    t.code: t
    for t in (
        SecretType(0x01, "null", (0,), False, False),
        SecretType(0x02, "association", (32,), True, False),
        SecretType(0x03, "plaintext", (), True, True),
        SecretType(0x04, "aes-128", (16,), True, True),
        SecretType(0x05, "aes-192", (24,), True, True),
        SecretType(0x06, "aes-256", (32,), True, True),
        SecretType(0x07, "aes-xts-128", (32,), True, True),
        SecretType(0x08, "aes-xts-256", (64,), True, True),
        SecretType(0x09, "hmac-sha-256", (64,), True, True),
        SecretType(0x0A, "hmac-sha-512", (128,), True, True),
        SecretType(0x11, "ecdsa-p256", (32,), True, True),
        SecretType(0x12, "ecdsa-p384", (48,), True, True),
        SecretType(0x13, "ecdsa-p521", (80,), True, True),
        SecretType(0x14, "eddsa-ed25519", (32,), True, True),
        SecretType(0x15, "eddsa-ed448", (64,), True, True),
        SecretType(0x16, "update-cck", (32,), False, False),
    )
}
SECRET_TYPE_NULL: Final = 0x01
SECRET_TYPE_UPDATE_CCK: Final = 0x16


@dataclass(frozen=True)
class SecretHeader:
    """An ASRCB's authenticated secret header: type, length and (listable, update-CCK) a 32-byte field."""

    res0: int  # u16
    type: int  # u16
    length: int  # u32 secret value length
    res8: int  # u64
    id: bytes | None  # 32 (secret ID, or reserved for update-CCK); None for the null type

    @property
    def size(self) -> int:
        """0x10 for the null secret, 0x30 otherwise."""
        return 0x10 if self.id is None else 0x30

    def pack(self) -> bytes:
        """The header bytes."""
        return struct.pack(">HHIQ", self.res0, self.type, self.length, self.res8) + (self.id or b"")

    @staticmethod
    def size_for(stype: int) -> int:
        """Header size of a secret type."""
        return 0x10 if stype == SECRET_TYPE_NULL else 0x30

    @classmethod
    def parse(cls, data: bytes, offset: int) -> SecretHeader:
        """Parse at offset (the type decides the size)."""
        res0, stype, length, res8 = struct.unpack_from(">HHIQ", data, offset)
        sid = None if stype == SECRET_TYPE_NULL else bytes(data[offset + 0x10 : offset + 0x30])
        return cls(res0, stype, length, res8, sid)


def secret_id(name: str, hashed: bool = True) -> bytes:
    """The 32-byte secret ID: SHA-256 of the name, or (``hashed=False``, ``pvsecret --use-name``) the
    name's first 31 bytes zero-padded, so that it always ends in a NUL (s390-tools' ``SecretId``)."""
    raw = name.encode()
    if hashed:
        return sha256(raw)
    return raw[:31].ljust(32, b"\0")


def plaintext_secret(data: bytes) -> bytes:
    """Plaintext secret value: u16 length || data, zero-padded to a multiple of 16 (spec 10.3)."""
    if len(data) > MAX_PLAINTEXT:
        raise RequestFormatError(f"a plaintext secret has at most {MAX_PLAINTEXT} bytes")
    raw = struct.pack(">H", len(data)) + bytes(data)
    return raw + bytes(-len(raw) % 16)


def plaintext_from_secret(value: bytes) -> bytes:
    """The data of a retrieved plaintext secret."""
    if len(value) < 2:
        raise RequestFormatError("plaintext secret too short")
    n = struct.unpack_from(">H", value, 0)[0]
    if n + 2 > len(value):
        raise RequestFormatError("plaintext secret length field beyond the value")
    return bytes(value[2 : 2 + n])


def extension_secret_from_cck(cck: Secret | bytes, header_tag: bytes) -> Secret:
    """``HKDF-SHA512(IKM = CCK, salt = header tag, info = "IBM Z Ultravisor Add-Secret", L = 32)`` (10.4)."""
    return hkdf_sha512(cck, bytes(header_tag), EXT_SECRET_INFO, EXT_SECRET_SIZE)


def asrcb_size(nks: int, stype: int, secret_len: int) -> int:
    """``rql`` of an ASRCB v1."""
    head = ASRCB_SLOTS_OFFSET + KeySlot.SIZE * nks + SecretHeader.size_for(stype)
    return head + secret_len + EXT_SECRET_SIZE + GCM_TAG_SIZE


@dataclass(frozen=True)
class Asrcb:
    """A parsed (still sealed) ASRCB v1."""

    header: RequestHeader
    flags: int
    tags: BootHdrTags
    cuid: bytes
    user_data: bytes
    customer_pub: bytes
    key_slots: tuple[KeySlot, ...]
    secret_header: SecretHeader
    aad: bytes
    encrypted: bytes
    tag: bytes

    @property
    def user_data_type(self) -> int:
        """The magic's last two bytes."""
        return struct.unpack_from(">H", self.header.magic, 6)[0]


@dataclass(frozen=True)
class AsrcbSecrets:
    """The decrypted part of an ASRCB."""

    value: Secret
    extension_secret: Secret

    def __repr__(self) -> str:
        return f"AsrcbSecrets(value={len(self.value)} bytes)"


def build_asrcb(
    host_keys: Sequence[EllipticCurvePublicKey],
    tags: BootHdrTags,
    *,
    rng: Rng,
    secret_type: int = SECRET_TYPE_NULL,
    value: Secret | bytes = b"",
    secret_id: bytes | None = None,
    cuid: bytes | None = None,
    flags: int = 0,
    extension_secret: Secret | bytes | None = None,
    user_data: bytes = b"",
    protection_key: Secret | None = None,
    customer_key: EllipticCurvePrivateKey | None = None,
    iv: bytes | None = None,
    user_data_type: int | None = None,
    user_signer: Callable[[bytes], bytes] | None = None,
) -> BuiltRequest:
    """Build and seal an add-secret request (what ``pvsecret create`` does).

    Args:
        host_keys: the target machines' host keys (one key slot each).
        tags: PLD/ALD/TLD/tag of the target image.
        secret_type: a code of ``SECRET_TYPES``; ``value`` its value in the type's format (plaintext:
            :func:`plaintext_secret`); ``secret_id`` the 32-byte ID of listable types.
        cuid: bind to one guest instance (None: any instance of the image).
        flags: ASRCB flags (bit 0: disable dumping).
        extension_secret: 32 bytes (None: zeros), e.g. :func:`extension_secret_from_cck`.
        user_data: up to 512 bytes, unsigned (user-data type 1) when given.
        user_data_type, user_signer: signed user data (types 2-4): the signer gets the request without
            its tag (signature part of the user-data area zeroed) and returns the 512-byte area with the
            signature; the request is sealed again over it.

    Raises:
        RequestFormatError: unknown type, invalid length, missing ID, bad sizes.
    """
    st = SECRET_TYPES.get(secret_type)
    if st is None:
        raise RequestFormatError(f"unknown secret type {secret_type:#x}")
    raw = value.expose() if isinstance(value, Secret) else bytes(value)
    if not st.length_ok(len(raw)):
        raise RequestFormatError(f"a {st.name} secret cannot be {len(raw)} bytes")
    if secret_type == SECRET_TYPE_NULL:
        sid = None
    elif secret_type == SECRET_TYPE_UPDATE_CCK:
        sid = bytes(32)
    else:
        if secret_id is None or len(secret_id) != 32:
            raise RequestFormatError("a listable secret needs a 32-byte ID")
        sid = bytes(secret_id)
    if cuid is not None and len(cuid) != CUID_SIZE:
        raise RequestFormatError("the CUID is 16 bytes")
    if len(user_data) > ASRCB_USER_DATA_SIZE:
        raise RequestFormatError(f"user data has at most {ASRCB_USER_DATA_SIZE} bytes")
    if not 0 <= flags < 1 << 64:
        raise RequestFormatError("flags must fit in 64 bits")
    ext = (
        extension_secret.expose()
        if isinstance(extension_secret, Secret)
        else bytes(extension_secret or bytes(32))
    )
    if len(ext) != EXT_SECRET_SIZE:
        raise RequestFormatError("the extension secret is 32 bytes")
    if protection_key is None:
        protection_key = Secret(rng.random_bytes(PROTECTION_KEY_SIZE), "request protection key")
    if customer_key is None:
        customer_key = generate_p521_key(rng)
    if iv is None:
        iv = rng.random_bytes(GCM_IV_SIZE)
    slots = _key_slots(host_keys, customer_key, protection_key)
    sh = SecretHeader(0, secret_type, len(raw), 0, sid)
    if user_data_type is None:
        user_data_type = 1 if user_data else 0
    if user_data_type not in ASRCB_USER_DATA_TYPES or (user_signer is not None) != (user_data_type >= 2):
        raise RequestFormatError(
            f"user-data type {user_data_type} needs {'a' if user_data_type >= 2 else 'no'} signer"
        )
    magic = ASRCB_MAGIC + struct.pack(">H", user_data_type)
    rql = asrcb_size(len(slots), secret_type, len(raw))
    hdr = RequestHeader.new(magic, rql, bytes(iv), len(slots), len(raw) + EXT_SECRET_SIZE)
    aad = (
        hdr.pack()
        + struct.pack(">Q", flags)
        + tags.pack()
        + (bytes(cuid) if cuid is not None else bytes(CUID_SIZE))
        + bytes(256)
        + bytes(user_data).ljust(ASRCB_USER_DATA_SIZE, b"\0")
        + ec_pub_to_coords(customer_key)
        + b"".join(s.pack() for s in slots)
        + sh.pack()
    )
    ct, tag = aes_gcm_seal(protection_key, iv, aad, raw + ext)
    if user_signer is not None:  # the ciphertext does not depend on the AAD: sign, then seal again
        area = user_signer(aad + ct)
        if len(area) != ASRCB_USER_DATA_SIZE:
            raise RequestFormatError("the user-data signer must return the 512-byte area")
        aad = aad[:ASRCB_USER_DATA_OFFSET] + area + aad[ASRCB_USER_DATA_OFFSET + ASRCB_USER_DATA_SIZE:]
        ct, tag = aes_gcm_seal(protection_key, iv, aad, raw + ext)
    out = aad + ct + tag
    assert len(out) == hdr.rql
    return BuiltRequest(out, protection_key)


def parse_asrcb(data: bytes) -> Asrcb:
    """Parse an ASRCB v1 and check that its sizes add up (a tool's view; the UV has its own rc order).

    Raises:
        RequestFormatError: not an ASRCB, another version, or inconsistent sizes.
    """
    data = bytes(data)
    if len(data) < ASRCB_SLOTS_OFFSET:
        raise RequestFormatError(f"an add-secret request has at least {ASRCB_SLOTS_OFFSET} bytes")
    hdr = RequestHeader.parse(data)
    if hdr.magic[:6] != ASRCB_MAGIC:
        raise RequestFormatError("not an add-secret request (magic 'asrcbM')")
    if hdr.version != REQUEST_VERSION_V1:
        raise RequestFormatError(f"add-secret request version {hdr.version:#x} is not supported")
    if hdr.nks == 0:
        raise RequestFormatError("the add-secret request has no key slots")
    s_off = ASRCB_SLOTS_OFFSET + KeySlot.SIZE * hdr.nks
    if len(data) < s_off + 0x10:
        raise RequestFormatError("add-secret request truncated before its secret header")
    sh = SecretHeader.parse(data, s_off)
    if s_off + sh.size > len(data):
        raise RequestFormatError("add-secret request truncated in its secret header")
    if hdr.sea != sh.length + EXT_SECRET_SIZE:
        raise RequestFormatError(f"sea {hdr.sea} is not the secret length {sh.length} + 32")
    expect = s_off + sh.size + hdr.sea + GCM_TAG_SIZE
    if hdr.rql != expect or len(data) != expect:
        raise RequestFormatError(
            f"add-secret request length {len(data)} (rql {hdr.rql}) does not add up ({expect})"
        )
    e = s_off + sh.size
    return Asrcb(
        header=hdr,
        flags=struct.unpack_from(">Q", data, 0x30)[0],
        tags=BootHdrTags.parse(data, ASRCB_TAGS_OFFSET),
        cuid=data[ASRCB_CUID_OFFSET : ASRCB_CUID_OFFSET + CUID_SIZE],
        user_data=data[ASRCB_USER_DATA_OFFSET : ASRCB_USER_DATA_OFFSET + ASRCB_USER_DATA_SIZE],
        customer_pub=data[ASRCB_CUST_KEY_OFFSET : ASRCB_CUST_KEY_OFFSET + EC_PUB_SIZE],
        key_slots=tuple(KeySlot.parse(data, ASRCB_SLOTS_OFFSET + KeySlot.SIZE * i) for i in range(hdr.nks)),
        secret_header=sh,
        aad=data[:e],
        encrypted=data[e : e + hdr.sea],
        tag=data[e + hdr.sea :],
    )


def open_asrcb(asrcb: Asrcb, key: Secret) -> AsrcbSecrets:
    """Decrypt with the request protection key; CryptoError if it does not authenticate."""
    plain = aes_gcm_open(key, asrcb.header.iv, asrcb.aad, asrcb.encrypted, asrcb.tag)
    n = asrcb.secret_header.length
    return AsrcbSecrets(
        Secret(plain[:n], "secret"), Secret(plain[n : n + EXT_SECRET_SIZE], "extension secret")
    )


def same_secret(a: Secret | bytes, b: Secret | bytes) -> bool:
    """Constant-time equality of two secrets or byte strings."""
    ra = a.expose() if isinstance(a, Secret) else bytes(a)
    rb = b.expose() if isinstance(b, Secret) else bytes(b)
    return constant_time_eq(ra, rb)


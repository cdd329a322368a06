"""Attestation and add-secret request formats (spec 9, 10): ARCB, ASRCB, measurement, exchange file.

The measurement formula and the pvattest exchange file are shared by the Ultravisor and the tools.

Every record is big-endian and fixed-layout (``struct`` formats with named fields). Offsets::

    common request header (48 bytes, ARCB and ASRCB)
      0x00 magic 8 (ARCB: 8 zero bytes; ASRCB: "asrcbM" || u16 user-data type)
      0x08 u32 version 0x0100   0x0C u32 rql   0x10 iv 12   0x1C res 4   0x20 res 7   0x27 u8 nks
      0x28 res 4                0x2C u32 sea

    ARCB v1                                         ASRCB v1
      0x30 u64 paf  0x38 u32 mai  0x3C res            0x030 u64 flags   0x038 PLD/ALD/TLD/tag (208)
      0x40 customer P-521 key X||Y (160)              0x108 CUID 16     0x118 res 256   0x218 user data 512
      0xE0 key slots (80 * nks)                       0x418 customer key (160)   0x4B8 key slots
      then encrypted: meas key 64 (|| nonce 16)       then secret header (0x10 / 0x30, authenticated)
      last 16: GCM tag                                then encrypted: secret || extension secret (32); tag

Cryptography (spec 8.6, the same for both requests): a random request protection key (ARPK) is wrapped
into one key slot per target host key with ``K = SHA-256(ECDH(customer, host) || 00000001)``,
``wrpk || kst = AES-256-GCM(K, IV = 0^12, AAD = "", ARPK)``; the request is
``AES-256-GCM(ARPK, iv, AAD = everything before the encrypted area, confidential part)``, its tag last.

Measurement (spec 9.4, :func:`measurement`)::

    HMAC-SHA512(meas_key, PLD || ALD || TLD || header tag || CUID || u16 user_len || 00 00 || u32 add_len ||
    user data || nonce (if paf bit 1) || add data)

Additional data (spec 9.2), in ascending flag order: image PHKH (32), attestation PHKH (32), secret-store
hash (64) = SHA-512(tags of the successful add-secret requests in order || locked byte), firmware state (320,
zuv's layout in :func:`firmware_state`).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from firmware.crypto import (
    EC_PUB_SIZE,
    GCM_IV_SIZE,
    GCM_TAG_SIZE,
    CryptoError,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    aes_gcm_open,
    aes_gcm_seal,
    constant_time_eq,
    ec_pub_from_coords,
    ec_pub_to_coords,
    generate_p521_key,
    hkdf_sha512,
    hmac_sha512,
    key_slot_kdf,
    phkh,
    sha256,
    sha512,
    unwrap_key,
    wrap_key,
)
from firmware.se_header import KeySlot, SeHeader, msb0

__all__ = [
    "RequestFormatError",
    "REQUEST_VERSION_V1",
    "ARCB_MAGIC",
    "ASRCB_MAGIC",
    "MAI_HMAC_SHA512",
    "MEASUREMENT_KEY_SIZE",
    "MEASUREMENT_SIZE",
    "NONCE_SIZE",
    "CUID_SIZE",
    "USER_DATA_MAX",
    "PAF_NONCE",
    "PAF_IMAGE_PHKH",
    "PAF_ATTEST_PHKH",
    "PAF_SECRET_STORE_HASH",
    "PAF_FIRMWARE_STATE",
    "PAF_SUPPORTED",
    "ADDITIONAL_ITEMS",
    "RequestHeader",
    "ArcbAuth",
    "BootHdrTags",
    "Arcb",
    "ArcbSecrets",
    "BuiltRequest",
    "additional_data_size",
    "split_additional_data",
    "arcb_size",
    "build_arcb",
    "parse_arcb",
    "open_arcb",
    "unwrap_request_key",
    "open_arcb_with_host_key",
    "measurement_items",
    "measurement",
    "secret_store_hash",
    "firmware_state",
    "FIRMWARE_STATE_SIZE",
    "EXCHANGE_MAGIC",
    "Exchange",
    "exchange_request",
    "exchange_response",
    "parse_exchange",
    "ASRCB_FLAG_DISABLE_DUMP",
    "ASRCB_FLAGS_SUPPORTED",
    "ASRCB_USER_DATA_SIZE",
    "ASRCB_SLOTS_OFFSET",
    "EXT_SECRET_SIZE",
    "EXT_SECRET_INFO",
    "SecretType",
    "SECRET_TYPES",
    "SecretHeader",
    "Asrcb",
    "AsrcbSecrets",
    "secret_id",
    "plaintext_secret",
    "plaintext_from_secret",
    "extension_secret_from_cck",
    "asrcb_size",
    "build_asrcb",
    "parse_asrcb",
    "open_asrcb",
    "same_secret",
    "SECRET_TYPE_NULL",
    "SECRET_TYPE_UPDATE_CCK",
]


class RequestFormatError(ValueError):
    """A request, exchange file or additional-data block is malformed (the message names the field)."""


REQUEST_VERSION_V1: Final = 0x00000100
ARCB_MAGIC: Final = bytes(8)
ASRCB_MAGIC: Final = b"asrcbM"
MAI_HMAC_SHA512: Final = 1
MEASUREMENT_KEY_SIZE: Final = 64
MEASUREMENT_SIZE: Final = 64
NONCE_SIZE: Final = 16
CUID_SIZE: Final = 16
USER_DATA_MAX: Final = 256
PROTECTION_KEY_SIZE: Final = 32
MAX_KEY_SLOTS: Final = 255  # nks is a byte

# Plaintext attestation flags (ARCB 0x30, Query supp_att_pflags), MSB0.
PAF_NONCE: Final = msb0(1)
PAF_IMAGE_PHKH: Final = msb0(2)
PAF_ATTEST_PHKH: Final = msb0(3)
PAF_SECRET_STORE_HASH: Final = msb0(4)
PAF_FIRMWARE_STATE: Final = msb0(5)
PAF_SUPPORTED: Final = (
    PAF_NONCE | PAF_IMAGE_PHKH | PAF_ATTEST_PHKH | PAF_SECRET_STORE_HASH | PAF_FIRMWARE_STATE
)
FIRMWARE_STATE_SIZE: Final = 320
#: (flag, name, size) of each additional-data item, in the order the UV writes them.
ADDITIONAL_ITEMS: Final[tuple[tuple[int, str, int], ...]] = (
    (PAF_IMAGE_PHKH, "image_phkh", 32),
    (PAF_ATTEST_PHKH, "attestation_phkh", 32),
    (PAF_SECRET_STORE_HASH, "secret_store_hash", 64),
    (PAF_FIRMWARE_STATE, "firmware_state", FIRMWARE_STATE_SIZE),
)


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class RequestHeader:
    """The 48-byte header common to ARCB and ASRCB (spec 9.2)."""

    magic: bytes  # 0x00 8
    version: int  # 0x08 u32
    rql: int  # 0x0C u32 request length incl. tag
    iv: bytes  # 0x10 12
    res1c: bytes  # 0x1C 4
    res20: bytes  # 0x20 7
    nks: int  # 0x27 u8
    res28: bytes  # 0x28 4
    sea: int  # 0x2C u32 size of the encrypted area

    FMT = ">8sII12s4s7sB4sI"
    SIZE = 0x30

    def pack(self) -> bytes:
        """The 48 bytes."""
        return struct.pack(self.FMT, *(getattr(self, f.name) for f in dataclasses.fields(self)))

    @classmethod
    def parse(cls, data: bytes) -> RequestHeader:
        """Parse the first 48 bytes (the caller checks the length)."""
        return cls(*struct.unpack_from(cls.FMT, data, 0))

    @classmethod
    def new(cls, magic: bytes, rql: int, iv: bytes, nks: int, sea: int) -> RequestHeader:
        """A version-1 header with zero reserved fields."""
        return cls(magic, REQUEST_VERSION_V1, rql, iv, bytes(4), bytes(7), nks, bytes(4), sea)


@dataclass(frozen=True)
class ArcbAuth:
    """ARCB bytes 0x30-0x3F: plaintext attestation flags and measurement algorithm."""

    paf: int  # 0x30 u64
    mai: int  # 0x38 u32
    res: int  # 0x3C u32

    FMT = ">QII"
    SIZE = 0x10

    def pack(self) -> bytes:
        """The 16 bytes."""
        return struct.pack(self.FMT, self.paf, self.mai, self.res)

    @classmethod
    def parse(cls, data: bytes, offset: int = RequestHeader.SIZE) -> ArcbAuth:
        """Parse 16 bytes at offset."""
        return cls(*struct.unpack_from(cls.FMT, data, offset))


for _rec in (RequestHeader, ArcbAuth):
    assert struct.calcsize(_rec.FMT) == _rec.SIZE, _rec.__name__


@dataclass(frozen=True)
class BootHdrTags:
    """PLD, ALD, TLD and the SE-header tag of one image (208 bytes): what attestation and secrets bind to."""

    pld: bytes
    ald: bytes
    tld: bytes
    tag: bytes

    FMT = ">64s64s64s16s"
    SIZE = 208

    def pack(self) -> bytes:
        """PLD || ALD || TLD || tag."""
        return struct.pack(self.FMT, self.pld, self.ald, self.tld, self.tag)

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> BootHdrTags:
        """Parse 208 bytes at offset."""
        if len(data) < offset + cls.SIZE:
            raise RequestFormatError(f"image tags need {cls.SIZE} bytes")
        return cls(*struct.unpack_from(cls.FMT, data, offset))

    @classmethod
    def from_header(cls, header: bytes | SeHeader) -> BootHdrTags:
        """The tags of an SE header (plaintext fields; no key needed)."""
        hdr = header if isinstance(header, SeHeader) else SeHeader.parse(bytes(header))
        return cls(hdr.head.pld, hdr.head.ald, hdr.head.tld, hdr.tag)

    def differences(self, other: BootHdrTags) -> list[str]:
        """Names of the fields that differ ("pld", "ald", "tld", "tag")."""
        return [n for n in ("pld", "ald", "tld", "tag") if getattr(self, n) != getattr(other, n)]


assert struct.calcsize(BootHdrTags.FMT) == BootHdrTags.SIZE


@dataclass(frozen=True)
class BuiltRequest:
    """A sealed request and what its creator keeps: the protection key (never published)."""

    data: bytes
    protection_key: Secret


def _key_slots(
    host_keys: Sequence[EllipticCurvePublicKey], customer_key: EllipticCurvePrivateKey, protection_key: Secret
) -> list[KeySlot]:
    if not host_keys:
        raise RequestFormatError("at least one host key is needed")
    if len(host_keys) > MAX_KEY_SLOTS:
        raise RequestFormatError(f"at most {MAX_KEY_SLOTS} host keys fit into a request")
    hashes = [phkh(k) for k in host_keys]
    if len(set(hashes)) != len(hashes):
        raise RequestFormatError("the same host key is given more than once")
    slots = []
    for key, h in zip(host_keys, hashes):
        wrpk, kst = wrap_key(key_slot_kdf(customer_key, key), protection_key)
        slots.append(KeySlot(h, wrpk, kst))
    return slots


def unwrap_request_key(
    slots: Sequence[KeySlot], customer_pub: bytes, host_keys: Sequence[EllipticCurvePrivateKey]
) -> tuple[Secret, bytes] | None:
    """The UV's unwrap: the protection key and the PHKH of the host key that opened a slot, or None.

    Host keys are tried in order (installed key first); a slot whose hash matches but whose tag does not
    authenticate, and an invalid customer key, count as "cannot decrypt" (None) like a missing slot.
    """
    try:
        cust = ec_pub_from_coords(customer_pub)
    except CryptoError:
        return None
    for key in host_keys:
        h = phkh(key)
        for slot in slots:
            if slot.phkh != h:
                continue
            try:
                return unwrap_key(key_slot_kdf(key, cust), slot.wrpk, slot.kst), h
            except CryptoError:
                continue
    return None


# ------------------------------------------------------------------------------------------------ ARCB


def additional_data_size(paf: int) -> int:
    """Bytes of additional data the flags ask for (spec 9.2)."""
    return sum(size for flag, _, size in ADDITIONAL_ITEMS if paf & flag)


def split_additional_data(paf: int, data: bytes) -> dict[str, bytes]:
    """The named items of an additional-data block; extra bytes go to "unrecognized".

    Raises:
        RequestFormatError: the block is shorter than the flags require.
    """
    out: dict[str, bytes] = {}
    off = 0
    for flag, name, size in ADDITIONAL_ITEMS:
        if paf & flag:
            if off + size > len(data):
                raise RequestFormatError(f"additional data too short for {name}")
            out[name] = bytes(data[off : off + size])
            off += size
    if off < len(data):
        out["unrecognized"] = bytes(data[off:])
    return out


def arcb_size(nks: int, nonce: bool = True) -> int:
    """``rql`` of an ARCB v1: 0xE0 + 80 * nks + 64 (+ 16 with a nonce) + 16."""
    return 0xE0 + KeySlot.SIZE * nks + MEASUREMENT_KEY_SIZE + (NONCE_SIZE if nonce else 0) + GCM_TAG_SIZE


@dataclass(frozen=True)
class Arcb:
    """A parsed (still sealed) ARCB v1."""

    header: RequestHeader
    auth: ArcbAuth
    customer_pub: bytes
    key_slots: tuple[KeySlot, ...]
    encrypted: bytes
    tag: bytes

    @property
    def aad(self) -> bytes:
        """The authenticated bytes: everything before the encrypted area."""
        return (
            self.header.pack()
            + self.auth.pack()
            + self.customer_pub
            + b"".join(s.pack() for s in self.key_slots)
        )

    @property
    def paf(self) -> int:
        """Plaintext attestation flags."""
        return self.auth.paf

    def pack(self) -> bytes:
        """The request bytes."""
        return self.aad + self.encrypted + self.tag


@dataclass(frozen=True)
class ArcbSecrets:
    """What the creator (or the UV) recovers from an ARCB: flags, algorithm, measurement key, nonce."""

    paf: int
    mai: int
    measurement_key: Secret
    nonce: bytes | None

    def __repr__(self) -> str:
        return f"ArcbSecrets(paf={self.paf:#x}, mai={self.mai}, nonce={'yes' if self.nonce else 'no'})"


def build_arcb(
    host_keys: Sequence[EllipticCurvePublicKey],
    *,
    rng: Rng,
    paf: int = PAF_NONCE,
    mai: int = MAI_HMAC_SHA512,
    measurement_key: Secret | None = None,
    nonce: bytes | None = None,
    protection_key: Secret | None = None,
    customer_key: EllipticCurvePrivateKey | None = None,
    iv: bytes | None = None,
) -> BuiltRequest:
    """Build and seal an ARCB v1 (what ``pvattest create`` does).

    A nonce is part of the request iff ``paf`` has bit 1; it is drawn from ``rng`` unless given.

    Raises:
        RequestFormatError: no or duplicate host keys, a nonce without bit 1, wrong sizes.
    """
    with_nonce = bool(paf & PAF_NONCE)
    if nonce is not None and not with_nonce:
        raise RequestFormatError("a nonce needs plaintext attestation flag bit 1")
    if not 0 <= paf < 1 << 64 or not 0 <= mai < 1 << 32:
        raise RequestFormatError("paf must fit in 64 bits and mai in 32")
    if measurement_key is None:
        measurement_key = Secret(rng.random_bytes(MEASUREMENT_KEY_SIZE), "measurement key")
    if len(measurement_key) != MEASUREMENT_KEY_SIZE:
        raise RequestFormatError("the measurement key must be 64 bytes")
    if with_nonce and nonce is None:
        nonce = rng.random_bytes(NONCE_SIZE)
    if nonce is not None and len(nonce) != NONCE_SIZE:
        raise RequestFormatError("the nonce must be 16 bytes")
    if protection_key is None:
        protection_key = Secret(rng.random_bytes(PROTECTION_KEY_SIZE), "ARPK")
    if len(protection_key) != PROTECTION_KEY_SIZE:
        raise RequestFormatError("the request protection key must be 32 bytes")
    if customer_key is None:
        customer_key = generate_p521_key(rng)
    if iv is None:
        iv = rng.random_bytes(GCM_IV_SIZE)
    slots = _key_slots(host_keys, customer_key, protection_key)
    sea = MEASUREMENT_KEY_SIZE + (NONCE_SIZE if with_nonce else 0)
    hdr = RequestHeader.new(ARCB_MAGIC, arcb_size(len(slots), with_nonce), bytes(iv), len(slots), sea)
    aad = (
        hdr.pack() + ArcbAuth(paf, mai, 0).pack() + ec_pub_to_coords(customer_key)
        + b"".join(s.pack() for s in slots)
    )  # fmt: skip
    ct, tag = aes_gcm_seal(protection_key, iv, aad, measurement_key.expose() + (nonce or b""))
    out = aad + ct + tag
    assert len(out) == hdr.rql
    return BuiltRequest(out, protection_key)


def parse_arcb(data: bytes) -> Arcb:
    """Parse an ARCB v1 and check that its sizes add up.

    Raises:
        RequestFormatError: not an ARCB, another version, or inconsistent nks/sea/rql.
    """
    data = bytes(data)
    if len(data) < 0x40:
        raise RequestFormatError(f"an ARCB has at least 64 bytes, this has {len(data)}")
    hdr = RequestHeader.parse(data)
    if hdr.magic != ARCB_MAGIC:
        raise RequestFormatError("not an attestation request (the ARCB magic is 8 zero bytes)")
    if hdr.version != REQUEST_VERSION_V1:
        raise RequestFormatError(f"ARCB version {hdr.version:#x} is not supported")
    if hdr.nks == 0:
        raise RequestFormatError("the ARCB has no key slots")
    if hdr.sea not in (MEASUREMENT_KEY_SIZE, MEASUREMENT_KEY_SIZE + NONCE_SIZE):
        raise RequestFormatError(f"ARCB encrypted area of {hdr.sea} bytes is invalid")
    expect = 0xE0 + KeySlot.SIZE * hdr.nks + hdr.sea + GCM_TAG_SIZE
    if hdr.rql != expect or len(data) != expect:
        raise RequestFormatError(f"ARCB length {len(data)} (rql {hdr.rql}) does not match nks/sea ({expect})")
    auth = ArcbAuth.parse(data)
    slots = tuple(KeySlot.parse(data, 0xE0 + KeySlot.SIZE * i) for i in range(hdr.nks))
    enc = 0xE0 + KeySlot.SIZE * hdr.nks
    return Arcb(
        hdr, auth, data[0x40 : 0x40 + EC_PUB_SIZE], slots, data[enc : enc + hdr.sea], data[enc + hdr.sea :]
    )


def _open_arcb(arcb: Arcb, key: Secret) -> ArcbSecrets:
    plain = aes_gcm_open(key, arcb.header.iv, arcb.aad, arcb.encrypted, arcb.tag)
    nonce = plain[MEASUREMENT_KEY_SIZE:] if len(plain) > MEASUREMENT_KEY_SIZE else None
    return ArcbSecrets(
        arcb.auth.paf, arcb.auth.mai, Secret(plain[:MEASUREMENT_KEY_SIZE], "measurement key"), nonce
    )


def open_arcb(data: bytes | Arcb, protection_key: Secret) -> ArcbSecrets:
    """Decrypt an ARCB with its protection key (``pvattest verify``'s first step).

    Raises:
        RequestFormatError: malformed request, or ``mai`` not HMAC-SHA512.
        CryptoError: the key does not open it (wrong ARPK or modified request).
    """
    arcb = data if isinstance(data, Arcb) else parse_arcb(data)
    if arcb.auth.mai != MAI_HMAC_SHA512:
        raise RequestFormatError(f"measurement algorithm {arcb.auth.mai} is not supported")
    return _open_arcb(arcb, protection_key)


def open_arcb_with_host_key(
    arcb: Arcb, host_keys: Sequence[EllipticCurvePrivateKey]
) -> tuple[ArcbSecrets, bytes] | None:
    """The UV's decryption: (secrets, PHKH of the host key used), or None if no host key opens it."""
    got = unwrap_request_key(arcb.key_slots, arcb.customer_pub, host_keys)
    if got is None:
        return None
    key, h = got
    try:
        return _open_arcb(arcb, key), h
    except CryptoError:
        return None


# ------------------------------------------------------------------------------------------------ measurement


def measurement_items(
    tags: BootHdrTags,
    cuid: bytes,
    user_data: bytes = b"",
    nonce: bytes | None = None,
    additional: bytes = b"",
) -> bytes:
    """The bytes the measurement authenticates, exactly as spec 9.4 lays them out."""
    if len(cuid) != CUID_SIZE:
        raise RequestFormatError("the configuration unique ID is 16 bytes")
    if len(user_data) > USER_DATA_MAX:
        raise RequestFormatError(f"user data has at most {USER_DATA_MAX} bytes")
    if nonce is not None and len(nonce) != NONCE_SIZE:
        raise RequestFormatError("the nonce is 16 bytes")
    return (
        tags.pack()
        + bytes(cuid)
        + struct.pack(">HHI", len(user_data), 0, len(additional))
        + bytes(user_data)
        + (bytes(nonce) if nonce is not None else b"")
        + bytes(additional)
    )


def measurement(
    key: Secret | bytes,
    tags: BootHdrTags,
    cuid: bytes,
    user_data: bytes = b"",
    nonce: bytes | None = None,
    additional: bytes = b"",
) -> bytes:
    """The attestation measurement: HMAC-SHA512 over :func:`measurement_items` (64 bytes)."""
    k = key.expose() if isinstance(key, Secret) else bytes(key)
    if len(k) != MEASUREMENT_KEY_SIZE:
        raise RequestFormatError("the measurement key is 64 bytes")
    return hmac_sha512(k, measurement_items(tags, cuid, user_data, nonce, additional))


def secret_store_hash(request_tags: Iterable[bytes], locked: bool) -> bytes:
    """Additional-data item of paf bit 4: SHA-512(tags of the added requests, in order || locked byte)."""
    return sha512(b"".join(bytes(t) for t in request_tags) + bytes([1 if locked else 0]))


_FW_MAGIC: Final = b"zuvFWST1"


def firmware_state(firmware_digest: bytes, host_key_hashes: Sequence[bytes]) -> bytes:
    """zuv's 320-byte firmware state (paf bit 5; IBM's format is not public, spec 13.7).

    Layout: 0x00 magic "zuvFWST1", 0x08 u32 version 1, 0x0C u32 length 320, 0x10 SHA-512 of the
    Ultravisor's code, 0x50 installed host-key hash, 0x70 backup host-key hash (zero if none), rest zero.
    """
    if len(firmware_digest) != 64:
        raise RequestFormatError("the firmware digest is a SHA-512")
    hashes = list(host_key_hashes[:2]) + [bytes(32)] * (2 - min(2, len(host_key_hashes)))
    out = struct.pack(
        ">8sII64s32s32s", _FW_MAGIC, 1, FIRMWARE_STATE_SIZE, firmware_digest, hashes[0], hashes[1]
    )
    return out + bytes(FIRMWARE_STATE_SIZE - len(out))


# ---------------------------------------------------------------------------------------------- exchange file

EXCHANGE_MAGIC: Final = b"pvattest"
_EXCHANGE_HDR: Final = struct.Struct(">8sIIQ" + "II" * 5)
_EXCHANGE_LIMITS: Final = (
    ("arcb", 1 << 20), ("measurement", 8 * 4096), ("additional", 8 * 4096), ("user", 256), ("cuid", 16),
)  # fmt: skip
assert _EXCHANGE_HDR.size == 0x40


@dataclass(frozen=True)
class Exchange:
    """A pvattest exchange file (spec 9.6): a request (expected sizes only) or a response (data)."""

    arcb: bytes
    measurement: bytes | None = None
    additional: bytes | None = None
    user: bytes | None = None
    cuid: bytes | None = None
    exp_measurement: int = 0
    exp_additional: int = 0

    @property
    def is_response(self) -> bool:
        """True when it carries a measurement and a CUID."""
        return self.measurement is not None and self.cuid is not None


def exchange_request(
    arcb: bytes, measurement_size: int = MEASUREMENT_SIZE, additional_size: int = 0
) -> bytes:
    """A request file: the ARCB and the expected measurement / additional-data sizes (offset 0)."""
    if not 1 <= measurement_size <= 8 * 4096 or not 0 <= additional_size <= 8 * 4096:
        raise RequestFormatError("expected sizes out of range")
    size = _EXCHANGE_HDR.size + len(arcb)
    return _EXCHANGE_HDR.pack(
        EXCHANGE_MAGIC, 0x0100, size, 0, len(arcb), _EXCHANGE_HDR.size, measurement_size, 0,
        additional_size, 0, 0, 0, 0, 0,
    ) + bytes(arcb)  # fmt: skip


def exchange_response(
    arcb: bytes, measurement: bytes, additional: bytes | None, user: bytes | None, cuid: bytes
) -> bytes:
    """A response file: ARCB, measurement, additional data, user data and CUID, in that order."""
    entries = []
    off = _EXCHANGE_HDR.size
    blobs = (arcb, measurement, additional, user, cuid)
    for (name, limit), blob in zip(_EXCHANGE_LIMITS, blobs):
        if blob is None or (len(blob) == 0 and name in ("additional", "user")):
            entries += [0, 0]
            continue
        if len(blob) > limit:
            raise RequestFormatError(f"{name} of {len(blob)} bytes exceeds {limit}")
        entries += [len(blob), off]
        off += len(blob)
    head = _EXCHANGE_HDR.pack(EXCHANGE_MAGIC, 0x0100, off, 0, *entries)
    return head + b"".join(b for b in blobs if b)


def parse_exchange(data: bytes) -> Exchange:
    """Parse an exchange file (request or response).

    Raises:
        RequestFormatError: wrong magic/version, truncated, entries out of range, no ARCB.
    """
    data = bytes(data)
    if len(data) < _EXCHANGE_HDR.size:
        raise RequestFormatError("exchange file shorter than its 64-byte header")
    magic, version, size, _res, *ent = _EXCHANGE_HDR.unpack_from(data, 0)
    if magic != EXCHANGE_MAGIC:
        raise RequestFormatError("not a pvattest exchange file (magic 'pvattest')")
    if version != 0x0100:
        raise RequestFormatError(f"exchange format version {version:#x} is not supported")
    if len(data) < size:
        raise RequestFormatError(f"exchange file of {len(data)} bytes is shorter than its size {size}")
    values: dict[str, bytes | int | None] = {}
    for i, (name, limit) in enumerate(_EXCHANGE_LIMITS):
        length, off = ent[2 * i], ent[2 * i + 1]
        if length > limit:
            raise RequestFormatError(f"exchange entry {name} of {length} bytes exceeds {limit}")
        if length == 0:
            values[name] = None
        elif off == 0:
            values[name] = length  # expected size only
        elif off < _EXCHANGE_HDR.size or off + length > len(data):
            raise RequestFormatError(f"exchange entry {name} lies outside the file")
        else:
            values[name] = data[off : off + length]
    arcb = values["arcb"]
    if not isinstance(arcb, bytes):
        raise RequestFormatError("the exchange file contains no attestation request")
    meas, add = values["measurement"], values["additional"]
    user, cuid = values["user"], values["cuid"]
    if isinstance(user, int) or isinstance(cuid, int):
        raise RequestFormatError("user data and CUID entries must carry data")
    if cuid is not None and len(cuid) != CUID_SIZE:
        raise RequestFormatError("the CUID entry must be 16 bytes")
    return Exchange(
        arcb=arcb,
        measurement=meas if isinstance(meas, bytes) else None,
        additional=add if isinstance(add, bytes) else None,
        user=user,
        cuid=cuid,
        exp_measurement=meas if isinstance(meas, int) else len(meas or b""),
        exp_additional=add if isinstance(add, int) else len(add or b""),
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
    """The 32-byte secret ID: SHA-256 of the name, or (``hashed=False``) the name bytes zero-padded."""
    raw = name.encode()
    if hashed:
        return sha256(raw)
    if len(raw) > 32:
        raise RequestFormatError("an unhashed secret name has at most 32 bytes")
    return raw.ljust(32, b"\0")


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

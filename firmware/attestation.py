"""Attestation requests (spec 9): ARCB, measurement, additional data, exchange file; re-exports the ASRCB.

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

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from firmware.asrcb import (
    ASRCB_FLAG_DISABLE_DUMP,
    ASRCB_FLAGS_SUPPORTED,
    ASRCB_SLOTS_OFFSET,
    ASRCB_USER_DATA_SIZE,
    EXT_SECRET_INFO,
    EXT_SECRET_SIZE,
    SECRET_TYPE_NULL,
    SECRET_TYPE_UPDATE_CCK,
    SECRET_TYPES,
    Asrcb,
    AsrcbSecrets,
    SecretHeader,
    SecretType,
    asrcb_size,
    build_asrcb,
    extension_secret_from_cck,
    open_asrcb,
    parse_asrcb,
    plaintext_from_secret,
    plaintext_secret,
    same_secret,
    secret_id,
)
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
    ec_pub_to_coords,
    generate_p521_key,
    hmac_sha512,
    sha512,
)
from firmware.se_header import KeySlot
from firmware.uv_request import (
    ADDITIONAL_ITEMS,
    ARCB_MAGIC,
    ASRCB_MAGIC,
    CUID_SIZE,
    FIRMWARE_STATE_SIZE,
    MAI_HMAC_SHA512,
    MEASUREMENT_KEY_SIZE,
    MEASUREMENT_SIZE,
    NONCE_SIZE,
    PAF_ATTEST_PHKH,
    PAF_FIRMWARE_STATE,
    PAF_IMAGE_PHKH,
    PAF_NONCE,
    PAF_SECRET_STORE_HASH,
    PAF_SUPPORTED,
    PROTECTION_KEY_SIZE,
    REQUEST_VERSION_V1,
    USER_DATA_MAX,
    ArcbAuth,
    BootHdrTags,
    BuiltRequest,
    RequestFormatError,
    RequestHeader,
    _key_slots,
    unwrap_request_key,
)

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
        RequestFormatError: no host key, a nonce without bit 1, wrong sizes.
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

"""What ARCB and ASRCB share (spec 8.6, 9.2): request header, boot tags, key slots, errors, constants."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from firmware.crypto import (
    CryptoError,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    Secret,
    ec_pub_from_coords,
    key_slot_kdf,
    phkh,
    unwrap_key,
    wrap_key,
)
from firmware.se_header import KeySlot, SeHeader, msb0


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
    hashes = [phkh(k) for k in host_keys]  # a key given twice gets two slots, as s390-tools' requests
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


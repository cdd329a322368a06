"""Retrieve Attestation Measurement (UVC 0x1020) and zuv's signed evidence (UVC 0x1F20).

The checks run in the architected order; then the measurement, the additional data and the evidence's
signatures.

Retrieve Attestation Measurement (spec 9.3) checks, in this order (kvm-unit-tests s390x/pv-attest.c):

    0x0005 length (dispatcher)            0x0101 continuation token not 0      0x0102 user data > 256
    0x0103 ARCB header not accessible     0x0106 magic / version               0x0108 nks 0
    0x0109 sea != 64 (+16 with nonce)     0x0107 rql inconsistent              0x0103 ARCB body not accessible
    0x010A unsupported paf bit            0x010B unsupported mai               0x010D measurement area < 64
    0x010E additional area too small      0x010C no host key opens the ARCB    0x0104 / 0x0105 measurement /
    additional-data area not accessible (store)

The evidence command (zuv, not architected; ``docs/attestation.md``) takes the same ``uv_cb_attest`` with
two words of its reserved area: 0x168 ``evidence_addr`` (u64), 0x170 ``evidence_len`` (u32, in) and 0x174
``evidence_written`` (u32, out). It runs the checks above, plus 0x0110 "no attestation key on this
machine" first, 0x0111 "evidence area too small" after 0x010E and 0x0112 "evidence area not accessible"
last, and then writes the measurement and a statement of what was measured signed twice by the machine's
attestation keys (ECDSA P-521 / SHA-512 and ML-DSA-87), with both certificates.

Statement (big-endian, ``EVIDENCE_STATEMENT``)::

    0x000 magic "zuvATST1"  0x008 u32 version 1  0x00C u32 length  0x010 u64 paf  0x018 u32 mai
    0x01C u16 user_data_len 0x01E u16 nonce present (0/1)  0x020 u64 UV time (ns)  0x028 u32 add_len
    0x02C res  0x030 measurement 64  0x070 PLD 64  0x0B0 ALD 64  0x0F0 TLD 64  0x130 header tag 16
    0x140 CUID 16  0x150 nonce 16  0x160 image PHKH 32  0x180 attestation PHKH 32
    0x1A0 SHA-512(additional data) 64  0x1E0 user data

Evidence (``EVIDENCE_HEADER``)::

    0x00 magic "zuvEVID1"  0x08 u32 version 1  0x0C u32 total length  0x10 u32 statement length
    0x14 u32 ECDSA signature length  0x18 u32 ML-DSA signature length  0x1C u32 ECDSA cert length
    0x20 u32 ML-DSA cert length  0x24 res  0x28 statement || ECDSA sig (DER) || ML-DSA sig || certs (DER)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from emulator.errors import ProgramException
from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from firmware import attestation as A
from firmware.crypto import CryptoError, phkh, private_key_from_pem, sha512

if TYPE_CHECKING:
    from firmware.uv import ControlBlock, SecureConfig, Ultravisor
    from firmware.uv_blocks import UvCbAttest

__all__ = [
    "Inaccessible",
    "guest_pieces",
    "guest_read",
    "guest_write",
    "AttestationKeys",
    "AttestationKeyError",
    "ATT_KEY_FILES",
    "EvidenceStatement",
    "Evidence",
    "EVIDENCE_CONTEXT",
    "evidence_size",
    "image_tags",
    "firmware_digest",
    "retrieve",
    "RC_NO_ATT_KEY",
    "RC_EVIDENCE_SMALL",
    "RC_EVIDENCE_ACCESS",
]

RC_OK: Final = 0x0001
RC_INV_STATE: Final = 0x0003
RC_CONT_TOKEN: Final = 0x0101
RC_USER_DATA_LEN: Final = 0x0102
RC_ARCB_ACCESS: Final = 0x0103
RC_MEAS_ACCESS: Final = 0x0104
RC_ADD_ACCESS: Final = 0x0105
RC_VERSION: Final = 0x0106
RC_ARCB_LEN: Final = 0x0107
RC_NKS: Final = 0x0108
RC_SEA: Final = 0x0109
RC_PAF: Final = 0x010A
RC_MAI: Final = 0x010B
RC_UNSEAL: Final = 0x010C
RC_MEAS_LEN: Final = 0x010D
RC_ADD_LEN: Final = 0x010E
#: zuv's evidence command only
RC_NO_ATT_KEY: Final = 0x0110
RC_EVIDENCE_SMALL: Final = 0x0111
RC_EVIDENCE_ACCESS: Final = 0x0112
#: largest DER encoding of an ECDSA P-521 signature (two 67-byte INTEGERs in a SEQUENCE)
ECDSA_P521_SIG_MAX: Final = 141
MLDSA87_SIG_SIZE: Final = 4627
EVIDENCE_CONTEXT: Final = b"zuv attestation statement v1"


# ---------------------------------------------------------------------------------------------- guest storage


class Inaccessible(Exception):
    """A buffer named in a guest's UVCB cannot be accessed (the command answers with its own rc)."""


def guest_pieces(
    uv: Ultravisor, cb: ControlBlock, cfg: SecureConfig, vaddr: int, length: int, write: bool
) -> list[tuple[int, int]]:
    """Host-absolute pieces of a guest buffer named in a UVCB (home space as the guest's CPU translates).

    A block without ``translate`` (tests acting as the guest with DAT off) names guest absolute addresses.

    Raises:
        Inaccessible: a translation or addressing exception, or the range wraps.
        ProgramException: 0x3E / 0x3F, for the host to resolve first (the UVC runs again afterwards).
    """
    if vaddr < 0 or vaddr + length > 1 << 64:
        raise Inaccessible(f"buffer {vaddr:#x}+{length:#x} wraps")
    tr = getattr(cb, "translate", None)
    pieces: list[tuple[int, int]] = []
    v, left = vaddr, length
    while left > 0:
        n = min(left, PAGE_SIZE - (v & 0xFFF))
        try:
            if tr is not None:
                a = tr(v, write)
            else:
                a = (uv.guest_frame_check(cfg.handle, v, write) << PAGE_SHIFT) | (v & 0xFFF)
        except ProgramException as e:
            if e.code in (0x3E, 0x3F):
                raise
            raise Inaccessible(f"guest address {v:#x}: {e}") from None
        pieces.append((a, n))
        v, left = v + n, left - n
    return pieces


def guest_read(uv: Ultravisor, cb: ControlBlock, cfg: SecureConfig, vaddr: int, length: int) -> bytes:
    """Read a guest buffer (``Inaccessible`` when it cannot be read)."""
    return b"".join(uv.mem.read(a, n) for a, n in guest_pieces(uv, cb, cfg, vaddr, length, False))


def guest_write(uv: Ultravisor, pieces: list[tuple[int, int]], data: bytes) -> None:
    """Store data into pieces found by :func:`guest_pieces` (checked before anything is stored)."""
    off = 0
    for a, n in pieces:
        uv.mem.write(a, data[off : off + n])
        off += n


# ------------------------------------------------------------------------------------------------ keys

ATT_KEY_FILES: Final = {
    "ecdsa_key": "attestation-key-p521.pem",
    "ecdsa_cert": "attestation-key-p521.crt",
    "mldsa_key": "attestation-key-mldsa87.pem",
    "mldsa_cert": "attestation-key-mldsa87.crt",
}


class AttestationKeyError(Exception):
    """A machine's attestation-key files are missing, malformed or do not belong together."""


@dataclass(frozen=True, repr=False)
class AttestationKeys:
    """A machine's two attestation keys (EMULATION ONLY: a real machine has none; zuv's signed evidence)."""

    ecdsa_key: ec.EllipticCurvePrivateKey
    ecdsa_cert: bytes  # DER
    mldsa_key: mldsa.MLDSA87PrivateKey
    mldsa_cert: bytes  # DER

    def __repr__(self) -> str:
        return (
            f"AttestationKeys(ecdsa={len(self.ecdsa_cert)}-byte cert, mldsa={len(self.mldsa_cert)}-byte cert)"
        )

    @staticmethod
    def present(directory: str | Path) -> bool:
        """True if the machine directory holds attestation-key files."""
        return (Path(directory) / ATT_KEY_FILES["ecdsa_key"]).exists()

    @classmethod
    def load(cls, directory: str | Path) -> AttestationKeys:
        """Load the four files of a machine directory.

        Raises:
            AttestationKeyError: a file is missing or malformed, or a certificate is for another key.
        """
        from cryptography import x509

        d = Path(directory)
        try:
            raw = {k: (d / name).read_bytes() for k, name in ATT_KEY_FILES.items()}
        except OSError as exc:
            raise AttestationKeyError(f"{d}: cannot read {exc.filename}: {exc.strerror}") from None
        try:
            ecdsa_key = private_key_from_pem(raw["ecdsa_key"])
            start = raw["mldsa_key"].find(b"-----BEGIN")
            mkey = serialization.load_pem_private_key(raw["mldsa_key"][max(start, 0) :], password=None)
            certs = {k: x509.load_pem_x509_certificate(raw[k]) for k in ("ecdsa_cert", "mldsa_cert")}
        except (CryptoError, ValueError, TypeError) as exc:
            raise AttestationKeyError(f"{d}: malformed attestation-key file: {exc}") from None
        if not isinstance(mkey, mldsa.MLDSA87PrivateKey):
            raise AttestationKeyError(f"{d}: {ATT_KEY_FILES['mldsa_key']} is not an ML-DSA-87 key")
        der = serialization.Encoding.DER
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        for name, key in (("ecdsa_cert", ecdsa_key), ("mldsa_cert", mkey)):
            if certs[name].public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
                raise AttestationKeyError(f"{d}: {ATT_KEY_FILES[name]} is not the certificate of its key")
        return cls(
            ecdsa_key, certs["ecdsa_cert"].public_bytes(der), mkey, certs["mldsa_cert"].public_bytes(der)
        )

    @classmethod
    def bundled(cls, name: str = "zuv-demo") -> AttestationKeys:
        """The attestation keys of a bundled machine."""
        with resources.as_file(resources.files("firmware") / "machines" / name) as path:
            return cls.load(path)

    def sign(self, statement: bytes) -> tuple[bytes, bytes]:
        """(ECDSA P-521 / SHA-512 DER signature, ML-DSA-87 signature) of a statement.

        ECDSA is deterministic (RFC 6979); ML-DSA uses OpenSSL's hedged signing (FIPS 204), which
        ``cryptography`` does not let us seed.
        """
        sig1 = self.ecdsa_key.sign(statement, ec.ECDSA(hashes.SHA512(), deterministic_signing=True))
        sig2 = self.mldsa_key.sign(statement, EVIDENCE_CONTEXT)
        return sig1, sig2


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class EvidenceStatement:
    """What the Ultravisor signs: the measurement and everything it was computed over, except the key."""

    paf: int
    mai: int
    time_ns: int
    measurement: bytes
    tags: A.BootHdrTags
    cuid: bytes
    nonce: bytes | None
    image_phkh: bytes
    attestation_phkh: bytes
    additional_digest: bytes
    additional_len: int
    user_data: bytes

    MAGIC = b"zuvATST1"
    FMT = ">8sIIQIHHQII64s208s16s16s32s32s64s"
    FIXED = 0x1E0

    def pack(self) -> bytes:
        """The statement bytes."""
        return (
            struct.pack(
                self.FMT,
                self.MAGIC,
                1,
                self.FIXED + len(self.user_data),
                self.paf,
                self.mai,
                len(self.user_data),
                1 if self.nonce is not None else 0,
                self.time_ns,
                self.additional_len,
                0,
                self.measurement,
                self.tags.pack(),
                self.cuid,
                self.nonce or bytes(16),
                self.image_phkh,
                self.attestation_phkh,
                self.additional_digest,
            )
            + self.user_data
        )

    @classmethod
    def parse(cls, data: bytes) -> EvidenceStatement:
        """Parse a statement; RequestFormatError if it is malformed."""
        if len(data) < cls.FIXED:
            raise A.RequestFormatError("attestation statement truncated")
        (
            magic,
            version,
            length,
            paf,
            mai,
            ulen,
            has_nonce,
            t,
            alen,
            _res,
            meas,
            tags,
            cuid,
            nonce,
            iphkh,
            aphkh,
            adig,
        ) = struct.unpack_from(cls.FMT, data, 0)
        if magic != cls.MAGIC or version != 1:
            raise A.RequestFormatError("not a zuv attestation statement v1")
        if length != len(data) or length != cls.FIXED + ulen or ulen > A.USER_DATA_MAX or has_nonce > 1:
            raise A.RequestFormatError("attestation statement lengths do not add up")
        return cls(
            paf,
            mai,
            t,
            meas,
            A.BootHdrTags.parse(tags),
            cuid,
            nonce if has_nonce else None,
            iphkh,
            aphkh,
            adig,
            alen,
            data[cls.FIXED :],
        )


assert struct.calcsize(EvidenceStatement.FMT) == EvidenceStatement.FIXED


@dataclass(frozen=True)
class Evidence:
    """Signed evidence: the statement, both signatures and both attestation-key certificates (DER)."""

    statement: bytes
    ecdsa_sig: bytes
    mldsa_sig: bytes
    ecdsa_cert: bytes
    mldsa_cert: bytes

    MAGIC = b"zuvEVID1"
    HEAD = struct.Struct(">8sIIIIIIII")

    def pack(self) -> bytes:
        """The evidence bytes."""
        parts = (self.statement, self.ecdsa_sig, self.mldsa_sig, self.ecdsa_cert, self.mldsa_cert)
        total = self.HEAD.size + sum(len(p) for p in parts)
        return self.HEAD.pack(self.MAGIC, 1, total, *(len(p) for p in parts), 0) + b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Evidence:
        """Parse evidence; RequestFormatError if it is malformed."""
        data = bytes(data)
        if len(data) < cls.HEAD.size:
            raise A.RequestFormatError("evidence truncated")
        magic, version, total, *lens, _res = cls.HEAD.unpack_from(data, 0)
        if magic != cls.MAGIC or version != 1:
            raise A.RequestFormatError("not zuv evidence v1")
        if total != cls.HEAD.size + sum(lens) or total > len(data):
            raise A.RequestFormatError("evidence lengths do not add up")
        parts, off = [], cls.HEAD.size
        for n in lens:
            parts.append(data[off : off + n])
            off += n
        return cls(*parts)


assert Evidence.HEAD.size == 0x28


def evidence_size(keys: AttestationKeys, user_data_len: int) -> int:
    """Room the evidence needs (the ECDSA signature counted at its largest DER length)."""
    return (
        Evidence.HEAD.size + EvidenceStatement.FIXED + user_data_len + ECDSA_P521_SIG_MAX + MLDSA87_SIG_SIZE
        + len(keys.ecdsa_cert) + len(keys.mldsa_cert)
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ the command

_FW_DIGEST: list[bytes] = []


def firmware_digest() -> bytes:
    """SHA-512 over the Ultravisor's code (each ``firmware/*.py``, by name): the firmware measurement."""
    if not _FW_DIGEST:
        h = hashlib.sha512()
        for f in sorted(resources.files("firmware").iterdir(), key=lambda p: p.name):
            if f.name.endswith(".py"):
                h.update(f.name.encode() + b"\0" + f.read_bytes())
        _FW_DIGEST.append(h.digest())
    return _FW_DIGEST[0]


def image_tags(cfg: SecureConfig) -> A.BootHdrTags:
    """PLD/ALD/TLD/tag of the image the configuration runs (from its opened SE header)."""
    h = cfg.header
    return A.BootHdrTags(h.pld, h.ald, h.tld, h.tag)


def _additional(uv: Ultravisor, cfg: SecureConfig, paf: int, attest_phkh: bytes) -> bytes:
    from firmware import uv_secrets

    out = b""
    if paf & A.PAF_IMAGE_PHKH:
        out += cfg.header.phkh
    if paf & A.PAF_ATTEST_PHKH:
        out += attest_phkh
    if paf & A.PAF_SECRET_STORE_HASH:
        out += uv_secrets.store_hash(cfg)
    if paf & A.PAF_FIRMWARE_STATE:
        out += A.firmware_state(firmware_digest(), [phkh(k) for k in uv.host_keys])
    return out


def retrieve(
    uv: Ultravisor, cfg: SecureConfig, blk: UvCbAttest, cb: ControlBlock, evidence: bool = False
) -> tuple[int, int]:
    """Retrieve Attestation Measurement (0x1020), or with ``evidence`` zuv's 0x1F20; returns rc/rrc.

    Outputs (measurement, additional data, evidence) are stored only on success; ``config_uid`` (and
    ``evidence_written``) are set in ``blk``, which the dispatcher stores back.
    """
    keys: Any = getattr(uv, "attestation_keys", None)
    if evidence and keys is None:
        return RC_NO_ATT_KEY, 0
    if cfg.header is None:
        return RC_INV_STATE, 0
    if blk.cont_token != 0:
        return RC_CONT_TOKEN, 0
    if blk.user_data_len > A.USER_DATA_MAX:
        return RC_USER_DATA_LEN, 0
    try:
        head = guest_read(uv, cb, cfg, blk.arcb_addr, 0x40)
    except Inaccessible:
        return RC_ARCB_ACCESS, 0
    hdr = A.RequestHeader.parse(head)
    auth = A.ArcbAuth.parse(head)
    if (
        hdr.magic != A.ARCB_MAGIC
        or hdr.version != A.REQUEST_VERSION_V1
        or not uv.query.supp_att_req_hdr_ver >> 63
    ):
        return RC_VERSION, 0
    if hdr.nks == 0:
        return RC_NKS, 0
    nonce = bool(auth.paf & A.PAF_NONCE)
    if hdr.sea != A.MEASUREMENT_KEY_SIZE + (A.NONCE_SIZE if nonce else 0):
        return RC_SEA, 0
    if hdr.rql != A.arcb_size(hdr.nks, nonce):
        return RC_ARCB_LEN, 0
    try:
        raw = guest_read(uv, cb, cfg, blk.arcb_addr, hdr.rql)
    except Inaccessible:
        return RC_ARCB_ACCESS, 0
    if auth.paf & ~uv.query.supp_att_pflags:
        return RC_PAF, 0
    if auth.mai != A.MAI_HMAC_SHA512:
        return RC_MAI, 0
    if blk.meas_len < A.MEASUREMENT_SIZE:
        return RC_MEAS_LEN, 0
    add_len = A.additional_data_size(auth.paf)
    if blk.add_data_len < add_len:
        return RC_ADD_LEN, 0
    ev_addr = int(blk.reserved168[0])
    ev_len = int(blk.reserved168[1]) >> 32
    user = bytes(blk.user_data[: blk.user_data_len])
    if evidence and ev_len < evidence_size(keys, len(user)):
        return RC_EVIDENCE_SMALL, 0
    opened = A.open_arcb_with_host_key(A.parse_arcb(raw), uv.host_keys)
    if opened is None:
        return RC_UNSEAL, 0
    secrets, att_phkh = opened
    tags = image_tags(cfg)
    cuid = bytes(cfg.uid)
    additional = _additional(uv, cfg, auth.paf, att_phkh)
    meas = A.measurement(secrets.measurement_key, tags, cuid, user, secrets.nonce, additional)
    try:
        meas_pieces = guest_pieces(uv, cb, cfg, blk.meas_addr, len(meas), True)
    except Inaccessible:
        return RC_MEAS_ACCESS, 0
    try:
        add_pieces = guest_pieces(uv, cb, cfg, blk.add_data_addr, len(additional), True) if additional else []
    except Inaccessible:
        return RC_ADD_ACCESS, 0
    ev_blob = b""
    ev_pieces: list[tuple[int, int]] = []
    if evidence:
        st = EvidenceStatement(
            paf=auth.paf, mai=auth.mai, time_ns=uv.time_ns(), measurement=meas, tags=tags, cuid=cuid,
            nonce=secrets.nonce, image_phkh=cfg.header.phkh, attestation_phkh=att_phkh,
            additional_digest=sha512(additional), additional_len=len(additional), user_data=user,
        ).pack()  # fmt: skip
        sig1, sig2 = keys.sign(st)
        ev_blob = Evidence(st, sig1, sig2, keys.ecdsa_cert, keys.mldsa_cert).pack()
        try:
            ev_pieces = guest_pieces(uv, cb, cfg, ev_addr, len(ev_blob), True)
        except Inaccessible:
            return RC_EVIDENCE_ACCESS, 0
    guest_write(uv, meas_pieces, meas)
    guest_write(uv, add_pieces, additional)
    if evidence:
        guest_write(uv, ev_pieces, ev_blob)
        blk.reserved168[1] = (ev_len << 32) | len(ev_blob)
    for i, b in enumerate(cuid):
        blk.config_uid[i] = b
    return RC_OK, 0

"""Checking an attestation result: zuv's signed evidence with the architected HMAC measurement.

The evidence's certificate chain to a trusted root, CRLs and both signatures are checked together with the
measurement; the first field that does not match is named.

Order of the checks in :func:`check_attestation` (the first failure is reported,
``AttestationMismatch.field``):

1. evidence (when given or required): format (``evidence``); both certificates chain to a trusted
   root through a CA certificate, are within their validity and not revoked by a valid CRL of their
   issuer (``certificate_chain``); the two certificates name the same machine (``certificate_chain``);
   the ECDSA P-521 and the ML-DSA-87 signatures over the statement verify (``signature``);
2. the statement against what the relying party expects: ``nonce``, ``pld``/``ald``/``tld``/``tag``
   (the reference image), ``paf``, and against the response: ``cuid``, ``user_data``, ``measurement``,
   ``additional_data``;
3. the HMAC-SHA512 measurement recomputed with the reference image's tags, the response's CUID, user
   data and additional data and the request's key and nonce (``measurement``).

Without evidence only step 3 runs, and a mismatch can only say "measurement".
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import NameOID

from firmware import attestation as A
from firmware.crypto import Secret, constant_time_eq, sha512
from firmware.uv_attest import EVIDENCE_CONTEXT, Evidence, EvidenceStatement

__all__ = [
    "AttestationMismatch",
    "VerifiedEvidence",
    "AttestationResult",
    "verify_evidence",
    "check_attestation",
]


class AttestationMismatch(Exception):
    """The attestation result does not match: ``field`` names what, ``reason`` says how."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class VerifiedEvidence:
    """Evidence whose chain and signatures verified."""

    statement: EvidenceStatement
    machine: str
    host_key_hash: bytes
    ecdsa_cert: x509.Certificate
    mldsa_cert: x509.Certificate


@dataclass(frozen=True)
class AttestationResult:
    """What a verified attestation says (the claims a relying party acts on)."""

    cuid: bytes
    tags: A.BootHdrTags
    user_data: bytes
    additional: dict[str, bytes]
    evidence: VerifiedEvidence | None

    def claims(self) -> dict:
        """JSON-ready claims (the shape of Trustee's ``SeAttestationClaims`` plus zuv's evidence facts)."""
        out: dict = {
            "cuid": self.cuid.hex(),
            "user_data": self.user_data.hex(),
            "version": A.REQUEST_VERSION_V1,
            "image_phkh": self.additional.get("image_phkh", b"").hex(),
            "attestation_phkh": self.additional.get("attestation_phkh", b"").hex(),
            "tag": self.tags.tag.hex(),
        }
        if self.evidence is not None:
            out["evidence"] = {
                "machine": self.evidence.machine,
                "host_key_hash": self.evidence.host_key_hash.hex(),
                "signatures": ["ECDSA P-521/SHA-512", "ML-DSA-87"],
                "uv_time_ns": self.evidence.statement.time_ns,
            }
        return out


def _now(now: _dt.datetime | None) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=_dt.timezone.utc)


def _fail(reason: str) -> AttestationMismatch:
    return AttestationMismatch("certificate_chain", reason)


def _name(c: x509.Certificate | x509.CertificateRevocationList, attr: str = "subject") -> str:
    return getattr(c, attr).rfc4514_string()


def _valid_at(cert: x509.Certificate, now: _dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise _fail(f"{what} is not yet valid (from {cert.not_valid_before_utc:%Y-%m-%d})")
    if now > cert.not_valid_after_utc:
        raise _fail(f"{what} has expired (valid until {cert.not_valid_after_utc:%Y-%m-%d})")


def _issued(child: x509.Certificate, parent: x509.Certificate, what: str) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        raise _fail(f"{what} is not signed by {_name(parent)!r}") from None
    try:
        if not parent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise _fail(f"{_name(parent)!r} issues certificates but is not a CA")
    except x509.ExtensionNotFound:
        raise _fail(f"{_name(parent)!r} has no basic constraints") from None


def _revocation(
    cert: x509.Certificate, issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList],
    now: _dt.datetime, what: str, required: bool,
) -> None:  # fmt: skip
    valid = 0
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise _fail(f"a CRL naming {_name(issuer)!r} is not signed by it")
        if now < crl.last_update_utc or crl.next_update_utc is None or now > crl.next_update_utc:
            raise _fail(f"the CRL of {_name(issuer)!r} is outdated or not yet valid")
        valid += 1
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise _fail(f"{what} (serial {cert.serial_number:#x}) is revoked")
    if required and not valid:
        raise _fail(f"no valid CRL of {_name(issuer)!r} given; one is required")


def _chain(
    cert: x509.Certificate, cas: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList], now: _dt.datetime, what: str, require_crl: bool,
) -> None:  # fmt: skip
    _valid_at(cert, now, what)
    current, label = cert, what
    for _ in range(3):
        root = next((r for r in roots if r.subject == current.issuer), None)
        if root is not None:
            _issued(current, root, label)
            _valid_at(root, now, "the root CA certificate")
            _revocation(current, root, crls, now, label, required=False)
            return
        parent = next((c for c in cas if c.subject == current.issuer and c != current), None)
        if parent is None:
            raise _fail(
                f"{label}: issuer {_name(current, 'issuer')!r} is neither a given CA nor a trusted root"
            )
        _issued(current, parent, label)
        _valid_at(parent, now, f"CA certificate {_name(parent)!r}")
        _revocation(current, parent, crls, now, label, required=require_crl and current is cert)
        current, label = parent, f"CA certificate {_name(parent)!r}"
    raise _fail(f"{what}: chain longer than two CA certificates")


def _machine(cert: x509.Certificate) -> tuple[str, bytes]:
    sn = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        h = bytes.fromhex(str(sn[0].value)) if sn else b""
    except ValueError:
        h = b""
    if len(h) != 32 or not cn:
        raise _fail(f"{_name(cert)!r} does not name a machine and its host-key hash")
    return str(cn[0].value).split(" Ultravisor attestation key")[0], h


def verify_evidence(
    data: bytes,
    *,
    roots: Sequence[x509.Certificate],
    cas: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: _dt.datetime | None = None,
    require_crl: bool = True,
) -> VerifiedEvidence:
    """Verify zuv evidence: certificates, revocation, both signatures (module docstring, step 1).

    Args:
        data: the evidence the Ultravisor wrote.
        roots: trusted root CA certificates; ``cas``: CA certificates that may sit between them and the
            attestation-key certificates (the emulated intermediate CA).
        crls: CRLs; with ``require_crl`` a valid CRL of the attestation certificates' issuer is required.
        now: verification time.

    Raises:
        AttestationMismatch: field ``evidence``, ``certificate_chain`` or ``signature``.
    """
    now = _now(now)
    try:
        ev = Evidence.parse(data)
        st = EvidenceStatement.parse(ev.statement)
    except A.RequestFormatError as exc:
        raise AttestationMismatch("evidence", str(exc)) from None
    try:
        ecert = x509.load_der_x509_certificate(ev.ecdsa_cert)
        mcert = x509.load_der_x509_certificate(ev.mldsa_cert)
        epub, mpub = ecert.public_key(), mcert.public_key()
    except ValueError as exc:
        raise AttestationMismatch("evidence", f"attestation-key certificate unreadable: {exc}") from None
    if not isinstance(epub, ec.EllipticCurvePublicKey) or not isinstance(epub.curve, ec.SECP521R1):
        raise AttestationMismatch("evidence", "the ECDSA attestation key is not a P-521 key")
    if not isinstance(mpub, mldsa.MLDSA87PublicKey):
        raise AttestationMismatch("evidence", "the post-quantum attestation key is not ML-DSA-87")
    if not roots:
        raise _fail("no trusted root CA given")
    _chain(ecert, cas, roots, crls, now, "the ECDSA attestation-key certificate", require_crl)
    _chain(mcert, cas, roots, crls, now, "the ML-DSA attestation-key certificate", require_crl)
    machine, h = _machine(ecert)
    if _machine(mcert) != (machine, h):
        raise _fail("the two attestation-key certificates name different machines")
    try:
        epub.verify(ev.ecdsa_sig, ev.statement, ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        raise AttestationMismatch(
            "signature", "the ECDSA P-521 signature over the statement is wrong"
        ) from None
    try:
        mpub.verify(ev.mldsa_sig, ev.statement, EVIDENCE_CONTEXT)
    except InvalidSignature:
        raise AttestationMismatch(
            "signature", "the ML-DSA-87 signature over the statement does not verify"
        ) from None
    return VerifiedEvidence(st, machine, h, ecert, mcert)


def _same(field: str, got: bytes, want: bytes, what: str) -> None:
    if not constant_time_eq(bytes(got), bytes(want)):
        raise AttestationMismatch(
            field, f"{what}: got {bytes(got).hex()[:32]}..., expected {bytes(want).hex()[:32]}..."
        )


def check_attestation(
    *,
    tags: A.BootHdrTags,
    measurement_key: Secret,
    nonce: bytes | None,
    paf: int,
    measurement: bytes,
    cuid: bytes,
    user_data: bytes = b"",
    additional: bytes = b"",
    evidence: bytes | None = None,
    roots: Sequence[x509.Certificate] = (),
    cas: Sequence[x509.Certificate] = (),
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: _dt.datetime | None = None,
    require_evidence: bool = False,
    require_crl: bool = True,
) -> AttestationResult:
    """Check an attestation response against the reference image and the request (module docstring).

    Raises:
        AttestationMismatch: the first field that does not match.
    """
    if len(cuid) != A.CUID_SIZE:
        raise AttestationMismatch("cuid", f"a CUID is 16 bytes, not {len(cuid)}")
    if len(user_data) > A.USER_DATA_MAX:
        raise AttestationMismatch("user_data", f"user data of {len(user_data)} bytes exceeds 256")
    try:
        items = A.split_additional_data(paf, additional)
    except A.RequestFormatError as exc:
        raise AttestationMismatch("additional_data", str(exc)) from None
    verified = None
    if evidence is None and require_evidence:
        raise AttestationMismatch("evidence", "signed evidence is required but the response has none")
    if evidence is not None:
        verified = verify_evidence(
            evidence, roots=roots, cas=cas, crls=crls, now=now, require_crl=require_crl
        )
        st = verified.statement
        same_nonce = (st.nonce is None) == (nonce is None) and (
            nonce is None or constant_time_eq(st.nonce or b"", nonce)
        )
        if not same_nonce:
            got = st.nonce.hex() if st.nonce else "none"
            raise AttestationMismatch(
                "nonce", f"the Ultravisor measured nonce {got}, not the one of this challenge"
            )
        diff = tags.differences(st.tags)
        if diff:
            name = diff[0]
            raise AttestationMismatch(
                name, f"the guest runs another image than the reference ({', '.join(diff)} differ): its "
                f"{name.upper()} is {getattr(st.tags, name).hex()[:32]}..., the reference has "
                f"{getattr(tags, name).hex()[:32]}...",
            )  # fmt: skip
        if st.paf != paf:
            raise AttestationMismatch("paf", f"measured with flags {st.paf:#x}, requested {paf:#x}")
        _same("cuid", st.cuid, cuid, "the response's CUID is not the one the Ultravisor signed")
        _same(
            "user_data", st.user_data, user_data, "the response's user data is not what the Ultravisor signed"
        )
        _same("measurement", st.measurement, measurement, "the response's measurement is not the signed one")
        _same(
            "additional_data",
            st.additional_digest,
            sha512(additional),
            "additional data is not what was signed",
        )
    expect = A.measurement(measurement_key, tags, cuid, user_data, nonce, additional)
    if not constant_time_eq(expect, bytes(measurement)):
        raise AttestationMismatch(
            "measurement",
            "the HMAC-SHA512 measurement does not match the reference image, request key and nonce",
        )
    return AttestationResult(bytes(cuid), tags, bytes(user_data), items, verified)

"""Emulated IBM Z host-key PKI (spec 8.8): issue and verify CAs, signing keys, host-key documents, CRLs.

It issues a root CA, an intermediate CA, the IBM Z signing key, host-key documents and CRLs, and verifies them
as pvimg does.

The real chain is ``root CA -> intermediate CA -> IBM Z signing key -> host-key document (HKD)``;
the HKD's public key is a machine's EC P-521 host key, and CRLs issued by the IBM Z signing key
list revoked HKDs. The emulator issues the same shape of chain with its own keys (EC P-521
throughout, deterministic ECDSA so that a seeded generator reproduces its output byte for byte).
None of it is IBM's; every subject says "zuv emulation" somewhere except the IBM Z signing-key
subject, whose six fixed entries the verifier requires exactly as pvimg does.

Verification (``verify_host_key_document``), in pvimg's order:

1. exactly one IBM Z signing-key certificate among the given certificates (subject: exactly six
   entries, C=US, ST=New York, L=Poughkeepsie or Armonk, O and CN "International Business Machines
   Corporation", OU ending in "Key Signing Service");
2. chain signing key <- intermediate CA(s) <- trusted root: signatures, validity at ``now``, CA basic
   constraints, at most 2 certificates between the signing key and the root, >= 112-bit security;
3. HKD: signed by the signing key, within validity, AKID = signing key SKID when present, an EC
   P-521 key; its issuer name is not compared (as s390-tools' verify_hkd_options: a Poughkeepsie-form
   issuer under an Armonk-named signing certificate passes);
4. CRLs, as s390-tools (its store verifies the signing key with OpenSSL's ``CRL_CHECK | CRL_CHECK_ALL``,
   then ``verify_crl`` for the HKD): every certificate of the chain, the signing key, the intermediate
   CA(s) and the root itself, needs a CRL of its issuer (the root: its own) that is current and signed
   by it and does not list it ("unable to get certificate CRL", "CRL has expired", "certificate
   revoked"); among several CRLs of one issuer a current one is used. The HKD needs at least one valid
   CRL (signature, ``last_update .. next_update``, AKID) of the signing key that does not list it; one
   that is not valid is left out. The signing key's CRLs are looked up by its name, then (an Armonk
   signing key) the Poughkeepsie form, that reordered (C, O, OU, L, ST, CN), then the name reordered: the
   first name with CRLs wins (s390-tools' ``quirk_crls``). Names compare as OpenSSL's canonical form
   (case and inner blanks folded). A CRL of nobody in the chain is ignored, as in an OpenSSL store.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from firmware.crypto import (
    EllipticCurvePrivateKey,
    Rng,
    generate_p521_key,
    private_key_from_pem,
    private_key_to_pem,
)

__all__ = [
    "PkiError",
    "PkiFormatError",
    "IBM_ORG",
    "signing_key_subject",
    "is_ibm_signing_subject",
    "Pki",
    "HostKeyDocumentInfo",
    "create_pki",
    "issue_host_key_document",
    "issue_crl",
    "load_certificate",
    "load_certificates",
    "load_crl",
    "verify_host_key_document",
    "hkd_machine_name",
    "describe_unverified",
]

IBM_ORG = "International Business Machines Corporation"
_SIGNING_OU = "IBM Z Host Key Signing Service"
_EMU_NOTE = "zuv emulation (not IBM)"
_HASH = hashes.SHA512()
_MAX_INTERMEDIATES = 2


class PkiError(Exception):
    """A certificate, CRL or chain failed a check; the message names the check."""


class PkiFormatError(PkiError):
    """A file is not a certificate, CRL or key at all (bad input rather than a failed check)."""


def _now(now: _dt.datetime | None) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=_dt.timezone.utc)
    return now


def signing_key_subject(locality: str = "Poughkeepsie") -> x509.Name:
    """The six-entry subject pvimg requires of the IBM Z signing-key certificate."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, locality),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, IBM_ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _SIGNING_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, IBM_ORG),
        ]
    )


def _attrs(name: x509.Name) -> list[tuple[x509.ObjectIdentifier, str]]:
    return [(a.oid, str(a.value)) for a in name]


def is_ibm_signing_subject(name: x509.Name) -> bool:
    """True for a subject of exactly six entries matching the IBM Z signing key (spec 8.8)."""
    attrs = _attrs(name)
    if len(attrs) != 6:
        return False
    d = dict(attrs)
    if len(d) != 6:
        return False
    return (
        d.get(NameOID.COUNTRY_NAME) == "US"
        and d.get(NameOID.STATE_OR_PROVINCE_NAME) == "New York"
        and d.get(NameOID.LOCALITY_NAME) in ("Poughkeepsie", "Armonk")
        and d.get(NameOID.ORGANIZATION_NAME) == IBM_ORG
        and d.get(NameOID.COMMON_NAME) == IBM_ORG
        and str(d.get(NameOID.ORGANIZATIONAL_UNIT_NAME, "")).endswith("Key Signing Service")
    )


def _canon(name: x509.Name) -> tuple[tuple[str, str], ...]:
    """A name as OpenSSL's X509_NAME_cmp compares it: entries in order, values case-folded and blanks
    collapsed (its canonical encoding)."""
    return tuple((a.oid.dotted_string, " ".join(str(a.value).split()).lower()) for a in name)


_CORRECT_ORDER: tuple[x509.ObjectIdentifier, ...] = (
    NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME, NameOID.COMMON_NAME,
)  # fmt: skip


def _reordered(name: x509.Name) -> x509.Name:
    """s390-tools' reorder_x509_names: the first entry of each of C, O, OU, L, ST, CN, in that order."""
    attrs = []
    for oid in _CORRECT_ORDER:
        found = name.get_attributes_for_oid(oid)
        if found:
            attrs.append(found[0])
    return x509.Name(attrs)


def _signing_crl_names(subject: x509.Name) -> list[x509.Name]:
    """The issuer names s390-tools tries for the signing key's CRLs, in order (quirk_crls)."""
    names = [subject]
    loc = subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)
    if loc and str(loc[0].value) == "Armonk":
        fixed = x509.Name([x509.NameAttribute(NameOID.LOCALITY_NAME, "Poughkeepsie")
                           if a.oid == NameOID.LOCALITY_NAME else a for a in subject])  # fmt: skip
        names += [fixed, _reordered(fixed)]
    names.append(_reordered(subject))
    return names


def _crls_named(crls: Sequence[x509.CertificateRevocationList], name: x509.Name):
    key = _canon(name)
    return [c for c in crls if _canon(c.issuer) == key]


# ------------------------------------------------------------------------------------------------ issue


def _serial(rng: Rng) -> int:
    return (int.from_bytes(rng.random_bytes(20), "big") >> 1) | 1


def _ski(key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _cert(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key,
    issuer_key: EllipticCurvePrivateKey,
    issuer_public_key,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    ca: bool,
    path_length: int | None = None,
    crl_uri: str | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )
    # a CA certificate: digital signature, certificate and CRL signing; any other: key agreement
    b = b.add_extension(
        x509.KeyUsage(
            digital_signature=ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=not ca,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if crl_uri:
        b = b.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)]
            ),
            critical=False,
        )
    return b.sign(issuer_key, _HASH, ecdsa_deterministic=True)


def issue_crl(
    issuer_key: EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate,
    revoked_serials: Iterable[int] = (),
    *,
    last_update: _dt.datetime,
    next_update: _dt.datetime,
    revocation_date: _dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by issuer_key listing revoked_serials (sorted, deduplicated)."""
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    for serial in sorted(set(revoked_serials)):
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revocation_date or last_update)
            .build()
        )
    return b.sign(issuer_key, _HASH, ecdsa_deterministic=True)


@dataclass
class Pki:
    """The emulated issuing side: root CA, intermediate CA, IBM Z signing key, and the signing key's CRL.

    Private keys are emulation-only and committed for the bundled machines on purpose.
    """

    root_key: EllipticCurvePrivateKey
    root_cert: x509.Certificate
    inter_key: EllipticCurvePrivateKey
    inter_cert: x509.Certificate
    signing_key: EllipticCurvePrivateKey
    signing_cert: x509.Certificate
    crl: x509.CertificateRevocationList
    inter_crl: x509.CertificateRevocationList
    #: the root CA's CRL, revoking intermediate CAs: s390-tools checks the CRL of every certificate of the
    #: chain (OpenSSL's CRL_CHECK_ALL) and refuses a chain without it. None: a PKI saved before it existed.
    root_crl: x509.CertificateRevocationList | None = None

    FILES = {
        "root_key": "root-ca.key",
        "root_cert": "root-ca.crt",
        "inter_key": "intermediate-ca.key",
        "inter_cert": "intermediate-ca.crt",
        "inter_crl": "intermediate-ca.crl",
        "signing_key": "ibm-z-signing-key.key",
        "signing_cert": "ibm-z-signing-key.crt",
        "crl": "ibm-z-signing-key.crl",
        "root_crl": "root-ca.crl",
    }
    OPTIONAL = frozenset({"root_crl"})

    @property
    def crls(self) -> list[x509.CertificateRevocationList]:
        """Every CRL of the PKI: the signing key's, the intermediate CA's and (if any) the root CA's."""
        return [self.crl, self.inter_crl] + ([self.root_crl] if self.root_crl is not None else [])

    def __repr__(self) -> str:
        return f"Pki(signing={self.signing_cert.subject.rfc4514_string()!r}, revoked={len(self.crl)})"

    def save(self, directory: Path) -> None:
        """Write every file of the PKI (PEM) into directory."""
        directory.mkdir(parents=True, exist_ok=True)
        warn = b"# EMULATION ONLY: private key of zuv's emulated host-key PKI. Not a secret, not IBM's.\n"
        for attr, name in self.FILES.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, EllipticCurvePrivateKey):
                data = warn + private_key_to_pem(value)
            else:
                data = value.public_bytes(serialization.Encoding.PEM)
            (directory / name).write_bytes(data)

    @classmethod
    def load(cls, directory: Path) -> Pki:
        """Read a PKI written by :meth:`save`."""
        try:
            vals = {}
            for attr, name in cls.FILES.items():
                if attr in cls.OPTIONAL and not (directory / name).exists():
                    continue
                data = (directory / name).read_bytes()
                if name.endswith(".key"):
                    vals[attr] = private_key_from_pem(data)
                elif name.endswith(".crl"):
                    vals[attr] = x509.load_pem_x509_crl(data)
                else:
                    vals[attr] = x509.load_pem_x509_certificate(data)
        except OSError as exc:
            raise PkiFormatError(
                f"cannot read the PKI in {directory}: {exc.strerror}: {exc.filename}"
            ) from None
        except Exception as exc:  # malformed PEM from cryptography or firmware.crypto
            raise PkiFormatError(f"malformed PKI file in {directory}: {exc}") from None
        return cls(**vals)

    def revoke(self, serial: int, now: _dt.datetime | None = None, days: int = 5844) -> None:
        """Add serial to the signing key's CRL and re-issue it."""
        now = _now(now)
        serials = {r.serial_number for r in self.crl} | {serial}
        self.crl = issue_crl(
            self.signing_key,
            self.signing_cert,
            serials,
            last_update=now,
            next_update=now + _dt.timedelta(days=days),
        )



def _anchor_name(common_name: str) -> x509.Name:
    """The name of one of the emulated trust anchor's CAs (root, intermediate)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zuv emulated trust anchor"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _EMU_NOTE),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )

def create_pki(rng: Rng, now: _dt.datetime | None = None, years: int = 16) -> Pki:
    """Create root CA, intermediate CA, IBM Z signing key and empty CRLs, valid from now for years."""
    start = _now(now)
    end = start + _dt.timedelta(days=365 * years + years // 4)
    root_key, inter_key, signing_key = generate_p521_key(rng), generate_p521_key(rng), generate_p521_key(rng)
    root_name, inter_name = _anchor_name("zuv Emulated Root CA"), _anchor_name("zuv Emulated Code Signing CA")

    def issue(
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey,
        **kw: bool | int,
    ) -> x509.Certificate:
        return _cert(
            subject=subject,
            issuer=issuer,
            public_key=key.public_key(),
            issuer_key=issuer_key,
            issuer_public_key=issuer_key.public_key(),
            serial=_serial(rng),
            not_before=start,
            not_after=end,
            **kw,
        )

    root = issue(root_name, root_key, root_name, root_key, ca=True, path_length=1)
    inter = issue(inter_name, inter_key, root_name, root_key, ca=True, path_length=0)
    signing = issue(signing_key_subject(), signing_key, inter_name, inter_key, ca=False)
    crl = issue_crl(signing_key, signing, (), last_update=start, next_update=end)
    inter_crl = issue_crl(inter_key, inter, (), last_update=start, next_update=end)
    root_crl = issue_crl(root_key, root, (), last_update=start, next_update=end)
    return Pki(root_key, root, inter_key, inter, signing_key, signing, crl, inter_crl, root_crl)


def issue_host_key_document(
    pki: Pki,
    host_public_key,
    machine_name: str,
    rng: Rng,
    now: _dt.datetime | None = None,
    years: int = 15,
) -> x509.Certificate:
    """A host-key document for machine_name: the host's P-521 public key, signed by the IBM Z signing key."""
    if not isinstance(host_public_key, ec.EllipticCurvePublicKey) or not isinstance(
        host_public_key.curve, ec.SECP521R1
    ):
        raise PkiError("a host key must be an EC P-521 key")
    if not machine_name or any(c in machine_name for c in ",=+<>#;\\\"\n"):
        raise PkiError(f"bad machine name {machine_name!r}")
    start = _now(now)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Poughkeepsie"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, IBM_ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"IBM Z Host Key ({_EMU_NOTE})"),
            x509.NameAttribute(NameOID.COMMON_NAME, machine_name),
        ]
    )
    end = min(start + _dt.timedelta(days=365 * years), pki.signing_cert.not_valid_after_utc)
    return _cert(
        subject=subject,
        issuer=pki.signing_cert.subject,
        public_key=host_public_key,
        issuer_key=pki.signing_key,
        issuer_public_key=pki.signing_key.public_key(),
        serial=_serial(rng),
        not_before=start,
        not_after=end,
        ca=False,
        crl_uri="file:ibm-z-signing-key.crl",
    )


# ------------------------------------------------------------------------------------------------ load


def load_certificates(data: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """All certificates in a PEM file (or the one DER certificate)."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise PkiFormatError(f"{what}: not an X.509 certificate (PEM or DER)") from None
    return certs


def load_certificate(data: bytes, what: str = "certificate") -> x509.Certificate:
    """Exactly one certificate from PEM or DER."""
    certs = load_certificates(data, what)
    if len(certs) != 1:
        raise PkiFormatError(f"{what}: expected one certificate, found {len(certs)}")
    return certs[0]


def load_crl(data: bytes, what: str = "CRL") -> x509.CertificateRevocationList:
    """A CRL from PEM or DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise PkiFormatError(f"{what}: not an X.509 CRL (PEM or DER)") from None


# ------------------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class HostKeyDocumentInfo:
    """What a verified (or merely parsed) host-key document says."""

    machine_name: str
    serial: int
    subject: str
    issuer: str
    not_before: _dt.datetime
    not_after: _dt.datetime
    public_key: ec.EllipticCurvePublicKey
    verified: bool


def hkd_machine_name(cert: x509.Certificate) -> str:
    """The machine name an HKD was issued for (its subject CN)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _info(cert: x509.Certificate, verified: bool) -> HostKeyDocumentInfo:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP521R1):
        raise PkiError("host-key document: the public key is not an EC P-521 host key")
    return HostKeyDocumentInfo(
        machine_name=hkd_machine_name(cert),
        serial=cert.serial_number,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key=key,
        verified=verified,
    )


def _security_bits(key) -> int:
    if isinstance(key, rsa.RSAPublicKey):
        n = key.key_size
        return 80 if n < 2048 else 112 if n < 3072 else 128 if n < 7680 else 192
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size // 2
    if isinstance(key, (ed25519.Ed25519PublicKey,)):
        return 128
    if isinstance(key, (ed448.Ed448PublicKey,)):
        return 224
    if isinstance(key, dsa.DSAPublicKey):
        return 80 if key.key_size < 2048 else 112
    return 0


def _check_validity(cert: x509.Certificate, now: _dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise PkiError(f"{what} is not yet valid (valid from {cert.not_valid_before_utc:%Y-%m-%d})")
    if now > cert.not_valid_after_utc:
        raise PkiError(f"{what} has expired (valid until {cert.not_valid_after_utc:%Y-%m-%d})")


def _check_issued(child: x509.Certificate, parent: x509.Certificate, what: str, by_name: bool = True) -> None:
    """Signature and key identifiers; ``by_name`` also the issuer name (not for a host-key document:
    s390-tools checks its authority key identifier and signature only, so a Poughkeepsie-form issuer
    under an Armonk-named signing certificate passes)."""
    if by_name and child.issuer != parent.subject:
        raise PkiError(
            f"{what}: issuer {child.issuer.rfc4514_string()!r} is not {parent.subject.rfc4514_string()!r}"
        )
    try:
        if by_name:
            child.verify_directly_issued_by(parent)
        else:  # the signature alone (verify_directly_issued_by also compares the names): ECDSA as zuv's
            # signing keys, RSA (PKCS#1 v1.5 or PSS) as IBM's real ones and s390-tools' test assets
            key, params = parent.public_key(), child.signature_algorithm_parameters
            if isinstance(key, rsa.RSAPublicKey) and child.signature_hash_algorithm is not None:
                key.verify(
                    child.signature, child.tbs_certificate_bytes, params, child.signature_hash_algorithm
                )
            elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
                key.verify(child.signature, child.tbs_certificate_bytes, params)
            else:
                raise TypeError("neither an RSA nor an ECDSA signature")
    except (InvalidSignature, ValueError, TypeError):
        raise PkiError(
            f"{what}: signature does not verify with {parent.subject.rfc4514_string()!r}"
        ) from None
    try:
        akid = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        skid = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return
    if akid.key_identifier is not None and akid.key_identifier != skid.digest:
        raise PkiError(f"{what}: authority key identifier does not match the issuer's subject key identifier")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself: its own name as issuer and a signature its own key verifies."""
    if cert.issuer != cert.subject:
        return False
    try:
        _check_issued(cert, cert, "")
    except PkiError:
        return False
    return True


def _build_chain(
    signing: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: _dt.datetime,
) -> list[x509.Certificate]:
    """signing <- intermediates... <- root; returns [signing, intermediates..., root]. As OpenSSL builds it
    for s390-tools (no partial chains): the chain must end at a self-signed trusted root; a trusted
    certificate that is not self-signed (an intermediate CA or the signing key given as --root-ca) is an
    issuer like the others, not an anchor."""
    anchors = [r for r in roots if _self_signed(r)]
    issuers = [*pool, *(r for r in roots if r not in anchors)]
    chain = [signing]
    current = signing
    for _ in range(_MAX_INTERMEDIATES + 1):
        for root in anchors:
            if current.issuer == root.subject:
                _check_issued(current, root, f"certificate {current.subject.rfc4514_string()!r}")
                _check_validity(root, now, "the root CA certificate")
                if not _is_ca(root):
                    raise PkiError("the root CA certificate is not a CA")
                chain.append(root)
                return chain
        parents = [c for c in issuers if c.subject == current.issuer and c is not current and c not in chain]
        if not parents:
            if _self_signed(current):
                raise PkiError(f"the chain ends at the self-signed {current.subject.rfc4514_string()!r}, "
                               "which is not a trusted root CA (--root-ca)")  # fmt: skip
            raise PkiError(
                f"no issuer certificate for {current.subject.rfc4514_string()!r} "
                f"(issuer {current.issuer.rfc4514_string()!r}); "
                "give it with --cert or the root with --root-ca (a self-signed root CA)"
            )
        parent = parents[0]
        what = "the IBM Z signing-key certificate" if current is signing else "an intermediate CA certificate"
        _check_issued(current, parent, what)
        _check_validity(parent, now, "an intermediate CA certificate")
        if not _is_ca(parent):
            raise PkiError(f"{parent.subject.rfc4514_string()!r} issues certificates but is not a CA")
        chain.append(parent)
        current = parent
    raise PkiError(f"certificate chain longer than {_MAX_INTERMEDIATES} intermediates")


def _check_crl(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: _dt.datetime, what: str
) -> None:
    if not crl.is_signature_valid(issuer.public_key()):
        raise PkiError(f"{what}: signature does not verify with {issuer.subject.rfc4514_string()!r}")
    if now < crl.last_update_utc:
        raise PkiError(f"{what}: not yet valid (last update {crl.last_update_utc:%Y-%m-%d})")
    if crl.next_update_utc is None or now > crl.next_update_utc:
        raise PkiError(f"{what}: outdated (next update was due {crl.next_update_utc:%Y-%m-%d})")
    try:
        akid = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        skid = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return
    if akid.key_identifier is not None and akid.key_identifier != skid.digest:
        raise PkiError(f"{what}: authority key identifier does not match its issuer")


def verify_host_key_document(
    hkd: x509.Certificate,
    *,
    certs: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: _dt.datetime | None = None,
) -> HostKeyDocumentInfo:
    """Verify a host-key document like ``pvimg create`` does (module docstring, steps 1-4).

    Args:
        hkd: the host-key document.
        certs: the IBM Z signing-key certificate and intermediate CA certificates.
        roots: trusted root CA certificates.
        crls: CRLs of the signing key and of every CA of the chain, the root's own included (required).
        now: verification time (default: the current time).

    Returns:
        The verified document's details.

    Raises:
        PkiError: the first failed check.
    """
    now = _now(now)
    signing = [c for c in certs if is_ibm_signing_subject(c.subject)]
    if not signing:
        raise PkiError("no IBM Z signing-key certificate given (--cert)")
    if len({c.fingerprint(hashes.SHA256()) for c in signing}) > 1:
        raise PkiError("more than one IBM Z signing-key certificate given; give exactly one")
    signer = signing[0]
    if not roots:
        raise PkiError("no trusted root CA given (--root-ca)")
    chain = _build_chain(signer, certs, roots, now)
    _check_validity(signer, now, "the IBM Z signing-key certificate")
    for c in chain:
        if _security_bits(c.public_key()) < 112:
            raise PkiError(f"{c.subject.rfc4514_string()!r}: key weaker than 112-bit security")

    _check_chain_crls(chain, crls, now)

    _check_issued(hkd, signer, "host-key document", by_name=False)
    _check_validity(hkd, now, "the host-key document")
    info = _info(hkd, True)

    found: list[x509.CertificateRevocationList] = []
    for name in _signing_crl_names(signer.subject):
        found = _crls_named(crls, name)
        if found:
            break
    valid = []
    error: PkiError | None = None
    for crl in found:
        try:  # as s390-tools' verify_crl: a signing-key CRL that does not verify or is outdated is left out
            _check_crl(crl, signer, now, f"CRL of the IBM Z signing key ({crl.issuer.rfc4514_string()})")
            valid.append(crl)
        except PkiError as exc:
            error = error or exc
    if not valid:
        if error is not None:
            raise error
        raise PkiError("no CRL of the IBM Z signing key given (--crl); at least one valid CRL is required")
    if any(c.get_revoked_certificate_by_serial_number(hkd.serial_number) is not None for c in valid):
        raise PkiError(f"the host-key document (serial {hkd.serial_number:#x}) is revoked")
    return info


def _check_chain_crls(
    chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList], now: _dt.datetime
) -> None:
    """OpenSSL's CRL_CHECK_ALL over [signing key, intermediates..., root]: each needs a current CRL of its
    issuer (the root: its own) that does not list it; the first failure, from the signing key up."""
    for i, cert in enumerate(chain):
        issuer = chain[i + 1] if i + 1 < len(chain) else cert
        what = f"certificate {cert.subject.rfc4514_string()!r}"
        cands = _crls_named(crls, issuer.subject)
        if not cands:
            raise PkiError(f"{what}: unable to get certificate CRL (give the CRL of "
                           f"{issuer.subject.rfc4514_string()!r} with --crl)")  # fmt: skip
        valid, error = [], None
        for crl in cands:
            try:
                _check_crl(crl, issuer, now, f"{what}: its issuer's CRL")
                valid.append(crl)
            except PkiError as exc:
                error = error or exc
        if not valid:
            assert error is not None
            raise error
        if any(c.get_revoked_certificate_by_serial_number(cert.serial_number) is not None for c in valid):
            raise PkiError(f"{what}: certificate revoked")


def describe_unverified(hkd: x509.Certificate) -> HostKeyDocumentInfo:
    """Details of a host-key document without verifying it (``--no-verify``)."""
    return _info(hkd, False)


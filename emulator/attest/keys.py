"""Issue a machine's attestation keys (ECDSA P-521, ML-DSA-87) with certificates from the emulated PKI.

The certificates come from the emulated PKI's intermediate CA; ``python3 -m emulator.attest.keys``.

The real IBM Z offers no signed attestation evidence; zuv does (``docs/attestation.md``). Each emulated
machine gets two EMULATION-ONLY key pairs next to its host keys (``firmware/machines/<machine>/``)::

    attestation-key-p521.pem / .crt       ECDSA P-521 key, certificate signed by the intermediate CA
    attestation-key-mldsa87.pem / .crt    ML-DSA-87 key (32-byte seed form), certificate likewise

Certificate subject: C=US, O=zuv emulated IBM Z, OU=zuv emulation (not IBM), CN=<machine> Ultravisor
attestation key (<algorithm>), serialNumber=<PHKH of the machine's host key, hex>: the verifier checks
that the attestation PHKH of the evidence is the machine the certificate names.

``cryptography`` does not put ML-DSA keys into ``CertificateBuilder``; the ML-DSA certificate is built
with a placeholder EC key whose SubjectPublicKeyInfo is then replaced by the ML-DSA one in the DER
TBSCertificate (a direct child of its outer SEQUENCE, so only that length changes), and the result is
signed again with the issuer's ECDSA key. ``cryptography`` parses such certificates and their ML-DSA key.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import NameOID

from emulator.image import pki
from firmware.crypto import DeterministicRng, Rng, SystemRng, generate_p521_key, phkh, private_key_to_pem
from firmware.machine_identity import BUNDLED, MachineIdentity, MachineIdentityError
from firmware.uv_attest import ATT_KEY_FILES, AttestationKeyError, AttestationKeys

__all__ = ["issue_attestation_keys", "attestation_subject", "keys_main"]

_WARNING = (
    b"# EMULATION ONLY: attestation private key of an emulated IBM Z machine (zuv). Committed on purpose;\n"
    b"# it protects nothing real. Real IBM Z machines sign no attestation evidence.\n"
)
_HASH = hashes.SHA512()
_CRL_URI = "file:intermediate-ca.crl"


def attestation_subject(machine: str, host_key_hash: bytes, algorithm: str) -> x509.Name:
    """Subject of a machine's attestation-key certificate."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zuv emulated IBM Z"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "zuv emulation (not IBM)"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{machine} Ultravisor attestation key ({algorithm})"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, host_key_hash.hex()),
        ]
    )


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _der_read(data: bytes, off: int) -> tuple[int, int, int]:
    """(tag, content offset, content length) of the DER element at off."""
    tag, first = data[off], data[off + 1]
    if first < 0x80:
        return tag, off + 2, first
    n = first & 0x7F
    return tag, off + 2 + n, int.from_bytes(data[off + 2 : off + 2 + n], "big")


def _builder(
    subject: x509.Name, issuer: x509.Certificate, serial: int, start: _dt.datetime, end: _dt.datetime
):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(_CRL_URI)], None, None, None)]
            ),
            critical=False,
        )
    )


def _mldsa_certificate(
    key: mldsa.MLDSA87PrivateKey,
    builder: x509.CertificateBuilder,
    issuer_key: ec.EllipticCurvePrivateKey,
    rng: Rng,
) -> x509.Certificate:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(  # type: ignore[arg-type]
        serialization.load_der_public_key(spki)  # type: ignore[arg-type]
    )
    placeholder = generate_p521_key(rng)
    cert = builder.public_key(placeholder.public_key()).add_extension(ski, critical=False).sign(
        issuer_key, _HASH, ecdsa_deterministic=True
    )
    ph = placeholder.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tbs = cert.tbs_certificate_bytes
    _, start, length = _der_read(tbs, 0)
    body = tbs[start : start + length]
    if body.count(ph) != 1:
        raise pki.PkiError("cannot place the ML-DSA key into the certificate")
    new_tbs = _der_tlv(0x30, body.replace(ph, spki))
    sig = issuer_key.sign(new_tbs, ec.ECDSA(_HASH, deterministic_signing=True))
    der = cert.public_bytes(serialization.Encoding.DER)
    _, c0, _ = _der_read(der, 0)
    _, t0, tlen = _der_read(der, c0)
    _, a0, alen = _der_read(der, t0 + tlen)
    sig_alg = der[t0 + tlen : a0 + alen]
    return x509.load_der_x509_certificate(_der_tlv(0x30, new_tbs + sig_alg + _der_tlv(0x03, b"\0" + sig)))


def issue_attestation_keys(
    issuer: pki.Pki, machine: MachineIdentity, rng: Rng, now: _dt.datetime | None = None, years: int = 15
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, mldsa.MLDSA87PrivateKey, x509.Certificate]:
    """A machine's attestation keys and their certificates from the PKI's intermediate CA."""
    start = now or _dt.datetime.now(_dt.timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    end = min(start + _dt.timedelta(days=365 * years), issuer.inter_cert.not_valid_after_utc)
    h = machine.host_key_hash

    def serial() -> int:
        return (int.from_bytes(rng.random_bytes(20), "big") >> 1) | 1

    ekey = generate_p521_key(rng)
    ecert = (
        _builder(attestation_subject(machine.name, h, "ECDSA P-521"), issuer.inter_cert, serial(), start, end)
        .public_key(ekey.public_key())
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ekey.public_key()), critical=False)
        .sign(issuer.inter_key, _HASH, ecdsa_deterministic=True)
    )
    mkey = mldsa.MLDSA87PrivateKey.from_seed_bytes(rng.random_bytes(32))
    mb = _builder(attestation_subject(machine.name, h, "ML-DSA-87"), issuer.inter_cert, serial(), start, end)
    mcert = _mldsa_certificate(mkey, mb, issuer.inter_key, rng)
    return ekey, ecert, mkey, mcert


def save_attestation_keys(directory: Path, keys: tuple) -> None:
    """Write the four files (private keys with the EMULATION ONLY warning)."""
    ekey, ecert, mkey, mcert = keys
    pem = serialization.Encoding.PEM
    (directory / ATT_KEY_FILES["ecdsa_key"]).write_bytes(_WARNING + private_key_to_pem(ekey))
    (directory / ATT_KEY_FILES["ecdsa_cert"]).write_bytes(ecert.public_bytes(pem))
    mpem = mkey.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (directory / ATT_KEY_FILES["mldsa_key"]).write_bytes(_WARNING + mpem)
    (directory / ATT_KEY_FILES["mldsa_cert"]).write_bytes(mcert.public_bytes(pem))


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


def keys_main(argv: Sequence[str] | None = None) -> int:
    """``new DIRECTORY [--pki DIR] [--seed S] [--time T]``: exit 0 ok, 2 bad input."""
    p = argparse.ArgumentParser(
        prog="zuv-attestation-keys", description="Issue a machine's attestation keys."
    )
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("new", help="create attestation keys for a machine directory")
    n.add_argument("directory", help="machine directory (holds host-key.pem), or a bundled machine name")
    n.add_argument("--pki", help="PKI directory (default: the bundled emulated PKI)")
    n.add_argument("--seed", help="derive keys and serials from this seed (reproducible)")
    n.add_argument("--time", help="issue time (ISO 8601, default now)")
    n.add_argument("--overwrite", action="store_true")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        d = Path(a.directory)
        if not d.is_dir() and a.directory in BUNDLED:
            d = MachineIdentity.bundled_dir(a.directory)
        machine = MachineIdentity.load(d)
        if AttestationKeys.present(d) and not a.overwrite:
            _say(f"{d} already has attestation keys (use --overwrite)")
            return 2
        issuer = pki.Pki.load(Path(a.pki) if a.pki else MachineIdentity.bundled_dir("zuv-demo") / "pki")
        when = _dt.datetime.fromisoformat(a.time) if a.time else None
        rng = DeterministicRng(a.seed) if a.seed is not None else SystemRng()
        save_attestation_keys(d, issue_attestation_keys(issuer, machine, rng, when))
        AttestationKeys.load(d)  # they must load back
    except (MachineIdentityError, pki.PkiError, AttestationKeyError, ValueError) as exc:
        _say(f"zuv-attestation-keys: error: {exc}")
        return 2
    _say(f"attestation keys of {machine.name} written to {d} (phkh {phkh(machine.host_key).hex()[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(keys_main())

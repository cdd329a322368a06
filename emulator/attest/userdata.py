"""Signed user data of add-secret requests (s390-tools' user-data types 2-4), signed and checked.

Signing serves ``pvsecret create --user-sign-key`` and checking ``pvsecret verify``; this module is the tools'
one crypto home for it.

The 512-byte user-data area of an ASRCB (at 0x218) holds, by the type in the magic's last two bytes:

| type | meaning | data | signature |
|---|---|---|---|
| 0 | none | - | - |
| 1 | unsigned | 512 bytes | - |
| 2 | ECDSA P-521, SHA-512 | 256 bytes | DER at +0x100 (at most 139 bytes), its length u16 at +0x190 |
| 3 | RSA 2048 PSS, SHA-512 | 256 bytes | 256 bytes at +0x100 |
| 4 | RSA 3072 PSS, SHA-512 | 128 bytes | 384 bytes at +0x80 |

The signature covers the request without its GCM tag, with the signature part of the area (from the
end of the data to the end of the area) zeroed; the request is sealed again after signing, so the tag
also authenticates the signature (s390-tools' ``encrypt_with_signed_user_data``).
"""

from __future__ import annotations

from typing import Callable, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from firmware import asrcb
from firmware import attestation as A

__all__ = ["UserDataError", "DATA_SIZE", "TYPE_NAMES", "key_type", "load_signing_key", "load_verifying_key",
           "signer", "verify_request"]  # fmt: skip

#: data bytes each signed type carries (the rest of the 512 bytes is the signature part)
DATA_SIZE: Final = {2: 256, 3: 256, 4: 128}
TYPE_NAMES: Final = {0: "None", 1: "unsigned", 2: "ECDSA signed", 3: "RSA 2048 signed", 4: "RSA 3072 signed"}
_EC_SIG_MAX: Final = 139
_EC_LEN_AT: Final = 0x190
_AREA: Final = A.ASRCB_USER_DATA_SIZE
_OFF: Final = asrcb.ASRCB_USER_DATA_OFFSET


class UserDataError(Exception):
    """A key, request or signature that does not fit; the message says which."""


def key_type(key: object) -> int:
    """The user-data type a (private or public) key signs: 2 P-521, 3 RSA 2048, 4 RSA 3072."""
    if (
        isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey))
        and key.curve.name == "secp521r1"
    ):
        return 2
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size in (2048, 3072):
        return 3 if key.key_size == 2048 else 4
    raise UserDataError("unsupported user-data signing key: EC secp521r1, RSA 2048 or RSA 3072 only")


def load_signing_key(data: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A private key from PEM or DER (unencrypted) that can sign user data."""
    try:
        key = (serialization.load_pem_private_key(data, None) if b"-----BEGIN" in data
               else serialization.load_der_private_key(data, None))  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise UserDataError(f"not an unencrypted private key (PEM or DER): {exc}") from None
    key_type(key)
    return key  # type: ignore[return-value]


def load_verifying_key(data: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of the first X.509 certificate (PEM or DER) of ``data``."""
    try:
        cert = (x509.load_pem_x509_certificates(data)[0] if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))  # fmt: skip
    except (ValueError, IndexError):
        raise UserDataError("File does not contain a X509 certificate") from None
    key = cert.public_key()
    key_type(key)
    return key  # type: ignore[return-value]


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.MAX_LENGTH)


def signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    """For ``build_asrcb(user_signer=...)``: given the request without its tag (signature part zeroed),
    the user-data area with the signature in place."""
    kind = key_type(key)

    def sign(unsigned: bytes) -> bytes:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            sig = key.sign(unsigned, ec.ECDSA(hashes.SHA512()))
        else:
            sig = key.sign(unsigned, _pss(), hashes.SHA512())
        area = bytearray(unsigned[_OFF:_OFF + _AREA])
        n = DATA_SIZE[kind]
        if kind == 2:
            area[n:n + len(sig)] = sig
            area[_EC_LEN_AT:_EC_LEN_AT + 2] = len(sig).to_bytes(2, "big")
        else:
            area[n:n + len(sig)] = sig
        return bytes(area)

    return sign


def verify_request(data: bytes, key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None) -> bytes | None:
    """s390-tools' ``verify_asrcb_and_get_user_data``: check that ``data`` is an add-secret request v1 and,
    for signed user data, the signature with ``key``; returns the user data (None when the request has
    none): 512 bytes unsigned, the data part of a signed area.

    Raises:
        UserDataError: not an add-secret request, a key that does not fit the type, a failed signature.
    """
    if len(data) < 0x30 or data[:6] != A.ASRCB_MAGIC:
        raise UserDataError("the input is not an add-secret request (magic 'asrcbM')")
    kind = int.from_bytes(data[6:8], "big")
    if kind not in TYPE_NAMES:
        raise UserDataError(f"the add-secret request has an unknown user-data type {kind}")
    if int.from_bytes(data[0x08:0x0C], "big") != A.REQUEST_VERSION_V1:
        raise UserDataError("the add-secret request version is not supported (version 1 only)")
    rql = int.from_bytes(data[0x0C:0x10], "big")
    if len(data) < rql or rql < _OFF + _AREA:
        raise UserDataError("the input is not an add-secret request (too short)")
    body = bytearray(data[:rql - A.GCM_TAG_SIZE])
    area = bytes(body[_OFF:_OFF + _AREA])
    if kind == 0:
        return None
    if kind == 1:
        if key is not None:
            raise UserDataError(f"the verification key ({_describe(key)}) does not fit unsigned user data")
        return area
    if key is None:
        raise UserDataError(
            "the add-secret request has signed user data: give its certificate with --user-cert"
        )
    if key_type(key) != kind:
        raise UserDataError(
            f"the verification key ({_describe(key)}) does not fit {TYPE_NAMES[kind]} user data"
        )
    n = DATA_SIZE[kind]
    if kind == 2:
        length = int.from_bytes(area[_EC_LEN_AT:_EC_LEN_AT + 2], "big")
        sig = area[n:n + min(length, _EC_SIG_MAX)]
    else:
        sig = area[n:]
    body[_OFF + n:_OFF + _AREA] = bytes(_AREA - n)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, bytes(body), ec.ECDSA(hashes.SHA512()))
        else:
            key.verify(
                sig,
                bytes(body),
                padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.AUTO),
                hashes.SHA512(),
            )
    except InvalidSignature:
        raise UserDataError("the user-data signature does not verify") from None
    return area[:n]


def _describe(key: object) -> str:
    return f"RSA {key.key_size}" if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)) else "EC"

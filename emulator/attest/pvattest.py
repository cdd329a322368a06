"""The pvattest tool of zuv (also ``zuv pvattest``): ``create`` an attestation request for host-key documents, ``perform`` it on an emulated machine, ``verify`` a response.

Shapes and files as IBM's pvattest: ``create`` writes a pvattest exchange file holding the ARCB and the
expected sizes, and the request protection key (ARPK, 32 raw bytes) to a separate file; ``verify`` takes
the response exchange file, the SE image (or its header) and the ARPK, and recomputes the HMAC.

zuv additions: ``perform`` runs the request as the secure guest of an SE image on an emulated machine
(real pvattest performs through /dev/uv inside the guest) and can also write zuv's signed evidence;
``verify --evidence`` checks that evidence too (certificate chain to ``--root-ca``, CRLs, both
signatures) and then names the field that does not match.

Exit status (as pvattest): 0 success, 2 attestation mismatch (also usage errors, as clap reports them),
1 any other error (unreadable or malformed input, wrong ARPK, host-key document refused).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from emulator.attest.evidence import AttestationMismatch, check_attestation
from emulator.image import pki
from emulator.image.pvimg import ImageError, host_keys_from_hkds, parse_image
from firmware import attestation as A
from firmware.crypto import CryptoError, DeterministicRng, EllipticCurvePublicKey, Rng, Secret, SystemRng
from firmware.machine_identity import MachineIdentity, MachineIdentityError
from firmware.se_header import SeHeaderError

__all__ = [
    "pvattest_main", "ToolError", "read_file", "write_file", "host_keys_from_documents", "add_certificate_options",
    "image_tags",
]  # fmt: skip

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_MISMATCH = 2
ADD_DATA_FLAGS = {
    "phkh-img": A.PAF_IMAGE_PHKH,
    "phkh-att": A.PAF_ATTEST_PHKH,
    "secret-store-hash": A.PAF_SECRET_STORE_HASH,
    "firmware-state": A.PAF_FIRMWARE_STATE,
}


class ToolError(Exception):
    """Bad input: the message says which file or option (exit 1)."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise _UsageError(message)


def _err(prog: str, text: str) -> None:
    sys.stderr.write(f"{prog}: {text}\n")


def read_file(path: str | Path, what: str) -> bytes:
    """File bytes, or ToolError naming the file."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ToolError(f"cannot read {what} {path}: {exc.strerror}") from None


def write_file(path: str | Path, data: bytes, what: str) -> None:
    """Write bytes, or ToolError."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise ToolError(f"cannot write {what} {path}: {exc.strerror}") from None


def _time(text: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _bundled_pki() -> Path:
    return MachineIdentity.bundled_dir("zuv-demo") / "pki"


def add_certificate_options(p: argparse.ArgumentParser, hkd: bool = True) -> None:
    """pvattest/pvsecret's certificate options."""
    if hkd:
        p.add_argument("-k", "--host-key-document", action="append", required=True, dest="hkds",
                       help="host-key document of a target machine (repeat for several)")
        p.add_argument("--no-verify", action="store_true", help="do not verify the host-key documents (unsafe)")
    p.add_argument("-C", "--cert", action="append", default=[], help="IBM Z signing-key or intermediate CA cert")
    p.add_argument("--crl", action="append", default=[], help="certificate revocation list")
    p.add_argument("--root-ca", help="trusted root CA (default: zuv's emulated root CA)")
    if hkd:
        p.add_argument("--pki", help="zuv: take the certificates, CRLs and root CA from this PKI directory")
    p.add_argument("--offline", action="store_true", help="never download CRLs (zuv never downloads)")
    p.add_argument("--time", type=_time, help="zuv: verify certificates at this time (ISO 8601)")


def host_keys_from_documents(a: argparse.Namespace, prog: str) -> list[EllipticCurvePublicKey]:
    """The public host keys of ``--host-key-document``s, verified against the PKI unless ``--no-verify``."""
    return host_keys_from_hkds(a, prog, read=read_file)


def image_tags(path: str) -> A.BootHdrTags:
    """PLD/ALD/TLD/tag of an SE image or a bare SE header."""
    try:
        return A.BootHdrTags.from_header(parse_image(read_file(path, "SE image")).header)
    except (ImageError, SeHeaderError) as exc:
        raise ToolError(f"{path}: not an SE image or header: {exc}") from None


def _rng(seed: str | None) -> Rng:
    return DeterministicRng(seed) if seed is not None else SystemRng()


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pvattest", description="Create, perform and verify attestation requests (zuv emulation).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create an attestation request")
    add_certificate_options(c)
    c.add_argument("-o", "--output", required=True, help="write the request (exchange format) to FILE")
    c.add_argument("-a", "--arpk", required=True, help="write the request protection key (32 bytes) to FILE")
    c.add_argument("--add-data", action="append", default=[], choices=sorted(ADD_DATA_FLAGS),
                   help="request additional data (repeat)")
    c.add_argument("--seed", help="zuv: derive every random value from this seed (reproducible requests)")

    r = sub.add_parser("perform", help="zuv: perform a request as the secure guest of an SE image")
    r.add_argument("-i", "--input", required=True, help="the request (exchange format)")
    r.add_argument("-o", "--output", required=True, help="write the response (exchange format) to FILE")
    r.add_argument("--image", required=True, help="the SE image whose secure guest performs it")
    r.add_argument("--machine", default="zuv-demo", help="bundled machine name or machine directory")
    r.add_argument("-u", "--user-data", help="up to 256 bytes of user data from FILE")
    r.add_argument("--evidence", help="zuv: also write the Ultravisor's signed evidence to FILE")
    r.add_argument("--seed", type=int, help="seed the emulated Ultravisor (reproducible CUID)")

    v = sub.add_parser("verify", help="verify an attestation response")
    v.add_argument("-i", "--input", required=True, help="the response (exchange format)")
    v.add_argument("--hdr", required=True, help="the SE image (or header) that was attested")
    v.add_argument("-a", "--arpk", required=True, help="the request protection key")
    v.add_argument("-o", "--output", help="write the verification result to FILE")
    v.add_argument("--format", choices=("yaml", "json"), default="yaml")
    v.add_argument("-u", "--user-data", help="write the verified user data to FILE")
    v.add_argument("--evidence", help="zuv: signed evidence to check with the measurement")
    add_certificate_options(v, hkd=False)
    v.add_argument("--no-crl-check", action="store_true", help="zuv: do not require a CRL for the evidence chain")
    return p


def _create(a: argparse.Namespace) -> int:
    paf = A.PAF_NONCE
    for flag in a.add_data:
        paf |= ADD_DATA_FLAGS[flag]
    keys = host_keys_from_documents(a, "pvattest")
    req = A.build_arcb(keys, rng=_rng(a.seed), paf=paf)
    write_file(a.output, A.exchange_request(req.data, A.MEASUREMENT_SIZE, A.additional_data_size(paf)), "request")
    write_file(a.arpk, req.protection_key.expose(), "protection key")
    return EXIT_OK


def _perform(a: argparse.Namespace) -> int:
    from emulator.attest.local import LocalSecureGuest

    ex = A.parse_exchange(read_file(a.input, "request"))
    user = read_file(a.user_data, "user data") if a.user_data else b""
    if len(user) > A.USER_DATA_MAX:
        raise ToolError(f"user data has {len(user)} bytes, at most 256 are allowed")
    try:
        g = LocalSecureGuest(a.machine, read_file(a.image, "SE image"), seed=a.seed)
    except Exception as exc:  # noqa: BLE001 - UvCallError, image errors: the machine refused the image
        raise ToolError(f"cannot start {a.image} on {a.machine}: {exc}") from None
    meas, add = g.alloc(max(ex.exp_measurement, 64)), g.alloc(max(ex.exp_additional, 8))
    ev = g.alloc(16384)
    cmd = "retr_attest_evidence" if a.evidence else "retr_attest"
    blk = g.uvc(
        cmd, arcb_addr=g.put(ex.arcb), meas_len=ex.exp_measurement, meas_addr=meas, add_data_len=ex.exp_additional,
        add_data_addr=add, user_data_len=len(user), user_data=user, reserved168=(ev, 16384 << 32, 0, 0),
    )  # fmt: skip
    if blk.header.rc != 0x0001:
        from firmware.uv_codes import describe

        raise ToolError(f"the Ultravisor refused: {describe(blk.header.cmd, blk.header.rc, blk.header.rrc)}")
    arcb = A.parse_arcb(ex.arcb)
    add_len = A.additional_data_size(arcb.paf)
    out = A.exchange_response(ex.arcb, g.read(meas, 64), g.read(add, add_len) if add_len else None, user or None,
                              bytes(blk.config_uid))
    write_file(a.output, out, "response")
    if a.evidence:
        write_file(a.evidence, g.read(ev, blk.reserved168[1] & 0xFFFFFFFF), "evidence")
    return EXIT_OK


def yaml_scalar(v: Any) -> str:
    """A YAML scalar as serde_yaml writes it: a string YAML would read as a number (``0x...``, digits) or
    a boolean/null is single-quoted, so that s390-tools (``pvsecret create --cuid``) reads a string."""
    text = str(v)
    if isinstance(v, str) and (
        re.fullmatch(r"[-+]?(0x[0-9a-fA-F_]*|0o[0-7_]*|[0-9][0-9_.eE+-]*|\.inf|\.nan)", text)
        or text.lower() in ("true", "false", "null", "~", "yes", "no", "on", "off", "")
    ):
        return "'" + text.replace("'", "''") + "'"
    return text


def _yaml(d: dict[str, Any]) -> str:
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"{k}:")
            lines += [f"  {k2}: {yaml_scalar(v2)}" for k2, v2 in v.items()]
        else:
            lines.append(f"{k}: {yaml_scalar(v)}")
    return "\n".join(lines) + "\n"


def _verify(a: argparse.Namespace) -> int:
    ex = A.parse_exchange(read_file(a.input, "response"))
    if not ex.is_response:
        raise ToolError(f"{a.input} is a request, not a response (no measurement or CUID)")
    arpk = read_file(a.arpk, "protection key")
    if len(arpk) != 32:
        raise ToolError(f"the protection key must be 32 bytes, {a.arpk} has {len(arpk)}")
    try:
        secrets = A.open_arcb(ex.arcb, Secret(arpk, "ARPK"))
    except CryptoError:
        raise ToolError("the protection key does not open the request in the response (wrong ARPK?)") from None
    tags = image_tags(a.hdr)
    kw: dict[str, Any] = {}
    if a.evidence:
        root_path = Path(a.root_ca) if a.root_ca else _bundled_pki() / "root-ca.crt"
        pki_dir = _bundled_pki()
        cas = [c for p in a.cert for c in pki.load_certificates(read_file(p, "certificate"), p)] or [
            x509.load_pem_x509_certificate((pki_dir / "intermediate-ca.crt").read_bytes())
        ]
        crls = [pki.load_crl(read_file(p, "CRL"), p) for p in a.crl]
        if not a.crl and not a.root_ca:
            crls.append(x509.load_pem_x509_crl((pki_dir / "intermediate-ca.crl").read_bytes()))
        kw = dict(
            evidence=read_file(a.evidence, "evidence"), roots=pki.load_certificates(read_file(root_path, "root CA")),
            cas=cas, crls=crls, now=a.time, require_crl=not a.no_crl_check,
        )  # fmt: skip
    try:
        res = check_attestation(
            tags=tags, measurement_key=secrets.measurement_key, nonce=secrets.nonce, paf=secrets.paf,
            measurement=ex.measurement or b"", cuid=ex.cuid or b"", user_data=ex.user or b"",
            additional=ex.additional or b"", **kw,
        )  # fmt: skip
    except AttestationMismatch as m:
        _err("pvattest", f"Attestation measurement verification failed: {m.field}: {m.reason}")
        return EXIT_MISMATCH
    _err("pvattest", "Attestation measurement verified" + (" (with signed evidence)" if a.evidence else ""))
    result: dict[str, Any] = {"cuid": "0x" + res.cuid.hex()}
    if ex.additional:
        result["add"] = "0x" + ex.additional.hex()
        result["add_fields"] = {k: "0x" + v.hex() for k, v in res.additional.items()}
    if ex.user:
        result["user_data"] = "0x" + ex.user.hex()
    if res.evidence is not None:
        ev = res.evidence
        result["evidence"] = {"machine": ev.machine, "host_key_hash": "0x" + ev.host_key_hash.hex()}
    text = json.dumps(result, indent=2) + "\n" if a.format == "json" else _yaml(result)
    sys.stderr.write(text)
    if a.output:
        write_file(a.output, text.encode(), "result")
    if a.user_data:
        if ex.user:
            write_file(a.user_data, ex.user, "user data")
        else:
            _err("pvattest", "WARNING: the response contains no user data")
    return EXIT_OK


def pvattest_main(argv: Sequence[str] | None = None) -> int:
    """``pvattest create|perform|verify``: exit 0 ok, 2 mismatch (or usage error), 1 other errors."""
    try:
        a = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return {"create": _create, "perform": _perform, "verify": _verify}[a.command](a)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except _UsageError as exc:
        _err("pvattest", f"error: {exc}")
        return EXIT_MISMATCH
    except (ToolError, A.RequestFormatError, MachineIdentityError, pki.PkiFormatError, CryptoError) as exc:
        _err("pvattest", f"error: {exc}")
        return EXIT_ERROR
    except pki.PkiError as exc:
        _err("pvattest", f"error: host-key document verification failed: {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(pvattest_main())

"""The pvattest tool of zuv (also ``zuv pvattest``): ``create``, ``perform`` and ``verify``.

``create`` makes an attestation request for host-key documents, ``perform`` runs it on an emulated machine,
``verify`` checks a response.

Shapes and files as IBM's pvattest: ``create`` writes a pvattest exchange file holding the ARCB and the
expected sizes, and the request protection key (ARPK, 32 raw bytes) to a separate file; ``verify`` takes
the response exchange file, the SE image (or its header) and the ARPK, and recomputes the HMAC.

zuv additions: ``perform`` runs the request as the secure guest of an SE image on an emulated machine
(real pvattest performs through /dev/uv inside the guest) and can also write zuv's signed evidence;
``verify --evidence`` checks that evidence too (certificate chain to ``--root-ca``, CRLs, both
signatures) and then names the field that does not match.

``check`` is pvattest's policy check of a response (host-key hashes, user data, secret-store hash,
firmware state), writing its YAML result.

Command line as pvattest 2.43: lists comma-separated or repeated (``-k A,B -k C``, ``--add-data a,b``),
``--cert``/``--crt``/``-C``, one of ``--no-verify`` or ``--cert`` (zuv: or ``--pki``) required, ``--crl``,
``--offline`` and ``--root-ca`` need ``--cert``, ``-v``/``-q`` (and the old ``-V``), ``--version``.

Exit status (as pvattest 2.43): 0 success, 2 attestation mismatch or a policy not fulfilled (``check``),
1 every error, usage errors included (s390-tools prints clap's message and exits 1).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from emulator.attest.evidence import AttestationMismatch, check_attestation
from emulator.attest.yamlout import yaml_scalar
from emulator.image import pki
from emulator.image.pvimg import ImageError, _Parser, _UsageError, host_keys_from_hkds, read_se_header
from emulator.image.pvimg_cli import S390_TOOLS_VERSION, _Flag, _List, _Once, version_request
from emulator.image.toollog import deprecated_v_warning, warn
from firmware import attestation as A
from firmware.crypto import (
    CryptoError,
    DeterministicRng,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    SystemRng,
    phkh,
)
from firmware.machine_identity import MachineIdentity, MachineIdentityError
from firmware.se_header import SeHeaderError

__all__ = [
    "pvattest_main",
    "ToolError",
    "read_file",
    "write_file",
    "host_keys_from_documents",
    "add_certificate_options",
    "image_tags",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_MISMATCH = 2
EXIT_USAGE = 1  # pvattest/pvsecret 2.43 print clap's message and exit 1 (utils::print_cli_error)
ADD_DATA_FLAGS = {
    "phkh-img": A.PAF_IMAGE_PHKH,
    "phkh-att": A.PAF_ATTEST_PHKH,
    "secret-store-hash": A.PAF_SECRET_STORE_HASH,
    "firmware-state": A.PAF_FIRMWARE_STATE,
}
#: --host-key-check values: the additional-data item each one makes required
HOST_KEY_CHECKS = {"att-key-hash": "attestation_phkh", "boot-key-hash": "image_phkh"}


class ToolError(Exception):
    """Bad input: the message says which file or option (exit 1)."""


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
    """pvattest/pvsecret's certificate options (s390-tools' CertificateOptions); lists comma-separated or
    repeated. ``check_certificate_rules`` enforces their rules after parsing."""
    if hkd:
        p.add_argument("-k", "--host-key-document", action=_List, default=[], dest="hkds",
                       help="host-key document of a target machine (repeat or comma-separate for several)")
        p.add_argument(
            "--no-verify", action=_Flag, help="do not verify the host-key documents (unsafe)"
        )
    p.add_argument("-C", "--cert", "--crt", action=_List, default=[],
                   help="IBM Z signing-key or intermediate CA certificate (repeat or comma-separate)")
    p.add_argument(
        "--crl", action=_List, default=[], help="certificate revocation list (repeat or comma-separate)"
    )
    p.add_argument("--root-ca", action=_Once, help="trusted root CA (default: zuv's emulated root CA)")
    if hkd:
        p.add_argument("--pki", help="zuv: take the certificates, CRLs and root CA from this PKI directory")
    p.add_argument("--offline", action=_Flag, help="never download CRLs (zuv never downloads)")
    p.add_argument("--time", type=_time, help="zuv: verify certificates at this time (ISO 8601)")


def check_certificate_rules(a: argparse.Namespace) -> None:
    """CertificateOptions' clap rules: ``-k`` required; one of ``--no-verify`` or ``--cert`` (zuv: or
    ``--pki``), not both. ``--crl``, ``--offline`` and ``--root-ca`` are taken with either (as s390-tools':
    with ``--no-verify`` they are read by nothing)."""
    if not a.hkds:
        raise _UsageError("the following required arguments were not provided: --host-key-document <FILE>")
    has_certs = bool(a.cert or getattr(a, "pki", None))
    if not (a.no_verify or has_certs):
        raise _UsageError("the following required arguments were not provided: <--no-verify|--cert <FILE>>")
    if a.no_verify and a.cert:
        raise _UsageError("the argument '--no-verify' cannot be used with '--cert <FILE>'")


def add_verbosity_options(p: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q (and the deprecated -V) anywhere on the line, as s390-tools' global verbosity options."""
    default = 0 if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="count", default=default, help="provide more detailed output")
    p.add_argument("-q", "--quiet", action="count", default=default, help="provide less output")
    p.add_argument("-V", dest="verbose_old", action="count", default=default, help=argparse.SUPPRESS)


def io_path(a: argparse.Namespace, name: str, required: bool = True) -> str | None:
    """An ``-i FILE``/``-o FILE`` option or its positional twin (s390-tools' combined_path_*): one of them
    when required, never both."""
    named, pos = getattr(a, name), getattr(a, f"{name}_pos")
    if named is not None and pos is not None:
        raise _UsageError(f"the argument '--{name} <FILE>' cannot be used with '[{name.upper()}]'")
    if required and named is None and pos is None:
        raise _UsageError(
            f"the following required arguments were not provided: <--{name} <FILE>|{name.upper()}>"
        )
    return named if named is not None else pos


def host_keys_from_documents(a: argparse.Namespace, prog: str) -> list[EllipticCurvePublicKey]:
    """The public host keys of ``--host-key-document``s, verified against the PKI unless ``--no-verify``."""
    return host_keys_from_hkds(a, prog, read=read_file)


def image_tags(path: str) -> A.BootHdrTags:
    """PLD/ALD/TLD/tag of an SE image or a bare SE header."""
    try:
        return A.BootHdrTags.from_header(read_se_header(read_file(path, "SE image")))
    except (ImageError, SeHeaderError) as exc:
        raise ToolError(f"{path}: not an SE image or header: {exc}") from None


def _rng(seed: str | None) -> Rng:
    return DeterministicRng(seed) if seed is not None else SystemRng()


def _add_data(text: str) -> list[str]:
    items = text.split(",")
    for item in items:
        if item not in ADD_DATA_FLAGS:
            raise argparse.ArgumentTypeError(
                f"invalid value '{item}' for '--add-data <FLAGS>' "
                f"(possible values: {', '.join(ADD_DATA_FLAGS)})"
            )
    return items


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"invalid value '{text}' (possible values: true, false)")
    return text == "true"


def _host_key_checks(text: str) -> list[str]:
    items = text.split(",")
    for item in items:
        if item not in HOST_KEY_CHECKS:
            raise argparse.ArgumentTypeError(
                f"invalid value '{item}' for '--host-key-check' "
                f"(possible values: {', '.join(HOST_KEY_CHECKS)})"
            )
    return items


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pvattest", description="Create, perform, verify and check attestation measurements (zuv)."
    )
    add_verbosity_options(p, top=True)
    p.add_argument("--version", action="store_true", help="print version information and exit")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("create", help="create an attestation request")
    add_certificate_options(c)
    c.add_argument(
        "-o", "--output", action=_Once, required=True, help="write the request (exchange format) to FILE"
    )
    c.add_argument(
        "-a", "--arpk", action=_Once, required=True, help="write the request protection key to FILE"
    )
    c.add_argument(
        "--add-data",
        action="extend",
        type=_add_data,
        default=[],
        help="request additional data: " + ", ".join(ADD_DATA_FLAGS) + " (repeat or comma-separate)",
    )
    c.add_argument("--seed", help="zuv: derive every random value from this seed (reproducible requests)")

    r = sub.add_parser("perform", help="zuv: perform a request as the secure guest of an SE image")
    r.add_argument("-i", "--input", action=_Once, help="the request (exchange format)")
    r.add_argument("input_pos", nargs="?", metavar="IN", help="the request (instead of -i)")
    r.add_argument("-o", "--output", action=_Once, help="write the response (exchange format) to FILE")
    r.add_argument("output_pos", nargs="?", metavar="OUT", help="the response file (instead of -o)")
    r.add_argument("--image", help="zuv: the SE image whose secure guest performs it")
    r.add_argument(
        "--guest", metavar="FILE", help="zuv: the booted guest of a guest file (pvsecret add/lock/list)"
    )
    r.add_argument("--machine", default="zuv-demo", help="zuv: bundled machine name or machine directory")
    r.add_argument("-u", "--user-data", action=_Once, help="up to 256 bytes of user data from FILE")
    r.add_argument("--evidence", help="zuv: also write the Ultravisor's signed evidence to FILE")
    r.add_argument("--seed", type=int, help="zuv: seed the emulated Ultravisor (reproducible CUID)")

    v = sub.add_parser("verify", help="verify an attestation response")
    v.add_argument("-i", "--input", action=_Once, required=True, help="the response (exchange format)")
    v.add_argument("--hdr", action=_Once, required=True, help="the SE image (or header) that was attested")
    v.add_argument("-a", "--arpk", action=_Once, required=True, help="the request protection key")
    v.add_argument("-o", "--output", action=_Once, help="write the verification result to FILE")
    v.add_argument("--format", choices=("yaml", "json"), default="yaml", help="yaml (zuv: also json)")
    v.add_argument("-u", "--user-data", action=_Once, help="write the verified user data to FILE")
    v.add_argument("--evidence", help="zuv: signed evidence to check with the measurement")
    add_certificate_options(v, hkd=False)
    v.add_argument(
        "--no-crl-check", action=_Flag, help="zuv: do not require a CRL for the evidence chain"
    )

    k = sub.add_parser("check", help="check an attestation result against policies")
    k.add_argument("-i", "--input", action=_Once, help="the (verified) attestation response")
    k.add_argument("input_pos", nargs="?", metavar="IN", help="the response (instead of -i)")
    k.add_argument("-o", "--output", action=_Once, help="write the check result (YAML) to FILE")
    k.add_argument("output_pos", nargs="?", metavar="OUT", help="the result file (instead of -o)")
    k.add_argument("--format", choices=("yaml",), default="yaml")
    k.add_argument("-k", "--host-key-document", action=_List, default=[], dest="hkds",
                   help="a response's host-key hashes must be of one of these documents")
    k.add_argument("--host-key-check", action="extend", type=_host_key_checks, default=[],
                   help="fail when the response lacks the hash: att-key-hash, boot-key-hash (comma list)")
    k.add_argument("-u", "--user-data", action=_Once, help="the user data the response must carry")
    k.add_argument(
        "--secret", action=_List, default=[], help="add-secret requests, in the order they were added"
    )
    k.add_argument("--secret-store-locked", type=_bool, metavar="BOOL", help="the secret store's lock state")
    k.add_argument("--firmware", action=_Flag, help="check the firmware state (zuv: against this zuv)")
    k.add_argument("--firmware-check-version", "--fw-ver", choices=("1", "2"), default=None)
    k.add_argument(
        "--firmware-verify-url", metavar="URL", help="firmware verification service (zuv: refused)"
    )
    for q in (c, r, v, k):
        add_verbosity_options(q)
    return p


def _check_rules(a: argparse.Namespace) -> None:
    if a.command == "create":
        check_certificate_rules(a)
    elif a.command == "perform":
        io_path(a, "input"), io_path(a, "output")
        if a.image is None and a.guest is None:
            raise _UsageError(
                "zuv: the guest that performs it: --image IMAGE (a fresh guest) or --guest FILE"
            )
    elif a.command == "check":
        io_path(a, "input"), io_path(a, "output")
        if a.host_key_check and not a.hkds:
            raise _UsageError("the argument '--host-key-check' requires '--host-key-document <FILE>'")
        if a.secret and a.secret_store_locked is None:
            raise _UsageError("the argument '--secret <FILE>' requires '--secret-store-locked <BOOL>'")
        if (a.firmware_check_version or a.firmware_verify_url) and not a.firmware:
            raise _UsageError(
                "the argument '--firmware-check-version' and '--firmware-verify-url' require '--firmware'"
            )


def _create(a: argparse.Namespace) -> int:
    paf = A.PAF_NONCE
    for flag in a.add_data:
        paf |= ADD_DATA_FLAGS[flag]
    keys = host_keys_from_documents(a, "pvattest")
    req = A.build_arcb(keys, rng=_rng(a.seed), paf=paf)
    write_file(
        a.output, A.exchange_request(req.data, A.MEASUREMENT_SIZE, A.additional_data_size(paf)), "request"
    )
    write_file(a.arpk, req.protection_key.expose(), "protection key")
    warn(a, "Successfully generated the request")
    return EXIT_OK


def _perform(a: argparse.Namespace) -> int:
    from emulator.attest.local import LocalSecureGuest, UltravisorRefused

    inp, outp = io_path(a, "input"), io_path(a, "output")
    ex = A.parse_exchange(read_file(inp, "request"))
    if ex.is_response:
        raise ToolError(f"{inp} is a response already, not a request")
    user = read_file(a.user_data, "user data") if a.user_data else b""
    if len(user) > A.USER_DATA_MAX:
        raise ToolError(f"user data has {len(user)} bytes, at most 256 are allowed")
    if a.guest is not None:  # a booted guest (its secret store as pvsecret add/lock left it)
        from emulator.attest.pvsecret_guest import GuestFileError, open_guest

        try:
            g = open_guest(a.guest, a.image, a.machine, a.seed).guest
        except GuestFileError as exc:
            raise ToolError(str(exc)) from None
        assert g is not None
    else:
        try:
            g = LocalSecureGuest(a.machine, read_file(a.image, "SE image"), seed=a.seed)
        except Exception as exc:  # noqa: BLE001 - UvCallError, image errors: the machine refused the image
            raise ToolError(f"cannot start {a.image} on {a.machine}: {exc}") from None
    try:
        out, evidence = g.attest(ex, user, evidence=bool(a.evidence))
    except UltravisorRefused as exc:
        raise ToolError(str(exc)) from None
    write_file(outp, out, "response")
    if a.evidence and evidence is not None:
        write_file(a.evidence, evidence, "evidence")
    return EXIT_OK


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
        raise ToolError(
            "the protection key does not open the request in the response (wrong ARPK?)"
        ) from None
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
            evidence=read_file(a.evidence, "evidence"),
            roots=pki.load_certificates(read_file(root_path, "root CA")),
            cas=cas,
            crls=crls,
            now=a.time,
            require_crl=not a.no_crl_check,
        )
    try:
        res = check_attestation(
            tags=tags, measurement_key=secrets.measurement_key, nonce=secrets.nonce, paf=secrets.paf,
            measurement=ex.measurement or b"", cuid=ex.cuid or b"", user_data=ex.user or b"",
            additional=ex.additional or b"", **kw,
        )  # fmt: skip
    except AttestationMismatch as m:
        warn(a, "Attestation measurement verification failed. Calculated and received attestation "
                f"measurement are not equal. ({m.field}: {m.reason})")  # fmt: skip
        return EXIT_MISMATCH
    warn(a, "Attestation measurement verified" + (" (with signed evidence)" if a.evidence else ""))
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
    warn(a, _result_display(ex, res.additional)[:-1])
    if a.output:
        write_file(a.output, text.encode(), "result")
    if a.user_data:
        if ex.user:
            write_file(a.user_data, ex.user, "user data")
        else:
            warn(a, "Location for `user-data` specified, but respose does not contain any user-data")
    return EXIT_OK


def _hkd_hash(path: str) -> bytes:
    """The host-key hash (SHA-256 of the P-521 key's X || Y) of a host-key document's first certificate."""
    cert = pki.load_certificates(read_file(path, "host-key document"), f"host-key document {path}")[0]
    key = cert.public_key()
    if not isinstance(key, EllipticCurvePublicKey):
        raise ToolError(f"host-key document {path}: its key is not an EC key")
    return phkh(key)


def _host_key_check(a: argparse.Namespace, item: str, add: dict[str, bytes], hashes, issues: list[str]):
    """pvattest check's host-key check of one additional-data item: None (nothing to report) or its entry."""
    if not a.hkds:
        return None
    kind = "image" if item == "image_phkh" else "attestation"
    enforced = item in (HOST_KEY_CHECKS[c] for c in a.host_key_check)
    phkh_value = add.get(item)
    if phkh_value is None:
        if enforced:
            issues.append(f"The Attestation result does not contain an {kind} public host-key hash, "
                          "but checking was enabled.")  # fmt: skip
            return None
        return None
    hits = [path for path, h in hashes if h == phkh_value]
    if len(hits) != 1:
        issues.append(f"{'No' if not hits else 'More than one'} given host-key document matches the given "
                      f"{kind} public host-key hash")  # fmt: skip
        return None
    return {"check_enforced": enforced, "hash": hits[0]}


def _check(a: argparse.Namespace) -> int:
    inp, outp = io_path(a, "input"), io_path(a, "output")
    assert inp is not None and outp is not None
    if a.firmware_verify_url:
        raise ToolError("zuv checks the firmware state itself and contacts no verification service "
                        "(drop --firmware-verify-url)")  # fmt: skip
    ex = A.parse_exchange(read_file(inp, "attestation response"))
    if not ex.is_response:
        raise ToolError(f"{inp} is a request, not an attestation response")
    paf = A.parse_arcb(ex.arcb).paf
    add = A.split_additional_data(paf, ex.additional) if ex.additional else {}
    issues: list[str] = []
    hashes = [(path, _hkd_hash(path)) for path in a.hkds]
    result: dict[str, Any] = {"successful": True, "issues": issues}
    for key, item in (("image_host_key", "image_phkh"), ("attest_host_key", "attestation_phkh")):
        entry = _host_key_check(a, item, add, hashes, issues)
        if entry is not None:
            result[key] = entry
    if a.user_data:
        if read_file(a.user_data, "user-data") != (ex.user or None):
            issues.append(
                "The Provided user data does not match the user data from the attestation response."
            )
        else:
            result["user_data"] = "0x" + (ex.user or b"").hex()
    if a.secret_store_locked is not None:
        if "secret_store_hash" not in add:
            issues.append("The Attestation response contains no secret-store-hash, but checking was enabled")
        else:
            tags = [A.parse_asrcb(read_file(f, "Add-secret request")).tag for f in a.secret]
            if A.secret_store_hash(tags, a.secret_store_locked) != add["secret_store_hash"]:
                issues.append("The calculated secret-store-hash does not match with the provided hash")
            else:
                result["secret_store"] = {
                    "add_secret_requests": list(a.secret),
                    "locked": a.secret_store_locked,
                }
    if a.firmware:
        state = add.get("firmware_state")
        if state is None:
            issues.append("The Attestation response contains no firmware hash, but checking was enabled")
            result["valid_firmware"] = False
        else:
            from firmware.uv_attest import firmware_digest

            ok = (
                state[:16] == A.firmware_state(firmware_digest(), ())[:16]
                and state[16:80] == firmware_digest()
            )
            if not ok:
                issues.append("The firmware is not in a valid state (zuv: not the firmware of this zuv)")
            result["valid_firmware"] = ok
    result["successful"] = not issues
    if not issues:
        del result["issues"]
    for issue in issues:
        warn(a, f"\u2718 {issue}")
    write_file(outp, check_result_yaml(result).encode(), "check result")
    if issues:
        warn(a, "\u2718 The Attestation response does not fulfill all policies")
        return EXIT_MISMATCH
    warn(a, "\u2713 The Attestation response fulfills all policies")
    return EXIT_OK


def check_result_yaml(result: dict[str, Any]) -> str:
    """pvattest check's result as its serde_yaml writes it: keys in order, lists as block sequences at the
    key's indentation, hex strings and paths quoted when YAML would read them otherwise."""
    lines: list[str] = []

    def emit(key: str, value: Any, indent: str) -> None:
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            for k, v in value.items():
                emit(k, v, indent + "  ")
        elif isinstance(value, list):
            if not value:
                lines.append(f"{indent}{key}: []")
            else:
                lines.append(f"{indent}{key}:")
                lines.extend(f"{indent}- {yaml_scalar(str(v))}" for v in value)
        elif isinstance(value, bool):
            lines.append(f"{indent}{key}: {'true' if value else 'false'}")
        else:
            lines.append(f"{indent}{key}: {yaml_scalar(str(value))}")

    for k, v in result.items():
        emit(k, v, "")
    return "\n".join(lines) + "\n"


_ADD_TITLES = {"image_phkh": "Image PHKH", "attestation_phkh": "Attestation PHKH",
               "secret_store_hash": "Secret store hash", "firmware_state": "Firmware state",
               "unrecognized": "Unrecognized"}  # fmt: skip


def _result_display(ex: A.Exchange, fields: dict[str, bytes]) -> str:
    """What pvattest verify prints after 'Attestation measurement verified' (AttestationResult's Display)."""
    out = f"Config UID:\n0x{(ex.cuid or b'').hex()}\n"
    if ex.additional:
        out += f"Additional-data:\n0x{ex.additional.hex()}\nAdditional-data content:\n"
        out += (
            "".join(f"{_ADD_TITLES[k]}\n0x{v.hex()}\n" for k, v in fields.items() if k in _ADD_TITLES) + "\n"
        )
    if ex.user:
        out += f"user-data:\n0x{ex.user.hex()}\n"
    return out + "\n"


def pvattest_main(argv: Sequence[str] | None = None) -> int:
    """``pvattest create|perform|verify|check``: exit 0 ok, 2 measurement mismatch or policy not fulfilled,
    1 every other error (usage errors included, as s390-tools)."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        if version_request(args):
            sys.stdout.write(f"pvattest version {S390_TOOLS_VERSION} (zuv emulation)\n")
            return EXIT_OK
        a = _parser().parse_args(args)
        deprecated_v_warning(a.verbose_old)
        if a.version:
            raise _UsageError("unexpected argument '--version'")
        if a.command is None:
            raise _UsageError("a subcommand is required: create, perform, verify or check")
        _check_rules(a)
        commands = {"create": _create, "perform": _perform, "verify": _verify, "check": _check}
        return commands[a.command](a)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except _UsageError as exc:
        _err("pvattest", f"error: {exc}")
        return EXIT_USAGE
    except (ToolError, A.RequestFormatError, MachineIdentityError, pki.PkiFormatError, CryptoError) as exc:
        _err("pvattest", f"error: {exc}")
        return EXIT_ERROR
    except pki.PkiError as exc:
        _err("pvattest", f"error: host-key document verification failed: {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(pvattest_main())

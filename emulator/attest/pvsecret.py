"""The pvsecret tool of zuv (also ``zuv pvsecret``): ``create`` add-secret requests, ``info`` to show one.

``create`` has pvsecret's shape: ``pvsecret create -k HKD --hdr IMAGE -o OUT [options] SECRET`` with
SECRET one of ``meta``, ``association NAME``, ``retrievable NAME --secret FILE --type TYPE`` and
``update-cck --secret FILE``. The request is bound to the image's PLD/ALD/TLD and header tag, and with
``--cuid-hex`` / ``--cuid`` to one guest instance (the CUID from its attestation). ``--cck`` derives the
extension secret from the image's customer communication key; ``--extension-secret`` gives it raw.

Exit status: 0 success, 1 error (as pvsecret), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from emulator.attest import pvsecret_guest as G
from emulator.attest import userdata, yamlin
from emulator.attest.local import UltravisorRefused
from emulator.attest.pvattest import (
    EXIT_USAGE,
    ToolError,
    add_certificate_options,
    add_verbosity_options,
    check_certificate_rules,
    host_keys_from_documents,
    image_tags,
    io_path,
    read_file,
    write_file,
    yaml_scalar,
)
from emulator.image import pki
from emulator.image.pvimg import _Parser, _UsageError
from emulator.image.pvimg_cli import S390_TOOLS_VERSION, _Flag, _Once, version_request
from emulator.image.toollog import deprecated_v_warning, info, warn
from firmware import attestation as A
from firmware.crypto import CryptoError, DeterministicRng, Secret, SystemRng, sha256
from firmware.machine_identity import MachineIdentityError

__all__ = ["pvsecret_main", "ec_secret", "secret_info_yaml"]

_AES = {16: 0x04, 24: 0x05, 32: 0x06}
_XTS = {32: 0x07, 64: 0x08}
_HMAC = {64: 0x09, 128: 0x0A}


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def ec_secret(data: bytes) -> tuple[int, bytes]:
    """(secret type, value) of an EC private key file (PEM or DER): the scalar, left-padded (spec 10.3)."""
    try:
        key = (
            serialization.load_pem_private_key(data, None)
            if b"-----BEGIN" in data
            else serialization.load_der_private_key(data, None)
        )
    except (ValueError, TypeError) as exc:
        raise ToolError(f"not an unencrypted private key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sizes = {"secp256r1": (0x11, 32), "secp384r1": (0x12, 48), "secp521r1": (0x13, 80)}
        if key.curve.name not in sizes:
            raise ToolError(f"curve {key.curve.name} is not supported (P-256, P-384, P-521)")
        t, n = sizes[key.curve.name]
        return t, key.private_numbers().private_value.to_bytes(n, "big")
    raw = serialization.Encoding.Raw
    fmt = serialization.PrivateFormat.Raw
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return 0x14, key.private_bytes(raw, fmt, serialization.NoEncryption())
    if isinstance(key, ed448.Ed448PrivateKey):
        return 0x15, key.private_bytes(raw, fmt, serialization.NoEncryption()).rjust(64, b"\0")
    raise ToolError("only EC (P-256/384/521) and EdDSA (Ed25519/Ed448) keys can be retrievable secrets")


def _retrievable(kind: str, data: bytes) -> tuple[int, bytes]:
    if kind == "plain":
        return 0x03, A.plaintext_secret(data)
    table = {"aes": _AES, "aes-xts": _XTS, "hmac-sha": _HMAC}.get(kind)
    if table is not None:
        if len(data) not in table:
            raise ToolError(
                f"an {kind} key must be {' or '.join(str(n) for n in table)} bytes, not {len(data)}"
            )
        return table[len(data)], data
    return ec_secret(data)


def _exact_file(path: str, what: str, size: int) -> bytes:
    """A key file of exactly ``size`` bytes, refused as s390-tools' ``read_exact_file`` refuses others."""
    raw = read_file(path, what)
    if len(raw) != size:
        raise ToolError(f"{what} must be exactly {size} bytes long ({path} has {len(raw)})")
    return raw


def _cuid(a: argparse.Namespace) -> bytes | None:
    if a.cuid_hex:
        text = a.cuid_hex.removeprefix("0x")
        if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
            raise ToolError("--cuid-hex needs 32 hex digits (leading zeros included)")
        return bytes.fromhex(text)
    if a.cuid:
        raw = read_file(a.cuid, "CUID file")
        if len(raw) == 16:
            return raw
        try:  # as pvsecret: serde_yaml reads it (JSON is YAML too), then the first 'cuid' in its mappings
            value = yamlin.load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yamlin.YamlError) as exc:
            raise ToolError(f"{a.cuid}: The CUID-file does not contain a 128bit value or a yaml with a "
                            f"'cuid' field ({exc})") from None  # fmt: skip
        try:
            return yamlin.cuid_from_yaml(value)
        except yamlin.CuidError as exc:
            raise ToolError(f"{a.cuid}: {exc}") from None
    return None


def _flags(text: str) -> list[str]:
    items = text.split(",")
    for item in items:
        if item != "disable-dump":
            raise argparse.ArgumentTypeError(
                f"invalid value '{item}' for '--flags' (possible values: disable-dump)"
            )
    return items


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pvsecret",
        description="Create, verify and use add-secret requests for IBM Secure Execution guests (zuv).",
    )
    add_verbosity_options(p, top=True)
    p.add_argument("--version", action="store_true", help="print version information and exit")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("create", help="create an add-secret request")
    add_certificate_options(c)
    c.add_argument("--hdr", action=_Once, required=True, help="the SE image (or header) of the target guest")
    c.add_argument(
        "-f", "--force", action=_Flag, help="accepted (zuv never runs inside a secure guest)"
    )
    c.add_argument("-o", "--output", action=_Once, required=True, help="write the request to FILE")
    ext = c.add_mutually_exclusive_group()
    ext.add_argument("--extension-secret", help="32-byte extension secret FILE")
    ext.add_argument("--cck", help="32-byte customer communication key FILE: derive the extension secret")
    cu = c.add_mutually_exclusive_group()
    cu.add_argument("--cuid-hex", help="bind to the guest instance with this configuration unique ID")
    cu.add_argument("--cuid", help="FILE with the CUID (16 bytes, or YAML/JSON with a cuid entry)")
    c.add_argument("--flags", action="extend", type=_flags, default=[], help="disable-dump (comma list)")
    c.add_argument("--pcf", action=_Once, help=argparse.SUPPRESS)  # pvsecret's hidden raw request flags
    c.add_argument("--user-data", action=_Once, help="user data FILE: 512 bytes unsigned, 256 (128 with RSA "
                                                      "3072) signed with --user-sign-key")  # fmt: skip
    c.add_argument("--user-sign-key", action=_Once, help="sign the user data with this EC P-521 or RSA "
                                                          "2048/3072 private key (PEM or DER)")  # fmt: skip
    c.add_argument("--policy", action=_Once,
                   help="user data: a reference to this policy FILE (its SHA-256 and its path), as Early "
                        "Boot Customization reads it")  # fmt: skip
    c.add_argument("--toc-policy", action=_Once, help="append the request's tag (hex) as a line to this TOC "
                                                       "policy FILE")  # fmt: skip
    c.add_argument("--use-name", action=_Flag, help="use the name itself as secret ID (no hash)")
    c.add_argument("--seed", help="zuv: derive every random value from this seed (reproducible requests)")
    s = c.add_subparsers(dest="secret", required=True)
    s.add_parser("meta", help="no secret: only flags, extension secret or lock-in")
    asc = s.add_parser("association", help="an association secret (AP crypto adapters)")
    asc.add_argument("name")
    asc.add_argument("--stdout", action=_Flag, help="print the secret info, no NAME.yaml")
    io = asc.add_mutually_exclusive_group()
    io.add_argument("--input-secret", help="32-byte secret FILE (default: random)")
    io.add_argument("--output-secret", help="save the generated secret to FILE")
    ret = s.add_parser("retrievable", aliases=["retr"], help="a secret the guest can retrieve")
    ret.add_argument("name")
    ret.add_argument("--stdout", action=_Flag, help="print the secret info, no NAME.yaml")
    ret.add_argument("--secret", required=True, dest="secret_path", help="the secret FILE")
    ret.add_argument(
        "--type", required=True, dest="kind", choices=("plain", "aes", "aes-xts", "hmac-sha", "ec")
    )
    cck = s.add_parser("update-cck", aliases=["cck"], help="replace the guest's CCK")
    cck.add_argument("--secret", required=True, dest="secret_path", help="the new 32-byte CCK FILE")
    for q in {id(x): x for x in s.choices.values()}.values():  # clap's global -v/-q, also after these
        add_verbosity_options(q)

    v = sub.add_parser("verify", help="verify that a file is an add-secret request; print its user data")
    v.add_argument("-i", "--input", action=_Once, help="the request ('-': stdin)")
    v.add_argument("input_pos", nargs="?", metavar="INPUT", help="the request (instead of -i)")
    v.add_argument("--user-cert", action=_Once, help="certificate of the key that signed the user data")
    v.add_argument("-o", "--output", action=_Once, help="write the user data to FILE (default: stdout)")
    v.add_argument("output_pos", nargs="?", metavar="OUTPUT", help="the user data file (instead of -o)")

    ad = sub.add_parser("add", help="submit an add-secret request to the Ultravisor (as the guest)")
    ad.add_argument("-i", "--input", action=_Once, help="the request ('-': stdin)")
    ad.add_argument("input_pos", nargs="?", metavar="INPUT", help="the request (instead of -i)")
    ad.add_argument("-f", "--force", action=_Flag, help="add even if a secret with that ID is stored")
    lk = sub.add_parser("lock", help="lock the secret store (as the guest)")
    ls = sub.add_parser("list", help="list the Ultravisor's secrets of the guest")
    ls.add_argument("-o", "--output", action=_Once, help="store the list in FILE (default: stdout)")
    ls.add_argument("output_pos", nargs="?", metavar="OUTPUT", help="the list file (instead of -o)")
    ls.add_argument("--format", choices=("human", "yaml", "bin"), default="human")
    rt = sub.add_parser("retrieve", aliases=["retr"], help="retrieve a secret from the UV secret store")
    rt.add_argument("-i", "--input", action=_Once, metavar="ID", help="the secret: see --inform")
    rt.add_argument("input_pos", nargs="?", metavar="INPUT", help="the secret (instead of -i)")
    rt.add_argument("-o", "--output", action=_Once, help="write the secret to FILE (default: stdout)")
    rt.add_argument("output_pos", nargs="?", metavar="OUTPUT", help="the secret file (instead of -o)")
    rt.add_argument("--inform", choices=("yaml", "hex", "name", "idx"), default="yaml",
                    help="the input is NAME.yaml from create, a hex ID, a name, or an index")
    rt.add_argument("--outform", choices=("pem", "bin"), default="pem")
    for q in (ad, lk, ls, rt):
        q.add_argument("--guest", required=True, metavar="FILE",
                       help="zuv: the secure guest's file (created by the first command with --image)")
        q.add_argument("--image", help="zuv: boot this SE image as a new guest into --guest FILE")
        q.add_argument(
            "--machine", default="zuv-demo", help="zuv: bundled machine name or directory (with --image)"
        )
        q.add_argument("--seed", type=int, help="zuv: seed of the Ultravisor's randomness (with --image)")

    i = sub.add_parser("info", help="zuv: show an add-secret request's plaintext fields")
    i.add_argument("input")
    for q in (c, v, i, ad, lk, ls, rt):
        add_verbosity_options(q)
    return p


def _request_flags(a: argparse.Namespace) -> int:
    """The request's flags: ``--flags`` by name, or pvsecret's hidden ``--pcf`` raw (hexadecimal, ``0x``
    optional, at most 16 digits; no check of which bits are defined: the Ultravisor refuses unknown ones)."""
    if a.pcf is None:
        return A.ASRCB_FLAG_DISABLE_DUMP if "disable-dump" in a.flags else 0
    digits = a.pcf[2:] if a.pcf.startswith("0x") else a.pcf
    if len(digits) > 16:
        raise ToolError(f"pcf hexstring {digits} must be max 16 chars long")
    if not digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ToolError(f"pcf: invalid hexadecimal number '{a.pcf}'")
    return int(digits, 16)


def _check_rules(a: argparse.Namespace) -> None:
    if a.command == "create":
        check_certificate_rules(a)
        if a.pcf is not None and a.flags:
            raise _UsageError("the argument '--pcf <PCF>' cannot be used with '--flags <FLAGS>'")
        if a.policy is not None and a.user_data is not None:
            raise _UsageError("the argument '--policy <FILE>' cannot be used with '--user-data <FILE>'")
        if a.secret == "association" and not a.stdout:
            if a.output_secret == f"{a.name}.yaml":
                raise _UsageError(f"Secret output file and the secret name '{a.name}.yaml' are the same.")
            if a.output == f"{a.name}.yaml":
                raise _UsageError(f"output file and the secret name '{a.output}' are the same.")
    elif a.command in ("verify", "list", "retrieve", "retr", "add"):
        if a.command != "list":
            io_path(a, "input")
        if a.command != "add":
            io_path(a, "output", required=False)
    if a.command in ("add", "lock", "list", "retrieve", "retr") and a.image is None and a.seed is not None:
        raise _UsageError("the argument '--seed' requires '--image'")


def _add(a: argparse.Namespace) -> int:
    inp = io_path(a, "input")
    assert inp is not None
    return G.cmd_add(a, _read_input(inp, "add-secret request"), a.force)


def _list(a: argparse.Namespace) -> int:
    return G.cmd_list(a, io_path(a, "output", required=False) or "-", a.format)


def _retrieve(a: argparse.Namespace) -> int:
    inp = io_path(a, "input")
    assert inp is not None
    return G.cmd_retrieve(a, inp, a.inform, io_path(a, "output", required=False) or "-", a.outform)


def _read_input(path: str, what: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else read_file(path, what)


def _verify(a: argparse.Namespace) -> int:
    inp = io_path(a, "input")
    out = io_path(a, "output", required=False) or "-"
    assert inp is not None
    data = _read_input(inp, "add-secret request")
    key = userdata.load_verifying_key(read_file(a.user_cert, "user-signing key")) if a.user_cert else None
    user = userdata.verify_request(data, key)
    if user is not None:
        if out == "-":
            sys.stdout.buffer.write(user)
            sys.stdout.flush()
        else:
            write_file(out, user, "user data")
    warn(a, "Successfully verified the request.")
    return 0


def _create(a: argparse.Namespace) -> int:
    rng = DeterministicRng(a.seed) if a.seed is not None else SystemRng()
    tags = image_tags(a.hdr)
    sid = None
    if a.secret == "meta":
        stype, value = 0x01, b""
    elif a.secret in ("update-cck", "cck"):
        stype, value = 0x16, read_file(a.secret_path, "CCK")
    else:
        sid = A.secret_id(a.name, hashed=not a.use_name)
        if a.secret == "association":
            value = read_file(a.input_secret, "secret") if a.input_secret else rng.random_bytes(32)
            stype = 0x02
            if a.output_secret:
                write_file(a.output_secret, value, "secret")
        else:
            stype, value = _retrievable(a.kind, read_file(a.secret_path, "secret"))
    ext: bytes | Secret | None = None
    if a.extension_secret is not None:  # an empty file too: it was taken as no extension secret at all
        ext = _exact_file(a.extension_secret, "extension secret", 32)
    elif a.cck is not None:
        ext = A.extension_secret_from_cck(_exact_file(a.cck, "CCK", 32), tags.tag)
    user = read_file(a.user_data, "user data") if a.user_data else b""
    if a.policy is not None:
        ref = policy_reference(a.policy)
        print(ref[:32].hex())  # noqa: T201 - as pvsecret: the policy's hash on stdout
        if not a.user_sign_key:  # as pvsecret: signed (empty) user data wins over the reference
            user = ref
    sign_kw: dict = {}
    if a.user_sign_key:
        key = userdata.load_signing_key(read_file(a.user_sign_key, "user-signing key"))
        kind = userdata.key_type(key)
        if len(user) > userdata.DATA_SIZE[kind]:
            raise ToolError(
                f"{userdata.TYPE_NAMES[kind]} user data has at most {userdata.DATA_SIZE[kind]} bytes, "
                f"{a.user_data} has {len(user)}"
            )
        sign_kw = {"user_data_type": kind, "user_signer": userdata.signer(key)}
    elif len(user) > A.ASRCB_USER_DATA_SIZE:
        raise ToolError(f"unsigned user data has at most 512 bytes, {a.user_data} has {len(user)}")
    keys = host_keys_from_documents(a, "pvsecret")
    req = A.build_asrcb(
        keys,
        tags,
        rng=rng,
        secret_type=stype,
        value=Secret(value, "secret"),
        secret_id=sid,
        cuid=_cuid(a),
        flags=_request_flags(a),
        extension_secret=ext,
        user_data=user,
        **sign_kw,
    )
    if a.toc_policy is not None:
        try:
            with open(a.toc_policy, "a", encoding="ascii") as toc:
                toc.write(req.data[-16:].hex() + "\n")
        except OSError as exc:
            raise ToolError(f"cannot write TOC policy {a.toc_policy}: {exc.strerror}") from None
    warn(a, "Successfully generated the request")
    write_file(a.output, req.data, "request")
    info(a, f"Successfully wrote the request to '{a.output}'")
    if sid is not None:
        _write_secret_info(a, stype, sid)
    return 0


_RETR_NAMES = G.RETR_NAMES

#: a policy reference fills the 512 bytes of unsigned user data: SHA-256 of the file, then its path
POLICY_REFERENCE_SIZE = A.ASRCB_USER_DATA_SIZE


def policy_reference(path: str) -> bytes:
    """``--policy FILE``'s user data (s390-tools' ``PolicyReference``): the file's SHA-256 (32 bytes), then
    the path as given, its bytes cut to the 480 left and zero-padded to them."""
    digest = sha256(read_file(path, "policy"))
    name = os.fsencode(path)[: POLICY_REFERENCE_SIZE - len(digest)]
    return (digest + name).ljust(POLICY_REFERENCE_SIZE, b"\0")


def secret_info_yaml(name: str, stype: int, sid: bytes) -> str:
    """The non-confidential secret information as pvsecret writes it (serde_yaml of its GuestSecret):
    ``!Association`` or ``!Retrievable`` with ``kind`` "N (NAME)", ``name`` and the quoted ``id``."""
    lines = ["!Association" if stype == 0x02 else "!Retrievable"]
    if stype != 0x02:
        lines.append(f"kind: {stype} ({_RETR_NAMES[stype]})")
    lines += [f"name: {yaml_scalar(name)}", f"id: {yaml_scalar('0x' + sid.hex())}"]
    return "\n".join(lines) + "\n"


def secret_info_path(output: str, name: str) -> Path:
    """Where pvsecret writes NAME.yaml: beside the request, blanks as '_', and the extension set as Rust's
    ``PathBuf::set_extension`` sets it, replacing one the name has (``my.key`` -> ``my.yaml``, ``x.`` ->
    ``x.yaml``; ``.hidden`` -> ``.hidden.yaml``)."""
    gen = "".join("_" if c.isspace() and c not in "\x1c\x1d\x1e\x1f" else c for c in name)  # Rust's set
    path = Path(output).parent / gen
    base = path.name
    dot = base.rfind(".")
    if base not in ("", "..") and dot > 0:
        base = base[:dot]
    return path.with_name(base + ".yaml") if base else Path(str(path) + ".yaml")


def _write_secret_info(a: argparse.Namespace, stype: int, sid: bytes) -> None:
    """``--stdout``: print the secret information; else write it to NAME.yaml (blanks as '_') beside the
    request, as pvsecret does."""
    text = secret_info_yaml(a.name, stype, sid)
    if getattr(a, "stdout", False):
        sys.stdout.write(text + "\n")
        return
    path = secret_info_path(a.output, a.name)
    write_file(path, text.encode(), "secret information")
    warn(a, f"Successfully wrote secret info to '{path}'")


def _info(a: argparse.Namespace) -> int:
    r = A.parse_asrcb(read_file(a.input, "add-secret request"))
    st = A.SECRET_TYPES.get(r.secret_header.type)
    _say(f"add-secret request v{r.header.version >> 8}, {r.header.rql} bytes, {r.header.nks} key slot(s)")
    _say(f"  secret:     {st.name if st else hex(r.secret_header.type)}, {r.secret_header.length} bytes")
    if r.secret_header.id is not None and r.secret_header.type != 0x16:
        _say(f"  secret ID:  {r.secret_header.id.hex()}")
    _say(
        f"  flags:      {r.flags:#018x}"
        + (" (disable dumping)" if r.flags & A.ASRCB_FLAG_DISABLE_DUMP else "")
    )
    _say(f"  CUID:       {r.cuid.hex() if any(r.cuid) else 'any instance'}")
    for name in ("pld", "ald", "tld", "tag"):
        _say(f"  {name.upper()}:{' ' * (11 - len(name))}{getattr(r.tags, name).hex()}")
    for s in r.key_slots:
        _say(f"  key slot:   phkh {s.phkh.hex()}")
    _say(f"  request tag {r.tag.hex()}")
    return 0


def pvsecret_main(argv: Sequence[str] | None = None) -> int:
    """``pvsecret create|verify|add|lock|list|retrieve|info``: exit 0 ok, 1 every error (usage errors
    included, as s390-tools 2.43's pvsecret)."""
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        if version_request(args):
            sys.stdout.write(f"pvsecret version {S390_TOOLS_VERSION} (zuv emulation)\n")
            return 0
        a = _parser().parse_args(args)
        deprecated_v_warning(a.verbose_old)
        if a.version:
            raise _UsageError("unexpected argument '--version'")
        if a.command is None:
            raise _UsageError("a subcommand is required: create, add, lock, list, verify or retrieve")
        _check_rules(a)
        commands = {"create": _create, "verify": _verify, "info": _info, "add": _add, "lock": G.cmd_lock,
                    "list": _list, "retrieve": _retrieve, "retr": _retrieve}
        return commands[a.command](a)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except _UsageError as exc:
        sys.stderr.write(f"pvsecret: error: {exc}\n")
        return EXIT_USAGE
    except (ToolError, A.RequestFormatError, MachineIdentityError, pki.PkiFormatError, CryptoError,
            userdata.UserDataError, G.GuestFileError, UltravisorRefused) as exc:  # fmt: skip
        sys.stderr.write(f"pvsecret: error: {exc}\n")
        return 1
    except pki.PkiError as exc:
        sys.stderr.write(f"pvsecret: error: host-key document verification failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(pvsecret_main())

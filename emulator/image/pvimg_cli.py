"""The ``pvimg`` command line (create, info, test, version): s390-tools' option names, rules and exit codes.

Measured against s390-tools' ``rust/pvimg`` (cli.rs, cmd/*.rs, schema/info-v1.schema.json): exit 0 success,
1 any error at run time (unreadable or malformed input, failed verification, ``test`` found no key), 2 a
usage error. Lists are comma-separated or repeated (``-k A,B -k C``); a single-value option given twice
is a usage error. ``info`` prints JSON in the info-v1 schema (``meta``/``data``) unless stdout is a
terminal or ``--format text`` is asked for. zuv's own additions, documented as such in docs/se-image.md:
``--seed``, ``--time``, ``--pki``, ``info --host-key/--machine``, ELF kernels.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import re
import socket
import sys
from pathlib import Path
from typing import Sequence

from emulator.image.info_schema import info_schema_json
from emulator.image.pvimg import (
    ImageError,
    _Parser,
    _read,
    _rng,
    _run,
    _time,
    _UsageError,
    build_image,
    host_keys_from_hkds,
    read_se_header,
)
from firmware.crypto import EllipticCurvePrivateKey, Secret, phkh, private_key_from_pem
from firmware.machine_identity import BUNDLED, MachineIdentity
from firmware.se_header import (
    PCF_ALLOW_DUMPING,
    PCF_BACKUP_KEYS,
    PCF_DEFAULT,
    PCF_NO_COMP_ENCRYPTION,
    PCF_PCKMO_AES,
    PCF_PCKMO_DEA_TDEA,
    PCF_PCKMO_ECC,
    PCF_PCKMO_HMAC,
    SCF_CCK_EXTENSION_SECRET,
    SCF_CCK_UPDATE,
    SeHdrEncrypted,
    SeHeader,
    decrypt_with_protection_key,
    open_header,
)

from . import pki
from .toollog import deprecated_v_warning, info, warn

__all__ = ["S390_TOOLS_VERSION", "UV_KEY_HASHES", "UV_KEYS_ALL", "info_document", "pvimg_main"]

#: the s390-tools release whose pvimg command line and formats this module follows
S390_TOOLS_VERSION = "2.43.0"
#: Query Ultravisor Keys as Linux shows it: the host key hash, the backup host key hash and 13 more, each a
#: line of 64 hexadecimal digits
UV_KEYS_ALL = "/sys/firmware/uv/keys/all"
UV_KEY_HASHES = 15

_VERBOSITY = re.compile(r"-[vqV]+|--verbose|--quiet")


def version_request(args: Sequence[str]) -> bool:
    """Whether the command line asks for the version: s390-tools' tools take ``--version`` (or ``version``)
    as a subcommand, so it stands alone but for their global ``-v``/``-q``/``-V``, before or after it;
    ``-v`` with ``-q`` is still a usage error."""
    rest = [x for x in args if not _VERBOSITY.fullmatch(x)]
    if rest not in (["--version"], ["version"]):
        return False
    flags = "".join(x[2] if x.startswith("--") else x[1:] for x in args if _VERBOSITY.fullmatch(x))
    if "v" in flags and "q" in flags:
        raise _UsageError("the argument '--quiet' cannot be used with '--verbose'")
    deprecated_v_warning(flags.count("V"))
    return True


# ------------------------------------------------------------------------------------------------ actions


class _Once(argparse.Action):
    """A single-value option: given twice is a usage error (as clap's)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_seen_{self.dest}", False):
            raise _UsageError(f"the argument '{option_string}' cannot be used multiple times")
        setattr(namespace, f"_seen_{self.dest}", True)
        setattr(namespace, self.dest, values)


class _Flag(argparse.Action):
    """A flag: given twice (by either of its names) is a usage error, as clap's ``SetTrue`` flags are in
    s390-tools' pvimg, pvattest and pvsecret (``--overwrite --overwrite``: exit 2 in pvimg, 1 in the
    others)."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None):  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_seen_{self.dest}", False):
            raise _UsageError(f"the argument '{self.option_strings[-1]}' cannot be used multiple times")
        setattr(namespace, f"_seen_{self.dest}", True)
        setattr(namespace, self.dest, True)


class _List(argparse.Action):
    """A repeatable option whose values are also comma-separated (``-k A,B -k C``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        parts = values.split(",")
        if any(not p for p in parts):
            raise _UsageError(f"an empty file name in '{option_string} {values}'")
        setattr(namespace, self.dest, items + parts)


def _flag_pairs() -> tuple[tuple[str, str], ...]:
    return (
        ("dump", "Secure Execution guest dump support (PCF bit 34); needs --cck or --enable-cck-update"),
        ("cck-extension-secret", "add-secret requests must give the CCK extension secret (SCF bit 1)"),
        ("cck-update", "CCK update support (SCF bit 2)"),
        ("pckmo", "the DEA, TDEA, AES and ECC PCKMO key encryption functions (PCF bits 56-58, default on)"),
        ("pckmo-hmac", "the HMAC PCKMO key encryption function (PCF bit 59)"),
        ("backup-keys", "backup target keys (PCF bit 62)"),
        ("image-encryption", "encryption of the image components (PCF bit 35 clear, default on)"),
    )


def _add_global(p: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q (and the old -V) anywhere on the line, as clap's global options; counted over both places."""
    default = 0 if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="count", default=default, help="provide more detailed output")
    p.add_argument("-q", "--quiet", action="count", default=default, help="provide less output")
    p.add_argument("-V", dest="verbose_old", action="count", default=default, help=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pvimg", description="Create and inspect IBM Secure Execution images (zuv emulation).")
    p.add_argument("--version", action="store_true", help="print version information and exit")
    _add_global(p, top=True)
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("create", help="create an IBM Secure Execution image",
                       description="Create an IBM Secure Execution image (like pvimg create).")  # fmt: skip
    _add_global(c)
    c.add_argument("-i", "--kernel", "--image", dest="kernel", action=_Once,
                   help="Linux kernel: raw binary s390x kernel (zuv also takes an s390x ELF)")  # fmt: skip
    c.add_argument("-r", "--ramdisk", action=_Once, help="Linux initial RAM disk")
    c.add_argument("-p", "--parmfile", action=_Once, help="Linux kernel command line file")
    c.add_argument("-o", "--output", action=_Once, help="write the image to FILE")
    c.add_argument("-k", "--host-key-document", dest="hkds", action=_List, default=[],
                   help="host-key document (repeat or comma-separate for several machines)")  # fmt: skip
    c.add_argument("--no-verify", action=_Flag, help="do not verify the host-key documents (unsafe)")
    c.add_argument("-C", "--cert", "--crt", dest="cert", action=_List, default=[],
                   help="IBM Z signing-key or intermediate CA certificate")  # fmt: skip
    c.add_argument("--crl", action=_List, default=[], help="certificate revocation list")
    c.add_argument("--offline", action=_Flag, help="make no attempt to download CRLs (zuv never does)")
    c.add_argument("--root-ca", action=_Once, help="root CA (default: zuv's emulated root CA)")
    c.add_argument("--pki", action=_Once, help="zuv: certificates, CRLs and root CA from this PKI directory")
    c.add_argument("--no-component-check", action=_Flag, help="disable the input component checks")
    c.add_argument("--overwrite", action=_Flag, help="overwrite an existing image")
    c.add_argument("--cck", "--comm-key", dest="cck", action=_Once, help="communication key (32 bytes)")
    c.add_argument("--hdr-key", "--x-header-key", dest="hdr_key", action=_Once,
                   help="SE header protection key (32 bytes; default random)")  # fmt: skip
    c.add_argument("--image-key", "--x-comp-key", dest="image_key", action=_Once,
                   help="image encryption key (64 bytes; default random)")  # fmt: skip
    for flag, help_ in _flag_pairs():
        c.add_argument(f"--enable-{flag}", action=_Flag, help=f"enable {help_}")
        c.add_argument(f"--disable-{flag}", action=_Flag, help=f"disable {help_}")
    c.add_argument("--x-pcf", action=_Once, help=argparse.SUPPRESS)
    c.add_argument("--x-scf", action=_Once, help=argparse.SUPPRESS)
    c.add_argument("--x-psw", action=_Once, help=argparse.SUPPRESS)
    c.add_argument("--x-bootloader-directory", type=Path, action=_Once, help=argparse.SUPPRESS)
    c.add_argument("--seed", action=_Once, help="zuv: derive random values from this seed")
    c.add_argument("--time", type=_time, action=_Once, help="zuv: verify at this time (ISO 8601)")

    i = sub.add_parser("info", help="print information about an IBM Secure Execution image",
                       description="Print the SE header of an image (JSON in the info-v1 schema unless "
                                   "stdout is a terminal).")  # fmt: skip
    _add_global(i)
    i.add_argument("input", nargs="?", help="SE image or bare SE header")
    i.add_argument("--format", action=_Once, type=_format_spec,
                   help="text, text:full, json, json:pretty, json:minify (default: text on a terminal)")
    i.add_argument("--print-schema", action=_Once, type=_schema_kind, metavar="FORMAT",
                   help="print the schema of the output FORMAT (text or json) and exit")
    i.add_argument("--hdr-key", "--key", dest="hdr_key", action=_Once,
                   help="verify the header with the header protection key given at create")  # fmt: skip
    i.add_argument("--show-secrets", action=_Flag, help="print the decrypted secrets (needs a key)")
    i.add_argument("--host-key", action=_Once, help="zuv: open the header with this host private key (PEM)")
    i.add_argument("--machine", action=_Once, help="zuv: open the header with this machine's host keys")

    t = sub.add_parser("test", help="test aspects of an IBM Secure Execution image",
                       description="Test whether an image is made for the given host keys.")  # fmt: skip
    _add_global(t)
    t.add_argument("input", help="SE image")
    t.add_argument("-k", "--host-key-document", dest="hkds", action=_List, default=[],
                   help="succeed if one of these documents' host keys has a key slot")  # fmt: skip
    t.add_argument("--key-hashes", nargs="?", const=UV_KEYS_ALL, default=None,
                   help="succeed if a hash in FILE (Query Ultravisor Keys) has a key slot")
    sub.add_parser("version", help=argparse.SUPPRESS)
    return p


def _format_spec(text: str) -> tuple[str, str]:
    kind, colon, variant = text.lower().partition(":")
    variant = variant or ("" if colon else "default")  # 'json:' names no variant: pvimg refuses it
    ok = {"text": ("default", "full"), "json": ("default", "pretty", "minify")}
    if kind not in ok or variant not in ok[kind]:
        raise argparse.ArgumentTypeError(f"invalid value '{text}' for '--format'")
    return kind, variant


def _schema_kind(text: str) -> str:
    if text not in ("text", "json"):
        raise argparse.ArgumentTypeError(f"invalid value '{text}' (possible values: text, json)")
    return text


def _check_rules(a) -> None:
    """The argument rules s390-tools' pvimg enforces (clap groups, requires, conflicts)."""
    if not a.command:
        raise _UsageError("a subcommand is required: create, info or test")
    if a.verbose and a.quiet:
        raise _UsageError("the argument '--quiet' cannot be used with '--verbose'")
    if a.command == "create":
        for opt in ("kernel", "output"):
            if getattr(a, opt) is None:
                raise _UsageError(f"the following required argument was not provided: --{opt}")
        if not a.hkds:
            raise _UsageError("the following required argument was not provided: --host-key-document")
        if not (a.no_verify or a.cert or a.pki):
            raise _UsageError("one of --no-verify or --cert is required (zuv: or --pki)")
        if a.no_verify and a.cert:
            raise _UsageError("the argument '--no-verify' cannot be used with '--cert <FILE>'")
        flags = [f for f, _ in _flag_pairs() for w in ("enable", "disable")
                 if getattr(a, f"{w}_{f.replace('-', '_')}")]  # fmt: skip
        for f, _ in _flag_pairs():
            if getattr(a, f"enable_{f.replace('-', '_')}") and getattr(a, f"disable_{f.replace('-', '_')}"):
                raise _UsageError(f"the argument '--enable-{f}' cannot be used with '--disable-{f}'")
        if flags and (a.x_pcf is not None or a.x_scf is not None):
            raise _UsageError(f"the argument '--{flags[0]}' cannot be used with '--x-pcf' or '--x-scf'")
        if a.enable_dump and not (a.cck or a.enable_cck_update):
            raise _UsageError("--enable-dump requires --cck or --enable-cck-update")
        if a.enable_cck_extension_secret and not a.cck:
            raise _UsageError("--enable-cck-extension-secret requires --cck")
        if a.enable_cck_extension_secret and a.enable_cck_update:
            raise _UsageError(
                "the argument '--enable-cck-extension-secret' cannot be used with '--enable-cck-update'"
            )
        if a.image_key and a.disable_image_encryption:
            raise _UsageError("the argument '--image-key' cannot be used with '--disable-image-encryption'")
    elif a.command == "info":
        if a.print_schema is not None:
            for opt, given in (("<INPUT>", a.input), ("--format", a.format), ("--hdr-key", a.hdr_key),
                               ("--show-secrets", a.show_secrets), ("--host-key", a.host_key),
                               ("--machine", a.machine)):  # fmt: skip
                if given:
                    raise _UsageError(f"the argument '--print-schema <FORMAT>' cannot be used with '{opt}'")
        elif a.input is None:
            raise _UsageError("a required argument was not provided: <INPUT|--print-schema FORMAT>")
        if a.hdr_key and (a.host_key or a.machine) or a.host_key and a.machine:
            raise _UsageError("give one of --hdr-key, --host-key (zuv) or --machine (zuv)")
        if a.show_secrets and not (a.hdr_key or a.host_key or a.machine):
            raise _UsageError("--show-secrets requires --hdr-key")
    elif a.command == "test":
        if not a.hkds and a.key_hashes is None:
            raise _UsageError("one of --host-key-document or --key-hashes is required")
        if a.hkds and a.key_hashes is not None:
            raise _UsageError("the argument '--key-hashes' cannot be used with '--host-key-document'")


# ------------------------------------------------------------------------------------------------ create


def _hex_u64(text: str, ctx: str) -> int:
    """An experimental option's value as pvimg reads it: hexadecimal, with or without '0x', at most 16
    digits (``--x-pcf 224`` is 0x224); a bad one is an error at run time (exit 1), not a usage error."""
    digits = text[2:] if text.startswith("0x") else text
    if len(digits) > 16:
        raise ImageError(f"{ctx} hexstring {digits} must be max 16 chars long")
    if not digits:
        raise ImageError(f"{ctx}: cannot parse integer from empty string")
    if not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ImageError(f"{ctx}: invalid digit found in string")
    return int(digits, 16)


def _pcf_scf(a) -> tuple[int, int]:
    pcf = PCF_DEFAULT if a.x_pcf is None else _hex_u64(a.x_pcf, "x-pcf")
    scf = 0 if a.x_scf is None else _hex_u64(a.x_scf, "x-scf")
    for name, bits in (
        ("dump", PCF_ALLOW_DUMPING), ("pckmo", PCF_PCKMO_DEA_TDEA | PCF_PCKMO_AES | PCF_PCKMO_ECC),
        ("pckmo_hmac", PCF_PCKMO_HMAC), ("backup_keys", PCF_BACKUP_KEYS),
    ):
        if getattr(a, f"enable_{name}"):
            pcf |= bits
        if getattr(a, f"disable_{name}"):
            pcf &= ~bits
    if a.disable_image_encryption:
        pcf |= PCF_NO_COMP_ENCRYPTION
    if a.enable_image_encryption:
        pcf &= ~PCF_NO_COMP_ENCRYPTION
    for name, bits in (("cck_extension_secret", SCF_CCK_EXTENSION_SECRET), ("cck_update", SCF_CCK_UPDATE)):
        if getattr(a, f"enable_{name}"):
            scf |= bits
        if getattr(a, f"disable_{name}"):
            scf &= ~bits
    if not (0 <= pcf < 1 << 64 and 0 <= scf < 1 << 64):
        raise ImageError("control flags must fit in 64 bits")
    return pcf, scf


def _key_file(path: str | None, size: int, what: str) -> Secret | None:
    if path is None:
        return None
    raw = _read(path, what)
    if len(raw) != size:
        raise ImageError(f"the {what} must be {size} bytes, {path} has {len(raw)}")
    return Secret(raw, what)


#: where a Linux kernel image says what it is ("S390EP", arch/s390/boot/head.S) and how long a command line
#: it takes (u64; 0: the legacy 896 bytes)
_S390EP_OFFSET, _CMDLINE_SIZE_OFFSET, _LEGACY_CMDLINE_SIZE = 0x10008, 0x10430, 896


def _check_components(kernel: bytes, parmfile: bytes | None) -> None:
    """pvimg's component check (off with ``--no-component-check``): a raw kernel must be an s390x Linux
    kernel, and the command line (the parmfile's bytes and a NUL) must fit the size the kernel announces.
    An s390x ELF kernel is zuv's own input and is not checked (pvimg refuses every ELF)."""
    if kernel[:4] == b"\x7fELF":
        return
    if len(kernel) < _CMDLINE_SIZE_OFFSET + 8 or kernel[_S390EP_OFFSET:_S390EP_OFFSET + 6] != b"S390EP":
        raise ImageError("Check for Linux kernel component has failed: no s390x Linux kernel provided "
                         "('S390EP' at 0x10008; --no-component-check turns the check off)")  # fmt: skip
    limit = int.from_bytes(kernel[_CMDLINE_SIZE_OFFSET:_CMDLINE_SIZE_OFFSET + 8], "big")
    limit = limit or _LEGACY_CMDLINE_SIZE
    if parmfile is not None:
        size = len(parmfile) + (0 if parmfile.endswith(b"\0") else 1)
        if size > limit:
            raise ImageError(f"Check for kernel cmdline component has failed: provided kernel cmdline is too "
                             f"large: {size} > {limit}")  # fmt: skip


def _create(a) -> int:
    out = Path(a.output)
    if out.exists() and not a.overwrite:
        raise ImageError(f"{out} exists; use --overwrite to replace it")
    if a.x_bootloader_directory:
        warn(a, f"Use bootloader directory: {a.x_bootloader_directory}")
    pcf, scf = _pcf_scf(a)
    cck = _key_file(a.cck, 32, "customer-communication key")
    hdr_key = _key_file(a.hdr_key, 32, "header protection key")
    image_key = _key_file(a.image_key, 64, "image encryption key")
    psw_addr = None if a.x_psw is None else _hex_u64(a.x_psw, "x-psw")
    keys = host_keys_from_hkds(a)
    if pcf & PCF_NO_COMP_ENCRYPTION:
        warn(a, "The components encryption is disabled, make sure that the components do not contain any "
                "confidential content.")  # fmt: skip
    kernel = _read(a.kernel, "kernel")
    parmfile = _read(a.parmfile, "parmfile") if a.parmfile else None
    if a.no_component_check:
        warn(a, "The component check is turned off!")
    else:
        _check_components(kernel, parmfile)
    img = build_image(
        kernel=kernel,
        ramdisk=_read(a.ramdisk, "ramdisk") if a.ramdisk else None,
        parmfile=parmfile,
        host_keys=keys,
        rng=_rng(a.seed),
        pcf=pcf,
        scf=scf,
        cck=cck,
        xts_key=image_key,
        protection_key=hdr_key,
        psw_addr=psw_addr,
        loader_dir=a.x_bootloader_directory,
        check_cmdline=not a.no_component_check,  # as pvimg: the size limit is part of the component check
    )
    try:
        out.write_bytes(img.data)
    except OSError as exc:
        raise ImageError(f"cannot write {out}: {exc.strerror}") from None
    warn(a, "Successfully generated the Secure Execution image.")
    return 0


# ------------------------------------------------------------------------------------------------ info


def _machine_keys(a) -> tuple[EllipticCurvePrivateKey, ...]:
    if a.host_key:
        return (private_key_from_pem(_read(a.host_key, "host key")),)
    m = MachineIdentity.bundled(a.machine) if a.machine in BUNDLED and not Path(a.machine).is_dir() else None
    return (m or MachineIdentity.load(a.machine)).host_keys


def info_document(hdr: SeHeader, verified: bool, secrets: SeHdrEncrypted | None = None,
                  now: _dt.datetime | None = None) -> dict:  # fmt: skip
    """``pvimg info``'s JSON document (s390-tools' info-v1 schema): ``meta`` and the header as ``data``;
    ``secrets`` (the decrypted area) makes it a ``decrypted_se_hdr``, else the area is ``cipher_data_b64``."""
    now = (now or _dt.datetime.now()).astimezone()
    h = hdr.head
    data: dict = {
        "kind": "decrypted_se_hdr" if secrets is not None else "se_hdr",
        "verified": verified,
        "magic_hex": h.magic.hex(),
        "version": f"V{h.version >> 8}" if h.version & 0xFF == 0 else f"{h.version:#x}",
        "sehs": h.sehs,
        "iv_hex": h.iv.hex(),
        "nks": h.nks,
        "sea": h.sea,
        "nep": h.nep,
        "pcf_hex": f"{h.pcf:016x}",
        "cust_pub_key": {"coord_hex": h.cust_pub_key.hex()},
        "pld_hex": h.pld.hex(),
        "ald_hex": h.ald.hex(),
        "tld_hex": h.tld.hex(),
        "keyslots": [{"phkh_hex": s.phkh.hex(), "wrpk_hex": s.wrpk.hex(), "kst_hex": s.kst.hex()}
                     for s in hdr.key_slots],  # fmt: skip
    }
    if secrets is None:
        data["cipher_data_b64"] = base64.b64encode(hdr.encrypted).decode("ascii")
    else:
        data["cck_hex"] = secrets.cck.expose().hex()
        data["xts_hex"] = secrets.xts.expose().hex()
        data["psw"] = {"mask_hex": f"{secrets.psw_mask:016x}", "addr_hex": f"{secrets.psw_addr:016x}"}
        data["scf_hex"] = f"{secrets.scf:016x}"
    data["tag_hex"] = hdr.tag.hex()
    meta = {
        "api_level": 1,
        "version": S390_TOOLS_VERSION,
        "host": socket.gethostname(),
        "time_epoch": int(now.timestamp()),
        "time": now.strftime("%Y-%m-%d %H:%M:%S%z"),
    }
    return {"meta": meta, "data": data}


#: the flag names pvimg's text shows, by MSB-0 bit, in the order it lists them
_PCF_NAMES = ((34, "allow dumping"), (35, "no component encryption"), (56, "DEA and TDEA PCKMO support"),
              (57, "AES PCKMO support"), (58, "ECC PCKMO support"), (59, "HMAC PCKMO support"),
              (62, "backup target keys support"))  # fmt: skip
_SCF_NAMES = ((1, "CCK extension secret enforced"), (2, "CCK update allowed"))


def _flag_lines(value: int, names: tuple[tuple[int, str], ...]) -> list[str]:
    """A flag word as pvimg's text lists it: one ' - name' line per known bit set, then the unknown bits
    as one binary number; no line at all when none is set (the heading is then followed by a blank)."""
    lines, known = [], 0
    for bit, name in names:
        mask = 1 << (63 - bit)
        known |= mask
        if value & mask:
            lines.append(f" - {name}")
    if value & ~known:
        lines.append(f" - unknown flags {value & ~known:#066b}")
    return lines or [""]


def _info_text(doc: dict, full: bool) -> str:
    """``pvimg info --format text[:full]`` as s390-tools 2.43 prints it (``full``: its verbose form)."""
    d = doc["data"]
    secrets = d["kind"] == "decrypted_se_hdr"
    if secrets:
        title = "decrypted" + (", integrity and authenticity verified" if d["verified"] else "")
        title += " Secure Execution header:"
    else:
        title = ("integrity and authenticity verified " if d["verified"] else "") + "Secure Execution header"
    body = [f"version: {d['version'].lstrip('V')}"]
    if full:
        body += [f"size: {d['sehs']} bytes", f"number of key slots: {d['nks']}"]
    body += ["key slots:", *(f" - target key hash: {s['phkh_hex']}" for s in d["keyslots"])]
    if full:
        coord = base64.b64encode(bytes.fromhex(d["cust_pub_key"]["coord_hex"])).decode("ascii")
        body += ["customer public key:", f"  coordinate: {coord}", f"number of component pages: {d['nep']}",
                 f"components content hash: {d['pld_hex']}", f"components address hash: {d['ald_hex']}",
                 f"components tweak hash: {d['tld_hex']}"]  # fmt: skip
    body += ["plaintext control flags:", *_flag_lines(int(d["pcf_hex"], 16), _PCF_NAMES)]
    if secrets:
        body += ["secret control flags:", *_flag_lines(int(d["scf_hex"], 16), _SCF_NAMES)]
        if full:
            psw = d["psw"]
            addr, mask = int(psw["addr_hex"], 16), int(psw["mask_hex"], 16)
            body += [f"CCK: {d['cck_hex']}", f"XTS key: {d['xts_hex']}", "PSW:",
                     f"  address: {addr:#016x}", f"  mask: {mask:#016x}"]  # fmt: skip
    elif full:
        body.append(f"encrypted data: {d['cipher_data_b64']}")
    if full:
        body.append(f"GCM tag: {d['tag_hex']}")
    return "\n".join([title, *(f"  {line}" for line in body)])


def _info(a) -> int:
    if a.print_schema == "json":
        print(info_schema_json())
        return 0
    if a.print_schema == "text":
        print("No schema for human-readable format available!")
        return 0
    info(a, f"Reading Secure Execution header {a.input}")
    header = read_se_header(_read(a.input, "image"))  # as pvimg: the header alone, the rest may be cut
    hdr = SeHeader.parse(header)
    secrets = None
    if a.hdr_key:
        key = _key_file(a.hdr_key, 32, "header protection key")
        _, secrets = decrypt_with_protection_key(header, key)  # type: ignore[arg-type]
    elif a.host_key or a.machine:
        secrets = open_header(header, _machine_keys(a)).encrypted
    verified = secrets is not None
    if not verified:
        warn(a, "WARNING: The Secure Execution header integrity and authenticity was not verified. Specify "
                "'--hdr-key' to authenticate it. Do not trust the data without verification.")  # fmt: skip
    doc = info_document(hdr, verified, secrets if a.show_secrets else None)
    kind, variant = a.format or (("text", "default") if sys.stdout.isatty() else ("json", "default"))
    if kind == "json":
        print(json.dumps(doc, separators=(",", ":")) if variant == "minify" else json.dumps(doc, indent=2))
    else:
        print(_info_text(doc, variant == "full"))
    return 0


# ------------------------------------------------------------------------------------------------ test


def _key_hashes(path: str) -> list[bytes]:
    """``/sys/firmware/uv/keys/all`` (Query Ultravisor Keys as Linux shows it): 15 lines of 64 hexadecimal
    digits, the host key hash, the backup host key hash and 13 more; read as s390-tools' pvimg reads it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if path == UV_KEYS_ALL:
            raise ImageError("Support for query UV host key hashes is not available") from None
        raise ImageError(f"cannot read key hashes {path}: No such file or directory") from None
    except OSError as exc:
        raise ImageError(f"cannot read key hashes {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageError(f"{path}: stream did not contain valid UTF-8") from None
    hashes = []
    for line in text.splitlines():  # Rust's lines(): '\n' or '\r\n', no empty line after the last
        if len(line) % 2:
            raise ImageError(f"{path}: Cannot decode hex string: Size {len(line)} is not a multiple of two")
        try:
            h = bytes.fromhex(line) if all(c in "0123456789abcdefABCDEF" for c in line) else None
        except ValueError:
            h = None
        if h is None:
            raise ImageError(f"{path}: Cannot decode hex string")
        if len(h) != 32:
            raise ImageError(f"{path}: Invalid target key hash")
        hashes.append(h)
    if len(hashes) != UV_KEY_HASHES:
        raise ImageError(f"{path}: Invalid UV key hashes ({len(hashes)} lines, not {UV_KEY_HASHES})")
    return hashes


def _test(a) -> int:
    """``pvimg test``: its report lines go to stderr, as pvimg's log does; exit 0 when a key is included."""
    hdr = SeHeader.parse(read_se_header(_read(a.input, "image")))
    hashes = {s.phkh for s in hdr.key_slots}
    ok = True
    say = (lambda line: None) if a.quiet else (lambda line: print(line, file=sys.stderr))
    if a.hkds:
        ok = False
        for path in a.hkds:
            doc = pki.load_certificate(_read(path, "host-key document"), f"host-key document {path}")
            included = phkh(pki.describe_unverified(doc).public_key) in hashes
            ok |= included
            say(f" ✓ Host key document '{path}' is included" if included
                else f" ✘ Host key document '{path}' is not included")  # fmt: skip
    if a.key_hashes is not None:
        found = False
        names = ["Host key hash", "Backup host key hash"] + ["Key hash"] * (UV_KEY_HASHES - 2)
        for name, h in zip(names, _key_hashes(a.key_hashes)):
            if h in hashes:
                found = True
                say(f" ✓ {name} 0x{h.hex()} is included")
        if not found:
            say(" ✘ None of the key hashes is included")
        ok = ok and found
    return 0 if ok else 1


# ------------------------------------------------------------------------------------------------ main


def _version() -> int:
    print(f"pvimg version {S390_TOOLS_VERSION} (zuv emulation of s390-tools' pvimg)")
    return 0


def pvimg_main(argv: Sequence[str] | None = None) -> int:
    """``pvimg create|info|test|version``: exit 0 success, 1 error or test failed, 2 usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if version_request(args):
            return _version()
    except _UsageError as exc:
        print(f"pvimg: error: {exc}", file=sys.stderr)
        return 2
    # '--key-hashes' takes its FILE only as '--key-hashes=FILE' (clap's require_equals): a word after a bare
    # '--key-hashes' is another argument
    args = [f"--key-hashes={UV_KEYS_ALL}" if x == "--key-hashes" else x for x in args]

    def handler(a) -> int:
        deprecated_v_warning(a.verbose_old)
        if a.version:
            raise _UsageError("--version takes no other argument")
        _check_rules(a)
        commands = {"create": _create, "info": _info, "test": _test, "version": lambda _: _version()}
        return commands[a.command](a)

    return _run("pvimg", args, _parser, handler, input_error=1)


def genprotimg_main(argv: Sequence[str] | None = None) -> int:
    """``pvimg create`` under the name ``genprotimg``, as s390-tools' link: ``--version`` alone prints the
    version (with anything else, or twice, a usage error), and the deprecated ``--help-all`` and
    ``--help-experimental`` are ``--help``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        if args != ["--version"]:
            print("genprotimg: error: unexpected argument", file=sys.stderr)
            return 2
        return _version()
    deprecated_help = ("--help-all", "--help-experimental")
    return pvimg_main(["create", *("--help" if x in deprecated_help else x for x in args)])

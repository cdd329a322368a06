"""The JSON Schema (draft-07) of ``pvimg info``'s JSON document, API level 1, as zuv writes and checks it.

s390-tools' ``pvimg info --print-schema json`` prints IBM's bundled ``info-v1.schema.json``; zuv does not copy
that file. This is zuv's own description of the same document (``pvimg_cli.info_document``): the names, types
and shapes IBM's pvimg 2.43 writes, checked in the tests against zuv's output and against the output of IBM's
pvimg (``tests/data/ibm``). The wording, and so the bytes ``--print-schema json`` prints, are zuv's.
"""

from __future__ import annotations

import json

__all__ = ["INFO_SCHEMA", "info_schema_json"]


def _hex(what: str, nbytes: int | None = None) -> dict:
    """A lower-case hexadecimal string, of exactly ``nbytes`` bytes when given."""
    pattern = f"^([0-9a-f]{{2}}){{{nbytes}}}$" if nbytes else "^([0-9a-f]{2})*$"
    return {"type": "string", "pattern": pattern, "description": what}


def _u64(what: str) -> dict:
    return _hex(f"{what}, a 64-bit value as 16 hexadecimal digits", 8)


_KEY_SLOT = {
    "type": "object",
    "description": "One key slot: the protection key wrapped for one host key.",
    "required": ["phkh_hex", "wrpk_hex", "kst_hex"],
    "additionalProperties": False,
    "properties": {
        "phkh_hex": _hex("SHA-256 of the host public key (its X and Y, 80 bytes each) the slot is for", 32),
        "wrpk_hex": _hex("the header protection key, encrypted for that host key", 32),
        "kst_hex": _hex("the slot's AES-GCM tag", 16),
    },
}

#: What every header document carries (``kind`` tells the two variants apart).
_COMMON = {
    "kind": {"type": "string", "enum": ["se_hdr", "decrypted_se_hdr"],
             "description": "se_hdr: the encrypted area as base64; decrypted_se_hdr: its fields"},
    "verified": {"type": "boolean",
                 "description": "true when the header's GCM tag was checked with the protection key"},
    "magic_hex": _hex("the header's magic, 'IBMSecEx' in ASCII", 8),
    "version": {"type": "string", "enum": ["V1"], "description": "the header format version"},
    "sehs": {"type": "integer", "minimum": 0, "description": "header size in bytes"},
    "iv_hex": _hex("AES-GCM initialization vector of the header", 12),
    "nks": {"type": "integer", "minimum": 0, "description": "number of key slots"},
    "sea": {"type": "integer", "minimum": 0, "description": "size of the encrypted area in bytes"},
    "nep": {"type": "integer", "minimum": 0, "description": "number of encrypted component pages"},
    "pcf_hex": _u64("plaintext control flags"),
    "cust_pub_key": {
        "type": "object",
        "description": "the customer's ECDH public key",
        "required": ["coord_hex"],
        "additionalProperties": False,
        "properties": {"coord_hex": _hex("P-521 X and Y, each left-padded to 80 bytes", 160)},
    },
    "pld_hex": _hex("SHA-512 over the component pages (page list digest)", 64),
    "ald_hex": _hex("SHA-512 over the pages' guest addresses (address list digest)", 64),
    "tld_hex": _hex("SHA-512 over the pages' XTS tweaks (tweak list digest)", 64),
    "keyslots": {"type": "array", "items": _KEY_SLOT, "description": "the key slots, nks of them"},
    "tag_hex": _hex("AES-GCM tag over the whole header", 16),
}

_REQUIRED = ["kind", "verified", "magic_hex", "version", "sehs", "iv_hex", "nks", "sea", "nep", "pcf_hex",
             "cust_pub_key", "pld_hex", "ald_hex", "tld_hex", "keyslots", "tag_hex"]  # fmt: skip

_ENCRYPTED = {
    "type": "object",
    "description": "A header whose encrypted area was not opened (no --show-secrets).",
    "required": [*_REQUIRED, "cipher_data_b64"],
    "additionalProperties": False,
    "properties": {
        **_COMMON,
        "kind": {"const": "se_hdr"},
        "cipher_data_b64": {"type": "string", "contentEncoding": "base64",
                            "description": "the encrypted area (the secrets), base64"},  # fmt: skip
    },
}

_DECRYPTED = {
    "type": "object",
    "description": "A header opened with its protection key and shown with --show-secrets.",
    "required": [*_REQUIRED, "cck_hex", "xts_hex", "psw", "scf_hex"],
    "additionalProperties": False,
    "properties": {
        **_COMMON,
        "kind": {"const": "decrypted_se_hdr"},
        "cck_hex": _hex("customer communication key", 32),
        "xts_hex": _hex("AES-256-XTS key of the image components", 64),
        "psw": {
            "type": "object",
            "description": "the PSW the guest starts with",
            "required": ["mask_hex", "addr_hex"],
            "additionalProperties": False,
            "properties": {"mask_hex": _u64("PSW mask"), "addr_hex": _u64("PSW address")},
        },
        "scf_hex": _u64("secret control flags"),
    },
}

INFO_SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "pvimg info, JSON document, API level 1 (zuv)",
    "description": "What 'pvimg info --format json' prints for an IBM Secure Execution image or header: "
                   "'meta' (who printed it, when) and 'data' (the header).",  # fmt: skip
    "type": "object",
    "required": ["meta", "data"],
    "additionalProperties": False,
    "properties": {
        "meta": {
            "type": "object",
            "required": ["api_level", "version", "host", "time_epoch", "time"],
            "additionalProperties": False,
            "properties": {
                "api_level": {"const": 1, "description": "the document's API level"},
                "version": {"type": "string", "description": "the s390-tools release followed"},
                "host": {"type": "string", "description": "host name of the machine that ran pvimg"},
                "time_epoch": {"type": "integer", "description": "when, in seconds since 1970 (UTC)"},
                "time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4}$",
                         "description": "when, as local time 'YYYY-MM-DD HH:MM:SS+hhmm'"},  # fmt: skip
            },
        },
        "data": {"oneOf": [_ENCRYPTED, _DECRYPTED]},
    },
}


def info_schema_json() -> str:
    """The schema as ``pvimg info --print-schema json`` prints it."""
    return json.dumps(INFO_SCHEMA, indent=2)

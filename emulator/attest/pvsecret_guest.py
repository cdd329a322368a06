"""The guest side of pvsecret (``add``, ``list``, ``lock``, ``retrieve``) and of ``pvattest perform``.

These are the UVCs of a booted secure guest kept in a guest file (``pvattest perform --guest``).

Real pvsecret runs these inside the secure guest and reaches the Ultravisor through /dev/uv. In zuv the
secure guest is a ``LocalSecureGuest`` (an SE image unpacked into a secure configuration of an emulated
machine) and the tools issue its guest UVCs. A guest outlives one tool run through its **guest file**
(``--guest FILE``, JSON): the image (path and SHA-256), the machine, the seed of the Ultravisor's
randomness (so the instance keeps its CUID) and every guest UVC that succeeded (Add Secret with the
request, Lock Secret Store). Each run boots the instance again and replays them, then issues its own;
what succeeded is appended. The secret store the next command sees is the one the earlier commands left,
as on a running guest. The first command with ``--image IMAGE [--machine M] [--seed N]`` and a FILE
that does not exist yet boots the guest and creates the file; ``--image`` with an existing file is a
usage error. A replay that does not end as recorded (the image or the machine changed) is refused.

Output formats as pvsecret 2.43: ``list`` human (``Total number of secrets: N``, then ``IDX TYPE:`` and
`` ID`` lines), yaml (``total_num_secrets``, ``secrets`` of ``index``/``stype``/``len``/``id``) or bin (the
UV's list: 16-byte header, 0x30-byte entries); ``retrieve`` PEM (``IBM PROTECTED KEY`` with a ``kind:``
header, or ``PLAINTEXT SECRET``) or bin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.attest.local import LocalSecureGuest, UltravisorRefused
from emulator.attest.yamlout import yaml_scalar
from emulator.image.toollog import warn
from firmware import attestation as A

__all__ = ["GuestFile", "GuestFileError", "open_guest", "list_text", "list_yaml", "retrieved_pem",
           "RETR_NAMES"]  # fmt: skip

_FORMAT = "zuv secure guest v1"
_LIST_PAGE = 4096
#: s390-tools' names of the retrievable secret types (pv_core RetrievableSecret's Display)
RETR_NAMES = {
    0x03: "PLAINTEXT", 0x04: "AES-128-KEY", 0x05: "AES-192-KEY", 0x06: "AES-256-KEY",
    0x07: "AES-XTS-128-KEY", 0x08: "AES-XTS-256-KEY", 0x09: "HMAC-SHA-256-KEY", 0x0A: "HMAC-SHA-512-KEY",
    0x11: "EC-SECP256R1-PRIVATE-KEY", 0x12: "EC-SECP384R1-PRIVATE-KEY", 0x13: "EC-SECP521R1-PRIVATE-KEY",
    0x14: "EC-ED25519-PRIVATE-KEY", 0x15: "EC-ED448-PRIVATE-KEY",
}  # fmt: skip


class GuestFileError(Exception):
    """A guest file that cannot be read, created or replayed; the message says why."""


@dataclass
class GuestFile:
    """A booted secure guest: its file, its instance and the calls replayed into it."""

    path: Path
    image: Path
    machine: str
    seed: int
    calls: list[dict[str, Any]] = field(default_factory=list)
    guest: LocalSecureGuest | None = None

    def boot(self) -> LocalSecureGuest:
        """The instance with every recorded call replayed."""
        try:
            data = self.image.read_bytes()
        except OSError as exc:
            raise GuestFileError(f"{self.path}: cannot read its image {self.image}: {exc.strerror}") from None
        try:
            g = LocalSecureGuest(self.machine, data, seed=self.seed)
        except Exception as exc:  # noqa: BLE001 - UvCallError, image and machine errors: refused as a whole
            raise GuestFileError(f"cannot boot {self.image} on {self.machine}: {exc}") from None
        for i, call in enumerate(self.calls):
            try:
                self._issue(g, call)
            except UltravisorRefused as exc:
                raise GuestFileError(
                    f"{self.path}: call {i + 1} ({call['uvc']}) no longer replays: {exc}"
                ) from None
        self.guest = g
        return g

    @staticmethod
    def _issue(g: LocalSecureGuest, call: dict[str, Any]) -> None:
        if call["uvc"] == "add_secret":
            blk = g.uvc("add_secret", addr=g.put(bytes.fromhex(call["request"])))
        else:
            blk = g.uvc("lock_secrets")
        if blk.header.rc != 0x0001:
            raise UltravisorRefused(blk)

    def call(self, uvc: str, request: bytes = b"") -> None:
        """Issue Add Secret (with ``request``) or Lock Secret Store as the guest; record it on success.

        Raises:
            UltravisorRefused: the Ultravisor's rc was not 0x0001 (nothing recorded).
        """
        assert self.guest is not None
        entry: dict[str, Any] = {"uvc": uvc}
        if uvc == "add_secret":
            entry["request"] = request.hex()
        self._issue(self.guest, entry)
        self.calls.append(entry)
        self.save()

    def save(self) -> None:
        """Write the guest file."""
        digest = hashlib.sha256(self.image.read_bytes()).hexdigest()
        doc = {
            "format": _FORMAT,
            "image": str(self.image),
            "image_sha256": digest,
            "machine": self.machine,
            "seed": self.seed,
            "cuid": "0x" + (self.guest.cuid.hex() if self.guest else ""),
            "calls": self.calls,
        }
        try:
            self.path.write_text(json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise GuestFileError(f"cannot write the guest file {self.path}: {exc.strerror}") from None

    # -- the guest's UVCs --------------------------------------------------------------------------

    def list_secrets(self) -> tuple[bytes, list[tuple[int, int, int, bytes]]]:
        """List Secrets: the raw page (header and entries) and its entries (index, type, length, ID)."""
        g = self.guest
        assert g is not None
        page = g.alloc(_LIST_PAGE, _LIST_PAGE)
        blk = g.uvc("list_secrets", start_idx=0, list_addr=page)
        if blk.header.rc not in (0x0001, 0x0100):
            raise UltravisorRefused(blk)
        raw = g.read(page, _LIST_PAGE)
        n = struct.unpack_from(">H", raw, 0)[0]
        entries = [struct.unpack_from(">HHI8x32s", raw, 16 + 0x30 * i) for i in range(n)]
        return raw[:16 + 0x30 * n], [(i, t, ln, bytes(sid)) for i, t, ln, sid in entries]

    def retrieve(self, index: int, length: int) -> bytes:
        """Retrieve Secret ``index`` (``length`` bytes, as its list entry says)."""
        g = self.guest
        assert g is not None
        buf = g.alloc(max(length, 16), 16)
        blk = g.uvc("retr_secret", secret_idx=index, buf_size=length, buf_addr=buf)
        if blk.header.rc != 0x0001:
            raise UltravisorRefused(blk)
        return g.read(buf, length)


def open_guest(path: str, image: str | None, machine: str, seed: int | None) -> GuestFile:
    """Boot the guest of an existing guest file (replaying it), or with ``image`` create one.

    Raises:
        GuestFileError: unreadable or foreign file, a changed image, a failed boot or replay.
    """
    p = Path(path)
    if image is not None:
        if p.exists():
            raise GuestFileError(f"{p} exists: --image boots a new guest into a new file (drop --image)")
        gf = GuestFile(p, Path(image).resolve(), machine, seed if seed is not None else _fresh_seed())
        gf.boot()
        gf.save()
        return gf
    try:
        doc = json.loads(p.read_text())
    except OSError as exc:
        raise GuestFileError(
            f"cannot read the guest file {p}: {exc.strerror} (boot one with --image IMAGE)"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise GuestFileError(f"{p} is not a zuv guest file") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise GuestFileError(f"{p} is not a zuv guest file")
    try:
        gf = GuestFile(p, Path(doc["image"]), str(doc["machine"]), int(doc["seed"]), list(doc["calls"]))
        for c in gf.calls:
            if c["uvc"] not in ("add_secret", "lock_secrets") or (
                c["uvc"] == "add_secret" and not re.fullmatch(r"([0-9a-f]{2})+", c["request"])
            ):
                raise ValueError(c)
    except (KeyError, TypeError, ValueError):
        raise GuestFileError(f"{p}: damaged guest file") from None
    try:
        if hashlib.sha256(gf.image.read_bytes()).hexdigest() != doc.get("image_sha256"):
            raise GuestFileError(f"{p}: its image {gf.image} changed since the guest booted")
    except OSError as exc:
        raise GuestFileError(f"{p}: cannot read its image {gf.image}: {exc.strerror}") from None
    gf.boot()
    return gf


def _fresh_seed() -> int:
    import secrets

    return secrets.randbits(63)


# -- output formats -------------------------------------------------------------------------------------


def secret_id_text(sid: bytes) -> str:
    """SecretId's Display: ``NAME | 0x…`` when the ID is a printable name (zero-padded), else ``0x…``."""
    name = sid.split(b"\0", 1)[0]
    if name and all(0x20 <= b < 0x7F or b in b"\t\n\r\x0b\x0c" for b in name) and not any(sid[len(name):]):
        return f"{name.decode()} | 0x{sid.hex()}"
    return f"0x{sid.hex()}"


def _type_name(stype: int) -> str:
    if stype == 0x02:
        return "Association"
    if stype in RETR_NAMES:
        return RETR_NAMES[stype]
    known_invalid = stype in (0x00, 0x01, 0x16)
    return f"{'Invalid' if known_invalid else 'Unknown'}(0x{stype:04x})"


def list_text(entries: list[tuple[int, int, int, bytes]], total: int) -> str:
    """pvsecret list's human format."""
    out = f"Total number of secrets: {total}\n"
    if entries:
        out += "\n"
    for idx, stype, _ln, sid in entries:
        out += f"{idx} {_type_name(stype)}:\n {secret_id_text(sid)}\n"
    return out


def list_yaml(entries: list[tuple[int, int, int, bytes]], total: int) -> str:
    """pvsecret list --format yaml (serde_yaml of SecretList)."""
    out = f"total_num_secrets: {total}\n"
    if not entries:
        return out + "secrets: []\n"
    out += "secrets:\n"
    for idx, stype, ln, sid in entries:
        out += f"- index: {idx}\n  stype: {stype}\n  len: {ln}\n  id: {yaml_scalar('0x' + sid.hex())}\n"
    return out


def retrieved_pem(stype: int, value: bytes) -> bytes:
    """pvsecret retrieve's PEM: plaintext secrets decoded from their u16-length form as ``PLAINTEXT
    SECRET``; keys as ``IBM PROTECTED KEY`` with a ``kind:`` header (OpenSSL's PEM_write_bio layout)."""
    if stype == 0x03:
        data = _plaintext(value)
        label, header = "PLAINTEXT SECRET", ""
    else:
        data, label, header = value, "IBM PROTECTED KEY", f"kind: {_type_name(stype)}\n\n"
    b64 = base64.b64encode(data).decode()
    body = "".join(b64[i:i + 64] + "\n" for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{header}{body}-----END {label}-----\n".encode()


def retrieved_bin(stype: int, value: bytes) -> bytes:
    """pvsecret retrieve --outform bin: the key as the UV gives it; a plaintext secret decoded."""
    return _plaintext(value) if stype == 0x03 else value


def _plaintext(value: bytes) -> bytes:
    """s390-tools' plaintext decoding: ``u16 len || data`` padded with zeros to the 16-byte granule; a value
    that does not look like that is given whole."""
    if len(value) < 2:
        return value
    n = struct.unpack_from(">H", value)[0]
    if n <= 8190 and n + 2 <= len(value) and len(value) - (n + 2) < 16 and not any(value[n + 2:]):
        return value[2:n + 2]
    return value


def write_out(path: str, data: bytes) -> None:
    """Write to a file, or to stdout for '-'."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise GuestFileError(f"cannot write {path}: {exc.strerror}") from None


def load_secret_id_yaml(text: str) -> tuple[str, bytes]:
    """The kind and ID of a secret-information file ``pvsecret create`` wrote (``!Retrievable``/
    ``!Association``, ``id: '0x…'``)."""
    kind = text.lstrip().split(None, 1)[0] if text.strip() else ""
    m = re.search(r"^id:\s*['\"]?0x([0-9a-fA-F]{64})['\"]?\s*$", text, re.M)
    if kind not in ("!Retrievable", "!Association") or not m:
        raise GuestFileError("not a secret-information file of pvsecret create (!Retrievable with an id)")
    return kind[1:], bytes.fromhex(m.group(1))



# -- the commands ---------------------------------------------------------------------------------------


def _say(a: Any, text: str) -> None:
    warn(a, text)


def _guest(a: Any) -> GuestFile:
    return open_guest(a.guest, a.image, a.machine, a.seed)


def cmd_add(a: Any, request: bytes, force: bool) -> int:
    """pvsecret add: refuse a request whose secret ID is in the store already (``--force``: try anyway),
    then Add Secret."""
    try:
        r = A.parse_asrcb(request)
    except A.RequestFormatError as exc:
        why = str(exc)
        raise GuestFileError(f"the input is {why}" if why.startswith("not an add-secret request")
                             else f"the input is not an add-secret request: {why}") from None  # fmt: skip
    gf = _guest(a)
    sid = (
        r.secret_header.id
        if A.SECRET_TYPES.get(r.secret_header.type) and r.secret_header.type not in (0x01, 0x16)
        else None
    )
    if sid is not None and any(e[3] == sid for e in gf.list_secrets()[1]):
        _say(a, "There is already a secret in the secret store with that id.")
        if not force:
            raise GuestFileError("Unable to add the secret due to duplicated IDs")
        _say(a, "'--force' specified: Adding the secret anyways.")
    gf.call("add_secret", request)
    _say(a, "Successfully added the secret")
    return 0


def cmd_lock(a: Any) -> int:
    """pvsecret lock: Lock Secret Store."""
    _guest(a).call("lock_secrets")
    _say(a, "Successfully locked secret store")
    return 0


def cmd_list(a: Any, output: str, fmt: str) -> int:
    """pvsecret list: List Secrets in the human, yaml or bin format."""
    raw, entries = _guest(a).list_secrets()
    total = struct.unpack_from(">H", raw, 2)[0]
    data = {
        "human": lambda: list_text(entries, total).encode(),
        "yaml": lambda: list_yaml(entries, total).encode(),
        "bin": lambda: raw,
    }[fmt]()
    write_out(output, data)
    if output != "-":
        _say(a, f"Successfully wrote the list of secrets to '{output}'")
    return 0


def cmd_retrieve(a: Any, value: str, inform: str, output: str, outform: str) -> int:
    """pvsecret retrieve: find the secret by ID (yaml, hex, name) or index, Retrieve Secret, write it."""
    gf = _guest(a)
    _raw, entries = gf.list_secrets()
    if inform == "idx":
        if not value.isdigit():
            raise GuestFileError(f"Invalid index value '{value}'")
        what, found = f"index {int(value)}", [e for e in entries if e[0] == int(value)]
    else:
        if inform == "yaml":
            try:
                text = Path(value).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise GuestFileError(
                    f"cannot read {value}: {getattr(exc, 'strerror', None) or exc}"
                ) from None
            kind, sid = load_secret_id_yaml(text)
            if kind != "Retrievable":
                raise GuestFileError(f"The file contains a {kind}-secret, which is not retrievable.")
        elif inform == "hex":
            m = re.fullmatch(r"(?:0x)?([0-9a-fA-F]{64})", value.strip())
            if not m:
                raise GuestFileError(
                    "Cannot parse SecretId information: a 32-byte (64 hex digits) ID is required"
                )
            sid = bytes.fromhex(m.group(1))
        else:
            sid = value.encode()[:31].ljust(32, b"\0")
        found = [e for e in entries if e[3] == sid]
        if not found and inform == "name":
            found = [e for e in entries if e[3] == A.secret_id(value)]
        what = f"ID 0x{sid.hex()}"
        if len(found) > 1:
            _say(a, "There are multiple secrets in the secret store with that id. Indices: "
                 + ", ".join(str(e[0]) for e in found))  # fmt: skip
    if not found:
        raise GuestFileError(
            f"Could not retrieve the secret from the UV secret store: the UV secret-store has no "
            f"secret with the {what}"
        )
    idx, stype, length, _sid = found[0]
    secret = gf.retrieve(idx, length)
    write_out(output, retrieved_pem(stype, secret) if outform == "pem" else retrieved_bin(stype, secret))
    return 0

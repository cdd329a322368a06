"""The per-configuration secret store and the guest's secret UVCs (0x1031, 0x1033, 0x1034, 0x1035).

Add Secret (0x1031), List Secrets (0x1033), Lock Secret Store (0x1034), Retrieve Secret (0x1035).

Add Secret checks, in this order (spec 10.5 lists the codes; the order and the rrcs are zuv's, see
``docs/attestation.md``)::

    0x0102 store locked                  0x010D dump in progress             0x0103 header inaccessible
    0x0104 magic / version / user-data type                                  0x0106 nks 0
    0x0105 rql outside what nks allows   0x0103 request body not accessible  0x0107 unsupported flag
    0x0109 unsupported secret type       0x010A invalid length for the type  0x0105 sea / rql do not add up
    0x0108 no host key opens it, or the tag does not authenticate
    0x0101 not allowed: rrc 1 image (PLD/ALD/TLD/tag) differs, 2 CUID differs, 3 extension secret differs,
           4 CCK update not enabled by the SE header (SCF bit 2)
    0x010B store full (Query max_*_secrets)

A secret whose ID is in the store already is added beside it with its own index, as the real Ultravisor
does: s390-tools' pvsecret refuses such a request in the tool only (commit "pvsecret: Deny adding secrets
with preexisting IDs": "adding duplicated IDs was possible" before; ``--force`` still sends it, and its
``retrieve`` warns that several secrets may share an ID). 0x010C "unable to add" has no public condition
and zuv does not give it.

A successful request's GCM tag is appended to the request-tag list that the attestation secret-store
hash covers (``firmware.attestation.secret_store_hash``), also for null (meta) secrets. The store,
the tags and the lock state are cleared by Prepare Reset (a guest reboot) and vanish with the
configuration; the dump-disable flag of a request stays for the configuration's life.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from firmware import asrcb
from firmware import attestation as A
from firmware.crypto import CryptoError, Secret, constant_time_eq
from firmware.se_header import SCF_CCK_EXTENSION_SECRET, SCF_CCK_UPDATE
from firmware.uv_attest import Inaccessible, guest_pieces, guest_read, guest_write, image_tags

if TYPE_CHECKING:
    from firmware.uv import ControlBlock, SecureConfig, Ultravisor
    from firmware.uv_blocks import UvCbGuestAddr, UvCbListSecrets, UvCbNodata, UvCbRetrSecret

__all__ = [
    "StoredSecret",
    "SecretStore",
    "store_of",
    "store_hash",
    "reset",
    "add",
    "list_secrets",
    "lock",
    "retrieve",
    "LIST_PAGE",
    "LIST_ENTRIES",
    "RRC_IMAGE",
    "RRC_CUID",
    "RRC_EXT_SECRET",
    "RRC_CCK_UPDATE",
]

RC_OK: Final = 0x0001
RC_MORE_DATA: Final = 0x0100
RC_NOT_ALLOWED: Final = 0x0101
RC_LOCKED: Final = 0x0102
RC_ACCESS: Final = 0x0103
RC_VERSION: Final = 0x0104
RC_SIZE: Final = 0x0105
RC_NKS: Final = 0x0106
RC_FLAGS: Final = 0x0107
RC_DECRYPT: Final = 0x0108
RC_TYPE: Final = 0x0109
RC_LENGTH: Final = 0x010A
RC_FULL: Final = 0x010B
RC_DUMP: Final = 0x010D
# Retrieve Secret (Linux arch/s390/include/asm/uv.h) and List Secrets
RC_RETR_BUF_SMALL: Final = 0x0109
RC_RETR_ACCESS: Final = 0x0102
RC_RETR_EMPTY: Final = 0x010F
RC_RETR_INV_IDX: Final = 0x0110
RC_RETR_NOT_RETRIEVABLE: Final = 0x0111
RC_LIST_ACCESS: Final = 0x0102
# rrcs of Add Secret rc 0x0101 (zuv)
RRC_IMAGE: Final = 0x0001
RRC_CUID: Final = 0x0002
RRC_EXT_SECRET: Final = 0x0003
RRC_CCK_UPDATE: Final = 0x0004

LIST_PAGE: Final = 4096
LIST_ENTRIES: Final = (LIST_PAGE - 0x10) // 0x30  # 85
_LIST_HEAD: Final = struct.Struct(">HHH10s")
_LIST_ENTRY: Final = struct.Struct(">HHIQ32s")
_MAX_SECRET: Final = 8192
_MAX_RQL: Final = A.ASRCB_SLOTS_OFFSET + 80 * 255 + 0x30 + _MAX_SECRET + A.EXT_SECRET_SIZE + 16
assert _LIST_ENTRY.size == 0x30 and _LIST_HEAD.size == 0x10


@dataclass
class StoredSecret:
    """One listable secret: index, type, ID and value (value never in reprs)."""

    index: int
    type: int
    id: bytes
    value: Secret

    def __repr__(self) -> str:
        return f"StoredSecret(index={self.index}, type={self.type:#x}, length={len(self.value)})"


@dataclass
class SecretStore:
    """A configuration's secret store."""

    secrets: list[StoredSecret] = field(default_factory=list)
    request_tags: list[bytes] = field(default_factory=list)
    locked: bool = False
    extension_secret: Secret | None = None
    cck: Secret | None = None  # set by an update-CCK secret

    def __repr__(self) -> str:
        return (
            f"SecretStore(secrets={len(self.secrets)}, requests={len(self.request_tags)}, "
            f"locked={self.locked})"
        )


def store_of(cfg: SecureConfig) -> SecretStore:
    """The configuration's store, created on first use."""
    if cfg.secret_store is None:
        cfg.secret_store = SecretStore()
    store: SecretStore = cfg.secret_store
    return store


def store_hash(cfg: SecureConfig) -> bytes:
    """The secret-store hash of attestation additional data (paf bit 4)."""
    s = store_of(cfg)
    return A.secret_store_hash(s.request_tags, s.locked)


def reset(cfg: SecureConfig) -> None:
    """Empty the store (Prepare Reset: the guest reboots)."""
    cfg.secret_store = SecretStore()


def _expected_ext_secret(cfg: SecureConfig, store: SecretStore) -> Secret | None:
    if cfg.header.scf & SCF_CCK_EXTENSION_SECRET:
        return A.extension_secret_from_cck(store.cck or cfg.header.cck, cfg.header.tag)
    return store.extension_secret


def add(uv: Ultravisor, cfg: SecureConfig, blk: UvCbGuestAddr, cb: ControlBlock) -> tuple[int, int]:
    """Add Secret (0x1031); rc/rrc in the order of the module docstring."""
    store = store_of(cfg)
    if store.locked:
        return RC_LOCKED, 0
    if cfg.dump is not None:
        return RC_DUMP, 0
    try:
        head = guest_read(uv, cb, cfg, blk.addr, A.RequestHeader.SIZE)
    except Inaccessible:
        return RC_ACCESS, 0
    hdr = A.RequestHeader.parse(head)
    utype = struct.unpack_from(">H", hdr.magic, 6)[0]
    if (
        hdr.magic[:6] != A.ASRCB_MAGIC
        or utype not in asrcb.ASRCB_USER_DATA_TYPES
        or hdr.version != A.REQUEST_VERSION_V1
        or not uv.query.supp_add_secret_req_ver >> 63
    ):
        return RC_VERSION, 0
    if hdr.nks == 0:
        return RC_NKS, 0
    s_off = A.ASRCB_SLOTS_OFFSET + 80 * hdr.nks
    if not s_off + 0x10 + A.EXT_SECRET_SIZE + 16 <= hdr.rql <= _MAX_RQL:
        return RC_SIZE, 0
    try:
        raw = guest_read(uv, cb, cfg, blk.addr, hdr.rql)
    except Inaccessible:
        return RC_ACCESS, 0
    flags = struct.unpack_from(">Q", raw, 0x30)[0]
    if flags & ~uv.query.supp_add_secret_pcf:
        return RC_FLAGS, 0
    sh = A.SecretHeader.parse(raw, s_off)
    st = A.SECRET_TYPES.get(sh.type)
    if st is None or sh.type >= 64 or not uv.query.supp_secret_types & (1 << (63 - sh.type)):
        return RC_TYPE, 0
    if not st.length_ok(sh.length):
        return RC_LENGTH, 0
    if hdr.sea != sh.length + A.EXT_SECRET_SIZE or hdr.rql != A.asrcb_size(hdr.nks, sh.type, sh.length):
        return RC_SIZE, 0
    req = A.parse_asrcb(raw)
    got = A.unwrap_request_key(req.key_slots, req.customer_pub, uv.host_keys)
    if got is None:
        return RC_DECRYPT, 0
    try:
        opened = A.open_asrcb(req, got[0])
    except CryptoError:
        return RC_DECRYPT, 0
    if req.tags != image_tags(cfg):
        return RC_NOT_ALLOWED, RRC_IMAGE
    if any(req.cuid) and not constant_time_eq(req.cuid, bytes(cfg.uid)):
        return RC_NOT_ALLOWED, RRC_CUID
    expected = _expected_ext_secret(cfg, store)
    if expected is not None and not A.same_secret(expected, opened.extension_secret):
        return RC_NOT_ALLOWED, RRC_EXT_SECRET
    if sh.type == A.SECRET_TYPE_UPDATE_CCK and not cfg.header.scf & SCF_CCK_UPDATE:
        return RC_NOT_ALLOWED, RRC_CCK_UPDATE
    if st.listable:
        kind = [s for s in store.secrets if (s.type == 0x02) == (sh.type == 0x02)]
        limit = uv.query.max_assoc_secrets if sh.type == 0x02 else uv.query.max_retr_secrets
        if len(kind) >= limit:
            return RC_FULL, 0
        index = max((s.index for s in store.secrets), default=-1) + 1
        store.secrets.append(StoredSecret(index, sh.type, bytes(sh.id or b""), opened.value))
    if sh.type == A.SECRET_TYPE_UPDATE_CCK:
        store.cck = opened.value
    if store.extension_secret is None:
        store.extension_secret = opened.extension_secret
    if flags & A.ASRCB_FLAG_DISABLE_DUMP:
        cfg.dump_disabled = True
    store.request_tags.append(bytes(req.tag))
    return RC_OK, 0


def list_secrets(
    uv: Ultravisor, cfg: SecureConfig, blk: UvCbListSecrets, cb: ControlBlock
) -> tuple[int, int]:
    """List Secrets (0x1033): one 4 KiB page of entries from ``start_idx``; rc 0x0100 when more remain.

    Returns: 0x0102 list page not accessible (zuv), 0x0100 more entries than fit, 0x0001 success.
    """
    store = store_of(cfg)
    try:
        pieces = guest_pieces(uv, cb, cfg, blk.list_addr, LIST_PAGE, True)
    except Inaccessible:
        return RC_LIST_ACCESS, 0
    todo = [s for s in store.secrets if s.index >= blk.start_idx]
    page, rest = todo[:LIST_ENTRIES], todo[LIST_ENTRIES:]
    out = bytearray(LIST_PAGE)
    _LIST_HEAD.pack_into(out, 0, len(page), len(store.secrets), rest[0].index if rest else 0, bytes(10))
    for i, s in enumerate(page):
        _LIST_ENTRY.pack_into(out, 0x10 + 0x30 * i, s.index, s.type, len(s.value), 0, s.id)
    guest_write(uv, pieces, bytes(out))
    return (RC_MORE_DATA if rest else RC_OK), 0


def lock(uv: Ultravisor, cfg: SecureConfig, blk: UvCbNodata) -> tuple[int, int]:
    """Lock Secret Store (0x1034): no further Add Secret. Returns 0x0102 already locked, 0x0001 success."""
    store = store_of(cfg)
    if store.locked:
        return RC_LOCKED, 0
    store.locked = True
    return RC_OK, 0


def retrieve(uv: Ultravisor, cfg: SecureConfig, blk: UvCbRetrSecret, cb: ControlBlock) -> tuple[int, int]:
    """Retrieve Secret (0x1035): the value of a retrievable secret into the guest's buffer.

    Returns (in order): 0x010F store empty, 0x0110 no secret with that index, 0x0111 not retrievable,
    0x0109 buffer too small, 0x0102 buffer not accessible, 0x0001 success.
    """
    store = store_of(cfg)
    if not store.secrets:
        return RC_RETR_EMPTY, 0
    s = next((x for x in store.secrets if x.index == blk.secret_idx), None)
    if s is None:
        return RC_RETR_INV_IDX, 0
    if not A.SECRET_TYPES[s.type].retrievable:
        return RC_RETR_NOT_RETRIEVABLE, 0
    if blk.buf_size < len(s.value):
        return RC_RETR_BUF_SMALL, 0
    try:
        pieces = guest_pieces(uv, cb, cfg, blk.buf_addr, len(s.value), True)
    except Inaccessible:
        return RC_RETR_ACCESS, 0
    guest_write(uv, pieces, s.value.expose())
    return RC_OK, 0

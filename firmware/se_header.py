"""The Secure Execution header, version 1 (spec 8.4-8.6): records, builder, parser, the UV's checks.

Layout (all big-endian; offsets from the start of the header)::

    0x000  SeHdrHead      magic "IBMSecEx", version 0x100, sehs, iv, res, nks, sea, nep, pcf,
                          cust_pub_key (X||Y, 2x80), pld, ald, tld                   -- AAD
    0x1A0  KeySlot * nks  phkh (32), wrpk (32), kst (16)                              -- AAD
    E      encrypted area AES-256-GCM ciphertext of SeHdrEncrypted (sea bytes)
    E+sea  tag            16-byte GCM tag (the "SE header tag" of attestation and secrets)

    E = 0x1A0 + 80 * nks,  sehs = E + sea + 16

Formulas (spec 8.6/8.7; the Ultravisor's Unpack and Verify use exactly these helpers):

* key slot: ``K = SHA-256(ECDH(cust_priv, host_pub) || 00000001)``,
  ``wrpk || kst = AES-256-GCM(K, IV = 0^12, AAD = "", header_protection_key)``,
  ``phkh = SHA-256(host X || host Y)``.
* header: ``ct || tag = AES-256-GCM(header_protection_key, iv, AAD = header[0:E], SeHdrEncrypted)``.
* component page tweak (16 bytes): ``tweak_prefix (u64) || u64(offset of the page in its component)``
  = Unpack ``tweak[0] || tweak[1]`` (:func:`page_tweak`).
* PLD = SHA-512 over every secure page *as stored in the image* (4096 bytes of ciphertext; plaintext
  when PCF bit 35 "no component encryption" is set), ALD = SHA-512 over the 8-byte big-endian guest
  absolute address of each page, TLD = SHA-512 over the 16-byte tweak of each page, NEP = page count;
  all in component order and ascending page order, which is also the order of the Unpack calls
  (``se_digests.ImageDigests``, re-exported here with ``page_tweak``, ``address_entry``, ``PAGE_SIZE``).

:func:`open_header` is the UV side of Set Secure Configuration Parameters (spec 4.11); it raises
:class:`SeHeaderError` with the architected rc/rrc. Checks run in this order (the real firmware's
order is not public, spec 13.3; see docs/se-image.md for the reasons):

1. fewer than 16 bytes given (no magic/version/size to read)             rc 0x010A rrc 0x0031
2. magic is not "IBMSecEx" or version is not 0x100                        rc 0x0104 rrc 0x0001
   then ``sehs`` differs from the length given, or is too small for
   head + tag                                                             rc 0x010A rrc 0x0031
3. ``nks`` = 0                                                            rc 0x010A rrc 0x0040
4. ``sea`` not 0x80 (no optional items are defined), or
   ``sehs`` != 0x1A0 + 80 * nks + sea + 16                                rc 0x010A rrc 0x0039
5. a PCF bit the UV does not support                                      rc 0x0106 rrc 0x0030
6. no key slot carries the installed host key's hash                      rc 0x0108 rrc 0x0005
   (with PCF bit 62 "backup keys" and backup keys installed, none of those either: rrc 0x0034)
7. customer public key is not a valid P-521 point                         rc 0x0108 rrc 0x000B
8. key-slot tag or header GCM tag does not authenticate (emulator rrc)    rc 0x0108 rrc 0x0006
9. an SCF bit the UV does not support                                     rc 0x0109 rrc 0x0000
10. ``noi`` != 0 (optional items)                                         rc 0x010A rrc 0x0039
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Sequence

from firmware.crypto import (
    GCM_IV_SIZE,
    GCM_TAG_SIZE,
    XTS_KEY_SIZE,
    CryptoError,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    aes_gcm_open,
    aes_gcm_seal,
    aes_xts_decrypt,
    ec_pub_from_coords,
    ec_pub_to_coords,
    generate_p521_key,
    key_slot_kdf,
    phkh,
    unwrap_key,
    wrap_key,
)
from firmware.se_digests import PAGE_SIZE, ImageDigests, address_entry, page_tweak

__all__ = [
    "MAGIC",
    "VERSION_V1",
    "PAGE_SIZE",
    "MAX_HEADER_SIZE",
    "PSW_MASK_EA",
    "PSW_MASK_BA",
    "PSW_MASK_DEFAULT",
    "msb0",
    "PCF_ALLOW_DUMPING",
    "PCF_NO_COMP_ENCRYPTION",
    "PCF_PCKMO_DEA_TDEA",
    "PCF_PCKMO_AES",
    "PCF_PCKMO_ECC",
    "PCF_PCKMO_HMAC",
    "PCF_BACKUP_KEYS",
    "PCF_DEFAULT",
    "SUPPORTED_PCF",
    "SCF_CCK_EXTENSION_SECRET",
    "SCF_CCK_UPDATE",
    "SUPPORTED_SCF",
    "RC_VERIFY_MISMATCH",
    "RC_HDR_VERSION",
    "RC_UNSUPPORTED_PCF",
    "RC_HOSTKEY",
    "RC_UNSUPPORTED_SCF",
    "RC_HDR_CORRUPT",
    "RRC_HDR_VER_MISMATCH",
    "RRC_UNSUPPORTED_PCF",
    "RRC_HOSTKEY_MISMATCH",
    "RRC_INVAL_ECDH_KEY",
    "RRC_BACKUP_HOSTKEY_MISMATCH",
    "RRC_NOT_ENCRYPTED_FOR_HOST",
    "RRC_UNSUPPORTED_SCF",
    "RRC_HDR_LEN_MISMATCH",
    "RRC_HDR_SIZE_ENC_INVAL",
    "RRC_KEY_SLOT_EMPTY",
    "RRC_ALD_MISMATCH",
    "RRC_PLD_MISMATCH",
    "RRC_TLD_MISMATCH",
    "RRC_NEP_MISMATCH",
    "SeHeaderError",
    "SeHeaderBuildError",
    "SeHdrHead",
    "KeySlot",
    "SeHdrEncrypted",
    "SeHeader",
    "OpenedHeader",
    "ImageDigests",
    "page_tweak",
    "address_entry",
    "header_size",
    "build_header",
    "open_header",
    "decrypt_with_protection_key",
    "verify_digests",
]

MAGIC = b"IBMSecEx"
VERSION_V1 = 0x00000100
#: pvimg caps the header at two pages; KVM refuses SET_SEC_PARMS above 8 KiB (spec 8.4, 4.11).
MAX_HEADER_SIZE = 0x2000

PSW_MASK_EA = 0x0000000100000000
PSW_MASK_BA = 0x0000000080000000
PSW_MASK_DEFAULT = PSW_MASK_EA | PSW_MASK_BA


def msb0(bit: int, width: int = 64) -> int:
    """Value of bit ``bit`` in MSB0 numbering of a ``width``-bit field (bit 0 = most significant)."""
    if not 0 <= bit < width:
        raise ValueError(f"bit {bit} outside a {width}-bit field")
    return 1 << (width - 1 - bit)


# Plaintext control flags (header 0x38), spec 8.5.
PCF_ALLOW_DUMPING = msb0(34)
PCF_NO_COMP_ENCRYPTION = msb0(35)
PCF_PCKMO_DEA_TDEA = msb0(56)
PCF_PCKMO_AES = msb0(57)
PCF_PCKMO_ECC = msb0(58)
PCF_PCKMO_HMAC = msb0(59)
PCF_BACKUP_KEYS = msb0(62)
#: pvimg's default: PCKMO DEA/TDEA, AES and ECC allowed (0xE0).
PCF_DEFAULT = PCF_PCKMO_DEA_TDEA | PCF_PCKMO_AES | PCF_PCKMO_ECC
#: PCF bits this emulated UV supports: the realistic Query sample of spec 5.4 (0x300050E3) plus
#: PCKMO-HMAC (bit 59), which pvimg can set. The UV's Query ``supp_se_hdr_pcf`` must report this value.
SUPPORTED_PCF = 0x300050E3 | PCF_PCKMO_HMAC

# Secret control flags (encrypted area +0x70), spec 8.5.
SCF_CCK_EXTENSION_SECRET = msb0(1)
SCF_CCK_UPDATE = msb0(2)
SUPPORTED_SCF = SCF_CCK_EXTENSION_SECRET | SCF_CCK_UPDATE

# Response codes of Set Secure Configuration Parameters (spec 4.11) and Verify (spec 4.13).
RC_VERIFY_MISMATCH = 0x0102
RC_HDR_VERSION = 0x0104
RC_UNSUPPORTED_PCF = 0x0106
RC_HOSTKEY = 0x0108
RC_UNSUPPORTED_SCF = 0x0109
RC_HDR_CORRUPT = 0x010A
RRC_HDR_VER_MISMATCH = 0x0001
RRC_UNSUPPORTED_PCF = 0x0030
RRC_HOSTKEY_MISMATCH = 0x0005
RRC_INVAL_ECDH_KEY = 0x000B
RRC_BACKUP_HOSTKEY_MISMATCH = 0x0034
#: Emulator choice (spec 13.3: the rrc of a GCM failure is not public); any 0x0108 rrc other than
#: 0x05/0x0B/0x34 means "image not correctly encrypted for this host" to stage3a's decoder.
RRC_NOT_ENCRYPTED_FOR_HOST = 0x0006
RRC_UNSUPPORTED_SCF = 0x0000
RRC_HDR_LEN_MISMATCH = 0x0031
RRC_HDR_SIZE_ENC_INVAL = 0x0039
RRC_KEY_SLOT_EMPTY = 0x0040
RRC_ALD_MISMATCH = 0x001A
RRC_PLD_MISMATCH = 0x001B
RRC_TLD_MISMATCH = 0x001C
RRC_NEP_MISMATCH = 0x001D


class SeHeaderError(Exception):
    """The Ultravisor refuses the SE header: ``rc``/``rrc`` as Set Sec Conf Params returns them."""

    def __init__(self, rc: int, rrc: int, reason: str) -> None:
        self.rc = rc
        self.rrc = rrc
        self.reason = reason
        super().__init__(f"SE header refused (rc {rc:#06x} rrc {rrc:#06x}): {reason}")


class SeHeaderBuildError(ValueError):
    """The builder was asked for a header the architecture cannot express (no keys, too many, bad sizes)."""


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class SeHdrHead:
    """Plaintext head of an SE header v1, bytes 0x000-0x19F (spec 8.4); all of it is GCM AAD."""

    magic: bytes  # 0x000  8   "IBMSecEx"
    version: int  # 0x008  u32 0x00000100
    sehs: int  # 0x00C  u32 total header size
    iv: bytes  # 0x010  12  AES-GCM IV
    res1: int  # 0x01C  u32 reserved
    nks: int  # 0x020  u64 number of key slots
    sea: int  # 0x028  u64 size of the encrypted area
    nep: int  # 0x030  u64 number of encrypted pages
    pcf: int  # 0x038  u64 plaintext control flags
    cust_pub_key: bytes  # 0x040  160 customer P-521 public key X||Y
    pld: bytes  # 0x0E0  64  page-list digest
    ald: bytes  # 0x120  64  address-list digest
    tld: bytes  # 0x160  64  tweak-list digest

    FMT = ">8sII12sIQQQQ160s64s64s64s"
    SIZE = 0x1A0

    def pack(self) -> bytes:
        """The 0x1A0 bytes of this head."""
        return struct.pack(self.FMT, *(getattr(self, f.name) for f in dataclasses.fields(self)))

    @classmethod
    def parse(cls, data: bytes) -> SeHdrHead:
        """Parse the first 0x1A0 bytes of data (caller checks the length)."""
        return cls(*struct.unpack_from(cls.FMT, data, 0))


@dataclass(frozen=True)
class KeySlot:
    """One key slot (80 bytes, spec 8.6): the header protection key wrapped for one host key."""

    phkh: bytes  # +0x00 32 SHA-256 of the host key's X||Y
    wrpk: bytes  # +0x20 32 wrapped protection key
    kst: bytes  # +0x40 16 key-slot tag

    FMT = ">32s32s16s"
    SIZE = 80

    def pack(self) -> bytes:
        """The 80 bytes of this slot."""
        return struct.pack(self.FMT, self.phkh, self.wrpk, self.kst)

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> KeySlot:
        """Parse 80 bytes at offset."""
        return cls(*struct.unpack_from(cls.FMT, data, offset))


@dataclass(frozen=True)
class SeHdrEncrypted:
    """Plaintext of the encrypted area (0x80 bytes without optional items, spec 8.4)."""

    cck: Secret  # +0x00 32 customer communication key
    xts: Secret  # +0x20 64 AES-256-XTS key for the secure components (key1 || key2)
    psw_mask: int  # +0x60 u64
    psw_addr: int  # +0x68 u64
    scf: int  # +0x70 u64 secret control flags
    noi: int  # +0x78 u32 number of optional items
    res2: int  # +0x7C u32 reserved

    FMT = ">32s64sQQQII"
    SIZE = 0x80

    def pack(self) -> bytes:
        """The 0x80 plaintext bytes (contains the keys: only for sealing)."""
        return struct.pack(
            self.FMT, self.cck.expose(), self.xts.expose(), self.psw_mask, self.psw_addr, self.scf,
            self.noi, self.res2,
        )

    @classmethod
    def parse(cls, data: bytes) -> SeHdrEncrypted:
        """Parse the first 0x80 bytes of the decrypted area."""
        cck, xts, mask, addr, scf, noi, res2 = struct.unpack_from(cls.FMT, data, 0)
        return cls(Secret(cck, "CCK"), Secret(xts, "XTS key"), mask, addr, scf, noi, res2)


for _rec in (SeHdrHead, KeySlot, SeHdrEncrypted):
    assert struct.calcsize(_rec.FMT) == _rec.SIZE, _rec.__name__


def header_size(nks: int, sea: int = SeHdrEncrypted.SIZE) -> int:
    """``sehs`` for nks key slots and an encrypted area of sea bytes: 0x1A0 + 80*nks + sea + 16."""
    return SeHdrHead.SIZE + KeySlot.SIZE * nks + sea + GCM_TAG_SIZE


@dataclass(frozen=True)
class SeHeader:
    """A whole SE header v1 as stored: plaintext head, key slots, encrypted area (ciphertext), tag."""

    head: SeHdrHead
    key_slots: tuple[KeySlot, ...]
    encrypted: bytes  # ciphertext of SeHdrEncrypted (sea bytes)
    tag: bytes  # 16-byte GCM tag

    @property
    def aad(self) -> bytes:
        """GCM additional authenticated data: magic through the last key slot."""
        return self.head.pack() + b"".join(s.pack() for s in self.key_slots)

    def pack(self) -> bytes:
        """The header bytes (sehs of them)."""
        return self.aad + self.encrypted + self.tag

    @classmethod
    def parse(cls, data: bytes) -> SeHeader:
        """Parse and check the structure (checks 1-4 of the module docstring).

        Raises:
            SeHeaderError: with the rc/rrc of Set Secure Configuration Parameters.
        """
        data = bytes(data)
        if len(data) < 0x10:
            raise SeHeaderError(
                RC_HDR_CORRUPT, RRC_HDR_LEN_MISMATCH, f"header of {len(data)} bytes is too short"
            )
        magic, version, sehs = struct.unpack_from(">8sII", data, 0)
        if magic != MAGIC:
            raise SeHeaderError(RC_HDR_VERSION, RRC_HDR_VER_MISMATCH, "no SE header magic 'IBMSecEx'")
        if version != VERSION_V1:
            raise SeHeaderError(
                RC_HDR_VERSION, RRC_HDR_VER_MISMATCH, f"SE header version {version:#x} not supported"
            )
        if sehs != len(data):
            raise SeHeaderError(
                RC_HDR_CORRUPT,
                RRC_HDR_LEN_MISMATCH,
                f"sehs {sehs:#x} differs from the length given {len(data):#x}",
            )
        if sehs < SeHdrHead.SIZE + GCM_TAG_SIZE:
            raise SeHeaderError(
                RC_HDR_CORRUPT, RRC_HDR_LEN_MISMATCH, f"sehs {sehs:#x} is too small for a header"
            )
        head = SeHdrHead.parse(data)
        if head.nks == 0:
            raise SeHeaderError(RC_HDR_CORRUPT, RRC_KEY_SLOT_EMPTY, "no key slots in the header")
        if head.sea != SeHdrEncrypted.SIZE:
            raise SeHeaderError(
                RC_HDR_CORRUPT, RRC_HDR_SIZE_ENC_INVAL, f"size of encrypted area {head.sea:#x} invalid"
            )
        if header_size(head.nks, head.sea) != sehs:
            raise SeHeaderError(
                RC_HDR_CORRUPT,
                RRC_HDR_SIZE_ENC_INVAL,
                f"nks {head.nks} and sea {head.sea:#x} do not add up to sehs {sehs:#x}",
            )
        e = SeHdrHead.SIZE + KeySlot.SIZE * head.nks
        slots = tuple(KeySlot.parse(data, SeHdrHead.SIZE + KeySlot.SIZE * i) for i in range(head.nks))
        return cls(head, slots, data[e:e + head.sea], data[e + head.sea:])

    def describe(self) -> dict:
        """JSON-ready view of the plaintext fields (no key material exists in them)."""
        h = self.head
        return {
            "magic": h.magic.decode("ascii", "replace"),
            "version": h.version,
            "sehs": h.sehs,
            "iv": h.iv.hex(),
            "nks": h.nks,
            "sea": h.sea,
            "nep": h.nep,
            "pcf": h.pcf,
            "cust_pub_key": h.cust_pub_key.hex(),
            "pld": h.pld.hex(),
            "ald": h.ald.hex(),
            "tld": h.tld.hex(),
            "key_slots": [
                {"phkh": s.phkh.hex(), "wrpk": s.wrpk.hex(), "kst": s.kst.hex()} for s in self.key_slots
            ],
            "tag": self.tag.hex(),
        }


# ------------------------------------------------------------------------------------------------ verify


def verify_digests(opened: OpenedHeader, measured: ImageDigests) -> int:
    """Verify (spec 4.13): 0 when the measurement matches the header, else the rrc under rc 0x0102.

    Mismatches are reported in rrc order: ALD (0x1A), PLD (0x1B), TLD (0x1C), NEP (0x1D).
    """
    if measured.ald != opened.ald:
        return RRC_ALD_MISMATCH
    if measured.pld != opened.pld:
        return RRC_PLD_MISMATCH
    if measured.tld != opened.tld:
        return RRC_TLD_MISMATCH
    if measured.nep != opened.nep:
        return RRC_NEP_MISMATCH
    return 0


# ------------------------------------------------------------------------------------------------ build


def build_header(
    *,
    host_keys: Sequence[EllipticCurvePublicKey],
    psw_addr: int,
    digests: ImageDigests,
    xts_key: Secret,
    rng: Rng,
    psw_mask: int = PSW_MASK_DEFAULT,
    pcf: int = PCF_DEFAULT,
    scf: int = 0,
    cck: Secret | None = None,
    customer_key: EllipticCurvePrivateKey | None = None,
    protection_key: Secret | None = None,
) -> bytes:
    """Build and seal an SE header v1 (what ``pvimg create`` does after laying out the components).

    Args:
        host_keys: public host keys of the target machines, one key slot each, in this order.
        psw_addr, psw_mask: the PSW the UV loads at the first Set CPU State OPR_LOAD.
        digests: PLD/ALD/TLD/NEP of the secure components as stored in the image.
        xts_key: the 64-byte component key.
        rng: source of the customer key, protection key, IV and CCK (unless given).
        pcf, scf: plaintext / secret control flags.
        cck: customer communication key (32 bytes); random when None.
        customer_key, protection_key: expert overrides (normally fresh per image).

    Returns:
        The header bytes (``sehs`` = 0x1A0 + 80 * len(host_keys) + 0x80 + 16).

    Raises:
        SeHeaderBuildError: no host key, too many for 8 KiB, bad key sizes or field values.
    """
    if not host_keys:
        raise SeHeaderBuildError("at least one host key is needed")
    sehs = header_size(len(host_keys))
    if sehs > MAX_HEADER_SIZE:
        raise SeHeaderBuildError(f"{len(host_keys)} host keys make a header of {sehs} bytes, more than 8 KiB")
    hashes = [phkh(k) for k in host_keys]  # a key given twice gets two slots, as s390-tools' pvimg gives it
    if len(xts_key) != XTS_KEY_SIZE:
        raise SeHeaderBuildError("the XTS key must be 64 bytes")
    if cck is None:
        cck = Secret(rng.random_bytes(32), "CCK")
    if len(cck) != 32:
        raise SeHeaderBuildError("the customer communication key must be 32 bytes")
    for name, value in (("psw_mask", psw_mask), ("psw_addr", psw_addr), ("pcf", pcf), ("scf", scf)):
        if not 0 <= value < 1 << 64:
            raise SeHeaderBuildError(f"{name} must fit in 64 bits")
    if customer_key is None:
        customer_key = generate_p521_key(rng)
    if protection_key is None:
        protection_key = Secret(rng.random_bytes(32), "protection key")
    if len(protection_key) != 32:
        raise SeHeaderBuildError("the header protection key must be 32 bytes")
    iv = rng.random_bytes(GCM_IV_SIZE)

    slots = []
    for key, h in zip(host_keys, hashes):
        wrpk, kst = wrap_key(key_slot_kdf(customer_key, key), protection_key)
        slots.append(KeySlot(h, wrpk, kst))
    head = SeHdrHead(
        magic=MAGIC,
        version=VERSION_V1,
        sehs=sehs,
        iv=iv,
        res1=0,
        nks=len(slots),
        sea=SeHdrEncrypted.SIZE,
        nep=digests.nep,
        pcf=pcf,
        cust_pub_key=ec_pub_to_coords(customer_key),
        pld=digests.pld,
        ald=digests.ald,
        tld=digests.tld,
    )
    plain = SeHdrEncrypted(cck=cck, xts=xts_key, psw_mask=psw_mask, psw_addr=psw_addr, scf=scf, noi=0, res2=0)
    aad = head.pack() + b"".join(s.pack() for s in slots)
    ct, tag = aes_gcm_seal(protection_key, iv, aad, plain.pack())
    out = aad + ct + tag
    assert len(out) == sehs
    return out


# ------------------------------------------------------------------------------------------------ open


@dataclass(frozen=True)
class OpenedHeader:
    """What the Ultravisor keeps from a header it accepted (Set Secure Configuration Parameters)."""

    header: SeHeader
    encrypted: SeHdrEncrypted
    slot_index: int  # key slot that opened the header
    phkh: bytes  # hash of the host key that opened it (attestation "image PHKH")
    backup_key_used: bool

    @property
    def version(self) -> int:
        """Header version (0x100)."""
        return self.header.head.version

    @property
    def sehs(self) -> int:
        """Header size in bytes."""
        return self.header.head.sehs

    @property
    def nks(self) -> int:
        """Number of key slots."""
        return self.header.head.nks

    @property
    def pcf(self) -> int:
        """Plaintext control flags."""
        return self.header.head.pcf

    @property
    def scf(self) -> int:
        """Secret control flags."""
        return self.encrypted.scf

    @property
    def psw_mask(self) -> int:
        """Mask of the initial PSW."""
        return self.encrypted.psw_mask

    @property
    def psw_addr(self) -> int:
        """Address of the initial PSW (stage3b entry)."""
        return self.encrypted.psw_addr

    @property
    def psw(self) -> tuple[int, int]:
        """Initial PSW as (mask, address)."""
        return self.encrypted.psw_mask, self.encrypted.psw_addr

    @property
    def cck(self) -> Secret:
        """Customer communication key."""
        return self.encrypted.cck

    @property
    def xts_key(self) -> Secret:
        """AES-256-XTS key of the secure components."""
        return self.encrypted.xts

    @property
    def pld(self) -> bytes:
        """Page-list digest."""
        return self.header.head.pld

    @property
    def ald(self) -> bytes:
        """Address-list digest."""
        return self.header.head.ald

    @property
    def tld(self) -> bytes:
        """Tweak-list digest."""
        return self.header.head.tld

    @property
    def nep(self) -> int:
        """Number of encrypted pages."""
        return self.header.head.nep

    @property
    def tag(self) -> bytes:
        """The SE header tag (GCM tag), used by attestation and add-secret requests."""
        return self.header.tag

    @property
    def components_encrypted(self) -> bool:
        """False when PCF bit 35 says the components are stored in plaintext."""
        return not self.header.head.pcf & PCF_NO_COMP_ENCRYPTION

    def decrypt_page(self, tweak: bytes, ciphertext: bytes) -> bytes:
        """Unpack's decryption of one 4 KiB page with the 16-byte tweak ``tweak[0] || tweak[1]``.

        With PCF bit 35 (no component encryption) the page is returned unchanged (spec 4.12).
        """
        if len(ciphertext) != PAGE_SIZE:
            raise ValueError("Unpack decrypts whole 4 KiB pages")
        if not self.components_encrypted:
            return bytes(ciphertext)
        return aes_xts_decrypt(self.encrypted.xts, tweak, ciphertext)

    def describe(self) -> dict:
        """JSON-ready view: plaintext fields plus decrypted PSW, SCF and noi; never the keys."""
        d = self.header.describe()
        d["decrypted"] = {
            "key_slot": self.slot_index,
            "phkh": self.phkh.hex(),
            "backup_key_used": self.backup_key_used,
            "psw_mask": self.psw_mask,
            "psw_addr": self.psw_addr,
            "scf": self.scf,
            "noi": self.encrypted.noi,
        }
        return d

    def __repr__(self) -> str:
        return (
            f"OpenedHeader(sehs={self.sehs:#x}, nks={self.nks}, slot={self.slot_index}, nep={self.nep}, "
            f"pcf={self.pcf:#x}, scf={self.scf:#x}, psw={self.psw_mask:#018x}:{self.psw_addr:#x})"
        )


def decrypt_with_protection_key(data: bytes, protection_key: Secret) -> tuple[SeHeader, SeHdrEncrypted]:
    """Authenticate and decrypt a header with its protection key (what ``pvimg info --hdr-key`` does).

    Only the structure is checked (``SeHeader.parse``); no host key and no flag support is involved.

    Raises:
        SeHeaderError: malformed header, or the key does not authenticate it (rc of a host-key mismatch).
    """
    hdr = SeHeader.parse(data)
    try:
        plain = aes_gcm_open(protection_key, hdr.head.iv, hdr.aad, hdr.encrypted, hdr.tag)
    except CryptoError:
        raise SeHeaderError(
            RC_HOSTKEY,
            RRC_NOT_ENCRYPTED_FOR_HOST,
            "the header protection key does not authenticate the header",
        ) from None
    return hdr, SeHdrEncrypted.parse(plain)


def open_header(
    data: bytes,
    host_keys: Sequence[EllipticCurvePrivateKey],
    *,
    supported_pcf: int = SUPPORTED_PCF,
    supported_scf: int = SUPPORTED_SCF,
) -> OpenedHeader:
    """Open an SE header the way the UV does for Set Secure Configuration Parameters.

    Args:
        data: exactly the ``sec_header_len`` bytes the host passed.
        host_keys: the machine's installed host private key first, then any backup host keys (used
            only when the header's PCF bit 62 allows backup keys).
        supported_pcf, supported_scf: the flag bits this UV supports (its Query values).

    Returns:
        The accepted header with its decrypted contents.

    Raises:
        SeHeaderError: rc/rrc of the first failed check, in the order of the module docstring.
    """
    if not host_keys:
        raise ValueError("the UV needs its host key")
    hdr = SeHeader.parse(data)
    head = hdr.head
    unsupported = head.pcf & ~supported_pcf
    if unsupported:
        raise SeHeaderError(
            RC_UNSUPPORTED_PCF, RRC_UNSUPPORTED_PCF, f"unsupported plaintext control flags {unsupported:#x}"
        )

    candidates = [(host_keys[0], False)]
    if head.pcf & PCF_BACKUP_KEYS:
        candidates += [(k, True) for k in host_keys[1:]]
    match = None
    for key, backup in candidates:
        h = phkh(key)
        for i, slot in enumerate(hdr.key_slots):
            if slot.phkh == h:
                match = (key, backup, i, h)
                break
        if match:
            break
    if match is None:
        if head.pcf & PCF_BACKUP_KEYS and len(host_keys) > 1:
            raise SeHeaderError(
                RC_HOSTKEY, RRC_BACKUP_HOSTKEY_MISMATCH, "no key slot for the host key or a backup host key"
            )
        raise SeHeaderError(RC_HOSTKEY, RRC_HOSTKEY_MISMATCH, "no key slot for this machine's host key")
    key, backup, index, h = match

    try:
        cust_pub = ec_pub_from_coords(head.cust_pub_key)
    except CryptoError as exc:
        raise SeHeaderError(
            RC_HOSTKEY, RRC_INVAL_ECDH_KEY, f"customer ECDH public key invalid: {exc}"
        ) from None

    slot = hdr.key_slots[index]
    try:
        protection_key = unwrap_key(key_slot_kdf(key, cust_pub), slot.wrpk, slot.kst)
        plain = aes_gcm_open(protection_key, head.iv, hdr.aad, hdr.encrypted, hdr.tag)
    except CryptoError:
        raise SeHeaderError(
            RC_HOSTKEY, RRC_NOT_ENCRYPTED_FOR_HOST, "header does not authenticate with this host's key"
        ) from None
    enc = SeHdrEncrypted.parse(plain)
    unsupported = enc.scf & ~supported_scf
    if unsupported:
        raise SeHeaderError(
            RC_UNSUPPORTED_SCF, RRC_UNSUPPORTED_SCF, f"unsupported secret control flags {unsupported:#x}"
        )
    if enc.noi != 0:
        raise SeHeaderError(
            RC_HDR_CORRUPT, RRC_HDR_SIZE_ENC_INVAL, f"{enc.noi} optional items, none are defined"
        )
    return OpenedHeader(header=hdr, encrypted=enc, slot_index=index, phkh=h, backup_key_used=backup)

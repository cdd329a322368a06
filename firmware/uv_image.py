"""The Ultravisor's half of a secure boot: Set Secure Configuration Parameters, Unpack and Verify.

The SE header is opened by ``firmware.se_header.open_header`` (its rc/rrc are the architected ones, 4.11);
this module keeps the opened header with the configuration, decrypts each Unpack page in place with the
header's XTS key and folds it into the running PLD/ALD/TLD/NEP measurement that Verify compares (4.12, 4.13).

Cost per Unpack: the page is decrypted straight from absolute storage, the AES key
(``uv_storage.XtsKey``) is made once per configuration (only the XTS context is per page), the page's
stored bytes are copied into the PLD's chunk and hashed on a worker thread (``crypto.BackgroundSha512``:
~3.7 us of SHA-512 per page off the UVC's path where a second core is free), and the 8- and 16-byte ALD/TLD
entries are collected and hashed in large pieces. SHA-512 of a stream does not depend on how it is cut, so
the digests are those of ``se_digests.ImageDigests``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

from emulator.hw.memory import KEY_C, KEY_R, PAGE_SHIFT, PAGE_SIZE
from firmware.crypto import BackgroundSha512, Sha512
from firmware.se_header import (
    MAX_HEADER_SIZE,
    RC_HDR_CORRUPT,
    RC_HOSTKEY,
    RRC_HDR_LEN_MISMATCH,
    RRC_HOSTKEY_MISMATCH,
    SeHeaderError,
    open_header,
    verify_digests,
)
from firmware.uv_storage import XtsKey

if TYPE_CHECKING:
    from firmware.uv import SecureConfig, Ultravisor

__all__ = ["HEADER_LIMIT", "UnpackMeasurement", "check_header_length", "set_params", "unpack_page", "verify"]

#: Longest SE header the UV reads (pvimg caps headers at two pages; KVM refuses more, 8.4).
HEADER_LIMIT: Final = MAX_HEADER_SIZE
#: ALD/TLD entries are hashed once this many bytes of them are collected (and before any digest is read).
_LIST_FLUSH: Final = 1 << 16
_TWEAK: Final = struct.Struct(">QQ")
_ADDR: Final = struct.Struct(">Q")


class UnpackMeasurement:
    """A configuration's running Unpack measurement (PLD, ALD, TLD, NEP; 8.7) and its page decryption.

    Same digests as ``se_digests.ImageDigests`` fed page by page (``verify_digests`` reads ``pld``, ``ald``,
    ``tld``, ``nep``). Holds the header's XTS key as an AES key object: never shown in a repr.
    """

    __slots__ = ("_header", "_pld", "_ald", "_tld", "_alist", "_tlist", "nep", "_encrypted", "_key")

    def __init__(self, header: Any) -> None:
        self._header = header
        self._pld, self._ald, self._tld = BackgroundSha512(), Sha512(), Sha512()
        self._alist = bytearray()
        self._tlist = bytearray()
        self.nep = 0
        self._encrypted = bool(header.components_encrypted)
        self._key: XtsKey | None = None
        if self._encrypted:
            try:
                self._key = XtsKey(header.xts_key.expose())
            except ValueError:  # a key OpenSSL refuses: the header's own decryption names the error
                self._key = None

    def __repr__(self) -> str:
        return f"UnpackMeasurement(nep={self.nep})"

    def _flush(self) -> None:
        if self._alist:
            self._ald.update(bytes(self._alist))
            self._tld.update(bytes(self._tlist))
            self._alist.clear()
            self._tlist.clear()

    def add_page(self, gaddr: int, tweak: bytes, stored_page: bytes | memoryview) -> None:
        """Measure one page: its 4096 stored bytes, its guest absolute address, its 16-byte tweak."""
        self._pld.update(stored_page)
        self._alist += _ADDR.pack(gaddr)
        self._tlist += tweak
        self.nep += 1
        if len(self._tlist) >= _LIST_FLUSH:
            self._flush()

    def decrypt_page(self, tweak: bytes, stored_page: bytes | memoryview) -> bytes | None:
        """The page decrypted with the header's XTS key, or None when components are not encrypted."""
        if not self._encrypted:
            return None
        if self._key is None:  # a key OpenSSL refuses: the header's own decryption names the error
            return bytes(self._header.decrypt_page(tweak, bytes(stored_page)))
        return self._key.decrypt(tweak, stored_page)

    def decrypt_page_in_place(self, tweak: bytes, address: int) -> bool:
        """Decrypt the stored page at process ``address`` in place with the header's XTS key: True when done
        (the key's libcrypto shortcut), False when nothing was done (then ``decrypt_page`` serves)."""
        key = self._key
        return self._encrypted and key is not None and key.decrypt_in_place(tweak, address)

    @property
    def pld(self) -> bytes:
        """Page-list digest so far."""
        return self._pld.digest()

    @property
    def ald(self) -> bytes:
        """Address-list digest so far."""
        self._flush()
        return self._ald.digest()

    @property
    def tld(self) -> bytes:
        """Tweak-list digest so far."""
        self._flush()
        return self._tld.digest()


def check_header_length(length: int) -> tuple[int, int] | None:
    """rc/rrc for a header length the UV refuses before reading anything (zuv: longer than two pages)."""
    if length > HEADER_LIMIT:
        return RC_HDR_CORRUPT, RRC_HDR_LEN_MISMATCH
    return None


def set_params(uv: Ultravisor, cfg: SecureConfig, data: bytes) -> tuple[int, int]:
    """Open the SE header for ``cfg``; returns rc/rrc (0x0001 on success, then the configuration is in
    state "params" and measures Unpack pages)."""
    keys = uv.host_keys
    if not keys:
        return RC_HOSTKEY, RRC_HOSTKEY_MISMATCH  # a machine without host keys matches no key slot
    try:
        opened = open_header(bytes(data), keys, supported_pcf=uv.query.supp_se_hdr_pcf)
    except SeHeaderError as e:
        return e.rc, e.rrc
    cfg.header = opened
    cfg.unpack = UnpackMeasurement(opened)
    cfg.state = "params"
    return 0x0001, 0


def unpack_page(uv: Ultravisor, cfg: SecureConfig, frame: int, gaddr: int, tweak0: int, tweak1: int) -> None:
    """Measure the page as the host stored it, then decrypt it in place (the caller made it secure first).

    The frame's storage key gets the reference bit, and the change bit when the page was decrypted, as the
    fetch and store of any access would set them. (It matters for speed too: a guest's first TLB fill for
    a load from a page whose change bit is set may let its stores through, so a boot's loader copying the
    kernel makes one fill per page instead of two.)"""
    addr = frame << PAGE_SHIFT
    stored = uv.mem.buffer()[addr : addr + PAGE_SIZE]  # the frame is inside memory: the gmap walk said so
    tweak = _TWEAK.pack(tweak0 & 0xFFFFFFFFFFFFFFFF, tweak1 & 0xFFFFFFFFFFFFFFFF)
    m: UnpackMeasurement = cfg.unpack
    m.add_page(gaddr, tweak, stored)  # (copied: the decryption may overwrite the page now)
    mem = uv.mem
    keys = mem.keys
    if m.decrypt_page_in_place(tweak, mem.address + addr):
        mem.invalidate_code(addr, addr + PAGE_SIZE)  # what ``write`` tells the CPUs
        keys[frame] |= KEY_R | KEY_C
        return
    plain = m.decrypt_page(tweak, stored)
    if plain is None:  # PCF bit 35 (components not encrypted): the page stays as stored
        keys[frame] |= KEY_R
    else:
        mem.write(addr, plain)
        keys[frame] |= KEY_R | KEY_C  # the frame's key records the UV's fetch and store as any access


def verify(cfg: SecureConfig) -> int:
    """0 when the measurement matches the header, else the rrc of rc 0x0102 (ALD, PLD, TLD, NEP order)."""
    return verify_digests(cfg.header, cfg.unpack)

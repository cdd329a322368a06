"""The measurement of a Secure Execution image (spec 8.7): page tweaks and the PLD/ALD/TLD/NEP digests.

The builder (``se_header.build_header``, ``pvimg``) and the Ultravisor's Unpack measure the same way; the
Ultravisor's Verify compares with the header (``se_header.verify_digests``).
"""

from __future__ import annotations

import struct
from typing import Iterable

from firmware.crypto import Sha512

__all__ = ["PAGE_SIZE", "ImageDigests", "address_entry", "page_tweak"]

PAGE_SIZE = 4096


def page_tweak(tweak_prefix: int, offset: int) -> bytes:
    """16-byte XTS tweak of the page at byte ``offset`` of a component: ``u64(prefix) || u64(offset)``."""
    return struct.pack(">QQ", tweak_prefix, offset)


def address_entry(gaddr: int) -> bytes:
    """ALD entry of a page: its 8-byte big-endian guest absolute address."""
    return struct.pack(">Q", gaddr)


class ImageDigests:
    """Running PLD/ALD/TLD/NEP over secure pages in Unpack order (spec 8.7).

    The builder feeds every secure page of the image; the Ultravisor feeds every page it unpacks
    (the page as the host stored it, i.e. *before* decrypting) and compares with the header at Verify.
    """

    def __init__(self) -> None:
        self._pld = Sha512()
        self._ald = Sha512()
        self._tld = Sha512()
        self.nep = 0

    def add_page(self, gaddr: int, tweak: bytes, stored_page: bytes) -> None:
        """Measure one page: its 4096 stored bytes, its guest absolute address, its 16-byte tweak."""
        if len(stored_page) != PAGE_SIZE:
            raise ValueError("a measured page is 4096 bytes")
        if len(tweak) != 16:
            raise ValueError("a page tweak is 16 bytes")
        self._pld.update(bytes(stored_page))
        self._ald.update(address_entry(gaddr))
        self._tld.update(bytes(tweak))
        self.nep += 1

    @property
    def pld(self) -> bytes:
        """Page-list digest so far."""
        return self._pld.digest()

    @property
    def ald(self) -> bytes:
        """Address-list digest so far."""
        return self._ald.digest()

    @property
    def tld(self) -> bytes:
        """Tweak-list digest so far."""
        return self._tld.digest()

    @classmethod
    def of(cls, pages: Iterable[tuple[int, bytes, bytes]]) -> ImageDigests:
        """Digests of (gaddr, tweak, stored page) triples."""
        d = cls()
        for gaddr, tweak, page in pages:
            d.add_page(gaddr, tweak, page)
        return d

    def __repr__(self) -> str:
        return f"ImageDigests(nep={self.nep}, pld={self.pld.hex()[:16]}...)"

"""The Ultravisor's half of a secure boot: Set Secure Configuration Parameters, Unpack and Verify.

The SE header is opened by ``firmware.se_header.open_header`` (its rc/rrc are the architected ones, 4.11);
this module keeps the opened header with the configuration, decrypts each Unpack page in place with the
header's XTS key and folds it into the running PLD/ALD/TLD/NEP measurement that Verify compares (4.12, 4.13).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from firmware.se_header import (
    MAX_HEADER_SIZE,
    RC_HDR_CORRUPT,
    RC_HOSTKEY,
    RRC_HDR_LEN_MISMATCH,
    RRC_HOSTKEY_MISMATCH,
    ImageDigests,
    SeHeaderError,
    open_header,
    page_tweak,
    verify_digests,
)

if TYPE_CHECKING:
    from firmware.uv import SecureConfig, Ultravisor

__all__ = ["HEADER_LIMIT", "check_header_length", "set_params", "unpack_page", "verify"]

#: Longest SE header the UV reads (pvimg caps headers at two pages; KVM refuses more, 8.4).
HEADER_LIMIT: Final = MAX_HEADER_SIZE


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
    cfg.unpack = ImageDigests()
    cfg.state = "params"
    return 0x0001, 0


def unpack_page(uv: Ultravisor, cfg: SecureConfig, frame: int, gaddr: int, tweak0: int, tweak1: int) -> None:
    """Measure the page as the host stored it, then decrypt it in place (the caller makes it secure)."""
    addr = frame << PAGE_SHIFT
    stored = uv.mem.read(addr, PAGE_SIZE)
    tweak = page_tweak(tweak0 & 0xFFFFFFFFFFFFFFFF, tweak1 & 0xFFFFFFFFFFFFFFFF)
    cfg.unpack.add_page(gaddr, tweak, stored)
    uv.mem.write(addr, cfg.header.decrypt_page(tweak, stored))


def verify(cfg: SecureConfig) -> int:
    """0 when the measurement matches the header, else the rrc of rc 0x0102 (ALD, PLD, TLD, NEP order)."""
    return verify_digests(cfg.header, cfg.unpack)

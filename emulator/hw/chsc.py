"""CHANNEL SUBSYSTEM CALL commands of zuv's channel subsystem: Store Channel Subsystem Characteristics, Store
Channel-Path Description and Store Event Information; any other command is answered "not installed".

A command-request block (its length already checked by the instruction: 16..4088, a multiple of 8) is
answered with the response block that follows it in storage: a header (length, response code), a
parameter word and the command's data.
"""

from __future__ import annotations

from typing import Final

from emulator.hw.css import CHPID, CHPID_TYPE, ChannelSubsystem

__all__ = ["call", "GENERAL_CHARS"]

CHSC_SCPD: Final = 0x0002
CHSC_SEI: Final = 0x000E
CHSC_SCSC: Final = 0x0010
RSP_OK: Final = 0x0001
RSP_REQERR: Final = 0x0003
RSP_ENOCMD: Final = 0x0004
RSP_NODATA: Final = 0x0005
RSP_EFRMT: Final = 0x0007
RSP_ECSSID: Final = 0x0008
#: Store Channel Subsystem Characteristics: the general characteristics this channel subsystem has (bits)
GENERAL_CHARS: Final = (48,)  # extended measurement block (format-1 measurement blocks)


def call(css: ChannelSubsystem, request: bytes) -> bytes:
    """The response block for one command-request block."""
    length = int.from_bytes(request[0:2], "big")
    code = int.from_bytes(request[2:4], "big")
    if code == CHSC_SCSC:
        return _scsc(length, request)
    if code == CHSC_SCPD:
        return _scpd(css, length, request)
    if code == CHSC_SEI:
        return _response(RSP_NODATA)  # no event information pending
    return _response(RSP_ENOCMD)


def _scsc(length: int, request: bytes) -> bytes:
    """Store Channel Subsystem Characteristics: 255 doublewords of general and 254 of CHSC characteristics."""
    if length != 0x10:
        return _response(RSP_REQERR)
    if int.from_bytes(request[4:6], "big") & 0xF or int.from_bytes(request[12:16], "big") & 0xF:
        return _response(RSP_EFRMT)
    general = bytearray(255 * 8)
    for bit in GENERAL_CHARS:
        general[bit // 8] |= 0x80 >> (bit % 8)
    body = bytes(4) + bytes(general) + bytes(254 * 8)
    return (0x1000 - 0x10).to_bytes(2, "big") + RSP_OK.to_bytes(2, "big") + body


def _scpd(css: ChannelSubsystem, length: int, request: bytes) -> bytes:
    """Store Channel-Path Description: word 1 M (bit 2), C (bit 3, the response format when RFMT is 0 or
    1), FMT (4-7, must be 0), CSSID (8-15), RFMT (20-23), first CHPID (24-31); word 2 the last CHPID. Each
    installed path in the range gets a format-0 (8-byte) or format-1 (32-byte) description."""
    word1, word2, word3 = (int.from_bytes(request[i : i + 4], "big") for i in (4, 8, 12))
    rfmt = (word1 >> 8) & 0xF
    if rfmt in (0, 1):
        rfmt = (word1 >> 28) & 1
    if length != 0x10 or word1 & 0xC000F000 or word2 & 0xFFFFFF00 or word3:
        return _response(RSP_REQERR, rfmt)
    if word1 & 0x0F000000 or rfmt > 1:
        return _response(RSP_EFRMT, rfmt)
    if (word1 >> 16) & 0xFF:
        return _response(RSP_ECSSID, rfmt)  # one channel subsystem image, CSS 0
    first, last = word1 & 0xFF, word2 & 0xFF
    if last < first:
        return _response(RSP_REQERR, rfmt)
    body = b""
    if first <= CHPID <= last and css.subchannels:
        body = bytes([0x80, 0, CHPID_TYPE, CHPID]).ljust(32 if rfmt else 8, b"\0")  # valid, its type
    return (8 + len(body)).to_bytes(2, "big") + RSP_OK.to_bytes(2, "big") + rfmt.to_bytes(4, "big") + body


def _response(code: int, param: int = 0) -> bytes:
    """A response block with only its header, a response code and its parameter word (eight bytes)."""
    return (8).to_bytes(2, "big") + code.to_bytes(2, "big") + param.to_bytes(4, "big")

"""The service-call logical processor (SCLP) behind SERVC: SCP information, event masks and the ASCII console.

Layouts and checks follow QEMU ``hw/s390x/sclp.c`` / ``event-facility.c`` / ``sclpconsole.c`` (see
``machine.md`` section 4). The SCLP reads and writes the SCCB through an ``SccbAccess`` (real addresses of
the calling configuration), so the same model serves a bare-metal program and a hypervisor's guests.
"""

from __future__ import annotations

import ctypes
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from emulator.errors import ProgramException

__all__ = [
    "Sclp",
    "sccb_check",
    "SccbAccess",
    "CpuSccb",
    "SCLP_CMD_READ_SCP_INFO",
    "SCLP_CMD_READ_SCP_INFO_FORCED",
    "SCLP_CMD_READ_CPU_INFO",
    "storage_increments",
    "SCLP_CMD_WRITE_EVENT_MASK",
    "SCLP_CMD_WRITE_EVENT_DATA",
    "SCLP_CMD_READ_EVENT_DATA",
    "EVENT_ASCII_CONSOLE",
    "merge_service_parameter",
]

SCLP_CMD_READ_SCP_INFO: Final = 0x00020001
SCLP_CMD_READ_SCP_INFO_FORCED: Final = 0x00120001
SCLP_CMD_READ_CPU_INFO: Final = 0x00010001
SCLP_CMD_WRITE_EVENT_MASK: Final = 0x00780005
SCLP_CMD_WRITE_EVENT_DATA: Final = 0x00760005
SCLP_CMD_READ_EVENT_DATA: Final = 0x00770005

RC_NORMAL_READ_COMPLETION: Final = 0x0010
RC_NORMAL_COMPLETION: Final = 0x0020
RC_SCCB_BOUNDARY_VIOLATION: Final = 0x0100
RC_INSUFFICIENT_SCCB_LENGTH: Final = 0x0300
RC_INVALID_SCLP_COMMAND: Final = 0x01F0
RC_INVALID_FUNCTION: Final = 0x40F0
RC_NO_EVENT_BUFFERS_STORED: Final = 0x60F0
RC_INVALID_MASK_LENGTH: Final = 0x74F0

_U16: Final = struct.Struct(">H")

EVENT_ASCII_CONSOLE: Final = 0x1A
EVENT_MESSAGE: Final = 0x02
EVENT_SIGNAL_QUIESCE: Final = 0x1D


def event_mask_bit(event_type: int) -> int:
    """The bit of a 32-bit SCLP event mask that stands for ``event_type``."""
    return 0x80000000 >> (event_type - 1)


#: Events the SCLP accepts from the program (Write Event Data) and sends to it (Read Event Data).
SCLP_RECEIVE_MASK: Final = event_mask_bit(EVENT_ASCII_CONSOLE)
SCLP_SEND_MASK: Final = event_mask_bit(EVENT_ASCII_CONSOLE) | event_mask_bit(EVENT_SIGNAL_QUIESCE)


class SccbHeader(ctypes.BigEndianStructure):
    """SCCB header (QEMU ``SCCBHeader``)."""

    _pack_ = 1
    _fields_ = [
        ("length", ctypes.c_uint16),
        ("function_code", ctypes.c_uint8),
        ("control_mask", ctypes.c_uint8 * 3),
        ("response_code", ctypes.c_uint16),
    ]


class ReadInfo(ctypes.BigEndianStructure):
    """Read SCP Info response (QEMU ``ReadInfo``), up to the CPU entries at offset 128."""

    _pack_ = 1
    _fields_ = [
        ("h", SccbHeader),
        ("rnmax", ctypes.c_uint16),
        ("rnsize", ctypes.c_uint8),
        ("_reserved1", ctypes.c_uint8 * 5),
        ("entries_cpu", ctypes.c_uint16),
        ("offset_cpu", ctypes.c_uint16),
        ("_reserved2", ctypes.c_uint8 * 4),
        ("loadparm", ctypes.c_uint8 * 8),
        ("_reserved3", ctypes.c_uint8 * 16),
        ("facilities", ctypes.c_uint64),
        ("_reserved4", ctypes.c_uint8 * 20),
        ("ibc_val", ctypes.c_uint32),
        ("conf_char", ctypes.c_uint8 * 19),
        ("mha_pow", ctypes.c_uint8),
        ("rnsize2", ctypes.c_uint32),
        ("rnmax2", ctypes.c_uint64),
        ("hmfai", ctypes.c_uint32),
        ("_reserved5", ctypes.c_uint8 * 8),
        ("highest_cpu", ctypes.c_uint16),
        ("_reserved6", ctypes.c_uint8 * 2),
    ]


class CpuEntry(ctypes.BigEndianStructure):
    """One CPU entry of Read SCP Info (QEMU ``CPUEntry``)."""

    _pack_ = 1
    _fields_ = [
        ("address", ctypes.c_uint8),
        ("_reserved0", ctypes.c_uint8),
        ("features", ctypes.c_uint8 * 12),
        ("_reserved2", ctypes.c_uint8),
        ("type", ctypes.c_uint8),
    ]


class EventBufferHeader(ctypes.BigEndianStructure):
    """Header of one event buffer in Write/Read Event Data."""

    _pack_ = 1
    _fields_ = [
        ("length", ctypes.c_uint16),
        ("type", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("_reserved", ctypes.c_uint16),
    ]


assert ctypes.sizeof(ReadInfo) == 128 and ctypes.sizeof(CpuEntry) == 16
SCLP_HAS_CPU_INFO: Final = 0x0C00000000000000
SCLP_HAS_IOA_RECONFIG: Final = 0x0000000040000000
#: Configuration characteristics (Read SCP Info bytes 80-98: byte -> bits): byte 80 bit 2 suppression on
#: protection, byte 85 bit 6 enhanced suppression on protection 1 (a DAT-protection exception's TEID
#: designates the page and says so in bit 61; key-controlled and low-address protection leave bits 60-61
#: zero), as QEMU's CPU models report them.
SCLP_CONF_CHAR: Final = {80: 0x80 >> 2, 85: 0x80 >> 6}
EVENT_PROCESSED: Final = 0x80


#: Read CPU Info: counts and offsets of the configured and standby CPU entries, then the entries at 24
READ_CPU_INFO_HEADER: Final = 24
#: at most this many storage increments: the increment size doubles from 1 MiB until the memory fits
MAX_STORAGE_INCREMENTS: Final = 1020


def storage_increments(memory_size: int) -> tuple[int, int]:
    """The storage increment size in MiB (a power of two) and the number of whole increments that
    Read SCP Info reports for ``memory_size`` bytes, as QEMU's SCLP sizes them: the smallest size
    (from 1 MiB) that gives no more than 1020 increments. A program's memory is their product."""
    shift = 20
    while memory_size >> shift > MAX_STORAGE_INCREMENTS:
        shift += 1
    return 1 << (shift - 20), memory_size >> shift


class SccbAccess(Protocol):
    """How the SCLP reaches the SCCB: real addresses of the calling configuration."""

    memory_size: int
    prefix: int

    def read(self, real: int, length: int) -> bytes:
        """Read ``length`` bytes at a real address."""
        ...

    def write(self, real: int, data: bytes) -> None:
        """Write at a real address."""
        ...


#: the response codes the service call stores without running a command, as the header's big-endian field
_RC_INVALID_SCLP_COMMAND: Final = RC_INVALID_SCLP_COMMAND.to_bytes(2, "big")
_RC_SCCB_BOUNDARY_VIOLATION: Final = RC_SCCB_BOUNDARY_VIOLATION.to_bytes(2, "big")


class CpuSccb:
    """SCCB access through one CPU: real addresses with its prefixing (and a SIE guest's relocation)."""

    def __init__(self, cpu: object, memory_size: int) -> None:
        self.cpu = cpu
        self.memory_size = memory_size
        self.prefix: int = cpu.prefix  # type: ignore[attr-defined]

    def read(self, real: int, length: int) -> bytes:
        """Read at a real address of the CPU."""
        return self.cpu.read_real(real, length)  # type: ignore[attr-defined,no-any-return]

    def write(self, real: int, data: bytes) -> None:
        """Write at a real address of the CPU."""
        self.cpu.write_real(real, data)  # type: ignore[attr-defined]


def sccb_check(sccb: int, prefix: int, memory_size: int, length: int | None = None) -> None:
    """SERVC's program checks on the SCCB address, before any command (QEMU's ``sclp_service_call``): the
    one check of the machine, the hypervisor and the Ultravisor (for a secure guest, before the host sees
    the SCCB). An address whose 8-byte header is not in storage is an addressing exception; one not on a
    doubleword boundary below 2 GiB, or in the low 8 KiB or the CPU's prefix area, a specification
    exception; with ``length`` (the header's length field) a length below the 8-byte header is a
    specification exception too.

    Raises:
        ProgramException: 0x05 or 0x06 as above.
    """
    if sccb + 8 > memory_size:
        raise ProgramException(0x05, why=f"SCCB {sccb:#x} is outside memory")
    if sccb & 7 or sccb & ~0x7FFFFFF8 & 0xFFFFFFFFFFFFFFFF:
        raise ProgramException(0x06, why=f"SCCB {sccb:#x} is not 8-byte aligned below 2 GiB")
    if sccb < 0x2000 or prefix <= sccb < prefix + 0x2000:
        raise ProgramException(0x06, why=f"SCCB {sccb:#x} lies in a lowcore")
    if length is not None and length < 8:
        raise ProgramException(0x06, why="SCCB length below 8")


def merge_service_parameter(pending: int | None, new: int) -> int:
    """The parameter of the one service signal left pending when another is made pending while one is (as
    KVM's ``__inject_service`` merges them): the SCCB address of a completion already pending stays, and the
    event-pending bit (1) of either is kept.

    Console input arrives as a signal with parameter 1 (an event is pending), often while the completion of
    the guest's last SERVC (its SCCB's address) is still pending, or the other way round: one overwriting
    the other lost either the completion (Linux's SCLP driver then waits for its request timer, 30 s, to
    retry) or the news of the input (the line typed was not read until then)."""
    if pending is None:
        return new
    return (pending & ~3 or new & ~3) | ((pending | new) & 3)


@dataclass
class ServiceResult:
    """What a SERVC did: the external-interruption parameter to make pending."""

    ext_param: int


class Sclp:
    """The SCLP of one configuration (a machine, or one VM of the hypervisor).

    Args:
        cpus: callable returning the CPU addresses to report in Read SCP Info.
        console_out: called with the bytes of every ASCII console write.
    """

    def __init__(self, cpus: Callable[[], list[int]], console_out: Callable[[bytes], None]) -> None:
        self._cpus = cpus
        self._console_out = console_out
        self.input: deque[bytes] = deque()
        self.cp_receive_mask = 0
        self.cp_send_mask = 0
        #: the feature bytes of every CPU entry of Read SCP Info (byte 0 bit 4: SIEF2, the SIE facility)
        self.cpu_features = b""
        #: command word -> its handler (built once: the service call is on an SCLP call's path)
        self._handlers: dict[int, Callable[[bytearray, int], int]] = {
            SCLP_CMD_READ_SCP_INFO: self._read_scp_info,
            SCLP_CMD_READ_SCP_INFO_FORCED: self._read_scp_info,
            SCLP_CMD_READ_CPU_INFO: self._read_cpu_info,
            SCLP_CMD_WRITE_EVENT_MASK: self._write_event_mask,
            SCLP_CMD_WRITE_EVENT_DATA: self._write_event_data,
            SCLP_CMD_READ_EVENT_DATA: self._read_event_data,
        }

    # -- console input --------------------------------------------------------------------------------

    def feed_input(self, data: bytes) -> None:
        """Queue console input for the program (it reads it with Read Event Data)."""
        if data:
            self.input.append(data)

    @property
    def event_pending(self) -> bool:
        """True if the SCLP has an event the program has asked for."""
        return bool(self.input) and bool(self.cp_receive_mask & event_mask_bit(EVENT_ASCII_CONSOLE))

    # -- the service call -----------------------------------------------------------------------------

    def service_call(self, mem: SccbAccess, command: int, sccb: int) -> ServiceResult:
        """Perform SERVC; raises ProgramException for the checks made before any command."""
        sccb_check(sccb, mem.prefix, mem.memory_size)
        length = _U16.unpack_from(mem.read(sccb, 8))[0]  # the header's length field
        sccb_check(sccb, mem.prefix, mem.memory_size, length)
        handler = self._handlers.get(command)
        if handler is None:
            mem.write(sccb + 6, _RC_INVALID_SCLP_COMMAND)  # (the response code alone)
        elif (sccb & 0xFFF) + length > 0x1000 or length > 0x1000:
            mem.write(sccb + 6, _RC_SCCB_BOUNDARY_VIOLATION)
        elif sccb + length > mem.memory_size:
            raise ProgramException(0x05, why=f"SCCB {sccb:#x}+{length:#x} runs beyond memory")
        else:
            data = bytearray(mem.read(sccb, length))
            rc = handler(data, mem.memory_size)
            struct_rc = rc.to_bytes(2, "big")
            data[6:8] = struct_rc
            mem.write(sccb, bytes(data))
        return ServiceResult((sccb & ~3 & 0xFFFFFFFF) | (1 if self.event_pending else 0))

    def _read_scp_info(self, data: bytearray, memory_size: int) -> int:
        cpus = self._cpus()
        need = ctypes.sizeof(ReadInfo) + ctypes.sizeof(CpuEntry) * len(cpus)
        if len(data) < need:
            return RC_INSUFFICIENT_SCCB_LENGTH
        info = ReadInfo.from_buffer(data)
        rnsize, rnmax = storage_increments(memory_size)
        if rnsize <= 128:  # the one-byte field holds sizes up to 128 MiB; beyond, the 4-byte one
            info.rnsize, info.rnsize2 = rnsize, 0
        else:
            info.rnsize, info.rnsize2 = 0, rnsize
        if rnmax <= 0xFFFF:
            info.rnmax, info.rnmax2 = rnmax, 0
        else:
            info.rnmax, info.rnmax2 = 0, rnmax
        info.entries_cpu = len(cpus)
        info.offset_cpu = ctypes.sizeof(ReadInfo)
        info.highest_cpu = max(cpus) if cpus else 0
        info.facilities = SCLP_HAS_CPU_INFO | SCLP_HAS_IOA_RECONFIG
        for byte, bits in SCLP_CONF_CHAR.items():
            info.conf_char[byte - 80] = bits
        for i, addr in enumerate(cpus):
            e = CpuEntry.from_buffer(data, ctypes.sizeof(ReadInfo) + i * ctypes.sizeof(CpuEntry))
            e.address = addr
            e.type = 0
            for j, b in enumerate(self.cpu_features[:12]):
                e.features[j] = b
        del info
        return RC_NORMAL_READ_COMPLETION

    def _read_cpu_info(self, data: bytearray, _size: int) -> int:
        """Read CPU Info: the configured CPUs' entries after a 24-byte header (no standby CPUs)."""
        cpus = self._cpus()
        entry = ctypes.sizeof(CpuEntry)
        if len(data) < READ_CPU_INFO_HEADER + entry * len(cpus):
            return RC_INSUFFICIENT_SCCB_LENGTH
        struct.pack_into(
            ">HHHH", data, 8, len(cpus), READ_CPU_INFO_HEADER, 0, READ_CPU_INFO_HEADER + entry * len(cpus)
        )
        for i, addr in enumerate(cpus):
            data[READ_CPU_INFO_HEADER + i * entry : READ_CPU_INFO_HEADER + (i + 1) * entry] = bytes(
                CpuEntry(address=addr, type=0)
            )
        return RC_NORMAL_READ_COMPLETION

    def _write_event_mask(self, data: bytearray, _size: int) -> int:
        if len(data) < 12:
            return RC_INSUFFICIENT_SCCB_LENGTH
        mask_length = int.from_bytes(data[10:12], "big")
        if mask_length == 0 or mask_length > 1016 or 12 + 4 * mask_length > len(data):
            return RC_INVALID_MASK_LENGTH

        def get(i: int) -> int:
            raw = bytes(data[12 + i * mask_length : 12 + (i + 1) * mask_length])
            return int.from_bytes(raw[:4].ljust(4, b"\0"), "big")

        def put(i: int, value: int) -> None:
            raw = value.to_bytes(4, "big").ljust(mask_length, b"\0")[:mask_length]
            data[12 + i * mask_length : 12 + (i + 1) * mask_length] = raw

        self.cp_receive_mask, self.cp_send_mask = get(0), get(1)
        put(2, SCLP_SEND_MASK)
        put(3, SCLP_RECEIVE_MASK)
        return RC_NORMAL_COMPLETION

    def _write_event_data(self, data: bytearray, _size: int) -> int:
        off = 8
        handled = False
        while off + 6 <= len(data):
            ev = EventBufferHeader.from_buffer(data, off)
            if ev.length < 6 or off + ev.length > len(data):
                break
            if ev.type == EVENT_ASCII_CONSOLE and SCLP_RECEIVE_MASK & event_mask_bit(ev.type):
                self._console_out(bytes(data[off + 6 : off + ev.length]))
                ev.flags |= EVENT_PROCESSED
                handled = True
            else:
                del ev
                return RC_INVALID_FUNCTION
            off += ev.length
            del ev
        return RC_NORMAL_COMPLETION if handled else RC_INVALID_FUNCTION

    def _read_event_data(self, data: bytearray, _size: int) -> int:
        if len(data) != 4096:
            return RC_INSUFFICIENT_SCCB_LENGTH
        if not self.event_pending:
            return RC_NO_EVENT_BUFFERS_STORED
        room = len(data) - 8 - 7
        chunk = self.input.popleft()
        if len(chunk) > room:
            self.input.appendleft(chunk[room:])
            chunk = chunk[:room]
        body = b"\0" + chunk
        ev = EventBufferHeader(length=6 + len(body), type=EVENT_ASCII_CONSOLE, flags=0)
        data[8 : 8 + 6] = bytes(ev)
        data[14 : 14 + len(body)] = body
        return RC_NORMAL_COMPLETION

"""The channel subsystem: subchannels and their SCHIB state, the I/O instructions' effects, channel programs,
I/O interruptions and channel-report words.

One channel subsystem image (CSS 0, subchannel set 0) with one virtual channel path (CHPID 0, type 0x32, as
QEMU's virtio-ccw machine has it). Each device is a ``CcwDevice`` behind its own subchannel, numbered in
the order devices are added, with the subchannel number as its device number.

A start function runs its whole channel program when SSCH (or RSCH) is accepted: the subchannel is status
pending with primary and secondary status before the instruction completes, and its I/O interruption is
pending from then on (delivered by a CPU through the lowcore when PSW bit 6 and the subclass's CR6 bit
allow, or taken by TPI, cleared by TSCH). So no start function is ever left pending or active between
instructions: XSCH finds nothing to cancel, STCPS stores zeros, and an initial-status or PCI condition is
presented together with the final status.

Storage is reached the way the channel subsystem reaches it: absolute addresses, key-controlled protection
with the ORB's subchannel key (references and changes recorded in the storage key), through a
``HostView`` (a secure or donated frame is never read or written: the access ends the channel program with
a protection check). The instruction decoding, operand addresses and the CPU's own operand accesses are
the owner's (``emulator.machine.channel``); this module takes and returns control blocks as bytes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from emulator.errors import HwError, ProgramException, SecureStorageAccess
from emulator.hw import css_blocks as cb
from emulator.hw.host_view import HostView
from emulator.hw.memory import KEY_ACC_MASK, KEY_C, KEY_F, KEY_R, PAGE_SHIFT

__all__ = [
    "ChannelSubsystem",
    "CcwDevice",
    "CommandReject",
    "ChannelCheck",
    "DataStream",
    "Subchannel",
    "SID_ONE",
    "PGM_OPERAND",
]

PGM_OPERAND: Final = 0x15
SID_ONE: Final = 0x00010000  # subsystem-identification word: bit 47 (of GR1) is one for a subchannel
CHPID: Final = 0x00
CHPID_TYPE: Final = 0x32  # virtual channel path, as QEMU's virtio-ccw machine
PATH_MASK: Final = 0x80  # the one installed path: CHPID slot 0
CU_TYPE_VIRTIO: Final = 0x3832
MAX_CRWS: Final = 64
SENSE_COMMAND_REJECT: Final = 0x80  # sense byte 0 bit 0


class ChannelCheck(Exception):  # noqa: N818 - the architecture's name for the condition
    """A condition that ends a channel program with a subchannel-status bit (program, protection check)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class CommandReject(Exception):  # noqa: N818 - the architecture's name for the condition
    """A device does not accept a command: unit check with command reject in the sense data."""


class DataStream:
    """The data area of one command (one CCW, or several chained by CD) as its device sees it.

    ``read(n)`` fetches the next bytes of the area from storage (device writes: the guest's data),
    ``write(data)`` stores into it (device reads), ``count`` is the area's length and ``residual`` what the
    device left untouched. Bytes beyond the area are neither fetched nor stored.
    """

    def __init__(self, css: ChannelSubsystem, chunks: list[tuple[int, int, bool]], key: int) -> None:
        self._css = css
        self._chunks = chunks  # (absolute address, length, skip)
        self._key = key
        self.count = sum(n for _, n, _ in chunks)
        self.pos = 0
        #: the device had more to store than the area holds (incorrect length unless SLI)
        self.overrun = False

    @property
    def residual(self) -> int:
        """Bytes of the count not yet transferred."""
        return self.count - self.pos

    def _pieces(self, n: int) -> list[tuple[int, int, bool]]:
        out, at, want = [], 0, min(n, self.residual)
        for addr, length, skip in self._chunks:
            if want <= 0:
                break
            if at + length <= self.pos:
                at += length
                continue
            off = max(0, self.pos - at)
            take = min(length - off, want)
            out.append((addr + off, take, skip))
            want -= take
            at += length
        return out

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes of the area (fewer at its end)."""
        data = b"".join(self._css.channel_read(a, k, self._key) for a, k, _ in self._pieces(n))
        self.pos += len(data)
        return data

    def fetch_at(self, offset: int, n: int) -> bytes:
        """Bytes of the area at ``offset`` without moving the position (a command's input field that lies
        after its output, such as READ FEATURES' index)."""
        saved = self.pos
        self.pos = offset
        try:
            return self.read(n)
        finally:
            self.pos = saved

    def skip(self, n: int) -> None:
        """Count ``n`` bytes as transferred without storing them (a field the device leaves as it is)."""
        self.pos = min(self.count, self.pos + n)

    def write(self, data: bytes) -> None:
        """Store ``data`` at the next bytes of the area (what does not fit is dropped); skipped CCWs store
        nothing but count."""
        pos = 0
        if len(data) > self.residual:
            self.overrun = True
        for a, k, skip in self._pieces(len(data)):
            if not skip:
                self._css.channel_write(a, data[pos : pos + k], self._key)
            pos += k
        self.pos += pos


class CcwDevice:
    """A device behind a subchannel: the commands every device has (sense, sense ID, no-operation); a
    model adds its own in ``command``.

    ``execute`` returns the device status ending the command (channel end and device end for a normal
    end); a rejected command ends with unit check alone (initial status: the command never started) and
    command reject in the sense data. SENSE ID stores the 256-byte area (zero beyond the common part).
    """

    cu_type = 0
    cu_model = 0
    dev_type = 0
    dev_model = 0
    name = "ccw device"

    def __init__(self) -> None:
        self.sense = bytearray(32)
        #: set by the channel subsystem when the device is attached: raises an unsolicited (alert) status
        self.notify_subchannel: Callable[[], None] = lambda: None

    def reset(self) -> None:
        """Device reset (clear function, subsystem reset)."""
        self.sense[:] = bytes(32)

    def execute(self, cmd: int, data: DataStream) -> int:
        """Run one command; returns its device status."""
        try:
            if cmd == cb.CMD_SENSE:
                data.write(bytes(self.sense))
                self.sense[:] = bytes(32)
            elif cmd == cb.CMD_SENSE_ID:
                ident = bytes([0xFF]) + self.cu_type.to_bytes(2, "big") + bytes([self.cu_model])
                ident += self.dev_type.to_bytes(2, "big") + bytes([self.dev_model, 0])
                data.write(ident.ljust(256, b"\0"))
            elif cmd == cb.CMD_NOOP:
                pass
            else:
                self.command(cmd, data)
        except CommandReject:
            self.sense[:] = bytes(32)
            self.sense[0] = SENSE_COMMAND_REJECT
            return cb.DEV_UNIT_CHECK
        return cb.DEV_CHANNEL_END | cb.DEV_DEVICE_END

    def command(self, cmd: int, data: DataStream) -> None:
        """A model's own commands (raise ``CommandReject`` for anything else)."""
        raise CommandReject(f"command {cmd:#04x}")


@dataclass
class Subchannel:
    """One subchannel: its PMCW, SCSW and measurement-block address, and the device behind it."""

    number: int
    device: CcwDevice
    pmcw: cb.Pmcw = field(default_factory=cb.Pmcw)
    scsw: cb.Scsw = field(default_factory=cb.Scsw)
    mba: int = 0
    orb: cb.Orb = field(default_factory=cb.Orb)
    #: the CCW a suspended channel program resumes at
    suspended_at: int = 0
    #: an I/O interruption is pending for this subchannel (taken by a CPU or TPI, cleared by TSCH)
    interruption_pending: bool = False

    def __post_init__(self) -> None:
        self.reset()

    @property
    def sid(self) -> int:
        """Subsystem-identification word (subchannel set 0)."""
        return SID_ONE | self.number

    @property
    def isc(self) -> int:
        """The PMCW's interruption subclass."""
        return (self.pmcw.flags & cb.PMCW_ISC) >> cb.PMCW_ISC_SHIFT

    @property
    def enabled(self) -> bool:
        """Whether the PMCW's enabled bit is on."""
        return bool(self.pmcw.flags & cb.PMCW_E)

    @property
    def status_pending(self) -> bool:
        """Whether the SCSW shows status pending."""
        return bool(self.scsw.ctrl & cb.STCTL_PENDING)

    def reset(self) -> None:
        """The subchannel as installed (I/O-subsystem reset): disabled, idle, one installed path."""
        p = self.pmcw = cb.Pmcw()
        p.flags = cb.PMCW_V
        p.devno = self.number
        p.pim = p.pam = p.lpm = PATH_MASK
        p.pom = 0xFF
        p.chpid[0] = CHPID
        self.scsw = cb.Scsw()
        self.mba = 0
        self.suspended_at = 0
        self.interruption_pending = False
        self.device.reset()


class ChannelSubsystem:
    """The channel subsystem of a machine.

    Args:
        storage: the host view of absolute storage (every channel access is checked like a host access).
        keys: the machine's storage keys (one byte per frame), for key-controlled protection of channel
            accesses and their reference and change recording.
    """

    def __init__(self, storage: HostView, keys: bytearray) -> None:
        self.storage = storage
        self._keys = keys
        self.subchannels: list[Subchannel] = []
        self._queue: list[Subchannel] = []
        #: True while an I/O interruption is pending (the CPUs' cheap test before they ask ``take_io``)
        self.pending = False
        self.crws: list[int] = []
        #: a channel-report-pending machine check waits for a CPU (made when a report is queued while
        #: reports are announced; STCRW finding none announces the next again)
        self.crw_mcheck = False
        self._announce = True
        self.mb_update = False
        self.mb_dct = False
        self.mbo = 0
        self.mbk = 0
        self.address_limit = 0

    # -- configuration ----------------------------------------------------------------------------------

    def attach(self, device: CcwDevice) -> Subchannel:
        """Put a device behind the next free subchannel."""
        if len(self.subchannels) >= 0x10000:
            raise HwError("no free subchannel in subchannel set 0")
        sch = Subchannel(len(self.subchannels), device)
        self.subchannels.append(sch)
        device.notify_subchannel = lambda: self.alert(sch)
        return sch

    def reset(self) -> None:
        """I/O-system reset: every subchannel idle and disabled, no interruption or report pending,
        measurement off."""
        for sch in self.subchannels:
            sch.reset()
        self._queue.clear()
        self.pending = False
        self.crws.clear()
        self.crw_mcheck, self._announce = False, True
        self.mb_update = self.mb_dct = False
        self.mbo = self.mbk = self.address_limit = 0

    def subchannel(self, sid: int) -> Subchannel | None:
        """The installed subchannel a subsystem-identification word names (None: not operational).

        ``sid`` must have passed ``check_sid``."""
        number = sid & 0xFFFF
        return self.subchannels[number] if number < len(self.subchannels) else None

    @staticmethod
    def check_sid(sid: int) -> None:
        """Operand exception unless GR1 holds a subchannel's subsystem-identification word of set 0."""
        if sid >> 16 != 1:
            raise ProgramException(PGM_OPERAND, why=f"{sid:#010x} is not a subsystem id of subchannel set 0")

    # -- storage as the channel subsystem reaches it -----------------------------------------------------

    def _access(self, addr: int, length: int, key: int, store: bool) -> None:
        if addr < 0 or addr + length > self.storage.size:
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, f"address {addr:#x} is outside storage")
        keys = self._keys
        for frame in range(addr >> PAGE_SHIFT, (addr + length - 1 >> PAGE_SHIFT) + 1):
            sk = keys[frame]
            if key and (sk & KEY_ACC_MASK) >> 4 != key and (store or sk & KEY_F):
                raise ChannelCheck(cb.SCH_PROTECTION_CHECK, f"key {key} may not access frame {frame:#x}")
        try:
            self.storage.check(addr, length, store)
        except SecureStorageAccess as e:
            raise ChannelCheck(cb.SCH_PROTECTION_CHECK, str(e)) from None

    def _referenced(self, addr: int, length: int, store: bool) -> None:
        keys = self._keys
        for frame in range(addr >> PAGE_SHIFT, (addr + length - 1 >> PAGE_SHIFT) + 1):
            keys[frame] |= KEY_R | (KEY_C if store else 0)

    # The fetch and the store are checked again by the host view itself, under the owner tags as they are
    # then: a frame that turned secure after ``_access`` (an Ultravisor command on another thread) gives the
    # same protection check, with the reference and change bits untouched.

    def channel_read(self, addr: int, length: int, key: int) -> bytes:
        """Fetch storage for a channel program (protection check on a key mismatch or a secure frame)."""
        if length <= 0:
            return b""
        self._access(addr, length, key, False)
        try:
            data = self.storage.read(addr, length)
        except SecureStorageAccess as e:
            raise ChannelCheck(cb.SCH_PROTECTION_CHECK, str(e)) from None
        self._referenced(addr, length, False)
        return data

    def channel_write(self, addr: int, data: bytes, key: int) -> None:
        """Store for a channel program (protection check on a key mismatch or a secure frame)."""
        if data:
            self._access(addr, len(data), key, True)
            try:
                self.storage.write(addr, data)
            except SecureStorageAccess as e:
                raise ChannelCheck(cb.SCH_PROTECTION_CHECK, str(e)) from None
            self._referenced(addr, len(data), True)

    # -- I/O interruptions ---------------------------------------------------------------------------------

    def _make_pending(self, sch: Subchannel) -> None:
        """The subchannel is status pending: request its I/O interruption (if it is enabled)."""
        if sch.enabled and not sch.interruption_pending:
            sch.interruption_pending = True
            self._queue.append(sch)
            self.pending = True

    def _withdraw(self, sch: Subchannel) -> None:
        if sch.interruption_pending:
            sch.interruption_pending = False
            self._queue.remove(sch)
            self.pending = bool(self._queue)

    def io_deliverable(self, cr6: int) -> bool:
        """An I/O interruption is pending in a subclass CR6 enables (bits 32-39)."""
        return self.pending and any(cr6 & (0x80000000 >> s.isc) for s in self._queue)

    def pending_subclasses(self) -> int:
        """CR6 bits (32-39) of the subclasses with a pending I/O interruption."""
        bits = 0
        for s in self._queue:
            bits |= 0x80000000 >> s.isc
        return bits

    def take_io(self, cr6: int) -> tuple[int, int, int] | None:
        """Take the highest-priority pending I/O interruption CR6 enables: (subsystem id, interruption
        parameter, interruption-identification word), or None."""
        best = None
        for s in self._queue:
            if cr6 & (0x80000000 >> s.isc) and (best is None or s.isc < best.isc):
                best = s
        if best is None:
            return None
        self._withdraw(best)
        return best.sid, best.pmcw.intparm, best.isc << 27

    def alert(self, sch: Subchannel) -> None:
        """An unsolicited condition from the device (a virtio notification): an enabled subchannel that is
        not yet status pending becomes status pending with alert status."""
        if sch.enabled and not sch.status_pending:
            sch.scsw.ctrl = (sch.scsw.ctrl & ~cb.STCTL_MASK) | cb.STCTL_ALERT | cb.STCTL_PENDING
            self._make_pending(sch)

    # -- channel reports ------------------------------------------------------------------------------------

    def queue_crw(self, word: int) -> None:
        """Queue a channel-report word (the oldest is stored first; overflow sets R in the last kept)."""
        if len(self.crws) >= MAX_CRWS:
            self.crws[-1] |= 0x20000000
            return
        self.crws.append(word)
        if self._announce:
            self._announce = False
            self.crw_mcheck = True

    def take_crw_mcheck(self) -> bool:
        """A CPU takes the channel-report-pending machine check (True if one was waiting)."""
        taken, self.crw_mcheck = self.crw_mcheck, False
        return taken

    def stcrw(self) -> int | None:
        """STORE CHANNEL REPORT WORD: the oldest pending report, or None (cc 1: the next report will be
        announced by a machine check again)."""
        if self.crws:
            return self.crws.pop(0)
        self._announce = True
        return None

    def rchp(self, gr1: int) -> int:
        """RESET CHANNEL PATH: cc 0 and a solicited channel-path report, cc 3 for a path not installed."""
        if gr1 & 0xFFFFFF00:
            raise ProgramException(PGM_OPERAND, why="RCHP: bits 32-55 of GR1 must be zero")
        if gr1 & 0xFF != CHPID or not self.subchannels:
            return 3
        self.queue_crw(cb.crw(cb.CRW_RSC_CHP, cb.CRW_ERC_INIT, CHPID, solicited=True))
        return 0

    # -- STSCH / MSCH ------------------------------------------------------------------------------------

    def stsch(self, sid: int) -> tuple[int, bytes | None]:
        """STORE SUBCHANNEL: (cc, SCHIB)."""
        sch = self.subchannel(sid)
        if sch is None:
            return 3, None
        schib = cb.Schib()
        schib.pmcw = sch.pmcw
        schib.pmcw.flags &= ~(cb.PMCW_RES5 | cb.PMCW_RES67 | cb.PMCW_Q | cb.PMCW_W)
        schib.scsw = sch.scsw
        if sch.pmcw.chars & cb.PMCW_MBFC:
            schib.mba = sch.mba
        return 0, bytes(schib)

    def msch(self, sid: int, data: bytes) -> int:
        """MODIFY SUBCHANNEL with a SCHIB already fetched (operand exception for an invalid one)."""
        schib = cb.parse(cb.Schib, data)
        p = schib.pmcw
        if p.flags & (cb.PMCW_Q | cb.PMCW_W | cb.PMCW_RES67) or p.chars & cb.PMCW_CHARS_RESERVED:
            raise ProgramException(PGM_OPERAND, why="MSCH: reserved PMCW bits are not zero")
        if p.chars & cb.PMCW_MBFC and schib.mba & 0x3F:
            raise ProgramException(PGM_OPERAND, why="MSCH: format-1 measurement block not on 64 bytes")
        sch = self.subchannel(sid)
        if sch is None:
            return 3
        if sch.status_pending:
            return 1
        if sch.scsw.ctrl & cb.FCTL_MASK:
            return 2
        cur = sch.pmcw
        cur.intparm = p.intparm
        cur.flags = (cur.flags & ~cb.PMCW_MSCH_FLAGS) | (p.flags & cb.PMCW_MSCH_FLAGS)
        cur.lpm = p.lpm
        cur.mbi = p.mbi
        keep = cb.PMCW_MBFC | cb.PMCW_CSENSE
        cur.chars = (cur.chars & ~keep) | (p.chars & keep)
        sch.mba = schib.mba if p.chars & cb.PMCW_MBFC else 0
        return 0

    # -- SSCH / RSCH and channel programs -----------------------------------------------------------------

    def ssch(self, sid: int, data: bytes) -> int:
        """START SUBCHANNEL with an ORB already fetched (operand exception for an invalid one)."""
        orb = cb.parse(cb.Orb, data)
        if orb.ctrl & cb.ORB_INVALID or orb.cpa & 0x80000000:
            raise ProgramException(PGM_OPERAND, why="SSCH: invalid ORB")
        sch = self.subchannel(sid)
        if sch is None or not sch.enabled:
            return 3
        if sch.status_pending:
            return 1
        if sch.scsw.ctrl & cb.FCTL_MASK:
            return 2
        lpm = (orb.ctrl & cb.ORB_LPM) >> 8
        if not lpm & sch.pmcw.pam:
            return 3  # no logical path available
        sch.orb = orb
        sch.pmcw.intparm = orb.intparm  # the ORB's interruption parameter and LPM replace the subchannel's
        sch.pmcw.lpm = lpm
        sch.scsw = cb.Scsw()
        sch.scsw.ctrl = cb.FCTL_START | cb.ACTL_START_PEND | (orb.ctrl & cb.ORB_KEY)
        for bit, sbit in ((cb.ORB_SPND, cb.SCSW_S), (cb.ORB_FMT, cb.SCSW_F), (cb.ORB_PFCH, cb.SCSW_P)):
            if orb.ctrl & bit:
                sch.scsw.ctrl |= sbit
        for bit, sbit in ((cb.ORB_ISIC, cb.SCSW_I), (cb.ORB_ALCC, cb.SCSW_A), (cb.ORB_SSIC, cb.SCSW_U)):
            if orb.ctrl & bit:
                sch.scsw.ctrl |= sbit
        sch.pmcw.lpum = PATH_MASK
        self._measure(sch)
        self._run(sch, orb.cpa)
        return 0

    def rsch(self, sid: int) -> int:
        """RESUME SUBCHANNEL: a suspended channel program goes on at the CCW it stopped at."""
        sch = self.subchannel(sid)
        if sch is None or not sch.enabled:
            return 3
        if sch.status_pending:
            return 1
        ctrl = sch.scsw.ctrl
        if ctrl & cb.FCTL_MASK != cb.FCTL_START or not ctrl & cb.SCSW_S or ctrl & cb.ACTL_RESUME_PEND:
            return 2
        if not ctrl & cb.ACTL_SUSPENDED:
            return 2
        sch.scsw.ctrl = (ctrl & ~cb.ACTL_SUSPENDED) | cb.ACTL_RESUME_PEND
        self._measure(sch)
        self._run(sch, sch.suspended_at)  # the CCW is fetched again: still S, it suspends again
        return 0

    def _measure(self, sch: Subchannel) -> None:
        """Count a start or resume in the subchannel's measurement block (SCHM's update mode and MBUE)."""
        if not (self.mb_update and sch.pmcw.flags & cb.PMCW_MBUE):
            return
        if sch.pmcw.chars & cb.PMCW_MBFC:
            addr, size = sch.mba, 4
        else:
            addr, size = self.mbo + 32 * sch.pmcw.mbi, 2
        try:
            old = int.from_bytes(self.channel_read(addr, size, self.mbk), "big")
            self.channel_write(addr, ((old + 1) & ((1 << 8 * size) - 1)).to_bytes(size, "big"), self.mbk)
        except ChannelCheck:
            # a measurement-block program or protection check: measurement stops for the subchannel
            sch.pmcw.flags &= ~cb.PMCW_MM

    def _fetch_ccw(self, orb: cb.Orb, addr: int) -> cb.Ccw1:
        key = orb.ctrl >> 28
        if addr & 7:
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, f"CCW address {addr:#x} is not on a doubleword")
        raw = self.channel_read(addr, 8, key)
        if orb.ctrl & cb.ORB_FMT:
            ccw = cb.Ccw1.from_buffer_copy(raw)
            if ccw.cda & 0x80000000:
                raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "format-1 CCW data address bit 0 is one")
            return ccw
        c0 = cb.Ccw0.from_buffer_copy(raw)
        ccw = cb.Ccw1()
        ccw.cmd, ccw.flags, ccw.count, ccw.cda = c0.cmd, c0.flags, c0.count, c0.cda_hi << 16 | c0.cda_lo
        if ccw.cmd & 0xF != cb.CMD_TIC and ccw.count == 0:
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "format-0 CCW with a zero count")
        return ccw

    def _chunks(self, sch: Subchannel, ccw: cb.Ccw1) -> list[tuple[int, int, bool]]:
        """The storage a CCW's data area covers: its data address, or its IDAW list."""
        orb, skip, count = sch.orb, bool(ccw.flags & cb.CCW_SKP), ccw.count
        limit_mode = (sch.pmcw.flags & cb.PMCW_LM) >> 5
        if not ccw.flags & cb.CCW_IDA:
            self._check_limit(orb, limit_mode, ccw.cda, count)
            return [(ccw.cda, count, skip)] if count else []
        key = orb.ctrl >> 28
        wide = bool(orb.ctrl & cb.ORB_C64)
        block = 2048 if not wide or orb.ctrl & cb.ORB_I2K else 4096
        size = 8 if wide else 4
        if ccw.cda & (size - 1):
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "IDAW list not aligned")
        out, at, first = [], ccw.cda, True
        while count > 0:
            idaw = int.from_bytes(self.channel_read(at, size, key), "big")
            if not wide and idaw & 0x80000000:
                raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "format-1 IDAW bit 0 is one")
            if not first and idaw & (block - 1):
                raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "IDAW after the first not on a block boundary")
            n = min(count, block - (idaw & (block - 1)))
            self._check_limit(orb, limit_mode, idaw, n)
            out.append((idaw, n, skip))
            count -= n
            at += size
            first = False
        return out

    def _check_limit(self, orb: cb.Orb, mode: int, addr: int, count: int) -> None:
        if not orb.ctrl & cb.ORB_ALCC or mode == 0 or not count:
            return
        if (mode == 1 and addr < self.address_limit) or (mode == 2 and addr + count > self.address_limit):
            raise ChannelCheck(cb.SCH_PROGRAM_CHECK, f"data address {addr:#x} violates the address limit")

    def _run(self, sch: Subchannel, addr: int) -> None:
        """Execute the channel program at ``addr`` to its end (or a suspension); make the status pending."""
        orb = sch.orb
        s = sch.scsw
        s.ctrl &= ~(cb.ACTL_START_PEND | cb.ACTL_RESUME_PEND)
        s.ctrl |= cb.ACTL_SCH_ACTIVE | cb.ACTL_DEV_ACTIVE
        dstat, cstat, residual, last = 0, 0, 0, addr - 8
        after_tic = False
        try:
            while True:
                ccw = self._fetch_ccw(orb, addr)
                last = addr
                if ccw.cmd & 0xF == cb.CMD_TIC:
                    if after_tic:
                        raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "TIC to a TIC")
                    after_tic, addr = True, ccw.cda
                    continue
                after_tic = False
                if ccw.cmd & 0xF == 0:
                    raise ChannelCheck(cb.SCH_PROGRAM_CHECK, f"invalid command code {ccw.cmd:#04x}")
                if ccw.flags & cb.CCW_MIDA:
                    raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "MIDA flag without the MIDAW facility")
                if ccw.flags & cb.CCW_S:
                    if not orb.ctrl & cb.ORB_SPND:
                        raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "suspend flag without suspend control")
                    self._suspend(sch, addr)
                    return
                if ccw.flags & cb.CCW_PCI:
                    cstat |= cb.SCH_PCI
                chunks = self._chunks(sch, ccw)
                first_ccw = ccw
                while ccw.flags & cb.CCW_CD:  # data chaining: the next CCW's area continues this one's
                    addr += 8
                    ccw = self._fetch_ccw(orb, addr)
                    last = addr
                    if ccw.cmd & 0xF == cb.CMD_TIC:
                        raise ChannelCheck(cb.SCH_PROGRAM_CHECK, "TIC inside a data chain")
                    chunks += self._chunks(sch, ccw)
                stream = DataStream(self, chunks, orb.ctrl >> 28)
                dstat = sch.device.execute(first_ccw.cmd, stream)
                residual = min(stream.residual, ccw.count)
                executed = dstat & cb.DEV_CHANNEL_END  # (a rejected command transferred nothing)
                if executed and (stream.residual or stream.overrun) and not ccw.flags & cb.CCW_SLI:
                    cstat |= cb.SCH_INCORRECT_LENGTH
                chain = ccw.flags & cb.CCW_CC and not cstat & cb.SCH_INCORRECT_LENGTH
                normal = dstat & ~cb.DEV_STATUS_MODIFIER == cb.DEV_CHANNEL_END | cb.DEV_DEVICE_END
                if not (chain and normal):
                    break
                addr += 16 if dstat & cb.DEV_STATUS_MODIFIER else 8
        except ChannelCheck as e:
            cstat |= e.status
            dstat = 0
        s.cpa = last + 8
        s.count = residual
        s.dstat = dstat
        s.cstat = cstat
        s.ctrl &= ~(cb.ACTL_MASK | cb.STCTL_MASK)
        s.ctrl |= cb.STCTL_PRIMARY | cb.STCTL_SECONDARY | cb.STCTL_PENDING
        checks = cstat & ~(cb.SCH_PCI | cb.SCH_INCORRECT_LENGTH)
        if dstat & (cb.DEV_UNIT_CHECK | cb.DEV_UNIT_EXCEPTION) or checks:
            s.ctrl |= cb.STCTL_ALERT
        self._make_pending(sch)

    def _suspend(self, sch: Subchannel, addr: int) -> None:
        s = sch.scsw
        sch.suspended_at = addr
        s.cpa = addr + 8
        s.ctrl = (s.ctrl & ~(cb.ACTL_SCH_ACTIVE | cb.ACTL_DEV_ACTIVE)) | cb.ACTL_SUSPENDED
        if not sch.orb.ctrl & cb.ORB_SSIC:  # intermediate status: the program is suspended
            s.ctrl = (s.ctrl & ~cb.STCTL_MASK) | cb.STCTL_INTERMEDIATE | cb.STCTL_PENDING
            self._make_pending(sch)

    # -- TSCH, HSCH, CSCH, XSCH -----------------------------------------------------------------------------

    def tsch(self, sid: int) -> tuple[int, bytes | None]:
        """TEST SUBCHANNEL: (cc, IRB); cc 0 clears the status (and the pending interruption)."""
        sch = self.subchannel(sid)
        if sch is None:
            return 3, None
        s = sch.scsw
        irb = cb.Irb()
        irb.scsw = s
        irb.sublog = sch.pmcw.lpum << 16
        if s.dstat & cb.DEV_UNIT_CHECK and sch.pmcw.chars & cb.PMCW_CSENSE:
            irb.erw = cb.ERW_CONS | (len(sch.device.sense) << cb.ERW_SCNT_SHIFT)
            ctypes.memmove(irb.ecw, bytes(sch.device.sense), 32)
        if not sch.status_pending:
            return 1, bytes(irb)
        stctl, fctl, actl = s.ctrl & cb.STCTL_MASK, s.ctrl & cb.FCTL_MASK, s.ctrl & cb.ACTL_MASK
        intermediate_only = stctl == cb.STCTL_INTERMEDIATE | cb.STCTL_PENDING
        s.ctrl &= ~cb.STCTL_MASK
        if not intermediate_only or (fctl & cb.FCTL_HALT and actl & cb.ACTL_SUSPENDED):
            s.ctrl &= ~cb.FCTL_MASK
        if not intermediate_only:
            s.ctrl &= ~(cb.SCSW_N | cb.ACTL_RESUME_PEND | cb.ACTL_START_PEND | cb.ACTL_HALT_PEND)
            s.ctrl &= ~(cb.ACTL_CLEAR_PEND | cb.ACTL_SUSPENDED)
        if s.dstat & cb.DEV_UNIT_CHECK and sch.pmcw.chars & cb.PMCW_CSENSE:
            sch.device.sense[:] = bytes(32)  # presented concurrently: gone from the device
        self._withdraw(sch)
        return 0, bytes(irb)

    def hsch(self, sid: int) -> int:
        """HALT SUBCHANNEL: ends a suspended program; on an idle subchannel just makes status pending."""
        sch = self.subchannel(sid)
        if sch is None or not sch.enabled:
            return 3
        s = sch.scsw
        stctl = s.ctrl & cb.STCTL_MASK
        if stctl & cb.STCTL_PENDING and stctl != cb.STCTL_INTERMEDIATE | cb.STCTL_PENDING:
            return 1
        if s.ctrl & (cb.FCTL_HALT | cb.FCTL_CLEAR):
            return 2
        self._withdraw(sch)
        suspended = bool(s.ctrl & cb.ACTL_SUSPENDED)
        s.ctrl = (s.ctrl & ~(cb.ACTL_MASK | cb.STCTL_MASK)) | cb.FCTL_HALT | cb.STCTL_PENDING
        s.cstat = 0
        if suspended:
            s.dstat = cb.DEV_DEVICE_END
            s.ctrl |= cb.STCTL_PRIMARY | cb.STCTL_SECONDARY
        else:
            s.dstat = 0
        self._make_pending(sch)
        return 0

    def csch(self, sid: int) -> int:
        """CLEAR SUBCHANNEL: ends every function, resets the device's state, status pending (clear)."""
        sch = self.subchannel(sid)
        if sch is None or not sch.enabled:
            return 3
        self._withdraw(sch)
        s = sch.scsw
        s.ctrl = (s.ctrl & cb.SCSW_KEY) | cb.FCTL_CLEAR | cb.STCTL_PENDING
        s.dstat = s.cstat = 0
        sch.pmcw.pnom = 0
        sch.pmcw.lpum = PATH_MASK
        sch.device.sense[:] = bytes(32)
        self._make_pending(sch)
        return 0

    def xsch(self, sid: int) -> int:
        """CANCEL SUBCHANNEL: cc 1 status pending, else cc 2 (a start function is never left start pending:
        it runs when SSCH is accepted)."""
        sch = self.subchannel(sid)
        if sch is None or not sch.enabled:
            return 3
        return 1 if sch.status_pending else 2

    # -- SCHM, SAL ------------------------------------------------------------------------------------

    def schm(self, gr1: int, gr2: int) -> None:
        """SET CHANNEL MONITOR: measurement-block key, update mode, device-connect-time mode, origin."""
        gr1 &= 0xFFFFFFFF
        if gr1 & 0x0FFFFFFC:
            raise ProgramException(PGM_OPERAND, why="SCHM: bits 36-61 of GR1 must be zero")
        update = bool(gr1 & 2)
        if update and gr2 & 0x1F:
            raise ProgramException(PGM_OPERAND, why="SCHM: measurement-block origin not on 32 bytes")
        self.mbk = gr1 >> 28
        self.mb_update = update
        self.mb_dct = bool(gr1 & 1)
        self.mbo = gr2 if update else 0

    def sal(self, gr1: int) -> None:
        """SET ADDRESS LIMIT (GR1 bits 33-47 give the limit's bits 1-15; bits 32 and 48-63 must be zero)."""
        gr1 &= 0xFFFFFFFF
        if gr1 & 0x8000FFFF:
            raise ProgramException(PGM_OPERAND, why="SAL: bits 32 and 48-63 of GR1 must be zero")
        self.address_limit = gr1

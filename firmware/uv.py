"""The Ultravisor: the UVC dispatcher, secure configurations and CPUs, and the ownership of every frame.

Contract with the CPU model (``emulator/hw/cpu.py``): the CPU traps UVC (``B9A4``), checks the M fields
(specification exception) and the problem state (privileged-operation exception), builds a ``ControlBlock``
over the UVCB address as its translation says (home space when DAT is on) and calls
``Ultravisor.call(caller, cb)``, which returns the condition code and stores rc/rrc (and outputs) into the
block. Access exceptions of the block propagate out of ``call`` as ``ProgramException`` before anything
changed.

Storage ownership lives in ``PhysicalMemory.owner`` / ``PhysicalMemory.shared``: the Ultravisor is the only
writer (``set_owner`` / ``set_shared`` notify the CPUs to flush their TLBs). The CPU decides per page at
TLB-fill time with ``frame_state`` / ``secure_guest_frame`` / ``guest_frame_check``.

Layout: ``firmware.uv_codes`` (command table, rcs), ``firmware.uv_blocks`` (UVCB records),
``firmware.uv_storage`` (page records and export sealing). Choices where the public sources are silent are
listed in ``docs/ultravisor.md``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, Protocol, runtime_checkable

from emulator.errors import HwError, ProgramException, SecureStorageAccess
from emulator.hw import dat
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PAGE_SHIFT, PAGE_SIZE, HostView, PhysicalMemory
from firmware import uv_blocks as B
from firmware import uv_image
from firmware.uv_codes import (
    BY_CODE,
    QUERY_FULL_LEN,
    QUERY_MIN_LEN,
    QUERY_VALUES,
    Cc,
    QueryValues,
    Rc,
    installed_calls,
)
from firmware.uv_storage import COUNTER_LIMIT, PageSealer

__all__ = [
    "UvCaller",
    "UvEvent",
    "UvEventSink",
    "ControlBlock",
    "TranslatingControlBlock",
    "AbsoluteControlBlock",
    "Ultravisor",
    "SecureConfig",
    "SecureCpu",
    "SecureGuestView",
    "CPU_STATE_OPR",
    "CPU_STATE_STP",
    "CPU_STATE_CHKSTP",
    "CPU_STATE_OPR_LOAD",
    "PGM_SECURE_STORAGE_ACCESS",
    "PGM_NON_SECURE_STORAGE_ACCESS",
    "PGM_SECURE_STORAGE_VIOLATION",
]

log = logging.getLogger("firmware.uv")

PGM_SECURE_STORAGE_ACCESS: Final = 0x3D
PGM_NON_SECURE_STORAGE_ACCESS: Final = 0x3E
PGM_SECURE_STORAGE_VIOLATION: Final = 0x3F

CPU_STATE_OPR: Final = 1
CPU_STATE_STP: Final = 2
CPU_STATE_CHKSTP: Final = 3
CPU_STATE_OPR_LOAD: Final = 5

FIRST_CONFIG_TAG: Final = 2
TWO_GIB: Final = 1 << 31
ONE_MIB: Final = 1 << 20
ASCE_P: Final = 0x100  # private-space control (bit 55)
ASCE_R: Final = 0x20  # real-space control (bit 58)
SD_SIZE: Final = 0x200  # SIE state description (kvm_s390_sie_block)
SCA_SIZE: Final = 0x4000  # ESCA: 16 KiB (kvm-unit-tests allocates 4 pages)
_U64: Final = struct.Struct(">Q")
_HEADER: Final = struct.Struct(">HH")  # UVCB header: len, cmd
_MASK64: Final = 0xFFFFFFFFFFFFFFFF
_ASCE_DT_REAL: Final = 0x2C  # ASCE designation type (bits 60-61) and real-space control (bit 58)
# segment-table entry: invalid (bit 58), table type (bits 60-61), DAT protection (bit 54)
_STE_NO_STORE: Final = 0x20 | 0x0C | 0x200
# page-table entry: invalid (bit 53), bit 52 (must be zero), DAT protection (bit 54)
_PTE_NO_STORE: Final = 0x400 | 0x800 | 0x200


def _segment_walk(buf: memoryview, asce: int, vaddr: int) -> tuple[int, int, int, int, int] | None:
    """``dat.translate(buf, identity, asce, vaddr, write=True, edat1=False)`` for a segment-table ASCE
    (designation type 0, not real space): ``(real, ste_addr, ste, pte_addr, pte)`` or None where
    ``dat.translate`` raises (ASCE type, segment index beyond the table length, invalid or wrong-type or
    protected segment entry, invalid or protected page entry or bit 52 set, a table beyond storage)."""
    if vaddr >> 31:
        return None
    sx = vaddr >> 20
    if sx >> 9 > asce & 3:
        return None
    sa = (asce & ~0xFFF & _MASK64) + sx * 8
    if sa + 8 > len(buf):
        return None
    ste = _U64.unpack_from(buf, sa)[0]
    if ste & _STE_NO_STORE:
        return None
    pa = (ste & ~0x7FF & _MASK64) + ((vaddr >> 12) & 0xFF) * 8
    if pa + 8 > len(buf):
        return None
    pte = _U64.unpack_from(buf, pa)[0]
    if pte & _PTE_NO_STORE:
        return None
    return (pte & ~0xFFF & _MASK64) | (vaddr & 0xFFF), sa, ste, pa, pte
_RC_RRC: Final = struct.Struct(">HH")  # UVCB header at 4: rc, rrc
_RC_EXECUTED: Final = int(Rc.EXECUTED)
#: Commands that store nothing but rc/rrc into their block (the per-page ones): the UV stores those 4 bytes
#: instead of the whole block as read (the same bytes; ``test_uv_dispatch`` checks it for each).
_RESULT_ONLY: Final = frozenset({0x0200, 0x0201, 0x0202, 0x0301})
_CC_OK: Final = Cc.OK
_CC_ERROR: Final = Cc.ERROR


def _stored(blk: Any, length: int, rc: int, rrc: int) -> bytearray:
    """The block as the UV stores it: the handler's record with rc/rrc, cut to the block's length."""
    data = bytearray(blk)
    _RC_RRC.pack_into(data, 4, rc & 0xFFFF, rrc & 0xFFFF)
    return data if length == len(data) else data[:length]


# -- the contract with the CPU model ---------------------------------------------------------------------


@dataclass(frozen=True)
class UvCaller:
    """Who executes the UVC.

    Attributes:
        kind: ``"host"`` (the LPAR hypervisor) or ``"guest"`` (a secure guest under SIE).
        config_handle: the secure configuration of a guest caller.
        cpu_handle: the secure CPU of a guest caller.
        other_cpus_running: for Init's "more than one CPU running" check (host caller).
    """

    kind: Literal["host", "guest"]
    config_handle: int | None = None
    cpu_handle: int | None = None
    other_cpus_running: bool = False


@runtime_checkable
class ControlBlock(Protocol):
    """The UVC's control block, addressed through the caller's translation."""

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes; raises ``emulator.errors.ProgramException(code, teid)``."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes; same exceptions; a failing access changes nothing."""
        ...


@runtime_checkable
class TranslatingControlBlock(ControlBlock, Protocol):
    """A control block that can also translate addresses found inside it (home space, as the caller's CPU).

    Optional: the UV uses ``translate`` when the block has it, and treats addresses as absolute otherwise
    (a host caller with DAT off).
    """

    def translate(self, vaddr: int, write: bool) -> int:
        """Host absolute address of the virtual address ``vaddr``; raises ``ProgramException`` on failure."""
        ...


class AbsoluteControlBlock:
    """A control block at an absolute address, accessed the way a host CPU with DAT off accesses it.

    Every access goes through a ``HostView``: a block in secure or donated storage raises PGM 0x3D, a block
    beyond memory PGM 0x05 (addressing), and nothing is read or stored.

    Args:
        memory_view: the host view of absolute storage.
        addr: absolute address of the UVCB.
    """

    def __init__(self, memory_view: HostView, addr: int) -> None:
        self.view = memory_view
        self.addr = addr

    def _pgm(self, e: SecureStorageAccess | HwError, offset: int) -> ProgramException:
        """The program exception a host CPU gets for a refused access at ``offset`` into the block."""
        if isinstance(e, SecureStorageAccess):
            return ProgramException(PGM_SECURE_STORAGE_ACCESS, e.teid, why=str(e))
        return ProgramException(dat.PGM_ADDRESSING, why=f"UVCB byte at {self.addr + offset:#x} is beyond memory")

    # Every per-page UVC goes through these: plain try/except, no closure per access.

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes (PGM 0x3D / 0x05 as a host CPU would get them)."""
        try:
            return self.view.read(self.addr + offset, length)
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, offset) from None

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes; all pages are checked before anything is stored."""
        try:
            self.view.write(self.addr + offset, data)
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, offset) from None

    def window(self, length: int) -> memoryview:
        """The first ``length`` bytes of the block in storage (read-only), after the fetch and store checks
        of all of them (same exceptions as ``read``/``write``)."""
        try:
            return self.view.window(self.addr, length)
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, 0) from None

    def frame_window(self) -> memoryview:
        """``window(8)`` (the header), extended to the end of the header's 4 KiB frame: the checks of the
        header decide for the whole frame (one owner, and memory ends on a frame boundary)."""
        n = PAGE_SIZE - (self.addr & 0xFFF)
        return self.window(n if n >= 8 else 8)

    def translate(self, vaddr: int, write: bool) -> int:
        """DAT off: addresses inside the block are absolute."""
        return vaddr


# -- state -------------------------------------------------------------------------------------------------


@dataclass
class SecureCpu:
    """A secure CPU: its handle, donated storage and the architected state the UV keeps for it."""

    handle: int
    config: SecureConfig
    num: int
    stor_origin: int
    state_origin: int
    state: int = CPU_STATE_STP
    psw: tuple[int, int] = (0, 0)
    gprs: list[int] = field(default_factory=lambda: [0] * 16)
    ars: list[int] = field(default_factory=lambda: [0] * 16)
    crs: list[int] = field(default_factory=lambda: _initial_crs())
    fprs: list[int] = field(default_factory=lambda: [0] * 16)
    prefix: int = 0
    fpc: int = 0
    todpr: int = 0
    cputm: int = 0
    ckc: int = 0
    #: set by Set CPU State OPR_LOAD: the PSW was loaded and the CPU may run
    psw_loaded: bool = False

    def __repr__(self) -> str:  # secure state stays out of reprs
        return f"SecureCpu(handle={self.handle:#x}, num={self.num}, state={self.state})"


def _initial_crs() -> list[int]:
    crs = [0] * 16
    crs[0] = 0xE0
    crs[14] = 0xC2000000
    return crs


@dataclass
class SecureConfig:
    """A secure configuration: limits from Create, donated storage, CPUs, pages and its image state."""

    handle: int
    tag: int
    uid: bytes
    base_origin: int
    base_len: int
    var_vaddr: int
    var_frames: list[int]
    mso: int
    msl: int
    sca: int
    asce: int
    flags: int
    sealer: PageSealer
    cpus: dict[int, SecureCpu] = field(default_factory=dict)
    # The UV's page table (6.5), as plain maps of ints: a boot makes every page secure, and an object per
    # page would be one more for the garbage collector to walk again and again (~1 us per page of a 256
    # MiB boot); int -> int maps are not tracked by it at all.
    #: secure frame -> guest page address (the zone-security table's "guest address" column)
    frames: dict[int, int] = field(default_factory=dict)
    #: guest page address -> secure frame (the reverse of ``frames``)
    secure: dict[int, int] = field(default_factory=dict)
    #: guest page address -> (counter, integrity value) of its last export, while the host holds that
    #: ciphertext and the page is not secure: an import must bring exactly it back
    exports: dict[int, tuple[int, bytes]] = field(default_factory=dict, repr=False)
    #: guest page address -> the counter a dump's storage state announced for the page's next export
    reserved: dict[int, int] = field(default_factory=dict)
    #: guest pages the host pinned while they are shared (Pin Page Shared)
    pinned: set[int] = field(default_factory=set)
    #: "created" -> "params" (SE header accepted) -> "verified"; "destroyed" once the config is gone
    state: str = "created"
    header: Any = None
    export_counter: int = 0
    reset_prepared: bool = False
    #: the first OPR_LOAD (PSW from the SE header) happened; later loads take the PSW at absolute 0
    booted: bool = False
    #: an add-secret request forbade host-initiated dumps (secrets issue)
    dump_disabled: bool = False
    #: the secret store (``firmware.uv_secrets.SecretStore``), created on first use
    secret_store: Any = None
    dump: Any = None
    unpack: Any = None
    #: gmap walks: page of MSO + guest address -> (host frame, then address and value of each table entry
    #: the walk read); reused only while every one of those entries still holds its value (``_gmap``)
    walks: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"SecureConfig(handle={self.handle:#x}, tag={self.tag}, state={self.state}, "
            f"cpus={len(self.cpus)}, secure_pages={len(self.frames)})"
        )


@dataclass(frozen=True)
class UvEvent:
    """One UVC as the Ultravisor's event sinks receive it, after rc/rrc and the outputs were stored.

    Attributes:
        seq: the call's number in this Ultravisor's life (``Ultravisor.calls`` when it was made).
        code: the command code from the block's header; ``name`` its ``firmware.uv_codes`` name ("" when
            unknown).
        caller: who issued it.
        cc, rc, rrc: the condition code and the return codes stored into the block (an injected cc stores
            nothing: rc and rrc are 0 and ``injected`` is True).
        layout: the ``firmware.uv_blocks`` record of the stored block, None when only rc/rrc were stored
            (an early refusal: unknown command, wrong length, not initialised).
        block: the block's bytes as stored (b"" with ``layout`` None).
    """

    seq: int
    code: int
    name: str
    caller: UvCaller
    cc: int
    rc: int
    rrc: int
    layout: Any = None
    block: bytes = b""
    injected: bool = False

    def fields(self) -> tuple[tuple[str, int | tuple[int, ...]], ...]:
        """The block's fields in layout order (header and reserved fields left out), as the UV stored them."""
        if self.layout is None:
            return ()
        blk = B.parse(self.layout, self.block)
        out: list[tuple[str, int | tuple[int, ...]]] = []
        for name, _ in self.layout._fields_:  # noqa: SLF001 - the record's declared fields
            if name == "header" or name.startswith(("res", "reserved")):
                continue
            value = getattr(blk, name)
            if isinstance(value, ctypes.Array):
                value = tuple(value)
            if isinstance(value, (int, tuple)):
                out.append((name, value))
        return tuple(out)


#: ``sink(event)``, called on the thread that issued the UVC.
UvEventSink = Callable[[UvEvent], None]


class _Outcome(NamedTuple):
    rc: int
    rrc: int = 0


_EXECUTED: Final = _Outcome(Rc.EXECUTED)


# -- the Ultravisor ----------------------------------------------------------------------------------------


class Ultravisor:
    """The Ultravisor firmware of one machine.

    Args:
        memory: the machine's absolute storage (firmware access).
        host_keys: the machine's host private keys (index 0 installed key, 1 backup), as the SE-header
            module takes them; never logged or printed.
        rng: ``rng(n) -> bytes``; handles, CUIDs and export keys come from it.
        clock: nanoseconds since the epoch (dump seeds, timestamps).
        query: the numbers Query reports (defaults: ``QUERY_VALUES``).
        cpu_prefixes: ``() -> iterable of prefix addresses`` of the host CPUs (lowcore checks of Create
            Secure Configuration / CPU); absolute 0-0x1FFF is always a lowcore.
        attestation_keys: the machine's ``firmware.uv_attest.AttestationKeys`` for zuv's signed evidence
            (None: the evidence command answers rc 0x0110).
    """

    def __init__(
        self,
        memory: PhysicalMemory,
        *,
        host_keys: Iterable[Any] = (),
        rng: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], int] = time.time_ns,
        query: QueryValues = QUERY_VALUES,
        cpu_prefixes: Callable[[], Iterable[int]] | None = None,
        attestation_keys: Any = None,
    ) -> None:
        self.mem = memory
        self._buf = memory.buffer()
        self.attestation_keys = attestation_keys
        self._host_keys = tuple(host_keys)
        self._rng = rng
        self._clock = clock
        self.query = query
        self._cpu_prefixes = cpu_prefixes or (lambda: ())
        self.initialized = False
        self.base_origin = 0
        self.base_len = 0
        self._configs: dict[int, SecureConfig] = {}  # live, by handle
        self._by_tag: dict[int, SecureConfig] = {}  # live and destroyed-with-pages, by owner tag
        self._cpus: dict[int, SecureCpu] = {}
        self._used_handles: set[int] = set()
        self._inject: dict[int, list[int]] = {}  # cmd -> [count, cc]
        #: command code -> (layout, its size, bound handler), filled on first use
        self._dispatch: dict[int, tuple[Any, int, Callable[..., _Outcome]]] = {}
        self.calls = 0
        #: Told about every completed UVC (``UvEvent``); empty: no cost beyond one test per call.
        self._sinks: list[UvEventSink] = []

    @property
    def host_keys(self) -> tuple[Any, ...]:
        """The machine's host private keys (installed first, then backups), for the SE-header module."""
        return self._host_keys

    def __repr__(self) -> str:
        return f"Ultravisor(initialized={self.initialized}, configs={len(self._configs)})"

    # -- fault injection for host retry loops ----------------------------------------------------------

    def inject_cc(self, cmd: int, cc: int, count: int = 1) -> None:
        """Make the next ``count`` calls of ``cmd`` end with cc 2 (busy) or cc 3 (partial), doing nothing.

        The block is not modified, so re-issuing the same UVC with the same UVCB is correct (2.2).
        """
        if cc not in (Cc.BUSY, Cc.PARTIAL):
            raise HwError(f"inject_cc: cc must be 2 or 3, not {cc}")
        if cmd not in BY_CODE:
            raise HwError(f"inject_cc: {cmd:#06x} is not a UVC command")
        if count <= 0:
            self._inject.pop(cmd, None)
        else:
            self._inject[cmd] = [count, cc]

    # -- event sinks (debuggers, traces) -----------------------------------------------------------------

    def add_event_sink(self, sink: UvEventSink) -> None:
        """Register ``sink(event)``, called after every UVC that stored a result or got an injected cc
        (calls ended by an access exception on the block change nothing and are not reported)."""
        self._sinks.append(sink)

    def remove_event_sink(self, sink: UvEventSink) -> None:
        """Forget a sink registered with ``add_event_sink``."""
        self._sinks.remove(sink)

    def _emit(self, event: UvEvent) -> None:
        for sink in list(self._sinks):
            sink(event)

    # -- the UVC entry point ---------------------------------------------------------------------------

    def call(self, caller: UvCaller, cb: ControlBlock) -> int:
        """Execute one UVC; returns the condition code, rc/rrc and outputs are stored into the block.

        Check order: header access, injected busy/partial, command installed for this caller (rc 0x0002),
        length (rc 0x0005), access to the whole block (fetch and store), UV initialised (rc 0x0003), then
        the command's own checks.

        A block with ``window(length)`` (a host block: its bytes in storage after the host view's fetch and
        store checks) is read through it, header first, then the whole block; otherwise the block is read
        with ``read`` and the store-access check stores the block's own bytes back.

        Raises:
            ProgramException: an access exception on the control block (nothing was changed), or for a
                guest caller an access that the host must resolve first (PGM 0x3E with the guest address).
        """
        self.calls += 1
        window = getattr(cb, "window", None)
        # a host block: the bytes to the end of the header's frame, after the header's checks (one frame,
        # one decision); the whole block is read from them when it lies in that frame
        first = cb.read(0, 8) if window is None else cb.frame_window()
        length, code = _HEADER.unpack_from(first, 0)
        if self._inject:
            inj = self._inject.get(code)
            if inj is not None:
                inj[0] -= 1
                if inj[0] <= 0:
                    del self._inject[code]
                log.debug("UVC %#06x: injected cc %d", code, inj[1])
                if self._sinks:
                    c = BY_CODE.get(code)
                    self._emit(UvEvent(self.calls, code, c.name if c else "", caller, inj[1], 0, 0, injected=True))
                return inj[1]
        kind = caller.kind
        if kind != "host" and kind != "guest":
            raise HwError(f"UVC caller kind {kind!r}")
        cmd = BY_CODE.get(code)
        if cmd is None or not cmd.implemented or kind not in cmd.callers:  # cmd.allowed(kind), inline
            return self._store_rc(cb, code, Rc.INV_CMD, 0, caller)
        if code == 0x0001:
            if length < QUERY_MIN_LEN:
                return self._store_rc(cb, code, Rc.INV_LEN, 0, caller)
        elif length != cmd.length:
            return self._store_rc(cb, code, Rc.INV_LEN, 0, caller)
        if window is not None:
            # fetch- and store-access checks of the whole block (done with the header's where in its frame;
            # ``raw`` may then run on past the block: only its first ``length`` bytes are used)
            raw = first if length <= len(first) else window(length)
        else:
            raw = cb.read(0, length)
            cb.write(0, raw)  # store-access check of the whole block before anything changes
        if not self.initialized and code != 0x0001 and code != 0x000F:
            return self._store_rc(cb, code, Rc.INV_STATE, 0, caller)
        guest_cfg = None
        if kind == "guest":
            guest_cfg = self._configs.get(caller.config_handle or 0)
            if guest_cfg is None or (caller.cpu_handle is not None and caller.cpu_handle not in guest_cfg.cpus):
                raise HwError(f"UVC from a guest of unknown secure configuration/CPU {caller}")
        entry = self._dispatch.get(code)
        if entry is None:
            layout = B.LAYOUTS[cmd.struct]
            entry = self._dispatch[code] = (layout, ctypes.sizeof(layout), getattr(self, f"_cmd_{cmd.name}"))
        layout, size, handler = entry
        blk = layout.from_buffer_copy(raw) if length == size else B.parse(layout, bytes(raw[:length]))
        out: _Outcome = handler(caller, blk, cb, guest_cfg)
        rc = out.rc
        data = None
        if code in _RESULT_ONLY:  # the rest of the block is as it was read: only rc/rrc are stored
            cb.write(4, _RC_RRC.pack(rc & 0xFFFF, out.rrc & 0xFFFF))
        else:
            data = _stored(blk, length, rc, out.rrc)
            cb.write(0, data)
        if log.isEnabledFor(logging.DEBUG):  # (no argument tuple and no call frame for each per-page UVC)
            log.debug("UVC %s by %s: rc %#06x rrc %#06x", cmd.name, kind, rc, out.rrc)
        cc = _CC_OK if rc == _RC_EXECUTED else _CC_ERROR
        if self._sinks:
            stored = bytes(data if data is not None else _stored(blk, length, rc, out.rrc))
            self._emit(UvEvent(self.calls, code, cmd.name, caller, int(cc), rc & 0xFFFF, out.rrc & 0xFFFF, layout,
                               stored))  # fmt: skip
        return cc

    def _store_rc(self, cb: ControlBlock, cmd: int, rc: int, rrc: int, caller: UvCaller | None = None) -> int:
        cb.write(4, struct.pack(">HH", rc, rrc))
        log.debug("UVC %#06x: rc %#06x", cmd, rc)
        cc = Cc.OK if rc == Rc.EXECUTED else Cc.ERROR
        if self._sinks and caller is not None:
            c = BY_CODE.get(cmd)
            self._emit(UvEvent(self.calls, cmd, c.name if c else "", caller, int(cc), rc, rrc))
        return cc

    # -- helpers ---------------------------------------------------------------------------------------

    def _new_handle(self) -> int:
        while True:
            h = int.from_bytes(self._rng(8), "big")
            if h and h not in self._used_handles:
                self._used_handles.add(h)
                return h

    def _frames(self, origin: int, length: int) -> range:
        return range(origin >> PAGE_SHIFT, (origin + length + PAGE_SIZE - 1) >> PAGE_SHIFT)

    def _all_host(self, frames: Iterable[int]) -> bool:
        owner, shared = self.mem.owner, self.mem.shared
        return all(owner[f] == OWNER_HOST and not shared[f] for f in frames)

    def _lowcores(self) -> list[tuple[int, int]]:
        areas = [(0, 0x2000)]
        for p in self._cpu_prefixes():
            areas.append((p, p + 0x2000))
        return areas

    def _hits_lowcore(self, origin: int, length: int) -> bool:
        return any(origin < hi and lo < origin + length for lo, hi in self._lowcores())

    def _donate(self, frames: Iterable[int], descriptor: bytes = b"") -> None:
        """Make frames Ultravisor storage: tag them, clear them, and write the UV's descriptor into the first."""
        first = True
        for f in frames:
            self.mem.set_owner(f, OWNER_UV)
            self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
            if first and descriptor:
                self.mem.write(f << PAGE_SHIFT, descriptor)
            first = False

    def _release(self, frames: Iterable[int]) -> None:
        """Give frames back to the host: cleared first, so nothing the UV or a guest kept there leaks."""
        for f in frames:
            self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
            self.mem.set_owner(f, OWNER_HOST)

    def _host_buffer(self, cb: ControlBlock, vaddr: int, length: int, write: bool) -> list[tuple[int, int]] | None:
        """Translate a host buffer named in a UVCB to absolute pieces; None if any byte is inaccessible.

        Host buffers must be host storage: the UV never reads a "header" out of, or writes a dump into,
        secure or donated storage on the host's say-so.
        """
        tr = getattr(cb, "translate", None)
        pieces: list[tuple[int, int]] = []
        v, left = vaddr, length
        while left > 0:
            n = min(left, PAGE_SIZE - (v & 0xFFF))
            try:
                a = tr(v, write) if tr is not None else v
            except ProgramException:
                return None
            if a < 0 or a + n > self.mem.size or not self.mem.is_host_accessible(a >> PAGE_SHIFT):
                return None
            pieces.append((a, n))
            v, left = v + n, left - n
        return pieces

    def host_buffer(self, cb: ControlBlock, vaddr: int, length: int, write: bool) -> list[tuple[int, int]] | None:
        """Public form of the host-buffer translation (for the UV's command modules)."""
        return self._host_buffer(cb, vaddr, length, write)

    def write_pieces(self, pieces: list[tuple[int, int]], data: bytes) -> None:
        """Store ``data`` into translated host-buffer pieces (firmware access)."""
        self._write_pieces(pieces, data)

    def random(self, n: int) -> bytes:
        """``n`` bytes from the injected random source."""
        return self._rng(n)

    def time_ns(self) -> int:
        """The injected clock (nanoseconds since the epoch)."""
        return self._clock()

    def gmap_frame(self, cfg: SecureConfig, gaddr: int) -> int | None:
        """Host frame of a guest page through the configuration's ASCE, or None."""
        return self._gmap(cfg, gaddr)

    def _read_pieces(self, pieces: list[tuple[int, int]]) -> bytes:
        return b"".join(self.mem.read(a, n) for a, n in pieces)

    def _write_pieces(self, pieces: list[tuple[int, int]], data: bytes) -> None:
        off = 0
        for a, n in pieces:
            self.mem.write(a, data[off : off + n])
            off += n

    def _gmap(self, cfg: SecureConfig, gaddr: int) -> int | None:
        """Host frame of a guest page through the configuration's ASCE (writable 4 KiB mapping), or None.

        The walk's result depends only on the ASCE (fixed for the configuration), the page address and
        the table entries it read, at addresses each determined by the entries before it. A successful
        walk is kept with those entries' addresses and values and reused while all of them still hold
        those values, re-read from storage on every use: whoever changed the tables (host view, firmware,
        a CPU's own stores), the change is seen at the next use. Failed walks are not kept.

        A segment-table ASCE (what the hypervisor's gmap uses) is walked here with ``dat.translate``'s
        checks for that shape (a store, no EDAT-1); every other ASCE goes through ``dat.translate``.
        """
        page = (cfg.mso + gaddr) & ~0xFFF  # the walk's result depends on the page of the address only
        buf = self._buf
        hit = cfg.walks.get(page)
        if hit is not None:
            i, n = 1, len(hit)
            while i < n and _U64.unpack_from(buf, hit[i])[0] == hit[i + 1]:
                i += 2
            if i >= n:
                return hit[0]
        asce = cfg.asce
        if not asce & _ASCE_DT_REAL:
            walk = _segment_walk(buf, asce, page)
            if walk is None or walk[0] >= self.mem.size:
                cfg.walks.pop(page, None)
                return None
            frame = walk[0] >> PAGE_SHIFT
            cfg.walks[page] = (frame, *walk[1:])
            return frame
        read: list[int] = []

        def real_to_abs(real: int) -> int:
            read.append(real)
            return real

        try:
            real = dat.translate(buf, real_to_abs, asce, page, True, 0, False).address
        except ProgramException:
            cfg.walks.pop(page, None)
            return None
        if real >= self.mem.size:
            cfg.walks.pop(page, None)
            return None
        frame = real >> PAGE_SHIFT
        entry = [frame]
        for a in read:
            entry += (a, _U64.unpack_from(buf, a)[0])
        cfg.walks[page] = tuple(entry)
        return frame

    def _config(self, handle: int) -> SecureConfig | None:
        return self._configs.get(handle)

    # -- queries for the CPU model, the hypervisor's SIE and the console ---------------------------------

    def frame_state(self, frame: int) -> tuple[int, int | None, bool]:
        """``(owner_tag, guest_addr, shared)`` of a host frame: the zone-security table entry."""
        tag = self.mem.owner[frame]
        gaddr = None
        cfg = self._by_tag.get(tag)
        if cfg is not None:
            gaddr = cfg.frames.get(frame)
        return tag, gaddr, bool(self.mem.shared[frame])

    def config_tag(self, handle: int) -> int | None:
        """Owner tag of a live secure configuration (what its secure frames carry)."""
        cfg = self._configs.get(handle)
        return cfg.tag if cfg else None

    def secure_guest_frame(self, config_handle: int, guest_abs_addr: int) -> int | None:
        """Host frame a secure guest's access to ``guest_abs_addr`` uses, or None if the page is not secure.

        Walks the configuration's ASCE like the hardware, then checks the frame is secure for this
        configuration at exactly this guest address (or shared by it). One decision per page.
        """
        cfg = self._configs.get(config_handle)
        if cfg is None or guest_abs_addr >= cfg.msl:
            return None
        frame = self._gmap(cfg, guest_abs_addr)
        if frame is None:
            return None
        if self.mem.owner[frame] == cfg.tag and cfg.frames.get(frame) == guest_abs_addr & ~0xFFF:
            return frame
        return None

    def prefix_secure(self, config_handle: int, prefix: int) -> bool:
        """True if both pages of the 8 KiB prefix area at ``prefix`` are secure for the configuration
        (``secure_guest_frame`` of each page is not None): the secure SIE entry's check."""
        cfg = self._configs.get(config_handle)
        if cfg is None:
            return False
        owner, frames, tag, walks, buf, u64 = self.mem.owner, cfg.frames, cfg.tag, cfg.walks, self._buf, _U64
        page = prefix & ~0xFFF
        for page in (page, page + PAGE_SIZE):  # checked at every secure entry: _gmap's hit path, inline
            if page >= cfg.msl:
                return False
            hit = walks.get((cfg.mso + page) & ~0xFFF)
            if (
                hit is not None
                and len(hit) == 5
                and u64.unpack_from(buf, hit[1])[0] == hit[2]
                and u64.unpack_from(buf, hit[3])[0] == hit[4]
            ):
                frame = hit[0]  # a segment-table walk whose two entries still hold
            else:
                frame = self._gmap(cfg, page)
            if frame is None or owner[frame] != tag or frames.get(frame) != page:
                return False
        return True

    def guest_frame_check(self, config_handle: int, guest_abs_addr: int, write: bool) -> int:
        """The full secure-guest access decision: the host frame, or the exception the *host* receives.

        Raises:
            ProgramException: 0x05 addressing (beyond the guest's storage: a guest exception),
                0x3E non-secure-storage access (the host must import the page), 0x3F secure-storage
                violation (the frame belongs to another configuration or to the UV). TEID: the guest page
                address, bit 61 ("address valid") and the fetch/store indication.
        """
        cfg = self._configs.get(config_handle)
        if cfg is None:
            raise HwError(f"no secure configuration {config_handle:#x}")
        if guest_abs_addr >= cfg.msl:
            raise ProgramException(dat.PGM_ADDRESSING, why=f"guest address {guest_abs_addr:#x} beyond storage")
        frame = self._gmap(cfg, guest_abs_addr)
        if frame is not None:
            tag = self.mem.owner[frame]
            if tag == cfg.tag and cfg.frames.get(frame) == guest_abs_addr & ~0xFFF:
                return frame
        teid = (guest_abs_addr & ~0xFFF) | 0x4 | (0x400 if write else 0x800)
        if frame is None:
            raise ProgramException(
                PGM_NON_SECURE_STORAGE_ACCESS, teid, why=f"guest page {guest_abs_addr:#x} is not mapped"
            )
        if tag == OWNER_HOST:
            raise ProgramException(
                PGM_NON_SECURE_STORAGE_ACCESS, teid, why=f"guest page {guest_abs_addr:#x} is not secure"
            )
        raise ProgramException(
            PGM_SECURE_STORAGE_VIOLATION,
            teid,
            why=f"guest page {guest_abs_addr:#x} maps frame {frame:#x} owned by another secure entity",
        )

    def guest_view(self, config_handle: int) -> SecureGuestView:
        """What the secure guest's CPU sees of its absolute storage (for tests, demos and the SIE engine)."""
        if config_handle not in self._configs:
            raise HwError(f"no secure configuration {config_handle:#x}")
        return SecureGuestView(self, config_handle)

    def secure_cpu(self, cpu_handle: int) -> SecureCpu | None:
        """The UV's record of a secure CPU (for the SIE engine): None for an unknown handle."""
        return self._cpus.get(cpu_handle)

    def guest_reset_requested(self, cpu_handle: int) -> None:
        """The secure CPU asked for a reset (DIAG 0x308 subcode 0 or 1, seen by the SIE engine): it stops
        operating until the host has completed the reset protocol (Set CPU State OPR_LOAD)."""
        cpu = self._cpus.get(cpu_handle)
        if cpu is not None:
            cpu.psw_loaded = False

    def secure_config(self, handle: int) -> SecureConfig | None:
        """The UV's record of a live secure configuration: None for an unknown handle."""
        return self._configs.get(handle)

    def configs(self) -> list[SecureConfig]:
        """Live secure configurations."""
        return list(self._configs.values())

    def exported_pages(self, config_handle: int) -> dict[int, int]:
        """Guest pages of a live configuration whose last export the UV still holds (the host has their
        ciphertext; an import must bring it back): guest page address -> export counter. Empty for an
        unknown handle. The integrity values stay inside the UV."""
        cfg = self._configs.get(config_handle)
        if cfg is None:
            return {}
        return {g: counter for g, (counter, _) in cfg.exports.items()}

    # -- DIAG 0x308 load-normal reset ----------------------------------------------------------------------

    def reset(self) -> None:
        """Load-normal reset of the LPAR: every UV-donated and secure frame is cleared and released, and
        the UV returns to the uninitialised state (``secure-execution.md`` 4.1)."""
        owner = self.mem.owner
        tracked: set[int] = set(self._frames(self.base_origin, self.base_len)) if self.initialized else set()
        for cfg in {id(c): c for c in (*self._by_tag.values(), *self._configs.values())}.values():
            tracked.update(cfg.frames)
            if cfg.state != "destroyed":
                tracked.update(self._frames(cfg.base_origin, cfg.base_len))
                tracked.update(cfg.var_frames)
        for cpu in self._cpus.values():
            tracked.update(self._frames(cpu.stor_origin, self.query.cpu_stor_len))
        if len(tracked) != self.mem.non_host_frames:  # bookkeeping and tags disagree: scan every frame
            tracked = {f for f in range(self.mem.frames) if owner[f] != OWNER_HOST}
        for f in sorted(tracked):
            self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
            self.mem.set_owner(f, OWNER_HOST)  # also clears the shared flag
        self.initialized = False
        self.base_origin = self.base_len = 0
        self._configs.clear()
        self._by_tag.clear()
        self._cpus.clear()
        self._inject.clear()
        log.info("Ultravisor reset: donated and secure storage cleared, uninitialised")

    # -- Query, Query Keys, Init -------------------------------------------------------------------------

    def _cmd_qui(self, caller: UvCaller, blk: B.UvCbQui, cb: ControlBlock, g: Any) -> _Outcome:
        """Query Ultravisor Information (0x0001).

        Returns: rc 0x0001, or 0x0100 when the block is shorter than the full answer (what fits is stored).
        """
        q = self.query
        for i, w in enumerate(installed_calls(caller.kind)):
            blk.inst_calls_list[i] = w
        for name in (
            "uv_base_stor_len", "conf_base_phys_stor_len", "conf_base_virt_stor_len", "conf_virt_var_stor_len",
            "cpu_stor_len", "max_num_sec_conf", "max_guest_stor_addr", "max_guest_cpu_id",
            "uv_feature_indications", "supp_se_hdr_versions", "supp_se_hdr_pcf", "conf_dump_storage_state_len",
            "conf_dump_finalize_len", "supp_att_req_hdr_ver", "supp_att_pflags", "supp_add_secret_req_ver",
            "supp_add_secret_pcf", "supp_secret_types", "max_assoc_secrets", "max_retr_secrets",
        ):  # fmt: skip
            setattr(blk, name, getattr(q, name))
        return _Outcome(Rc.MORE_DATA if blk.header.len < QUERY_FULL_LEN else Rc.EXECUTED)

    def _cmd_query_keys(self, caller: UvCaller, blk: B.UvCbQueryKeys, cb: ControlBlock, g: Any) -> _Outcome:
        """Query Ultravisor Keys (0x0002): hashes of the installed (0) and backup (1) host keys.

        Returns: rc 0x0001.
        """
        for i, key in enumerate(self._host_keys[:15]):
            digest = host_key_hash(key)
            for j in range(32):
                blk.key_hashes[i][j] = digest[j]
        return _Outcome(Rc.EXECUTED)

    def _cmd_init_uv(self, caller: UvCaller, blk: B.UvCbInit, cb: ControlBlock, g: Any) -> _Outcome:
        """Initialize Ultravisor (0x000F): donate the UV base storage.

        Returns (in check order, 4.1): 0x0103 length is not Query's ``uv_base_stor_len``, 0x0104 origin
        beyond memory, 0x0105 origin + length beyond memory, 0x0104 origin not 4 KiB aligned, 0x0108 below
        2 GiB, 0x0102 other CPUs running, 0x0101 already initialised,
        0x0001 success.
        """
        origin, length = blk.stor_origin, blk.stor_len
        size = self.mem.size
        if length != self.query.uv_base_stor_len:
            return _Outcome(0x0103)
        if origin >= size:
            return _Outcome(0x0104)
        if origin + length > size:
            return _Outcome(0x0105)
        if origin & 0xFFF:
            return _Outcome(0x0104)
        if origin < TWO_GIB:
            return _Outcome(0x0108)
        frames = self._frames(origin, length)
        if caller.other_cpus_running:
            return _Outcome(0x0102)
        if self.initialized:
            return _Outcome(0x0101)
        self._donate(frames, b"zuv Ultravisor base storage\0")
        self.initialized = True
        self.base_origin, self.base_len = origin, length
        log.info("Ultravisor initialised: %#x bytes of base storage at %#x", length, origin)
        return _Outcome(Rc.EXECUTED)

    # -- configurations -------------------------------------------------------------------------------

    def _cmd_create_sec_conf(self, caller: UvCaller, blk: B.UvCbCgc, cb: ControlBlock, g: Any) -> _Outcome:
        """Create Secure Configuration (0x0100).

        Returns (check order as kvm-unit-tests exercises it, 4.2): 0x0101 MSO beyond the maximum guest
        address, 0x0102 MSO + MSL beyond it, 0x0103 MSL zero or not a 1 MiB multiple, 0x0105 ASCE invalid
        (P bit missing or bit 58 set), 0x0108 base storage beyond memory or unaligned, 0x0109 base storage in
        a lowcore, 0x0106 base storage not host storage, 0x010A variable storage inaccessible, 0x010E
        variable storage in a lowcore, 0x010C SCA 0, 0x010D SCA inaccessible, 0x0104 ASCE in use,
        0x0107 too many configurations, 0x0001 success (``guest_handle`` stored). All checks precede the
        allocation of a handle, so the 0x8000 "destroy needed" flag never occurs.
        """
        q = self.query
        mso, msl = blk.guest_stor_origin, blk.guest_stor_len
        if mso > q.max_guest_stor_addr:
            return _Outcome(0x0101)
        if mso + msl > q.max_guest_stor_addr:
            return _Outcome(0x0102)
        if msl == 0 or msl % ONE_MIB:
            return _Outcome(0x0103)
        asce = blk.guest_asce
        if not asce & ASCE_P or asce & ASCE_R:
            return _Outcome(0x0105)
        base, blen = blk.conf_base_stor_origin, q.conf_base_phys_stor_len
        if base & 0xFFF or base + blen > self.mem.size:
            return _Outcome(0x0108)
        if self._hits_lowcore(base, blen):
            return _Outcome(0x0109)
        base_frames = self._frames(base, blen)
        if not self._all_host(base_frames):
            return _Outcome(0x0106)
        vlen = q.var_stor_len(msl)
        var_pieces = None
        if not blk.conf_virt_stor_origin & 0xFFF:
            var_pieces = self._host_buffer(cb, blk.conf_virt_stor_origin, vlen, True)
        if var_pieces is None:
            return _Outcome(0x010A)
        var_frames = sorted({a >> PAGE_SHIFT for a, _ in var_pieces})
        if len(var_frames) != vlen >> PAGE_SHIFT or set(var_frames) & set(base_frames):
            return _Outcome(0x010A)  # two virtual pages on one frame, or overlapping the base storage
        if any(self._hits_lowcore(f << PAGE_SHIFT, PAGE_SIZE) for f in var_frames):
            return _Outcome(0x010E)
        sca = blk.guest_sca
        if sca == 0:
            return _Outcome(0x010C)
        if sca + SCA_SIZE > self.mem.size or not self._all_host(self._frames(sca, SCA_SIZE)):
            return _Outcome(0x010D)
        if any(c.asce & ~0xFFF == asce & ~0xFFF for c in self._configs.values()):
            return _Outcome(0x0104)
        tag = self._free_tag()
        if tag is None or len(self._configs) >= q.max_num_sec_conf:
            return _Outcome(0x0107)
        handle = self._new_handle()
        cfg = SecureConfig(
            handle=handle,
            tag=tag,
            uid=self._rng(16),
            base_origin=base,
            base_len=blen,
            var_vaddr=blk.conf_virt_stor_origin,
            var_frames=var_frames,
            mso=mso,
            msl=msl,
            sca=sca,
            asce=asce,
            flags=blk.flags,
            sealer=None,  # type: ignore[arg-type]
        )
        cfg.sealer = PageSealer(self._rng)
        self._donate(base_frames, struct.pack(">8sQQQQ", b"zuvCONF\0", handle, mso, msl, asce))
        self._donate(var_frames)
        self._configs[handle] = cfg
        self._by_tag[tag] = cfg
        blk.guest_handle = handle
        log.info("secure configuration %#x created (tag %d, %d MiB)", handle, tag, msl >> 20)
        return _Outcome(Rc.EXECUTED)

    def _free_tag(self) -> int | None:
        tag = FIRST_CONFIG_TAG
        while tag in self._by_tag:
            tag += 1
        return tag if tag < 1 << 32 else None

    def _destroy_config(self, blk: Any, fast: bool = False) -> _Outcome:
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.cpus:
            return _Outcome(0x0102)
        self._release(self._frames(cfg.base_origin, cfg.base_len))
        self._release(cfg.var_frames)
        del self._configs[cfg.handle]
        cfg.state = "destroyed"
        cfg.header = None
        cfg.dump = None
        cfg.unpack = None
        if not fast:
            # Destroy Configuration ends the guest's storage too: every page it still holds is cleared and
            # becomes host storage (kvm-unit-tests, written with the Ultravisor's authors, reuses a destroyed
            # guest's storage at once: lib/s390x/uv.c "Enable reusability of VMs that were in PV mode"); a
            # later Destroy Secure Storage of such a page finds it not secure (rc 0x0107, which KVM accepts).
            for f in list(cfg.frames):
                self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
                self.mem.set_shared(f, False)
                self._drop_frame(cfg, f)
        # After Destroy Fast, secure guest pages stay secure (tagged) until the host destroys or exports them
        # (4.3: KVM's asynchronous teardown); the tag is only reused once the last of them is gone.
        for f in list(cfg.frames):
            if self.mem.shared[f]:
                self.mem.set_shared(f, False)
        if not cfg.frames:
            self._by_tag.pop(cfg.tag, None)
        log.info("secure configuration %#x destroyed (%d secure pages left)", cfg.handle, len(cfg.frames))
        return _Outcome(Rc.EXECUTED)

    def _cmd_destroy_sec_conf(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Destroy Secure Configuration (0x0101).

        Returns: 0x0020 invalid handle, 0x0102 secure CPUs still exist, 0x0001 success (donated storage
        and every guest page still secure cleared and returned to the host).
        """
        return self._destroy_config(blk)

    def _cmd_destroy_sec_conf_fast(
        self, caller: UvCaller, blk: B.UvCbDestroyFast, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Destroy Secure Configuration Fast (0x0102): as 0x0101, but the guest pages are not walked: they stay
        secure until the host destroys (or exports) each one.

        Returns: 0x0020 invalid handle, 0x0102 secure CPUs still exist, 0x0001 success.
        """
        return self._destroy_config(blk, fast=True)

    # -- CPUs ---------------------------------------------------------------------------------------

    def _cmd_create_sec_cpu(self, caller: UvCaller, blk: B.UvCbCsc, cb: ControlBlock, g: Any) -> _Outcome:
        """Create Secure CPU (0x0120).

        Returns (kvm-unit-tests order, 4.4): 0x0020 invalid configuration handle, 0x0103 CPU number too
        large, 0x0105 CPU storage inaccessible (beyond memory, unaligned, not host storage), 0x0106 CPU
        storage in a lowcore, 0x0107 state description inaccessible, 0x0104 CPU number already defined,
        0x0001 success (``cpu_handle`` stored).
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if blk.num > self.query.max_guest_cpu_id:
            return _Outcome(0x0103)
        so, slen = blk.stor_origin, self.query.cpu_stor_len
        frames = self._frames(so, slen)
        if so & 0xFFF or so + slen > self.mem.size or not self._all_host(frames):
            return _Outcome(0x0105)
        if self._hits_lowcore(so, slen):
            return _Outcome(0x0106)
        sd = blk.state_origin
        if sd + SD_SIZE > self.mem.size or not self._all_host(self._frames(sd, SD_SIZE)):
            return _Outcome(0x0107)
        if sd >> PAGE_SHIFT in frames:
            return _Outcome(0x0107)
        if any(c.num == blk.num for c in cfg.cpus.values()):
            return _Outcome(0x0104)
        handle = self._new_handle()
        cpu = SecureCpu(handle, cfg, blk.num, so, sd)
        self._donate(frames, struct.pack(">8sQQH", b"zuvCPU\0\0", handle, cfg.handle, blk.num))
        cfg.cpus[handle] = cpu
        self._cpus[handle] = cpu
        blk.cpu_handle = handle
        log.info("secure CPU %d of configuration %#x created", blk.num, cfg.handle)
        return _Outcome(Rc.EXECUTED)

    def _cmd_destroy_sec_cpu(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Destroy Secure CPU (0x0121).

        Returns: 0x0021 invalid CPU handle, 0x0001 success (CPU storage cleared and returned).
        """
        cpu = self._cpus.pop(blk.handle, None)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        del cpu.config.cpus[cpu.handle]
        self._release(self._frames(cpu.stor_origin, self.query.cpu_stor_len))
        log.info("secure CPU %d of configuration %#x destroyed", cpu.num, cpu.config.handle)
        return _Outcome(Rc.EXECUTED)

    def _cpu_of(self, handle: int) -> SecureCpu | None:
        return self._cpus.get(handle)

    def _cmd_cpu_reset(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Perform CPU Reset (0x0310): the architected CPU reset (nothing architected in the registers).

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        cpu.psw_loaded = False
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_reset_initial(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Perform Initial CPU Reset (0x0311): PSW, prefix, CRs, CPU timer, clock comparator, FPC, TODPR.

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        _initial_reset(cpu)
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_reset_clear(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Perform CPU Clear Reset (0x0321): initial reset plus general, access and floating-point registers.

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        _initial_reset(cpu)
        cpu.gprs = [0] * 16
        cpu.ars = [0] * 16
        cpu.fprs = [0] * 16
        return _Outcome(Rc.EXECUTED)

    def _cmd_prepare_reset(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Prepare Reset (0x0320) of a configuration: the CPU resets that follow start the reset protocol.

        Returns: 0x0020 invalid configuration handle, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        cfg.reset_prepared = True
        for cpu in cfg.cpus.values():
            cpu.psw_loaded = False
        from firmware import uv_secrets

        uv_secrets.reset(cfg)  # the guest reboots: its secrets are gone
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_set_state(self, caller: UvCaller, blk: B.UvCbCpuSetState, cb: ControlBlock, g: Any) -> _Outcome:
        """Set CPU State (0x0330): operating, stopped, check-stop, or operating with PSW load (4.14).

        OPR_LOAD loads the SE header's PSW the first time (after Verify), afterwards (after a reset) the
        short PSW at guest absolute 0.

        Returns: 0x0021 invalid CPU handle, 0x0101 unsupported state, 0x0003 OPR_LOAD before the image was
        verified or, after the first boot, without a Prepare Reset since the last load, 0x0102 OPR_LOAD
        after a reset while guest absolute page 0 is not secure (import it, then retry), 0x0001 success.
        """
        cpu = self._cpu_of(blk.cpu_handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        st = blk.state
        if st not in (CPU_STATE_OPR, CPU_STATE_STP, CPU_STATE_CHKSTP, CPU_STATE_OPR_LOAD):
            return _Outcome(0x0101)
        if st == CPU_STATE_OPR_LOAD:
            cfg = cpu.config
            if cfg.state != "verified":
                return _Outcome(Rc.INV_STATE)
            if cfg.booted and not cfg.reset_prepared:
                # a restart without Prepare Reset would keep the secret store and what the last boot
                # left behind (4.14, 7.7): the reset protocol is not optional
                return _Outcome(Rc.INV_STATE)
            if cfg.booted:
                frame = self.secure_guest_frame(cfg.handle, 0)
                if frame is None:
                    return _Outcome(0x0102)
                short = self.mem.read_u64(frame << PAGE_SHIFT)
                mask = (short & 0xFFFFFFFF00000000) ^ (1 << 51)
                cpu.psw = (mask | (short & 0x80000000), short & 0x7FFFFFFF)
            else:
                cpu.psw = header_psw(cfg.header)
            cfg.booted = True
            cfg.reset_prepared = False
            cpu.psw_loaded = True
            cpu.state = CPU_STATE_OPR
        else:
            cpu.state = st
        return _Outcome(Rc.EXECUTED)

    # -- storage conversions ----------------------------------------------------------------------------

    def _take_frame(self, cfg: SecureConfig, frame: int, gaddr: int) -> None:
        """Make a frame secure for a guest page; an export of the page the host still holds is void.

        A page another configuration shared moves here now (``_import_target`` allowed it), when the
        command has succeeded: a refused import leaves it where it was.
        """
        page = gaddr & ~0xFFF
        tag = self.mem.owner[frame]
        if tag != OWNER_HOST:
            other = self._by_tag.get(tag)
            if other is not None and other is not cfg:
                self._drop_frame(other, frame)
        self.mem.set_owner(frame, cfg.tag)
        cfg.frames[frame] = page
        cfg.secure[page] = frame
        if cfg.exports:
            cfg.exports.pop(page, None)

    def _drop_frame(self, cfg: SecureConfig, frame: int) -> int | None:
        """Make a secure frame host storage again (no longer pinned); returns its guest page address."""
        gaddr = cfg.frames.pop(frame, None)
        self.mem.set_owner(frame, OWNER_HOST)
        if gaddr is not None:
            cfg.secure.pop(gaddr, None)
            if cfg.pinned:
                cfg.pinned.discard(gaddr)
        if cfg.state == "destroyed" and not cfg.frames:
            self._by_tag.pop(cfg.tag, None)
        return gaddr

    def _import_target(self, cfg: SecureConfig, gaddr: int) -> tuple[int | None, _Outcome | None]:
        """The frame a guest page maps to, if it can become secure for ``cfg`` (the shared checks of
        Convert to Secure Storage and Unpack)."""
        if gaddr >= cfg.msl:
            return None, _Outcome(0x0101)
        frame = self._gmap(cfg, gaddr)
        if frame is None:
            return None, _Outcome(0x010A)
        page = gaddr & ~0xFFF
        tag = self.mem.owner[frame]
        if tag == cfg.tag:
            if cfg.frames.get(frame) == page:
                return None, _Outcome(0x0104)
            return None, _Outcome(0x0105)
        if page in cfg.secure:
            return None, _Outcome(0x0105)  # the guest page is secure in another frame
        if tag == OWNER_HOST:
            return frame, None
        other = self._by_tag.get(tag)
        if other is not None and self.mem.shared[frame]:
            # MISC feature: a page another configuration shared moves to this one (its content is not
            # secret: the other guest gave it to the host); ``_take_frame`` moves it once the command
            # succeeded, so that a refused one changes nothing.
            return frame, None
        return None, _Outcome(0x0105)

    def _cmd_conv_to_sec_stor(self, caller: UvCaller, blk: B.UvCbCts, cb: ControlBlock, g: Any) -> _Outcome:
        """Convert to Secure Storage, "import" (0x0200).

        A page that was never secure (or was destroyed) is cleared; a page exported before must come back
        with exactly the ciphertext of its last export at this guest address of this configuration, else
        nothing changes and rc 0x0107 is returned (one result for modified, swapped and replayed pages).

        Returns: 0x0020 invalid handle, 0x0101 guest address beyond the guest's storage, 0x010A not mapped
        writable in the ASCE, 0x0104 already secure for this guest address, 0x0105 frame in a conflicting
        secure state, 0x0107 integrity check failed, 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        gaddr = blk.gaddr
        frame, bad = self._import_target(cfg, gaddr)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0105)
        page = gaddr & ~0xFFF
        exported = cfg.exports.get(page)
        addr = frame << PAGE_SHIFT
        if exported is not None:
            # checked and decrypted straight from storage (the gmap walk put the frame inside memory)
            plain = cfg.sealer.open(self._buf[addr : addr + PAGE_SIZE], page, *exported)
            if plain is None:
                log.info("import of guest page %#x of %#x refused: integrity check failed", page, cfg.handle)
                return _Outcome(0x0107)
            self.mem.write(addr, plain)
        else:
            self.mem.fill(addr, PAGE_SIZE)
        self._take_frame(cfg, frame, page)
        return _EXECUTED

    def _cfs_frame(self, paddr: int) -> tuple[int | None, SecureConfig | None, _Outcome | None]:
        if paddr >= self.mem.size:
            return None, None, _Outcome(0x0104)
        frame = paddr >> PAGE_SHIFT
        tag = self.mem.owner[frame]
        if tag == OWNER_HOST:
            return None, None, _Outcome(0x0107, 0x000D)
        if tag == OWNER_UV:
            return None, None, _Outcome(0x0105)
        cfg = self._by_tag.get(tag)
        if cfg is None or frame not in cfg.frames:
            raise HwError(f"frame {frame:#x} carries tag {tag} that no secure configuration owns")
        return frame, cfg, None

    def _cmd_conv_from_sec_stor(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Convert from Secure Storage, "export" (0x0201): encrypt the page in place and make it host storage.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0106 page of a destroyed
        configuration, 0x0107 rrc 0x000D page not secure, 0x0001 success.
        """
        with self.mem.quiesced():  # the page is taken from every CPU before it is encrypted or cleared
            return self._cmd_conv_from_sec_stor_held(blk)

    def _cmd_conv_from_sec_stor_held(self, blk: B.UvCbCfs) -> _Outcome:
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        if cfg.state == "destroyed":
            return _Outcome(0x0106)
        gaddr = cfg.frames[frame]
        counter = cfg.reserved.pop(gaddr, None) if cfg.reserved else None
        if counter is None:
            cfg.export_counter += 1
            counter = cfg.export_counter
        if counter >= COUNTER_LIMIT:
            raise HwError("export counter exhausted")
        addr = frame << PAGE_SHIFT
        # sealed straight from storage (the frame is inside memory: _cfs_frame checked the address)
        ct, mac = cfg.sealer.seal(self._buf[addr : addr + PAGE_SIZE], gaddr, counter)
        self.mem.write(addr, ct)
        cfg.exports[gaddr] = (counter, mac)
        self._drop_frame(cfg, frame)
        return _EXECUTED

    def _cmd_destr_sec_stor(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Destroy Secure Storage (0x0202): clear the page and make it host storage, no exported copy.

        The guest page's record is forgotten: a later import gives the guest a zero page.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0107 rrc 0x000D page not
        secure, 0x0001 success.
        """
        with self.mem.quiesced():  # the page is taken from every CPU before it is encrypted or cleared
            return self._cmd_destr_sec_stor_held(blk)

    def _cmd_destr_sec_stor_held(self, blk: B.UvCbCfs) -> _Outcome:
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        self.mem.fill(frame << PAGE_SHIFT, PAGE_SIZE)
        gaddr = self._drop_frame(cfg, frame)
        if gaddr is not None:
            cfg.reserved.pop(gaddr, None)  # a dump's announced counter goes too: the page is gone
        return _EXECUTED

    def _cmd_pin_page_shared(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Pin Page Shared (0x0341): keep a shared page shared until the host unpins it.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0107 rrc 0x000D page not
        secure, 0x0108 secure but not shared, 0x0001 success.
        """
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        if not self.mem.shared[frame]:
            return _Outcome(0x0108)
        cfg.pinned.add(cfg.frames[frame])
        return _Outcome(Rc.EXECUTED)

    def _cmd_unpin_page_shared(self, caller: UvCaller, blk: B.UvCbCts, cb: ControlBlock, g: Any) -> _Outcome:
        """Unpin Page Shared (0x0342): the guest may now remove the sharing.

        Returns: 0x0020 invalid handle, 0x0101 guest address beyond storage, 0x010A not mapped, 0x0104 page
        not shared, 0x0001 success (also when it was not pinned).
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if blk.gaddr >= cfg.msl:
            return _Outcome(0x0101)
        frame = self._gmap(cfg, blk.gaddr)
        if frame is None:
            return _Outcome(0x010A)
        page = blk.gaddr & ~0xFFF
        if self.mem.owner[frame] != cfg.tag or cfg.frames.get(frame) != page or not self.mem.shared[frame]:
            return _Outcome(0x0104)
        cfg.pinned.discard(page)
        return _Outcome(Rc.EXECUTED)

    def _cmd_set_unshare_all(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Unshare All (0x0340): every shared page of the configuration becomes secure-only again.

        Returns: 0x0020 invalid handle, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        for frame in cfg.frames:
            if self.mem.shared[frame]:
                self.mem.set_shared(frame, False)
        cfg.pinned.clear()  # only secure pages are pinned
        return _Outcome(Rc.EXECUTED)

    # -- guest commands ----------------------------------------------------------------------------------

    def _share_target(self, cfg: SecureConfig, paddr: int, write: bool) -> tuple[int | None, _Outcome | None]:
        if paddr >= cfg.msl:
            return None, _Outcome(0x0101)
        # The UV touches the page as the guest would: a page that is not secure yet goes to the host first.
        return self.guest_frame_check(cfg.handle, paddr & ~0xFFF, write), None

    def _cmd_set_shared_access(self, caller: UvCaller, blk: B.UvCbShare, cb: ControlBlock, g: Any) -> _Outcome:
        """Set Shared Access (0x1000, guest): the host may now access this secure page.

        Returns: 0x0101 address beyond guest memory, 0x0001 success. A page not secure yet raises PGM 0x3E
        for the host (the CPU model exits SIE; the UVC runs again after the import).
        """
        frame, bad = self._share_target(g, blk.paddr, True)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0101)
        if not self.mem.shared[frame]:
            self.mem.set_shared(frame, True)
        return _Outcome(Rc.EXECUTED)

    def _cmd_remove_shared_access(
        self, caller: UvCaller, blk: B.UvCbShare, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Remove Shared Access (0x1001, guest): the page is secure-only again (content kept).

        Returns: 0x0101 address beyond guest memory, 0x0001 success. A pinned page first goes to the host as
        a notification interception 0x6C (``GuestIntercept``, the UVCB in ``sida``) so that it can unpin.
        """
        frame, bad = self._share_target(g, blk.paddr, True)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0101)
        if blk.paddr & ~0xFFF in g.pinned:
            from emulator.hw.cpu import GuestIntercept

            exc = GuestIntercept(0x6C, "Remove Shared Access of a pinned page", ipa=0xB9A4, ipb=0)
            exc.sida = bytes(blk)  # type: ignore[attr-defined]
            raise exc
        if self.mem.shared[frame]:
            self.mem.set_shared(frame, False)
        return _Outcome(Rc.EXECUTED)

    # -- attestation and secrets (firmware.uv_attest, firmware.uv_secrets) ------------------------------

    def _cmd_retr_attest(self, caller: UvCaller, blk: B.UvCbAttest, cb: ControlBlock, g: Any) -> _Outcome:
        """Retrieve Attestation Measurement (0x1020, guest): rcs in ``firmware.uv_attest``."""
        from firmware import uv_attest

        return _Outcome(*uv_attest.retrieve(self, g, blk, cb))

    def _cmd_retr_attest_evidence(self, caller: UvCaller, blk: B.UvCbAttest, cb: ControlBlock, g: Any) -> _Outcome:
        """zuv's Retrieve Attestation Measurement and Signed Evidence (0x1F20, guest): ``firmware.uv_attest``."""
        from firmware import uv_attest

        return _Outcome(*uv_attest.retrieve(self, g, blk, cb, evidence=True))

    def _cmd_add_secret(self, caller: UvCaller, blk: B.UvCbGuestAddr, cb: ControlBlock, g: Any) -> _Outcome:
        """Add Secret (0x1031, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.add(self, g, blk, cb))

    def _cmd_list_secrets(self, caller: UvCaller, blk: B.UvCbListSecrets, cb: ControlBlock, g: Any) -> _Outcome:
        """List Secrets (0x1033, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.list_secrets(self, g, blk, cb))

    def _cmd_lock_secrets(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Lock Secret Store (0x1034, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.lock(self, g, blk))

    def _cmd_retr_secret(self, caller: UvCaller, blk: B.UvCbRetrSecret, cb: ControlBlock, g: Any) -> _Outcome:
        """Retrieve Secret (0x1035, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.retrieve(self, g, blk, cb))

    # -- SE image: Set Secure Configuration Parameters, Unpack, Verify ------------------------------------

    def _cmd_set_sec_conf_params(self, caller: UvCaller, blk: B.UvCbSsc, cb: ControlBlock, g: Any) -> _Outcome:
        """Set Secure Configuration Parameters (0x0300): open the SE header for this configuration.

        Returns: 0x0020 invalid handle, 0x010A rrc 0x0031 length above two pages (zuv, before any access),
        0x0103 header not accessible, 0x0107 parameters already set (zuv),
        the SE-header module's rc/rrc (0x0104 .. 0x010A, 4.11), 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        too_long = uv_image.check_header_length(blk.sec_header_len)
        if too_long is not None:
            return _Outcome(*too_long)
        pieces = self._host_buffer(cb, blk.sec_header_origin, blk.sec_header_len, False)
        if pieces is None:
            return _Outcome(0x0103)
        if cfg.state != "created":
            return _Outcome(0x0107)
        return _Outcome(*uv_image.set_params(self, cfg, self._read_pieces(pieces)))

    def _cmd_unpack_img(self, caller: UvCaller, blk: B.UvCbUnp, cb: ControlBlock, g: Any) -> _Outcome:
        """Unpack (0x0301): decrypt one image page in place, make it secure and measure it (4.12).

        Returns: 0x0020 invalid handle, 0x0003 parameters not set or image already verified, 0x0101 beyond
        guest storage, 0x010A not mapped, 0x0104 already secure, 0x0105 conflicting frame, 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.state != "params":
            return _Outcome(Rc.INV_STATE)
        gaddr = blk.gaddr
        frame, bad = self._import_target(cfg, gaddr)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0105)
        page = gaddr & ~0xFFF
        tweak = blk.tweak
        uv_image.unpack_page(self, cfg, frame, page, tweak[0], tweak[1])
        self._take_frame(cfg, frame, page)  # an export of this page the host still holds is overwritten
        return _EXECUTED

    def _cmd_verify_img(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Verify (0x0302): compare the unpack measurements with the header (4.13).

        Returns: 0x0020 invalid handle, 0x0003 parameters not set or already verified, 0x0102 with rrc
        0x001A ALD / 0x001B PLD / 0x001C TLD / 0x001D page count mismatch, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.state != "params":
            return _Outcome(Rc.INV_STATE)
        rrc = uv_image.verify(cfg)
        if rrc:
            return _Outcome(0x0102, rrc)
        cfg.state = "verified"
        log.info("secure configuration %#x: image verified", cfg.handle)
        return _Outcome(Rc.EXECUTED)

    # -- dumps ---------------------------------------------------------------------------------------

    def _cmd_dump_init(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Initiate Configuration Dump (0x0400).

        Returns: 0x0020 invalid handle, 0x0003 image not verified or a dump already in progress, 0x0101 the
        SE header does not allow dumping, 0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.init(self, blk.handle))

    def _cmd_dump_conf_stor_state(
        self, caller: UvCaller, blk: B.UvCbDumpStorState, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Dump Configuration Storage State (0x0401): 16 bytes per page of one 1 MiB block.

        Returns: 0x0020 invalid handle, 0x0003 no dump in progress, 0x0102 gaddr unaligned or beyond
        storage, 0x0103 dump area inaccessible, 0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.storage_state(self, cb, blk))

    def _cmd_dump_cpu(self, caller: UvCaller, blk: B.UvCbDumpCpu, cb: ControlBlock, g: Any) -> _Outcome:
        """Dump CPU State (0x0402): the sealed CPU dump v1.

        Returns: 0x0021 invalid CPU handle, 0x0003 no dump in progress, 0x0103 dump area inaccessible,
        0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.cpu(self, cb, blk))

    def _cmd_dump_complete(self, caller: UvCaller, blk: B.UvCbDumpComplete, cb: ControlBlock, g: Any) -> _Outcome:
        """Complete Configuration Dump (0x0403): the sealed completion data; the dump ends.

        Returns: 0x0020 invalid handle, 0x0003 no dump in progress, 0x0103 dump area inaccessible,
        0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.complete(self, cb, blk))


def _initial_reset(cpu: SecureCpu) -> None:
    cpu.psw = (0, 0)
    cpu.prefix = 0
    cpu.crs = _initial_crs()
    cpu.cputm = 0
    cpu.ckc = 0
    cpu.fpc = 0
    cpu.todpr = 0
    cpu.psw_loaded = False


def header_psw(header: Any) -> tuple[int, int]:
    """The PSW the SE header holds (mask, address)."""
    psw = header.psw
    if isinstance(psw, tuple):
        return int(psw[0]), int(psw[1])
    if isinstance(psw, (bytes, bytearray)):
        return _U64.unpack_from(psw, 0)[0], _U64.unpack_from(psw, 8)[0]
    return int(psw.mask), int(psw.addr)


def host_key_hash(key: Any) -> bytes:
    """PHKH of a host key: SHA-256 over its 160-byte X || Y encoding (8.6)."""
    from firmware.crypto import phkh

    return phkh(key)


class SecureGuestView:
    """A secure guest's CPU view of its absolute storage, with the decisions the hardware makes.

    Accesses to pages that are not secure raise the exception the *host* gets (0x3E: import the page);
    pages of another owner raise 0x3F. This is how tests and demos act as the guest; the CPU model makes the
    same decision per page in its TLB fill (``Ultravisor.secure_guest_frame``).
    """

    def __init__(self, uv: Ultravisor, config_handle: int) -> None:
        self._uv = uv
        self.handle = config_handle

    def _pieces(self, gaddr: int, length: int, write: bool) -> list[tuple[int, int]]:
        out = []
        while length > 0:
            n = min(length, PAGE_SIZE - (gaddr & 0xFFF))
            frame = self._uv.guest_frame_check(self.handle, gaddr, write)
            out.append(((frame << PAGE_SHIFT) | (gaddr & 0xFFF), n))
            gaddr, length = gaddr + n, length - n
        return out

    def read(self, gaddr: int, length: int) -> bytes:
        """Read guest absolute storage as the secure guest."""
        return b"".join(self._uv.mem.read(a, n) for a, n in self._pieces(gaddr, length, False))

    def write(self, gaddr: int, data: bytes) -> None:
        """Store into guest absolute storage as the secure guest (every page checked first)."""
        off = 0
        for a, n in self._pieces(gaddr, len(data), True):
            self._uv.mem.write(a, data[off : off + n])
            off += n

    def control_block(self, gaddr: int) -> GuestControlBlock:
        """A UVCB at a guest absolute address, for a guest caller (DAT off in the guest)."""
        return GuestControlBlock(self, gaddr)


class GuestControlBlock:
    """A control block in a secure guest's storage, accessed through the guest's view."""

    def __init__(self, view: SecureGuestView, gaddr: int) -> None:
        self.view = view
        self.gaddr = gaddr

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes as the guest."""
        return self.view.read(self.gaddr + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes as the guest."""
        self.view.write(self.gaddr + offset, data)

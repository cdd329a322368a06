"""The Ultravisor's state and storage helpers: handles, donated frames, host buffers, the guest-mapping walk.

``UvCore`` is the base class of ``Ultravisor`` (the command families in ``uv_pages``, ``uv_lifecycle`` and
``uv_services`` sit between them); the arguments are documented on ``Ultravisor``.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from emulator.errors import ProgramException
from emulator.hw import dat
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from emulator.hw.seal import SealedLog
from firmware.uv_codes import QUERY_VALUES, QueryValues
from firmware.uv_contract import ControlBlock, UvEventSink
from firmware.uv_state import SecureConfig, SecureCpu, _Outcome

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


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


class UvCore:
    """The Ultravisor's state and the storage helpers every command family uses (a base of ``Ultravisor``)."""

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
        #: one command at a time, from every thread (a host's, a vCPU's guest UVC): each is atomic with
        #: respect to the others, as the real Ultravisor's per-page locks and busy answers make them
        self._lock = threading.RLock()
        #: Told about every completed UVC (``UvEvent``); empty: no cost beyond one test per call.
        self._sinks: list[UvEventSink] = []
        self._host_sinks: dict[UvEventSink, UvEventSink] = {}  # a host sink -> what the list holds
        #: the Ultravisor's halves of SIE (``firmware.uv_gate.UvGate.sie``): the engines that run its secure
        #: CPUs on hardware CPUs (weakly: an engine lives as long as the host that issues SIE through it)
        self.sie_engines: weakref.WeakSet[Any] = weakref.WeakSet()
        #: the debug capability's hook on secure guests' instructions (``SecureDebug.insn_filter``), given
        #: to every engine of this Ultravisor; None: no cost
        self.debug_insn_filter: Callable[..., str | None] | None = None

    @property
    def host_keys(self) -> tuple[Any, ...]:
        """The machine's host private keys (installed first, then backups), for the SE-header module."""
        return self._host_keys

    def __repr__(self) -> str:
        return f"Ultravisor(initialized={self.initialized}, configs={len(self._configs)})"

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

    def _holds_state_description(self, frames: range | list[int]) -> bool:
        """True if one of the frames is a secure CPU's state description or another record the host holds in
        place (host storage read and written in place, by the Ultravisor's SIE or by the hypervisor's SIE
        page of any CPU, ``PhysicalMemory.used_in_place``): it may become neither secure nor Ultravisor
        storage; zuv's choice."""
        if self.mem.any_used_in_place(frames):
            return True
        if not self._cpus:
            return False
        return not {c.state_origin >> PAGE_SHIFT for c in self._cpus.values()}.isdisjoint(frames)

    def _is_state_description(self, frame: int) -> bool:
        """``_holds_state_description((frame,))``, for the one frame of every Convert to Secure Storage and
        Unpack (no set built per page)."""
        if frame in self.mem.in_place_frames and self.mem.used_in_place(frame):
            return True
        for c in self._cpus.values():
            if c.state_origin >> PAGE_SHIFT == frame:
                return True
        return False

    def _lowcores(self) -> list[tuple[int, int]]:
        areas = [(0, 0x2000)]
        for p in self._cpu_prefixes():
            areas.append((p, p + 0x2000))
        return areas

    def _hits_lowcore(self, origin: int, length: int) -> bool:
        return any(origin < hi and lo < origin + length for lo, hi in self._lowcores())

    def _donate(self, frames: Iterable[int], descriptor: bytes = b"") -> None:
        """Make frames Ultravisor storage: tag and clear them, the UV's descriptor in the first."""
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

    def _host_buffer(
        self, cb: ControlBlock, vaddr: int, length: int, write: bool
    ) -> list[tuple[int, int]] | None:
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

    def host_buffer(
        self, cb: ControlBlock, vaddr: int, length: int, write: bool
    ) -> list[tuple[int, int]] | None:
        """Public form of the host-buffer translation (for the UV's command modules)."""
        return self._host_buffer(cb, vaddr, length, write)

    def write_pieces(self, pieces: list[tuple[int, int]], data: bytes) -> None:
        """Store ``data`` into translated host-buffer pieces (firmware access)."""
        self._write_pieces(pieces, data)

    def random(self, n: int) -> bytes:
        """``n`` bytes of the Ultravisor's own entropy (``os.urandom``) for its cryptography (dump seeds,
        IVs): never the injected source, which the host may seed (``Host(seed=...)``): two machines seeded
        alike sealed two dumps with one key and one AES-GCM IV (review 4). Handles and UIDs stay seeded."""
        return os.urandom(n)

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
            if len(hit) == 5:  # a segment-table walk (the gmap's shape): its two entries, inline
                if _U64.unpack_from(buf, hit[1])[0] == hit[2] and _U64.unpack_from(buf, hit[3])[0] == hit[4]:
                    return hit[0]
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

"""Physical (absolute) memory: one shared buffer, a per-4-KiB-frame table of owner tags and storage keys.

Everything that runs on the machine sees the same bytes: every CPU's unicorn instance maps this buffer
with ``mem_map_ptr``, the Ultravisor and the hypervisor read it through views. The buffer is an anonymous
``mmap``, so a 4 GiB machine costs only the pages that are touched.

Two kinds of access exist, mirroring the hardware:

* ``PhysicalMemory.read/write`` are *firmware* accesses: no checks. Only the CPU model and the
  Ultravisor (trusted firmware) use them.
* ``host_view()`` returns a ``HostView`` whose accesses are checked against the frame owner tags by the
  access rules (``emulator.hw.access``), the way the hardware checks a non-secure accessor: touching a
  secure or donated frame raises ``SecureStorageAccess`` (PGM 0x3D) and the access does not happen. The
  hypervisor, device models and attack scripts only ever get a ``HostView``.

Python-side writes invalidate translated code (unicorn does not notice them by itself,
``unicorn-s390x.md`` section 4): CPUs register a listener that drops their translation cache.

Owner-tag changes are told to listeners: per-frame listeners (``add_owner_listener``) hear every change at
once; batch listeners (``add_owner_batch_listener``, the CPUs' TLB flush) hear a list of changed frames,
either at once or, inside ``owner_batch()`` / ``set_owner_range``, once when the outermost batch ends. A
batch only delays the *telling*: the tags themselves change at once, and no CPU may run inside a batch
(its TLB could still hold a decision made under the old tag).
"""

from __future__ import annotations

import array
import ctypes
import mmap
import os
import re
import threading
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from emulator.errors import HwError, SecureStorageAccess
from emulator.hw import access

if TYPE_CHECKING:
    from emulator.hw.host_view import HostView

__all__ = [
    "PAGE_SIZE",
    "PAGE_SHIFT",
    "OWNER_HOST",
    "OWNER_UV",
    "MAX_MEMORY",
    "PhysicalMemory",
]

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_MASK: Final = ~(PAGE_SIZE - 1)

#: madvise(2) advice: fault a range in for writing in one call (Linux 5.14; Python 3.11 has no name for it)
_MADV_POPULATE_WRITE: Final = 23
#: mincore(2): which pages of a range are resident (touched and not swapped out); None where libc lacks it
try:
    _mincore: Final = ctypes.CDLL(None, use_errno=True).mincore
    _mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    _mincore.restype = ctypes.c_int
except (OSError, AttributeError):
    _mincore = None  # type: ignore[misc]
_RESIDENT: Final = re.compile(rb"[^\x00]+")
#: Owner tag of a frame that belongs to the host (non-secure storage).
OWNER_HOST: Final = 0
#: Owner tag of a frame donated to the Ultravisor (base, configuration or CPU storage).
OWNER_UV: Final = 1
#: Owner tags >= 2 name secure configurations (the Ultravisor assigns them).
FIRST_CONFIG_TAG: Final = 2

#: Largest memory the machine accepts (the address space of the host: 1 TiB is far beyond any demo).
MAX_MEMORY: Final = 1 << 40

# Storage-key byte layout (PoP "Storage Key"): ACC (4 bits) | F | R | C | unused.
KEY_ACC_MASK: Final = 0xF0
KEY_F: Final = 0x08
KEY_R: Final = 0x04
KEY_C: Final = 0x02

InvalidateListener = Callable[[int, int], None]
#: Called with the frame number after its owner tag or shared flag changed.
OwnerListener = Callable[[int], None]
#: Called with the frame numbers whose owner tag or shared flag changed (CPUs flush their TLBs once).
OwnerBatchListener = Callable[[list[int]], None]
#: Called as ``listener(addr, write)`` when a host view refuses an access to secure storage (PGM 0x3D).
SecureAccessListener = Callable[[int, bool], None]

_ZERO_PAGE: Final = bytes(PAGE_SIZE)


class PhysicalMemory:
    """Absolute storage of the machine, with per-frame owner tags and storage keys.

    Args:
        size: bytes of RAM, a positive multiple of 1 MiB (the storage-increment size the SCLP reports).

    Raises:
        HwError: on a size that is not a positive multiple of 1 MiB or above ``MAX_MEMORY``.
    """

    def __init__(self, size: int) -> None:
        if size <= 0 or size % (1 << 20) or size > MAX_MEMORY:
            raise HwError(f"memory size {size:#x} must be a positive multiple of 1 MiB up to {MAX_MEMORY:#x}")
        self.size: Final = size
        self.frames: Final = size >> PAGE_SHIFT
        try:
            self._buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            #: Owner tag per frame: OWNER_HOST, OWNER_UV or a secure-configuration tag (>= 2).
            self.owner = array.array("I", bytes(4 * self.frames))
            #: 1 where a secure frame has been shared by its guest (Set Shared Access).
            self.shared = bytearray(self.frames)
            #: Storage key per frame: ACC<<4 | F<<3 | R<<2 | C<<1.
            self.keys = bytearray(self.frames)
        except (OSError, MemoryError) as e:  # the host has not that much (address space or overcommit)
            why = e.strerror if isinstance(e, OSError) and e.strerror else "out of memory"
            raise HwError(
                f"cannot reserve {size >> 20} MiB for the machine's memory on this host ({why})"
            ) from None
        self._view = memoryview(self._buf)
        self.address: Final = ctypes.addressof(ctypes.c_char.from_buffer(self._buf))
        self._listeners: list[InvalidateListener] = []
        #: True while ``invalidate_code`` tells the listeners of storage the firmware replaced
        self.replacing_code = False
        #: (listener, frames it watches or None for all): writes inside one frame skip listeners that do
        #: not watch it
        self._frame_listeners: list[tuple[InvalidateListener, Container[int] | None]] = []
        self._owner_listeners: list[OwnerListener] = []
        self._owner_batch_listeners: list[OwnerBatchListener] = []
        self._owner_batch_watch: list[tuple[OwnerBatchListener, Container[int] | None]] = []
        #: Told about every host-view access refused with PGM 0x3D (debuggers); empty: no cost at all.
        self.secure_access_listeners: list[SecureAccessListener] = []
        self._cpus: tuple[Any, ...] = ()  # the CPUs on this storage (``add_cpu``): what ``quiesced`` holds
        self._batch_depth = 0
        self._batch_frames: list[int] = []
        #: Number of frames whose owner is not the host: lets host views skip tag checks when 0.
        self.non_host_frames = 0
        #: held while an owner tag or shared flag changes, and by a host view's store from its check to the
        #: store (one C-level copy): a frame cannot turn secure between the check and the store. Reentrant:
        #: a garbage collection inside a store may run an in-place object's finalizer (``unpin_in_place``)
        self.tag_lock = threading.RLock()
        #: [number of owner tag and shared flag changes so far]: a host view's read compares it around its
        #: check and copy and decides again if a tag changed meanwhile (an Ultravisor command, another thread)
        self.tag_gen = [0]
        #: frame -> number of live objects the hardware reads and writes in place there (a SIE page as the
        #: hypervisor holds it: ``Hardware.in_place``); such a frame stays host storage while one lives
        self._in_place: dict[int, int] = {}
        #: the same dict, read-only by convention: ``frame in in_place_frames`` is the Ultravisor's cheap
        #: first test before ``used_in_place``
        self.in_place_frames: Container[int] = self._in_place

    # -- firmware (unchecked) access ------------------------------------------------------------------

    def check_range(self, addr: int, length: int) -> None:
        """Raise ``HwError`` unless ``[addr, addr+length)`` lies inside RAM."""
        if addr < 0 or length < 0 or addr + length > self.size:
            raise HwError(f"absolute range {addr:#x}+{length:#x} is outside memory (size {self.size:#x})")

    def read(self, addr: int, length: int) -> bytes:
        """Read absolute storage without any check (firmware access)."""
        if addr < 0 or length < 0 or addr + length > self.size:
            self.check_range(addr, length)
        return self._buf[addr : addr + length]  # mmap slicing: bytes, no intermediate view

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write absolute storage without any owner check (firmware access); drops translated code."""
        n = len(data)
        if addr < 0 or addr + n > self.size:
            self.check_range(addr, n)
        self._buf[addr : addr + n] = data
        if n:  # ``stored``, inline for a store inside one frame
            frame = addr >> PAGE_SHIFT
            if (addr + n - 1) >> PAGE_SHIFT == frame:
                for listener, watched in self._frame_listeners:
                    if watched is None or frame in watched:
                        listener(addr, addr + n)
            else:
                for listener in self._listeners:
                    listener(addr, addr + n)

    def stored(self, addr: int, n: int) -> None:
        """Tell the store listeners that ``[addr, addr+n)`` changed (``write`` does; a host view's store too,
        once it has left the tag lock)."""
        if n:
            frame = addr >> PAGE_SHIFT
            if (addr + n - 1) >> PAGE_SHIFT == frame:  # one frame: only the listeners watching it
                for listener, watched in self._frame_listeners:
                    if watched is None or frame in watched:
                        listener(addr, addr + n)
            else:
                for listener in self._listeners:
                    listener(addr, addr + n)

    def load_file(self, addr: int, f: BinaryIO, length: int) -> int:
        """Read up to ``length`` bytes of the binary file ``f`` straight into storage at ``addr`` (firmware
        access, like ``write``); returns the number of bytes read (less at the end of the file).

        The pages are populated in one kernel call first (``MADV_POPULATE_WRITE`` where the kernel has it:
        one fault per page costs several times more on a VM), then the file is read into them with no
        intermediate copy.
        """
        self.check_range(addr, length)
        done = self.read_file_into(addr, f, length)
        if done:
            self.invalidate_code(addr, addr + done)
        return done

    def read_file_into(self, addr: int, f: BinaryIO, length: int) -> int:
        """``load_file`` without the range check and without telling the store listeners (a host view's
        load does both itself, the read under the tag lock and the telling after it)."""
        return self._read_into(addr, length, lambda view, _done: f.readinto(view))

    def read_fd_into(self, addr: int, fd: int, pos: int, length: int) -> int:
        """``read_file_into`` from the file descriptor ``fd`` at offset ``pos`` (``os.preadv``: no Python
        code of the file's runs with a view of storage; a host view's ``load_file``)."""
        return self._read_into(addr, length, lambda view, done: os.preadv(fd, [view], pos + done))

    def _read_into(self, addr: int, length: int, read: Callable[[memoryview, int], int | None]) -> int:
        """Fill ``[addr, addr+length)`` by ``read(view of the rest, bytes read so far)`` until it gives 0;
        the pages are populated in one kernel call first. Returns the bytes read."""
        if length <= 0:
            return 0
        lo = addr & ~(mmap.PAGESIZE - 1)
        try:
            self._buf.madvise(_MADV_POPULATE_WRITE, lo, addr + length - lo)
        except (OSError, ValueError):
            pass  # an older kernel: the pages fault in as the file is read
        view = self._view[addr : addr + length]
        done = 0
        while done < length:
            n = read(view[done:], done)
            if not n:
                break
            done += n
        return done

    def fill(self, addr: int, length: int, byte: int = 0) -> None:
        """Set a range to one byte value (clearing pages), firmware access."""
        self.check_range(addr, length)
        if byte == 0 and length == PAGE_SIZE:
            self._buf[addr : addr + length] = _ZERO_PAGE
        else:
            self._buf[addr : addr + length] = bytes([byte]) * length
        if length:
            self.invalidate_code(addr, addr + length)

    def discard(self, addr: int, length: int) -> None:
        """Give whole frames back zeroed (firmware access), as the host zeroing them would leave them: the
        storage key's access-control and fetch-protection bits 0, reference and change bits set.

        Resident pages are cleared in place, so the next user of the range does not fault them in again
        (a 256 MiB VM: ~65k faults, ~15% of a boot); the rest are dropped (``MADV_DONTNEED``: the next
        touch faults in a zero page, also for a page that was swapped out). The change bit set matters
        for speed too: a TLB fill for a load of a page whose change bit is set may let stores through,
        so a new guest's first touches cost one fill per page, not two (~10% of a secure boot).
        """
        self.check_range(addr, length)
        if addr % PAGE_SIZE or length % PAGE_SIZE:
            raise HwError(f"discard of {addr:#x}+{length:#x}: not whole 4 KiB frames")
        if length:
            self.discard_frames(addr, length)
            self.invalidate_code(addr, addr + length)

    def discard_frames(self, addr: int, length: int) -> None:
        """``discard`` of whole frames inside memory, without telling the store listeners (a host view's
        discard zeroes under the tag lock and tells them after it)."""
        resident = None
        if _mincore is not None and mmap.PAGESIZE == PAGE_SIZE:
            vec = ctypes.create_string_buffer(length >> PAGE_SHIFT)
            if _mincore(self.address + addr, length, vec) == 0:
                resident = vec.raw
        if resident is None:
            self._buf[addr : addr + length] = bytes(length)
        else:
            done = 0
            for m in _RESIDENT.finditer(resident):
                lo, hi = m.start() << PAGE_SHIFT, m.end() << PAGE_SHIFT
                if lo > done:
                    self._buf.madvise(mmap.MADV_DONTNEED, addr + done, lo - done)
                ctypes.memset(self.address + addr + lo, 0, hi - lo)
                done = hi
            if done < length:
                self._buf.madvise(mmap.MADV_DONTNEED, addr + done, length - done)
        frames = length >> PAGE_SHIFT
        self.keys[addr >> PAGE_SHIFT : (addr >> PAGE_SHIFT) + frames] = bytes([KEY_R | KEY_C]) * frames

    def read_u64(self, addr: int) -> int:
        """Read a big-endian doubleword (firmware access)."""
        return int.from_bytes(self.read(addr, 8), "big")

    def write_u64(self, addr: int, value: int) -> None:
        """Write a big-endian doubleword (firmware access)."""
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big"))

    def buffer(self) -> memoryview:
        """The raw buffer, for the CPU model's fast paths (DAT walks, page scans). Never hand it upward."""
        return self._view

    def mapping(self) -> mmap.mmap:
        """The raw mapping, whose slices are bytes with no intermediate view, for the CPU model's operand
        reads. Never hand it upward."""
        return self._buf

    # -- translated-code coherence --------------------------------------------------------------------

    def add_invalidate_listener(
        self, listener: InvalidateListener, watched: Container[int] | None = None
    ) -> None:
        """Register ``listener(lo, hi)``, called after every Python-side write to ``[lo, hi)``.

        ``watched``: the frames the listener acts on, a live container the listener keeps up to date (a
        CPU's frames holding scanned code). A write inside one frame that is not in it skips the listener
        (the listener would have done nothing); writes spanning frames always reach it.
        """
        self._listeners.append(listener)
        self._frame_listeners.append((listener, watched))

    def remove_invalidate_listener(self, listener: InvalidateListener) -> None:
        """Forget a listener registered with ``add_invalidate_listener``."""
        self._listeners.remove(listener)
        for i, (known, _) in enumerate(self._frame_listeners):
            if known == listener:
                del self._frame_listeners[i]
                break

    def invalidate_code(self, lo: int, hi: int) -> None:
        """Tell every CPU that the firmware replaced ``[lo, hi)`` behind unicorn's back (``fill``, the
        Ultravisor's Unpack, import and export): ``replacing_code`` is True while the listeners run, for a
        SIE guest's CPU drops all its translations then (the page came with a configuration change)."""
        self.replacing_code = True
        try:
            frame = lo >> PAGE_SHIFT
            if hi > lo and (hi - 1) >> PAGE_SHIFT == frame:  # one frame: only the listeners watching it
                for listener, watched in self._frame_listeners:
                    if watched is None or frame in watched:
                        listener(lo, hi)
                return
            for listener in self._listeners:
                listener(lo, hi)
        finally:
            self.replacing_code = False

    # -- owner tags ------------------------------------------------------------------------------------

    def pin_in_place(self, addr: int, length: int) -> None:
        """Mark ``[addr, addr+length)`` as used in place by the hardware for the host (``Hardware.in_place``),
        once its frames are storage the host may touch: the check and the mark are one step for the owner
        tags. Raises ``SecureStorageAccess`` (nothing marked) otherwise."""
        self.check_range(addr, length)
        frames = range(addr >> PAGE_SHIFT, (addr + length - 1 >> PAGE_SHIFT) + 1) if length else range(0)
        with self.tag_lock:
            bad = access.refused_address(self, addr, length, access.HOST)
            if bad is None:
                for f in frames:
                    self._in_place[f] = self._in_place.get(f, 0) + 1
        if bad is not None:  # (the listeners are told at the gate the refusal crosses: ``Hardware.in_place``)
            raise SecureStorageAccess(bad, True)

    def unpin_in_place(self, addr: int, length: int) -> None:
        """End one ``pin_in_place`` of the range (its object is gone)."""
        frames = range(addr >> PAGE_SHIFT, (addr + length - 1 >> PAGE_SHIFT) + 1) if length else range(0)
        with self.tag_lock:
            for f in frames:
                n = self._in_place.get(f, 0) - 1
                if n > 0:
                    self._in_place[f] = n
                else:
                    self._in_place.pop(f, None)

    def used_in_place(self, frame: int) -> bool:
        """True if a live object of the host reads and writes the frame in place (``pin_in_place``): the
        Ultravisor makes it neither secure nor its own. An object kept only by a reference cycle is
        collected first (a VM destroyed a moment ago must not hold its SIE pages' frames back)."""
        if frame not in self._in_place:
            return False
        import gc

        gc.collect()
        return frame in self._in_place

    def any_used_in_place(self, frames: range | list[int]) -> bool:
        """``used_in_place`` for any frame of a range or list (a donation of many frames)."""
        if not any(f in frames for f in self._in_place):
            return False
        import gc

        gc.collect()
        return any(f in frames for f in self._in_place)

    def set_owner(self, frame: int, tag: int) -> None:
        """Tag one frame (Ultravisor only). Clears the shared flag. A frame the host uses in place
        (``pin_in_place``) never leaves the host: ``HwError`` (the Ultravisor refuses such a frame before it
        changes anything; this is the backstop against a pin taken after its decision)."""
        owner = self.owner
        with self.tag_lock:
            old = owner[frame]
            if tag != OWNER_HOST:
                if frame in self._in_place:
                    raise HwError(f"frame {frame:#x} is used in place by the host: it stays host storage")
                if old == OWNER_HOST:
                    self.non_host_frames += 1
            elif old != OWNER_HOST:
                self.non_host_frames -= 1
            owner[frame] = tag
            self.shared[frame] = 0
            self.tag_gen[0] += 1
        # ``_owner_changed``, inline (every export and import comes here twice)
        if self._owner_listeners:
            for listener in self._owner_listeners:
                listener(frame)
        if self._batch_depth:
            self._batch_frames.append(frame)
        else:
            for batch_listener, watched in self._owner_batch_watch:  # one frame: only who watches it
                if watched is None or frame in watched:
                    batch_listener([frame])

    def set_owner_range(self, frames: Iterable[int], tag: int) -> None:
        """Tag many frames (Ultravisor only; clears their shared flags); batch listeners hear it once."""
        with self.owner_batch():
            for frame in frames:
                self.set_owner(frame, tag)

    def set_shared(self, frame: int, shared: bool) -> None:
        """Mark a secure frame shared with the host (or not) (Ultravisor only)."""
        with self.tag_lock:
            self.shared[frame] = 1 if shared else 0
            self.tag_gen[0] += 1
        self._owner_changed(frame)

    def _owner_changed(self, frame: int) -> None:
        for listener in self._owner_listeners:
            listener(frame)
        if self._batch_depth:
            self._batch_frames.append(frame)
        elif self._owner_batch_listeners:
            for batch_listener, watched in self._owner_batch_watch:  # one frame: only who watches it
                if watched is None or frame in watched:
                    batch_listener([frame])

    @contextmanager
    def owner_batch(self) -> Iterator[None]:
        """Tell batch listeners about the owner changes made inside once, when the outermost batch ends.

        For loops of Ultravisor calls that each change one frame (Unpack of an image, Destroy Secure
        Storage of a VM's pages): the CPUs flush their TLBs once instead of once per frame. Tags change at
        once; per-frame listeners still hear every change at once. No CPU may run inside a batch.
        """
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth and self._batch_frames:
                frames, self._batch_frames = self._batch_frames, []
                for batch_listener in self._owner_batch_listeners:
                    batch_listener(frames)

    def add_owner_listener(self, listener: OwnerListener) -> None:
        """Register ``listener(frame)``, called after every owner-tag or shared-flag change."""
        self._owner_listeners.append(listener)

    def remove_owner_listener(self, listener: OwnerListener) -> None:
        """Forget a listener registered with ``add_owner_listener``."""
        self._owner_listeners.remove(listener)

    def add_cpu(self, cpu: Any) -> None:
        """A CPU on this storage (it has ``hold``/``unhold``): ``quiesced`` takes it out of its run."""
        self._cpus = (*self._cpus, cpu)

    def remove_cpu(self, cpu: Any) -> None:
        """Forget a CPU registered with ``add_cpu``."""
        if cpu in self._cpus:
            cpus = list(self._cpus)
            cpus.remove(cpu)
            self._cpus = tuple(cpus)

    def quiesced(self) -> Quiesced:
        """Every CPU on this storage out of its run for the block (any thread): the shoot-down before the
        Ultravisor encrypts, clears or hands over a page. A CPU running on another thread is stopped at an
        instruction boundary and waits there; no CPU holds a translation the block's owner changes revoke
        (they flush their TLBs from this thread while none of them runs), and they run on afterwards."""
        return Quiesced(self)

    def hold_cpus(self) -> tuple[Any, ...]:
        """``quiesced``'s entry without a context object (the Ultravisor's dispatcher, once per page command):
        every CPU on this storage held (``Cpu.hold``); returns them for ``release_cpus``. A CPU added
        meanwhile is not held: it has no translation yet."""
        cpus = self._cpus
        n = 0
        try:
            for cpu in cpus:
                cpu.hold()
                n += 1
        except BaseException:
            self.release_cpus(cpus[:n])
            raise
        return cpus

    def release_cpus(self, cpus: tuple[Any, ...]) -> None:
        """End ``hold_cpus``: the CPUs it returned run on (in the reverse order)."""
        for cpu in reversed(cpus):
            cpu.unhold()

    def add_owner_batch_listener(
        self, listener: OwnerBatchListener, watched: Container[int] | None = None
    ) -> None:
        """Register ``listener(frames)``, called after owner-tag or shared-flag changes with the changed
        frames: after each change, or once at the end of an ``owner_batch``.

        ``watched``: the frames the listener acts on, a live container it keeps up to date (a CPU's frames
        with TLB decisions). A single change outside it skips the listener; a batch always reaches it.
        """
        self._owner_batch_listeners.append(listener)
        self._owner_batch_watch.append((listener, watched))

    def remove_owner_batch_listener(self, listener: OwnerBatchListener) -> None:
        """Forget a listener registered with ``add_owner_batch_listener``."""
        self._owner_batch_listeners.remove(listener)
        for i, (known, _) in enumerate(self._owner_batch_watch):
            if known == listener:
                del self._owner_batch_watch[i]
                break

    def is_host_accessible(self, frame: int) -> bool:
        """True if a non-secure accessor (host CPU or host Python code) may touch the frame (``access``)."""
        return access.may_access(self, frame, access.HOST)

    def add_secure_access_listener(self, listener: SecureAccessListener) -> None:
        """Register ``listener(addr, write)``, called when a host view refuses an access (PGM 0x3D) before
        the exception is raised: host-side Python touching secure storage, as ``Cpu.pgm_observer`` reports
        a host CPU's. Only the refusing path looks at the list."""
        self.secure_access_listeners.append(listener)

    def remove_secure_access_listener(self, listener: SecureAccessListener) -> None:
        """Forget a listener registered with ``add_secure_access_listener``."""
        self.secure_access_listeners.remove(listener)

    def checked_window(self, addr: int, length: int) -> memoryview:
        """The bytes of ``[addr, addr+length)`` in storage, read-only, after a host view's checks of a read
        and a write of the range (for the host they refuse the same frames; the exception is the read's:
        ``SecureStorageAccess`` on a secure frame). For firmware reading a host control block in place (the
        Ultravisor): a view of storage, so it is never handed to the host (``HostView`` has no window)."""
        end = addr + length
        if addr < 0 or length < 0 or end > self.size:
            self.check_range(addr, length)
        first = addr >> PAGE_SHIFT
        if length and first == (end - 1) >> PAGE_SHIFT and (
            self.owner[first] == OWNER_HOST or self.shared[first]
        ):
            pass  # the common case, one frame the host may touch: access.may_access written out
        elif self.non_host_frames and length:
            bad = access.refused_address(self, addr, length, access.HOST)
            if bad is not None:  # (the listeners are told at the Ultravisor's gate: ``UvGate.call``)
                raise SecureStorageAccess(bad, False)
        return self._view[addr : addr + length].toreadonly()

    def host_view(self, notify: bool = True) -> HostView:
        """A view for host-side Python code whose every access is checked like a host CPU access; with
        ``notify`` False its refusals tell no secure-access listener and its reads and stores are no gates
        (the Ultravisor's own view of a host control block, never handed to the host: its gate,
        ``UvGate.call``, tells the listeners of the program exception the refusal becomes)."""
        from emulator.hw.host_view import HostView  # (the view's module builds on this one)

        return HostView(self, notify)


class Quiesced:
    """``PhysicalMemory.quiesced``'s context: every CPU held on entry (``hold_cpus``), released on exit."""

    __slots__ = ("_mem", "_held")

    def __init__(self, mem: PhysicalMemory) -> None:
        self._mem = mem
        self._held: tuple[Any, ...] = ()

    def __enter__(self) -> None:
        self._held = self._mem.hold_cpus()

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, ()
        self._mem.release_cpus(held)

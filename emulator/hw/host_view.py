"""The host's view of storage (``HostView``, sealed: the storage in its gates' closures only) and checked
spans of host storage (``HostSpan``): every access checked against the owner tags like a host CPU's."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Final

from emulator.errors import HwError, SecureStorageAccess
from emulator.hw import access, seal
from emulator.hw.memory import OWNER_HOST, PAGE_SHIFT, PAGE_SIZE, SecureAccessListener

if TYPE_CHECKING:
    from emulator.hw.memory import PhysicalMemory

__all__ = ["HostView", "HostSpan"]


#: file types whose methods are the io module's own (a host view reads them by their descriptor)
_REAL_FILES: Final = (io.BufferedReader, io.FileIO, io.BufferedRandom)


class HostView:
    """Host (non-secure) access to absolute storage: secure and donated frames raise PGM 0x3D.

    This is the only memory object the hypervisor, the device models and attack scripts hold. A
    rejected access changes nothing, as on the real machine where the access is suppressed.

    The view is sealed: the storage it checks is held by its methods' closures only, never as an attribute,
    so no object reachable from a view leads to ``PhysicalMemory`` (the host side's reach,
    ``ARCHITECTURE.md``). Its methods are per-view functions (no bound method: a call costs what a plain
    function's does).
    """

    __slots__ = ("size", "check", "read", "write", "load_file", "discard", "accessible",
                 "add_secure_access_listener", "remove_secure_access_listener", "shared")  # fmt: skip

    def __init__(self, mem: PhysicalMemory, notify: bool = True) -> None:
        self.size = mem.size
        size, owner, shared_flags, buf = mem.size, mem.owner, mem.shared, mem._buf
        tag_lock, tag_gen, stored = mem.tag_lock, mem.tag_gen, mem.stored
        frame_listeners = mem._frame_listeners  # (the live list: listeners added later are in it)

        def refused(addr: int, write: bool) -> None:
            raise SecureStorageAccess(addr, write)  # (the listeners are told at the gate: ``seal``)

        def _check(addr: int, length: int, write: bool) -> None:
            end = addr + length
            if addr < 0 or length < 0 or end > size:
                mem.check_range(addr, length)
            if not mem.non_host_frames or not length:
                return
            first = addr >> PAGE_SHIFT
            if first == (end - 1) >> PAGE_SHIFT and (owner[first] == OWNER_HOST or shared_flags[first]):
                return  # the common case, one frame the host may touch: access.may_access written out
            bad = access.refused_address(mem, addr, length, access.HOST)
            if bad is not None:
                refused(bad, write)

        def check(addr: int, length: int, write: bool) -> None:
            """Raise what ``read`` (``write=False``) or ``write`` of the range would raise, without the
            access."""
            _check(addr, length, write)

        # ``read`` and ``write`` decide the common case inline (a range inside memory and inside one frame
        # the host may touch: ``_check``'s own first outcome) and leave every other case to ``_check``.

        def read(addr: int, length: int) -> bytes:
            """Read absolute storage as the host; raises ``SecureStorageAccess`` on a secure frame. A tag that
            changed between the check and the copy (an Ultravisor command on another thread made the frame
            secure and wrote its plaintext) makes the read decide again: the copy is never of a frame that
            was not the host's throughout."""
            end = addr + length
            while True:
                gen = tag_gen[0]
                if addr < 0 or length <= 0 or end > size or (end - 1) >> PAGE_SHIFT != addr >> PAGE_SHIFT or (
                    owner[addr >> PAGE_SHIFT] != OWNER_HOST and not shared_flags[addr >> PAGE_SHIFT]
                ):
                    _check(addr, length, False)
                data = buf[addr:end]
                if tag_gen[0] == gen:
                    return data

        def write(addr: int, data: bytes | bytearray | memoryview) -> None:
            """Write absolute storage as the host; raises ``SecureStorageAccess`` on a secure frame. The check
            and the store are one step for the owner tags (``tag_lock``): a frame that turns secure on another
            thread does so before the check or after the store."""
            n = len(data)
            end = addr + n
            if addr < 0 or n <= 0 or end > size:
                _check(addr, n, True)  # (out of range: raises; empty: nothing to store)
                if n <= 0:
                    return
            frame = addr >> PAGE_SHIFT
            one = (end - 1) >> PAGE_SHIFT == frame
            while True:
                with tag_lock:
                    ok = (one and (owner[frame] == OWNER_HOST or shared_flags[frame])) or (
                        not mem.non_host_frames or access.refused_address(mem, addr, n, access.HOST) is None
                    )
                    if ok:
                        buf[addr:end] = data
                if ok:
                    if one:  # ``stored``, inline: the listeners watching this frame
                        for listener, watched in frame_listeners:
                            if watched is None or frame in watched:
                                listener(addr, end)
                    else:
                        stored(addr, n)
                    return
                _check(addr, n, True)  # refused: raises, telling the listeners (outside the lock)

        def _checked_store(addr: int, length: int, store: Callable[[], int]) -> int:
            """Run ``store`` (a store into ``[addr, addr+length)``, inside memory and not empty) if the host
            may touch the whole range, the check and the store one step for the owner tags (``tag_lock``, as
            ``write``); tell the store listeners after it. Refused: ``SecureStorageAccess``, nothing
            stored."""
            end = addr + length
            while True:
                with tag_lock:
                    ok = not mem.non_host_frames or (
                        (end - 1) >> PAGE_SHIFT == addr >> PAGE_SHIFT
                        and (owner[addr >> PAGE_SHIFT] == OWNER_HOST or shared_flags[addr >> PAGE_SHIFT])
                    ) or access.refused_address(mem, addr, length, access.HOST) is None
                    done = store() if ok else 0
                if ok:
                    if done:
                        stored(addr, done)
                    return done
                _check(addr, length, True)  # refused: raises, telling the listeners (outside the lock)

        def load_fd(addr: int, fd: int, pos: int, length: int) -> int:
            """``load_file`` of a file by its descriptor: ``length`` bytes from offset ``pos``."""
            mem.check_range(addr, length)
            if length <= 0:
                return 0
            return _checked_store(addr, length, lambda: mem.read_fd_into(addr, fd, pos, length))

        def load_bytes(addr: int, data: bytes, length: int) -> int:
            """``load_file`` of bytes already read (at most ``length``): the range checked is ``length``."""
            mem.check_range(addr, length)
            n = min(len(data), length)
            if length <= 0 or not n:
                return 0

            def store() -> int:
                buf[addr : addr + n] = data[:n]
                return n

            return _checked_store(addr, length, store)

        # every function handed out is a gate (``seal``): a refusal leaves it without this view's frames
        # (their locals are the storage), and the listeners are told there, never from a frame holding it
        told = seal.notify_refusal(mem.secure_access_listeners) if notify else None
        sealed_fd, sealed_bytes = seal.gate(load_fd, refused=told), seal.gate(load_bytes, refused=told)
        sealed_check = seal.gate(check, refused=told)

        def load_file(addr: int, f: BinaryIO, length: int) -> int:
            """``PhysicalMemory.load_file`` as the host: the whole range is checked like ``write`` and the
            file read into it under the tag lock (a secure frame raises ``SecureStorageAccess`` and nothing
            is read or stored; a frame cannot turn secure between the check and the store). No method of
            ``f`` runs inside the seal: a real file is read by its descriptor (``os.preadv``, then ``f`` is
            positioned after what was read), any other file-like object here, before the gate (before,
            ``f.readinto`` was handed a view of storage whose ``obj`` is the storage ``mmap``)."""
            if type(f) in _REAL_FILES:
                pos = f.tell()
                done = sealed_fd(addr, f.fileno(), pos, length)
                f.seek(pos + done)
                return done  # type: ignore[no-any-return]
            if length > 0:
                sealed_check(addr, length, True)  # refused before anything is read from ``f``
            data = f.read(length) if length > 0 else b""
            return sealed_bytes(addr, data, length)  # type: ignore[no-any-return]

        def discard(addr: int, length: int) -> None:
            """``PhysicalMemory.discard`` as the host (zeroed frames, the keys its stores leave), checked like
            a write of the whole range and done under the tag lock (a secure frame raises
            ``SecureStorageAccess`` and nothing is discarded; none turns secure between check and zeroing)."""
            mem.check_range(addr, length)
            if addr % PAGE_SIZE or length % PAGE_SIZE:
                raise HwError(f"discard of {addr:#x}+{length:#x}: not whole 4 KiB frames")
            if length:
                _checked_store(addr, length, lambda: (mem.discard_frames(addr, length), length)[1])

        def accessible(addr: int) -> bool:
            """True if the host may touch the frame holding ``addr``."""
            mem.check_range(addr, 1)
            return mem.is_host_accessible(addr >> PAGE_SHIFT)

        def add_secure_access_listener(listener: SecureAccessListener) -> None:
            """Be told about every host access refused with PGM 0x3D (``PhysicalMemory``'s listeners: the
            host's own refused accesses, e.g. a debugger's break on them)."""
            mem.add_secure_access_listener(listener)

        def remove_secure_access_listener(listener: SecureAccessListener) -> None:
            """Forget a listener added with ``add_secure_access_listener``."""
            mem.remove_secure_access_listener(listener)

        def shared(addr: int) -> bool:
            """True if the frame holding ``addr`` is a secure guest's page shared with the host."""
            mem.check_range(addr, 1)
            return bool(shared_flags[addr >> PAGE_SHIFT])

        if not notify:  # the Ultravisor's own view of host control blocks: never handed out (its gate is
            # ``UvGate.call``, which tells the listeners): plain functions, no gate's cost per access
            self.check, self.read, self.write, self.load_file = check, read, write, load_file
        else:
            self.check, self.read = sealed_check, seal.gate(read, refused=told)
            self.write, self.load_file = seal.gate(write, refused=told), load_file  # (gates inside it)
        self.discard, self.accessible = seal.gate(discard, refused=told), seal.gate(accessible)
        self.shared = seal.gate(shared)
        self.add_secure_access_listener = seal.gate(add_secure_access_listener)
        self.remove_secure_access_listener = seal.gate(remove_secure_access_listener)


class HostSpan:
    """``[addr, addr+length)`` of storage as the host touches it, sliced like a bytearray: every read and
    store is checked against the owner tags when it happens (``HostView``), so holding a span gives no
    access to a frame that has become secure since."""

    __slots__ = ("_view", "addr", "length")

    def __init__(self, view: HostView, addr: int, length: int) -> None:
        view.check(addr, length, False)
        self._view = view
        self.addr = addr
        self.length = length

    def _range(self, key: slice) -> tuple[int, int]:
        start, stop, step = key.indices(self.length)
        if step != 1:
            raise HwError("a host span is sliced with step 1 only")
        return start, max(stop - start, 0)

    def __len__(self) -> int:
        return self.length

    def read(self, off: int, n: int) -> bytes:
        """``self[off : off + n]`` for a range inside the span, without the slice protocol."""
        if off < 0 or n < 0 or off + n > self.length:
            raise HwError(f"a host span read of [{off:#x}, {off + n:#x}) outside its {self.length:#x} bytes")
        return self._view.read(self.addr + off, n) if n else b""

    def write(self, off: int, data: bytes | bytearray | memoryview) -> None:
        """``self[off : off + len(data)] = data`` for a range inside the span, without the slice protocol."""
        n = len(data)
        if off < 0 or off + n > self.length:
            raise HwError(f"a host span store of [{off:#x}, {off + n:#x}) outside its {self.length:#x} bytes")
        if n:
            self._view.write(self.addr + off, data)

    def __getitem__(self, key: slice) -> bytes:
        start, n = self._range(key)
        return self._view.read(self.addr + start, n) if n else b""

    def __setitem__(self, key: slice, data: bytes | bytearray | memoryview) -> None:
        start, n = self._range(key)
        if len(data) != n:
            raise HwError(f"a host span store of {len(data)} bytes into a slice of {n}")
        if n:
            self._view.write(self.addr + start, data)

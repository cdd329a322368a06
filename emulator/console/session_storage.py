"""The machine's storage as a console session on a secure host holds it (``SessionStorage``): sizes, storage
keys and owner tags to read, listeners, reads, stores and DAT walks for the console's views; the storage
object in closures only, and the bytes of a frame the host may not touch only with the debug capability."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from emulator.errors import SecureStorageAccess
from emulator.hw import access, dat, seal

if TYPE_CHECKING:
    from emulator.hw.host_view import HostView
    from emulator.hw.memory import PhysicalMemory

__all__ = ["SessionStorage", "Hidden", "HIDDEN", "refused"]

#: What the host view shows for bytes of a frame the host may not touch.
HIDDEN: Final = "(secure storage: hidden in the host view)"


class Hidden:
    """Bytes of storage the session may not see (a frame the host may not touch, no debug capability): their
    length, never the bytes nor anything computed from them. Every ``Hidden`` of a length equals every other
    of that length: a keyed digest of the bytes (equal for equal bytes, as before review 4) was an equality
    oracle, and comparing one hidden byte of the secret page with hidden bytes of the guest's code, whose
    values the host knows from the public image, read the whole secret. So a host-view watchpoint on bytes
    that stay hidden sees no change in them (a real host sees none); it sees them become visible or
    hidden (an export, an import)."""

    __slots__ = ("_length",)

    def __init__(self, length: int) -> None:
        self._length = length

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hidden) and other._length == self._length

    def __hash__(self) -> int:
        return hash(("Hidden", self._length))

    def __len__(self) -> int:
        return self._length

    def hex(self) -> str:
        """What the host view shows instead of the bytes."""
        return HIDDEN

    def __repr__(self) -> str:
        return f"Hidden({self._length} bytes)"


class _Table:
    """A read-only per-frame table (storage keys, owner tags, shared flags): ``table[frame]``."""

    __slots__ = ("_get", "_len")

    def __init__(self, get: Callable[[int], int], length: int) -> None:
        self._get = seal.gate(get)
        self._len = length

    def __getitem__(self, frame: int) -> int:
        return self._get(frame)

    def __len__(self) -> int:
        return self._len


class SessionStorage:
    """What a console session on a secure host holds of the machine's storage.

    ``read`` gives the bytes where the host may touch them and, elsewhere, a ``Hidden`` (plaintext only
    while ``owner()`` is true: the session holds the machine's debug capability); ``write`` stores as the
    host unless the capability is held; ``translate`` walks DAT tables in storage, and without the
    capability refuses a table in a frame the host may not touch (PGM 0x3D, as for a host CPU). The storage
    object is held by the closures only (the host side's reach, ``ARCHITECTURE.md``).
    """

    __slots__ = ("size", "frames", "keys", "owner", "shared", "read", "read_u64", "write", "check_range",
                 "host_view", "refused", "translate", "add_invalidate_listener", "remove_invalidate_listener",
                 "add_owner_listener", "remove_owner_listener", "add_secure_access_listener",
                 "remove_secure_access_listener", "_non_host")  # fmt: skip

    def __init__(self, mem: PhysicalMemory, host: HostView, owner: Callable[[], bool]) -> None:
        keys, owners, shared = mem.keys, mem.owner, mem.shared
        self.size: int = mem.size
        self.frames: int = mem.frames
        self.keys = _Table(lambda f: keys[f], mem.frames)
        self.owner = _Table(lambda f: owners[f], mem.frames)
        self.shared = _Table(lambda f: shared[f], mem.frames)

        def refused_(addr: int, length: int) -> int | None:
            """The first address of the range in a frame the host may not touch, or None."""
            return access.refused_address(mem, addr, length)

        def read(addr: int, length: int) -> bytes | Hidden:
            """The bytes at host absolute ``addr``; a ``Hidden`` where the host may not touch them (plaintext
            with the machine's debug capability)."""
            if owner() or access.refused_address(mem, addr, length) is None:
                data = mem.read(addr, length)
                if owner() or access.refused_address(mem, addr, length) is None:  # (no tag change meanwhile)
                    return data
            return Hidden(length)

        def read_u64(addr: int) -> int:
            """A big-endian doubleword at host absolute ``addr`` as ``read`` gives it."""
            data = read(addr, 8)
            if isinstance(data, Hidden):
                raise SecureStorageAccess(addr, False)
            return int.from_bytes(data, "big")

        def write(addr: int, data: bytes) -> None:
            """Store at host absolute ``addr``: as firmware with the debug capability, else as the host."""
            if owner():
                mem.write(addr, data)
            else:
                host.write(addr, data)

        def translate(table_to_host: Callable[[int], int], *args: Any, **kwargs: Any) -> Any:
            """``emulator.hw.dat.translate`` on storage; without the debug capability a table entry in a
            frame the host may not touch is refused (PGM 0x3D)."""

            def checked(real: int) -> int:
                h = table_to_host(real)
                if not owner() and access.refused_address(mem, h, 8) is not None:
                    raise access.secure_storage_exception(h, False, why="DAT table in secure storage")
                return h

            return dat.translate(mem.buffer().toreadonly(), checked, *args, **kwargs)

        self.read, self.read_u64, self.write = read, read_u64, write
        self.translate, self.refused = translate, refused_
        self.check_range = lambda addr, length: mem.check_range(addr, length)
        self.host_view = lambda: host
        self.add_invalidate_listener = lambda fn: mem.add_invalidate_listener(fn)
        self.remove_invalidate_listener = lambda fn: mem.remove_invalidate_listener(fn)
        self.add_owner_listener = lambda fn: mem.add_owner_listener(fn)
        self.remove_owner_listener = lambda fn: mem.remove_owner_listener(fn)
        self.add_secure_access_listener = lambda fn: mem.add_secure_access_listener(fn)
        self.remove_secure_access_listener = lambda fn: mem.remove_secure_access_listener(fn)
        self._non_host = lambda: mem.non_host_frames
        seal.gate_slots(self)  # an exception leaves a function without the frames holding the storage

    @property
    def non_host_frames(self) -> int:
        """How many frames the host may not touch."""
        return self._non_host()  # type: ignore[no-any-return]


def refused(mem: Any, addr: int, length: int) -> int | None:
    """``access.refused_address`` for the host on a console machine's storage (``PhysicalMemory`` or a
    ``SessionStorage``)."""
    f = getattr(mem, "refused", None)
    return f(addr, length) if f is not None else access.refused_address(mem, addr, length)

"""The hypervisor's host memory: the allocator of host absolute ranges, and a VM's window into its slot."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Final

from emulator.errors import HypervisorError, SecureStorageAccess
from emulator.hw.host_view import HostView
from emulator.hw.memory import PAGE_SIZE

if TYPE_CHECKING:
    pass

MIB: Final = 1 << 20
#: Host memory the hypervisor keeps for itself (its "kernel": lowcore, SIE pages, SIDAs) below the VMs.
HOST_RESERVED: Final = 16 * MIB

class HostAllocator:
    """Host absolute storage handed out by the hypervisor: 1 MiB-aligned guest slots and single pages.

    Pages for SIE pages, SIDAs and Ultravisor donations come from the reserved low area first and then
    from free 1 MiB blocks; guest slots take the lowest free range of whole MiB above the reserved area.
    """

    def __init__(self, size: int, reserved: int = HOST_RESERVED) -> None:
        if size < reserved + MIB:
            raise HypervisorError(f"host memory of {size >> 20} MiB leaves no room for guests")
        self.size = size
        self._free_pages = list(range(reserved - PAGE_SIZE, 0x10000 - PAGE_SIZE, -PAGE_SIZE))
        self._ranges: list[tuple[int, int]] = [
            (reserved, size - reserved)
        ]  # free (start, length), 1 MiB units

    def alloc_range(self, length: int, align: int = MIB, below: int | None = None, above: int = 0) -> int:
        """Take ``length`` bytes (rounded up to 1 MiB) at an ``align``-aligned address; returns it."""
        length = (length + MIB - 1) & ~(MIB - 1)
        for i, (start, n) in enumerate(self._ranges):
            base = max((start + align - 1) & ~(align - 1), (above + align - 1) & ~(align - 1))
            if base + length <= start + n and (below is None or base + length <= below):
                pieces = []
                if base > start:
                    pieces.append((start, base - start))
                if base + length < start + n:
                    pieces.append((base + length, start + n - base - length))
                self._ranges[i : i + 1] = pieces
                return base
        where = f" at or above {above:#x}" if above else ""
        if below is not None:
            where += f" ending at or below {below:#x}"
        raise HypervisorError(
            f"host memory exhausted: no free {length >> 20} MiB{where} (host memory {self.size >> 20} MiB)"
        )

    def free_range(self, start: int, length: int) -> None:
        """Give a range back."""
        length = (length + MIB - 1) & ~(MIB - 1)
        self._ranges.append((start, length))
        self._ranges.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self._ranges:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self._ranges = merged

    def alloc_page(self) -> int:
        """One 4 KiB host page."""
        if not self._free_pages:
            block = self.alloc_range(MIB)
            self._free_pages = list(range(block + MIB - PAGE_SIZE, block - PAGE_SIZE, -PAGE_SIZE))
        return self._free_pages.pop()

    def free_page(self, addr: int) -> None:
        """Give a page back."""
        self._free_pages.append(addr)


class GuestWindow:
    """A guest's absolute storage seen by the host: guest address A is host address ``mso + A``.

    This is how the loader and the device models touch guest memory. Every access goes through the
    host view, so a secure page raises PGM 0x3D; ``on_secure`` (set for secure guests) then makes the
    page accessible the way Linux's ``arch_make_folio_accessible`` does (export through the Ultravisor)
    and the access is retried once. The loader interface (``size``, ``write``, ``fill``, ``read_u64``)
    matches ``PhysicalMemory``'s so ``emulator.machine.loader`` can load programs into a VM.
    """

    def __init__(self, host: HostView, mso: int, size: int) -> None:
        self._host = host
        self.mso = mso
        self.size = size
        self.on_secure: Callable[[SecureStorageAccess], None] | None = None
        #: Host touches that hit a secure page (each one a PGM 0x3D the host took): (guest address, store?).
        self.trapped: list[tuple[int, bool]] = []

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise HypervisorError(
                f"guest range {addr:#x}+{length:#x} is outside guest memory ({self.size:#x})"
            )

    def _retry(self, fn: Callable[[], bytes | None]) -> bytes | None:
        try:
            return fn()
        except SecureStorageAccess as e:
            self.trapped.append((e.addr - self.mso, e.write))
            if self.on_secure is None:
                raise
            self.on_secure(e)
            return fn()

    def read(self, addr: int, length: int) -> bytes:
        """Read guest absolute storage as the host (secure pages: trapped, exported, then read)."""
        self._check(addr, length)
        out = self._retry(lambda: self._host.read(self.mso + addr, length))
        assert out is not None
        return out

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest absolute storage as the host (secure pages: trapped, exported, then written)."""
        self._check(addr, len(data))
        self._retry(lambda: self._host.write(self.mso + addr, data))

    def load_file(self, addr: int, f: BinaryIO, length: int) -> int:
        """Read up to ``length`` bytes of a binary file straight into guest storage at ``addr`` (the loader's
        path for big images); returns the bytes read. Secure pages: trapped, exported, then loaded."""
        self._check(addr, length)
        pos = f.tell()

        def load() -> int:
            f.seek(pos)
            return self._host.load_file(self.mso + addr, f, length)

        done = self._retry(load)  # type: ignore[arg-type]
        return int(done or 0)

    def fill(self, addr: int, length: int, byte: int = 0) -> None:
        """Set a guest range to one byte value."""
        self.write(addr, bytes([byte]) * length)

    def read_u64(self, addr: int) -> int:
        """Read a big-endian doubleword of guest storage."""
        return int.from_bytes(self.read(addr, 8), "big")

    def write_u64(self, addr: int, value: int) -> None:
        """Write a big-endian doubleword of guest storage."""
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big"))

"""The SIDA (secure instruction data area) of a secure vCPU's state description as the hypervisor touches
it, and the SCLP's view of an SCCB the Ultravisor copied there."""

from __future__ import annotations

from emulator.errors import HypervisorError, ProgramException
from emulator.hw.host_view import HostView

__all__ = ["Sida", "SidaSccb"]


class Sida:
    """The SIDA (secure instruction data area) of one state description as the host sees it: host storage
    through ``HostView``, so every access checks every frame it touches (``SecureStorageAccess`` when a
    page of a multi-page SIDA is secure: nothing read or stored)."""

    def __init__(self, host: HostView, origin: int, size: int) -> None:
        self._host = host
        self.origin = origin
        self.size = size

    def _range(self, off: int, n: int) -> int:
        if not self.origin:
            raise HypervisorError("the state description has no SIDA")
        if off < 0 or n < 0 or off + n > self.size:
            raise HypervisorError(f"SIDA access [{off:#x}, {off + n:#x}) outside its {self.size:#x} bytes")
        return self.origin + off

    def read(self, off: int, n: int) -> bytes:
        """``n`` bytes at offset ``off`` of the SIDA."""
        return self._host.read(self._range(off, n), n) if n else b""

    def write(self, off: int, data: bytes) -> None:
        """Store ``data`` at offset ``off`` of the SIDA."""
        if data:
            self._host.write(self._range(off, len(data)), data)


class SidaSccb:
    """The SCLP's view of an SCCB the Ultravisor copied into the SIDA (real address -> SIDA offset)."""

    def __init__(self, sida: Sida, sccb: int, memory_size: int) -> None:
        if not sida.origin:
            raise HypervisorError("the state description has no SIDA")
        self._host = sida._host  # noqa: SLF001 - the SIDA's own view (``Sida``'s accesses, one frame less)
        self._base = sccb
        self._origin = sida.origin
        self._size = sida.size
        self.memory_size = memory_size
        self.prefix = 0

    def read(self, real: int, length: int) -> bytes:
        """``length`` bytes of the SCCB at guest real address ``real``, from the SIDA (host storage, checked
        at the access as ``Sida.read``'s)."""
        off = real - self._base
        if off < 0 or length < 0 or off + length > self._size:
            raise ProgramException(0x05, why="SCCB access outside the SIDA")
        return self._host.read(self._origin + off, length) if length else b""

    def write(self, real: int, data: bytes) -> None:
        """Store ``data`` into the SCCB at guest real address ``real``, in the SIDA (as ``Sida.write``)."""
        off = real - self._base
        if off < 0 or off + len(data) > self._size:
            raise ProgramException(0x05, why="SCCB access outside the SIDA")
        if data:
            self._host.write(self._origin + off, data)

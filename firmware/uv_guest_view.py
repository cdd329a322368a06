"""A secure guest's view of its absolute storage through the Ultravisor's decisions, and its UVCBs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from emulator.hw.seal import SealedLog

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from firmware.uv import Ultravisor

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


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


class GuestCpuControlBlock:
    """A guest UVC's control block: home-space virtual (DAT on) or real (DAT off) addresses of the CPU."""

    def __init__(self, cpu: Cpu, addr: int) -> None:
        self.cpu = cpu
        self.addr = addr

    def _host(self, vaddr: int, write: bool) -> int:
        return self.cpu.translate(vaddr, write=write, asc=3)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` from the block's start, page by page through the guest's DAT."""
        out = bytearray()
        v = self.addr + offset
        while length > 0:
            n = min(length, 0x1000 - (v & 0xFFF))
            h = self._host(v, False)
            out += self.cpu.mem.read(h, n)
            v, length = v + n, length - n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``: every page is translated (and checked) before anything is stored."""
        parts = []
        v, off = self.addr + offset, 0
        while off < len(data):
            n = min(len(data) - off, 0x1000 - (v & 0xFFF))
            parts.append((self._host(v, True), data[off : off + n]))
            v, off = v + n, off + n
        for h, chunk in parts:
            self.cpu.mem.write(h, chunk)

    def translate(self, vaddr: int, write: bool) -> int:
        """The host address of guest virtual ``vaddr`` for a fetch or a store."""
        return self._host(vaddr, write)

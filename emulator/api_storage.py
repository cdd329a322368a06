"""Guest storage as the host reaches it (``emulator.api``): reads, writes, page states, the host's mapping."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.errors import HypervisorError, SecureStorageAccess
from emulator.hw.memory import PAGE_SIZE

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vm

__all__ = ["Access", "GuestStorage"]


@dataclass(frozen=True)
class Access:
    """The result of one host access: the bytes (reads), or the program interruption the host took."""

    ok: bool
    data: bytes = b""
    code: int = 0  # program-interruption code (0x3D) when refused
    teid: int = 0
    message: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok ({len(self.data)} bytes)"
        return f"refused: PGM {self.code:#04x} ({self.message})"


class GuestStorage:
    """``Guest``'s storage through the host's view and the mapping the host owns (a base class of
    ``emulator.api.Guest``)."""

    _vm: Vm

    if TYPE_CHECKING:  # provided by Guest

        def _pv(self) -> Any:
            """The VM's secure configuration (``Guest``)."""

    # -- storage through the host's view ------------------------------------------------------------------

    def _check(self, gaddr: int, length: int) -> None:
        if gaddr < 0 or length < 0 or gaddr + length > self._vm.memory_size:
            raise HypervisorError(f"guest range {gaddr:#x}+{length:#x} is outside guest storage")

    def frame(self, gaddr: int) -> int:
        """The host absolute address backing guest address ``gaddr``: through the page tables the hypervisor
        built for the Ultravisor (a secure guest) or the memory slot (a normal guest)."""
        self._check(gaddr, 1)
        pv = self._vm.pv
        if pv is None:
            return self._vm.mso + gaddr
        pte = self._pte(gaddr)
        return (struct.unpack(">Q", self._vm.hv.host.read(pte, 8))[0] & ~0xFFF) | (gaddr & 0xFFF)

    def read(self, gaddr: int, length: int) -> bytes:
        """Read guest storage as the host reads it (its frames through the host view).

        Raises:
            SecureStorageAccess: PGM 0x3D, a page of the range is secure; nothing was read.
        """
        self._check(gaddr, length)
        out = bytearray()
        for a, n in _pages(gaddr, length):
            out += self._vm.hv.host.read(self.frame(a), n)
        return bytes(out)

    def write(self, gaddr: int, data: bytes) -> None:
        """Write guest storage as the host writes it.

        Raises:
            SecureStorageAccess: PGM 0x3D, a page of the range is secure; nothing was written.
        """
        self._check(gaddr, len(data))
        spans = list(_pages(gaddr, len(data)))
        for a, n in spans:  # check the whole range before any store
            self._vm.hv.host.check(self.frame(a), n, True)
        off = 0
        for a, n in spans:
            self._vm.hv.host.write(self.frame(a), data[off : off + n])
            off += n

    def try_read(self, gaddr: int, length: int) -> Access:
        """``read``, with a refusal as a result instead of an exception."""
        try:
            return Access(True, self.read(gaddr, length))
        except SecureStorageAccess as e:
            return Access(False, code=e.code, teid=e.teid, message=str(e))

    def try_write(self, gaddr: int, data: bytes) -> Access:
        """``write``, with a refusal as a result instead of an exception."""
        try:
            self.write(gaddr, data)
            return Access(True)
        except SecureStorageAccess as e:
            return Access(False, code=e.code, teid=e.teid, message=str(e))

    def page_state(self, gaddr: int) -> str:
        """What the host can tell of a guest page: ``"host"`` (accessible), ``"shared"`` (accessible, shared
        by the secure guest), ``"secure"`` (a host access takes PGM 0x3D)."""
        addr = self.frame(gaddr)
        host = self._vm.hv.host
        if not host.accessible(addr):
            return "secure"
        return "shared" if host.shared(addr) else "host"

    def pages(self, state: str) -> list[int]:
        """Guest pages in ``state`` (see ``page_state``), lowest first."""
        return [g for g in range(0, self._vm.memory_size, PAGE_SIZE) if self.page_state(g) == state]

    # -- the mapping the host owns -----------------------------------------------------------------------

    def _pte(self, gaddr: int) -> int:
        pv = self._pv()
        host = self._vm.hv.host
        st = pv.asce & ~0xFFF
        ste = struct.unpack(">Q", host.read(st + (gaddr >> 20) * 8, 8))[0]
        return (ste & ~0x7FF) + ((gaddr >> 12) & 0xFF) * 8

    def remap(self, gaddr: int, host_addr: int) -> int:
        """Point the guest page at another host frame in the page tables the hypervisor gave the
        Ultravisor, and purge the vCPUs' TLBs (IPTE); returns the frame it mapped before."""
        old = self.frame(gaddr & ~0xFFF)
        self._vm.hv.host.write(self._pte(gaddr), struct.pack(">Q", host_addr & ~0xFFF))
        self._pv().purge_tlb()
        return old


def _pages(addr: int, length: int) -> Iterator[tuple[int, int]]:
    end = addr + length
    while addr < end:
        n = min(end, (addr | 0xFFF) + 1) - addr
        yield addr, n
        addr += n

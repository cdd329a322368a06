"""The machine's hardware as a hypervisor gets it: CPUs made on the storage, owner-change batches, the host's
checked view of storage, and checked windows on host storage for records the hardware uses in place;
never the storage object (``PhysicalMemory``) itself."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from emulator.hw.memory import HostSpan, HostView, PhysicalMemory

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.hw.tod import TodClock


class Hardware:
    """What the composition root (the machine) hands a hypervisor. Every storage access it offers is the
    host's, checked against the owner tags (``HostView``); the hypervisor's CPUs are made here on the
    machine's storage, as hardware, and their accesses are checked by their own access path.

    Args:
        memory: the machine's storage (kept here, not handed out).
    """

    __slots__ = ("_memory", "host", "size")

    def __init__(self, memory: PhysicalMemory) -> None:
        self._memory = memory
        #: the host's view of storage: every access checked like a host CPU's (PGM 0x3D on a secure frame)
        self.host: HostView = memory.host_view()
        self.size: int = memory.size

    def new_cpu(self, address: int, clock: TodClock, facilities: bytes, cpuid: int) -> Cpu:
        """A new CPU on the machine's storage (a hardware CPU the hypervisor runs SIE on)."""
        from emulator.hw.cpu import Cpu

        return Cpu(self._memory, address, clock, facilities, cpuid)

    def owner_batch(self) -> AbstractContextManager[None]:
        """``PhysicalMemory.owner_batch``: the CPUs flush their TLBs once for a loop of page commands."""
        return self._memory.owner_batch()

    def storage_address(self, addr: int, length: int) -> int:
        """The process address of host storage at absolute ``addr``, for a record the hardware reads in place
        (the SIE page): the range must be host storage now (``SecureStorageAccess`` otherwise)."""
        self.host.check(addr, length, True)
        return self._memory.address + addr

    def span(self, addr: int, length: int) -> HostSpan:
        """A window on host storage that checks the owner tags at every access (the SIDA the SIE engine
        fills and reads): unlike a memoryview it cannot outlive a change of the frames' owner."""
        return HostSpan(self.host, addr, length)

"""The machine's hardware as a hypervisor gets it: CPUs made on the storage, owner-change batches, the host's
checked view of storage, and checked windows on host storage for records the hardware uses in place;
never the storage object (``PhysicalMemory``) itself."""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from emulator.errors import HwError
from emulator.hw import seal
from emulator.hw.cpu_handle import CpuHandle
from emulator.hw.host_view import HostSpan, HostView
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sie import SiePage

if TYPE_CHECKING:
    from emulator.hw.tod import TodClock

_C = TypeVar("_C", bound=ctypes.Structure)
#: the records the hardware reads and writes in place in host storage (``Hardware.in_place``)
IN_PLACE: frozenset[type] = frozenset({SiePage})


class Hardware:
    """What the composition root (the machine) hands a hypervisor. Every storage access it offers is the
    host's, checked against the owner tags (``HostView``); the hypervisor's CPUs are made here on the
    machine's storage, as hardware, and their accesses are checked by their own access path.

    Sealed like ``HostView``: the storage is held by the methods' closures only, never as an attribute.

    Args:
        memory: the machine's storage (kept in the closures, not handed out).
    """

    __slots__ = ("host", "size", "new_cpu", "owner_batch", "in_place", "span")

    def __init__(self, memory: PhysicalMemory) -> None:
        #: the host's view of storage: every access checked like a host CPU's (PGM 0x3D on a secure frame)
        self.host: HostView = memory.host_view()
        self.size: int = memory.size
        host = self.host

        def new_cpu(address: int, clock: TodClock, facilities: bytes, cpuid: int) -> CpuHandle:
            """A new CPU on the machine's storage (a hardware CPU the hypervisor runs SIE on), as the
            hypervisor holds it: a ``CpuHandle`` (the guest's register file, the CPU's checked accesses)."""
            from emulator.hw.cpu import Cpu

            return CpuHandle(Cpu(memory, address, clock, facilities, cpuid))

        def owner_batch() -> AbstractContextManager[None]:
            """``PhysicalMemory.owner_batch``: the CPUs flush their TLBs once for a loop of page commands
            (a context that holds the storage's batch in closures: a generator's context manager keeps its
            arguments, the storage object, as attributes)."""
            batch = memory.owner_batch()
            # (the exit without the exception: it only ends the batch, and the host's exception and its
            # traceback are never handed inside)
            enter, exit_ = (lambda: batch.__enter__()), (lambda: batch.__exit__(None, None, None))
            return _Batch(seal.gate(enter), seal.gate(exit_))

        def in_place(addr: int, ctype: type[_C]) -> _C:
            """A ``ctype`` structure over host storage at absolute ``addr``, for a record the hardware reads
            and writes in place (the SIE page). The range must be host storage now (``SecureStorageAccess``
            otherwise), and it stays host storage while the structure (or any part of it) lives: the
            Ultravisor refuses to make its frames secure or its own (``PhysicalMemory.pin_in_place``), so the
            unchecked window can never show a secure byte. Before, only the check at creation guarded it:
            a normal VM's SIE page imported as a secure guest's page showed the plaintext in its fields.
            ``ctype`` is one of the hardware's records (``IN_PLACE``): a class of the host's own would have
            its ``from_address`` run here, with the storage in this frame."""
            if ctype not in IN_PLACE:
                name = getattr(ctype, "__name__", ctype)
                raise HwError(f"{name!s} is no record the hardware uses in place")
            length = ctypes.sizeof(ctype)
            memory.pin_in_place(addr, length)
            obj = ctype.from_address(memory.address + addr)
            weakref.finalize(obj, memory.unpin_in_place, addr, length)
            return obj

        def span(addr: int, length: int) -> HostSpan:
            """A window on host storage that checks the owner tags at every access (the SIDA the SIE engine
            fills and reads): unlike a memoryview it cannot outlive a change of the frames' owner."""
            return HostSpan(host, addr, length)

        # gates (``seal``): an exception leaves them without these frames (their locals are the storage)
        self.new_cpu, self.owner_batch = seal.gate(new_cpu), seal.gate(owner_batch)
        self.span = seal.gate(span)
        self.in_place = seal.gate(in_place, refused=seal.notify_refusal(memory.secure_access_listeners))


class _Batch:
    """A context whose entry and exit are closures (``Hardware.owner_batch``)."""

    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Callable[[], None], exit_: Callable[[], object]) -> None:
        self._enter, self._exit = enter, exit_

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        self._exit()

"""How callers reach the Ultravisor: the caller, the control-block protocols, the host's block, the event.

A CPU that traps UVC names its caller (``UvCaller``) and builds a ``ControlBlock`` over the UVCB address as
its translation says; a host CPU with DAT off uses ``AbsoluteControlBlock``. Every completed call is told to
the event sinks as a ``UvEvent``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from emulator.errors import HwError, ProgramException, SecureStorageAccess
from emulator.hw import dat
from emulator.hw.host_view import HostView
from emulator.hw.memory import PAGE_SIZE
from emulator.hw.seal import SealedLog
from firmware import uv_blocks as B

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


PGM_SECURE_STORAGE_ACCESS: Final = 0x3D
PGM_NON_SECURE_STORAGE_ACCESS: Final = 0x3E
PGM_SECURE_STORAGE_VIOLATION: Final = 0x3F


# -- the contract with the CPU model ---------------------------------------------------------------------


@dataclass(frozen=True)
class UvCaller:
    """Who executes the UVC.

    Attributes:
        kind: ``"host"`` (the LPAR hypervisor) or ``"guest"`` (a secure guest under SIE).
        config_handle: the secure configuration of a guest caller.
        cpu_handle: the secure CPU of a guest caller.
        other_cpus_running: for Init's "more than one CPU running" check (host caller).
    """

    kind: Literal["host", "guest"]
    config_handle: int | None = None
    cpu_handle: int | None = None
    other_cpus_running: bool = False


@runtime_checkable
class ControlBlock(Protocol):
    """The UVC's control block, addressed through the caller's translation."""

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes; raises ``emulator.errors.ProgramException(code, teid)``."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes; same exceptions; a failing access changes nothing."""
        ...


@runtime_checkable
class TranslatingControlBlock(ControlBlock, Protocol):
    """A control block that can also translate addresses found inside it (home space, as the caller's CPU).

    Optional: the UV uses ``translate`` when the block has it, and treats addresses as absolute otherwise
    (a host caller with DAT off).
    """

    def translate(self, vaddr: int, write: bool) -> int:
        """Host absolute address of the virtual address ``vaddr``; raises ``ProgramException`` on failure."""
        ...


class AbsoluteControlBlock:
    """A control block at an absolute address, accessed the way a host CPU with DAT off accesses it.

    Every access goes through a ``HostView``: a block in secure or donated storage raises PGM 0x3D, a block
    beyond memory PGM 0x05 (addressing), and nothing is read or stored.

    Args:
        memory_view: the host view of absolute storage.
        addr: absolute address of the UVCB.
        window: ``window(addr, length)``, the block's bytes in storage after the host's checks (firmware's:
            ``PhysicalMemory.checked_window``, given by the Ultravisor's gate); None: a copy read through
            the host view.
    """

    def __init__(self, memory_view: HostView, addr: int,
                 window: Callable[[int, int], memoryview] | None = None) -> None:  # fmt: skip
        self.view = memory_view
        self.addr = addr
        self._window = memory_view.read if window is None else window

    def _pgm(self, e: SecureStorageAccess | HwError, offset: int) -> ProgramException:
        """The program exception a host CPU gets for a refused access at ``offset`` into the block."""
        if isinstance(e, SecureStorageAccess):
            return ProgramException(PGM_SECURE_STORAGE_ACCESS, e.teid, why=str(e))
        return ProgramException(
            dat.PGM_ADDRESSING, why=f"UVCB byte at {self.addr + offset:#x} is beyond memory"
        )

    # Every per-page UVC goes through these: plain try/except, no closure per access.

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes (PGM 0x3D / 0x05 as a host CPU would get them)."""
        try:
            return self.view.read(self.addr + offset, length)
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, offset) from None

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes; all pages are checked before anything is stored."""
        try:
            self.view.write(self.addr + offset, data)
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, offset) from None

    def window(self, length: int) -> memoryview | bytes:
        """The first ``length`` bytes of the block in storage (read-only), after the fetch and store checks
        of all of them (same exceptions as ``read``/``write``)."""
        try:
            return self._window(self.addr, length)  # type: ignore[return-value]
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, 0) from None

    def frame_window(self) -> memoryview | bytes:
        """``window(8)`` (the header), extended to the end of the header's 4 KiB frame: the checks of the
        header decide for the whole frame (one owner, and memory ends on a frame boundary)."""
        addr = self.addr
        n = PAGE_SIZE - (addr & 0xFFF)
        try:  # ``window``, inline: every UVC of the hypervisor's reads its header this way
            return self._window(addr, n if n >= 8 else 8)  # type: ignore[return-value]
        except (SecureStorageAccess, HwError) as e:
            raise self._pgm(e, 0) from None

    def translate(self, vaddr: int, write: bool) -> int:
        """DAT off: addresses inside the block are absolute."""
        return vaddr


@dataclass(frozen=True)
class UvEvent:
    """One UVC as the Ultravisor's event sinks receive it, after rc/rrc and the outputs were stored.

    Attributes:
        seq: the call's number in this Ultravisor's life (``Ultravisor.calls`` when it was made).
        code: the command code from the block's header; ``name`` its ``firmware.uv_codes`` name ("" when
            unknown).
        caller: who issued it.
        cc, rc, rrc: the condition code and the return codes stored into the block (an injected cc stores
            nothing: rc and rrc are 0 and ``injected`` is True).
        layout: the ``firmware.uv_blocks`` record of the stored block, None when only rc/rrc were stored
            (an early refusal: unknown command, wrong length, not initialised).
        block: the block's bytes as stored (b"" with ``layout`` None).
    """

    seq: int
    code: int
    name: str
    caller: UvCaller
    cc: int
    rc: int
    rrc: int
    layout: Any = None
    block: bytes = b""
    injected: bool = False

    def fields(self) -> tuple[tuple[str, int | tuple[int, ...]], ...]:
        """The block's fields in layout order (header and reserved fields left out), as the UV stored them."""
        if self.layout is None:
            return ()
        blk = B.parse(self.layout, self.block)
        out: list[tuple[str, int | tuple[int, ...]]] = []
        for name, _ in self.layout._fields_:  # noqa: SLF001 - the record's declared fields
            if name == "header" or name.startswith(("res", "reserved")):
                continue
            value = getattr(blk, name)
            if isinstance(value, ctypes.Array):  # an array of arrays (Query Keys' hashes): each one number
                value = tuple(int.from_bytes(bytes(v), "big") if isinstance(v, ctypes.Array) else v
                              for v in value)  # fmt: skip
            if isinstance(value, (int, tuple)):
                out.append((name, value))
        return tuple(out)


#: ``sink(event)``, called on the thread that issued the UVC.
UvEventSink = Callable[[UvEvent], None]

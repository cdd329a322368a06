"""The storage access rules: may this accessor fetch or store an absolute frame, and the architected result.

Every access a CPU makes on behalf of the host (explicit operands, and the implicit ones: DAT table
entries, the prefix area with the interruption old/new PSWs, store status, SCCBs, DIAG and IPL blocks,
PFMF and TEST BLOCK, the UVC control block) and every access of host-side Python (``HostView``) is decided
here, by one rule (``secure-execution.md`` section 6, ``docs/security.md``):

* an *accessor* is the host (``HOST``: a host CPU, a normal SIE guest, host Python) or a secure
  configuration (its owner tag, for the hardware CPU while it runs that secure guest);
* a frame may be touched by the host if it is host-owned or shared by its secure guest, and by a secure
  configuration also if it carries that configuration's tag; Ultravisor-donated frames by nobody here
  (the Ultravisor's own accesses are firmware accesses, ``PhysicalMemory.read/write``).

A refusal has an architected result, chosen by the caller's path and named here so that every path states
which one it gives:

* ``secure_storage_exception``: program interruption 0x3D (secure-storage access) with the
  translation-exception identification of the failing page: an operand, a DAT table entry (the TEID
  names the address being translated), the SCCB, the IPL block, PFMF, TEST BLOCK;
* ``prefix_refused``: SET PREFIX (and SIGP set prefix) onto a secure frame is refused with PGM 0x3D
  (the SIGP order with status "invalid parameter"): a CPU's prefix area is never secure storage;
* ``prefix_check_stop``: an interruption whose prefix area became secure after the fact cannot store
  its old PSW or fetch its new one: the CPU enters the check-stop state, with a reason that shows no
  byte of storage;
* ``store_refused``: a store the architecture makes on another CPU's behalf (SIGP store status at
  address, store additional status) is not made; the order ends with status "invalid parameter".

The TLB fill writes the host rule out inline (``Cpu.translate``: one comparison on the fast path); a
property test checks it decides as ``may_access``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException

if TYPE_CHECKING:
    from emulator.hw.memory import PhysicalMemory

__all__ = [
    "HOST",
    "PGM_SECURE_STORAGE_ACCESS",
    "may_access",
    "refused_address",
    "secure_teid",
    "secure_storage_exception",
    "check",
    "prefix_refused",
    "prefix_check_stop",
    "store_refused",
]

#: The accessor tag of the host: host CPUs, normal SIE guests, host-side Python.
HOST: Final = None
#: Program-interruption code of a non-secure access to secure storage.
PGM_SECURE_STORAGE_ACCESS: Final = 0x3D
_OWNER_HOST: Final = 0  # memory.OWNER_HOST (memory imports this module)
_PAGE_SHIFT: Final = 12
#: Ranges of more frames than this first compare all their owner tags with zero at once.
_WIDE: Final = 16


def may_access(mem: PhysicalMemory, frame: int, tag: int | None = HOST) -> bool:
    """True if the accessor (``HOST`` or a secure configuration's owner tag) may fetch and store the frame.

    Fetch and store are decided alike: secure storage refuses a non-secure accessor both.
    """
    owner = mem.owner[frame]
    return owner == _OWNER_HOST or bool(mem.shared[frame]) or (tag is not None and owner == tag)


def refused_address(mem: PhysicalMemory, addr: int, length: int, tag: int | None = HOST) -> int | None:
    """The first absolute address of ``[addr, addr+length)`` in a frame the accessor may not touch, or None.

    The range must lie inside memory (callers check it first: addressing comes before this rule).
    """
    if length <= 0 or (not mem.non_host_frames):
        return None
    first, last = addr >> _PAGE_SHIFT, (addr + length - 1) >> _PAGE_SHIFT
    if last - first >= _WIDE:
        tags = memoryview(mem.owner)[first : last + 1].cast("B")
        if tags == bytes(len(tags)):  # every frame host-owned (an image's load, a VM's teardown): in C
            return None
    for frame in range(first, last + 1):
        if not may_access(mem, frame, tag):
            return max(addr, frame << _PAGE_SHIFT)
    return None


def secure_teid(addr: int, write: bool, asid: int = 0) -> int:
    """The translation-exception identification stored with PGM 0x3D: the page of ``addr`` (the virtual
    address for a DAT access, else the real or absolute one), bit 61, the fetch/store indication (0x800 /
    0x400) and the address-space identifier (as ``SecureStorageAccess`` and the TLB fill store it)."""
    return (addr & ~0xFFF & 0xFFFFFFFFFFFFFFFF) | 0x4 | (0x400 if write else 0x800) | asid


def secure_storage_exception(addr: int, write: bool, asid: int = 0, why: str = "") -> ProgramException:
    """PGM 0x3D for an access whose TEID names ``addr`` (see ``secure_teid``)."""
    return ProgramException(
        PGM_SECURE_STORAGE_ACCESS,
        secure_teid(addr, write, asid),
        why=why or f"non-secure {'store' if write else 'fetch'} at {addr:#x} hits secure storage",
    )


def check(
    mem: PhysicalMemory,
    absolute: int,
    length: int,
    write: bool,
    tag: int | None = HOST,
    teid_addr: int | None = None,
    asid: int = 0,
    what: str = "access",
) -> None:
    """Raise PGM 0x3D unless the accessor may touch every frame of ``[absolute, absolute+length)``.

    ``teid_addr``: the address the TEID names (the real or virtual address the program used; default
    the absolute one). Nothing is accessed: callers check the whole range before they fetch or store.
    """
    bad = refused_address(mem, absolute, length, tag)
    if bad is not None:
        at = bad if teid_addr is None else teid_addr + (bad - absolute)
        kind = "store" if write else "fetch"
        why = f"{what}: {kind} at absolute {bad:#x} hits secure storage"
        raise secure_storage_exception(at, write, asid, why)


def prefix_refused(mem: PhysicalMemory, page_abs: int, tag: int | None = HOST) -> bool:
    """True if the 4 KiB page at absolute ``page_abs`` may not be one of this accessor's prefix pages:
    SET PREFIX onto it is refused."""
    return not may_access(mem, page_abs >> _PAGE_SHIFT, tag)


def prefix_check_stop(prefix_abs: int) -> str:
    """The check-stop reason of an interruption whose prefix area is secure storage (no storage bytes)."""
    return (
        f"interruption not delivered: the prefix area at absolute {prefix_abs:#x} is secure storage"
        " (the old PSW cannot be stored nor the new PSW fetched)"
    )


def store_refused(mem: PhysicalMemory, absolute: int, length: int, tag: int | None = HOST) -> bool:
    """True if a store made on another CPU's behalf (SIGP store status) may not be made at all."""
    if absolute < 0 or absolute + length > mem.size:
        return True
    return refused_address(mem, absolute, length, tag) is not None

"""Views that lower layers plug into the console: page map, UV-call log, SIE interceptions, secure CPUs.

The console never reaches into the Ultravisor or the hypervisor. Whatever they can tell it arrives through
these protocols, found with ``discover(machine)``: a machine (or the hypervisor behind it) that has more to
show implements ``console_providers()`` and returns a ``Providers``-like mapping. Without one, the console
still has the hardware's own page map: the per-frame owner tags and shared flags of ``PhysicalMemory``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from emulator.hw.memory import OWNER_HOST, OWNER_UV, PAGE_SHIFT

if TYPE_CHECKING:
    from emulator.hw.memory import PhysicalMemory

__all__ = [
    "PageInfo",
    "PageMapProvider",
    "OwnerTagPageMap",
    "UvCall",
    "UvCallLogProvider",
    "Intercept",
    "InterceptProvider",
    "Providers",
    "discover",
    "Unsubscribe",
]

Unsubscribe = Callable[[], None]

#: Page states the console knows (``secure-execution.md`` 6.1; "exported" comes from the Ultravisor).
PAGE_STATES = ("non-secure", "secure", "shared", "donated", "exported")


@dataclass(frozen=True)
class PageInfo:
    """What is known about one 4 KiB host frame."""

    frame: int
    state: str  # one of PAGE_STATES
    owner: int  # owner tag: 0 host, 1 Ultravisor, >= 2 a secure configuration
    shared: bool = False
    guest_abs: int | None = None  # guest absolute address, when a provider knows the mapping
    detail: str = ""  # provider-specific metadata (export counter, digest, ...)

    @property
    def host_abs(self) -> int:
        """Host absolute address of the frame."""
        return self.frame << PAGE_SHIFT


@runtime_checkable
class PageMapProvider(Protocol):
    """A page map: every frame's state (only frames that are not plain host storage are listed)."""

    def pages(self) -> Iterable[PageInfo]:
        """Frames whose state is not plain non-secure host storage, in frame order."""
        ...

    def page(self, frame: int) -> PageInfo:
        """The state of one frame."""
        ...


class OwnerTagPageMap:
    """The hardware's page map: owner tags and shared flags of ``PhysicalMemory`` (no UV metadata)."""

    def __init__(self, memory: PhysicalMemory) -> None:
        self._mem = memory

    def page(self, frame: int) -> PageInfo:
        """The state of one frame from its owner tag."""
        mem = self._mem
        owner = mem.owner[frame]
        shared = bool(mem.shared[frame])
        if owner == OWNER_HOST:
            state = "non-secure"
        elif owner == OWNER_UV:
            state = "donated"
        else:
            state = "shared" if shared else "secure"
        return PageInfo(frame, state, owner, shared)

    def pages(self) -> Iterator[PageInfo]:
        """Frames that are not host-owned, in frame order (skips the scan when there are none)."""
        mem = self._mem
        if mem.non_host_frames == 0:
            return
        for frame, owner in enumerate(mem.owner):
            if owner != OWNER_HOST:
                yield self.page(frame)


@dataclass(frozen=True)
class UvCall:
    """One logged Ultravisor call, decoded by whoever logged it."""

    seq: int
    caller: str  # "host", or "guest <config>"
    cmd: int
    cc: int
    rc: int
    rrc: int
    fields: tuple[tuple[str, str], ...] = ()  # decoded UVCB fields, in layout order
    cpu: int | None = None


@runtime_checkable
class UvCallLogProvider(Protocol):
    """The Ultravisor's call log."""

    def calls(self) -> Sequence[UvCall]:
        """Every call so far, oldest first."""
        ...

    def subscribe(self, callback: Callable[[UvCall], None]) -> Unsubscribe:
        """Call ``callback`` after every UV call completes (from the thread that made the call)."""
        ...


@dataclass(frozen=True)
class Intercept:
    """A SIE exit as the hypervisor saw it."""

    cpu: int
    code: int
    detail: str = ""
    secure: bool = False


@runtime_checkable
class InterceptProvider(Protocol):
    """The hypervisor's stream of SIE interceptions."""

    def subscribe(self, callback: Callable[[Intercept], None]) -> Unsubscribe:
        """Call ``callback`` on every SIE interception (from the thread running the vCPU)."""
        ...


@dataclass
class Providers:
    """The views the console has for one machine."""

    page_map: PageMapProvider
    uv_log: UvCallLogProvider | None = None
    intercepts: InterceptProvider | None = None
    #: Human-readable names of what was found, for ``info``.
    sources: dict[str, str] = field(default_factory=dict)


def discover(machine: object) -> Providers:
    """The providers a machine offers through ``console_providers()``, plus the owner-tag page map."""
    memory = machine.memory  # type: ignore[attr-defined]
    found: dict[str, object] = {}
    hook = getattr(machine, "console_providers", None)
    if callable(hook):
        found = dict(hook())
    page_map = found.get("page_map")
    p = Providers(page_map if isinstance(page_map, PageMapProvider) else OwnerTagPageMap(memory))
    p.sources["page_map"] = type(p.page_map).__name__
    uv_log = found.get("uv_log")
    if isinstance(uv_log, UvCallLogProvider):
        p.uv_log = uv_log
        p.sources["uv_log"] = type(uv_log).__name__
    icpt = found.get("intercepts")
    if isinstance(icpt, InterceptProvider):
        p.intercepts = icpt
        p.sources["intercepts"] = type(icpt).__name__
    return p

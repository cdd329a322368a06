"""DIAGNOSE functions every owner of a CPU answers alike: 0x10 (release pages), 0x288 (watchdog), 0x308's
checks.

These are hypervisor calls (KVM's ``arch/s390/kvm/diag.c``, QEMU's ``target/s390x/diag.c`` and
``hw/watchdog/wdt_diag288.c``); the owner of the CPU (the machine for ``zuv run``, the hypervisor for its
guests) decodes the DIAG and calls these. What the watchdog does when it expires (restart the CPU, reset
the machine, end the run) is the owner's business: this module keeps the timer and says when and which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from emulator.errors import ProgramException
from emulator.hw.memory import OWNER_HOST, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from emulator.hw.tod import TOD_PER_US

__all__ = [
    "release_ranges", "release_pages", "Diag288", "WATCHDOG_ACTIONS", "WATCHDOG_MODELS", "diag308_check",
    "DIAG308_BLOCK_SUBCODES", "IPL_BLOCK_SIZE", "diag500_function", "DIAG500_CCW_NOTIFY",
]  # fmt: skip

PGM_ADDRESSING: Final = 0x05
PGM_SPECIFICATION: Final = 0x06

#: What an expired watchdog does, by QEMU's ``--watchdog-action`` names: ``reset`` re-IPLs the machine
#: (QEMU's default), ``inject-nmi`` makes a restart interruption on CPU 0 (QEMU's NMI on s390x),
#: ``shutdown`` and ``poweroff`` end the run, ``pause`` halts it, ``debug`` and ``none`` do nothing.
WATCHDOG_ACTIONS: Final = ("reset", "inject-nmi", "shutdown", "poweroff", "pause", "debug", "none")
#: The watchdog devices a machine can have (QEMU ``-device diag288``).
WATCHDOG_MODELS: Final = ("diag288",)

# DIAG 0x288 function codes (R1) and the one action code QEMU/KVM accept (R3)
WDT_INIT: Final = 0
WDT_CHANGE: Final = 1
WDT_CANCEL: Final = 2
WDT_ACTION_RESTART: Final = 0
#: the shortest timeout a guest may set, in seconds
WDT_MIN_TIMEOUT: Final = 15


def release_ranges(start: int, end_page: int, prefix: int) -> list[tuple[int, int]]:
    """DIAGNOSE 0x10's absolute ranges [lo, hi) for the guest real pages ``start`` to ``end_page`` (the last
    page's address), checked as KVM checks them (``diag_release_pages``): both addresses 4 KiB aligned,
    start not above the last page, and start above the low 8 KiB; anything else is a specification
    exception. The prefix area's real pages are absolute 0 and 1, which go too, while the absolute pages
    behind real 0-1 stay."""
    end = (end_page + PAGE_SIZE) & 0xFFFFFFFFFFFFFFFF
    if start & 0xFFF or end & 0xFFF or start >= end or start < 2 * PAGE_SIZE:
        raise ProgramException(
            PGM_SPECIFICATION, why=f"DIAG 0x10: bad page range {start:#x}-{end_page:#x} (aligned, from 8 KiB)"
        )
    if end <= prefix or start >= prefix + 2 * PAGE_SIZE:
        return [(start, end)]
    ranges = [(start, prefix)]
    if start <= prefix:
        ranges.append((0, PAGE_SIZE))
    if end > prefix + PAGE_SIZE:
        ranges.append((PAGE_SIZE, 2 * PAGE_SIZE))
    ranges.append((prefix + 2 * PAGE_SIZE, end))
    return [(lo, hi) for lo, hi in ranges if lo < hi]


#: DIAGNOSE 0x500's function codes (GR1): 0 the s390-virtio transport's notification, 3 virtio-ccw's
DIAG500_NOTIFY: Final = 0
DIAG500_CCW_NOTIFY: Final = 3
_EINVAL: Final = -22 & 0xFFFFFFFFFFFFFFFF


def diag500_function(function: int, gr2: int, storage_size: int) -> int | None:
    """DIAGNOSE 0x500's function code (GR1) as QEMU's ``handle_diag_500`` takes it, for the machine and the
    hypervisor (normal and secure guests) alike: 3 (virtio-ccw notification) gives None, the caller
    notifies; 0 (the s390-virtio transport's notification, which no device here uses) gives GR2's result:
    0 for an address in storage (QEMU's early-printk answer), -EINVAL beyond; any other function code is a
    specification exception (KVM leaves it to QEMU, which raises it).

    Raises:
        ProgramException: 0x06 for a function code other than 0 and 3.
    """
    if function == DIAG500_CCW_NOTIFY:
        return None
    if function == DIAG500_NOTIFY:
        return 0 if gr2 < storage_size else _EINVAL
    raise ProgramException(PGM_SPECIFICATION, why=f"DIAG 0x500 function code {function:#x} is not supported")


#: DIAGNOSE 0x308's subcodes (QEMU's ``DIAG308_*``): 0 modified clear, 1 load normal, 3 load clear, 5 set and
#: 6 store the IPL parameter block, 8 set and 9 store the PV one, 10 enter secure mode
DIAG308_SUBCODES: Final = frozenset({0, 1, 3, 5, 6, 8, 9, 10})
#: the subcodes whose R1 names an IPL parameter block: set (5, 8) reads it, store (6, 9) writes it
DIAG308_BLOCK_SUBCODES: Final = frozenset({5, 6, 8, 9})
#: the IPL parameter block's size as the checks take it: one 4 KiB page (QEMU's ``sizeof(IplParameterBlock)``)
IPL_BLOCK_SIZE: Final = 0x1000


def diag308_check(subcode: int, r1: int, addr: int, storage_size: int, unpack: bool) -> None:
    """DIAGNOSE 0x308's operand checks, in QEMU's order (``handle_diag_308``, ``diag308_parm_check``), for
    every owner that answers it: the machine (``zuv run``), the hypervisor for a normal guest and the
    Ultravisor for a secure one (which checks before the host sees anything, and so never stores an IPL
    block the host hands back across a page it was not given).

    A subcode beyond 16 bits, a secure-IPL subcode (8 and up) without the unpack facility and an unknown
    subcode (2, 4, 7, 11, ...) are specification exceptions; for the block subcodes (5, 6, 8, 9) an odd R1
    or an address ``addr`` (R1's contents) not on a 4 KiB boundary is a specification exception, and a
    block not wholly inside the ``storage_size`` bytes of storage an addressing exception. The problem-state
    check (privileged operation) comes first, at the CPU's trap.

    Raises:
        ProgramException: 0x06 or 0x05 as above.
    """
    if subcode & ~0xFFFF or (subcode >= 8 and not unpack) or subcode not in DIAG308_SUBCODES:
        raise ProgramException(PGM_SPECIFICATION, why=f"DIAG 0x308 subcode {subcode:#x} is not supported")
    if subcode not in DIAG308_BLOCK_SUBCODES:
        return
    if r1 & 1 or addr & (IPL_BLOCK_SIZE - 1):
        raise ProgramException(
            PGM_SPECIFICATION,
            why=f"DIAG 0x308 subcode {subcode}: odd R1 or block {addr:#x} not 4 KiB aligned",
        )
    if addr + IPL_BLOCK_SIZE > storage_size:
        raise ProgramException(PGM_ADDRESSING, why=f"DIAG 0x308: IPL block {addr:#x} beyond storage")


def release_pages(memory: PhysicalMemory, start: int, end_page: int, prefix: int) -> list[tuple[int, int]]:
    """DIAGNOSE 0x10 on a machine's own storage: release the guest real pages ``start`` to ``end_page``
    (``release_ranges``). A released page reads as zeros afterwards (the host dropped it). Pages beyond
    memory are ignored, as are frames the host does not own (secure or donated storage stays with the
    Ultravisor). Storage keys stay.

    Returns the absolute ranges released (start, length).
    """
    done = []
    for lo, hi in release_ranges(start, end_page, prefix):
        hi = min(hi, memory.size)
        if lo >= hi:
            continue
        for a, n in _host_runs(memory, lo, hi):
            keys = bytes(memory.keys[a >> PAGE_SHIFT : (a + n) >> PAGE_SHIFT])
            memory.discard(a, n)
            memory.keys[a >> PAGE_SHIFT : (a + n) >> PAGE_SHIFT] = keys
            done.append((a, n))
    return done


def _host_runs(memory: PhysicalMemory, lo: int, hi: int) -> list[tuple[int, int]]:
    """The runs of host-owned, unshared frames in [lo, hi) as (address, length)."""
    first, last = lo >> PAGE_SHIFT, hi >> PAGE_SHIFT
    owner = memory.owner
    if owner[first:last].count(OWNER_HOST) == last - first:
        return [(lo, hi - lo)]
    runs, at = [], None
    for f in range(first, last):
        if owner[f] == OWNER_HOST:
            at = f if at is None else at
        elif at is not None:
            runs.append((at << PAGE_SHIFT, (f - at) << PAGE_SHIFT))
            at = None
    if at is not None:
        runs.append((at << PAGE_SHIFT, (last - at) << PAGE_SHIFT))
    return runs


@dataclass
class Diag288:
    """The DIAGNOSE 0x288 watchdog (QEMU's ``diag288`` device): a timer the guest arms, changes and cancels.

    ``deadline`` is the TOD value at which it expires (None: not running). ``action`` says what the owner
    does then (``WATCHDOG_ACTIONS``).
    """

    action: str = "reset"
    enabled: bool = False
    deadline: int | None = None
    #: how often it expired
    expiries: int = 0

    def __post_init__(self) -> None:
        if self.action not in WATCHDOG_ACTIONS:
            raise ValueError(f"watchdog action {self.action!r} is not one of {', '.join(WATCHDOG_ACTIONS)}")

    def call(self, r1: int, func: int, timeout: int, action: int, now: int) -> None:
        """DIAGNOSE 0x288 with R1 (its register number), R1's function code, R1+1's timeout in seconds and
        R3's action; ``now`` is the TOD clock. Every refusal is a specification exception, as in QEMU:
        an odd R1, an action other than restart (0), a timeout under 15 s (except to cancel), an unknown
        function, and a change or cancel of a watchdog that was never started."""
        if r1 & 1 or action != WDT_ACTION_RESTART:
            raise ProgramException(PGM_SPECIFICATION, why="DIAG 0x288: odd R1 or unsupported action")
        if func != WDT_CANCEL and timeout < WDT_MIN_TIMEOUT:
            raise ProgramException(PGM_SPECIFICATION, why=f"DIAG 0x288: timeout {timeout} s is under 15 s")
        if func == WDT_INIT:
            self.enabled = True
        if func in (WDT_INIT, WDT_CHANGE):
            if not self.enabled:
                raise ProgramException(PGM_SPECIFICATION, why="DIAG 0x288: change of a watchdog not started")
            self.deadline = (now + timeout * 1_000_000 * TOD_PER_US) & 0xFFFFFFFFFFFFFFFF
            return
        if func == WDT_CANCEL:
            if not self.enabled:
                raise ProgramException(PGM_SPECIFICATION, why="DIAG 0x288: cancel of a watchdog not started")
            self.enabled = False
            self.deadline = None
            return
        raise ProgramException(PGM_SPECIFICATION, why=f"DIAG 0x288: unknown function code {func:#x}")

    def expire(self, now: int) -> str | None:
        """The action to take if the timer has run out by ``now`` (then it is spent), else None.

        As QEMU's device, the watchdog is also disabled unless its action leaves the machine as it is
        (``debug``, ``none``, ``pause``)."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        self.expiries += 1
        if self.action not in ("debug", "none", "pause"):
            self.enabled = False
        return self.action

    def reset(self) -> None:
        """A machine reset stops the watchdog."""
        self.enabled = False
        self.deadline = None

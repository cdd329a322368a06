"""A CPU's one "needs attention" flag: whether its run loop must look at everything before it enters unicorn
again after a trapped instruction, or may go straight back in (``Cpu._run``'s lane).

The run loop's top checks a dozen things before each entry into unicorn (holds, a halt, the CPU's state,
pending interruptions, timers, the deadline), ~0.5 us of Python per trap. Nearly always none of them has
anything to do, so the loop reads them once, when it enters unicorn the full way, and sets ``_attn`` if any
is not clear (``_attention``); after that every event that could make one of them matter sets ``_attn`` as
it happens, and a trap emulated while ``_attn`` is clear goes back into unicorn after a few checks of what
the flag does not cover (the PSW's wait and fixed-point-overflow bits, an exit at the new PSW address, I/O
pending in the machine's channel subsystem).

What sets it: the pending external interruptions (``ext_pending`` and ``emergency_from`` are containers that
set it on every change, whoever makes it: a SIGP of another CPU, the SCLP's service signal, the SIE
engines), a restart, SIE's external- and I/O-interruption requests, a timer to arm (``timers_changed``:
SCKC, SPT, CR0's timer subclasses), a PSW that enables an interruption class or waits
(``Registers.set_psw``), a state change, every stop from another thread (``run_control``: a kick, a hold,
a halt, the watchdog), and any fill or interruption hook of a run. A flag set by another thread after the
loop cleared it stays set: the loop clears it before it reads the conditions, never after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from emulator.errors import HwError
from emulator.hw import seal
from emulator.hw.arch import CR0_CKC_SC, CR0_CPU_TIMER_SC, OPERATING, PSW_MASK_EXT

_CR0_TIMERS: Final = CR0_CKC_SC | CR0_CPU_TIMER_SC


def _raiser(cpu: Attention) -> Callable[[], None]:
    """A function that raises the CPU's flag, holding the CPU in its closure only: the containers are
    reachable from the host side (a normal vCPU's handle shows its pending interruptions), the CPU must not be
    (``docs/security.md``, "The host side's reach")."""

    def raise_attention() -> None:
        cpu._attn = True  # noqa: SLF001

    return raise_attention


class PendingInterruptions(dict[str, int]):
    """``Cpu.ext_pending``: a dict that raises its CPU's attention flag on every change. Its keys are plain
    strings and its values plain integers (``seal.plain``): the hypervisor adds to a normal guest's, and the
    CPU reads them in its run, so a key's ``__hash__`` or a value's ``__and__`` of the host's own would run
    with the CPU (and its storage) in the frame above (issue 18's third review)."""

    __slots__ = ("_raise",)

    def __init__(self, cpu: Attention) -> None:
        super().__init__()
        self._raise = _raiser(cpu)

    def __setitem__(self, key: str, value: int) -> None:
        if type(key) is not str or type(value) is not int:
            key, value = seal.plain(key), seal.plain(value)
            if type(key) is not str or type(value) is not int:
                raise HwError(f"a pending interruption is a name and an integer, not {key!r}: {value!r}")
        super().__setitem__(key, value)
        self._raise()  # the flag this container exists for

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._raise()

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        """``dict.pop``, raising the attention flag."""
        self._raise()
        return super().pop(key, *default)

    def setdefault(self, key: str, default: int = 0) -> int:  # type: ignore[override]
        """``dict.setdefault``, raising the attention flag."""
        if key not in self:
            self[key] = default
        self._raise()
        return self[key]

    def update(self, *args: Any, **kwargs: int) -> None:  # type: ignore[override]
        """``dict.update``, raising the attention flag (each item as ``__setitem__`` takes it)."""
        for k, v in dict(*args, **kwargs).items():
            self[k] = v
        self._raise()

    def clear(self) -> None:
        """Empty it, raising the attention flag."""
        super().clear()
        self._raise()


class PendingSignals(set[int]):
    """``Cpu.emergency_from``: a set that raises its CPU's attention flag on every change."""

    __slots__ = ("_raise",)

    def __init__(self, cpu: Attention) -> None:
        super().__init__()
        self._raise = _raiser(cpu)

    def add(self, value: int) -> None:
        """``set.add``, raising the attention flag."""
        super().add(value)
        self._raise()

    def discard(self, value: int) -> None:
        """``set.discard``, raising the attention flag."""
        super().discard(value)
        self._raise()

    def remove(self, value: int) -> None:
        """``set.remove``, raising the attention flag."""
        super().remove(value)
        self._raise()

    def update(self, *others: Iterable[int]) -> None:
        """``set.update``, raising the attention flag."""
        super().update(*others)
        self._raise()

    def clear(self) -> None:
        """Empty it, raising the attention flag."""
        super().clear()
        self._raise()


class Attention:
    """The flag and the CPU attributes whose every change raises it (a base class of ``Cpu``)."""

    _attn: bool
    _restart_pending: bool
    _ext_request: int
    _io_request: int
    _timers_changed: bool

    if TYPE_CHECKING:  # provided by Cpu
        _holds: int
        _halt: bool
        _state: str
        _q: memoryview | None
        _qc: int
        _ssm_native: dict[int, int]
        ext_pending: dict[str, int]
        emergency_from: set[int]

        def _quiet(self) -> bool: ...

    def _attention(self, mask: int) -> None:
        """Before a free run enters unicorn the full way: clear the attention flag (``attention``), then raise
        it again if anything the top of the run loop checks is not clear (``mask``: the PSW's, the timers
        count only with external interruptions enabled: enabling them raises it). Cleared first, so that
        another thread's event meanwhile keeps it raised."""
        self._attn = False
        if (
            self._holds
            or self._halt
            or self._state != OPERATING
            or self._restart_pending
            or self._ext_request
            or self._io_request
            or self._timers_changed
            or self.ext_pending
            or self.emergency_from
            or (mask & PSW_MASK_EXT and self._q[self._qc] & _CR0_TIMERS)  # type: ignore[index]
            or (self._ssm_native and not self._quiet())
        ):
            self._attn = True

    def _init_attention(self) -> None:
        self._attn = True
        self._restart_pending = False
        self._ext_request = 0
        self._io_request = 0
        self._timers_changed = False

    @property
    def restart_pending(self) -> bool:
        """A restart interruption is pending (SIGP RESTART)."""
        return self._restart_pending

    @restart_pending.setter
    def restart_pending(self, value: bool) -> None:
        self._restart_pending = value
        self._attn = True

    @property
    def ext_request(self) -> int:
        """SIE's external-interruption request (KVM's CPUSTAT_EXT_INT): CR0 subclass bits of interruptions
        the host holds for this CPU's guest; the run ends ("ext_request") once the PSW and CR0 enable one."""
        return self._ext_request

    @ext_request.setter
    def ext_request(self, value: int) -> None:
        self._ext_request = value
        self._attn = True

    @property
    def io_request(self) -> int:
        """The same for I/O interruptions: CR6 subclass bits; the run ends ("io_request") once PSW and CR6
        enable one."""
        return self._io_request

    @io_request.setter
    def io_request(self, value: int) -> None:
        self._io_request = value
        self._attn = True

    @property
    def timers_changed(self) -> bool:
        """SCKC, SPT or CR0's timer subclasses changed during a run: the run arms the watchdog for them, so
        the interruption comes when it is due, not at the caller's next deadline (none, in a free run)."""
        return self._timers_changed

    @timers_changed.setter
    def timers_changed(self, value: bool) -> None:
        self._timers_changed = value
        self._attn = True

"""A hardware CPU as the hypervisor running a normal guest on it holds it (``CpuHandle``): the guest's
register file and the accesses the CPU makes for it, checked by the CPU's own access path; never the CPU."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from emulator.errors import HwError
from emulator.hw import seal

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu

__all__ = ["CpuHandle", "hardware_of", "revoke"]

#: the hardware CPU behind each live handle, in the box its functions read (``hardware_of``, ``revoke``):
#: module-private, for the hardware and the machine's own code. Nothing of a handle is called to open it: a
#: handle's slots are the host's to overwrite (before, ``hardware_of`` called the handle's ``_open`` with a
#: module-private key, and a CpuHandle subclass, or a handle whose ``_open`` the host replaced, was handed the
#: key that opens every handle)
_HARDWARE: weakref.WeakKeyDictionary[CpuHandle, list[Any]] = weakref.WeakKeyDictionary()


class _Revoked:
    """What a revoked handle's functions find instead of the CPU: every use is refused."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise HwError("this CPU handle was given to the Ultravisor (PvSie.adopt): it opens no CPU any more")


_REVOKED = _Revoked()


@seal.admit
class CpuHandle:
    """A normal guest's hardware CPU as its hypervisor holds it (SIE shares a normal guest's register file
    with the host): registers, PSW, state, resets, pending interruptions, and storage accesses made by the
    CPU (``read_real``/``write_real``/``write_virtual``: prefixing, the guest mapping, DAT and the owner tags,
    PGM 0x3D on a secure frame). The ``Cpu`` (its storage object and unicorn engine) is held by the handle's
    closures only; the hardware (the SIE engine, SIGP, the SCLP) opens a handle with ``hardware_of``.
    """

    __slots__ = ("__weakref__", "address", "ext_pending", "gpr", "gprs", "set_gpr", "set_psw", "cr", "wrap",
                 "operand_address", "read_real", "write_real", "write_virtual", "program_interrupt",
                 "reset_initial", "reset_cpu", "reset_clear", "request_halt", "close", "next_timer_deadline",
                 "ext_deliverable", "set_breakpoints", "_get", "_set")  # fmt: skip

    def __init__(self, cpu: Cpu) -> None:
        # every function reaches the CPU through ``box``, which ``revoke`` empties: a handle given to the
        # Ultravisor (``PvSie.adopt``) opens nothing any more, nor does any function the host took from it
        box: list[Any] = [cpu]
        _HARDWARE[self] = box

        def get(name: str) -> Any:
            if name not in _READABLE:
                raise AttributeError(name)
            return getattr(box[0], name)

        def set_(name: str, value: Any) -> None:
            if name not in _WRITABLE:
                raise AttributeError(name)
            setattr(box[0], name, value)

        def set_psw(mask: int, addr: int) -> None:
            """Load the guest PSW into the CPU."""
            box[0].set_psw(mask, addr)

        def set_breakpoints(addrs: Iterable[int]) -> None:
            """The CPU's breakpoints (guest addresses of a normal guest)."""
            box[0].set_breakpoints(addrs)

        # the register file and the CPU's checked accesses: closures, so that no bound method's __self__ is
        # the CPU (each forwards its arguments unchanged), each a gate (``seal``): an exception leaves it
        # without the frames whose locals are the CPU
        fns: dict[str, Callable[..., Any]] = {
            "_get": get, "_set": set_, "set_psw": set_psw, "set_breakpoints": set_breakpoints,
            "gpr": lambda i: box[0].gpr(i),
            "gprs": lambda: box[0].gprs(),
            "set_gpr": lambda i, value: box[0].set_gpr(i, value),
            "cr": lambda i: box[0].cr(i),
            "wrap": lambda addr: box[0].wrap(addr),
            "operand_address": lambda b, d: box[0].operand_address(b, d),  # D(B): gpr and wrap in one (Insn)
            "read_real": lambda addr, length: box[0].read_real(addr, length),
            "write_real": lambda addr, data: box[0].write_real(addr, data),
            "write_virtual": lambda addr, data: box[0].write_virtual(addr, data),
            "program_interrupt": lambda *a, **k: box[0].program_interrupt(*a, **k),
            "reset_initial": lambda: box[0].reset_initial(),
            "reset_cpu": lambda: box[0].reset_cpu(),
            "reset_clear": lambda: box[0].reset_clear(),
            "request_halt": lambda: box[0].request_halt(),
            "close": lambda: box[0].close(),
            "next_timer_deadline": lambda: box[0].next_timer_deadline(),
            "ext_deliverable": lambda: box[0]._ext_deliverable(),  # noqa: SLF001 - the pending state, for SIE
        }  # fmt: skip
        for name, fn in fns.items():
            setattr(self, name, seal.gate(fn))
        self.address: int = cpu.address
        #: the external interruptions pending for the guest (the hypervisor's to add: a service signal)
        self.ext_pending: dict[str, int] = cpu.ext_pending

    @property
    def psw(self) -> tuple[int, int]:
        """The CPU's PSW (mask, address)."""
        return self._get("psw")  # type: ignore[no-any-return]

    @property
    def pc(self) -> int:
        """The PSW's instruction address."""
        return self._get("pc")  # type: ignore[no-any-return]

    @property
    def prefix(self) -> int:
        """The CPU's prefix."""
        return self._get("prefix")  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        """The CPU state (operating, stopped, check stop, ...)."""
        return self._get("state")  # type: ignore[no-any-return]

    @state.setter
    def state(self, value: str) -> None:
        self._set("state", value)

    @property
    def insn_count(self) -> int:
        """Instructions the CPU executed (exact in counted runs)."""
        return self._get("insn_count")  # type: ignore[no-any-return]

    @property
    def restart_pending(self) -> bool:
        """True while a restart interruption is pending (the host makes one pending: KVM_S390_RESTART)."""
        return self._get("restart_pending")  # type: ignore[no-any-return]

    @restart_pending.setter
    def restart_pending(self, value: bool) -> None:
        self._set("restart_pending", value)

    @property
    def guest_memory_size(self) -> int:
        """The guest's storage size (the CPU's SIE bound)."""
        return self._get("guest_memory_size")  # type: ignore[no-any-return]

    @guest_memory_size.setter
    def guest_memory_size(self, value: int) -> None:
        self._set("guest_memory_size", value)


_READABLE = frozenset({"psw", "pc", "prefix", "state", "insn_count", "restart_pending", "guest_memory_size"})
_WRITABLE = frozenset({"state", "guest_memory_size", "restart_pending"})


def hardware_of(cpu: CpuHandle | Cpu) -> Cpu:
    """The hardware CPU behind a handle (a ``Cpu`` is returned as it is): for the hardware's own code (the SIE
    engines, SIGP, the SCLP) and the machine's debug capability, never for the hypervisor. Anything else (a
    CpuHandle subclass or a look-alike the host made) is refused with ``HwError``: the hardware never runs, or
    loads a secure CPU's registers into, an object the host made."""
    from emulator.hw.cpu import Cpu

    if type(cpu) is Cpu:
        return cpu
    box = _HARDWARE.get(cpu) if type(cpu) is CpuHandle else None
    if box is None:
        raise HwError(f"not a CPU of this machine (or a handle given away): {type(cpu).__name__}")
    return box[0]  # type: ignore[no-any-return]


def revoke(handle: CpuHandle) -> None:
    """The handle (and every function taken from it) opens its CPU no more: the hardware CPU became the
    Ultravisor's (``PvSie.adopt``). Before, a hypervisor that kept the handle it adopted read the secure
    guest's registers with ``handle.gprs()`` and its storage with ``read_real`` (issue 18's third review)."""
    box = _HARDWARE.pop(handle, None)
    if box is not None:
        box[0] = _REVOKED


def group(handles: Iterable[CpuHandle | Cpu]) -> None:
    """The CPUs flush their TLBs together (a VM's vCPUs: ``Cpu.tlb_group``)."""
    cpus = [hardware_of(h) for h in handles]
    for c in cpus:
        c.tlb_group = cpus

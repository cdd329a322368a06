"""One vCPU of the console's secure machine: its registers as the hypervisor or the debug capability has them,
and the debugger hooks the console sets on the hardware CPU that runs it (while the console may reach it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from emulator.console.errors import ConsoleError
from emulator.hw.cpu import prefixed, wrap_address
from emulator.hw.cpu_handle import hardware_of

if TYPE_CHECKING:
    from emulator.console.secure import SecureMachine
    from emulator.hw.cpu import Cpu
    from emulator.hw.sie import SieExit
    from emulator.hypervisor.kvm import Vcpu

__all__ = ["VcpuCpu", "NEEDS_DEBUG", "quiet_exit"]

#: What a command that needs the owner's view answers without the machine's debug capability.
NEEDS_DEBUG: Final = ("that needs the machine's debug capability (the owner's view of the secure guest, an "
                      "emulator privilege): debug secure on, or zuv console --debug-secure")

#: The debugger hooks the console sets on a CPU (kept by ``VcpuCpu`` and placed again on the hardware CPU when
#: the vCPU changes hands at the secure IPL), with what a CPU the console may not reach shows for them.
_HOOK_DEFAULTS: Final[dict[str, Any]] = {"watch_frames": {}, "pgm_observer": None, "tlb_record": None}


#: the key of a vCPU's hardware CPU (``hardware``): module-private, the console's own door
_KEY: Final = object()


def _plain(value: Any, depth: int = 0) -> bool:
    """True for plain data (numbers, text, bytes, None, and small containers of them): what a vCPU hands out
    of its hardware CPU without the debug capability (no object that leads to storage or the engine)."""
    if value is None or isinstance(value, (int, float, str, bytes)):
        return True
    if depth < 3 and isinstance(value, (tuple, list, set, frozenset)):
        return all(_plain(x, depth + 1) for x in value)
    if depth < 3 and isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def hardware(cpu: VcpuCpu) -> Cpu:
    """The hardware CPU behind a console vCPU (the console's own code and tests: the machine's owner)."""
    return cpu._hardware(_KEY)  # noqa: SLF001


def quiet_exit(sie: SieExit) -> bool:
    """True when handling this SIE exit makes no Ultravisor call: no interception, no host program
    interruption (an import), no check stop (``PvVm.handle_exit``, ``Vm.handle_exit``)."""
    return not sie.icptcode and not sie.host_pgm and sie.reason != "check_stop"


def _no_hook(*_args: object, **_kwargs: object) -> None:
    """A debugger call on a secure CPU the console may not reach: nothing to do."""


class VcpuCpu:
    """One vCPU as the console sees it: the hardware CPU SIE runs it on, with the state the hypervisor
    records (stopped, disabled wait, check stop) and, for a secure vCPU, the Ultravisor's record of the
    secure CPU's registers (the hardware CPU holds them only while SIE runs the guest)."""

    def __init__(self, machine: SecureMachine, vcpu: Vcpu) -> None:
        object.__setattr__(self, "_m", machine)
        object.__setattr__(self, "_v", vcpu)
        #: the debugger hooks the console set (``_HOOK_DEFAULTS``' names): on the hardware CPU while the
        #: console may reach it (``reach``); kept here for a secure vCPU without the machine's debug
        #: capability (nothing reaches the secure CPU), and placed again when the vCPU changes hands
        object.__setattr__(self, "_hooks", {})

    def __getattr__(self, name: str) -> Any:
        if name in _HOOK_DEFAULTS:
            hw = self._reach(_KEY)
            return getattr(hw, name) if hw is not None else self._hooks.get(name, _HOOK_DEFAULTS[name])
        if name == "breakpoints":
            hw = self._reach(_KEY)
            return hw.breakpoints if hw is not None else frozenset()
        if name == "flush_tlb" and self._reach(_KEY) is None:
            return _no_hook
        if name == "address":
            return self._v.address
        if name in ("mem", "uc") or name.startswith("_"):  # the CPU's storage and engine are the hardware's
            raise AttributeError(f"a vCPU offers no {name}: the hardware CPU's own")
        value = getattr(self._hardware(_KEY), name)
        if self._m.debug is not None:  # the owner's view: the hardware CPU as it is
            return value
        if callable(value):  # a closure: no bound method's __self__ (the hardware CPU) is handed out
            return lambda *a, **k: value(*a, **k)
        if _plain(value):
            return value
        raise AttributeError(f"a vCPU offers no {name} without the machine's debug capability")

    def __setattr__(self, name: str, value: Any) -> None:
        """Debugger hooks go to the hardware CPU while the console may reach it, and are kept here to be
        placed again when the vCPU changes hands (for a secure vCPU without the machine's debug capability
        they reach no CPU: the host cannot hook a secure CPU)."""
        if name not in _HOOK_DEFAULTS:
            raise AttributeError(f"the console sets no {name} on a vCPU")
        self._hooks[name] = value
        hw = self._reach(_KEY)
        if hw is not None:
            setattr(hw, name, value)

    def _reach(self, key: object) -> Cpu | None:
        """The hardware CPU when the console may reach it (a normal vCPU's; a secure vCPU's only through the
        machine's debug capability), else None (``key``: the module's)."""
        if self._v.secure and self._m.debug is None:
            return None
        return self._hardware(key)

    def reachable(self) -> bool:
        """True when the console may reach the hardware CPU (hooks, breakpoints, its own registers)."""
        return not (self._v.secure and self._m.debug is None)

    def set_breakpoints(self, addrs: set[int]) -> None:
        """The hardware CPU's breakpoints (when the console may reach it; ``SecureMachine.set_breakpoints``
        decides which set each vCPU gets)."""
        hw = self._reach(_KEY)
        if hw is not None:
            hw.set_breakpoints(addrs)

    def place_hooks(self) -> None:
        """Put the hooks the console set on the hardware CPU it now reaches (the vCPU changed hands: the
        Ultravisor dropped the host's hooks when it adopted the CPU at the secure IPL)."""
        hw = self._reach(_KEY)
        if hw is None:
            return
        for name, value in self._hooks.items():
            setattr(hw, name, value)
        hw.flush_tlb()

    def _hardware(self, key: object) -> Cpu:
        """The hardware CPU: a normal vCPU's is the hypervisor's (``Vcpu.cpu``); a secure vCPU's is the
        Ultravisor's, reached only through the machine's debug capability (``SecureMachine.grant_debug``).
        Nothing is kept: the console holds no reference to it. ``key``: the module's (``hardware``)."""
        if key is not _KEY:
            raise ConsoleError(f"the hardware CPU of vCPU {self._v.address} is the machine's, not the host's")
        v = self._v
        if not v.secure:
            return hardware_of(v.cpu)  # the console is the machine's owner: it opens the hypervisor's handle
        debug = self._m.debug
        if debug is None:
            raise ConsoleError(f"CPU {v.address} is a secure CPU: {NEEDS_DEBUG}")
        return debug.hardware_cpu(self._m.vm, v.address)

    @property
    def vcpu(self) -> Vcpu:
        """The hypervisor's vCPU."""
        return self._v

    def _secure(self) -> Any:
        """The UV's record of the secure CPU through the machine's debug capability, or None for a normal
        vCPU; without the capability a secure CPU's registers are refused (the Ultravisor holds them)."""
        v = self._v
        if v.vm.pv is None or not v.secure:
            return None
        debug = self._m.debug
        if debug is None:
            raise ConsoleError(f"CPU {v.address} is a secure CPU: its registers are the Ultravisor's; "
                               f"{NEEDS_DEBUG}")
        return debug.secure_cpu(self._m.vm, v.address)

    # -- state ----------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """operating / stopped / check-stop, as the hypervisor records the vCPU."""
        v = self._v
        if v.detail:
            return "check-stop"
        if v.disabled_wait is not None or not v.operating:
            return "stopped"
        return "operating"

    @property
    def check_stop_reason(self) -> str:
        """Why the vCPU stopped (disabled-wait code, check-stop reason), or ""."""
        v = self._v
        if v.detail:
            return v.detail
        if v.disabled_wait is not None:
            return f"disabled wait {v.disabled_wait:#x}"
        return ""

    # -- registers (secure: the UV's record) --------------------------------------------------------------

    @property
    def psw(self) -> tuple[int, int]:
        """The PSW: the secure CPU's (UV record, through the debug capability), else the SD's (the
        hypervisor's record between entries; a secure CPU's without the capability: not authoritative)."""
        if self._v.secure and self._m.debug is None:
            return self._v.psw
        s = self._secure()
        if s is not None:
            return s.psw
        return self._v.psw

    @property
    def pc(self) -> int:
        """The instruction address."""
        return self.psw[1]

    @property
    def prefix(self) -> int:
        """The prefix register."""
        s = self._secure()
        return s.prefix if s is not None else self._hardware(_KEY).prefix

    def gpr(self, i: int) -> int:
        """General register ``i``."""
        s = self._secure()
        return s.gprs[i] if s is not None else self._hardware(_KEY).gpr(i)

    def gprs(self) -> list[int]:
        """The 16 general registers."""
        s = self._secure()
        return list(s.gprs) if s is not None else self._hardware(_KEY).gprs()

    def cr(self, i: int) -> int:
        """Control register ``i``."""
        s = self._secure()
        return s.crs[i] if s is not None else self._hardware(_KEY).cr(i)

    def ar(self, i: int) -> int:
        """Access register ``i``."""
        s = self._secure()
        return s.ars[i] if s is not None else self._hardware(_KEY).ar(i)

    def fpr(self, i: int) -> int:
        """Floating-point register ``i``."""
        s = self._secure()
        return s.fprs[i] if s is not None else self._hardware(_KEY).fpr(i)

    def fpc(self) -> int:
        """The floating-point control register."""
        s = self._secure()
        return s.fpc if s is not None else self._hardware(_KEY).fpc()

    def wrap(self, addr: int) -> int:
        """Wrap an address to the vCPU's addressing mode."""
        return wrap_address(self.psw[0], addr)

    def real_to_abs(self, real: int) -> int:
        """Apply the vCPU's prefixing."""
        return prefixed(real, self.prefix)



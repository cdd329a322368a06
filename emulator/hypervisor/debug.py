"""The emulator's debug capability over secure guests: what a debugger may do that no real host can."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from emulator.errors import HypervisorError

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, Insn
    from emulator.hypervisor.kvm import Hypervisor, Vm
    from firmware.uv import SecureCpu

__all__ = ["SecureDebug"]


class SecureDebug:
    """Emulator privilege, named as such: no real machine gives a host this.

    The hypervisor sees a secure guest's state description, SIDA and intercept data only
    (``docs/security.md``). A debugger that was given this object explicitly (the console's owner view)
    may also hook the instructions SIE handles inside the secure guest (guest UVCs) and receives the
    hardware CPU that runs it, with the guest's registers and mapping. The public API
    (``emulator.api``) and the attack playbook never create one.
    """

    def __init__(self, hv: Hypervisor) -> None:
        self._hv = hv

    @property
    def insn_filter(self) -> Callable[[Cpu, Insn], str | None] | None:
        """Hook offered each secure guest instruction SIE handles inside (guest UVCs), with the live
        hardware CPU: a returned reason leaves the instruction unexecuted and ends SIE (``SieExit.reason``
        "filtered")."""
        return self._hv._debug_insn_filter  # noqa: SLF001 - the capability's own slot in the hypervisor

    @insn_filter.setter
    def insn_filter(self, fn: Callable[[Cpu, Insn], str | None] | None) -> None:
        hv = self._hv
        hv._debug_insn_filter = fn  # noqa: SLF001
        if hv._pv_host is not None:  # noqa: SLF001
            hv._pv_host.engine.insn_filter = fn  # noqa: SLF001

    # -- what a debugger holding the capability may reach (``emulator.api.DebugCapability``) --------------

    def hardware_cpu(self, vm: Vm, address: int) -> Cpu:
        """The hardware CPU that runs vCPU ``address`` of ``vm``: the vCPU's own for a normal guest, the SIE
        engine's for a secure one (the same object: the engine adopted it at the secure IPL)."""
        v = vm.vcpus[address]
        pv = vm.pv
        if pv is None or not v.secure:
            return v.cpu
        cpu = pv.host.engine._hw.get(pv.cpu_handles.get(address, 0))  # noqa: SLF001 - the capability's door
        if cpu is None:
            raise HypervisorError(f"vCPU {address} has no hardware CPU in the SIE engine")
        return cpu

    def secure_cpu(self, vm: Vm, address: int) -> SecureCpu | None:
        """The Ultravisor's record of vCPU ``address``'s secure CPU (None: not a secure vCPU)."""
        pv = vm.pv
        if pv is None or not vm.vcpus[address].secure:
            return None
        return self._hv.ultravisor.secure_cpu(pv.cpu_handles.get(address, 0))

    def read_absolute(self, host_addr: int, length: int) -> bytes:
        """Host absolute storage as firmware reads it (plaintext of secure frames)."""
        return self._hv.memory.read(host_addr, length)

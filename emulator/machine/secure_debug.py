"""The emulator's debug capability over secure guests: what a debugger may do that no real host can."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import HypervisorError
from emulator.hw.cpu_handle import hardware_of

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu, Insn
    from emulator.hw.memory import PhysicalMemory
    from emulator.hypervisor.kvm import Hypervisor, Vm
    from firmware.uv import SecureCpu, Ultravisor

__all__ = ["SecureDebug", "SECURE_REGISTERS"]

#: The registers of a secure CPU ``SecureDebug.set_register`` writes: kind -> how many (0: one, no index).
SECURE_REGISTERS: Final = {
    "r": 16,
    "cr": 16,
    "a": 16,
    "f": 16,
    "psw.mask": 0,
    "psw.addr": 0,
    "prefix": 0,
    "fpc": 0,
}


class SecureDebug:
    """Emulator privilege, named as such: no real machine gives a host this.

    The hypervisor sees a secure guest's state description, SIDA and intercept data only
    (``docs/security.md``). A debugger that was given this object explicitly (the console's owner view)
    may also hook the instructions SIE handles inside the secure guest (guest UVCs) and receives the
    hardware CPU that runs it, with the guest's registers and mapping. The public API
    (``emulator.api``) and the attack playbook never create one.
    """

    def __init__(self, hv: Hypervisor, memory: PhysicalMemory, uv: Ultravisor) -> None:
        self._hv = hv
        self._memory = memory  # the machine's storage: the capability reads it as firmware does
        self._uv = uv  # the machine's Ultravisor (the hypervisor holds only its gate)

    @property
    def insn_filter(self) -> Callable[[Cpu, Insn], str | None] | None:
        """Hook offered each secure guest instruction SIE handles inside (guest UVCs), with the live
        hardware CPU: a returned reason leaves the instruction unexecuted and ends SIE (``SieExit.reason``
        "filtered")."""
        return self._uv.debug_insn_filter

    @insn_filter.setter
    def insn_filter(self, fn: Callable[[Cpu, Insn], str | None] | None) -> None:
        uv = self._uv
        uv.debug_insn_filter = fn  # engines made later take it from the Ultravisor
        for engine in list(uv.sie_engines):
            engine.insn_filter = fn

    def _engine_cpu(self, cpu_handle: int) -> Cpu | None:
        for engine in list(self._uv.sie_engines):
            cpu = engine._hw.get(cpu_handle)  # noqa: SLF001 - the capability's door
            if cpu is not None:
                return cpu
        return None

    # -- what a debugger holding the capability may reach (``emulator.api.DebugCapability``) --------------

    def hardware_cpu(self, vm: Vm, address: int) -> Cpu:
        """The hardware CPU that runs vCPU ``address`` of ``vm``: the vCPU's own for a normal guest, the SIE
        engine's for a secure one (the same object: the engine adopted it at the secure IPL)."""
        v = vm.vcpus[address]
        pv = vm.pv
        if pv is None or not v.secure:
            return hardware_of(v.cpu)  # the capability opens the hypervisor's handle
        cpu = self._engine_cpu(pv.cpu_handles.get(address, 0))
        if cpu is None:
            raise HypervisorError(f"vCPU {address} has no hardware CPU in the SIE engine")
        return cpu

    def secure_cpu(self, vm: Vm, address: int) -> SecureCpu | None:
        """The Ultravisor's record of vCPU ``address``'s secure CPU (None: not a secure vCPU)."""
        pv = vm.pv
        if pv is None or not vm.vcpus[address].secure:
            return None
        return self._uv.secure_cpu(pv.cpu_handles.get(address, 0))

    def read_absolute(self, host_addr: int, length: int) -> bytes:
        """Host absolute storage as firmware reads it (plaintext of secure frames)."""
        return self._memory.read(host_addr, length)

    def set_register(self, vm: Vm, address: int, kind: str, index: int, value: int) -> None:
        """Write one register of secure vCPU ``address`` in the Ultravisor's record of the secure CPU (an
        emulator privilege: no host can); the next SIE entry puts the record into the hardware CPU.

        ``kind`` is one of ``SECURE_REGISTERS`` (``r``, ``cr``, ``a``, ``f`` with ``index`` 0-15;
        ``psw.mask``, ``psw.addr``, ``prefix``, ``fpc``). Raises ``HypervisorError`` for a vCPU that is not
        secure, an unknown register or a value the register cannot hold (a 32-bit access register or FPC; a
        prefix that is not 8 KiB aligned inside the configuration's storage).
        """
        pv = vm.pv
        handle = pv.cpu_handles.get(address) if pv is not None else None
        scpu = self._uv.secure_cpu(handle) if handle is not None else None
        if scpu is None:
            raise HypervisorError(f"vCPU {address} of VM {vm.name} is not a secure CPU")
        count = SECURE_REGISTERS.get(kind)
        if count is None or (count and not 0 <= index < count):
            raise HypervisorError(f"a secure CPU has no register {kind}{index if count else ''}")
        if not 0 <= value < 1 << 64:
            raise HypervisorError(f"{value:#x} does not fit in 64 bits")
        if kind in ("a", "fpc") and value >> 32:
            raise HypervisorError(f"{kind}{index if count else ''} is 32 bits: {value:#x} does not fit")
        if kind in ("r", "cr", "a", "f"):  # a new list: the record the engine loaded last is not this one
            attr = {"r": "gprs", "cr": "crs", "a": "ars", "f": "fprs"}[kind]
            regs = list(getattr(scpu, attr))
            regs[index] = value
            setattr(scpu, attr, regs)
        elif kind == "psw.mask":
            scpu.psw = (value, scpu.psw[1])
        elif kind == "psw.addr":
            scpu.psw = (scpu.psw[0], value)
        elif kind == "prefix":
            if value & 0x1FFF or value + 0x2000 > scpu.config.msl:
                raise HypervisorError(f"prefix {value:#x} must be 8 KiB aligned inside the guest's storage "
                                      f"({scpu.config.msl:#x} bytes)")  # fmt: skip
            scpu.prefix = value
        else:
            scpu.fpc = value
        for engine in list(self._uv.sie_engines):
            engine.reload(handle)

"""The floating service signal of a normal guest VM: any vCPU of the configuration enabled for it takes it.

The service-signal external interruption (SERVC's completion, console input) is floating in the
architecture: it is pending for the configuration, not for the CPU that issued SERVC, and any CPU whose PSW
enables external interruptions and whose CR0 enables the service-signal subclass may take it. A normal
vCPU's hardware CPU holds pending external interruptions itself (``ext_pending``, which SIE delivers), so
the VM's one pending service signal is held by one vCPU: the issuer if it is enabled, else the first
enabled vCPU, else the issuer; before each round of SIE entries ``route_service_signal`` moves it from a
holder that is not enabled to a vCPU that is (as the bare machine's run loop does for ``zuv run``). Secure
VMs keep theirs in ``PvVm.floating``. A normal VM has no subchannels, so no I/O interruption floats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.hw.cpu import CR0_SERVICE_SC, PSW_MASK_EXT
from emulator.hw.sclp import merge_service_parameter

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vcpu, Vm

__all__ = ["service_holder", "place_service_signal", "route_service_signal", "takes_service_signal"]


def takes_service_signal(v: Vcpu) -> bool:
    """True if normal vCPU ``v`` is operating and enabled for a service signal (PSW bit 7, CR0 bit 54)."""
    return v.operating and bool(v.sd.psw_mask & PSW_MASK_EXT) and bool(v.cpu.cr(0) & CR0_SERVICE_SC)


def service_holder(vm: Vm) -> Vcpu | None:
    """The normal vCPU holding the VM's pending service signal, or None when none is pending."""
    return next((v for v in vm.vcpus.values() if "service" in v.cpu.ext_pending), None)


def place_service_signal(vm: Vm, param: int, issuer: Vcpu) -> None:
    """Make a service signal with parameter ``param`` pending for the VM: merged into the one pending
    (``sclp.merge_service_parameter``), else held by ``issuer`` if it is enabled for it, else by the first
    enabled vCPU in address order, else by ``issuer`` (routed later)."""
    holder = service_holder(vm)
    if holder is not None:  # one service signal at a time: the parameters merge (the SCLP's completion first)
        pending = holder.cpu.ext_pending
        pending["service"] = merge_service_parameter(pending["service"], param)
        return
    target = issuer
    if not takes_service_signal(issuer):
        target = next((v for _, v in sorted(vm.vcpus.items()) if takes_service_signal(v)), issuer)
    target.cpu.ext_pending["service"] = param


def route_service_signal(vm: Vm) -> None:
    """Move the pending service signal from a holder not enabled for it to the first vCPU that is."""
    holder = service_holder(vm)
    if holder is None or takes_service_signal(holder):
        return
    for _, v in sorted(vm.vcpus.items()):
        if v is not holder and takes_service_signal(v):
            v.cpu.ext_pending["service"] = holder.cpu.ext_pending.pop("service")
            return

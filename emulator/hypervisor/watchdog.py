"""A VM's DIAGNOSE 0x288 watchdog (QEMU's ``-device diag288``): the guest's calls, the expired timer's action.

For a normal guest the hypervisor decodes the DIAG itself; for a secure guest the Ultravisor presents it
as an instruction interception (0x68) with R1, R1+1 and R3 normalised to registers 0, 1 and 2 (it checks
R1's parity itself, ``firmware/uv_sie_intercept.py``), and a refusal goes back as a specification
exception the Ultravisor injects, as QEMU's ``handle_diag_288`` answers a protected guest under KVM. The
timer is ``emulator.hw.diag.Diag288`` on the hypervisor's clock; the VM's run loop takes the action at the
deadline (``expire``), and the deadline bounds its SIE entries and idle waits like a vCPU timer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.errors import ProgramException
from emulator.hw.diag import Diag288

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vm

__all__ = ["add_watchdog", "diag288", "expire"]


def add_watchdog(vm: Vm, action: str = "reset") -> Diag288:
    """Give ``vm`` a diag288 watchdog doing ``action`` when it expires (``WATCHDOG_ACTIONS``; ValueError for
    another)."""
    vm.watchdog = Diag288(action)
    return vm.watchdog


def diag288(vm: Vm, r1: int, func: int, timeout: int, action: int) -> None:
    """DIAGNOSE 0x288 of a vCPU of ``vm``: R1's number, its function code, R1+1's timeout in seconds and R3's
    action code. A VM without the device answers with a specification exception, as QEMU does."""
    if vm.watchdog is None:
        raise ProgramException(0x06, why="DIAG 0x288 without a watchdog device (zuv boot --watchdog diag288)")
    vm.watchdog.call(r1, func, timeout, action, vm.hv.clock.now())


def expire(vm: Vm) -> None:
    """Take the watchdog's action if its deadline has passed (QEMU's ``watchdog_perform_action``):
    ``inject-nmi`` a restart interruption on the first vCPU (s390x's NMI, QEMU's ``s390_nmi``), ``reset`` a
    system reset that IPLs the VM's program again (a secure VM is made normal first, as QEMU's machine reset
    unprotects it; the watchdog stops and the channel subsystem is reset), the others end the run
    (``pause``, ``shutdown``, ``poweroff``) or do nothing."""
    wd = vm.watchdog
    assert wd is not None
    action = wd.expire(vm.hv.clock.now())
    if action is None or action in ("none", "debug"):
        return
    if action == "inject-nmi":
        v = vm.vcpus[min(vm.vcpus)]
        v.disabled_wait = None
        if vm.pv is not None and v.secure:
            vm.pv.restart_cpu(v)
        else:
            v.cpu.restart_pending = True
            v.set_operating(True)
        return
    if action == "reset" and vm.program_path is not None:
        if vm.pv is not None:
            vm.pv.disable()
        wd.reset()
        vm.channel.css.reset()  # the I/O-system reset of a system reset
        vm.load(vm.program_path, vm._cmdline)  # noqa: SLF001 - the program as the VM was given it
        return
    what = {"pause": "paused", "reset": "reset"}.get(action, "powered off")
    vm.request_halt(f"the watchdog expired ({what}: --watchdog-action {action})")

"""The hypervisor's half of SIGP for secure guests: the condition code and status of an order a secure vCPU
sent (intercepted with 0x68, or told with a 0x6C notification once the Ultravisor performed it), and the
target's start, stop, restart and resets through the Ultravisor. The status stores of STOP AND STORE STATUS,
STORE STATUS AT ADDRESS and STORE ADDITIONAL STATUS are the Ultravisor's (``firmware/uv_sigp.py``): the host
only decides whether the order is accepted, as QEMU's ``sigp.c`` does for a protected guest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.hw import sigp as S
from emulator.hw.cpu import PSW_MASK_WAIT
from emulator.hw.sysinfo import has_facility
from firmware.uv_state import CPU_STATE_OPR, CPU_STATE_STP

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vcpu
    from emulator.hypervisor.pv import PvVm

__all__ = ["pv_sigp"]

#: the vector facility: STORE ADDITIONAL STATUS is an invalid order without it
_VECTOR_FACILITY: Final = 129


def pv_sigp(pv: PvVm, v: Vcpu, order: int, target_addr: int, param: int) -> tuple[int, int | None]:
    """SIGP order ``order`` of secure vCPU ``v`` to vCPU ``target_addr`` with parameter ``param``: the
    condition code and the status for R1 (None: none), as QEMU's ``sigp.c`` decides them; stopping, starting,
    restarting and resetting the target through the Ultravisor (Set CPU State, CPU resets). An order that
    takes the target over ends a disabled wait it was left in as its outcome (as ``zuv run``'s machine: the
    program stopped, restarted or reset it; kvm-unit-tests' firq stops a CPU its handler left waiting)."""
    cc, status = _order(pv, v, order, target_addr, param)
    target = pv.vm.vcpus.get(target_addr)
    if cc == 0 and order in S.TAKES_OVER and target is not None:
        target.disabled_wait = None
    return cc, status


def _order(pv: PvVm, v: Vcpu, order: int, target_addr: int, param: int) -> tuple[int, int | None]:
    vm = pv.vm
    target = vm.vcpus.get(target_addr)
    if order == S.SET_ARCHITECTURE:
        others = all(not x.operating for x in vm.vcpus.values() if x is not v)
        return 1, S.STAT_INVALID_PARAMETER if others else S.STAT_INCORRECT_STATE
    if target is None:
        return 3, None
    t = target.address
    if order == S.SENSE:
        status = (S.STAT_STOPPED if not target.operating else 0) | (
            S.STAT_EXT_CALL_PENDING if "external_call" in pv.ext[t] else 0
        )
        return (1, status) if status else (0, None)
    if order == S.SENSE_RUNNING:
        running = target.operating and not target.sd.psw_mask & PSW_MASK_WAIT
        return (0, None) if running else (1, S.STAT_NOT_RUNNING)
    if order == S.EXTERNAL_CALL:
        if "external_call" in pv.ext[t]:
            return 1, S.STAT_EXT_CALL_PENDING
        pv.ext[t]["external_call"] = v.address
        return 0, None
    if order in (S.EMERGENCY, S.COND_EMERGENCY):
        pv.emergency[t].add(v.address)
        return 0, None
    if order == S.START:
        if not target.operating:
            pv.set_cpu_state(target, CPU_STATE_OPR)
        return 0, None
    if order in (S.STOP, S.STOP_AND_STORE_STATUS):
        # the host only stops the target; the Ultravisor stores the status when it completes this SIGP
        if target.operating:
            pv.set_cpu_state(target, CPU_STATE_STP)
        return 0, None
    if order == S.RESTART:
        pv.restart.add(t)
        if not target.operating:
            pv.set_cpu_state(target, CPU_STATE_OPR)
        return 0, None
    if order in (S.INITIAL_CPU_RESET, S.CPU_RESET):
        pv.cpu_reset(target, "initial" if order == S.INITIAL_CPU_RESET else "normal")
        pv.set_cpu_state(target, CPU_STATE_STP)
        return 0, None
    if order == S.SET_PREFIX:  # QEMU's checks; the Ultravisor set the prefix and notified (0x6C)
        if S.param_area(order, param, vm.memory_size) is None:
            return 1, S.STAT_INVALID_PARAMETER
        return (1, S.STAT_INCORRECT_STATE) if target.operating else (0, None)
    if order in (S.STORE_STATUS_AT_ADDRESS, S.STORE_ADDITIONAL_STATUS):
        # QEMU's checks; the Ultravisor stores (firmware/uv_sigp.py)
        if order == S.STORE_ADDITIONAL_STATUS and not has_facility(vm.facilities, _VECTOR_FACILITY):
            return 1, S.STAT_INVALID_ORDER
        if target.operating:
            return 1, S.STAT_INCORRECT_STATE
        bad = S.param_area(order, param, vm.memory_size) is None
        return (1, S.STAT_INVALID_PARAMETER) if bad else (0, None)
    return 1, S.STAT_INVALID_ORDER

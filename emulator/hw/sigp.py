"""SIGNAL PROCESSOR: the orders one CPU sends another, with the architecture's status and condition codes.

Status values and order behaviour follow QEMU ``target/s390x/sigp.c`` (``machine.md`` section 5). The
configuration (the machine, or one VM) passes its CPUs by address; the orders act on them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from emulator.hw.cpu import CHECK_STOP, OPERATING, PSW_MASK_WAIT, STOPPED, Cpu
from emulator.hw.cpu_handle import hardware_of

__all__ = ["sigp", "store_status", "param_area", "ORDER_NAMES", "TAKES_OVER"]

SENSE: Final = 0x01
EXTERNAL_CALL: Final = 0x02
EMERGENCY: Final = 0x03
START: Final = 0x04
STOP: Final = 0x05
RESTART: Final = 0x06
STOP_AND_STORE_STATUS: Final = 0x09
INITIAL_CPU_RESET: Final = 0x0B
CPU_RESET: Final = 0x0C
SET_PREFIX: Final = 0x0D
STORE_STATUS_AT_ADDRESS: Final = 0x0E
SET_ARCHITECTURE: Final = 0x12
COND_EMERGENCY: Final = 0x13
SENSE_RUNNING: Final = 0x15
STORE_ADDITIONAL_STATUS: Final = 0x17

#: the orders after which a disabled wait the target was left in no longer says how it ended: the program
#: stopped, restarted or reset it (kvm-unit-tests' firq stops a CPU its handler left waiting)
TAKES_OVER: Final = frozenset({START, STOP, RESTART, STOP_AND_STORE_STATUS, INITIAL_CPU_RESET, CPU_RESET})

ORDER_NAMES: Final = {
    SENSE: "sense",
    EXTERNAL_CALL: "external call",
    EMERGENCY: "emergency signal",
    START: "start",
    STOP: "stop",
    RESTART: "restart",
    STOP_AND_STORE_STATUS: "stop and store status",
    INITIAL_CPU_RESET: "initial CPU reset",
    CPU_RESET: "CPU reset",
    SET_PREFIX: "set prefix",
    STORE_STATUS_AT_ADDRESS: "store status at address",
    SET_ARCHITECTURE: "set architecture",
    COND_EMERGENCY: "conditional emergency signal",
    SENSE_RUNNING: "sense running status",
    STORE_ADDITIONAL_STATUS: "store additional status",
}

STAT_EQUIPMENT_CHECK: Final = 0x80000000
STAT_NOT_RUNNING: Final = 0x00000400
STAT_INCORRECT_STATE: Final = 0x00000200
STAT_INVALID_PARAMETER: Final = 0x00000100
STAT_EXT_CALL_PENDING: Final = 0x00000080
STAT_STOPPED: Final = 0x00000040
STAT_OPERATOR_INTERV: Final = 0x00000020
STAT_CHECK_STOP: Final = 0x00000010
STAT_INOPERATIVE: Final = 0x00000004
STAT_INVALID_ORDER: Final = 0x00000002
STAT_RECEIVER_CHECK: Final = 0x00000001


def store_status(cpu: Cpu, absolute: int, write: Callable[[int, bytes], None]) -> None:
    """Store the CPU's status in the save-area layout at ``absolute`` (0x1200 for SIGP store status).

    Offsets (from 0x1200): FPRs +0x00, GRs +0x80, PSW +0x100, prefix +0x118, FPC +0x11C, TOD programmable
    register +0x124, CPU timer +0x128, clock comparator >> 8 +0x130, ARs +0x140, CRs +0x180.
    """
    cpu.store_status(absolute, write)


#: the length code of STORE ADDITIONAL STATUS (parameter bits 60-63); 0 is 1 KiB, the vector registers
_ADTL_LC_MASK: Final = 0xF
_MASK64: Final = 0xFFFFFFFFFFFFFFFF


def param_area(order: int, param: int, memory_size: int) -> tuple[int, int] | None:
    """The storage the parameter of SET PREFIX, STORE STATUS AT ADDRESS or STORE ADDITIONAL STATUS names,
    as (absolute address, length), or None when the parameter is invalid (status "invalid parameter"): the
    one reading of these parameters for the machine, the hypervisor and the Ultravisor, as QEMU's
    ``sigp.c`` and KVM's ``sigp.c`` read them. SET PREFIX: bits 33-50 (an 8 KiB area); STORE STATUS AT
    ADDRESS: bits 33-54 (512 bytes); STORE ADDITIONAL STATUS: a 64-bit address with the length code in bits
    60-63, which must be 0 (no guarded-storage facility: 1 KiB of vector registers) and the address 1 KiB
    aligned. Every area must lie wholly inside ``memory_size`` bytes."""
    if order == SET_PREFIX:
        addr, length = param & 0x7FFFE000, 0x2000
    elif order == STORE_STATUS_AT_ADDRESS:
        addr, length = param & 0x7FFFFE00, 0x200
    elif order == STORE_ADDITIONAL_STATUS:
        addr, length = param & ~_ADTL_LC_MASK & _MASK64, 0x400
        if param & _ADTL_LC_MASK or addr & (length - 1):
            return None
    else:
        raise ValueError(f"SIGP order {order:#x} has no storage parameter")
    return (addr, length) if addr + length <= memory_size else None


def sigp(
    source: Cpu,
    order: int,
    target_addr: int,
    param: int,
    cpus: Mapping[int, Cpu],
    memory_size: int,
    write_abs: Callable[[int, bytes], None],
    may_store: Callable[[int, int], bool] | None = None,
) -> tuple[int, int | None]:
    """Perform one SIGP order; returns (condition code, status to store in R1 or None).

    ``may_store(absolute, length)``: the access rules for the stores the orders make on the target's
    behalf and for a new prefix area (``access.store_refused``); a refused order stores nothing, changes
    no prefix and ends with status "invalid parameter" (``docs/security.md``). None: every store may be
    made (``write_abs`` checks for itself).
    """
    # a hypervisor's vCPUs come as handles (``CpuHandle``): only the CPUs an order looks at are opened
    target = cpus.get(target_addr)
    if order == SET_ARCHITECTURE:
        source = hardware_of(source)
        others = [hardware_of(c) for c in cpus.values()]
        # (a check-stopped CPU is not stopped: QEMU's sigp_set_architecture)
        others_stopped = all(c.state == STOPPED for c in others if c is not source)
        return 1, STAT_INVALID_PARAMETER if others_stopped else STAT_INCORRECT_STATE
    if target is None:
        return 3, None
    target = hardware_of(target)
    if order == SENSE_RUNNING:  # (first: a spin loop's order, kvm-unit-tests' exittime times 4 million)
        running = target._state == OPERATING and not target._mask_bits() & PSW_MASK_WAIT  # noqa: SLF001
        return (0, None) if running else (1, STAT_NOT_RUNNING)
    source = hardware_of(source)
    if order == SENSE:
        status = 0
        if target.state == STOPPED:
            status |= STAT_STOPPED
        if target.state == CHECK_STOP:
            status |= STAT_CHECK_STOP
        if "external_call" in target.ext_pending:
            status |= STAT_EXT_CALL_PENDING
        return (1, status) if status else (0, None)
    if order == EXTERNAL_CALL:
        if "external_call" in target.ext_pending:
            return 1, STAT_EXT_CALL_PENDING
        target.ext_pending["external_call"] = source.address
        return 0, None
    if order in (EMERGENCY, COND_EMERGENCY):
        target.emergency_from.add(source.address)
        return 0, None
    if order == START:
        if target.state == STOPPED:
            target.state = OPERATING
        return 0, None
    if order == STOP:
        if target.state == OPERATING:
            target.state = STOPPED
        return 0, None
    if order == RESTART:
        if target.state == CHECK_STOP:
            return 1, STAT_INCORRECT_STATE
        target.restart_pending = True
        target.state = OPERATING
        return 0, None
    if order == STOP_AND_STORE_STATUS:
        if target.state == OPERATING:
            target.state = STOPPED
        if may_store is not None and not may_store(0x1200, 0x200):
            return 1, STAT_INVALID_PARAMETER
        store_status(target, 0x1200, write_abs)
        return 0, None
    if order == INITIAL_CPU_RESET:
        target.reset_initial()
        return 0, None
    if order == CPU_RESET:
        target.reset_cpu()
        return 0, None
    if order == SET_PREFIX:  # the area, then the state (QEMU's sigp_set_prefix, KVM's __sigp_set_prefix)
        area = param_area(order, param, memory_size)
        if area is None or (may_store is not None and not may_store(*area)):
            return 1, STAT_INVALID_PARAMETER
        if target.state != STOPPED:
            return 1, STAT_INCORRECT_STATE
        target.set_prefix(area[0])
        return 0, None
    if order in (STORE_STATUS_AT_ADDRESS, STORE_ADDITIONAL_STATUS):  # the state first, then the area
        if target.state != STOPPED:
            return 1, STAT_INCORRECT_STATE
        area = param_area(order, param, memory_size)
        if area is None or (may_store is not None and not may_store(*area)):
            return 1, STAT_INVALID_PARAMETER
        if order == STORE_STATUS_AT_ADDRESS:
            store_status(target, area[0], write_abs)
        else:
            write_abs(area[0], b"".join(target.vr(i) for i in range(32)))
        return 0, None
    return 1, STAT_INVALID_ORDER

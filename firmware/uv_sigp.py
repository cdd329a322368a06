"""SIGP between secure CPUs where only the Ultravisor can give the order's effect: SET PREFIX, and the status
stores of STOP AND STORE STATUS, STORE STATUS AT ADDRESS and STORE ADDITIONAL STATUS.

The host can neither set a secure CPU's prefix nor read its registers (``secure-execution.md`` 7.6). A SET
PREFIX the Ultravisor performs at the SIGP and tells the host with a notification (0x6C). A status order is
intercepted for the host as any SIGP (0x68): the host decides the condition code and status from what it
knows (the target exists, is stopped, the parameter is valid) and stops the target of STOP AND STORE STATUS,
as QEMU's ``sigp.c`` does, storing nothing itself (QEMU's ``s390_store_status`` for a protected guest: "For
PVMs storing will occur when this cpu enters SIE again"). When the sender's SIE is entered again the
Ultravisor completes the SIGP with the host's condition code and, for an accepted order, stores the target's
status from its own record of the target (the state its last SIE exit left) into the secure guest's storage.
It stores only for a target its record shows stopped, and only inside the guest's storage: a host that
accepts an order it should have refused gets nothing stored, never a running CPU's state.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from emulator.hw.sigp import (
    SET_PREFIX,
    STAT_INCORRECT_STATE,
    STAT_INVALID_PARAMETER,
    STOP_AND_STORE_STATUS,
    STORE_ADDITIONAL_STATUS,
    STORE_STATUS_AT_ADDRESS,
    param_area,
)
from firmware.uv_state import CPU_STATE_STP

if TYPE_CHECKING:
    from firmware.uv_state import SecureConfig, SecureCpu

__all__ = ["SIGP_SET_PREFIX", "STATUS_ORDERS", "set_prefix_target", "status_area", "status_store"]

SIGP_SET_PREFIX: Final = SET_PREFIX
#: the orders whose store the Ultravisor makes when it completes the sender's SIGP
STATUS_ORDERS: Final = frozenset({STOP_AND_STORE_STATUS, STORE_STATUS_AT_ADDRESS, STORE_ADDITIONAL_STATUS})
#: where STOP AND STORE STATUS stores: the save areas at absolute 0x1200 (KVM's KVM_S390_STORE_STATUS_NOADDR)
STATUS_ABSOLUTE: Final = 0x1200
_U64: Final = struct.Struct(">Q")
_MASK64: Final = 0xFFFFFFFFFFFFFFFF


def _target(cfg: SecureConfig, target_num: int) -> SecureCpu | None:
    return next((c for c in cfg.cpus.values() if c.num == target_num), None)


def set_prefix_target(cfg: SecureConfig, target_num: int, param: int) -> tuple[SecureCpu, int]:
    """SIGP SET PREFIX from a secure CPU of ``cfg`` to its CPU ``target_num``: only the Ultravisor can set a
    secure CPU's prefix (the host can neither reach the lowcore nor the register), so it performs the order
    with QEMU's checks in their order (``sigp_set_prefix``): the 8 KiB area beyond the guest's storage gives
    status invalid parameter, a target not stopped incorrect state; else the target's prefix is set.
    Returns the target and the status (0: done).

    Raises:
        LookupError: ``target_num`` names no secure CPU of ``cfg`` (the host answers: not operational).
    """
    target = _target(cfg, target_num)
    if target is None:
        raise LookupError(target_num)
    area = param_area(SET_PREFIX, param, cfg.msl)
    if area is None:
        return target, STAT_INVALID_PARAMETER
    if target.state != CPU_STATE_STP:
        return target, STAT_INCORRECT_STATE
    target.prefix = area[0]
    return target, 0


def status_area(scpu: SecureCpu) -> bytes:
    """The 512-byte save area of store status from the Ultravisor's record of a secure CPU, in the layout
    ``Cpu.store_status`` stores (from 0x1200: FPRs +0x00, GRs +0x80, PSW +0x100, prefix +0x118, FPC +0x11C,
    TOD programmable register +0x124, CPU timer +0x128, clock comparator >> 8 +0x130, ARs +0x140, CRs
    +0x180)."""
    area = bytearray(0x200)
    for i, v in enumerate(scpu.fprs):
        _U64.pack_into(area, 8 * i, v)
    struct.pack_into(">16Q", area, 0x80, *(v & _MASK64 for v in scpu.gprs))
    struct.pack_into(">QQ", area, 0x100, *scpu.psw)
    struct.pack_into(">II", area, 0x118, scpu.prefix, scpu.fpc)
    struct.pack_into(">I", area, 0x124, scpu.todpr)
    struct.pack_into(">QQ", area, 0x128, scpu.cputm & _MASK64, scpu.ckc >> 8)
    area[0x140:0x180] = scpu.ext[512:576]  # the access registers, big-endian as the record keeps them
    struct.pack_into(">16Q", area, 0x180, *(v & _MASK64 for v in scpu.crs))
    return bytes(area)


def status_store(cfg: SecureConfig, order: int, target_num: int, param: int) -> tuple[int, bytes] | None:
    """What the Ultravisor stores when the host accepted (condition code 0) a status order a secure CPU of
    ``cfg`` sent to its CPU ``target_num``: (guest absolute address, bytes), or None when nothing is stored
    (not a status order, no such secure CPU, a target the record shows not stopped, a parameter the order
    refuses or an area beyond the guest's storage). STOP AND STORE STATUS stores at absolute 0x1200, STORE
    STATUS AT ADDRESS at the 512-byte boundary of the parameter (bits 33-54), STORE ADDITIONAL STATUS the 32
    vector registers at the parameter's 1 KiB boundary (length code 0: no guarded-storage facility)."""
    if order not in STATUS_ORDERS:
        return None
    target = _target(cfg, target_num)
    if target is None or target.state != CPU_STATE_STP:
        return None
    if order == STOP_AND_STORE_STATUS:
        return STATUS_ABSOLUTE, status_area(target)
    area = param_area(order, param, cfg.msl)  # the hardware's one reading of the parameter
    if area is None:
        return None
    # the area is aligned to its length (512 bytes, 1 KiB): the store stays in one page of the guest's
    addr = area[0]
    return addr, status_area(target) if order == STORE_STATUS_AT_ADDRESS else target.ext[:512]

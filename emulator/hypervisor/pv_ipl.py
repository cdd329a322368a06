"""The secure IPL (DIAGNOSE 0x308 subcodes 8, 9, 10; 8.2, 8.3): the PV IPL block, protect, its failure."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from emulator.hw.memory import PAGE_SIZE
from emulator.hypervisor.pv import (
    CPU_STATE_OPR_LOAD,
    CPU_STATE_STP,
    KVM_PV_VERIFY,
    MAX_HEADER,
    PvError,
    PvVm,
)
from emulator.hypervisor.uvclient import UvCallError

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vcpu, Vm

__all__ = [
    "PvIplBlock",
    "PvComponent",
    "ProtectFailure",
    "diag308_secure",
    "protect",
    "DIAG308_RC_INVAL_FOR_PV",
]

log = logging.getLogger("emulator.hypervisor.pv")

# DIAGNOSE 0x308 response codes (qemu hw/s390x/ipl.h)
DIAG308_RC_OK: Final = 0x0001
DIAG308_RC_NO_CONF: Final = 0x0102
DIAG308_RC_INVALID: Final = 0x0402
DIAG308_RC_NO_PV_CONF: Final = 0x0902
DIAG308_RC_INVAL_FOR_PV: Final = 0x0A02


# -- the IPL parameter block, PV type (8.2) ------------------------------------------------------------


@dataclass(frozen=True)
class PvComponent:
    """One secure component of a PV IPL block: tweak prefix, guest address, length."""

    tweak_pref: int
    addr: int
    length: int


@dataclass(frozen=True)
class PvIplBlock:
    """An IPL parameter block of type 5 (PV): where the SE header is and the secure components."""

    raw: bytes
    hdr_addr: int
    hdr_size: int
    components: tuple[PvComponent, ...]

    HEADER_LEN: Final = 0x88  # bytes before the first component entry
    MIN_LEN: Final = 148  # qemu iplb_valid_pv: len >= sizeof(IplBlockPv) + header

    @classmethod
    def parse(cls, raw: bytes, guest_size: int) -> PvIplBlock:
        """Validate a PV IPIB like QEMU (``iplb_valid_pv``); raises ValueError with the reason."""
        if len(raw) < cls.MIN_LEN:
            raise ValueError(f"IPL block of {len(raw)} bytes is shorter than {cls.MIN_LEN}")
        total, = struct.unpack_from(">I", raw, 0)
        blk0_len, pbt = struct.unpack_from(">IB", raw, 8)
        if pbt != 5:
            raise ValueError(f"IPL block type {pbt} is not 5 (PV)")
        if total < cls.MIN_LEN or total > len(raw):
            raise ValueError(f"IPL block length {total} invalid")
        num, hdr_addr, hdr_size = struct.unpack_from(">IQQ", raw, 0x74)
        if num < 1:
            raise ValueError("no secure component")
        if cls.HEADER_LEN + 24 * num > total:
            raise ValueError(f"{num} components do not fit in an IPL block of {total} bytes")
        if not 0 < hdr_size <= MAX_HEADER or hdr_addr + hdr_size > guest_size:
            raise ValueError(f"SE header {hdr_addr:#x}+{hdr_size:#x} is not readable or longer than 8 KiB")
        comps = []
        last = -1
        for i in range(num):
            tweak, addr, length = struct.unpack_from(">QQQ", raw, cls.HEADER_LEN + 24 * i)
            if addr & 0xFFF:
                raise ValueError(f"component {i} at {addr:#x} is not 4 KiB aligned")
            if tweak <= last:
                raise ValueError(f"component {i}: tweak prefixes do not increase")
            if addr + length > guest_size:
                raise ValueError(f"component {i} at {addr:#x}+{length:#x} is beyond guest memory")
            last = tweak
            comps.append(PvComponent(tweak, addr, length))
        return cls(bytes(raw[:total]), hdr_addr, hdr_size, tuple(comps))


# -- DIAGNOSE 0x308 subcodes 8, 9, 10: the secure IPL -------------------------------------------------


@dataclass
class ProtectFailure:
    """Why protecting a VM failed: the KVM_PV step and the Ultravisor's rc/rrc with its message."""

    cmd: int
    rc: int
    rrc: int
    message: str

    @property
    def packed(self) -> int:
        """The value QEMU returns in Rx+1: cmd, rrc, rc, 0x0A02 (16 bits each, MSB first)."""
        return self.cmd << 48 | (self.rrc & 0xFFFF) << 32 | (self.rc & 0xFFFF) << 16 | DIAG308_RC_INVAL_FOR_PV


def protect(vm: Vm, ipib: PvIplBlock, header: bytes | None = None) -> None:
    """QEMU's "protect": enable, set secure parameters, unpack every component, verify, start CPU 0.

    ``header`` defaults to the SE header read from guest memory at the IPIB's ``pv_hdr_addr``. On
    failure the VM is made non-secure again and ``PvError`` is raised.
    """
    if header is None:
        header = vm.memory.read(ipib.hdr_addr, ipib.hdr_size)
    pv = PvVm(vm)
    pv.enable()
    try:
        pv.set_sec_parms(header)
        for c in ipib.components:
            size = (c.length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            pv.unpack(c.addr, size, c.tweak_pref)
        pv.verify()
        for x in vm.vcpus.values():
            if x.address != min(vm.vcpus):
                pv.set_cpu_state(x, CPU_STATE_STP)
        res = pv.set_cpu_state(vm.vcpus[min(vm.vcpus)], CPU_STATE_OPR_LOAD)
        if not res.ok:
            raise UvCallError(res)
    except BaseException:
        pv.disable(reset_cpus=False)  # nothing ran secure yet: the normal CPUs keep their state
        raise


def diag308_secure(vm: Vm, v: Vcpu, r1: int, rx: int, subcode: int) -> None:
    """DIAGNOSE 0x308 subcodes 8 (set PV IPIB), 9 (store PV IPIB) and 10 (enter secure mode)."""
    cpu = v.cpu
    if subcode == 8:
        length = int.from_bytes(cpu.read_real(rx, 4), "big")
        raw = cpu.read_real(rx, min(max(length, 8), PAGE_SIZE))
        try:
            PvIplBlock.parse(raw, vm.memory_size)
        except ValueError as e:
            log.info("VM %s: PV IPL block refused: %s", vm.name, e)
            cpu.set_gpr(r1 + 1, DIAG308_RC_INVALID)
            return
        vm.pv_ipl_parameters = raw[:length]
        cpu.set_gpr(r1 + 1, DIAG308_RC_OK)
        return
    if subcode == 9:
        if vm.pv_ipl_parameters is None:
            cpu.set_gpr(r1 + 1, DIAG308_RC_NO_CONF)
        else:
            cpu.write_real(rx, vm.pv_ipl_parameters)
            cpu.set_gpr(r1 + 1, DIAG308_RC_OK)
        return
    if vm.pv_ipl_parameters is None:
        cpu.set_gpr(r1 + 1, DIAG308_RC_NO_PV_CONF)
        return
    ipib = PvIplBlock.parse(vm.pv_ipl_parameters, vm.memory_size)
    # the "PV reset": every other CPU stops and is reset, then the VM is protected
    for x in vm.vcpus.values():
        if x is not v:
            x.cpu.reset_initial()
            x.set_operating(False)
    try:
        protect(vm, ipib)
    except (PvError, UvCallError) as e:
        if isinstance(e, PvError):
            f = ProtectFailure(e.cmd, e.rc, e.rrc, e.detail)
        else:
            f = ProtectFailure(KVM_PV_VERIFY, e.rc, e.rrc, str(e.result))
        vm.pv_failure = f
        log.info("VM %s: secure IPL failed: %s", vm.name, e)
        # the issuing CPU resumes after the DIAGNOSE with the packed error (QEMU s390_pv_inject_reset_error);
        # its handle is the one the Ultravisor gave back (the one adopted opens nothing any more)
        v.cpu.set_gpr(r1 + 1, f.packed)
        v.set_operating(True)
        return
    vm.pv_failure = None

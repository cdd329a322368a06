"""The instructions a normal guest's SIE intercepts, completed by the hypervisor: one handler each.

SERVC, STSI, SIGP, DIAG and the channel-subsystem instructions reuse the device models of ``emulator.hw``;
UVC and SIE are refused. ``Vm`` looks a handler up by the instruction's name (``_HANDLERS``); secure guests
come through ``emulator.hypervisor.pv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw.cpu import Insn
from emulator.hw.diag import release_ranges
from emulator.hw.sclp import CpuSccb
from emulator.hw.sysinfo import stsi, stsi_operand_check
from emulator.hypervisor.floating import place_service_signal, service_holder
from emulator.hypervisor.watchdog import diag288

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vcpu, Vm

# -- intercepted instructions (normal guests; secure guests come through emulator.hypervisor.pv) ---------


def _servc(vm: Vm, v: Vcpu, insn: Insn) -> None:
    cpu = v.cpu
    holder = service_holder(vm)
    if holder is not None and holder.cpu.ext_pending["service"] & ~3:
        v.set_cc(2)  # busy until a vCPU took the pending completion (console input's notice may wait)
        return
    command = cpu.gpr(insn.r1) & 0xFFFFFFFF
    sccb = cpu.gpr(insn.r2)
    res = vm.sclp.service_call(CpuSccb(cpu, vm.memory_size), command, sccb)
    place_service_signal(vm, res.ext_param, v)  # floating: any vCPU enabled for it takes it
    v.set_cc(0)


def _stsi(vm: Vm, v: Vcpu, insn: Insn) -> None:
    cpu = v.cpu
    r0, r1 = cpu.gpr(0), cpu.gpr(1)
    addr = insn.address()
    stsi_operand_check(r0, addr)
    cc, new_r0, block = stsi(vm.info, 3, r0, r1, len(vm.vcpus))
    if block is not None:
        cpu.write_virtual(addr, block)
    if new_r0 is not None:
        cpu.set_gpr(0, new_r0)
    v.set_cc(cc)


def _sigp(vm: Vm, v: Vcpu, insn: Insn) -> None:
    cpu = v.cpu
    order = insn.address() & 0xFF
    param = cpu.gpr(insn.r1 | 1)
    target = cpu.gpr(insn.r3) & 0xFFFF
    cc, status = vm.hv.sigp(vm, v, order, target, param)
    if status is not None:
        cpu.set_gpr(insn.r1, (cpu.gpr(insn.r1) & ~0xFFFFFFFF) | status)
    v.set_cc(cc)


def _diag(vm: Vm, v: Vcpu, insn: Insn) -> None:
    cpu = v.cpu
    code = insn.address() & 0xFFFF
    if code in (0x44, 0x9C):
        return
    if code == 0x288:  # the watchdog: R1 (even), R1+1 and R3
        diag288(vm, insn.r1, cpu.gpr(insn.r1), cpu.gpr(insn.r1 + 1 & 15), cpu.gpr(insn.r3))
        return
    if code == 0x10:  # release pages: the guest's storage reads zero there afterwards
        for lo, hi in release_ranges(cpu.gpr(insn.r1), cpu.gpr(insn.r3), cpu.prefix):
            if lo < vm.memory_size:
                vm.memory.fill(lo, min(hi, vm.memory_size) - lo)
        return
    if code == 0x500:
        cpu.set_gpr(2, vm.hv.virtio_notify(vm, cpu.gpr(1), cpu.gpr(2), cpu.gpr(3), cpu.gpr(4)))
        return
    if code == 0x308:
        vm.hv.diag308(vm, v, insn.r1, cpu.gpr(insn.r1), cpu.gpr(insn.r1 + 1 & 15), cpu.gpr(insn.r3))
        return
    raise ProgramException(0x06, why=f"DIAGNOSE code {code:#x} is not supported")


def _uvc(vm: Vm, v: Vcpu, insn: Insn) -> None:
    raise ProgramException(0x01, why="the Ultravisor-call facility is not offered to normal guests")


def _sie(vm: Vm, v: Vcpu, insn: Insn) -> None:
    raise ProgramException(0x01, why="SIE is not available to a guest (no nested virtualisation)")


def _channel(vm: Vm, v: Vcpu, insn: Insn) -> None:
    cpu = v.cpu
    name = insn.name
    if name == "TPI":
        v.set_cc(0)
    elif name == "STCRW":
        cpu.write_virtual(insn.address(), bytes(4))
        v.set_cc(1)
    elif name in ("SAL", "SCHM"):
        pass
    elif name in ("CHSC", "RCHP"):
        v.set_cc(3)
    else:
        sid = cpu.gpr(1) & 0xFFFFFFFF
        if sid >> 16 != 0x0001:
            raise ProgramException(0x15, why=f"subsystem id {sid:#x} is not a subchannel id")
        v.set_cc(3)  # no subchannels: not operational


_Handler = Callable[["Vm", "Vcpu", Insn], None]
_HANDLERS: Final[dict[str, _Handler]] = {
    "SERVC": _servc,
    "STSI": _stsi,
    "SIGP": _sigp,
    "DIAG": _diag,
    "UVC": _uvc,
    "SIE": _sie,
    **{
        n: _channel
        for n in (
            "CSCH", "HSCH", "MSCH", "SSCH", "STSCH", "TSCH", "TPI", "SAL", "RSCH", "STCRW", "STCPS", "RCHP",
            "SCHM", "CHSC", "XSCH",
        )
    },  # fmt: skip
}

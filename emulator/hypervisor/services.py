"""The hypervisor's services both kinds of guest share: virtio notifications, SIGP, DIAGNOSE 0x308."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.hw import sigp as sigp_mod
from emulator.hw.cpu import OPERATING, STOPPED
from emulator.hw.diag import diag308_check, diag500_function

if TYPE_CHECKING:
    from emulator.hw.sie import Sie
    from emulator.hypervisor.kvm import Vcpu, Vm
    from firmware.uv_gate import UvGate

__all__ = ["GuestServices"]


class GuestServices:
    """The intercept handlers' shared services (a base class of ``kvm.Hypervisor``)."""

    engine: Sie
    ultravisor: UvGate | None

    def virtio_notify(self, vm: Vm, function: int, device_id: int, queue: int, cookie: int) -> int:
        """DIAGNOSE 0x500: a notification for a device; returns the GR2 result (0 or -errno). A function code
        other than 0 and 3 is a specification exception (``diag500_function``)."""
        rc = diag500_function(function, device_id, vm.memory_size)
        if rc is not None:  # the s390-virtio transport's notification (no device uses it)
            return rc
        if vm.channel.has_subchannel(device_id):  # virtio-ccw: GR2 the subchannel's id, GR3 the queue
            return vm.channel.notify(device_id, queue) & 0xFFFFFFFFFFFFFFFF
        dev = vm.devices.get(device_id & 0xFFFFFFFF)
        if dev is None:
            return -22 & 0xFFFFFFFFFFFFFFFF  # no device behind this id: -EINVAL, as QEMU answers
        return dev.notify(vm, queue, cookie) & 0xFFFFFFFFFFFFFFFF

    def sigp(self, vm: Vm, v: Vcpu, order: int, target: int, param: int) -> tuple[int, int | None]:
        """SIGP among the vCPUs of one VM (normal guests: on their hardware CPUs)."""
        cpus = {a: x.cpu for a, x in vm.vcpus.items()}
        for x in vm.vcpus.values():  # the SD's stopped flag is the hypervisor's record of the CPU state
            x.cpu.state = OPERATING if x.operating else STOPPED
            x.cpu.set_psw(*x.psw)
        cc, status = sigp_mod.sigp(v.cpu, order, target, param, cpus, vm.memory_size, vm.memory.write)
        taken = vm.vcpus.get(target) if cc == 0 and order in sigp_mod.TAKES_OVER else None
        if taken is not None:
            taken.disabled_wait = None
        for x in vm.vcpus.values():
            x.set_operating(x.cpu.state == OPERATING)
            x.set_psw(*x.cpu.psw)
            self.engine.forget(x.cpu)
        return cc, status

    def diag308(self, vm: Vm, v: Vcpu, r1: int, rx: int, rx1: int, subcode: int) -> None:
        """DIAGNOSE 0x308 (IPL functions) of a normal guest; secure IPL (8, 9, 10) goes to the PV code."""
        cpu = v.cpu
        diag308_check(subcode, r1, rx, vm.memory_size, unpack=self.ultravisor is not None)
        if subcode == 5:
            length = int.from_bytes(cpu.read_real(rx, 4), "big")
            if not 8 <= length <= 0x1000:
                cpu.set_gpr(r1 + 1, 0x0402)
            else:
                vm.ipl_parameters = cpu.read_real(rx, length)
                cpu.set_gpr(r1 + 1, 0x0001)
            return
        if subcode == 6:
            if vm.ipl_parameters is None:
                cpu.set_gpr(r1 + 1, 0x0102)
            else:
                cpu.write_real(rx, vm.ipl_parameters)
                cpu.set_gpr(r1 + 1, 0x0001)
            return
        if subcode in (8, 9, 10):
            from emulator.hypervisor.pv_ipl import diag308_secure

            diag308_secure(vm, v, r1, rx, subcode)
            return
        if subcode in (0, 1, 3):
            if subcode == 3:  # load clear: storage cleared and the program IPLed again (0 and 1 keep storage)
                vm.memory.fill(0, vm.memory_size)
                if vm.program_path is not None:
                    vm.load(vm.program_path, vm._cmdline)  # noqa: SLF001
                    return
            for x in vm.vcpus.values():
                x.cpu.reset_cpu()
                x.set_operating(False)
            short = vm.memory.read_u64(0)
            mask = (short & 0xFFFFFFFF00000000) ^ (1 << 51)
            v0 = vm.vcpus[0]
            v0.set_psw(mask | (short & 0x80000000), short & 0x7FFFFFFF)
            v0.set_operating(True)

"""Booting Secure Execution images: an emulated host with its Ultravisor, a VM, and the report of the boot.

``SecureHost`` is the composition root of a host that runs secure guests: host memory, the TOD clock,
the Ultravisor with one machine's host keys (``firmware.machine_identity``), and the hypervisor. ``boot``
loads an SE image into a VM as a flat memory image (QEMU ``-kernel``): its plaintext stage3a asks for the
secure IPL with DIAGNOSE 0x308 subcodes 8 and 10, the hypervisor protects the VM (Set Secure Parameters,
Unpack, Verify; ``emulator.hypervisor.pv``), and the guest continues in secure mode. If protecting fails,
``BootResult.failure`` names the step and the Ultravisor's rc/rrc with their meaning.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from emulator.errors import HwError, HypervisorError, LoadError, SecureStorageAccess
from emulator.hw.diag import WATCHDOG_ACTIONS, WATCHDOG_MODELS
from emulator.hw.hardware import Hardware
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import MachineInfo
from emulator.hw.tod import TodClock
from emulator.hypervisor.kvm import MIB, Hypervisor, Vm, VmResult
from emulator.hypervisor.pv import PV_CMD_NAMES
from emulator.hypervisor.pv_ipl import ProtectFailure
from emulator.hypervisor.virtio import BlockDevice, ConsoleDevice
from emulator.hypervisor.watchdog import add_watchdog

__all__ = ["SecureHost", "BootInterrupt", "BootResult", "TrapReport", "boot", "load_image",
           "build_demo_image", "host_memory_for", "DEMO_IMAGE", "HOST_MEMORY", "GUEST_MEMORY"]  # fmt: skip

#: Host memory of the emulated machine: the Ultravisor's base storage must lie above 2 GiB (4.1); an
#: anonymous mapping costs only the pages touched.
HOST_MEMORY: Final = 4 << 30
GUEST_MEMORY: Final = 128 * MIB


def host_memory_for(guest_memory: int) -> int:
    """Host memory for a guest of ``guest_memory`` bytes: ``HOST_MEMORY``, or the guest's size and 1 GiB
    for the host's own (the Ultravisor's storage, the gmap, donated storage), in whole GiB."""
    return max(HOST_MEMORY, ((guest_memory + (1 << 30) - 1) >> 30 << 30) + (1 << 30))
_IMAGES: Final = Path(__file__).resolve().parents[2] / "guests" / "images"
#: The bundled secure demo image: ``guests/images/secure_demo.elf`` as an SE image for the bundled machine
#: zuv-demo, made reproducible by a fixed seed (``build_demo_image`` rebuilds it byte for byte).
DEMO_IMAGE: Final = _IMAGES / "secure_demo.se"
DEMO_KERNEL: Final = _IMAGES / "secure_demo.elf"
DEMO_SEED: Final = "zuv secure demo image v1"
DEMO_MACHINE: Final = "zuv-demo"
_SECRET_LINE: Final = re.compile(rb"secret page at (0x[0-9a-fA-F]+)")


class SecureHost:
    """An emulated IBM Z machine running zuv's hypervisor with an Ultravisor for one machine identity.

    Args:
        machine: a bundled machine name (``zuv-demo``, ``zuv-other``) or a machine directory.
        memory: host memory in bytes (more than 2 GiB: the Ultravisor's storage lies above 2 GiB).
        deterministic: deterministic TOD clock.
        seed: seed of the Ultravisor's random numbers (handles, UIDs; never its keys); None: the OS's.
    """

    def __init__(
        self, machine: str = "zuv-demo", memory: int = HOST_MEMORY, deterministic: bool = False,
        seed: int | None = None,
    ) -> None:  # fmt: skip
        from firmware.machine_identity import MachineIdentityError
        from firmware.uv_machine import machine_ultravisor

        self.memory = PhysicalMemory(memory)
        self.clock = TodClock(deterministic=deterministic)
        rng = random.Random(seed).randbytes if seed is not None else None
        try:
            self.identity, self.uv = machine_ultravisor(self.memory, machine, rng=rng)
        except MachineIdentityError as e:
            raise HypervisorError(str(e)) from None
        self.hv = Hypervisor(Hardware(self.memory), self.clock, MachineInfo(), self.uv)

    @property
    def name(self) -> str:
        """The machine's name."""
        return self.identity.name


@dataclass
class TrapReport:
    """What the hypervisor got when it tried to read the guest's secret page."""

    gaddr: int
    trapped: bool
    code: int = 0
    message: str = ""
    seen: bytes = b""  # what the host read after exporting the page (ciphertext)
    secret_visible: bool = False


@dataclass
class BootResult:
    """The outcome of a boot: the run, the console, a secure-IPL failure, the host's read attempt."""

    run: VmResult
    console: bytes
    secure: bool
    failure: ProtectFailure | None = None
    trap: TrapReport | None = None
    intercepts: dict[str, int] = field(default_factory=dict)
    #: seconds the VM's teardown took after the guest stopped (KVM_PV_DISABLE: Destroy Secure Storage of
    #: every page that may still be secure, then the memory slot)
    teardown_s: float = 0.0

    def failure_text(self) -> str:
        """Which check failed, for the user."""
        f = self.failure
        if f is None:
            return ""
        return f"secure boot failed in {PV_CMD_NAMES.get(f.cmd, f.cmd)}: {f.message}"



class BootInterrupt:
    """Stops a ``boot`` from another thread (Ctrl-C): before the VM runs, between its runs or during one.

    Call it (thread-safe) with the reason; the boot then ends with that reason, the VM torn down as usual.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.vm: Vm | None = None

    def __call__(self, reason: str = "interrupted (Ctrl-C)") -> None:
        """Stop the boot with ``reason`` (any thread)."""
        self.reason = reason
        vm = self.vm
        if vm is not None and not vm.destroyed:
            vm.request_halt(reason)


def build_demo_image(machines: tuple[str, ...] = (DEMO_MACHINE,), seed: str = DEMO_SEED) -> bytes:
    """The bundled demo image: the secure demo guest for the host keys of ``machines`` (pvimg create)."""
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    keys = [MachineIdentity.bundled(m).public_key for m in machines]
    return build_image(kernel=DEMO_KERNEL.read_bytes(), host_keys=keys, rng=DeterministicRng(seed)).data


def load_image(vm: Vm, image: str | Path) -> int:
    """Load an image into ``vm`` as QEMU ``-kernel`` would; returns the start address.

    A file that starts like an SE image but is cut short is refused first (``pvimg.check_layout``):
    loaded, it would run into zeros.

    Raises:
        LoadError: a truncated SE image, or what the loader refuses.
    """
    from emulator.image.pvimg import ImageError, check_layout

    try:
        check_layout(image)
    except ImageError as e:
        raise LoadError(str(e)) from None
    return vm.load(str(image))


def read_secret_attempt(vm: Vm, gaddr: int, known: bytes = b"") -> TrapReport:
    """The hypervisor tries to read a guest page: first as a plain host access (PGM 0x3D when the page is
    secure), then the way Linux makes a page accessible (export through the Ultravisor) and reads again."""
    host = vm.hv.host
    try:
        data = host.read(vm.mso + gaddr, 64)
        return TrapReport(gaddr, False, seen=data, secret_visible=bool(known) and known in data)
    except SecureStorageAccess as e:
        report = TrapReport(gaddr, True, e.code, str(e))
    report.seen = vm.read_guest(gaddr, 64)  # exports the page: the host now holds its ciphertext
    report.secret_visible = bool(known) and known in report.seen
    return report


def boot(
    host: SecureHost,
    image: str | Path,
    memory: int = GUEST_MEMORY,
    console_out: Callable[[bytes], None] | None = None,
    attack: bool = True,
    time_limit: float | None = 120.0,
    report: Callable[[TrapReport], None] | None = None,
    interrupt: BootInterrupt | None = None,
    deterministic: bool = False,
    cpus: int = 1,
    cpu_ids: Sequence[int] = (),
    drives: tuple[str, ...] = (),
    on_vm: Callable[[Vm], None] | None = None,
    devices: tuple[str, ...] = (),
    watchdog: str | None = None,
    watchdog_action: str = "reset",
    name: str | None = None,
    uuid: bytes | None = None,
) -> BootResult:
    """Boot an SE image in a new VM of ``host`` and run it until its CPUs stop.

    With ``attack``, when the guest prints ``secret page at 0x...`` the hypervisor tries to read that page
    (``TrapReport``, also handed to ``report`` at once) and then lets the guest go on. ``interrupt`` stops the
    boot from another thread (its reason becomes the run's). ``deterministic``: the VM runs in count-based
    slices (``Vm.run``), which with a deterministic ``host`` clock makes the TOD advance with executed
    instructions. ``cpus``: the VM's vCPUs (the first IPLs, the guest starts the others with SIGP, each a
    secure CPU once the VM is secure). ``cpu_ids``: the addresses of more vCPUs, added stopped after those
    (QEMU's ``-device s390x-cpu,core-id=N``). ``drives``: files behind virtio-blk-ccw disks on subchannels
    0.0.0000, 0.0.0001, ... (QEMU's ``-drive``; a secure guest's I/O goes through pages it shared).
    ``on_vm``: called with the VM once it is loaded, before it runs. ``devices``: channel devices as QEMU's
    ``-device`` strings (``virtio-net-ccw``, ``virtio-blk-ccw,file=PATH``), behind the subchannels after the
    drives'. ``watchdog``: ``"diag288"`` gives the VM QEMU's DIAGNOSE 0x288 watchdog, whose expiry does
    ``watchdog_action`` (``emulator.hw.diag.WATCHDOG_ACTIONS``; ``emulator.hypervisor.watchdog``). ``name``
    and ``uuid`` (16 bytes): the VM's name and UUID in STSI 3.2.2, as QEMU's ``-name`` and ``--uuid``.

    Raises:
        LoadError: the image cannot be read or does not fit, or a device cannot be made.
        HypervisorError: an address of ``cpu_ids`` is in use or out of range.
        ValueError: an unknown watchdog model or action.
    """
    if watchdog is not None and watchdog not in WATCHDOG_MODELS:
        raise ValueError(f"unknown watchdog {watchdog!r} (one of {', '.join(WATCHDOG_MODELS)})")
    if watchdog_action not in WATCHDOG_ACTIONS:
        raise ValueError(f"unknown watchdog action {watchdog_action!r} ({', '.join(WATCHDOG_ACTIONS)})")
    vm = host.hv.create_vm(memory, cpus, console_out=console_out, name=Path(image).name)
    if name is not None or uuid is not None:
        vm.info = dataclasses.replace(vm.info, vm_name=vm.info.vm_name if name is None else name,
                                      vm_uuid=vm.info.vm_uuid if uuid is None else uuid)  # fmt: skip
    try:
        for addr in cpu_ids:
            vm.add_vcpu(addr)
    except HypervisorError:
        vm.destroy()
        raise
    if interrupt is not None:
        interrupt.vm = vm
    try:
        vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001 - the VM's console sink
        vm.add_device(BlockDevice(1 << 20))
        for path in drives:
            try:
                vm.channel.add_disk(path)
            except HwError as e:
                raise LoadError(str(e)) from None
        for spec in devices:
            try:
                vm.channel.add_device(spec)
            except HwError as e:
                raise LoadError(str(e)) from None
        if watchdog is not None:
            add_watchdog(vm, watchdog_action)
        load_image(vm, image)
        if on_vm is not None:  # the caller's hook on the VM before it runs (console input: queue_console)
            on_vm(vm)
        trap = None

        def interrupted() -> bool:
            return interrupt is not None and interrupt.reason is not None

        def stop() -> bool:  # checked after every SIE exit; a halt request also ends the SIE entry
            if interrupted():
                return True
            return attack and _SECRET_LINE.search(bytes(vm.console)) is not None and vm.pv is not None

        res = vm.run(time_limit=time_limit, stop_when=stop, deterministic=deterministic)
        if interrupt is not None and interrupt.reason is not None:
            res.reason, res.clean = interrupt.reason, False
        elif res.reason == "stop condition met":
            m = _SECRET_LINE.search(bytes(vm.console))
            assert m is not None
            trap = read_secret_attempt(vm, int(m.group(1), 16), b"zuv secret:")
            if report is not None:
                report(trap)
            res = vm.run(time_limit=time_limit, stop_when=interrupted, deterministic=deterministic)
            if interrupt is not None and interrupt.reason is not None:
                res.reason, res.clean = interrupt.reason, False
        secure = vm.pv is not None
        out = BootResult(res, bytes(vm.console), secure, vm.pv_failure, trap, dict(res.intercepts))
    finally:
        t = time.perf_counter()
        vm.destroy()
    out.teardown_s = time.perf_counter() - t
    return out

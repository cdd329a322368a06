"""A VM's channel subsystem: virtio-ccw devices behind subchannels, the guest's channel-subsystem
instructions (a secure guest's control blocks through the SIDA), and its I/O interruptions.

The channel subsystem is ``emulator.hw.css`` on the guest's absolute storage as the host reaches it
(``GuestChannelStorage``: guest address A is host address ``mso + A``, every access through the host
view). So a channel program, a virtqueue or a data buffer in a page the guest shared (Set Shared Access) is
read and written as usual, and one in a secure page is never touched: the access is refused (PGM 0x3D to
the host, nothing exported) and the architected result follows, a protection check ending the channel
program, or a virtio device that sets DEVICE_NEEDS_RESET and stops (``emulator.hw.virtio_ccw``). A secure
guest's Linux puts its CCWs into its shared DMA pool and its virtqueues and data into SWIOTLB bounce
buffers, so its I/O works without the host ever seeing a secure page.

Storage keys: the channel subsystem checks key-controlled protection against keys it keeps per guest frame
(key 0, no fetch protection, and the reference and change bits its own accesses record), since the host
has no view of the guest's storage keys (a secure guest's are the Ultravisor's); a program started with
ORB key 0, as Linux and QEMU's BIOS start theirs, is never refused by key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.errors import ProgramException
from emulator.hw import chsc
from emulator.hw.css import CcwDevice, ChannelSubsystem, Subchannel
from emulator.hw.host_view import HostView
from emulator.hw.memory import PAGE_SHIFT
from emulator.hw.virtio_ccw import VirtioBlk, VirtioCcwDevice, make_device, notify

if TYPE_CHECKING:
    from emulator.hypervisor.sida import Sida

__all__ = ["GuestChannelStorage", "VmChannel", "IO_OPCODES"]

#: the channel-subsystem instructions by the IPA a secure guest's intercept (0x68) shows
IO_OPCODES: Final = {
    0xB230: "CSCH", 0xB231: "HSCH", 0xB232: "MSCH", 0xB233: "SSCH", 0xB234: "STSCH", 0xB235: "TSCH",
    0xB236: "TPI", 0xB237: "SAL", 0xB238: "RSCH", 0xB239: "STCRW", 0xB23A: "STCPS", 0xB23B: "RCHP",
    0xB23C: "SCHM", 0xB25F: "CHSC", 0xB276: "XSCH",
}  # fmt: skip
PGM_OPERAND: Final = 0x15
ORB_SIZE: Final = 32
SCHIB_SIZE: Final = 52


class GuestChannelStorage:
    """A guest's absolute storage as its channel subsystem and devices reach it: ``size``, ``check``,
    ``read`` and ``write`` of ``HostView`` at guest addresses (host address ``mso + A``). A secure page
    raises ``SecureStorageAccess`` (host address) and is never exported: the device sees no ciphertext
    either. Sealed like ``HostView``: the view is held in the methods' closures only."""

    __slots__ = ("size", "check", "read", "write")

    def __init__(self, host: HostView, mso: int, size: int) -> None:
        self.size = size
        host_check, host_read, host_write = host.check, host.read, host.write

        def _inside(addr: int, length: int) -> None:
            if addr < 0 or length < 0 or addr + length > size:
                from emulator.errors import HwError

                raise HwError(f"guest range {addr:#x}+{length:#x} is outside the guest's storage ({size:#x})")

        def check(addr: int, length: int, write: bool) -> None:
            """Raise what an access of the range would raise, without the access."""
            _inside(addr, length)
            host_check(mso + addr, length, write)

        def read(addr: int, length: int) -> bytes:
            """Read guest absolute storage as the host (a secure page: ``SecureStorageAccess``)."""
            _inside(addr, length)
            return host_read(mso + addr, length)

        def write(addr: int, data: bytes | bytearray | memoryview) -> None:
            """Write guest absolute storage as the host (a secure page: ``SecureStorageAccess``)."""
            _inside(addr, len(data))
            host_write(mso + addr, data)

        self.check, self.read, self.write = check, read, write


class VmChannel:
    """The channel subsystem of one VM and its devices.

    Args:
        host: the host view of the machine's storage.
        mso: the guest's origin in host storage.
        size: the guest's storage size.
    """

    def __init__(self, host: HostView, mso: int, size: int) -> None:
        self.storage = GuestChannelStorage(host, mso, size)
        self.css = ChannelSubsystem(self.storage, bytearray(size >> PAGE_SHIFT))  # type: ignore[arg-type]

    def attach(self, device: CcwDevice) -> Subchannel:
        """Put a device behind the next free subchannel (0.0.0000, 0.0.0001, ...)."""
        return self.css.attach(device)

    def add_disk(self, path: str, readonly: bool = False) -> VirtioBlk:
        """A virtio-blk disk backed by ``path`` (QEMU's ``-drive``), offering VIRTIO_F_ACCESS_PLATFORM as
        QEMU's devices do for a protected guest (a secure Linux refuses a device without it)."""
        dev = VirtioBlk(self.storage, path, readonly=readonly, access_platform=True)  # type: ignore[arg-type]
        self.attach(dev)
        return dev

    def add_device(self, spec: str) -> CcwDevice:
        """A device from a QEMU-like ``-device`` string (``virtio-net-ccw[,mac=M]``,
        ``virtio-blk-ccw,file=PATH[,readonly=on]``) behind the next free subchannel, offering
        VIRTIO_F_ACCESS_PLATFORM as ``add_disk``'s; ``HwError`` for a bad string."""
        dev = make_device(spec, self.storage, access_platform=True)  # type: ignore[arg-type]
        self.attach(dev)
        return dev

    def close(self) -> None:
        """Close the devices' backing files."""
        for sch in self.css.subchannels:
            close = getattr(sch.device, "close", None)
            if close is not None:
                close()

    def notify(self, sid: int, queue: int) -> int:
        """DIAGNOSE 0x500 function 3 naming a subchannel: process the queue (0, or -EINVAL)."""
        return notify(self.css, sid & 0xFFFFFFFF, queue)

    def has_subchannel(self, sid: int) -> bool:
        """True if ``sid`` names one of this channel subsystem's virtio subchannels."""
        if (sid & 0xFFFFFFFF) >> 16 != 1:
            return False
        sch = self.css.subchannel(sid & 0xFFFFFFFF)
        return sch is not None and isinstance(sch.device, VirtioCcwDevice)

    # -- I/O interruptions ------------------------------------------------------------------------------

    def deliverable(self, cr6: int) -> bool:
        """An I/O interruption is pending in a subclass ``cr6`` enables."""
        return self.css.io_deliverable(cr6)

    def take(self, cr6: int) -> tuple[int, int, int] | None:
        """Take the pending I/O interruption ``cr6`` enables: (subsystem id, parameter, identification)."""
        return self.css.take_io(cr6)

    def request_bits(self) -> int:
        """CR6 subclass bits of the pending I/O interruptions (the SIE's I/O request)."""
        return self.css.pending_subclasses()

    # -- a secure guest's instructions ------------------------------------------------------------------

    def secure_instruction(self, ipa: int, regs: list[int], sida: Sida, cr6: int) -> int | None:
        """Carry out a secure guest's channel-subsystem instruction (interception 0x68, ``ipa``) with GR1
        (and GR2) from ``regs`` and its control block in ``sida`` (offset 0), as QEMU's ``ioinst.c`` does
        for a protected guest; returns the condition code (None: the instruction sets none). Raises
        ``ProgramException`` (operand exception) for an invalid block or subsystem id."""
        css = self.css
        name = IO_OPCODES.get(ipa)
        sid = regs[1] & 0xFFFFFFFF
        if name in ("CSCH", "HSCH", "MSCH", "SSCH", "STSCH", "TSCH", "RSCH", "XSCH"):
            css.check_sid(sid)
        if name == "SSCH":
            return css.ssch(sid, sida.read(0, ORB_SIZE))
        if name == "MSCH":
            return css.msch(sid, sida.read(0, SCHIB_SIZE))
        if name in ("STSCH", "TSCH"):
            cc, block = css.stsch(sid) if name == "STSCH" else css.tsch(sid)
            if block is not None:
                sida.write(0, block)
            return cc
        if name in ("CSCH", "HSCH", "RSCH", "XSCH"):
            return {"CSCH": css.csch, "HSCH": css.hsch, "RSCH": css.rsch, "XSCH": css.xsch}[name](sid)
        if name == "TPI":
            taken = css.take_io(cr6)
            if taken is None:
                return 0
            s, param, ident = taken
            sida.write(0, s.to_bytes(4, "big") + param.to_bytes(4, "big") + ident.to_bytes(4, "big"))
            return 1
        if name == "STCRW":
            word = css.stcrw()
            sida.write(0, (word or 0).to_bytes(4, "big"))
            return 1 if word is None else 0
        if name == "STCPS":
            sida.write(0, bytes(32))  # no channel path is ever active between instructions
            return None
        if name == "RCHP":
            return css.rchp(regs[1])
        if name == "SCHM":
            css.schm(regs[1], regs[2])
            return None
        if name == "SAL":
            css.sal(regs[1])
            return None
        if name == "CHSC":
            length = int.from_bytes(sida.read(0, 2), "big")
            if length < 16 or length > 4088 or length & 7:
                raise ProgramException(PGM_OPERAND, why=f"CHSC request length {length:#x}")
            response = chsc.call(css, sida.read(0, length))
            sida.write(length, response[: 0x1000 - length])
            return 0
        raise ProgramException(PGM_OPERAND, why=f"no channel-subsystem instruction has IPA {ipa:#06x}")

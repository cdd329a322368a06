"""A secure configuration of an SE image set up through the Ultravisor but not run, for tools and tests.

It is the guest side of ``pvattest perform`` / ``pvsecret add`` on an emulated machine.

``LocalSecureGuest`` does what the hypervisor's secure IPL does (Create Configuration and CPU, Set
Secure Configuration Parameters with the image's SE header, Unpack of every component page, Verify),
then issues guest UVCs as the secure guest would: blocks and buffers live in guest storage and are
reached through the Ultravisor's view of that guest (``SecureGuestView``), pages the guest has not
touched yet are imported by the host first, exactly as a PGM 0x3E would make KVM do.
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path
from typing import Any, Final

from emulator.errors import ProgramException
from emulator.hw.memory import PAGE_SIZE, PhysicalMemory
from emulator.hypervisor.uvclient import ConfigSetup, HostArena, UvClient
from emulator.image.pvimg import SeImage, parse_image
from firmware import attestation as A
from firmware import uv_blocks as B
from firmware.machine_identity import BUNDLED, MachineIdentity
from firmware.uv import Ultravisor, UvCaller
from firmware.uv_attest import AttestationKeys
from firmware.uv_codes import QueryValues, command

__all__ = ["LocalSecureGuest", "UltravisorRefused", "load_machine", "machine_directory"]

_MEMORY: Final = 0x84000000  # the UV's base storage must lie above 2 GiB
_UV_BASE: Final = 0x80000000
_MIB: Final = 1 << 20


class UltravisorRefused(Exception):
    """A guest UVC ended with an rc other than 0x0001; the message names the command, rc and rrc."""

    def __init__(self, blk: Any) -> None:
        from firmware.uv_codes import describe

        self.rc, self.rrc = blk.header.rc, blk.header.rrc
        super().__init__(f"the Ultravisor refused: {describe(blk.header.cmd, blk.header.rc, blk.header.rrc)}")


def machine_directory(machine: str) -> Path:
    """The directory of a bundled machine name, or the given directory."""
    if machine in BUNDLED and not Path(machine).is_dir():
        return MachineIdentity.bundled_dir(machine)
    return Path(machine)


def load_machine(machine: str) -> tuple[MachineIdentity, AttestationKeys | None]:
    """A machine's identity and attestation keys (None if it has none)."""
    d = machine_directory(machine)
    ident = MachineIdentity.load(d)
    return ident, (AttestationKeys.load(d) if AttestationKeys.present(d) else None)


class LocalSecureGuest:
    """One SE image unpacked into a secure configuration on an emulated machine.

    Args:
        machine: bundled machine name or machine directory (host keys, attestation keys).
        image: the SE image bytes (``pvimg create`` output).
        workspace: guest storage above the image for the caller's blocks and buffers.
        seed: seed of the Ultravisor's randomness (handles, CUID); None: the OS's.
        query: the Ultravisor's Query values (default: zuv's machine).

    Raises:
        UvCallError: the machine refuses the image (wrong host key, tampered image); the message
            names the step's rc/rrc.
    """

    def __init__(
        self, machine: str, image: bytes, *, workspace: int = _MIB, seed: int | None = None,
        query: QueryValues | None = None,
    ) -> None:  # fmt: skip
        self.identity, keys = load_machine(machine)
        self.image: SeImage = parse_image(image)
        self.mem = PhysicalMemory(_MEMORY)
        rng = random.Random(seed).randbytes if seed is not None else None
        kw: dict[str, Any] = {"rng": rng} if rng is not None else {}
        if query is not None:
            kw["query"] = query
        self.uv = Ultravisor(self.mem, host_keys=self.identity.host_keys, attestation_keys=keys, **kw)
        view = self.mem.host_view()
        self.client = UvClient(self.uv, view, HostArena(0x100000, _UV_BASE - _MIB))
        self.client.init(_UV_BASE)
        end = max(len(image), PAGE_SIZE)
        self.workspace = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        msl = (self.workspace + workspace + _MIB - 1) // _MIB * _MIB
        self.setup: ConfigSetup = self.client.create_guest(msl, cpus=1)
        for g in range(0, len(image), PAGE_SIZE):
            self.client.write(self.setup.guest_frames[g], image[g : g + PAGE_SIZE])
        hdr_addr = self.client.arena.alloc(2 * PAGE_SIZE)
        self.client.write(hdr_addr, self.image.header)
        h = self.setup.handle
        self.client.check(
            "set_sec_conf_params",
            guest_handle=h,
            sec_header_origin=hdr_addr,
            sec_header_len=len(self.image.header),
        )
        for comp in self.image.ipib.components:
            for off in range(0, (comp.len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1), PAGE_SIZE):
                self.client.check(
                    "unpack_img", guest_handle=h, gaddr=comp.addr + off, tweak=(comp.tweak_pref, off)
                )
        self.client.check("verify_img", handle=h)
        self.view = self.uv.guest_view(h)
        self.caller = UvCaller("guest", h, self.setup.cpu_handles[0])
        self._next = self.workspace

    @property
    def cuid(self) -> bytes:
        """The configuration unique ID the Ultravisor gave this instance."""
        cfg = self.uv.secure_config(self.setup.handle)
        assert cfg is not None
        return bytes(cfg.uid)

    def alloc(self, length: int, align: int = 8) -> int:
        """A guest address for ``length`` bytes in the workspace (bump allocation)."""
        addr = (self._next + align - 1) & ~(align - 1)
        if addr + length > self.setup.msl:
            raise MemoryError("guest workspace exhausted")
        self._next = addr + length
        return addr

    def _as_guest(self, fn):  # noqa: ANN001, ANN202 - a retry loop around one guest access
        for _ in range(64):
            try:
                return fn()
            except ProgramException as e:
                if e.code != 0x3E or e.teid is None:
                    raise
                self.client.check("conv_to_sec_stor", guest_handle=self.setup.handle, gaddr=e.teid & ~0xFFF)
        raise RuntimeError("guest access did not settle")

    def write(self, gaddr: int, data: bytes) -> None:
        """Store into guest storage as the guest."""
        self._as_guest(lambda: self.view.write(gaddr, bytes(data)))

    def read(self, gaddr: int, length: int) -> bytes:
        """Read guest storage as the guest."""
        out: bytes = self._as_guest(lambda: self.view.read(gaddr, length))
        return out

    def put(self, data: bytes, align: int = 8) -> int:
        """Copy data into the workspace; returns its guest address."""
        addr = self.alloc(max(len(data), 1), align)
        self.write(addr, data)
        return addr

    def uvc(self, cmd: int | str, *, at: int | None = None, length: int | None = None, **fields: Any) -> Any:
        """Build a UVCB in guest storage (at ``at`` or fresh workspace) and execute UVC as the guest; returns
        the block as stored afterwards."""
        c = command(cmd)
        blk = self.client.build(c.code, length=length, **fields)
        raw = bytes(blk)
        if at is None:
            at = self.alloc(len(raw))
        self.write(at, raw)
        cb = self.view.control_block(at)
        self._as_guest(lambda: self.uv.call(self.caller, cb))
        return B.parse(type(blk), self.read(at, ctypes.sizeof(type(blk))))

    def attest(
        self, request: A.Exchange, user: bytes = b"", evidence: bool = False
    ) -> tuple[bytes, bytes | None]:
        """Perform a pvattest request as this guest (Retrieve Attestation Measurement, or zuv's 0x1F20 with
        ``evidence``): the response exchange file and the evidence (None without ``evidence``).

        Raises:
            UltravisorRefused: the UVC's rc was not 0x0001.
        """
        meas, add = self.alloc(max(request.exp_measurement, 64)), self.alloc(max(request.exp_additional, 8))
        ev = self.alloc(16384)
        blk = self.uvc(
            "retr_attest_evidence" if evidence else "retr_attest", arcb_addr=self.put(request.arcb),
            meas_len=request.exp_measurement, meas_addr=meas, add_data_len=request.exp_additional,
            add_data_addr=add, user_data_len=len(user), user_data=user, reserved168=(ev, 16384 << 32, 0, 0),
        )  # fmt: skip
        if blk.header.rc != 0x0001:
            raise UltravisorRefused(blk)
        add_len = A.additional_data_size(A.parse_arcb(request.arcb).paf)
        out = A.exchange_response(
            request.arcb, self.read(meas, 64), self.read(add, add_len) if add_len else None, user or None,
            bytes(blk.config_uid),
        )  # fmt: skip
        return out, (self.read(ev, blk.reserved168[1] & 0xFFFFFFFF) if evidence else None)

    def destroy(self) -> None:
        """Tear the configuration down (KVM_PV_DISABLE)."""
        self.client.destroy_guest(self.setup)

"""Exception roots of the host side: one per layer, so callers catch exactly the layer they call."""

from __future__ import annotations

__all__ = [
    "EmulatorError",
    "HwError",
    "LoadError",
    "MachineError",
    "HypervisorError",
    "SecureStorageAccess",
    "ProgramException",
]


class EmulatorError(Exception):
    """Root of every error the emulator raises on purpose (never a Python bug)."""


class HwError(EmulatorError):
    """The emulated hardware was misused or cannot do what was asked (a caller's bug, or a bad config)."""


class LoadError(EmulatorError):
    """A program or image cannot be loaded: the message says what is wrong and where."""


class MachineError(EmulatorError):
    """The machine API was misused (bad state, bad argument)."""


class HypervisorError(EmulatorError):
    """The KVM-like hypervisor failed an operation; carries the UV rc/rrc when one caused it."""

    def __init__(self, msg: str, rc: int = 0, rrc: int = 0) -> None:
        super().__init__(msg)
        self.rc = rc
        self.rrc = rrc


class SecureStorageAccess(EmulatorError):
    """A host-side access touched a secure or donated frame: PGM 0x3D in the architecture.

    Raised by host views of memory (the hypervisor's Python helpers, device models, attack scripts)
    instead of letting the access happen. ``teid`` is the translation-exception identification the
    hardware would store: the failing page address with bit 61 (0x4, "address valid") set.
    """

    code = 0x3D

    def __init__(self, addr: int, write: bool) -> None:
        self.addr = addr
        self.write = write
        self.teid = (addr & ~0xFFF) | 0x4 | (0x400 if write else 0x800)
        kind = "store" if write else "fetch"
        super().__init__(
            f"secure-storage access (PGM 0x3D): host {kind} at absolute {addr:#x} hits a secure frame"
        )


class ProgramException(EmulatorError):
    """A program interruption to deliver to the CPU that caused it (raised by instruction emulation).

    ``code`` is the program-interruption code (0x04 protection, 0x05 addressing, 0x06 specification,
    0x3D secure-storage access, ...); ``teid`` the translation-exception identification to store at
    0xA8 for access exceptions (None: not stored). ``ilc`` overrides the instruction length code (0 for a
    specification exception recognised when an invalid PSW is loaded). The CPU model decides from the
    code whether the old PSW points at or after the instruction (``machine.md`` section 3).
    """

    def __init__(self, code: int, teid: int | None = None, ilc: int | None = None, why: str = "") -> None:
        self.code = code
        self.teid = teid
        self.ilc = ilc
        self.why = why
        super().__init__(f"program exception {code:#06x}" + (f": {why}" if why else ""))

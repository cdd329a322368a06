"""The Ultravisor's records: secure configurations and CPUs, CPU states and resets, a command's outcome."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from emulator.hw.registers import decode_extended
from emulator.hw.seal import SealedLog
from firmware.uv_codes import Rc
from firmware.uv_storage import PageSealer

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


CPU_STATE_OPR: Final = 1
CPU_STATE_STP: Final = 2
CPU_STATE_CHKSTP: Final = 3
CPU_STATE_OPR_LOAD: Final = 5
_U64: Final = struct.Struct(">Q")
_ARS: Final = struct.Struct(">16I")
_FPRS: Final = struct.Struct(">" + "Q8x" * 16)
#: bytes of a secure CPU's vector and access registers as the Ultravisor keeps them (``SecureCpu.ext``)
EXT_SIZE: Final = 32 * 16 + 16 * 4


# -- state -------------------------------------------------------------------------------------------------


@dataclass
class SecureCpu:
    """A secure CPU: its handle, donated storage and the architected state the UV keeps for it."""

    handle: int
    config: SecureConfig
    num: int
    stor_origin: int
    state_origin: int
    state: int = CPU_STATE_STP
    psw: tuple[int, int] = (0, 0)
    gprs: list[int] = field(default_factory=lambda: [0] * 16)
    crs: list[int] = field(default_factory=lambda: _initial_crs())
    #: ``ext`` in its own form, or (``_ext_raw``) as the engine keeps it, copied so at the last SIE exit and
    #: converted at the first read (most exits are followed by an entry that finds them in the hardware CPU)
    _ext: bytes = field(default=bytes(EXT_SIZE), repr=False)
    _ext_raw: bytes | None = field(default=None, repr=False)
    prefix: int = 0
    fpc: int = 0
    todpr: int = 0
    cputm: int = 0
    ckc: int = 0
    #: set by Set CPU State OPR_LOAD: the PSW was loaded and the CPU may run
    psw_loaded: bool = False

    def __repr__(self) -> str:  # secure state stays out of reprs
        return f"SecureCpu(handle={self.handle:#x}, num={self.num}, state={self.state})"

    @property
    def ext(self) -> bytes:
        """The vector registers (32 x 16 bytes; VR 0-15's left halves are the FPRs) and then the access
        registers (16 x 4 bytes), big-endian, as the last SIE exit left them (``ars``, ``fprs`` and ``vrs``
        read it)."""
        raw = self._ext_raw
        if raw is not None:
            self._ext = decode_extended(raw)
            self._ext_raw = None
        return self._ext

    @ext.setter
    def ext(self, value: bytes) -> None:
        self._ext = bytes(value)
        self._ext_raw = None

    def keep_engine_ext(self, raw: bytes) -> None:
        """Record ``ext`` as the hardware CPU's engine keeps it (``Cpu.extended_raw``, at a SIE exit)."""
        self._ext_raw = raw

    def engine_ext(self) -> bytes | None:
        """``ext`` in the engine's form if the last exit recorded it so and nothing replaced it since (for
        ``Cpu.load_extended_raw``), else None."""
        return self._ext_raw

    @property
    def ars(self) -> list[int]:
        """The 16 access registers."""
        return list(_ARS.unpack_from(self.ext, 512))

    @ars.setter
    def ars(self, values: list[int]) -> None:
        self.ext = self.ext[:512] + _ARS.pack(*(v & 0xFFFFFFFF for v in values))

    @property
    def fprs(self) -> list[int]:
        """The 16 floating-point registers (the left halves of vector registers 0-15)."""
        return list(_FPRS.unpack_from(self.ext))

    @fprs.setter
    def fprs(self, values: list[int]) -> None:
        ext = bytearray(self.ext)
        for i, v in enumerate(values):
            _U64.pack_into(ext, 16 * i, v & 0xFFFFFFFFFFFFFFFF)
        self.ext = bytes(ext)

    @property
    def vrs(self) -> list[bytes]:
        """The 32 vector registers (16 bytes each)."""
        return [self.ext[16 * i : 16 * i + 16] for i in range(32)]


def _initial_crs() -> list[int]:
    crs = [0] * 16
    crs[0] = 0xE0
    crs[14] = 0xC2000000
    return crs


@dataclass
class SecureConfig:
    """A secure configuration: limits from Create, donated storage, CPUs, pages and its image state."""

    handle: int
    tag: int
    uid: bytes
    base_origin: int
    base_len: int
    var_vaddr: int
    var_frames: list[int]
    mso: int
    msl: int
    sca: int
    asce: int
    flags: int
    sealer: PageSealer
    #: the wrapping key of the configuration's protected keys (PCKMO, the encrypted-key functions): its
    #: own, made at Create, as the machine gives each secure guest (a protected key it lets out is no key
    #: on a host CPU or in another guest); the hardware CPU finds it in the guest mapping
    wrapping_key: Any = field(default=None, repr=False)
    cpus: dict[int, SecureCpu] = field(default_factory=dict)
    # The UV's page table (6.5), as plain maps of ints: a boot makes every page secure, and an object per
    # page would be one more for the garbage collector to walk again and again (~1 us per page of a 256
    # MiB boot); int -> int maps are not tracked by it at all.
    #: secure frame -> guest page address (the zone-security table's "guest address" column)
    frames: dict[int, int] = field(default_factory=dict)
    #: guest page address -> secure frame (the reverse of ``frames``)
    secure: dict[int, int] = field(default_factory=dict)
    #: guest page address -> (counter, integrity value) of its last export, while the host holds that
    #: ciphertext and the page is not secure: an import must bring exactly it back
    exports: dict[int, tuple[int, bytes]] = field(default_factory=dict, repr=False)
    #: guest page address -> the counter a dump's storage state announced for the page's next export
    reserved: dict[int, int] = field(default_factory=dict)
    #: guest pages the host pinned while they are shared (Pin Page Shared)
    pinned: set[int] = field(default_factory=set)
    #: "created" -> "params" (SE header accepted) -> "verified"; "destroyed" once the config is gone
    state: str = "created"
    header: Any = None
    export_counter: int = 0
    reset_prepared: bool = False
    #: the first OPR_LOAD (PSW from the SE header) happened; later loads take the PSW at absolute 0
    booted: bool = False
    #: an add-secret request forbade host-initiated dumps (secrets issue)
    dump_disabled: bool = False
    #: the secret store (``firmware.uv_secrets.SecretStore``), created on first use
    secret_store: Any = None
    dump: Any = None
    unpack: Any = None
    #: gmap walks: page of MSO + guest address -> (host frame, then address and value of each table entry
    #: the walk read); reused only while every one of those entries still holds its value (``_gmap``)
    walks: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"SecureConfig(handle={self.handle:#x}, tag={self.tag}, state={self.state}, "
            f"cpus={len(self.cpus)}, secure_pages={len(self.frames)})"
        )


def _initial_reset(cpu: SecureCpu) -> None:
    cpu.psw = (0, 0)
    cpu.prefix = 0
    cpu.crs = _initial_crs()
    cpu.cputm = 0
    cpu.ckc = 0
    cpu.fpc = 0
    cpu.todpr = 0
    cpu.psw_loaded = False


def header_psw(header: Any) -> tuple[int, int]:
    """The PSW the SE header holds (mask, address)."""
    psw = header.psw
    if isinstance(psw, tuple):
        return int(psw[0]), int(psw[1])
    if isinstance(psw, (bytes, bytearray)):
        return _U64.unpack_from(psw, 0)[0], _U64.unpack_from(psw, 8)[0]
    return int(psw.mask), int(psw.addr)


class _Outcome(NamedTuple):
    rc: int
    rrc: int = 0


_EXECUTED: Final = _Outcome(Rc.EXECUTED)

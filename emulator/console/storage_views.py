"""The session's view of storage: reads and writes in every address space, DAT walks, the UV's page view.

``StorageViews`` is a part of ``Session`` (a base class): the host view reads what the hypervisor can (a
secure page is PGM 0x3D's refusal, shown as a ``Segment`` without bytes); the owner view reads through the
CPU's own translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from emulator.console.errors import ConsoleError
from emulator.console.providers import PageInfo, Providers, UvCall
from emulator.console.session_storage import refused
from emulator.console.tables import pgm_name
from emulator.errors import ProgramException, SecureStorageAccess
from emulator.hw import dat
from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from emulator.hw.sysinfo import FAC_EDAT2

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu
    from emulator.machine.machine import Machine

#: Address spaces: virtual (the selected CPU's DAT), real (prefixing), guest absolute, host absolute.
SPACES: Final = ("virt", "real", "abs", "host")
_PSW_DAT: Final = 1 << 58
_PSW_EA: Final = 1 << 32
_PSW_BA: Final = 1 << 31
_CR0_EDAT: Final = 1 << 23


@dataclass(frozen=True)
class Segment:
    """Part of a memory read: bytes, or why the view shows none (a trap, a translation exception)."""

    address: int  # in the space that was asked for
    data: bytes | None
    note: str = ""
    host: int | None = None  # host absolute address of the first byte, when known


class _Trap(Exception):  # noqa: N818 - control flow inside reads
    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


class StorageViews:
    """Storage in every address space, and the Ultravisor's page view (a base class of ``Session``)."""

    if TYPE_CHECKING:  # provided by Session
        machine: Machine
        providers: Providers
        view: str

        @property
        def cpu(self) -> Cpu:
            """The selected CPU (``Session``)."""

    # -- memory ---------------------------------------------------------------------------------------

    def _to_host(
        self, space: str, addr: int, *, owner: bool, cpu: Cpu | None = None, asc: int | None = None
    ) -> int:
        """Host absolute address of ``addr`` in ``space`` (no storage-key or reference-bit side effects)."""
        c = cpu if cpu is not None else self.cpu
        mem = self.machine.memory
        if space == "host":
            host = addr
        else:
            try:
                if space == "virt":
                    _real, absolute = self._dat(c, addr, owner, asc)
                elif space == "real":
                    absolute = c.real_to_abs(addr)
            except ConsoleError:  # a secure CPU's registers (CRs, prefix) without the debug capability
                raise _Trap("the secure CPU's translation (its control registers, prefix) is the "
                            "Ultravisor's: the host reads abs: or host: addresses") from None
            if space == "abs":
                absolute = addr
            elif space not in ("virt", "real"):
                raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
            host = self._guest_to_host(c, absolute)
        if not 0 <= host < mem.size:
            raise _Trap(f"outside memory (size {mem.size:#x})")
        return host

    def _guest_to_host(self, cpu: Cpu, absolute: int) -> int:
        hook = getattr(self.machine, "guest_abs_to_host", None)
        if hook is not None:  # a VM: the hypervisor's mapping of guest absolute storage (its memory slot)
            try:
                return int(hook(absolute))
            except ConsoleError as e:
                raise _Trap(str(e)) from None
        g = cpu.guest
        if g is None:
            return absolute
        try:
            return g.to_host(absolute, False, False)
        except ProgramException as e:
            raise _Trap(
                f"guest absolute {absolute:#x} is not mapped (PGM {e.code:#04x} {pgm_name(e.code)})"
            ) from None
        except Exception as e:  # noqa: BLE001 - a GuestIntercept: the page is not imported yet
            raise _Trap(f"guest absolute {absolute:#x}: {e}") from None

    def _dat(self, cpu: Cpu, vaddr: int, owner: bool, asc: int | None) -> tuple[int, int]:
        """(real, absolute) of a virtual address (for a large frame both are its absolute address)."""
        mask = cpu.psw[0]
        if not mask & _PSW_DAT:
            return vaddr, cpu.real_to_abs(vaddr)
        if asc is None:
            asc = (mask >> 46) & 3
        cr = (1, 1, 7, 13)[asc]
        mem = self.machine.memory
        host_view = mem.host_view()

        def table_real_to_host(real: int) -> int:
            host = self._guest_to_host(cpu, cpu.real_to_abs(real))
            if not owner and not host_view.accessible(host):  # a host read: the host's tables only
                raise _Trap(f"DAT tables at host {host:#x} are in secure storage (PGM 0x3D for the host)")
            return host

        try:
            edat1 = bool(cpu.cr(0) & _CR0_EDAT)
            walk = getattr(mem, "translate", None)  # a session's storage walks the tables itself
            t = (walk if walk is not None else partial(dat.translate, mem.buffer().toreadonly()))(
                table_real_to_host,
                cpu.cr(cr),
                vaddr,
                False,
                asc,
                edat1,
                edat2=edat1 and cpu.has_facility(FAC_EDAT2),
            )
        except ProgramException as e:
            raise _Trap(f"PGM {e.code:#04x} {pgm_name(e.code)} translating {vaddr:#x}") from None
        # a large frame (enhanced DAT) maps to an absolute address, which has no real address of its own
        return t.address, t.address if t.absolute else cpu.real_to_abs(t.address)

    def _read_space(
        self,
        space: str,
        addr: int,
        length: int,
        *,
        owner: bool = False,
        cpu: Cpu | None = None,
        asc: int | None = None,
    ) -> bytes:
        out = b""
        for seg in self.read(space, addr, length, owner=owner, cpu=cpu, asc=asc):
            if seg.data is None:
                raise _Trap(seg.note)
            out += seg.data
        return out

    def read(
        self,
        space: str,
        addr: int,
        length: int,
        *,
        owner: bool | None = None,
        cpu: Cpu | None = None,
        asc: int | None = None,
    ) -> list[Segment]:
        """Read memory the way the current view can: page by page, with a note where a page cannot be read.

        ``owner`` overrides the view (True: firmware reads, plaintext of secure frames).
        """
        if space not in SPACES:
            raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
        if not 0 < length <= 1 << 20:
            raise ConsoleError(f"length {length} must be between 1 and {1 << 20}")
        if not 0 <= addr or addr + length > 1 << 64:
            raise ConsoleError(f"{addr:#x}+{length} runs past the end of the 64-bit address space")
        as_owner = self.view == "owner" if owner is None else owner
        mem = self.machine.memory
        hv = mem.host_view()
        segs: list[Segment] = []
        pos, end = addr, addr + length
        while pos < end:
            n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
            try:
                host = self._to_host(space, pos, owner=as_owner, cpu=cpu, asc=asc)
                if host + n > mem.size:
                    raise _Trap(f"outside memory (size {mem.size:#x})")
                if as_owner:
                    data = mem.read(host, n)
                else:
                    try:
                        data = hv.read(host, n)
                    except SecureStorageAccess:
                        state = self.providers.page_map.page(host >> PAGE_SHIFT).state
                        raise _Trap(
                            f"trap: PGM 0x3D secure-storage access ({state} frame {host >> PAGE_SHIFT:#x})"
                        )
                segs.append(Segment(pos, data, host=host))
            except _Trap as t:
                segs.append(Segment(pos, None, t.note))
            pos += n
        return segs

    def write(self, space: str, addr: int, data: bytes) -> None:
        """Store ``data`` the way the current view may: the host view as a host access (a secure or donated
        frame refuses it with the trap the host would get), the owner view as firmware (plaintext)."""
        if space not in SPACES:
            raise ConsoleError(f"unknown address space {space!r} (spaces: {', '.join(SPACES)})")
        if not 0 <= addr or addr + len(data) > 1 << 64:
            raise ConsoleError(f"{addr:#x}+{len(data)} runs past the end of the 64-bit address space")
        owner = self.view == "owner"
        mem = self.machine.memory
        pos, end, parts = addr, addr + len(data), []
        while pos < end:  # translate every page first: nothing is stored unless all of it can be
            n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
            try:
                host = self._to_host(space, pos, owner=owner)
            except _Trap as t:
                raise ConsoleError(f"cannot store at {space} {pos:#x}: {t.note}") from None
            if host + n > mem.size:
                raise ConsoleError(f"cannot store at {space} {pos:#x}: outside memory (size {mem.size:#x})")
            if not owner and refused(mem, host, n) is not None:
                frame = host >> PAGE_SHIFT
                state = self.providers.page_map.page(frame).state
                raise ConsoleError(
                    f"trap: PGM 0x3D secure-storage access ({state} frame {frame:#x}): the host cannot store "
                    "there (view owner to write as the guest owner)"
                )
            parts.append((host, data[pos - addr : pos - addr + n]))
            pos += n
        for host, chunk in parts:
            mem.write(host, chunk)  # checked above for the host view; drops translated code

    def translate(self, vaddr: int, asc: int | None = None) -> tuple[int, int, int]:
        """(real, guest absolute, host absolute) of a virtual address of the selected CPU (owner view)."""
        c = self.cpu
        try:
            real, absolute = self._dat(c, vaddr, True, asc)
            return real, absolute, self._guest_to_host(c, absolute)
        except _Trap as t:
            raise ConsoleError(t.note) from None

    # -- the Ultravisor's and the hypervisor's views --------------------------------------------------------

    def page_info(self, frame: int) -> PageInfo:
        """The page map's entry for a host frame."""
        if not 0 <= frame < self.machine.memory.frames:
            raise ConsoleError(f"frame {frame:#x} is outside memory ({self.machine.memory.frames:#x} frames)")
        return self.providers.page_map.page(frame)

    def uv_calls(self) -> list[UvCall] | None:
        """The UV-call log, or None when the machine has no Ultravisor log to show."""
        log = self.providers.uv_log
        return None if log is None else list(log.calls())

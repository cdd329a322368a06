"""A CPU's storage access path: prefixing, DAT with every check, the SIE guest mapping, virtual, real and
lowcore accesses, each decided by the access rules (``access``) with its architected result.

``StorageAccess`` is a part of ``Cpu`` (its base class): the TLB fill (``tlb``) and instruction
emulation translate through ``translate``; the interruption delivery (``interrupts``) stores through the
lowcore accessors here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import mmap

from emulator.errors import ProgramException
from emulator.hw import access, dat
from emulator.hw.arch import (
    CR0_EDAT,
    CR0_FPO,
    CR0_IEP,
    CR0_LAP,
    CR0_SPO,
    PSW_MASK_DAT,
    prefixed,
)
from emulator.hw.memory import KEY_C, KEY_F, KEY_R, OWNER_HOST, PAGE_SHIFT, PhysicalMemory
from emulator.hw.sysinfo import FAC_EDAT2, has_facility

__all__ = ["StorageAccess", "GuestMapping", "GuestIntercept", "SubPageAccess"]

#: the translation cache's key bit of a store at bytes 512-4095 of page 0 or 1 (above low-address protection)
_XC_LOW_STORE = 0x800
#: a kept DAT walk's key (``StorageAccess._dc``): the ASCE, the page, store, IEP, EDAT-1, the address-space id
_WalkKey = tuple[int, int, bool, bool, bool, int]
#: DAT walks kept by address space (``StorageAccess._dc``), at most
_DC_KEPT = 1 << 16


class GuestMapping:
    """How a SIE guest's absolute addresses reach host absolute storage (set by the hypervisor's SIE).

    ``to_host(guest_abs, write, fetch)`` returns the host absolute address of the guest page or raises
    ``ProgramException`` (a guest program interrupt: addressing beyond the guest's memory) or
    ``GuestIntercept`` (a condition the host must handle: a secure guest touching a non-secure page).
    ``owner_tag`` is the owner tag a secure guest's frames carry (None for a normal guest, whose frames
    must be host frames). ``wrapping_key``: the protected-key wrapping key of a secure guest's configuration
    (``cpacf_crypto.WrappingKey``, the Ultravisor's); None: the machine's.
    """

    def __init__(
        self, to_host: Callable[[int, bool, bool], int], owner_tag: int | None = None,
        wrapping_key: Any = None,
    ) -> None:
        self.to_host = to_host
        self.owner_tag = owner_tag
        self.wrapping_key = wrapping_key

class SubPageAccess(Exception):  # noqa: N818 - a decision the TLB fill cannot make per page
    """A page whose protection depends on the byte address (low-address protection, fetch-protection
    override): the CPU runs the instruction once under watch instead of caching a page decision."""

    def __init__(self, vpage: int, write: bool, rule: str) -> None:
        super().__init__(rule)
        self.vpage = vpage
        self.write = write
        self.rule = rule


class GuestIntercept(Exception):  # noqa: N818 - an architectural event, not an error
    """Raised by a ``GuestMapping`` for a condition that ends SIE with an interception code."""

    def __init__(self, code: int, reason: str, **data: int) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.data = data


class StorageAccess:
    """Address translation and the CPU's own accesses to storage (a base class of ``Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu
        mem: PhysicalMemory
        prefix: int
        _buf: memoryview
        _guest: GuestMapping | None
        _xc: dict[int, int]
        _dc: dict[tuple[int, int, bool, bool, bool, int], tuple[int, bool, bool]]
        _mm: mmap.mmap
        _tlb_frames: set[int]
        _edat_dependent: bool
        facilities: bytes

        def _mask(self) -> int: ...

        def _mask_bits(self) -> int: ...

        def cr(self, i: int) -> int:
            """Control register ``i`` (``registers.Registers``)."""

        def wrap(self, addr: int) -> int:
            """An address wrapped to the current addressing mode (``registers.Registers``)."""

    def has_facility(self, bit: int) -> bool:
        """Whether the facility list this CPU stores (STFLE) has facility ``bit``."""
        return has_facility(self.facilities, bit)

    def real_to_abs(self, real: int) -> int:
        """Apply prefixing (and, for a SIE guest, the guest-to-host mapping is done by the caller)."""
        return prefixed(real, self.prefix)

    def _abs_to_host(self, absolute: int, write: bool, fetch: bool) -> int:
        """Map an absolute address of this CPU's configuration to host absolute storage."""
        g = self.guest
        if g is not None:
            return g.to_host(absolute, write, fetch)
        if absolute >= self.mem.size:
            raise ProgramException(dat.PGM_ADDRESSING, why=f"absolute {absolute:#x} is beyond memory")
        return absolute

    @property
    def accessor(self) -> int | None:
        """Who this CPU accesses storage for (``access``): the secure configuration's owner tag while it runs
        a secure guest, else ``access.HOST``."""
        g = self._guest
        return access.HOST if g is None else g.owner_tag

    def table_to_host(self, real: int) -> int:
        """Host absolute address of a DAT table entry at ``real`` (the walk's implicit fetch): a host CPU
        (or a normal guest) fetching it from secure storage gets PGM 0x3D (``dat.translate`` gives it the
        TEID of the address being translated)."""
        host = self._abs_to_host(prefixed(real, self.prefix), False, False)
        mem = self.mem
        frame = host >> PAGE_SHIFT
        owner = mem.owner[frame]
        g = self._guest
        if owner != OWNER_HOST and not mem.shared[frame] and (g is None or owner != g.owner_tag):
            # access.may_access(mem, frame, self.accessor) written out: the walk runs in every fill
            raise access.secure_storage_exception(real, False, why=f"DAT table entry at real {real:#x}")
        return host

    def walk_tables(self, dc_key: _WalkKey, vaddr: int) -> tuple[int, bool, bool]:
        """Walk the DAT tables for ``vaddr`` as ``dc_key`` says (the ASCE, the page, store, IEP, EDAT-1, the
        address-space id) and keep the result by address space (``_dc``) until a purge (``flush_tlb``) or
        the bound drops it: (real or, for a large frame, absolute address, absolute, EDAT-dependent).
        Raises what ``dat.translate`` raises."""
        asce, _page, write, iep, edat1, asid = dc_key
        real, _protected, absolute, edat_dependent = dat.translate(
            self._buf,
            self.table_to_host,
            asce,
            vaddr,
            write,
            asid,
            edat1,
            iep,
            edat2=edat1 and self.has_facility(FAC_EDAT2),
        )
        if len(self._dc) >= _DC_KEPT:
            self._dc.clear()
        self._dc[dc_key] = (real & ~0xFFF, absolute, edat_dependent)
        return real, absolute, edat_dependent

    def translate(
        self,
        vaddr: int,
        write: bool = False,
        fetch: bool = False,
        asc: int | None = None,
        *,
        page_fill: bool = False,
        mark: bool = True,
    ) -> int:
        """Translate a virtual address of the current mode to host absolute, with every check.

        Raises ProgramException (translation, protection, addressing, secure-storage access) exactly as
        the access would in the guest, or GuestIntercept for SIE guests. ``page_fill``: decide for the
        whole page (TLB fill); a page whose protection differs below 4 KiB raises ``SubPageAccess``.
        ``mark``: set the storage key's reference and change bits (an access, not a probe).

        Instruction emulation repeats the same translations (the instruction fetch, its operand page):
        successful ones are kept in a small cache with exactly the lifetime of unicorn's TLB entries
        (emptied by ``flush_tlb``, which every translation-relevant change calls). Pages 0 and 1 are cached
        only for loads and fetches with PSW key 0, because their protection may depend on the byte address
        (low-address protection of stores, the fetch-protection override under a nonzero key).
        """
        # keyed by the ``asc`` argument as given: None stands for the PSW's, whose change empties the cache
        xc_key = (vaddr & 0xFFFFFFFFFFFFF000) | write | fetch << 1 | (0 if asc is None else (asc + 1) << 2)
        if write and vaddr < 0x2000 and vaddr & 0xE00:
            xc_key |= _XC_LOW_STORE  # a store at 512-4095 of page 0 or 1: the same decision for all of them
        if mark and not page_fill:
            hit = self._xc.get(xc_key)
            if hit is not None:
                return hit | (vaddr & 0xFFF)
        elif (
            page_fill
            and write
            and vaddr < 0x2000
            and (xc_key | _XC_LOW_STORE) in self._xc
            and self.cr(0) & CR0_LAP
        ):
            # the page translates for stores above byte 511 (kept below): only low-address protection is
            # left to decide, below 4 KiB
            raise SubPageAccess(vaddr & ~0xFFF, write, "low-address protection")
        mask = self._mask_bits()
        if asc is None:
            asc = (mask >> 46) & 3
            if fetch and asc in (1, 2):
                # instructions come from the primary space in the secondary-space and access-register
                # modes (as unicorn's TLB keeps them: with the primary space's entries)
                asc = 0
        vaddr &= 0xFFFFFFFFFFFFFFFF
        if mask & PSW_MASK_DAT:
            cr = (1, 1, 7, 13)[asc]
            asid = (0, 1, 2, 3)[asc]
            cr0 = self.cr(0)
            edat1 = bool(cr0 & CR0_EDAT)
            iep = fetch and bool(cr0 & CR0_IEP)
            asce = self.cr(cr)
            # the walk's result by address space: kept over a change of space (``TlbFill.switch_space``)
            dc_key = (asce, vaddr & 0xFFFFFFFFFFFFF000, write, iep, edat1, asid)
            walked = self._dc.get(dc_key)
            if walked is None:
                real, absolute, edat_dependent = self.walk_tables(dc_key, vaddr)
            else:
                real, absolute, edat_dependent = walked
                real |= vaddr & 0xFFF
            if not absolute:  # a large frame's address is absolute already
                real = prefixed(real, self.prefix)
        else:
            real, asid, edat_dependent = prefixed(vaddr, self.prefix), 0, False
        host = self._abs_to_host(real, write, fetch)
        g = self._guest
        frame = host >> PAGE_SHIFT
        mem = self.mem
        if g is None or g.owner_tag is None:
            # access.may_access(mem, frame, HOST) written out: this is the TLB fill's path
            if mem.owner[frame] != OWNER_HOST and not mem.shared[frame]:
                raise access.secure_storage_exception(
                    vaddr, write, asid, f"non-secure access to secure storage at absolute {host:#x}"
                )
        # key-controlled protection
        key = mem.keys[frame]
        pkey = (mask >> 52) & 0xF
        if pkey:
            cr0 = self.cr(0)
            acc = key >> 4
            if acc != pkey and not (cr0 & CR0_SPO and acc == 9):
                fpo = not write and key & KEY_F and cr0 & CR0_FPO and vaddr < 2048
                if fpo and page_fill:
                    raise SubPageAccess(vaddr & ~0xFFF, write, "fetch-protection override")
                if write or (key & KEY_F and not fpo):
                    raise ProgramException(
                        dat.PGM_PROTECTION,
                        (vaddr & ~0xFFF) | (0x400 if write else 0x800) | asid,
                        why=f"key-controlled protection: PSW key {pkey} vs storage key {key:#x}",
                    )
        if write and vaddr & ~0x1FFF == 0 and not fetch and self.cr(0) & CR0_LAP:
            # low-address protection covers effective addresses 0-511 and 4096-4607
            if page_fill:
                raise SubPageAccess(vaddr & ~0xFFF, write, "low-address protection")
            if vaddr & 0xFFF < 512:
                raise ProgramException(
                    dat.PGM_PROTECTION,
                    (vaddr & ~0xFFF) | 0x400 | asid,
                    why="low-address protection",
                )
        if edat_dependent:  # a decision the TLB may hold from here on
            self._edat_dependent = True
        if not mark:
            return host
        mem.keys[frame] = key | KEY_R | (KEY_C if write else 0)
        if not page_fill and (vaddr & ~0x1FFF or not (write or pkey) or xc_key & _XC_LOW_STORE):
            # (pages 0 and 1 too for a load or fetch with PSW key 0, and for a store beyond byte 511: no
            # sub-page rule can apply to them; Linux stores into its lowcore there at every system call)
            self._xc[xc_key] = host & ~0xFFF
            self._tlb_frames.add(frame)
        return host

    def read_virtual(self, vaddr: int, length: int) -> bytes:
        """Read guest storage at a virtual address with every check (instruction emulation)."""
        if length and (vaddr & 0xFFF) + length <= 0x1000:  # one page (an operand seldom crosses one)
            hit = self._xc.get(vaddr & 0xFFFFFFFFFFFFF000)  # translate's cache (a load: no flag bits)
            host = hit | (vaddr & 0xFFF) if hit is not None else self.translate(vaddr)
            return self._mm[host : host + length]  # (mmap slicing: bytes, no intermediate view)
        out = bytearray()
        while length:
            n = min(length, 0x1000 - (vaddr & 0xFFF))
            host = self.translate(vaddr)
            out += self._buf[host : host + n]
            vaddr, length = self.wrap(vaddr + n), length - n
        return bytes(out)

    def write_virtual(self, vaddr: int, data: bytes) -> None:
        """Store to guest storage at a virtual address; all pages are checked before anything is stored."""
        parts = []
        off, v = 0, vaddr
        while off < len(data):
            n = min(len(data) - off, 0x1000 - (v & 0xFFF))
            parts.append((self.translate(v, write=True), data[off : off + n]))
            off, v = off + n, self.wrap(v + n)
        for host, chunk in parts:
            self.mem.write(host, chunk)

    def _real_checked(self, real: int, length: int, write: bool) -> int:
        """Host absolute address of ``[real, real+length)`` for an access of this CPU, after the access
        rules (``access.check``: PGM 0x3D naming the real address) and addressing."""
        # real_to_abs and _abs_to_host, inline (every interruption's lowcore and every SCCB come here)
        prefix = self.prefix
        absolute = real
        if real < 0x2000:
            absolute += prefix
        elif prefix <= real < prefix + 0x2000:
            absolute -= prefix
        g = self._guest
        mem = self.mem
        if g is not None:
            host = g.to_host(absolute, write, False)
        elif absolute >= mem.size:
            raise ProgramException(dat.PGM_ADDRESSING, why=f"absolute {absolute:#x} is beyond memory")
        else:
            host = absolute
        if host + length > mem.size:
            raise ProgramException(dat.PGM_ADDRESSING, why=f"real {real:#x}+{length:#x} is beyond memory")
        if mem.non_host_frames:
            frame = host >> PAGE_SHIFT
            owner = mem.owner[frame]
            g = self._guest
            if (host + length - 1) >> PAGE_SHIFT != frame or (
                owner != OWNER_HOST and not mem.shared[frame] and (g is None or owner != g.owner_tag)
            ):  # all but one frame this CPU may touch (access.may_access written out): the rules decide
                access.check(mem, host, length, write, self.accessor, real, what="real-address access")
        return host

    def read_real(self, real: int, length: int) -> bytes:
        """Read storage at a real address (prefixing applied), as this CPU may (``access``)."""
        return self.mem.read(self._real_checked(real, length, False), length)

    def write_real(self, real: int, data: bytes) -> None:
        """Write storage at a real address (prefixing applied), as this CPU may (``access``); all of the
        range is checked before anything is stored."""
        self.mem.write(self._real_checked(real, len(data), True), data)

    def _lowcore_write(self, off: int, data: bytes) -> None:
        self.mem.write(self._real_checked(off, len(data), True), data)

    def _lowcore_read(self, off: int, length: int) -> bytes:
        return self.mem.read(self._real_checked(off, length, False), length)

"""Host-side Ultravisor client: builds UVCBs in host memory, issues UVCs, decodes rc/rrc with the UV's table.

This is what a hypervisor (honest or malicious) has: a ``HostView`` of absolute storage and the UVC
instruction. Every call goes *through* the Ultravisor's checks (``Ultravisor.call`` with an
``AbsoluteControlBlock`` in host memory, as a host CPU with DAT off issues it), and every memory access
goes through the host view, so touching a secure or donated frame raises ``SecureStorageAccess``
(PGM 0x3D). Attack scripts (``tools/attack_*.py``) and the conformance tests use it.

Also here: ``HostArena`` (a bump allocator over a host memory range) and ``GuestMap`` (a gmap: the
segment and page tables that map a secure guest's absolute addresses to host frames, whose ASCE is the
configuration's ``guest_asce``).

Cost: ``call`` packs the block from a per-command template (field offsets from the ``uv_blocks`` record)
instead of building a ``ctypes`` record, reuses one control block over its UVCB page, reads back only the
block's bytes and decodes rc/rrc from them; ``UvResult.block`` parses the full record on first use. The
UV's checks are the same (``Ultravisor.call`` reads the block from host memory as before).
"""

from __future__ import annotations

import ctypes
import operator
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from emulator.errors import HypervisorError, SecureStorageAccess
from emulator.hw.host_view import HostView
from emulator.hw.memory import PAGE_SIZE
from firmware import uv_blocks as B
from firmware.uv import Ultravisor, UvCaller
from firmware.uv_codes import QUERY_FULL_LEN, Cc, Rc, UvCommand, command, describe
from firmware.uv_gate import UvGate

__all__ = ["UvResult", "UvCallError", "UvClient", "HostArena", "GuestMap", "ConfigSetup"]

#: How often ``UvClient.call`` re-issues a UVC that ended with cc 2 or 3 before giving up.
DEFAULT_RETRIES: Final = 64
#: How many results ``UvClient.log`` keeps (the most recent ones; a boot issues one Unpack per page). Few
#: enough that a result is gone before the garbage collector's middle generation is next collected: with
#: 4096, a 256 MiB boot pushed ~65000 of them into the oldest generation and so paid a full collection
#: (~20-30 ms) per boot.
LOG_LENGTH: Final = 256

_RC_RRC: Final = struct.Struct(">HH")
_BUSY: Final = int(Cc.BUSY)
_PARTIAL: Final = int(Cc.PARTIAL)
_EXECUTED: Final = int(Rc.EXECUTED)
_MORE_DATA: Final = int(Rc.MORE_DATA)
_HEADER: Final = struct.Struct(">HH")
_U64: Final = struct.Struct(">Q")
#: struct format of an unsigned integer field by size (``uv_blocks`` declares only u8/u16/u32/u64)
_INT_FORMATS: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


class UvResult:
    """The outcome of one UVC: condition code, rc/rrc, the block as stored afterwards, retries needed.

    ``block`` is the ``uv_blocks`` record; when the result was made from the stored bytes it is parsed on
    first use.
    """

    __slots__ = ("cmd", "cc", "rc", "rrc", "retries", "_block", "_raw", "_layout")

    def __init__(
        self,
        cmd: UvCommand,
        cc: int,
        rc: int,
        rrc: int,
        block: Any = None,
        retries: int = 0,
        raw: bytes | None = None,
        layout: type | None = None,
    ) -> None:
        self.cmd = cmd
        self.cc = cc
        self.rc = rc
        self.rrc = rrc
        self.retries = retries
        self._block = block
        self._raw = raw
        self._layout = layout

    @property
    def block(self) -> Any:
        """The control block as the UV stored it (a ``uv_blocks`` record)."""
        if self._block is None and self._raw is not None and self._layout is not None:
            self._block = B.parse(self._layout, self._raw)
        return self._block

    @property
    def ok(self) -> bool:
        """rc 0x0001, or Query's rc 0x0100 (short block, "more data": not an error)."""
        return self.rc == _EXECUTED or (self.rc == _MORE_DATA and self.cmd.code == 0x0001)

    def __str__(self) -> str:
        return f"cc {self.cc}: {describe(self.cmd.code, self.rc, self.rrc)}"

    def __repr__(self) -> str:
        return (
            f"UvResult({self.cmd.name}, cc={self.cc}, rc={self.rc:#06x}, rrc={self.rrc:#06x}, "
            f"retries={self.retries})"
        )


class _Template:
    """How to pack one command's block without ``ctypes``: its size, header and integer fields."""

    __slots__ = ("cmd", "layout", "size", "fields", "_plans")

    def __init__(self, cmd: UvCommand) -> None:
        self.cmd = cmd
        self.layout = B.LAYOUTS[cmd.struct]
        self.size = ctypes.sizeof(self.layout)
        #: field name -> (offset, struct format of one element, element count or 0 for a scalar, mask)
        self.fields: dict[str, tuple[int, struct.Struct, int, int]] = {}
        for name, ctype in self.layout._fields_:  # noqa: SLF001 - the record's declared fields
            off = getattr(self.layout, name).offset
            elem, count = ctype, 0
            if issubclass(ctype, ctypes.Array):
                elem, count = ctype._type_, ctype._length_  # noqa: SLF001
            code = getattr(elem, "_type_", None)  # big-endian records hold swapped copies of c_uint*
            fmt = _INT_FORMATS.get(ctypes.sizeof(elem)) if isinstance(code, str) and code in "BHILQ" else None
            if fmt is not None:
                size = ctypes.sizeof(elem)
                self.fields[name] = (off, struct.Struct(">" + fmt), count, (1 << 8 * size) - 1)
        #: field names in call order -> (one struct for the whole block, (call position, mask) of each
        #: field in offset order or None with an array field (no masked packing), how to fetch the values in
        #: offset order), or None for an unknown field (then ``pack`` goes field by field)
        self._plans: dict[tuple[str, ...], tuple[struct.Struct, Any, Any] | None] = {}

    def _plan(self, names: tuple[str, ...]) -> tuple[struct.Struct, Any, Any] | None:
        spec = [(self.fields[n], i) for i, n in enumerate(names) if n in self.fields]
        if len(spec) != len(names):
            return None
        fmt, pos, order, arrays = [">HH"], 4, [], []
        for (off, st, count, mask), i in sorted(spec, key=lambda x: x[0][0]):
            if off < pos:
                return None  # overlaps the header or another named field
            fmt.append(f"{off - pos}x" if off > pos else "")
            fmt.append(f"{count}{st.format[1:]}" if count else st.format[1:])
            pos = off + st.size * (count or 1)
            order.append((i, mask))
            arrays.append((names[i], count))
        if pos > self.size:
            return None
        fmt.append(f"{self.size - pos}x" if self.size > pos else "")
        get: Any = None
        if any(count for _, count in arrays):  # values flattened; an array must have all its elements

            def get(fields: dict[str, Any], arrays: tuple[tuple[str, int], ...] = tuple(arrays)) -> list[Any]:
                out: list[Any] = []
                for name, count in arrays:
                    if count:
                        out.extend(fields[name])
                    else:
                        out.append(fields[name])
                return out

            return struct.Struct("".join(fmt)), None, get
        in_offset_order = [name for name, _ in arrays]
        if len(in_offset_order) == 1:
            get = in_offset_order[0]
        elif in_offset_order:
            get = operator.itemgetter(*in_offset_order)
        return struct.Struct("".join(fmt)), tuple(order), get

    def pack(self, length: int, code: int, fields: dict[str, Any]) -> bytes | bytearray | None:
        """The block's bytes, or None when a field needs the ``ctypes`` record (``UvClient.build``)."""
        names = tuple(fields)
        try:
            plan = self._plans[names]
        except KeyError:
            plan = self._plans[names] = self._plan(names)
        if plan is not None:
            st, order, get = plan
            try:  # values in range need no mask
                if get is None:
                    return st.pack(length, code)
                if type(get) is str:
                    return st.pack(length, code, fields[get])
                return st.pack(length, code, *get(fields))
            except (struct.error, TypeError):
                pass  # out of range (masked below), not an integer, an array of another length
            if order is not None:
                values = tuple(fields.values())
                try:
                    return st.pack(length & 0xFFFF, code & 0xFFFF, *[values[i] & m for i, m in order])
                except TypeError:
                    pass  # a value that is not an integer: field by field (which refuses it)
        buf = bytearray(self.size)
        _HEADER.pack_into(buf, 0, length & 0xFFFF, code & 0xFFFF)
        spec = self.fields
        for name, value in fields.items():
            f = spec.get(name)
            if f is None:
                return None
            off, st, count, mask = f
            if count:
                if type(value) is not tuple and type(value) is not list and (
                    isinstance(value, str) or not isinstance(value, (bytes, bytearray, Sequence))
                ):
                    return None
                if len(value) > count:
                    return None
                step = st.size
                for i, v in enumerate(value):
                    st.pack_into(buf, off + i * step, v & mask)
            elif type(value) is int or isinstance(value, int):
                st.pack_into(buf, off, value & mask)
            else:
                return None
        return buf


class UvCallError(HypervisorError):
    """A UVC the client required to succeed failed; the message names the command and decodes rc/rrc."""

    def __init__(self, result: UvResult) -> None:
        super().__init__(describe(result.cmd.code, result.rc, result.rrc), result.rc, result.rrc)
        self.result = result


class HostArena:
    """A bump allocator over ``[start, end)`` of host absolute storage (no freeing: scripts and tests)."""

    def __init__(self, start: int, end: int) -> None:
        self.start = self.next = start
        self.end = end

    def alloc(self, size: int, align: int = PAGE_SIZE) -> int:
        """Allocate ``size`` bytes aligned to ``align``; raises HypervisorError when the arena is full."""
        addr = (self.next + align - 1) & ~(align - 1)
        if addr + size > self.end:
            raise HypervisorError(f"host arena {self.start:#x}-{self.end:#x} exhausted ({size:#x} wanted)")
        self.next = addr + size
        return addr


class GuestMap:
    """A gmap: segment-table ASCE mapping guest absolute addresses below 2 GiB to host 4 KiB frames.

    The tables live in host storage (written through the host view); the ASCE has the private-space bit
    that Create Secure Configuration requires. ``map``/``unmap`` edit page-table entries as KVM's gmap does.
    """

    _SEG_INVALID: Final = 0x20
    _PTE_INVALID: Final = 0x400
    ASCE_P: Final = 0x100

    def __init__(self, view: HostView, arena: HostArena) -> None:
        self.view = view
        self.arena = arena
        self.segment_table = arena.alloc(0x4000, 0x4000)
        view.write(self.segment_table, struct.pack(">Q", self._SEG_INVALID) * 2048)
        self._page_tables: dict[int, int] = {}
        #: the ASCE: segment table, designation type 0 (segment), table length 3 (2048 entries), P bit
        self.asce = self.segment_table | self.ASCE_P | 0x3

    def _page_table(self, gaddr: int) -> int:
        sx = gaddr >> 20
        pt = self._page_tables.get(sx)
        if pt is None:
            pt = self._page_tables[sx] = self.arena.alloc(0x800, 0x800)
            self.view.write(pt, struct.pack(">Q", self._PTE_INVALID) * 256)
            self.view.write(self.segment_table + 8 * sx, struct.pack(">Q", pt))
        return pt

    def map(self, gaddr: int, host_addr: int) -> None:
        """Map the guest page at ``gaddr`` to the host frame at ``host_addr``."""
        if gaddr >= 1 << 31:
            raise HypervisorError(f"GuestMap covers guest addresses below 2 GiB, not {gaddr:#x}")
        pt = self._page_table(gaddr)
        self.view.write(pt + 8 * ((gaddr >> 12) & 0xFF), struct.pack(">Q", host_addr & ~0xFFF))

    def unmap(self, gaddr: int) -> None:
        """Make the guest page invalid in the gmap."""
        pt = self._page_table(gaddr)
        self.view.write(pt + 8 * ((gaddr >> 12) & 0xFF), struct.pack(">Q", self._PTE_INVALID))

    def lookup(self, gaddr: int) -> int | None:
        """Host address the gmap maps ``gaddr`` to, or None."""
        pt = self._page_tables.get(gaddr >> 20)
        if pt is None:
            return None
        pte = struct.unpack(">Q", self.view.read(pt + 8 * ((gaddr >> 12) & 0xFF), 8))[0]
        return None if pte & self._PTE_INVALID else (pte & ~0xFFF) | (gaddr & 0xFFF)


@dataclass
class ConfigSetup:
    """What ``UvClient.create_guest`` built: handles, the gmap and the donated areas."""

    handle: int
    cpu_handles: list[int]
    gmap: GuestMap
    guest_frames: dict[int, int]  # guest page address -> host absolute address
    base: int
    var: int
    sca: int
    msl: int


class UvClient:
    """The hypervisor's door to the Ultravisor.

    Args:
        uv: the machine's Ultravisor.
        view: the host view of absolute storage (the only memory object the client holds).
        arena: host storage for UVCBs, donations, gmaps and guest frames.
        caller: the caller identity (a host CPU; ``other_cpus_running`` for Init).
        retries: how often a cc 2/3 answer is re-issued before ``call`` returns it.
    """

    def __init__(
        self,
        uv: UvGate | Ultravisor,
        view: HostView,
        arena: HostArena,
        *,
        caller: UvCaller | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        #: the Ultravisor's gate (``firmware.uv_gate.UvGate``: UVC on a block at a host address); an
        #: ``Ultravisor`` given here (tests, tools that own the machine) is put behind a gate
        if uv is not None and not isinstance(uv, UvGate):
            uv = UvGate(uv)
        self.uv: UvGate = uv
        self.view = view
        self.arena = arena
        self.caller = caller or UvCaller("host")
        if self.caller.kind != "host":
            raise HypervisorError("the host's UV client calls as the host")
        self._busy = self.caller.other_cpus_running
        self.retries = retries
        self.uvcb_addr = arena.alloc(PAGE_SIZE)
        #: The most recent results (``LOG_LENGTH`` of them), oldest first.
        self.log: deque[UvResult] = deque(maxlen=LOG_LENGTH)
        #: Called before each UVC with the block it is about to put in host memory: ``before_call(command,
        #: the block's bytes, its host address)``. A debugger's stop point (the console's ``break uvc`` on the
        #: hypervisor's own calls, e.g. every step of a secure boot); it may block. None: nothing is called.
        self.before_call: Callable[[UvCommand, bytes, int], None] | None = None
        self._templates: dict[int, _Template] = {}
        self._by_key: dict[int | str, _Template] = {}  # what ``call`` was given (code or name) -> template
        #: one UVCB page, so one call at a time: a vCPU's thread (an import after a 0x3E exit) and the
        #: host's thread (export, destroy) take turns, as each would with its own block on a real host
        self._lock = threading.Lock()

    # -- raw calls -----------------------------------------------------------------------------------

    def build(
        self, cmd: int | str, *, length: int | None = None, code: int | None = None, **fields: Any
    ) -> Any:
        """The control-block record for ``cmd`` with header and fields set (not yet in memory)."""
        c = command(cmd)
        layout = B.LAYOUTS[c.struct]
        blk = layout()
        blk.header.len = c.length if length is None else length
        blk.header.cmd = c.code if code is None else code
        for name, value in fields.items():
            if not hasattr(blk, name):
                raise HypervisorError(f"{layout.__name__} has no field {name!r}")
            if isinstance(value, (bytes, bytearray, Sequence)) and not isinstance(value, str):
                arr = getattr(blk, name)
                for i, v in enumerate(value):
                    arr[i] = v
            else:
                setattr(blk, name, value)
        return blk

    def issue(
        self, blk: Any, *, cmd: UvCommand | None = None, retry: bool = True, addr: int | None = None
    ) -> UvResult:
        """Write a block into host memory, execute UVC on it (re-issuing on cc 2/3), read it back."""
        if cmd is None:
            try:
                cmd = command(blk.header.cmd)
            except KeyError:
                cmd = UvCommand(blk.header.cmd, "unknown", "unknown command", 8, None, frozenset())
        return self._issue(bytes(blk), type(blk), cmd, retry, addr)

    def _issue(
        self, raw: bytes | bytearray, layout: type, cmd: UvCommand, retry: bool, addr: int | None
    ) -> UvResult:
        """Write the block's bytes at ``addr`` (None: the client's own UVCB page), execute UVC on them
        (re-issuing on cc 2/3 when ``retry``), read them back and log the result (``call`` has a copy of
        this for its own page)."""
        if addr is None:
            addr = self.uvcb_addr
        view = self.view
        if self.before_call is not None:  # a debugger's stop: outside the lock (it may wait for its user)
            self.before_call(cmd, bytes(raw), addr)
        uv_call, busy = self.uv.call, self._busy
        with self._lock:
            view.write(addr, raw)
            cc = uv_call(addr, busy)
            tries = 0
            while (cc == _BUSY or cc == _PARTIAL) and retry and tries < self.retries:
                tries += 1
                cc = uv_call(addr, busy)
            out = view.read(addr, len(raw))
        rc, rrc = _RC_RRC.unpack_from(out, 4)
        res = UvResult(cmd, cc, rc, rrc, None, tries, out, layout)
        self.log.append(res)
        return res

    def call(
        self, cmd: int | str, *, length: int | None = None, retry: bool = True, **fields: Any
    ) -> UvResult:
        """Build, issue and decode one UVC (no exception on an error rc: inspect the result)."""
        t = self._by_key.get(cmd) or self._template(cmd)
        if t is None:  # no block layout: the ctypes record decides
            c = command(cmd)
            return self.issue(self.build(c.code, length=length, **fields), cmd=c, retry=retry)
        c = t.cmd
        raw = t.pack(c.length if length is None else length, c.code, fields)
        if raw is None:  # a field the template cannot pack: the ctypes record decides (and names errors)
            return self.issue(self.build(c.code, length=length, **fields), cmd=c, retry=retry)
        # ``_issue`` for the client's own UVCB page, inline: import and export go this way, and the call
        # costs them ~1.5% (callgrind, export + import round trip)
        view, addr = self.view, self.uvcb_addr
        if self.before_call is not None:  # a debugger's stop: outside the lock (it may wait for its user)
            self.before_call(c, bytes(raw), addr)
        with self._lock:
            view.write(addr, raw)
            uv_call, busy = self.uv.call, self._busy
            cc = uv_call(addr, busy)
            tries = 0
            while (cc == _BUSY or cc == _PARTIAL) and retry and tries < self.retries:
                tries += 1
                cc = uv_call(addr, busy)
            out = view.read(addr, len(raw))
        rc, rrc = _RC_RRC.unpack_from(out, 4)
        res = UvResult(c, cc, rc, rrc, None, tries, out, t.layout)
        self.log.append(res)
        return res

    def _template(self, cmd: int | str) -> _Template | None:
        """The packing template of a command (code or name), made once; None for one without a layout."""
        c = command(cmd)
        t = self._templates.get(c.code)
        if t is None and c.struct in B.LAYOUTS:
            t = self._templates[c.code] = _Template(c)
        if t is not None:
            self._by_key[cmd] = t
        return t

    def check(self, cmd: int | str, **fields: Any) -> UvResult:
        """As ``call``, but raise ``UvCallError`` (message from the UV's table) unless it succeeded."""
        res = self.call(cmd, **fields)
        if not res.ok:
            raise UvCallError(res)
        return res

    # -- commands ------------------------------------------------------------------------------------

    def query(self, length: int = QUERY_FULL_LEN) -> Any:
        """Query Ultravisor Information; returns the ``UvCbQui`` record."""
        return self.check("qui", length=length).block

    def init(self, origin: int | None = None) -> int:
        """Initialize the Ultravisor with base storage at ``origin`` (default: allocated from the arena)."""
        q = self.query()
        if origin is None:
            origin = self.arena.alloc(q.uv_base_stor_len, 1 << 20)
        self.check("init_uv", stor_origin=origin, stor_len=q.uv_base_stor_len)
        return origin

    def create_guest(self, msl: int, *, cpus: int = 1, map_pages: bool = True) -> ConfigSetup:
        """Create a secure configuration with its gmap (every guest page mapped to a fresh host frame when
        ``map_pages``), donated storage, SCA and ``cpus`` secure CPUs, as KVM_PV_ENABLE does."""
        q = self.query()
        gmap = GuestMap(self.view, self.arena)
        frames: dict[int, int] = {}
        if map_pages:
            for g in range(0, msl, PAGE_SIZE):
                h = self.arena.alloc(PAGE_SIZE)
                gmap.map(g, h)
                frames[g] = h
        base = self.arena.alloc(q.conf_base_phys_stor_len, q.conf_base_phys_stor_len)
        vlen = self.uv.query.var_stor_len(msl)
        var = self.arena.alloc(vlen)
        sca = self.arena.alloc(0x4000, 0x4000)
        res = self.check(
            "create_sec_conf",
            conf_base_stor_origin=base,
            conf_virt_stor_origin=var,
            guest_stor_origin=0,
            guest_stor_len=msl,
            guest_sca=sca,
            guest_asce=gmap.asce,
        )
        handle = res.block.guest_handle
        cpu_handles = [self.create_cpu(handle, n) for n in range(cpus)]
        return ConfigSetup(handle, cpu_handles, gmap, frames, base, var, sca, msl)

    def create_cpu(self, handle: int, num: int) -> int:
        """Create a secure CPU with fresh CPU storage and state description; returns its handle."""
        q = self.query()
        stor = self.arena.alloc(q.cpu_stor_len)
        sd = self.arena.alloc(PAGE_SIZE)
        res = self.check("create_sec_cpu", guest_handle=handle, stor_origin=stor, state_origin=sd, num=num)
        return int(res.block.cpu_handle)

    def destroy_guest(self, setup: ConfigSetup) -> None:
        """KVM_PV_DISABLE: destroy the CPUs, the configuration, then every guest page still secure."""
        for h in setup.cpu_handles:
            self.check("destroy_sec_cpu", handle=h)
        self.check("destroy_sec_conf", handle=setup.handle)
        for host in setup.guest_frames.values():
            res = self.call("destr_sec_stor", paddr=host)
            if not res.ok and not (res.rc == 0x0107):
                raise UvCallError(res)

    def import_page(self, handle: int, gaddr: int) -> UvResult:
        """Convert to Secure Storage (the result, not an exception: a refused import is an outcome)."""
        return self.call("conv_to_sec_stor", guest_handle=handle, gaddr=gaddr)

    def unpack_range(self, handle: int, gaddr: int, size: int, tweak: int) -> tuple[int, UvResult | None]:
        """Unpack (0x0301) each page of ``[gaddr, gaddr+size)`` in order, as KVM's unpack loop does: one UVC
        per page, tweak ``(tweak, offset of the page)``, each re-issued on cc 2/3 like ``call`` and each
        result logged. Returns the bytes unpacked and the first result that was not rc 0x0001 (None when all
        were); the loop stops there.

        The block is packed once and only its address and tweak words change from page to page.
        """
        t = self._by_key.get(0x0301) or self._template(0x0301)
        assert t is not None  # Unpack has a block layout
        c = t.cmd
        raw = t.pack(c.length, c.code, {"guest_handle": handle, "gaddr": gaddr, "tweak": (tweak, 0)})
        if size <= 0:
            return 0, None
        if raw is None:  # a value that is not an integer: ``call`` names the error
            return 0, self.call(0x0301, guest_handle=handle, gaddr=gaddr, tweak=(tweak, 0))
        blk = bytearray(raw)
        gaddr_at, tweak_at = t.fields["gaddr"][0], t.fields["tweak"][0] + 8
        issue, layout, pack_into = self._issue, t.layout, _U64.pack_into
        for off in range(0, size, PAGE_SIZE):
            pack_into(blk, gaddr_at, (gaddr + off) & 0xFFFFFFFFFFFFFFFF)
            pack_into(blk, tweak_at, off)
            res = issue(blk, layout, c, True, None)
            if res.rc != _EXECUTED:
                return off, res
        return size, None

    def export_page(self, paddr: int) -> UvResult:
        """Convert from Secure Storage of the frame at host absolute ``paddr``."""
        return self.call("conv_from_sec_stor", paddr=paddr)

    def destroy_page(self, paddr: int) -> UvResult:
        """Destroy Secure Storage of the frame at ``paddr``."""
        return self.call("destr_sec_stor", paddr=paddr)

    def set_cpu_state(self, cpu_handle: int, state: int) -> UvResult:
        """Set CPU State."""
        return self.call("cpu_set_state", cpu_handle=cpu_handle, state=state)

    # -- host memory (through the host view: secure frames raise PGM 0x3D) ------------------------------

    def read(self, addr: int, length: int) -> bytes:
        """Read host absolute storage; raises ``SecureStorageAccess`` on a secure or donated frame."""
        return self.view.read(addr, length)

    def write(self, addr: int, data: bytes) -> None:
        """Write host absolute storage; raises ``SecureStorageAccess`` on a secure or donated frame."""
        self.view.write(addr, data)

    def try_read(self, addr: int, length: int) -> bytes | SecureStorageAccess:
        """Read, or return the exception the host got (for scripts that print what the host saw)."""
        try:
            return self.view.read(addr, length)
        except SecureStorageAccess as e:
            return e

    def make_accessible(self, paddr: int) -> UvResult:
        """Linux ``arch_make_folio_accessible``: pin the page if the guest shared it, else export it."""
        res = self.call("pin_page_shared", paddr=paddr)
        if res.ok:
            return res
        return self.export_page(paddr)

"""The Ultravisor: the UVC dispatcher, secure configurations and CPUs, and the ownership of every frame.

Contract with the CPU model (``emulator/hw/cpu.py``): the CPU traps UVC (``B9A4``), checks the M fields
(specification exception) and the problem state (privileged-operation exception), builds a ``ControlBlock``
over the UVCB address as its translation says (home space when DAT is on) and calls
``Ultravisor.call(caller, cb)``, which returns the condition code and stores rc/rrc (and outputs) into the
block. Access exceptions of the block propagate out of ``call`` as ``ProgramException`` before anything
changed.

Storage ownership lives in ``PhysicalMemory.owner`` / ``PhysicalMemory.shared``: the Ultravisor is the only
writer (``set_owner`` / ``set_shared`` notify the CPUs to flush their TLBs). The CPU decides per page at
TLB-fill time with ``frame_state`` / ``secure_guest_frame`` / ``guest_frame_check``.

Layout: ``Ultravisor`` (here: the dispatcher, fault injection, event sinks, the queries of the CPU model
and the load-normal reset) is ``uv_services.ServiceCommands`` over ``uv_lifecycle.LifecycleCommands`` over
``uv_pages.PageCommands`` over ``uv_core.UvCore`` (state and storage helpers); ``firmware.uv_contract``
(callers, control blocks, events), ``firmware.uv_state`` (configuration and CPU records),
``firmware.uv_guest_view``, ``firmware.uv_codes`` (command table, rcs), ``firmware.uv_blocks`` (UVCB
records), ``firmware.uv_storage`` (export sealing). Choices where the public sources are silent are
listed in ``docs/ultravisor.md``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import struct
from typing import Any, Final

from emulator.errors import HwError, ProgramException
from emulator.hw import dat, seal
from emulator.hw.memory import OWNER_HOST, PAGE_SHIFT, PAGE_SIZE
from emulator.hw.seal import SealedLog
from firmware import uv_blocks as B
from firmware.uv_codes import BY_CODE, PAGE_COMMANDS, QUERY_MIN_LEN, Cc, Rc
from firmware.uv_contract import (  # noqa: F401 - importable from here
    PGM_NON_SECURE_STORAGE_ACCESS,
    PGM_SECURE_STORAGE_ACCESS,
    PGM_SECURE_STORAGE_VIOLATION,
    AbsoluteControlBlock,
    ControlBlock,
    TranslatingControlBlock,
    UvCaller,
    UvEvent,
    UvEventSink,
)
from firmware.uv_core import _HEADER, _U64, _segment_walk  # noqa: F401 - importable from here
from firmware.uv_guest_view import GuestControlBlock, SecureGuestView  # noqa: F401
from firmware.uv_lifecycle import host_key_hash  # noqa: F401 - importable from here
from firmware.uv_services import ServiceCommands
from firmware.uv_state import (  # noqa: F401 - importable from here
    CPU_STATE_CHKSTP,
    CPU_STATE_OPR,
    CPU_STATE_OPR_LOAD,
    CPU_STATE_STP,
    SecureConfig,
    SecureCpu,
    _Outcome,
    header_psw,
)

__all__ = [
    "UvCaller",
    "UvEvent",
    "UvEventSink",
    "ControlBlock",
    "TranslatingControlBlock",
    "AbsoluteControlBlock",
    "Ultravisor",
    "SecureConfig",
    "SecureCpu",
    "SecureGuestView",
    "CPU_STATE_OPR",
    "CPU_STATE_STP",
    "CPU_STATE_CHKSTP",
    "CPU_STATE_OPR_LOAD",
    "PGM_SECURE_STORAGE_ACCESS",
    "PGM_NON_SECURE_STORAGE_ACCESS",
    "PGM_SECURE_STORAGE_VIOLATION",
]

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)

_RC_RRC: Final = struct.Struct(">HH")  # UVCB header at 4: rc, rrc
_RC_EXECUTED: Final = int(Rc.EXECUTED)
#: Commands that store nothing but rc/rrc into their block (the per-page ones): the UV stores those 4 bytes
#: instead of the whole block as read (the same bytes; ``test_uv_dispatch`` checks it for each).
_RESULT_ONLY: Final = frozenset({0x0200, 0x0201, 0x0202, 0x0301})
_CC_OK: Final = Cc.OK
_CC_ERROR: Final = Cc.ERROR


def _without_block(event: UvEvent) -> UvEvent:
    """A guest's call as a host sink gets it: the command and its result, no block."""
    return dataclasses.replace(event, layout=None, block=b"")


def _stored(blk: Any, length: int, rc: int, rrc: int) -> bytearray:
    """The block as the UV stores it: the handler's record with rc/rrc, cut to the block's length."""
    data = bytearray(blk)
    _RC_RRC.pack_into(data, 4, rc & 0xFFFF, rrc & 0xFFFF)
    return data if length == len(data) else data[:length]

# -- the Ultravisor ----------------------------------------------------------------------------------------


class Ultravisor(ServiceCommands):
    """The Ultravisor firmware of one machine.

    Args:
        memory: the machine's absolute storage (firmware access).
        host_keys: the machine's host private keys (index 0 installed key, 1 backup), as the SE-header
            module takes them; never logged or printed.
        rng: ``rng(n) -> bytes``; handles and CUIDs come from it (key material never does: ``os.urandom``).
        clock: nanoseconds since the epoch (dump seeds, timestamps).
        query: the numbers Query reports (defaults: ``QUERY_VALUES``).
        cpu_prefixes: ``() -> iterable of prefix addresses`` of the host CPUs (lowcore checks of Create
            Secure Configuration / CPU); absolute 0-0x1FFF is always a lowcore.
        attestation_keys: the machine's ``firmware.uv_attest.AttestationKeys`` for zuv's signed evidence
            (None: the evidence command answers rc 0x0110).
    """

    # -- fault injection for host retry loops ----------------------------------------------------------

    def inject_cc(self, cmd: int, cc: int, count: int = 1) -> None:
        """Make the next ``count`` calls of ``cmd`` end with cc 2 (busy) or cc 3 (partial), doing nothing.

        The block is not modified, so re-issuing the same UVC with the same UVCB is correct (2.2).
        """
        if cc not in (Cc.BUSY, Cc.PARTIAL):
            raise HwError(f"inject_cc: cc must be 2 or 3, not {cc}")
        if cmd not in BY_CODE:
            raise HwError(f"inject_cc: {cmd:#06x} is not a UVC command")
        if count <= 0:
            self._inject.pop(cmd, None)
        else:
            self._inject[cmd] = [count, cc]

    # -- event sinks (debuggers, traces) -----------------------------------------------------------------

    def add_event_sink(self, sink: UvEventSink, *, host: bool = False) -> None:
        """Register ``sink(event)``, called after every UVC that stored a result or got an injected cc
        (calls ended by an access exception on the block change nothing and are not reported).

        ``host``: the sink is the host side's (the API's UV log): it gets a guest's call without its block
        (the guest's control block lies in secure storage: a Retrieve Secret's block holds the secret), and
        when the call's gate has returned (``seal.deferred``), never under the Ultravisor's frames (before,
        the API's sink got the whole event, and a script's object in it ran with the event in the frame
        above; issue 18's third review)."""
        if host:
            later = seal.deferred(sink)

            def to_host(event: UvEvent) -> None:
                later(event if event.caller.kind != "guest" else _without_block(event))

            self._host_sinks[sink] = to_host
            sink = to_host
        self._sinks.append(sink)

    def remove_event_sink(self, sink: UvEventSink) -> None:
        """Forget a sink registered with ``add_event_sink``."""
        self._sinks.remove(self._host_sinks.pop(sink, sink))

    def _emit(self, event: UvEvent) -> None:
        for sink in list(self._sinks):
            sink(event)

    # -- the UVC entry point ---------------------------------------------------------------------------

    def call(self, caller: UvCaller, cb: ControlBlock) -> int:
        """Execute one UVC; returns the condition code, rc/rrc and outputs are stored into the block.

        One call at a time (any thread); a command that changes a frame's owner, shared flag or contents
        (``PAGE_COMMANDS``) runs with every CPU held out of its run (``PhysicalMemory.quiesced``): no CPU
        holds a translation of a frame while the command encrypts, clears or hands it over.

        Check order: header access, injected busy/partial, command installed for this caller (rc 0x0002),
        length (rc 0x0005), access to the whole block (fetch and store), UV initialised (rc 0x0003), then
        the command's own checks.

        A block with ``window(length)`` (a host block: its bytes in storage after the host view's fetch and
        store checks) is read through it, header first, then the whole block; otherwise the block is read
        with ``read`` and the store-access check stores the block's own bytes back.

        Raises:
            ProgramException: an access exception on the control block (nothing was changed), or for a
                guest caller an access that the host must resolve first (PGM 0x3E with the guest address).
        """
        with self._lock:  # (the whole call under the lock, in this frame: every per-page UVC comes here)
            self.calls += 1
            window = getattr(cb, "window", None)
            # a host block: the bytes to the end of the header's frame, after the header's checks (one frame,
            # one decision); the whole block is read from them when it lies in that frame
            first = cb.read(0, 8) if window is None else cb.frame_window()
            length, code = _HEADER.unpack_from(first, 0)
            if self._inject:
                inj = self._inject.get(code)
                if inj is not None:
                    inj[0] -= 1
                    if inj[0] <= 0:
                        del self._inject[code]
                    log.debug("UVC %#06x: injected cc %d", code, inj[1])
                    if self._sinks:
                        c = BY_CODE.get(code)
                        self._emit(
                            UvEvent(
                                self.calls, code, c.name if c else "", caller, inj[1], 0, 0, injected=True
                            )
                        )
                    return inj[1]
            kind = caller.kind
            if kind != "host" and kind != "guest":
                raise HwError(f"UVC caller kind {kind!r}")
            cmd = BY_CODE.get(code)
            if cmd is None or not cmd.implemented or kind not in cmd.callers:  # cmd.allowed(kind), inline
                return self._store_rc(cb, code, Rc.INV_CMD, 0, caller)
            if code == 0x0001:
                if length < QUERY_MIN_LEN:
                    return self._store_rc(cb, code, Rc.INV_LEN, 0, caller)
            elif length != cmd.length:
                return self._store_rc(cb, code, Rc.INV_LEN, 0, caller)
            if window is not None:
                # fetch- and store-access checks of the whole block (done with the header's where in its
                # frame; ``raw`` may then run on past the block: only its first ``length`` bytes are used)
                raw = first if length <= len(first) else window(length)
            else:
                raw = cb.read(0, length)
                cb.write(0, raw)  # store-access check of the whole block before anything changes
            if not self.initialized and code != 0x0001 and code != 0x000F:
                return self._store_rc(cb, code, Rc.INV_STATE, 0, caller)
            guest_cfg = None
            if kind == "guest":
                guest_cfg = self._configs.get(caller.config_handle or 0)
                if guest_cfg is None or (
                    caller.cpu_handle is not None and caller.cpu_handle not in guest_cfg.cpus
                ):
                    raise HwError(f"UVC from a guest of unknown secure configuration/CPU {caller}")
            entry = self._dispatch.get(code)
            if entry is None:
                layout = B.LAYOUTS[cmd.struct]
                handler = getattr(self, f"_cmd_{cmd.name}")
                entry = self._dispatch[code] = (layout, ctypes.sizeof(layout), handler)
            layout, size, handler = entry
            blk = layout.from_buffer_copy(raw) if length == size else B.parse(layout, bytes(raw[:length]))
            if code in PAGE_COMMANDS:
                # the frames are taken from every CPU before anything changes (``quiesced``, without its
                # object)
                held = self.mem.hold_cpus()
                try:
                    out: _Outcome = handler(caller, blk, cb, guest_cfg)
                finally:
                    self.mem.release_cpus(held)
            else:
                out = handler(caller, blk, cb, guest_cfg)
            rc = out.rc
            data = None
            if code in _RESULT_ONLY:  # the rest of the block is as it was read: only rc/rrc are stored
                rcs = _RC_RRC.pack(rc & 0xFFFF, out.rrc & 0xFFFF)
                at = cb.addr + 4 if window is not None else -1  # (a host block: ``AbsoluteControlBlock``)
                frame = at >> PAGE_SHIFT
                mem = self.mem
                if at >= 0 and (at + 3) >> PAGE_SHIFT == frame and (
                    mem.owner[frame] == OWNER_HOST or mem.shared[frame]
                ):
                    # inside memory (the header's window was) and in one frame the host may still store into
                    # (the command may have taken the block's own frame): the host view's decision, inline
                    mem.write(at, rcs)
                else:
                    cb.write(4, rcs)
            else:
                data = _stored(blk, length, rc, out.rrc)
                cb.write(0, data)
            if log.isEnabledFor(logging.DEBUG):  # (no argument tuple and no call frame for each per-page UVC)
                log.debug("UVC %s by %s: rc %#06x rrc %#06x", cmd.name, kind, rc, out.rrc)
            cc = _CC_OK if rc == _RC_EXECUTED else _CC_ERROR
            if self._sinks:
                stored = bytes(data if data is not None else _stored(blk, length, rc, out.rrc))
                self._emit(
                    UvEvent(
                        self.calls, code, cmd.name, caller, int(cc), rc & 0xFFFF, out.rrc & 0xFFFF, layout,
                        stored,
                    )
                )
            return cc

    def _store_rc(self, cb: ControlBlock, cmd: int, rc: int, rrc: int, caller: UvCaller | None = None) -> int:
        cb.write(4, struct.pack(">HH", rc, rrc))
        log.debug("UVC %#06x: rc %#06x", cmd, rc)
        cc = Cc.OK if rc == Rc.EXECUTED else Cc.ERROR
        if self._sinks and caller is not None:
            c = BY_CODE.get(cmd)
            self._emit(UvEvent(self.calls, cmd, c.name if c else "", caller, int(cc), rc, rrc))
        return cc

    # -- queries for the CPU model, the hypervisor's SIE and the console ---------------------------------

    def frame_state(self, frame: int) -> tuple[int, int | None, bool]:
        """``(owner_tag, guest_addr, shared)`` of a host frame: the zone-security table entry."""
        tag = self.mem.owner[frame]
        gaddr = None
        cfg = self._by_tag.get(tag)
        if cfg is not None:
            gaddr = cfg.frames.get(frame)
        return tag, gaddr, bool(self.mem.shared[frame])

    def config_tag(self, handle: int) -> int | None:
        """Owner tag of a live secure configuration (what its secure frames carry)."""
        cfg = self._configs.get(handle)
        return cfg.tag if cfg else None

    def secure_guest_frame(self, config_handle: int, guest_abs_addr: int) -> int | None:
        """Host frame a secure guest's access to ``guest_abs_addr`` uses, or None if the page is not secure.

        Walks the configuration's ASCE like the hardware, then checks the frame is secure for this
        configuration at exactly this guest address (or shared by it). One decision per page.
        """
        cfg = self._configs.get(config_handle)
        if cfg is None or guest_abs_addr >= cfg.msl:
            return None
        frame = self._gmap(cfg, guest_abs_addr)
        if frame is None:
            return None
        if self.mem.owner[frame] == cfg.tag and cfg.frames.get(frame) == guest_abs_addr & ~0xFFF:
            return frame
        return None

    def prefix_secure(self, config_handle: int, prefix: int) -> bool:
        """True if both pages of the 8 KiB prefix area at ``prefix`` are secure for the configuration
        (``secure_guest_frame`` of each page is not None): the secure SIE entry's check."""
        cfg = self._configs.get(config_handle)
        if cfg is None:
            return False
        page = prefix & ~0xFFF
        if page + PAGE_SIZE >= cfg.msl:
            return False
        # checked at every secure entry: _gmap's hit path for both pages, inline. An 8 KiB area never
        # crosses a segment: two segment-table walks through one segment entry whose entries still hold
        walks, mso = cfg.walks, cfg.mso
        a, b = walks.get((mso + page) & ~0xFFF), walks.get((mso + page + PAGE_SIZE) & ~0xFFF)
        if a is not None and b is not None and len(a) == 5 and len(b) == 5 and a[1] == b[1]:
            buf, u64 = self._buf, _U64
            if (
                u64.unpack_from(buf, a[1])[0] == a[2] == b[2]
                and u64.unpack_from(buf, a[3])[0] == a[4]
                and u64.unpack_from(buf, b[3])[0] == b[4]
            ):
                low, high = a[0], b[0]
            else:
                low, high = self._gmap(cfg, page), self._gmap(cfg, page + PAGE_SIZE)
        else:
            low, high = self._gmap(cfg, page), self._gmap(cfg, page + PAGE_SIZE)
        if low is None or high is None:
            return False
        owner, frames, tag = self.mem.owner, cfg.frames, cfg.tag
        return (
            owner[low] == tag and owner[high] == tag and frames.get(low) == page
            and frames.get(high) == page + PAGE_SIZE
        )

    def guest_frame_check(self, config_handle: int, guest_abs_addr: int, write: bool) -> int:
        """The full secure-guest access decision: the host frame, or the exception the *host* receives.

        Raises:
            ProgramException: 0x05 addressing (beyond the guest's storage: a guest exception),
                0x3E non-secure-storage access (the host must import the page), 0x3F secure-storage
                violation (the frame belongs to another configuration or to the UV). TEID: the guest page
                address, bit 61 ("address valid") and the fetch/store indication.
        """
        cfg = self._configs.get(config_handle)
        if cfg is None:
            raise HwError(f"no secure configuration {config_handle:#x}")
        if guest_abs_addr >= cfg.msl:
            raise ProgramException(
                dat.PGM_ADDRESSING, why=f"guest address {guest_abs_addr:#x} beyond storage"
            )
        frame = self._gmap(cfg, guest_abs_addr)
        if frame is not None:
            tag = self.mem.owner[frame]
            if tag == cfg.tag and cfg.frames.get(frame) == guest_abs_addr & ~0xFFF:
                return frame
        teid = (guest_abs_addr & ~0xFFF) | 0x4 | (0x400 if write else 0x800)
        if frame is None:
            raise ProgramException(
                PGM_NON_SECURE_STORAGE_ACCESS, teid, why=f"guest page {guest_abs_addr:#x} is not mapped"
            )
        if tag == OWNER_HOST:
            raise ProgramException(
                PGM_NON_SECURE_STORAGE_ACCESS, teid, why=f"guest page {guest_abs_addr:#x} is not secure"
            )
        raise ProgramException(
            PGM_SECURE_STORAGE_VIOLATION,
            teid,
            why=f"guest page {guest_abs_addr:#x} maps frame {frame:#x} owned by another secure entity",
        )

    def guest_view(self, config_handle: int) -> SecureGuestView:
        """What the secure guest's CPU sees of its absolute storage (for tests, demos and the SIE engine)."""
        if config_handle not in self._configs:
            raise HwError(f"no secure configuration {config_handle:#x}")
        return SecureGuestView(self, config_handle)

    def secure_cpu(self, cpu_handle: int) -> SecureCpu | None:
        """The UV's record of a secure CPU (for the SIE engine): None for an unknown handle."""
        return self._cpus.get(cpu_handle)

    def guest_reset_requested(self, cpu_handle: int) -> None:
        """The secure CPU asked for a reset (DIAG 0x308 subcode 0 or 1, seen by the SIE engine): it stops
        operating until the host has completed the reset protocol (Set CPU State OPR_LOAD)."""
        cpu = self._cpus.get(cpu_handle)
        if cpu is not None:
            cpu.psw_loaded = False

    def secure_config(self, handle: int) -> SecureConfig | None:
        """The UV's record of a live secure configuration: None for an unknown handle."""
        return self._configs.get(handle)

    def configs(self) -> list[SecureConfig]:
        """Live secure configurations."""
        return list(self._configs.values())

    def exported_pages(self, config_handle: int) -> dict[int, int]:
        """Guest pages of a live configuration whose last export the UV still holds (the host has their
        ciphertext; an import must bring it back): guest page address -> export counter. Empty for an
        unknown handle. The integrity values stay inside the UV."""
        cfg = self._configs.get(config_handle)
        if cfg is None:
            return {}
        return {g: counter for g, (counter, _) in cfg.exports.items()}

    # -- DIAG 0x308 load-normal reset ----------------------------------------------------------------------

    def reset(self) -> None:
        """Load-normal reset of the LPAR: every UV-donated and secure frame is cleared and released, and
        the UV returns to the uninitialised state (``secure-execution.md`` 4.1)."""
        owner = self.mem.owner
        tracked: set[int] = set(self._frames(self.base_origin, self.base_len)) if self.initialized else set()
        for cfg in {id(c): c for c in (*self._by_tag.values(), *self._configs.values())}.values():
            tracked.update(cfg.frames)
            if cfg.state != "destroyed":
                tracked.update(self._frames(cfg.base_origin, cfg.base_len))
                tracked.update(cfg.var_frames)
        for cpu in self._cpus.values():
            tracked.update(self._frames(cpu.stor_origin, self.query.cpu_stor_len))
        if len(tracked) != self.mem.non_host_frames:  # bookkeeping and tags disagree: scan every frame
            tracked = {f for f in range(self.mem.frames) if owner[f] != OWNER_HOST}
        for f in sorted(tracked):
            self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
            self.mem.set_owner(f, OWNER_HOST)  # also clears the shared flag
        self.initialized = False
        self.base_origin = self.base_len = 0
        self._configs.clear()
        self._by_tag.clear()
        self._cpus.clear()
        self._inject.clear()
        log.info("Ultravisor reset: donated and secure storage cleared, uninitialised")

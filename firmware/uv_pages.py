"""The UVCs on pages: convert to and from secure storage (import, export), destroy, pin and share.

``PageCommands`` is a part of ``Ultravisor`` (a base class, over ``uv_core.UvCore``); the export sealing is
``uv_storage``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator.errors import HwError
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PAGE_SHIFT, PAGE_SIZE
from emulator.hw.seal import SealedLog
from firmware import uv_blocks as B
from firmware.uv_codes import Rc
from firmware.uv_contract import ControlBlock, UvCaller
from firmware.uv_core import UvCore
from firmware.uv_state import _EXECUTED, SecureConfig, _Outcome
from firmware.uv_storage import COUNTER_LIMIT

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


class PageCommands(UvCore):
    """Storage conversions and the guest's sharing commands (a base class of ``Ultravisor``)."""

    if TYPE_CHECKING:  # provided by Ultravisor

        def guest_frame_check(
            self, config_handle: int, guest_abs_addr: int, write: bool
        ) -> int:
            """The host frame of a secure guest's access, or the host's exception (``Ultravisor``)."""

    # -- storage conversions ----------------------------------------------------------------------------

    def _take_frame(self, cfg: SecureConfig, frame: int, gaddr: int) -> None:
        """Make a frame secure for a guest page; an export of the page the host still holds is void.

        A page another configuration shared moves here now (``_import_target`` allowed it), when the
        command has succeeded: a refused import leaves it where it was.
        """
        page = gaddr & ~0xFFF
        tag = self.mem.owner[frame]
        if tag != OWNER_HOST:
            other = self._by_tag.get(tag)
            if other is not None and other is not cfg:
                self._drop_frame(other, frame)
        self.mem.set_owner(frame, cfg.tag)
        cfg.frames[frame] = page
        cfg.secure[page] = frame
        if cfg.exports:
            cfg.exports.pop(page, None)

    def _drop_frame(self, cfg: SecureConfig, frame: int) -> int | None:
        """Make a secure frame host storage again (no longer pinned); returns its guest page address."""
        gaddr = cfg.frames.pop(frame, None)
        self.mem.set_owner(frame, OWNER_HOST)
        if gaddr is not None:
            cfg.secure.pop(gaddr, None)
            if cfg.pinned:
                cfg.pinned.discard(gaddr)
        if cfg.state == "destroyed" and not cfg.frames:
            self._by_tag.pop(cfg.tag, None)
        return gaddr

    def _import_target(self, cfg: SecureConfig, gaddr: int) -> tuple[int | None, _Outcome | None]:
        """The frame a guest page maps to, if it can become secure for ``cfg`` (the shared checks of
        Convert to Secure Storage and Unpack)."""
        if gaddr >= cfg.msl:
            return None, _Outcome(0x0101)
        frame = self._gmap(cfg, gaddr)
        if frame is None:
            return None, _Outcome(0x010A)
        page = gaddr & ~0xFFF
        tag = self.mem.owner[frame]
        if tag == cfg.tag:
            if cfg.frames.get(frame) == page:
                return None, _Outcome(0x0104)
            return None, _Outcome(0x0105)
        if page in cfg.secure:
            return None, _Outcome(0x0105)  # the guest page is secure in another frame
        if tag == OWNER_HOST:
            if self._is_state_description(frame):
                # made secure, the host's own SD fields would hold the guest's plaintext
                return None, _Outcome(0x0105)
            return frame, None
        other = self._by_tag.get(tag)
        if other is not None and self.mem.shared[frame]:
            # MISC feature: a page another configuration shared moves to this one (its content is not
            # secret: the other guest gave it to the host); ``_take_frame`` moves it once the command
            # succeeded, so that a refused one changes nothing.
            return frame, None
        return None, _Outcome(0x0105)

    def _cmd_conv_to_sec_stor(self, caller: UvCaller, blk: B.UvCbCts, cb: ControlBlock, g: Any) -> _Outcome:
        """Convert to Secure Storage, "import" (0x0200).

        A page that was never secure (or was destroyed) is cleared; a page exported before must come back
        with exactly the ciphertext of its last export at this guest address of this configuration, else
        nothing changes and rc 0x0107 is returned (one result for modified, swapped and replayed pages).

        Returns: 0x0020 invalid handle, 0x0101 guest address beyond the guest's storage, 0x010A not mapped
        writable in the ASCE, 0x0104 already secure for this guest address, 0x0105 frame in a conflicting
        secure state, 0x0107 integrity check failed, 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        gaddr = blk.gaddr
        frame, bad = self._import_target(cfg, gaddr)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0105)
        page = gaddr & ~0xFFF
        exported = cfg.exports.get(page)
        addr = frame << PAGE_SHIFT
        if exported is not None:
            # One copy of the host's page is checked and decrypted (the gmap walk put the frame inside
            # memory): what the host changes meanwhile is neither checked nor used. The frame is the
            # guest's before its plaintext is written into it.
            counter, mac = exported
            ct = self._buf[addr : addr + PAGE_SIZE].tobytes()
            if not cfg.sealer.check(ct, page, counter, mac):
                log.info("import of guest page %#x of %#x refused: integrity check failed", page, cfg.handle)
                return _Outcome(0x0107)
            self._take_frame(cfg, frame, page)
            cfg.sealer.open_into(ct, page, counter, self.mem.address + addr)
            self.mem.invalidate_code(addr, addr + PAGE_SIZE)
            return _EXECUTED
        self.mem.fill(addr, PAGE_SIZE)
        self._take_frame(cfg, frame, page)
        return _EXECUTED

    def _cfs_frame(self, paddr: int) -> tuple[int | None, SecureConfig | None, _Outcome | None]:
        if paddr >= self.mem.size:
            return None, None, _Outcome(0x0104)
        frame = paddr >> PAGE_SHIFT
        tag = self.mem.owner[frame]
        if tag == OWNER_HOST:
            return None, None, _Outcome(0x0107, 0x000D)
        if tag == OWNER_UV:
            return None, None, _Outcome(0x0105)
        cfg = self._by_tag.get(tag)
        if cfg is None or frame not in cfg.frames:
            raise HwError(f"frame {frame:#x} carries tag {tag} that no secure configuration owns")
        return frame, cfg, None

    def _cmd_conv_from_sec_stor(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Convert from Secure Storage, "export" (0x0201): encrypt the page in place and make it host storage.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0106 page of a destroyed
        configuration, 0x0107 rrc 0x000D page not secure, 0x0001 success.
        """
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        if cfg.state == "destroyed":
            return _Outcome(0x0106)
        gaddr = cfg.frames[frame]
        counter = cfg.reserved.pop(gaddr, None) if cfg.reserved else None
        if counter is None:
            cfg.export_counter += 1
            counter = cfg.export_counter
        if counter >= COUNTER_LIMIT:
            raise HwError("export counter exhausted")
        addr = frame << PAGE_SHIFT
        # sealed in place in storage (the frame is inside memory: _cfs_frame checked the address), while
        # the frame is still the guest's: the host gets it back holding the ciphertext
        mac = cfg.sealer.seal_at(self.mem.address + addr, self._buf[addr : addr + PAGE_SIZE], gaddr, counter)
        self.mem.invalidate_code(addr, addr + PAGE_SIZE)
        cfg.exports[gaddr] = (counter, mac)
        self._drop_frame(cfg, frame)
        return _EXECUTED

    def _cmd_destr_sec_stor(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Destroy Secure Storage (0x0202): clear the page and make it host storage, no exported copy.

        The guest page's record is forgotten: a later import gives the guest a zero page.

        A frame that is not secure is left as it is and the call succeeds: current firmware's no-op, which
        Linux's ``uv_destroy`` emulates for older firmware's rc 0x0107 rrc 0x000D ("Let us emulate the newer
        variant"), so KVM's teardown may destroy every page that *may* still be secure.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0001 success (also for a
        page that is not secure).
        """
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None and bad.rc == 0x0107:
            return _EXECUTED
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        self.mem.fill(frame << PAGE_SHIFT, PAGE_SIZE)
        gaddr = self._drop_frame(cfg, frame)
        if gaddr is not None:
            cfg.reserved.pop(gaddr, None)  # a dump's announced counter goes too: the page is gone
        return _EXECUTED

    def _cmd_pin_page_shared(self, caller: UvCaller, blk: B.UvCbCfs, cb: ControlBlock, g: Any) -> _Outcome:
        """Pin Page Shared (0x0341): keep a shared page shared until the host unpins it.

        Returns: 0x0104 address beyond memory, 0x0105 Ultravisor-donated frame, 0x0107 rrc 0x000D page not
        secure, 0x0108 secure but not shared, 0x0001 success.
        """
        frame, cfg, bad = self._cfs_frame(blk.paddr)
        if bad is not None or frame is None or cfg is None:
            return bad or _Outcome(0x0105)
        if not self.mem.shared[frame]:
            return _Outcome(0x0108)
        cfg.pinned.add(cfg.frames[frame])
        return _Outcome(Rc.EXECUTED)

    def _cmd_unpin_page_shared(self, caller: UvCaller, blk: B.UvCbCts, cb: ControlBlock, g: Any) -> _Outcome:
        """Unpin Page Shared (0x0342): the guest may now remove the sharing.

        Returns: 0x0020 invalid handle, 0x0101 guest address beyond storage, 0x010A not mapped, 0x0104 page
        not shared, 0x0001 success (also when it was not pinned).
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if blk.gaddr >= cfg.msl:
            return _Outcome(0x0101)
        frame = self._gmap(cfg, blk.gaddr)
        if frame is None:
            return _Outcome(0x010A)
        page = blk.gaddr & ~0xFFF
        if self.mem.owner[frame] != cfg.tag or cfg.frames.get(frame) != page or not self.mem.shared[frame]:
            return _Outcome(0x0104)
        cfg.pinned.discard(page)
        return _Outcome(Rc.EXECUTED)

    def _cmd_set_unshare_all(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Unshare All (0x0340): every shared page of the configuration becomes secure-only again.

        Returns: 0x0020 invalid handle, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        for frame in cfg.frames:
            if self.mem.shared[frame]:
                self.mem.set_shared(frame, False)
        cfg.pinned.clear()  # only secure pages are pinned
        return _Outcome(Rc.EXECUTED)

    # -- guest commands ----------------------------------------------------------------------------------

    def _share_target(self, cfg: SecureConfig, paddr: int, write: bool) -> tuple[int | None, _Outcome | None]:
        if paddr >= cfg.msl:
            return None, _Outcome(0x0101)
        # The UV touches the page as the guest would: a page that is not secure yet goes to the host first.
        return self.guest_frame_check(cfg.handle, paddr & ~0xFFF, write), None

    def _cmd_set_shared_access(
        self, caller: UvCaller, blk: B.UvCbShare, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Set Shared Access (0x1000, guest): the host may now access this secure page.

        Returns: 0x0101 address beyond guest memory, 0x0001 success. A page not secure yet raises PGM 0x3E
        for the host (the CPU model exits SIE; the UVC runs again after the import).
        """
        frame, bad = self._share_target(g, blk.paddr, True)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0101)
        if not self.mem.shared[frame]:
            self.mem.set_shared(frame, True)
        return _Outcome(Rc.EXECUTED)

    def _cmd_remove_shared_access(
        self, caller: UvCaller, blk: B.UvCbShare, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Remove Shared Access (0x1001, guest): the page is secure-only again (content kept).

        Returns: 0x0101 address beyond guest memory, 0x0001 success. A pinned page first goes to the host as
        a notification interception 0x6C (``GuestIntercept``, the UVCB in ``sida``) so that it can unpin.
        """
        frame, bad = self._share_target(g, blk.paddr, True)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0101)
        if blk.paddr & ~0xFFF in g.pinned:
            from emulator.hw.cpu import GuestIntercept

            exc = GuestIntercept(0x6C, "Remove Shared Access of a pinned page", ipa=0xB9A4, ipb=0)
            exc.sida = bytes(blk)  # type: ignore[attr-defined]
            raise exc
        if self.mem.shared[frame]:
            self.mem.set_shared(frame, False)
        return _Outcome(Rc.EXECUTED)

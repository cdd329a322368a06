"""The UVCs whose work lives in the image, attestation, secrets and dump modules, behind one entry each.

``ServiceCommands`` is a part of ``Ultravisor`` (a base class, over ``uv_lifecycle.LifecycleCommands``):
Retrieve Attestation Measurement (and zuv's evidence), the secret store, Set Secure Configuration
Parameters, Unpack, Verify, and the configuration dump.
"""

from __future__ import annotations

from typing import Any

from emulator.hw.seal import SealedLog
from firmware import uv_blocks as B
from firmware import uv_image
from firmware.uv_codes import Rc
from firmware.uv_contract import ControlBlock, UvCaller
from firmware.uv_lifecycle import LifecycleCommands
from firmware.uv_state import _EXECUTED, _Outcome

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


class ServiceCommands(LifecycleCommands):
    """Attestation, secrets, the SE image and dumps (a base class of ``Ultravisor``)."""

    # -- attestation and secrets (firmware.uv_attest, firmware.uv_secrets) ------------------------------

    def _cmd_retr_attest(self, caller: UvCaller, blk: B.UvCbAttest, cb: ControlBlock, g: Any) -> _Outcome:
        """Retrieve Attestation Measurement (0x1020, guest): rcs in ``firmware.uv_attest``."""
        from firmware import uv_attest

        return _Outcome(*uv_attest.retrieve(self, g, blk, cb))

    def _cmd_retr_attest_evidence(
        self, caller: UvCaller, blk: B.UvCbAttest, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """zuv's Retrieve Attestation Measurement and Signed Evidence (0x1F20, guest): ``uv_attest``."""
        from firmware import uv_attest

        return _Outcome(*uv_attest.retrieve(self, g, blk, cb, evidence=True))

    def _cmd_add_secret(self, caller: UvCaller, blk: B.UvCbGuestAddr, cb: ControlBlock, g: Any) -> _Outcome:
        """Add Secret (0x1031, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.add(self, g, blk, cb))

    def _cmd_list_secrets(
        self, caller: UvCaller, blk: B.UvCbListSecrets, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """List Secrets (0x1033, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.list_secrets(self, g, blk, cb))

    def _cmd_lock_secrets(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Lock Secret Store (0x1034, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.lock(self, g, blk))

    def _cmd_retr_secret(self, caller: UvCaller, blk: B.UvCbRetrSecret, cb: ControlBlock, g: Any) -> _Outcome:
        """Retrieve Secret (0x1035, guest): rcs in ``firmware.uv_secrets``."""
        from firmware import uv_secrets

        return _Outcome(*uv_secrets.retrieve(self, g, blk, cb))

    # -- SE image: Set Secure Configuration Parameters, Unpack, Verify ------------------------------------

    def _cmd_set_sec_conf_params(
        self, caller: UvCaller, blk: B.UvCbSsc, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Set Secure Configuration Parameters (0x0300): open the SE header for this configuration.

        Returns: 0x0020 invalid handle, 0x010A rrc 0x0031 length above two pages (zuv, before any access),
        0x0103 header not accessible, 0x0107 parameters already set (zuv),
        the SE-header module's rc/rrc (0x0104 .. 0x010A, 4.11), 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        too_long = uv_image.check_header_length(blk.sec_header_len)
        if too_long is not None:
            return _Outcome(*too_long)
        pieces = self._host_buffer(cb, blk.sec_header_origin, blk.sec_header_len, False)
        if pieces is None:
            return _Outcome(0x0103)
        if cfg.state != "created":
            return _Outcome(0x0107)
        return _Outcome(*uv_image.set_params(self, cfg, self._read_pieces(pieces)))

    def _cmd_unpack_img(self, caller: UvCaller, blk: B.UvCbUnp, cb: ControlBlock, g: Any) -> _Outcome:
        """Unpack (0x0301): decrypt one image page in place, make it secure and measure it (4.12).

        Returns: 0x0020 invalid handle, 0x0003 parameters not set or image already verified, 0x0101 beyond
        guest storage, 0x010A not mapped, 0x0104 already secure, 0x0105 conflicting frame, 0x0001 success.
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.state != "params":
            return _Outcome(Rc.INV_STATE)
        gaddr = blk.gaddr
        frame, bad = self._import_target(cfg, gaddr)
        if bad is not None or frame is None:
            return bad or _Outcome(0x0105)
        page = gaddr & ~0xFFF
        tweak = blk.tweak
        # the frame is the guest's before its plaintext is written into it, as an import's: decrypted while
        # still host storage (or another configuration's shared page), a host thread read the image's
        # plaintext (the decryption lets other threads run: review 4). An export of the page the host
        # still holds is void.
        self._take_frame(cfg, frame, page)
        uv_image.unpack_page(self, cfg, frame, page, tweak[0], tweak[1])
        return _EXECUTED

    def _cmd_verify_img(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Verify (0x0302): compare the unpack measurements with the header (4.13).

        Returns: 0x0020 invalid handle, 0x0003 parameters not set or already verified, 0x0102 with rrc
        0x001A ALD / 0x001B PLD / 0x001C TLD / 0x001D page count mismatch, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.state != "params":
            return _Outcome(Rc.INV_STATE)
        rrc = uv_image.verify(cfg)
        if rrc:
            return _Outcome(0x0102, rrc)
        cfg.state = "verified"
        log.info("secure configuration %#x: image verified", cfg.handle)
        return _Outcome(Rc.EXECUTED)

    # -- dumps ---------------------------------------------------------------------------------------

    def _cmd_dump_init(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Initiate Configuration Dump (0x0400).

        Returns: 0x0020 invalid handle, 0x0003 image not verified or a dump already in progress, 0x0101 the
        SE header does not allow dumping, 0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.init(self, blk.handle))

    def _cmd_dump_conf_stor_state(
        self, caller: UvCaller, blk: B.UvCbDumpStorState, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Dump Configuration Storage State (0x0401): 16 bytes per page of one 1 MiB block.

        Returns: 0x0020 invalid handle, 0x0003 no dump in progress, 0x0102 gaddr unaligned or beyond
        storage, 0x0103 dump area inaccessible, 0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.storage_state(self, cb, blk))

    def _cmd_dump_cpu(self, caller: UvCaller, blk: B.UvCbDumpCpu, cb: ControlBlock, g: Any) -> _Outcome:
        """Dump CPU State (0x0402): the sealed CPU dump v1.

        Returns: 0x0021 invalid CPU handle, 0x0003 no dump in progress, 0x0103 dump area inaccessible,
        0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.cpu(self, cb, blk))

    def _cmd_dump_complete(
        self, caller: UvCaller, blk: B.UvCbDumpComplete, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Complete Configuration Dump (0x0403): the sealed completion data; the dump ends.

        Returns: 0x0020 invalid handle, 0x0003 no dump in progress, 0x0103 dump area inaccessible,
        0x0001 success.
        """
        from firmware import uv_dump

        return _Outcome(*uv_dump.complete(self, cb, blk))

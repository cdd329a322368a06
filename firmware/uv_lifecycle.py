"""The UVCs of the Ultravisor's and its configurations' lives: Query, Init, configurations and secure CPUs.

``LifecycleCommands`` is a part of ``Ultravisor`` (a base class, over ``uv_pages.PageCommands``): Query and
Query Keys, Initialize, Create and Destroy Secure Configuration, Create and Destroy Secure CPU, the CPU
resets and Set CPU State.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

from emulator.hw.cpacf_crypto import WrappingKey
from emulator.hw.memory import PAGE_SHIFT, PAGE_SIZE
from emulator.hw.seal import SealedLog
from firmware import uv_blocks as B
from firmware.uv_codes import QUERY_FULL_LEN, Rc, installed_calls
from firmware.uv_contract import ControlBlock, UvCaller
from firmware.uv_core import ASCE_P, ASCE_R, FIRST_CONFIG_TAG, ONE_MIB, SCA_SIZE, SD_SIZE, TWO_GIB
from firmware.uv_pages import PageCommands
from firmware.uv_state import (
    CPU_STATE_CHKSTP,
    CPU_STATE_OPR,
    CPU_STATE_OPR_LOAD,
    CPU_STATE_STP,
    SecureConfig,
    SecureCpu,
    _initial_reset,
    _Outcome,
    header_psw,
)
from firmware.uv_storage import PageSealer

log = SealedLog("firmware.uv")  # (its records reach the handlers at the gate: ``seal``)


def host_key_hash(key: Any) -> bytes:
    """PHKH of a host key: SHA-256 over its 160-byte X || Y encoding (8.6)."""
    from firmware.crypto import phkh

    return phkh(key)


class LifecycleCommands(PageCommands):
    """Query, Init, configurations and CPUs (a base class of ``Ultravisor``)."""

    if TYPE_CHECKING:  # provided by Ultravisor

        def secure_guest_frame(
            self, config_handle: int, guest_abs_addr: int
        ) -> int | None:
            """The host frame a secure guest's access uses, or None if not secure (``Ultravisor``)."""

    # -- Query, Query Keys, Init -------------------------------------------------------------------------

    def _cmd_qui(self, caller: UvCaller, blk: B.UvCbQui, cb: ControlBlock, g: Any) -> _Outcome:
        """Query Ultravisor Information (0x0001).

        Returns: rc 0x0001, or 0x0100 when the block is shorter than the full answer (what fits is stored).
        """
        q = self.query
        for i, w in enumerate(installed_calls(caller.kind)):
            blk.inst_calls_list[i] = w
        for name in (
            "uv_base_stor_len", "conf_base_phys_stor_len", "conf_base_virt_stor_len",
            "conf_virt_var_stor_len", "cpu_stor_len", "max_num_sec_conf", "max_guest_stor_addr",
            "max_guest_cpu_id", "uv_feature_indications", "supp_se_hdr_versions", "supp_se_hdr_pcf",
            "conf_dump_storage_state_len",
            "conf_dump_finalize_len", "supp_att_req_hdr_ver", "supp_att_pflags", "supp_add_secret_req_ver",
            "supp_add_secret_pcf", "supp_secret_types", "max_assoc_secrets", "max_retr_secrets",
        ):  # fmt: skip
            setattr(blk, name, getattr(q, name))
        return _Outcome(Rc.MORE_DATA if blk.header.len < QUERY_FULL_LEN else Rc.EXECUTED)

    def _cmd_query_keys(self, caller: UvCaller, blk: B.UvCbQueryKeys, cb: ControlBlock, g: Any) -> _Outcome:
        """Query Ultravisor Keys (0x0002): hashes of the installed (0) and backup (1) host keys.

        Returns: rc 0x0001.
        """
        for i, key in enumerate(self._host_keys[:15]):
            digest = host_key_hash(key)
            for j in range(32):
                blk.key_hashes[i][j] = digest[j]
        return _Outcome(Rc.EXECUTED)

    def _cmd_init_uv(self, caller: UvCaller, blk: B.UvCbInit, cb: ControlBlock, g: Any) -> _Outcome:
        """Initialize Ultravisor (0x000F): donate the UV base storage.

        Returns (in check order, 4.1): 0x0103 length is not Query's ``uv_base_stor_len``, 0x0104 origin
        beyond memory, 0x0105 origin + length beyond memory, 0x0104 origin not 4 KiB aligned, 0x0108 below
        2 GiB, 0x0102 other CPUs running, 0x0101 already initialised, 0x0106 a frame holds a SIE page the
        host uses in place (zuv), 0x0001 success.
        """
        origin, length = blk.stor_origin, blk.stor_len
        size = self.mem.size
        if length != self.query.uv_base_stor_len:
            return _Outcome(0x0103)
        if origin >= size:
            return _Outcome(0x0104)
        if origin + length > size:
            return _Outcome(0x0105)
        if origin & 0xFFF:
            return _Outcome(0x0104)
        if origin < TWO_GIB:
            return _Outcome(0x0108)
        frames = self._frames(origin, length)
        if caller.other_cpus_running:
            return _Outcome(0x0102)
        if self.initialized:
            return _Outcome(0x0101)
        if self._holds_state_description(frames):
            return _Outcome(0x0106)  # a SIE page the host holds in place: it stays host storage
        self._donate(frames, b"zuv Ultravisor base storage\0")
        self.initialized = True
        self.base_origin, self.base_len = origin, length
        log.info("Ultravisor initialised: %#x bytes of base storage at %#x", length, origin)
        return _Outcome(Rc.EXECUTED)

    # -- configurations -------------------------------------------------------------------------------

    def _cmd_create_sec_conf(self, caller: UvCaller, blk: B.UvCbCgc, cb: ControlBlock, g: Any) -> _Outcome:
        """Create Secure Configuration (0x0100).

        Returns (check order as kvm-unit-tests exercises it, 4.2): 0x0101 MSO beyond the maximum guest
        address, 0x0102 MSO + MSL beyond it, 0x0103 MSL zero or not a 1 MiB multiple, 0x0105 ASCE invalid
        (P bit missing or bit 58 set), 0x0108 base storage beyond memory or unaligned, 0x0109 base storage in
        a lowcore, 0x0106 base storage not host storage, 0x010A variable storage inaccessible, 0x010E
        variable storage in a lowcore, 0x010C SCA 0, 0x010D SCA inaccessible, 0x0104 ASCE in use,
        0x0107 too many configurations, 0x0001 success (``guest_handle`` stored). All checks precede the
        allocation of a handle, so the 0x8000 "destroy needed" flag never occurs.
        """
        q = self.query
        mso, msl = blk.guest_stor_origin, blk.guest_stor_len
        if mso > q.max_guest_stor_addr:
            return _Outcome(0x0101)
        if mso + msl > q.max_guest_stor_addr:
            return _Outcome(0x0102)
        if msl == 0 or msl % ONE_MIB:
            return _Outcome(0x0103)
        asce = blk.guest_asce
        if not asce & ASCE_P or asce & ASCE_R:
            return _Outcome(0x0105)
        base, blen = blk.conf_base_stor_origin, q.conf_base_phys_stor_len
        if base & 0xFFF or base + blen > self.mem.size:
            return _Outcome(0x0108)
        if self._hits_lowcore(base, blen):
            return _Outcome(0x0109)
        base_frames = self._frames(base, blen)
        if not self._all_host(base_frames) or self._holds_state_description(base_frames):
            return _Outcome(0x0106)
        vlen = q.var_stor_len(msl)
        var_pieces = None
        if not blk.conf_virt_stor_origin & 0xFFF:
            var_pieces = self._host_buffer(cb, blk.conf_virt_stor_origin, vlen, True)
        if var_pieces is None:
            return _Outcome(0x010A)
        var_frames = sorted({a >> PAGE_SHIFT for a, _ in var_pieces})
        if len(var_frames) != vlen >> PAGE_SHIFT or set(var_frames) & set(base_frames):
            return _Outcome(0x010A)  # two virtual pages on one frame, or overlapping the base storage
        if self._holds_state_description(var_frames):
            return _Outcome(0x010A)  # a SIE page the host holds in place: it stays host storage
        if any(self._hits_lowcore(f << PAGE_SHIFT, PAGE_SIZE) for f in var_frames):
            return _Outcome(0x010E)
        sca = blk.guest_sca
        if sca == 0:
            return _Outcome(0x010C)
        if sca + SCA_SIZE > self.mem.size or not self._all_host(self._frames(sca, SCA_SIZE)):
            return _Outcome(0x010D)
        if any(c.asce & ~0xFFF == asce & ~0xFFF for c in self._configs.values()):
            return _Outcome(0x0104)
        tag = self._free_tag()
        if tag is None or len(self._configs) >= q.max_num_sec_conf:
            return _Outcome(0x0107)
        handle = self._new_handle()
        cfg = SecureConfig(
            handle=handle,
            tag=tag,
            uid=self._rng(16),
            base_origin=base,
            base_len=blen,
            var_vaddr=blk.conf_virt_stor_origin,
            var_frames=var_frames,
            mso=mso,
            msl=msl,
            sca=sca,
            asce=asce,
            flags=blk.flags,
            sealer=None,  # type: ignore[arg-type]
        )
        # Key material comes from the Ultravisor's own entropy, never from the injected ``rng``: whoever
        # seeds that (``Host(seed=...)``, ``--seed``, a deterministic machine) is the host, and a seeded
        # machine of its own would make the same export keys (review 4). Handles and UIDs stay seeded.
        cfg.sealer = PageSealer(os.urandom)
        cfg.wrapping_key = WrappingKey(os.urandom(64))  # its protected keys (PCKMO): not the machine's
        self._donate(base_frames, struct.pack(">8sQQQQ", b"zuvCONF\0", handle, mso, msl, asce))
        self._donate(var_frames)
        self._configs[handle] = cfg
        self._by_tag[tag] = cfg
        blk.guest_handle = handle
        log.info("secure configuration %#x created (tag %d, %d MiB)", handle, tag, msl >> 20)
        return _Outcome(Rc.EXECUTED)

    def _free_tag(self) -> int | None:
        tag = FIRST_CONFIG_TAG
        while tag in self._by_tag:
            tag += 1
        return tag if tag < 1 << 32 else None

    def _destroy_config(self, blk: Any, fast: bool = False) -> _Outcome:
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if cfg.cpus:
            return _Outcome(0x0102)
        self._release(self._frames(cfg.base_origin, cfg.base_len))
        self._release(cfg.var_frames)
        del self._configs[cfg.handle]
        cfg.state = "destroyed"
        cfg.header = None
        cfg.dump = None
        cfg.unpack = None
        if not fast:
            # Destroy Configuration ends the guest's storage too: every page it still holds is cleared and
            # becomes host storage (kvm-unit-tests, written with the Ultravisor's authors, reuses a destroyed
            # guest's storage at once: lib/s390x/uv.c "Enable reusability of VMs that were in PV mode"); a
            # later Destroy Secure Storage of such a page finds it not secure: a no-op that succeeds.
            for f in list(cfg.frames):
                self.mem.fill(f << PAGE_SHIFT, PAGE_SIZE)
                self.mem.set_shared(f, False)
                self._drop_frame(cfg, f)
        # After Destroy Fast, secure guest pages stay secure (tagged) until the host destroys or exports them
        # (4.3: KVM's asynchronous teardown); the tag is only reused once the last of them is gone.
        for f in list(cfg.frames):
            if self.mem.shared[f]:
                self.mem.set_shared(f, False)
        if not cfg.frames:
            self._by_tag.pop(cfg.tag, None)
        log.info("secure configuration %#x destroyed (%d secure pages left)", cfg.handle, len(cfg.frames))
        return _Outcome(Rc.EXECUTED)

    def _cmd_destroy_sec_conf(
        self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Destroy Secure Configuration (0x0101).

        Returns: 0x0020 invalid handle, 0x0102 secure CPUs still exist, 0x0001 success (donated storage
        and every guest page still secure cleared and returned to the host).
        """
        return self._destroy_config(blk)

    def _cmd_destroy_sec_conf_fast(
        self, caller: UvCaller, blk: B.UvCbDestroyFast, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Destroy Secure Configuration Fast (0x0102): as 0x0101, but the guest pages are not walked: they
        stay secure until the host destroys (or exports) each one.

        Returns: 0x0020 invalid handle, 0x0102 secure CPUs still exist, 0x0001 success.
        """
        return self._destroy_config(blk, fast=True)

    # -- CPUs ---------------------------------------------------------------------------------------

    def _cmd_create_sec_cpu(self, caller: UvCaller, blk: B.UvCbCsc, cb: ControlBlock, g: Any) -> _Outcome:
        """Create Secure CPU (0x0120).

        Returns (kvm-unit-tests order, 4.4): 0x0020 invalid configuration handle, 0x0103 CPU number too
        large, 0x0105 CPU storage inaccessible (beyond memory, unaligned, not host storage), 0x0106 CPU
        storage in a lowcore, 0x0107 state description inaccessible, 0x0104 CPU number already defined,
        0x0001 success (``cpu_handle`` stored).
        """
        cfg = self._configs.get(blk.guest_handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        if blk.num > self.query.max_guest_cpu_id:
            return _Outcome(0x0103)
        so, slen = blk.stor_origin, self.query.cpu_stor_len
        frames = self._frames(so, slen)
        if so & 0xFFF or so + slen > self.mem.size or not self._all_host(frames) or (
            self._holds_state_description(frames)
        ):
            return _Outcome(0x0105)
        if self._hits_lowcore(so, slen):
            return _Outcome(0x0106)
        sd = blk.state_origin
        if sd + SD_SIZE > self.mem.size or not self._all_host(self._frames(sd, SD_SIZE)):
            return _Outcome(0x0107)
        if sd >> PAGE_SHIFT in frames:
            return _Outcome(0x0107)
        if any(c.num == blk.num for c in cfg.cpus.values()):
            return _Outcome(0x0104)
        handle = self._new_handle()
        cpu = SecureCpu(handle, cfg, blk.num, so, sd)
        self._donate(frames, struct.pack(">8sQQH", b"zuvCPU\0\0", handle, cfg.handle, blk.num))
        cfg.cpus[handle] = cpu
        self._cpus[handle] = cpu
        blk.cpu_handle = handle
        log.info("secure CPU %d of configuration %#x created", blk.num, cfg.handle)
        return _Outcome(Rc.EXECUTED)

    def _cmd_destroy_sec_cpu(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Destroy Secure CPU (0x0121).

        Returns: 0x0021 invalid CPU handle, 0x0001 success (CPU storage cleared and returned).
        """
        cpu = self._cpus.pop(blk.handle, None)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        del cpu.config.cpus[cpu.handle]
        self._release(self._frames(cpu.stor_origin, self.query.cpu_stor_len))
        log.info("secure CPU %d of configuration %#x destroyed", cpu.num, cpu.config.handle)
        return _Outcome(Rc.EXECUTED)

    def _cpu_of(self, handle: int) -> SecureCpu | None:
        return self._cpus.get(handle)

    def _cmd_cpu_reset(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Perform CPU Reset (0x0310): the architected CPU reset (nothing architected in the registers).

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        cpu.psw_loaded = False
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_reset_initial(
        self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Perform Initial CPU Reset (0x0311): PSW, prefix, CRs, CPU timer, clock comparator, FPC, TODPR.

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        _initial_reset(cpu)
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_reset_clear(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Perform CPU Clear Reset (0x0321): initial reset plus general, access and floating-point registers.

        Returns: 0x0021 invalid CPU handle, 0x0001 success.
        """
        cpu = self._cpu_of(blk.handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        _initial_reset(cpu)
        cpu.gprs = [0] * 16
        cpu.ext = bytes(len(cpu.ext))  # access, floating-point and vector registers
        return _Outcome(Rc.EXECUTED)

    def _cmd_prepare_reset(self, caller: UvCaller, blk: B.UvCbNodata, cb: ControlBlock, g: Any) -> _Outcome:
        """Prepare Reset (0x0320) of a configuration: the CPU resets that follow start the reset protocol.

        Returns: 0x0020 invalid configuration handle, 0x0001 success.
        """
        cfg = self._configs.get(blk.handle)
        if cfg is None:
            return _Outcome(Rc.INV_GHANDLE)
        cfg.reset_prepared = True
        for cpu in cfg.cpus.values():
            cpu.psw_loaded = False
        from firmware import uv_secrets

        uv_secrets.reset(cfg)  # the guest reboots: its secrets are gone
        return _Outcome(Rc.EXECUTED)

    def _cmd_cpu_set_state(
        self, caller: UvCaller, blk: B.UvCbCpuSetState, cb: ControlBlock, g: Any
    ) -> _Outcome:
        """Set CPU State (0x0330): operating, stopped, check-stop, or operating with PSW load (4.14).

        OPR_LOAD loads the SE header's PSW the first time (after Verify), afterwards (after a reset) the
        short PSW at guest absolute 0.

        Returns: 0x0021 invalid CPU handle, 0x0101 unsupported state, 0x0003 OPR_LOAD before the image was
        verified or, after the first boot, without a Prepare Reset since the last load, 0x0102 OPR_LOAD
        after a reset while guest absolute page 0 is not secure (import it, then retry), 0x0001 success.
        """
        cpu = self._cpu_of(blk.cpu_handle)
        if cpu is None:
            return _Outcome(Rc.INV_CHANDLE)
        st = blk.state
        if st not in (CPU_STATE_OPR, CPU_STATE_STP, CPU_STATE_CHKSTP, CPU_STATE_OPR_LOAD):
            return _Outcome(0x0101)
        if st == CPU_STATE_OPR_LOAD:
            cfg = cpu.config
            if cfg.state != "verified":
                return _Outcome(Rc.INV_STATE)
            if cfg.booted and not cfg.reset_prepared:
                # a restart without Prepare Reset would keep the secret store and what the last boot
                # left behind (4.14, 7.7): the reset protocol is not optional
                return _Outcome(Rc.INV_STATE)
            if cfg.booted:
                frame = self.secure_guest_frame(cfg.handle, 0)
                if frame is None:
                    return _Outcome(0x0102)
                short = self.mem.read_u64(frame << PAGE_SHIFT)
                mask = (short & 0xFFFFFFFF00000000) ^ (1 << 51)
                cpu.psw = (mask | (short & 0x80000000), short & 0x7FFFFFFF)
            else:
                cpu.psw = header_psw(cfg.header)
            cfg.booted = True
            cfg.reset_prepared = False
            cpu.psw_loaded = True
            cpu.state = CPU_STATE_OPR
        else:
            cpu.state = st
        return _Outcome(Rc.EXECUTED)

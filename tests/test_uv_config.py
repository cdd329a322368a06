"""Conformance of Init, Create/Destroy Secure Configuration and CPU, the CPU resets and Set CPU State:
break one field at a time, check (cc, rc), restore, and finish with the success case (uv-host.c style)."""

from __future__ import annotations

import random

import pytest

from emulator.errors import SecureStorageAccess
from emulator.hw.memory import OWNER_HOST, OWNER_UV, PhysicalMemory
from emulator.hypervisor.uvclient import GuestMap, HostArena, UvClient
from firmware.uv import CPU_STATE_CHKSTP, CPU_STATE_OPR_LOAD, CPU_STATE_STP, Ultravisor, UvCaller
from firmware.uv_codes import QUERY_VALUES, Cc, Rc

MEM = 0x84000000
UV_BASE = 0x80000000
Q = QUERY_VALUES
MSL = 42 << 20


class Env:
    def __init__(self, init: bool = True) -> None:
        self.mem = PhysicalMemory(MEM)
        self.prefixes: list[int] = []
        self.uv = Ultravisor(self.mem, rng=random.Random(3).randbytes, cpu_prefixes=lambda: self.prefixes)
        self.view = self.mem.host_view()
        self.arena = HostArena(0x100000, 0x7F000000)
        self.c = UvClient(self.uv, self.view, self.arena)
        if init:
            self.c.init(UV_BASE)

    def cgc_fields(self) -> dict[str, int]:
        gmap = GuestMap(self.view, self.arena)
        return dict(
            conf_base_stor_origin=self.arena.alloc(Q.conf_base_phys_stor_len, 0x4000),
            conf_virt_stor_origin=self.arena.alloc(Q.var_stor_len(MSL)),
            guest_stor_origin=0,
            guest_stor_len=MSL,
            guest_sca=self.arena.alloc(0x4000, 0x4000),
            guest_asce=gmap.asce,
        )

    def secure(self, addr: int, length: int) -> bool:
        """kvm-unit-tests access_check_3d: every page faults with 0x3D on read and on write."""
        for a in range(addr, addr + length, 4096):
            for access in (lambda: self.view.read(a, 1), lambda: self.view.write(a, b"\x2a")):
                try:
                    access()
                except SecureStorageAccess:
                    continue
                return False
        return True


@pytest.fixture
def env() -> Env:
    return Env()


# -- Init ------------------------------------------------------------------------------------------------


def test_init_checks_in_order_then_succeeds_then_refuses_a_second_init() -> None:
    env = Env(init=False)
    good = dict(stor_origin=UV_BASE, stor_len=Q.uv_base_stor_len)
    cases = [
        (dict(stor_len=Q.uv_base_stor_len - 8), 0x0103),
        (dict(stor_origin=MEM), 0x0104),
        (dict(stor_origin=MEM + 8), 0x0104),
        (dict(stor_origin=MEM - (1 << 20)), 0x0105),
        (dict(stor_origin=UV_BASE + 8), 0x0104),
        (dict(stor_origin=1 << 30), 0x0108),
    ]
    for override, rc in cases:
        res = env.c.call("init_uv", **{**good, **override})
        assert (res.cc, res.rc) == (Cc.ERROR, rc), override
        assert not env.uv.initialized
    busy = UvClient(env.uv, env.view, env.arena, caller=UvCaller("host", other_cpus_running=True))
    res = busy.call("init_uv", **good)
    assert (res.cc, res.rc) == (Cc.ERROR, 0x0102)
    res = env.c.call("init_uv", **good)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    assert env.secure(UV_BASE, Q.uv_base_stor_len)
    assert all(
        env.mem.owner[f] == OWNER_UV for f in range(UV_BASE >> 12, (UV_BASE + Q.uv_base_stor_len) >> 12)
    )
    res = env.c.call("init_uv", stor_origin=UV_BASE + (1 << 20) * 16, stor_len=Q.uv_base_stor_len)
    assert (res.cc, res.rc) == (Cc.ERROR, 0x0101)


# -- Create / Destroy Secure Configuration ---------------------------------------------------------------


def test_create_configuration_checks_one_field_at_a_time(env: Env) -> None:
    good = env.cgc_fields()
    uv_frame = UV_BASE
    cases = [
        (dict(guest_stor_origin=Q.max_guest_stor_addr + (2 << 20) + 1), 0x0101),
        (dict(guest_stor_origin=Q.max_guest_stor_addr - (1 << 20)), 0x0102),
        (dict(guest_stor_len=0), 0x0103),
        (dict(guest_stor_len=MSL + 4096), 0x0103),
        (dict(guest_asce=good["guest_asce"] & ~0x100), 0x0105),
        (dict(guest_asce=good["guest_asce"] | 0x20), 0x0105),
        (dict(conf_base_stor_origin=MEM + 8), 0x0108),
        (dict(conf_base_stor_origin=good["conf_base_stor_origin"] + 8), 0x0108),
        (dict(conf_base_stor_origin=0x1000), 0x0109),
        (dict(conf_base_stor_origin=uv_frame), 0x0106),
        (dict(conf_virt_stor_origin=MEM), 0x010A),
        (dict(conf_virt_stor_origin=uv_frame), 0x010A),
        (dict(conf_virt_stor_origin=good["conf_virt_stor_origin"] + 8), 0x010A),
        (dict(conf_virt_stor_origin=good["conf_base_stor_origin"]), 0x010A),
        (dict(guest_sca=0), 0x010C),
        (dict(guest_sca=MEM + 0x4000), 0x010D),
        (dict(guest_sca=uv_frame), 0x010D),
    ]
    for override, rc in cases:
        res = env.c.call("create_sec_conf", **{**good, **override})
        assert (res.cc, res.rc, res.block.guest_handle) == (Cc.ERROR, rc, 0), override
        assert not rc & Rc.NEED_DESTROY
    # a CPU's prefix area inside the variable storage (kvm-unit-tests uses SIGP SET PREFIX for this)
    env.prefixes = [good["conf_virt_stor_origin"] + 4096]
    res = env.c.call("create_sec_conf", **good)
    assert (res.cc, res.rc) == (Cc.ERROR, 0x010E)
    env.prefixes = [good["conf_base_stor_origin"]]
    res = env.c.call("create_sec_conf", **good)
    assert (res.cc, res.rc) == (Cc.ERROR, 0x0109)
    env.prefixes = []
    assert env.mem.non_host_frames == Q.uv_base_stor_len >> 12  # nothing was donated by the failures

    res = env.c.call("create_sec_conf", **good)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    handle = res.block.guest_handle
    assert handle
    assert env.secure(good["conf_base_stor_origin"], Q.conf_base_phys_stor_len)
    assert env.secure(good["conf_virt_stor_origin"], Q.var_stor_len(MSL))

    # reuse the UVCB: its storage is donated already
    res = env.c.call("create_sec_conf", **good)
    assert res.cc == Cc.ERROR and res.rc >= 0x0100 and res.block.guest_handle == 0
    # reuse the ASCE with new storage
    fresh = env.cgc_fields()
    res = env.c.call("create_sec_conf", **{**fresh, "guest_asce": good["guest_asce"]})
    assert res.cc == Cc.ERROR and res.rc >= 0x0104 and res.block.guest_handle == 0
    assert res.rc == 0x0104
    # a second configuration with its own ASCE is fine and gets another handle
    res = env.c.call("create_sec_conf", **fresh)
    assert res.rc == Rc.EXECUTED and res.block.guest_handle not in (0, handle)


@pytest.mark.parametrize("mib", [1, 42, 43, 2200])
def test_variable_storage_as_a_host_computes_it_from_query_is_whole_pages_and_all_secure(mib: int) -> None:
    """kvm-unit-tests sizes the variable storage as Query's base + MiB * per-MiB with no rounding, and its
    protection check asserts that this is a whole number of pages: for every guest size the host's figure
    is what the UV secures, to the page."""
    env = Env()
    q = env.c.query()
    vlen = q.conf_base_virt_stor_len + mib * q.conf_virt_var_stor_len
    assert vlen % 4096 == 0 and vlen == Q.var_stor_len(mib << 20)
    assert q.conf_base_phys_stor_len % 4096 == 0 and q.cpu_stor_len % 4096 == 0
    fields = env.cgc_fields()
    var = env.arena.alloc(vlen + 4096)
    fields.update(conf_virt_stor_origin=var, guest_stor_len=mib << 20)
    res = env.c.call("create_sec_conf", **fields)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    assert env.secure(var, vlen)
    assert env.view.read(var + vlen, 1) is not None  # the page after it stays the host's


def test_destroy_configuration_checks_the_handle_and_cpus_then_returns_the_storage(env: Env) -> None:
    good = env.cgc_fields()
    handle = env.c.check("create_sec_conf", **good).block.guest_handle
    cpu = env.c.create_cpu(handle, 0)
    res = env.c.call("destroy_sec_conf", length=0x38, handle=handle)
    assert (res.cc, res.rc) == (Cc.ERROR, Rc.INV_LEN)
    res = env.c.call("destroy_sec_conf", handle=handle + 1)
    assert (res.cc, res.rc) == (Cc.ERROR, Rc.INV_GHANDLE)
    res = env.c.call("destroy_sec_conf", handle=handle)
    assert (res.cc, res.rc) == (Cc.ERROR, 0x0102)
    env.c.check("destroy_sec_cpu", handle=cpu)
    res = env.c.call("destroy_sec_conf", handle=handle)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    for addr, n in ((good["conf_base_stor_origin"], Q.conf_base_phys_stor_len),
                    (good["conf_virt_stor_origin"], Q.var_stor_len(MSL))):  # fmt: skip
        assert env.view.read(addr, n) == bytes(n)
        assert all(env.mem.owner[f] == OWNER_HOST for f in range(addr >> 12, (addr + n) >> 12))
    # the handle is gone for good
    res = env.c.call("destroy_sec_conf", handle=handle)
    assert res.rc == Rc.INV_GHANDLE
    # the same storage and ASCE can make a new configuration, with a new handle
    res = env.c.call("create_sec_conf", **good)
    assert res.rc == Rc.EXECUTED and res.block.guest_handle != handle


def test_destroy_fast_behaves_like_destroy(env: Env) -> None:
    handle = env.c.check("create_sec_conf", **env.cgc_fields()).block.guest_handle
    assert env.c.call("destroy_sec_conf_fast", handle=handle ^ 1).rc == Rc.INV_GHANDLE
    assert env.c.call("destroy_sec_conf_fast", handle=handle).rc == Rc.EXECUTED
    assert env.c.call("destroy_sec_conf_fast", handle=handle).rc == Rc.INV_GHANDLE


# -- Create / Destroy Secure CPU -------------------------------------------------------------------------


def test_create_cpu_checks_one_field_at_a_time(env: Env) -> None:
    handle = env.c.check("create_sec_conf", **env.cgc_fields()).block.guest_handle
    stor = env.arena.alloc(Q.cpu_stor_len)
    sd = env.arena.alloc(4096)
    good = dict(guest_handle=handle, stor_origin=stor, state_origin=sd, num=0)
    res = env.c.call("create_sec_cpu", length=0x58, **good)
    assert (res.cc, res.rc, res.block.cpu_handle) == (Cc.ERROR, Rc.INV_LEN, 0)
    cases = [
        (dict(guest_handle=handle + 1), Rc.INV_GHANDLE),
        (dict(num=Q.max_guest_cpu_id + 1), 0x0103),
        (dict(stor_origin=MEM + 4096), 0x0105),
        (dict(stor_origin=UV_BASE), 0x0105),
        (dict(stor_origin=stor + 8), 0x0105),
        (dict(stor_origin=0), 0x0106),
        (dict(state_origin=MEM + 4096), 0x0107),
        (dict(state_origin=UV_BASE), 0x0107),
        (dict(state_origin=stor), 0x0107),
    ]
    for override, rc in cases:
        res = env.c.call("create_sec_cpu", **{**good, **override})
        assert (res.cc, res.rc, res.block.cpu_handle) == (Cc.ERROR, rc, 0), override
    res = env.c.call("create_sec_cpu", **good)
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED) and res.block.cpu_handle
    cpu = res.block.cpu_handle
    assert env.secure(stor, Q.cpu_stor_len)
    res = env.c.call("create_sec_cpu", **{**good, "stor_origin": env.arena.alloc(Q.cpu_stor_len)})
    assert (res.cc, res.rc) == (Cc.ERROR, 0x0104)
    # destroy: length, handle, success, storage back and cleared
    assert env.c.call("destroy_sec_cpu", length=0x38, handle=cpu).rc == Rc.INV_LEN
    assert env.c.call("destroy_sec_cpu", handle=cpu + 1).rc == Rc.INV_CHANDLE
    assert env.c.call("destroy_sec_cpu", handle=cpu).rc == Rc.EXECUTED
    assert env.view.read(stor, Q.cpu_stor_len) == bytes(Q.cpu_stor_len)
    assert env.c.call("destroy_sec_cpu", handle=cpu).rc == Rc.INV_CHANDLE


# -- resets and CPU state --------------------------------------------------------------------------------


def test_cpu_resets_check_the_cpu_handle_and_reset_the_architected_state(env: Env) -> None:
    g = env.c.create_guest(1 << 20, cpus=1)
    h = g.cpu_handles[0]
    cpu = env.uv.secure_cpu(h)
    assert cpu is not None
    for name in ("cpu_reset", "cpu_reset_initial", "cpu_reset_clear"):
        assert env.c.call(name, handle=h ^ 0x10).rc == Rc.INV_CHANDLE, name
        assert env.c.call(name, length=0x48, handle=h).rc == Rc.INV_LEN, name
    cpu.gprs[3] = 7
    cpu.prefix = 0x8000
    cpu.psw = (0x0000000180000000, 0x1000)
    assert env.c.call("cpu_reset", handle=h).rc == Rc.EXECUTED
    assert cpu.gprs[3] == 7 and cpu.prefix == 0x8000
    assert env.c.call("cpu_reset_initial", handle=h).rc == Rc.EXECUTED
    assert cpu.gprs[3] == 7 and cpu.prefix == 0 and cpu.psw == (0, 0) and cpu.crs[0] == 0xE0
    assert env.c.call("cpu_reset_clear", handle=h).rc == Rc.EXECUTED
    assert cpu.gprs == [0] * 16
    assert env.c.call("prepare_reset", handle=g.handle ^ 1).rc == Rc.INV_GHANDLE
    assert env.c.call("prepare_reset", handle=g.handle).rc == Rc.EXECUTED


def test_set_cpu_state_checks_handle_state_and_lifecycle(env: Env) -> None:
    g = env.c.create_guest(1 << 20, cpus=1)
    h = g.cpu_handles[0]
    assert env.c.set_cpu_state(h + 1, CPU_STATE_STP).rc == Rc.INV_CHANDLE
    for bad in (0, 4, 6, 0xFF):
        assert env.c.set_cpu_state(h, bad).rc == 0x0101, bad
    assert env.c.set_cpu_state(h, CPU_STATE_OPR_LOAD).rc == Rc.INV_STATE  # image not verified
    assert env.c.set_cpu_state(h, CPU_STATE_CHKSTP).rc == Rc.EXECUTED
    assert env.uv.secure_cpu(h).state == CPU_STATE_CHKSTP

"""Secure boot through the Ultravisor: Set Secure Configuration Parameters, Unpack, Verify, OPR_LOAD,
dumps."""

from __future__ import annotations

import random
import struct

import pytest

from emulator.errors import ProgramException
from emulator.hw.memory import PhysicalMemory
from emulator.hypervisor.uvclient import HostArena, UvClient
from firmware import uv_dump
from firmware.crypto import (
    DeterministicRng,
    Secret,
    aes_gcm_open,
    aes_xts_decrypt,
    aes_xts_encrypt,
    generate_p521_key,
)
from firmware.se_digests import ImageDigests, page_tweak
from firmware.se_header import PCF_ALLOW_DUMPING, PCF_DEFAULT, build_header
from firmware.uv import CPU_STATE_OPR, CPU_STATE_OPR_LOAD, Ultravisor
from firmware.uv_codes import Cc, Rc

MEM = 0x84000000
UV_BASE = 0x80000000
RNG = DeterministicRng("uv image tests")
HOST_KEY = generate_p521_key(RNG)
OTHER_KEY = generate_p521_key(RNG)
XTS = Secret(RNG.random_bytes(64), "xts")
CCK = Secret(RNG.random_bytes(32), "cck")
PREFIX = 0x0040_1122_3344_5566
PAGES = {0x10000 + i * 0x1000: bytes([0x41 + i]) * 4096 for i in range(3)}
PSW = (0x0000000180000000, 0x10000)


def image(pcf: int = PCF_DEFAULT) -> tuple[bytes, dict[int, tuple[bytes, int]]]:
    """The SE header and the encrypted pages (gaddr -> (ciphertext, tweak offset))."""
    enc: dict[int, tuple[bytes, int]] = {}
    digests = ImageDigests()
    for i, (ga, plain) in enumerate(PAGES.items()):
        tweak = page_tweak(PREFIX, i * 0x1000)
        ct = aes_xts_encrypt(XTS, tweak, plain)
        enc[ga] = (ct, i * 0x1000)
        digests.add_page(ga, tweak, ct)
    hdr = build_header(
        host_keys=[HOST_KEY.public_key()], psw_mask=PSW[0], psw_addr=PSW[1], digests=digests, xts_key=XTS,
        rng=DeterministicRng("hdr"), pcf=pcf, cck=CCK,
    )  # fmt: skip
    return hdr, enc


class Env:
    def __init__(self, pcf: int = PCF_DEFAULT) -> None:
        self.mem = PhysicalMemory(MEM)
        self.uv = Ultravisor(self.mem, host_keys=[HOST_KEY], rng=random.Random(5).randbytes)
        self.view = self.mem.host_view()
        self.arena = HostArena(0x100000, 0x7F000000)
        self.c = UvClient(self.uv, self.view, self.arena)
        self.c.init(UV_BASE)
        self.g = self.c.create_guest(1 << 20, cpus=1)
        self.hdr, self.enc = image(pcf)
        self.hdr_addr = self.arena.alloc(0x2000)
        self.view.write(self.hdr_addr, self.hdr)
        for ga, (ct, _) in self.enc.items():
            self.view.write(self.g.guest_frames[ga], ct)

    def ssc(self, **kw: int):
        f = dict(guest_handle=self.g.handle, sec_header_origin=self.hdr_addr, sec_header_len=len(self.hdr))
        return self.c.call("set_sec_conf_params", **{**f, **kw})

    def unpack(self, ga: int, **kw: int):
        f = dict(
            guest_handle=self.g.handle,
            gaddr=ga,
            tweak=(PREFIX, self.enc[ga][1]) if ga in self.enc else (0, 0),
        )
        return self.c.call("unpack_img", **{**f, **kw})

    def boot(self) -> None:
        assert self.ssc().ok
        for ga in self.enc:
            assert self.unpack(ga).ok
        assert self.c.call("verify_img", handle=self.g.handle).ok


def test_set_parameters_checks_handle_access_length_key_and_state() -> None:
    env = Env()
    assert env.ssc(guest_handle=env.g.handle + 1).rc == Rc.INV_GHANDLE
    assert env.ssc(sec_header_origin=UV_BASE).rc == 0x0103  # header in secure storage
    assert env.ssc(sec_header_origin=MEM - 0x20).rc == 0x0103  # crossing the end of memory
    assert env.ssc(sec_header_origin=UV_BASE - 0x20).rc == 0x0103  # crossing into secure storage
    res = env.ssc(sec_header_len=0x3000)
    assert (res.rc, res.rrc) == (0x010A, 0x0031)
    res = env.ssc(sec_header_len=len(env.hdr) - 16)
    assert (res.rc, res.rrc) == (0x010A, 0x0031)
    bad = bytearray(env.hdr)
    bad[-1] ^= 1
    env.view.write(env.hdr_addr, bytes(bad))
    assert env.ssc().rc == 0x0108
    env.view.write(env.hdr_addr, env.hdr)
    res = env.ssc()
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    assert env.ssc().rc == 0x0107


def test_a_header_for_another_machine_is_rc_0x108_rrc_5() -> None:
    env = Env()
    env.uv._host_keys = (OTHER_KEY,)
    res = env.ssc()
    assert (res.rc, res.rrc) == (0x0108, 0x0005)


def test_unpack_verify_and_opr_load_boot_the_image() -> None:
    env = Env()
    h = env.g.handle
    assert env.unpack(0x10000).rc == Rc.INV_STATE  # before Set Secure Configuration Parameters
    assert env.c.call("verify_img", handle=h).rc == Rc.INV_STATE
    assert env.ssc().ok
    assert env.unpack(0x10000, guest_handle=h ^ 4).rc == Rc.INV_GHANDLE
    assert env.unpack(1 << 20).rc == 0x0101
    env.g.gmap.unmap(0x20000)
    assert env.unpack(0x20000).rc == 0x010A
    for ga in env.enc:
        assert env.unpack(ga).rc == Rc.EXECUTED
    assert env.unpack(0x10000).rc == 0x0104
    assert env.c.call("verify_img", handle=h).rc == Rc.EXECUTED
    assert env.unpack(0x30000).rc == Rc.INV_STATE  # after Verify
    gv = env.uv.guest_view(h)
    for ga, plain in PAGES.items():
        assert gv.read(ga, 4096) == plain
    cpu = env.g.cpu_handles[0]
    assert env.c.set_cpu_state(cpu, CPU_STATE_OPR_LOAD).rc == Rc.EXECUTED
    sc = env.uv.secure_cpu(cpu)
    assert sc.psw == PSW and sc.state == CPU_STATE_OPR
    # after a reset, OPR_LOAD takes the short PSW at guest absolute 0
    assert env.c.check("prepare_reset", handle=h)
    assert env.c.check("cpu_reset_initial", handle=cpu)
    assert env.c.set_cpu_state(cpu, CPU_STATE_OPR_LOAD).rc == 0x0102  # page 0 not secure yet
    assert env.c.import_page(h, 0).ok
    gv.write(0, struct.pack(">Q", 0x0008000080012345))
    assert env.c.set_cpu_state(cpu, CPU_STATE_OPR_LOAD).rc == Rc.EXECUTED
    assert sc.psw == (0x0000000080000000, 0x12345)


@pytest.mark.parametrize(
    "tamper, rrc",
    [("address", 0x1A), ("content", 0x1B), ("tweak", 0x1C), ("missing", 0x1A)],
)
def test_verify_reports_the_first_mismatching_measurement(tamper: str, rrc: int) -> None:
    env = Env()
    assert env.ssc().ok
    pages = list(env.enc)
    for i, ga in enumerate(pages):
        if tamper == "missing" and i == 2:
            continue
        kw: dict = {}
        if tamper == "address" and i == 1:
            env.view.write(env.g.guest_frames[0x40000], env.enc[ga][0])
            kw = dict(gaddr=0x40000, tweak=(PREFIX, env.enc[ga][1]))
        if tamper == "content" and i == 1:
            env.view.write(env.g.guest_frames[ga], b"\0" * 4096)
        if tamper == "tweak" and i == 1:
            kw = dict(tweak=(PREFIX + 1, env.enc[ga][1]))
        assert env.unpack(ga, **kw).ok
    res = env.c.call("verify_img", handle=env.g.handle)
    assert (res.cc, res.rc, res.rrc) == (Cc.ERROR, 0x0102, rrc)
    assert env.c.set_cpu_state(env.g.cpu_handles[0], CPU_STATE_OPR_LOAD).rc == Rc.INV_STATE


def test_dump_needs_the_header_flag_and_the_owner_can_decrypt_it() -> None:
    env = Env()
    env.boot()
    assert env.c.call("dump_init", handle=env.g.handle).rc == 0x0101
    env = Env(PCF_DEFAULT | PCF_ALLOW_DUMPING)
    h, cpu = env.g.handle, env.g.cpu_handles[0]
    area = env.arena.alloc(0x1000)
    assert env.c.call("dump_conf_stor_state", config_handle=h, dump_area_origin=area).rc == Rc.INV_STATE
    assert env.c.call("dump_init", handle=h).rc == Rc.INV_STATE  # not verified yet
    env.boot()
    env.uv.secure_cpu(cpu).gprs[5] = 0x1234
    assert env.c.call("dump_init", handle=h ^ 1).rc == Rc.INV_GHANDLE
    assert env.c.call("dump_init", handle=h).rc == Rc.EXECUTED
    assert env.c.call("dump_init", handle=h).rc == Rc.INV_STATE
    res = env.c.call("dump_conf_stor_state", config_handle=h, dump_area_origin=area, gaddr=0x1000)
    assert res.rc == 0x0102
    res = env.c.call("dump_conf_stor_state", config_handle=h, dump_area_origin=UV_BASE)
    assert res.rc == 0x0103
    assert env.c.call("dump_conf_stor_state", config_handle=h, dump_area_origin=area).ok
    state = env.view.read(area, 0x1000)
    comp = state[16 * 0x10 : 16 * 0x11]  # page 0x10000
    assert comp[:4] != b"\xff\xff\xff\xff"
    assert state[:4] == b"\xff\xff\xff\xff" and state[15] == uv_dump.SPECIAL_ZERO | uv_dump.SPECIAL_MAPPED
    cpu_area = env.arena.alloc(0x1000)
    assert env.c.call("dump_cpu", cpu_handle=cpu ^ 1, dump_area_origin=cpu_area).rc == Rc.INV_CHANDLE
    assert env.c.call("dump_cpu", cpu_handle=cpu, dump_area_origin=cpu_area).ok
    fin = env.arena.alloc(0x1000)
    assert env.c.call("dump_complete", config_handle=h, dump_area_origin=fin).ok
    # the VMM reads guest memory: the page is exported (0x3D path), the dump holds its ciphertext
    frame = env.g.guest_frames[0x10000]
    assert env.c.export_page(frame).ok
    ct = env.view.read(frame, 4096)
    # the owner, with the CCK, decrypts memory and CPU state
    nonce, xts = uv_dump.open_completion(CCK, env.view.read(fin, 288))
    tweak = bytes(a | b for a, b in zip(comp, nonce))
    assert aes_xts_decrypt(xts, tweak, ct) == PAGES[0x10000]
    raw = env.view.read(cpu_area, uv_dump.CPU_DUMP_SIZE)
    seed = env.view.read(fin + 0x10, 64)
    plain = aes_gcm_open(uv_dump.dump_key(CCK, seed), raw[8:20], raw[:32], raw[32:-16], raw[-16:])
    assert struct.unpack_from(">Q", plain, 5 * 8)[0] == 0x1234
    with pytest.raises(ProgramException):
        env.uv.guest_view(h).read(0x10000, 1)  # exported: the guest's next touch goes to the host


def test_query_keys_reports_the_hash_of_each_installed_host_key() -> None:
    from firmware.crypto import phkh

    env = Env()
    env.uv._host_keys = (HOST_KEY, OTHER_KEY)
    res = env.c.call("query_keys")
    assert (res.cc, res.rc) == (Cc.OK, Rc.EXECUTED)
    assert bytes(res.block.key_hashes[0]) == phkh(HOST_KEY)
    assert bytes(res.block.key_hashes[1]) == phkh(OTHER_KEY)
    assert bytes(res.block.key_hashes[2]) == bytes(32)


def test_unpack_range_is_one_logged_uvc_per_page_and_stops_at_the_first_refusal() -> None:
    """The hypervisor's unpack loop (KVM_PV_UNPACK): tweak (prefix, page offset), each block as ``call``
    packs it."""
    env = Env()
    assert env.ssc().ok
    first = min(env.enc)
    env.g.gmap.unmap(first + 0x2000)  # the third page is not mapped: rc 0x010A there
    before = len(env.c.log)
    done, res = env.c.unpack_range(env.g.handle, first, 0x4000, PREFIX)
    assert done == 0x2000 and res is not None and res.rc == 0x010A
    assert len(env.c.log) - before == 3 and env.c.log[-1] is res
    for i, r in enumerate(list(env.c.log)[before:]):
        blk = r.block
        want = (first + i * 0x1000, (PREFIX, i * 0x1000), env.g.handle)
        assert (blk.gaddr, tuple(blk.tweak), blk.guest_handle) == want
    assert env.c.unpack_range(env.g.handle, first, 0x1000, PREFIX)[1].rc == 0x0104  # already secure
    assert env.c.unpack_range(env.g.handle, first, 0, PREFIX) == (0, None)
    gv = env.uv.guest_view(env.g.handle)
    for ga in (first, first + 0x1000):
        assert gv.read(ga, 4096) == PAGES[ga]
        assert env.mem.keys[env.g.guest_frames[ga] >> 12] & 0x06 == 0x06  # the UV's fetch and store: R and C


def test_unpack_range_unpacks_the_image_as_single_calls_do() -> None:
    env = Env()
    assert env.ssc().ok
    size = len(env.enc) * 0x1000
    assert env.c.unpack_range(env.g.handle, min(env.enc), size, PREFIX) == (size, None)
    assert env.c.call("verify_img", handle=env.g.handle).rc == Rc.EXECUTED

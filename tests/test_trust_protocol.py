"""The Ultravisor's protocols (issue 18, class 5): a refused UVC changes nothing, Prepare Reset is required
before a secure configuration restarts, and the secret store never survives a reboot.

The "changes nothing" test takes the UV's whole state (every configuration and CPU record, the page
tables, exports, the secret store), the frame tags, shared flags and storage keys, and the bytes of every
frame the call could reach, before each refused call, and compares after.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any

import pytest
from test_secrets_uv import IMAGE, request  # the secret store's own image and requests

from emulator.attest.local import LocalSecureGuest
from emulator.hw.memory import PAGE_SHIFT
from firmware.uv import UvCaller
from firmware.uv_codes import command

CPU_STATE_OPR_LOAD = 5
_NON_HOST = re.compile(rb"[^\x00]")  # a byte of a (4-byte) owner tag other than the host's (0)
#: UV attributes that are no state: the call counter, caches rebuilt on demand
_NOT_STATE = {"calls", "walks", "_dispatch", "_sinks", "_rng", "_clock", "mem", "_buf", "_host_keys",
              "attestation_keys", "query", "_cpu_prefixes"}  # fmt: skip


def freeze(obj: Any) -> Any:
    """A comparable copy of a state object (opaque objects such as key wrappers become their type name)."""
    if obj is None or isinstance(obj, (int, str, bytes, bool, float)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, dict):
        return tuple(sorted((repr(k), freeze(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(freeze(v) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return tuple(sorted(repr(freeze(v)) for v in obj))
    if dataclasses.is_dataclass(obj):
        return (type(obj).__name__,) + tuple(
            (f.name, freeze(getattr(obj, f.name)))
            for f in dataclasses.fields(obj)
            if f.name not in _NOT_STATE and f.name != "config"  # a CPU's back reference
        )
    return type(obj).__name__


class Env:
    """A verified, booted secure configuration with a secret, exported and shared pages, and a second one."""

    def __init__(self) -> None:
        g = self.g = LocalSecureGuest("zuv-demo", IMAGE, seed=11)
        self.uv, self.mem, self.c = g.uv, g.mem, g.client
        self.h, self.ch = g.setup.handle, g.setup.cpu_handles[0]
        assert self.c.call("cpu_set_state", cpu_handle=self.ch, state=CPU_STATE_OPR_LOAD).ok  # the first boot
        assert g.uvc("add_secret", addr=g.put(request())).header.rc == 0x0001
        self.other = self.c.create_guest(1 << 20)
        # a page of the second configuration exported (the host holds its ciphertext)
        assert self.c.import_page(self.other.handle, 0x2000).ok
        assert self.c.export_page(self.other.guest_frames[0x2000]).ok
        # a page of the first one shared with the host
        self.shared_ga = g.alloc(4096, 4096)
        g.write(self.shared_ga, b"shared" * 8)
        assert g.uvc("set_shared_access", paddr=self.shared_ga).header.rc == 0x0001
        self.shared_frame = self.uv.secure_guest_frame(self.h, self.shared_ga)
        self.secure_frame = min(self.uv.secure_config(self.h).frames)  # a secure page of the image
        self.host_frames = {f >> PAGE_SHIFT for s in (g.setup, self.other) for f in s.guest_frames.values()}

    def snapshot(self, extra: set[int]) -> Any:
        mem = self.mem
        frames = self.host_frames | extra | {m.start() >> 2 for m in _NON_HOST.finditer(bytes(mem.owner))}
        contents = {f: zlib.crc32(mem.read(f << PAGE_SHIFT, 4096)) for f in sorted(frames)}
        uv = {k: freeze(v) for k, v in vars(self.uv).items() if k not in _NOT_STATE}
        return uv, bytes(mem.owner), bytes(mem.shared), bytes(mem.keys), contents


def _frames_named(mem, fields: dict[str, Any]) -> set[int]:
    out = set()
    for v in fields.values():
        if isinstance(v, int) and 0 <= v < mem.size:
            out |= {v >> PAGE_SHIFT, min(v + 4095, mem.size - 1) >> PAGE_SHIFT}
    return out


def host_refusals(e: Env) -> list[tuple[str, dict[str, Any]]]:
    other_frame = e.other.guest_frames[0x2000]
    return [
        ("init_uv", {"stor_origin": 0x80000000, "stor_len": 0x200000}),  # already initialised
        ("create_sec_conf", {}),  # nothing in the block
        ("destroy_sec_conf", {"handle": e.h + 1}),
        ("destroy_sec_conf", {"handle": e.h}),  # secure CPUs still exist
        ("destroy_sec_conf_fast", {"handle": e.h}),
        (
            "set_sec_conf_params",
            {"guest_handle": e.h, "sec_header_origin": e.c.arena.alloc(0x1000), "sec_header_len": 0x1000},
        ),
        ("create_sec_cpu", {"guest_handle": e.h + 1}),
        ("destroy_sec_cpu", {"handle": e.ch + 1}),
        ("conv_to_sec_stor", {"guest_handle": e.h + 1, "gaddr": 0x2000}),
        ("conv_to_sec_stor", {"guest_handle": e.h, "gaddr": 1 << 40}),
        ("conv_to_sec_stor", {"guest_handle": e.h, "gaddr": e.shared_ga}),  # already secure
        ("conv_from_sec_stor", {"paddr": other_frame}),  # not secure
        ("conv_from_sec_stor", {"paddr": 0x80000000}),  # Ultravisor storage
        ("destr_sec_stor", {"paddr": 0x80000000}),  # Ultravisor storage (a page not secure: a no-op success)
        ("unpack_img", {"guest_handle": e.h, "gaddr": 0x3000}),  # already verified
        ("verify_img", {"handle": e.h}),
        ("cpu_reset", {"handle": e.ch + 1}),
        ("cpu_reset_initial", {"handle": e.ch + 1}),
        ("cpu_reset_clear", {"handle": e.ch + 1}),
        ("prepare_reset", {"handle": e.h + 1}),
        ("cpu_set_state", {"cpu_handle": e.ch + 1, "state": 1}),
        ("cpu_set_state", {"cpu_handle": e.ch, "state": 4}),  # no such state
        # a restart without Prepare Reset
        ("cpu_set_state", {"cpu_handle": e.ch, "state": CPU_STATE_OPR_LOAD}),
        ("set_unshare_all", {"handle": e.h + 1}),
        ("pin_page_shared", {"paddr": e.secure_frame << PAGE_SHIFT}),  # secure, not shared
        ("unpin_page_shared", {"guest_handle": e.h + 1, "gaddr": e.shared_ga}),
        ("dump_init", {"handle": e.h}),  # the image does not allow dumping
        # no dump in progress
        ("dump_cpu", {"cpu_handle": e.ch, "dump_area_origin": e.c.arena.alloc(0x1000)}),
        (
            "dump_conf_stor_state",
            {"config_handle": e.h, "dump_area_origin": e.c.arena.alloc(0x1000), "gaddr": 0},
        ),
        ("dump_complete", {"config_handle": e.h, "dump_area_origin": e.c.arena.alloc(0x1000)}),
        ("query_keys", {}),  # with a block too short (below)
        ("qui", {}),
    ]


def test_every_refused_host_uvc_changes_nothing() -> None:
    e = Env()
    for name, fields in host_refusals(e):
        kw: dict[str, Any] = {"length": 0x10} if name in ("query_keys", "qui") else {}
        before = e.snapshot(_frames_named(e.mem, fields))
        res = e.c.call(name, **fields, **kw)
        assert not res.ok, f"{name} {fields} was not refused"
        after = e.snapshot(_frames_named(e.mem, fields))
        assert after == before, f"refused {name} {fields} (rc {res.rc:#x}) changed state"


def test_a_refused_import_leaves_another_configurations_shared_page_where_it_was() -> None:
    """rc 0x0107 through the MISC path: the second configuration maps the first one's shared page at a
    guest address whose export it holds, so the import checks the frame's bytes against that export."""
    e = Env()
    e.other.gmap.map(0x2000, e.shared_frame << PAGE_SHIFT)
    before = e.snapshot({e.shared_frame})
    res = e.c.import_page(e.other.handle, 0x2000)
    assert res.rc == 0x0107
    assert e.snapshot({e.shared_frame}) == before
    assert e.uv.secure_guest_frame(e.h, e.shared_ga) == e.shared_frame  # still the first guest's page
    assert e.g.read(e.shared_ga, 6) == b"shared"


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("set_shared_access", {"paddr": 1 << 40}),
        ("remove_shared_access", {"paddr": 1 << 40}),
        ("retr_secret", {"secret_idx": 7, "buf_size": 64, "buf_addr": 0x0}),
        ("add_secret", {"addr": None}),  # not a request: zeroes
        ("lock_secrets", {}),  # the second lock (below) is refused
        ("list_secrets", {"list_addr": 1 << 40}),  # beyond the guest's storage
        ("retr_attest", {"arcb_addr": None}),  # not a request: zeroes
        ("retr_attest_evidence", {"arcb_addr": None}),
    ],
)
def test_every_refused_guest_uvc_changes_nothing(name, fields) -> None:
    e = Env()
    if name == "lock_secrets":
        assert e.g.uvc("lock_secrets").header.rc == 0x0001
    for k, v in fields.items():
        if v is None:  # a guest page of zeroes
            fields = {**fields, k: e.g.put(bytes(0x200))}
    c = command(name)
    blk = e.c.build(c.code, **fields)
    raw = bytes(blk)
    at = e.g.alloc(len(raw))
    e.g.write(at, raw)
    cb_frame = e.uv.secure_guest_frame(e.h, at)
    before = e.snapshot(set())
    cc = e.uv.call(UvCaller("guest", e.h, e.ch), e.uv.guest_view(e.h).control_block(at))
    after = e.snapshot(set())
    assert cc != 0
    rc = int.from_bytes(e.g.read(at + 4, 2), "big")
    assert rc != 0x0001
    # the block's rc/rrc are the call's answer; nothing else may differ
    *state_b, contents_b = before
    *state_a, contents_a = after
    assert state_a == state_b, f"refused {name} (rc {rc:#x}) changed the UV state or the tags"
    contents_a.pop(cb_frame), contents_b.pop(cb_frame)
    assert contents_a == contents_b


def test_a_restart_without_prepare_reset_is_refused_and_the_secret_never_survives_a_reboot() -> None:
    e = Env()
    assert e.g.uvc("retr_secret", secret_idx=0, buf_size=32, buf_addr=e.g.alloc(32)).header.rc == 0x0001
    # the host's shortcut: a clear reset of the CPU, then the load
    assert e.c.call("cpu_reset_clear", handle=e.ch).ok
    assert e.c.call("cpu_set_state", cpu_handle=e.ch, state=CPU_STATE_OPR_LOAD).rc == 0x0003
    assert not e.uv.secure_cpu(e.ch).psw_loaded  # the CPU cannot run: SIE would be a validity intercept
    # the protocol: Prepare Reset, the CPU reset, the load; the secret store is empty afterwards
    assert e.c.call("prepare_reset", handle=e.h).ok
    e.c.import_page(e.h, 0)  # the reset PSW comes from guest absolute 0
    assert e.c.call("cpu_reset_clear", handle=e.ch).ok
    assert e.c.call("cpu_set_state", cpu_handle=e.ch, state=CPU_STATE_OPR_LOAD).ok
    assert e.g.uvc("retr_secret", secret_idx=0, buf_size=32, buf_addr=e.g.alloc(32)).header.rc == 0x010F
    # and the next restart needs Prepare Reset again
    assert e.c.call("cpu_reset_clear", handle=e.ch).ok
    assert e.c.call("cpu_set_state", cpu_handle=e.ch, state=CPU_STATE_OPR_LOAD).rc == 0x0003

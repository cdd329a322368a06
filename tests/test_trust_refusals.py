"""Issue 18, deliverable 4: every UVC command of the command table, with malformed blocks, is refused and the
refusal changes nothing: the UV's whole state (configurations, CPUs, page tables, exports, the secret
store), the frame tags, shared flags, storage keys and the bytes of every frame the call could reach are
taken before each refused call and compared after (``test_trust_protocol.Env.snapshot``).

The malformations, each applied alone to a block that is otherwise the command's own: a length 8 short and
8 long (Query: below its minimum), the other caller (a host command from a guest, a guest command from the
host), every handle field naming no configuration or CPU, every address field beyond storage, and every
address field at a secure frame or an odd address. A malformation that a command does not refuse (an
address it ignores) is not compared; every command has at least its length and caller refusals.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_trust_protocol import Env, _frames_named

from emulator.errors import ProgramException
from firmware import uv_blocks as B
from firmware.uv import UvCaller
from firmware.uv_codes import COMMANDS, QUERY_MIN_LEN, command

CPU_HANDLE_COMMANDS = {"destroy_sec_cpu", "cpu_reset", "cpu_reset_initial", "cpu_reset_clear"}
ADDRESS_WORDS = ("addr", "origin", "gaddr", "paddr")


def _fields(name: str) -> list[str]:
    layout = B.LAYOUTS[command(name).struct]
    return [n for n, t, *_ in layout._fields_  # noqa: SLF001 - the record's declared fields
            if n != "header" and not n.startswith("res") and not hasattr(t, "_length_")]  # fmt: skip


def base_fields(e: Env, name: str) -> dict[str, int]:
    """A block that names this configuration's own objects: what a malformation then changes alone."""
    out: dict[str, int] = {}
    for f in _fields(name):
        if f in ("guest_handle", "config_handle"):
            out[f] = e.h
        elif f == "cpu_handle":
            out[f] = e.ch
        elif f == "handle":
            out[f] = e.ch if name in CPU_HANDLE_COMMANDS else e.h
        elif f == "paddr":
            host = "host" in command(name).callers
            out[f] = e.shared_frame << 12 if host else e.shared_ga
        elif f == "gaddr":
            out[f] = e.shared_ga
    return out


def malformations(e: Env, name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(what, caller, call) of each malformed block of the command."""
    c = command(name)
    base = base_fields(e, name)
    caller = "host" if "host" in c.callers else "guest"
    short = QUERY_MIN_LEN - 8 if name == "qui" else c.length - 8
    out = [("length short", caller, {"length": short, **base})]
    if name != "qui":  # Query takes any length from its minimum on
        out.append(("length long", caller, {"length": c.length + 8, **base}))
    for other in ("host", "guest"):
        if other not in c.callers:
            out.append((f"called by the {other}", other, dict(base)))
    for f in _fields(name):
        if "handle" in f:
            out.append((f"{f} unknown", caller, {**base, f: (base.get(f) or e.h) ^ 0x5A5A0000}))
        if any(w in f for w in ADDRESS_WORDS):
            out.append((f"{f} beyond storage", caller, {**base, f: 1 << 40}))
            secure = e.secure_frame << 12 if caller == "host" else 1 << 40
            out.append((f"{f} at a secure frame, odd", caller, {**base, f: secure + 3}))
    return out


def _call(e: Env, caller: str, name: str, fields: dict[str, Any]) -> tuple[int, int]:
    """Issue the call; returns (rc, the guest block's frame or -1); rc -1: a program exception instead (a
    guest's UVC naming a page its host must import first: 0x3E for the host to resolve)."""
    fields = dict(fields)
    length = fields.pop("length", None)
    if caller == "host":
        return e.c.call(name, length=length, **fields).rc, -1
    blk = e.c.build(name, length=length, **fields)
    raw = bytes(blk)
    at = e.g.alloc(max(len(raw), 0x200))
    e.g.write(at, raw)
    frame = e.uv.secure_guest_frame(e.h, at) or -1
    try:
        e.uv.call(UvCaller("guest", e.h, e.ch), e.uv.guest_view(e.h).control_block(at))
    except ProgramException as x:
        assert x.code == 0x3E, x
        return -1, frame
    return int.from_bytes(e.g.read(at + 4, 2), "big"), frame


@pytest.mark.parametrize("name", [c.name for c in COMMANDS if c.implemented])
def test_every_malformed_block_of_every_command_is_refused_and_changes_nothing(name: str) -> None:
    e = Env()
    refused: list[str] = []
    for what, caller, fields in malformations(e, name):
        named = _frames_named(e.mem, fields)
        before = e.snapshot(named)
        rc, cb_frame = _call(e, caller, name, fields)
        if rc == 0x0001:  # not a refusal for this command (an address it does not use): a fresh machine
            e = Env()
            continue
        after = e.snapshot(named)
        if cb_frame >= 0:  # a guest block's own rc/rrc are the answer: its frame may differ, nothing else
            before[-1].pop(cb_frame, None)
            after[-1].pop(cb_frame, None)
        assert after == before, f"{name}: refused {what} (rc {rc:#06x}) changed state"
        refused.append(what)
    assert "length short" in refused
    generic = {"length long", "called by the host", "called by the guest"}
    assert generic & {w for w, _, _ in malformations(e, name)} <= set(refused), refused

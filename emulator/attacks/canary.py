"""The canary guest (``guests/canary``) as the trust-boundary race and model tests use it: its SE image, its
canary words, and the count of canary bytes in what the host obtained.

The guest keeps an 8-byte canary C in two secure pages (hot: C, rewritten in a tight loop; cold: C ^ 0x10)
and in registers (r6-r13: C ^ 0 .. C ^ 7; f0, f2, f4, f6: C ^ 8 .. C ^ 11). Every such word shares C's
first seven bytes. Like the playbook's referee, this module judges; it never obtains data for the host.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from emulator.api import Exit, Guest, Host

__all__ = [
    "CANARY",
    "CANARY_WORDS",
    "canary_bytes",
    "canary_int",
    "canary_image",
    "boot_canary",
    "RaceResult",
    "race",
]

#: ``guests/canary/canary.h``
CANARY: Final = 0xC3A9E15B7D2F8640
#: every word the guest holds: C ^ 0 .. C ^ 11 (registers), C ^ 0x10 (the cold page)
CANARY_WORDS: Final = tuple(CANARY ^ i for i in (*range(12), 0x10))
_KERNEL: Final = Path(__file__).resolve().parents[2] / "guests" / "images" / "canary.elf"
_LINE: Final = re.compile(rb"canary: hot (0x[0-9a-f]+) cold (0x[0-9a-f]+)\n")
#: six bytes in a row of a canary word are a leak: C's first six, C's second to seventh, each word's last six
_NEEDLES: Final = tuple(
    sorted({w.to_bytes(8, "big")[a : a + 6] for w in CANARY_WORDS for a in (0, 1, 2)})
)
_CORE: Final = CANARY.to_bytes(8, "big")[2:6]
_CORE_R: Final = _CORE[::-1]
_HALVES: Final = frozenset(h for w in CANARY_WORDS for h in (w >> 32, w & 0xFFFFFFFF))


def canary_bytes(data: bytes | bytearray | memoryview | str) -> int:
    """Bytes of ``data`` inside a canary match (six or more bytes of a canary word in a row, either byte
    order); text is searched as its UTF-8 bytes and for the words in hexadecimal too."""
    if isinstance(data, str):
        low = data.lower()
        hexhits = sum(low.count(f"{w:016x}"[a : a + 12]) for w in CANARY_WORDS for a in (0, 2, 4))
        return 6 * hexhits + canary_bytes(data.encode("utf-8", "replace"))
    raw = bytes(data)
    if _CORE not in raw and _CORE_R not in raw:  # every needle holds C's bytes 2-5: one scan each way first
        return 0
    hits = 0
    for n in _NEEDLES:
        hits += raw.count(n) + raw.count(n[::-1])
    return 6 * hits


def canary_int(value: int) -> bool:
    """True if an integer the host got is a canary word or one of its 32-bit halves."""
    v = value & 0xFFFFFFFFFFFFFFFF
    return v in CANARY_WORDS or (v >> 32) in _HALVES or (v & 0xFFFFFFFF) in _HALVES


@cache
def canary_image(machine: str = "zuv-demo") -> bytes:
    """The canary guest's SE image for ``machine``'s host key (built once per process, deterministic)."""
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    key = MachineIdentity.bundled(machine).public_key
    rng = DeterministicRng("zuv canary guest image v1")
    return build_image(kernel=_KERNEL.read_bytes(), host_keys=[key], rng=rng).data


def boot_canary(
    host: Host, *, memory: int | None = None, time_limit: float = 30.0
) -> tuple[Guest, int, int]:
    """Boot the canary guest on ``host`` until it prints its pages; returns (guest, hot, cold) with the
    pages' guest addresses. The guest then runs its loop whenever the host runs it.

    Raises:
        RuntimeError: the guest did not boot securely or did not print its line.
    """
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "canary.se"
        path.write_bytes(canary_image())
        kw = {} if memory is None else {"memory": memory}
        g = host.boot(path, until=_LINE, time_limit=time_limit, **kw)
    m = _LINE.search(g.console)
    if not g.secure or m is None:
        raise RuntimeError(f"the canary guest did not start: {g.secure_boot_failure or g.console[-200:]!r}")
    return g, int(m.group(1), 16), int(m.group(2), 16)


@dataclass
class RaceResult:
    """What ``race`` saw: cycles done, canary bytes found in host-owned frames, the UV calls' outcomes."""

    cycles: int = 0
    leaked: int = 0  #: canary bytes in host-owned frames, summed over every look
    looks: int = 0  #: host reads of a frame the host had just been handed
    exports: int = 0
    imports: int = 0
    destroys: int = 0
    #: rc of refused calls (the guest took the page back)
    refused: dict[str, int] = field(default_factory=dict)
    #: SIE exits of the guest's yield (DIAG 0x9C, PV notification) during the race: the loop ran
    guest_yields: int = 0
    guest_faults: int = 0  #: host program interruptions 0x3E: the guest touched a page the host had taken
    guest_errors: list[str] = field(default_factory=list)  #: exceptions of the vCPU's thread
    guest_detail: str = ""  #: why a vCPU stopped abnormally ("" if it did not)
    seconds: float = 0.0


def race(host: Host, g: Guest, hot: int, cold: int, cycles: int, destroy_every: int = 10) -> RaceResult:
    """Export / import / destroy cycles on the guest's hot page (and now and then its cold page) from this
    thread while vCPU 0 runs the guest's store loop on another thread. After each export and destroy the
    host reads the frame it was handed and the canary bytes in it are counted; at the end every frame of
    the guest the host may touch is searched too."""
    from emulator.errors import SecureStorageAccess

    out = RaceResult()
    stop = threading.Event()

    def run_guest() -> None:
        try:
            while not stop.is_set():
                g.run(time_limit=0.02)
        except BaseException as e:  # noqa: BLE001 - reported in the result
            out.guest_errors.append(f"{type(e).__name__}: {e}")

    def look(gaddr: int) -> None:
        try:
            data = host.read(g.frame(gaddr), 4096)
        except SecureStorageAccess:  # the guest touched the page and the hypervisor took it back already
            return
        out.looks += 1
        out.leaked += canary_bytes(data)

    def refused(what: str, rc: int) -> None:
        key = f"{what} rc {rc:#06x}"
        out.refused[key] = out.refused.get(key, 0) + 1

    def exit_seen(ex: Exit) -> None:  # on the vCPU's thread
        if ex.icptcode == 0x6C:
            out.guest_yields += 1
        elif ex.host_pgm == 0x3E:
            out.guest_faults += 1

    off = g.on_exit(exit_seen)
    t = threading.Thread(target=run_guest, name="canary-vcpu0")
    t0 = time.perf_counter()
    t.start()
    # the race starts once the guest's loop runs (its first yield), and goes on past ``cycles`` until the
    # guest has yielded during it too (a busy host thread can keep the vCPU's thread off the GIL that long)
    deadline = t0 + 10.0
    while out.guest_yields == 0 and t.is_alive() and time.perf_counter() < deadline:
        time.sleep(0.001)
    before = out.guest_yields
    try:
        i = -1
        while True:
            i += 1
            if i >= cycles and (out.guest_yields > before or time.perf_counter() >= deadline):
                break
            page = cold if i % 97 == 96 else hot
            r = g.export(page)
            if r.ok:
                out.exports += 1
                look(page)
            else:
                refused("export", r.rc)
            r = g.import_page(page)
            if r.ok:
                out.imports += 1
            else:
                refused("import", r.rc)
            if destroy_every and i % destroy_every == destroy_every - 1:
                r = g.destroy_page(page)
                if r.ok:
                    out.destroys += 1
                    look(page)
                else:
                    refused("destroy", r.rc)
            out.cycles += 1
    finally:
        stop.set()
        t.join(timeout=60)
        out.seconds = time.perf_counter() - t0
        off()
    if t.is_alive():
        out.guest_errors.append("the vCPU's thread did not stop")
    for a in g.pages("host") + g.pages("shared"):
        out.leaked += canary_bytes(host.read(g.frame(a), 4096))
    out.guest_detail = g.cpu_detail
    out.guest_yields -= before  # the yields during the race itself
    return out

"""Trap cost against guest size: a normal guest's DIAG round trip after it grew unicorn's TLB or ran
through many code pages, as a ratio to the same round trip in a guest that did neither (same run).

Two things stock unicorn does after every run grow with the guest: it translates the trap's halting
block again, and each translation scans the whole TLB; and it walks every registered exit. The CPU keeps
the engine from re-translating (``emulator/hw/engine.py``: then the TLB's size costs traps nothing) and
keeps the exits unicorn walks few while traps dominate (ARCHITECTURE.md, "The trap round trip"); this
benchmark shows the round trip stays flat.

* sweep N pages: the guest stores one byte into each of N pages first (the TLB grows to hold them);
* N code pages: the guest runs through N pages with 32 scanner hits each (DIAG opcode bytes among
  no-ops: real code gives ~30 per page, most of them operand bytes, 29.1 in libc's code).

The round trip is timed over the traps after the first ``--warm`` (the CPU flushes once per 120 ms while
traps dominate, so the first traps after a big working set still pay for it).

Usage: python bench/bench_traps.py [--traps 40000] [--warm 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.hw.memory import PhysicalMemory  # noqa: E402
from emulator.hw.tod import TodClock  # noqa: E402
from emulator.hypervisor.kvm import MIB, Hypervisor  # noqa: E402

_WAIT = struct.pack(">QQ", 0x0002000180000000, 0xFFF)
_BASE = 0x100000


def _kernel(sweep: int, code_pages: int, diags: int) -> bytes:
    """Sweep ``sweep`` pages from 1 MiB on, run through ``code_pages`` pages of scanner hits after them,
    then loop ``diags`` times over DIAG 0x9C and stop."""
    first_code = _BASE + (max(sweep, 1) + 1) * 0x1000  # after the swept pages
    img = bytearray(first_code + (code_pages + 1) * 0x1000)
    img[4:8] = struct.pack(">I", 0x80010000)
    code = bytearray()
    code += bytes.fromhex("c031") + struct.pack(">I", _BASE)  # lgfi %r3,base
    code += bytes.fromhex("c041") + struct.pack(">I", max(sweep, 1))  # lgfi %r4,sweep
    code += bytes.fromhex("92013000" "a73b1000" "a747fffc")  # 0: mvi 0(%r3),1 ; aghi %r3,4096 ; brctg %r4,0b
    at = 0x10000 + len(code)
    code += bytes.fromhex("c0f4") + struct.pack(">i", (first_code - at) // 2)  # brcl 15,first code page
    img[0x10000 : 0x10000 + len(code)] = code
    for i in range(code_pages):
        page = first_code + i * 0x1000
        img[page : page + 0x1000] = (bytes.fromhex("0700") * 63 + bytes.fromhex("8300")) * 32  # nopr ; hit
        img[page : page + 4] = bytes.fromhex("a7f40800")  # j +4096
    tail = first_code + code_pages * 0x1000
    loop = bytes.fromhex("c021") + struct.pack(">I", diags) + bytes.fromhex("8300009c" "a727fffe")
    loop += (
        bytes.fromhex("c010")
        + struct.pack(">i", (0x10100 - (tail + len(loop))) // 2)
        + bytes.fromhex("b2b21000")
    )
    img[tail : tail + len(loop)] = loop
    img[0x10100:0x10110] = _WAIT
    return bytes(img)


def round_trip(hv: Hypervisor, sweep: int, code_pages: int, traps: int, warm: int) -> float:
    """Seconds per DIAG round trip over the traps after the first ``warm`` ones."""
    vm = hv.create_vm(512 * MIB)
    stamps: list[float] = []

    def listener(_vm, _v, ex) -> None:
        stamps.append(0.0)
        n = len(stamps)
        if n == warm or n == warm + traps:
            stamps[-1] = time.perf_counter()

    hv.exit_listeners.append(listener)
    try:
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(_kernel(sweep, code_pages, warm + traps))
            f.flush()
            vm.load(f.name)
        res = vm.run(time_limit=600)
        assert res.clean and res.intercepts.get("DIAG", 0) == warm + traps, (res.describe(), res.intercepts)
        return (stamps[warm + traps - 1] - stamps[warm - 1]) / traps
    finally:
        hv.exit_listeners.remove(listener)
        vm.destroy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traps", type=int, default=40000)
    ap.add_argument("--warm", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    hv = Hypervisor(PhysicalMemory(1024 * MIB), TodClock())

    def best(sweep: int, pages: int) -> float:
        return min(round_trip(hv, sweep, pages, a.traps, a.warm) for _ in range(a.repeat))

    base = best(0, 0)
    print(f"DIAG round trip, small guest:            {base * 1e6:7.2f} us")
    for label, sweep, pages in (
        ("after sweeping 16,384 pages", 16384, 0),
        ("after sweeping 65,536 pages", 65536, 0),
        ("after 100 pages of scanner hits", 0, 100),
        ("after 250 pages of scanner hits", 0, 250),
    ):
        t = best(sweep, pages)
        print(f"DIAG round trip, {label:32s} {t * 1e6:7.2f} us  ({t / base:.2f}x the small guest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

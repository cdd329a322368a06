"""Trap round trips of a program run by ``zuv run`` (the ``Machine``): per loop iteration, in the same run.

* SCLP call: SERVC READ SCP INFO, an enabled wait (LPSWE) that the service signal ends, the external
  interruption, and the handler's LPSWE back;
* SCLP call as kvm-unit-tests makes it (~1.1 million of them in ``sclp-1g``): with the library's CR0
  switching around it, four LCTLGs, two LPSWEs and a SERVC per call (``_kut_sclp_body``);
* SIGP SENSE RUNNING (an owner's instruction), SSM (native once 16 in a row found nothing pending:
  ``native_ssm``), LCTLG of CR4 (CPU-local, emulated), STNSM 0xfc (native when it can only disable:
  ``traps._system_mask_native``), each alone in a BRCTG loop (as kvm-unit-tests' ``exittime``).

Each line gives the elapsed time and the process's CPU time per iteration (best of ``--repeat``): on a
machine shared with other work the CPU time moves less.

Usage: python bench/bench_machine_traps.py [--loops 20000] [--repeat 3]
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

from emulator.machine.machine import Machine  # noqa: E402

_CODE, _SCCB, _DATA, _HANDLER = 0x10000, 0x20000, 0x30000, 0x11000
_DONE = struct.pack(">QQ", 0x0002000180000000, 0xFFF)  # disabled wait: the program ended


def _program(body: bytes, loops: int) -> bytes:
    """A flat image: CR0 with the service-signal subclass, then ``loops`` times ``body``, then a disabled
    wait. The external new PSW goes to a handler that turns the old PSW's wait and external bits off and
    loads it back (LPSWE)."""
    img = bytearray(_DATA + 0x100)
    img[0:8] = struct.pack(">II", 0x00080000, 0x80000000 | _CODE)  # short IPL PSW, 31-bit
    img[0x1B0:0x1C0] = struct.pack(">QQ", 0x0000000180000000, _HANDLER)  # external new PSW
    code = bytearray()
    code += bytes.fromhex("c0f1") + struct.pack(">I", _DATA)  # lgfi %r15,DATA
    code += bytes.fromhex("eb00f000002f")  # lctlg %c0,%c0,0(%r15)
    code += bytes.fromhex("c051") + struct.pack(">I", loops)  # lgfi %r5,loops
    top = len(code)
    code += body
    code += bytes.fromhex("a757") + struct.pack(">h", -(len(code) - top) // 2)  # brctg %r5,top
    code += bytes.fromhex("b2b2f010")  # lpswe 16(%r15): done
    img[_CODE : _CODE + len(code)] = code
    # handler: ni 0x131,0xfd (wait off); ni 0x130,0xfe (external off); lpswe 0x130
    img[_HANDLER : _HANDLER + 12] = bytes.fromhex("94fd0131" "94fe0130" "b2b20130")
    img[_DATA : _DATA + 8] = struct.pack(">Q", 0xE0 | 1 << 9)  # CR0: service-signal subclass
    img[_DATA + 16 : _DATA + 32] = _DONE
    img[_DATA + 32 : _DATA + 40] = struct.pack(">Q", 0)  # CR4 image for LCTLG
    img[_DATA + 48] = 0x00  # SSM's mask byte (disabled)
    return bytes(img)


def _servc_body() -> bytes:
    """SERVC READ SCP INFO into a fresh 4 KiB SCCB, then an enabled wait that continues after itself."""
    wait_at = _DATA + 64
    b = bytearray()
    b += bytes.fromhex("c031") + struct.pack(">I", _SCCB)  # lgfi %r3,SCCB
    b += bytes.fromhex("e5443000") + struct.pack(">H", 0x1000)  # mvhhi 0(%r3),0x1000: the SCCB's length
    b += bytes.fromhex("c021") + struct.pack(">I", 0x00020001)  # lgfi %r2,READ SCP INFO
    b += bytes.fromhex("b2200023")  # servc %r2,%r3
    b += bytes.fromhex("b2b2f040")  # lpswe 64(%r15): the enabled wait (its address: right after)
    return bytes(b), wait_at


def _kut_sclp_body() -> tuple[bytes, bytes]:
    """kvm-unit-tests' SCLP call as its ``sclp`` test makes it ~1.1 million times (``lib/s390x/sclp.c``):
    CR0's service-signal subclass set (STCTG, OI, LCTLG), the busy flag set, external interruptions enabled by
    an LPSWE that continues after itself, SERVC WRITE EVENT DATA with an SCCB that crosses its page (the
    boundary-violation answer of the test's longest part), and a spin on the busy flag. The handler, as the
    library's: its own CR0 loaded (the interrupted one saved), the flag cleared, the subclass cleared in the
    saved CR0 and (``ctl_clear_bit``) in the current one, the saved CR0 loaded back, LPSWE to the old PSW:
    four LCTLGs, two LPSWEs, a SERVC and an external interruption per call. Returns (body, handler)."""
    b = bytearray()
    b += bytes.fromhex("eb00f1000025")  # stctg %c0,%c0,0x100(%r15)
    b += bytes.fromhex("9602f106")  # oi 0x106(%r15),0x02: CR0 bit 54, the service-signal subclass
    b += bytes.fromhex("eb00f100002f")  # lctlg %c0,%c0,0x100(%r15)
    b += bytes.fromhex("9201f120")  # mvi 0x120(%r15),1: busy
    b += bytes.fromhex("b2b2f130")  # lpswe 0x130(%r15): external interruptions on, continues after itself
    b += bytes.fromhex("c031") + struct.pack(">I", _SCCB + 0xF00)  # lgfi %r3,SCCB+0xf00
    b += bytes.fromhex("e5443000") + struct.pack(">H", 0x200)  # mvhhi 0(%r3),0x200: crosses the page
    b += bytes.fromhex("c021") + struct.pack(">I", 0x00760005)  # lgfi %r2,WRITE EVENT DATA
    b += bytes.fromhex("b2200023")  # servc %r2,%r3
    b += bytes.fromhex("9500f120" "a774fffe")  # 0: cli 0x120(%r15),0; jne 0b
    h = bytearray()
    h += bytes.fromhex("eb00f1100025")  # stctg %c0,%c0,0x110(%r15): the interrupted CR0
    h += bytes.fromhex("eb00f108002f")  # lctlg %c0,%c0,0x108(%r15): the handler's own
    h += bytes.fromhex("9200f120")  # mvi 0x120(%r15),0: not busy
    h += bytes.fromhex("94fdf116")  # ni 0x116(%r15),0xfd: the subclass off in the saved CR0
    h += bytes.fromhex("eb00f1180025" "94fdf11e" "eb00f118002f")  # ctl_clear_bit: stctg, ni, lctlg
    h += bytes.fromhex("eb00f110002f")  # lctlg %c0,%c0,0x110(%r15): the interrupted CR0 back
    h += bytes.fromhex("b2b20130")  # lpswe 0x130: the external old PSW
    return bytes(b), bytes(h)


def run_kut_sclp(loops: int) -> tuple[float, float]:
    """Seconds per kvm-unit-tests SCLP call (``_kut_sclp_body``): elapsed, and the process's CPU time."""
    body, handler = _kut_sclp_body()
    img = bytearray(_program(body, loops)) + bytes(0x100)  # room for the data at _DATA + 0x100
    img[_HANDLER : _HANDLER + len(handler)] = handler
    img[_DATA + 0x108 : _DATA + 0x110] = struct.pack(">Q", 0xE0)  # the handler's CR0
    after_lpswe = _CODE + img[_CODE:].index(body) + body.index(bytes.fromhex("b2b2f130")) + 4
    img[_DATA + 0x130 : _DATA + 0x140] = struct.pack(">QQ", 0x0100000180000000, after_lpswe)
    return _timed(img, loops)


def run(body: bytes, loops: int, wait_at: int | None = None) -> tuple[float, float]:
    """Seconds per iteration of ``body`` in a 64 MiB machine: elapsed, and the process's CPU time."""
    img = bytearray(_program(body, loops))
    if wait_at is not None:
        after = _CODE + img[_CODE:].index(body) + len(body)
        img[wait_at : wait_at + 16] = struct.pack(">QQ", 0x0102000180000000, after)  # enabled wait
    return _timed(img, loops)


def _timed(img: bytearray, loops: int) -> tuple[float, float]:
    m = Machine(memory=64 << 20)
    try:
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(bytes(img))
            f.flush()
            m.load(f.name)
        t, c = time.perf_counter(), time.process_time()
        res = m.run(time_limit=600)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        assert res.cpus[0].psw[1] == 0xFFF, res
        return dt / loops, dc / loops
    finally:
        m.close()


_BODIES = {
    "SIGP SENSE RUNNING": bytes.fromhex("ae110015"),  # sigp %r1,%r1,0x15 (CPU 0 itself)
    "SSM (the same mask, native)": bytes.fromhex("8000f030"),  # ssm 48(%r15)
    "LCTLG CR4": bytes.fromhex("eb44f020002f"),  # lctlg %c4,%c4,32(%r15)
    "STNSM 0xfc (native)": bytes.fromhex("acfcf038"),  # stnsm 56(%r15),0xfc
}


def _figures(runs: list[tuple[float, float]]) -> str:
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    return f"{wall * 1e6:7.2f} us elapsed, {cpu * 1e6:7.2f} us CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    body, wait_at = _servc_body()
    runs = [run(body, a.loops, wait_at) for _ in range(a.repeat)]
    print(f"{'SCLP call (SERVC, wait, service signal, LPSWE back):':52s} {_figures(runs)}")
    runs = [run_kut_sclp(a.loops) for _ in range(a.repeat)]
    print(f"{'SCLP call, kvm-unit-tests (4 LCTLG, 2 LPSWE, SERVC):':52s} {_figures(runs)}")
    for name, b in _BODIES.items():
        runs = [run(b, a.loops) for _ in range(a.repeat)]
        print(f"{name + ':':52s} {_figures(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

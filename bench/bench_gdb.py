"""The GDB stub's cost, against the same work without it in the same run:

* continue: ``bench_alu`` (n iterations) run to its end by ``Machine.run`` alone, and by a GDB client's
  ``c`` through the stub (the stub only waits on its socket while the CPU runs: the ratio should be ~1);
* step latency: ``Machine.step(1)`` in a loop, and a client's ``s`` packets round trip (socket, packet,
  step, stop reply), per instruction.

Usage: python bench/bench_gdb.py [--n 50000000] [--steps 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.gdb.stub import GdbStub, checksum, frame  # noqa: E402
from emulator.machine.machine import Machine  # noqa: E402

ALU = ROOT / "guests" / "images" / "bench_alu.elf"


def _machine(n: int) -> Machine:
    m = Machine(64 << 20, 1, console_out=lambda b: None)
    m.load(str(ALU), f"n={n}")
    return m


def _reply(s: socket.socket, buf: bytearray) -> str:
    while True:
        del buf[: len(buf) - len(buf.lstrip(b"+"))]
        start, end = buf.find(b"$"), buf.find(b"#")
        if start >= 0 and end > start and len(buf) >= end + 3:
            payload = bytes(buf[start + 1 : end])
            assert int(buf[end + 1 : end + 3], 16) == checksum(payload)
            del buf[: end + 3]
            s.sendall(b"+")
            return payload.decode()
        buf += s.recv(65536)


def _with_stub(m: Machine, packets: list[bytes]) -> float:
    stub = GdbStub(m, port=0)
    t = threading.Thread(target=stub.serve, kwargs={"start_running": False}, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", stub.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gdb's remote connection
    buf = bytearray()
    t0 = time.perf_counter()
    for p in packets:
        s.sendall(frame(p))
        _reply(s, buf)
    dt = time.perf_counter() - t0
    s.close()
    stub.close()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    plain, stubbed, step_plain, step_stub = [], [], [], []
    for _ in range(a.repeat):  # alternate, so both sides see the same minutes
        m = _machine(a.n)
        t0 = time.perf_counter()
        m.run()
        plain.append(time.perf_counter() - t0)
        stubbed.append(_with_stub(_machine(a.n), [b"c"]))
        m = _machine(10**9)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            m.step(1)
        step_plain.append((time.perf_counter() - t0) / a.steps * 1e6)
        step_stub.append(_with_stub(_machine(10**9), [b"s"] * a.steps) / a.steps * 1e6)
    print(f"continue bench_alu n={a.n}: plain run {min(plain):.3f} s, through the stub {min(stubbed):.3f} s, "
          f"ratio {min(stubbed) / min(plain):.2f}")
    print(f"step: Machine.step {min(step_plain):.1f} us, gdb 's' round trip {min(step_stub):.1f} us "
          f"(ratio {min(step_stub) / min(step_plain):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole kvm-unit-tests suite on zuv against qemu-system-s390x TCG in the same run: per-test times and
the suite's total, as ratios (zuv time / QEMU time), one test at a time so the two never share a core.

Tests both finish (neither killed at its timeout) count into the ratio of the "finished" total; a test
killed on either side is listed apart, since its time is the timeout, not the work.

Usage: python bench/bench_conformance.py [--repeat 1] [TEST ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("conformance", ROOT / "tools" / "conformance.py")
conformance = importlib.util.module_from_spec(_spec)
sys.modules["conformance"] = conformance
_spec.loader.exec_module(conformance)  # type: ignore[union-attr]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="*")
    ap.add_argument("--repeat", type=int, default=1, help="runs per test and side (the median is kept)")
    args = ap.parse_args()
    tree = conformance.build(conformance.default_tarball())
    specs = conformance.selected(conformance.parse_cfg((tree / "s390x" / "unittests.cfg").read_text()))
    if args.tests:
        specs = [s for s in specs if s.name in args.tests]
    offered = conformance.zuv_options()
    rows = []
    for s in specs:
        elf = tree / "s390x" / s.file
        if not elf.exists():
            continue
        zcmd, _ = conformance.zuv_command(s, elf, offered)
        qcmd = conformance.qemu_command(s, elf)
        z, q = [], []
        for _ in range(args.repeat):  # alternate the two sides so both see the same minutes
            z.append(conformance.run_one(s.name, zcmd, s.timeout))
            q.append(conformance.run_one(s.name, qcmd, s.timeout))
        zt = statistics.median(r.seconds for r in z)
        qt = statistics.median(r.seconds for r in q)
        killed = any(r.verdict == "TIMEOUT" for r in z + q)
        rows.append((s.name, zt, qt, killed))
        print(f"{s.name:30} zuv {zt:7.2f} s  qemu {qt:7.2f} s  ratio {zt / qt if qt else 0:6.2f}"
              + ("  (killed at the timeout)" if killed else ""), flush=True)
    done = [r for r in rows if not r[3]]
    zsum, qsum = sum(r[1] for r in done), sum(r[2] for r in done)
    print(f"finished on both sides: {len(done)} tests, zuv {zsum:.1f} s, qemu {qsum:.1f} s, "
          f"ratio {zsum / qsum if qsum else 0:.2f}")
    for name, zt, qt, _ in (r for r in rows if r[3]):
        print(f"killed: {name} (zuv {zt:.0f} s, qemu {qt:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

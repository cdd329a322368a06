"""Trust-boundary stress benchmarks (issue 18, classes 4 and 5), with the canary guest (``guests/canary``).

* race: export / import / destroy cycles of the guest's hot page from this thread while vCPU 0 runs the
  guest's store loop on another thread (``emulator.attacks.canary.race``): cycles per second, the canary
  bytes found in host-owned frames (must be 0), the guest's yields and faults during the race (it ran),
  and whether the guest still runs afterwards;
* model: the model-based random hypervisor (``tests/trust_model.py``): random host operations (valid and
  malformed UVCs, host CPU instructions on secure frames, helper calls, SIE entries, resets) around the
  canary guest, every result searched for canary bytes: operations per second and leaks (must be 0).

Usage: python bench/bench_trust.py [--cycles 10000] [--operations 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from emulator.api import Host  # noqa: E402
from emulator.attacks.canary import boot_canary, race  # noqa: E402


def bench_race(cycles: int, seed: int) -> int:
    with Host(seed=seed) as host:
        g, hot, cold = boot_canary(host)
        r = race(host, g, hot, cold, cycles, destroy_every=10)
        after = g.run(time_limit=0.2)
        runs_on = after.reason == "time limit reached" and not g.cpu_detail
    rate = r.cycles / r.seconds
    print(f"race: {r.cycles} export/import/destroy cycles in {r.seconds:.2f} s = {rate:,.0f} cycles/s"
          f" ({r.exports} exports, {r.imports} imports, {r.destroys} destroys; refused: {r.refused})")
    print(f"  guest during the race: {r.guest_yields} yields, {r.guest_faults} faults (0x3E) taking its page "
          f"back; runs on afterwards: {'yes' if runs_on else 'NO'}; errors: {r.guest_errors or 'none'}")
    print(
        f"  canary bytes in host-owned frames: {r.leaked} ({r.looks} frames the host was handed, then every "
        f"host frame of the guest)"
    )
    return 0 if r.leaked == 0 and not r.guest_errors and runs_on else 1


def bench_model(operations: int, seed: int) -> int:
    from trust_model import run_model

    t = time.perf_counter()
    stats = run_model(operations, seed)
    dt = time.perf_counter() - t
    print(f"model: {stats.operations:,} operations in {dt:.1f} s = {stats.operations / dt:,.0f} ops/s over "
          f"{stats.runs} machines; canary bytes the host obtained: {stats.leaked}")
    print(f"  by kind: {', '.join(f'{k} {v:,}' for k, v in sorted(stats.kinds.items()))}")
    return 0 if stats.leaked == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=10000)
    ap.add_argument("--operations", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rc = 0
    if a.cycles:
        rc |= bench_race(a.cycles, a.seed)
    if a.operations:
        rc |= bench_model(a.operations, a.seed)
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Machine benchmarks: zuv against qemu-system-s390x -kernel and raw unicorn, measured in the same run.

Each guest in ``guests/images`` named ``bench_*`` reads ``n=`` from its command line and loops ``n``
times. Times are differences between a large and a small ``n`` (start-up cancels out), best of
``--repeat``. Instructions per iteration come from zuv's exact counted mode. Raw unicorn runs the guest's
``bench_kernel(n)`` function (when the guest has one) in a bare ``Uc`` with no machine around it.

Usage: python bench/bench_machine.py [--repeat 3] [--scale 1.0] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elftools.elf.elffile import ELFFile  # noqa: E402

from emulator.machine.machine import Machine  # noqa: E402

IMAGES = ROOT / "guests" / "images"
# guest, small n, big n (scaled by --scale)
CASES = [
    ("bench_alu", 1_000_000, 100_000_000, "ALU loop (aghi/aghi/brctg)"),
    ("bench_sieve", 1_000_000, 40_000_000, "DAT-heavy sieve (bytes, DAT on)"),
    ("bench_store", 1_000, 20_000, "store-heavy loop (n x 8192 stg)"),
]


def zuv_time(elf: Path, n: int, memory: int) -> tuple[float, str]:
    m = Machine(memory, 1, console_out=None)
    m.load(str(elf), f"n={n}")
    t0 = time.perf_counter()
    r = m.run(time_limit=600)
    dt = time.perf_counter() - t0
    if not r.clean:
        raise SystemExit(f"{elf.name} n={n} did not end cleanly on zuv: {r.describe()}")
    m.close()
    return dt, m.console.decode("ascii", "replace")


def zuv_count(elf: Path, n: int, memory: int) -> int:
    m = Machine(memory, 1, deterministic=True, console_out=None)
    m.load(str(elf), f"n={n}")
    r = m.run(time_limit=600)
    assert r.instructions is not None
    return r.instructions


def qemu_time(elf: Path, n: int, memory: int) -> tuple[float, str]:
    cmd = [
        "qemu-system-s390x", "-M", "s390-ccw-virtio", "-accel", "tcg", "-nographic", "-display", "none",
        "-m", f"{memory >> 20}", "-kernel", str(elf), "-append", f"n={n}", "-no-reboot",
    ]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=900, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0, p.stdout.decode("ascii", "replace")


def unicorn_time(elf: Path, n: int) -> float | None:
    """The guest's inner loop in a bare unicorn (default TLB mode, no hooks, DAT off), when it has one.

    bench_alu: ``alu_loop`` with r1 = n up to its end; bench_store: ``store_rounds(buf, 8192, n)`` called
    with the ABI. The sieve runs with DAT on and has no machine-free kernel.
    """
    from unicorn import Uc
    from unicorn import s390x_const as S
    from unicorn.unicorn_const import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN

    with open(elf, "rb") as f:
        e = ELFFile(f)
        symtab = e.get_section_by_name(".symtab")
        sym = {s.name: s["st_value"] for s in symtab.iter_symbols()} if symtab else {}  # type: ignore[attr-defined]
        uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        uc.mem_map(0, 256 << 20)
        for seg in e.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                uc.mem_write(seg["p_paddr"], seg.data())
    uc.reg_write(S.UC_S390X_REG_PSWM, 0x0000000180000000)
    uc.reg_write(S.UC_S390X_REG_CR0, 0x60000)
    if "alu_loop" in sym:
        begin, until = sym["alu_loop"], sym["alu_loop"] + 12
        uc.reg_write(S.UC_S390X_REG_R1, n)
    elif "store_rounds" in sym:
        ret = 0x1000
        uc.mem_write(ret, b"\x07\x07")
        begin, until = sym["store_rounds"], ret
        uc.reg_write(S.UC_S390X_REG_R2, 0x100000)
        uc.reg_write(S.UC_S390X_REG_R3, 8192)
        uc.reg_write(S.UC_S390X_REG_R4, n)
        uc.reg_write(S.UC_S390X_REG_R15, (200 << 20) - 160)
        uc.reg_write(S.UC_S390X_REG_R14, ret)
    else:
        return None
    t0 = time.perf_counter()
    uc.emu_start(begin, until)
    return time.perf_counter() - t0


def best(fn, repeat: int):
    runs = [fn() for _ in range(repeat)]
    return min(runs, key=lambda r: r[0] if isinstance(r, tuple) else r)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--memory", default=256 << 20, type=int)
    args = ap.parse_args()
    have_qemu = shutil.which("qemu-system-s390x") is not None
    rows = []
    for name, small, big, title in CASES:
        elf = IMAGES / f"{name}.elf"
        if not elf.exists():
            print(f"{name}: {elf} missing (build the guests with tools/build_guests.py)", file=sys.stderr)
            continue
        big = int(big * args.scale)
        per_iter = (zuv_count(elf, 2000, args.memory) - zuv_count(elf, 1000, args.memory)) / 1000
        insns = per_iter * (big - small)
        zs = best(lambda: zuv_time(elf, small, args.memory), args.repeat)
        zb = best(lambda: zuv_time(elf, big, args.memory), args.repeat)
        z = zb[0] - zs[0]
        row = {
            "name": name,
            "title": title,
            "iters": big - small,
            "insns": insns,
            "zuv_s": z,
            "zuv_mips": insns / z / 1e6,
        }
        if have_qemu:
            qs = best(lambda: qemu_time(elf, small, args.memory), args.repeat)
            qb = best(lambda: qemu_time(elf, big, args.memory), args.repeat)
            q = qb[0] - qs[0]
            row.update(qemu_s=q, qemu_mips=insns / q / 1e6, ratio=q / z)
            if zb[1].strip().splitlines()[-2:] != qb[1].strip().splitlines()[-2:]:
                row["note"] = "console differs from qemu"
        us, ub = unicorn_time(elf, small), unicorn_time(elf, big)
        if us is not None and ub is not None:
            u = ub - us
            row.update(unicorn_s=u, unicorn_mips=insns / u / 1e6, vs_unicorn=u / z)
        rows.append(row)
        print(
            f"{name:12s} {title:34s} zuv {row['zuv_mips']:7.1f} MIPS ({z:.3f}s)"
            + (
                f" | qemu {row['qemu_mips']:7.1f} MIPS ({row['qemu_s']:.3f}s)"
                f" | zuv/qemu speed {row['ratio']:.2f}x"
                if "ratio" in row
                else ""
            )
            + (
                f" | raw unicorn {row['unicorn_mips']:7.1f} MIPS, zuv/unicorn {row['vs_unicorn']:.2f}x"
                if "vs_unicorn" in row
                else ""
            )
            + (f"  [{row['note']}]" if "note" in row else ""),
            flush=True,
        )
    # resident memory of a 2.2 GiB machine running a small guest, in a fresh process
    code = (
        "import resource,sys; sys.path.insert(0, sys.argv[1]);"
        "from emulator.machine.machine import Machine;"
        "m=Machine(int(2.2*(1<<30))//(1<<20)<<20, 1); m.load(sys.argv[2], ''); m.run(time_limit=60);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(IMAGES / "hello.elf")], capture_output=True, text=True
    )
    if out.returncode == 0:
        print(
            "resident memory of a 2.2 GiB machine after running hello: "
            f"{int(out.stdout.strip()) / 1024:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Linux boot to the shell: Debian's s390x kernel with the busybox initramfs (``tools/linux_guest.py``) on zuv
against qemu-system-s390x TCG in the same run, one after the other so the two never share a core.

Each side boots with the same kernel, initramfs, memory and command line; the clock runs from the start of
the process to the initramfs's marker line (userspace is up) and to the shell's first prompt after it; then
``poweroff`` is typed and the time to the process's end is taken too. The kernel's own timestamp of
``Run /init`` is printed as well (the guest's idea of the time, which on zuv runs with the host's clock),
and the process's CPU time, steadier than the wall time on a loaded machine.

Usage: python bench/bench_linux.py [--repeat 1] [--memory 512M] [--append "console=ttysclp0"]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import linux_guest  # noqa: E402

#: a boot that has not reached the shell by then is reported as such, not waited for
TIMEOUT_S = 3600
#: busybox ash's prompt as root in /
PROMPT = "/ # "


def boot(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float | int | str]:
    """Run one boot: seconds to the marker, to the end after ``poweroff``, the exit code, the kernel's
    timestamp of ``Run /init``."""
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    chunks: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            chunks.put(chunk)
        chunks.put(b"")

    threading.Thread(target=pump, daemon=True).start()
    text, marker_s, prompt_s = "", None, None
    try:
        while True:
            try:
                chunk = chunks.get(timeout=max(0.0, TIMEOUT_S - (time.monotonic() - t0)))
            except queue.Empty:
                break
            if not chunk:
                break
            text += chunk.decode("ascii", "replace")
            if marker_s is None and linux_guest.USERSPACE_MARKER in text:
                marker_s = time.monotonic() - t0
            after = text.split(linux_guest.USERSPACE_MARKER, 1)[1] if marker_s is not None else ""
            if prompt_s is None and PROMPT in after:
                prompt_s = time.monotonic() - t0
                proc.stdin.write(b"poweroff\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
        rc = proc.wait(timeout=60) if prompt_s is not None else -1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"\[\s*([0-9.]+)\] Run /init", text)
    return {
        "marker": marker_s if marker_s is not None else float("nan"),
        "prompt": prompt_s if prompt_s is not None else float("nan"),
        "end": time.monotonic() - t0,
        "cpu": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "rc": rc,
        "run_init": float(m.group(1)) if m else float("nan"),
        "tail": text[-400:],
        "text": text,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="boots per side (the median is kept)")
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--append", default="console=ttysclp0")
    ap.add_argument("--log", metavar="PREFIX", help="write each boot's console to PREFIX-SIDE-N.log")
    args = ap.parse_args()
    kernel, initrd = linux_guest.build()
    common = ["-m", args.memory, "--initrd", str(initrd), "--append", args.append]
    zcmd = [sys.executable, "-m", "emulator.cli", "run", *common, str(kernel)]
    qcmd = ["qemu-system-s390x", "-M", "s390-ccw-virtio", "-accel", "tcg", "-nographic", "-no-reboot",
            "-m", args.memory, "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", args.append]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sides: dict[str, list[dict]] = {"zuv": [], "qemu": []}
    for i in range(args.repeat):  # alternate the two sides so both see the same minutes
        for name, cmd in (("zuv", zcmd), ("qemu", qcmd)):
            r = boot(cmd, env if name == "zuv" else None)
            sides[name].append(r)
            if args.log:
                Path(f"{args.log}-{name}-{i}.log").write_text(str(r["text"]))
    med = {}
    for name, runs in sides.items():
        for r in runs:
            print(f"{name:5} userspace up {r['marker']:8.1f} s  prompt {r['prompt']:8.1f} s  "
                  f"poweroff done {r['end']:8.1f} s  exit {r['rc']}  CPU {r['cpu']:.1f} s  "
                  f"kernel's 'Run /init' at {r['run_init']:.1f} s", flush=True)
            if r["rc"] != 0:
                print(f"      last output: {r['tail']!r}")
        med[name] = (statistics.median(r["marker"] for r in runs),
                     statistics.median(r["prompt"] for r in runs))  # fmt: skip
    print(
        f"userspace up: zuv {med['zuv'][0]:.1f} s, qemu {med['qemu'][0]:.1f} s, "
        f"ratio {med['zuv'][0] / med['qemu'][0]:.1f}; prompt: zuv {med['zuv'][1]:.1f} s, "
        f"qemu {med['qemu'][1]:.1f} s, ratio {med['zuv'][1] / med['qemu'][1]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

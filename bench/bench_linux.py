"""Linux boot to the shell: Debian's s390x kernel with the busybox initramfs (``tools/linux_guest.py``) on zuv
against qemu-system-s390x TCG in the same run, one after the other so the two never share a core.

Each side boots with the same kernel, initramfs, memory and command line; the clock runs from the start of
the process to the initramfs's marker line (userspace is up) and to the shell's first prompt after it; then
``poweroff`` is typed and the time to the process's end is taken too. The kernel's own timestamp of
``Run /init`` is printed as well (the guest's idea of the time, which on zuv runs with the host's clock),
and the process's CPU time, steadier than the wall time on a loaded machine.

With ``--secure`` a third side boots the same kernel and initramfs as a Secure Execution guest: packed by
``zuv pvimg create`` (stage3a/stage3b, for the bundled machine ``zuv-demo``) into a temporary image and
booted by ``zuv boot`` (the hypervisor's secure IPL, then the kernel under the Ultravisor's SIE); its
console input is forwarded the same way, so ``poweroff`` ends it too. ``--release trixie`` takes Debian 13's
kernel (``tools/linux_guest.py --release trixie``), which knows itself a protected guest.

Usage: python bench/bench_linux.py [--repeat 1] [--memory 512M] [--append "console=ttysclp0"] [--secure]
       [--release bookworm|trixie] [--no-qemu] [--no-plain] [--deterministic]
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
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import linux_guest  # noqa: E402

#: a boot that has not reached the shell by then is reported as such, not waited for
TIMEOUT_S = 3600
#: busybox ash's prompt as root in / (Debian 13's busybox shows / as ~, the home directory)
PROMPTS = ("/ # ", "~ # ")


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
            if prompt_s is None and any(p in after for p in PROMPTS):
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
    ap.add_argument("--secure", action="store_true", help="also boot the kernel as a Secure Execution guest")
    ap.add_argument("--release", choices=sorted(linux_guest.RELEASES), default=linux_guest.DEFAULT_RELEASE,
                    help="the Debian release of the kernel (tools/linux_guest.py --release)")
    ap.add_argument("--no-qemu", action="store_true", help="leave qemu-system-s390x out")
    ap.add_argument("--no-plain", action="store_true", help="leave zuv's plain boot out (with --secure)")
    ap.add_argument("--deterministic", action="store_true",
                    help="run zuv's sides with --deterministic (the TOD advances with executed instructions)")
    args = ap.parse_args()
    kernel, initrd = linux_guest.build(release=args.release)
    common = ["-m", args.memory, "--initrd", str(initrd), "--append", args.append]
    det = ["--deterministic"] if args.deterministic else []
    zcmd = [sys.executable, "-m", "emulator.cli", "run", *det, *common, str(kernel)]
    qcmd = ["qemu-system-s390x", "-M", "s390-ccw-virtio", "-accel", "tcg", "-nographic", "-no-reboot",
            "-m", args.memory, "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", args.append]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs: list[tuple[str, list[str]]] = [] if args.no_plain and args.secure else [("zuv", zcmd)]
    runs += [] if args.no_qemu else [("qemu", qcmd)]
    tmp = tempfile.TemporaryDirectory()
    if args.secure:
        image = Path(tmp.name) / "linux.se"
        image.write_bytes(secure_image(kernel, initrd, args.append))
        runs.append(("zuv-se", [sys.executable, "-m", "emulator.cli", "boot", *det, "-m", args.memory,
                                "--no-attack", "--time-limit", str(TIMEOUT_S), str(image)]))  # fmt: skip
    sides: dict[str, list[dict]] = {name: [] for name, _ in runs}
    for i in range(args.repeat):  # alternate the sides so all see the same minutes
        for name, cmd in runs:
            r = boot(cmd, None if name == "qemu" else env)
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
    tmp.cleanup()
    base = "qemu" if "qemu" in med else next(iter(med))
    up = ", ".join(f"{n} {m[0]:.1f} s (x{m[0] / med[base][0]:.1f})" for n, m in med.items())
    prompt = ", ".join(f"{n} {m[1]:.1f} s (x{m[1] / med[base][1]:.1f})" for n, m in med.items())
    print(f"userspace up: {up}; prompt: {prompt}  (ratios against {base})")
    return 0


def secure_image(kernel: Path, initrd: Path, append: str) -> bytes:
    """The kernel and initramfs packed as a Secure Execution image for the bundled machine ``zuv-demo``
    (``zuv pvimg create``'s builder; stage3a/stage3b and the IPL parameter block)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from emulator.image.pvimg import build_image
    from firmware.crypto import SystemRng
    from firmware.machine_identity import MachineIdentity

    keys = [MachineIdentity.bundled("zuv-demo").public_key]
    return build_image(kernel=kernel.read_bytes(), ramdisk=initrd.read_bytes(), parmfile=append.encode(),
                       host_keys=keys, rng=SystemRng()).data  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

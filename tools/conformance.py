"""Runs kvm-unit-tests for s390x through ``zuv run`` (and optionally ``qemu-system-s390x``) against the
recorded expectations: builds the suite from the shared tarball into a cache, runs each test of
``s390x/unittests.cfg`` with its CPUs, memory, command line and devices, and reports per test.

    .venv/bin/python tools/conformance.py             # on zuv, against tests/conformance/expected.json
    .venv/bin/python tools/conformance.py --update    # record zuv's results as the new expectations
    .venv/bin/python tools/conformance.py --qemu      # QEMU TCG too, in the same run (its figures recorded)
    .venv/bin/python tools/conformance.py --report docs/conformance.md
    .venv/bin/python tools/conformance.py skey edat   # only these tests (and their PV runs)
    .venv/bin/python tools/conformance.py --no-pv     # without the Secure Execution runs (NAME_PV)

Beside each test runs its Secure Execution run ``NAME_PV`` (``tools/conformance_pv.py``): the test's
``s390x/NAME.pv.bin``, made with zuv's genprotimg, booted by ``zuv boot``.

Exit status: 0 when no test regressed against the expectations, 1 when one did, 2 on bad input.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
from conformance_pv import PV_SUFFIX, pv_build, pv_command, pv_image  # noqa: E402 - beside this file

TARBALL_NAME = "kvm-unit-tests-1da1819e.tar.xz"


def default_tarball() -> Path:
    """``../shared/conformance/`` beside the clone (or beside one of its parents, for a git worktree)."""
    for d in REPO.parents:
        t = d / "shared" / "conformance" / TARBALL_NAME
        if t.is_file():
            return t
    return REPO.parent / "shared" / "conformance" / TARBALL_NAME


EXPECTED = REPO / "tests" / "conformance" / "expected.json"
DEFAULT_TIMEOUT = 90.0  # the upstream runner's default (scripts/runtime.bash)
EXIT_RE = re.compile(rb"EXIT: STATUS=(\d+)")
COUNT_RE = re.compile(rb"(?:^|\r)(?:\x1bc)?(PASS|FAIL|XPASS|XFAIL|SKIP):", re.M)
VERDICT_RANK = {"PASS": 3, "SKIP": 2, "FAIL": 1, "TIMEOUT": 0}

# QEMU options of unittests.cfg and the zuv run options that give the same machine; a QEMU option zuv does not
# offer (its zuv option is missing from ``zuv run --help``) is reported as not offered and left out.
QEMU_WATCHDOGS = {"diag288": ("--watchdog", "diag288")}
#: ``-device`` models zuv's ``--device`` takes as they are (CPU models by their suffix)
ZUV_DEVICES = ("virtio-net-ccw", "virtio-blk-ccw", "-s390x-cpu")


class ConformanceError(Exception):
    """Bad input to the runner: no tarball, a build that fails, an unreadable expectations file."""


@dataclasses.dataclass
class TestSpec:
    """One entry of ``unittests.cfg`` as the upstream runner reads it."""

    name: str
    file: str
    smp: int = 1
    test_args: str = ""
    qemu_params: str = ""
    groups: tuple[str, ...] = ()
    accel: str = ""
    timeout: float = DEFAULT_TIMEOUT

    @property
    def memory_mib(self) -> int:
        """Guest memory in MiB: QEMU's ``-m`` (plain numbers are MiB), 128 MiB by default as QEMU's s390x."""
        m = re.search(r"(?:^|\s)-m\s+(\d+)([MGmg]?)", self.qemu_params)
        if not m:
            return 128
        return int(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)

    @property
    def cpus(self) -> int:
        """CPUs at start: ``smp =`` or QEMU's ``-smp N[,maxcpus=..]`` (its first number)."""
        m = re.search(r"(?:^|\s)-smp\s+(?:cpus=)?(\d+)", self.qemu_params)
        return int(m.group(1)) if m else self.smp


@dataclasses.dataclass
class Result:
    """What one run of one test printed and how it ended."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    status: int | None = None  # the EXIT: STATUS=N value (1 is success)
    verdict: str = "FAIL"  # PASS / FAIL / SKIP / TIMEOUT, as the upstream runner reports the test
    seconds: float = 0.0
    exit_code: int | None = None
    note: str = ""

    def counts(self) -> str:
        """PASS/FAIL/SKIP counts as the docs show them."""
        return f"{self.passed}/{self.failed}/{self.skipped}"


def parse_cfg(text: str) -> list[TestSpec]:
    """The entries of ``unittests.cfg`` (INI-like, values may be triple-quoted across lines)."""
    specs: list[TestSpec] = []
    cur: dict[str, str] | None = None
    name = ""
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            if cur is not None:
                specs.append(_spec(name, cur))
            name, cur = line[1:-1].strip(), {}
            continue
        if cur is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if value.startswith('"""'):
            parts = [value[3:]]
            while not parts[-1].rstrip().endswith('"""'):
                parts.append(next(lines, '"""'))
            value = " ".join(p.strip().rstrip("\\") for p in parts)[: -3].strip()
        cur[key.strip()] = value.strip("'\"")
    if cur is not None:
        specs.append(_spec(name, cur))
    return specs


def _spec(name: str, kv: dict[str, str]) -> TestSpec:
    timeout = kv.get("timeout", "")
    return TestSpec(
        name=name,
        file=kv.get("file", ""),
        smp=int(kv.get("smp", "1") or 1),
        test_args=kv.get("test_args", ""),
        qemu_params=kv.get("qemu_params", ""),
        groups=tuple(kv.get("groups", "").split()),
        accel=kv.get("accel", ""),
        timeout=float(timeout.rstrip("s")) if timeout else DEFAULT_TIMEOUT,
    )


def selected(specs: list[TestSpec]) -> list[TestSpec]:
    """The tests a TCG run of the upstream runner starts: not KVM-only, not migration or panic tests."""
    return [s for s in specs if s.accel != "kvm" and not {"migration", "panic"} & set(s.groups)]


def cache_dir() -> Path:
    """Where the suite is built: ``$ZUV_CACHE`` or ``$XDG_CACHE_HOME/zuv`` (``~/.cache/zuv``)."""
    base = os.environ.get("ZUV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zuv")
    return Path(base)


#: The machine whose host-key document the pv-host tests' snippets are sealed for: ``zuv run --ultravisor``
#: installs this machine's Ultravisor by default.
HOST_KEY_DOCUMENT = REPO / "firmware" / "machines" / "zuv-demo" / "host-key-document.crt"
#: The project's SE-header tool, the suite's ``--gen-se-header`` (``s390x/snippets/Makefile``).
GEN_SE_HEADER = REPO / "emulator" / "image" / "gen_se_header.py"


def configure_command() -> list[str]:
    """``./configure`` for s390x with the machine's host-key document and the project's header tool, so the
    pv-host tests (pv-diags, pv-icptcode, pv-ipl) are built with snippets sealed for zuv's Ultravisor."""
    tool = f"{sys.executable} {REPO / 'tools' / 'gen_se_header.py'}"
    return ["./configure", "--arch=s390x", "--cross-prefix=s390x-linux-gnu-",
            f"--host-key-document={HOST_KEY_DOCUMENT}", f"--gen-se-header={tool}"]


def build_digest(tarball: Path) -> str:
    """What a built tree depends on: the tarball, the host-key document and the header tool."""
    h = hashlib.sha256(tarball.read_bytes())
    for f in (HOST_KEY_DOCUMENT, GEN_SE_HEADER):
        h.update(f.read_bytes())
    return h.hexdigest()


def build(tarball: Path, into: Path | None = None) -> Path:
    """Unpack and build the suite once per tarball, host-key document and header tool (a stamp holds their
    digest); returns the tree. The tests and their flat images are built; the Secure Execution images
    (``s390x/*.pv.bin``, made with ``genprotimg``) are not."""
    if not tarball.is_file():
        raise ConformanceError(f"no kvm-unit-tests tarball at {tarball} (pass --tarball)")
    digest = build_digest(tarball)
    tree = into or cache_dir() / f"kvm-unit-tests-{digest[:12]}"
    stamp = tree / ".zuv-built"
    if stamp.is_file() and stamp.read_text() == digest:
        return tree
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as tf:
            tf.extractall(tree, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ConformanceError(f"cannot unpack {tarball}: {e}") from e
    make = ["make", f"-j{os.cpu_count() or 2}", "directories", "test_cases", "test_cases_binary"]
    for step in (configure_command(), make):
        p = subprocess.run(step, cwd=tree, capture_output=True, text=True)
        if p.returncode != 0:
            raise ConformanceError(f"building kvm-unit-tests: {' '.join(step)} failed:\n{p.stdout[-2000:]}"
                                   f"{p.stderr[-2000:]}")
    stamp.write_text(digest)
    return tree


def zuv_options() -> str:
    """``zuv run --help``, to tell which QEMU options zuv offers."""
    p = subprocess.run([sys.executable, "-m", "emulator.cli", "run", "--help"], capture_output=True,
                       text=True, cwd=REPO)
    return p.stdout


def zuv_command(spec: TestSpec, elf: Path, offered: str) -> tuple[list[str], list[str]]:
    """The ``zuv run`` command for a test, and the QEMU options of it that zuv does not offer."""
    cmd = [sys.executable, "-m", "emulator.cli", "run", "--memory", f"{spec.memory_mib}M",
           "--cpus", str(spec.cpus), "--time-limit", str(spec.timeout)]
    missing: list[str] = []
    if "pv-host" in spec.groups:  # they run as a hypervisor on an LPAR of a Secure Execution machine
        if "--ultravisor" in offered:
            cmd.append("--ultravisor")
        else:
            missing.append("an Ultravisor (pv-host)")
    params = shlex.split(spec.qemu_params)
    i = 0
    while i < len(params):
        opt = params[i]
        arg = params[i + 1] if i + 1 < len(params) and not params[i + 1].startswith("-") else ""
        i += 2 if arg else 1
        if opt in ("-m", "-smp"):
            continue
        if opt == "-device":
            dev = arg.split(",")[0]
            if dev in QEMU_WATCHDOGS and QEMU_WATCHDOGS[dev][0] in offered:
                cmd += list(QEMU_WATCHDOGS[dev])
                continue
            if dev.endswith(ZUV_DEVICES) and "--device" in offered:
                cmd += ["--device", arg]
                continue
        elif opt in ("-name", "--uuid", "-uuid", "--watchdog-action"):
            zopt = "--" + opt.lstrip("-")
            if zopt in offered:
                cmd += [zopt, arg]
                continue
        missing.append(f"{opt} {arg}".strip())
    if spec.test_args:
        cmd.append(f"--append={spec.test_args}")  # one word: the arguments may start with a dash
    return cmd + [str(elf)], missing


def qemu_command(spec: TestSpec, elf: Path) -> list[str]:
    """The ``qemu-system-s390x`` TCG command the upstream runner builds for a test."""
    cmd = ["qemu-system-s390x", "-nodefaults", "-nographic", "-machine", "s390-ccw-virtio,accel=tcg",
           "-cpu", "max", "-chardev", "stdio,id=con0", "-device", "sclpconsole,chardev=con0",
           "-smp", str(spec.smp), "-kernel", str(elf)]
    cmd += shlex.split(spec.qemu_params)
    if spec.test_args:
        cmd += ["-append", spec.test_args]
    return cmd


def run_one(name: str, cmd: list[str], timeout: float, log: Path | None = None) -> Result:
    """Run one test command, kill it at ``timeout`` (plus a grace), and read its output as the runner does."""
    res = Result(name)
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 15, env=env,
                           cwd=REPO)
        out, res.exit_code = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        res.note = f"killed after {timeout + 15:.0f} s"
    res.seconds = time.monotonic() - t0
    if log is not None:
        log.write_bytes(out)
    for kind in COUNT_RE.findall(out):
        if kind in (b"PASS", b"XFAIL"):
            res.passed += 1
        elif kind in (b"FAIL", b"XPASS"):
            res.failed += 1
        else:
            res.skipped += 1
    statuses = EXIT_RE.findall(out)
    if statuses:
        res.status = int(statuses[-1])
        res.verdict = "PASS" if res.status == 1 else "SKIP" if res.status == 77 else "FAIL"
        if res.verdict == "PASS" and res.exit_code not in (0, None):
            # the test said success but the machine ended otherwise (a CPU crashed, a limit): not a pass
            res.verdict = "FAIL"
            tail = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
            res.note = f"exit code {res.exit_code}: {tail[0][:100]}"
    else:
        res.verdict = "TIMEOUT" if res.note or b"time limit" in out else "FAIL"
        if not res.note:
            tail = out.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            res.note = tail[0][:120]
    return res


def regressions(now: Result, expected: dict) -> list[str]:
    """Why ``now`` is worse than the expectation (empty when it is not)."""
    why = []
    if VERDICT_RANK.get(now.verdict, 0) < VERDICT_RANK.get(expected["verdict"], 0):
        why.append(f"verdict {expected['verdict']} -> {now.verdict}")
    if expected["verdict"] != "TIMEOUT":  # a killed run's counts depend on how far it got
        if now.passed < expected["pass"]:
            why.append(f"PASS {expected['pass']} -> {now.passed}")
        if now.failed > expected["fail"]:
            why.append(f"FAIL {expected['fail']} -> {now.failed}")
    return why


def improved(now: Result, expected: dict) -> bool:
    """Whether ``now`` is better than the expectation in any way (so the expectations should be updated)."""
    return (VERDICT_RANK.get(now.verdict, 0) > VERDICT_RANK.get(expected["verdict"], 0)
            or now.passed > expected["pass"] or now.failed < expected["fail"])


def load_expected(path: Path) -> dict:
    """The recorded expectations (``{"zuv": {name: {...}}, "qemu": {name: {...}}}``)."""
    if not path.exists():
        return {"zuv": {}, "qemu": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConformanceError(f"cannot read {path}: {e}") from e
    data.setdefault("zuv", {})
    data.setdefault("qemu", {})
    return data


def as_record(r: Result) -> dict:
    """A result as the expectations file stores it."""
    return {"pass": r.passed, "fail": r.failed, "skip": r.skipped, "verdict": r.verdict,
            "seconds": round(r.seconds, 1)}

REPORT_HEAD = """# Conformance: kvm-unit-tests for s390x on zuv

Generated by `.venv/bin/python tools/conformance.py --qemu --report docs/conformance.md` from the suite at
commit 1da1819e (`kvm-unit-tests-1da1819e.tar.xz`, the upstream tree as `git archive` writes it: `--tarball
FILE`; by default looked for in `shared/conformance/` beside the clone, where CI has it). Each
test runs as the upstream runner starts it under TCG (KVM-only, migration and panic entries are left out):
on zuv through `zuv run` with the test's CPUs, memory, command line and devices (the pv-host tests with
`--ultravisor`, as a hypervisor on a Secure Execution LPAR), and on `qemu-system-s390x -machine
s390-ccw-virtio,accel=tcg -cpu max`, two tests at a time. Figures are PASS/FAIL/SKIP check counts, the
verdict as the upstream runner reads `EXIT: STATUS=N` (TIMEOUT: killed at the test's timeout) and the time.
CI runs the suite (`tests/test_conformance.py`) and fails on any test that regresses against
`tests/conformance/expected.json`."""


#: why a test is below QEMU TCG, for the report (kept with the runner so a regenerated report keeps it)
KNOWN_GAPS = {
    "cpumodel": "structural: zuv offers its programs SIE (SIEF2), and the test checks its 13 '!sief2 "
                "implies' SCLP bits only without it (`test_sclp_features_fmt2` returns at once when "
                "`has_sief2`), as on KVM with nested virtualisation; QEMU TCG offers no SIE, so its 21 are "
                "those 13 and 8 dependency checks. Of the 20 dependency checks zuv passes 6: it offers 4, "
                "19, 61 (emulated: hw/mie3.py), 78 (enhanced DAT 2, which QEMU does not offer), 135 and 146; "
                "QEMU offers 148 (two checks) where zuv offers 78. '37 implies 42' is its expected failure: "
                "`zuv run` gives its programs QEMU's identity (STSI 1.1.1 manufacturer 'QEMU', so outputs "
                "compare) and with it TCG's CPU model in this, no decimal floating point, which the test "
                "expects of TCG ('TCG does not have DFP'; offered, the check was an unexpected pass, a "
                "FAIL); an LPAR (`--level 2`) and the guests of zuv's hypervisor have DFP (42, 48, 80, "
                "emulated: hw/dfp.py), so the secure run, cpumodel_PV, which sees a KVM host, passes the "
                "implication. None of the other facilities is cheap to "
                "offer honestly: their instructions are missing from unicorn (QEMU 5.0's TCG), and of the "
                "emulators at hand only the installed qemu-system-s390x has one of them (148) to check an "
                "emulation against. 5 (DAT enhancement 2, LOAD PAGE-TABLE-ENTRY ADDRESS, B9AA: the "
                "smallest, the address of the DAT table entry a translation of the Python walk ends at, but "
                "its condition codes for invalid, large-frame and protected entries have no second "
                "implementation here to test against); 43 (DFP has high performance: a claim about the "
                "hardware an emulation does not make); 73 (transactional execution: "
                "TBEGIN/TEND/TABORT with every store of a transaction undone at an abort, the abort PSW and "
                "diagnostic block); 134 and 152 (vector packed decimal and its enhancement: VAP, VSP, VMP, "
                "VDP, VCVB, VCVD, ... on packed decimals in vector registers); 139 (multiple epoch: needs "
                "TOD-clock steering, 28, with PTFF's query and control functions, the epoch index in STCKE "
                "and SET CLOCK, and the epoch extension of the SIE state description zuv's SIE would have to "
                "honour); 148 (vector enhancements 2: VLBR/VSTBR, VLER/VSTER, VSLD/VSRD, VSTRS, VCFPS/VCSFP "
                "and the rest, about 25 instructions, some with string-search semantics; QEMU TCG offers "
                "it); 155 (message-security assist 9: KDSA's ECDSA and EdDSA signatures, PCC's scalar "
                "multiplications, PCKMO's ECC keys). Each would add its implication checks (two each for 5, "
                "139, 148, 152 and 155); the 13 SCLP checks stay out while zuv offers SIE",
    "pv-icptcode": "cannot pass on a real machine either, by construction. (1) `run_icpt_122_tests` "
                   "exports the guest's prefix pages with `uv_export(vm.sblk->mso + lc_off)`, and the "
                   "suite's `uv_export` (lib/s390x/asm/uv.h) puts that value unchanged into the control "
                   "block's `paddr`: nothing translates it. (2) `mso` is what `sie_guest_alloc` returns "
                   "(lib/s390x/sie.c, since ae337a39, 2023-11): a *virtual* address, `ALIGN(ram size + 4 "
                   "GiB, 2 GiB)` (8 GiB with the test's 2200 MiB), where `install_page` maps pages "
                   "`alloc_pages` took below the end of storage; the guest is not identity-mapped, and the"
                   " library puts it past the end of physical memory on purpose. (3) Convert from Secure "
                   "Storage's `paddr` is a host *absolute* address: the suite's own comment on the same "
                   "control block (`uv_destroy_page`: 'Absolute host address of page'), and Linux passes "
                   "physical addresses (`uv_convert_from_secure(folio_to_phys())`, also in its secure-"
                   "storage-access fault handler) on kernels whose virtual and physical addresses differ. "
                   "So the address names no frame of the guest on any machine (it lies beyond the end of "
                   "storage whatever the storage size), the export fails (zuv: rc 0x0104; the test ignores"
                   " the rc), the prefix stays secure, the SIE entry gives no intercept 112 ('Intercept "
                   "112 for page 0' FAILs), and the guest then stores into its second prefix area at "
                   "0x8000, which nothing imported: the host takes PGM 0x3E ('Unexpected program interrupt"
                   " in SIE: 0x3e', TEID address 0x8000) and the test ends. The test was written "
                   "(a402fad4, 2023-06) while guests were identity-mapped (mso virtual = absolute); "
                   "upstream has not changed it since ae337a39. Its other 10 checks pass on zuv with that "
                   "part left out. Open: the suite also imports with `gaddr` = mso + offset (here and in "
                   "`snippet_pv_init`), where Linux passes a guest absolute address; zuv refuses that (rc "
                   "0x0101, beyond the guest's storage), which changes nothing in these tests (the pages "
                   "are secure through Unpack already); whether a real Ultravisor takes such a `gaddr` for"
                   " a configuration with a storage origin is not public",
}


#: the PV runs' part of the report, before its table
PV_HEAD = """Each test's `s390x/NAME.pv.bin`, built by the suite's Makefile with zuv's `tools/genprotimg`
(`pvimg create`, as s390-tools' genprotimg) as its `GENPROTIMG`, for the zuv-demo machine, booted by
`zuv boot` as a secure guest of zuv's hypervisor and Ultravisor with the test's memory, CPUs and devices, as
the upstream runner gives a PV run the options of the test's other run (`-device MODEL-s390x-cpu,core-id=N`
and `-device virtio-net-ccw` as `zuv boot --device`, `-device diag288` and `--watchdog-action` as `zuv boot
--watchdog diag288 --watchdog-action`; `tools/conformance_pv.py`). The upstream runner starts these runs
under KVM only (QEMU's TCG has no Protected Virtualization), so there is no QEMU figure; a PV run is a
regression when it gets worse than recorded, as the other runs."""
#: why a PV run that fails cannot pass yet, at length (after the table)
PV_GAPS: dict[str, str] = {
}
#: why a PV run does not pass (the report keeps it)
PV_NOTES: dict[str, str] = {
    "sthyi_PV": "a real KVM host runs it: KVM emulates STHYI (facility 74) at the operation exception of its "
                "guests, a secure one's block through the SIDA; zuv's hypervisor does not offer it, nor does "
                "QEMU TCG (so the test's other run skips as QEMU's)",
    "sclp-3g_PV": "as sclp-1g_PV",
    "edat_PV": "under a load of 3-4 since the fourteenth session (a secure CPU keeps its translated code "
               "over its own lowcore stores and interruptions); its read of every page makes 32,732 pages "
               "secure at their first touch (a 0x3E exit and Convert to Secure Storage each, as KVM imports "
               "at the fault), and each DAT walk of its 491,520 addressing exceptions asks the Ultravisor's "
               "per-page decision for every table entry",
    "sclp-1g_PV": "as sclp-1g: ~1.1 million SERVC calls, each a secure SIE exit and entry with the SCCB "
                  "through the SIDA and the service signal injected, and 4 LCTLG and 2 LPSWE the guest's CPU "
                  "emulates around each. 2026-12-08: 65-72 us of CPU per SERVC (71-77 us before that day's "
                  "cuts of the secure round trip, docs/benchmarks.md); the whole run passes in 88.9 s (77 s "
                  "of CPU) at load 2.5 and times out at load 4",
    "exittime_PV": "a trap benchmark: 4 million SIGP SENSE RUNNING, 0.8 million DIAG 0x9C/0x44, 0.2 million "
                   "SERVC and more, each a secure SIE exit and entry (measured 2026-12-08: ~21.5 us of CPU "
                   "per SIGP with the test's 2 CPUs): ~2.5 minutes of CPU",
    "smp_PV": "its 2 SKIPs are the test's own: a conditional emergency signal is not supported under PV",
}


def report(path: Path, specs: list[TestSpec], zuv: dict, qemu: dict, missing: dict[str, list[str]]) -> None:
    """Write ``docs/conformance.md``: per test, zuv against QEMU TCG."""
    rows = []
    zt = qt = 0.0
    at_least = 0
    for s in specs:
        z, q = zuv.get(s.name), qemu.get(s.name)
        zs = f"{z['pass']}/{z['fail']}/{z['skip']} {z['verdict']} ({z['seconds']:.1f} s)" if z else "not run"
        qs = f"{q['pass']}/{q['fail']}/{q['skip']} {q['verdict']} ({q['seconds']:.1f} s)" if q else "not run"
        ok = bool(z and q and z["fail"] <= q["fail"] and z["pass"] >= q["pass"]
                  and VERDICT_RANK[z["verdict"]] >= VERDICT_RANK[q["verdict"]])
        at_least += ok
        zt += z["seconds"] if z else 0.0
        qt += q["seconds"] if q else 0.0
        note = "; ".join(f"not offered: `{m}`" for m in missing.get(s.name, []))
        mark = "yes" if ok else "**no**"
        rows.append(f"| {s.name} | {s.cpus} | {s.memory_mib} | {zs} | {qs} | {mark} | {note} |")
    summary = (f"zuv is at or above QEMU on {at_least} of {len(specs)} tests; the test times add up to "
               f"{zt:.0f} s on zuv and {qt:.0f} s on QEMU.")
    head = "| test | CPUs | MiB | zuv P/F/S | QEMU TCG P/F/S | zuv >= QEMU | notes |"
    gaps = [f"- **{name}**: {why}." for name, why in KNOWN_GAPS.items() if any(x.name == name for x in specs)]
    text = [REPORT_HEAD, "", summary, "", head, "|---|---|---|---|---|---|---|", *rows, "",
            "## Below QEMU, and why", "", *gaps, "", *pv_report(specs, zuv)]
    path.write_text("\n".join(text))


def pv_report(specs: list[TestSpec], zuv: dict) -> list[str]:
    """The report's part on the Secure Execution runs (``NAME_PV``), when any was recorded."""
    runs = [(s, zuv[s.name + PV_SUFFIX]) for s in specs if s.name + PV_SUFFIX in zuv]
    if not runs:
        return []
    rows = [f"| {s.name}{PV_SUFFIX} | {s.memory_mib} | {z['pass']}/{z['fail']}/{z['skip']} {z['verdict']} "
            f"({z['seconds']:.1f} s) | {PV_NOTES.get(s.name + PV_SUFFIX, '')} |"
            for s, z in runs]  # fmt: skip
    names = {s.name + PV_SUFFIX for s, _ in runs}
    npass = sum(z["verdict"] == "PASS" for _, z in runs)
    nskip = sum(z["verdict"] == "SKIP" for _, z in runs)
    return ["## Secure Execution runs (`NAME_PV`)", "", PV_HEAD, "",
            f"{npass} of {len(runs)} PV runs pass, {nskip} skip (the test's own decision inside a secure "
            f"guest: no SIE and no Ultravisor host there, sck not under PV; or a facility zuv offers no "
            f"guest, as in the test's other run: STHYI, ESSA, DIAG 0x258, guarded storage, storage-key "
            f"removal, configuration topology), {len(runs) - npass - nskip} fail or time out.", "",
            "| run | MiB | zuv P/F/S | notes |", "|---|---|---|---|", *rows, "",
            *[f"- **{name}**: {why}." for name, why in PV_GAPS.items() if name in names], ""]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line of the runner."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="*", help="test names from unittests.cfg (default: all a TCG run starts)")
    ap.add_argument("--tarball", type=Path, default=None, help="the kvm-unit-tests tarball")
    ap.add_argument("--expected", type=Path, default=EXPECTED, help="the expectations file")
    ap.add_argument("--update", action="store_true", help="record zuv's results as the expectations")
    ap.add_argument("--qemu", action="store_true", help="also run qemu-system-s390x TCG and record it")
    ap.add_argument("--report", type=Path, help="write the markdown table to this file")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="tests run at the same time (default 2)")
    ap.add_argument("--logs", type=Path, help="keep each test's output in this directory")
    ap.add_argument("--no-pv", action="store_true", help="leave out the Secure Execution runs (NAME_PV)")
    args = ap.parse_args(argv)
    try:
        tree = build(args.tarball or default_tarball())
        specs = selected(parse_cfg((tree / "s390x" / "unittests.cfg").read_text()))
        expected = load_expected(args.expected)
    except (ConformanceError, OSError) as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    if args.tests:
        unknown = set(args.tests) - {s.name for s in specs}
        if unknown:
            print(f"conformance: no such test: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        specs = [s for s in specs if s.name in args.tests]
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    offered = zuv_options()
    if not args.no_pv:
        pv_build(tree, HOST_KEY_DOCUMENT)
    jobs: list[tuple[str, str, list[str], float]] = []
    missing: dict[str, list[str]] = {}
    commands: dict[str, list[str]] = {}  # zuv's, by run name: a timed-out run is started again alone
    for s in specs:
        elf = tree / "s390x" / s.file
        cmd, missing[s.name] = zuv_command(s, elf, offered)
        commands[s.name] = cmd
        jobs.append(("zuv", s.name, cmd, s.timeout))
        if args.qemu:
            jobs.append(("qemu", s.name, qemu_command(s, elf), s.timeout))
    if not args.no_pv:
        for s in specs:
            image = pv_image(tree, s.file)
            commands[s.name + PV_SUFFIX] = pv_command(s.memory_mib, s.timeout, image, s.cpus, s.qemu_params)
            jobs.append(("zuv", s.name + PV_SUFFIX, commands[s.name + PV_SUFFIX], s.timeout))
    timeouts = {s.name + sfx: s.timeout for s in specs for sfx in ("", PV_SUFFIX)}
    results: dict[str, dict[str, Result]] = {"zuv": {}, "qemu": {}}

    def one(job: tuple[str, str, list[str], float]) -> tuple[str, Result]:
        who, name, cmd, timeout = job
        if not Path(cmd[-1] if who == "zuv" else cmd[cmd.index("-kernel") + 1]).exists():
            return who, Result(name, verdict="SKIP", note="not built")
        log = args.logs / f"{name}.{who}.log" if args.logs else None
        return who, run_one(name, cmd, timeout, log)

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for who, r in pool.map(one, jobs):
            results[who][r.name] = r
            line = f"{who:4} {r.name:28} {r.counts():>10} {r.verdict:7} {r.seconds:6.1f} s {r.note}"
            print(line, flush=True)
    bad = 0
    better = []
    for name, r in list(results["zuv"].items()):
        exp = expected["zuv"].get(name)
        if exp is None:
            continue
        why = regressions(r, exp)
        if why and r.verdict == "TIMEOUT" and exp["verdict"] != "TIMEOUT":
            # killed at its timeout while another test ran beside it (or the machine was busy): a timeout
            # counts only when the test, run again alone, is killed again
            print(f"{name}: killed at {timeouts[name]:.0f} s; running it again alone", flush=True)
            r = results["zuv"][name] = run_one(name, commands[name], timeouts[name])
            why = regressions(r, exp)
        if why:
            bad += 1
            print(f"REGRESSION {name}: {'; '.join(why)}")
        elif improved(r, exp):
            better.append(name)
    if better and not args.update:
        print(f"better than recorded (run with --update): {', '.join(better)}")
    if args.update:
        for name, r in results["zuv"].items():
            expected["zuv"][name] = as_record(r)
    if args.qemu:
        for s in specs:
            expected["qemu"][s.name] = as_record(results["qemu"][s.name])
    if args.update or args.qemu:
        args.expected.parent.mkdir(parents=True, exist_ok=True)
        args.expected.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    if args.report:
        all_specs = selected(parse_cfg((tree / "s390x" / "unittests.cfg").read_text()))
        zuv = {**expected["zuv"], **{n: as_record(r) for n, r in results["zuv"].items()}}
        qemu = {**expected["qemu"], **{n: as_record(r) for n, r in results["qemu"].items()}}
        report(args.report, all_specs, zuv, qemu, missing)
    npass = sum(r.verdict == "PASS" for r in results["zuv"].values())
    print(f"conformance: {len(results['zuv'])} runs on zuv ({len(specs)} tests and their PV runs), "
          f"{npass} PASS, {bad} regressed")
    return 1 if bad and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())

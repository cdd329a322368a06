"""kvm-unit-tests for s390x through ``zuv run`` (``tools/conformance.py``): no test may regress against
``tests/conformance/expected.json``; the runner's reading of the suite's config and output is tested too."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("conformance", ROOT / "tools" / "conformance.py")
conformance = importlib.util.module_from_spec(_spec)
sys.modules["conformance"] = conformance  # dataclasses look their module up there
_spec.loader.exec_module(conformance)
conformance_pv = sys.modules["conformance_pv"]  # imported by the runner from beside it

CFG = '''
# comment
[selftest-setup]
file = selftest.elf
groups = selftest
test_args = 'test 123'

[sclp-3g]
file = sclp.elf
qemu_params = -m 3G

[uv-host]
file = uv-host.elf
smp = 2
groups = pv-host
qemu_params = -m 2200

[stsi]
file = stsi.elf
qemu_params=-name kvm-unit-test --uuid 0fb84a86 -smp 1,maxcpus=8

[topology-3]
file = topology.elf
qemu_params = """-cpu max,ctop=on -smp cpus=1,drawers=2 \\
-device max-s390x-cpu,core-id=31"""
timeout = 20

[migration]
file = migration.elf
groups = migration

[adtl-status-kvm]
file = adtl-status.elf
accel = kvm
'''


def test_config_entries_as_the_upstream_runner_reads_them():
    specs = {s.name: s for s in conformance.parse_cfg(CFG)}
    assert specs["selftest-setup"].test_args == "test 123"
    assert specs["selftest-setup"].memory_mib == 128 and specs["selftest-setup"].cpus == 1
    assert specs["sclp-3g"].memory_mib == 3072
    assert specs["uv-host"].memory_mib == 2200 and specs["uv-host"].cpus == 2
    assert specs["stsi"].cpus == 1
    assert specs["topology-3"].timeout == 20.0 and "core-id=31" in specs["topology-3"].qemu_params
    assert specs["topology-3"].cpus == 1
    assert [s.name for s in conformance.selected(list(specs.values()))] == [
        "selftest-setup", "sclp-3g", "uv-host", "stsi", "topology-3"]


def test_zuv_command_passes_what_zuv_offers_and_names_the_rest():
    spec = conformance.parse_cfg(CFG)[3]  # stsi
    firq = conformance.TestSpec("firq", "firq.elf", qemu_params="-smp 1,maxcpus=3 -cpu qemu "
                                "-device qemu-s390x-cpu,core-id=2 -device diag288,id=w")
    cmd, missing = conformance.zuv_command(firq, Path("firq.elf"), offered="--device --watchdog")
    assert cmd[cmd.index("--device") + 1] == "qemu-s390x-cpu,core-id=2" and "diag288" in cmd
    assert missing == ["-cpu qemu"] and cmd[cmd.index("--cpus") + 1] == "1"
    cmd, missing = conformance.zuv_command(spec, Path("stsi.elf"), offered="--memory --cpus --name")
    assert cmd[cmd.index("--name") + 1] == "kvm-unit-test"
    assert missing == ["--uuid 0fb84a86"]
    assert cmd[-1] == "stsi.elf" and cmd[cmd.index("--cpus") + 1] == "1"
    uv_host = conformance.parse_cfg(CFG)[2]
    assert "--ultravisor" in conformance.zuv_command(uv_host, Path("uv-host.elf"), offered="--ultravisor")[0]
    assert conformance.zuv_command(uv_host, Path("uv-host.elf"), offered="")[1] == ["an Ultravisor (pv-host)"]


def _result(out: bytes, tmp_path, code=0):
    script = tmp_path / "t.sh"
    (tmp_path / "out").write_bytes(out)
    script.write_text(f"cat {tmp_path / 'out'}; exit {code}\n")
    return conformance.run_one("t", ["sh", str(script)], timeout=5)


def test_output_is_read_as_the_upstream_runner_reads_it(tmp_path):
    r = _result(b"\rPASS: a\nFAIL: b\nXFAIL: c\nSKIP: d\nSUMMARY: 4 tests\n\nEXIT: STATUS=3\n", tmp_path)
    assert (r.passed, r.failed, r.skipped, r.status, r.verdict) == (2, 1, 1, 3, "FAIL")
    assert _result(b"\x1bcPASS: a\nEXIT: STATUS=1\n", tmp_path).passed == 1  # after a terminal reset
    assert _result(b"PASS: a\nEXIT: STATUS=1\n", tmp_path).verdict == "PASS"
    assert _result(b"SKIP: a\nEXIT: STATUS=77\n", tmp_path).verdict == "SKIP"
    r = _result(b"PASS: a\nEXIT: STATUS=1\nzuv: CPU 1 in disabled wait (a crash)\n", tmp_path, code=1)
    assert r.verdict == "FAIL" and "a crash" in r.note  # success said, but the machine did not end cleanly
    r = _result(b"PASS: a\nzuv: check stop\n", tmp_path, code=1)
    assert r.verdict == "FAIL" and r.note == "zuv: check stop"


def test_a_regression_is_named_and_an_improvement_is_not_one():
    exp = {"pass": 10, "fail": 1, "skip": 0, "verdict": "FAIL"}
    worse = conformance.Result("t", passed=9, failed=2, verdict="FAIL")
    assert conformance.regressions(worse, exp) == ["PASS 10 -> 9", "FAIL 1 -> 2"]
    better = conformance.Result("t", passed=12, failed=0, verdict="PASS")
    assert conformance.regressions(better, exp) == [] and conformance.improved(better, exp)
    hung = conformance.Result("t", passed=3, verdict="TIMEOUT")
    assert conformance.regressions(hung, exp) == ["verdict FAIL -> TIMEOUT", "PASS 10 -> 3"]
    assert conformance.regressions(hung, {**exp, "verdict": "TIMEOUT"}) == []


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("ZUV_CONFORMANCE")),
                    reason="the whole suite takes minutes: set ZUV_CONFORMANCE=1 (tools/test.sh and CI do)")
def test_no_kvm_unit_test_regresses(capsys):
    if shutil.which("s390x-linux-gnu-gcc") is None:
        pytest.fail("the s390x cross compiler is missing: run tools/setup.sh")
    code = conformance.main([])
    captured = capsys.readouterr()
    out = captured.out + captured.err  # a missing tarball or a failed build is said on stderr
    named = [line for line in out.splitlines() if "REGRESSION" in line or "conformance:" in line]
    assert code == 0, "\n".join(named)


def test_pv_runs_boot_the_suites_pv_images_and_are_reported_apart(tmp_path):
    uv_host = conformance.parse_cfg(CFG)[2]
    image = conformance.pv_image(tmp_path, uv_host.file)
    assert image == tmp_path / "s390x" / "uv-host.pv.bin"
    cmd = conformance.pv_command(uv_host.memory_mib, uv_host.timeout, image, uv_host.cpus)
    assert cmd[cmd.index("boot") + 1:] == ["--memory", "2200M", "--cpus", "2", "--time-limit", "90.0",
                                           "--no-attack", str(image)]  # fmt: skip
    topology = conformance.parse_cfg(CFG)[4]  # its second CPU comes from -device max-s390x-cpu,core-id=31
    cmd = conformance.pv_command(128, 20, image, topology.cpus, topology.qemu_params)
    assert cmd[cmd.index("boot") + 1:] == ["--memory", "128M", "--cpus", "1", "--device",
                                           "max-s390x-cpu,core-id=31", "--time-limit", "20", "--no-attack",
                                           str(image)]  # fmt: skip
    # a PV run has the devices of the test's other run, as the upstream runner starts it: the watchdog with
    # its action (diag288_PV), a channel device (skey_PV's MSCH checks), a CPU without its topology
    params = ("-device diag288,id=watchdog0 --watchdog-action inject-nmi -device virtio-net-ccw -name x "
              "-device max-s390x-cpu,core-id=3,socket-id=1 -smp 1,maxcpus=4")
    assert conformance_pv.pv_device_options(params) == [
        "--watchdog", "diag288", "--watchdog-action", "inject-nmi", "--device", "virtio-net-ccw",
        "--name", "x", "--device", "max-s390x-cpu,core-id=3"]  # fmt: skip
    specs = conformance.parse_cfg(CFG)[:2]
    rec = {"pass": 22, "fail": 0, "skip": 0, "verdict": "PASS", "seconds": 1.0}
    zuv = {
        "selftest-setup": rec,
        "selftest-setup_PV": rec,
        "sclp-3g_PV": {**rec, "verdict": "FAIL", "fail": 1},
    }
    text = "\n".join(conformance.pv_report(specs, zuv))
    assert "| selftest-setup_PV | 128 | 22/0/0 PASS (1.0 s) |" in text and "| sclp-3g_PV | 3072 |" in text
    assert "1 of 2 PV runs pass, 0 skip" in text
    assert conformance.pv_report(specs, {"selftest-setup": rec}) == []  # none recorded: no section

"""What zuv's pvimg, pvattest and pvsecret print on stderr besides errors, and their ``--version``, against
s390-tools 2.43 (its ``utils`` crate's logger and verbosity options, ``get_verified_hkds``, the commands'
``warn!``/``info!`` lines, and the ``--version`` subcommand alias), checked against IBM's binaries.

s390-tools logs warnings by default, notes with ``-v``, and ``-q`` hides warnings; the lines are plain (no
tool name, no level). ``--version`` is a subcommand: alone but for ``-v``/``-q``/``-V`` before or after it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from emulator.attest.pvattest import pvattest_main
from emulator.attest.pvsecret import pvsecret_main
from emulator.image.pvimg_cli import pvimg_main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/ibm"
HKD = str(ROOT / "firmware/machines/zuv-demo/host-key-document.crt")
HDR = str(DATA / "genprotimg-2.35.hdr")
MAINS = {"pvimg": pvimg_main, "pvattest": pvattest_main, "pvsecret": pvsecret_main}
USAGE = {"pvimg": 2, "pvattest": 1, "pvsecret": 1}  # clap's 2 for pvimg; print_cli_error's 1 for the others


@pytest.mark.parametrize("tool", sorted(MAINS))
def test_version_is_a_subcommand_beside_the_verbosity_options(tool, capsys):
    main = MAINS[tool]
    for args in (["--version"], ["version"], ["-v", "--version"], ["--version", "-v"], ["-q", "--version"],
                 ["-vv", "--version"], ["-V", "--version"], ["--verbose", "--version"],
                 ["version", "-q"]):  # fmt: skip
        assert main(args) == 0, args
        assert capsys.readouterr().out.startswith(f"{tool} version 2.43.0")
    for args in (["-v", "-q", "--version"], ["--version", "--version"], ["--version", "create"],
                 ["create", "--version"]):  # fmt: skip
        assert main(args) == USAGE[tool], args
        assert capsys.readouterr().out == ""


def _create(tool: str, tmp_path: Path, *extra: str) -> int:
    return MAINS[tool](_create_args(tool, tmp_path, *extra))


def _create_args(tool: str, tmp_path: Path, *extra: str) -> list[str]:
    out = str(tmp_path / "out")
    if tool == "pvimg":
        args = ["create", "-k", HKD, "--no-verify", "-i", str(DATA / "pvimg-2.43.se"), "--no-component-check",
                "-o", out, "--overwrite"]  # fmt: skip
    elif tool == "pvattest":
        args = ["create", "-k", HKD, "--no-verify", "-o", out, "-a", str(tmp_path / "arpk")]
    else:
        args = ["create", "-k", HKD, "--no-verify", "--hdr", HDR, "-o", out, "meta"]
    return [*args, *extra]


# what IBM's 2.43 tools printed for the same command lines (tests/data/ibm/README.md: how they are built)
IBM_STDERR = {
    "pvimg": "Host-key document verification is disabled. The Secure Execution image may not be protected.\n"
             "{use}The component check is turned off!\nSuccessfully generated the Secure Execution image.\n",
    "pvattest": "Host-key document verification is disabled. The attestation request may not be protected.\n"
                "{use}Successfully generated the request\n",
    "pvsecret": "Host-key document verification is disabled. The secret may not be protected.\n"
                "{use}Successfully generated the request\n{wrote}",
}  # fmt: skip


@pytest.mark.parametrize("tool", sorted(MAINS))
def test_create_logs_as_ibm_at_each_level(tool, tmp_path, capsys):
    assert _create(tool, tmp_path) == 0
    assert capsys.readouterr().err == IBM_STDERR[tool].format(use="", wrote="")
    assert _create(tool, tmp_path, "-v") == 0
    wrote = f"Successfully wrote the request to '{tmp_path / 'out'}'\n"
    assert capsys.readouterr().err == IBM_STDERR[tool].format(use=f"Use host-key document at '{HKD}'\n",
                                                              wrote=wrote)  # fmt: skip
    assert _create(tool, tmp_path, "-q") == 0
    assert capsys.readouterr().err == ""


def test_pvattest_verify_and_check_quiet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(DATA)
    verify = ["verify", "-i", "zuv-response-to-pvattest-2.43.bin", "--hdr", "genprotimg-2.35.se",
              "-a", "pvattest-2.43-arpk.bin"]  # fmt: skip
    assert pvattest_main(verify) == 0
    err = capsys.readouterr().err
    assert err.startswith("Attestation measurement verified\nConfig UID:\n0x")
    assert err.endswith("650a\n\n")  # the user data, then the blank lines IBM's Display ends with
    assert pvattest_main([*verify, "-q"]) == 0
    assert capsys.readouterr().err == ""
    check = ["check", "zuv-response-to-pvattest-2.43.bin", str(tmp_path / "c.yaml")]
    assert pvattest_main(check) == 0
    assert capsys.readouterr().err == "✓ The Attestation response fulfills all policies\n"
    assert pvattest_main([*check, "-u", "README.md", "-q"]) == 2  # not fulfilled: the status says it
    assert capsys.readouterr().err == ""


def test_pvsecret_hidden_pcf_sets_the_raw_request_flags(tmp_path, capsys):
    """pvsecret's hidden ``--pcf HEX`` (IBM's 2.43 wrote 0x123 as ``0000000000000123`` at 0x30)."""
    out = tmp_path / "out"
    base = ["create", "-k", HKD, "--no-verify", "--hdr", HDR, "-o", str(out), "-q"]
    for pcf, raw in (("0x123", 0x123), ("8000000000000000", 1 << 63)):
        assert pvsecret_main([*base, "--pcf", pcf, "meta"]) == 0
        assert out.read_bytes()[0x30:0x38] == raw.to_bytes(8, "big")
    assert pvsecret_main([*base, "--pcf", "1", "--flags", "disable-dump", "meta"]) == 1  # a usage error
    assert pvsecret_main([*base, "--pcf", "zz", "meta"]) == 1
    assert pvsecret_main([*base, "--pcf", "1" * 17, "meta"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "must be max 16 chars long" in err


IBM = Path(os.environ["ZUV_IBM_TOOLS"]) if os.environ.get("ZUV_IBM_TOOLS") else None


@pytest.mark.skipif(IBM is None, reason="ZUV_IBM_TOOLS not set (tools/ibm_s390_tools.sh builds them)")
@pytest.mark.parametrize("tool", sorted(MAINS))
def test_live_create_logs_what_ibm_logs(tool, tmp_path, capsys):
    exe = IBM / "bin" / f"{tool}-2.43"  # type: ignore[operator]
    if not exe.exists():
        pytest.skip(f"IBM's {tool} 2.43 not built (tools/ibm_s390_tools.sh --rust ..)")
    for extra in ([], ["-v"], ["-q"]):
        args = _create_args(tool, tmp_path, *extra)
        ibm = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
        assert MAINS[tool](args) == ibm.returncode == 0, ibm.stderr
        assert capsys.readouterr().err == ibm.stderr, extra


@pytest.mark.parametrize("tool", sorted(MAINS))
def test_the_old_v_is_warned_once_as_ibm(tool, tmp_path, capsys):
    old = "WARNING: Use of deprecated flag '-V'. Use '-v' or '--verbose' instead.\n"
    assert MAINS[tool](["-V", "--version"]) == 0
    assert capsys.readouterr().err == old
    assert _create(tool, tmp_path, "-V", "-V") == 0
    err = capsys.readouterr().err
    assert err.startswith(old) and err.count(old) == 1 and f"Use host-key document at '{HKD}'" in err
    assert _create(tool, tmp_path, "-q") == 0 and capsys.readouterr().err == ""


def test_genprotimg_is_pvimg_create_with_its_own_version_and_help_rules(tmp_path, capsys):
    """s390-tools' genprotimg (pvimg under that name, GenprotimgCliOptions): ``--version`` alone, the
    deprecated ``--help-all``/``--help-experimental``."""
    from emulator.image.pvimg_cli import genprotimg_main

    assert genprotimg_main(["--version"]) == 0 and capsys.readouterr().out.startswith("pvimg version 2.43.0")
    for args in (["-v", "--version"], ["--version", "--version"], ["create", "--version"]):
        assert genprotimg_main(args) == 2, args
    for flag in ("--help-all", "--help-experimental", "--help"):
        assert genprotimg_main([flag]) == 0 and "--kernel" in capsys.readouterr().out
    out = tmp_path / "img"
    assert genprotimg_main(["-k", HKD, "--no-verify", "-i", str(DATA / "pvimg-2.43.se"), "-o", str(out),
                            "--no-component-check", "-q"]) == 0  # fmt: skip
    assert out.stat().st_size > 0x14000
    assert genprotimg_main(["create", "-k", HKD, "--no-verify", "-i", str(out), "-o", str(out)]) == 2

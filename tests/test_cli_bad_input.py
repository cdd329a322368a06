"""A sweep of bad files through every ``zuv`` command's file arguments: each ends in a short error on stderr
and a non-zero status, never a traceback or a success (missing, a directory, empty, random bytes, a truncated
copy, a valid file of the wrong kind, a name too long for the file system)."""

from __future__ import annotations

import random
import traceback
from pathlib import Path

import pytest

from emulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "guests" / "images"
MACHINE = ROOT / "firmware" / "machines" / "zuv-demo"
PKI = MACHINE / "pki"
ELF, SE, HKD = IMAGES / "hello.elf", IMAGES / "attest_demo.se", MACHINE / "host-key-document.crt"
CERTS = ["-C", str(PKI / "ibm-z-signing-key.crt"), "-C", str(PKI / "intermediate-ca.crt")]
KINDS = ["missing", "directory", "empty", "random", "truncated-elf", "truncated-se", "truncated-hkd", "elf",
         "se", "long-name"]  # fmt: skip


def _bad_file(kind: str, tmp: Path) -> str:
    rng = random.Random(kind)
    if kind == "missing":
        return str(tmp / "missing")
    if kind == "directory":
        return str(tmp)
    if kind == "long-name":
        return str(tmp / ("x" * 300))
    if kind in ("elf", "se"):
        return str(ELF if kind == "elf" else SE)
    path = tmp / kind
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(rng.randbytes(4096))
    else:  # a truncated copy: the first tenth of a valid file
        data = {"truncated-elf": ELF, "truncated-se": SE, "truncated-hkd": HKD}[kind].read_bytes()
        path.write_bytes(data[: len(data) // 10])
    return str(path)


def _out(tmp: Path, name: str) -> str:
    return str(tmp / "out" / name)


# (command with {F} for the bad file, the kinds of file that are valid there)
TEMPLATES = [
    (["run", "{F}", "--time-limit", "5"], {"elf", "se"}),  # an SE image: run says to boot it (exit 2)
    (["run", str(ELF), "--initrd", "{F}", "--time-limit", "5"],
     {"elf", "se", "empty", "random", "truncated-elf", "truncated-se", "truncated-hkd"}),
    (["run", str(ELF), "--ultravisor", "--machine", "{F}", "--time-limit", "5"], set()),
    (["boot", "{F}", "--time-limit", "5"], {"se", "elf"}),  # an ELF: booted as a normal guest
    (["boot", "--machine", "{F}", "--time-limit", "5"], set()),
    (["console", "{F}", "--script", "/dev/null"], {"elf", "se"}),
    (["console", str(ELF), "--script", "{F}"], {"empty"}),  # PEM text: no console command (exit 2)
    (["pvimg", "info", "{F}"], {"se"}),
    # see report
    (["pvimg", "create", "-i", "{F}", "-k", str(HKD), "--no-verify", "-o", "OUT"], {"elf", "se"}),
    (["pvimg", "create", "-i", str(ELF), "-k", "{F}", *CERTS, "-o", "OUT"], set()),
    (["pvimg", "create", "-i", str(ELF), "-k", str(HKD), "-C", "{F}", "-o", "OUT"], set()),
    (["pvimg", "create", "-i", str(ELF), "-k", str(HKD), "--no-verify", "-o", "{F}"], {"missing"}),
    (["hostkey", "verify", "{F}"], set()),
    (["pvattest", "create", "-k", "{F}", *CERTS, "-o", "OUT", "-a", "OUT2"], set()),
    (["pvattest", "create", "-k", str(HKD), "--pki", "{F}", "-o", "OUT", "-a", "OUT2"], set()),
    (["pvattest", "perform", "-i", "{F}", "-o", "OUT", "--image", str(SE)], set()),
    (["pvattest", "verify", "-i", "{F}", "--hdr", str(SE), "-a", str(HKD)], set()),
    (["pvattest", "check", "-i", "{F}", "-o", "OUT"], set()),
    (["pvsecret", "create", "-k", str(HKD), *CERTS, "--hdr", "{F}", "-o", "OUT", "meta"], {"se"}),
    (["pvsecret", "verify", "{F}"], set()),
    (["pvsecret", "info", "{F}"], set()),
    (["pvsecret", "list", "--guest", "{F}"], set()),
    (["verifier", "serve", "--image", "{F}", "--port", "0"], {"se"}),  # a valid image: it serves
]


def _case_id(template: list[str], kind: str) -> str:
    """The command's first words (no paths), the option before the bad file, the kind of bad file."""
    words = "-".join(a for a in template[:3] if not a.startswith("/"))
    return f"{words}-{template[template.index('{F}') - 1]}-{kind}"


CASES = [
    pytest.param(t, kind, id=_case_id(t, kind)) for t, ok in TEMPLATES for kind in KINDS if kind not in ok
]


def _zuv(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``zuv ARGV`` in this process (as fast as the sweep needs): status, stdout, stderr (with any
    traceback)."""
    tb = ""
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's usage error
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - the very thing this sweep looks for
        status, tb = -1, traceback.format_exc()
    out, err = capsys.readouterr()
    return status, out, err + tb


@pytest.mark.parametrize("template, kind", CASES)
def test_a_bad_file_is_one_clear_error(template, kind, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "in").mkdir()
    bad = _bad_file(kind, tmp_path / "in")
    argv = [bad if a == "{F}" else _out(tmp_path, a) if a.startswith("OUT") else a for a in template]
    status, _out_text, err = _zuv(argv, capsys)
    assert "Traceback" not in err, err
    assert status not in (0, None), (status, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and "WARNING" not in ln]
    assert lines, "no error message"
    assert len(lines[-1]) < 200 + 3 * len(bad), lines[-1]  # one line: the file named, and what is wrong
    assert "[Errno" not in err, err  # the system's reason in words, not Python's repr of the exception


@pytest.mark.parametrize("command", ["attack", "lab", "hostkey", "pvimg", "pvattest", "pvsecret", "verifier"])
def test_a_mistyped_subcommand_is_named_with_the_choices(command, capsys):
    """'zuv verifier bogus' said 'unrecognized arguments: bogus' (the word was taken as an argument of the
    default 'serve'): every command with subcommands names the bad word and the ones it knows."""
    status, out, err = _zuv([command, "bogus"], capsys)
    assert status in (1, 2) and "Traceback" not in err, err  # 1: pvattest and pvsecret, as IBM's (clap)
    last = err.strip().splitlines()[-1]
    assert "invalid choice: 'bogus'" in last and "(choose from " in last, last


@pytest.mark.parametrize("option", ["--image", "--secret"])
def test_verifier_names_an_unreadable_file(option, tmp_path, capsys):
    """'zuv verifier serve --image /nonexist' printed "[Errno 2] No such file or directory: '/nonexist'"."""
    missing = str(tmp_path / "missing")
    status, _, err = _zuv(["verifier", "serve", option, missing if option == "--image" else f"k={missing}"],
                          capsys)  # fmt: skip
    assert status == 2 and err.strip().splitlines() == [f"zuv verifier: error: {missing}: cannot read: "
                                                        "No such file or directory"]  # fmt: skip

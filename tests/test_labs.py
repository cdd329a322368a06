"""The labs: for each, a reference solution (the student's commands, run for real) makes ``zuv lab check``
pass, and a wrong or missing answer makes it fail; ``list`` and ``start`` behave."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.labs import LABS, main, start
from emulator.labs.grading import grade

ROOT = Path(__file__).resolve().parent.parent
DEMO = "guests/images/secure_demo.se"
PKI = "firmware/machines/zuv-demo/pki"


def zuv(*args: str, out: Path | None = None) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "emulator.cli", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    if out is not None:
        out.write_text(r.stdout)
    return r.stdout + r.stderr


def console(d: Path, image: str, extra: list[str]) -> None:
    """The student's script: start.zuv with the TODO done, run on ``image``, saved as transcript.txt."""
    script = d / "start.zuv"
    lines = script.read_text().splitlines()
    todo = next(i for i, line in enumerate(lines) if line.startswith("# TODO"))
    script.write_text("\n".join(lines[:todo] + extra + lines[todo + 1:]) + "\n")
    zuv("console", "--script", str(script), image, "--deterministic", out=d / "transcript.txt")


def answers(d: Path, **kv: str) -> None:
    (d / "answers.txt").write_text("".join(f"{k} = {v}\n" for k, v in kv.items()))


def solve(n: int, d: Path) -> dict[str, str]:
    """Lab n's reference solution in ``d``; returns its answers."""
    start(n, d)
    if n == 1:
        zuv(
            "pvimg",
            "create",
            "-i",
            "guests/images/hello.elf",
            "-k",
            "firmware/machines/zuv-demo/host-key-document.crt",
            "-C",
            f"{PKI}/ibm-z-signing-key.crt",
            "-C",
            f"{PKI}/intermediate-ca.crt",
            "--crl",
            f"{PKI}/ibm-z-signing-key.crl",
            "--crl",
            f"{PKI}/intermediate-ca.crl,{PKI}/root-ca.crl",
            "-o",
            str(d / "hello.se"),
        )
        assert "rc 0x0108" in zuv("boot", str(d / "hello.se"), "--machine", "zuv-other")
        info = zuv("pvimg", "info", str(d / "hello.se"), "--format", "json")
        nep = info.split('"nep": ')[1].split(",")[0]
        phkh = info.split('"phkh_hex": "')[1].split('"')[0]
        zuv("console", "--script", str(d / "start.zuv"), str(d / "hello.se"), "--deterministic",
            out=d / "transcript.txt")
        assert b"Hello from a bare-metal" in (ROOT / "guests/images/hello.elf").read_bytes()
        return dict(phkh=phkh, encrypted_pages=nep, hello_text_visible="no", other_machine_rc="0x0108")
    if n == 2:
        console(d, DEMO, ["dual abs:0x18000 64", "set {char}host:0x1018000 = 0x41"])
        return dict(shared_pages="0x16000, 0x17000, 0x18000, 0x19000", bounce_buffer="0x18000",
                    host_reads_shared="yes")
    if n == 3:
        console(d, DEMO, [f"pages --svg {d / 'pages.svg'}"])
        return dict(secret_page="0x15000", pgm_code="0x3d", export_uvc="0x0201", import_uvc="0x0200")
    if n == 4:
        console(d, DEMO, [f"uvlog --svg {d / 'uvlog.svg'}"])
        info = zuv("pvimg", "info", DEMO, "--format", "json")
        pld = info.split('"pld_hex": "')[1][:16]
        return dict(
            unpack_calls="56", nep="56", verify_uvc="0x0302", first_uvc_after_create_cpu="0x0300", pld=pld
        )
    if n == 5:
        zuv("verifier", "demo", out=d / "verifier.txt")
        return dict(released_runs="1", tampered_reason="pld", replay_reason="nonce", attest_uvc="0x1f20")
    console(d, DEMO, ["set {char}host:0x1015000 = 0x41", "delete all", "continue", "uvlog 2", "status"])
    assert "check-stop" in (d / "transcript.txt").read_text()
    return dict(import_rc="0x0107", guest_state="check-stop", secret_leaked="no")


WRONG = {1: ("hello_text_visible", "yes"), 2: ("shared_pages", "0x16000, 0x17000"), 3: ("pgm_code", "0x04"),
         4: ("unpack_calls", "55"), 5: ("released_runs", "1, 2"), 6: ("secret_leaked", "yes")}


@pytest.mark.parametrize("n", [lab.number for lab in LABS])
def test_reference_solution_passes_and_a_wrong_answer_fails(n, tmp_path, capsys):
    d = tmp_path / f"lab{n}"
    good = solve(n, d)
    answers(d, **good)
    results = grade(LABS[n - 1], d)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert main(["check", str(n), "--dir", str(d)]) == 0
    assert "checkpoints passed" in capsys.readouterr().out
    key, bad = WRONG[n]
    answers(d, **dict(good, **{key: bad}))
    failed = [r for r in grade(LABS[n - 1], d) if not r.ok]
    assert len(failed) == 1 and key in failed[0].detail
    assert main(["check", str(n), "--dir", str(d)]) == 1


def test_unfinished_work_fails_every_file_checkpoint(tmp_path):
    d = tmp_path / "lab3"
    start(3, d)
    results = grade(LABS[2], d)
    assert not any(r.ok for r in results)
    (d / "pages.svg").write_text("<svg")
    assert "not well-formed" in grade(LABS[2], d)[-1].detail


def test_list_start_and_bad_usage(tmp_path, capsys):
    assert len(LABS) >= 6 and main(["list"]) == 0
    assert "The malicious hypervisor" in capsys.readouterr().out
    d = tmp_path / "w"
    assert main(["start", "2", "--dir", str(d)]) == 0
    assert {p.name for p in d.iterdir()} == {"README.md", "start.zuv", "answers.txt"}
    (d / "answers.txt").write_text("shared_pages = 1\n")
    start(2, d)  # a student's work is kept
    assert (d / "answers.txt").read_text() == "shared_pages = 1\n"
    assert main(["check", "9"]) == 2 and main(["check", "1", "--dir", str(tmp_path / "none")]) == 2


def readme_commands(text: str) -> list[str]:
    """The shell commands of a lab's README: its indented lines (continuations joined) that run zuv or set a
    variable for the next ones."""
    body = re.sub(r"\\\n\s*", " ", text)
    lines = [ln.strip() for ln in body.splitlines() if ln.startswith("       ")]
    return [ln for ln in lines if ln.startswith("zuv ") or re.match(r"^[A-Z]+=\S+$", ln)]


@pytest.mark.parametrize("n", [lab.number for lab in LABS])
def test_each_labs_commands_run_as_its_readme_writes_them(n, tmp_path, monkeypatch):
    """At the top of a clone with zuv on the PATH (the README: source .venv/bin/activate), every command of
    the lab's README runs clean, its starting script's first line among them; what a command writes into the
    lab's directory shows no error (labs 3 and 6 ran `dual` without the debug capability once: an error in
    the student's transcript, exit 1)."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "work") and not entry.name.startswith((".pytest", ".hypothesis")):
            (tmp_path / entry.name).symlink_to(entry)
    monkeypatch.chdir(tmp_path)
    start(n, Path(f"lab{n}"))
    commands = readme_commands((tmp_path / f"lab{n}/README.md").read_text())
    assert any(c.startswith("zuv ") for c in commands), commands
    first = (tmp_path / f"lab{n}/start.zuv").read_text().splitlines()[0]
    assert first.startswith("# zuv ") and first[2:] in commands, (first, commands)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZUV_", "PYTEST"))}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{tmp_path / '.venv/bin'}:{os.environ.get('PATH', '')}")
    setup: list[str] = []
    for cmd in commands:
        if "=" in cmd.split()[0]:
            setup.append(cmd)
            continue
        r = subprocess.run(["bash", "-c", "; ".join([*setup, cmd])], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
        why = f"lab {n}: {cmd}: {r.stdout[-1500:]}{r.stderr}"
        assert r.returncode == 0 and "Traceback" not in r.stderr, why
        for out in re.findall(r"> (\S+)", cmd):
            assert "error" not in (tmp_path / out).read_text(), f"lab {n}: {cmd}: {out} shows an error"


@pytest.mark.parametrize("n", [lab.number for lab in LABS])
def test_start_in_another_directory_rewrites_the_labs_commands(n, tmp_path, monkeypatch):
    """The README starts lab 3 in work/lab3: its texts named lab3/ in every command, so the student's first
    command wrote into a directory that did not exist. With --dir they name that directory (and the check
    command its --dir); in the default labN/ they are copied as they are."""
    monkeypatch.chdir(tmp_path)
    start(n, Path(f"lab{n}"))
    start(n, Path(f"work/lab{n}"))
    for f in ("README.md", "start.zuv", "answers.txt"):
        plain = (tmp_path / f"lab{n}" / f).read_text()
        moved = (tmp_path / f"work/lab{n}" / f).read_text()
        assert plain == (ROOT / f"emulator/labs/texts/lab{n}/{f}").read_text()
        assert moved == plain.replace(f"lab{n}/", f"work/lab{n}/").replace(
            f"zuv lab check {n}", f"zuv lab check {n} --dir work/lab{n}")
    assert f"lab{n}/start.zuv" in (tmp_path / f"lab{n}/start.zuv").read_text().splitlines()[0]
    assert f" work/lab{n}/start.zuv " in (tmp_path / f"work/lab{n}/start.zuv").read_text().splitlines()[0]

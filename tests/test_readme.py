"""README.md cannot rot: every command of its ``sh`` blocks runs here as a new user types it, at the top of a
fresh copy of the clone (the repository's files linked in), and must succeed (or fail as its comment says);
the files it writes must land in ``work/``, never among the clone's own files. The Python example runs too.

Left out, each for a reason the table says (and each entry must still match a README command)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: commands not run here: a fragment of the command -> why
SKIP = {
    "python3 -m venv": "installs zuv (the suite runs in that venv)",
    "bash tools/test.sh": "runs this suite",
    "tools/conformance.py": "minutes of kvm-unit-tests (tests/test_conformance.py, ZUV_CONFORMANCE=1)",
    "--gdb tcp::1234": "waits for a debugger to attach (tests/test_gdbstub.py)",
}
#: commands that fail on purpose: a fragment -> (exit status, what the output must say)
FAILS = {
    "boot --machine zuv-other": (1, "rc 0x0108"),
    "lab check 3 --dir work/lab3": (1, "checkpoints passed"),  # the student has not done the lab yet
}
#: what a command's comment promises: a fragment -> a line its output must have
SAYS = {
    "attack run read-secret": "PGM 0x3d",
    "attack run all": "22 of 22 defences held",
    "pvattest verify": "Attestation measurement verified",
    "pvsecret create": "Successfully wrote secret info to 'work/disk-key.yaml'",
}


def blocks(text: str) -> list[tuple[int, list[str]]]:
    """Each ``sh`` block's commands (continuation lines joined, comments dropped), with its first line."""
    out = []
    for m in re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M):
        body = re.sub(r"\\\n\s*", " ", m.group(1))
        cmds = [re.sub(r"\s+#.*$", "", ln).strip() for ln in body.splitlines()]
        out.append((text.count("\n", 0, m.start()) + 2, [c for c in cmds if c and not c.startswith("#")]))
    return out


BLOCKS = blocks(README.read_text())


def _clone(tmp: Path) -> None:
    """A fresh top directory: the repository's files and its venv linked in, no work/ yet."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "work") and not entry.name.startswith((".pytest", ".hypothesis")):
            (tmp / entry.name).symlink_to(entry)


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZUV_", "PYTEST"))}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv was installed from
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_tables_name_readme_commands():
    commands = [c for _, cmds in BLOCKS for c in cmds]
    for fragment in (*SKIP, *FAILS, *SAYS):
        assert any(fragment in c for c in commands), f"no README command has {fragment!r}: update the table"
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("line", "commands"), BLOCKS, ids=[f"line{ln}" for ln, _ in BLOCKS])
def test_readme_block(line, commands, tmp_path):
    if not (ROOT / ".venv/bin/zuv").exists():
        pytest.fail("the README runs .venv/bin/zuv: install zuv into .venv as its first command does")
    _clone(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    setup: list[str] = []  # the block's variable lines (M=...; mkdir -p $W), given to each later command
    for cmd in commands:
        if re.match(r"^[A-Z]+=\S+(;|$)", cmd):
            setup.append(cmd)
            continue
        if any(fragment in cmd for fragment in SKIP):
            continue
        r = _run("; ".join([*setup, cmd]), tmp_path)
        status, says = next((v for k, v in FAILS.items() if k in cmd), (0, None))
        says = says or next((v for k, v in SAYS.items() if k in cmd), None)
        what = f"README line {line}ff: {cmd}: exit {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
        assert r.returncode == status and "Traceback" not in r.stderr, what
        assert says is None or says in r.stdout + r.stderr, f"{what}\n(no {says!r})"
    written = {p.name for p in tmp_path.iterdir()} - before
    assert written <= {"work"}, f"README line {line}ff wrote {sorted(written)} outside work/"


def test_readme_python_example(tmp_path):
    """The attack example, saved as the README says and run with the venv's python."""
    code = re.search(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert code and "work/attack.py" in README.read_text()
    _clone(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "work/attack.py").write_text(code.group(1))
    r = _run(".venv/bin/python work/attack.py", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for promised in ("PGM 0x3d", "rc 0x0001", "rc 0x0107"):
        assert promised in r.stdout, (promised, r.stdout)

"""docs/tutorial.md cannot rot: every command in its ``console`` blocks runs here, in a fresh shell, and its
output must show the tutorial's lines in order (``...`` skips lines, a line ending in ``...`` is a prefix)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs/tutorial.md"


@dataclass
class Run:
    """One ``$ COMMAND`` of the tutorial, the console commands typed into it and the output shown."""

    command: str
    line: int
    typed: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)


def runs(text: str) -> list[Run]:
    """The tutorial's commands: a ``$`` line starts one; ``(zuv)`` lines (in its block or in later blocks,
    until the next ``$``) are typed into it; every other line is output it must show."""
    out: list[Run] = []
    for m in re.finditer(r"^```console\n(.*?)^```", text, re.S | re.M):
        first = text.count("\n", 0, m.start()) + 2
        for i, line in enumerate(m.group(1).splitlines()):
            if line.startswith("$ "):
                out.append(Run(line[2:], first + i))
                continue
            assert out, f"tutorial line {first + i}: output before any command"
            if line.startswith("(zuv) "):
                out[-1].typed.append(line[6:])
            out[-1].shown.append(line)
    return out


def missing(shown: list[str], output: str) -> str | None:
    """The first shown line that the output does not have (in order), or None."""
    lines = output.splitlines()
    at = 0
    for want in shown:
        if want.strip() == "...":
            continue
        prefix = want.endswith("...")
        while at < len(lines):
            got = lines[at].rstrip()
            at += 1
            if got == want.rstrip() or (prefix and got.startswith(want[:-3])):
                break
        else:
            return want
    return None


def test_the_tutorial_has_the_walk_through() -> None:
    found = runs(TUTORIAL.read_text())
    assert len(found) >= 4
    typed = [t.split()[0] for r in found for t in r.typed]
    for cmd in ("break", "continue", "step", "uvlog", "regs", "dual", "pages"):
        assert cmd in typed
    assert missing(["a", "...", "c..."], "a\nb\ncde") is None and missing(["b", "a"], "a\nb") == "a"


@pytest.mark.parametrize("run", runs(TUTORIAL.read_text()), ids=lambda r: f"line{r.line}")
def test_tutorial_command(run: Run, tmp_path: Path) -> None:
    # a fresh directory with the repository's venv and guests, so files the tutorial writes land there
    for name in (".venv", "guests"):
        (tmp_path / name).symlink_to(ROOT / name)
    if not (ROOT / ".venv/bin/zuv").exists():
        pytest.fail("the tutorial runs .venv/bin/zuv: install zuv into .venv as the README says")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZUV_", "PYTEST"))}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv was installed from
    stdin = "".join(t + "\n" for t in run.typed) if run.typed else None
    p = subprocess.run(["bash", "-c", run.command], cwd=tmp_path, env=env, input=stdin, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, f"line {run.line}: {run.command}: exit {p.returncode}\n{p.stderr[-2000:]}"
    gone = missing(run.shown, p.stdout)
    tail = p.stdout[-4000:]
    assert gone is None, f"line {run.line}: {run.command}: output lacks {gone!r}\n--- output:\n{tail}"
    for name in re.findall(r"--(?:svg|png) (\S+)", " ".join(run.typed)):
        assert (tmp_path / name).stat().st_size > 1000, name

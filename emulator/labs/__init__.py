"""``zuv lab list|start N|check N``: six self-grading labs on confidential computing.

The labs use the secure demo guest.

The lab texts, starting console scripts and answer templates are package data (``emulator/labs/texts/labN``);
the checkpoints that grade a student's work live in ``emulator.labs.grading``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from emulator.labs.grading import LABS, Lab, grade

__all__ = ["main", "LABS", "TEXTS", "start", "grade"]

#: Where the lab texts are (one directory per lab: README.md, start.zuv, answers.txt).
TEXTS = Path(__file__).resolve().parent / "texts"


def _lab(n: int) -> Lab:
    for lab in LABS:
        if lab.number == n:
            return lab
    raise SystemExit(f"zuv lab: no lab {n} (labs 1-{len(LABS)}: zuv lab list)")


def start(n: int, directory: Path) -> list[Path]:
    """Copy lab ``n``'s instructions, starting script and answer template into ``directory`` (files already
    there are kept: a student's work is never overwritten). Returns the files copied."""
    src = TEXTS / f"lab{n}"
    directory.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in sorted(src.iterdir()):
        dest = directory / f.name
        if dest.exists():
            continue
        if f.suffix in _TEXT and directory != Path(f"lab{n}"):
            dest.write_text(_relocated(f.read_text(), n, directory))
        else:
            shutil.copyfile(f, dest)
        copied.append(dest)
    return copied


#: the lab files that name their directory (``labN/…``) and the check command in their commands
_TEXT = (".md", ".zuv", ".txt")


def _relocated(text: str, n: int, directory: Path) -> str:
    """A lab text for ``--dir DIRECTORY``: its commands name that directory where they named ``labN/``, and
    ``zuv lab check N`` gets ``--dir``, so each command works as written."""
    text = re.sub(rf"(?<![\w/.-])lab{n}/", f"{directory.as_posix()}/", text)
    return re.sub(rf"zuv lab check {n}\b(?! --dir)", f"zuv lab check {n} --dir {directory.as_posix()}", text)


def main(argv: Sequence[str] | None = None) -> int:
    """``zuv lab``: exit 0 when the command (or every checkpoint of ``check``) succeeded, 1 when a checkpoint
    failed, 2 on bad usage."""
    p = argparse.ArgumentParser(prog="zuv lab", description="Self-grading labs on confidential computing.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the labs")
    for name, what in (("start", "copy a lab's instructions, script and answer template into DIR"),
                       ("check", "grade a lab's work in DIR")):
        s = sub.add_parser(name, help=what)
        s.add_argument("number", type=int, help="the lab's number (zuv lab list)")
        s.add_argument("--dir", default=None, help="the lab's working directory (default: labN)")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if a.cmd == "list":
        for lab in LABS:
            print(f"{lab.number}  {lab.title:<40} {lab.summary}")
        return 0
    try:
        lab = _lab(a.number)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    directory = Path(a.dir or f"lab{lab.number}")
    if a.cmd == "start":
        copied = start(lab.number, directory)
        print(f"lab {lab.number}: {lab.title}: {len(copied)} file(s) copied into {directory}/")
        print(f"read {directory}/README.md; when done: zuv lab check {lab.number}"
              + (f" --dir {directory}" if a.dir else ""))
        return 0
    if not directory.is_dir():
        print(
            f"zuv lab: {directory} is not a directory (zuv lab start {lab.number} creates it)",
            file=sys.stderr,
        )
        return 2
    results = grade(lab, directory)
    for r in results:
        print(f"[{'PASS' if r.ok else 'FAIL'}] {r.name}: {r.what}" + ("" if r.ok else f"\n       {r.detail}"))
    passed = sum(r.ok for r in results)
    print(f"lab {lab.number}: {passed}/{len(results)} checkpoints passed")
    return 0 if passed == len(results) else 1

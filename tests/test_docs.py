"""The user docs stand alone and agree with the code and with each other: no file outside the repository,
every markdown file they name exists, the guest table lists every guest image, the README names every doc,
docs/console.md's command table is the console's own help, and docs/hypervisor.md quotes docs/benchmarks.md's
latest figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
USER_DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *DOCS, *sorted((ROOT / "docs/spec").glob("*.md"))]


def test_docs_name_no_file_outside_the_repository() -> None:
    for doc in USER_DOCS:
        text = doc.read_text()
        for bad in ("../shared", "/work/", "/tmp/kut", "shared/spec"):
            assert bad not in text, f"{doc.relative_to(ROOT)} names {bad}"
        for name in re.findall(r"`([A-Za-z0-9_./-]+\.md)`", text):
            found = (ROOT / name).is_file() or (doc.parent / name).is_file()
            assert found, f"{doc.relative_to(ROOT)}: {name}"


def test_guest_table_lists_every_image() -> None:
    manifest = json.loads((ROOT / "guests/images/MANIFEST.json").read_text())
    images = manifest.get("images", manifest)
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \|", (ROOT / "docs/guests.md").read_text(), re.M))
    assert images and set(images) <= table, sorted(set(images) - table)


def test_readme_names_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [d.name for d in DOCS if f"docs/{d.name}" not in readme] == []


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def test_hypervisor_doc_quotes_the_latest_benchmark_figures() -> None:
    latest = _section((ROOT / "docs/benchmarks.md").read_text(), "### Latest figures")
    cells = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$", latest, re.M)
    rows = [r for r in cells if r[0] != "measure"]
    assert len(rows) >= 4
    quoted = " ".join(_section((ROOT / "docs/hypervisor.md").read_text(), "## Benchmarks").split())
    for measure, figure, target in rows:
        assert f"{measure} {figure} (target {target})" in quoted, (measure, figure)
    figures = {f for _m, f, _t in rows}
    others = [n for n in re.findall(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)? us\b", quoted) if n not in figures
              and not any(n in t for _m, _f, t in rows)]  # fmt: skip
    assert others == [], f"docs/hypervisor.md quotes figures that are not the latest: {others}"


def test_console_doc_command_table_is_the_registry() -> None:
    from emulator.console import commands  # noqa: F401 - registers every command
    from emulator.console.cmdbase import REGISTRY

    table = _section((ROOT / "docs/console.md").read_text(), "## Commands")
    rows = [(u.replace("\\|", "|"), a, t) for u, a, t in
            re.findall(r"^\| `(.+?)`(?: \((.*?)\))? \| (.*) \|$", table, re.M)]  # fmt: skip
    want = [(c.usage, ", ".join(c.aliases), c.summary) for c in REGISTRY.values()]
    assert sorted(rows) == sorted(want)


def test_docs_run_the_tools_with_the_venvs_python() -> None:
    # `python3 tools/pvimg.py` on a machine whose python3 lacks zuv's dependencies (a fresh clone, the
    # README's venv) ended in ModuleNotFoundError: the docs use the interpreter the README's first command
    # installs into
    for doc in USER_DOCS:
        hits = re.findall(r"(?<![/\w])python3? (?:tools/\S+|-m emulator\S*)", doc.read_text())
        assert hits == [], f"{doc.relative_to(ROOT)}: {hits} (use .venv/bin/python)"
        # a command line that starts with tools/X.py: 'Permission denied' for the tools not executable, and
        # the system python3 for those that are (docs/linux.md's tools/linux_guest.py, typed as written)
        direct = re.findall(r"^(?: {4,}|\$ )(tools/\S+\.py)", doc.read_text(), re.M)
        assert direct == [], f"{doc.relative_to(ROOT)}: {direct} (run them with .venv/bin/python)"

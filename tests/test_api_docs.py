"""docs/api.md's examples run, so they cannot rot: its ``pycon`` blocks as doctests (the output shown is the
output checked), its ``python`` blocks executed (in a scratch directory: some write pictures)."""

from __future__ import annotations

import doctest
import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
BLOCK = re.compile(r"^```(pycon|python)\n(.*?)^```", re.S | re.M)


def _blocks(kind: str) -> list[str]:
    return [body for k, body in BLOCK.findall(DOC.read_text(encoding="utf-8")) if k == kind]


def test_the_page_has_examples_of_both_kinds() -> None:
    assert len(_blocks("pycon")) >= 3 and len(_blocks("python")) >= 2


@pytest.mark.parametrize("n", range(len(_blocks("pycon"))))
def test_pycon_example_runs_as_shown(n: int) -> None:
    text = _blocks("pycon")[n]
    test = doctest.DocTestParser().get_doctest(text, {}, f"docs/api.md pycon block {n}", str(DOC), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


@pytest.mark.parametrize("n", range(len(_blocks("python"))))
def test_python_example_runs(n: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(_blocks("python")[n], f"docs/api.md python block {n}", "exec"), {})  # noqa: S102
    finally:
        os.chdir(cwd)
    capsys.readouterr()

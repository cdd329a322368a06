"""The attack playbook (``zuv attack list|run NAME|run all``): a malicious hypervisor against a secure guest.

``playbook.ATTACKS`` lists the attacks; each is written against ``emulator.api`` and returns an
``Outcome`` (what it tried, what the machine did, why the guest stayed safe, the secret's bytes the host
obtained). ``main`` is the command line; it is the only place that prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from emulator.attacks.harness import Attack, Outcome
from emulator.attacks.playbook import ATTACKS

__all__ = ["ATTACKS", "Attack", "Outcome", "find", "run", "report", "main"]


def find(name: str) -> Attack:
    """The attack called ``name``. Raises KeyError with the known names."""
    for a in ATTACKS:
        if a.name == name:
            return a
    raise KeyError(f"no attack {name!r}; known: {', '.join(a.name for a in ATTACKS)}")


def run(name: str, seed: int = 1) -> Outcome:
    """Run one attack by name; ``seed`` seeds the Ultravisor's random numbers."""
    return find(name).run(seed=seed)


def report(o: Outcome, title: str) -> str:
    """The attack's report as text: what it tried, what the machine did, why the guest stayed safe."""
    verdict = "the defence held" if o.held else "THE DEFENCE FAILED"
    lines = [f"== {o.name}: {title}", *(f"   {line}" for line in o.lines),
             f"   result:  {verdict}; secure bytes obtained by the host: {o.secure_bytes}"]
    return "\n".join(lines)


def _print(o: Outcome, title: str) -> None:
    print(report(o, title), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``zuv attack``: exit 0 when every defence held, 1 when one failed, 2 for a usage error."""
    p = argparse.ArgumentParser(prog="zuv attack",
                                description="A malicious hypervisor against a secure guest.")  # fmt: skip
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the attacks")
    r = sub.add_parser("run", help="run an attack (or all)")
    r.add_argument("name", help="attack name, or 'all'")
    r.add_argument("--seed", type=int, default=1, help="seed of the Ultravisor's random numbers (default 1)")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for x in ATTACKS:
            print(f"{x.name:18} {x.title}")
        return 0
    todo = list(ATTACKS) if a.name == "all" else None
    if todo is None:
        try:
            todo = [find(a.name)]
        except KeyError as e:
            print(f"zuv attack: {e.args[0]}", file=sys.stderr)
            return 2
    failed = []
    for x in todo:
        o = x.run(seed=a.seed)
        _print(o, x.title)
        if not o.held:
            failed.append(x.name)
    if len(todo) > 1:
        tail = f"; failed: {', '.join(failed)}" if failed else ""
        print(f"{len(todo) - len(failed)} of {len(todo)} defences held{tail}")
    return 1 if failed else 0

#!/usr/bin/env python3
"""Attack demo: a malicious hypervisor replays, swaps and modifies exported pages of a booted secure guest
(a thin wrapper).

Runs the playbook's ``replay-export``, ``swap-pages`` and ``dma-write`` attacks (``zuv attack run NAME``)
on the bundled demo guest: Convert to Secure Storage refuses each forged page with rc 0x0107 (integrity
check failed), and the genuine latest copy still imports.

Run: .venv/bin/python tools/attack_replay.py [--seed N]   (exit status 0 when every defence held)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.attacks import main as attack_main  # noqa: E402

NAMES = ("replay-export", "swap-pages", "dma-write")


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    return max(attack_main(["run", name, *extra]) for name in NAMES)


if __name__ == "__main__":
    sys.exit(main())

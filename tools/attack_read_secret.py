#!/usr/bin/env python3
"""Attack demo: a malicious hypervisor tries to read a booted secure guest's secret (a thin wrapper).

Runs the playbook's ``read-secret``, ``write-secret`` and ``export-read`` attacks (``zuv attack run NAME``)
on the bundled demo guest: the direct read and write are refused with PGM 0x3D, and the page the host
forces out with Convert from Secure Storage is ciphertext with no trace of the secret.

Run: .venv/bin/python tools/attack_read_secret.py [--seed N]   (exit status 0 when every defence held)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.attacks import main as attack_main  # noqa: E402

NAMES = ("read-secret", "write-secret", "export-read")


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    return max(attack_main(["run", name, *extra]) for name in NAMES)


if __name__ == "__main__":
    sys.exit(main())

"""Build the console tests' guest (probe.S -> probe.elf) with the Debian s390x cross toolchain.

Usage: python tests/console_scripts/build.py  (the ELF is checked in; rebuild after editing probe.S)
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build() -> Path:
    """Assemble and link probe.S; returns the ELF path."""
    out = HERE / "probe.elf"
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "probe.o"
        subprocess.run(["s390x-linux-gnu-as", "-m64", "-o", str(obj), str(HERE / "probe.S")], check=True)
        subprocess.run(
            ["s390x-linux-gnu-ld", "-T", str(HERE / "probe.ld"), "--build-id=none", "-o", str(out), str(obj)],
            check=True,
        )
    return out


if __name__ == "__main__":
    print(build())

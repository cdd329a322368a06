"""Build the console tests' guests (probe.S -> probe.elf, frames.c -> frames.elf) with the s390x toolchain.

Usage: python tests/console_scripts/build.py  (the ELFs are checked in; rebuild after editing a source)
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


def build_frames() -> Path:
    """Compile frames.c with the back chain and DWARF CFI (.eh_frame); returns the ELF path."""
    out = HERE / "frames.elf"
    subprocess.run(
        ["s390x-linux-gnu-gcc", "-march=z13", "-O2", "-mbackchain", "-fasynchronous-unwind-tables",
         "-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie", "-fno-stack-protector",
         "-fno-ident", "-Wl,--build-id=none",
         "-T", str(HERE / "frames.ld"), "-o", str(out), str(HERE / "frames.c")],
        check=True,
    )  # fmt: skip
    return out


if __name__ == "__main__":
    print(build())  # noqa: T201 - the built files' paths, for the one who runs it
    print(build_frames())  # noqa: T201

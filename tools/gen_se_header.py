#!/usr/bin/env python3
"""kvm-unit-tests' ``--gen-se-header`` tool: a thin wrapper over emulator.image.gen_se_header.main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.cli import guarded  # noqa: E402
from emulator.image.gen_se_header import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(guarded(lambda: main(sys.argv[1:]), "gen_se_header"))

#!/usr/bin/env python3
"""The pvimg tool (also `zuv pvimg`): a thin wrapper over emulator.image.pvimg_cli.pvimg_main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.image.pvimg_cli import pvimg_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(pvimg_main(sys.argv[1:]))

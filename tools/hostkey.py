#!/usr/bin/env python3
"""The hostkey tool (also `zuv hostkey`): a thin wrapper over emulator.image.hostkey.hostkey_main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.cli import guarded  # noqa: E402
from emulator.image.hostkey import hostkey_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(guarded(lambda: hostkey_main(sys.argv[1:]), "hostkey"))

#!/usr/bin/env python3
"""The pvimg tool (also `zuv pvimg`): a thin wrapper over emulator.image.pvimg_cli.pvimg_main.

Run as ``genprotimg`` (``tools/genprotimg``, a link to this file), it is ``pvimg create``, as s390-tools'
genprotimg is a link to pvimg that starts its create command (what kvm-unit-tests calls as GENPROTIMG).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.cli import guarded  # noqa: E402
from emulator.image.pvimg_cli import genprotimg_main, pvimg_main  # noqa: E402

if __name__ == "__main__":
    if Path(sys.argv[0]).name == "genprotimg":
        sys.exit(guarded(genprotimg_main, "genprotimg"))
    sys.exit(guarded(pvimg_main, "pvimg"))

"""The cached Linux guest the boot tests use, and the marks that run them only where asked (``ZUV_LINUX``)
and only once the guest has been built."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import linux_guest  # noqa: E402

CACHE = linux_guest.cache_dir()
KERNEL, INITRD = CACHE / "vmlinuz", CACHE / "initrd.cpio"
#: a safety net for a boot that hangs, far above a boot's length on a loaded machine (not an assertion); it
#: also bounds CI's length (the suite beside it takes about 8 minutes)
LIMIT_S = 1000

MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("ZUV_LINUX"),
        reason="boots Linux for minutes: tools/test.sh runs it beside the suite (ZUV_LINUX=1: alone)",
    ),
    pytest.mark.skipif(
        not (KERNEL.exists() and INITRD.exists()),
        reason=f"no Linux guest in {CACHE}: run tools/linux_guest.py --setup",
    ),
]

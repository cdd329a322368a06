#!/usr/bin/env python3
"""Write guests/attest_demo/blob.h: the demo's data blob, encrypted at rest (AES-256-GCM, the demo disk key).

The key is what the demo verifier releases after a successful attestation (``emulator.attest.demo``);
the guest carries only the ciphertext. Reproducible: key and IV derive from fixed seeds.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from emulator.attest.demo import blob_header  # noqa: E402

if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "blob.h"
    out.write_text(blob_header())
    sys.stdout.write(f"wrote {out}\n")

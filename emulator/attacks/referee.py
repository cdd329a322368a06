"""The referee of the attack playbook: what the demo guest's secret is, and whether the host got any of it.

The referee is not the attacker. It knows the secret the bundled demo guest keeps (``guests/secure_demo``:
the words, then a fixed byte pattern), checks that knowledge against the digest the guest prints, and
counts the secret's bytes in whatever the host obtained. For register theft it reads the Ultravisor's
record of the secure CPU (an emulator privilege, like the console's owner view): the truth the host's
copy is compared with. Attacks never call it to obtain data, only to judge.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from emulator.api import Guest

__all__ = ["SECRET_WORDS", "secret_page", "secret_bytes", "digest_matches", "secure_registers"]

SECRET_WORDS: Final = b"zuv secret: the launch code is 0451-ALPHA, keep it in the guest"
#: Chunk size for matching: 8 bytes of the page in a row are a leak (the page has no 8-byte run of zeros
#: outside the words' padding, which is skipped).
CHUNK: Final = 8
_DIGEST: Final = re.compile(rb"secret page at 0x[0-9a-fA-F]+ \(never shared\), digest ([0-9a-f]{16})")


def secret_page() -> bytes:
    """The demo guest's secret page as the guest writes it (``secure_demo.c``, step 1)."""
    page = bytearray(4096)
    page[: len(SECRET_WORDS) + 1] = SECRET_WORDS + b"\0"
    for i in range(256, 4096):
        page[i] = (i * 37 + 11) & 0xFF
    return bytes(page)


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def digest_matches(console: bytes) -> bool:
    """True if the digest the guest printed is that of ``secret_page()`` (the referee knows the secret)."""
    m = _DIGEST.search(console)
    return m is not None and int(m.group(1), 16) == _fnv1a(secret_page())


def _chunks() -> set[bytes]:
    page = secret_page()
    out = set()
    for i in range(0, 4096, CHUNK):
        c = page[i : i + CHUNK]
        if any(c):
            out.add(c)
    return out


_SECRET_CHUNKS: Final = _chunks()


def secret_bytes(data: bytes) -> int:
    """How many bytes of ``data`` are the secret's: bytes covered by an 8-byte run equal to a nonzero
    8-byte chunk of the secret page (at any alignment in ``data``); the words count in full."""
    if len(data) < CHUNK:
        return 0
    covered = bytearray(len(data))
    for i in range(len(data) - CHUNK + 1):
        if data[i : i + CHUNK] in _SECRET_CHUNKS:
            covered[i : i + CHUNK] = b"\1" * CHUNK
    n = sum(covered)
    return max(n, len(SECRET_WORDS)) if SECRET_WORDS[:16] in data else n


def secure_registers(guest: Guest, cpu: int = 0) -> list[int]:
    """The secure CPU's general registers as the Ultravisor records them (the emulator's privilege)."""
    from emulator.api import _machine_of

    uv = _machine_of(guest._owner).uv  # noqa: SLF001 - the referee's privilege (the emulator's)
    scpu = uv.secure_cpu(guest.cpu_handles.get(cpu, 0))
    return list(scpu.gprs) if scpu is not None else []

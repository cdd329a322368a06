"""A bare SE header for guest components a hypervisor places itself: kvm-unit-tests' ``--gen-se-header`` tool.

kvm-unit-tests' pv-host tests (``pv-diags``, ``pv-icptcode``, ``pv-ipl``) act as a hypervisor: they copy a
snippet into guest storage, create a secure configuration, give the Ultravisor the snippet's SE header (Set
Secure Configuration Parameters), unpack every snippet page with tweak ``(0x42, offset)`` and Verify. The
suite builds each header with a tool it is configured with (``configure --gen-se-header=TOOL``;
``s390x/Makefile``)::

    TOOL -k HKD -c FILE,ADDR,TWEAK --psw-addr 0x4000 -o OUT

The snippets are copied into guest storage in plaintext and Unpack only measures them, so the header sets
PCF bit 35 ("components not encrypted") and its page-list digest is over the plaintext pages
(``firmware.se_header``: PLD/ALD/TLD/NEP in component order and ascending page order, the order of the
Unpack calls). A component's page at byte ``o`` has guest address ``ADDR + o`` and tweak ``TWEAK + o``
(the 128-bit TWEAK is ``tweak[0] || tweak[1]`` of the first page: kvm-unit-tests gives
``0x00000000000000420000000000000000``, so page ``i`` is ``(0x42, i * 4096)``). The file is padded with zeros
to whole pages, as Unpack works on pages.

Host-key documents are read unverified unless ``--cert`` is given (the suite's invocation names no
certificates, as genprotimg's ``--no-verify``); with ``--cert``/``--crl``/``--root-ca`` they are verified
against the PKI like ``pvimg create``. Errors are one line and exit status 2 (1 for a failed verification).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from firmware.crypto import (
    XTS_KEY_SIZE,
    CryptoError,
    DeterministicRng,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    SystemRng,
)
from firmware.se_digests import PAGE_SIZE, ImageDigests
from firmware.se_header import (
    PCF_DEFAULT,
    PCF_NO_COMP_ENCRYPTION,
    PSW_MASK_DEFAULT,
    SeHeaderBuildError,
    build_header,
)

from . import pki
from .pvimg import ImageError, host_keys_from_hkds

__all__ = ["Component", "parse_component", "component_digests", "gen_se_header", "main", "DEFAULT_PCF"]

#: PCKMO functions as pvimg's default, and bit 35: the components are measured as they are, not decrypted.
DEFAULT_PCF = PCF_DEFAULT | PCF_NO_COMP_ENCRYPTION
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Component:
    """One component: its bytes (padded to whole pages), guest address of its first page, 128-bit tweak."""

    data: bytes
    addr: int
    tweak: int

    @property
    def pages(self) -> int:
        """Number of 4 KiB pages."""
        return len(self.data) // PAGE_SIZE


def _number(text: str, what: str, bits: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ImageError(f"{what} {text!r} is not a number (decimal or 0x...)") from None
    if not 0 <= value < 1 << bits:
        raise ImageError(f"{what} {text!r} does not fit in {bits} bits")
    return value


def parse_component(spec: str) -> Component:
    """``FILE,ADDR,TWEAK`` -> the component (file read and padded to pages); ``ImageError`` when bad."""
    parts = spec.rsplit(",", 2)
    if len(parts) != 3 or not parts[0]:
        raise ImageError(f"component {spec!r} is not FILE,ADDR,TWEAK")
    path, addr_text, tweak_text = parts
    addr = _number(addr_text, "component address", 64)
    if addr % PAGE_SIZE:
        raise ImageError(f"component address {addr:#x} is not 4 KiB aligned")
    tweak = _number(tweak_text, "component tweak", 128)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read component {path}: {e.strerror}") from None
    if not data:
        raise ImageError(f"component {path} is empty")
    data += bytes(-len(data) % PAGE_SIZE)
    if addr + len(data) > 1 << 64:
        raise ImageError(f"component {path} at {addr:#x} runs beyond the 64-bit address space")
    return Component(data, addr, tweak)


def component_digests(components: Sequence[Component]) -> ImageDigests:
    """PLD/ALD/TLD/NEP over the plaintext pages, in the order Unpack is given them.

    Raises:
        ImageError: two components share a page, or a page's tweak overflows 128 bits.
    """
    seen: set[int] = set()
    d = ImageDigests()
    for c in components:
        for i in range(c.pages):
            off = i * PAGE_SIZE
            gaddr = c.addr + off
            if gaddr in seen:
                raise ImageError(f"components overlap at guest address {gaddr:#x}")
            seen.add(gaddr)
            tweak = c.tweak + off
            if tweak >> 128:
                raise ImageError(f"the tweak of the page at {gaddr:#x} overflows 128 bits")
            d.add_page(gaddr, tweak.to_bytes(16, "big"), c.data[off : off + PAGE_SIZE])
    return d


def gen_se_header(
    host_keys: Sequence[EllipticCurvePublicKey],
    components: Sequence[Component],
    *,
    psw_addr: int,
    psw_mask: int = PSW_MASK_DEFAULT,
    pcf: int = DEFAULT_PCF,
    cck: Secret | None = None,
    rng: Rng | None = None,
) -> bytes:
    """The sealed SE header for ``components`` as the host will copy and unpack them.

    Args:
        host_keys: the public host keys of the machines that may run the guest (one key slot each).
        components: the guest's components in Unpack order.
        psw_addr, psw_mask: the PSW the Ultravisor loads at the first Set CPU State OPR_LOAD.
        pcf: plaintext control flags (default: PCKMO functions, components not encrypted).
        cck: customer communication key (random when None).
        rng: randomness for the keys and IV (the operating system's when None).

    Raises:
        ImageError: no component, encrypted components requested (PCF bit 35 clear: this tool never
            encrypts), or the header cannot be built (the builder's reason).
    """
    if not components:
        raise ImageError("give at least one component (-c FILE,ADDR,TWEAK)")
    if not pcf & PCF_NO_COMP_ENCRYPTION:
        raise ImageError("the components are left in plaintext: the PCF must have bit 35 (0x10000000) set")
    rng = rng or SystemRng()
    digests = component_digests(components)
    try:
        return build_header(
            host_keys=host_keys, psw_addr=psw_addr & _MASK64, psw_mask=psw_mask, digests=digests,
            xts_key=Secret(rng.random_bytes(XTS_KEY_SIZE), "XTS key"), rng=rng, pcf=pcf, cck=cck,
        )  # fmt: skip
    except SeHeaderBuildError as e:
        raise ImageError(str(e)) from None


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: ANN201 - one line, no usage block
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gen-se-header", description="Create a bare SE header for components that a hypervisor "
                "copies into guest storage in plaintext (kvm-unit-tests' --gen-se-header tool).")
    p.add_argument("-k", "--host-key-document", action="append", required=True, dest="hkds",
                   help="host-key document of a target machine (repeat for several machines)")
    p.add_argument("-c", "--component", action="append", required=True, dest="components",
                   metavar="FILE,ADDR,TWEAK",
                   help="a component: file, guest address, 128-bit tweak of its first page (repeat, "
                   "in Unpack order)")
    p.add_argument("--psw-addr", required=True, help="address of the PSW loaded at the first start")
    p.add_argument("--psw-mask", default=hex(PSW_MASK_DEFAULT),
                   help="mask of that PSW (default: 64-bit mode)")
    p.add_argument("-o", "--output", required=True, help="the header file to write")
    p.add_argument("--x-pcf", default=hex(DEFAULT_PCF),
                   help="plaintext control flags (bit 35 must stay set)")
    p.add_argument("--cck", "--comm-key", dest="cck", help="32-byte customer communication key file")
    p.add_argument("-C", "--cert", action="append", default=[],
                   help="verify the host-key documents with this IBM Z signing-key or intermediate "
                   "certificate")
    p.add_argument("--crl", action="append", default=[], help="certificate revocation list (with --cert)")
    p.add_argument("--root-ca", help="trusted root CA (with --cert; default: zuv's emulated root CA)")
    p.add_argument("--seed", help="zuv: derive every random value from this seed (reproducible headers)")
    return p


def _host_keys(a: argparse.Namespace) -> list[EllipticCurvePublicKey]:
    if a.cert:
        a.no_verify, a.time = False, None
        return host_keys_from_hkds(a, prog="gen-se-header")
    keys = []
    for path in a.hkds:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read host-key document {path}: {e.strerror}") from None
        doc = pki.load_certificate(data, f"host-key document {path}")
        keys.append(pki.describe_unverified(doc).public_key)
    return keys


def _run(a: argparse.Namespace) -> int:
    cck = None
    if a.cck:
        try:
            raw = Path(a.cck).read_bytes()
        except OSError as e:
            raise ImageError(f"cannot read communication key {a.cck}: {e.strerror}") from None
        if len(raw) != 32:
            raise ImageError(f"the communication key must be 32 bytes, {a.cck} has {len(raw)}")
        cck = Secret(raw, "CCK")
    header = gen_se_header(
        _host_keys(a),
        [parse_component(c) for c in a.components],
        psw_addr=_number(a.psw_addr, "PSW address", 64),
        psw_mask=_number(a.psw_mask, "PSW mask", 64),
        pcf=_number(a.x_pcf, "PCF", 64),
        cck=cck,
        rng=DeterministicRng(a.seed) if a.seed is not None else SystemRng(),
    )
    try:
        Path(a.output).write_bytes(header)
    except OSError as e:
        raise ImageError(f"cannot write {a.output}: {e.strerror}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 written, 1 verification failed, 2 bad input)."""
    prog = "gen-se-header"
    try:
        return _run(_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (_UsageError, ImageError, CryptoError, pki.PkiFormatError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except pki.PkiError as e:
        print(f"{prog}: verification failed: {e}", file=sys.stderr)
        return 1

#!/usr/bin/env python3
"""Draw the pictures of the docs and the labs from real boots, or check that the committed ones still agree.

Each picture comes from the bundled guests on the emulated machine, drawn by ``emulator/console/pictures.py``:

* ``docs/img/demo-layout.svg``: the secure demo's guest storage, its ELF sections and objects (read from
  ``guests/images/secure_demo.elf``) over the state of each page once it announced its secret page, and
  where the secure IPL unpacked the image's components (the Unpack calls' guest addresses and tweaks);
* ``docs/img/demo-boot-uvcalls.svg``: the demo's boot in the console up to Set CPU State (stopped before it,
  then one ``step`` issues it);
* ``docs/img/demo-pages.svg``: the demo's page map after the hypervisor's trapped read and export;
* ``docs/img/attest-uvcalls.svg``: the UV calls of one attestation (``guests/attest_demo`` and its relying
  party), boot to teardown;
* ``emulator/labs/texts/lab3/boot-pages.svg``: the demo's page map right after its boot;
* ``emulator/labs/texts/lab4/refused-boot.svg``: the demo booted on another machine (no key slot: refused).

``--check`` draws them again and compares the labels (the SVG's text) with the committed files: exit 1 and
the differences when a picture no longer shows what the machine does (``tests/test_pictures.py`` runs it).

    .venv/bin/python tools/draw_pictures.py            # write them all
    .venv/bin/python tools/draw_pictures.py --check    # compare
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elftools.elf.elffile import ELFFile  # noqa: E402
from elftools.elf.sections import SymbolTableSection  # noqa: E402

from emulator.console.pictures import Region, layout_figure, page_map_figure, save  # noqa: E402

DEMO_ELF = ROOT / "guests/images/secure_demo.elf"
_SVG = "{http://www.w3.org/2000/svg}"
_LAYOUT_END = 0x58000  # the pages drawn: every page the demo uses, and some it never touched


def _demo_layout(path: str) -> None:
    """The secure demo's guest storage: ELF sections and page-aligned objects over the pages' states."""
    from emulator.api import Host

    regions = [Region(0, 0x2000, "lowcore", "prefix area of CPU 0")]
    with DEMO_ELF.open("rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if sec["sh_flags"] & 0x2 and sec["sh_size"]:  # SHF_ALLOC
                start = sec["sh_addr"]
                regions.append(Region(start, start + sec["sh_size"], sec.name, "ELF section"))
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        objects = sorted((s["st_value"], s["st_size"], s.name) for s in symtab.iter_symbols()
                         if s["st_info"]["type"] == "STT_OBJECT" and s["st_size"] >= 0x1000)  # fmt: skip
    with Host(seed=1) as host:
        guest = host.boot()
        secret = guest.secret_page
        shared = set(guest.pages("shared"))
        for addr, size, name in objects:
            what = "the secret (never shared)" if addr == secret else "shared" if addr in shared else ""
            regions.append(Region(addr, addr + size, name, what))
        components: dict[str, list[int]] = {}  # tweak prefix -> guest addresses of its Unpack calls
        for e in host.uv_log():
            if e.name == "Unpack":
                f = dict(e.fields)
                components.setdefault(f["tweak"].split()[0], []).append(int(f["gaddr"], 16))
        groups = list(components.values())
        for i, pages in enumerate(groups):  # pvimg's order: kernel, ramdisk, command line, stage3b (last)
            what = "kernel" if i == 0 else "stage3b" if i == len(groups) - 1 else "ramdisk or command line"
            regions.append(Region(min(pages), max(pages) + 0x1000, f"{what} as unpacked",
                                  f"secure IPL: Unpack x{len(pages)}"))  # fmt: skip
        states = [guest.page_state(a) for a in range(0, _LAYOUT_END, 0x1000)]
        note = (f"{guest.memory_size >> 20} MiB of guest storage in all; the pages above are not secure yet "
                f"(the first touch of one makes the host import it)")  # fmt: skip
    regions.sort(key=lambda r: (r.start, -r.end))
    fig = layout_figure(regions, states, "secure_demo: guest storage when it announces its secret page", note)
    save(fig, path)


def _console(path: str, lines: list[str], machine: str = "zuv-demo") -> None:
    from emulator.console.cli import open_session
    from emulator.console.commands import execute
    from emulator.hypervisor.boot import DEMO_IMAGE

    s = open_session(str(DEMO_IMAGE), deterministic=True, machine=machine)
    for line in lines:
        out = execute(s, line.format(path=path))
        if not out.ok:
            raise SystemExit(f"draw_pictures: {line}: {out.plain()}")


def _attestation(path: str) -> None:
    from emulator.api import RelyingParty, draw_uv_calls

    with RelyingParty() as rp:
        outcome = rp.boot()
    if not outcome.unlocked:
        raise SystemExit("draw_pictures: the attestation demo did not get its key")
    draw_uv_calls(outcome.uv_log, path, title="attest_demo: one attestation, boot to teardown")


def _refused(path: str) -> None:
    from emulator.api import Host

    with Host("zuv-other", seed=1) as host:
        guest = host.boot(until=None)
        if guest.secure:
            raise SystemExit("draw_pictures: the demo booted on zuv-other")
        host.draw_uv_log(path)


def _boot_pages(path: str) -> None:
    from emulator.api import Host

    with Host(seed=1) as host:
        guest = host.boot()
        save(page_map_figure(guest.page_map(), "page map of secure_demo.se after its boot"), path)


PICTURES: dict[str, Callable[[str], None]] = {
    "docs/img/demo-layout.svg": _demo_layout,
    "docs/img/demo-boot-uvcalls.svg": lambda p: _console(p, ["break uvc set_cpu_state", "continue", "step",
                                                              "uvlog --svg {path}"]),  # fmt: skip
    "docs/img/demo-pages.svg": lambda p: _console(p, ["break secure", "continue", "pages --svg {path}"]),
    "docs/img/attest-uvcalls.svg": _attestation,
    "emulator/labs/texts/lab3/boot-pages.svg": _boot_pages,
    "emulator/labs/texts/lab4/refused-boot.svg": _refused,
}


def labels(path: str | Path) -> list[str]:
    """The text of an SVG file, one entry per <text> element, in document order."""
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()) for t in root.iter(f"{_SVG}text")]


def main(argv: list[str] | None = None) -> int:
    """Write the pictures (or compare them with ``--check``); exit 0, or 1 when a picture differs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the committed pictures, write nothing")
    p.add_argument("names", nargs="*", help="only these pictures (paths as listed above)")
    a = p.parse_args(argv)
    unknown = [n for n in a.names if n not in PICTURES]
    if unknown:
        p.error(f"unknown picture {unknown[0]} (one of: {', '.join(PICTURES)})")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.names or PICTURES:
            out = os.path.join(tmp, os.path.basename(name)) if a.check else str(ROOT / name)
            PICTURES[name](out)
            if not a.check:
                print(f"wrote {name}")
                continue
            old, new = labels(ROOT / name) if (ROOT / name).exists() else [], labels(out)
            if old != new:
                bad += 1
                gone, added = [t for t in old if t not in new], [t for t in new if t not in old]
                print(f"{name}: differs from the machine: run tools/draw_pictures.py {name}\n"
                      f"  only in the committed file: {gone[:5]}\n"
                      f"  only in a new drawing: {added[:5]}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

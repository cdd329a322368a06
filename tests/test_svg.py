"""The console's pictures: ``pages --svg`` and ``uvlog --svg`` on the secure demo are well-formed SVG that
show the page states and the UV calls present, and bad arguments are clear errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.providers import PageInfo
from emulator.console.svg import page_map_svg, uv_sequence_svg
from emulator.hypervisor.boot import DEMO_IMAGE

NS = "{http://www.w3.org/2000/svg}"


def _classes(root: ET.Element, prefix: str) -> set[str]:
    out: set[str] = set()
    for el in root.iter():
        cls = el.get("class", "")
        if cls.startswith(prefix):
            out.update(cls.split()[1:])
    return out


def test_page_map_and_uv_calls_of_the_demo_after_the_hosts_export(tmp_path):
    s = open_session(str(DEMO_IMAGE), deterministic=True)
    assert execute(s, "break secure").ok and execute(s, "continue").ok  # the demo's host read, then its export
    out = execute(s, f"pages --svg {tmp_path / 'p.svg'}")
    assert out.ok and "wrote the page map" in out.plain()
    root = ET.parse(tmp_path / "p.svg").getroot()
    assert root.tag == f"{NS}svg"
    assert _classes(root, "page") == {"secure", "shared", "donated", "exported"}
    text = " ".join(t.text or "" for t in root.iter(f"{NS}text"))
    assert "exported: 1 page" in text and "shared: 4 pages" in text and "host: " in text and "guest 0x15000" in text
    out = execute(s, f"uvlog --svg {tmp_path / 'u.svg'}")
    assert out.ok
    root = ET.parse(tmp_path / "u.svg").getroot()
    text = " ".join(t.text or "" for t in root.iter(f"{NS}text"))
    for name in ("Create Secure Configuration", "Unpack x", "Verify", "Set Shared Access", "Convert from Secure"):
        assert name in text
    assert _classes(root, "uvc") == {"host", "guest"}
    assert not execute(s, "pages --svg").ok and not execute(s, "uvlog --svg").ok
    bad = execute(s, f"pages --svg {tmp_path / 'missing' / 'p.svg'}")
    assert not bad.ok and "cannot write" in bad.plain()


def test_empty_inputs_and_text_is_escaped():
    root = ET.fromstring(page_map_svg([], "a <b> & c"))
    assert root.find(f"{NS}title").text == "a <b> & c"
    assert "every frame is non-secure" in page_map_svg([])
    ET.fromstring(uv_sequence_svg([]))
    one = page_map_svg([PageInfo(5, "secure", 2, False, 0x1000, "VM <x>")])
    assert _classes(ET.fromstring(one), "page") == {"secure"}

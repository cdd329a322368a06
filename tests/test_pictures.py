"""The pictures (matplotlib, SVG and PNG): the console's ``pages``/``uvlog --svg/--png`` and the API's
``draw_pages``/``draw_uv_log`` on the secure demo write files that parse (SVG as XML with the expected labels
and shapes, PNG by its header and size), and bad arguments are clear errors."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.api import EmulatorError, Host
from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.pictures import Region, layout_figure, page_map_figure, save, uv_sequence_figure
from emulator.console.providers import PageInfo, UvCall
from emulator.hypervisor.boot import DEMO_IMAGE

NS = "{http://www.w3.org/2000/svg}"


def svg(path: Path) -> tuple[str, set[str]]:
    """All text of an SVG file, and the id prefixes of its shapes ("page-secure", "uvc-host", ...)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{NS}svg"
    text = " ".join("".join(t.itertext()) for t in root.iter(f"{NS}text"))
    ids = {"-".join(p for p in el.get("id", "").split("-") if not p.isdigit()) for el in root.iter()}
    return text, ids


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_console_pictures_of_the_demo_after_the_hosts_export(tmp_path):
    s = open_session(str(DEMO_IMAGE), deterministic=True)
    # the demo's host read, then its export
    assert execute(s, "break secure").ok and execute(s, "continue").ok
    out = execute(s, f"pages --svg {tmp_path / 'p.svg'}")
    assert out.ok and "wrote the page map" in out.plain() and "of SVG" in out.plain()
    text, ids = svg(tmp_path / "p.svg")
    assert {"page-secure", "page-shared", "page-donated", "page-exported"} <= ids
    assert "exported: 1 page" in text and "shared: 4 pages" in text and "host: " in text
    assert "guest 0x15000" in text and "page map of secure_demo.se" in text
    out = execute(s, f"pages --png {tmp_path / 'p.png'}")
    assert out.ok and "of PNG" in out.plain()
    w, h = png_size(tmp_path / "p.png")
    assert w == 940 and h > 300
    assert execute(s, f"uvlog --svg {tmp_path / 'u.svg'}").ok
    text, ids = svg(tmp_path / "u.svg")
    for name in ("Create Secure Configuration", "Unpack x56", "Verify", "Set Shared Access x4",
                 "Convert from Secure", "host (hypervisor)", "Ultravisor", "secure guest", "cc 0 rc 0x0001"):
        assert name in text
    assert {"uvc-host", "uvc-guest"} <= ids
    assert execute(s, f"uvlog 3 --png {tmp_path / 'u.png'}").ok
    w, h3 = png_size(tmp_path / "u.png")
    assert w == 940 and 200 < h3 < 400  # three steps drawn


def test_console_picture_errors(tmp_path):
    s = open_session(str(DEMO_IMAGE), deterministic=True)
    for line in ("pages --svg", "uvlog --png", f"pages --svg {tmp_path}/a.svg --png {tmp_path}/b.png",
                 f"pages --svg {tmp_path / 'missing' / 'p.svg'}", "pages extra --svg x.svg"):
        out = execute(s, line)
        assert not out.ok, line
    assert "cannot write" in execute(s, f"pages --svg {tmp_path / 'missing' / 'p.svg'}").plain()
    both = execute(s, f"uvlog --svg {tmp_path}/a.svg --png {tmp_path}/b.png")
    assert "one picture at a time" in both.plain()


def test_api_draws_the_guests_page_map_and_the_uv_log(tmp_path):
    with Host(seed=1) as host:
        g = host.boot()
        g.export(g.secret_page)
        pages = g.page_map()
        states = {p.state for p in pages}
        assert states == {"secure", "shared", "exported", "donated"}
        assert all("Ultravisor base storage" not in p.detail for p in pages)  # the guest's own, not the UV's
        assert any(p.detail == "Ultravisor base storage" for p in host.page_map())
        assert [p.guest_abs for p in pages if p.state == "exported"] == [g.secret_page]
        assert g.draw_pages(tmp_path / "g.png") == (tmp_path / "g.png").stat().st_size
        assert png_size(tmp_path / "g.png")[0] == 940
        g.draw_pages(tmp_path / "g.out", format="svg")
        text, ids = svg(tmp_path / "g.out")
        assert "exported: 1 page" in text and "page-exported" in ids
        host.draw_uv_log(tmp_path / "u.svg")
        text, ids = svg(tmp_path / "u.svg")
        assert "Ultravisor calls on zuv-demo" in text and "Unpack x56" in text
        assert "Convert from Secure" in text
        since = len(host.uv_log()) - 1
        host.draw_uv_log(tmp_path / "last.svg", since=since)
        text, _ = svg(tmp_path / "last.svg")
        assert "1 UV call(s)" in text and "Unpack" not in text
        for bad, fmt in (("x.gif", None), ("x.svg", "pdf")):
            with pytest.raises(EmulatorError, match="svg, png"):
                g.draw_pages(tmp_path / bad, format=fmt)
        with pytest.raises(EmulatorError, match="cannot write"):
            host.draw_uv_log(tmp_path / "no" / "u.png")


def test_empty_inputs_text_escaped_and_the_same_picture_twice(tmp_path):
    save(page_map_figure([], "a <b> & c"), str(tmp_path / "e.svg"))
    text, _ = svg(tmp_path / "e.svg")
    assert "a <b> & c" in text and "every frame is non-secure" in text
    save(uv_sequence_figure([]), str(tmp_path / "n.svg"))
    assert "no Ultravisor calls yet" in svg(tmp_path / "n.svg")[0]
    calls = [UvCall(i + 1, "host", 0x0301, 0, 1, 0) for i in range(3)]
    calls.append(UvCall(4, "guest", 0x1000, 0, 0x0108, 0))
    for name in ("a.svg", "b.svg"):
        save(uv_sequence_figure(calls), str(tmp_path / name))
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()  # no date, no random ids
    text, _ = svg(tmp_path / "a.svg")
    assert "0x0301 Unpack x3" in text and "rc 0x0108" in text and "#1-3" in text
    one = [PageInfo(5, "secure", 2, False, 0x1000, "VM <x>")]
    save(page_map_figure(one), str(tmp_path / "one.svg"))
    assert svg(tmp_path / "one.svg")[1] >= {"page-secure"}


def test_layout_figure_labels_regions_over_page_states(tmp_path):
    states = ["secure"] * 2 + ["host"] * 14 + ["secure"] * 5 + ["shared"] * 4
    regions = [Region(0, 0x2000, "lowcore"), Region(0x10000, 0x10800, ".head"),
               Region(0x15000, 0x16000, "secret")]
    save(layout_figure(regions, states, "layout", note="128 MiB in all"), str(tmp_path / "l.svg"))
    text, ids = svg(tmp_path / "l.svg")
    assert "secret  0x15000-0x15fff" in text and "shared: 4 pages" in text and "128 MiB in all" in text
    assert {"region", "page-secure", "page-shared", "page-host"} <= ids
    save(layout_figure(regions, states, "layout"), str(tmp_path / "l.png"))
    assert png_size(tmp_path / "l.png")[0] == 940


def test_attestation_uv_calls_through_the_api(tmp_path):
    from emulator.api import RelyingParty, draw_uv_calls

    with RelyingParty() as rp:
        outcome = rp.boot()
    assert outcome.unlocked
    guest = [e.code for e in outcome.uv_log if e.caller == "guest"]
    assert 0x1F20 in guest and guest.index(0x1031) > guest.index(0x1F20)  # Add Secret after the evidence
    assert all(e.fields == () for e in outcome.uv_log if e.caller == "guest")
    draw_uv_calls(outcome.uv_log, tmp_path / "a.svg", title="one attestation")
    text, ids = svg(tmp_path / "a.svg")
    assert "Retrieve Attestation Measurement" in text and "0x1031 Add Secret" in text and "uvc-guest" in ids


def test_committed_pictures_show_what_the_machine_does():
    """docs/img and the labs' pictures, drawn again from real boots, have the same labels."""
    import tools.draw_pictures as D

    assert D.main(["--check"]) == 0
    root = Path(D.ROOT)
    for md in [*root.glob("docs/*.md"), *root.glob("emulator/labs/texts/*/README.md"), root / "README.md"]:
        for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text()):
            assert (md.parent / link).is_file(), (md, link)
    used = {p.name for md in root.glob("docs/*.md") for p in [Path(x) for x in
            re.findall(r"\]\((img/[^)]+)\)", md.read_text())]}  # fmt: skip
    assert used == {p.name for p in (root / "docs/img").iterdir()}  # every picture is shown somewhere

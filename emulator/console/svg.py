"""SVG pictures of what the Ultravisor did: the page-state map of host memory and the sequence of UV calls.

Hand-written SVG text (no drawing library): ``page_map_svg`` draws each cluster of non-host frames as a strip of
4 KiB frames coloured by state (secure, shared, donated, exported, and the host's own frames between them),
with a legend that counts the pages of each state; ``uv_sequence_svg`` draws the UV calls as a sequence
diagram between the host (hypervisor), the Ultravisor and the secure guest, runs of the same call merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from emulator.console.providers import PageInfo, UvCall
from emulator.console.tables import uv_command

__all__ = ["STATE_COLOURS", "page_map_svg", "uv_sequence_svg"]

#: Fill colour of each page state; "host" is a frame the host owns inside a drawn cluster.
STATE_COLOURS = {
    "secure": "#c0392b",
    "shared": "#f39c12",
    "donated": "#8e44ad",
    "exported": "#2980b9",
    "non-secure": "#bdc3c7",
    "host": "#bdc3c7",
}
_LABEL = {"non-secure": "host", "host": "host"}
_FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
_GAP = 256  # frames: a larger run of host frames between listed ones starts a new strip
_STRIP_W = 900
_MAX_TABLE = 40


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start", weight: str = "normal",
          fill: str = "#222") -> str:  # fmt: skip
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}" {_FONT}>{escape(s)}</text>')


def _doc(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">\n<title>{escape(title)}</title>\n'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def _runs(pages: Sequence[PageInfo]) -> list[tuple[PageInfo, int]]:
    """Consecutive frames in the same state and owner, as (first page, count)."""
    runs: list[tuple[PageInfo, int]] = []
    for p in sorted(pages, key=lambda p: p.frame):
        if runs:
            first, n = runs[-1]
            if first.frame + n == p.frame and (first.state, first.owner, first.detail) == (p.state, p.owner, p.detail):
                runs[-1] = (first, n + 1)
                continue
        runs.append((p, 1))
    return runs


def _clusters(runs: list[tuple[PageInfo, int]]) -> list[list[tuple[PageInfo, int]]]:
    out: list[list[tuple[PageInfo, int]]] = []
    for r in runs:
        if out:
            last, n = out[-1][-1]
            if r[0].frame - (last.frame + n) <= _GAP:
                out[-1].append(r)
                continue
        out.append([r])
    return out


def page_map_svg(pages: Sequence[PageInfo], title: str = "page map") -> str:
    """The page-state map of ``pages`` (the non-host frames a page-map provider lists) as an SVG document.

    Each cluster of listed frames is one strip (host frames between them drawn grey), labelled with its host
    address range; below the strips a table lists every run (up to 40) with its guest addresses and detail."""
    runs = _runs(pages)
    clusters = _clusters(runs)
    counts: dict[str, int] = {}
    for p, n in runs:
        counts[p.state] = counts.get(p.state, 0) + n
    host_gaps = 0
    for c in clusters:
        for (a, na), (b, _nb) in zip(c, c[1:]):
            host_gaps += b.frame - (a.frame + na)
    if host_gaps:
        counts["host"] = counts.get("host", 0) + host_gaps
    body = [_text(20, 30, title, 18, weight="bold"),
            _text(20, 50, f"{sum(n for _, n in runs)} frames of 4 KiB not owned by the host alone, "
                          f"in {len(clusters)} region(s)", 12, fill="#555")]  # fmt: skip
    x = 20
    for state in ("secure", "shared", "exported", "donated", "non-secure", "host"):
        if state not in counts:
            continue
        label = f"{_LABEL.get(state, state)}: {counts[state]} page{'s' if counts[state] != 1 else ''}"
        body.append(f'<rect x="{x}" y="62" width="14" height="14" fill="{STATE_COLOURS[state]}" stroke="#333" '
                    f'stroke-width="0.5"><title>{escape(state)}</title></rect>')
        body.append(_text(x + 20, 74, label, 12))
        x += 40 + 7 * len(label)
    y = 100
    for c in clusters:
        first = c[0][0].frame
        last = c[-1][0].frame + c[-1][1]
        span = last - first
        scale = _STRIP_W / span
        body.append(_text(20, y + 12, f"host {first << 12:#012x} - {(last << 12) - 1:#012x}  ({span} frames)", 12,
                          weight="bold"))  # fmt: skip
        y += 20
        body.append(f'<rect x="20" y="{y}" width="{_STRIP_W}" height="36" fill="{STATE_COLOURS["host"]}" '
                    f'stroke="#333" stroke-width="0.5"/>')
        for p, n in c:
            rx = 20 + (p.frame - first) * scale
            w = max(n * scale, 1.5)
            tip = f"{p.state}: {n} page(s) at host {p.host_abs:#x}" + (
                f", guest {p.guest_abs:#x}" if p.guest_abs is not None else "") + (f"; {p.detail}" if p.detail else "")
            body.append(f'<rect class="page {escape(p.state)}" x="{rx:.2f}" y="{y}" width="{w:.2f}" height="36" '
                        f'fill="{STATE_COLOURS.get(p.state, "#000")}" stroke="white" stroke-width="0.3">'
                        f'<title>{escape(tip)}</title></rect>')
            if w >= 48:
                body.append(_text(rx + w / 2, y + 22, f"{p.state} {n}", 11, "middle", fill="white"))
        if scale >= 6:  # frame ticks when a frame is wide enough to see
            for i in range(span + 1):
                body.append(f'<line x1="{20 + i * scale:.2f}" y1="{y + 36}" x2="{20 + i * scale:.2f}" '
                            f'y2="{y + 40}" stroke="#777" stroke-width="0.5"/>')
        y += 56
    y += 10
    body.append(_text(20, y, "runs (host address, pages, state, guest address, detail)", 13, weight="bold"))
    y += 18
    for p, n in runs[:_MAX_TABLE]:
        body.append(f'<rect x="20" y="{y - 10}" width="12" height="12" fill="{STATE_COLOURS.get(p.state, "#000")}"/>')
        guest = "" if p.guest_abs is None else f"guest {p.guest_abs:#x}"
        body.append(_text(40, y, f"{p.host_abs:#012x}", 11))
        body.append(_text(150, y, f"{n:5d}", 11, "end"))
        body.append(_text(160, y, p.state, 11))
        body.append(_text(240, y, guest, 11))
        body.append(_text(360, y, p.detail[:90], 11, fill="#555"))
        y += 16
    if len(runs) > _MAX_TABLE:
        body.append(_text(40, y, f"... and {len(runs) - _MAX_TABLE} more runs", 11, fill="#555"))
        y += 16
    if not runs:
        body.append(_text(20, 110, "every frame is non-secure host storage", 14))
        y = 130
    return _doc(_STRIP_W + 40, y + 10, body, title)


def _lane(caller: str) -> str:
    return "guest" if caller.startswith("guest") else "host"


def uv_sequence_svg(calls: Sequence[UvCall], title: str = "Ultravisor calls") -> str:
    """The UV calls as a sequence diagram: host | Ultravisor | secure guest, one arrow per call (consecutive
    calls of the same command, caller and rc merged into one "xN" arrow), the answer's rc coming back."""
    rows: list[tuple[UvCall, int, UvCall]] = []  # (first call, count, last call)
    for c in calls:
        if rows:
            first, n, _last = rows[-1]
            if (first.cmd, _lane(first.caller), first.rc, first.rrc) == (c.cmd, _lane(c.caller), c.rc, c.rrc):
                rows[-1] = (first, n + 1, c)
                continue
        rows.append((c, 1, c))
    lanes = {"host": 150, "uv": 470, "guest": 790}
    top = 90
    row_h = 48
    height = top + 30 + row_h * max(len(rows), 1) + 20
    body = [_text(20, 30, title, 18, weight="bold"),
            _text(20, 50, f"{len(calls)} UV call(s) in {len(rows)} step(s); runs of the same call are merged", 12,
                  fill="#555")]  # fmt: skip
    for name, x in (("host (hypervisor)", lanes["host"]), ("Ultravisor", lanes["uv"]), ("secure guest", lanes["guest"])):
        body.append(f'<rect x="{x - 80}" y="{top - 28}" width="160" height="24" rx="4" fill="#ecf0f1" stroke="#333"/>')
        body.append(_text(x, top - 11, name, 13, "middle", "bold"))
        body.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{height - 10}" stroke="#999" stroke-dasharray="4 3"/>')
    body.append('<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
                '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>')
    y = top + 20
    for first, n, last in rows:
        lane = lanes[_lane(first.caller)]
        cmd = uv_command(first.cmd)
        name = cmd.name if cmd else "unknown command"
        label = f"{first.cmd:#06x} {name}" + (f" x{n}" if n > 1 else "")
        seq = f"#{first.seq}" + (f"-{last.seq}" if n > 1 else "")
        ok = first.rc == 0x0001 or (first.cmd == 0x0001 and first.rc == 0x0100)
        colour = "#27ae60" if ok else "#c0392b"
        body.append(f'<g class="uvc {_lane(first.caller)}">')
        body.append(f'<line x1="{lane}" y1="{y}" x2="{lanes["uv"]}" y2="{y}" stroke="#333" stroke-width="1.2" '
                    f'marker-end="url(#arrow)"/>')
        body.append(_text((lane + lanes["uv"]) / 2, y - 4, label, 11, "middle"))
        body.append(f'<line x1="{lanes["uv"]}" y1="{y + 14}" x2="{lane}" y2="{y + 14}" stroke="{colour}" '
                    f'stroke-width="1" stroke-dasharray="5 2" marker-end="url(#arrow)"/>')
        body.append(_text((lane + lanes["uv"]) / 2, y + 26, f"cc {first.cc} rc {first.rc:#06x} rrc {first.rrc:#06x}",
                          10, "middle", fill=colour))  # fmt: skip
        body.append(_text(10, y + 4, seq, 10, fill="#777"))
        body.append("</g>")
        y += row_h
    if not rows:
        body.append(_text(lanes["uv"], top + 30, "no Ultravisor calls yet", 13, "middle"))
    return _doc(900, height, body, title)

"""Command output as styled lines: plain text for scripts and transcripts, colours for the terminal.

A handler returns an ``Output``: lines of ``(style, text)`` fragments whose style names are classes of
``STYLE``. ``Output.plain()`` drops the styles (transcripts compare it); ``Output.formatted()`` is
prompt_toolkit formatted text for the interactive console.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Final

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

__all__ = ["Output", "STYLE", "hexdump", "reflow", "columns"]

Fragment = tuple[str, str]

STYLE: Final = Style.from_dict(
    {
        "addr": "#5fafff",
        "sym": "#d7af5f",
        "mnemonic": "#87d787 bold",
        "operands": "",
        "reg": "#afafaf",
        "value": "",
        "changed": "#ff875f bold",
        "error": "#ff5f5f bold",
        "warn": "#ffaf00",
        "trap": "#ff5f5f",
        "secure": "#d787ff",
        "shared": "#5fd7d7",
        "donated": "#af87ff",
        "exported": "#ffaf5f",
        "owner": "#000000 bg:#ffd75f",
        "heading": "bold underline",
        "ok": "#87d787",
        "dim": "#808080",
        "stop": "#ffd75f bold",
        "pc": "reverse",
        "status": "bg:#303030 #d0d0d0",
        "status.key": "bg:#303030 #808080",
        "status.secure": "bg:#5f005f #ffffff bold",
        "status.running": "bg:#005f00 #ffffff bold",
        "status.owner": "bg:#875f00 #ffffff bold",
        "prompt": "#5fafff bold",
    }
)


@dataclass
class Output:
    """The result of one command: styled lines and whether the command succeeded."""

    lines: list[list[Fragment]] = field(default_factory=list)
    ok: bool = True

    def add(self, *fragments: Fragment | str) -> Output:
        """Append a line made of fragments (a bare string is unstyled)."""
        self.lines.append([("", f) if isinstance(f, str) else f for f in fragments])
        return self

    def text(self, text: str, style: str = "") -> Output:
        """Append one or more lines of text in one style."""
        for line in text.splitlines() or [""]:
            self.lines.append([(style, line)])
        return self

    def extend(self, other: Output) -> Output:
        """Append another output's lines (and its failure)."""
        self.lines += other.lines
        self.ok = self.ok and other.ok
        return self

    @classmethod
    def error(cls, message: str) -> Output:
        """A failed command's one line."""
        return cls([[("class:error", "error: "), ("", message)]], ok=False)

    def fit(self, width: int) -> Output:
        """The same output with every line longer than ``width`` columns wrapped at spaces (a word longer
        than a line is cut), continuation lines indented by the line's own indent and 4 more; styles kept."""
        if width < 20 or all(sum(len(t) for _, t in line) <= width for line in self.lines):
            return self
        out = Output(ok=self.ok)
        for line in self.lines:
            out.lines += _wrap(line, width)
        return out

    def plain(self) -> str:
        """The text without styles, one line per line, ending with a newline when not empty."""
        return "".join("".join(t for _, t in line) + "\n" for line in self.lines)

    def formatted(self) -> FormattedText:
        """prompt_toolkit formatted text (style names become ``class:`` references)."""
        out: list[tuple[str, str]] = []
        for line in self.lines:
            for style, text in line:
                if style and not style.startswith("class:"):
                    style = " ".join("class:" + s for s in style.split())
                out.append((style, text))
            out.append(("", "\n"))
        return FormattedText(out)


_TABLE_ROW: Final = re.compile(r"^(\S.*?\S)( {2,})(\S.*)$")


def columns(term: str, text: str, col: int, width: int, indent: int = 0) -> list[str]:
    """``term`` then ``text`` from column ``col``, wrapped under itself in ``width`` columns (when the term
    does not leave room, the text starts on the next line)."""
    room = max(20, width - col)
    body = textwrap.wrap(text, room, break_on_hyphens=False) or [""]
    pad = " " * col
    if indent + len(term) + 1 > col:
        head = textwrap.wrap(term, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4),
                             break_on_hyphens=False)  # fmt: skip
        return head + [pad + b for b in body]
    return [(" " * indent + term).ljust(col) + body[0]] + [pad + b for b in body[1:]]


def reflow(doc: str, width: int) -> list[str]:
    """A docstring laid out for ``width`` columns: paragraphs refilled; table rows (``term  text`` with two
    or more spaces between, continued by lines indented to the text) rewrapped with the text in its column."""
    lines = textwrap.dedent(doc.split("\n", 1)[1]) if "\n" in doc else ""
    raw = [doc.split("\n", 1)[0].strip(), *lines.splitlines()]
    out: list[str] = []
    para: list[str] = []
    row: list[object] | None = None  # [term, column, text]

    def flush() -> None:
        nonlocal row
        if para:
            out.extend(textwrap.wrap(" ".join(para), width, break_on_hyphens=False))
            para.clear()
        if row is not None:
            term, col, text = row
            out.extend(columns(str(term), str(text), min(int(col), width // 2), width))  # type: ignore[call-overload]
            row = None

    for line in raw:
        if not line.strip():
            flush()
            out.append("")
            continue
        m = _TABLE_ROW.match(line)
        lead = len(line) - len(line.lstrip(" "))
        if m is not None and not lead:
            flush()
            row = [m.group(1), len(m.group(1)) + len(m.group(2)), m.group(3)]
        elif row is not None and lead and lead == row[1]:
            row[2] = f"{row[2]} {line.strip()}"
        else:
            if row is not None:
                flush()
            para.append(line.strip())
    flush()
    return out


def _wrap(line: list[Fragment], width: int) -> list[list[Fragment]]:
    text = "".join(t for _, t in line)
    if len(text) <= width:
        return [line]
    indent = len(text) - len(text.lstrip(" ")) + 4
    if indent > width // 2:
        indent = 4
    pieces: list[tuple[int, int]] = []
    pos, avail = 0, width
    while pos < len(text):
        if len(text) - pos <= avail:
            pieces.append((pos, len(text)))
            break
        cut = text.rfind(" ", pos + 1, pos + avail + 1)
        if cut <= pos:
            cut = pos + avail
        pieces.append((pos, cut))
        pos = cut
        while pos < len(text) and text[pos] == " ":
            pos += 1
        avail = width - indent
    out: list[list[Fragment]] = []
    for n, (lo, hi) in enumerate(pieces):
        frags: list[Fragment] = [("", " " * indent)] if n else []
        at = 0
        for style, t in line:
            a, b = max(lo, at), min(hi, at + len(t))
            if a < b:
                frags.append((style, t[a - at : b - at]))
            at += len(t)
        out.append(frags)
    return out


def hexdump(address: int, data: bytes, width: int = 16) -> list[list[Fragment]]:
    """Lines of ``address: hex words  |ascii|`` (EBCDIC-agnostic: printable ASCII only)."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off : off + width]
        words = " ".join(chunk[i : i + 4].hex() for i in range(0, len(chunk), 4))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(
            [("addr", f"{address + off:016x}"), ("", "  "), ("value", f"{words:<35}"), ("dim", f"  |{text}|")]
        )
    return lines

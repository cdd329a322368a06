"""Command output as styled lines: plain text for scripts and transcripts, colours for the terminal.

A handler returns an ``Output``: lines of ``(style, text)`` fragments whose style names are classes of
``STYLE``. ``Output.plain()`` drops the styles (transcripts compare it); ``Output.formatted()`` is
prompt_toolkit formatted text for the interactive console.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

__all__ = ["Output", "STYLE", "hexdump"]

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


def hexdump(address: int, data: bytes, width: int = 16) -> list[list[Fragment]]:
    """Lines of ``address: hex words  |ascii|`` (EBCDIC-agnostic: printable ASCII only)."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off : off + width]
        words = " ".join(chunk[i : i + 4].hex() for i in range(0, len(chunk), 4))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append([("addr", f"{address + off:016x}"), ("", "  "), ("value", f"{words:<35}"), ("dim", f"  |{text}|")])
    return lines

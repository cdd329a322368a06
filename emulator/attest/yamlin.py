"""YAML read as s390-tools' pvsecret reads a CUID file (serde_yaml 0.9 into a ``Value``), and its CUID lookup.

``pvsecret create --cuid FILE`` takes 16 raw bytes, or YAML in which the first ``cuid`` entry of nested
mappings (up to 8 deep, mappings only) is a string ``0x`` + 32 hex digits: what ``pvattest verify -o``
writes. serde_yaml refuses a file that a ``Value`` cannot hold, and so does this reader: more than one
document, a duplicate key in a mapping, a tab in indentation, an integer beyond 64 bits (an unquoted
``0x`` + 32 hex digits is one: why pvattest 2.43 quotes the CUID). Plain scalars are typed as serde_yaml
types them (``emulator.attest.yamlout``). Block and flow mappings and sequences, quoted and plain scalars,
block scalars (``|``, ``>``), comments, anchors and aliases, ``!!str`` and local tags are read; what this
small reader does not know (a multi-line flow collection or quoted scalar, a complex ``?`` key) is refused
as a file serde_yaml would not read either, which the error says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emulator.attest.yamlout import _digits_but_not_number, _int, serde_types_it

__all__ = ["YamlError", "CuidError", "load", "cuid_from_yaml"]


class YamlError(ValueError):
    """The text is no YAML a serde_yaml ``Value`` holds (or none this reader knows)."""


@dataclass(frozen=True)
class Tagged:
    """A value under a local tag (``!Retrievable``): neither a string nor a mapping to the CUID lookup."""

    tag: str
    value: Any


class _Str(str):
    """A string scalar (quoted or plain), kept apart from typed plain scalars of the same text."""


def _scalar(text: str) -> Any:
    """A plain scalar typed as serde_yaml types it; integers beyond 64 bits are refused as its Value does."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if _digits_but_not_number(text) or not serde_types_it(text):
        return _Str(text)
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if _int(text):
        neg = text.startswith("-")
        body = text[1:] if text[:1] in "+-" else text
        base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2], 10)
        value = int(body[2:] if base != 10 else body, base) * (-1 if neg else 1)
        if not -(1 << 63) <= value < 1 << 64:
            raise YamlError(f"the integer {text} needs more than 64 bits (a serde_yaml Value has none)")
        return value
    return Tagged("!!float", text)  # a float (.inf and .nan too): no string to the CUID lookup


def _key(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v if not isinstance(v, (dict, list)) else repr(v))


class _Reader:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.anchors: dict[str, Any] = {}

    # -- inline values ------------------------------------------------------------------------------------

    def inline(self, s: str) -> Any:
        """A value written on one line (comments dropped): alias, anchor, tag, quoted, flow or plain."""
        s = s.strip()
        if s.startswith("*"):
            name = s[1:].split()[0] if s[1:].split() else ""
            if name not in self.anchors:
                raise YamlError(f"unknown alias *{name}")
            return self.anchors[name]
        if s.startswith("&"):
            name, _, rest = s[1:].partition(" ")
            self.anchors[name] = v = self.inline(rest)
            return v
        if s.startswith("!"):
            tag, _, rest = s.partition(" ")
            if tag == "!!str":  # the text as it is, never typed
                rest = rest.strip()
                return self.flow(rest, 0)[0] if rest[:1] in ("'", '"') else _Str(rest.split(" #")[0])
            return Tagged(tag, self.inline(rest)) if not tag.startswith("!!") else self.inline(rest)
        v, end = self.flow(s, 0)
        rest = s[end:].strip()
        if rest and not rest.startswith("#"):
            raise YamlError(f"unexpected text after a value: {rest[:40]!r}")
        return v

    def flow(self, s: str, i: int, inside: bool = False) -> tuple[Any, int]:
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] in "'\"":
            q = s[i]
            m = re.compile(r"'((?:[^']|'')*)'" if q == "'" else r'"((?:[^"\\]|\\.)*)"').match(s, i)
            if not m:
                raise YamlError("a quoted scalar that does not end on its line")
            text = m.group(1).replace("''", "'") if q == "'" else m.group(1).encode().decode("unicode_escape")
            return _Str(text), m.end()
        if i < len(s) and s[i] in "[{":
            close, items, out = "]" if s[i] == "[" else "}", [], {}
            i += 1
            while True:
                while i < len(s) and s[i] == " ":
                    i += 1
                if i >= len(s):
                    raise YamlError("a flow collection that does not end on its line")
                if s[i] == close:
                    return (items if close == "]" else out), i + 1
                k, i = self.flow(s, i, True)
                while i < len(s) and s[i] == " ":
                    i += 1
                v: Any = None
                if i < len(s) and s[i] == ":":
                    v, i = self.flow(s, i + 1, True)
                if close == "}":
                    if _key(k) in {_key(x) for x in out}:
                        raise YamlError(f"duplicate key {k!r}")
                    out[k] = v
                else:
                    items.append({k: v} if v is not None else k)
                while i < len(s) and s[i] == " ":
                    i += 1
                if i < len(s) and s[i] == ",":
                    i += 1
        stop = re.compile(r"[,\]}]|: |:$| #" if inside else r" #|$")
        m = stop.search(s, i)
        end = m.start() if m else len(s)
        if not inside and re.search(r": |:$", s[i:end].strip()):
            raise YamlError("mapping values are not allowed in this context")
        return _scalar(s[i:end].strip()), end

    # -- blocks ---------------------------------------------------------------------------------------------

    def content(self, i: int) -> int:
        """The next line at or after i with content (blank and comment lines skipped)."""
        while i < len(self.lines) and (not self.lines[i].strip() or self.lines[i].lstrip().startswith("#")):
            i += 1
        return i

    def indent(self, i: int) -> int:
        line = self.lines[i]
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in lead:
            raise YamlError(f"line {i + 1}: a tab in the indentation")
        return len(lead)

    def block(self, i: int, parent: int) -> tuple[Any, int]:
        """The node whose first line is the next content line, deeper than ``parent`` (-1: the document)."""
        i = self.content(i)
        if i >= len(self.lines) or self.indent(i) <= parent and not self.lines[i].lstrip().startswith("- "):
            return None, i
        n, text = self.indent(i), self.lines[i].strip()
        if text == "-" or text.startswith("- "):
            return self.sequence(i, n)
        if _split_key(text) is not None:
            return self.mapping(i, n)
        if re.fullmatch(r"![^!\s]\S*", text):  # a local tag on the node below it (!Retrievable)
            v, i = self.block(i + 1, parent)
            return Tagged(text, v), i
        if text.startswith(("?", "|", ">")):
            raise YamlError(f"line {i + 1}: not read by this reader: {text[:40]!r}")
        return self.inline(text), i + 1

    def sequence(self, i: int, n: int) -> tuple[list, int]:
        items = []
        while i < len(self.lines) and self.indent(i) == n and self.lines[i].strip()[:2] in ("- ", "-"):
            rest = self.lines[i].strip()[1:]
            if not rest.strip():
                v, i = self.block(i + 1, n)
            elif _split_key(rest.strip()) is not None:  # '- key: value': a mapping at the item's column
                self.lines[i] = " " * (n + 1 + len(rest) - len(rest.lstrip())) + rest.lstrip()
                v, i = self.mapping(i, self.indent(i))
            else:
                v, i = self.inline(rest), i + 1
            items.append(v)
            i = self.content(i)
        return items, i

    def mapping(self, i: int, n: int) -> tuple[dict, int]:
        out: dict = {}
        while i < len(self.lines) and self.indent(i) == n:
            split = _split_key(self.lines[i].strip())
            if split is None:
                raise YamlError(f"line {i + 1}: no 'key: value' in a mapping")
            k = self.inline(split[0])
            if _key(k) in {_key(x) for x in out}:
                raise YamlError(f"line {i + 1}: duplicate key {split[0]!r}")
            rest = split[1].strip()
            if rest.startswith(("|", ">")):  # a block scalar: the more indented lines after it
                i += 1
                while i < len(self.lines) and (not self.lines[i].strip() or self.indent(i) > n):
                    i += 1
                out[k] = _Str("")
            elif not rest or rest.startswith("#") or re.fullmatch(r"[&!]\S+", rest):
                v, i = self.block(i + 1, n)
                out[k] = self.inline(f"{rest} ''") if v is None and rest.startswith("!!str") else v
                if rest.startswith("&"):
                    self.anchors[rest[1:]] = v
            else:
                out[k], i = self.inline(rest), i + 1
            i = self.content(i)
        if i < len(self.lines) and self.indent(i) > n:
            raise YamlError(f"line {i + 1}: indented where no value can start")
        return out, i


def _split_key(text: str) -> tuple[str, str] | None:
    """'key: rest' -> (key, rest), quotes and flow brackets respected; None: the line is no mapping entry."""
    if text.startswith(("'", '"')):
        m = re.match(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"", text)
        if not m:
            return None
        after = text[m.end():].lstrip(" ")
        return (m.group(0), after[1:]) if after[:1] == ":" and after[1:2] in ("", " ") else None
    if text.startswith(("[", "{", "#", "- ")):
        return None
    m = re.search(r":( |$)", text)
    if not m or " #" in text[: m.start()]:
        return None
    return text[: m.start()], text[m.end():]


def load(text: str) -> Any:
    """The one document of ``text`` as a serde_yaml Value would hold it (dict, list, str, int, float, bool,
    None, Tagged)."""
    docs: list[list[str]] = [[]]
    started = False
    for line in text.split("\n"):
        if line == "---" or line.startswith("--- "):
            if started or any(ln.strip() and not ln.lstrip().startswith("#") for ln in docs[-1]):
                docs.append([])
            started = True
            if line[4:].strip():
                docs[-1].append(line[4:])
            continue
        if line == "..." or line.startswith("... "):
            continue
        docs[-1].append(line)
    if len(docs) > 1:
        raise YamlError("deserializing from YAML containing more than one document is not supported")
    r = _Reader("\n".join(docs[0]))
    value, i = r.block(0, -1)
    if r.content(i) < len(r.lines):
        raise YamlError(f"line {r.content(i) + 1}: text after the document's value")
    return value


class CuidError(ValueError):
    """The YAML holds no usable CUID (pvsecret's own messages)."""


def cuid_from_yaml(value: Any) -> bytes:
    """The CUID in a loaded YAML CUID file, found and checked as pvsecret does.

    Raises:
        CuidError: no ``cuid`` string where pvsecret looks, or not ``0x`` and 32 hex digits.
    """

    def find(v: Any, depth: int) -> str | None:
        if depth >= 8 or not isinstance(v, dict):
            return None
        if "cuid" in v and any(isinstance(k, str) and k == "cuid" for k in v):
            c = v["cuid"]
            return str(c) if isinstance(c, str) else None
        for sub in v.values():
            found = find(sub, depth + 1)
            if found is not None:
                return found
        return None

    cuid = str(value) if isinstance(value, str) else find(value, 0)
    if cuid is None:
        raise CuidError("No 'cuid' entry found")
    if not cuid.startswith("0x"):
        raise CuidError("CUID value starts not with 0x")
    if len(cuid) - 2 != 32:
        raise CuidError(f"len invalid ({len(cuid) - 2})")
    if not re.fullmatch(r"[0-9a-fA-F]*", cuid[2:]):
        raise CuidError("Cannot decode hex string")
    return bytes.fromhex(cuid[2:])

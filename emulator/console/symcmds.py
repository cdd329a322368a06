"""Where a session's symbols come from: the program's ELF, a ``System.map`` or ``vmlinux`` (``--symbols``,
``symbols FILE``), or a Linux kernel image's own kallsyms (``symbols --kallsyms``, and by default when the
program is a kernel image); the ``symbols`` command; and ``symbols --gdb FILE``, an ELF of them for gdb.

A kernel's own files carry link addresses (``_text`` at 0x100000); the session moves them to where the
kernel runs without KASLR (``emulator.symbols.linux``: identity up to 6.9, 0x3FFE0000000 above from 6.10),
as it does kallsyms; ``-o OFFSET`` says otherwise (gdb's ``add-symbol-file -o``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emulator.console.cmdbase import command
from emulator.console.errors import ConsoleError
from emulator.console.expr import parse_number
from emulator.console.render import Output
from emulator.console.session import Session
from emulator.errors import LoadError

__all__ = ["SymbolSource", "load_symbols", "kernel_program"]


@dataclass(frozen=True)
class SymbolSource:
    """What the session's symbols were read from (kept across ``reload``): a file, or None for the
    kernel image's kallsyms; the offset asked for (None: the kernel's layout decides)."""

    path: str | None
    offset: int | None
    description: str
    note: str = ""


def kernel_program(s: Session) -> bytes | None:
    """The first 1 MiB of the session's program when it is an s390x Linux kernel image, else None."""
    from emulator.symbols.kernel_image import is_linux_image

    prog = s.program
    if prog is None or getattr(prog, "kind", "") != "flat":
        return None
    try:
        with open(prog.path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return None
    return head if is_linux_image(head) else None


def load_symbols(s: Session, path: str | None = None, offset: int | None = None) -> SymbolSource:
    """Replace the session's symbols with those of ``path`` (an ELF, a System.map or a kernel image), or,
    without one, with the kallsyms of the program (a kernel image). A kernel's link addresses are moved
    to where it runs (``offset``, else the program's layout). Returns the source, with a note for the user
    when the addresses may not hold (KASLR).

    Raises:
        ConsoleError: the file cannot be read or holds no symbols; no file and no kernel image.
    """
    from emulator.symbols.linux import kernel_layout
    from emulator.symbols.symfile import read_symbols

    head = kernel_program(s)
    layout = kernel_layout(head) if head is not None else None
    if path is None:
        if head is None:
            raise ConsoleError("symbols --kallsyms needs a Linux kernel image as the program (this one is "
                               "not: give a System.map, a vmlinux or an ELF)")  # fmt: skip
        path = str(s.program.path)  # type: ignore[union-attr]
    try:
        sf = read_symbols(path)
    except LoadError as e:
        raise ConsoleError(str(e)) from None
    moved = offset
    if moved is None:
        moved = layout.offset if (layout is not None and sf.linux and sf.kind != "kallsyms") else 0
    syms = sf.symbols if not moved else {n: (a + moved) % (1 << 64) for n, a in sf.symbols.items()}
    note = layout.note(getattr(s, "kernel_cmdline", "")) if layout is not None and sf.linux else ""
    desc = sf.description + (f", moved by {moved:#x}" if moved else "")
    s.set_symbols(syms)
    own = sf.kind == "kallsyms" and path == str(getattr(s.program, "path", ""))
    src = SymbolSource(None if own else path, offset, desc, note)
    s.symbol_source = src
    return src


@command("symbols", "symbols [FILE | --kallsyms] [-o OFFSET] | symbols --kaslr | symbols --gdb FILE",
         "read symbols: a System.map, a vmlinux/ELF, or the Linux kernel image's own (kallsyms)",
         aliases=("symbol-file",), group="session")  # fmt: skip
def _symbols(s: Session, args: list[str]) -> Output:
    """symbols                  where the symbols come from, how many
    symbols FILE             read a System.map (nm format), an ELF (a vmlinux) or a kernel image
    symbols --kallsyms       the program's own table, recovered from the kernel image (no file needed)
    -o OFFSET                add OFFSET to each address (a kernel's files: by default its layout's)
    symbols --kaslr          a kernel booted without nokaslr, stopped in its code: find where it placed
                             itself (its code at the PC matched against the image) and move the symbols
    symbols --gdb FILE       write the symbols as an ELF for gdb: symbol-file FILE (or add-symbol-file)

    A kernel's System.map and vmlinux hold link addresses (_text at 0x100000); kernels from 6.10 on run at
    0x3FFE0000000 above them without KASLR, and the session moves them there (as gdb's add-symbol-file -o).
    Without nokaslr on its command line a kernel may place itself at a random address: boot with nokaslr,
    or find it with symbols --kaslr."""
    words = list(args)
    offset: int | None = None
    if "-o" in words:
        i = words.index("-o")
        if i + 1 >= len(words) or (offset := parse_number(words[i + 1])) is None:
            raise ConsoleError("-o needs an offset (a number)")
        del words[i: i + 2]
    if words == ["--kaslr"]:
        return _kaslr(s)
    if words[:1] == ["--gdb"]:
        if len(words) != 2:
            raise ConsoleError("usage: symbols --gdb FILE")
        return _write_gdb(s, words[1])
    if len(words) > 1:
        raise ConsoleError("usage: symbols [FILE | --kallsyms] [-o OFFSET] | symbols --gdb FILE")
    if not words:
        if offset is not None:
            raise ConsoleError("-o goes with a file or --kallsyms")
        return _describe(s)
    path = None if words[0] == "--kallsyms" else words[0]
    if path is not None and not Path(path).exists():
        raise ConsoleError(f"{path}: no such file")
    src = load_symbols(s, path, offset)
    out = Output().text(f"{len(s.symbols)} symbols from {src.description}")
    for note in s.replace_symbol_breakpoints():
        out.text(note)
    for name in ("start_kernel", "schedule"):
        if name in s.symbols:
            out.add(("dim", f"  {name} at "), ("addr", f"{s.symbols[name]:#x}"))
    if src.note:
        out.text(src.note, "trap")
    return out


def _describe(s: Session) -> Output:
    src: SymbolSource | None = getattr(s, "symbol_source", None)
    if src is None:
        where = "the program's ELF" if s.symbols else "none (the program is no ELF with a symbol table)"
        out = Output().text(f"{len(s.symbols)} symbols: {where}" if s.symbols else f"symbols: {where}")
        if not s.symbols and kernel_program(s) is not None:
            out.text("the program is a Linux kernel image: symbols --kallsyms reads its own table")
        return out
    out = Output().text(f"{len(s.symbols)} symbols from {src.description}")
    if src.note:
        out.text(src.note, "trap")
    return out


def _kaslr(s: Session) -> Output:
    """Move a kernel's symbols by the offset KASLR chose, found from the code at the selected CPU's PC:
    each 16-byte piece of the 512 bytes around it that occurs once in the decompressed kernel names the
    piece's place in the image; the pieces must agree (at least three, no other offset as often)."""
    from emulator.symbols.kernel_image import decompressed_kernel

    if kernel_program(s) is None or "_text" not in s.symbols:
        raise ConsoleError("symbols --kaslr needs a Linux kernel image as the program and its symbols")
    pc = s.cpu.pc
    start = None
    code = b""
    for seg in s.read("virt", max(0, (pc & ~0xF) - 256), 512):
        if seg.data is None:  # only what lies contiguous around the PC
            if seg.address <= pc:
                start, code = None, b""
                continue
            break
        if start is None:
            start = seg.address
        code += seg.data
    if start is None or len(code) < 64:
        raise ConsoleError(f"the code at the PC ({pc:#x}) cannot be read: stop the kernel in its own code")
    try:
        _fmt, img = decompressed_kernel(open(str(s.program.path), "rb").read())  # type: ignore[union-attr]
    except (OSError, LoadError) as e:
        raise ConsoleError(f"cannot read the kernel: {getattr(e, 'strerror', None) or e}") from None
    votes: dict[int, int] = {}
    for at in range(0, len(code) - 15, 16):
        piece = code[at: at + 16]
        if piece.count(piece[:2]) == 8:  # padding or a run of one value: found anywhere
            continue
        o = img.find(piece)
        if o >= 0 and img.find(piece, o + 1) < 0:
            delta = (start + at) - (s.symbols["_text"] + o)
            votes[delta] = votes.get(delta, 0) + 1
    ranked = sorted(votes.items(), key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < 3 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        raise ConsoleError(f"the code at the PC ({pc:#x}) is not the kernel's own (stop in the kernel and "
                           "try again)")  # fmt: skip
    shift = ranked[0][0]
    delta = shift % (1 << 64)
    if delta == 0:
        return Output().text("the kernel runs where the symbols say (no KASLR offset)")
    s.set_symbols({n: (a + delta) % (1 << 64) for n, a in s.symbols.items()})
    src: SymbolSource | None = s.symbol_source  # type: ignore[assignment]
    if src is not None:
        s.symbol_source = SymbolSource(src.path, src.offset,
                                       f"{src.description}, moved by KASLR's {shift:#x}")  # fmt: skip
    moved = s.replace_symbol_breakpoints()
    way = f"{shift:#x} above" if shift > 0 else f"{-shift:#x} below"
    out = Output().text(f"the kernel runs {way} nokaslr's place (KASLR): symbols moved "
                        f"({ranked[0][1]} pieces of its code at the PC agree)")  # fmt: skip
    out.add(("dim", "  _text at "), ("addr", f"{s.symbols['_text']:#x}"))
    for note in moved:
        out.text(f"  {note}")
    return out


def _write_gdb(s: Session, path: str) -> Output:
    from emulator.symbols.symfile import write_symbol_elf

    if not s.symbols:
        raise ConsoleError("no symbols to write (symbols FILE or symbols --kallsyms first)")
    try:
        write_symbol_elf(s.symbols, path)
    except OSError as e:
        raise ConsoleError(f"{path}: cannot write: {e.strerror or e}") from None
    return Output().text(f"{len(s.symbols)} symbols written to {path}: in gdb, symbol-file {path}")

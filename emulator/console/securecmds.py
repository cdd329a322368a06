"""Console commands for Secure Execution views: the page map, the decoded UV-call log, ``dual``."""

from __future__ import annotations

import textwrap

from emulator.console.cmdbase import command
from emulator.console.cmdbase import count as _count
from emulator.console.cmdbase import no_more as _no_more
from emulator.console.cmdbase import space_addr as _space_addr
from emulator.console.cmdbase import state_style as _state_style
from emulator.console.errors import ConsoleError
from emulator.console.providers import PageInfo, UvCall
from emulator.console.render import Output
from emulator.console.session import Segment, Session
from emulator.console.tables import rc_meaning, uv_command
from emulator.hw.memory import PAGE_SHIFT

__all__ = ["uvlog_brief"]

# -- secure execution views ----------------------------------------------------------------------------------


def _picture_option(args: list[str], usage: str) -> tuple[list[str], tuple[str, str] | None]:
    """Take ``--svg FILE`` or ``--png FILE`` out of ``args``: (other arguments, (format, FILE) or None)."""
    found = [a for a in ("--svg", "--png") if a in args]
    if not found:
        return args, None
    if len(found) > 1:
        raise ConsoleError(f"one picture at a time: --svg FILE or --png FILE (usage: {usage})")
    i = args.index(found[0])
    if i + 1 >= len(args):
        raise ConsoleError(f"usage: {usage}")
    return args[:i] + args[i + 2:], (found[0][2:], args[i + 1])


def _write_picture(fig: object, target: tuple[str, str], what: str) -> Output:
    from emulator.console.pictures import save

    fmt, path = target
    size = save(fig, path, fmt)  # type: ignore[arg-type]
    return Output().text(f"wrote {what} to {path} ({size} bytes of {fmt.upper()})")


@command("pages", "pages [all] [--svg FILE | --png FILE]",
         "page map: runs of secure / shared / exported / donated frames; or drawn as a picture",
         group="secure")  # fmt: skip
def _pages(s: Session, args: list[str]) -> Output:
    """From the page-map provider (the Ultravisor's, or the hardware's owner tags when there is none).
    Contiguous frames with the same state and owner are one line; all lists every frame. --svg FILE or
    --png FILE draws the map as a picture instead (strips of frames coloured by state, a legend with the
    counts, the runs with their guest addresses)."""
    usage = "pages [all] [--svg FILE | --png FILE]"
    args, pic = _picture_option(args, usage)
    _no_more(args, 1, usage)
    every = bool(args) and args[0] == "all"
    if args and not every:
        raise ConsoleError(f"usage: {usage}")
    pages = list(s.providers.page_map.pages())
    if pic is not None:
        import os

        from emulator.console.pictures import page_map_figure

        title = "page map" + (f" of {os.path.basename(s.program.path)}" if s.program is not None else "")
        return _write_picture(page_map_figure(pages, title), pic, "the page map")
    out = Output().text(f"page map ({s.providers.sources.get('page_map', 'owner tags')}), "
                        f"{s.machine.memory.frames} frames of 4 KiB", "heading")  # fmt: skip
    if not pages:
        return out.text("every frame is non-secure host storage")
    runs: list[tuple[PageInfo, int]] = []
    for p in pages:
        if runs and not every:
            first, n = runs[-1]
            same = (first.state, first.owner, first.shared, first.detail) == (
                p.state,
                p.owner,
                p.shared,
                p.detail,
            )
            follows = (p.guest_abs is None and first.guest_abs is None) or (
                p.guest_abs is not None
                and first.guest_abs is not None
                and p.guest_abs == first.guest_abs + (n << 12)
            )
            if same and follows and first.frame + n == p.frame:
                runs[-1] = (first, n + 1)
                continue
        runs.append((p, 1))
    for p, n in runs:
        end = (p.frame + n) << PAGE_SHIFT
        guest = ""
        if p.guest_abs is not None:
            guest = f"  guest {p.guest_abs:#x}" + (f"-{p.guest_abs + (n << 12) - 1:#x}" if n > 1 else "")
        line = [
            ("addr", f"{p.host_abs:#012x}-{end - 1:#012x}"),
            f"  {n:6d} page{'s' if n != 1 else ' '}  ",
            (_state_style(p.state), f"{p.state:<10}"),
            f" owner tag {p.owner}",
        ]
        rest = (guest + (f"  {p.detail}" if p.detail else "")).strip()
        width = sum(len(f if isinstance(f, str) else f[1]) for f in line) + 2 + len(rest)
        if not rest or width <= s.columns:
            out.add(*line, ("dim", f"  {rest}" if rest else ""))
        else:  # narrow: the guest address and the detail on a line of their own
            out.add(*line)
            for piece in textwrap.wrap(rest, s.columns - 4, break_on_hyphens=False):
                out.add(("dim", f"    {piece}"))
    return out


_UVLOG_USAGE = "uvlog [N|all] [--brief] [--svg FILE | --png FILE]"


@command("uvlog", _UVLOG_USAGE,
         "the Ultravisor call log, decoded (last N calls, default 20; --brief: one line); or drawn as a "
         "sequence diagram", group="secure")
def _uvlog(s: Session, args: list[str]) -> Output:
    """Each call: sequence number, caller, command, cc, rc/rrc and what the rc means, then the control
    block's fields as the Ultravisor left them. N (or --last N) shows the last N calls, all every one.
    --brief: one line per call without the block, and a run of the same call with the same result as one
    line (#6-#61 ... Unpack x56): a whole boot on a screen (default: all calls). --svg FILE or --png FILE
    draws the calls (all of them unless N is given) as a sequence diagram host | Ultravisor | guest."""
    args, pic = _picture_option(args, _UVLOG_USAGE)
    brief = "--brief" in args
    args = [a for a in args if a != "--brief"]
    if args and args[0] == "--last":
        args = args[1:]
        if not args:
            raise ConsoleError(f"--last needs a count (usage: {_UVLOG_USAGE})")
    _no_more(args, 1, _UVLOG_USAGE)
    every = 20 if pic is None and not brief else 1 << 20
    n = (1 << 20) if args and args[0] == "all" else _count(args, 0, every, "count", 1, 1 << 20)
    calls = s.uv_calls()
    if calls is None:
        return Output().text("no UV-call log: this machine has no Ultravisor log provider")
    if pic is not None:
        from emulator.console.pictures import uv_sequence_figure

        shown = calls[-n:]
        return _write_picture(uv_sequence_figure(shown, "Ultravisor calls"), pic, f"{len(shown)} UV calls")
    if not calls:
        return Output().text("no Ultravisor calls yet")
    out = Output()
    if brief:
        return uvlog_brief(calls[-n:], s.columns, out)
    for c in calls[-n:]:
        cmd = uv_command(c.cmd)
        meaning = rc_meaning(c.cmd, c.rc, c.rrc)
        head: list[tuple[str, str] | str] = [
            ("dim", f"#{c.seq:<4} "),
            f"{c.caller:<8} ",
            ("mnemonic", f"{c.cmd:#06x} {cmd.name if cmd else 'unknown command'}"),
            f"  cc {c.cc} ",
            ("ok" if _ok(c) else "error", f"rc {c.rc:#06x}"),
            f" rrc {c.rrc:#06x}",
        ]
        if (
            meaning
            and sum(len(f if isinstance(f, str) else f[1]) for f in head) + 2 + len(meaning) > s.columns
        ):
            out.add(*head)  # narrow: what the rc means on a line of its own
            out.add(("dim", f"        {meaning}"))
        else:
            out.add(*head, ("dim", f"  {meaning}" if meaning else ""))
        for name, value in c.fields:
            out.add(("dim", f"        {name:<28} "), value)
    return out


def _ok(c: UvCall) -> bool:
    return c.rc == 0x0001 or (c.cmd == 0x0001 and c.rc == 0x0100)


def uvlog_brief(calls: list[UvCall], columns: int, out: Output) -> Output:
    """One line per run of the same call (caller, command, cc, rc, rrc), cut to ``columns`` (``uvlog
    --brief``, and ``zuv boot --uvlog``)."""
    runs: list[list[UvCall]] = []
    for c in calls:
        last = runs[-1][-1] if runs else None
        if last is not None and (last.caller, last.cmd, last.cc, last.rc, last.rrc) == (
                c.caller, c.cmd, c.cc, c.rc, c.rrc) and last.seq + 1 == c.seq:  # fmt: skip
            runs[-1].append(c)
        else:
            runs.append([c])
    seqs = [f"#{r[0].seq}" + (f"-#{r[-1].seq}" if len(r) > 1 else "") for r in runs]
    width = max([10, *(len(q) for q in seqs)])
    for run, seq in zip(runs, seqs):
        c = run[0]
        cmd = uv_command(c.cmd)
        name = (cmd.name if cmd else "unknown command") + (f" x{len(run)}" if len(run) > 1 else "")
        result = f"cc {c.cc} rc {c.rc:#06x}" + ("" if _ok(c) and not c.rrc else f" rrc {c.rrc:#06x}")
        meaning = "" if _ok(c) else rc_meaning(c.cmd, c.rc, c.rrc)
        fixed = width + len(f" {c.caller:<8} {c.cmd:#06x} ") + 2 + len(result)
        room = max(8, columns - fixed - (2 + len(meaning) if meaning else 0))
        if len(name) > room:
            name = name[: room - 3] + "..."
        line = [("dim", f"{seq:<{width}} "), f"{c.caller:<8} ", ("mnemonic", f"{c.cmd:#06x} {name}"), "  ",
                ("ok" if _ok(c) else "error", result)]  # fmt: skip
        if meaning:
            line.append(("dim", f"  {meaning}"[: max(0, columns - fixed - len(name))]))
        out.add(*line)
    return out


@command("dual", "dual ADDRESS [LENGTH]", "one page side by side: guest plaintext, host view, UV metadata",
         group="secure", complete=("loc", "num"))  # fmt: skip
def _dual(s: Session, args: list[str]) -> Output:
    """ADDRESS is virtual (the selected CPU's DAT), like mem's, unless prefixed real:, abs: or host:.
    Left: the plaintext (owner view, an emulator privilege). Middle: what the host reads (bytes, or the
    PGM 0x3D trap; after an export, the ciphertext). Right: the page map's entry (state, owner tag,
    shared, storage key, guest address)."""
    if not args:
        raise ConsoleError("dual needs an address")
    _no_more(args, 2, "dual ADDRESS [LENGTH]")
    s.require_debug_secure()  # the left column is the owner's
    space, addr = _space_addr(s, args[0])
    length = _count(args, 1, 64, "length", 1, 4096)
    owner = s.read(space, addr, length, owner=True)
    host = s.read(space, addr, length, owner=False)
    per_row = 16 if s.columns >= 138 else 8  # bytes a row: three columns fit the width
    col = 8 + per_row // 4 * 9
    meta_width = max(20, s.columns - 2 * col - 6)
    out = Output().add(
        ("heading", f"{'owner view (privilege)':<{col}}"), " | ", ("heading", f"{'host view':<{col}}"), " | ",
        ("heading", "UV metadata"),
    )  # fmt: skip
    for o, h in zip(owner, host, strict=True):
        meta = [piece for line in _meta_lines(s, o)
                for piece in textwrap.wrap(line, meta_width, break_on_hyphens=False)]  # fmt: skip
        orows = _rows(o, per_row, col)
        hrows = _rows(h, per_row, col)
        for i in range(max(len(orows), len(hrows), len(meta))):
            ol = orows[i] if i < len(orows) else ("", "")
            hl = hrows[i] if i < len(hrows) else ("", "")
            ml = meta[i] if i < len(meta) else ""
            out.add((ol[0], f"{ol[1]:<{col}}"), " | ", (hl[0], f"{hl[1]:<{col}}"), " | ", ("dim", ml))
    return out


def _rows(seg: Segment, per_row: int, col: int) -> list[tuple[str, str]]:
    if seg.data is None:
        return [("trap", line) for line in textwrap.wrap(seg.note, col, break_on_hyphens=False)]
    rows = []
    for off in range(0, len(seg.data), per_row):
        chunk = seg.data[off : off + per_row]
        words = " ".join(chunk[i : i + 4].hex() for i in range(0, per_row, 4))
        rows.append(("", f"{seg.address + off:08x} {words}"))
    return rows


def _meta_lines(s: Session, seg: Segment) -> list[str]:
    if seg.host is None:
        return ["(no host frame)"]
    frame = seg.host >> PAGE_SHIFT
    p = s.page_info(frame)
    key = s.machine.memory.keys[frame]
    lines = [
        f"frame {frame:#x} {p.state}",
        f"owner tag {p.owner}{' (UV)' if p.owner == 1 else ''}" + (" shared" if p.shared else ""),
        f"storage key {key >> 4} F{key >> 3 & 1} R{key >> 2 & 1} C{key >> 1 & 1}",
    ]
    if p.guest_abs is not None:
        lines.append(f"guest absolute {p.guest_abs:#x}")
    if p.detail:
        lines.append(p.detail)
    if p.state == "exported":
        lines.append("the plaintext is gone: both views read the ciphertext")
        lines.append("until the guest's next touch imports the page")
    return lines




@command("debug", "debug secure [on]", "the machine's debug capability: the owner's view of a secure guest",
         group="secure")  # fmt: skip
def _debug(s: Session, args: list[str]) -> Output:
    """debug secure: whether the session uses the machine's debug capability. debug secure on: ask the
    machine for it, by name (as zuv console --debug-secure does): the owner view (view owner, dual's owner
    column, setting a secure CPU's registers, stops at a secure guest's addresses and before its UV calls,
    gdbserver's owner view). An emulator privilege that no real machine gives a host; once in use it stays
    for the session. Without it the console shows a secure guest only as the host sees it."""
    _no_more(args, 2, "debug secure [on]")
    if not args or args[0] != "secure" or (len(args) == 2 and args[1] != "on"):
        raise ConsoleError("usage: debug secure [on]")
    if not hasattr(s.machine, "grant_debug"):
        return Output().text("this machine runs no SE image: there is no secure guest to debug as its owner")
    if len(args) == 2:
        if s.grant_debug_secure():
            return Output().add(("owner", "debug secure: on: the machine's debug capability is now in use "
                                          "(the owner's view of the secure guest, an emulator privilege)"))
        return Output().text("debug secure: on (already in use)")
    if s.debug_secure:
        return Output().add(("owner", "debug secure: on (the machine's debug capability is in use)"))
    return Output().text("debug secure: off (the host's view only; debug secure on asks for the capability)")

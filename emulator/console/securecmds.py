"""Console commands for Secure Execution views: the page map, the decoded UV-call log, ``dual``."""

from __future__ import annotations

from emulator.console.cmdbase import command
from emulator.console.cmdbase import count as _count
from emulator.console.cmdbase import no_more as _no_more
from emulator.console.cmdbase import space_addr as _space_addr
from emulator.console.cmdbase import state_style as _state_style
from emulator.console.errors import ConsoleError
from emulator.console.providers import PageInfo
from emulator.console.render import Output
from emulator.console.session import Segment, Session
from emulator.console.tables import rc_meaning, uv_command
from emulator.hw.memory import PAGE_SHIFT

__all__: list[str] = []

# -- secure execution views -------------------------------------------------------------------------------------


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
         "page map: runs of secure / shared / exported / donated frames",
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
            same = (first.state, first.owner, first.shared, first.detail) == (p.state, p.owner, p.shared, p.detail)
            follows = (p.guest_abs is None and first.guest_abs is None) or (
                p.guest_abs is not None and first.guest_abs is not None and p.guest_abs == first.guest_abs + (n << 12)
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
        out.add(
            ("addr", f"{p.host_abs:#012x}-{end - 1:#012x}"),
            f"  {n:6d} page{'s' if n != 1 else ' '}  ",
            (_state_style(p.state), f"{p.state:<10}"),
            f" owner tag {p.owner}",
            ("dim", guest),
            ("dim", f"  {p.detail}" if p.detail else ""),
        )
    return out


@command("uvlog", "uvlog [N] [--svg FILE | --png FILE]",
         "the Ultravisor call log, decoded (last N calls, default 20)",
         group="secure")  # fmt: skip
def _uvlog(s: Session, args: list[str]) -> Output:
    """Each call: sequence number, caller, command, cc, rc/rrc and what the rc means, then the control
    block's fields as the Ultravisor left them. --svg FILE or --png FILE draws the calls (all of them unless
    N is given) as a sequence diagram host | Ultravisor | guest instead."""
    usage = "uvlog [N] [--svg FILE | --png FILE]"
    args, pic = _picture_option(args, usage)
    _no_more(args, 1, usage)
    n = _count(args, 0, 20 if pic is None else 1 << 20, "count", 1, 1 << 20)
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
    for c in calls[-n:]:
        cmd = uv_command(c.cmd)
        meaning = rc_meaning(c.cmd, c.rc, c.rrc)
        ok = c.rc == 0x0001 or (c.cmd == 0x0001 and c.rc == 0x0100)
        out.add(
            ("dim", f"#{c.seq:<4} "),
            f"{c.caller:<8} ",
            ("mnemonic", f"{c.cmd:#06x} {cmd.name if cmd else 'unknown command'}"),
            f"  cc {c.cc} ",
            ("ok" if ok else "error", f"rc {c.rc:#06x}"),
            f" rrc {c.rrc:#06x}",
            ("dim", f"  {meaning}" if meaning else ""),
        )
        for name, value in c.fields:
            out.add(("dim", f"        {name:<28} "), value)
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
    space, addr = _space_addr(s, args[0])
    length = _count(args, 1, 64, "length", 1, 4096)
    owner = s.read(space, addr, length, owner=True)
    host = s.read(space, addr, length, owner=False)
    out = Output().add(
        ("heading", f"{'owner view (emulator privilege)':<44}"), " | ", ("heading", f"{'host view':<44}"), " | ",
        ("heading", "UV metadata"),
    )  # fmt: skip
    for o, h in zip(owner, host, strict=True):
        meta = _meta_lines(s, o)
        orows = _rows(o)
        hrows = _rows(h)
        for i in range(max(len(orows), len(hrows), len(meta))):
            ol = orows[i] if i < len(orows) else ("", "")
            hl = hrows[i] if i < len(hrows) else ("", "")
            ml = meta[i] if i < len(meta) else ""
            out.add((ol[0], f"{ol[1]:<44}"), " | ", (hl[0], f"{hl[1]:<44}"), " | ", ("dim", ml))
    return out


def _rows(seg: Segment) -> list[tuple[str, str]]:
    if seg.data is None:
        return [("trap", seg.note[i : i + 44]) for i in range(0, len(seg.note), 44)]
    rows = []
    for off in range(0, len(seg.data), 16):
        chunk = seg.data[off : off + 16]
        rows.append(("", f"{seg.address + off:08x} " + " ".join(chunk[i : i + 4].hex() for i in range(0, 16, 4))))
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
        lines += [p.detail[i : i + 60] for i in range(0, len(p.detail), 60)]
    if p.state == "exported":
        lines.append("the plaintext is gone: both views read the ciphertext")
        lines.append("until the guest's next touch imports the page")
    return lines



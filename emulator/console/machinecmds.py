"""Console commands over the machine as a whole: ``info tlb`` (the selected CPU's translation cache),
``reset`` and ``reload`` (a new machine of the same configuration, without leaving the console)."""

from __future__ import annotations

from typing import Final

from emulator.console.cmdbase import command, no_more, where_line
from emulator.console.errors import ConsoleError
from emulator.console.render import Output
from emulator.console.session import OWNER_LABEL, Session

__all__ = ["info_tlb"]

_SPACES: Final = {-1: "real", 0: "primary", 1: "AR", 2: "secondary", 3: "home"}
_READ, _WRITE, _EXEC = 1, 2, 4  # UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC


def _rights(perms: int) -> str:
    return (
        ("r" if perms & _READ else "-") + ("w" if perms & _WRITE else "-") + ("x" if perms & _EXEC else "-")
    )


def info_tlb(s: Session, args: list[str]) -> Output:
    """``info tlb``: what the selected CPU's TLB fills granted since its last flush, merged into runs."""
    no_more(args, 0, "info tlb")
    entries = s.tlb_entries()
    if entries is None:
        raise ConsoleError(f"CPU {s.cpu_address} keeps no record of its TLB")
    out = Output()
    if s.is_secure():
        if s.view == "host":
            made = f" ({len(entries)} pages)" if s.debug_secure else ""  # without the capability: not that
            return out.text(
                f"CPU {s.cpu_address} runs a secure guest: its TLB holds the guest's translations, which\n"
                f"the Ultravisor made{made}; the host cannot see them (view owner)",
                "trap",
            )
        out.add(("owner", OWNER_LABEL))
    runs: list[list[int]] = []  # [space, first page, first frame, rights, pages]
    for space, page, frame, perms in entries:
        last = runs[-1] if runs else None
        if last is not None and (last[0], last[3]) == (space, perms) and last[1] + (last[4] << 12) == page \
                and last[2] + last[4] == frame:  # fmt: skip
            last[4] += 1
        else:
            runs.append([space, page, frame, perms, 1])
    out.text(
        f"TLB of CPU {s.cpu_address}: {len(entries)} page{'s' if len(entries) != 1 else ''} filled since "
        "its last flush",
        "heading",
    )
    if not runs:
        return out.text("empty (nothing translated since the last flush)")
    out.add(("dim", f"{'space':<10}{'virtual':<38}{'host':<25}rights"))
    for space, page, frame, perms, n in runs:
        end = page + (n << 12) - 1
        virt = f"{page:#x}" + (f"-{end:#x}" if n > 1 else "")
        host = f"{frame << 12:#x}" + (f"-{((frame + n) << 12) - 1:#x}" if n > 1 else "")
        out.add(f"{_SPACES[space]:<10}", ("addr", f"{virt:<38}"), ("addr", f"{host:<25}"), _rights(perms))
    return out


@command("reset", "reset", "restart the machine: the program loaded again, started at its entry",
         group="run")  # fmt: skip
def _reset(s: Session, args: list[str]) -> Output:
    """A new machine of the same configuration (memory, CPUs, devices; an SE image: a new VM on the same
    secure host, booted again) with the program loaded from its file, as QEMU's system_reset re-IPLs.
    Breakpoints, watchpoints, displays, the view and the log are kept; the console output starts anew."""
    no_more(args, 0, "reset")
    return _restarted(s, "machine reset", s.restart())


@command("reload", "reload [FILE]", "load the program (or FILE) again after a rebuild, and restart",
         group="run")  # fmt: skip
def _reload(s: Session, args: list[str]) -> Output:
    """As reset, after reading the program file again (or FILE, of the same kind: an ELF or flat image, or
    an SE image): its symbols and DWARF are read anew and each address breakpoint is placed where what it
    was written as (a symbol, sym+off) now points; one that no longer resolves is disabled, with a note."""
    no_more(args, 1, "reload [FILE]")
    return _restarted(s, "program reloaded", s.restart(reread=True, path=args[0] if args else None))


def _restarted(s: Session, what: str, notes: list[str]) -> Output:
    n = sum(1 for b in s.breakpoints.values() if b.enabled)
    p = s.program
    out = Output().add(("ok", what), f": {p.path if p is not None else 'the machine'}, "
                       f"{n} breakpoint{'s' if n != 1 else ''} kept")  # fmt: skip
    for note in notes:
        out.add(("warn", f"  {note}"))
    return out.extend(where_line(s))

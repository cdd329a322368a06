"""The console's one command registry, and what every command module shares (arguments, the stop report).

The commands themselves live in ``commands.py``, ``securecmds.py`` and ``gdbcmds.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from emulator.console.disasm import Instruction, branch_target
from emulator.console.errors import ConsoleError
from emulator.console.execution import Stop
from emulator.console.expr import parse_number
from emulator.console.render import Output
from emulator.console.session import SPACES, Session

__all__ = [
    "Command", "REGISTRY", "GROUPS", "command", "lookup", "QuitRequest", "count", "no_more", "space_addr",
    "stop_output", "where_line", "state_style", "STOP_HOOKS", "disasm_lines",
]  # fmt: skip

Handler = Callable[[Session, list[str]], Output]


class QuitRequest(Exception):  # noqa: N818 - control flow, not an error
    """``quit`` was typed: leave the console with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Command:
    """One console command."""

    name: str
    handler: Handler
    usage: str
    summary: str
    help: str = ""
    aliases: tuple[str, ...] = ()
    group: str = "inspect"
    complete: tuple[str, ...] = ()  # completion kind per argument position ("loc", "bpkind", ...)
    while_running: bool = False  # allowed while the machine runs in the background


REGISTRY: dict[str, Command] = {}
#: What every stop report ends with (``display``): called with the session after the stop line.
STOP_HOOKS: list[Callable[[Session], Output]] = []
_ALIASES: dict[str, str] = {}
GROUPS: Final = ("run", "break", "inspect", "secure", "session")


def command(
    name: str,
    usage: str,
    summary: str,
    *,
    aliases: tuple[str, ...] = (),
    group: str = "inspect",
    complete: tuple[str, ...] = (),
    while_running: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a handler; its docstring is the long help."""

    def deco(fn: Handler) -> Handler:
        REGISTRY[name] = Command(
            name, fn, usage, summary, (fn.__doc__ or "").strip(), aliases, group, complete, while_running
        )
        for a in aliases:
            _ALIASES[a] = name
        return fn

    return deco


def lookup(word: str) -> Command | None:
    """The command named or aliased ``word`` (a unique prefix of a name also works)."""
    if word in REGISTRY:
        return REGISTRY[word]
    if word in _ALIASES:
        return REGISTRY[_ALIASES[word]]
    hits = [n for n in REGISTRY if n.startswith(word)]
    return REGISTRY[hits[0]] if len(hits) == 1 else None


# -- helpers ---------------------------------------------------------------------------------------------


def count(args: list[str], i: int, default: int, what: str, lo: int = 1, hi: int = 1 << 30) -> int:
    """The number in ``args[i]`` (``default`` if absent), within [lo, hi]; ConsoleError otherwise."""
    if len(args) <= i:
        return default
    v = parse_number(args[i])
    if v is None:
        raise ConsoleError(f"bad {what} {args[i]!r} (write decimal or 0x-prefixed hex)")
    if not lo <= v <= hi:
        raise ConsoleError(f"{what} {v} must be between {lo} and {hi}")
    return v


def no_more(args: list[str], n: int, usage: str) -> None:
    """Refuse arguments beyond the first ``n`` with the usage line."""
    if len(args) > n:
        raise ConsoleError(f"too many arguments (usage: {usage})")


def where_line(s: Session) -> Output:
    """The ``=> pc <symbol>: instruction`` line of the selected CPU (empty unless it is operating)."""
    out = Output()
    cpu = s.cpu
    if cpu.state != "operating":
        return out
    insn = s.current_instruction(owner=s.view == "owner")  # the host view reads no secure code
    host_view = s.view == "host" and s.is_secure()
    pc = s.view_cpu().pc  # the host view: the state description's copy, as the status bar shows it
    stale = host_view and getattr(s.machine, "sd_stale", lambda _a: False)(s.cpu_address)
    sym = "" if stale else s.symbolize(pc)
    if insn is None:
        why = "secure storage: PGM 0x3D for the host" if host_view else "instruction not readable"
        mark = (" (SD: the hypervisor's copy from before the secure IPL)" if stale
                else " (SD)" if host_view else "")  # fmt: skip
        return out.add(("stop", "=> "), ("addr", f"{pc:#x}"), ("dim", mark),
                       ("sym", f" <{sym}>" if sym else ""), ("trap", f"  ({why})"))  # fmt: skip
    tsym = target_name(s, insn)
    return out.add(
        ("stop", "=> "),
        ("addr", f"{pc:#x}"),
        ("sym", f" <{sym}>" if sym else ""),
        ": ",
        ("mnemonic", insn.mnemonic),
        " ",
        ("operands", insn.operands),
        ("sym", f" <{tsym}>" if tsym else ""),
    )


#: Instructions whose last operand is a relative-long address (the disassembly shows it resolved): LARL and
#: the loads, stores, compares, EXECUTE and prefetch of a PC-relative operand, named as gdb names them.
RELATIVE_LONG: Final = frozenset(("larl", "lrl", "lgrl", "lgfrl", "llgfrl", "lhrl", "lghrl", "llhrl",
                                  "llghrl", "strl", "stgrl", "sthrl", "crl", "cgrl", "cgfrl", "clrl", "clgrl",
                                  "clgfrl", "chrl", "cghrl", "clhrl", "clghrl", "exrl", "pfdrl"))  # fmt: skip


def target_name(s: Session, insn: Instruction) -> str:
    """The symbol of a branch's target (or of the address a relative-long operand names), empty when there is
    none."""
    target = branch_target(insn)
    if target is None and insn.mnemonic in RELATIVE_LONG:  # an address taken or read: name it too
        try:
            target = int(insn.operands.rsplit(",", 1)[-1], 0)
        except ValueError:
            return ""
    return s.symbolize(target) if target is not None else ""


def console_news(s: Session) -> Output:
    """The guest's console output since it was last shown, one ``guest|`` line each."""
    out = Output()
    data = bytes(s.machine.console[s.console_seen :])
    s.console_seen += len(data)
    if data:
        for line in data.decode("ascii", "replace").splitlines():
            out.add(("dim", "guest| "), line)
    return out


def stop_output(s: Session, stop: Stop) -> Output:
    """What a stop shows: new console output, the reason, what changed, where, and the stop hooks' lines."""
    out = console_news(s)
    style = "stop" if stop.kind not in ("end",) else "ok"
    if stop.result is not None and not stop.result.clean and stop.kind == "end":
        style = "warn"
    out.add((style, stop.reason))
    for d in stop.details:
        out.add("  ", ("changed", d))
    out.extend(where_line(s))
    for hook in STOP_HOOKS:
        out.extend(hook(s))
    return out


def disasm_lines(s: Session, insns: list[Instruction], pc: int | None, *, labels: bool = True) -> Output:
    """Instructions as dis shows them: a label line at each symbol, => at the PC, a branch's (and LARL's)
    target named."""
    out = Output()
    for insn in insns:
        sym = s.symbolize(insn.address)
        if labels and s.symbols and sym and "+" not in sym:
            out.add(("sym", f"<{sym}>:"))
        tsym = target_name(s, insn)
        mark = ("stop", "=> ") if insn.address == pc else ("", "   ")
        out.add(
            mark,
            ("addr", f"{insn.address:#x}"),
            ("sym", "" if labels or not sym else f" <{sym}>"),
            ("dim", f"  {insn.raw.hex():<12}  "),
            ("mnemonic", f"{insn.mnemonic:<8}"),
            ("operands", insn.operands),
            ("sym", f" <{tsym}>" if tsym else ""),
            ("dim", "   (table)" if insn.source == "table" else ""),
        )
    return out




def space_addr(s: Session, text: str, default: str = "virt") -> tuple[str, int]:
    """An address with an optional ``space:`` prefix (``SPACES``): (space, value of the expression)."""
    space = default
    for prefix in SPACES:
        if text.startswith(prefix + ":"):
            space, text = prefix, text[len(prefix) + 1 :]
    return space, s.value(text)



def state_style(state: str) -> str:
    """The output style of a page-map state."""
    return {"secure": "secure", "shared": "shared", "donated": "donated", "exported": "exported"}.get(
        state, ""
    )

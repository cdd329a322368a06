"""``zuv console``: build the machine, load the program, and run the console (interactive or not).

Interactive when stdin and stdout are terminals; otherwise commands come from ``--script FILE`` or from
stdin, and when stdin is empty from ``DEFAULT_SCRIPT``. The exit status is the script's (0 when every
command succeeded). Bad input (a missing file, a broken ELF) exits 2 with one line, like ``zuv run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

__all__ = ["add_parser", "cmd_console", "open_session", "build_session_from_args", "DEFAULT_SCRIPT", "DEFAULT_PROGRAM"]

#: The program ``zuv console`` loads when none is named.
DEFAULT_PROGRAM: Final = Path(__file__).resolve().parents[2] / "guests" / "images" / "hello.elf"
#: What the console does non-interactively when stdin brings no commands.
DEFAULT_SCRIPT: Final = ("info", "status", "dis pc 5", "continue --time 30", "regs", "pages", "uvlog", "console")


def open_session(
    program: str | None = None,
    *,
    memory: str = "128M",
    cpus: int = 1,
    deterministic: bool = False,
    level: int = 3,
    append: str = "",
    view: str = "host",
    ultravisor: bool = False,
) -> object:
    """A ``Session`` on a new machine with ``program`` loaded (the Python entry point of the console).

    Raises:
        EmulatorError: a bad size, CPU count or program (the message is one line).
    """
    from emulator.console.session import Session
    from emulator.machine.machine import Machine, parse_size

    m = Machine(parse_size(memory), cpus, deterministic=deterministic, level=level, ultravisor=ultravisor or None)
    prog = m.load(str(program or DEFAULT_PROGRAM), append)
    return Session(m, prog, view=view)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``zuv console`` to the ``zuv`` argument parser."""
    c = sub.add_parser("console", help="the monitor console: step, break, inspect (interactive or scripted)")
    c.add_argument("program", nargs="?", default=None, help="ELF or flat image (default: the bundled hello guest)")
    c.add_argument("--script", "-x", default=None, help="run the commands in FILE and exit with a status")
    c.add_argument("--memory", "-m", default="128M", help="RAM size (default 128M)")
    c.add_argument("--cpus", "-smp", type=int, default=1, help="number of CPUs (default 1)")
    c.add_argument("--append", default="", help="kernel command line")
    c.add_argument("--deterministic", action="store_true", help="deterministic clock and scheduling")
    c.add_argument("--level", type=int, choices=(2, 3), default=3, help="STSI level: 3 = VM (default), 2 = LPAR")
    c.add_argument("--ultravisor", action="store_true", help="install the Ultravisor (host UVCs at --level 2)")
    c.add_argument("--view", choices=("host", "owner"), default="host", help="initial point of view")
    c.add_argument("--quiet", "-q", action="store_true", help="scripts: do not echo the commands")
    c.set_defaults(func=cmd_console)
    return c


def build_session_from_args(argv: list[str]) -> object:
    """A session from ``zuv console`` arguments (the scripted-session tests use the same parser)."""
    p = argparse.ArgumentParser(prog="zuv")
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    args = p.parse_args(["console", *argv])
    return open_session(
        args.program, memory=args.memory, cpus=args.cpus, deterministic=args.deterministic,
        level=args.level, append=args.append, view=args.view, ultravisor=args.ultravisor,
    )  # fmt: skip


def cmd_console(args: argparse.Namespace) -> int:
    """Entry of ``zuv console``."""
    from emulator.console.app import run_interactive, run_script
    from emulator.console.errors import ConsoleError

    try:
        session = open_session(
            args.program, memory=args.memory, cpus=args.cpus, deterministic=args.deterministic,
            level=args.level, append=args.append, view=args.view, ultravisor=args.ultravisor,
        )  # fmt: skip
    except ConsoleError as e:
        print(f"zuv: {e}", file=sys.stderr)
        return 2
    if args.script is not None:
        try:
            lines = Path(args.script).read_text().splitlines()
        except OSError as e:
            print(f"zuv: {args.script}: cannot read: {e.strerror or e}", file=sys.stderr)
            return 2
        return run_script(session, lines, sys.stdout, echo=not args.quiet)  # type: ignore[arg-type]
    if sys.stdin.isatty() and sys.stdout.isatty():
        return run_interactive(session)  # type: ignore[arg-type]
    lines = sys.stdin.read().splitlines()
    if not any(line.strip() for line in lines):
        lines = list(DEFAULT_SCRIPT)
    return run_script(session, lines, sys.stdout, echo=not args.quiet)  # type: ignore[arg-type]

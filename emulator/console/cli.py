"""``zuv console``: build the machine, load the program, and run the console (interactive or not).

Interactive when stdin and stdout are terminals; otherwise commands come from ``--script FILE`` or from
stdin, and when stdin is empty from ``DEFAULT_SCRIPT``. A Secure Execution image (``pvimg create``) boots on
a secure host (``emulator.console.secure.SecureMachine``: the hypervisor's VM loop, the Ultravisor of
``--machine``); anything else loads into a ``Machine``. The exit status is the script's (0 when every
command succeeded). Bad input (a missing file, a broken ELF) exits 2 with one line, like ``zuv run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from emulator import options

__all__ = [
    "add_parser",
    "cmd_console",
    "open_session",
    "build_session_from_args",
    "DEFAULT_SCRIPT",
    "DEFAULT_PROGRAM",
]

#: The program ``zuv console`` loads when none is named.
DEFAULT_PROGRAM: Final = Path(__file__).resolve().parents[2] / "guests" / "images" / "hello.elf"
#: What the console does non-interactively when stdin brings no commands.
DEFAULT_SCRIPT: Final = (
    "info",
    "status",
    "dis pc 5",
    "continue --time 30",
    "regs",
    "pages",
    "uvlog",
    "console",
)


def open_session(
    program: str | None = None,
    *,
    memory: str | int = "128M",
    cpus: int = 1,
    deterministic: bool = False,
    level: int | None = None,
    append: str = "",
    view: str = "host",
    ultravisor: bool = False,
    machine: str = "zuv-demo",
    seed: int | None = None,
    attack: bool = True,
    symbols: str | None = None,
    devices: Sequence[str] = (),
    debug_secure: bool = False,
    initrd: str | None = None,
) -> object:
    """A ``Session`` on a new machine with ``program`` loaded (the Python entry point of the console).

    An SE image boots on a secure host for ``machine`` (its host keys); ``seed`` fixes the Ultravisor's random
    numbers (``deterministic`` alone uses seed 0), ``attack`` lets the hypervisor try to read the demo's
    secret page, ``symbols`` names an ELF whose symbols apply to the guest (the bundled demo's by default);
    for a plain machine ``symbols`` is an ELF, a ``System.map`` or a kernel image to take symbols from, and a
    Linux kernel image as the program brings its own (kallsyms, ``emulator.console.symcmds``).
    ``initrd`` is ``zuv run --initrd`` (QEMU's ``-initrd``) for a kernel image.
    ``devices`` are channel-attached devices as ``zuv run --device`` takes them (plain machines only).
    ``debug_secure`` asks the machine for its debug capability (``zuv console --debug-secure``, the
    console's ``debug secure on``): the owner view of a secure guest, an emulator privilege, for the console
    and its GDB stub; without it the session reaches neither the secure vCPU's hardware CPU nor
    ``SecureDebug`` and shows the secure guest as the host sees it.

    Raises:
        EmulatorError: a bad size, CPU count, program or machine (the message is one line).
    """
    from emulator.console.session import Session
    from emulator.machine.machine import Machine

    path = str(program or DEFAULT_PROGRAM)
    from emulator.console.secure import is_se_image

    if is_se_image(path):
        if initrd is not None:
            from emulator.errors import MachineError

            raise MachineError("--initrd is for a kernel image, not an SE image (pvimg create packs it)")
        if devices:
            from emulator.errors import MachineError

            raise MachineError("--device and --drive are for plain machines, not SE images")
        sm = open_secure_machine(path, memory=memory, cpus=cpus, deterministic=deterministic, machine=machine,
                                 seed=seed, attack=attack, symbols=symbols)  # fmt: skip
        session = Session(sm, sm.program, view=view)  # type: ignore[attr-defined]

        def rebuild_secure(image: str) -> tuple[object, object]:  # a new VM on the same secure host
            from emulator.console.secure import SecureMachine, owner_machine
            from emulator.errors import MachineError

            if not is_se_image(image):
                raise MachineError(f"{image} is not an SE image (this session runs SE images)")
            symbols = sm.symbols_path  # type: ignore[attr-defined]
            new = SecureMachine(owner_machine(sm), image, _size(memory), symbols=symbols, attack=attack,
                                deterministic=deterministic)  # fmt: skip
            return new, new.program

        session.rebuild = rebuild_secure  # type: ignore[assignment]
        return _granted(session, debug_secure)

    def build(program_path: str) -> tuple[object, object]:
        if is_se_image(program_path):
            from emulator.errors import MachineError

            raise MachineError(f"{program_path} is an SE image (open it with zuv console IMAGE)")
        m = Machine(
            _size(memory),
            cpus,
            deterministic=deterministic,
            level=level,
            ultravisor=ultravisor or None,
            uv_machine=machine,
            uv_seed=seed,
        )
        try:
            for spec in devices:
                m.add_device(spec)
            return m, m.load(program_path, append, initrd)
        except BaseException:
            m.close()
            raise

    m, prog = build(path)
    session = Session(m, prog, view=view)  # type: ignore[arg-type]
    session.rebuild = build  # type: ignore[assignment]
    session.kernel_cmdline = append
    _symbols(session, symbols)
    return _granted(session, debug_secure)


def _symbols(session: object, symbols: str | None) -> None:
    """A plain machine's symbols: ``symbols`` (a file), else a kernel image's own kallsyms."""
    from emulator.console.errors import ConsoleError
    from emulator.console.symcmds import kernel_program, load_symbols
    from emulator.errors import LoadError

    if symbols is None and kernel_program(session) is None:  # type: ignore[arg-type]
        return
    try:
        load_symbols(session, symbols)  # type: ignore[arg-type]
    except ConsoleError as e:
        session.machine.close()  # type: ignore[attr-defined]
        raise LoadError(str(e)) from None


def _granted(session: object, debug_secure: bool) -> object:
    if debug_secure:
        from emulator.console.gdbserve import grant_debug_secure

        grant_debug_secure(session)  # type: ignore[arg-type]
    return session


def open_secure_machine(
    image: str,
    *,
    memory: str | int = "128M",
    cpus: int = 1,
    deterministic: bool = False,
    machine: str = "zuv-demo",
    seed: int | None = None,
    attack: bool = True,
    symbols: str | None = None,
) -> object:
    """A ``SecureMachine``: a secure host for ``machine`` with one VM booting the SE image ``image``."""
    from emulator.console.secure import SecureMachine
    from emulator.errors import MachineError
    from emulator.hypervisor.boot import DEMO_IMAGE, DEMO_KERNEL, SecureHost

    if cpus != 1:
        raise MachineError("a secure guest of the console has one vCPU (--cpus 1)")
    if seed is None and deterministic:
        seed = 0
    host = SecureHost(machine, deterministic=deterministic, seed=seed)
    if symbols is None and Path(image).resolve() == DEMO_IMAGE.resolve():
        symbols = str(DEMO_KERNEL)
    return SecureMachine(host, image, _size(memory), symbols=symbols, attack=attack,
                         deterministic=deterministic)  # fmt: skip


def _size(memory: str | int) -> int:
    """A memory size in bytes: as given (the command line checked it), or read from text (``parse_size``)."""
    from emulator.machine.machine import parse_size

    return memory if isinstance(memory, int) else parse_size(memory)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``zuv console`` to the ``zuv`` argument parser."""
    c = sub.add_parser("console", help="the monitor console: step, break, inspect (interactive or scripted)")
    c.add_argument(
        "program", nargs="?", default=None, help="ELF or flat image (default: the bundled hello guest)"
    )
    c.add_argument("--script", "-x", default=None, help="run the commands in FILE and exit with a status")
    c.add_argument("--memory", "-m", type=options.memory_size, default="128M", help="RAM size (default 128M)")
    c.add_argument("--cpus", "-smp", type=options.cpus, default=1, help="number of CPUs (default 1)")
    c.add_argument("--append", default="", help="kernel command line")
    c.add_argument("--deterministic", action="store_true", help="deterministic clock and scheduling")
    c.add_argument("--level", type=int, choices=(2, 3), default=None,
                   help="STSI level: 3 = VM (default), 2 = LPAR (the default with --ultravisor)")
    c.add_argument("--ultravisor", action="store_true",
                   help="the LPAR of a machine with Secure Execution: the Ultravisor installed, host UVCs "
                        "(implies --level 2)")
    c.add_argument("--view", choices=("host", "owner"), default="host", help="initial point of view")
    c.add_argument("--machine", default="zuv-demo",
                   help="SE images and --ultravisor: bundled machine name or machine directory (host keys)")
    c.add_argument("--seed", type=int, default=None,
                   help="SE images and --ultravisor: seed of the Ultravisor's random numbers")
    c.add_argument(
        "--no-attack", action="store_true", help="SE images: the hypervisor does not read the secret"
    )
    c.add_argument("--symbols", default=None, metavar="FILE",
                   help="symbols for the guest: an ELF (a vmlinux), a System.map or a kernel image (a Linux "
                        "kernel image as the program brings its own: kallsyms); SE images: an ELF")
    c.add_argument("--initrd", default=None, metavar="FILE",
                   help="initial RAM disk for a Linux kernel image, as zuv run --initrd (QEMU's -initrd)")
    c.add_argument("--device", action="append", default=[], metavar="SPEC",
                   help="a channel-attached device, as zuv run --device (repeatable)")
    c.add_argument("--drive", action="append", default=[], metavar="FILE",
                   help="a virtio-blk-ccw disk backed by FILE")
    c.add_argument("--quiet", "-q", action="store_true", help="scripts: do not echo the commands")
    c.add_argument("-s", dest="gdb_default", action="store_true",
                   help="serve gdb on tcp::1234 before the console starts (short for --gdb tcp::1234)")
    c.add_argument("--gdb", metavar="DEV", default=None,
                   help="serve the GDB remote protocol on tcp::PORT (loopback) or tcp:HOST:PORT until gdb "
                        "detaches, then the console starts (the console command: gdbserver)")
    c.add_argument(
        "--debug-secure",
        action="store_true",
        help="use the machine's debug capability: the owner view of a secure guest (view owner, dual, its "
        "registers and plaintext, stops before its UV calls and at its addresses, the gdb stub's owner view; "
        "an emulator privilege, no real host has it; the console's debug secure on asks for it later)",
    )
    c.set_defaults(func=cmd_console)
    return c


def build_session_from_args(argv: list[str]) -> object:
    """A session from ``zuv console`` arguments (the scripted-session tests use the same parser)."""
    p = argparse.ArgumentParser(prog="zuv")
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    args = p.parse_args(["console", *argv])
    return _session(args)


def _session(args: argparse.Namespace) -> object:
    return open_session(
        args.program, memory=args.memory, cpus=args.cpus, deterministic=args.deterministic,
        level=args.level, append=args.append, view=args.view, ultravisor=args.ultravisor,
        machine=args.machine, seed=args.seed, attack=not args.no_attack, symbols=args.symbols,
        devices=[*args.device, *(f"virtio-blk-ccw,file={d}" for d in args.drive)],
        debug_secure=args.debug_secure, initrd=args.initrd,
    )  # fmt: skip


def cmd_console(args: argparse.Namespace) -> int:
    """Entry of ``zuv console``."""
    from emulator.console.app import persistent_history, run_interactive, run_script, script_problem
    from emulator.console.errors import ConsoleError

    lines: list[str] | None = None  # the script, checked whole before the machine is built
    if args.script is not None:
        try:
            lines = Path(args.script).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            print(f"zuv: {args.script}: cannot read: {e.strerror or e}", file=sys.stderr)
            return 2
        except UnicodeDecodeError as e:
            print(f"zuv: {args.script}: not a text file of console commands (byte {e.start}: "
                  f"not UTF-8)", file=sys.stderr)  # fmt: skip
            return 2
        problem = script_problem(lines)
        if problem is not None:
            print(f"zuv: {args.script}:{problem[0]}: {problem[1]}", file=sys.stderr)
            return 2
    try:
        session = _session(args)
    except ConsoleError as e:
        print(f"zuv: {e}", file=sys.stderr)
        return 2
    src = getattr(session, "symbol_source", None)
    if src is not None:
        count = len(session.symbols)  # type: ignore[attr-defined]
        print(f"zuv: {count} symbols from {src.description}", file=sys.stderr)
        if src.note:
            print(f"zuv: {src.note}", file=sys.stderr)
    if args.gdb is not None or args.gdb_default:
        from emulator.console.gdbserve import serve_gdb
        from emulator.interrupt import run_interruptible

        try:
            line = run_interruptible(
                lambda: serve_gdb(session, args.gdb or "tcp::1234"),  # type: ignore[arg-type]
                lambda: session.stop("interrupted (Ctrl-C)"),  # type: ignore[attr-defined]
            )
        except ConsoleError as e:
            print(f"zuv: {e}", file=sys.stderr)
            return 2
        print(f"zuv: {line}", file=sys.stderr)
    if lines is not None:
        return run_script(session, lines, sys.stdout, echo=not args.quiet)  # type: ignore[arg-type]
    if sys.stdin.isatty() and sys.stdout.isatty():
        return run_interactive(session, history=persistent_history())  # type: ignore[arg-type]
    try:
        lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        print(f"zuv: standard input is no text of console commands (byte {e.start}: not UTF-8)",
              file=sys.stderr)  # fmt: skip
        return 2
    if not any(line.strip() for line in lines):
        lines = list(DEFAULT_SCRIPT)
    problem = script_problem(lines)
    if problem is not None:
        print(f"zuv: standard input:{problem[0]}: {problem[1]}", file=sys.stderr)
        return 2
    return run_script(session, lines, sys.stdout, echo=not args.quiet)  # type: ignore[arg-type]

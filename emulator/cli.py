"""The ``zuv`` command line: ``run``, ``boot``, ``console``, the image tools, and the secure demo.

With no arguments it runs the secure demo (the console on a terminal, a non-interactive boot otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import emulator.startup  # first: Ctrl-C during the imports below ends the program without a traceback
from emulator import options
from emulator.errors import EmulatorError, MachineError
from emulator.hw.diag import WATCHDOG_ACTIONS, WATCHDOG_MODELS
from emulator.interrupt import EXIT_INTERRUPTED, run_interruptible

if TYPE_CHECKING:
    from emulator.console.providers import UvCall

#: The exit status after the output was cut off (a closed pipe: ``zuv ... | head``), 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141
#: A file the operating system refused (missing, a directory, unreadable, a name too long), as a bad image.
EXIT_FILE_ERROR = 2


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _forward_stdin(machine: object) -> None:
    """Feed standard input, line by line, to the program's SCLP console until end of file."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return
    machine.input_open = True  # type: ignore[attr-defined]

    def pump() -> None:
        try:
            for line in iter(stdin.buffer.readline, b""):
                machine.feed_console(line)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            pass
        machine.close_input()  # type: ignore[attr-defined]

    threading.Thread(target=pump, name="zuv-stdin", daemon=True).start()


def cmd_run(args: argparse.Namespace) -> int:
    """``zuv run``: boot a bare-metal program like ``qemu-system-s390x -kernel``."""
    from emulator.machine.machine import Machine

    size = args.memory  # bytes: options.memory_size checked it
    if args.machine is not None and not args.ultravisor:
        raise MachineError("--machine names the machine whose Ultravisor is installed: add --ultravisor")
    if args.freeze and args.gdb is None and not args.gdb_default:  # zuv run has no monitor to say cont
        raise MachineError("-S holds the CPUs until gdb says continue: add -s or --gdb tcp::PORT")
    m = Machine(size, args.cpus, deterministic=args.deterministic, level=args.level, console_out=_out,
                ultravisor=args.ultravisor or None, uv_machine=args.machine or "zuv-demo",
                watchdog=args.watchdog, watchdog_action=args.watchdog_action)  # fmt: skip
    for spec in args.device:
        m.add_device(spec)
    for path in args.drive:
        m.add_device(f"virtio-blk-ccw,file={path}")
    if args.name is not None or args.uuid is not None:  # STSI 3.2.2's VM name and UUID
        m.info = dataclasses.replace(
            m.info,
            vm_name=m.info.vm_name if args.name is None else args.name,
            vm_uuid=m.info.vm_uuid if args.uuid is None else args.uuid,
        )
    m.load(args.program, args.append, args.initrd)
    _forward_stdin(m)
    if args.gdb is not None or args.gdb_default:
        return _serve_gdb(m, args)
    res = run_interruptible(
        lambda: m.run(max_insns=args.max_insns, time_limit=args.time_limit),
        lambda: m.request_halt("interrupted (Ctrl-C)"),
    )
    sys.stdout.flush()
    if res.clean:
        code = res.guest_exit_code()
        if code:
            print(f"zuv: the guest reported a failure ({res.exit_line}): exit code {code}", file=sys.stderr)
        elif args.verbose:
            print(f"zuv: {res.describe()}" + (f"; guest reported {res.exit_line}" if res.exit_line else ""),
                  file=sys.stderr)
        return code
    if res.exit_line:
        print(f"zuv: guest reported {res.exit_line}", file=sys.stderr)
    print(f"zuv: {res.describe()}", file=sys.stderr)
    for c in res.cpus:
        print(
            f"zuv:   CPU {c.address}: {c.state} PSW {c.psw[0]:016x} {c.psw[1]:016x} {c.detail}",
            file=sys.stderr,
        )
    hint = _se_image_hint(args.program)
    if hint:
        print(f"zuv: {hint}", file=sys.stderr)
    return 1


def _se_image_hint(program: str) -> str:
    """What to do instead when ``zuv run`` was given a Secure Execution image (its stage3a asks for the
    secure IPL, DIAG 0x308 subcode 10, which only the hypervisor of ``zuv boot`` performs)."""
    from emulator.console.secure import is_se_image

    if not is_se_image(program):
        return ""
    return (f"{program} is a Secure Execution image: zuv run has no secure IPL (its loader stops in that "
            f"disabled wait); boot it with 'zuv boot {program}' or debug it with 'zuv console {program}'")


def _serve_gdb(m: object, args: argparse.Namespace) -> int:
    """``zuv run -s``/``-S``/``--gdb tcp::PORT``: the program runs under a GDB stub (QEMU's options)."""
    from emulator.gdb.stub import GdbStub, parse_endpoint

    try:
        host, port = parse_endpoint(args.gdb or "tcp::1234")
    except ValueError as e:
        raise MachineError(str(e)) from None
    try:
        stub = GdbStub(m, host, port, log=lambda line: print(f"zuv: {line}", file=sys.stderr))  # type: ignore
    except OSError as e:
        raise MachineError(f"cannot listen for gdb on {host}:{port}: {e.strerror or e}") from None
    try:
        def interrupted() -> None:
            m.request_halt("interrupted (Ctrl-C)")  # type: ignore[attr-defined]
            stub.close()

        return run_interruptible(lambda: stub.serve(start_running=not args.freeze), interrupted)
    finally:
        stub.close()


def _boot_stdin(vm: object) -> None:
    """Lines typed on zuv's standard input go to the booted VM's console (``Vm.queue_console``)."""

    def pump() -> None:
        # raw reads of the descriptor: a daemon thread blocked in the buffered reader's readline holds its
        # lock, and the interpreter's shutdown then aborts ("could not acquire lock for <stdin>")
        try:
            while data := os.read(fd, 4096):
                vm.queue_console(data)  # type: ignore[attr-defined]
        except (OSError, ValueError, AttributeError):
            pass
        vm.close_input()  # type: ignore[attr-defined]

    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd >= 0:
        vm.input_open = True  # type: ignore[attr-defined]
        threading.Thread(target=pump, name="zuv-boot-stdin", daemon=True).start()


def cmd_boot(args: argparse.Namespace) -> int:
    """``zuv boot``: boot a Secure Execution image on an emulated machine; show the host's read attempt."""
    from emulator.console.secure import is_se_image
    from emulator.hypervisor.boot import (
        DEMO_IMAGE,
        BootInterrupt,
        SecureHost,
        TrapReport,
        boot,
        host_memory_for,
    )

    image = args.image or str(DEMO_IMAGE)
    try:
        with open(image, "rb"):
            pass
    except OSError as e:
        print(f"zuv: {image}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    secure = is_se_image(image)
    host = SecureHost(args.machine, memory=host_memory_for(args.memory), deterministic=args.deterministic)
    kind = "Secure Execution" if secure else "not a Secure Execution image: a normal guest of the hypervisor"
    print(f"zuv: booting {image} on the emulated machine {host.name} ({kind})", file=sys.stderr)

    def show(t: TrapReport) -> None:
        what = f"trapped (PGM {t.code:#04x} secure-storage access)" if t.trapped else "NOT trapped"
        print(f"[hypervisor] read of the guest's secret page {t.gaddr:#x}: {what}")
        print(f"[hypervisor] after exporting the page through the Ultravisor it reads {t.seen[:16].hex()}... "
              f"(ciphertext); secret visible: {'YES' if t.secret_visible else 'no'}", flush=True)  # fmt: skip

    uvlog = None
    if args.uvlog is not None:
        from emulator.console.hostviews import UvEventLog

        uv = host.uv

        def guest(caller: object) -> tuple[str, int | None]:  # zuv boot runs one VM: "guest", its CPU
            cpu = uv.secure_cpu(getattr(caller, "cpu_handle", 0) or 0)
            return "guest", (cpu.num if cpu is not None else None)

        uvlog = UvEventLog(uv, guest)
    interrupt = BootInterrupt()
    try:
        r = run_interruptible(
            lambda: boot(host, image, args.memory, console_out=_out, attack=not args.no_attack,
                         on_vm=_boot_stdin, time_limit=args.time_limit, report=show, interrupt=interrupt,
                         deterministic=args.deterministic, cpus=args.cpus,
                         cpu_ids=[d for d in args.device if isinstance(d, int)],
                         devices=tuple(d for d in args.device if isinstance(d, str)),
                         drives=tuple(args.drive),
                         watchdog=args.watchdog, watchdog_action=args.watchdog_action, name=args.name,
                         uuid=args.uuid),  # fmt: skip
            interrupt,
        )
    finally:
        sys.stdout.flush()
        if uvlog is not None:
            uvlog.close()
        log_written = uvlog is None or _write_uvlog(uvlog.calls(), args.uvlog)
    if not log_written:
        return 2
    if r.failure is not None:
        print(f"zuv: {r.failure_text()}", file=sys.stderr)
        return 1
    if not r.run.clean:
        print(f"zuv: {r.run.describe()}", file=sys.stderr)
        return 1
    code = r.run.guest_exit_code()  # as zuv run: a guest's EXIT: STATUS=N other than 1 is its failure
    if code:
        print(f"zuv: the guest reported a failure ({r.run.exit_line}): exit code {code}", file=sys.stderr)
    elif args.verbose:
        print(f"zuv: {r.run.describe()}; secure guest: {'yes' if r.secure else 'no'}", file=sys.stderr)
    return code


def _write_uvlog(calls: list[UvCall], target: str) -> bool:
    """``zuv boot --uvlog``: the calls as ``uvlog --brief`` lists them, in full, to FILE or stderr."""
    from emulator.console.render import Output
    from emulator.console.securecmds import uvlog_brief

    text = f"{len(calls)} Ultravisor calls\n" + uvlog_brief(calls, 1 << 16, Output()).plain()
    if target == "-":
        sys.stderr.write(text)
        return True
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print(f"zuv: {target}: cannot write the UV log: {e.strerror or e}", file=sys.stderr)
        return False
    return True


def _image_tool(target: str, argv: list[str]) -> int:
    """Run the SE image tools (``emulator.image.pvimg_cli``, ``emulator.image.pvimg``), their own parsers."""
    if target == "pvimg_main":
        from emulator.image.pvimg_cli import pvimg_main

        return int(pvimg_main(argv))
    from emulator.image.hostkey import hostkey_main

    return int(hostkey_main(argv))


_ATTEST_TOOLS = {
    "pvattest": ("emulator.attest.pvattest", "pvattest_main"),
    "pvsecret": ("emulator.attest.pvsecret", "pvsecret_main"),
    "verifier": ("emulator.attest.demo", "verifier_main"),
}


def _attest_tool(name: str, argv: list[str]) -> int:
    """Run the attestation tools (``emulator.attest``) with their own argument parsers."""
    import importlib

    module, target = _ATTEST_TOOLS[name]
    return int(getattr(importlib.import_module(module), target)(argv))


def _attack_tool(argv: list[str]) -> int:
    """Run the attack playbook (``emulator.attacks``) with its own argument parser."""
    from emulator.attacks import main as attack_main

    return int(attack_main(argv))


def _lab_tool(argv: list[str]) -> int:
    """Run the labs (``emulator.labs``) with their own argument parser."""
    from emulator.labs import main as lab_main

    return int(lab_main(argv))


def _uuid(text: str) -> bytes:
    """A UUID argument (``0fb84a86-727c-11ea-bc55-0242ac130003``) as its 16 bytes."""
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zuv``."""
    p = argparse.ArgumentParser(prog="zuv", description="An emulated IBM Z machine with an Ultravisor.")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run a bare-metal s390x ELF or flat image (QEMU -kernel style)")
    r.add_argument("program", help="ELF or flat image")
    r.add_argument("--memory", "-m", type=options.memory_size, default="128M",
                   help="RAM size, e.g. 256M or 2G (default 128M)")  # fmt: skip
    r.add_argument("--cpus", "-smp", type=options.cpus, default=1, help="number of CPUs (default 1)")
    r.add_argument("--append", default="", help="kernel command line (stored at 0x10480)")
    r.add_argument(
        "--initrd",
        metavar="FILE",
        default=None,
        help="initial RAM disk, placed at 8 MiB (or above the kernel) and announced at 0x10408",
    )
    r.add_argument("--max-insns", type=options.count("the instruction limit"), default=None,
                   help="stop after this many instructions")  # fmt: skip
    r.add_argument("--time-limit", type=options.seconds, default=None, help="stop after this many seconds")
    r.add_argument("--deterministic", action="store_true", help="deterministic clock and scheduling")
    r.add_argument("--level", type=int, choices=(2, 3), default=None,
                   help="STSI level: 3 = VM (default), 2 = LPAR (the default with --ultravisor)")
    r.add_argument("--ultravisor", action="store_true",
                   help="an LPAR of a machine with Secure Execution: facilities 158 and 161, the Ultravisor "
                        "installed, host UVCs (implies --level 2)")
    r.add_argument("--watchdog", choices=WATCHDOG_MODELS, default=None,
                   help="give the program a watchdog: diag288 (DIAGNOSE 0x288, QEMU's -device diag288)")
    r.add_argument(
        "--watchdog-action",
        choices=WATCHDOG_ACTIONS,
        default="reset",
        help="what the watchdog does when it expires: reset (re-IPL, the default), inject-nmi (a "
        "restart interruption on CPU 0), shutdown/poweroff (end the run), pause (halt the run), "
        "debug/none (nothing); QEMU's --watchdog-action",
    )
    r.add_argument("--machine", default=None,
                   help="with --ultravisor: bundled machine name or machine directory whose host keys the "
                        "Ultravisor holds (default zuv-demo)")
    r.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="SPEC",
        help="add a device (repeatable), as QEMU's -device: virtio-net-ccw[,mac=M], "
        "virtio-blk-ccw,file=PATH[,readonly=on], or a CPU: s390x-cpu,core-id=N (any MODEL-s390x-cpu)",
    )
    r.add_argument(
        "--drive", action="append", default=[], metavar="FILE", help="a virtio-blk-ccw disk backed by FILE"
    )
    r.add_argument("--name", default=None, help="the VM's name in STSI 3.2.2 (as QEMU's -name)")
    r.add_argument("--uuid", type=_uuid, default=None, help="the VM's UUID in STSI 3.2.2 (as QEMU's --uuid)")
    r.add_argument("-v", "--verbose", action="store_true", help="report the end of a clean run too")
    r.add_argument("-s", dest="gdb_default", action="store_true",
                   help="serve gdb on tcp::1234 (short for --gdb tcp::1234)")
    r.add_argument("-S", dest="freeze", action="store_true",
                   help="with -s/--gdb: do not start the CPUs until gdb says continue (refused without)")
    r.add_argument(
        "--gdb",
        metavar="DEV",
        default=None,
        help="serve the GDB remote protocol on tcp::PORT (loopback) or tcp:HOST:PORT (QEMU's -gdb)",
    )
    r.set_defaults(func=cmd_run)
    subparsers = {"run": r}
    b = sub.add_parser("boot", help="boot a Secure Execution image (default: the bundled demo guest)")
    b.add_argument(
        "image", nargs="?", default=None, help="SE image (pvimg create); default: the bundled demo"
    )
    b.add_argument(
        "--machine", default="zuv-demo", help="bundled machine name or machine directory (host keys)"
    )
    b.add_argument("--memory", "-m", type=options.memory_size, default="128M",
                   help="guest memory (default 128M)")  # fmt: skip
    b.add_argument("--cpus", "-smp", type=options.cpus, default=1, help="number of CPUs (default 1)")
    b.add_argument("--device", action="append", default=[], type=options.boot_device, metavar="SPEC",
                   help="add a device (repeatable), as QEMU's -device: one more CPU, stopped, with address N "
                        "(s390x-cpu,core-id=N; any MODEL-s390x-cpu), virtio-net-ccw[,mac=M] or "
                        "virtio-blk-ccw,file=PATH[,readonly=on] (a secure guest's I/O: through shared pages)")
    b.add_argument("--watchdog", choices=WATCHDOG_MODELS, default=None,
                   help="give the guest a watchdog: diag288 (DIAGNOSE 0x288, QEMU's -device diag288; for a "
                        "secure guest the Ultravisor passes the DIAG to the hypervisor, which handles it)")
    b.add_argument("--watchdog-action", choices=WATCHDOG_ACTIONS, default="reset",
                   help="what the watchdog does when it expires: reset (IPL the image again, a secure guest "
                        "made normal first; the default), inject-nmi (a restart interruption on CPU 0), "
                        "shutdown/poweroff (end the run), pause (halt the run), debug/none (nothing)")
    b.add_argument("--time-limit", type=options.seconds, default=120.0, help="stop after this many seconds")
    b.add_argument("--no-attack", action="store_true", help="do not try to read the guest's secret page")
    b.add_argument("--deterministic", action="store_true",
                   help="deterministic clock and scheduling (the TOD advances with executed instructions)")
    b.add_argument("--drive", action="append", default=[], metavar="FILE",
                   help="a virtio-blk-ccw disk backed by FILE (a secure guest's I/O: through shared pages)")
    b.add_argument("--name", default=None, help="the VM's name in STSI 3.2.2 (as QEMU's -name)")
    b.add_argument("--uuid", type=_uuid, default=None, help="the VM's UUID in STSI 3.2.2 (as QEMU's --uuid)")
    b.add_argument("-v", "--verbose", action="store_true", help="report the end of a clean run too")
    b.add_argument("--uvlog", metavar="FILE", default=None,
                   help="when the boot ends, write its Ultravisor calls to FILE ('-': standard error), one "
                        "line per run of the same call, as the console's uvlog --brief")
    b.set_defaults(func=cmd_boot)
    subparsers["boot"] = b
    from emulator.console.cli import add_parser as add_console_parser

    subparsers["console"] = add_console_parser(sub)
    p.set_defaults(subparsers=subparsers)
    for name, target in (("pvimg", "pvimg_main"), ("hostkey", "hostkey_main")):
        t = sub.add_parser(name, help=f"the SE {name} tool (see zuv {name} --help)", add_help=False)
        t.add_argument("args", nargs=argparse.REMAINDER)
        t.set_defaults(func=lambda a, target=target: _image_tool(target, a.args))
    for name, what in (
        ("pvattest", "the attestation request tool"),
        ("pvsecret", "the add-secret request tool"),
        ("verifier", "the lab verifier service (serve) and the attestation demo (demo)"),
    ):
        t = sub.add_parser(name, help=f"{what} (see zuv {name} --help)", add_help=False)
        t.add_argument("args", nargs=argparse.REMAINDER)
        t.set_defaults(func=lambda a, name=name: _attest_tool(name, a.args))
    t = sub.add_parser("attack", help="the attack playbook: a malicious hypervisor against a secure guest "
                       "(zuv attack list, zuv attack run NAME|all)", add_help=False)
    t.add_argument("args", nargs=argparse.REMAINDER)
    t.set_defaults(func=lambda a: _attack_tool(a.args))
    t = sub.add_parser(
        "lab",
        help="self-grading labs on confidential computing (zuv lab list|start N|check N)",
        add_help=False,
    )
    t.add_argument("args", nargs=argparse.REMAINDER)
    t.set_defaults(func=lambda a: _lab_tool(a.args))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zuv`` console script: every command's Ctrl-C and closed pipe end here, as one
    line and an exit status (130, 141), never a traceback."""
    return guarded(lambda: _main(argv))


def guarded(run: Callable[[], int], name: str = "zuv") -> int:
    """``run()``'s exit status, with Ctrl-C, a closed pipe and a refused file answered as ``zuv`` answers
    them (one line, 130 / 141 / 2): for ``main`` and the tools/ wrappers (pvimg.py, genprotimg, hostkey.py,
    gen_se_header.py) that the docs run directly."""
    try:
        emulator.startup.hand_over()  # from here on Ctrl-C is a KeyboardInterrupt, answered below
        return run()
    except KeyboardInterrupt:
        _quiet_exit()
        print(f"\n{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_exit()
        return EXIT_BROKEN_PIPE
    except OSError as e:  # the one net for every file a command opens, reads or writes: one line, status 2
        print(f"{name}: {_file_error(e)}", file=sys.stderr)
        return EXIT_FILE_ERROR


def _file_error(e: OSError) -> str:
    """One line for a file the operating system refused: the file (a very long name cut short) and why."""
    name = str(e.filename) if e.filename is not None else ""
    if len(name) > 80:
        name = f"{name[:40]}...{name[-20:]} ({len(name)} characters)"
    reason = e.strerror or str(e)
    return f"{name}: {reason}" if name else reason


def _quiet_exit() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush (into a closed pipe) says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("pvimg", "hostkey"):  # the image tools parse their own arguments
        try:
            return _image_tool(f"{argv[0]}_main", argv[1:])
        except EmulatorError as e:
            print(f"zuv: {e}", file=sys.stderr)
            return 2
    if argv and argv[0] in _ATTEST_TOOLS:  # so do the attestation tools
        try:
            return _attest_tool(argv[0], argv[1:])
        except EmulatorError as e:
            print(f"zuv: {e}", file=sys.stderr)
            return 2
    if argv and argv[0] == "attack":  # and so does the attack playbook
        try:
            return _attack_tool(argv[1:])
        except EmulatorError as e:
            print(f"zuv: {e}", file=sys.stderr)
            return 2
    if argv and argv[0] == "lab":  # and the labs
        return _lab_tool(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's own usage, not the top-level one
        parser_of = args.subparsers.get(args.command, parser)
        parser_of.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        # the main job: the bundled secure demo guest - in the console on a terminal, else booted
        # non-interactively (the guest's console and the hypervisor's trapped read on stdout)
        if sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty():
            from emulator.hypervisor.boot import DEMO_IMAGE

            args = parser.parse_args(["console", str(DEMO_IMAGE)])
        else:
            args = parser.parse_args(["boot"])
    try:
        return int(args.func(args))
    except EmulatorError as e:
        print(f"zuv: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

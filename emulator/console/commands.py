"""The console's commands for execution, breakpoints, inspection and the session, and ``execute``.

The registry itself is ``cmdbase.REGISTRY``; Secure Execution views are in ``securecmds.py``, the gdb-class
commands in ``gdbcmds.py``. Handlers take the ``Session`` and the words after the command and return an
``Output``; they never print. Help, completion and the documentation's command table are all generated from
``REGISTRY``. ``execute`` turns any mistake into one ``error:`` line: unknown commands, bad numbers,
addresses outside memory.
"""

from __future__ import annotations

import argparse
import fnmatch
import shlex
import textwrap
from typing import Final

from emulator import options
from emulator.console import gdbcmds, gdbserve, machinecmds, securecmds, symcmds  # noqa: F401 - they register their commands
from emulator.console.cmdbase import GROUPS, REGISTRY, Command, QuitRequest, command, disasm_lines, lookup
from emulator.console.cmdbase import count as _count
from emulator.console.cmdbase import no_more as _no_more
from emulator.console.cmdbase import space_addr as _space_addr
from emulator.console.cmdbase import state_style as _state_style
from emulator.console.cmdbase import stop_output as _stop_output
from emulator.console.disasm import disassemble
from emulator.console.errors import ConsoleError
from emulator.console.expr import parse_number
from emulator.console.render import Output, columns, hexdump, reflow
from emulator.console.session import BP_KINDS, OWNER_LABEL, SPACES, VIEWS, Session
from emulator.console.status import shown_psw, status_line
from emulator.console.tables import SIE_INTERCEPTS
from emulator.errors import EmulatorError
from emulator.hw.memory import PAGE_SHIFT

__all__ = ["Command", "REGISTRY", "execute", "lookup", "QuitRequest"]


def execute(session: Session, line: str) -> Output:
    """Run one command line; never raises except ``QuitRequest``. With ``log FILE`` on, the line and its
    output are appended to the file."""
    out = _execute(session, line)
    log = session.log_file
    if log is not None and line.strip():
        try:
            log.write(f"(zuv) {line.strip()}\n{out.plain()}")
            log.flush()
        except (OSError, ValueError) as e:
            session.log_file = None
            out.add(("warn", f"log stopped: {e}"))
    return out


def _execute(session: Session, line: str) -> Output:
    text = line.strip()
    if not text or text.startswith("#"):
        return Output()
    try:
        words = shlex.split(text)
    except ValueError as e:
        return Output.error(f"cannot split the line into words: {e}")
    if "/" in words[0] and not words[0].startswith("/"):  # x/4xw, display/i: the format is an argument
        name, fmt = words[0].split("/", 1)
        words = [name, "/" + fmt, *words[1:]]
    cmd = lookup(words[0])
    if cmd is None:
        near = [n for n in REGISTRY if n.startswith(words[0][:2])]
        hint = f" (did you mean {', '.join(near)}?)" if near else " (type help for the list)"
        return Output.error(f"unknown command {words[0]!r}{hint}")
    if session.running and not cmd.while_running:
        return Output.error(f"the machine is running: {cmd.name} needs it stopped (stop, or Ctrl-C)")
    try:
        return cmd.handler(session, words[1:])
    except QuitRequest:
        raise
    except ConsoleError as e:
        return Output.error(str(e))
    except EmulatorError as e:
        return Output.error(str(e))
    except (ValueError, OverflowError, IndexError, KeyError) as e:
        return Output.error(f"{cmd.name}: {e}")


# -- execution ---------------------------------------------------------------------------------------------


@command("step", "step [N]",
         "execute N instructions on the selected CPU (default 1)", aliases=("s", "si", "stepi"),
         group="run", complete=("num",))  # fmt: skip
def _step(s: Session, args: list[str]) -> Output:
    """Execute instructions one at a time on the selected CPU; other CPUs do not move. Watched values are
    compared after every instruction; a guest's UVC at the PC is executed (its breakpoint stopped before
    it). While the hypervisor waits before one of its own UV calls (break uvc during a secure boot), step
    issues that call and stops before the hypervisor's next one, or where it returns to the guest."""
    _no_more(args, 1, "step [N]")
    return _stop_output(s, s.step(_count(args, 0, 1, "step count")))


@command("next", "next", "step one instruction, running subroutine calls (BRASL/BASR/...) to their return",
         aliases=("n", "ni"), group="run")  # fmt: skip
def _next(s: Session, args: list[str]) -> Output:
    """Like step, but a branch-and-save (a call) runs at full speed until the instruction after it."""
    _no_more(args, 0, "next")
    return _stop_output(s, s.next())


def _run_opts(args: list[str], usage: str) -> tuple[list[str], float | None, int | None]:
    rest: list[str] = []
    time_limit: float | None = None
    insns: int | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--time", "-t") and i + 1 < len(args):
            try:  # the command line's own check (finite, positive, at most a year)
                time_limit = options.seconds(args[i + 1])
            except argparse.ArgumentTypeError as e:
                raise ConsoleError(str(e)) from None
            i += 2
        elif a in ("--insns", "-n") and i + 1 < len(args):
            insns = _count(args, i + 1, 0, "instruction limit")
            i += 2
        elif a.startswith("-") and parse_number(a) is None:
            raise ConsoleError(f"unknown option {a!r} (usage: {usage})")
        else:
            rest.append(a)
            i += 1
    return rest, time_limit, insns


@command("continue", "continue [--time S] [--insns N]",
         "run all CPUs at full speed until something stops them",
         aliases=("c", "cont", "run"), group="run")  # fmt: skip
def _continue(s: Session, args: list[str]) -> Output:
    """Runs the machine at full speed (breakpoints are unicorn exits, watchpoints refused TLB fills: nothing
    runs per instruction). Stops at a breakpoint, at the end of the program, at a limit, or on stop / Ctrl-C.
    While the hypervisor waits before one of its own UV calls, continue issues it and goes on."""
    rest, t, n = _run_opts(args, "continue [--time S] [--insns N]")
    _no_more(rest, 0, "continue [--time S] [--insns N]")
    return _stop_output(s, s.cont(time_limit=t, max_insns=n))


@command("until", "until [LOCATION]",
         "run to LOCATION; without one, until the instruction after a loop's branch",
         aliases=("u",), group="run", complete=("loc",))  # fmt: skip
def _until(s: Session, args: list[str]) -> Output:
    """With a location (address or symbol): run until the selected CPU's code reaches it. Without: at a
    backward branch, run until the instruction after it (leave the loop); otherwise like next."""
    rest, t, n = _run_opts(args, "until [LOCATION]")
    if t is not None or n is not None:
        raise ConsoleError("until takes no limits")
    return _stop_output(s, s.until(" ".join(rest) if rest else None))


@command("stop", "stop", "stop a machine that runs in the background (Ctrl-C does the same)", group="run",
         while_running=True)  # fmt: skip
def _stop(s: Session, args: list[str]) -> Output:
    """Asks the running machine to stop at the next instruction boundary."""
    _no_more(args, 0, "stop")
    if not s.running:
        return Output().text("the machine is not running")
    s.stop()
    return Output().text("stopping...")


# -- breakpoints ---------------------------------------------------------------------------------------------


@command("break",
         "break LOCATION [if EXPR] | break uvc [CMD] | break sie [CODE] | break secure | break page [ADDR]",
         "stop at an address or symbol, or on an Ultravisor / SIE / secure-storage / page-state event",
         aliases=("b", "br"), group="break", complete=("bpkind", "bparg"))  # fmt: skip
def _break(s: Session, args: list[str]) -> Output:
    """break LOCATION        before the instruction at LOCATION (address, symbol, sym+off) executes
    break LOCATION if EXPR  only when EXPR holds there (r2 == 3, [counter] > 2, r7: not zero)
    break uvc [CMD]        before a CPU executes UVC with command CMD (code like 0x0100, a short name
                           like create_sec_conf, or a title like create-secure-configuration; Tab
                           completes the short names; none: any command); on a secure host also before the
                           hypervisor issues such a call itself (the secure boot's: step then goes to its
                           next call); elsewhere after a logged call of the hypervisor completes
    break sie [CODE]       on a SIE interception with this code (e.g. 0x68; none: any)
    break secure           when a host CPU touches secure storage (PGM 0x3D)
    break page [ADDR]      when a frame changes state (non-secure/secure/shared/donated); ADDR is a
                           host absolute address or frame:N (none: any frame)"""
    if not args:
        raise ConsoleError("break needs a location or an event (help break)")
    kind = args[0]
    if kind in ("uvc", "sie", "secure", "page"):
        bp = s.add_breakpoint(kind, " ".join(args[1:]))
    else:
        loc, cond = gdbcmds.split_condition(args)
        bp = s.add_breakpoint("addr", loc, condition=cond)
    out = Output().add(("ok", "breakpoint "), bp.describe())
    if kind == "sie" and s.providers.intercepts is None:
        out.add(("warn", "  pending: this machine has no hypervisor stream of SIE interceptions"))
    if kind == "uvc" and s.providers.uv_log is None and getattr(s.machine, "uv", None) is None:
        out.add(("warn", "  note: this machine has no Ultravisor; UVC raises an operation exception"))
    return out


@command("watch", "watch [-a] ADDRESS [LENGTH]", "stop when the guest stores to (-a: reads or stores) memory",
         aliases=("w",), group="break", complete=("loc", "num"))  # fmt: skip
def _watch(s: Session, args: list[str]) -> Output:
    """ADDRESS is virtual (the selected CPU's DAT) unless prefixed abs:, real: or host:. The watch is on
    the host frame behind it (aliases are caught too). The stop comes after the access, with the old and new
    value; firmware stores (SCLP, Ultravisor) into the range stop the machine as well. LENGTH default 8."""
    access = False
    if args and args[0] == "-a":
        access, args = True, args[1:]
    if not args:
        raise ConsoleError("watch needs an address")
    _no_more(args, 2, "watch [-a] ADDRESS [LENGTH]")
    bp = s.add_breakpoint("watch", args[0], access=access, length=_count(args, 1, 8, "length", 1, 4096))
    assert bp.address is not None
    return Output().add(("ok", "watchpoint "), bp.describe(), ("dim", f"  now {s.shown(bp.address, bp.old)}"))


@command("delete", "delete [N|all]",
         "delete breakpoint N (all without argument)", aliases=("d",), group="break",
         complete=("bpnum",))  # fmt: skip
def _delete(s: Session, args: list[str]) -> Output:
    """Deletes one breakpoint by number, or all of them."""
    _no_more(args, 1, "delete [N|all]")
    if not args or args[0] == "all":
        n = len(s.breakpoints)
        s.delete_breakpoint(None)
        return Output().text(f"deleted {n} breakpoint{'s' if n != 1 else ''}")
    s.delete_breakpoint(_count(args, 0, 0, "breakpoint number"))
    return Output().text(f"deleted breakpoint {args[0]}")


@command("enable", "enable N", "enable breakpoint N", group="break", complete=("bpnum",))
def _enable(s: Session, args: list[str]) -> Output:
    """Turns a disabled breakpoint back on."""
    if len(args) != 1:
        raise ConsoleError("usage: enable N")
    s.enable_breakpoint(_count(args, 0, 0, "breakpoint number"), True)
    return Output().text(f"enabled breakpoint {args[0]}")


@command(
    "disable", "disable N", "disable breakpoint N (keep it for later)", group="break", complete=("bpnum",)
)
def _disable(s: Session, args: list[str]) -> Output:
    """Keeps a breakpoint but stops nothing until enable."""
    if len(args) != 1:
        raise ConsoleError("usage: disable N")
    s.enable_breakpoint(_count(args, 0, 0, "breakpoint number"), False)
    return Output().text(f"disabled breakpoint {args[0]}")


@command("breaks", "breaks", "list breakpoints and watchpoints", aliases=("bl", "breakpoints"), group="break",
         while_running=True)  # fmt: skip
def _breaks(s: Session, args: list[str]) -> Output:
    """One line per breakpoint: number, kind, what it stops at, hit count."""
    _no_more(args, 0, "breaks")
    if not s.breakpoints:
        return Output().text("no breakpoints")
    out = Output()
    for bp in s.breakpoints.values():
        out.add(("dim" if not bp.enabled else "", bp.describe()))
    return out


# -- inspection ----------------------------------------------------------------------------------------------


def _secure_cpu_hidden(s: Session) -> Output | None:
    if s.view == "host" and s.is_secure():
        how = "view owner" if s.debug_secure else "debug secure on, then view owner,"
        out = Output().text(
            f"CPU {s.cpu_address} runs a secure guest: its registers are held by the Ultravisor;\n"
            f"the host sees only the SIE state description ({how} to see them)",
            "trap",
        )
        host_state = getattr(s.machine, "host_state", None)
        if host_state is not None:
            for name, value in host_state(s.cpu_address):
                out.add(("reg", f"  {name:<28}"), " ", ("value", value))
        return out
    return None


_PSW_BITS: Final = (
    (62, "R", "PER"),
    (58, "T", "DAT"),
    (57, "IO", "I/O interrupts"),
    (56, "EX", "external interrupts"),
    (50, "M", "machine checks"),
    (49, "W", "wait"),
    (48, "P", "problem state"),
)


def psw_decoded(mask: int, addr: int) -> list[str]:
    """The PSW's fields by name."""
    on = [short for bit, short, _ in _PSW_BITS if mask >> bit & 1]
    asc = ("primary", "access-register", "secondary", "home")[(mask >> 46) & 3]
    ea, ba = mask >> 32 & 1, mask >> 31 & 1
    amode = {(1, 1): "64-bit", (0, 1): "31-bit", (0, 0): "24-bit"}.get((ea, ba), "invalid (EA without BA)")
    return [
        f"PSW {mask:016x} {addr:016x}",
        f"  flags {' '.join(on) or '-'}  key {(mask >> 52) & 0xF}  ASC {asc}  CC {(mask >> 44) & 3}"
        f"  program mask {(mask >> 40) & 0xF:#x}",
        f"  addressing {amode}  address {addr:#x}",
    ]


@command("regs", "regs [gpr|cr|ar|fpr|vr|all]", "show registers (default: general registers and the PSW)",
         aliases=("r", "registers"), complete=("regset",))  # fmt: skip
def _regs(s: Session, args: list[str]) -> Output:
    """gpr: general registers, cr: control registers, ar: access registers, fpr: floating-point registers,
    vr: vector registers (16 bytes), all: everything. The PSW is decoded below the general registers."""
    _no_more(args, 1, "regs [gpr|cr|ar|fpr|vr|all]")
    which = args[0] if args else "gpr"
    if which not in ("gpr", "cr", "ar", "fpr", "vr", "all"):
        raise ConsoleError(f"unknown register set {which!r} (gpr, cr, ar, fpr, vr, all)")
    hidden = _secure_cpu_hidden(s)
    if hidden is not None:
        return hidden
    cpu = s.cpu
    out = Output()
    if s.view == "owner" and s.is_secure():
        out.add(("owner", OWNER_LABEL))

    def table(prefix: str, values: list[int], width: int = 16) -> None:
        cell = len(prefix) + 3 + width  # "r10 " and the value, two spaces between cells
        per_row = max(1, min(4, (s.columns + 2) // (cell + 2)))
        for row in range(0, len(values), per_row):
            frags: list[tuple[str, str] | str] = []
            for i in range(row, min(row + per_row, len(values))):
                frags += [
                    "  " if i > row else "",
                    ("reg", f"{prefix}{i:<2}"),
                    " ",
                    ("value", f"{values[i]:0{width}x}"),
                ]
            out.add(*frags)

    if which in ("gpr", "all"):
        table("r", cpu.gprs())
        for line in psw_decoded(*cpu.psw):
            out.text(line)
    if which in ("cr", "all"):
        table("c", [cpu.cr(i) for i in range(16)])
        out.text(f"prefix {cpu.prefix:#x}")
    if which in ("ar", "all"):
        table("a", [cpu.ar(i) for i in range(16)], 8)
    if which in ("fpr", "all"):
        table("f", [cpu.fpr(i) for i in range(16)])
        out.text(f"fpc {cpu.fpc():08x}")
    if which in ("vr", "all"):
        for i in range(0, 32 if which == "vr" else 16):
            if i >= 16:
                break
            out.add(("reg", f"v{i:<2}"), " ", ("value", cpu.vr(i).hex()))
    return out


@command("psw", "psw", "show the PSW with its fields decoded")
def _psw(s: Session, args: list[str]) -> Output:
    """Mask bits (PER, DAT, I/O, external, machine check, wait, problem state), key, address-space
    control, condition code, program mask, addressing mode and instruction address."""
    _no_more(args, 0, "psw")
    hidden = _secure_cpu_hidden(s)
    if hidden is not None:
        return hidden
    return Output().text("\n".join(psw_decoded(*s.cpu.psw)))



def _dump(s: Session, space: str, addr: int, length: int) -> Output:
    segs = s.read(space, addr, length)
    out = Output()
    if s.view == "owner":
        out.add(("owner", OWNER_LABEL))
    for seg in segs:
        if seg.data is None:
            out.add(("addr", f"{seg.address:016x}"), "  ", ("trap", seg.note))
        else:
            out.lines += hexdump(seg.address, seg.data)
    return out


@command("mem", "mem [SPACE:]ADDRESS [LENGTH]",
         "dump memory: virtual (default), real, abs (guest absolute), host",
         aliases=("m",), complete=("loc", "num"))  # fmt: skip
def _mem(s: Session, args: list[str]) -> Output:
    """virt: through the selected CPU's DAT (no reference bits are set), real: with prefixing, abs: guest
    absolute, host: host absolute. In the host view a secure page shows as the trap the host would get
    (PGM 0x3D); in the owner view it shows the plaintext. LENGTH defaults to 64 bytes."""
    if not args:
        raise ConsoleError("mem needs an address")
    _no_more(args, 2, "mem [SPACE:]ADDRESS [LENGTH]")
    space, addr = _space_addr(s, args[0])
    return _dump(s, space, addr, _count(args, 1, 64, "length", 1, 1 << 20))


@command("dis", "dis [ADDRESS] [N]",
         "disassemble N instructions (default: 10 at the PC)", aliases=("disassemble", "l"),
         complete=("loc", "num"))  # fmt: skip
def _dis(s: Session, args: list[str]) -> Output:
    """capstone decodes, and a table covers what capstone lacks (UVC, SERVC, ...). The PC is marked =>; a
    relative branch's target is named (<loop>) when a symbol covers it."""
    _no_more(args, 2, "dis [ADDRESS] [N]")
    space, addr = _space_addr(s, args[0]) if args else ("virt", s.cpu.pc)
    n = _count(args, 1, 10, "instruction count", 1, 10000)
    segs = s.read(space, addr, n * 6)
    code = b""
    trap = None
    for seg in segs:
        if seg.data is None:
            trap = seg
            break
        code += seg.data
    pc = s.cpu.pc if space == "virt" else None
    out = disasm_lines(s, list(disassemble(code, addr, n)), pc)
    if trap is not None and (len(code) < n * 2):
        out.add(("addr", f"{trap.address:#x}"), "  ", ("trap", trap.note))
    return out


@command("sym", "sym [PATTERN]",
         "list symbols (glob pattern), or the symbol of an address",
         complete=("loc",))  # fmt: skip
def _sym(s: Session, args: list[str]) -> Output:
    """sym lists all symbols; sym 'rt_*' filters with a glob; sym 0x20070 names the address."""
    _no_more(args, 1, "sym [PATTERN]")
    if not s.symbols:
        return Output().text("no symbols (the program is not an ELF with a symbol table)")
    if args and (parse_number(args[0]) is not None or args[0] in s.symbols or "+" in args[0]):
        addr, scope = s.resolve_address(args[0])
        if scope != s.scope_of():  # the program's symbol while another program runs (stage3a)
            return Output().add(("addr", f"{addr:#x}"), " ", ("sym", f"<{args[0]}>"),
                                ("dim", " in the secure guest (stage3a runs now)"))  # fmt: skip
        name = s.symbolize(addr)
        return Output().add(("addr", f"{addr:#x}"), " ", ("sym", f"<{name}>" if name else "(no symbol)"))
    pat = args[0] if args else "*"
    out = Output()
    for name, addr in sorted(s.symbols.items(), key=lambda kv: (kv[1], kv[0])):
        if fnmatch.fnmatchcase(name, pat):
            out.add(("addr", f"{addr:016x}"), "  ", ("sym", name))
    if not out.lines:
        out.text(f"no symbol matches {pat!r}")
    return out


@command("translate", "translate ADDRESS [primary|secondary|home]", "show how a virtual address translates",
         aliases=("tr",), complete=("loc",))  # fmt: skip
def _translate(s: Session, args: list[str]) -> Output:
    """Walks the selected CPU's DAT tables (without touching reference bits) and shows the real, guest
    absolute and host absolute address, and the page-map state of the host frame."""
    if not args:
        raise ConsoleError("translate needs an address")
    _no_more(args, 2, "translate ADDRESS [primary|secondary|home]")
    asc = None
    if len(args) == 2:
        names = {"primary": 0, "secondary": 2, "home": 3}
        if args[1] not in names:
            raise ConsoleError(f"unknown address space {args[1]!r} (primary, secondary, home)")
        asc = names[args[1]]
    v = s.value(args[0])
    real, absolute, host = s.translate(v, asc)
    info = s.page_info(host >> PAGE_SHIFT) if host < s.machine.memory.size else None
    out = Output().add(
        ("addr", f"virtual {v:#x}"), " -> ", f"real {real:#x} -> ", f"guest absolute {absolute:#x} -> ",
        ("addr", f"host {host:#x}"),
    )  # fmt: skip
    if info is not None:
        out.add("frame ", ("addr", f"{info.frame:#x}"), ": ", (_state_style(info.state), info.state))
    return out


@command("print", "print EXPRESSION", "evaluate an expression (registers, symbols, [address], + and -)",
         aliases=("p",), complete=("loc",))  # fmt: skip
def _print(s: Session, args: list[str]) -> Output:
    """Shows the value in hex and decimal, and the symbol it points at."""
    if not args:
        raise ConsoleError("print needs an expression")
    v = s.value(" ".join(args))
    sym = s.symbolize(v)
    return Output().add(("value", f"{v:#x}"), f" = {v}", ("sym", f" <{sym}>" if sym else ""))


@command("assert", "assert EXPRESSION OP EXPRESSION", "check a condition in a script (==, !=, <, <=, >, >=)",
         group="session", complete=("loc",))  # fmt: skip
def _assert(s: Session, args: list[str]) -> Output:
    """Fails (and so makes a script exit with status 1) unless the comparison holds. Example:
    assert [counter] == 5"""
    ops = ("==", "!=", "<=", ">=", "<", ">")
    text = " ".join(args)
    for op in ops:
        if op in text:
            lhs, rhs = text.split(op, 1)
            a, b = s.value(lhs), s.value(rhs)
            ok = {"==": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b}[op]
            if not ok:
                return Output.error(f"assertion failed: {lhs.strip()} ({a:#x}) {op} {rhs.strip()} ({b:#x})")
            return Output().text(f"ok: {text}", "ok")
    raise ConsoleError(f"assert needs a comparison ({', '.join(ops)})")


# -- session -------------------------------------------------------------------------------------------------


@command("view", "view [host|owner]",
         "switch the point of view (host: what the hypervisor sees; owner: plaintext)",
         group="session", complete=("view",), while_running=True)  # fmt: skip
def _view(s: Session, args: list[str]) -> Output:
    """host: memory and registers as the real hypervisor can see them (secure pages trap, exported pages
    are ciphertext). owner: the guest owner's debugging view, an emulator privilege that no real machine
    offers; everything it shows is labelled."""
    _no_more(args, 1, "view [host|owner]")
    if args:
        s.set_view(args[0])
    out = Output().text(f"view: {s.view}")
    if s.view == "owner":
        out.add(("owner", OWNER_LABEL))
    return out


@command("cpu", "cpu [N]", "select a CPU (without argument: list CPUs)", group="session", complete=("cpu",))
def _cpu(s: Session, args: list[str]) -> Output:
    """step, registers and virtual addresses refer to the selected CPU."""
    _no_more(args, 1, "cpu [N]")
    if args:
        s.select_cpu(_count(args, 0, 0, "CPU address", 0, 0xFFFF))
    out = Output()
    for addr, c in sorted(s.machine.cpus.items()):
        mark = "*" if addr == s.cpu_address else " "
        out.add(f"{mark} CPU {addr}  ", f"{s.cpu_state(c):<13}", ("addr", f" PSW {shown_psw(s, addr)}"),
                ("secure", "  secure guest" if s.is_secure(c) else ""))  # fmt: skip
    return out


@command("status", "status",
         "CPU, PSW, state, secure or not, view (the status line as text)", group="session",
         while_running=True)  # fmt: skip
def _status(s: Session, args: list[str]) -> Output:
    """The same facts as the status bar of the interactive console."""
    _no_more(args, 0, "status")
    return Output().text("".join(t for _, t in status_line(s)).strip())


_INFO_SUBCOMMANDS: Final = {"registers": "regs", "breakpoints": "breaks", "pages": "pages", "mem": "",
                             "watchpoints": "breaks", "display": "display", "tlb": ""}  # fmt: skip


@command("info", "info [registers|breakpoints|mem|tlb|pages|display]",
         "the machine (memory, CPUs, program, Ultravisor, providers), or one thing as gdb's info shows it",
         group="session", while_running=True, complete=("info",))  # fmt: skip
def _info(s: Session, args: list[str]) -> Output:
    """info alone: what is loaded and which views the lower layers provide. info registers [SET] is regs,
    info breakpoints is breaks, info pages is pages, info display lists the displays; info mem [START
    [END]] lists the selected CPU's virtual pages that translate in [START, END) (default: as much virtual
    space as there is memory, at most 256 MiB), merged into runs, read without side effects. info tlb: the
    selected CPU's TLB as its fills granted it since the last flush (address space, virtual pages, host
    frames, rights r/w/x: a page is writable in the TLB only once a store filled it or its change bit is
    set), merged into runs; a secure CPU's only in the owner view. A unique prefix of a subcommand works
    (info reg, info b)."""
    if args:
        hits = [k for k in _INFO_SUBCOMMANDS if k.startswith(args[0])]
        hits = [args[0]] if args[0] in _INFO_SUBCOMMANDS else hits
        if len(hits) != 1:
            raise ConsoleError(f"info {args[0]!r}: say which of {', '.join(_INFO_SUBCOMMANDS)}")
        if s.running and hits[0] not in ("breakpoints", "watchpoints"):
            raise ConsoleError(f"the machine is running: info {hits[0]} needs it stopped (stop, or Ctrl-C)")
        if hits[0] == "mem":
            return _info_mem(s, args[1:])
        if hits[0] == "tlb":
            from emulator.console.machinecmds import info_tlb

            return info_tlb(s, args[1:])
        return REGISTRY[_INFO_SUBCOMMANDS[hits[0]]].handler(s, args[1:])
    m = s.machine
    out = Output()
    out.text(f"memory {m.memory.size >> 20} MiB, {len(m.cpus)} CPU(s), STSI level {m.level}"
             f"{', deterministic' if m.deterministic else ''}")  # fmt: skip
    if s.program is not None:
        p = s.program
        out.text(f"program {p.path} ({p.kind}, entry {p.entry:#x}, {len(p.symbols)} symbols)")
    has_uv = getattr(m, "uv", None) is not None or getattr(m, "has_ultravisor", False)
    out.text(f"Ultravisor: {'installed' if has_uv else 'none'}")
    describe = getattr(m, "describe", None)
    if describe is not None:
        for line in describe():
            out.text(line)
    for k in ("page_map", "uv_log", "intercepts"):
        out.text(f"provider {k}: {s.providers.sources.get(k, 'none')}")
    return out


def _info_mem(s: Session, args: list[str]) -> Output:
    _no_more(args, 2, "info mem [START [END]]")
    cpu = s.cpu
    if not cpu.psw[0] & (1 << 58):
        return Output().text(f"CPU {s.cpu_address}: DAT is off (virtual = real; real 0-0x1fff <-> prefix "
                             f"{cpu.prefix:#x})")  # fmt: skip
    start = s.value(args[0]) & ~0xFFF if args else 0
    end = s.value(args[1]) if len(args) > 1 else start + min(s.machine.memory.size, 256 << 20)
    if not start < end <= 1 << 64 or (end - start) >> 12 > 1 << 16:
        raise ConsoleError("info mem: START < END, at most 65536 pages (256 MiB) at a time")
    runs: list[list[int]] = []  # [virtual start, real start, pages]
    for v in range(start, end, 4096):
        try:
            real = s.translate(v)[0]
        except ConsoleError:
            continue
        if runs and runs[-1][0] + (runs[-1][2] << 12) == v and runs[-1][1] + (runs[-1][2] << 12) == real:
            runs[-1][2] += 1
        else:
            runs.append([v, real, 1])
    out = Output().text(f"CPU {s.cpu_address}: virtual pages that translate in {start:#x}-{end - 1:#x}"
                        " (primary space)", "heading")  # fmt: skip
    for v, r, n in runs:
        out.add(("addr", f"{v:#018x}-{v + (n << 12) - 1:#018x}"), f" -> real {r:#x}", ("dim", f"  {n} pages"))
    return out if runs else out.text("no page translates")


@command("console", "console", "show the guest's console output so far", group="session", while_running=True)
def _console(s: Session, args: list[str]) -> Output:
    """Everything the guest wrote to the SCLP console (new output is also shown after each run)."""
    _no_more(args, 0, "console")
    data = bytes(s.machine.console).decode("ascii", "replace")
    s.console_seen = len(s.machine.console)
    return Output().text(data.rstrip("\n") if data else "(no console output)")


@command("send", "send TEXT", "type a line into the guest's console (SCLP input)", group="session",
         while_running=True)  # fmt: skip
def _send(s: Session, args: list[str]) -> Output:
    """The text and a newline arrive as an SCLP event with a service signal."""
    if not args:
        raise ConsoleError("send needs text")
    s.machine.feed_console((" ".join(args) + "\n").encode())
    return Output().text(f"sent {len(' '.join(args)) + 1} bytes")


@command("help", "help [COMMAND]", "list commands, or explain one", aliases=("h", "?"), group="session",
         complete=("cmd",), while_running=True)  # fmt: skip
def _help(s: Session, args: list[str]) -> Output:
    """help alone lists every command by group; help COMMAND shows its usage, aliases and details."""
    out = Output()
    if args:
        cmd = lookup(args[0])
        if cmd is None:
            raise ConsoleError(f"no command {args[0]!r}")
        for line in textwrap.wrap(cmd.usage, s.columns, subsequent_indent="    ", break_on_hyphens=False):
            out.add(("mnemonic", line))
        out.text("\n".join(textwrap.wrap(cmd.summary, s.columns, break_on_hyphens=False)))
        if cmd.aliases:
            out.text("aliases: " + ", ".join(cmd.aliases), "dim")
        if cmd.help:
            out.text("")
            for line in reflow(cmd.help, s.columns):
                out.text(line)
        return out
    col = 47 if s.columns >= 110 else 26  # the summaries' column
    for group in GROUPS:
        out.add(("heading", group))
        for cmd in REGISTRY.values():
            if cmd.group == group:
                for line in columns(cmd.usage, cmd.summary, col, s.columns, indent=2):
                    if line.startswith("  ") and not line.startswith(" " * col):  # the usage (and summary)
                        usage = line[: col].rstrip() if len(line) > col and line[col - 1] == " " else line
                        out.add(("mnemonic", usage), line[len(usage):])
                    else:
                        out.text(line)
    note = "Numbers are decimal or 0x-hex; addresses may use symbols, registers, + - and [address]."
    out.text("\n".join(textwrap.wrap(note, s.columns)), "dim")
    return out


@command("quit", "quit [STATUS]", "leave the console (scripts: with this exit status)", aliases=("q", "exit"),
         group="session", while_running=True)  # fmt: skip
def _quit(s: Session, args: list[str]) -> Output:
    """Stops a running machine first."""
    _no_more(args, 1, "quit [STATUS]")
    status = _count(args, 0, 0, "status", 0, 255)
    if s.running:
        s.stop("console closed")
    raise QuitRequest(status)


def completion_words(s: Session, kind: str) -> list[str]:
    """Candidate words for one completion kind."""
    if kind == "loc":
        from emulator.console.expr import REGISTER_NAMES

        return sorted(s.symbols) + REGISTER_NAMES + [f"{sp}:" for sp in SPACES]
    if kind == "bpkind":
        return ["uvc", "sie", "secure", "page", *sorted(s.symbols)]
    if kind == "uvcmd":
        from emulator.console.tables import uv_commands

        return [c.short for c in uv_commands()] + [f"{c.code:#06x}" for c in uv_commands()]
    if kind == "sie":
        return [f"{c:#04x}" for c in SIE_INTERCEPTS]
    if kind == "view":
        return list(VIEWS)
    if kind == "regset":
        return ["gpr", "cr", "ar", "fpr", "vr", "all"]
    if kind == "bpnum":
        return [str(n) for n in s.breakpoints] + ["all"]
    if kind == "cpu":
        return [str(a) for a in s.machine.cpus]
    if kind == "cmd":
        return sorted(REGISTRY)
    if kind == "bpkinds":
        return list(BP_KINDS)
    if kind == "info":
        return list(_INFO_SUBCOMMANDS)
    return []

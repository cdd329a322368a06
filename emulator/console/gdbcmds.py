"""Console commands for people who live in gdb: x/NFU, set, tbreak, display, bt, finish, log."""

from __future__ import annotations

import re
from typing import Final

from emulator.console.cmdbase import (
    STOP_HOOKS,
    command,
    count,
    disasm_lines,
    no_more,
    space_addr,
    stop_output,
)
from emulator.console.disasm import disassemble
from emulator.console.errors import ConsoleError
from emulator.console.expr import parse_number
from emulator.console.render import Output
from emulator.console.session import OWNER_LABEL, Session
from emulator.console.unwind import backtrace
from emulator.errors import EmulatorError

__all__ = ["examine", "parse_format", "set_register"]

_SIZES: Final = {"b": 1, "h": 2, "w": 4, "g": 8}
_FORMATS: Final = "xducsi"
_PER_LINE: Final = {1: 8, 2: 8, 4: 4, 8: 2}
_FORMAT_RE: Final = re.compile(r"/(\d*)([a-z]*)$")


def parse_format(text: str, last: tuple[str, str]) -> tuple[int, str, str]:
    """``/NFU`` -> (count, format, unit); a missing format or unit is the last one used (gdb's rule)."""
    m = _FORMAT_RE.match(text)
    if m is None:
        raise ConsoleError(f"bad format {text!r} (/NFU: count, format x d u c s i, unit b h w g; e.g. /4xw)")
    n = int(m.group(1)) if m.group(1) else 1
    fmt, unit = last
    for ch in m.group(2):
        if ch in _FORMATS:
            fmt = ch
        elif ch in _SIZES:
            unit = ch
        else:
            raise ConsoleError(f"unknown format letter {ch!r} (formats x d u c s i, units b h w g)")
    if not 1 <= n <= 4096:
        raise ConsoleError(f"count {n} must be between 1 and 4096")
    return n, fmt, unit


def _label(s: Session, space: str, addr: int) -> str:
    sym = s.symbolize(addr) if space == "virt" else ""
    return f"{addr:#x}" + (f" <{sym}>" if sym else "") + ":"


def examine(s: Session, fmt_text: str, target: str | None) -> Output:
    """``x/NFU [SPACE:]ADDRESS``: N units of U bytes shown as F, read the way the current view may."""
    n, fmt, unit = parse_format(fmt_text or "/", s.x_format)
    s.x_format = (fmt, unit)
    if target is None:
        if s.x_next is None:
            raise ConsoleError("x needs an address (the first time)")
        space, addr = s.x_next
    else:
        space, addr = space_addr(s, target)
    out = Output()
    if s.view == "owner":
        out.add(("owner", OWNER_LABEL))
    if fmt == "i":
        segs = s.read(space, addr, n * 6)
        code = b""
        for seg in segs:
            if seg.data is None:
                break
            code += seg.data
        insns = list(disassemble(code, addr, n))
        out.extend(disasm_lines(s, insns, s.cpu.pc if space == "virt" else None, labels=False))
        if not insns:
            why = next((g.note for g in segs if g.data is None), "no code")
            out.add(("addr", f"{addr:#x}"), "  ", ("trap", why))
        s.x_next = (space, addr + sum(i.size for i in insns))
        return out
    if fmt == "s":
        for _ in range(n):
            data, note = _read_string(s, space, addr)
            text = data.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"')
            out.add(("addr", _label(s, space, addr)), " ", ("value", f'"{text}"'),
                    ("trap", f"  {note}" if note else ""))  # fmt: skip
            addr += len(data) + 1
            if note:
                break
        s.x_next = (space, addr)
        return out
    size = 1 if fmt == "c" else _SIZES[unit]
    total = n * size
    data = b""
    trap = ""
    for seg in s.read(space, addr, total):
        if seg.data is None:
            trap = f"{seg.address:#x}: {seg.note}"
            break
        data += seg.data
    per = _PER_LINE[size]
    for i in range(0, len(data) // size, per):
        at = addr + i * size
        frags: list[tuple[str, str] | str] = [("addr", _label(s, space, at))]
        for j in range(i, min(i + per, len(data) // size)):
            frags += ["  ", ("value", _unit(data[j * size : (j + 1) * size], fmt))]
        out.add(*frags)
    if trap:
        out.add(("trap", trap))
    s.x_next = (space, addr + total)
    return out


def _unit(b: bytes, fmt: str) -> str:
    v = int.from_bytes(b, "big")
    if fmt == "x":
        return f"0x{v:0{2 * len(b)}x}"
    if fmt == "d":
        return str(v - (1 << (8 * len(b))) if v >> (8 * len(b) - 1) else v)
    if fmt == "u":
        return str(v)
    ch = chr(v)
    shown = repr(ch) if 32 <= v < 127 else f"'\\x{v:02x}'"
    return f"{v:3d} {shown}"


def _read_string(s: Session, space: str, addr: int) -> tuple[bytes, str]:
    out = b""
    while len(out) < 200:
        seg = s.read(space, addr + len(out), 1)[0]
        if seg.data is None:
            return out, seg.note
        if seg.data == b"\0":
            return out, ""
        out += seg.data
    return out, "(200 bytes without a NUL: cut)"


@command("x", "x [/NFU] [[SPACE:]ADDRESS]", "examine memory as gdb does: N units (b h w g) as x d u c s i",
         complete=("loc",))  # fmt: skip
def _x(s: Session, args: list[str]) -> Output:
    """x/4xw counter (or x /4xw counter): four words in hex; x/8xb, x/2dg (signed doublewords), x/3ug,
    x/16c, x/s msg (a NUL-ended string), x/5i pc (instructions, branch targets named). Format and unit
    are remembered; without an address x goes on after the last one. The address takes virt: (default),
    real:, abs:, host:."""
    fmt = ""
    if args and args[0].startswith("/"):
        fmt, args = args[0], args[1:]
    no_more(args, 1, "x [/NFU] [[SPACE:]ADDRESS]")
    return examine(s, fmt, args[0] if args else None)


# -- set ---------------------------------------------------------------------------------------------------

_REG_RE: Final = re.compile(r"^[$%]?(r|gr|cr|c|a|f)(\d{1,2})$|^[$%]?(pc|sp|psw\.addr|psw\.mask|prefix|fpc)$")
_TYPES: Final = {"char": 1, "b": 1, "short": 2, "h": 2, "int": 4, "w": 4, "long": 8, "g": 8}


def set_register(s: Session, name: str, value: int) -> str:
    """Set a register of the selected CPU by name; returns its canonical name. The host view refuses a
    secure CPU's registers (they are the Ultravisor's), as the real hypervisor would find."""
    m = _REG_RE.match(name.lower())
    if m is None:
        raise ConsoleError(f"unknown register {name!r} (r0-r15, cr0-cr15, a0-a15, f0-f15, pc, sp, psw.mask, "
                           "prefix, fpc)")  # fmt: skip
    cpu = s.cpu
    if s.is_secure():
        if s.view == "host":
            raise ConsoleError(
                f"CPU {s.cpu_address} runs a secure guest: the Ultravisor holds its registers; the host has "
                "only the SIE state description, whose PSW and pv_grregs are copies (format-4 SIE takes the "
                "host's registers back only as the results of an intercepted instruction, 0x68): the host "
                "cannot set them (view owner: the debug capability)"
            )
        return _set_secure_register(s, m, name, value)
    vcpu = getattr(cpu, "vcpu", None)  # a normal guest's vCPU: the hypervisor's own (KVM_SET_REGS)
    set_psw = vcpu.set_psw if vcpu is not None else cpu.set_psw  # a vCPU's PSW is in its state description
    if m.group(1):
        kind, i = m.group(1), int(m.group(2))
        if i > 15:
            raise ConsoleError(f"no register {name!r} (0-15)")
        kind = {"gr": "r", "c": "cr"}.get(kind, kind)
        mask64 = value & (1 << 64) - 1
        if kind == "r":
            cpu.set_gpr(i, mask64)
        elif kind == "cr":
            cpu.set_cr(i, mask64)
        elif kind == "a":
            if value >> 32:
                raise ConsoleError(f"a{i} is 32 bits: {value:#x} does not fit")
            cpu.set_ar(i, value)
        else:
            cpu.set_fpr(i, mask64)
        return f"{kind}{i}"
    reg = m.group(3)
    mask, addr = cpu.psw
    if reg == "sp":
        cpu.set_gpr(15, value & (1 << 64) - 1)
    elif reg in ("pc", "psw.addr"):
        set_psw(mask, cpu.wrap(value))
    elif reg == "psw.mask":
        set_psw(value & (1 << 64) - 1, addr)
    elif reg == "prefix":
        size = vcpu.vm.memory_size if vcpu is not None else s.machine.memory.size
        if value & 0x1FFF or value >= size:
            raise ConsoleError(f"prefix {value:#x} must be 8 KiB aligned and inside memory")
        cpu.prefix = value
    else:
        if value >> 32:
            raise ConsoleError(f"fpc is 32 bits: {value:#x} does not fit")
        cpu.set_fpc(value)
    return reg


def _set_secure_register(s: Session, m: re.Match[str], name: str, value: int) -> str:
    """The owner view's write of a secure CPU's register: through the machine's explicit debug capability
    (``SecureDebug.set_register``: the Ultravisor's record, an emulator privilege)."""
    debug = getattr(s.machine, "debug", None)
    vcpu = getattr(s.cpu, "vcpu", None)
    if debug is None or vcpu is None:
        raise ConsoleError("this machine gives the console no debug capability over its secure CPUs")
    if m.group(1):
        kind, index = {"gr": "r", "c": "cr"}.get(m.group(1), m.group(1)), int(m.group(2))
        if index > 15:
            raise ConsoleError(f"no register {name!r} (0-15)")
        shown = f"{kind}{index}"
    else:
        reg = m.group(3)
        kind, index = {"sp": ("r", 15), "pc": ("psw.addr", 0)}.get(reg, (reg, 0))
        shown = reg
        if kind == "psw.addr":
            value = s.cpu.wrap(value)
    try:
        debug.set_register(vcpu.vm, vcpu.address, kind, index, value & (1 << 64) - 1)
    except EmulatorError as e:
        raise ConsoleError(str(e)) from None
    return shown


@command("set", "set REGISTER = EXPR | set {TYPE}[SPACE:]ADDRESS = EXPR",
         "write a register or memory (TYPE char/short/int/long or b/h/w/g)", complete=("loc",))  # fmt: skip
def _set(s: Session, args: list[str]) -> Output:
    """set r2 = 5; set pc = bump; set {long}counter = 0x10; set {char}abs:0x1000 = 65; set var and $ are
    accepted as in gdb. Memory is stored the way the view may: the host view as a host access (secure or
    donated storage refuses it with PGM 0x3D, as it would refuse the hypervisor), the owner view as firmware
    (an emulator privilege). A secure CPU's registers cannot be set in the host view (the Ultravisor holds
    them); the owner view sets them through the machine's debug capability, in the Ultravisor's record."""
    text = " ".join(args)
    if text.startswith("var "):
        text = text[4:]
    if "=" not in text or text.count("=") > 1 and "==" in text:
        raise ConsoleError("usage: set REGISTER = EXPR | set {TYPE}[SPACE:]ADDRESS = EXPR")
    lhs, rhs = (t.strip() for t in text.split("=", 1))
    value = s.value(rhs)
    m = re.match(r"^\{(\w+)\}\s*(.+)$", lhs) or re.match(r"^(\*)\s*(.+)$", lhs)
    if m is None:
        reg = set_register(s, lhs, value)
        out = Output()
        if s.view == "owner" and s.is_secure():
            out.add(("owner", OWNER_LABEL))
            out.text("(written through the debug capability into the Ultravisor's record of the secure CPU)",
                     "dim")  # fmt: skip
        return out.add(("reg", reg), " = ", ("value", f"{value & (1 << 64) - 1:#x}"))
    size = 8 if m.group(1) == "*" else _TYPES.get(m.group(1))
    if size is None:
        raise ConsoleError(f"unknown type {m.group(1)!r} (char, short, int, long or b, h, w, g)")
    if value >= 1 << 63:  # expressions are 64-bit: -1 is 0xffffffffffffffff; a typed store sees -1 (as gdb)
        value -= 1 << 64
    if not -(1 << (8 * size - 1)) <= value < 1 << (8 * size):
        shown = f"{value:#x}" if value >= 0 else str(value)
        raise ConsoleError(f"{shown} does not fit in {size} byte{'s' if size > 1 else ''}")
    space, addr = space_addr(s, m.group(2))
    data = (value & (1 << (8 * size)) - 1).to_bytes(size, "big")
    s.write(space, addr, data)
    out = Output()
    if s.view == "owner":
        out.add(("owner", OWNER_LABEL))
    where = f"{space}:{addr:#x}" if space != "virt" else f"{addr:#x}"
    return out.add(f"stored {data.hex()} at ", ("addr", where), f" ({size} byte{'s' if size > 1 else ''})")


# -- tbreak, display --------------------------------------------------------------------------------


def split_condition(args: list[str]) -> tuple[str, str]:
    """``LOCATION [if EXPR]`` -> (location, condition)."""
    if "if" in args:
        i = args.index("if")
        if i == 0 or i == len(args) - 1:
            raise ConsoleError("usage: break LOCATION if EXPR (e.g. break bump if r2 == 3)")
        return " ".join(args[:i]), " ".join(args[i + 1 :])
    return " ".join(args), ""


@command("tbreak", "tbreak LOCATION [if EXPR]", "a breakpoint that is deleted when it stops the machine",
         group="break", complete=("loc",))  # fmt: skip
def _tbreak(s: Session, args: list[str]) -> Output:
    """Like break LOCATION, but it stops once: it is deleted at its stop (a condition may be added)."""
    if not args:
        raise ConsoleError("tbreak needs a location")
    loc, cond = split_condition(args)
    bp = s.add_breakpoint("addr", loc, condition=cond, temporary=True)
    return Output().add(("ok", "breakpoint "), bp.describe())


@command("display", "display [/NFU] [EXPR]", "show an expression (or memory, with a format) after every stop",
         group="break", complete=("loc",))  # fmt: skip
def _display(s: Session, args: list[str]) -> Output:
    """display r2: the value of r2 after every step, next, continue...; display/i pc: the next instruction;
    display/4xw counter: memory as x shows it. Without arguments: show every display now."""
    fmt = ""
    if args and args[0].startswith("/"):
        fmt, args = args[0], args[1:]
        parse_format(fmt, s.x_format)  # a bad format is refused now
    if not args:
        if fmt:
            raise ConsoleError("display/FMT needs an expression")
        return show_displays(s) if s.displays else Output().text("no displays")
    expr = " ".join(args)
    if fmt:
        space_addr(s, expr)  # a mistake is refused now, not at every stop
    else:
        s.value(expr)
    n = max(s.displays, default=0) + 1
    s.displays[n] = (fmt, expr)
    return _one_display(s, n)


@command("undisplay", "undisplay [N]", "stop showing display N (all without argument)", group="break")
def _undisplay(s: Session, args: list[str]) -> Output:
    """Removes one display by number, or all of them."""
    no_more(args, 1, "undisplay [N]")
    if not args:
        n = len(s.displays)
        s.displays.clear()
        return Output().text(f"deleted {n} display{'s' if n != 1 else ''}")
    num = parse_number(args[0])
    if num is None or s.displays.pop(num, None) is None:
        raise ConsoleError(f"no display {args[0]!r}")
    return Output().text(f"deleted display {num}")


def _one_display(s: Session, n: int) -> Output:
    fmt, expr = s.displays[n]
    saved = (s.x_format, s.x_next)
    try:
        if fmt:
            body = examine(s, fmt, expr)
            out = Output().add(("dim", f"{n}: x{fmt} {expr}"))
            return out.extend(body)
        v = s.value(expr)
        sym = s.symbolize(v)
        shown = ("sym", f" <{sym}>" if sym else "")
        return Output().add(("dim", f"{n}: "), f"{expr} = ", ("value", f"{v:#x}"), shown)
    except ConsoleError as e:
        return Output().add(("dim", f"{n}: {expr}: "), ("trap", str(e)))
    finally:
        s.x_format, s.x_next = saved


def show_displays(s: Session) -> Output:
    """Every display, in order (after each stop)."""
    out = Output()
    for n in sorted(s.displays):
        out.extend(_one_display(s, n))
    return out


STOP_HOOKS.append(show_displays)


# -- bt, finish --------------------------------------------------------------------------------


@command("bt", "bt [N]", "the call stack of the selected CPU (DWARF CFI, else prologue, else back chain)",
         aliases=("backtrace", "where"), complete=("num",))  # fmt: skip
def _bt(s: Session, args: list[str]) -> Output:
    """Frame 0 is the PC. Each caller is found by the program's DWARF call-frame information at the frame's
    address when the ELF has it (.debug_frame or .eh_frame), otherwise by the s390x back chain (0(r15): the
    caller's stack pointer; 112 of it: the saved r14), which needs code built with -mbackchain; a function
    at its first instruction has its return address in r14. Stack reads go through the view (the host view
    of a secure guest reads nothing). N: at most N frames (default 64)."""
    no_more(args, 1, "bt [N]")
    frames = backtrace(s, count(args, 0, 64, "frame count", 1, 4096))
    out = Output()
    for i, f in enumerate(frames):
        sym = s.symbolize(f.pc)
        out.add(("dim", f"#{i:<3}"), ("addr", f"{f.pc:#x}"), ("sym", f" <{sym}>" if sym else ""),
                ("dim", f"  sp {f.sp:#x}" + (f"  ({f.how})" if i else "")))  # fmt: skip
    return out


@command("finish", "finish", "run until the selected frame returns to its caller (bt's frame 1)", group="run")
def _finish(s: Session, args: list[str]) -> Output:
    """Runs at full speed to the return address bt finds for frame 1; a hit there from a deeper frame (the
    stack pointer below the caller's) runs on, so recursion finishes the right call. Shows r2 (the return
    value in the s390x ELF ABI) at the end."""
    no_more(args, 0, "finish")
    frames = backtrace(s, 2)
    if len(frames) < 2:
        raise ConsoleError(
            "finish: no caller found (the outermost frame, or no CFI, prologue nor back chain says)"
        )
    caller = frames[1]
    out = Output().add(("dim", f"run till exit from {frames[0].pc:#x} <{s.symbolize(frames[0].pc)}>"))
    while True:
        stop = s.cont(temp=caller.pc)
        if stop.kind != "step" or s.cpu.pc != caller.pc or s.cpu.gpr(15) >= caller.sp:
            break
    out.extend(stop_output(s, stop))
    if stop.kind == "step":
        out.add("value returned: r2 = ", ("value", f"{s.cpu.gpr(2):#x}"))
    return out


@command("pager", "pager [on|off]", "show long output a screenful at a time (interactive console)",
         group="session", while_running=True)  # fmt: skip
def _pager(s: Session, args: list[str]) -> Output:
    """In the interactive console, output longer than the terminal (uvlog all, help, x/200i, pages all)
    stops after each screenful and asks, as gdb does: Enter or space for the next, c for the rest without
    stopping, q (or Ctrl-C) for no more. `pager off` shows long output whole; scripts, pipes and the log
    always get it whole, as plain lines. `uvlog --brief` is the one-line form of the UV log."""
    if args and args[0] not in ("on", "off") or len(args) > 1:
        raise ConsoleError("usage: pager [on|off]")
    if args:
        s.pager = args[0] == "on"
    return Output().text(f"pager {'on' if s.pager else 'off'}")


@command("log", "log FILE | log off", "append every command and its output to FILE (log off: stop)",
         group="session", while_running=True)  # fmt: skip
def _log(s: Session, args: list[str]) -> Output:
    """The session log: each command line as typed after "(zuv) ", then its output as plain text (no
    colours), appended to FILE. Output of a run in the background is logged when the run ends."""
    if len(args) != 1:
        raise ConsoleError("usage: log FILE | log off")
    if s.log_file is not None:
        s.log_file.close()
        s.log_file = None
    if args[0] == "off":
        return Output().text("log off")
    try:
        s.log_file = open(args[0], "a", encoding="utf-8")  # noqa: SIM115 - open until log off
    except OSError as e:
        raise ConsoleError(f"log: {args[0]}: cannot open: {e.strerror or e}") from None
    return Output().text(f"logging to {args[0]}")

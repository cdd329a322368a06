"""The console's status line (the console's bottom bar, ``status``) and a CPU's PSW as the view shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.console.session import Session

__all__ = ["shown_psw", "status_line"]


def shown_psw(s: Session, address: int) -> str:
    """A CPU's PSW as the view may show it: in the host view a secure CPU's is the SIE state description's
    (marked SD), if the machine has one, else nothing."""
    c = s.machine.cpus[address]
    if s.view == "host" and s.is_secure(c):
        host_state = getattr(s.machine, "host_state", None)
        sd = dict(host_state(address)) if host_state is not None else {}
        return next((v + " (SD)" for k, v in sd.items() if k.startswith("PSW")), "held by the Ultravisor")
    mask, addr = c.psw
    return f"{mask:016x} {addr:016x}"


def status_line(s: Session, width: int | None = None) -> list[tuple[str, str]]:
    """The status bar: CPU, PSW, guest state, secure or not, view, breakpoints; in ``width`` columns (None:
    no limit) a compact form (short PSW address, fewer words), cut at the end if need be."""
    full = _status_frags(s, compact=False)
    if width is None or sum(len(t) for _, t in full) <= width:
        return full
    out, used = [], 0
    for style, text in _status_frags(s, compact=True):
        if used + len(text) > width:
            text = text[: max(0, width - used)]
        if text:
            out.append((style, text))
        used += len(text)
    return out


def _status_frags(s: Session, compact: bool) -> list[tuple[str, str]]:
    frags: list[tuple[str, str]] = [("class:status.key", " CPU "), ("class:status", f"{s.cpu_address} ")]
    if s.running:
        frags += [("class:status.running", " running "), ("class:status", " (stop or Ctrl-C) ")]
    else:
        psw = shown_psw(s, s.cpu_address)
        if compact:  # the instruction address without its leading zeros
            parts = psw.split(" ")
            if len(parts) >= 2 and len(parts[1]) == 16:
                parts[1] = f"{int(parts[1], 16):#x}"
            psw = " ".join(parts)
        frags += [
            ("class:status.key", " PSW "),
            ("class:status", psw + " "),
            ("class:status.key", "" if compact else " state "),
            ("class:status", (" " if compact else "") + s.cpu_state() + " "),
        ]
        call = getattr(s.machine, "paused_call", None) if s.suspended else None
        if call is not None:
            frags.append(("class:status.running", f" before {call.name} "))
    secure = s.is_secure()
    frags.append(("class:status.secure" if secure else "class:status",
                  (" secure " if compact else " secure guest ") if secure else " non-secure "))  # fmt: skip
    frags.append(("class:status.owner" if s.view == "owner" else "class:status",
                  f" {s.view} " if compact else f" view {s.view} "))  # fmt: skip
    n = sum(1 for b in s.breakpoints.values() if b.enabled)
    frags.append(("class:status", f" bp {n} " if compact else f" breakpoints {n} "))
    return frags

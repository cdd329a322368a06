"""Stops before the hypervisor's own UV calls: the machine's work on a thread that can wait inside one.

The hypervisor issues its UVCs from Python in the middle of its work: the secure IPL of DIAGNOSE 0x308
subcode 10 (Query, Initialize, Create Configuration and CPU, Set Secure Parameters, one Unpack per page,
Verify, Set CPU State), an export when it touches a secure page. To stop *before* one of them the console
runs the machine's work (a ``run`` or a ``step``) on a thread of its own (``Work`` on the machine's one
``Runner`` thread); the hypervisor's
before-call hook (``Hypervisor.before_uvc``) suspends that thread at the call and hands control back to
the console. The suspended thread runs nothing and holds no lock, so every command may look at the machine
(the UV log shows the calls so far); ``continue`` or ``step`` resume it, and the call is issued then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from emulator.console.hostviews import format_field

if TYPE_CHECKING:
    from firmware.uv_codes import UvCommand

__all__ = ["HostUvc", "Runner", "Work", "Abandoned", "decode_block"]

#: Seconds between looks at the work while waiting for it (a signal handler may run in between).
_POLL: Final = 0.25


class HostUvc:
    """One of the hypervisor's own UV calls, about to be issued: its block as the host wrote it (host view:
    the hypervisor's own storage), decoded on first use (a filter that looks at the code alone costs no
    decoding)."""

    __slots__ = ("code", "name", "addr", "_cmd", "_raw", "_fields")

    def __init__(self, code: int, name: str, addr: int, cmd: UvCommand | None = None, raw: bytes = b"",
                 fields: tuple[tuple[str, str], ...] | None = None) -> None:  # fmt: skip
        self.code = code
        self.name = name
        self.addr = addr  # host absolute address of the UVCB
        self._cmd, self._raw, self._fields = cmd, raw, fields

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """The block's fields (``decode_block``)."""
        if self._fields is None:
            self._fields = decode_block(self._cmd, self._raw) if self._cmd is not None else ()
        return self._fields

    def __repr__(self) -> str:
        return f"HostUvc(code={self.code:#06x}, name={self.name!r}, addr={self.addr:#x})"

    def headline(self) -> str:
        """``UVC 0x0301 Unpack (host)``: the hypervisor's call."""
        return f"UVC {self.code:#06x} {self.name} (host)"

    def lines(self, width: int = 78) -> list[str]:
        """The block at its host address, one field a line (``uvlog``'s layout), the fields that are 0 on
        one line (before the call those are mostly the outputs), each line at most ``width`` columns."""
        out = [f"UVCB at host {self.addr:#x}:"]
        zero = [name for name, value in self.fields if value in ("0x0", "0 0 0 0", "0")]
        out += [f"  {name:<26} {value}"[:width] for name, value in self.fields if name not in zero]
        if zero:
            text = "  zero: " + " ".join(zero)
            out.append(text if len(text) <= width else text[: width - 4].rsplit(" ", 1)[0] + " ...")
        return out


def decode_block(cmd: UvCommand, raw: bytes) -> tuple[tuple[str, str], ...]:
    """The fields of a control block (header and reserved fields left out), formatted as ``uvlog`` shows
    them; () for a command without a block layout or a block too short for it."""
    import ctypes

    from firmware import uv_blocks as B

    layout = B.LAYOUTS.get(cmd.struct) if cmd.struct else None
    if layout is None or len(raw) < ctypes.sizeof(layout):
        return ()
    blk = B.parse(layout, raw)
    out: list[tuple[str, str]] = []
    for name, _ in layout._fields_:  # noqa: SLF001 - the record's declared fields
        if name == "header" or name.startswith(("res", "reserved")):
            continue
        value: Any = getattr(blk, name)
        if isinstance(value, ctypes.Array):
            value = tuple(value)
        if isinstance(value, (int, tuple)):
            out.append((name, format_field(value)))
    return tuple(out)


class Abandoned(BaseException):  # noqa: N818 - control flow: unwinds a suspended work that is given up
    """Raised inside a suspended work that the console gives up (``Work.abandon``: close, reset, reload)."""


class Runner:
    """The one thread ("zuv-machine") that runs a machine's work, one work after another, for the machine's
    life: a thread started per run or step cost ~0.1 ms and, on a loaded machine, GIL hand-offs between
    the new thread and the console's (the step's latency tail: p95 up to ~4 ms)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._job: Work | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, work: Work) -> None:
        """Have the thread run ``work`` (it is idle: a machine has one work at a time)."""
        with self._cv:
            if self._closed:
                raise RuntimeError("the machine's work thread was closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="zuv-machine", daemon=True)
                self._thread.start()
            self._job = work
            self._cv.notify_all()

    def is_thread(self) -> bool:
        """True when called from the runner's thread (inside the work it runs)."""
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                job, self._job = self._job, None
            if job is None:
                return
            job._main()  # noqa: SLF001 - the runner is the work's thread

    def close(self) -> None:
        """End the thread once it is idle (the machine closes)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class Work:
    """A function run on the machine's ``Runner`` thread that may suspend itself and be resumed.

    ``start`` and ``resume`` return when the work has finished (True) or suspended itself (False). The
    work calls ``suspend`` on its own thread; it returns when the console resumes it, or raises
    ``Abandoned`` when the console gives the work up.
    """

    def __init__(self, fn: Callable[[], Any], runner: Runner) -> None:
        self._fn = fn
        self._runner = runner
        self._cv = threading.Condition()
        self._state = "new"  # running, suspended, done
        self._value: Any = None
        self._error: BaseException | None = None
        #: True once the console gave the work up: ``suspend`` raises ``Abandoned``, hooks let calls through
        self.abandoned = False

    @property
    def suspended(self) -> bool:
        """True while the work waits in ``suspend``."""
        return self._state == "suspended"

    def on_thread(self) -> bool:
        """True when called from the work's own thread."""
        return self._runner.is_thread()

    def _main(self) -> None:
        value, error = None, None
        try:
            value = self._fn()
        except BaseException as e:  # noqa: BLE001 - handed to the thread that waits for the work
            error = e
        with self._cv:
            self._value, self._error, self._state = value, error, "done"
            self._cv.notify_all()

    def _wait(self) -> bool:
        with self._cv:
            while self._state == "running":
                self._cv.wait(_POLL)
            return self._state == "done"

    def start(self) -> bool:
        """Run the work; True when it finished, False when it suspended itself."""
        self._state = "running"
        self._runner.submit(self)
        return self._wait()

    def resume(self) -> bool:
        """Let a suspended work go on; True when it finished, False when it suspended itself again."""
        with self._cv:
            if self._state != "suspended":
                raise RuntimeError(f"the work is {self._state}, not suspended")
            self._state = "running"
            self._cv.notify_all()
        return self._wait()

    def suspend(self) -> None:
        """On the work's thread: wait until resumed (raises ``Abandoned`` when given up instead)."""
        with self._cv:
            self._state = "suspended"
            self._cv.notify_all()
            while self._state == "suspended":
                self._cv.wait(_POLL)
        if self.abandoned:
            raise Abandoned

    def abandon(self) -> None:
        """Give a suspended work up: it unwinds (``Abandoned``) and ends; waits for that."""
        self.abandoned = True
        if self._state == "suspended":
            self.resume()
        elif self._state == "running":
            self._wait()

    def result(self) -> Any:
        """What the finished work returned (or raise what it raised)."""
        if self._error is not None:
            raise self._error
        return self._value

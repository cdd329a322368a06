"""Ctrl-C for runs inside unicorn: the run on a worker thread, SIGINT answered in the main thread.

A guest in a tight loop never returns to Python, so a ``KeyboardInterrupt`` would wait for it (or hit a
hook in the middle of a fill). ``run_interruptible`` therefore runs the work on a worker thread and replaces
SIGINT's handler while it runs: the first Ctrl-C asks the run to stop (``on_interrupt``: a halt request,
which reaches unicorn through ``emu_stop``) and repeats the request until the run has ended, so a request
that lands between two runs is not lost; a second Ctrl-C ends the process at once with ``os._exit`` (no
interpreter shutdown under a thread that is still inside unicorn, which crashed with a segmentation fault).
No ``KeyboardInterrupt`` is ever raised into the waiting thread (one raised inside ``Thread.join`` could
mark a live thread as finished).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_interruptible", "EXIT_INTERRUPTED"]

T = TypeVar("T")

#: The exit status of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Seconds between repeated halt requests after the first Ctrl-C.
_REPEAT = 0.25


def run_interruptible(fn: Callable[[], T], on_interrupt: Callable[[], None], *, quiet: bool = False) -> T:
    """Run ``fn`` on a worker thread; Ctrl-C calls ``on_interrupt`` (until ``fn`` returns), a second one
    exits the process with status 130. Returns what ``fn`` returns or raises what it raises.

    Outside the main thread (no signals arrive there) ``fn`` simply runs. ``quiet`` leaves out the line on
    stderr that tells the user what the first Ctrl-C does.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    done = threading.Event()
    box: dict[str, object] = {}
    presses = 0

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = e
        finally:
            done.set()

    def on_sigint(_signum: int, _frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            if not quiet:
                print("\nzuv: interrupted: stopping (Ctrl-C again to quit at once)", file=sys.stderr,
                      flush=True)  # fmt: skip
            on_interrupt()
            return
        if done.is_set():
            return
        try:
            sys.stdout.flush()
            print("\nzuv: interrupted again: quitting", file=sys.stderr, flush=True)
        finally:
            os._exit(EXIT_INTERRUPTED)  # the worker may still be inside unicorn: no interpreter shutdown

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        worker = threading.Thread(target=work, name="zuv-cpu", daemon=True)
        worker.start()
        while not done.wait(_REPEAT):
            if presses:
                on_interrupt()  # a request that arrived between two runs of the work is not lost
    finally:
        signal.signal(signal.SIGINT, old)
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]

"""Ctrl-C while the ``zuv`` program starts: until ``emulator.cli.main`` takes Ctrl-C over, it ends the process
as it ends any program (the default action, no ``KeyboardInterrupt`` traceback out of an import).

``emulator.cli`` imports this module before its other imports (which take seconds on a loaded machine). The
change applies only when ``emulator.cli`` is the program (``python -m emulator.cli``, the ``zuv`` script) on
its main thread with Python's own SIGINT handler in place; a program that imports zuv keeps its handler.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

__all__ = ["hand_over"]


def _starts_zuv() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "emulator.cli":
        return True
    return Path(getattr(main, "__file__", None) or "").name == "zuv"


_held: object = None  #: the handler replaced at start-up (Python's), restored by ``hand_over``
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    and _starts_zuv()
):
    _held = signal.signal(signal.SIGINT, signal.SIG_DFL)


def hand_over() -> None:
    """Give Ctrl-C back to Python (a ``KeyboardInterrupt``) for ``main`` to answer; nothing if start-up
    changed nothing."""
    global _held  # noqa: PLW0603 - once per process
    if _held is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _held)  # type: ignore[arg-type]
        _held = None

"""The console program: an interactive prompt_toolkit application, and the non-interactive script runner.

Interactive: history, completion of commands, registers, symbols and addresses (``ConsoleCompleter``),
coloured output, and a status line (CPU, PSW, guest state, secure or not, view). ``continue`` runs the
machine on a worker thread so the prompt stays alive: ``stop`` or Ctrl-C halts it, guest console output
appears as it comes. Input and output are injectable (``run_interactive(..., input=, output=)``), which is
how the tests drive it with a pipe.

Non-interactive (``run_script``): each command is echoed after the prompt, its output follows, and the
exit status is 0 when every command succeeded, 1 when one failed (or ``quit N``); a script with a line that
is no console command is refused before it runs (``script_problem``: ``zuv console`` exits 2). Each
command runs on a worker thread (``emulator.interrupt``): Ctrl-C stops a long run where it is, shows its
stop, and ends the script with status 130.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text

from emulator.console.commands import REGISTRY, QuitRequest, completion_words, execute, lookup
from emulator.console.render import STYLE, Output
from emulator.console.status import status_line
from emulator.interrupt import EXIT_INTERRUPTED, run_interruptible

if TYPE_CHECKING:
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output as PtOutput

    from emulator.console.session import Session

__all__ = ["ConsoleCompleter", "run_script", "run_interactive", "PROMPT", "load_console_bindings"]

PROMPT = "(zuv) "

#: Completion kinds per command argument that depend on the first argument (break uvc / break sie).
_SUBKINDS = {("break", "uvc"): "uvcmd", ("break", "sie"): "sie"}


class ConsoleCompleter(Completer):
    """Completes command names, then each argument by the kind the command registry declares."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_completions(self, document: Document, complete_event: object) -> Iterator[Completion]:
        """Completions for the word before the cursor."""
        text = document.text_before_cursor
        words = text.split()
        if text.endswith(" "):
            words.append("")
        if not words:
            words = [""]
        word = words[-1]
        if len(words) == 1:
            names = sorted(REGISTRY)
            for n in names:
                if n.startswith(word):
                    yield Completion(n, -len(word), display_meta=REGISTRY[n].summary[:50])
            return
        cmd = lookup(words[0])
        if cmd is None:
            return
        pos = len(words) - 2
        kind = _SUBKINDS.get((cmd.name, words[1])) if pos >= 1 else None
        if kind is None:
            if cmd.name == "break" and pos >= 1:
                kind = "loc"
            elif pos < len(cmd.complete):
                kind = cmd.complete[pos]
            else:
                return
        for cand in completion_words(self.session, kind):
            if cand.startswith(word) and cand != word:
                yield Completion(cand, -len(word))


def load_console_bindings(session: Session, busy: threading.Event | None = None) -> KeyBindings:
    """Key bindings: Ctrl-C stops a running machine or a command running in the background (``busy``), and
    clears the line otherwise."""
    kb = KeyBindings()

    @kb.add("c-c")
    def _(event: object) -> None:
        if session.running or (busy is not None and busy.is_set()):
            session.stop("interrupted (Ctrl-C)")
        else:
            event.app.current_buffer.reset()  # type: ignore[attr-defined]

    return kb


def script_problem(lines: Iterable[str]) -> tuple[int, str] | None:
    """The first line of a script that is no console command, as (line number from 1, why), or None. A
    script is checked whole before anything runs (``zuv console --script``, commands from stdin): a file
    that is not a script (an ELF, a C source, a README) is bad input, not a run of failing commands."""
    import shlex

    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        shown = text if len(text) <= 40 else text[:37] + "..."
        bad = next((i for i, ch in enumerate(text) if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F)),
                   None)  # fmt: skip
        if bad is not None:
            return number, (f"control character {text[bad]!r} in column {bad + 1}: not a text of console "
                            "commands")  # fmt: skip
        try:
            words = shlex.split(text)
        except ValueError as e:
            return number, f"cannot split {shown!r} into words: {e}"
        name = words[0].split("/", 1)[0] if "/" in words[0] and not words[0].startswith("/") else words[0]
        if lookup(name) is None:
            return number, (f"unknown command {name!r} in {shown!r} (a script has one console command a "
                            "line, # comments; help lists the commands)")  # fmt: skip
    return None


def run_script(session: Session, lines: Iterable[str], out: TextIO, *, echo: bool = True) -> int:
    """Run commands without a terminal; returns the exit status (0 all succeeded, 1 one failed, or quit's)."""
    status = 0
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if echo:
            out.write(PROMPT + line + "\n")
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            session.stop("interrupted (Ctrl-C)")

        try:  # on a worker thread: Ctrl-C stops a long continue or step (``emulator.interrupt``)
            result = run_interruptible(lambda: execute(session, line), interrupt)  # noqa: B023 - runs at once
        except QuitRequest as q:
            out.flush()
            return q.status or status
        out.write(result.plain())
        if not result.ok:
            status = 1
        if interrupted:  # the run stopped where it was; the rest of the script does not run
            out.write("script interrupted (Ctrl-C)\n")
            out.flush()
            return EXIT_INTERRUPTED
    out.flush()
    return status


def run_interactive(
    session: Session,
    *,
    input: Input | None = None,  # noqa: A002 - prompt_toolkit's name
    output: PtOutput | None = None,
    history: History | None = None,
) -> int:
    """The interactive console; returns the exit status when the user quits (or at end of input)."""
    return asyncio.run(_interactive(session, input, output, history))


async def _interactive(
    session: Session, input: Input | None, output: PtOutput | None, history: History | None  # noqa: A002
) -> int:
    busy = threading.Event()  # a command runs on a worker thread (in the foreground or the background)
    prompt: PromptSession[str] = PromptSession(
        history=history if history is not None else InMemoryHistory(),
        completer=ConsoleCompleter(session),
        complete_while_typing=False,
        key_bindings=load_console_bindings(session, busy),
        bottom_toolbar=lambda: FormattedText(status_line(session, _columns(prompt))),
        style=STYLE,
        input=input,
        output=output,
        refresh_interval=0.25,
    )

    def show(result: Output) -> None:  # laid out for the terminal: longer lines wrap at spaces, indented
        print_formatted_text(result.fit(session.columns).formatted(), style=STYLE, output=output, end="")

    async def show_paged(result: Output) -> None:
        """A command's output, a screenful at a time when it is longer than the terminal (``pager``)."""
        await page(result.fit(session.columns), _rows(prompt) - 2 if session.pager else 0, show,
                   lambda: _more(input, output))  # fmt: skip

    session.columns = _columns(prompt)
    show(Output().add(("heading", "zuv console")).text("type help for the commands; Tab completes", "dim"))
    worker: threading.Thread | None = None
    last: str | None = None  # what Enter on an empty line repeats
    with patch_stdout(raw=True), _ctrl_c_stops(session, busy):
        while True:
            try:
                line = await prompt.prompt_async(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:  # end of input: let a background run finish (Ctrl-C stops it)
                if worker is not None and worker.is_alive():
                    # a run on a worker thread whose end is waited for: Ctrl-C asks it to stop
                    run_interruptible(worker.join, lambda: session.stop("interrupted (Ctrl-C)"), quiet=True)
                return 0
            line = repeat_line(line, last)
            last = repeatable(line)
            session.columns = _columns(prompt)
            cmd = lookup(line.split()[0].split("/")[0]) if line.strip() else None
            if cmd is not None and cmd.name in _BACKGROUND and not session.running:
                worker = _background(session, line, show, busy)
                continue
            try:
                await show_paged(await _foreground(session, line, busy))
            except QuitRequest as q:
                if worker is not None:
                    worker.join()
                return q.status


#: What the pager asks between screenfuls (gdb's words).
MORE: Final = "--Type <RET> for more, q to quit, c to continue without paging--"


async def page(
    out: Output, rows: int, show: Callable[[Output], None], more: Callable[[], Awaitable[str]]
) -> None:
    """Show ``out`` ``rows`` lines at a time (rows < 5: all at once), asking ``more()`` after each screenful:
    "more" (Enter, space) the next, "c" the rest, "q" (or Ctrl-C, end of input) no more (one line says how
    many lines were left out and how to see everything)."""
    if rows < 5 or len(out.lines) <= rows + 1:
        show(out)
        return
    at = 0
    while at < len(out.lines):
        show(Output(out.lines[at : at + rows], out.ok))
        at += rows
        if at >= len(out.lines):
            return
        answer = await more()
        if answer == "c":
            show(Output(out.lines[at:], out.ok))
            return
        if answer != "more":
            left = len(out.lines) - at
            show(Output().text(f"({left} more lines not shown: pager off shows long output whole)", "dim"))
            return


async def _more(input: Input | None, output: PtOutput | None) -> str:  # noqa: A002 - prompt_toolkit's name
    """Ask the pager's question; one key answers (Enter or space: more, c: the rest, q or Ctrl-C: stop)."""
    keys = KeyBindings()
    for key, answer in (("enter", "more"), (" ", "more"), ("c", "c"), ("q", "q"), ("c-c", "q"), ("c-d", "q")):
        keys.add(key)(lambda event, a=answer: event.app.exit(result=a))
    keys.add("<any>")(lambda event: None)  # other keys: ignored
    question: PromptSession[str] = PromptSession(key_bindings=keys, input=input, output=output, style=STYLE)
    try:
        return await question.prompt_async([("class:dim", MORE)])
    except (EOFError, KeyboardInterrupt):
        return "q"


def _rows(prompt: PromptSession[str]) -> int:
    """The terminal's height (0: unknown, no paging)."""
    try:
        return int(prompt.output.get_size().rows)
    except Exception:  # noqa: BLE001 - an output that cannot tell
        return 0


def _columns(prompt: PromptSession[str]) -> int:
    """The terminal's width (output is laid out for it; at least 40 columns)."""
    try:
        return max(40, prompt.output.get_size().columns)
    except Exception:  # noqa: BLE001 - an output that cannot tell: the classic terminal
        return 80


def history_path() -> Path:
    """Where the interactive console keeps its history across sessions:
    ``$XDG_CACHE_HOME/zuv/console_history`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zuv" / "console_history"


def persistent_history() -> History:
    """A ``FileHistory`` at ``history_path()``, or an in-memory one when that directory cannot be made."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


#: Commands an empty line repeats, as in gdb: stepping, and x (going on after the last address).
REPEATABLE: Final = ("step", "next", "until", "finish", "x")
#: Commands that run the machine on a worker thread (the prompt stays alive: stop or Ctrl-C).
_BACKGROUND: Final = ("continue", "until", "next", "finish")


def repeatable(line: str) -> str | None:
    """What an empty line after ``line`` repeats: a step-like command as typed; x as ``x/FMT`` (the same
    format and count from where the last x ended); None for anything else."""
    words = line.split()
    if not words:
        return None
    cmd = lookup(words[0].split("/")[0])
    if cmd is None or cmd.name not in REPEATABLE:
        return None
    return words[0] if cmd.name == "x" else line


def repeat_line(line: str, last: str | None) -> str:
    """The line to run: ``line``, or ``last`` when ``line`` is empty (Enter repeats)."""
    return last if not line.strip() and last is not None else line


@contextmanager
def _ctrl_c_stops(session: Session, busy: threading.Event) -> Iterator[None]:
    """SIGINT while no prompt is shown (the terminal is in raw mode only at a prompt, whose Ctrl-C is a key):
    it stops what runs (a foreground command, a run in the background) and is otherwise ignored. Without it
    a Ctrl-C between a command line and the next prompt (while output is shown) ended the console (asyncio's
    handler, exit 130). prompt_toolkit puts this handler back after each prompt."""
    if threading.current_thread() is not threading.main_thread():  # no signals arrive there
        yield
        return

    def on_sigint(_signum: int, _frame: object) -> None:
        if session.running or busy.is_set():
            session.stop("interrupted (Ctrl-C)")

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


async def _foreground(session: Session, line: str, busy: threading.Event) -> Output:
    """Run one command on a worker thread and wait for it, with Ctrl-C (``_ctrl_c_stops``) stopping it: a
    ``step 1000000`` can be interrupted like a ``continue``."""
    was = busy.is_set()  # a run in the background (stop, status while it runs): its flag stays
    busy.set()
    try:
        return await asyncio.to_thread(execute, session, line)
    finally:
        if not was:
            busy.clear()
        session.discard_stop()  # a Ctrl-C during a command that runs nothing stops no later step


def _background(
    session: Session, line: str, show: Callable[[Output], None], busy: threading.Event
) -> threading.Thread:
    """Run an execution command on a worker thread; its output is printed above the prompt when it ends.
    ``busy`` is set throughout: a Ctrl-C before the run has begun (or during a next that steps) stops it."""
    session.running = True  # refuse other commands until the run ends
    busy.set()

    def work() -> None:
        session.running = False  # the session sets it again for the run itself
        try:
            result = execute(session, line)
        finally:
            session.running = False
            busy.clear()
            session.discard_stop()  # a Ctrl-C that came after the run's end stops no later step
        show(result)

    t = threading.Thread(target=work, name="zuv-console-run", daemon=True)
    t.start()
    return t

"""What crosses a seal to the host side: gates whose exceptions and callbacks carry no sealed frame.

A gate is a sealed object's function as the host side gets it: its exceptions reach the host side without
the sealed side's frames, and the host side's callbacks are called from no frame of the sealed side.
A sealed object (``HostView``, ``Hardware``, ``CpuHandle``, the Ultravisor's gates, the SIE engines' gates)
holds the trusted object in its functions' closures (``ARCHITECTURE.md``, the host side's reach). Two
ordinary Python doors would still lead behind it, both through frames: an exception raised inside carries
its traceback, whose frames' locals are the sealed side's (the storage object, its ``mmap``, a CPU, the
Ultravisor), and so do the exceptions chained to it (``__context__``/``__cause__``); and a host callback
called from inside (a listener, an event sink) finds the sealed side's frames above its own (``f_back``).
Issue 18's third review found both: ``Guest.read`` of the secret page raised ``SecureStorageAccess`` whose
``__traceback__`` held ``PhysicalMemory`` and the storage ``mmap``; a ``break_on_secure_access`` callback
found ``PhysicalMemory`` two frames up, an ``on_uvc`` callback the ``Ultravisor`` one frame up.

So every function a sealed object hands out is a ``gate``: its exception is raised again from the gate's
own frame (whose locals are the caller's arguments and the sealed function, itself a closure) with no
traceback from inside and nothing chained (``scrub``); a refusal's listeners are called from the gate
(``gate(fn, refused=...)``), never from the refusing code; a host callback that the sealed side would
call while a gate is on the stack is ``deferred`` until the outermost gate returns (the Ultravisor's log
records too: ``SealedLog``, for ``logging``'s handlers are the host's); and the arguments are made plain
at the gate (``plain``): a subclass of ``int`` whose ``__add__`` the host wrote, a file object, a
look-alike CPU handle never reach the sealed side, where their methods would run under its frames.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import traceback
import types
from collections.abc import Callable
from typing import Any, TypeVar

from emulator.errors import EmulatorError, HwError, ProgramException, SecureStorageAccess

__all__ = ["gate", "gate_slots", "scrub", "deferred", "notify_refusal", "admit", "plain", "SealedLog"]

_F = TypeVar("_F", bound=Callable[..., Any])


def scrub(err: BaseException) -> BaseException:
    """``err`` as the host side may hold it: no traceback (its frames' locals are the sealed side's) and no
    chained exception. An unexpected exception (a bug: not an ``EmulatorError``) keeps where it happened as a
    note: files, lines and functions, the code, never a value."""
    tb = err.__traceback__
    if tb is not None and not isinstance(err, EmulatorError):
        where = "".join(traceback.format_list(traceback.extract_tb(tb)))
        err.add_note("raised inside a sealed object (frames dropped at its gate):\n" + where.rstrip())
    err.__traceback__ = None
    err.__context__ = None
    err.__cause__ = None
    return err


class _Crossing(threading.local):
    """Per thread: how many settling gates are on the stack, and the host callbacks deferred meanwhile."""

    depth = 0

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []


_CROSSING = _Crossing()


def deferred(callback: Callable[..., Any]) -> Callable[..., None]:
    """``callback`` as the sealed side may call it: inside a settling gate (``gate(fn, settles=True)``) on
    this thread the call is queued and made when the outermost one returns, from its frame; elsewhere it is
    made at once (the caller is then no sealed frame of a gate)."""

    def call(*args: Any) -> None:
        st = _CROSSING
        if st.depth:
            st.queue.append((callback, args))
        else:
            callback(*args)

    return call


def _settle() -> None:
    """Make the deferred calls (the outermost settling gate returned); a callback's exception is raised
    after the rest ran."""
    st = _CROSSING
    first: BaseException | None = None
    while st.queue:
        callback, args = st.queue.pop(0)
        try:
            callback(*args)
        except BaseException as e:  # noqa: BLE001 - the host's own callback: its exception is the host's
            first = first or e
    if first is not None:
        raise first


def notify_refusal(listeners: list[Callable[[int, bool], None]]) -> Callable[[BaseException], None]:
    """A gate's ``refused``: each of ``listeners`` (the storage's secure-access listeners) is told
    ``(addr, write)`` of the refusal the gate is about to raise: a ``SecureStorageAccess``, or a program
    exception 0x3D (a host control block: the page its TEID names), ``deferred`` like any host callback."""

    def refused(err: BaseException) -> None:
        if isinstance(err, SecureStorageAccess):
            addr, write = err.addr, err.write
        elif isinstance(err, ProgramException) and err.code == 0x3D and err.teid is not None:
            addr, write = err.teid & ~0xFFF, bool(err.teid & 0x400)
        else:
            return
        for listener in list(listeners):
            deferred(listener)(addr, write)

    return refused


_CALL_THROUGH = """
def crossing({{params}}):
{{plain}}    try:
        return _g_fn({{call}})
    except BaseException as _g_e:  # raised again below, without the sealed frames
        _g_err = _g_scrub(_g_e)
{refused}    raise _g_err
"""
_BODIES = {
    "plain": _CALL_THROUGH.format(refused=""),
    "refused": _CALL_THROUGH.format(refused="    _g_refused(_g_err)\n"),
    "settles": """
def crossing({params}):
{plain}    _g_st = _g_crossing
    _g_st.depth += 1
    _g_err = None
    try:
        _g_result = _g_fn({call})
    except BaseException as _g_e:  # raised again below, without the sealed frames
        _g_err = _g_scrub(_g_e)
    _g_st.depth -= 1
    if _g_err is None:
        if not _g_st.depth and _g_st.queue:
            _g_settle()
        return _g_result
    if _g_refused is not None:
        _g_refused(_g_err)
    if not _g_st.depth and _g_st.queue:
        _g_settle()
    raise _g_err
""",
}


#: argument types a gate passes on as they are: values whose methods are Python's own (exact types only; a
#: bare ``object()`` is a key)
_PLAIN: set[type] = {int, bool, float, str, bytes, bytearray, memoryview, type(None), object}
#: callables a gate passes on (the host's listeners and callbacks, called at gates: ``notify_refusal``,
#: ``deferred``)
_CALLABLES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)
_VIEWS = (type({}.keys()), type({}.values()), range)


def admit(cls: type) -> type:
    """Let a gate pass instances of exactly ``cls`` (a project type the sealed side needs and never calls a
    method of that the host could have replaced: a CPU handle, a SIE page); usable as a class decorator."""
    _PLAIN.add(cls)
    return cls


def plain(x: Any) -> Any:
    """An argument as it crosses a gate: exact types pass (``_PLAIN``, ``admit``), the host's callables and
    classes pass; a subclass of int, str, float, bytes or bytearray becomes the plain value (its methods run
    here, at the gate, never under a sealed frame: an int subclass's ``__add__`` found the storage two frames
    up), lists, tuples, sets and dictionary views their plain items; anything else is refused (``HwError``):
    the sealed side would call its methods."""
    t = type(x)
    if t in _PLAIN:
        return x
    if t in (list, tuple, set, frozenset):
        return t(plain(v) for v in x)
    if t in _VIEWS:
        return tuple(plain(v) for v in x)
    if isinstance(x, _CALLABLES) or isinstance(x, type):
        return x
    if isinstance(x, bool | int):
        return int.__int__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, bytes | bytearray):
        return memoryview(x).tobytes()
    raise HwError(f"a sealed object takes plain values, not a {t.__name__}")


def _signature_text(fn: Callable[..., Any]) -> tuple[str, str, dict[str, Any], list[str]]:
    """(parameters, call arguments, defaults by name) of a gate with ``fn``'s own signature: a call costs
    what one more plain call does (``*args, **kwargs`` would pack and unpack them, ~2x the gate's cost)."""
    params, call, defaults = [], [], {}
    star = False
    names: list[str] = []
    ps = list(inspect.signature(fn).parameters.values())
    for i, p in enumerate(ps):
        default = ""
        if p.default is not p.empty:
            defaults[f"_g_d{i}"] = p.default
            default = f"=_g_d{i}"
        names.append(p.name)
        if p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
            call.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            params.append(f"**{p.name}")
            call.append(f"**{p.name}")
        elif p.kind is p.KEYWORD_ONLY:
            if not star:
                params.append("*")
                star = True
            params.append(p.name + default)
            call.append(f"{p.name}={p.name}")
        else:
            params.append(p.name + default)
            call.append(p.name)
            if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(ps) or ps[i + 1].kind is not p.POSITIONAL_ONLY):
                params.append("/")
    return ", ".join(params), ", ".join(call), defaults, names


def gate(
    fn: _F, *, refused: Callable[[BaseException], None] | None = None, settles: bool = False
) -> _F:
    """``fn`` (a sealed object's function) as the host side gets it: an exception leaves it ``scrub``-bed,
    raised from this gate's frame; ``refused(err)`` is called there first (a refusal's listeners); with
    ``settles`` the host callbacks ``deferred`` during the call are made when it returns. The gate has
    ``fn``'s signature."""
    params, call, defaults, names = _signature_text(fn)
    kinds = {p.name: p.kind for p in inspect.signature(fn).parameters.values()}
    lines = []
    for name in names:  # each argument made plain at the gate (one type test for a plain one)
        if kinds[name] is inspect.Parameter.VAR_POSITIONAL:
            lines.append(f"    {name} = tuple(map(_g_plain, {name}))\n")
        elif kinds[name] is inspect.Parameter.VAR_KEYWORD:
            lines.append(f"    {name} = {{k: _g_plain(v) for k, v in {name}.items()}}\n")
        else:
            lines.append(f"    {name} = {name} if type({name}) in _g_ok else _g_plain({name})\n")
    if any(name.startswith("_g_") for name in inspect.signature(fn).parameters):
        raise HwError(f"a gate's own names begin with _g_: {fn.__qualname__}({params})")
    kind = "settles" if settles else "refused" if refused is not None else "plain"
    scope: dict[str, Any] = {"_g_fn": fn, "_g_scrub": scrub, "_g_refused": refused, "_g_crossing": _CROSSING,
                             "_g_settle": _settle, "BaseException": BaseException, "_g_ok": _PLAIN,
                             "_g_plain": plain, "type": type, "tuple": tuple, "map": map,
                             **defaults}  # fmt: skip
    # (named as this file's code, so its frames are the project's as a frame walk sees them; no source line)
    source = _BODIES[kind].format(params=params, call=call, plain="".join(lines))
    exec(compile(source, f"{__file__} (a gate)", "exec"), scope)  # noqa: S102 - a fixed template
    crossing = scope["crossing"]
    functools.update_wrapper(crossing, fn)  # name, doc, signature (``__wrapped__``: a function's internals)
    return crossing  # type: ignore[no-any-return]


def gate_slots(obj: object) -> None:
    """Make every plain function held in ``obj``'s slots (a sealed object's closures and lambdas) a
    ``gate``: for objects whose functions need no listener and call no host callback."""
    for klass in type(obj).__mro__:
        for name in vars(klass).get("__slots__", ()):
            value = getattr(obj, name, None)
            if isinstance(value, types.FunctionType) and not value.__code__.co_filename.startswith(__file__):
                setattr(obj, name, gate(value))


class SealedLog:
    """A logger for the sealed side (the Ultravisor's ``firmware.uv``): a record is made where the call is
    (file, line, function, the message formatted into plain text) and handed to ``logging``'s handlers when
    the outermost settling gate returns. The handlers are the host's (a script configures ``logging``), so
    they never run under a sealed frame: before, a handler found the ``Ultravisor`` and the control block
    five frames above its ``emit`` (issue 18's third review). Outside every gate the record is handled at
    once."""

    __slots__ = ("_log", "isEnabledFor")

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)
        #: ``Logger.isEnabledFor`` itself (the per-page UVC's test costs no extra call)
        self.isEnabledFor = self._log.isEnabledFor

    def _emit(self, level: int, msg: str, args: tuple[Any, ...]) -> None:
        log = self._log
        if not log.isEnabledFor(level):
            return
        f = sys._getframe(2)  # noqa: SLF001 - the caller's place, for the record
        text = msg % args if args else msg  # plain text: no object of the sealed side rides in the record
        record = log.makeRecord(log.name, level, f.f_code.co_filename, f.f_lineno, text, (), None,
                                f.f_code.co_name)  # fmt: skip
        if _CROSSING.depth:
            _CROSSING.queue.append((log.handle, (record,)))
        else:
            log.handle(record)

    def debug(self, msg: str, *args: Any) -> None:
        """``Logger.debug``, deferred (above)."""
        self._emit(logging.DEBUG, msg, args)

    def info(self, msg: str, *args: Any) -> None:
        """``Logger.info``, deferred (above)."""
        self._emit(logging.INFO, msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        """``Logger.warning``, deferred (above)."""
        self._emit(logging.WARNING, msg, args)

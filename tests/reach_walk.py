"""The host side's reach, as an attacker holding host-side objects walks it: the object graph through the
attributes, items and properties Python offers, and what each reachable storage-reading callable gives for
a secure page (``tests/test_trust_reach.py``).

The model's edge (``ARCHITECTURE.md``, "The host side's reach"): an edge is what ordinary attribute access
and calls give - an instance's ``__dict__`` and ``__slots__``, a class's data attributes, a property's value,
the items of lists, tuples, sets and dicts, a bound method's ``__self__``, a ``functools.partial``'s
function and arguments, a weak reference's referent, a ctypes object's base and kept objects; and the
frames a host obtains without ``sys``: an exception's arguments, traceback and chained exceptions, a
traceback's frames, a generator's frame, and a frame's locals and caller (``f_back``: a host callback
raising and catching its own exception finds its callers' frames), for the project's own code (a frame of
the attacker's script or of the test holds what they hold anyway). Outside it, as ``/dev/mem`` and the
kernel's own data are outside a real host's reach: a function's internals (``__closure__``, ``__globals__``,
``__code__``, ``__defaults__``), ``gc`` and ``sys`` introspection (``sys._getframe``,
``sys._current_frames``), host code Python runs asynchronously on a thread inside sealed code (a signal
handler's frame argument, a finalizer the collector runs), ``ctypes`` reads of arbitrary addresses, and
importing a module to take its globals. Objects the project keeps sealed are held in closures, so the walk
stops at them by that rule alone; their functions are gates (``emulator/hw/seal.py``), so no exception leaves
one with a sealed frame.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), memoryview, range, slice,
           mmap.mmap, types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
           types.CodeType, types.GetSetDescriptorType,
           types.MemberDescriptorType, types.WrapperDescriptorType, types.MethodWrapperType,
           types.MethodDescriptorType, types.ClassMethodDescriptorType,
           types.CoroutineType, types.AsyncGeneratorType)  # fmt: skip
#: the project's own code: frames of it are walked (its locals, its caller)
_PROJECT = tuple(str(Path(__file__).resolve().parents[1] / d) + os.sep for d in ("emulator", "firmware"))
_CDATA = ctypes.c_int.__mro__[-2]  # ctypes' _CData base
#: property names the walk does not read (they wait for, start or stop something)
_SKIP_PROPERTIES = frozenset()


@dataclass
class Reach:
    """What the walk found: every object (by id) with the first path to it."""

    objects: dict[int, tuple[object, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[object, str]]:
        return iter(self.objects.values())

    def __len__(self) -> int:
        return len(self.objects)


def _class_items(obj: object) -> Iterator[tuple[str, object]]:
    """(name, value) of the data attributes and property values the object's class offers."""
    cls = type(obj)
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, attr in vars(klass).items():
            if name in seen or (name.startswith("__") and name.endswith("__")):
                continue
            seen.add(name)
            if isinstance(attr, property | functools.cached_property):
                if name in _SKIP_PROPERTIES:
                    continue
                try:
                    yield name, getattr(obj, name)
                except Exception:  # noqa: BLE001 - a property that refuses is no edge
                    continue
            elif isinstance(attr, (types.FunctionType, staticmethod, classmethod, types.MemberDescriptorType,
                                   types.GetSetDescriptorType)):  # fmt: skip
                continue
            elif not isinstance(attr, (type, types.ModuleType)):
                yield name, attr


def _slots(obj: object) -> Iterator[tuple[str, object]]:
    for klass in type(obj).__mro__:
        slots = vars(klass).get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                yield name, object.__getattribute__(obj, name)
            except AttributeError:
                continue


def _frame_edges(obj: object) -> Iterator[tuple[str, object]] | None:
    """The edges out of a frame, traceback, generator or exception; None for anything else."""
    if isinstance(obj, types.FrameType):
        if not obj.f_code.co_filename.startswith(_PROJECT):
            # the attacker's (or the test's, or the library's) own frame: its locals are what they hold, and
            # its caller is walked (a project frame may call the library that calls the attacker)
            return iter([(".f_back", obj.f_back)] if obj.f_back is not None else [])
        f_locals = dict(obj.f_locals)
        return iter([*((f".f_locals[{k}]", v) for k, v in f_locals.items()),
                     *([(".f_back", obj.f_back)] if obj.f_back is not None else [])])  # fmt: skip
    if isinstance(obj, types.TracebackType):
        return iter([(".tb_frame", obj.tb_frame), *([(".tb_next", obj.tb_next)] if obj.tb_next else [])])
    if isinstance(obj, types.GeneratorType):
        return iter([(".gi_frame", obj.gi_frame)] if obj.gi_frame is not None else [])
    return None


def _exception_edges(obj: BaseException) -> Iterator[tuple[str, object]]:
    for i, a in enumerate(obj.args):
        yield f".args[{i}]", a
    for name in ("__traceback__", "__context__", "__cause__"):
        v = getattr(obj, name)
        if v is not None:
            yield f".{name}", v


def edges(obj: object) -> Iterator[tuple[str, object]]:
    """The model's edges out of ``obj``: (label, target)."""
    frame_edges = _frame_edges(obj)
    if frame_edges is not None:
        yield from frame_edges
        return
    if isinstance(obj, BaseException):
        yield from _exception_edges(obj)
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        for i, a in enumerate(obj.args):
            yield f".args[{i}]", a
        for k, v in (obj.keywords or {}).items():
            yield f".keywords[{k!r}]", v
        return
    if isinstance(obj, weakref.ref):
        target = obj()
        if target is not None:
            yield "()", target
        return
    if isinstance(obj, (weakref.WeakSet, weakref.WeakValueDictionary, weakref.WeakKeyDictionary)):
        items = list(obj.items()) if hasattr(obj, "items") else [(i, x) for i, x in enumerate(obj)]
        for k, v in items:
            yield f"[{k!r}]", v
            yield "<key>", k
        return
    if isinstance(obj, (list, tuple, deque)):
        for i, x in enumerate(obj):
            yield f"[{i}]", x
    elif isinstance(obj, (set, frozenset)):
        for x in obj:
            yield "{}", x
    elif isinstance(obj, dict):
        for k, v in list(obj.items()):
            yield f"[{k!r}]" if isinstance(k, (str, int)) else "[<key>]", v
            yield "<key>", k
    if isinstance(obj, _CDATA):
        base = getattr(obj, "_b_base_", None)
        if base is not None:
            yield "._b_base_", base
        kept = getattr(obj, "_objects", None)
        if kept is not None:
            yield "._objects", kept
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict) and not isinstance(obj, (type, types.ModuleType)):
        for k, v in list(d.items()):
            yield f".{k}", v
    yield from ((f".{k}", v) for k, v in _slots(obj))
    if not isinstance(obj, (list, tuple, dict, set, frozenset, deque)):
        yield from ((f".{k}", v) for k, v in _class_items(obj))


def walk(roots: dict[str, object], limit: int = 400_000) -> Reach:
    """Breadth first from ``roots`` (name -> object) along ``edges``."""
    out = Reach()
    todo: deque[tuple[object, str]] = deque((r, n) for n, r in roots.items())
    while todo:
        obj, path = todo.popleft()
        if id(obj) in out.objects:
            continue
        out.objects[id(obj)] = (obj, path)
        if len(out.objects) >= limit:
            raise AssertionError(f"the walk passed {limit} objects: raise the bound")
        if isinstance(obj, _LEAVES) or isinstance(obj, type):
            continue
        if type(obj).__module__ in ("builtins", "_thread", "threading", "logging", "_io", "io"):
            if not isinstance(obj, (list, tuple, dict, set, frozenset, deque, BaseException, types.FrameType,
                                    types.TracebackType, types.GeneratorType)):  # fmt: skip
                continue
        try:
            for label, target in edges(obj):
                if id(target) not in out.objects:
                    todo.append((target, path + label))
        except Exception as e:  # noqa: BLE001 - an object that refuses to be looked at is a leaf
            out.errors.append(f"{path}: {type(e).__name__}: {e}")
    return out


def storage_readers(reach: Reach, names: Callable[[str], bool]) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(path, bound callable) of every method named by ``names`` on every reachable object, and every
    reachable plain callable (a function or bound method kept as a value) whose name ``names`` accepts."""
    for obj, path in reach:
        if isinstance(obj, _LEAVES) and not isinstance(obj, types.FunctionType):
            continue
        if isinstance(obj, (types.FunctionType, types.MethodType)):
            if names(getattr(obj, "__name__", "")):
                yield path, obj
            continue
        if isinstance(obj, (list, tuple, dict, set, frozenset, deque, type)):
            continue
        for klass in type(obj).__mro__:
            if klass is object:
                continue
            for name, attr in vars(klass).items():
                if isinstance(attr, types.FunctionType) and names(name):
                    yield f"{path}.{name}", getattr(obj, name)
        d = getattr(obj, "__dict__", None)
        values = list(d.items()) if isinstance(d, dict) else []
        for name, v in values + list(_slots(obj)):
            if callable(v) and not isinstance(v, type) and names(name):
                yield f"{path}.{name}", v

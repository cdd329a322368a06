"""Frames the host side obtains without ``sys`` (issue 18's third review): the traceback and chained
exceptions of whatever a sealed object's function raises, and the frames above a host callback (a callback
that raises and catches its own exception has its frame, and ``f_back`` is an attribute). Before the gates
of ``emulator/hw/seal.py``: ``Guest.read`` of the secret page raised ``SecureStorageAccess`` whose traceback
held ``PhysicalMemory`` and the storage ``mmap`` (``tb_frame.f_locals``), a wrong key to ``Host._machine`` or
``CpuHandle._open`` raised from a frame holding the machine or the CPU, a ``break_on_secure_access``
callback found ``PhysicalMemory`` two frames up and an ``on_uvc`` callback the ``Ultravisor`` one frame up
(its header keys, secrets and the secure CPU's registers behind it)."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reach_walk import walk
from test_trust_reach import _canary_in_registers, _secure_cpus, findings

from emulator.api import Guest, Host
from emulator.errors import ProgramException, SecureStorageAccess


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[Host, Guest]]:
    """The demo's secure guest after a secure run, the canary in six registers of its hardware CPU."""
    with Host(seed=13) as host:
        g = host.boot()
        _canary_in_registers(host, g)
        yield host, g


def _raised(fn: Callable[..., Any], *args: Any) -> BaseException:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - any refusal: its frames are what is looked at
        return e
    raise AssertionError(f"{fn!r}{args} did not refuse")


def test_what_a_sealed_function_raises_carries_no_sealed_frame(booted) -> None:
    host, g = booted
    hv = g._vm.hv  # noqa: SLF001 - the hypervisor's own objects
    frame = g.frame(g.secret_page)
    vcpu = next(v for v in g._vm.vcpus.values())  # noqa: SLF001
    handle = hv.hardware.new_cpu(9, hv.clock, b"", 0)
    try:
        got = {
            "guest.read": _raised(g.read, g.secret_page, 16),
            "host.read": _raised(host.read, frame, 16),
            "host_view.write": _raised(hv.host.write, frame, b"x"),
            "host_view.check": _raised(hv.host.check, frame, 8, False),
            "hardware.in_place": _raised(hv.hardware.in_place, frame, type(vcpu.page)),
            "hardware.span": _raised(hv.hardware.span, frame, 16),
            "uv_gate.call": _raised(hv.ultravisor.call, frame),  # a UVC block in the secret page
            "host._machine": _raised(host._machine, None),  # noqa: SLF001 - a wrong key
            "cpu_handle._get": _raised(handle._get, "uc"),  # noqa: SLF001
            "cpu_handle.read_real": _raised(handle.read_real, 1 << 62, 8),
        }
    finally:
        handle.close()
    assert isinstance(got["guest.read"], SecureStorageAccess)
    assert isinstance(got["uv_gate.call"], ProgramException) and got["uv_gate.call"].code == 0x3D
    for name, err in got.items():
        assert err.__traceback__ is not None  # the gate's own frame: the walk looks at it
        bad = findings(walk({name: err}), _secure_cpus(host))
        assert bad == {}, f"{name}: {bad}"


def _caller_frame() -> types.FrameType:
    """The frame that called the callback calling this, found as a script finds it: raise, catch, climb."""
    try:
        raise RuntimeError
    except RuntimeError as e:
        tb = e.__traceback__
        assert tb is not None
        return tb.tb_frame.f_back.f_back  # type: ignore[union-attr,return-value]


def test_a_host_callback_finds_no_sealed_frame_above_it(booted) -> None:
    """Every callback the API and the hypervisor take, called during a secure run, host UV calls (one with
    its block in the secret page) and a host read of the secret page: the frames above it hold nothing of
    the sealed side (the Ultravisor's event sink and the storage's refusal listeners are called at the
    gate, ``seal.deferred``/``notify_refusal``)."""
    host, g = booted
    hv = g._vm.hv  # noqa: SLF001
    callers: dict[str, list[types.FrameType]] = {}

    def grab(name: str) -> Callable[..., None]:
        def callback(*_a: Any) -> None:
            callers.setdefault(name, []).append(_caller_frame())

        return callback

    unsub = host.on_uvc(grab("on_uvc"))
    unexit = g.on_exit(grab("on_exit"))
    bps = [g.break_on_secure_access(callback=grab("break_on_secure_access")),
           g.break_on_uvc(callback=grab("break_on_uvc")),
           g.break_on_exit(callback=grab("break_on_exit"))]  # fmt: skip
    listener = grab("exit_listener")
    hv.exit_listeners.append(listener)
    try:
        for _ in range(3):
            with pytest.raises(SecureStorageAccess):
                g.read(g.secret_page, 8)
            with pytest.raises(ProgramException):
                hv.ultravisor.call(g.frame(g.secret_page))
            assert g.export(g.secret_page).ok and g.import_page(g.secret_page).ok
            g.step(0, 200)
        for _ in range(20):  # the guest's own UV calls, each a breakpoint's stop
            if g.run(time_limit=5).reason == "all CPUs stopped":
                break
    finally:
        unsub()
        unexit()
        hv.exit_listeners.remove(listener)
        for bp in bps:
            bp.remove()
    assert set(callers) == {"on_uvc", "on_exit", "break_on_secure_access", "break_on_uvc", "break_on_exit",
                            "exit_listener"}, sorted(callers)  # fmt: skip
    for name, frames in callers.items():
        for f in frames[:4]:
            bad = findings(walk({name: f}), _secure_cpus(host))
            assert bad == {}, f"{name}: {bad}"


def test_a_logging_handler_of_the_hosts_finds_no_sealed_frame_above_it(booted) -> None:
    """``logging`` handlers are the host's (the API says: configure ``logging`` to see the library's output),
    so the Ultravisor's records reach them when its gate has returned (``seal.SealedLog``): before, a
    handler's ``emit`` found the ``Ultravisor`` five frames up (its keys, secrets and the secure CPU's
    record)."""
    import logging

    host, g = booted
    seen: list[tuple[str, types.FrameType]] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), _caller_frame()))

    uv_log = logging.getLogger("firmware.uv")
    handler, level = Handler(), uv_log.level
    uv_log.addHandler(handler)
    uv_log.setLevel(logging.DEBUG)
    try:
        assert g.export(g.secret_page).ok and g.import_page(g.secret_page).ok
        g.step(0, 2000)
        with pytest.raises(ProgramException):
            g._vm.hv.ultravisor.call(g.frame(g.secret_page))  # noqa: SLF001
    finally:
        uv_log.removeHandler(handler)
        uv_log.setLevel(level)
    assert any("conv_from_sec_stor" in m for m, _f in seen), [m for m, _f in seen]
    for message, f in seen[:12]:
        bad = findings(walk({"above": f}), _secure_cpus(host))
        assert bad == {}, f"{message}: {bad}"


def test_the_apis_uv_log_gets_a_guests_call_without_its_block_at_the_gate() -> None:
    """The API's UV log is the host's sink of the Ultravisor's events: it is called at the gate (a script's
    object in ``Host._log`` or ``_subs`` runs with no sealed frame above) and gets a guest's call without the
    guest's control block (it lies in secure storage: a Retrieve Secret's holds the secret). Before, the
    sink ran under ``Ultravisor._emit`` and got the whole event."""
    seen: list[types.FrameType] = []

    class Log(list):  # a script's own object where the API keeps its log
        def append(self, entry: Any) -> None:
            seen.append(_caller_frame())
            super().append(entry)

    with Host(seed=23) as host:
        g = host.boot(run=False)
        host._log = Log(host._log)  # noqa: SLF001
        g.run(time_limit=20)
        guest_events = [f.f_locals["ev"] for f in seen if f.f_locals["ev"].caller.kind == "guest"]
        assert guest_events, "the guest made no UV call: the test is void"
        assert all(ev.block == b"" and ev.layout is None for ev in guest_events)
        for f in seen[:30]:
            assert findings(walk({"above": f}), _secure_cpus(host)) == {}

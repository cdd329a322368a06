"""Objects the host hands the sealed side (issue 18's third review): the sealed side never runs a method of an
object the host made while a sealed frame is on the stack, and never takes a host-made object for its own.

Found before the gates made their arguments plain (``emulator/hw/seal.py``, ``plain``): ``HostView.load_file``
called the host's ``f.readinto`` with a view of storage whose ``obj`` is the storage ``mmap`` (the whole
machine's storage, the secret page's plaintext in it); ``hardware_of`` called a handle's ``_open`` with the
module-private key, so a ``CpuHandle`` subclass got the key that opens every handle (a normal guest's handle
then gave its ``Cpu``, the storage behind it), and a look-alike was taken as a hardware CPU (``PvSie.adopt``:
the secure CPU's registers would be loaded into it); an ``int`` subclass's ``__add__`` ran with the host
view's frame (``buf``, ``mem``) above it; and the secure SIE engine called a function the hypervisor gave
it for the SIDA, with the engine and the secure guest's hardware CPU in the frames above."""

from __future__ import annotations

import io
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reach_walk import walk
from test_trust_reach import _canary_in_registers, _secure_cpus, findings

from emulator.api import Guest, Host
from emulator.errors import HwError, SecureStorageAccess
from emulator.hw.cpu_handle import CpuHandle


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[Host, Guest]]:
    with Host(seed=17) as host:
        g = host.boot()
        _canary_in_registers(host, g)
        yield host, g


def test_load_file_hands_no_view_of_storage_to_the_hosts_file_object(booted, tmp_path: Path) -> None:
    host, g = booted
    hv = g._vm.hv  # noqa: SLF001 - the hypervisor's own objects
    handed: list[Any] = []

    class File:  # a file-like object of the host's: both ways to be read
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def readinto(self, buf: Any) -> int:
            handed.append(buf)
            return 0

        def read(self, n: int = -1) -> bytes:
            return self._f.read(n)

    page = hv.alloc.alloc_page()
    assert hv.host.load_file(page, File(b"A" * 64), 64) == 64 and hv.host.read(page, 64) == b"A" * 64
    assert handed == [], f"load_file handed the host's file {type(handed[0]).__name__}"
    # a real file is read by its descriptor, and left positioned after what was read
    p = tmp_path / "f"
    p.write_bytes(b"xy" + b"B" * 100)
    with p.open("rb") as f:
        f.read(2)
        assert hv.host.load_file(page, f, 100) == 100 and f.tell() == 102
    assert hv.host.read(page, 100) == b"B" * 100
    with p.open("rb") as f, pytest.raises(SecureStorageAccess):
        hv.host.load_file(g.frame(g.secret_page), f, 16)


def test_the_hardware_opens_only_its_own_cpu_handles(booted) -> None:
    host, g = booted
    hv = g._vm.hv  # noqa: SLF001
    v = next(iter(g._vm.vcpus.values()))  # noqa: SLF001
    pv = g._vm.pv  # noqa: SLF001
    called: list[object] = []

    class Sub(CpuHandle):
        __slots__ = ()

    sub = object.__new__(Sub)

    class LookAlike:
        def _open(self, key: object) -> None:
            called.append(key)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: called.append((name, a))

    for fake in (sub, LookAlike()):
        try:
            fake._open = lambda key: called.append(key)  # noqa: SLF001 - the hook a handle had
        except AttributeError:
            pass
        with pytest.raises(HwError):
            hv.engine.enter(fake, v.page)
        with pytest.raises(HwError):
            pv.host.engine.adopt(pv.cpu_handles[v.address], fake)
    assert called == [], called
    assert g.run(time_limit=10).clean, "the secure guest runs on, on its own hardware CPU"
    assert findings(walk({"fakes": [sub]}), _secure_cpus(host)) == {}


def _climb() -> types.FrameType:
    try:
        raise RuntimeError
    except RuntimeError as e:
        assert e.__traceback__ is not None
        return e.__traceback__.tb_frame.f_back  # type: ignore[return-value]


def test_a_hosts_argument_runs_no_method_under_a_sealed_frame(booted) -> None:
    """Subclasses of int, bytes and list (their methods record the frames above them) and look-alikes
    given to the sealed functions the hypervisor holds: every method ran at the gate, or the gate refused the
    object; the frames above each hold nothing of the sealed side."""
    host, g = booted
    hv = g._vm.hv  # noqa: SLF001
    frames: list[types.FrameType] = []

    class Int(int):
        def _seen(self) -> None:
            frames.append(_climb())

        def __add__(self, other: Any) -> int:
            self._seen()
            return int(self) + other

        __radd__ = __add__

        def __index__(self) -> int:
            self._seen()
            return int(self)

        def __and__(self, other: Any) -> int:
            self._seen()
            return int(self) & other

        def __rshift__(self, other: Any) -> int:
            self._seen()
            return int(self) >> other

        def __hash__(self) -> int:
            self._seen()
            return int.__hash__(self)

    class Bytes(bytes):
        def __len__(self) -> int:
            frames.append(_climb())
            return bytes.__len__(self)

    class Looks:
        def __len__(self) -> int:
            frames.append(_climb())
            return 8

        def __getitem__(self, i: Any) -> int:
            frames.append(_climb())
            return 0

    frame, page = g.frame(g.secret_page), hv.alloc.alloc_page()
    handle = hv.hardware.new_cpu(9, hv.clock, b"", 0)
    calls = [
        lambda: hv.host.read(Int(frame), Int(8)),
        lambda: hv.host.read(Int(page), Int(8)),
        lambda: hv.host.write(Int(page), Bytes(b"12345678")),
        lambda: hv.host.write(Int(frame), Bytes(b"12345678")),
        lambda: hv.host.write(page, Looks()),
        lambda: hv.host.check(Int(frame), Int(8), True),
        lambda: hv.hardware.span(Int(page), Int(16)),
        lambda: hv.ultravisor.call(Int(frame)),
        lambda: handle.read_real(Int(0x1000), Int(8)),
        lambda: handle.set_breakpoints([Int(0x2000)]),
        lambda: handle.set_breakpoints(Looks()),
    ]
    try:
        for call in calls:
            try:
                call()
            except Exception:  # noqa: BLE001, S110 - refusals are answers too: the frames are what counts
                pass
    finally:
        handle.close()
    for f in frames:
        bad = findings(walk({"above": f}), _secure_cpus(host))
        assert bad == {}, bad


def test_the_secure_sie_engine_calls_no_function_of_the_host() -> None:
    """The engine finds the SIDA in the state description itself: the gate takes no function for it (the
    hypervisor's, called by the engine with the secure guest's hardware CPU in the frames above)."""
    import inspect

    with Host(seed=19) as host:
        gate = host._hv.ultravisor  # noqa: SLF001
        assert list(inspect.signature(gate.sie).parameters) == []
        with pytest.raises(TypeError):
            gate.sie(lambda page: None)


def test_what_the_host_shares_with_the_hardware_holds_plain_values_only(booted) -> None:
    """The objects the hypervisor shares with the hardware and the Ultravisor: the TOD clock its CPUs read
    (a replaced ``now`` was called by the secure SIE engine with the secure guest's hardware CPU one frame
    up), a CPU's pending external interruptions (read by the CPU in its run), and the Query numbers (the
    host's own copy: the Ultravisor decides by its own)."""
    from emulator.api import _machine_of

    host, g = booted
    hv = g._vm.hv  # noqa: SLF001

    class Int(int):
        def __and__(self, other: Any) -> int:
            raise AssertionError("the host's method ran")

    with pytest.raises(AttributeError):
        hv.clock.now = lambda: 0  # type: ignore[method-assign]
    with pytest.raises(HwError):
        hv.clock._offset = Int(1)  # noqa: SLF001
    handle = hv.hardware.new_cpu(9, hv.clock, b"", 0)
    try:
        handle.ext_pending["service"] = Int(0x1000)

        class Str(str):
            def __hash__(self) -> int:
                raise AssertionError("the host's method ran")

        handle.ext_pending.update({"emergency": 1})
        handle.ext_pending[Str("x")] = 1  # kept as the plain string
        assert {type(k) for k in handle.ext_pending} == {str}
        assert {type(v) for v in handle.ext_pending.values()} == {int}
    finally:
        handle.close()
    uv_query = _machine_of(host).uv.query
    assert hv.ultravisor.query is not uv_query and hv.ultravisor.query == uv_query
    object.__setattr__(hv.ultravisor.query, "supp_se_hdr_pcf", 0)
    assert uv_query.supp_se_hdr_pcf != 0
    assert g.run(time_limit=10).clean


def test_a_state_description_rewritten_during_the_entry_runs_no_secure_cpu_on_anothers_hardware() -> None:
    """The SD is host storage, and another thread of the host may rewrite it while the engine enters SIE.
    The engine found the hardware CPU by the SD's CPU handle and then read the handle again for the secure
    CPU to run: an SD naming guest A's CPU at the first read and guest B's at the second ran B's registers
    on A's hardware CPU (and A ran on afterwards with them, its record's state taken as loaded). Now the
    handle is read once: the entry runs A's CPU from B's SD, which is a validity interception (B ran: an
    intercept, 0x68)."""
    from emulator.api import _machine_of
    from firmware.uv_sie import VIR_CONFIG_HANDLE, VIR_SD_ORIGIN

    with Host(seed=29) as host:
        a, b = host.boot(), host.boot()
        va, vb = a._vm.vcpus[0], b._vm.vcpus[0]  # noqa: SLF001
        handle_a, handle_b = a._vm.pv.cpu_handles[0], b._vm.pv.cpu_handles[0]  # noqa: SLF001
        engine = next(iter(_machine_of(host).uv.sie_engines))
        enter = engine.enter

        def flipped(*args: Any, **kwargs: Any) -> Any:  # the host's write landing between the two reads
            vb.sd.pv_handle_cpu = handle_b
            return enter(*args, **kwargs)

        engine.enter = flipped
        try:
            vb.sd.pv_handle_cpu = handle_a
            ex = b._vm.pv.host.engine.run(vb.page, 100)  # noqa: SLF001
        finally:
            del engine.enter
            vb.sd.pv_handle_cpu = handle_b
        assert ex.icptcode == 0x20 and ex.data.get("vir") in (VIR_CONFIG_HANDLE, VIR_SD_ORIGIN), ex
        assert va.sd.pv_handle_cpu == handle_a
        assert a.run(time_limit=10).clean and b.run(time_limit=10).clean


def test_one_hardware_cpu_running_two_secure_cpus_in_turn_loads_each_ones_registers() -> None:
    """A host CPU's guest CPU in the LPAR runs whichever secure CPU its SIE names (``lpar_pvsie``): secure
    CPU A, then B, then A again on one hardware CPU. The engine kept A's snapshot as loaded while B ran on
    the CPU, so A ran on with B's registers and its record took them at the exit (a guest-to-guest leak the
    host arranges). Now loading B forgets every other record's snapshot on that CPU."""
    from test_trust_reach import CANARY

    from emulator.api import _machine_of

    with Host(seed=31) as host:
        a, b = host.boot(), host.boot()
        uv = _machine_of(host).uv
        engine = next(iter(uv.sie_engines))
        handle_a, handle_b = a._vm.pv.cpu_handles[0], b._vm.pv.cpu_handles[0]  # noqa: SLF001
        page_a, page_b = a._vm.vcpus[0].page, b._vm.vcpus[0].page  # noqa: SLF001
        rec_b = uv.secure_cpu(handle_b)
        rec_b.gprs = [CANARY] * 16  # B's registers, as its next load puts them into a CPU
        engine.reload(handle_b)
        hw = engine._hw[handle_a]  # noqa: SLF001 - the one hardware CPU, as the LPAR's SIE would use it
        engine.enter(hw, page_a, 1)  # A's record loaded (its snapshot kept at the exit)
        engine.enter(hw, page_b, 1)  # B on the same CPU
        engine.enter(hw, page_a, 1)  # A again
        assert CANARY not in uv.secure_cpu(handle_a).gprs


def test_a_cpu_handle_given_to_the_ultravisor_opens_nothing_any_more() -> None:
    """``PvSie.adopt(cpu_handle, handle)``: the hardware CPU becomes the Ultravisor's. A hypervisor that kept
    the handle (or a function or the pending-interruption dict taken from it) read the secure guest's
    registers with ``handle.gprs()`` after the next exit, and its storage with ``read_real``."""
    from test_trust_reach import CANARY

    from emulator.api import _machine_of

    with Host(seed=37) as host:
        g = host.boot()
        hv, pv, v = g._vm.hv, g._vm.pv, g._vm.vcpus[0]  # noqa: SLF001
        handle = pv.cpu_handles[0]
        uv = _machine_of(host).uv
        rec = uv.secure_cpu(handle)
        rec.gprs = [CANARY if i in (6, 7) else x for i, x in enumerate(rec.gprs)]
        h = hv.hardware.new_cpu(0, hv.clock, bytes(256), 0)
        gprs, read_real, pending = h.gprs, h.read_real, h.ext_pending
        pv.host.engine.adopt(handle, h)  # the host keeps ``h``
        ex = pv.host.engine.run(v.page, 50)
        assert ex.icptcode != 0x20, ex  # it ran, on the adopted CPU
        for call in (h.gprs, gprs, lambda: read_real(0, 16), lambda: h.psw):
            with pytest.raises(HwError):
                call()
        pending["service"] = 0x1000  # the dict the host kept is not the CPU's any more
        hw = next(e for e in uv.sie_engines)._hw[handle]  # noqa: SLF001 - the referee's view
        assert "service" not in hw.ext_pending and CANARY in hw.gprs()
        with pytest.raises(HwError):
            pv.host.engine.adopt(handle, h)  # a revoked handle names no CPU


def test_in_place_takes_only_the_hardwares_own_records(booted) -> None:
    """``Hardware.in_place(addr, ctype)`` called ``ctype.from_address`` with the storage in its frame: a
    ctypes class of the host's own ran its ``from_address`` there (the storage object one frame up)."""
    import ctypes

    host, g = booted
    hv = g._vm.hv  # noqa: SLF001
    frames: list[types.FrameType] = []

    class Record(ctypes.Structure):
        _fields_ = [("x", ctypes.c_uint64)]

        @classmethod
        def from_address(cls, address: int) -> Any:  # type: ignore[override]
            frames.append(_climb())
            return ctypes.Structure.from_address.__func__(cls, address)  # type: ignore[attr-defined]

    with pytest.raises(HwError):
        hv.hardware.in_place(hv.alloc.alloc_page(), Record)
    assert frames == []

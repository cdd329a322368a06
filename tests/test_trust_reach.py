"""The host side's reach (issue 18, "the trust boundary as structure"): from every object a host holds - the
API's ``Host`` and ``Guest``, the hypervisor, its VMs, PV objects and vCPUs, the attack playbook's
contexts, a console session in the host view - an attacker walks the object graph the way Python offers it
(``reach_walk``: attributes, slots, items, properties, bound methods' ``__self__``; closures, frames, ``gc``
and module globals are outside, as ``/dev/mem`` is outside a real host's reach) and calls what it finds.

Nothing reachable is raw storage or firmware state: no ``PhysicalMemory``, storage ``mmap`` or view of it,
no unicorn engine, no Ultravisor object, record, key or secret store, no hardware CPU that ran a secure
guest, no secure byte or register value; and every reachable callable that reads storage, given the
secret page's guest or host address, gives an architected refusal (PGM 0x3D) or something without the
secret, never plaintext.
"""

from __future__ import annotations

import ctypes
import enum
import mmap
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reach_walk import Reach, storage_readers, walk

from emulator.api import Guest, Host, SecureStorageAccess, _machine_of
from emulator.attacks.referee import SECRET_WORDS, secret_bytes
from emulator.errors import ProgramException

CANARY = 0x5EC2E7C0FFEE1234
#: firmware types a host may hold: architected records and the gates themselves (plain data, no storage)
_PUBLIC_FIRMWARE = ("UvGate", "PvSie", "UvCommand", "UvCaller", "QueryValues", "UvEvent", "Cc", "Rc")
#: names of callables that read storage (the walk calls each with the secret page's address)
READERS = re.compile(r"(^|_)(read|fetch|peek|window)(_|$)")


def _firmware_state(obj: object) -> bool:
    mod = type(obj).__module__ or ""
    if not mod.startswith("firmware"):
        return False
    if isinstance(obj, (ctypes.Structure, ctypes.Array, enum.Enum)):
        return False  # control-block layouts and codes: architecture, held in host storage anyway
    return type(obj).__name__ not in _PUBLIC_FIRMWARE


def _secret_key_material(obj: object) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("cryptography") and "PublicKey" not in type(obj).__name__


def raw_kind(obj: object, secure_cpus: list[object]) -> str | None:
    """What is wrong with a reachable object, or None."""
    from emulator.hw.cpu import Cpu
    from emulator.hw.memory import PhysicalMemory

    if isinstance(obj, PhysicalMemory):
        return "the storage object (PhysicalMemory)"
    if isinstance(obj, mmap.mmap):
        return "the storage buffer (mmap)"
    if isinstance(obj, memoryview) and (isinstance(obj.obj, mmap.mmap) or obj.nbytes > 0x1000):
        return "a view of storage (memoryview)"
    if isinstance(obj, ctypes.Array) and ctypes.sizeof(obj) > 0x1000:
        return "a ctypes view of storage"
    if (type(obj).__module__ or "").startswith("unicorn"):
        return f"a unicorn engine object ({type(obj).__name__})"
    if _firmware_state(obj):
        return f"firmware state ({type(obj).__name__})"
    if _secret_key_material(obj):
        return f"key material ({type(obj).__name__})"
    if isinstance(obj, Cpu) and any(obj is c for c in secure_cpus):
        return "the hardware CPU of a secure guest"
    if isinstance(obj, (bytes, bytearray)) and (secret_bytes(bytes(obj)) or CANARY.to_bytes(8, "big") in obj):
        return "secure bytes"
    if isinstance(obj, str) and (SECRET_WORDS[:16].decode() in obj or f"{CANARY:016x}" in obj):
        return "secure bytes in text"
    if isinstance(obj, int) and not isinstance(obj, bool) and obj == CANARY:
        return "a secure register's value"
    return None


def findings(reach: Reach, secure_cpus: list[object]) -> dict[str, str]:
    """kind -> the shortest path to an object of that kind."""
    out: dict[str, str] = {}
    for obj, path in reach:
        kind = raw_kind(obj, secure_cpus)
        if kind is not None and (kind not in out or len(path) < len(out[kind])):
            out[kind] = path
    return out


def _secure_cpus(host: Host) -> list[object]:
    uv = _machine_of(host).uv
    return [c for e in list(uv.sie_engines) for c in e._hw.values()]  # noqa: SLF001 - for the assertion


def _canary_in_registers(host: Host, g: Guest) -> None:
    """The canary in six secure registers (the Ultravisor's record), put into the hardware CPU by a step."""
    scpu = _machine_of(host).uv.secure_cpu(g.cpu_handles[0])
    scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
    g.step(0, 3)
    assert any(CANARY in c.gprs() for c in _secure_cpus(host)), "the canary never reached the CPU"


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[Host, Guest, Guest]]:
    """The demo's secure guest after a secure run (canary registers in its hardware CPU), and a normal guest
    (``guests/hello``) that ran on its own hardware CPU (its SCLP calls intercepted), on one host."""
    from emulator.hypervisor.boot import DEMO_KERNEL

    with Host(seed=11) as host:
        g = host.boot()
        _canary_in_registers(host, g)
        n = host.boot(DEMO_KERNEL.with_name("hello.elf"), until=None, time_limit=5)
        assert b"Hello" in n.console and n._vm.intercepts  # noqa: SLF001
        yield host, g, n


def _roots(host: Host, g: Guest, n: Guest) -> dict[str, object]:
    vm = g._vm  # noqa: SLF001 - the hypervisor's own objects are roots too
    return {"host": host, "guest": g, "normal_guest": n, "hypervisor": vm.hv, "vm": vm, "pv": vm.pv,
            **{f"vcpu{a}": v for a, v in vm.vcpus.items()},
            **{f"normal_vcpu{a}": v for a, v in n._vm.vcpus.items()}}  # noqa: SLF001  # fmt: skip


def test_walk_from_the_host_side_finds_no_raw_storage_firmware_state_or_secure_value(booted) -> None:
    host, g, n = booted
    reach = walk(_roots(host, g, n))
    assert len(reach) > 3000  # the walk saw the hypervisor, its VMs, vCPUs, logs
    found = findings(reach, _secure_cpus(host))
    assert found == {}, "\n".join(f"{k}: {p}" for k, p in sorted(found.items()))


def test_what_the_hardware_and_the_gates_hand_out_reaches_nothing_raw(booted) -> None:
    """The sealed objects' functions that return objects (a batch context, a span, a CPU handle, the
    Query values): their results lead to nothing raw either (a generator's context manager keeps its
    arguments: ``PhysicalMemory.owner_batch()`` handed out as it is led to the storage object)."""
    host, g, _n = booted
    hv = g._vm.hv  # noqa: SLF001
    batch = hv.hardware.owner_batch()
    got = {"batch": batch, "span": hv.hardware.span(hv.alloc.alloc_page(), 16),
           "cpu": hv.hardware.new_cpu(7, hv.clock, b"", 0), "query": hv.ultravisor.query}  # fmt: skip
    with batch:
        pass
    try:
        assert findings(walk(got), _secure_cpus(host)) == {}
    finally:
        got["cpu"].close()


def test_the_walk_finds_what_it_looks_for(booted) -> None:
    """The same walk from the machine (the owner's side) finds every kind: the test can fail."""
    host, _g, _n = booted
    m = _machine_of(host)
    found = findings(walk({"machine": m}), _secure_cpus(host))
    for kind in ("the storage object (PhysicalMemory)", "the storage buffer (mmap)",
                 "firmware state (Ultravisor)", "the hardware CPU of a secure guest",
                 "a secure register's value"):  # fmt: skip
        assert kind in found, sorted(found)
    assert any(k.startswith("a unicorn engine object") for k in found)
    assert any(k.startswith("key material") for k in found)


def _call_reader(fn: Callable[..., Any], addr: int) -> tuple[str, Any]:
    """('refused', exception) for PGM 0x3D, ('error', exception) for any other exception, ('value', v)."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "skip", None
    req = [p for p in sig.parameters.values() if p.default is p.empty
           and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
    if any(p.default is p.empty and p.kind == p.KEYWORD_ONLY for p in sig.parameters.values()):
        return "skip", None
    args = {0: (), 1: (addr,), 2: (addr, 64)}.get(len(req))
    if args is None:
        return "skip", None
    try:
        return "value", fn(*args)
    except SecureStorageAccess as e:
        return "refused", e
    except ProgramException as e:
        return ("refused" if e.code == 0x3D else "error"), e
    except Exception as e:  # noqa: BLE001 - any other answer: it must not carry the secret either
        return "error", e


def test_every_reachable_storage_reader_refuses_the_secret_page(booted) -> None:
    host, g, n = booted
    reach = walk(_roots(host, g, n))
    secure_cpus = _secure_cpus(host)
    gaddr = g.secret_page
    frame = g.frame(gaddr)
    assert g.page_state(gaddr) == "secure"
    readers = list(storage_readers(reach, lambda name: bool(READERS.search(name))))
    assert len(readers) > 10
    refused: set[str] = set()
    for path, fn in readers:
        for addr in (gaddr, frame):
            if g.page_state(gaddr) != "secure":  # a hypervisor read exported it: secure again for the next
                assert g.import_page(gaddr).ok and g.frame(gaddr) == frame
            how, got = _call_reader(fn, addr)
            if how == "skip":
                continue
            text = repr(got) if how != "value" else ""
            assert SECRET_WORDS[:16].decode() not in text, f"{path}({addr:#x}) told the secret: {text[:200]}"
            if how == "refused":
                refused.add(path)
            # a value, or an exception with its traceback's frames and chained exceptions (before the gates of
            # ``emulator/hw/seal.py``, a refusal's traceback held the storage object and its ``mmap``)
            bad = findings(walk({"result": got}), secure_cpus)
            assert bad == {}, f"{path}({addr:#x}) gave {bad}"
    # the host's doors to storage refuse with PGM 0x3D: the API's, the host view's, the UV client's
    assert {"guest.read", "host.read", "hypervisor.host.read", "pv.client.read"} <= refused, sorted(refused)


def test_the_hosts_uv_gate_calls_as_the_host_only() -> None:
    """The gate takes a control block's host address, never a caller: a host client cannot call as a guest
    (a guest's Retrieve Secret stores the secret into its block)."""
    from emulator.errors import HypervisorError
    from emulator.hypervisor.uvclient import HostArena, UvClient
    from firmware.uv import UvCaller

    with Host(seed=12) as host:
        gate = host._hv.ultravisor  # noqa: SLF001 - the hypervisor's own gate
        assert set(type(gate).__slots__) == {"call", "query", "initialized", "sie"}
        with pytest.raises(HypervisorError, match="as the host"):
            UvClient(gate, host._hv.host, HostArena(0x100000, 0x200000),  # noqa: SLF001
                     caller=UvCaller("guest", config_handle=1, cpu_handle=1))  # fmt: skip


def test_no_host_side_module_imports_a_door() -> None:
    """The doors that open sealed objects (``hardware_of``, the Ultravisor's SIE engine) are the hardware's,
    the firmware's and the machine owner's: the hypervisor, the API and the attack playbook import none."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "emulator"
    files = [*(root / "hypervisor").glob("*.py"), *root.glob("api*.py"), *(root / "attacks").glob("*.py")]
    assert len(files) > 10
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert "hardware_of" not in names, f"{f.name} imports hardware_of"
                assert node.module != "firmware.uv_sie" or names <= {"VIR_NAMES", "VIR_SIDA"}, f.name


def _console_after_a_secure_run(debug_secure: bool):
    """A console session on the secure demo image after a secure run (the hypervisor's read of the secret
    page trapped), the canary in six secure registers loaded by a step, the host view's commands run."""
    from emulator.console.cli import open_session
    from emulator.console.commands import execute
    from emulator.console.secure import owner_machine
    from emulator.hypervisor.boot import DEMO_IMAGE

    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=debug_secure)
    execute(s, "break secure")
    execute(s, "continue")  # the hypervisor's read of the secret page traps
    assert s.machine.trap is not None
    execute(s, f"watch host:{s.machine.vm.mso + s.machine.trap.gaddr:#x} 16")  # it keeps what it may see
    om = owner_machine(s.machine)
    vm = s.machine.vm
    scpu = om.uv.secure_cpu(vm.pv.cpu_handles[0])
    scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
    execute(s, "step")
    for cmd in ("regs", "status", "pages", "uvlog 3", "x/4xg pc", "info", "mem host:0x1015000 16"):
        execute(s, cmd)
    hw = [c for e in list(om.uv.sie_engines) for c in e._hw.values()]  # noqa: SLF001
    assert any(CANARY in c.gprs() for c in hw), "the canary never reached the CPU"
    return s, hw


def test_console_session_in_the_host_view_reaches_nothing_raw() -> None:
    """A console session on an SE image without the debug capability: its machine holds the storage as a
    ``SessionStorage`` and the Ultravisor in closures; the walk finds nothing raw and every read refuses the
    secret page or hides it."""
    from emulator.console.session_storage import Hidden

    s, hw = _console_after_a_secure_run(debug_secure=False)
    try:
        reach = walk({"session": s})
        assert len(reach) > 3000
        found = findings(reach, hw)
        assert found == {}, "\n".join(f"{k}: {p}" for k, p in sorted(found.items()))
        from emulator.console.secure import owner_machine

        # a secure frame of the guest that holds data (the secret page was exported by the hypervisor's read)
        raw = owner_machine(s.machine).memory  # the referee's view
        frame = next(f << 12 for f in (p.frame for p in s.providers.page_map.pages() if p.state == "secure")
                     if any(raw.read(f << 12, 64)))  # fmt: skip
        assert isinstance(s.machine.memory.read(frame, 16), Hidden)
        plain = raw.read(frame, 64)
        called = 0
        for path, fn in storage_readers(reach, lambda name: bool(READERS.search(name))):
            how, got = _call_reader(fn, frame)
            called += how != "skip"
            text = repr(got) if how != "value" else ""
            assert SECRET_WORDS[:16].decode() not in text and plain[:16].hex() not in text, f"{path} told it"
            if how == "value":
                assert not (isinstance(got, (bytes, bytearray)) and plain[:16] in got), (
                    f"{path} gave plaintext"
                )
            assert findings(walk({"result": got}), hw) == {}, path  # an exception's frames too
        assert called > 5
        # what the session's sealed functions raise for addresses beyond storage: no frame holding the storage
        # or the Ultravisor (before the gates: ``machine.memory.read``, ``machine._owner``, the page map's)
        every = re.compile(r"(^|_)(read|write|check|translate|owner|page|get)(_|$)")
        raised = 0
        for path, fn in storage_readers(reach, lambda name: bool(every.search(name))):
            how, got = _call_reader(fn, 1 << 62)
            raised += how in ("error", "refused")
            assert findings(walk({"raised": got}), hw) == {}, path
        assert raised > 10
    finally:
        s.close()


def test_console_session_with_the_debug_capability_reaches_the_owners_view() -> None:
    """With the capability (asked for by name) the same walk finds the machine's storage, the Ultravisor and
    the secure guest's hardware CPU: the capability is the owner's view, and the walk can see it."""
    from emulator.console.secure import owner_machine

    s, hw = _console_after_a_secure_run(debug_secure=True)
    try:
        found = findings(walk({"session": s}), hw)
        assert "the storage object (PhysicalMemory)" in found and "firmware state (Ultravisor)" in found
        assert "the hardware CPU of a secure guest" in found
        assert found["the storage object (PhysicalMemory)"].startswith("session.machine.debug")
        frame = s.machine.vm.mso + s.machine.trap.gaddr  # the secret page the hypervisor's read trapped on
        assert s.machine.memory.read(frame, 4096) == owner_machine(s.machine).memory.read(frame, 4096)
    finally:
        s.close()


def test_a_hypervisor_in_an_lpar_reaches_nothing_raw() -> None:
    """zuv's hypervisor on a machine's LPAR (``Hypervisor.on_machine``: the storage, the clock and the
    Ultravisor of a ``Machine(level=2, ultravisor=True)``), the canary guest running secure: from the
    hypervisor, its VM, PV object and vCPUs nothing raw and no canary value or byte is reachable."""
    from trust_model import Env

    from emulator.attacks.canary import canary_bytes, canary_int

    env = Env(seed=3)
    try:
        env.vm.run(time_limit=0.3)  # the guest's store loop ran secure on its hardware CPU
        uv = env.m.uv  # the machine's (the owner's): for the assertion only
        secure_cpus = [c for e in list(uv.sie_engines) for c in e._hw.values()]  # noqa: SLF001
        assert secure_cpus
        roots = {"hypervisor": env.hv, "vm": env.vm, "pv": env.pv,
                 **{f"vcpu{a}": v for a, v in env.vm.vcpus.items()}}  # fmt: skip
        reach = walk(roots)
        assert len(reach) > 1000
        found = findings(reach, secure_cpus)
        assert found == {}, "\n".join(f"{k}: {p}" for k, p in sorted(found.items()))
        assert "the storage object (PhysicalMemory)" in findings(walk({"machine": env.m}), secure_cpus)
        for obj, path in reach:
            if isinstance(obj, int) and not isinstance(obj, bool):
                assert not canary_int(obj), f"a canary register value at {path}"
            elif isinstance(obj, (bytes, bytearray, str)):
                assert canary_bytes(obj) == 0, f"canary bytes at {path}"
    finally:
        env.close()


def test_what_the_apis_public_calls_return_reaches_nothing_raw() -> None:
    """Every public method of ``Host`` and ``Guest`` that takes no argument (but those that run, boot, end
    or draw, and the named debug capability) is called after a secure run: no result leads to anything raw."""
    import inspect

    skip = {"destroy", "close", "run", "boot", "debug_capability", "events", "exits", "step", "draw_pages",
            "draw_uv_log"}  # fmt: skip
    with Host(seed=13) as host:
        g = host.boot()
        _canary_in_registers(host, g)
        called = []
        for name, obj in (("host", host), ("guest", g)):
            for attr in dir(obj):
                fn = getattr(obj, attr) if not attr.startswith("_") and attr not in skip else None
                if not callable(fn):
                    continue
                params = inspect.signature(fn).parameters.values()
                if any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                       for p in params):  # fmt: skip
                    continue
                result = fn()
                called.append(f"{name}.{attr}")
                found = findings(walk({"result": result}), _secure_cpus(host))
                assert found == {}, f"{name}.{attr}() gave {found}"
        assert {"host.page_map", "host.uv_log", "guest.state_description", "guest.sida"} <= set(called)


def test_console_session_before_the_secure_ipl_reaches_nothing_raw() -> None:
    """While stage3a runs as a normal guest the console's vCPU forwards to the hypervisor's hardware CPU,
    which holds the storage object: a host-view session hands out closures and plain data only (a storage
    object taken then would still read the secure guest's plaintext later)."""
    from emulator.console.cli import open_session
    from emulator.console.commands import execute
    from emulator.hw.cpu import Cpu
    from emulator.hypervisor.boot import DEMO_IMAGE

    s = open_session(str(DEMO_IMAGE), deterministic=True)
    try:
        execute(s, "stepi")
        execute(s, "regs")
        cpu = s.machine.cpus[0]
        assert not s.machine.vm.vcpus[0].secure and cpu.reachable()
        assert findings(walk({"session": s}), []) == {}
        handed: dict[str, object] = {}
        for name in dir(Cpu):
            try:
                handed[name] = getattr(cpu, name)
            except Exception:  # noqa: BLE001 - refused (private, storage, engine, not plain data)
                continue
        assert "gprs" in handed and "mem" not in handed and "uc" not in handed and len(handed) > 20
        assert findings(walk(handed), []) == {}
    finally:
        s.close()

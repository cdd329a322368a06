"""Issue 18, classes 2 and 3: what SIE leaves the hypervisor after a secure guest ran. The SIDA (every page of
a multi-page one) is host storage checked at each access; no object reachable from the hypervisor, the VM or
the vCPU holds a secure byte or a CPU with the secure guest's mapping."""

from __future__ import annotations

import pytest

from emulator.api import Host, SecureStorageAccess, _machine_of
from emulator.attacks.referee import SECRET_WORDS
from emulator.console.secure import owner_machine
from emulator.console.vcpu import hardware
from emulator.errors import HypervisorError
from emulator.hw.cpu_handle import hardware_of
from firmware.uv_sie import VIR_SIDA


def _secret_on_second_sida_page(host: Host):
    """Boot the demo guest, move its secret page onto the frame after a fresh host page A (export, remap,
    import: the Ultravisor decrypts the secret into A+4 KiB) and make the SIDA the two pages at A."""
    g = host.boot()
    vm = g._vm  # noqa: SLF001 - the hypervisor's own objects are what this test attacks
    s = g.secret_page
    a = vm.hv.alloc.alloc_range(0x2000)
    assert g.export(s).ok
    old = g.remap(s, a + 0x1000)
    host.write(a + 0x1000, host.read(old, 0x1000))  # the ciphertext moves with the page
    assert g.import_page(s).ok
    assert g.page_state(s) == "secure" and g.frame(s) == a + 0x1000
    v = vm.vcpus[0]
    v.sd.sidad = a | 1  # two pages
    return g, vm, v, a


def test_multi_page_sida_with_a_secure_second_page_is_refused() -> None:
    with Host(seed=5) as host:
        g, vm, v, a = _secret_on_second_sida_page(host)
        pv = vm.pv
        sida = pv.host.sida(v.page)
        assert sida.size == 0x2000
        assert sida.read(0, 16) == bytes(sida.read(0, 16))  # the first page is the host's
        with pytest.raises(SecureStorageAccess):
            sida.read(0xFF0, 0x20)  # crosses into the secure page: nothing returned
        with pytest.raises(SecureStorageAccess):
            sida.write(0x1000, b"x")
        # SIE refuses the state description: validity interception, the guest does not run (the engine's own
        # SIDA span, from the state description, checks every page too)
        ex, done = g.step(0, 100)
        assert ex.icptcode == 0x20 and ex.ipb >> 16 == VIR_SIDA and done == 0
        assert SECRET_WORDS[:16] not in host.read(a, 0x1000)
        # a one-page SIDA at A again: the guest runs on
        v.sd.sidad = a
        ex, done = g.step(0, 100)
        assert ex.icptcode != 0x20 and done > 0


def test_sida_helper_range_is_bounded() -> None:
    with Host(seed=6) as host:
        g = host.boot()
        v = g._vm.vcpus[0]  # noqa: SLF001
        sida = g._vm.pv.host.sida(v.page)  # noqa: SLF001
        with pytest.raises(HypervisorError):
            sida.read(0xFFF, 2)


def _hw_cpus(uv) -> list[object]:
    """The hardware CPUs of secure CPUs in every SIE engine of the Ultravisor (its side, for assertions)."""
    return [c for e in list(uv.sie_engines) for c in e._hw.values()]  # noqa: SLF001


# -- class 2: the object graph the host reaches after a secure run --------------------------------------

CANARY = 0x5EC2E7C0FFEE1234


def _trusted(obj: object) -> bool:
    """The doors into trusted layers the walk does not pass: the Ultravisor and its records (``firmware``),
    the Ultravisor's half of SIE, and the machine's storage (the host touches it through ``HostView``'s
    checks only)."""
    from emulator.hw.memory import PhysicalMemory
    from firmware.uv_sie import PvSieEngine

    mod = type(obj).__module__ or ""
    return mod.startswith("firmware") or isinstance(obj, (PvSieEngine, PhysicalMemory))


def _reachable(roots: list[object], storage: set[int], limit: int = 300_000, doors: tuple[type, ...] = ()
               ) -> list[object]:  # fmt: skip
    """Objects reachable from ``roots`` through ``gc.get_referents`` (not through modules, classes, a
    function's internals, the trusted doors, instances of ``doors`` or the storage buffers), breadth first, at
    most ``limit``. A function is a leaf: its closure is outside the host side's reach, where sealed objects
    keep what they guard (``ARCHITECTURE.md``; ``tests/test_trust_reach.py`` walks the model itself)."""
    import gc
    import types

    seen: set[int] = set()
    out: list[object] = []
    todo = list(roots)
    while todo and len(out) < limit:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in storage:
            continue
        seen.add(id(obj))
        if isinstance(obj, (types.ModuleType, type)) or _trusted(obj) or (doors and isinstance(obj, doors)):
            continue
        out.append(obj)
        if isinstance(obj, types.FunctionType):
            continue
        todo.extend(gc.get_referents(obj))
    assert len(out) < limit, "the walk did not finish: raise the bound"
    return out


def test_no_secure_byte_register_or_cpu_reachable_from_the_hypervisor_after_a_secure_run() -> None:
    from emulator.attacks.referee import secure_registers
    from emulator.hw.cpu import Cpu

    with Host(seed=7) as host:
        g = host.boot()
        vm = g._vm  # noqa: SLF001 - the hypervisor's own objects are what this test walks
        hv = vm.hv
        uv = _machine_of(host).uv  # the machine's (the hypervisor holds only the Ultravisor's gate)
        scpu = uv.secure_cpu(g.cpu_handles[0])
        # the canary in secure registers: the UV's record, loaded into the hardware CPU at the next entry
        scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
        g.step(0, 3)
        g.run(time_limit=0.5, max_insns=20_000)
        assert CANARY in secure_registers(g), "the guest overwrote every canary register: the test is void"
        hw = _hw_cpus(uv)
        assert hw and any(CANARY in c.gprs() for c in hw)  # the hardware CPU ran with the canary
        assert not hasattr(hv, "memory")  # the hypervisor holds the machine's hardware, not its storage
        mem = uv.mem  # the storage (the Ultravisor's), to skip its buffers in the walk
        storage = {id(mem._buf), id(mem._view)}  # noqa: SLF001
        objs = _reachable([hv, vm, *vm.vcpus.values(), g], storage)
        secret = SECRET_WORDS[:16]
        for obj in objs:
            if isinstance(obj, Cpu):
                assert obj not in hw, "a hardware CPU of the secure guest is reachable"
                assert CANARY not in obj.gprs()
            elif isinstance(obj, int) and not isinstance(obj, bool):
                assert obj != CANARY, "a secure register value is reachable"
            elif isinstance(obj, (bytes, bytearray)):
                assert secret not in obj
            elif isinstance(obj, memoryview):
                assert obj.nbytes <= 1 << 20, f"a view of {obj.nbytes:#x} bytes of storage is reachable"
                assert secret not in obj.tobytes()
            elif isinstance(obj, str):
                assert SECRET_WORDS[:16].decode() not in obj
        assert len(objs) > 1000  # the walk saw the hypervisor's objects


def _assert_nothing_secure(objs: list[object], hw: list[object], secret: bytes) -> None:
    from emulator.hw.cpu import Cpu

    for obj in objs:
        if isinstance(obj, Cpu):
            assert obj not in hw, "a hardware CPU of the secure guest is reachable"
            assert CANARY not in obj.gprs()
        elif isinstance(obj, int) and not isinstance(obj, bool):
            assert obj != CANARY, "a secure register value is reachable"
        elif isinstance(obj, (bytes, bytearray)):
            assert secret not in obj and f"{CANARY:016x}".encode() not in obj
        elif isinstance(obj, memoryview):
            assert obj.nbytes <= 1 << 20, f"a view of {obj.nbytes:#x} bytes of storage is reachable"
            assert secret not in obj.tobytes()
        elif isinstance(obj, str):
            assert secret.decode() not in obj and f"{CANARY:016x}" not in obj


def test_api_breakpoints_events_and_no_debug_capability_reach_nothing_secure() -> None:
    """The API's breakpoints, their events and callbacks, after a secure run that hit them: no secure byte,
    register or CPU; and no debug capability reachable unless the script asked for one by name."""
    from emulator.api import Breakpoint, DebugCapability, Event
    from emulator.attacks.referee import secure_registers
    from emulator.machine.secure_debug import SecureDebug

    with Host(seed=9) as host:
        g = host.boot()
        scpu = _machine_of(host).uv.secure_cpu(g.cpu_handles[0])
        scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
        seen: list[Event] = []
        g.break_on_exit(callback=lambda e: seen.append(e) and False)
        g.break_on_uvc(callback=lambda e: seen.append(e) and False)
        g.break_on_secure_access()
        try:
            g.read(g.secret_page, 16)
        except SecureStorageAccess:
            pass
        trapped = g.take_events()
        g.step(0, 3)
        events = trapped + list(g.events(time_limit=0.5))
        assert CANARY in secure_registers(g), "the guest overwrote every canary register: the test is void"
        assert seen and events and any(e.kind == "secure-access" for e in events)
        hw = _hw_cpus(_machine_of(host).uv)
        mem = _machine_of(host).memory  # the storage, to skip its buffers in the walk
        storage = {id(mem._buf), id(mem._view)}  # noqa: SLF001
        objs = _reachable([g, host, *g.breakpoints, *events, *seen], storage)
        _assert_nothing_secure(objs, hw, SECRET_WORDS[:16])
        assert not any(isinstance(o, (DebugCapability, SecureDebug)) for o in objs)
        assert sum(isinstance(o, Breakpoint) for o in objs) == 3 and not host.debug_given


def test_gdb_stub_host_view_holds_and_sends_nothing_secure() -> None:
    """The GDB stub serving a console session's host view of the secure demo: after gdb asked for every
    register, the secret page and the code around the PC, nothing it sent and nothing its own objects hold
    (the session and the machine behind it are the console's, an emulator privilege, and not walked) has a
    secure byte, a secure register or a CPU."""
    import threading

    from test_gdbstub import Client

    from emulator.console.cli import open_session
    from emulator.console.commands import execute
    from emulator.console.gdbserve import SessionAccess
    from emulator.console.session import Session
    from emulator.gdb.stub import GdbStub, frame
    from emulator.hypervisor.boot import DEMO_IMAGE

    s = open_session(str(DEMO_IMAGE), deterministic=True)
    execute(s, "break uvc set_shared_access")
    execute(s, "continue")
    m = s.machine
    vm = m.vm
    om = owner_machine(m)  # the machine's own parts (the session holds them sealed)
    scpu = om.uv.secure_cpu(vm.pv.cpu_handles[0])
    scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
    stub = GdbStub(m, port=0, access=SessionAccess(s, owner=False), detach_runs=False)
    t = threading.Thread(target=stub.serve, daemon=True)
    t.start()
    c = Client(stub.port)
    sent = [c.ask("g"), c.ask("m15000,100"), c.ask("m10800,100"), c.ask("p8"), c.ask("s"), c.ask("g")]
    sent += [c.ask(f"p{n:x}") for n in range(0x60)]
    c.raw(frame(b"D"))
    c.reply()
    t.join(30)
    wire = "".join(sent)
    assert SECRET_WORDS[:16].hex() not in wire and f"{CANARY:016x}" not in wire
    assert any(v == CANARY for v in om.uv.secure_cpu(vm.pv.cpu_handles[0]).gprs)  # still in the record
    hw = _hw_cpus(om.uv)
    storage = {id(om.memory._buf), id(om.memory._view)}  # noqa: SLF001
    objs = _reachable([stub], storage, doors=(Session, type(m), SessionAccess))
    _assert_nothing_secure(objs, hw, SECRET_WORDS[:16])
    assert len(objs) > 10 and objs[0] is stub  # the walk saw the stub's own objects


def test_hardware_cpu_goes_back_scrubbed_when_the_vm_stops_being_secure() -> None:
    from emulator.attacks.referee import secure_registers

    with Host(seed=8) as host:
        g = host.boot()
        vm = g._vm  # noqa: SLF001
        regs = [r for r in secure_registers(g) if r > 0xFFFF]
        assert regs
        frame = g.frame(g.secret_page)
        h = g.cpu_handles[0]
        (engine,) = _machine_of(host).uv.sie_engines
        cpu = engine._hw[h]  # noqa: SLF001 - the Ultravisor's side, for the assertion only
        vm.pv.disable()
        v = vm.vcpus[0]
        assert hardware_of(v.cpu) is cpu and cpu.guest is None  # the hypervisor's handle on it again
        assert not set(regs) & set(v.cpu.gprs()) and v.cpu.psw == (0, 0)
        assert SECRET_WORDS[:16] not in v.cpu.read_real(frame, 4096)  # destroyed: cleared, the host's again


def test_the_hypervisor_reaches_storage_only_through_the_hardware_and_the_host_view() -> None:
    """Item 4 of issue 18's remainder: from the hypervisor, its VM, vCPUs and PV objects no path leads to the
    machine's storage object (``PhysicalMemory``: unchecked reads and writes) except through the hardware's
    doors: its CPUs (whose accesses are checked by their own access path), ``Hardware``, the host view and its
    spans (checked at every access), the Ultravisor and its SIE engine."""
    import gc
    import types

    from emulator.hw.cpu import Cpu
    from emulator.hw.hardware import Hardware
    from emulator.hw.host_view import HostSpan, HostView
    from emulator.hw.memory import PhysicalMemory
    from firmware.uv_sie import PvSieEngine

    doors = (Cpu, Hardware, HostView, HostSpan, PvSieEngine)
    with Host(seed=8) as host:
        g = host.boot()
        vm = g._vm  # noqa: SLF001 - the hypervisor's own objects are what this test walks
        hv = vm.hv
        assert not hasattr(hv, "memory")
        roots: list[object] = [hv, vm, *vm.vcpus.values(), vm.pv, vm.pv.host, vm.pv.client]
        seen: set[int] = set()
        found: list[str] = []
        todo = [(r, type(r).__name__) for r in roots]
        while todo:
            obj, path = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, PhysicalMemory):
                found.append(path)
                continue
            mod = type(obj).__module__ or ""
            # the API's guest is a listener of the hypervisor's exits: it belongs to the machine's owner above
            # the hypervisor (its Host holds the machine), not to the hypervisor
            if isinstance(obj, (types.ModuleType, type, *doors)) or mod.startswith("firmware"):
                continue
            if mod == "emulator.api":
                continue
            # a function is a leaf: its closure is outside the host side's reach (``ARCHITECTURE.md``)
            refs = [] if isinstance(obj, types.FunctionType) else gc.get_referents(obj)
            todo.extend((r, f"{path} > {type(r).__name__}") for r in refs)
        assert found == [], found[:5]


def test_a_state_description_frame_cannot_become_secure() -> None:
    """The host maps a secure guest page onto the frame of its vCPU's state description and imports the
    page's export there: the hypervisor's own SD fields (read in place) would then hold the guest's
    plaintext. The Ultravisor refuses (rc 0x0105: the frame is a secure CPU's state description) and the SD
    stays host storage."""
    from emulator.attacks.canary import boot_canary, canary_bytes

    with Host(seed=4) as host:
        g, hot, _cold = boot_canary(host)
        sd = g._vm.vcpus[0].page_addr  # noqa: SLF001 - the SD page's host address
        assert g.export(hot).ok
        old = g.remap(hot, sd)
        host.write(sd, host.read(old, 4096))  # the export's ciphertext where the import will look
        r = g.import_page(hot)
        assert r.rc == 0x0105
        assert g.page_state(hot) == "host"  # the SD's frame: still the host's
        assert canary_bytes(host.read(sd, 4096)) == 0


def test_a_state_description_frame_cannot_be_donated() -> None:
    """Nor can the frame become Ultravisor storage: Create Secure CPU with its storage donated over the
    existing CPU's state description is refused (rc 0x0105) and the SD stays host storage."""
    from emulator.attacks.canary import boot_canary

    with Host(seed=4) as host:
        g, _hot, _cold = boot_canary(host)
        sd = g._vm.vcpus[0].page_addr  # noqa: SLF001 - the SD page's host address
        spare = host.alloc_page()
        r = host.uvc("create_sec_cpu", guest_handle=g.handle, stor_origin=sd, num=1, state_origin=spare)
        assert r.rc == 0x0105
        assert host.read(sd, 8) is not None  # still host storage: no PGM 0x3D


def _console_after_a_secure_run(debug_secure: bool):
    """A console session on the secure demo that ran the guest past its secret page (the hypervisor's read
    trapped), with the canary in the secure CPU's registers; its walk (the storage buffers skipped)."""
    from emulator.console.cli import open_session
    from emulator.console.commands import execute

    s = open_session(str(_demo_image()), deterministic=True, debug_secure=debug_secure)
    execute(s, "break secure")
    execute(s, "continue")  # the hypervisor's read of the secret page: the guest ran secure a long while
    m = s.machine
    vm = m.vm
    om = owner_machine(m)  # the machine's own parts (the session holds them sealed)
    assert vm.pv is not None and m.trap is not None
    scpu = om.uv.secure_cpu(vm.pv.cpu_handles[0])
    scpu.gprs = [CANARY if i in (6, 7, 8, 9, 10, 11) else v for i, v in enumerate(scpu.gprs)]
    execute(s, "step")  # the canary goes into the hardware CPU at the entry
    for cmd in ("regs", "status", "pages", "uvlog 3", "x/4xg pc", "info"):  # the host view's commands
        execute(s, cmd)
    hw = _hw_cpus(om.uv)
    assert hw and any(CANARY in c.gprs() for c in hw), "the hardware CPU never held the canary: test is void"
    mem = om.memory
    storage = {id(mem._buf), id(mem._view)}  # noqa: SLF001
    return s, hw, _reachable([s], storage)


def _demo_image():
    from emulator.hypervisor.boot import DEMO_IMAGE

    return DEMO_IMAGE


def test_console_session_without_the_debug_capability_reaches_no_secure_cpu_debug_or_secure_byte() -> None:
    """Issue 18, deliverable 2: a console session opened without --debug-secure, after a secure run: from
    it no hardware CPU of the secure guest, no SecureDebug, no capability, no secure byte nor register value
    (the Ultravisor and the storage are trusted doors the walk does not pass, as for the hypervisor)."""
    from emulator.api import DebugCapability
    from emulator.machine.secure_debug import SecureDebug

    s, hw, objs = _console_after_a_secure_run(debug_secure=False)
    try:
        _assert_nothing_secure(objs, hw, SECRET_WORDS[:16])
        assert not any(isinstance(o, (DebugCapability, SecureDebug)) for o in objs)
        assert len(objs) > 1000  # the walk saw the session, the machine, the hypervisor
        assert "needs the machine's debug capability" in _run(s, "view owner")
        assert "needs the machine's debug capability" in _run(s, "dual abs:0x15000 16")
    finally:
        s.close()


def test_console_session_with_the_debug_capability_reaches_it() -> None:
    """The same walk from a session given the capability finds SecureDebug and the secure guest's hardware
    CPU: the walk above can fail."""
    from emulator.hw.cpu import Cpu
    from emulator.machine.secure_debug import SecureDebug

    s, hw, objs = _console_after_a_secure_run(debug_secure=True)
    try:
        debug = [o for o in objs if isinstance(o, SecureDebug)]
        assert debug and debug[0] is s.machine.debug
        cpu = debug[0].hardware_cpu(s.machine.vm, 0)  # through it: the secure guest's hardware CPU
        assert isinstance(cpu, Cpu) and cpu in hw and hardware(s.machine.cpus[0]) is cpu
        with pytest.raises(AssertionError, match="hardware CPU of the secure guest"):
            _assert_nothing_secure([*objs, cpu], hw, SECRET_WORDS[:16])
    finally:
        s.close()


def _run(s, cmd: str) -> str:
    from emulator.console.commands import execute

    return execute(s, cmd).plain()


def test_a_normal_vms_sie_page_frame_cannot_become_secure_while_the_hypervisor_holds_it() -> None:
    """The hypervisor reads and writes its SIE pages in place (a ctypes structure over storage, unchecked):
    a frame designated by no secure CPU, a normal VM's SIE page, was imported as a secure guest's page and
    its SD fields showed the plaintext. The frame stays host storage while the page object lives (Convert
    to Secure Storage refused, rc 0x0105); once the VM is gone and its page with it, the frame is free."""
    import ctypes

    from emulator.attacks.canary import boot_canary, canary_bytes

    with Host(seed=4) as host:
        g, hot, _cold = boot_canary(host)
        hv = g._vm.hv  # noqa: SLF001 - the hypervisor's own objects are what this test attacks
        vm2 = hv.create_vm(memory_size=1 << 20, cpus=1, name="normal")
        page, frame = vm2.vcpus[0].page, vm2.vcpus[0].page_addr
        assert g.export(hot).ok
        old = g.remap(hot, frame)
        host.write(frame, host.read(old, 4096))  # the export's ciphertext where the import looks
        assert g.import_page(hot).rc == 0x0105
        assert g.page_state(hot) == "host"
        raw = bytes((ctypes.c_char * 4096).from_address(ctypes.addressof(page)))
        assert canary_bytes(raw) == 0 and canary_bytes(host.read(frame, 4096)) == 0
        # the VM and its page gone, the frame may be a secure guest's page again
        hv.destroy_vm(vm2)
        del page, vm2
        host.write(frame, host.read(old, 4096))
        assert g.import_page(hot).ok
        assert g.page_state(hot) == "secure"
        with pytest.raises(SecureStorageAccess):
            host.read(frame, 16)


def test_a_sida_made_secure_during_the_entry_gives_a_validity_interception_not_a_copy() -> None:
    """The SIE engine fills the SIDA when an instruction is intercepted (the demo guest's SERVC: its SCCB),
    long after the entry checked the SIDA. A SIDA frame that another thread made secure meanwhile refused
    the copy, and the refusal escaped SIE as a Python exception (SecureStorageAccess out of the run); now
    nothing is copied, the secure frame is unchanged and the host gets validity VIR_SIDA."""
    from emulator.hw.memory import PAGE_SHIFT

    with Host(seed=7) as host:
        g = host.boot(until=b"Hello from")  # the guest prints on through SERVC
        vm = g._vm  # noqa: SLF001 - the hypervisor's own objects
        uv = _machine_of(host).uv
        mem = uv.mem
        sida = vm.vcpus[0].sd.sida_origin
        frame = sida >> PAGE_SHIFT
        before = mem.read(sida, 4096)
        fired = []

        def make_the_sida_secure(cpu, insn):
            if insn.name == "SERVC" and not fired:
                fired.append(insn.name)
                mem.set_owner(frame, 99)  # as a UV command on another thread would, after the entry's check
            return None

        for engine in uv.sie_engines:
            engine.insn_filter = make_the_sida_secure
        for _ in range(200):  # SIE exits until the guest's first SERVC
            ex, _done = g.step(0, 100_000)
            if fired:
                break
        assert fired, "the guest issued no SERVC: the test is void"
        assert ex.icptcode == 0x20 and ex.ipb >> 16 == VIR_SIDA
        assert mem.read(sida, 4096) == before  # nothing of the guest's SCCB went into the secure frame
        mem.set_owner(frame, 0)


def test_initialize_refuses_base_storage_over_a_sie_page_the_host_holds_and_changes_nothing() -> None:
    """Initialize Ultravisor donated its frames one by one; a SIE page the hypervisor holds in place among
    them stopped the donation halfway with a Python exception (HwError from the pin's backstop), the frames
    before it already the Ultravisor's. Now: rc 0x0106 before anything changes."""
    from emulator.hypervisor.boot import SecureHost
    from emulator.hypervisor.uvclient import HostArena, UvClient

    host = SecureHost("zuv-demo", memory=8 << 30, seed=1)
    at = 3 << 30
    page = host.hv.sie_page(at)  # the hypervisor's SIE page above 2 GiB
    client = UvClient(host.uv, host.memory.host_view(), HostArena(0x100000, 0x2000000))
    owners = bytes(memoryview(host.memory.owner)[(at >> 12) - 1 : (at >> 12) + 2].cast("B"))
    res = client.call("init_uv", stor_origin=at - 0x1000, stor_len=client.query().uv_base_stor_len)
    assert res.rc == 0x0106 and not host.uv.initialized
    assert bytes(memoryview(host.memory.owner)[(at >> 12) - 1 : (at >> 12) + 2].cast("B")) == owners
    del page

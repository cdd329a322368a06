"""The public API (emulator.api): its examples run, it hands out only what the host may have, it never
prints, and each host path gives the architected result."""

from __future__ import annotations

import doctest
import inspect
import re

import pytest

import emulator.api as api
from emulator.api import Guest, Host, HypervisorError, SecureStorageAccess
from emulator.hypervisor.boot import DEMO_IMAGE

HELLO = DEMO_IMAGE.with_name("hello.elf")
#: what must never be reachable through the API's public surface
FORBIDDEN = ("PhysicalMemory", "HostView", "Cpu", "Ultravisor", "Vm", "Vcpu", "SecureHost", "Hypervisor")


def test_docstring_examples_run() -> None:
    import emulator.api_attest as api_attest
    import emulator.api_debug as api_debug

    for mod, least in ((api, 8), (api_debug, 5), (api_attest, 3)):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.attempted >= least and res.failed == 0, mod.__name__


@pytest.mark.parametrize("cls", [Host, Guest, api.RelyingParty, api.DebugCapability, api.Breakpoint])
def test_public_surface_hands_out_no_trusted_object(cls: type) -> None:
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        fn = member.fget if isinstance(member, property) else member
        if not callable(fn):
            continue
        ret = str(inspect.signature(fn).return_annotation)
        types = set(re.split(r"[\[\]|, ]+", ret))
        assert not types & set(FORBIDDEN), (name, ret)


def test_public_values_are_plain_data(capsys) -> None:
    with Host(seed=3) as host:
        g = host.boot()
        for name, member in inspect.getmembers(Guest):
            if isinstance(member, property):
                value = getattr(g, name)
                assert type(value).__module__ in ("builtins",), (name, type(value))
        sd = g.state_description()
        assert len(sd.raw) == 4096 and len(sd.pv_grregs) == 16
        assert len(g.sida()) == 4096
    assert capsys.readouterr().out == ""


def test_secure_guest_host_paths_and_nothing_printed(capsys) -> None:
    with Host(seed=1) as host:
        g = host.boot()
        s = g.secret_page
        assert g.secure and g.handle and g.cpu_handles
        assert g.page_state(s) == "secure"
        shared = g.pages("shared")
        assert len(shared) == 4 and all(g.page_state(a) == "shared" for a in shared)
        with pytest.raises(SecureStorageAccess) as e:
            g.read(s, 8)
        assert e.value.code == 0x3D
        a = g.try_write(s - 4, b"12345678")  # crosses into the secure page: nothing stored
        assert not a.ok and a.code == 0x3D
        assert g.try_read(shared[0], 16).ok
        r = g.export(s)
        assert r.ok and r.rc == 1 and g.page_state(s) == "host"
        assert g.import_page(s).rc == 1 and g.page_state(s) == "secure"
        log = host.uv_log()
        names = {e.name for e in log if e.caller == "host" and e.rc == 1}
        assert {"Set Secure Configuration Parameters", "Unpack", "Verify"} <= names
        assert all(e.fields == () for e in log if e.caller == "guest")
        assert any(e.name == "Set Shared Access" for e in log if e.caller == "guest")
        out = g.run()
        assert out.clean and b"secret intact: yes" in g.console
        # a guest stopped by the hypervisor (a forged page) is reported through the API, not on stdout
        host2 = Host(seed=1)
        g2 = host2.boot()
        g2.export(g2.secret_page)
        g2.write(g2.secret_page, b"forged")
        assert not g2.run().clean and "0x0107" in g2.cpu_detail
        host2.close()
    assert capsys.readouterr().out == ""


def test_step_and_exits() -> None:
    with Host(seed=1) as host:
        g = host.boot(run=False)
        seen: list[api.Exit] = []
        off = g.on_exit(seen.append)
        total = 0
        for _ in range(400):
            ex, n = g.step(count=5000)
            total += n
            if g.secure and any(e.icptcode == 0x68 for e in seen):
                break
        off()
        assert g.secure and total > 0
        assert any(e.icptcode == 0x68 and e.ipa for e in seen)
        with g.exits() as more:
            g.run(until=b"secret page at")
        assert more and b"secret page at" in g.console


def test_remap_changes_the_frame_the_guest_page_names() -> None:
    with Host(seed=1) as host:
        g = host.boot()
        s = g.secret_page
        mine = host.alloc_page()
        host.write(mine, b"host data")
        old = g.remap(s, mine)
        assert g.frame(s) == mine and old != mine
        assert g.read(s, 9) == b"host data"  # the host reads its own frame, not the guest's
        with pytest.raises(SecureStorageAccess):
            host.read(old, 8)


def test_normal_guest() -> None:
    with Host(seed=1) as host:
        g = host.boot(HELLO, until=None)
        assert not g.secure and g.handle == 0 and g.sida() == b""
        assert g.run().clean or g.console
        g.write(0x80000, b"abc")
        assert g.read(0x80000, 3) == b"abc" and g.page_state(0x80000) == "host"
        with pytest.raises(HypervisorError):
            g.import_page(0x80000)
        with pytest.raises(HypervisorError):
            g.read(g.memory_size - 1, 2)


def test_relying_party_honest_run_unlocks() -> None:
    with api.RelyingParty() as rp:
        r = rp.boot()
    assert r.unlocked and r.refused_field is None and r.answer is not None


def test_bad_input_is_a_clear_error() -> None:
    from emulator.errors import EmulatorError

    with Host(seed=1) as host:
        g = host.boot()
        calls = [lambda: g.step(cpu=5), lambda: g.state_description(3), lambda: g.cpu_reset("clear", cpu=2),
                 lambda: g.cpu_reset("hard"), lambda: g.set_cpu_state("running"),
                 lambda: g.uvc("no_such_call"),
                 lambda: g.frame(1 << 40), lambda: g.uvc("qui", bogus=1), lambda: g.notify(9, 0x19000),
                 lambda: g.write_state_description(b"x", 4096), lambda: host.boot("/nonexistent.se"),
                 lambda: g.sida(7)]  # fmt: skip
        for call in calls:
            with pytest.raises(EmulatorError):
                call()
        assert g.run().clean  # the refusals changed nothing the guest relies on


def test_address_breakpoints_on_a_normal_guest_stop_resume_and_call_back() -> None:
    sym = api.elf_symbols(HELLO)
    with Host(seed=1) as host:
        g = host.boot(HELLO, run=False)
        bp = g.break_at(sym["main"])
        out = g.run()
        assert out.reason.startswith("breakpoint 1: CPU 0 at 0x10800") and not out.clean
        (e,) = g.take_events()
        assert (e.kind, e.address, e.cpu, e.breakpoint) == ("address", sym["main"], 0, 1)
        assert g.state_description().psw[1] == sym["main"]  # the vCPU stands at main, before its instruction
        # a callback that lets the run go on: every call of printf is seen, the guest runs to its end
        calls: list[int] = []
        bp.remove()
        g.break_at(sym["printf"], callback=lambda ev: calls.append(ev.address) and False)
        kinds = [ev.kind for ev in g.events()]
        assert kinds == ["address"] * 5 + ["end"] and calls == [sym["printf"]] * 5
        assert b"Hello" in g.console


def test_breakpoint_misuse_is_a_clear_error() -> None:
    with Host(seed=1) as host:
        g = host.boot(run=False)
        with pytest.raises(api.DebugCapabilityRequired):
            g.break_at(0x10000)  # an SE image: the owner's
        with pytest.raises(HypervisorError):
            g.break_on_uvc("no_such_call")
        assert not host.debug_given and g.breakpoints == []
        debug = host.debug_capability()
        assert host.debug_given and repr(debug) == "DebugCapability(emulator privilege)"
        with pytest.raises(HypervisorError):
            debug.registers(g)  # not secure yet: stage3a is a normal guest


def test_a_breakpoint_given_before_the_secure_ipl_stops_the_secure_guest():
    """The Ultravisor drops the host's hooks when it adopts the hardware CPU at the secure IPL; a breakpoint
    placed with the debug capability before it is placed again, so it stops the secure guest at main."""
    with api.Host(seed=1) as host:
        guest = host.boot(run=False)
        bp = guest.break_at(0x10B90, debug=host.debug_capability())  # the demo's main
        out = guest.run(time_limit=60)
        assert out.reason == "breakpoint 1: CPU 0 at 0x10b90" and bp.hits == 1
        assert [e.address for e in guest.take_events()] == [0x10B90]


def test_every_uvc_by_name_answers_with_an_rc() -> None:
    """Each command of the UV command table, issued by the host with a block of zeros, answers with cc and rc
    (Query Keys' array of key hashes raised TypeError while the UV log formatted it)."""
    from firmware.uv_codes import BY_NAME

    with Host(seed=4) as host:
        g = host.boot()
        for name in BY_NAME:
            r = g.uvc(name)
            assert r.rc, name
        keys = host.uvc("query_keys")
        assert keys.rc == 1 and host.uv_log()[-1].fields

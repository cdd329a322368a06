"""Review 4: the secure SIE engine reads each field of the state description that it decides by once per
entry, into its own copy. The SD is host storage: a host thread rewriting it during an entry changed the
interruption-injection fields between their check and their use (the external-interruption code checked
against the guest's CR0 subclass mask, then read again for the interruption code stored; the I/O
interruption word's ISC checked against CR6, then read again; the injection control checked at the entry's
"PSW loaded or restart" test, then read again for the injection), so the guest got an interruption of a
class it had disabled, or a CPU whose PSW was never loaded ran.

The test puts a recorder in front of the SD: every read of a field is counted, and each read of an
injection field gives the next of the values the host wrote (its thread's stores, landing between reads)."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from emulator.api import Host, _machine_of
from emulator.hw.sie import IICTL_EXT, IICTL_IO, SiePage
from emulator.machine.secure_debug import SecureDebug
from firmware.uv_sie_codes import VIR_INJECT_DISABLED

_INJECTION = ("iictl", "eic", "eiparams", "extcpuaddr", "subchannel_id", "subchannel_nr", "io_int_parm",
              "io_int_word", "mcic")  # fmt: skip


class _Racing:
    """The SD as the engine sees it while a host thread rewrites it: reads of the fields in ``values`` give
    their next value each time (the last one then stays); every read is counted."""

    def __init__(self, sd: Any, values: dict[str, list[int]]) -> None:
        object.__setattr__(self, "_sd", sd)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "reads", {})

    def __getattr__(self, name: str) -> Any:
        self.reads[name] = n = self.reads.get(name, 0) + 1
        seq = self._values.get(name)
        if seq is not None:
            value = seq[min(n, len(seq)) - 1]
            setattr(self._sd, name, value)  # the host's store, as its thread made it
            return value
        return getattr(self._sd, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._sd, name, value)


def _page_with(sd_proxy: _Racing, addr: int) -> SiePage:
    class Page(SiePage):
        sie_block = property(lambda self: sd_proxy)  # type: ignore[assignment]

    return Page.from_address(addr)


@pytest.fixture
def enabled():
    """A booted secure demo guest whose CPU the debug capability (the test's, not the attacker's) enabled for
    external (every subclass but the clock comparator's), I/O (ISC 1 only) and machine-check interruptions."""
    with Host(seed=41) as host:
        g = host.boot()
        m = _machine_of(host)
        debug = SecureDebug(m.hv, m.memory, m.uv)
        vm = g._vm  # noqa: SLF001 - the test's own
        scpu = m.uv.secure_cpu(vm.pv.cpu_handles[0])
        debug.set_register(vm, 0, "psw.mask", 0, scpu.psw[0] | 0x0304000000000000)
        debug.set_register(vm, 0, "cr", 0, (scpu.crs[0] | 0xFE00) & ~(1 << 11))
        debug.set_register(vm, 0, "cr", 6, 0x40000000)
        engine = next(iter(m.uv.sie_engines))
        vcpu = vm.vcpus[0]
        yield engine, engine._hw[vm.pv.cpu_handles[0]], vcpu  # noqa: SLF001
        g.destroy()


@pytest.mark.parametrize(("iictl", "values", "lowcore", "stored"), [
    # checked: service signal (subclass enabled); stored before: clock comparator (disabled)
    (IICTL_EXT, {"eic": [0x2401, 0x1004]}, 0x86, b"\x24\x01"),
    # checked: ISC 1 (enabled); stored before: ISC 5 (disabled)
    (IICTL_IO, {"io_int_word": [0x08000000, 0x28000000]}, 0xC0, b"\x08\x00\x00\x00"),
])  # fmt: skip
def test_an_injection_is_decided_and_made_from_one_reading(enabled, iictl, values, lowcore, stored) -> None:
    engine, cpu, vcpu = enabled
    vcpu.sd.iictl = iictl
    sd = _Racing(vcpu.sd, {"iictl": [iictl], **values})
    ex = engine.enter(cpu, _page_with(sd, ctypes.addressof(vcpu.page)), count=1)
    over = {k: n for k, n in sd.reads.items() if k in _INJECTION and n > 1}
    assert not over, f"read more than once in one entry: {over}"
    assert ex.data.get("vir") != VIR_INJECT_DISABLED  # the class it checked was enabled: it was injected
    assert cpu.read_real(lowcore, len(stored)) == stored  # as checked, not as the host wrote it afterwards


def test_a_disabled_class_read_first_is_refused_whatever_comes_after(enabled) -> None:
    engine, cpu, vcpu = enabled
    vcpu.sd.iictl = IICTL_EXT
    sd = _Racing(vcpu.sd, {"iictl": [IICTL_EXT], "eic": [0x1004, 0x2401]})
    ex = engine.enter(cpu, _page_with(sd, ctypes.addressof(vcpu.page)), count=1)
    assert ex.icptcode == 0x20 and ex.data.get("vir") == VIR_INJECT_DISABLED
    assert sd.reads["eic"] == 1

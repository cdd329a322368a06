"""Issue 18, classes 2 and 3: what SIE leaves the hypervisor after a secure guest ran. The SIDA (every page of
a multi-page one) is host storage checked at each access; no object reachable from the hypervisor, the VM or
the vCPU holds a secure byte or a CPU with the secure guest's mapping."""

from __future__ import annotations

import pytest

from emulator.api import Host, SecureStorageAccess
from emulator.attacks.referee import SECRET_WORDS
from emulator.errors import HypervisorError
from emulator.hypervisor.pvsie import VIR_SIDA


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
        with pytest.raises(SecureStorageAccess):
            pv.host._sida(v.page)  # noqa: SLF001 - the engine's door checks every page too
        # SIE refuses the state description: validity interception, the guest does not run
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

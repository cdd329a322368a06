"""Review 4: the Ultravisor's keys are its own. A secure guest's protected keys (PCKMO) are wrapped under a
key of its own configuration, not the machine's: a protected key the guest lets out (protected keys are
meant to be safe to show) is no key on a host CPU, a normal guest or another secure guest. And the export
keys do not follow the seed the host gives the machine (``Host(seed=...)``): a machine of the attacker's
own with the same seed made the same keys, took the victim's exported page and read it with its debug
capability."""

import subprocess

import pytest

from emulator import api
from emulator.api import Host
from emulator.hw import cpacf_crypto as cc
from emulator.image.pvimg import build_image
from firmware import crypto as c
from firmware.machine_identity import MachineIdentity

#: PCKMO of the AES-128 key 0x11.. (function 18), then KM with the protected key (function 26) on 16 bytes
#: of 0x22, then a disabled wait: the parameter block at ``pb`` (key, verification pattern), the output at
#: ``dst``
PROGRAM = r"""
.text
.globl _start
_start:
    larl %r1,pb
    lghi %r0,18
    .insn rre,0xb9280000,0,0
    larl %r1,pb
    lghi %r0,26
    larl %r2,dst
    larl %r4,src
    lghi %r5,16
0:  km %r2,%r4
    brc 1,0b
    larl %r1,waitpsw
    lpswe 0(%r1)
.align 8
waitpsw: .quad 0x0002000180000000, 0
.align 256
.type pb,@object
.type dst,@object
pb: .fill 16,1,0x11
    .fill 32,1,0
src: .fill 16,1,0x22
dst: .fill 16,1,0
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("pckmo")
    (d / "p.s").write_text(PROGRAM)
    elf = d / "p.elf"  # (``conftest.build_elf`` with -N: the SE image's kernel loads at 0x10000 exactly)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", d / "p.o", d / "p.s"], check=True)
    ld = ["s390x-linux-gnu-ld", "-N", "--no-warn-rwx-segments", "-Ttext", "0x10000", "-e", "_start"]
    subprocess.run([*ld, "-o", elf, d / "p.o"], check=True)
    keys = [MachineIdentity.bundled("zuv-demo").public_key]
    se = build_image(kernel=elf.read_bytes(), host_keys=keys, rng=c.DeterministicRng("pckmo"))
    path = d / "pckmo.se"
    path.write_bytes(se.data)
    syms = api.elf_symbols(elf)
    return path, syms["pb"], syms["dst"]


def _protected(host, path, pb, dst):
    g = host.boot(path, until=None, time_limit=30)
    debug = host.debug_capability()  # the test reads what the guest lets out; the attacker needs no more
    block, out = debug.read(g, pb, 48), debug.read(g, dst, 16)
    g.destroy()
    return block, out


def test_a_secure_guests_protected_keys_are_not_the_machines(image):
    path, pb, dst = image
    with Host(seed=5) as host:
        block, out = _protected(host, path, pb, dst)
        assert out == cc.aes(bytes([0x11]) * 16).encrypt(bytes([0x22]) * 16)  # the key works in the guest
        machine = cc.wrapping_key_for(api._machine_of(host).memory)  # noqa: SLF001 - the machine's own key
        assert block[16:] != machine.wkvp  # not the machine's verification pattern
        assert machine.unwrap(18, block[:16]) != bytes([0x11]) * 16  # nor its key under the machine's
        again, _ = _protected(host, path, pb, dst)  # a new configuration, a new wrapping key
        assert again[16:] != block[16:] and again[:16] != block[:16]


def test_the_same_seed_gives_other_export_keys():
    """Two machines seeded alike (the attacker's own beside the victim's): the same handles (the seed's
    purpose: repeatable runs), but the victim's exported secret page is not the attacker's ciphertext and
    does not import into the attacker's guest (rc 0x0107: its integrity check fails)."""
    with Host(seed=1) as victim, Host(seed=1) as own:
        a, b = victim.boot(), own.boot()
        assert a.handle == b.handle
        assert a.export(a.secret_page).rc == 1 and b.export(b.secret_page).rc == 1
        stolen = a.read(a.secret_page, 4096)
        assert stolen != b.read(b.secret_page, 4096)
        b.write(b.secret_page, stolen)
        assert b.import_page(b.secret_page).rc != 1


def test_the_same_seed_gives_other_dump_keys_and_ivs(tmp_path):
    """A dump is sealed for the image owner (a key from the SE header's CCK and a dump seed, AES-GCM with an
    IV per block). Both the dump seed and the IVs came from the seeded random numbers: two machines seeded
    alike dumping the same image's CPU used one key and one IV for two plaintexts (GCM with a repeated IV:
    the XOR of the two CPU states, and the authentication key). Now they are the Ultravisor's own."""
    from emulator.hypervisor.boot import DEMO_KERNEL
    from firmware.crypto import Secret
    from firmware.se_header import PCF_ALLOW_DUMPING, PCF_DEFAULT

    rng = c.DeterministicRng("a dumpable demo image")
    cck = Secret(rng.random_bytes(32), "CCK")
    key = MachineIdentity.bundled("zuv-demo").public_key
    image = build_image(kernel=DEMO_KERNEL.read_bytes(), host_keys=[key], rng=rng,
                        pcf=PCF_DEFAULT | PCF_ALLOW_DUMPING, cck=cck).data  # fmt: skip
    path = tmp_path / "dumpable.se"
    path.write_bytes(image)
    heads = []
    for _ in range(2):
        with Host(seed=1) as host:
            g = host.boot(path)
            area = host.alloc_page()
            assert g.uvc("dump_init", handle=g.handle).rc == 1
            assert g.uvc("dump_cpu", cpu_handle=g.cpu_handles[0], dump_area_origin=area).rc == 1
            heads.append(host.read(area, 20))  # version, length, the IV
    assert heads[0][8:20] != heads[1][8:20]

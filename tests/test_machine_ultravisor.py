"""The Ultravisor a ``Machine`` installs is its machine's: that machine's host keys, so its SE headers
open."""

import pytest

from emulator.errors import MachineError
from emulator.hypervisor.uvclient import HostArena, UvClient
from emulator.machine.machine import Machine
from firmware.machine_identity import MachineIdentity
from firmware.uv_codes import Cc

MEM = (2 << 30) + (4 << 20)  # the Ultravisor's base storage lies above 2 GiB


def key_hashes(m: Machine) -> list[bytes]:
    client = UvClient(m.uv, m.memory.host_view(), HostArena(0x100000, 0x200000))
    client.init(2 << 30)
    res = client.call("query_keys")
    assert res.cc == Cc.OK
    return [bytes(h) for h in res.block.key_hashes]


@pytest.mark.parametrize("name", ["zuv-demo", "zuv-other"])
def test_query_keys_names_the_installed_machines_host_keys(name: str) -> None:
    m = Machine(MEM, level=2, ultravisor=True, uv_machine=name)
    ident = MachineIdentity.bundled(name)
    hashes = key_hashes(m)
    assert hashes[: len(ident.key_hashes)] == list(ident.key_hashes)
    assert all(h == bytes(32) for h in hashes[len(ident.key_hashes) :])
    m.close()


def test_default_machine_is_the_demo_and_a_directory_works_too() -> None:
    m = Machine(MEM, level=2, ultravisor=True)
    assert key_hashes(m)[0] == MachineIdentity.bundled().host_key_hash
    m.close()
    m = Machine(MEM, level=2, ultravisor=True, uv_machine=str(MachineIdentity.bundled_dir("zuv-other")))
    assert key_hashes(m)[0] == MachineIdentity.bundled("zuv-other").host_key_hash
    m.close()


def test_an_unknown_machine_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(MachineError, match="not a machine directory"):
        Machine(MEM, level=2, ultravisor=True, uv_machine=str(tmp_path / "nosuch"))
    (tmp_path / "broken").mkdir()
    with pytest.raises(MachineError, match="cannot read host-key.pem"):
        Machine(MEM, level=2, ultravisor=True, uv_machine=str(tmp_path / "broken"))


def test_the_ultravisor_makes_the_program_the_lpar() -> None:
    m = Machine(16 << 20, ultravisor=True)
    assert m.level == 2 and m.uv is not None
    m.close()
    m = Machine(16 << 20)
    assert m.level == 3 and m.uv is None
    m.close()
    with pytest.raises(MachineError, match="level 2"):
        Machine(16 << 20, level=3, ultravisor=True)


def test_console_ultravisor_is_the_lpar_too() -> None:
    from emulator.console.cli import DEFAULT_PROGRAM, build_session_from_args

    s = build_session_from_args(["--ultravisor", str(DEFAULT_PROGRAM)])
    assert s.machine.level == 2 and s.machine.uv is not None
    with pytest.raises(MachineError, match="--level 3"):
        build_session_from_args(["--ultravisor", "--level", "3", str(DEFAULT_PROGRAM)])

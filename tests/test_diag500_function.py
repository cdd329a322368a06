"""DIAGNOSE 0x500's function code, one check (``emulator.hw.diag.diag500_function``) for the machine and the
hypervisor, as QEMU's ``handle_diag_500``: 3 notifies a virtio-ccw queue, 0 answers 0 or -EINVAL, any other
is a specification exception (it was -EINVAL in GR2)."""

import struct

import pytest
from conftest import build_elf

from emulator.errors import ProgramException
from emulator.hw.diag import diag500_function
from emulator.hypervisor.kvm import MIB, Hypervisor
from emulator.machine.machine import Machine

MEM = 64 * MIB
EINVAL = -22 & 0xFFFFFFFFFFFFFFFF


@pytest.mark.parametrize(
    ("function", "gr2", "result"),
    [(3, 0x10000, None), (0, 0x1000, 0), (0, MEM, EINVAL), (1, 0, 0x06), (2, 0, 0x06), (4, 0, 0x06),
     (1 << 32 | 3, 0, 0x06)],
)  # fmt: skip
def test_diag500_function_codes(function, gr2, result):
    if result == 0x06:
        with pytest.raises(ProgramException) as e:
            diag500_function(function, gr2, MEM)
        assert e.value.code == 0x06
    else:
        assert diag500_function(function, gr2, MEM) == result


PROGRAM = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    larl %r9,results
    lghi %r1,1
    diag 0,0,0x500              # function 1: PGM 6
    lghi %r1,0
    lghi %r2,0x1000
    diag 0,0,0x500              # function 0 in storage: GR2 0
    stg %r2,16(%r9)
    llilh %r2,0x400
    diag 0,0,0x500              # function 0 beyond storage: GR2 -EINVAL
    stg %r2,24(%r9)
    larl %r1,waitpsw
    lpswe 0(%r1)
record:
    larl %r9,results
    llgh %r5,0x8e
    st %r5,4(%r9)
    mvi 0(%r9),1
    lpswe 0x150
    .align 8
pgmnew:  .quad 0x0000000180000000, record
waitpsw: .quad 0x0002000180000000, 0xfff
    .align 4096
results: .fill 64,1,0
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_elf(tmp_path_factory.mktemp("diag500"), PROGRAM)


def _check(res: bytes) -> None:
    assert (res[0], struct.unpack(">I", res[4:8])[0]) == (1, 0x06)
    assert struct.unpack(">QQ", res[16:32]) == (0, EINVAL)


@pytest.mark.toolchain
def test_zuv_run_answers_diag500_function_codes_as_qemu(program):
    m = Machine(MEM, 1)
    try:
        prog = m.load(str(program))
        r = m.run(time_limit=30)
        assert r.clean, r.describe()
        _check(m.memory.read(prog.symbols["results"], 32))
    finally:
        m.close()


@pytest.mark.toolchain
def test_the_hypervisor_answers_diag500_function_codes_alike(program):
    m = Machine(512 * MIB, 1, deterministic=True)
    try:
        vm = Hypervisor.on_machine(m).create_vm(MEM, 1)
        try:
            vm.load(str(program))
            r = vm.run(time_limit=30)
            assert r.cpus[0].psw[1] == 0xFFF, r.describe()
            _check(vm.memory.read(0x11000, 32))  # results: the page after _start's
        finally:
            vm.destroy()
    finally:
        m.close()

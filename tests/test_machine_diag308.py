"""DIAGNOSE 0x308 in zuv run's VM: IPL-parameter store/fetch, the reset subcodes, and its specification
checks."""

import struct

import pytest
from conftest import PGM_RECORDER, build_elf

from emulator.machine.machine import Machine

pytestmark = pytest.mark.toolchain

PROGRAM = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    larl %r9,results
    lghi %r4,4
    diag %r2,%r4,0x308          # subcode 4: specification exception
    lghi %r4,5
    diag %r3,%r4,0x308          # subcode 5 with an odd R1: specification exception
    lghi %r4,6
    larl %r2,out
    diag %r2,%r4,0x308          # store before set: rc 0x0102 in R1+1
    st %r3,16(%r9)
    lghi %r4,5
    larl %r2,iplb
    diag %r2,%r4,0x308          # set: rc 0x0001
    st %r3,20(%r9)
    lghi %r4,6
    larl %r2,out
    diag %r2,%r4,0x308          # store: rc 0x0001, the block comes back
    st %r3,24(%r9)
    mvi 28(%r9),0x55
    larl %r1,shortpsw
    mvc 0(8,%r0),0(%r1)         # the short PSW the reset loads from absolute 0
    lghi %r4,1
    diag %r2,%r4,0x308          # load-normal reset: go to `after` through absolute 0
    mvi 29(%r9),0xEE            # never reached
after:
    larl %r9,results
    mvi 30(%r9),0x77
    larl %r1,waitpsw
    lpswe 0(%r1)
""" + PGM_RECORDER + r"""
shortpsw: .long 0x00080000, 0x80000000 + after
    .align 4096
results: .fill 64,1,0
    .align 4096
iplb: .long 0x20, 0x11223344
    .fill 24,1,0xAB
    .align 4096
out: .fill 4096,1,0
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_elf(tmp_path_factory.mktemp("diag308"), PROGRAM)


def test_diag308_subcodes(program):
    m = Machine(64 << 20, 1)
    prog = m.load(str(program))
    r = m.run(time_limit=30)
    assert r.clean, r.describe()
    res = m.memory.read(prog.symbols["results"], 32)
    count = res[0]
    codes = struct.unpack(">II", res[4:12])
    assert count == 2 and codes == (0x06, 0x06)  # subcode 4; odd R1
    rc_before, rc_set, rc_store = struct.unpack(">III", res[16:28])
    assert (rc_before, rc_set, rc_store) == (0x0102, 0x0001, 0x0001)
    assert m.memory.read(prog.symbols["out"], 0x20) == m.memory.read(prog.symbols["iplb"], 0x20)
    assert res[28] == 0x55 and res[29] == 0 and res[30] == 0x77  # the reset went through absolute 0

"""A host program in the LPAR calls the Ultravisor with the UVC instruction: cc, rc, and the program
checks."""

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.machine.machine import Machine

pytestmark = pytest.mark.toolchain

PROGRAM = r"""
.text
.globl _start
_start:
    larl %r15,pgmnew
    mvc 0x1d0(16,%r0),0(%r15)       # program new PSW: record the code and go on at `next`
    larl %r2,query
    lghi %r0,0
    .insn rrf,0xb9a40000,%r0,%r2,0,0 # UVC 0,2: Query
    ipm %r3
    larl %r4,results
    st %r3,0(%r4)
    larl %r2,init
    .insn rrf,0xb9a40000,%r0,%r2,0,0 # Init with no storage: an rc, cc 1
    ipm %r3
    st %r3,4(%r4)
    .insn rrf,0xb9a40000,%r0,%r2,4,2 # M fields set: specification exception
    larl %r2,query
    stosm 8(%r4),0x00
    larl %r1,prob
    lpswe 0(%r1)                    # to problem state
probstate:
    .insn rrf,0xb9a40000,%r0,%r2,0,0 # privileged operation
    .long 0                         # operation exception ends the test below
next:
    larl %r4,results
    llgh %r5,0x8e                   # program-interruption code
    lgf %r6,12(%r4)
    sll %r6,8
    or %r6,%r5
    st %r6,12(%r4)
    lg %r7,0x158
    clfi %r5,1
    je done
    lpswe 0x150
done:
    larl %r1,waitpsw
    lpswe 0(%r1)
    .align 8
pgmnew: .quad 0x0000000180000000, next
prob:   .quad 0x0001000180000000, probstate
waitpsw: .quad 0x0002000180000000, 0xfff
    .align 8
results: .long 0,0,0,0
    .align 4096
query: .short 0x120, 0x0001, 0, 0
    .fill 0x118,1,0
    .align 256
init:  .short 0x48, 0x0002, 0, 0
    .fill 0x40,1,0
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    d = tmp_path_factory.mktemp("uvc")
    (d / "p.s").write_text(PROGRAM)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", d / "p.o", d / "p.s"], check=True)
    subprocess.run(
        ["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", d / "p.elf", d / "p.o"], check=True
    )
    return d / "p.elf"


def run(program, **kw):
    m = Machine(64 << 20, 1, level=2, **kw)
    prog = m.load(str(program))
    r = m.run(time_limit=30)
    res = m.memory.read(prog.symbols["results"], 16)
    return m, prog, r, struct.unpack(">IIII", res)


def test_host_uvc_query_init_and_program_checks(program):
    m, prog, r, (cc_query, cc_init, _, codes) = run(program, ultravisor=True)
    assert r.clean, r.describe()
    assert (cc_query >> 28) & 3 == 0
    assert m.memory.read(prog.symbols["query"] + 4, 2) == b"\x00\x01"  # rc 0x0001
    assert (cc_init >> 28) & 3 == 1
    assert m.memory.read(prog.symbols["init"] + 4, 2) != b"\x00\x01"  # refused with an rc
    # the program interruptions in order: specification (M fields), privileged operation, then operation
    assert codes & 0xFFFFFF == 0x060201


def test_without_ultravisor_uvc_is_an_operation_exception(program):
    m, prog, r, (_, _, _, codes) = run(program)
    assert r.clean
    assert codes & 0xFF == 0x01


# What a host program finds in the LPAR of a machine with Secure Execution: facilities 158 (UVC) and 161
# (unpack), a Query that succeeds, and storage lengths a host can donate in whole pages (kvm-unit-tests
# uv-host sizes the variable storage of a 42 MiB guest as base + 42 * per-MiB). It ends in the disabled wait
# 0xfff when all holds, else with the number of the first check that failed.
LPAR_CHECKS = r"""
.text
.globl _start
_start:
    larl %r15,pgmnew
    mvc 0x1d0(16,%r0),0(%r15)       # any program interruption: wait code 1
    larl %r2,fac
    lghi %r0,3
    .insn s,0xb2b00000,0(%r2)       # STFLE
    tm 19(%r2),0x02                 # facility 158
    jno fail2
    tm 20(%r2),0x40                 # facility 161
    jno fail2
    larl %r2,query
    lghi %r0,0
    .insn rrf,0xb9a40000,%r0,%r2,0,0 # UVC: Query
    jnz fail3
    lh %r3,4(%r2)
    chi %r3,1
    jne fail3
    lg %r3,0x58(%r2)                # conf_base_virt_stor_len
    lg %r4,0x60(%r2)                # conf_virt_var_stor_len (per MiB)
    mghi %r4,42
    agr %r3,%r4
    tmll %r3,0xfff
    jnz fail4
    lg %r3,0x50(%r2)                # conf_base_phys_stor_len
    og %r3,0x68(%r2)                # cpu_stor_len
    og %r3,0x40(%r2)                # uv_base_stor_len
    tmll %r3,0xfff
    jnz fail4
    larl %r1,okpsw
    lpswe 0(%r1)
fail2: larl %r1,f2
    lpswe 0(%r1)
fail3: larl %r1,f3
    lpswe 0(%r1)
fail4: larl %r1,f4
    lpswe 0(%r1)
    .align 8
pgmnew: .quad 0x0002000180000000, 1
f2: .quad 0x0002000180000000, 2
f3: .quad 0x0002000180000000, 3
f4: .quad 0x0002000180000000, 4
okpsw: .quad 0x0002000180000000, 0xfff
    .align 8
fac: .fill 32,1,0
    .align 4096
query: .short 0x120, 0x0001, 0, 0
    .fill 0x118,1,0
"""


@pytest.fixture(scope="module")
def lpar_checks(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpar")
    (d / "p.s").write_text(LPAR_CHECKS)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", d / "p.o", d / "p.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", d / "p.elf", d / "p.o"],
                   check=True)  # fmt: skip
    return d / "p.elf"


def zuv_run(*args):
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "emulator.cli", "run", *args], capture_output=True,
                          text=True, timeout=60, cwd=root, stdin=subprocess.DEVNULL)  # fmt: skip


def test_zuv_run_ultravisor_is_an_lpar_of_a_secure_execution_machine(lpar_checks):
    p = zuv_run("--ultravisor", str(lpar_checks))
    assert p.returncode == 0, p.stderr
    p = zuv_run("--ultravisor", "--level", "2", "--cpus", "2", "-m", "2200", str(lpar_checks))
    assert p.returncode == 0, p.stderr


def test_zuv_run_without_ultravisor_offers_no_uv_call_facility(lpar_checks):
    p = zuv_run(str(lpar_checks))
    assert p.returncode == 1 and "disabled wait with code 0x2" in p.stderr, p.stderr
    p = zuv_run("--level", "2", str(lpar_checks))
    assert p.returncode == 1 and "disabled wait with code 0x2" in p.stderr, p.stderr


def test_zuv_run_ultravisor_refuses_level_3_with_one_line(lpar_checks):
    p = zuv_run("--ultravisor", "--level", "3", str(lpar_checks))
    assert p.returncode == 2 and "--ultravisor" in p.stderr and "level 2" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr

"""Fixtures shared by test modules, and the suite's hypothesis profile."""

import pytest
from hypothesis import HealthCheck, settings

# no example fails for the time it took (a per-example deadline, the too-slow health check): the suite runs on
# loaded machines and asserts no times; a test's own settings inherit this unless they set these themselves
settings.register_profile("zuv", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zuv")


#: the start of a two-CPU program for ``build_elf``: CPU 1 restarted (SIGP restart, order 6, to CPU address 1
#: in %r3) with the restart PSW at the program's label ``rstpsw``
#: a guest's program-interruption handler that records each interruption code (a word at ``results`` + 4 +
#: 4 * n, the count n in the byte at ``results``) and returns to the program (``pgmnew``, its new PSW, is the
#: program's to install); ``waitpsw`` ends in the disabled wait 0xFFF. The program defines ``results``.
PGM_RECORDER = r"""
record:
    larl %r9,results
    llgh %r5,0x8e
    llgc %r6,0(%r9)
    sll %r6,2
    st %r5,4(%r6,%r9)
    ahi %r6,4
    srl %r6,2
    stc %r6,0(%r9)
    lpswe 0x150
    .align 8
pgmnew:  .quad 0x0000000180000000, record
waitpsw: .quad 0x0002000180000000, 0xfff
"""


RESTART_CPU1 = r"""
.text
.globl _start
_start:
    larl %r1,rstpsw
    mvc 0x1a0(16,%r0),0(%r1)
    lghi %r3,1
    sigp %r4,%r3,6              # restart CPU 1
"""


def build_elf(directory, source: str, name: str = "p"):
    """Assemble ``source`` (GNU as, z13) and link it at 0x10000 with entry ``_start``: the ELF's path."""
    import subprocess

    (directory / f"{name}.s").write_text(source)
    obj, elf = directory / f"{name}.o", directory / f"{name}.elf"
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", obj, directory / f"{name}.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", elf, obj], check=True)
    return elf


def _bare_cpu():
    """CPU 0 alone on 1 MiB of storage, a real-time TOD clock and the base facility list (no Ultravisor)."""
    from emulator.hw.cpu import Cpu
    from emulator.hw.memory import PhysicalMemory
    from emulator.hw.sysinfo import facility_list
    from emulator.hw.tod import TodClock

    return Cpu(PhysicalMemory(1 << 20), 0, TodClock(), facility_list(False), 0)


@pytest.fixture(scope="module")
def cpu():
    """A bare CPU (``_bare_cpu``) shared by a module's tests: each test sets up the state it relies on."""
    c = _bare_cpu()
    yield c
    c.close()


@pytest.fixture
def fresh_cpu():
    """A bare CPU (``_bare_cpu``) of its own for one test."""
    c = _bare_cpu()
    yield c
    c.close()


@pytest.fixture(params=["switched", "stock"])
def engine_mode(request, monkeypatch):
    """Run the test on CPUs with unicorn's invalidation slot switched (``emulator.hw.engine``, the default)
    and on CPUs with the engine as unicorn made it."""
    from emulator.hw import cpu_engine

    if request.param == "stock":
        monkeypatch.setattr(cpu_engine, "switch_for", lambda uc: None)
    return request.param

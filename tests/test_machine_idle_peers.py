"""The machine's scheduler with several CPUs of which one has work: it runs free in unicorn's JIT (a timed
run, no instruction count), as a lone CPU does, while the others wait; it used to take 20,000-instruction
counted slices as long as any other CPU was operating (a Linux with ``--cpus 2`` whose second CPU idles ran
its initcalls ~100x slower); CPUs that all have work take turns in time slices, free as
well. The waiting CPU is still woken by its own timer and by a SIGP of the running one.
"""

import pytest
from conftest import RESTART_CPU1, build_elf

from emulator.hw.cpu import Cpu
from emulator.machine.machine import Machine

pytestmark = pytest.mark.toolchain

#: CPU 0 restarts CPU 1 into an enabled wait whose clock comparator fires after a while (its handler counts
#: and waits again, three times), loops 3 M times itself, then waits for CPU 1's count to reach 3 and
#: signals it (SIGP emergency), whose handler stops CPU 1; CPU 0 ends in the disabled wait 0xFFF.
PROGRAM = RESTART_CPU1 + r"""
    llilf %r6,3000000
1:  brctg %r6,1b                # work while CPU 1 waits
    larl %r5,ticks
2:  cli 0(%r5),3
    jl 2b
    sigp %r4,%r3,3              # emergency signal to CPU 1
    larl %r1,endpsw
    lpswe 0(%r1)
cpu1:
    larl %r1,extpsw
    mvc 0x1b0(16,%r0),0(%r1)    # external new PSW -> ext (CPU 1's lowcore: prefix 0, as CPU 0's)
    larl %r7,cr0
    stctg %c0,%c0,0(%r7)
    oi 6(%r7),0x48              # clock comparator (bit 52) and emergency signal (bit 49) subclasses
    lctlg %c0,%c0,0(%r7)
    larl %r7,ckc
    stck 0(%r7)
    lg %r1,0(%r7)
    aghi %r1,0x7fff
    stg %r1,0(%r7)
    sckc 0(%r7)
    larl %r1,waitpsw
    lpswe 0(%r1)
ext:
    lh %r1,0x86                 # external interruption code
    chi %r1,0x1201
    je 3f
    larl %r5,ticks
    llc %r1,0(%r5)
    ahi %r1,1
    stc %r1,0(%r5)
    larl %r7,ckc
    chi %r1,3
    je 5f
    stck 0(%r7)
    lg %r1,0(%r7)
    aghi %r1,0x7fff
    stg %r1,0(%r7)
    sckc 0(%r7)
    j 4f
5:  larl %r7,never
    sckc 0(%r7)                 # the third tick was the last
4:  larl %r1,waitpsw
    lpswe 0(%r1)
3:  lghi %r3,1
    sigp %r4,%r3,5              # stop itself
    larl %r1,waitpsw
    lpswe 0(%r1)
    .align 8
rstpsw: .quad 0x0000000180000000, cpu1
extpsw: .quad 0x0000000180000000, ext
waitpsw: .quad 0x0102000180000000, 0
endpsw: .quad 0x0002000180000000, 0xfff
cr0: .quad 0
ckc: .quad 0
never: .quad 0xffffffffffffffff
ticks: .byte 0
"""


@pytest.fixture
def counted(monkeypatch):
    """The counted runs CPUs make (CPU address, instruction budget), recorded as they start."""
    runs = []
    real_run = Cpu.run

    def run(self, count=0, timeout_us=0, resume=False):
        if count and not resume:
            runs.append((self.address, count))
        return real_run(self, count, timeout_us, resume)

    monkeypatch.setattr(Cpu, "run", run)
    return runs


def _run(elf, deterministic=False):
    m = Machine(64 << 20, 2, deterministic=deterministic)
    try:
        m.load(str(elf))
        return m.run(time_limit=60)
    finally:
        m.close()


def test_one_busy_cpu_runs_free_while_the_other_waits(tmp_path, counted):
    r = _run(build_elf(tmp_path, PROGRAM))  # (CPU 0 ends only after CPU 1's timer woke it three times)
    assert r.reason == "all CPUs stopped" and r.clean, r.describe()
    assert [c.state for c in r.cpus] == ["disabled-wait", "stopped"]
    # (a slice or two when CPU 1's interruption and CPU 0's work meet; ~150 before: all of CPU 0's loop)
    assert len(counted) < 10, f"{len(counted)} counted slices"


#: both CPUs loop (CPU 1 restarted into a loop that ends with a flag CPU 0 then waits for)
BOTH_BUSY = RESTART_CPU1 + r"""
    llilf %r6,3000000
1:  brctg %r6,1b
    larl %r5,done
2:  cli 0(%r5),1
    jne 2b
    larl %r1,endpsw
    lpswe 0(%r1)
cpu1:
    llilf %r6,3000000
3:  brctg %r6,3b
    larl %r5,done
    mvi 0(%r5),1
    lghi %r3,1
    sigp %r4,%r3,5              # stop itself
    .align 8
rstpsw: .quad 0x0000000180000000, cpu1
endpsw: .quad 0x0002000180000000, 0xfff
done: .byte 0
"""


def test_cpus_that_all_have_work_take_turns_in_free_runs(tmp_path, counted):
    elf = build_elf(tmp_path, BOTH_BUSY)
    r = _run(elf)
    assert r.reason == "all CPUs stopped" and r.clean, r.describe()
    assert [c.state for c in r.cpus] == ["disabled-wait", "stopped"]
    assert counted == []
    # deterministic mode still takes counted turns (same program, same instruction counts)
    assert _run(elf, deterministic=True).clean
    assert counted

"""Free runs of several CPUs: a CPU that signals another (SIGP external call, emergency signal) or yields
(DIAG 0x44, 0x9C) ends its run there and the others take their turns first. Before, the sender of a
cross-CPU call spun out its time slice (2 ms) before its target could answer: Linux with ``--cpus 2``
loaded its modules and mounted an ext4 root 5-10x slower than with one CPU (``docs/linux.md``).
"""

import pytest
from conftest import RESTART_CPU1, build_elf

from emulator.machine.machine import Machine

pytestmark = pytest.mark.toolchain

ROUNDS = 200

#: CPU 0 restarts CPU 1 into an enabled wait, then ROUNDS times: signals it (SIGP order ORDER) and spins
#: until CPU 1's external handler has counted the signal; it counts at 0x3000 the rounds in which it spun
#: more than twice (CPU 1 had not run at once); then it stops CPU 1 and ends in the disabled wait 0xFFF.
#: CPU 1's count is at 0x3008.
SIGNALS = RESTART_CPU1 + r"""
    xgr %r10,%r10               # slow rounds
    xgr %r9,%r9                 # signals sent
0:  lg %r1,0x3008               # wait for CPU 1 to be up (its first count: 1 << 32)
    ltgr %r1,%r1
    jz 0b
1:  aghi %r9,1
    xgr %r8,%r8                 # this round's spins
2:  sigp %r4,%r3,ORDER
    brc 2,2b                    # busy (an external call still pending): again
3:  aghi %r8,1
    lg %r1,0x3008
    srlg %r1,%r1,32
    aghi %r1,-1                 # CPU 1's handled signals
    cgr %r1,%r9
    jl 3b
    cghi %r8,2
    jle 5f
    aghi %r10,1
5:  chi %r9,ROUNDS
    jl 1b
    stg %r10,0x3000
    sigp %r4,%r3,5              # stop CPU 1
    larl %r1,endpsw
    lpswe 0(%r1)
cpu1:
    larl %r1,extpsw
    mvc 0x1b0(16,%r0),0(%r1)
    larl %r7,cr0
    stctg %c0,%c0,0(%r7)
    oi 6(%r7),0x60              # emergency signal (bit 49) and external call (bit 50) subclasses
    lctlg %c0,%c0,0(%r7)
    llihl %r1,1
    stg %r1,0x3008
    larl %r1,waitpsw
    lpswe 0(%r1)
ext:
    lg %r1,0x3008
    aih %r1,1
    stg %r1,0x3008
    lpswe 0x130                 # back to the wait (the external old PSW)
    .align 8
rstpsw: .quad 0x0000000180000000, cpu1
extpsw: .quad 0x0000000180000000, ext
waitpsw: .quad 0x0102000180000000, 0
endpsw: .quad 0x0002000180000000, 0xfff
cr0: .quad 0
"""

#: CPU 0 and CPU 1 pass a token ROUNDS times, each spinning for it with a yield (DIAG YIELD) in its loop and
#: counting its spins (CPU 0 at 0x3000, CPU 1 at 0x3008); CPU 1 stops, CPU 0 ends in the disabled wait
YIELDS = RESTART_CPU1 + r"""
    xgr %r8,%r8
    lghi %r9,ROUNDS
1:  mviy 0x3010,1               # the token to CPU 1
2:  aghi %r8,1
    diag %r0,%r3,YIELD
    cliy 0x3010,0
    jne 2b
    brctg %r9,1b
    stg %r8,0x3000
3:  cliy 0x3011,1                # CPU 1 finished
    jne 3b
    larl %r1,endpsw
    lpswe 0(%r1)
cpu1:
    xgr %r8,%r8
    lghi %r9,ROUNDS
4:  aghi %r8,1
    diag %r0,%r3,YIELD
    cliy 0x3010,1
    jne 4b
    mviy 0x3010,0               # the token back
    brctg %r9,4b
    stg %r8,0x3008
    mviy 0x3011,1
    lghi %r3,1
    sigp %r4,%r3,5              # stop itself
    .align 8
rstpsw: .quad 0x0000000180000000, cpu1
endpsw: .quad 0x0002000180000000, 0xfff
"""


def _run(tmp_path, source, deterministic=False):
    m = Machine(64 << 20, 2, deterministic=deterministic)
    try:
        m.load(str(build_elf(tmp_path, source)))
        r = m.run(time_limit=120)
        assert r.reason == "all CPUs stopped" and r.clean, r.describe()
        assert [c.state for c in r.cpus] == ["disabled-wait", "stopped"]
        return [int.from_bytes(m.memory.read(0x3000 + 8 * i, 8), "big") for i in range(2)]
    finally:
        m.close()


@pytest.mark.parametrize("order", [2, 3, 0x13], ids=["external-call", "emergency", "cond-emergency"])
def test_a_signal_gives_the_target_its_turn_at_once(tmp_path, order):
    source = SIGNALS.replace("ORDER", str(order)).replace("ROUNDS", str(ROUNDS))
    slow, handled = _run(tmp_path, source)
    assert handled >> 32 == ROUNDS + 1
    # the handler had run when the sender looked (one look a signal), but for a few rounds in which the
    # host took the process off its core long enough for a CPU's time slice to end (a loaded machine);
    # before, every round: a slice of spinning each
    assert slow <= ROUNDS // 10, slow


@pytest.mark.parametrize("code", [0x44, 0x9C])
def test_a_yield_gives_the_other_cpu_its_turn(tmp_path, code):
    spins = _run(tmp_path, YIELDS.replace("YIELD", str(code)).replace("ROUNDS", str(ROUNDS)))
    # each look at the token is followed by the other CPU's turn: a few spins a pass (a slice each before)
    assert spins[0] <= 3 * ROUNDS and spins[1] <= 3 * ROUNDS, spins


def test_deterministic_runs_keep_their_counted_turns(tmp_path):
    """Counted turns are not cut short (the same program gives the same interleaving)."""
    source = YIELDS.replace("YIELD", "0x44").replace("ROUNDS", "20")
    first = _run(tmp_path, source, deterministic=True)
    assert first == _run(tmp_path, source, deterministic=True)
    assert first[0] > 3 * 20  # (a counted turn spins on)

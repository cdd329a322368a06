"""Switching address spaces keeps each space's translations, as the hardware's TLB (tagged by address space)
does; only a purge drops them.

Linux loads CR1 at every system call and interruption from user space and back. Each load flushes unicorn's
TLB, which is not tagged by address space, and every page's next fill walked the DAT tables again in Python.
The program here alternates CR1 between two spaces that map one virtual page to different frames, hundreds of
times: each space sees its own frame every time, the tables are walked a few times in all, and after an IPTE
and a new page-table entry the space sees the new frame.
"""

import struct

from emulator.hw import dat
from emulator.hw.cpu import OPERATING, PSW_MASK_64

ST_A, PT_A = 0x20000, 0x24000
ST_B, PT_B = 0x28000, 0x2C000
CODE = 0x10000
DATA = 0x5000  # frame 0x6000 in space A, 0x7000 in space B, 0x8000 in A after the IPTE
ASCES = 0x300  # space A's ASCE at 0x300, B's at 0x308
ROUNDS = 200
DAT = 1 << 58
WAIT = 0x600D


def _two_spaces(cpu) -> None:
    """Spaces A and B (their ASCEs at ``ASCES``): the first MiB identity-mapped in both but ``DATA``, at frame
    0x6000 in A and 0x7000 in B (holding 1 and 100; 10000 at 0x8000); program interruptions end in the
    disabled wait 0xBAD."""
    mem = cpu.mem
    cpu.reset_cpu()
    mem.fill(0, 0x40000)
    for st, pt in ((ST_A, PT_A), (ST_B, PT_B)):
        for i in range(2048):
            mem.write(st + 8 * i, struct.pack(">Q", 0x20))  # segment invalid
        mem.write(st, struct.pack(">Q", pt))
        for i in range(256):
            mem.write(pt + 8 * i, struct.pack(">Q", i << 12))  # the first MiB identity-mapped
    mem.write(PT_A + 8 * (DATA >> 12), struct.pack(">Q", 0x6000))
    mem.write(PT_B + 8 * (DATA >> 12), struct.pack(">Q", 0x7000))
    mem.write(0x6000, struct.pack(">Q", 1))
    mem.write(0x7000, struct.pack(">Q", 100))
    mem.write(0x8000, struct.pack(">Q", 10000))
    mem.write(ASCES, struct.pack(">QQ", ST_A | 3, ST_B | 3))
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0xBAD))  # program new PSW: disabled wait
    mem.write(0x200, struct.pack(">QQ", 0x0002000180000000, WAIT))


def _run_counting_walks(cpu, code: bytes, monkeypatch) -> int:
    """Run ``code`` at ``CODE`` in space A (R3-R6 ready for its IPTE of ``DATA`` and a new entry for it at
    0x8000) to the disabled wait ``WAIT``: the DAT table walks it took."""
    cpu.mem.write(CODE, code)
    walks = 0
    walk = dat.translate

    def counted(*a, **k):
        nonlocal walks
        walks += 1
        return walk(*a, **k)

    monkeypatch.setattr(dat, "translate", counted)
    cpu.set_cr(0, 0xE0)
    for c in (1, 7, 13):
        cpu.set_cr(c, ST_A | 3)
    for r, v in ((3, PT_A), (4, DATA), (5, 0x8000), (6, PT_A + 8 * (DATA >> 12))):
        cpu.set_gpr(r, v)
    cpu.set_psw(PSW_MASK_64 | DAT, CODE)
    cpu.state = OPERATING
    ex = cpu.run(timeout_us=30_000_000)
    assert (ex.kind, ex.code) == ("disabled_wait", WAIT), ex
    return walks


def test_each_space_keeps_its_translations_until_a_purge(fresh_cpu, monkeypatch):
    cpu = fresh_cpu
    _two_spaces(cpu)
    code = bytes.fromhex(
        f"a718{ROUNDS:04x}"  # lhi %r1,ROUNDS
        "a7290000"  # lghi %r2,0
        "eb110300002f"  # loop: lctlg %c1,%c1,0x300: space A
        "e32000000508"  # ag %r2,DATA
        "eb110308002f"  # lctlg %c1,%c1,0x308: space B
        "e32000000508"  # ag %r2,DATA
        "a716fff4"  # brct %r1,loop
        "eb110300002f"  # lctlg %c1,%c1,0x300: space A
        "b2210034"  # ipte %r3,%r4: DATA's entry in A invalid, purged
        "e35060000024"  # stg %r5,0(%r6): A's entry now maps frame 0x8000
        "e32000000508"  # ag %r2,DATA
        "b2b20200"  # lpswe 0x200
    )
    walks = _run_counting_walks(cpu, code, monkeypatch)
    assert cpu.gpr(2) == ROUNDS * 101 + 10000
    # the code, DATA and the ASCEs' pages in each space, and again after the purge: not one walk per switch
    assert walks < 40, walks


def test_load_real_address_answers_from_the_walks_kept_and_sees_a_purged_change(fresh_cpu, monkeypatch):
    """LRAG in each space gives that space's frame, from the walks kept by address space (Linux's kernel
    writes: an LRA and a STURG per 8 bytes, ~135,000 at boot), and after an IPTE and a new entry the new
    one."""
    cpu = fresh_cpu
    _two_spaces(cpu)
    code = bytes.fromhex(
        f"a718{ROUNDS:04x}"  # lhi %r1,ROUNDS
        "a7290000"  # lghi %r2,0
        "eb110300002f"  # loop: lctlg %c1,%c1,0x300: space A
        "e37000180503"  # lrag %r7,DATA+0x18
        "b9080027"  # agr %r2,%r7
        "eb110308002f"  # lctlg %c1,%c1,0x308: space B
        "e37000180503"  # lrag %r7,DATA+0x18
        "b9080027"  # agr %r2,%r7
        "a716fff0"  # brct %r1,loop
        "eb110300002f"  # lctlg %c1,%c1,0x300: space A
        "b2210034"  # ipte %r3,%r4: DATA's entry in A invalid, purged
        "e35060000024"  # stg %r5,0(%r6): A's entry now maps frame 0x8000
        "e37000180503"  # lrag %r7,DATA+0x18
        "b9080027"  # agr %r2,%r7
        "b2b20200"  # lpswe 0x200
    )
    walks = _run_counting_walks(cpu, code, monkeypatch)
    assert cpu.gpr(2) == ROUNDS * (0x6018 + 0x7018) + 0x8018
    assert cpu.psw[0] >> 44 & 3 == 0  # (cc 0: translated)
    assert walks < 40, walks  # 2 * ROUNDS LRAGs: not one walk each

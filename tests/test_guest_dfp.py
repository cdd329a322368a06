"""Decimal floating point as GCC compiles it: C code with _Decimal32/64/128 arithmetic (``-mhard-dfp``:
ADTR, SDTR, MDTR, DDTR, KDTR, CDTR, CGDTR, CLGDTR, CDGTR, LEDTR, LDETR, LXDTR, LDXTR, MXTR, DXTR, CGXTR)
runs on a zuv machine and leaves the results C defines, worked out by hand here."""

import subprocess
from decimal import Decimal

import pytest

from emulator.hw.dfp_format import EXTENDED, LONG, SHORT
from emulator.hw.sysinfo import MachineInfo
from emulator.machine.machine import Machine

C_SOURCE = r"""
typedef _Decimal32 S; typedef _Decimal64 D; typedef _Decimal128 Q;
volatile D in_d[2] = {1.10DD, 3.DD};
volatile Q in_q[2] = {1E30DL, 7.DL};
volatile S in_s = 2.5DF;
D d[8]; Q q[4]; long long g[4]; int cc[2]; S s[2];

void compute(void)
{
    D a = in_d[0], b = in_d[1];
    d[0] = a + b; d[1] = a - b; d[2] = a * b; d[3] = a / b;
    cc[0] = a < b; cc[1] = a == b;
    g[0] = (long long) (a * b);
    g[1] = (long long) d[3];
    d[4] = (D) g[0] + (D) 7;
    Q x = in_q[0], y = in_q[1];
    q[0] = x * y; q[1] = x / y; q[2] = (Q) a;
    d[5] = (D) q[1];
    s[0] = (S) a; d[6] = (D) in_s;
    g[2] = (long long) x;
    g[3] = (long long) (unsigned long long) b;
}
"""

START = r"""
    .globl _start
_start:
    larl %r7,cr0
    stctg %c0,%c0,0(%r7)
    oi 5(%r7),0x06              # AFP-register and vector controls (CR0 bits 45, 46): GCC vectorizes
    lctlg %c0,%c0,0(%r7)
    larl %r15,stack_top - 160
    brasl %r14,compute
    larl %r1,endpsw
    lpswe 0(%r1)
    .balign 8
cr0: .quad 0
endpsw: .quad 0x0002000000000000, 0xfff
    .balign 8
    .space 16384
stack_top:
    .section .note.GNU-stack,"",@progbits
"""


def _build(tmp_path):
    (tmp_path / "c.c").write_text(C_SOURCE)
    (tmp_path / "start.s").write_text(START)
    gcc = ["s390x-linux-gnu-gcc", "-O2", "-march=z13", "-mhard-dfp", "-ffreestanding", "-nostdlib",
           "-fno-asynchronous-unwind-tables", "-fno-pic", "-static"]
    subprocess.run(gcc + ["-c", "-o", tmp_path / "c.o", tmp_path / "c.c"], check=True)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", tmp_path / "start.o", tmp_path / "start.s"],
                   check=True)
    elf = tmp_path / "dfp.elf"
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", elf,
                    tmp_path / "start.o", tmp_path / "c.o"], check=True)
    return elf


def _symbols(elf) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


@pytest.mark.toolchain
def test_gcc_hard_dfp_code_computes_what_c_defines(tmp_path):
    elf = _build(tmp_path)
    objdump = subprocess.run(["s390x-linux-gnu-objdump", "-d", elf], check=True, capture_output=True,
                             text=True)
    for mnemonic in ("adtr", "ddtr", "kdtr", "cgdtr", "cdgtr", "ledtr", "ldetr", "lxdtr", "ldxtr", "dxtr"):
        assert f"\t{mnemonic} " in objdump.stdout or f"\t{mnemonic}\t" in objdump.stdout, mnemonic
    sym = _symbols(elf)
    m = Machine(16 << 20, 1, deterministic=True, info=MachineInfo())  # an IBM machine's model: DFP
    try:
        m.load(str(elf))
        r = m.run(time_limit=30)
        assert r.clean, r.describe()
        mem = m.memory

        def long(i: int) -> Decimal:
            return LONG.decode(int.from_bytes(mem.read(sym["d"] + 8 * i, 8), "big"))

        def ext(i: int) -> Decimal:
            return EXTENDED.decode(int.from_bytes(mem.read(sym["q"] + 16 * i, 16), "big"))

        def g(i: int) -> int:
            return int.from_bytes(mem.read(sym["g"] + 8 * i, 8), "big", signed=True)

        cc = [int.from_bytes(mem.read(sym["cc"] + 4 * i, 4), "big") for i in range(2)]
        short = SHORT.decode(int.from_bytes(mem.read(sym["s"], 4), "big"))
    finally:
        m.close()
    # 1.10 and 3: the sum, difference and product keep two decimals (the preferred quantum); the quotient
    # has sixteen digits, rounded to nearest even (the FPC's DFP rounding mode 0)
    assert [str(long(i)) for i in range(4)] == ["4.10", "-1.90", "3.30", "0.3666666666666667"]
    assert cc == [1, 0]
    assert g(0) == 3 and g(1) == 0  # C's conversion truncates: CGDTR with M3 9 (toward zero)
    assert str(long(4)) == "10"
    # 1E30 * 7 and 1E30 / 7 in 34 digits; the quotient rounded again to 16 for the long result
    assert str(ext(0)) == "7E+30"
    assert str(ext(1)) == "142857142857142857142857142857.1429"
    assert str(ext(2)) == "1.10"
    assert str(long(5)) == "1.428571428571429E+29"
    assert str(short) == "1.10" and str(long(6)) == "2.5"
    assert g(2) == 2**63 - 1  # 1E30 does not fit: invalid (masked), the largest positive number
    assert g(3) == 3

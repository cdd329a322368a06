"""Code known in one address space and unmapped in another (Linux's lowcore and kernel pages: code in the
kernel's home space, absent from a user's primary space): rewriting it while the CPU runs in the other space
still drops its translated blocks and keeps its trapped instructions trapped."""

import struct

from emulator.hw.cpu import OPERATING, PSW_MASK_64

HOME_ST, HOME_PT = 0x20000, 0x24000
PRI_ST, PRI_PT = 0x28000, 0x2C000
CODE = 0x10000  # mapped alike in both spaces
KERNEL_PAGE = 0x11000  # code of the home space, invalid in the primary space
ALIAS = 0x12000  # the primary space's view of KERNEL_PAGE's frame
OUT = 0x13000
DAT, HOME_MODE = 1 << 58, 3 << 46


def _rel(at: int, target: int) -> bytes:
    return struct.pack(">i", (target - at) // 2)


def test_code_rewritten_from_another_space_runs_as_rewritten_with_its_traps(cpu):
    mem = cpu.mem
    cpu.reset_cpu()
    mem.fill(0, 0x40000)
    for st, pt in ((HOME_ST, HOME_PT), (PRI_ST, PRI_PT)):
        for i in range(2048):
            mem.write(st + 8 * i, struct.pack(">Q", 0x20))
        mem.write(st, struct.pack(">Q", pt))
        for i in range(256):
            mem.write(pt + 8 * i, struct.pack(">Q", i << 12))
    mem.write(PRI_PT + 8 * (KERNEL_PAGE >> 12), struct.pack(">Q", 0x400))  # invalid in the primary space
    mem.write(PRI_PT + 8 * (ALIAS >> 12), struct.pack(">Q", KERNEL_PAGE))
    mem.write(KERNEL_PAGE, bytes.fromhex("07000700" "07fe"))  # nopr ; nopr ; br %r14
    code = bytearray()

    def put(hexstr: str, rel_target: int | None = None) -> None:
        at = CODE + len(code)
        code.extend(bytes.fromhex(hexstr) + (_rel(at, rel_target) if rel_target is not None else b""))

    put("c0e5", KERNEL_PAGE)  # brasl %r14,KERNEL_PAGE: its blocks are translated (home space)
    put("b2790000")  # sacf 0: the primary space
    put("c050", ALIAS)  # larl %r5,ALIAS
    put("c07f" + "b2026000")  # iilf %r7,<stidp 0(%r6)>
    put("50705000")  # st %r7,0(%r5): rewrites KERNEL_PAGE's first nopr pair through the alias
    put("b2790300")  # sacf 768: the home space again
    put("c0e5", KERNEL_PAGE)  # brasl %r14,KERNEL_PAGE: must run the new code, STIDP trapped
    end = CODE + len(code)
    put("a7f40000")  # j .
    mem.write(CODE, bytes(code))
    mem.write(OUT, b"\xff" * 8)
    cpu.set_cr(0, 0xE0)
    cpu.set_cr(1, PRI_ST | 3)
    cpu.set_cr(7, PRI_ST | 3)
    cpu.set_cr(13, HOME_ST | 3)
    cpu.set_gpr(6, OUT)
    cpu.set_psw(PSW_MASK_64 | DAT | HOME_MODE, CODE)
    cpu.state = OPERATING
    cpu.run(count=12)
    assert cpu.psw[1] == end
    assert mem.read(KERNEL_PAGE, 4) == bytes.fromhex("b2026000")
    assert struct.unpack(">Q", mem.read(OUT, 8))[0] == cpu.cpuid  # STIDP ran, emulated (unicorn stores 0)


def test_a_trapped_instruction_in_a_lowcore_page_stays_trapped_after_a_low_address_protected_store(fresh_cpu):
    """Linux returns to user space through an LPSWE in its lowcore, right after storing the PSW to return to
    there (a store the low-address protection rule makes the CPU watch). The TLB flush after that watched
    store checks the changed code page again, and the lookup that drops the page's old blocks left a fetch
    entry for it while its exits were then forgotten: the next block there ran the instruction natively
    (unicorn's LPSWE loaded the user's PSW behind the CPU's back). STCK stands for it here."""
    cpu = fresh_cpu
    mem = cpu.mem
    cpu.reset_cpu()
    mem.fill(0, 0x40000)
    out1, out2 = 0x13000, 0x13100
    mem.write(0x1D0, struct.pack(">QQ", 0x0002000180000000, 0xBAD))  # program new PSW: a disabled wait
    mem.write(0x400, bytes.fromhex("b2056000" "07fe"))  # stck 0(%r6) ; br %r14 (in the lowcore page)
    code = bytearray()

    def put(hexstr: str, rel_target: int | None = None) -> None:
        at = CODE + len(code)
        code.extend(bytes.fromhex(hexstr) + (_rel(at, rel_target) if rel_target is not None else b""))

    put("c0e5", 0x400)  # brasl %r14,0x400: the lowcore page is code, STCK trapped
    put("c069" + f"{out2:08x}")  # iilf %r6,out2
    put("d207060010f0")  # mvc 0x600(8,%r0),0xf0(%r1): a store into the lowcore page above 512 (watched)
    put("c0e5", 0x400)  # brasl %r14,0x400: STCK must still be trapped
    end = CODE + len(code)
    put("a7f40000")  # j .
    mem.write(CODE, bytes(code))
    mem.write(CODE + 0x1000 + 0xF0, b"\x5a" * 8)
    mem.write(out1, b"\xff" * 8)
    mem.write(out2, b"\xff" * 8)
    cpu.set_cr(0, 0xE0 | 1 << 28)  # low-address protection
    cpu.set_gpr(1, CODE + 0x1000)
    cpu.set_gpr(6, out1)
    cpu.set_psw(PSW_MASK_64, CODE)
    cpu.state = OPERATING
    cpu.run(count=9)
    assert cpu.psw[1] == end
    assert mem.read(0x600, 8) == b"\x5a" * 8
    first, second = (struct.unpack(">Q", mem.read(a, 8))[0] for a in (out1, out2))
    assert 0 < first <= second  # the TOD clock both times (unicorn's own STCK stores 0)


def test_each_space_keeps_its_translations_across_mode_switches_and_instructions_come_from_primary(fresh_cpu):
    """A switch of the address-space control keeps the TLB (unicorn keeps one per space; a Linux system call
    switches twice): data at one virtual address comes from the home, primary and secondary space's frame
    as the mode says, each time; in the secondary-space mode the instructions still come from the primary
    space (the secondary space here does not map the code at all)."""
    cpu = fresh_cpu
    mem = cpu.mem
    cpu.reset_cpu()
    mem.fill(0, 0x40000)
    sec_st, sec_pt = 0x30000, 0x34000
    data = 0x15000  # one virtual page, a frame of its own in each space
    frames = {HOME_PT: 0x16000, PRI_PT: 0x17000, sec_pt: 0x18000}
    for st, pt in ((HOME_ST, HOME_PT), (PRI_ST, PRI_PT), (sec_st, sec_pt)):
        for i in range(2048):
            mem.write(st + 8 * i, struct.pack(">Q", 0x20))
        mem.write(st, struct.pack(">Q", pt))
        for i in range(256):
            mem.write(pt + 8 * i, struct.pack(">Q", i << 12))
        mem.write(pt + 8 * (data >> 12), struct.pack(">Q", frames[pt]))
        mem.write(frames[pt], struct.pack(">Q", frames[pt]))
    code2 = 0x19000  # first fetched in the secondary-space mode
    for pt in (sec_pt,):
        mem.write(pt + 8 * (CODE >> 12), struct.pack(">Q", 0x400))  # no code in the secondary space
        mem.write(pt + 8 * (code2 >> 12), struct.pack(">Q", 0x400))
    code = bytes.fromhex(
        "e3205000" "0004"  # lg %r2,0(%r5): home
        "b2790000"  # sacf 0
        "e3305000" "0004"  # lg %r3,0(%r5): primary
        "b2790100"  # sacf 256
    )
    code += bytes.fromhex("c0f4") + _rel(CODE + len(code), code2)  # brcl 15,code2
    mem.write(CODE, code)
    code = bytes.fromhex(
        "e3405000" "0004"  # lg %r4,0(%r5): secondary (fetched from the primary space)
        "b2790300"  # sacf 768
        "e3705000" "0004"  # lg %r7,0(%r5): home again
        "b2790000"  # sacf 0
        "e3805000" "0004"  # lg %r8,0(%r5): primary again
        "a7f40000"  # j .
    )
    mem.write(code2, code)
    cpu.set_cr(0, 0xE0 | 1 << 26)  # the secondary-space control
    cpu.set_cr(1, PRI_ST | 3)
    cpu.set_cr(7, sec_st | 3)
    cpu.set_cr(13, HOME_ST | 3)
    cpu.set_gpr(5, data)
    cpu.set_psw(PSW_MASK_64 | DAT | HOME_MODE, CODE)
    cpu.state = OPERATING
    cpu.run(count=11)
    assert cpu.psw[1] == code2 + len(code) - 4
    got = [cpu.gpr(r) for r in (2, 3, 4, 7, 8)]
    assert got == [frames[HOME_PT], frames[PRI_PT], frames[sec_pt], frames[HOME_PT], frames[PRI_PT]]

"""DIAGNOSE 0x308's operand checks, one function for the machine, the hypervisor and the Ultravisor
(``emulator.hw.diag.diag308_check``), as QEMU's ``handle_diag_308``/``diag308_parm_check`` make them:
specification exception for a bad subcode, an odd R1 or an IPL block off a 4 KiB boundary, addressing
exception for a block beyond storage, both before the response codes. A secure guest's block is checked by
the Ultravisor before the host sees it, so no IPL block the host hands back is stored across a page."""

import struct

import pytest
from conftest import PGM_RECORDER, build_elf
from test_machine_pvsie import GUEST, LGHI, SecureSnippet, host_elf  # noqa: F401 - host_elf is a fixture

from emulator.errors import ProgramException
from emulator.hw.diag import diag308_check
from emulator.hypervisor.kvm import MIB, Hypervisor
from emulator.machine.machine import Machine

MEM = 64 * MIB


@pytest.mark.parametrize(
    ("subcode", "r1", "addr", "unpack", "code"),
    [
        (6, 2, 0x2800, False, 0x06),  # off a page boundary
        (5, 3, 0x2000, False, 0x06),  # odd R1
        (6, 2, MEM, False, 0x05),  # the block beyond storage
        (5, 2, MEM - 0x1000, False, None),  # the last page: fine
        (9, 2, 0x2800, False, 0x06),  # secure IPL without the unpack facility (before the alignment)
        (9, 2, 0x2800, True, 0x06),
        (8, 2, MEM, True, 0x05),
        (10, 3, 0x2801, True, None),  # no block: R1 unchecked
        (0x10005, 2, 0x2000, False, 0x06),  # the subcode is 16 bits
        (4, 2, 0x2000, False, 0x06),
        (7, 2, 0x2000, True, 0x06),
        (1, 3, 0x2801, False, None),
    ],
)
def test_diag308_check_refuses_as_qemu(subcode, r1, addr, unpack, code):
    if code is None:
        diag308_check(subcode, r1, addr, MEM, unpack)
        return
    with pytest.raises(ProgramException) as e:
        diag308_check(subcode, r1, addr, MEM, unpack)
    assert e.value.code == code


PROGRAM = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    larl %r9,results
    larl %r2,iplb
    la %r2,0x800(%r2)
    lghi %r4,6
    diag %r2,%r4,0x308          # store, block off a page boundary: PGM 6 (before 'no block yet')
    llilh %r2,0x400
    diag %r2,%r4,0x308          # store, block at 64 MiB beyond storage: PGM 5 (before 'no block yet')
    lghi %r4,5
    diag %r2,%r4,0x308          # set from beyond storage: PGM 5
    lghi %r4,9
    larl %r2,iplb
    diag %r2,%r4,0x308          # store PV block without the unpack facility: PGM 6
    llilf %r4,0x10005
    diag %r2,%r4,0x308          # a subcode beyond 16 bits: PGM 6
    lghi %r4,5
    diag %r2,%r4,0x308          # set: rc 1
    st %r3,32(%r9)
    lghi %r4,6
    llilf %r2,0x3fff000
    diag %r2,%r4,0x308          # store into the last page of storage: rc 1
    st %r3,36(%r9)
    larl %r1,waitpsw
    lpswe 0(%r1)
""" + PGM_RECORDER + r"""
    .align 4096
results: .fill 64,1,0
    .align 4096
iplb: .long 0x20, 0x11223344
    .fill 24,1,0xAB
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return build_elf(tmp_path_factory.mktemp("diag308chk"), PROGRAM)


@pytest.mark.toolchain
def test_zuv_run_checks_the_ipl_block_before_the_response_codes(program):
    m = Machine(MEM, 1)
    try:
        prog = m.load(str(program))
        r = m.run(time_limit=30)
        assert r.clean, r.describe()
        res = m.memory.read(prog.symbols["results"], 64)
        assert res[0] == 5 and struct.unpack(">5I", res[4:24]) == (0x06, 0x05, 0x05, 0x06, 0x06)
        assert struct.unpack(">II", res[32:40]) == (0x0001, 0x0001)
        assert m.memory.read(MEM - 0x1000, 0x20) == m.memory.read(prog.symbols["iplb"], 0x20)
    finally:
        m.close()


@pytest.mark.toolchain
def test_the_hypervisor_checks_a_normal_guests_ipl_block_alike(program):
    m = Machine(512 * MIB, 1, deterministic=True)
    try:
        hv = Hypervisor.on_machine(m)
        vm = hv.create_vm(MEM, 1)
        try:
            vm.load(str(program))
            r = vm.run(time_limit=30)
            assert r.cpus[0].psw[1] == 0xFFF, r.describe()
            base = 0x11000  # results: the page after _start's
            res = vm.memory.read(base, 64)
            assert res[0] == 5 and struct.unpack(">5I", res[4:24]) == (0x06, 0x05, 0x05, 0x06, 0x06)
            assert struct.unpack(">II", res[32:40]) == (0x0001, 0x0001)
            assert vm.memory.read(MEM - 0x1000, 0x20) == vm.memory.read(0x12000, 0x20)
        finally:
            vm.destroy()
    finally:
        m.close()


# -- a secure guest: the Ultravisor checks before the host sees the DIAGNOSE --------------------------------

DIAG_R2_R4_308 = bytes.fromhex("83240308")
HANDLER = 0x4100
#: the program-interruption handler at 0x4100: llgh %r1,0x8e ; diag %r1,%r0,0x44 (a notification, 0x6C,
#: with the interruption code as register 0)
HANDLER_CODE = bytes.fromhex("e310008e0091") + bytes.fromhex("83100044")


def _snippet(host_elf, code: bytes) -> SecureSnippet:  # noqa: F811 - (the fixture's value)
    body = bytearray(code.ljust(HANDLER - 0x4000, b"\x07"))  # nopr filler up to the handler
    body += HANDLER_CODE
    return SecureSnippet(host_elf, bytes(body), pgm_new=(0x0000000180000000, HANDLER))


@pytest.mark.toolchain
@pytest.mark.parametrize(
    ("load_addr", "pgm"),
    [
        (LGHI[2](0x1800), 0x06),  # off a page boundary: the host would have handed back a block for it
        (bytes.fromhex("a52e0010"), 0x05),  # llilh %r2,0x10: the first byte beyond the guest's 1 MiB
    ],
    ids=["unaligned", "beyond-storage"],
)
def test_the_ultravisor_refuses_a_secure_guests_bad_ipl_block_itself(host_elf, load_addr, pgm):  # noqa: F811
    assert GUEST == 0x100000
    s = _snippet(host_elf, load_addr + LGHI[4](6) + DIAG_R2_R4_308)
    s.sie()
    page = s.page
    sd = page.sie_block
    # no instruction interception: the guest got its program interruption inside SIE
    assert (sd.icptcode, page.pv_grregs[5], page.pv_grregs[0]) == (0x6C, 0x44, pgm)


@pytest.mark.toolchain
def test_a_store_the_host_completes_stays_in_the_ipl_blocks_page(host_elf):  # noqa: F811
    s = _snippet(host_elf, LGHI[2](0x3000) + LGHI[4](6) + DIAG_R2_R4_308 + bytes.fromhex("83000044"))
    s.sie()
    page = s.page
    assert (page.sie_block.icptcode, page.pv_grregs[0], page.pv_grregs[2]) == (0x68, 0x3000, 6)
    # the host answers rc 1 with a block that claims 8 KiB and fills its SIDA
    s.m.memory.write(s.sida, struct.pack(">I", 0x2000) + b"\xaa" * 0xFFC)
    page.pv_grregs[1] = 0x0001
    code_before = s.m.memory.read(s.setup.guest_frames[0x4000], 0x1000)
    s.sie()
    assert (s.page.sie_block.icptcode, s.page.pv_grregs[5]) == (0x6C, 0x44)
    assert s.m.memory.read(s.setup.guest_frames[0x3000] + 4, 0xFFC) == b"\xaa" * 0xFFC
    assert s.m.memory.read(s.setup.guest_frames[0x4000], 0x1000) == code_before

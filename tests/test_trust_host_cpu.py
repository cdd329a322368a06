"""A host CPU's implicit accesses onto a secure frame (issue 18, class 1): every one is refused with its
architected result (``emulator.hw.access``), and not one byte of the secure page reaches the host.

Each case runs a host program in the LPAR (or host Python on a host CPU) against a frame that carries a
secure configuration's owner tag and holds a canary; afterwards the canary must be in no host-accessible
frame and in no register of the host CPU, and the secure page must be unchanged.
"""

from __future__ import annotations

import struct
import subprocess

import pytest

from emulator.errors import ProgramException
from emulator.hw.cpu import (
    CHECK_STOP,
    OPERATING,
    PSW_MASK_64,
    PSW_MASK_DAT,
    PSW_MASK_IO,
    PSW_MASK_MCHECK,
    Cpu,
    GuestMapping,
)
from emulator.hw.memory import OWNER_HOST, PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock
from emulator.machine.machine import Machine

SECRET = 0x200000  # the secure frame
TAG = 2  # a secure configuration's owner tag
MAGIC = bytes.fromhex("5ac3b711")
#: 4 KiB of secure plaintext: the magic and a counter in every word pair, so any 8 bytes of it are known
CANARY = b"".join(MAGIC + i.to_bytes(4, "big") for i in range(512))
RESULTS = 0x3000  # GRs at +0, the program-interruption code at +0x100 (-1: none), the TEID at +0x108
NO_INTERRUPTION = 0xFFFFFFFF

FRAME = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
{body}
    stmg %r0,%r15,0x3000
    lghi %r5,-1
    sty %r5,0x3100
    j wait
caught:
    stmg %r0,%r15,0x3000
    llgh %r5,0x8e
    sty %r5,0x3100
    lg %r5,0xa8
    stg %r5,0x3108
wait:
    larl %r1,waitpsw
    lpswe 0(%r1)
    .align 8
pgmnew:  .quad 0x0000000180000000, caught
waitpsw: .quad 0x0002000180000000, 0xfff
    .align 8
data:
{data}
"""

pytestmark = pytest.mark.toolchain


def _assemble(tmp_path, body: str, data: str = "") -> str:
    src = tmp_path / "p.s"
    src.write_text(FRAME.format(body=body, data=data))
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", tmp_path / "p.o", src], check=True)
    elf = tmp_path / "p.elf"
    subprocess.run(
        ["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", elf, tmp_path / "p.o"], check=True
    )
    return str(elf)


def _secure_page(mem: PhysicalMemory, addr: int = SECRET) -> None:
    """What the Ultravisor leaves after a secure guest wrote its page: plaintext in a frame tagged secure."""
    mem.write(addr, CANARY)
    mem.set_owner(addr >> 12, TAG)


def _host_bytes(mem: PhysicalMemory) -> bytes:
    """Everything the host can read: every host-accessible frame."""
    view = mem.host_view()
    return b"".join(
        view.read(f << 12, 0x1000) for f in range(mem.frames) if mem.is_host_accessible(f)
    )


def assert_nothing_obtained(mem: PhysicalMemory, cpus: list[Cpu], pages: tuple[int, ...] = (SECRET,)) -> None:
    assert MAGIC not in _host_bytes(mem), "secure plaintext reached host storage"
    for c in cpus:
        regs = b"".join(v.to_bytes(8, "big") for v in (*c.gprs(), *c.crs(), *(c.fpr(i) for i in range(16))))
        assert MAGIC not in regs, "secure plaintext reached a host CPU register"
        assert MAGIC.hex() not in c.check_stop_reason
    for page in pages:
        assert mem.read(page, 0x1000) == CANARY, "the secure page was changed"


def run_program(tmp_path, body: str, data: str = "", cpus: int = 1, **kw) -> tuple[Machine, int, int]:
    m = Machine(16 << 20, cpus, level=2, **kw)
    m.load(_assemble(tmp_path, body, data))
    _secure_page(m.memory)
    r = m.run(time_limit=20)
    assert r.clean, r.describe()
    code = struct.unpack(">I", m.memory.read(RESULTS + 0x100, 4))[0]
    teid = struct.unpack(">Q", m.memory.read(RESULTS + 0x108, 8))[0]
    return m, code, teid


def _gpr(m: Machine, i: int) -> int:
    return struct.unpack(">Q", m.memory.read(RESULTS + 8 * i, 8))[0]


@pytest.mark.parametrize(
    ("name", "body", "teid_page"),
    [
        # LRAG walks a segment table that lies in the secure frame (the walk's implicit fetch)
        ("LRAG", "    lgfi %r1,0x200003\n    stg %r1,0x3200\n    lctlg %c1,%c1,0x3200\n"
                 "    lghi %r2,0\n    lrag %r2,0x5000", 0x5000),
        # SET PREFIX onto the secure frame
        ("SPX", "    lgfi %r1,0x200000\n    lghi %r7,0x3200\n    st %r1,0(%r7)\n    spx 0(%r7)", SECRET),
        # SERVC with its SCCB in the secure frame (Read SCP Info)
        ("SERVC", "    lgfi %r1,0x00020001\n    lgfi %r2,0x200000\n    .insn rre,0xb2200000,%r1,%r2", SECRET),
        # DIAGNOSE 0x308 subcode 5: the IPL parameter block read from the secure frame
        ("DIAG308-5", "    lgfi %r2,0x200000\n    lghi %r4,5\n    diag %r2,%r4,0x308", SECRET),
        # PFMF clear frame
        ("PFMF", "    lgfi %r1,0x10000\n    lgfi %r2,0x200000\n    .insn rre,0xb9af0000,%r1,%r2", SECRET),
        # TEST BLOCK
        ("TB", "    lghi %r0,0\n    lgfi %r2,0x200000\n    .insn rre,0xb22c0000,0,%r2", SECRET),
        # LOAD USING REAL ADDRESS and STORE USING REAL ADDRESS
        ("LURAG", "    lgfi %r2,0x200000\n    .insn rre,0xb9050000,%r3,%r2", SECRET),
        ("STURA", "    lgfi %r2,0x200000\n    .insn rre,0xb2460000,%r3,%r2", SECRET),
        # INVALIDATE PAGE TABLE ENTRY on a page table in the secure frame
        ("IPTE", "    lgfi %r1,0x200000\n    lghi %r2,0\n    .insn rre,0xb2210000,%r1,%r2", SECRET),
        # COMPARE AND SWAP AND PURGE on the secure frame
        ("CSPG", "    lghi %r2,0\n    lghi %r3,1\n    lgfi %r4,0x200000\n"
                 "    .insn rre,0xb98a0000,%r2,%r4", SECRET),
    ],
)
def test_a_host_cpu_instruction_on_a_secure_frame_gets_pgm_0x3d_and_nothing(tmp_path, name, body, teid_page):
    m, code, teid = run_program(tmp_path, body)
    assert code == 0x3D, f"{name}: interruption code {code:#x}"
    assert teid & ~0xFFF == teid_page and teid & 0x800 | teid & 0x400
    assert m.cpus[0].prefix == 0
    assert m.ipl_parameters is None
    assert_nothing_obtained(m.memory, list(m.cpus.values()))


def test_diag308_does_not_store_the_ipl_block_into_a_secure_frame(tmp_path):
    body = (
        "    larl %r2,iplb\n    lghi %r4,5\n    diag %r2,%r4,0x308\n"  # set from host storage: fine
        "    lgfi %r2,0x200000\n    lghi %r4,6\n    diag %r2,%r4,0x308"  # store into the secure frame
    )
    data = "    .align 4096\niplb: .long 0x100\n    .fill 0xfc,1,0x11"
    m, code, _ = run_program(tmp_path, body, data)
    assert m.ipl_parameters is not None and code == 0x3D
    assert_nothing_obtained(m.memory, list(m.cpus.values()))


def test_a_uvc_block_in_a_secure_frame_gets_pgm_0x3d(tmp_path):
    body = "    lgfi %r2,0x200000\n    .insn rrf,0xb9a40000,%r0,%r2,0,0"
    m, code, _ = run_program(tmp_path, body, ultravisor=True)
    assert code == 0x3D
    assert_nothing_obtained(m.memory, list(m.cpus.values()))


@pytest.mark.parametrize(
    ("order", "param"),
    [(0x0E, 0x200000), (0x17, 0x200000), (0x0D, 0x200000)],
    ids=["store status at address", "store additional status", "set prefix"],
)
def test_sigp_stores_nothing_into_a_secure_frame_and_sets_no_secure_prefix(tmp_path, order, param):
    body = f"    lgfi %r3,{param:#x}\n    lghi %r4,1\n    sigp %r2,%r4,{order:#x}\n    ipm %r6"
    m, code, _ = run_program(tmp_path, body, cpus=2)
    assert code == NO_INTERRUPTION
    assert (_gpr(m, 6) >> 28) & 3 == 1 and _gpr(m, 2) & 0xFFFFFFFF == 0x100  # cc 1, invalid parameter
    assert m.cpus[1].prefix == 0
    assert_nothing_obtained(m.memory, list(m.cpus.values()))


# -- host Python on a host CPU ------------------------------------------------------------------------------


@pytest.fixture
def cpu():
    mem = PhysicalMemory(4 << 20)
    c = Cpu(mem, 0, TodClock(), facility_list(False), 0)
    yield c
    c.close()


def test_the_dat_walk_of_a_host_cpu_refuses_a_table_in_a_secure_frame(cpu):
    _secure_page(cpu.mem)
    cpu.set_cr(1, SECRET | 0x3)  # segment table in the secure frame
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_DAT, 0x10000)
    for op in (lambda: cpu.translate(0x7000), lambda: cpu.read_virtual(0x7000, 8),
               lambda: cpu.write_virtual(0x7000, b"x")):
        with pytest.raises(ProgramException) as e:
            op()
        assert e.value.code == 0x3D and e.value.teid & ~0xFFF == 0x7000
    assert_nothing_obtained(cpu.mem, [cpu])


def test_an_interruption_with_the_prefix_area_on_a_secure_frame_check_stops_and_shows_nothing(cpu):
    cpu.set_prefix(SECRET)  # the host's prefix, then the frame became secure
    _secure_page(cpu.mem)
    cpu.mem.write(0x10000, bytes(2))  # an invalid opcode: a program interruption
    cpu.set_psw(PSW_MASK_64, 0x10000)
    cpu.state = OPERATING
    ex = cpu.run()
    assert cpu.state == CHECK_STOP and ex.kind == "check_stop"
    assert "secure storage" in cpu.check_stop_reason
    assert_nothing_obtained(cpu.mem, [cpu])
    for deliver in (cpu.deliver_restart, lambda: cpu.deliver_svc(1, 2, 0x10000)):
        cpu.state = OPERATING
        deliver()
        assert cpu.state == CHECK_STOP
    # an I/O interruption stays pending: the channel subsystem is not asked for it
    cpu.io_source = _PendingIo()
    cpu.set_cr(6, 0xFF000000)
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_IO, 0x10000)
    cpu.state = OPERATING
    assert cpu.deliver_io() and cpu.state == CHECK_STOP
    cpu.io_source = None
    assert_nothing_obtained(cpu.mem, [cpu])


class _PendingIo:
    """A channel subsystem with an I/O interruption pending in every subclass."""

    pending = True

    def io_deliverable(self, cr6: int) -> bool:
        return True

    def take_io(self, cr6: int) -> tuple[int, int, int]:
        raise AssertionError("the interruption was taken although its old PSW cannot be stored")


def test_a_secure_cpus_check_stop_message_shows_no_byte_of_its_new_psw(cpu):
    """The message goes to the host (the hypervisor's crash report): the invalid new PSW is secure."""
    mem = cpu.mem
    word = int.from_bytes(MAGIC, "big")
    mem.write(0x1D0, struct.pack(">QQ", 1 << 51 | word, word << 32 | word))
    for f in (0, 1):
        mem.set_owner(f, TAG)
    cpu.guest = GuestMapping(lambda a, w, f: a, TAG)
    cpu.set_psw(PSW_MASK_64, 0x10000)
    cpu.program_interrupt(0x01, 2)
    assert cpu.state == CHECK_STOP and "invalid" in cpu.check_stop_reason
    assert MAGIC.hex() not in cpu.check_stop_reason
    cpu.guest = None
    mem.set_owner(0, OWNER_HOST)
    mem.set_owner(1, OWNER_HOST)


class _PendingCrw:
    """A channel subsystem with a channel report to announce by machine check."""

    pending = False
    crw_mcheck = True

    def io_deliverable(self, cr6: int) -> bool:
        return False

    def take_io(self, cr6: int) -> None:
        return None

    def take_crw_mcheck(self) -> bool:
        return True


def _mcheck_ready(cpu) -> None:
    cpu.io_source = _PendingCrw()
    cpu.set_cr(14, 1 << 28)  # channel-report-pending subclass
    cpu.set_psw(PSW_MASK_64 | PSW_MASK_MCHECK, 0x10000)
    cpu.state = OPERATING


def test_a_machine_check_with_a_secure_save_area_check_stops_and_stores_nothing(cpu):
    """The save areas at 0x1200 are in the prefix area's second frame: the whole prefix area counts."""
    cpu.set_prefix(0x300000)  # the first prefix frame is the host's, the second a secure one
    _secure_page(cpu.mem, 0x301000)
    _mcheck_ready(cpu)
    assert cpu.deliver_crw_mcheck() and cpu.state == CHECK_STOP
    assert "secure storage" in cpu.check_stop_reason
    assert_nothing_obtained(cpu.mem, [cpu], pages=(0x301000,))


def test_a_machine_check_stores_no_vector_register_into_a_secure_extended_save_area(cpu):
    _secure_page(cpu.mem)
    cpu.mem.write(0x11B0, SECRET.to_bytes(8, "big"))  # the extended save area designation
    cpu.mem.write(0x1E0, struct.pack(">QQ", PSW_MASK_64, 0x10000))  # machine-check new PSW
    _mcheck_ready(cpu)
    assert cpu.deliver_crw_mcheck() and cpu.state == OPERATING
    mcic = struct.unpack(">Q", cpu.mem.read(0xE8, 8))[0]
    assert not mcic & 1 << (63 - 25)  # the vector registers are not valid: not stored
    assert_nothing_obtained(cpu.mem, [cpu])


def test_the_loader_stores_nothing_into_secure_storage(tmp_path):
    """``Machine.load`` is the host: an ELF segment or a flat image over a secure frame is refused."""
    from emulator.errors import LoadError

    m = Machine(16 << 20, 1, level=2)
    elf = _assemble(tmp_path, "    nopr %r7")
    _secure_page(m.memory, 0x10000)  # the program's own first page
    with pytest.raises(LoadError, match="secure storage at 0x10000"):
        m.load(elf)
    assert_nothing_obtained(m.memory, [], pages=(0x10000,))
    flat = tmp_path / "flat.bin"
    flat.write_bytes(bytes(0x11000))
    m2 = Machine(16 << 20, 1, level=2)
    _secure_page(m2.memory, 0x10000)
    with pytest.raises(LoadError, match="secure storage"):
        m2.load(str(flat))
    assert_nothing_obtained(m2.memory, [], pages=(0x10000,))


_CROSS = "    lgfi %r4,0x300000\n    lgfi %r5,0x2000\n    lgfi %r6,0x1ff000\n    lgfi %r7,0x2000\n"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        # stores the architecture makes of machine data, the operand in the secure frame
        ("STFLE", "    lghi %r0,3\n    lgfi %r2,0x200000\n    stfle 0(%r2)"),
        ("STCKE", "    lgfi %r2,0x200000\n    stcke 0(%r2)"),
        ("STSI 1.1.1", "    lgfi %r0,0x10000001\n    lghi %r1,1\n    lgfi %r2,0x200000\n    stsi 0(%r2)"),
        ("TPROT", "    lgfi %r2,0x200000\n    tprot 0(%r2),0"),
        ("TSCH", "    lgfi %r1,0x10000\n    lgfi %r2,0x200000\n    tsch 0(%r2)"),
        ("STCRW", "    lgfi %r2,0x200000\n    stcrw 0(%r2)"),
        # long operands from a host page on into the secure frame: no byte copied or compared from it
        ("MVCLE", _CROSS + "0:  mvcle %r4,%r6,0\n    jo 0b"),
        ("CLCLE", _CROSS + "0:  clcle %r4,%r6,0\n    jo 0b"),
        ("CKSM", "    lghi %r0,0\n    lgfi %r2,0x1ff000\n    lgfi %r3,0x2000\n0:  cksm %r0,%r2\n    jo 0b"),
        ("KIMD SHA-256", "    lghi %r0,2\n    lgfi %r1,0x300000\n    lgfi %r2,0x1ff000\n    lgfi %r3,0x2000\n"
                         "0:  kimd %r0,%r2\n    jo 0b"),
        ("KM key", "    lghi %r0,18\n    lgfi %r1,0x200000\n    lgfi %r4,0x301000\n    lgfi %r2,0x300000\n"
                   "    lghi %r3,0x100\n0:  km %r4,%r2\n    jo 0b"),
        ("TRT table", "    lgfi %r4,0x300000\n    lgfi %r6,0x200000\n    trt 0(16,%r4),0(%r6)"),
    ],
)
def test_implicit_and_crossing_operands_reach_no_secure_byte(tmp_path, name, body):
    """Issue 18's second review: instructions that store machine data, and long operands that run from a
    host page into the secure frame, get PGM 0x3D on the secure page; the host page before it may have been
    processed (partial completion), nothing of the secure one was."""
    m, code, teid = run_program(tmp_path, body)
    assert code == 0x3D and teid & ~0xFFF == SECRET, f"{name}: {code:#x} {teid:#x}"
    assert not any(m.memory.read(0x300200, 0x1E00)), "the host buffer holds bytes of the secure page"
    assert_nothing_obtained(m.memory, list(m.cpus.values()))

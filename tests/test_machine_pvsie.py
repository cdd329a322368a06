"""Format-4 SIE executed by a program in the LPAR (``emulator.machine.lpar_pvsie``): a secure guest set up
through the machine's Ultravisor (its SE header made by ``gen_se_header``), then run by a host program's SIE
as kvm-unit-tests' pv-host tests run their snippets."""

import struct
import subprocess

import pytest

from emulator.hw.cpu import OPERATING
from emulator.hw.sie import SiePage
from emulator.hypervisor.uvclient import HostArena, UvClient
from emulator.image.gen_se_header import Component, gen_se_header
from emulator.machine.machine import Machine
from firmware.crypto import DeterministicRng
from firmware.machine_identity import MachineIdentity
from firmware.uv import CPU_STATE_OPR_LOAD

pytestmark = pytest.mark.toolchain

HOST = r"""
.text
.globl _start
_start:
    larl %r1,asce
    lctlg %c1,%c1,0(%r1)        # the configuration's ASCE, as KVM and kvm-unit-tests load it for SIE
    larl %r14,sd
    lghi %r2,0x22               # a host register the secure guest must never see or change
again:
    sie 0(%r14)
    cli 0x50(%r14),0            # no interception: enter again
    je again
    larl %r1,waitpsw
    lpswe 0(%r1)
    .align 8
asce:    .quad 0
waitpsw: .quad 0x0002000180000000, 0x600d
    .align 4096
sd: .fill 4096,1,0
"""

MEM = (2 << 30) + (64 << 20)  # the Ultravisor's base storage lies above 2 GiB
GUEST = 1 << 20
DIAG_500 = bytes.fromhex("83000500")
LGHI = {r: (lambda v, r=r: bytes.fromhex(f"a7{r:x}9{v & 0xFFFF:04x}")) for r in range(16)}


@pytest.fixture(scope="module")
def host_elf(tmp_path_factory):
    d = tmp_path_factory.mktemp("pvsie")
    (d / "h.s").write_text(HOST)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", d / "h.o", d / "h.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", d / "h.elf", d / "h.o"],
                   check=True)
    return d / "h.elf"


class SecureSnippet:
    """A secure guest of the host program: its pages 0-0x4fff (code at 0x4000) unpacked, CPU loaded."""

    def __init__(self, host_elf, code: bytes, cpus: int = 1, pgm_new: tuple[int, int] | None = None) -> None:
        self.m = m = Machine(MEM, cpus, level=2, ultravisor=True)
        prog = m.load(str(host_elf))
        self.sd_addr, self.asce_addr = prog.symbols["sd"], prog.symbols["asce"]
        c = self.client = UvClient(m.uv, m.memory.host_view(), HostArena(0x100000, 0x2000000))
        c.init(2 << 30)
        self.setup = s = c.create_guest(GUEST, cpus=0)
        stor = c.arena.alloc(c.query().cpu_stor_len)
        res = c.check(
            "create_sec_cpu", guest_handle=s.handle, stor_origin=stor, state_origin=self.sd_addr, num=0
        )
        self.cpu_handle = res.block.cpu_handle
        image = bytearray(0x5000)
        image[0x4000 : 0x4000 + len(code)] = code
        if pgm_new is not None:  # the program-new PSW in the lowcore
            image[0x1D0:0x1E0] = struct.pack(">QQ", *pgm_new)
        for g in range(0, len(image), 0x1000):  # the host copies the snippet in, in plaintext
            c.write(s.guest_frames[g], bytes(image[g : g + 0x1000]))
        key = MachineIdentity.bundled().host_keys[0].public_key()
        hdr = gen_se_header([key], [Component(bytes(image), 0, 0x42 << 64)], psw_addr=0x4000,
                            rng=DeterministicRng(7))
        hdr_addr = c.arena.alloc(0x2000)
        c.write(hdr_addr, hdr)
        c.check(
            "set_sec_conf_params", guest_handle=s.handle, sec_header_origin=hdr_addr, sec_header_len=len(hdr)
        )
        c.unpack_range(s.handle, 0, len(image), 0x42)
        c.check("verify_img", handle=s.handle)
        c.check("cpu_set_state", cpu_handle=self.cpu_handle, state=CPU_STATE_OPR_LOAD)
        self.sida = c.arena.alloc(0x1000)
        page = self.page
        page.sie_block.sdf = 2
        page.sie_block.pv_handle_cpu = self.cpu_handle
        page.sie_block.pv_handle_config = s.handle
        page.sie_block.sidad = self.sida
        m.memory.write_u64(self.asce_addr, s.gmap.asce)

    @property
    def page(self) -> SiePage:
        return SiePage.from_buffer(self.m.memory.buffer(), self.sd_addr)

    def sie(self, time_limit: float = 20):
        """Run the host program's SIE loop once more from its start; the run's result."""
        cpu = self.m.cpus[0]
        self.page.sie_block.icptcode = 0
        if cpu.pc == 0x600D:
            cpu.set_psw(0x0000000180000000, self.m.program.entry)
            cpu.state = OPERATING
        return self.m.run(time_limit=time_limit)


def test_a_pv_instruction_interception_shows_only_the_normalised_diagnose(host_elf):
    code = LGHI[1](1) + LGHI[2](2) + LGHI[3](3) + LGHI[4](4) + LGHI[9](0x99) + DIAG_500
    s = SecureSnippet(host_elf, code)
    r = s.sie()
    assert r.cpus[0].psw[1] == 0x600D, r.describe()
    page = s.page
    sd = page.sie_block
    assert (sd.icptcode, sd.ipa, sd.ipb) == (0x68, 0x8302, 0x50000000)
    assert list(page.pv_grregs)[:6] == [0, 1, 2, 3, 4, 0x500]  # the virtio registers and the code in GR5
    assert 0x99 not in list(page.pv_grregs)  # a register the DIAG does not use stays inside
    assert s.m.cpus[0].gpr(2) == 0x22 and s.m.cpus[0].gpr(9) == 0  # the host's registers are its own
    assert sd.psw_addr == 0x4000 + len(code) - 4  # pending completion: the SD shows the DIAG's address


def test_the_host_completes_the_instruction_with_its_results(host_elf):
    # diag 0x500, then diag 0x44 with r1 = the host's GR2 answer: lgr 1,2 ; diag 1,0,0x44
    s = SecureSnippet(host_elf, DIAG_500 + bytes.fromhex("b9040012") + bytes.fromhex("83100044"))
    s.sie()
    s.page.pv_grregs[2] = 0x77  # the host's answer in GR2
    s.sie()
    page = s.page
    assert (page.sie_block.icptcode, page.pv_grregs[5], page.pv_grregs[0]) == (0x6C, 0x44, 0x77)


def test_set_prefix_is_a_notification_and_an_unsecure_prefix_area_a_prefix_interception(host_elf):
    # larl 1,prefix word ; spx 0(1) ; diag 0,0,0x44 ; the word 0x8000
    code = bytes.fromhex("c01000000008") + bytes.fromhex("b2101000") + bytes.fromhex("83000044")
    s = SecureSnippet(host_elf, code + bytes(2) + struct.pack(">I", 0x8000))
    s.sie()
    sd = s.page.sie_block
    assert (sd.icptcode, sd.ipa) == (0x6C, 0xB210)
    assert s.m.memory.read(s.sida, 4) == struct.pack(">I", 0x8000) and sd.prefix == 0x8000
    s.sie()  # guest pages 0x8000 and 0x9000 were never imported
    assert s.page.sie_block.icptcode == 0x70
    for g in (0x8000, 0x9000):
        assert s.client.import_page(s.setup.handle, g).ok
    s.sie()
    assert (s.page.sie_block.icptcode, s.page.pv_grregs[5]) == (0x6C, 0x44)


@pytest.mark.parametrize("change, vir", [
    (lambda s: s.m.memory.write_u64(s.asce_addr, s.setup.gmap.asce ^ 0x1000), 0x2008),
    (lambda s: setattr(s.page.sie_block, "pv_handle_cpu", s.cpu_handle ^ 1 << 40), 0x2003),
    (lambda s: setattr(s.page.sie_block, "pv_handle_config", s.setup.handle ^ 1), 0x2002),
    (lambda s: setattr(s.page.sie_block, "cputm", s.page.sie_block.cputm + 4096), 0x2009),
    (lambda s: setattr(s.page.sie_block, "cputm", s.page.sie_block.cputm - (1 << 40)), 0x2009),
])
def test_an_entry_the_ultravisor_refuses_is_a_validity_interception(host_elf, change, vir):
    s = SecureSnippet(host_elf, bytes.fromhex("83000044") * 2)
    s.sie()
    assert s.page.sie_block.icptcode == 0x6C
    change(s)
    s.sie()
    sd = s.page.sie_block
    assert (sd.icptcode, sd.ipb >> 16) == (0x20, vir)


def test_the_cpu_timer_may_be_lowered_by_the_time_spent_outside(host_elf):
    s = SecureSnippet(host_elf, bytes.fromhex("83000044") * 2)
    s.sie()
    s.page.sie_block.cputm -= 1  # less than the time since the exit
    s.sie()
    assert s.page.sie_block.icptcode == 0x6C


def test_a_guest_that_runs_on_keeps_its_sie_in_progress(host_elf):
    s = SecureSnippet(host_elf, bytes.fromhex("a7f40000"))  # j . (a loop)
    s.page.sie_block.icptcode = 0x99  # what the host left there stays: nothing is stored while in SIE
    r = s.m.run(time_limit=0.5)
    assert r.reason == "time limit reached"
    assert s.m.cpus[0].pc == s.m.program.symbols["again"]  # still at SIE
    assert s.page.sie_block.icptcode == 0x99


def test_a_secure_cpu_in_sie_on_one_host_cpu_is_refused_to_another(host_elf):
    s = SecureSnippet(host_elf, bytes.fromhex("a7f40000"), cpus=2)  # j . : CPU 0 stays in SIE
    s.m.run(time_limit=0.3)
    again = s.m.program.symbols["again"]
    assert s.m.cpus[0].pc == again
    other = s.m.cpus[1]  # the second host CPU enters the same secure CPU
    other.write_cr(1, s.setup.gmap.asce)
    other.set_gpr(14, s.sd_addr)
    other.set_psw(0x0000000180000000, again)
    other.state = OPERATING
    r = s.m.run(time_limit=0.5)
    sd = s.page.sie_block
    assert (sd.icptcode, sd.ipb >> 16) == (0x20, 0x2007)
    assert r.cpus[1].psw[1] == 0x600D and s.m.cpus[0].pc == again  # CPU 0 is still in SIE


def _assemble(tmp_path, text: str) -> bytes:
    (tmp_path / "g.s").write_text(text)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", tmp_path / "g.o", tmp_path / "g.s"], check=True)
    objcopy = ["s390x-linux-gnu-objcopy", "-O", "binary", "-j", ".text"]
    subprocess.run([*objcopy, tmp_path / "g.o", tmp_path / "g.bin"], check=True)
    return (tmp_path / "g.bin").read_bytes()


def test_access_floating_point_and_vector_registers_survive_a_reload_of_the_secure_cpu(host_elf, tmp_path):
    """The Ultravisor keeps a secure CPU's whole state at each SIE exit: when the next entry loads its record
    into the CPU again (here the host lowered the CPU timer, as a hypervisor that keeps it running outside
    SIE does), the access, floating-point and vector registers and the FPC are the guest's, not the values
    the record held since Create Secure CPU."""
    code = _assemble(tmp_path, """
        stctg %c0,%c0,0x300
        oi    0x305,0x06            # CR0 bits 45-46: vector and AFP registers
        lctlg %c0,%c0,0x300
        lghi  %r1,0x7a
        sar   %a2,%r1
        lghi  %r1,2
        sfpc  %r1                   # rounding mode 2
        llihh %r1,0x4009
        ldgr  %f3,%r1
        llihh %r1,0x1234
        vlvgg %v17,%r1,0
        diag  %r0,%r0,0x44          # a notification: the SIE ends, the guest's state stays inside
        ear   %r1,%a2
        efpc  %r2
        lgdr  %r3,%f3
        vlgvg %r4,%v17,0
        diag  %r0,%r0,0x500         # the virtio registers GR1-GR4 reach the host
    """)
    s = SecureSnippet(host_elf, code)
    s.sie()
    assert s.page.sie_block.icptcode == 0x6C
    s.page.sie_block.cputm -= 1  # less than the time since the exit: taken, and the record loaded again
    s.sie()
    page = s.page
    assert (page.sie_block.icptcode, page.sie_block.ipa) == (0x68, 0x8302)
    ar2, fpc, f3, v17 = list(page.pv_grregs)[1:5]
    assert (ar2 & 0xFFFFFFFF, fpc & 0xFFFFFFFF, f3, v17) == (0x7A, 2, 0x4009 << 48, 0x1234 << 48)

"""SIE executed by a program of the machine (``emulator.machine.lpar_sie``): the state description's PSW,
registers and relocation in, interception codes and the guest's state out, as a hypervisor sees them."""

import struct
import subprocess

import pytest

from emulator.hw.sie import SieBlock
from emulator.machine.machine import Machine

pytestmark = pytest.mark.toolchain

HOST = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    larl %r14,sd
    lghi %r2,0x22               # the guest's GR2 at entry
    lghi %r13,0x1313
again:
    sie 0(%r14)
    cli 0x50(%r14),0            # no interception (the time slice ended): enter again, as KVM does
    je again
    larl %r1,waitpsw
    lpswe 0(%r1)
hostpgm:
    larl %r1,pgmwait
    lpswe 0(%r1)
    .align 8
pgmnew:  .quad 0x0000000180000000, hostpgm
waitpsw: .quad 0x0002000180000000, 0x600d
pgmwait: .quad 0x0002000180000000, 0xbad
    .align 4096
sd: .fill 4096,1,0
"""

MSO = 0x200000  # guest absolute 0 in host storage; 1 MiB of guest storage
PSW_64 = 0x0000000180000000


@pytest.fixture(scope="module")
def host_elf(tmp_path_factory):
    d = tmp_path_factory.mktemp("sie")
    (d / "h.s").write_text(HOST)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", d / "h.o", d / "h.s"], check=True)
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", d / "h.elf", d / "h.o"],
                   check=True)
    return d / "h.elf"


def _sie(host_elf, guest_code: bytes, level=2, storage=None, **fields):
    """Run the host program once with a state description built from ``fields`` and the guest's code at
    guest 0x4000 (``storage``: more host absolute address -> bytes); returns (machine, run result, the SD
    after SIE)."""
    m = Machine(64 << 20, 1, level=level)
    prog = m.load(str(host_elf))
    sd = SieBlock()
    sd.mso, sd.msl = MSO, MSO
    sd.psw_mask, sd.psw_addr = PSW_64, 0x4000
    sd.gg14, sd.gg15 = 0x1414, 0x1515
    for k, v in fields.items():
        setattr(sd, k, v)
    sd_addr = prog.symbols["sd"]
    m.memory.write(sd_addr, bytes(sd))
    m.memory.write(MSO + 0x4000, guest_code)
    for addr, data in (storage or {}).items():
        m.memory.write(addr, data)
    r = m.run(time_limit=20)
    return m, r, SieBlock.from_buffer_copy(m.memory.read(sd_addr, 512))


LGHI_R2_55 = bytes.fromhex("a7290055")
DIAG_44 = bytes.fromhex("83000044")


def test_instruction_interception_carries_the_guest_state_back(host_elf):
    m, r, sd = _sie(host_elf, LGHI_R2_55 + DIAG_44)
    assert r.cpus[0].psw[1] == 0x600D, r.describe()  # the host went on after SIE
    assert sd.icptcode == 0x04 and (sd.ipa, sd.ipb) == (0x8300, 0x00440000)
    assert sd.psw_addr == 0x4008  # after the DIAG
    assert m.cpus[0].gpr(2) == 0x55 and m.cpus[0].gpr(13) == 0x1313  # guest GRs 0-13 are the host's
    assert (sd.gg14, sd.gg15) == (0x1414, 0x1515)


def test_an_instruction_executed_by_exrl_is_intercepted_with_the_execute_status(host_elf):
    # guest: exrl 0,0x4008 ; nopr ; 0x4008: diag 0,0,0x44 (the EXRL's target)
    m, r, sd = _sie(host_elf, bytes.fromhex("c60000000004" "0700") + DIAG_44)
    assert sd.icptcode == 0x04 and (sd.ipa, sd.ipb) == (0x8300, 0x00440000)
    assert sd.icptstatus == 0x61  # executed by EXECUTE, whose length is 6 (KVM's kvm_s390_get_ilen)
    assert sd.psw_addr == 0x4006  # after the EXRL, not after the DIAG


def test_guest_storage_is_relocated_by_mso(host_elf):
    # guest: mvi 0x100,0xab ; diag 0,0,0x44  -> host byte at MSO + 0x100
    m, r, sd = _sie(host_elf, bytes.fromhex("92ab0100") + DIAG_44)
    assert sd.icptcode == 0x04
    assert m.memory.read(MSO + 0x100, 1) == b"\xab" and m.memory.read(0x100, 1) != b"\xab"


@pytest.mark.parametrize("ictl, code", [(0x20000000, 0x08), (0x80000000, 0x2C)])
def test_program_interruptions_are_intercepted_on_request(host_elf, ictl, code):
    _m, _r, sd = _sie(host_elf, bytes(2) + DIAG_44, ictl=ictl)  # 0x0000: an operation exception
    assert sd.icptcode == code
    if code == 0x08:
        assert (sd.iprcc, sd.pgmilc) == (0x01, 2)
    else:
        assert sd.ipa == 0x0000 and sd.psw_addr == 0x4000


def test_storage_beyond_msl_is_a_guest_addressing_exception(host_elf):
    # guest: llilf 1,0x100000 (just beyond its 1 MiB) ; lg 2,0(1)
    code = bytes.fromhex("c01f00100000") + bytes.fromhex("e32010000004")
    _m, _r, sd = _sie(host_elf, code, ictl=0x20000000)
    assert sd.icptcode == 0x08 and sd.iprcc == 0x05


def test_uninterpreted_program_interruption_goes_to_the_guest(host_elf):
    # no ICTL_PINT: the operation exception is delivered through the guest's lowcore (program new PSW at
    # 0x1d0 -> 0x5000, where a DIAG 0x44 ends SIE)
    storage = {MSO + 0x1D0: struct.pack(">QQ", PSW_64, 0x5000), MSO + 0x5000: DIAG_44}
    m, _r, sd = _sie(host_elf, bytes(2), storage=storage)
    assert sd.icptcode == 0x04 and sd.psw_addr == 0x5004
    assert struct.unpack(">H", m.memory.read(MSO + 0x8E, 2))[0] == 0x01  # the guest's own lowcore


def test_enabled_wait_is_intercepted(host_elf):
    # guest: lpswe 0x10, an enabled-wait PSW stored there
    storage = {MSO + 0x10: struct.pack(">QQ", PSW_64 | 0x0102000000000000, 0x6000)}
    _m, _r, sd = _sie(host_elf, bytes.fromhex("b2b20010"), storage=storage)
    assert sd.icptcode == 0x1C and sd.psw_addr == 0x6000


@pytest.mark.parametrize("fields", [{"mso": MSO + 0x1000}, {"msl": MSO - 0x100000}, {"sdf": 2}])
def test_an_sd_the_machine_cannot_run_is_a_validity_interception(host_elf, fields):
    _m, r, sd = _sie(host_elf, DIAG_44, **fields)
    assert r.cpus[0].psw[1] == 0x600D
    assert sd.icptcode == 0x20 and sd.ipb >> 16 != 0


def test_sie_is_offered_at_both_levels(host_elf):
    _m, r, sd = _sie(host_elf, DIAG_44, level=3)  # zuv run's VM: nested virtualisation, as KVM's vSIE
    assert sd.icptcode == 0x04 and r.cpus[0].psw[1] == 0x600D


def test_stfle_in_the_guest_stores_the_designated_list(host_elf):
    # guest: lghi 0,1 ; stfle 0x200 ; diag 0,0,0x44 ; the SD designates a list at host real 0x3000
    wanted = bytes(range(1, 33))
    code = bytes.fromhex("a7090001") + bytes.fromhex("b2b00200") + DIAG_44
    m, _r, sd = _sie(host_elf, code, storage={0x3000: wanted}, fac=0x3000)
    assert sd.icptcode == 0x04 and m.memory.read(MSO + 0x200, 16) == wanted[:16]

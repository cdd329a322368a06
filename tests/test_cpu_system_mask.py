"""STNSM and STOSM that cannot make an interruption deliverable run natively (no trap), with the same
result as the emulation; the ones that may enable one or change DAT stay trapped, so an interruption
pending while the program runs disabled is delivered at the STOSM that enables it."""

import struct

from emulator.hw.cpu import OPERATING, PSW_MASK_64, Cpu

CODE = 0x10000
EXT_NEW_ADDR = 0x0BAD0
CR0_SERVICE = 1 << 9
IO_EXT = 0x03 << 56  # the system mask's I/O and external bits


def start(cpu: Cpu, code: bytes, mask: int) -> None:
    cpu.reset_cpu()
    mem = cpu.mem
    mem.fill(0, 0x2000)
    mem.write(0x1B0, struct.pack(">QQ", 0x0000000180000000, EXT_NEW_ADDR))  # external new PSW, disabled
    mem.write(CODE, code + bytes.fromhex("0700"))
    cpu.set_cr(0, 0xE0 | CR0_SERVICE)
    cpu.set_psw(mask, CODE)
    cpu.state = OPERATING


def test_masks_that_only_disable_run_natively_with_the_emulation_s_result(cpu):
    start(
        cpu,
        bytes.fromhex("acfc0100")  # stnsm 0x100,0xfc (native: I/O and external off)
        + bytes.fromhex("ad000101")  # stosm 0x101,0 (native: no change)
        + bytes.fromhex("ad030102")  # stosm 0x102,3 (trapped: enables)
        + bytes.fromhex("acfe0103")  # stnsm 0x103,0xfe (native: external off)
        + bytes.fromhex("acfb0104"),  # stnsm 0x104,0xfb (trapped: DAT bit)
        PSW_MASK_64 | IO_EXT,
    )
    traps = cpu.traps
    assert cpu.run(count=5).kind == "limit"
    assert cpu.mem.read(0x100, 5) == bytes([0x03, 0x00, 0x00, 0x03, 0x02])
    assert cpu.psw == (PSW_MASK_64 | 0x02 << 56, CODE + 20)
    assert cpu.traps - traps == 2  # the two STOSM/STNSM that may enable or change DAT


def test_an_interruption_pending_while_disabled_is_delivered_where_stosm_enables_it(cpu):
    start(
        cpu,
        bytes.fromhex("acfc0100")  # stnsm 0x100,0xfc
        + bytes.fromhex("0700" "0700")
        + bytes.fromhex("ad030101"),  # stosm 0x101,3
        PSW_MASK_64 | IO_EXT,
    )
    assert cpu.run(count=1).kind == "limit"  # disabled now
    cpu.ext_pending["service"] = 0x1230
    assert cpu.run(count=3).kind == "limit"
    assert cpu.psw[1] == EXT_NEW_ADDR
    old_mask, old_addr = struct.unpack(">QQ", cpu.mem.read(0x130, 16))
    assert (old_addr, old_mask & IO_EXT) == (CODE + 12, IO_EXT)  # after the STOSM, enabled
    assert struct.unpack(">H", cpu.mem.read(0x86, 2))[0] == 0x2401
    assert "service" not in cpu.ext_pending


def _ssm_loop(cpu: Cpu, mask_byte: int, loops: int, mask: int) -> None:
    """``loops`` times SSM 0x100 (mask byte ``mask_byte``) in a BRCT loop, then a NOPR at CODE + 14."""
    start(
        cpu,
        bytes.fromhex("a718") + struct.pack(">H", loops)  # lhi %r1,loops
        + bytes.fromhex("80000100")  # 0x10004: ssm 0x100
        + bytes.fromhex("a716fffe")  # brct %r1,0x10004
        + bytes.fromhex("0700"),
        mask,
    )
    cpu.mem.write(0x100, bytes([mask_byte]))


def test_ssm_runs_natively_while_nothing_is_pending_and_traps_again_when_something_is(cpu):
    _ssm_loop(cpu, 0x00, 200, PSW_MASK_64)
    traps = cpu.traps
    assert cpu.run(count=1 + 2 * 200).kind == "limit"
    assert cpu.psw == (PSW_MASK_64, CODE + 12)
    assert cpu.traps - traps < 40  # only the first SSMs trapped; the site then ran natively
    # a service signal pending while the program runs disabled: the next enabling SSM is trapped and the
    # interruption taken right after it, at the same site that ran natively
    _ssm_loop(cpu, 0x01, 3, PSW_MASK_64)  # (the site's code is the same: still native)
    cpu.ext_pending["service"] = 0x1230
    traps = cpu.traps
    assert cpu.run(count=2).kind == "limit"  # lhi, ssm: enabled, delivered after it
    assert cpu.traps - traps == 1
    assert cpu.psw[1] == EXT_NEW_ADDR
    old_mask, old_addr = struct.unpack(">QQ", cpu.mem.read(0x130, 16))
    assert (old_addr, old_mask & IO_EXT) == (CODE + 8, 0x01 << 56)


def test_a_native_ssm_that_sets_reserved_bits(cpu):
    _ssm_loop(cpu, 0x00, 100, PSW_MASK_64)
    assert cpu.run(count=1 + 2 * 100).kind == "limit"
    assert not cpu._ssm_off  # noqa: SLF001
    # a reserved bit (bit 0): the specification exception, the bit not kept, and SSM trapped from now on
    cpu.mem.write(0x1D0, struct.pack(">QQ", PSW_MASK_64, 0x0BAD8))  # program new PSW
    cpu.mem.write(0x0BAD8, bytes.fromhex("0700"))
    cpu.mem.write(0x100, bytes([0x80]))
    cpu.set_psw(PSW_MASK_64, CODE + 4)
    cpu.set_gpr(1, 5)
    cpu.run(count=3)
    assert cpu.psw[1] in (0x0BAD8, 0x0BADA)
    assert struct.unpack(">H", cpu.mem.read(0x8E, 2))[0] == 0x0006
    old_mask = struct.unpack(">Q", cpu.mem.read(0x150, 8))[0]
    assert old_mask >> 56 == 0
    assert cpu._ssm_off  # noqa: SLF001
    _ssm_loop(cpu, 0x80, 3, PSW_MASK_64)
    traps = cpu.traps
    cpu.run(count=2)  # trapped now: the exception at the SSM itself (suppressed: the old PSW after it)
    assert cpu.traps - traps == 1
    assert struct.unpack(">Q", cpu.mem.read(0x158, 8))[0] == CODE + 8

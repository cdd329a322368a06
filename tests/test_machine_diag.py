"""DIAGNOSE 0x10 (release pages), 0x288 (the watchdog and its actions) and 0x308's resets in zuv run's VM."""

import struct
import subprocess

import pytest

from emulator.errors import MachineError, ProgramException
from emulator.hw.diag import Diag288, release_pages
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tod import TOD_PER_US, TodClock
from emulator.machine.machine import Machine

SECOND = 1_000_000 * TOD_PER_US


def _build(tmp_path, source: str):
    (tmp_path / "p.s").write_text(source)
    subprocess.run(["s390x-linux-gnu-as", "-march=z13", "-o", tmp_path / "p.o", tmp_path / "p.s"], check=True)
    out, obj = tmp_path / "p.elf", tmp_path / "p.o"
    subprocess.run(["s390x-linux-gnu-ld", "-Ttext", "0x10000", "-e", "_start", "-o", out, obj], check=True)
    return str(tmp_path / "p.elf")


# -- DIAG 0x10 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end",
    [(0, 0), (0x1000, 0x1000), (0, 0x1000), (0x5000, 0x3000), (0x4000 + 42, 0x5000), (0x4000, 0x5000 + 42)],
)
def test_diag10_refuses_the_low_pages_reversed_and_unaligned_ranges(start, end):
    mem = PhysicalMemory(1 << 20)
    mem.write(0x4000, b"x" * 0x2000)
    with pytest.raises(ProgramException) as e:
        release_pages(mem, start, end, 0)
    assert e.value.code == 0x06
    assert mem.read(0x4000, 0x2000) == b"x" * 0x2000


def test_diag10_released_pages_read_zero_and_keep_their_keys():
    mem = PhysicalMemory(1 << 20)
    mem.write(0x3000, b"a" * 0x4000)
    mem.keys[4] = 0x36
    done = release_pages(mem, 0x4000, 0x5000, 0)  # the end register names the last page
    assert done == [(0x4000, 0x2000)]
    assert mem.read(0x3000, 0x1000) == b"a" * 0x1000
    assert mem.read(0x4000, 0x2000) == bytes(0x2000)
    assert mem.read(0x6000, 0x1000) == b"a" * 0x1000
    assert mem.keys[4] == 0x36


def test_diag10_over_the_prefix_area_releases_absolute_0_and_1_not_the_prefix_frames():
    mem = PhysicalMemory(1 << 20)
    mem.write(0, b"p" * 0x12000)
    release_pages(mem, 0x8000, 0x11000, 0x10000)  # real 0x10000-0x11fff are absolute 0-0x1fff
    assert mem.read(0, 0x2000) == bytes(0x2000)
    assert mem.read(0x2000, 0x6000) == b"p" * 0x6000
    assert mem.read(0x8000, 0x8000) == bytes(0x8000)
    assert mem.read(0x10000, 0x2000) == b"p" * 0x2000


def test_diag10_beyond_memory_is_ignored():
    mem = PhysicalMemory(1 << 20)
    mem.write(0xFF000, b"z" * 0x1000)
    assert release_pages(mem, 0xFF000, 0x200000, 0) == [(0xFF000, 0x1000)]
    assert mem.read(0xFF000, 0x1000) == bytes(0x1000)


RELEASE = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    lgfi %r2,0x30000
    mvhi 0(%r2),0x55
    lgfi %r5,0x31000
    mvhi 0(%r5),0x66
    lgr %r3,%r2
    diag %r2,%r3,0x10           # release the page at 0x30000 (R3: the last page)
    lgfi %r4,0x30001
    diag %r4,%r3,0x10           # unaligned: a specification exception
    larl %r1,donepsw
    lpswe 0(%r1)
pgm:
    mvc 0xF08(2,%r0),0x8e
    lpswe 0x150                 # back after the DIAG
    .align 8
pgmnew:  .quad 0x0000000180000000, pgm
donepsw: .quad 0x0002000180000000, 0xfff
"""


@pytest.mark.toolchain
@pytest.mark.parametrize("owner", ["machine", "hypervisor"])
def test_diag10_in_a_program_releases_its_page_and_refuses_an_unaligned_one(tmp_path, owner):
    elf = _build(tmp_path, RELEASE)
    if owner == "machine":
        m = Machine(16 << 20, deterministic=True)
        m.load(elf)
        assert m.run(time_limit=30).clean
        read = m.memory.read
    else:
        from emulator.hypervisor.kvm import MIB, Hypervisor

        hv = Hypervisor(PhysicalMemory(64 * MIB), TodClock())
        vm = hv.create_vm(16 * MIB)
        vm.load(elf)
        assert vm.run(time_limit=30).clean
        read = vm.memory.read
    assert read(0x30000, 4) == bytes(4) and read(0x31000, 4) == struct.pack(">I", 0x66)
    assert read(0xF08, 2) == struct.pack(">H", 0x06)


# -- DIAG 0x288 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "r1, func, timeout, action",
    [
        (1, 0, 15, 0),  # odd R1
        (0, 0, 15, 42),  # unsupported action
        (0, 42, 15, 0),  # unknown function
        (0, 2, 15, 0),  # cancel before init
        (0, 1, 15, 0),  # change before init
        (0, 0, 14, 0),  # under 15 s
    ],
)
def test_diag288_refusals_are_specification_exceptions(r1, func, timeout, action):
    wd = Diag288("inject-nmi")
    with pytest.raises(ProgramException) as e:
        wd.call(r1, func, timeout, action, 0)
    assert e.value.code == 0x06
    assert wd.deadline is None and not wd.enabled


def test_diag288_init_change_cancel_and_expiry():
    wd = Diag288("inject-nmi")
    wd.call(0, 0, 15, 0, 1000)
    assert wd.deadline == 1000 + 15 * SECOND
    wd.call(0, 1, 60, 0, 2000)  # change restarts the timer with the new timeout
    assert wd.deadline == 2000 + 60 * SECOND
    assert wd.expire(2000 + 60 * SECOND - 1) is None
    assert wd.expire(2000 + 60 * SECOND) == "inject-nmi"
    assert not wd.enabled and wd.deadline is None  # spent, as QEMU's device after an NMI
    with pytest.raises(ProgramException):
        wd.call(0, 2, 0, 0, 0)
    wd.call(0, 0, 15, 0, 0)
    wd.call(0, 2, 0, 0, 0)  # cancel needs no minimum timeout
    assert wd.deadline is None and wd.expire(1 << 62) is None


def test_machine_refuses_unknown_watchdogs_and_actions():
    with pytest.raises(MachineError, match="watchdog"):
        Machine(16 << 20, watchdog="i6300esb")
    with pytest.raises(MachineError, match="inject-nmi"):
        Machine(16 << 20, watchdog="diag288", watchdog_action="explode")


WATCHDOG = r"""
.text
.globl _start
_start:
    larl %r1,pgmnew
    mvc 0x1d0(16,%r0),0(%r1)
    larl %r1,restartnew
    mvc 0x1a0(16,%r0),0(%r1)
    asi 0xF00,1                # boots, counted outside the program image (a reset re-IPLs it)
    clfhsi 0xF00,2
    jhe done
    lghi %r0,0                  # init
    lghi %r1,15                 # 15 s
    lghi %r2,0                  # action: restart
    diag %r0,%r2,0x288
    larl %r1,waitpsw
    lpswe 0(%r1)                # enabled wait with nothing to wait for but the watchdog
restarted:
    mvi 0xF04,0x77
done:
    larl %r1,donepsw
    lpswe 0(%r1)
pgm:
    mvc 0xF08(2),0x8e          # a program interruption: record its code and stop
    larl %r1,donepsw
    lpswe 0(%r1)
    .align 8
pgmnew:     .quad 0x0000000180000000, pgm
restartnew: .quad 0x0000000180000000, restarted
waitpsw:    .quad 0x0302000180000000, 0
donepsw:    .quad 0x0002000180000000, 0xfff
"""


@pytest.fixture(scope="module")
def watchdog_program(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("wd"), WATCHDOG)


@pytest.mark.toolchain
def test_watchdog_inject_nmi_restarts_cpu_0(watchdog_program):
    m = Machine(16 << 20, deterministic=True, watchdog="diag288", watchdog_action="inject-nmi")
    m.load(watchdog_program)
    t0 = m.tod.now()
    r = m.run(time_limit=30)
    assert r.clean, r.describe()
    assert m.memory.read(0xF00, 10) == struct.pack(">IBxxxH", 1, 0x77, 0)
    assert m.tod.now() - t0 >= 15 * SECOND  # the idle machine's clock moved to the expiry
    assert m.watchdog.expiries == 1


@pytest.mark.toolchain
def test_watchdog_reset_re_ipls_the_program(watchdog_program):
    m = Machine(16 << 20, deterministic=True, watchdog="diag288")  # QEMU's default action: reset
    m.load(watchdog_program)
    r = m.run(time_limit=30)
    assert r.clean, r.describe()
    assert m.memory.read(0xF00, 10) == struct.pack(">IBxxxH", 2, 0, 0)  # booted twice, never restarted


@pytest.mark.toolchain
@pytest.mark.parametrize("action, word", [("poweroff", "powered off"), ("pause", "paused")])
def test_watchdog_poweroff_and_pause_end_the_run_as_a_failure(watchdog_program, action, word):
    m = Machine(16 << 20, deterministic=True, watchdog="diag288", watchdog_action=action)
    m.load(watchdog_program)
    r = m.run(time_limit=30)
    assert not r.clean
    assert "watchdog expired" in r.reason and word in r.reason


@pytest.mark.toolchain
def test_without_a_watchdog_diag288_is_a_specification_exception(watchdog_program):
    m = Machine(16 << 20, deterministic=True)
    m.load(watchdog_program)
    r = m.run(time_limit=30)
    assert r.clean, r.describe()
    assert m.memory.read(0xF00, 10) == struct.pack(">IBxxxH", 1, 0, 0x06)


# -- DIAG 0x308 resets -------------------------------------------------------------------------------------

RESETS = r"""
.text
.globl _start
_start:
    larl %r1,magic
    clc 0xF00(4,%r0),0(%r1)     # written by the test before the run; gone after a load-clear re-IPL
    jne cleared
    larl %r1,shortpsw
    mvc 0(8,%r0),0(%r1)         # the short PSW the resets load from absolute 0
    lghi %r7,0x1234
    clfhsi 0xF04,0
    jne subcode3
    mvhi 0xF04,1
    lghi %r4,0
    diag %r2,%r4,0x308          # modified clear: registers cleared, storage kept, PSW from absolute 0
subcode3:
    lghi %r4,3
    diag %r2,%r4,0x308          # load clear: storage cleared, the program IPLed again
after:
    stg %r7,0xF08              # 0 after the clear reset
    j _start
cleared:
    mvhi 0xF10,0x55
    larl %r1,donepsw
    lpswe 0(%r1)
    .align 8
shortpsw: .long 0x00080001, 0x80000000 + after
magic:    .ascii "MARK"
    .align 8
donepsw:  .quad 0x0002000180000000, 0xfff
"""


@pytest.mark.toolchain
def test_diag308_modified_clear_keeps_storage_and_load_clear_re_ipls(tmp_path):
    m = Machine(16 << 20, deterministic=True)
    m.load(_build(tmp_path, RESETS))
    m.memory.write(0xF00, b"MARK" + bytes(12))
    seen = []
    m.insn_handlers["DIAG"] = lambda cpu, insn: (seen.append((cpu.gpr(4), m.memory.read(0xF00, 16))),
                                                 m._insn_diag(cpu, insn))  # fmt: skip
    r = m.run(time_limit=30)
    assert r.clean, r.describe()
    # subcode 0 kept storage and cleared R7 (stored 0 at 0xF08); subcode 3 then cleared storage
    assert seen == [(0, b"MARK" + struct.pack(">I", 1) + bytes(8)), (3, b"MARK" + struct.pack(">IQ", 1, 0))]
    assert m.memory.read(0xF00, 20) == bytes(16) + struct.pack(">I", 0x55)


@pytest.mark.toolchain
def test_zuv_run_offers_the_watchdog_and_its_action(watchdog_program):
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def zuv(*args):
        cmd = [sys.executable, "-m", "emulator.cli", "run", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=root,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    p = zuv("--deterministic", "--watchdog", "diag288", "--watchdog-action", "poweroff", watchdog_program)
    assert p.returncode == 1
    assert "the watchdog expired (powered off" in p.stderr and "Traceback" not in p.stderr
    p = zuv("--deterministic", "--watchdog", "diag288", "--watchdog-action", "inject-nmi", watchdog_program)
    assert p.returncode == 0, p.stderr
    p = zuv("--watchdog-action", "explode", watchdog_program)
    assert p.returncode == 2 and "inject-nmi" in p.stderr and "Traceback" not in p.stderr

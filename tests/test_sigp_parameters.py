"""SIGP's parameter checks, one reading (``emulator.hw.sigp.param_area``) for the machine, the hypervisor and
the Ultravisor, with QEMU's ``sigp.c`` orders of checks: SET PREFIX looks at the area before the target's
state, STORE STATUS AT ADDRESS and STORE ADDITIONAL STATUS at the state first; STORE ADDITIONAL STATUS's
address is 64 bits with a length code that must be 0 (no guarded storage); SET ARCHITECTURE counts a
check-stopped CPU as not stopped."""

import pytest

from emulator.hw import sigp as S
from emulator.hw.cpu import CHECK_STOP, OPERATING, STOPPED, Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock
from firmware.uv_sigp import set_prefix_target, status_store
from firmware.uv_state import CPU_STATE_OPR, CPU_STATE_STP, SecureCpu

MEM = 1 << 20


@pytest.mark.parametrize(
    ("order", "param", "area"),
    [
        (S.SET_PREFIX, 0x12345, (0x12000, 0x2000)),
        (S.SET_PREFIX, 0xFFFFFFFF_80000000 | 0x4000, (0x4000, 0x2000)),  # bits 33-50 only
        (S.SET_PREFIX, MEM | 0x1FFF, None),  # the 8 KiB area beyond storage
        (S.STORE_STATUS_AT_ADDRESS, 0x5000 | 0x1FF, (0x5000, 0x200)),
        (S.STORE_STATUS_AT_ADDRESS, MEM, None),
        (S.STORE_ADDITIONAL_STATUS, 0x6000, (0x6000, 0x400)),
        (S.STORE_ADDITIONAL_STATUS, 0x6001, None),  # a length code without guarded storage
        (S.STORE_ADDITIONAL_STATUS, 0x6010, None),  # not on a 1 KiB boundary
        (S.STORE_ADDITIONAL_STATUS, (1 << 32) | 0x6000, None),  # 64 bits: above 4 GiB, not at 0x6000
        (S.STORE_ADDITIONAL_STATUS, MEM - 0x400, (MEM - 0x400, 0x400)),
    ],
)
def test_a_parameter_names_its_area_or_is_invalid(order, param, area):
    assert S.param_area(order, param, MEM) == area


def test_an_order_without_a_storage_parameter_has_no_area():
    with pytest.raises(ValueError):
        S.param_area(S.SENSE, 0, MEM)


@pytest.fixture
def cpus():
    mem = PhysicalMemory(MEM)
    clock = TodClock(deterministic=True)
    cpus = {a: Cpu(mem, a, clock, facility_list(False), 0) for a in (0, 1, 2)}
    cpus[0].state = OPERATING
    yield cpus, mem
    for c in cpus.values():
        c.close()


def _sigp(cpus, mem, order, param, target=1):
    return S.sigp(cpus[0], order, target, param, cpus, mem.size, mem.write)


def test_set_prefix_checks_the_area_before_the_state(cpus):
    cpus, mem = cpus
    cpus[1].state = OPERATING
    assert _sigp(cpus, mem, S.SET_PREFIX, MEM) == (1, S.STAT_INVALID_PARAMETER)  # was incorrect state
    assert _sigp(cpus, mem, S.SET_PREFIX, 0x8000) == (1, S.STAT_INCORRECT_STATE)
    cpus[1].state = STOPPED
    assert _sigp(cpus, mem, S.SET_PREFIX, 0x8000) == (0, None) and cpus[1].prefix == 0x8000


def test_store_additional_status_takes_a_64_bit_address(cpus):
    cpus, mem = cpus
    cpus[1].state = STOPPED
    mem.write(0x6000, b"\x77" * 0x400)
    # above 4 GiB: beyond storage (it was cut to 32 bits and stored the vector registers at 0x6000)
    assert _sigp(cpus, mem, S.STORE_ADDITIONAL_STATUS, (1 << 32) | 0x6000) == (1, S.STAT_INVALID_PARAMETER)
    assert mem.read(0x6000, 0x400) == b"\x77" * 0x400
    assert _sigp(cpus, mem, S.STORE_ADDITIONAL_STATUS, 0x6000) == (0, None)
    assert mem.read(0x6000, 0x200) == bytes(0x200) and mem.read(0x6200, 0x200) == b"\x77" * 0x200
    cpus[1].state = OPERATING  # the state before the parameter
    assert _sigp(cpus, mem, S.STORE_ADDITIONAL_STATUS, 0x6001) == (1, S.STAT_INCORRECT_STATE)


def test_set_architecture_counts_a_check_stopped_cpu_as_not_stopped(cpus):
    cpus, mem = cpus
    cpus[1].state = cpus[2].state = STOPPED
    assert _sigp(cpus, mem, S.SET_ARCHITECTURE, 0) == (1, S.STAT_INVALID_PARAMETER)
    cpus[2].state = CHECK_STOP
    assert _sigp(cpus, mem, S.SET_ARCHITECTURE, 0) == (1, S.STAT_INCORRECT_STATE)  # was invalid parameter


def _cpu(num: int, state: int) -> SecureCpu:
    c = SecureCpu(handle=0x100 + num, config=None, num=num, stor_origin=0, state_origin=0)  # type: ignore
    c.state = state
    return c


class _Config:
    msl = MEM

    def __init__(self, *cpus: SecureCpu) -> None:
        self.cpus = {c.handle: c for c in cpus}


def test_the_ultravisor_reads_the_parameters_as_the_hardware():
    stopped, running = _cpu(1, CPU_STATE_STP), _cpu(2, CPU_STATE_OPR)
    cfg = _Config(stopped, running)
    # above 4 GiB the Ultravisor stored the vector registers at the low 32 bits' address
    assert status_store(cfg, S.STORE_ADDITIONAL_STATUS, 1, (1 << 32) | 0x6000) is None
    assert status_store(cfg, S.STORE_ADDITIONAL_STATUS, 1, 0x6000) == (0x6000, stopped.ext[:512])
    assert set_prefix_target(cfg, 2, MEM) == (running, S.STAT_INVALID_PARAMETER)  # the area first
    assert set_prefix_target(cfg, 2, 0x8000) == (running, S.STAT_INCORRECT_STATE)
    assert set_prefix_target(cfg, 1, 0x8000) == (stopped, 0) and stopped.prefix == 0x8000

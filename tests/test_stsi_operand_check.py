"""STSI's operand check, one function (``emulator.hw.sysinfo.stsi_operand_check``) for the machine, the
hypervisor and the Ultravisor: a 4 KiB boundary for every function code that stores a SYSIB."""

import pytest

from emulator.errors import ProgramException
from emulator.hw.sysinfo import stsi_operand_check


@pytest.mark.parametrize(
    ("fc", "addr", "refused"),
    [
        (0, 0x1234, False),  # stores nothing
        (1, 0x3000, False),
        (1, 0x3008, True),
        (2, 0x3800, True),
        (3, 0x3001, True),
        (7, 0x3001, True),  # an unknown function code: the specification exception first, as QEMU's TCG
        (15, 0x3001, False),  # no topology: condition code 3, as KVM
    ],
)
def test_the_operand_of_a_stored_sysib_is_page_aligned(fc, addr, refused):
    if not refused:
        stsi_operand_check(fc << 28, addr)
        return
    with pytest.raises(ProgramException) as e:
        stsi_operand_check(fc << 28, addr)
    assert e.value.code == 0x06

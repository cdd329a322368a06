"""SERVC's program checks on the SCCB, one function (``emulator.hw.sclp.sccb_check``) for the machine, the
hypervisor and the Ultravisor, in QEMU's order: addressing before specification."""

import pytest

from emulator.errors import ProgramException
from emulator.hw.sclp import sccb_check

MEM = 64 << 20


@pytest.mark.parametrize(
    ("sccb", "prefix", "length", "code"),
    [
        (0x4000, 0, None, None),
        (0x4000, 0, 8, None),
        (0x4000, 0, 7, 0x06),  # shorter than its header
        (MEM - 8, 0, None, None),
        (MEM - 4, 0, None, 0x05),  # the header runs past storage: addressing, before the alignment
        (1 << 40, 0, None, 0x05),
        (0x4004, 0, None, 0x06),  # not on a doubleword
        (0x1FF8, 0, None, 0x06),  # the low 8 KiB
        (0x21000, 0x20000, None, 0x06),  # the CPU's prefix area
        (0x22000, 0x20000, None, None),
    ],
)
def test_sccb_check_refuses_as_qemu(sccb, prefix, length, code):
    if code is None:
        sccb_check(sccb, prefix, MEM, length)
        return
    with pytest.raises(ProgramException) as e:
        sccb_check(sccb, prefix, MEM, length)
    assert e.value.code == code


def test_an_sccb_above_2_gib_is_a_specification_exception():
    with pytest.raises(ProgramException) as e:
        sccb_check(0x80000000, 0, 4 << 30)
    assert e.value.code == 0x06

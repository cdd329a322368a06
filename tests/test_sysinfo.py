"""What the machine says about itself: STSI 3.2.2's VM name and UUID, and the facility list's claims."""

import dataclasses
import uuid

from emulator.hw.sysinfo import BASE_FACILITIES, MachineInfo, facility_list, stsi

UUID = uuid.UUID("0fb84a86-727c-11ea-bc55-0242ac130003").bytes


def block_322(info: MachineInfo, cpus: int = 2) -> bytes:
    cc, _r0, block = stsi(info, 3, 3 << 28 | 2, 2, cpus)
    assert cc == 0 and block is not None and len(block) == 4096
    return block


def test_stsi_322_gives_the_vm_name_in_ebcdic_its_utf8_extended_name_and_the_uuid():
    info = dataclasses.replace(MachineInfo.qemu_compatible(), vm_name="kvm-unit-test", vm_uuid=UUID)
    b = block_322(info)
    vm = b[32:96]
    assert vm[12:20] == "kvm-unit".encode("cp037")
    assert vm[43] == 2  # extended names in UTF-8
    assert vm[48:64] == UUID  # a UUID with zero bytes in it arrives whole
    assert b[2048:2048 + 14] == b"kvm-unit-test\0"
    assert vm[24:40].startswith("KVM/".encode("cp037"))


def test_stsi_322_short_names_are_blank_padded_and_the_default_uuid_is_zero():
    b = block_322(dataclasses.replace(MachineInfo.qemu_compatible(), vm_name="vm1"))
    assert b[32 + 12 : 32 + 20] == "vm1     ".encode("cp037")
    assert b[32 + 48 : 32 + 64] == bytes(16)
    assert b[2048:2052] == b"vm1\0"


def test_the_facility_list_leaves_out_what_unicorn_cannot_execute():
    fl = facility_list(False)

    def has(bit: int) -> bool:
        return bool(fl[bit // 8] & 0x80 >> bit % 8)

    # DFP with high performance, PFPO, HFP multiply-add and unnormalized extension, TRTE, PTFF, LPTEA, TX:
    # unicorn raises an operation exception for their instructions and nothing emulates them
    for bit in (43, 44, 20, 23, 26, 28, 5, 50, 73):
        assert not has(bit), bit
    assert has(129) and has(130) and has(131)  # vector; IEP and ESOP-2 (the Python DAT's)
    assert has(135)  # vector enhancements 1: what unicorn traps of it, vector_ext emulates
    assert has(61) and has(45)  # miscellaneous-instruction extensions 3 (mie3 emulates it) and 1
    assert has(42) and has(37)  # decimal floating point (dfp emulates it) beside the FP extension
    assert has(48) and has(80)  # and its zoned and packed conversions
    assert all(has(b) for b in BASE_FACILITIES)

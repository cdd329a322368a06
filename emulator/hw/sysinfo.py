"""What the machine says about itself: the facility list (STFL/STFLE), CPU id (STIDP) and STSI blocks.

The facility list names what this machine really implements: the instruction set unicorn 2.1.4 executes
(z13 level: QEMU 5.0 TCG, see ``unicorn-s390x.md`` section 6) plus what zuv adds (the message-security-assist
extensions ``cpacf`` emulates; the Ultravisor-call and unpack facilities 158 and 161 when an Ultravisor is
installed). STSI follows QEMU
``target/s390x/tcg/misc_helper.c`` ``HELPER(stsi)``: level 3 (a VM of zuv's hypervisor) or level 2 (the
program runs in the LPAR itself).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Final

from emulator.errors import ProgramException
from emulator.hw import cpacf, dfp, mie3, vector_ext

__all__ = ["facility_list", "has_facility", "MachineInfo", "normal_guest_facilities",
           "secure_guest_facilities", "stsi", "stsi_operand_check", "with_facility"]

#: Facility bits of the emulated CPU (PoP "Facility Indications"); every one is executed by the CPU model.
BASE_FACILITIES: Final = (
    0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 14, 16, 17, 18, 19, 21, 22, 24, 25, 27, 30, 31, 32, 33,
    34, 35, 37, 41, 45, 49, 51, 52, 53, 78, 129, 130, 131,
)  # fmt: skip
# 130 (instruction-execution protection) is the Python DAT's (IEP bit of page and segment entries, CR0 bit
# 43); 131 (side-effect access, ESOP-2): no side-effect accesses happen, and protection TEIDs carry the
# ESOP-2 codes (DAT 001, IEP 101; key-controlled and low-address protection 000, "either").
# 17 (MSA) is in the base list and the other message-security-assist levels come from ``cpacf.FACILITIES``:
# the CPU emulates those instructions. 8 and 78 (enhanced DAT 1 and 2: large frames in the Python DAT walk,
# PFMF, SSKE's multiple-block control), 10 (conditional SSKE) and 14 (nonquiescing key setting) are
# emulated in ``keys`` and ``dat``. Left out because unicorn raises an operation exception for their
# instructions: 43 (DFP has high performance: not claimed for an emulation), 44 (PFPO),
# 20 and 23 (HFP multiply-and-add, unnormalized extension: MADR, MAER, MAY; unicorn has no HFP), 26
# (parsing enhancement: TRTE, TRTRE), 28 (TOD-clock steering: PTFF, which Linux calls when the bit is on),
# 5 (LPTEA), 50/73 (constrained and full transactional execution). 135 (vector enhancements
# 1) comes from ``vector_ext``, which emulates the instructions of it that unicorn traps (VBPERM, VMSL,
# VFMAX/VFMIN, VFNMA/VFNMS, short and extended vector BFP); 61 (miscellaneous-instruction extensions 3:
# NCRK, NNRK, NORK, NXRK, OCRK and their G forms, SELR/SELGR/SELFHR, POPCNT's M3, MVCRL) from ``mie3``,
# whose instructions the page scan traps; 42, 48 and 80 (decimal floating point and its zoned and packed
# conversions) from ``dfp``, which emulates the DFP instructions at the operation exception unicorn raises.
FAC_EDAT1: Final = 8
FAC_COND_SSKE: Final = 10
FAC_NQ_KEY: Final = 14
FAC_EDAT2: Final = 78
#: Ultravisor call facility and the unpack facility (secure IPL).
FAC_UV_CALL: Final = 158
FAC_UNPACK: Final = 161


def has_facility(facilities: bytes, bit: int) -> bool:
    """Whether facility ``bit`` is on in a facility list (bit 0 = MSB of byte 0)."""
    return bit >> 3 < len(facilities) and bool(facilities[bit >> 3] & (0x80 >> (bit & 7)))


def with_facility(facilities: bytes, bit: int, on: bool) -> bytes:
    """``facilities`` with facility ``bit`` turned on or off."""
    out = bytearray(facilities)
    if on:
        out[bit >> 3] |= 0x80 >> (bit & 7)
    else:
        out[bit >> 3] &= ~(0x80 >> (bit & 7)) & 0xFF
    return bytes(out)


def normal_guest_facilities(ultravisor: bool) -> bytes:
    """What a hypervisor offers its normal guests (KVM's): no Ultravisor-call facility (158: the UVC of a
    normal guest is an operation exception), and the unpack facility (161) where the machine has an
    Ultravisor, for the secure IPL (DIAG 0x308 subcode 10) that turns the guest into a secure one."""
    return with_facility(facility_list(False), FAC_UNPACK, ultravisor)


def secure_guest_facilities(host: bytes) -> bytes:
    """What a secure guest sees, as the Ultravisor presents it: the hypervisor's list for the guest with
    the Ultravisor-call facility (158: the guest's UVCs go to the Ultravisor) and without unpack (161)."""
    return with_facility(with_facility(host, FAC_UV_CALL, True), FAC_UNPACK, False)


def facility_list(ultravisor: bool, decimal_fp: bool = True) -> bytes:
    """The facility list as bytes (bit 0 = MSB of byte 0), 32 bytes long: the LPAR's (with ``ultravisor``
    the Ultravisor-call and unpack facilities of a machine with one). A secure guest's is
    ``secure_guest_facilities``, a hypervisor's normal guests' ``normal_guest_facilities``. Without
    ``decimal_fp``, no decimal floating point (42, 48, 80): QEMU TCG's CPU model, which has none."""
    bits = set(BASE_FACILITIES) | set(cpacf.FACILITIES) | {mie3.FACILITY}
    if vector_ext.OFFERED:
        bits.add(vector_ext.FACILITY)
    if dfp.OFFERED and decimal_fp:
        bits |= set(dfp.FACILITIES)
    if ultravisor:
        bits |= {FAC_UV_CALL, FAC_UNPACK}
    out = bytearray(32)
    for b in bits:
        out[b // 8] |= 0x80 >> (b % 8)
    return bytes(out)


def ebcdic(text: str, width: int) -> bytes:
    """Text in EBCDIC (code page 037), blank-padded to ``width``."""
    return text.encode("cp037")[:width].ljust(width, "\x40".encode("latin-1"))


@dataclass(frozen=True)
class MachineInfo:
    """Identity strings a configuration reports."""

    manufacturer: str = "IBM"
    machine_type: str = "8561"  # IBM z15 T01
    model: str = "ZUV"
    sequence: str = "0000000000000ZUV"
    plant: str = "ZUV"
    lpar_name: str = "ZUVLPAR"
    #: the VM's name: STSI 3.2.2 gives its first 8 characters in EBCDIC and all of it (UTF-8) as the
    #: extended name (QEMU's ``-name``); KVM's when none is set (``handle_stsi_3_2_2``)
    vm_name: str = "KVMguest"
    #: the VM's universally unique identifier, 16 bytes (QEMU's ``--uuid``; all zeros when none is set)
    vm_uuid: bytes = bytes(16)
    #: the control-program identifier of the VM's hypervisor in STSI 3.2.2: KVM's, which zuv's hypervisor is
    #: like (Linux and kvm-unit-tests tell KVM by it: "KVM/")
    hypervisor_cpi: str = "KVM/Linux"
    version: int = 0x00
    lpar_number: int = 1
    cpuid_format1: bool = True

    def cpuid(self, cpu_address: int) -> int:
        """The STIDP value: version, CPU identification, machine type, format bit."""
        if not self.cpuid_format1:
            return self.version << 56 | int(self.machine_type, 16) << 16
        ident = (0x100000 | cpu_address & 0xFFFF) & 0xFFFFFF
        return self.version << 56 | ident << 32 | int(self.machine_type, 16) << 16 | 0x8000

    @classmethod
    def qemu_compatible(cls) -> MachineInfo:
        """The identity QEMU 7.2 TCG gives its guests (``zuv run``'s default, so outputs compare)."""
        return cls(
            manufacturer="QEMU",
            machine_type="8561",
            model="QEMU",
            sequence="QEMU",
            plant="QEMU",
            lpar_name="QEMU",
            vm_name="TCGguest",
            hypervisor_cpi="KVM/Linux",
            lpar_number=0,
            cpuid_format1=False,
        )


class SysIB111(ctypes.BigEndianStructure):
    """STSI 1.1.1: basic machine configuration."""

    _pack_ = 1
    _fields_ = [
        ("_res1", ctypes.c_char * 32),
        ("manuf", ctypes.c_char * 16),
        ("type", ctypes.c_char * 4),
        ("_res2", ctypes.c_char * 12),
        ("model", ctypes.c_char * 16),
        ("sequence", ctypes.c_char * 16),
        ("plant", ctypes.c_char * 4),
    ]


class SysIB122(ctypes.BigEndianStructure):
    """STSI 1.2.2: basic-machine CPUs."""

    _pack_ = 1
    _fields_ = [
        ("_res1", ctypes.c_char * 32),
        ("capability", ctypes.c_uint32),
        ("total_cpus", ctypes.c_uint16),
        ("conf_cpus", ctypes.c_uint16),
        ("standby_cpus", ctypes.c_uint16),
        ("reserved_cpus", ctypes.c_uint16),
        ("adjustments", ctypes.c_uint16 * 2026),
    ]


class SysIB222(ctypes.BigEndianStructure):
    """STSI 2.2.2: logical-partition CPUs."""

    _pack_ = 1
    _fields_ = [
        ("_res1", ctypes.c_char * 32),
        ("lpar_num", ctypes.c_uint16),
        ("_res2", ctypes.c_uint8),
        ("lcpuc", ctypes.c_uint8),
        ("total_cpus", ctypes.c_uint16),
        ("conf_cpus", ctypes.c_uint16),
        ("standby_cpus", ctypes.c_uint16),
        ("reserved_cpus", ctypes.c_uint16),
        ("name", ctypes.c_char * 8),
        ("caf", ctypes.c_uint32),
        ("_res3", ctypes.c_char * 16),
        ("dedicated_cpus", ctypes.c_uint16),
        ("shared_cpus", ctypes.c_uint16),
    ]


class SysIB322Vm(ctypes.BigEndianStructure):
    """One virtual-machine description of STSI 3.2.2."""

    _pack_ = 1
    _fields_ = [
        ("_res2", ctypes.c_char * 4),
        ("total_cpus", ctypes.c_uint16),
        ("conf_cpus", ctypes.c_uint16),
        ("standby_cpus", ctypes.c_uint16),
        ("reserved_cpus", ctypes.c_uint16),
        ("name", ctypes.c_char * 8),
        ("caf", ctypes.c_uint32),
        ("cpi", ctypes.c_char * 16),
        ("_res5", ctypes.c_char * 3),
        ("ext_name_encoding", ctypes.c_uint8),
        ("_res3", ctypes.c_uint32),
        ("uuid", ctypes.c_char * 16),
    ]


class SysIB322(ctypes.BigEndianStructure):
    """STSI 3.2.2: virtual-machine CPUs."""

    _pack_ = 1
    _fields_ = [
        ("_res1", ctypes.c_char * 31),
        ("count", ctypes.c_uint8),
        ("vm", SysIB322Vm * 8),
        ("_res4", ctypes.c_char * 1504),
        ("ext_names", (ctypes.c_char * 256) * 8),
    ]


assert ctypes.sizeof(SysIB322) == 4096
#: STSI 3.2.2 extended-name encoding: UTF-8
EXT_NAME_UTF8: Final = 2


def stsi_operand_check(r0: int, addr: int) -> None:
    """STSI's second operand, checked where its owner takes the instruction (the machine, the hypervisor, the
    Ultravisor for a secure guest, which checks it before the host sees the STSI): with a function code
    that stores a SYSIB (all but 0, which stores nothing, and 15, which without the configuration-topology
    facility is condition code 3, as KVM answers it) the operand must be on a 4 KiB boundary.

    Raises:
        ProgramException: 0x06 for an operand off a 4 KiB boundary.
    """
    fc = (r0 >> 28) & 0xF
    if fc != 0 and fc != 15 and addr & 0xFFF:
        raise ProgramException(0x06, why="STSI operand not on a 4 KiB boundary")


def stsi(
    info: MachineInfo, level: int, r0: int, r1: int, cpus: int, store: ctypes.Structure | None = None
) -> tuple[int, int | None, bytes | None]:
    """STSI: returns (cc, new r0 or None, 4 KiB block to store or None).

    Raises ProgramException(0x06) for reserved bits in R0/R1.
    """
    fc = (r0 >> 28) & 0xF
    sel1, sel2 = r0 & 0xFF, r1 & 0xFFFF
    if r0 & 0x0FFFFF00 or r1 & 0xFFFF0000:
        raise ProgramException(0x06, why="STSI reserved bits in general registers 0 or 1")
    if fc == 0:
        return 0, (r0 & ~0xF0000000 & 0xFFFFFFFFFFFFFFFF) | level << 28, None
    if fc > level and fc != 15:
        return 3, None, None
    block = bytearray(4096)
    if (fc, sel1, sel2) == (1, 1, 1):
        b = SysIB111.from_buffer(block)
        b.manuf = ebcdic(info.manufacturer, 16)
        b.type = ebcdic(info.machine_type, 4)
        b.model = ebcdic(info.model, 16)
        b.sequence = ebcdic(info.sequence, 16)
        b.plant = ebcdic(info.plant, 4)
        del b
    elif (fc, sel1, sel2) == (1, 2, 2):
        b2 = SysIB122.from_buffer(block)
        b2.capability = 0x443AFC29  # a float-valued capability rating, as real machines report
        b2.total_cpus = b2.conf_cpus = cpus
        del b2
    elif (fc, sel1, sel2) == (2, 2, 2):
        b3 = SysIB222.from_buffer(block)
        b3.lpar_num = info.lpar_number
        b3.lcpuc = 0x80  # dedicated
        b3.total_cpus = b3.conf_cpus = b3.dedicated_cpus = cpus
        b3.name = ebcdic(info.lpar_name, 8)
        b3.caf = 1000
        del b3
    elif (fc, sel1, sel2) == (3, 2, 2):
        b4 = SysIB322.from_buffer(block)
        b4.count = 1
        vm = b4.vm[0]
        vm.total_cpus = vm.conf_cpus = cpus
        vm.name = ebcdic(info.vm_name, 8)
        vm.caf = 1000
        vm.cpi = ebcdic(info.hypervisor_cpi, 16)
        vm.ext_name_encoding = EXT_NAME_UTF8
        b4.ext_names[0].value = info.vm_name.encode()[:255]
        del vm, b4
        # (a c_char array stops at a zero byte: the UUID goes in as raw bytes)
        at = SysIB322.vm.offset + SysIB322Vm.uuid.offset
        block[at : at + 16] = info.vm_uuid[:16].ljust(16, b"\0")
    else:
        return 3, None, None
    return 0, None, bytes(block)

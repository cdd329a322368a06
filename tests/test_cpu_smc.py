"""Code a guest rewrites is scanned again for trapped instructions, however the store got its access."""

import struct

from emulator.hw.cpu_handle import hardware_of
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tod import TodClock
from emulator.hypervisor.kvm import MIB, Hypervisor

_WAIT = struct.pack(">QQ", 0x0002000180000000, 0xFFF)


def _larl(at: int, reg: int, target: int) -> bytes:
    return bytes([0xC0, reg << 4]) + struct.pack(">i", (target - at) // 2)


def _kernel() -> bytes:
    """Call a subroutine page Q once (Q holds scanned code now), store into Q (a write fill), PTLB, read Q
    (a read fill: Q's change bit lets that entry be writable), store a DIAG over the no-ops at Q+0x100
    through it, trap once (DIAG 0x9C), then run the patched code: a second DIAG."""
    q = 0x11000
    img = bytearray(0x12000)
    img[4:8] = struct.pack(">I", 0x80010000)
    code = bytearray()
    code += bytes.fromhex("c0e5") + struct.pack(">i", (q - 0x10000) // 2)  # brasl %r14,Q
    code += _larl(0x10000 + len(code), 5, q + 0x800)  # larl %r5,Q data
    code += bytes.fromhex("92555000")  # mvi 0(%r5),0x55
    code += bytes.fromhex("b20d0000")  # ptlb
    code += bytes.fromhex("95555000")  # cli 0(%r5),0x55
    code += _larl(0x10000 + len(code), 6, q + 0x100)  # larl %r6,patch
    code += bytes.fromhex("c079") + bytes.fromhex("8300009c")  # iilf %r7,<diag 0,0,0x9c>
    code += bytes.fromhex("50706000")  # st %r7,0(%r6)
    code += bytes.fromhex("8300009c")  # diag 0,0,0x9c: back in the host once
    at = 0x10000 + len(code)
    code += bytes.fromhex("c0f4") + struct.pack(">i", (q + 0x100 - at) // 2)  # brcl 15,patch
    img[0x10000 : 0x10000 + len(code)] = code
    img[q : q + 2] = bytes.fromhex("07fe")  # Q: br %r14
    img[q + 0x100 : q + 0x104] = bytes.fromhex("07000700")  # patch: nopr ; nopr
    img[q + 0x104 : q + 0x10A] = _larl(q + 0x104, 1, 0x10200)
    img[q + 0x10A : q + 0x10E] = bytes.fromhex("b2b21000")  # lpswe 0(%r1)
    img[0x10200:0x10210] = _WAIT
    return bytes(img)


def _loaded(tmp_path, image: bytes):
    """A fresh hypervisor and a 64 MiB VM of it with ``image`` loaded as a flat kernel."""
    hv = Hypervisor(PhysicalMemory(256 * MIB), TodClock())
    vm = hv.create_vm(64 * MIB)
    try:
        path = tmp_path / "kernel.bin"
        path.write_bytes(image)
        vm.load(str(path))
    except BaseException:
        vm.destroy()
        raise
    return hv, vm


def test_a_store_through_a_read_fills_writable_entry_is_seen(tmp_path):
    _, vm = _loaded(tmp_path, _kernel())
    try:
        res = vm.run(time_limit=60)
        assert res.clean, res.describe()
        assert res.intercepts.get("DIAG", 0) == 2  # the patched DIAG traps too
    finally:
        vm.destroy()


def _key_kernel() -> bytes:
    """PSW key 2 (SPKA), load from page Q (key 2: loads and stores allowed), load from page P (key 3, fetch
    protection off: loads allowed, stores not), then store into P: a protection exception (PGM 0x04) ends
    in the program-new PSW's disabled wait."""
    p, q = 0x11000, 0x12000
    img = bytearray(0x13000)
    img[4:8] = struct.pack(">I", 0x80010000)
    img[0x1D0:0x1E0] = struct.pack(">QQ", 0x0002000180000000, 0xBAD)  # program new PSW: disabled wait
    code = bytearray(_larl(0x10000, 5, p))  # larl %r5,P
    code += bytes.fromhex("b20a0020")  # spka 0x20: PSW key 2
    code += _larl(0x10000 + len(code), 6, q) + bytes.fromhex("95006000")  # larl %r6,Q ; cli 0(%r6),0
    code += bytes.fromhex("95115000")  # cli 0(%r5),0x11: a load (read fill)
    code += bytes.fromhex("92555000")  # mvi 0(%r5),0x55: refused by key 3
    code += _larl(0x10000 + len(code), 1, 0x10200) + bytes.fromhex("b2b21000")  # not reached: clean stop
    img[0x10000 : 0x10000 + len(code)] = code
    img[0x10200:0x10210] = _WAIT
    img[p] = 0x11
    return bytes(img)


def test_a_load_fill_lets_stores_through_only_where_a_store_is_allowed(tmp_path):
    """The load's fill decides for stores with the same translation: a page whose key refuses stores gets
    a read-only entry even with its change bit set (the store is a protection exception, the byte stays);
    loads set the reference bit, and only stores the change bit."""
    from emulator.hw.memory import KEY_C, KEY_R

    hv, vm = _loaded(tmp_path, _key_kernel())
    try:
        frame = (vm.mso + 0x11000) >> 12
        keys = hardware_of(vm.vcpus[0].cpu).mem.keys  # the hardware's storage keys (not the hypervisor's)
        keys[frame] = 0x30 | KEY_C  # ACC 3, F 0, C already set (what lets a load fill be writable)
        keys[frame + 1] = 0x20  # Q: ACC 2, R and C clear
        res = vm.run(time_limit=60)
        assert res.cpus[0].psw[1] == 0xBAD, res.describe()
        assert struct.unpack(">H", vm.read_guest(0x8E, 2))[0] == 0x0004  # protection
        assert vm.read_guest(0x11000, 1) == b"\x11"
        assert keys[frame] == 0x30 | KEY_C | KEY_R
        assert keys[frame + 1] == 0x20 | KEY_R
    finally:
        vm.destroy()

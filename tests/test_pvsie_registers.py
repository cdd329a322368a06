"""The secure-exit register save (``Cpu.psw_gprs_crs``, one context update) reads the same GPRs and CRs as
the CPU's per-register accessors."""

import random

from emulator.hw.cpu import Cpu
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sysinfo import facility_list
from emulator.hw.tod import TodClock


def test_bulk_read_matches_register_reads():
    cpu = Cpu(PhysicalMemory(1 << 20), 0, TodClock(deterministic=True), facility_list(True), 0)
    rnd = random.Random(7)
    try:
        for _ in range(5):
            for i in range(16):
                cpu.set_gpr(i, rnd.getrandbits(64))
                cpu.write_cr(i, rnd.getrandbits(64))
            _, _, gprs, crs = cpu.psw_gprs_crs()
            cpu._stale()  # noqa: SLF001 - the reads below go to the engine, not to the caches it just filled
            assert gprs == [cpu.gpr(i) for i in range(16)]
            assert crs == [cpu.cr(i) for i in range(16)]
    finally:
        cpu.close()


# The secure guest at 0x10000 (z14; data at 0x10060): enable AFP and vector registers in CR0, load V1 and V17,
# AR5 and the FPC, then DIAGNOSE 0x9C (a notification exit) with R1 naming in turn: AR5 (EAR), V17's right
# doubleword and V1's left one (VLGVG), the FPC (EFPC); then a disabled wait.
#   larl %r1,data ; lctlg %c0,%c0,0(%r1) ; vl %v1,16(%r1) ; vl %v17,32(%r1) ; l %r2,48(%r1) ; sar %a5,%r2
#   l %r3,52(%r1) ; sfpc %r3 ; diag %r0,%r0,0x9c ; ear %r4,%a5 ; diag %r4,%r0,0x9c ; vlgvg %r4,%v17,1
#   diag %r4,%r0,0x9c ; vlgvg %r4,%v1,0 ; diag %r4,%r0,0x9c ; efpc %r4 ; diag %r4,%r0,0x9c
#   larl %r1,wait ; lpswe 0(%r1)
_EXT_GUEST = bytes.fromhex(
    "c01000000030" "eb001000002f" "e71010100006" "e71010200806" "58201030" "b24e0052" "58301034" "b3840030"
    "8300009c" "b24f0045" "8340009c" "e74100013421" "8340009c" "e74100003021" "8340009c" "b38c0040" "8340009c"
    "c01000000024" "b2b21000" "070707070707"
    "00000000000600e0" "0000000000000000"  # CR0: AFP and vector on
    "1111222233334444" "5555666677778888" "99990000aaaabbbb" "ccccddddeeeeffff"  # V1, V17
    "a5a51234" "00000001"  # AR5, FPC
    "0002000180000000" "0000000000000fff"  # the disabled-wait PSW
)


def test_secure_cpu_vector_access_registers_and_fpc_survive_a_foreign_program_on_its_hardware_cpu(tmp_path):
    """The Ultravisor's record keeps a secure CPU's vector and access registers and FPC at each exit (as the
    engine holds them, converted when read); when its hardware CPU ran something else meanwhile, the next
    entry puts them back: the guest reads back what it wrote, both after the record was read and after an
    exit nobody read."""
    from emulator.hypervisor.boot import SecureHost, boot
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng

    host = SecureHost("zuv-demo", memory=4 << 30, seed=3)
    kernel = bytearray(0x11000)
    kernel[0x10000 : 0x10000 + len(_EXT_GUEST)] = _EXT_GUEST
    img = build_image(kernel=bytes(kernel), host_keys=[host.identity.public_key], rng=DeterministicRng(3))
    path = tmp_path / "ext.se"
    path.write_bytes(img.data)
    told: list[int] = []
    records: list[tuple[bytes, bytes, int, int]] = []

    def foreign_program(vm, v, ex) -> None:
        if ex.icptcode != 0x6C:
            return
        told.append(v.page.pv_grregs[0])
        handle = v.sd.pv_handle_cpu
        engine = next(e for e in host.uv.sie_engines if handle in e._hw)  # noqa: SLF001 - the UV's side
        if len(told) == 1:
            scpu = host.uv.secure_cpu(handle)
            records.append((scpu.vrs[1], scpu.vrs[17], scpu.ars[5], scpu.fpc))
        cpu = engine._hw[handle]  # noqa: SLF001
        cpu.set_extended_state(bytes(range(256)) * 2 + bytes(64), 0)  # what another program left there
        engine.drop_cpu(cpu)

    host.hv.exit_listeners.append(foreign_program)
    r = boot(host, str(path), 16 << 20, attack=False, time_limit=60)
    assert r.run.clean and r.failure is None, (r.run.describe(), r.failure_text())
    assert records == [(
        bytes.fromhex("1111222233334444" "5555666677778888"),
        bytes.fromhex("99990000aaaabbbb" "ccccddddeeeeffff"),
        0xA5A51234, 1,
    )]  # fmt: skip
    # (EAR and EFPC set the right half of R4 only)
    assert [told[1] & 0xFFFFFFFF, told[2], told[3], told[4] & 0xFFFFFFFF] == [
        0xA5A51234, 0xCCCCDDDDEEEEFFFF, 0x1111222233334444, 1
    ]


def test_extended_raw_is_extended_state_as_the_engine_keeps_it():
    """``extended_raw`` and ``load_extended_raw`` agree with the per-register accessors."""
    from emulator.hw.registers import decode_extended

    cpu = Cpu(PhysicalMemory(1 << 20), 0, TodClock(deterministic=True), facility_list(True), 0)
    rnd = random.Random(11)
    try:
        vrs = [rnd.randbytes(16) for _ in range(32)]
        ars = [rnd.getrandbits(32) for _ in range(16)]
        for i in range(32):
            cpu.set_vr(i, vrs[i])
        for i in range(16):
            cpu.set_ar(i, ars[i])
        cpu.set_fpc(0x00000702)
        ext, fpc = cpu.extended_state()
        assert ext == b"".join(vrs) + b"".join(a.to_bytes(4, "big") for a in ars) and fpc == 0x702
        raw = cpu.extended_raw()
        if raw is not None:
            assert decode_extended(raw[0]) == ext and raw[1] == 0x702
            cpu.set_extended_state(bytes(576), 0)
            cpu.load_extended_raw(*raw)
        else:
            cpu.set_extended_state(ext, fpc)
        assert [cpu.vr(i) for i in range(32)] == vrs and [cpu.ar(i) for i in range(16)] == ars
        assert cpu.fpc() == 0x702
    finally:
        cpu.close()

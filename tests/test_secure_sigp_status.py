"""A secure guest with several CPUs: the store-status orders of SIGP between secure CPUs (the host decides the
condition code, the Ultravisor stores the target's status; the host never sees it) and the service signal
as a floating interruption that any CPU enabled for it takes."""

from emulator.hw import sigp as S
from emulator.hypervisor.boot import BlockDevice, ConsoleDevice, SecureHost, boot, load_image
from emulator.hypervisor.pv_sigp import pv_sigp
from firmware.uv_sigp import status_area, status_store
from firmware.uv_state import CPU_STATE_OPR, CPU_STATE_STP, SecureCpu

#: The magic value CPU 1 of ``_STATUS_GUEST`` leaves in GR9 and in vector register 1 (its left doubleword).
_MAGIC = 0x5A5A5A5A00ABCDE0

#: CPU 0 brings up CPU 1 (initial reset, SET PREFIX 0x20000, its restart new PSW, RESTART) and waits for its
#: flag at 0x30000; asks STORE STATUS AT ADDRESS 0x31000 of the running CPU 1 (must be cc 1, incorrect
#: state), then STOP AND STORE STATUS, SENSE until stopped, STORE STATUS AT ADDRESS 0x31000 and STORE
#: ADDITIONAL STATUS 0x32000 (cc 0 each); it compares GR9 of the save area at absolute 0x1200 (0x12c8) with
#: GR9 at 0x310c8 and with vector register 1 at 0x32010, checks the stored prefix (0x1318) is 0x20000, and
#: ends in a disabled wait at that GR9 (0xbad on any mismatch). CPU 1 (0x10100) enables the vector facility
#: in CR0, puts the magic value into GR9 and VR1, sets the flag and loops.
#: Assembled with GNU as -march=z13 from:
#:   lghi r3,1; sigp r0,r3,0x0b; llilf r1,0x20000; sigp r0,r3,0x0d; jnz fail; larl r2,rpsw;
#:   mvc 0x1a0(16,r1),0(r2); sigp r0,r3,6; jnz fail; llilf r5,0x30000; 1: lt r4,0(r5); jz 1b;
#:   llilf r7,0x31000; sigp r6,r3,0x0e; brc 11,fail; chi r6,0x200; jne fail; sigp r0,r3,9; jnz fail;
#:   2: sigp r6,r3,1; jz 2b; sigp r6,r3,0x0e; jnz fail; llilf r7,0x32000; sigp r6,r3,0x17; jnz fail;
#:   lg r4,0x12c8; clg r4,0x310c8; jne fail; clg r4,0x32010; jne fail; ly r8,0x1318; clfi r8,0x20000;
#:   jne fail; larl r2,donepsw; stg r4,8(r2); lpswe 0(r2); fail: larl r2,failpsw; lpswe 0(r2)
#:   0x10100: larl r2,cr0val; lctlg c0,c0,0(r2); llihf r9,0x5a5a5a5a; oilf r9,0xabcde0; vlvgg v1,r9,0;
#:   llilf r5,0x30000; mvhi 0(r5),1; 3: j 3b; cr0val: .quad 0x600e0
_STATUS_GUEST = bytes.fromhex(
    "a7390001ae03000bc01f00020000ae03000da774004fc02000000055d20f11a02000ae030006a7740045c05f00030000"
    "e34050000012a784fffdc07f00031000ae63000ea7b40036a76e0200a7740032ae030009a774002eae630001a784fffe"
    "ae63000ea7740026c07f00032000ae630017a774001fe34002c80104e34000c83121a7740017e34000103221a7740012"
    "e38003180158c28f00020000a774000ac02000000018e34020080024b2b22000c02000000018b2b22000070707070707"
    "000000018000000000000000000101000002000180000000000000000000000000020001800000000000000000000bad"
    "00000000000000000000000000000000c02000000018eb002000002fc09e5a5a5a5ac09d00abcde0e71900003022c05f"
    "00030000e54c50000001a7f40000070700000000000600e0"
)

#: CPU 0 brings up CPU 1 with its restart and external new PSWs (0x10100, 0x10180) and waits for its flag;
#: CPU 1 opens the service-signal subclass in CR0 and waits enabled. CPU 0, disabled for external
#: interruptions, then issues SERVC (read SCP info, SCCB 0x28000) and waits for a word at 0x30004; the
#: service signal is floating, so CPU 1 takes it: its handler stores the external parameter it got (the
#: SCCB's address, which the Ultravisor put in place of the host's dummy) at 0x30004 and ends in a disabled
#: wait at 1, and CPU 0 ends in a disabled wait at that parameter. Assembled with GNU as -march=z13 from:
#:   lghi r3,1; sigp r0,r3,0x0b; llilf r1,0x20000; sigp r0,r3,0x0d; jnz fail; larl r2,rpsw;
#:   mvc 0x1a0(16,r1),0(r2); larl r2,extpsw; mvc 0x1b0(16,r1),0(r2); sigp r0,r3,6; jnz fail;
#:   llilf r5,0x30000; 1: lt r4,0(r5); jz 1b; llilf r2,0x28000; mvhhi 0(r2),0x1000; llilf r1,0x20001;
#:   servc r1,r2; jnz fail; 2: llgf r4,4(r5); ltgr r4,r4; jz 2b; larl r2,donepsw; stg r4,8(r2);
#:   lpswe 0(r2); fail: ...
#:   0x10100: larl r2,cr0val; lctlg c0,c0,0(r2); llilf r5,0x30000; mvhi 0(r5),1; larl r2,waitpsw;
#:   lpswe 0(r2); cr0val: .quad 0x2e0; waitpsw: .quad 0x0102000180000000,0
#:   0x10180: l r4,0x80; llilf r5,0x30000; st r4,4(r5); larl r2,c1done; lpswe 0(r2) (disabled wait 1)
_SERVICE_GUEST = bytes.fromhex(
    "a7390001ae03000bc01f00020000ae03000da7740036c02000000039d20f11a02000c0200000003bd20f11b02000ae03"
    "0006a7740026c05f00030000e34050000012a784fffdc02f00028000e54420001000c01f00020001b2200012a7740011"
    "e34050040016b9020044a784fffbc0200000001de34020080024b2b22000c0200000001db2b2200000000001800000000"
    "000000000010100000000018000000000000000000101800002000180000000000000000000000000020001800000000"
    "000000000000bad"
).ljust(0x100, b"\0") + bytes.fromhex(
    "c02000000014eb002000002fc05f00030000e54c50000001c0200000000cb2b2200007070707070700000000000002e0"
    "01020001800000000000000000000000"
).ljust(0x80, b"\0") + bytes.fromhex(
    "58400080c05f0003000050405004c02000000005b2b2200000020001800000000000000000000001"
)


def _image(tmp_path, code: bytes, name: str):
    from emulator.image.pvimg import build_image
    from firmware.crypto import DeterministicRng
    from firmware.machine_identity import MachineIdentity

    kernel = bytes(0x10000) + code + bytes(0x21000 - len(code))
    img = build_image(kernel=kernel, host_keys=[MachineIdentity.bundled("zuv-demo").public_key],
                      rng=DeterministicRng(name))  # fmt: skip
    path = tmp_path / f"{name}.se"
    path.write_bytes(img.data)
    return path


def test_store_status_orders_between_secure_cpus_store_the_targets_status_the_host_never_sees(tmp_path):
    """STOP AND STORE STATUS, STORE STATUS AT ADDRESS and STORE ADDITIONAL STATUS from secure CPU 0 to
    secure CPU 1: the running target refuses store status (incorrect state, nothing stored); stopped, its
    GR9, prefix and vector register 1 arrive in the guest's storage (two of the areas lie on pages the host
    imports first), while the host, reading those pages, gets ciphertext without the value."""
    host = SecureHost("zuv-demo", seed=21)
    vm = host.hv.create_vm(128 << 20, 2, name="status")
    try:
        vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001
        vm.add_device(BlockDevice(1 << 20))
        load_image(vm, _image(tmp_path, _STATUS_GUEST, "status"))
        res = vm.run(time_limit=60)
        assert vm.pv is not None
        waits = {c.address: c.detail for c in res.cpus}
        assert waits[0] == f"disabled wait {_MAGIC:#x}", res.describe()
        assert res.intercepts.get("SIGP", 0) >= 6
        magic = _MAGIC.to_bytes(8, "big")
        for gaddr in (0x1000, 0x31000, 0x32000):  # the three areas, as the host reads them (exported)
            assert magic not in vm.read_guest(gaddr, 0x1000)
    finally:
        vm.destroy()


def test_the_service_signal_goes_to_the_secure_cpu_enabled_for_it(tmp_path):
    """CPU 0 issues SERVC disabled for external interruptions; CPU 1 waits enabled for the service signal
    and takes it, with the SCCB's real address as its parameter (the host only knew a dummy one). CPU 1 is
    added as QEMU's ``-device s390x-cpu,core-id=1`` adds it (``zuv boot --device``, kvm-unit-tests' firq)."""
    r = boot(SecureHost("zuv-demo", seed=22), _image(tmp_path, _SERVICE_GUEST, "service"), attack=False,
             time_limit=60, cpus=1, cpu_ids=(1,))  # fmt: skip
    assert r.failure is None and r.secure
    waits = {c.address: c.detail for c in r.run.cpus}
    assert waits == {0: "disabled wait 0x28000", 1: "disabled wait 0x1"}, r.run.describe()
    assert r.intercepts.get("SERVC") == 1


def _cpu(num: int, state: int) -> SecureCpu:
    c = SecureCpu(handle=0x100 + num, config=None, num=num, stor_origin=0, state_origin=0)  # type: ignore
    c.state = state
    return c


class _Config:
    msl = 1 << 20

    def __init__(self, *cpus: SecureCpu) -> None:
        self.cpus = {c.handle: c for c in cpus}


def test_the_ultravisor_stores_only_a_stopped_targets_status_within_the_guests_storage():
    """What the Ultravisor stores when the host accepted a status order: the save area from its record of a
    stopped target, never that of a target its record shows operating (a host accepting what it should
    have refused gets nothing stored), nothing beyond the guest's storage or for an unaligned additional
    status."""
    stopped, running = _cpu(1, CPU_STATE_STP), _cpu(2, CPU_STATE_OPR)
    stopped.gprs = [i * 0x1111 for i in range(16)]
    stopped.prefix, stopped.psw, stopped.ckc = 0x20000, (0x0000000180000000, 0x4242), 0x1234500
    cfg = _Config(stopped, running)
    area = status_area(stopped)
    assert len(area) == 0x200 and area[0x80 + 9 * 8 : 0x88 + 9 * 8] == (9 * 0x1111).to_bytes(8, "big")
    assert area[0x118:0x11C] == (0x20000).to_bytes(4, "big")
    assert area[0x108:0x110] == (0x4242).to_bytes(8, "big")
    assert area[0x130:0x138] == (0x12345).to_bytes(8, "big")  # the clock comparator >> 8
    assert status_store(cfg, S.STOP_AND_STORE_STATUS, 1, 0) == (0x1200, area)
    assert status_store(cfg, S.STORE_STATUS_AT_ADDRESS, 1, 0x5000 | 0x1FF) == (0x5000, area)
    assert status_store(cfg, S.STORE_ADDITIONAL_STATUS, 1, 0x6000) == (0x6000, stopped.ext[:512])
    assert status_store(cfg, S.STORE_STATUS_AT_ADDRESS, 2, 0x5000) is None  # the record: operating
    assert status_store(cfg, S.STORE_STATUS_AT_ADDRESS, 3, 0x5000) is None  # no such CPU
    assert status_store(cfg, S.STORE_STATUS_AT_ADDRESS, 1, (1 << 20) - 0x100) == ((1 << 20) - 0x200, area)
    assert status_store(cfg, S.STORE_STATUS_AT_ADDRESS, 1, 1 << 20) is None  # beyond storage
    assert status_store(cfg, S.STORE_ADDITIONAL_STATUS, 1, 0x6001) is None  # a length code without GS
    assert status_store(cfg, S.STOP, 1, 0) is None


def test_the_hosts_answers_to_status_orders_follow_qemu(tmp_path):
    """The host's half (``pv_sigp``): incorrect state for a running target, invalid parameter for an area
    beyond storage or an unaligned additional-status address, cc 0 otherwise; it stores nothing itself. An
    order taking over a CPU left in a disabled wait ends that wait as its outcome."""
    host = SecureHost("zuv-demo", seed=23)
    vm = host.hv.create_vm(128 << 20, 2, name="answers")
    try:
        load_image(vm, _image(tmp_path, _STATUS_GUEST, "answers"))  # ends with CPU 1 stopped
        res = vm.run(time_limit=60)
        pv = vm.pv
        assert pv is not None, res.describe()
        v0, v1 = vm.vcpus[0], vm.vcpus[1]
        assert not v1.operating
        assert pv_sigp(pv, v0, S.STORE_STATUS_AT_ADDRESS, 1, 0x31000) == (0, None)
        beyond = 128 << 20  # the area past the last byte
        assert pv_sigp(pv, v0, S.STORE_STATUS_AT_ADDRESS, 1, beyond) == (1, S.STAT_INVALID_PARAMETER)
        assert pv_sigp(pv, v0, S.STORE_ADDITIONAL_STATUS, 1, 0x32000) == (0, None)
        assert pv_sigp(pv, v0, S.STORE_ADDITIONAL_STATUS, 1, 0x32008) == (1, S.STAT_INVALID_PARAMETER)
        assert pv_sigp(pv, v0, S.STORE_STATUS_AT_ADDRESS, 7, 0x31000) == (3, None)
        pv.set_cpu_state(v1, CPU_STATE_OPR)
        assert pv_sigp(pv, v0, S.STORE_STATUS_AT_ADDRESS, 1, 0x31000) == (1, S.STAT_INCORRECT_STATE)
        assert pv_sigp(pv, v0, S.STORE_ADDITIONAL_STATUS, 1, 0x32000) == (1, S.STAT_INCORRECT_STATE)
        # CPU 0 ended in a disabled wait; a SIGP STOP to it makes the stop, not the wait, how it ended
        assert v0.disabled_wait == _MAGIC
        assert pv_sigp(pv, v1, S.SENSE, 0, 0) == (1, S.STAT_STOPPED) and v0.disabled_wait == _MAGIC
        assert pv_sigp(pv, v1, S.STOP, 0, 0) == (0, None) and v0.disabled_wait is None
    finally:
        vm.destroy()


def test_console_input_beside_a_pending_completion_keeps_both_in_a_secure_vm(tmp_path):
    """The secure VM's one floating service signal: console input's notice merges into a pending completion
    (the SCCB's address stays, bit 1 is added). Before, it overwrote it: Linux as a secure guest lost the
    completion of the SERVC that wrote its prompt and read the line typed only at its SCLP driver's request
    timeout, 30 s later (``zuv boot`` of Debian 13's kernel, ``poweroff`` typed at the first prompt)."""
    host = SecureHost("zuv-demo", seed=23)
    vm = host.hv.create_vm(128 << 20, 1, name="merge")
    try:
        vm.add_device(ConsoleDevice(vm._console_write))  # noqa: SLF001
        load_image(vm, _image(tmp_path, _SERVICE_GUEST, "merge"))
        vm.run(time_limit=60)  # (alone, CPU 0 cannot start CPU 1 and ends in the disabled wait 0xbad)
        assert vm.pv is not None
        vm.pv.floating["service"] = 0x28000  # a SERVC's completion, not taken yet
        vm.feed_console(b"poweroff\n")
        assert vm.pv.floating["service"] == 0x28001
    finally:
        vm.destroy()

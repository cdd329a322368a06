"""The service signal is floating: a CPU enabled for it takes it, whichever CPU issued the SERVC (or none
did: console input), also when that CPU becomes enabled only after the SERVC, or the issuer stopped - for the
vCPUs of a normal guest VM of the hypervisor and for the CPUs of the machine itself (``zuv run``)."""

import pytest

from emulator.hypervisor.kvm import MIB, Hypervisor
from emulator.machine.machine import Machine

#: CPU 0 (0x10000) brings up CPU 1 with its restart and external new PSWs (prefix 0x20000), then, disabled
#: for external interruptions, issues SERVC (read SCP info, SCCB 0x28000), sets the word at 0x30008 and
#: waits for the word at 0x30004; it ends in a disabled wait at that word (0xbad on a failed SIGP/SERVC).
#: CPU 1 (0x100c8) spins until the word at 0x30008 is set - after the SERVC, so the service signal is
#: pending before any CPU is enabled for it - then opens the service-signal subclass in CR0 and waits
#: enabled; its external handler (0x100ee) stores the external parameter at 0x30004 and ends in a disabled
#: wait at 1. Assembled with GNU as -march=z13 (linked at 0x10000) from:
#:   lghi r3,1; sigp r0,r3,0x0b; llilf r1,0x20000; sigp r0,r3,0x0d; jnz fail; larl r2,rpsw;
#:   mvc 0x1a0(16,r1),0(r2); larl r2,extpsw; mvc 0x1b0(16,r1),0(r2); sigp r0,r3,6; jnz fail;
#:   llilf r5,0x30000; llilf r2,0x28000; mvhhi 0(r2),0x1000; llilf r1,0x20001; servc r1,r2; jnz fail;
#:   mvhi 8(r5),1; 2: llgf r4,4(r5); ltgr r4,r4; jz 2b; larl r2,donepsw; stg r4,8(r2); lpswe 0(r2);
#:   fail: larl r2,failpsw; lpswe 0(r2); rpsw: .quad 0x180000000,cpu1; extpsw: .quad 0x180000000,exth;
#:   donepsw: .quad 0x2000180000000,0; failpsw: .quad 0x2000180000000,0xbad
#:   cpu1: llilf r5,0x30000; 3: lt r4,8(r5); jz 3b; larl r2,cr0val; lctlg c0,c0,0(r2); larl r2,waitpsw;
#:   lpswe 0(r2); exth: l r4,0x80; llilf r5,0x30000; st r4,4(r5); larl r2,c1done; lpswe 0(r2);
#:   cr0val: .quad 0x2e0; waitpsw: .quad 0x0102000180000000,0; c1done: .quad 0x2000180000000,1
_GUEST = bytes.fromhex(
    "a7390001ae03000bc01f00020000ae03000da7740034c02000000039d20f11a02000c0200000003bd20f11b02000ae03"
    "0006a7740024c05f00030000c02f00028000e54420001000c01f00020001b2200012a7740014e54c50080001e3405004"
    "0016b9020044a784fffbc0200000001fe34020080024b2b22000c0200000001fb2b22000070707070000000180000000"
    "00000000000100c8000000018000000000000000000100ee00020001800000000000000000000000000200018000000000"
    "00000000000badc05f00030000e34050080012a784fffdc02000000018eb002000002fc02000000016b2b2200058400080"
    "c05f0003000050405004c02000000012b2b22000070700000000000002e001020001800000000000000000000000000200"
    "01800000000000000000000001"
)
#: ``_GUEST`` with CPU 0 stopping itself (SIGP STOP to CPU 0) after it set the word at 0x30008, and CPU 1's
#: handler ending in a disabled wait at the external parameter it got. Assembled as ``_GUEST``, with
#: "mvhi 8(r5),1; lghi r6,0; sigp r0,r6,5; j fail" after the SERVC and
#: "exth: l r4,0x80; llilf r5,0x30000; larl r2,c1done; stg r4,8(r2); lpswe 0(r2)" (CPU 1 at 0x100b8).
_STOPPING_GUEST = bytes.fromhex(
    "a7390001ae03000bc01f00020000ae03000da774002bc02000000031d20f11a02000c02000000033d20f11b02000ae03"
    "0006a774001bc05f00030000c02f00028000e54420001000c01f00020001b2200012a774000be54c50080001a7690000"
    "ae060005a7f40002c02000000020b2b22000070707070707000000018000000000000000000100b80000000180000000"
    "00000000000100de0002000180000000000000000000000000020001800000000000000000000badc05f00030000e340"
    "50080012a784fffdc02000000018eb002000002fc02000000016b2b2200058400080c05f00030000c02000000014e340"
    "20080024b2b2200000000000000002e0010200018000000000000000000000000002000180000000000000000000000001"
)
_SERVC = bytes.fromhex("b2200012")
#: a no-operation (BC 0,0) to put in the SERVC's place
_NOP = bytes.fromhex("47000000")


@pytest.fixture(scope="module")
def hv():
    m = Machine(256 * MIB, 1, deterministic=True)
    yield Hypervisor.on_machine(m)
    m.close()


def _waits(res) -> dict[int, str]:
    return {c.address: c.detail for c in res.cpus}


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_service_signal_of_a_disabled_issuer_goes_to_the_vcpu_enabled_for_it(hv, deterministic):
    """CPU 0 issues SERVC and stays disabled; CPU 1 enables only afterwards and takes the signal, with the
    SCCB's address as its parameter. Before, the signal stayed with CPU 0 and the guest spun forever."""
    vm = hv.create_vm(16 * MIB, 2, name="float")
    try:
        vm.write_guest(0x10000, _GUEST)
        vm.ipl(0x10000)
        res = vm.run(max_insns=5_000_000, deterministic=deterministic)
        assert _waits(res) == {0: "disabled wait 0x28000", 1: "disabled wait 0x1"}, res.describe()
        assert res.intercepts.get("SERVC") == 1
        assert int.from_bytes(vm.read_guest(0x28000, 2), "big") == 0x1000  # the SCCB was answered in place
    finally:
        vm.destroy()


def test_console_input_goes_to_the_vcpu_enabled_for_the_service_signal(hv):
    """No SERVC: CPU 0 spins disabled, CPU 1 waits enabled; console input's service signal (parameter 1)
    reaches CPU 1, not CPU 0 (the lowest address, which took every such signal before)."""
    assert _GUEST.count(_SERVC) == 1
    vm = hv.create_vm(16 * MIB, 2, name="float-console")
    try:
        vm.write_guest(0x10000, _GUEST.replace(_SERVC, _NOP))
        vm.ipl(0x10000)
        res = vm.run(max_insns=200_000, deterministic=True)
        assert res.reason == "instruction limit reached", res.describe()
        assert [c.state for c in res.cpus] == ["running", "wait"]
        vm.feed_console(b"x\n")
        assert "service" not in vm.vcpus[0].cpu.ext_pending
        res = vm.run(max_insns=5_000_000, deterministic=True)
        assert _waits(res) == {0: "disabled wait 0x1", 1: "disabled wait 0x1"}, res.describe()
    finally:
        vm.destroy()


def test_a_second_servc_is_busy_while_another_vcpu_holds_the_service_signal(hv):
    """While the signal of CPU 0's SERVC is pending (no vCPU enabled), a SERVC of CPU 1 is refused with
    condition code 2 (busy): the configuration has one service signal, wherever it is held."""
    from emulator.hw.cpu import PSW_MASK_64
    from emulator.hypervisor.floating import place_service_signal, service_holder

    vm = hv.create_vm(16 * MIB, 2, name="float-busy")
    try:
        v0, v1 = vm.vcpus[0], vm.vcpus[1]
        place_service_signal(vm, 0x28000, v0)  # nobody enabled: the issuer holds it
        assert service_holder(vm) is v0
        # CPU 1 at 0x10000: llilf r1,0x20001; llilf r2,0x28000; servc r1,r2
        vm.write_guest(0x10000, bytes.fromhex("c01f00020001c02f00028000b2200012"))
        v1.set_psw(PSW_MASK_64, 0x10000)
        v1.set_operating(True)
        vm.step(1, count=3)
        assert (v1.sd.psw_mask >> 44) & 3 == 2
        assert vm.intercepts.get("SERVC") == 1
        assert service_holder(vm) is v0 and v0.cpu.ext_pending["service"] == 0x28000
    finally:
        vm.destroy()


#: how ``_STOPPING_GUEST`` ends: CPU 0 stopped, CPU 1 in a disabled wait at the SCCB address it was given
_STOPPED_AND_TAKEN = [("stopped", ""), ("disabled-wait", "disabled wait 0x28000")]


def test_a_vcpu_stopped_after_its_servc_leaves_the_signal_to_the_one_still_operating(hv):
    """CPU 0 issues SERVC disabled and stops itself; CPU 1, the only operating vCPU, enables and takes the
    signal with the SCCB's address."""
    vm = hv.create_vm(16 * MIB, 2, name="float-stop")
    try:
        vm.write_guest(0x10000, _STOPPING_GUEST)
        vm.ipl(0x10000)
        res = vm.run(max_insns=5_000_000)
        assert [(c.state, c.detail) for c in res.cpus] == _STOPPED_AND_TAKEN, res.describe()
    finally:
        vm.destroy()


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_machine_routes_the_signal_of_a_stopped_holder_to_the_cpu_still_operating(deterministic):
    """``zuv run``'s machine: as above; before, the machine moved a held signal only while two or more CPUs
    operated, and CPU 1 waited for it forever."""
    m = Machine(16 * MIB, 2, deterministic=deterministic)
    try:
        m.memory.write(0x10000, _STOPPING_GUEST)
        m._ipl(0x10000)  # noqa: SLF001 - CPU 0 starts at the code, as Machine.load makes it
        res = m.run(max_insns=5_000_000)
        assert [(c.state, c.detail) for c in res.cpus] == _STOPPED_AND_TAKEN, res.describe()
    finally:
        m.close()


def test_a_second_signal_merges_the_completion_and_the_event_pending_bit():
    """One service signal at a time, as KVM keeps it: a pending completion's SCCB stays and the event-pending
    bit (1, console input) of either is kept; before, input overwrote a pending completion in a secure VM
    (Linux's SCLP driver then waited 30 s for its request timer) and was dropped beside one in a normal VM."""
    from emulator.hw.sclp import merge_service_parameter as merge

    assert merge(None, 0x28000) == 0x28000
    assert merge(0x28000, 1) == 0x28001
    assert merge(1, 0x28000) == 0x28001
    assert merge(0x28001, 0x30000) == 0x28001  # a second completion while one is pending is not made
    assert merge(1, 1) == 1


def test_console_input_beside_a_pending_completion_keeps_both(hv):
    """A normal VM: the input's signal merges into the held completion (its SCCB and the event-pending bit);
    and with only the input's notice pending a SERVC is not busy, its completion merges with the notice."""
    from emulator.hw.cpu import PSW_MASK_64
    from emulator.hypervisor.floating import place_service_signal, service_holder

    vm = hv.create_vm(16 * MIB, 2, name="float-merge")
    try:
        v0, v1 = vm.vcpus[0], vm.vcpus[1]
        place_service_signal(vm, 0x28000, v0)
        vm.feed_console(b"x\n")
        assert service_holder(vm) is v0 and v0.cpu.ext_pending["service"] == 0x28001
        del v0.cpu.ext_pending["service"]
        vm.feed_console(b"y\n")  # the notice alone
        vm.write_guest(0x10000, bytes.fromhex("c01f00020001c02f00028000b2200012"))  # SERVC of CPU 1
        vm.write_guest(0x28000, b"\x10\x00")  # the SCCB's length: 4 KiB
        v1.set_psw(PSW_MASK_64, 0x10000)
        v1.set_operating(True)
        vm.step(1, count=3)
        assert (v1.sd.psw_mask >> 44) & 3 == 0  # accepted
        holder = service_holder(vm)
        assert holder is not None and holder.cpu.ext_pending["service"] == 0x28001
    finally:
        vm.destroy()


def test_console_input_from_another_thread_is_fed_by_the_run_loop():
    """``zuv run``'s standard input comes from its own thread: while the machine runs, the input is queued
    and fed between CPU runs by the run's thread (CPU 0's run is ended for it), so the SCLP and the pending
    service signal are only ever changed by the CPUs' thread."""
    import threading
    import time

    from emulator.hw import sclp

    m = Machine(16 * MIB, 1)
    fed: list[tuple[int, bytes]] = []
    real = sclp.Sclp.feed_input

    def record(self, data):
        fed.append((threading.get_ident(), data))
        return real(self, data)

    try:
        m.memory.write(0x10000, bytes.fromhex("a7f40000"))  # j . (CPU 0 busy, no timer)
        m._ipl(0x10000)  # noqa: SLF001
        sclp.Sclp.feed_input = record
        runner: list[int] = []

        def typist():
            while not runner:
                time.sleep(0.01)
            m.feed_console(b"typed\n")
            while not fed:
                time.sleep(0.01)
            m.request_halt("done")

        t = threading.Thread(target=typist)
        t.start()
        runner.append(threading.get_ident())
        res = m.run(time_limit=30)
        t.join()
        assert res.reason == "done", res.describe()
        assert fed == [(runner[0], b"typed\n")]
    finally:
        sclp.Sclp.feed_input = real
        m.close()

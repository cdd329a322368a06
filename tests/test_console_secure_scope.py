"""Where the console's hooks and symbols apply on an SE image: address breakpoints, watchpoints and register
reads of a secure guest need the machine's debug capability (refused in one line without it); hooks placed
while stage3a runs stay with stage3a (the Ultravisor drops the host's hooks when it adopts the hardware CPU
at the secure IPL); the program's symbols name the secure guest only, stage3a's name stage3a; the host view
shows the state description's PSW everywhere (status bar, stop line, ``print pc``); a step with a UVC
breakpoint set stays on the console's thread unless its exit makes the hypervisor call the Ultravisor."""

from __future__ import annotations

import pytest

from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.errors import ConsoleError
from emulator.console.secure import owner_machine
from emulator.console.status import status_line
from emulator.hypervisor.boot import DEMO_IMAGE

STAGE3A_INSN = 0x11006  # stage3a's second instruction (_start+6)


def demo(debug: bool):
    return open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=debug)


def _hardware_cpu(s):
    """The hardware CPU that runs the secure vCPU (the test's privilege: the engine's own record)."""
    pv = s.machine.vm.pv
    (engine,) = owner_machine(s.machine).uv.sie_engines  # the Ultravisor's (the hypervisor holds its gate)
    return engine._hw[pv.cpu_handles[0]]  # noqa: SLF001


def test_without_the_debug_capability_secure_breakpoints_and_watchpoints_are_refused():
    s = demo(False)
    try:
        out = execute(s, "break main").plain()  # main is the secure guest's, stage3a runs now
        assert out.startswith("error: break main: an address in the secure guest: that needs the machine's "
                              "debug capability") and "debug secure on, or zuv console --debug-secure" in out
        s.add_breakpoint("uvc", "set_shared_access")
        assert s.cont().kind == "uvc" and s.is_secure()
        for line in ("break 0x10b90", "tbreak main", "watch 0x15000", "watch abs:0x15000 8"):
            assert "debug secure on" in execute(s, line).plain(), line
        assert [b.kind for b in s.breakpoints.values()] == ["uvc"]  # nothing kept console-side
        assert "r2 of CPU 0 is held by the Ultravisor" in execute(s, "print r2").plain()
        assert "held by the Ultravisor" in execute(s, "bt").plain()
        execute(s, "debug secure on")  # asked for by name: now the same commands work
        assert "in the secure guest" in execute(s, "break main").plain()
    finally:
        s.close()


def test_hooks_placed_in_stage3a_do_not_reach_the_secure_guest():
    s = demo(False)
    try:
        bp = s.add_breakpoint("addr", "0x10b90")  # a number while stage3a runs: stage3a's; main once secure
        assert bp.scope == "normal" and "in stage3a (before the secure IPL)" in bp.describe()
        s.add_breakpoint("addr", hex(STAGE3A_INSN))
        s.add_breakpoint("watch", "abs:0x7f00000")  # a frame nothing touches (guest memory at host 0x1000000)
        s.add_breakpoint("secure")
        stop = s.cont()
        assert stop.kind == "breakpoint" and stop.pc == STAGE3A_INSN and not s.is_secure()
        s.delete_breakpoint(2)
        s.add_breakpoint("uvc", "set_shared_access")
        stop = s.cont()  # through the secure IPL into the guest: main at 0x10b90 does not stop it
        assert stop.kind == "uvc" and s.is_secure() and bp.hits == 0
        hw = _hardware_cpu(s)
        assert hw.breakpoints == set() and hw.watch_frames == {} and hw.pgm_observer is None
        assert hw.tlb_record is None
        # the capability, asked for now, places the console's hooks (the secure set: none; the watch frame)
        execute(s, "debug secure on")
        assert hw.watch_frames == {0x8F00: False} and hw.breakpoints == set()
        execute(s, "break main")
        assert hw.breakpoints == {0x10B90}
    finally:
        s.close()


def test_with_the_capability_a_breakpoint_on_a_secure_symbol_waits_for_the_secure_guest():
    s = demo(True)
    try:
        bp = s.add_breakpoint("addr", "main")
        assert bp.scope == "secure" and bp.address == 0x10B90
        stop = s.cont()
        assert stop.kind == "breakpoint" and s.is_secure() and s.cpu.pc == 0x10B90 and bp.hits == 1
        assert _hardware_cpu(s).breakpoints == {0x10B90}
    finally:
        s.close()


def test_symbols_name_only_the_program_that_runs():
    s = demo(False)
    try:
        assert s.symbolize(0x11000) == "_start"  # stage3a's own (the bundled stage3a.elf)
        dis = execute(s, "dis pc 1").plain()
        assert "<_start>" in dis and "rt_secondary_entry" not in dis
        assert "0x10b90 <main> in the secure guest (stage3a runs now)" in execute(s, "sym main").plain()
        with pytest.raises(ConsoleError):
            s.value("main")  # not what runs here
        s.add_breakpoint("uvc", "set_shared_access")
        s.cont()
        assert s.symbolize(0x10B90) == "main" and s.value("main") == 0x10B90
    finally:
        s.close()


@pytest.mark.parametrize("debug", [False, True])
def test_after_set_cpu_state_the_host_view_shows_the_state_descriptions_psw(debug: bool):
    s = demo(debug)
    try:
        s.add_breakpoint("uvc", "set_cpu_state")
        s.cont()
        out = execute(s, "step").plain()  # issues Set CPU State: the hypervisor's work ends
        sd = s.machine.vm.vcpus[0].sd
        assert (sd.psw_addr, s.is_secure()) == (0x11064, True)  # the hypervisor's: stage3a's, after its DIAG
        assert "the SD keeps the hypervisor's copy, 0x11064, until the first interception" in out
        assert "=> 0x11064 (SD: the hypervisor's copy from before the secure IPL)" in out
        assert ("at 0x4c000" in out) == debug  # the secure CPU's PSW (the SE header's): with the capability
        status = "".join(t for _, t in status_line(s))
        assert "0000000000011064 (SD)" in status and execute(s, "print pc").plain().startswith("0x11064 ")
        execute(s, "step")  # the first secure exit (0x70, the prefix pages): the Ultravisor's PSW in the SD
        assert sd.psw_addr == 0x4C000 and "000000000004c000 (SD)" in "".join(t for _, t in status_line(s))
        if debug:
            s.set_view("owner")
            assert s.cpu.pc == sd.psw_addr and f"{s.cpu.pc:016x}" in "".join(t for _, t in status_line(s))
    finally:
        s.close()


def test_a_step_with_a_uvc_breakpoint_stays_on_the_consoles_thread():
    s = demo(True)
    try:
        s.add_breakpoint("addr", "main")
        s.cont()
        s.delete_breakpoint(None)
        runner = s.machine._runner  # noqa: SLF001 - the machine's work thread
        s.add_breakpoint("uvc", "verify")
        started = runner._thread  # noqa: SLF001 - the continue above ran as work (or not at all)
        pcs = []
        for _ in range(30):
            s.step()
            pcs.append(s.cpu.pc)
        assert len(set(pcs)) > 10  # the guest went on
        assert runner._thread is started  # noqa: SLF001 - no work was handed to the thread by these steps
    finally:
        s.close()

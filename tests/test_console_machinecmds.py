"""info tlb, reset, reload, and registers set: a secure CPU's in the owner view through the debug capability,
a normal vCPU's as the hypervisor may."""

from __future__ import annotations

import shutil

from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.secure import owner_machine
from emulator.hypervisor.boot import DEMO_IMAGE

PROBE = "tests/console_scripts/probe.elf"
FRAMES = "tests/console_scripts/frames.elf"


def probe():
    return open_session(PROBE, deterministic=True)


def test_info_tlb_lists_what_the_fills_granted_since_the_last_flush():
    s = probe()
    s.add_breakpoint("addr", "bump")
    s.cont()
    out = execute(s, "info tlb").plain()
    code, data = s.symbols["_start"] & ~0xFFF, s.symbols["counter"] & ~0xFFF
    rows = {line.split()[1]: line.split() for line in out.splitlines()[2:]}
    assert rows[f"{code:#x}"] == ["real", f"{code:#x}", f"{code:#x}", "r-x"]  # DAT off: virtual = real = host
    assert rows[f"{data:#x}"][-1] == "rw-"  # the loop stores its counter there
    assert out.splitlines()[0] == f"TLB of CPU 0: {len(s.tlb_entries())} pages filled since its last flush"
    s.cpu.flush_tlb()
    assert "empty (nothing translated since the last flush)" in execute(s, "info tlb").plain()
    assert "error" in execute(s, "info tlb 5").plain()
    # a step without watchpoints keeps the TLB: the code page is filled again by the step's fetch
    s.step()
    entries = {page: perms for _space, page, _frame, perms in s.tlb_entries()}
    assert entries[code] & 4 and not entries[code] & 2


def test_info_tlb_of_a_secure_cpu_only_in_the_owner_view():
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)
    s.add_breakpoint("addr", "share")
    s.cont()
    host = execute(s, "info tlb").plain()
    assert "runs a secure guest" in host and "the host cannot see them" in host and "0x10000" not in host
    execute(s, "view owner")
    owner = execute(s, "info tlb").plain()
    assert owner.startswith("owner view (emulator privilege") and "r-x" in owner
    page = f"{s.symbols['share'] & ~0xFFF:#x}"
    assert any(line.split()[1].startswith(page) for line in owner.splitlines()[3:])


def test_reset_restarts_the_machine_and_keeps_breakpoints_and_watchpoints():
    s = probe()
    execute(s, "break bump")
    execute(s, "watch counter")
    execute(s, "display r2")
    for _ in range(4):
        s.cont()
    assert s.breakpoints[1].hits == 2
    old = s.machine
    assert s.machine.memory.read(s.symbols["counter"], 8) != bytes(8)
    out = execute(s, "reset").plain()
    assert out.startswith("machine reset: tests/console_scripts/probe.elf, 2 breakpoints kept")
    assert "=> 0x20000 <_start>" in out and s.machine is not old and s.cpu.pc == s.symbols["_start"]
    assert s.machine.memory.read(s.symbols["counter"], 8) == bytes(8)  # memory cleared, program loaded again
    stop = s.cont()  # the watchpoint still stops (its first store), then the breakpoint
    assert stop.kind == "watch" and "0000000000000000 -> 0000000000000001" in stop.details[0]
    assert s.cont().reason.startswith("breakpoint 1 at 0x20064 <bump>")
    assert "r2" in execute(s, "display").plain()
    assert s.breakpoints[1].hits == 1  # counted anew after the reset


def test_reload_reads_the_file_again_and_places_breakpoints_by_their_specs(tmp_path):
    prog = tmp_path / "prog.elf"
    shutil.copy(PROBE, prog)
    s = open_session(str(prog), deterministic=True)
    execute(s, "break bump")
    execute(s, "break 0x20000")
    shutil.copy(FRAMES, prog)  # a rebuild: other code, other symbols
    out = execute(s, "reset").plain()
    assert "the program's symbols changed on disk: reload reads them again" in out
    out = execute(s, "reload").plain()
    assert out.startswith("program reloaded") and "breakpoint 1 (bump) disabled" in out
    assert "leaf" in s.symbols and "bump" not in s.symbols and not s.breakpoints[1].enabled
    assert s.breakpoints[2].enabled and s.breakpoints[2].address == 0x20000
    assert s.symbolize(s.symbols["leaf"]) == "leaf"
    out = execute(s, f"reload {PROBE}").plain()  # another file: the probe's symbols again
    assert "bump" in s.symbols and str(s.program.path) == PROBE
    assert "error: cannot load" in execute(s, f"reload {tmp_path / 'missing.elf'}").plain()
    assert str(s.program.path) == PROBE and s.cpu.pc == 0x20000  # a failed reload changed nothing
    assert "is an SE image" in execute(s, f"reload {DEMO_IMAGE}").plain()


def test_reset_of_a_secure_guest_boots_a_new_vm_on_the_same_host():
    s = open_session(str(DEMO_IMAGE), deterministic=True)
    execute(s, "break uvc unpack")
    s.cont()
    assert s.suspended  # inside the hypervisor's boot: reset unwinds it first
    host = owner_machine(s.machine)
    out = execute(s, "reset").plain()
    assert out.startswith("machine reset:") and owner_machine(s.machine) is host and len(host.hv.vms) == 1
    stop = s.cont()
    assert "before UVC 0x0301 Unpack (host)" in stop.reason  # the new VM's boot, walked again
    assert [c.cmd for c in s.uv_calls()] == [0x0100, 0x0120, 0x0300]  # the host's UV was initialised once
    execute(s, "delete")
    assert s.cont().kind == "end" and b"EXIT: STATUS=1" in bytes(s.machine.console)


def test_set_registers_of_a_secure_cpu_only_in_the_owner_view_through_the_debug_capability():
    s = open_session(str(DEMO_IMAGE), deterministic=True)
    # the owner view needs the machine's debug capability, asked for by name
    assert execute(s, "debug secure").plain().startswith("debug secure: off")
    out = execute(s, "view owner").plain()
    assert out.startswith("error: That needs the machine's debug capability") and out.count("\n") == 1
    assert "debug secure on" in out and s.view == "host" and s.machine.debug is None
    assert "debug capability is now in use" in execute(s, "debug secure on").plain()
    assert s.machine.debug is not None and "already in use" in execute(s, "debug secure on").plain()
    s.add_breakpoint("uvc", "set_shared_access")
    s.cont()
    out = execute(s, "set r5 = 0x1234").plain()
    assert out.startswith("error: CPU 0 runs a secure guest: the Ultravisor holds its registers")
    assert "pv_grregs" in out and "0x68" in out
    scpu = owner_machine(s.machine).uv.secure_cpu(s.machine.vm.pv.cpu_handles[0])
    assert scpu.gprs[5] == 0
    execute(s, "view owner")
    out = execute(s, "set r5 = 0x1234").plain()
    assert "debug capability" in out and "r5 = 0x1234" in out and scpu.gprs[5] == 0x1234
    assert "a3 is 32 bits" in execute(s, "set a3 = 0x100000000").plain()
    assert "8 KiB aligned" in execute(s, "set prefix = 0x1000").plain()
    pc = s.cpu.pc
    s.step()  # the UVC runs with the record put into the hardware CPU: r5 comes back from it
    assert scpu.gprs[5] == 0x1234 and s.cpu.gpr(5) == 0x1234 and s.cpu.pc == pc + 4
    execute(s, f"set pc = {pc}")  # back to the UVC: it runs again
    n = len(s.uv_calls())
    s.step()
    assert s.uv_calls()[n].cmd == 0x1000 and s.cpu.pc == pc + 4


def test_set_registers_of_a_normal_vcpu_as_the_hypervisor_may():
    s = open_session(str(DEMO_IMAGE), deterministic=True)  # stage3a: a normal SIE guest until the secure IPL
    assert not s.is_secure()
    pc = s.cpu.pc
    assert execute(s, "set r9 = 0x99").plain() == "r9 = 0x99\n"
    s.step()
    assert s.cpu.gpr(9) == 0x99 and s.cpu.pc != pc  # the hardware CPU kept it across the SIE entry
    execute(s, f"set pc = {pc:#x}")  # the PSW goes into the state description (taken at the next entry)
    assert s.machine.vm.vcpus[0].psw[1] == pc == s.cpu.pc
    s.step()
    assert s.cpu.pc not in (pc, 0)
    assert "inside memory" in execute(s, "set prefix = 0x20000000").plain()  # the guest has 128 MiB

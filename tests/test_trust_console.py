"""The console's host view shows no secure plaintext (issue 18, class 6): the stop line, watchpoint reports
and the status bar of a secure guest, on the bundled SE demo; the owner view (the emulator's debug
privilege) still shows all of it."""

from __future__ import annotations

from emulator.console.cli import open_session
from emulator.console.commands import execute
from emulator.console.status import status_line
from emulator.hypervisor.boot import DEMO_IMAGE

SECRET_TEXT = b"zuv secr".hex()  # the demo's secret page starts "zuv secret"


def demo():
    return open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)  # compared with the owner's


def _code_hex(s, pc: int, n: int = 6) -> str:
    return s._read_space("virt", pc, n, owner=True).hex()  # noqa: SLF001 - the plaintext to look for


def test_the_stop_line_in_the_host_view_shows_no_secure_instruction():
    s = demo()
    execute(s, "break main")
    out = execute(s, "continue").plain()
    assert s.is_secure() and "=> 0x10b90 (SD) <main>" in out
    assert "stmg" not in out and "PGM 0x3D" in out
    out = execute(s, "step").plain()
    assert "lay" not in out and "PGM 0x3D" in out
    assert _code_hex(s, s.cpu.pc) not in out
    s.set_view("owner")
    assert ": lghi %r4, 0x1000" in execute(s, "step").plain()  # the debug privilege reads the code


def test_watchpoint_reports_in_the_host_view_show_no_secure_value():
    s = demo()
    execute(s, "break main")
    execute(s, "continue")
    set_out = execute(s, "watch secret").plain()
    hit = execute(s, "continue").plain()  # the guest's memcpy writes the secret
    export = execute(s, "continue").plain()  # the hypervisor's read: the UV exports the page
    back = execute(s, "continue").plain()  # the guest touches it again: imported, plaintext again
    for out in (set_out, hit, export, back):
        assert SECRET_TEXT not in out and "hidden in the host view" in out
    assert "store by the instruction" in hit and "firmware store" in export and "firmware store" in back
    # the same stops in the owner view (the emulator's debug privilege) show the values
    s = demo()
    s.set_view("owner")
    execute(s, "break main")
    execute(s, "continue")
    execute(s, "watch secret")
    hit = execute(s, "continue").plain()
    assert SECRET_TEXT in hit and "hidden" not in hit


def test_the_status_bar_in_the_host_view_shows_the_state_descriptions_psw():
    s = demo()
    execute(s, "break main")
    execute(s, "continue")
    sd = s.machine.vm.vcpus[0].sd
    host = "".join(t for _, t in status_line(s))
    assert f"{sd.psw_mask:016x} {sd.psw_addr:016x} (SD)" in host and "view host" in host
    assert f"PSW {sd.psw_mask:016x} {sd.psw_addr:016x} (SD)" in execute(s, "cpu").plain()  # the CPU list too
    s.set_view("owner")
    mask, addr = s.cpu.psw
    assert f"{mask:016x} {addr:016x}" in "".join(t for _, t in status_line(s))


def test_hidden_bytes_are_no_equality_oracle():
    """Without the debug capability the session's storage gives a ``Hidden`` for bytes the host may not
    touch. It was a keyed digest, equal for equal bytes: one hidden byte of the secret page compared with
    hidden bytes of the guest's code, whose values the public ELF tells, read the whole secret (review 4).
    Now a ``Hidden`` tells the length only."""
    from elftools.elf.elffile import ELFFile

    from emulator.hypervisor.boot import DEMO_KERNEL

    s = open_session(str(DEMO_IMAGE), deterministic=True)
    try:
        execute(s, "break secure")
        execute(s, "continue")  # the hypervisor's read of the secret page traps and exports it
        execute(s, "delete all")
        execute(s, "continue --insns 200000")  # the guest touches it again: imported, secure
        mem, mso = s.machine.memory, s.machine.vm.mso
        secret = mso + 0x15000
        assert mem.owner[secret >> 12] != 0
        known: dict[int, int] = {}  # byte value -> host address of a secure byte of the code that holds it
        with open(DEMO_KERNEL, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] == "PT_LOAD":
                    for i, b in enumerate(seg.data()[:0x4000]):
                        a = mso + seg["p_paddr"] + i
                        if b not in known and mem.owner[a >> 12] != 0:
                            known[b] = a
        assert len(known) > 200
        table = {mem.read(a, 1): v for v, a in known.items()}
        got = bytes(table.get(mem.read(secret + i, 1), 0) for i in range(16))
        assert got != b"zuv secret: the "
        assert len(table) == 1  # every hidden byte reads alike
    finally:
        s.close()

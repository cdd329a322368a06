"""The console and the image tools answer what was asked: exact step counts on a secure guest, help that
names what the commands take, the same default address space for dual and mem, no silently cut addresses,
watch ranges within a page, and pvimg's refusals with what to do instead."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.console.cli import open_session
from emulator.console.commands import REGISTRY, execute
from emulator.console.disasm import branch_target
from emulator.hypervisor.boot import DEMO_IMAGE

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "guests" / "images" / "hello.elf"


@pytest.fixture(scope="module")
def secure():
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)  # dual
    s.add_breakpoint("uvc", "set_shared_access")
    s.cont()
    s.delete_breakpoint(None)
    assert s.is_secure()
    yield s
    s.close()


def test_each_secure_step_reports_what_it_did(secure):
    """A step moves one instruction and says 1; an entry that only completes an intercepted instruction is
    that instruction; a fault the host resolves (the guest retries) is 0 instructions and says why."""
    s = secure
    for _ in range(300):
        insn = s.current_instruction()
        pc, r14 = s.cpu.pc, s.cpu.gpr(14)
        stop = s.step(1)
        n = int(re.search(r"stepped (\d+) instruction", stop.reason).group(1))
        note = " ".join(stop.details)
        if "host program interruption" in note:  # nullified: the host imports the page, the guest retries
            assert n == 0 and s.cpu.pc == pc
            continue
        assert n == 1, (hex(pc), stop.reason, note)
        assert insn is not None
        targets = {pc + insn.size, branch_target(insn)} | ({r14} if insn.mnemonic == "br" else set())
        assert s.cpu.pc in targets, (hex(pc), insn.mnemonic, insn.operands, hex(s.cpu.pc), note)
        if "now" in stop.reason:
            break


def test_a_step_after_an_instruction_interception_is_that_instruction():
    """After 0x68 the guest's PSW still points at the instruction (the Ultravisor completes it at the next
    SIE entry): the next step is that completion and nothing more (it used to run one more instruction)."""
    s = open_session(str(DEMO_IMAGE), deterministic=True, debug_secure=True)  # reads the secure code
    try:
        s.add_breakpoint("sie", "0x68")
        stop = s.cont()
        assert stop.kind == "sie" and s.is_secure()
        insn = s.current_instruction()
        assert insn is not None and insn.mnemonic == "diag"
        pc = s.cpu.pc
        stop = s.step(1)
        assert stop.reason == "stepped 1 instruction"
        assert any("completed the intercepted instruction" in d for d in stop.details)
        assert s.cpu.pc == pc + insn.size
    finally:
        s.close()


def test_help_break_names_uvc_commands_that_break_uvc_takes():
    text = REGISTRY["break"].help
    names = re.findall(r"short name\s+like (\w+)", text) + re.findall(r"title like ([\w-]+)", text)
    assert names == ["create_sec_conf", "create-secure-configuration"]
    s = open_session(str(HELLO))
    try:
        for name in names + ["0x0100", "Create Secure Configuration"]:
            bp = s.add_breakpoint("uvc", name)
            assert bp.code == 0x100
        out = execute(s, "break uvc create-config").plain()
        assert (
            "error: unknown UVC command 'create-config' (did you mean create_sec_conf, create_sec_cpu?)"
            in out
        )
    finally:
        s.close()


def test_dual_reads_virtual_addresses_like_mem(secure):
    s = secure
    s.set_view("host")
    addr = s.symbols["main"]
    assert execute(s, f"dual {addr:#x} 16").plain() == execute(s, f"dual virt:{addr:#x} 16").plain()
    dual = execute(s, f"dual {addr:#x} 16").plain()
    frame = int(re.search(r"frame (0x[0-9a-f]+)", dual).group(1), 16)
    host = execute(s, f"dual host:{addr:#x} 16").plain()
    assert frame != addr >> 12 and f"frame {addr >> 12:#x}" in host  # host absolute is another page


def test_addresses_that_do_not_fit_64_bits_are_refused_not_cut():
    s = open_session(str(HELLO))
    try:
        for line in ("mem 0x10000000000000010 8", "break 0x10000000000020000", "print 0x1" + "0" * 16,
                     "dis 0x10000000000020000 2", "watch 0x10000000000020000"):  # fmt: skip
            out = execute(s, line).plain()
            assert "does not fit in 64 bits" in out, (line, out)
        assert "runs past the end of the 64-bit address space" in execute(s, "mem -1 8").plain()
        assert "0xfffffffffffffff8" in execute(s, "print -8").plain()  # two's complement stays
    finally:
        s.close()


def test_a_watch_range_may_not_cross_a_page():
    s = open_session(str(HELLO))
    try:
        out = execute(s, "watch 0x20ffc 8").plain()
        assert "error: a watched range must not cross a page boundary" in out
        assert not s.breakpoints
        assert "watchpoint 1" in execute(s, "watch 0x20ff8 8").plain()
    finally:
        s.close()


def _zuv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip


def test_pvimg_refuses_a_truncated_kernel_elf(tmp_path):
    cut = tmp_path / "cut.elf"
    cut.write_bytes(HELLO.read_bytes()[:3000])
    hkd = ROOT / "firmware" / "machines" / "zuv-demo" / "host-key-document.crt"
    p = _zuv("pvimg", "create", "-i", str(cut), "-o", str(tmp_path / "o.se"), "-k", str(hkd), "--no-verify")
    assert p.returncode == 1 and "kernel ELF is truncated or corrupt" in p.stderr
    assert not (tmp_path / "o.se").exists()


def test_pvimg_create_takes_a_pki_of_the_users_own(tmp_path):
    pki, machine = tmp_path / "pki", tmp_path / "lab1"
    assert _zuv("hostkey", "init-pki", str(pki), "--seed", "t").returncode == 0
    assert _zuv("hostkey", "new-machine", str(machine), "--pki", str(pki), "--seed", "t").returncode == 0
    hkd = str(machine / "host-key-document.crt")
    certs = ["-C", str(pki / "ibm-z-signing-key.crt"), "-C", str(pki / "intermediate-ca.crt")]
    p = _zuv("pvimg", "create", "-i", str(HELLO), "-o", str(tmp_path / "a.se"), "-k", hkd, *certs)
    assert p.returncode == 1 and "give its root CA with --root-ca, or its directory with --pki" in p.stderr
    p = _zuv("pvimg", "create", "-i", str(HELLO), "-o", str(tmp_path / "b.se"), "-k", hkd, "--pki", str(pki))
    assert p.returncode == 0, p.stderr
    crls = ["--crl", str(pki / "ibm-z-signing-key.crl"), "--crl", str(pki / "intermediate-ca.crl"),
            "--crl", str(pki / "root-ca.crl")]
    p = _zuv("pvimg", "create", "-i", str(HELLO), "-o", str(tmp_path / "c.se"), "-k", hkd, *certs, *crls,
             "--root-ca", str(pki / "root-ca.crt"))  # fmt: skip
    assert p.returncode == 0, p.stderr

"""The console's symbol sources: ``symbols FILE`` (a System.map, an ELF), ``--symbols``, a kernel image's own
kallsyms by default, ``symbols --gdb``, and the errors; with the cached Debian kernel, a boot stopped at
``start_kernel`` by name."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest

from emulator.console.cli import build_session_from_args, open_session
from emulator.console.commands import execute
from emulator.console.errors import ConsoleError
from emulator.errors import EmulatorError
from emulator.symbols.linux import IMAGE_BASE, LINK_BASE
from emulator.symbols.symfile import read_symbols
from tests.test_symbols import _entries, _in_filler, _kernel_image, _table

PROBE = "tests/console_scripts/probe.elf"


def _renamed_map(tmp_path: Path) -> Path:
    """A System.map naming the probe's addresses differently (``bump`` as ``my_bump``)."""
    s = open_session(PROBE, deterministic=True)
    lines = [f"{a:016x} T my_{n}" for n, a in sorted(s.symbols.items(), key=lambda kv: kv[1])]
    path = tmp_path / "System.map"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_symbols_file_replaces_the_programs_and_breaks_by_its_names(tmp_path):
    smap = _renamed_map(tmp_path)
    s = open_session(PROBE, deterministic=True)
    assert execute(s, "symbols").plain().rstrip().endswith("symbols: the program's ELF")
    bump = s.symbols["bump"]
    out = execute(s, f"symbols {smap}").plain()
    assert out.startswith(f"{len(s.symbols)} symbols from System.map (System.map, ")
    assert "bump" not in s.symbols and s.symbols["my_bump"] == bump
    assert execute(s, "sym my_bump").plain().rstrip() == f"{bump:#x} <my_bump>"
    s.add_breakpoint("addr", "my_bump")
    stop = s.cont()
    assert stop.kind == "breakpoint" and stop.pc == bump
    assert "<my_bump>" in execute(s, "x/i $pc").plain()
    # reload reads the file again (not the ELF's names)
    execute(s, "reload")
    assert "my_bump" in s.symbols and "bump" not in s.symbols


def test_symbols_option_offset_and_gdb_file(tmp_path):
    smap = _renamed_map(tmp_path)
    s = build_session_from_args(["--deterministic", "--symbols", str(smap), PROBE])
    assert s.symbols["my_bump"] == open_session(PROBE).symbols["bump"]
    execute(s, f"symbols {smap} -o 0x1000")
    assert s.symbols["my_bump"] == open_session(PROBE).symbols["bump"] + 0x1000
    out = tmp_path / "probe-syms.elf"
    assert execute(s, f"symbols --gdb {out}").plain().rstrip().endswith(f"in gdb, symbol-file {out}")
    assert read_symbols(out).symbols == s.symbols


def test_symbols_errors_are_one_line(tmp_path):
    s = open_session(PROBE, deterministic=True)
    before = dict(s.symbols)
    bad = tmp_path / "notes.txt"
    bad.write_text("just some text\n")
    cases = {
        f"symbols {tmp_path / 'missing'}": "no such file",
        f"symbols {bad}": "not a System.map",
        "symbols --kallsyms": "needs a Linux kernel image as the program",
        "symbols --kaslr": "needs a Linux kernel image",
        "symbols a b": "usage: symbols",
        f"symbols {bad} -o": "-o needs an offset",
    }
    for line, message in cases.items():
        out = execute(s, line).plain()
        assert out.startswith("error:") and message in out and "Traceback" not in out, (line, out)
    assert s.symbols == before
    with pytest.raises(EmulatorError, match="not a System.map"):
        open_session(PROBE, symbols=str(bad))


def test_a_kernel_image_brings_its_own_symbols(tmp_path, monkeypatch):
    """A synthetic 6.12-style kernel image as the program: kallsyms read by default, at 0x3FFE0000000 above
    the link addresses, and a note when the command line lacks nokaslr."""
    monkeypatch.setenv("ZUV_CACHE", str(tmp_path / "cache"))
    kernel = _in_filler(_table(_entries(), layout="6.4+")[0], at=0) + bytes(1 << 20)
    path = tmp_path / "vmlinuz"
    path.write_bytes(_kernel_image(lzma.compress(kernel)))
    s = open_session(str(path), memory="64M", append="console=ttysclp0")
    assert s.symbols["start_kernel"] == IMAGE_BASE + LINK_BASE + 0x40
    out = execute(s, "symbols").plain()
    assert "kallsyms of vmlinuz (xz," in out and "nokaslr" in out
    schedule = IMAGE_BASE + LINK_BASE + 0x100
    assert execute(s, "break schedule").plain().rstrip().endswith(f"at {schedule:#x} (schedule)")
    quiet = open_session(str(path), memory="64M", append="console=ttysclp0 nokaslr")
    assert "nokaslr" not in execute(quiet, "symbols").plain()
    # the kernel's own System.map (link addresses) is moved to where the kernel runs
    smap = tmp_path / "System.map"
    smap.write_text(f"{LINK_BASE:016x} T _text\n{LINK_BASE + 0x40:016x} T start_kernel\n")
    assert "moved by 0x3ffe0000000" in execute(quiet, f"symbols {smap}").plain()
    assert quiet.symbols["start_kernel"] == IMAGE_BASE + LINK_BASE + 0x40


def _linux_dir() -> Path:
    base = os.environ.get("ZUV_CACHE") or os.path.expanduser("~/.cache/zuv")
    return Path(base) / "linux"


@pytest.mark.slow
def test_debian_kernel_stops_at_start_kernel_by_name(tmp_path, monkeypatch):
    """Debian 12's kernel (6.1, identity-mapped) booted with nokaslr stops at start_kernel, found through
    the kallsyms of its vmlinuz alone; bt and x/i name what they show (about 10-20 s)."""
    d = _linux_dir()
    if not (d / "vmlinuz").is_file() or not (d / "initrd.cpio").is_file():
        pytest.skip(f"no cached Linux guest in {d} (tools/linux_guest.py builds it)")
    monkeypatch.setenv("ZUV_CACHE", str(tmp_path / "cache"))  # decode kallsyms, not a cached table
    s = open_session(str(d / "vmlinuz"), memory="512M", append="console=ttysclp0 nokaslr",
                     initrd=str(d / "initrd.cpio"))  # fmt: skip
    start = s.symbols["start_kernel"]
    assert s.symbols["_text"] == LINK_BASE < start < 64 << 20  # identity-mapped: link = run-time address
    s.add_breakpoint("addr", "start_kernel")
    stop = s.cont(time_limit=50)
    assert stop.kind == "breakpoint" and stop.pc == start, stop.reason
    assert "<startup_continue+" in execute(s, "bt").plain()
    assert execute(s, "x/i $pc").plain().startswith(f"=> {start:#x} <start_kernel>")


def test_zuv_boot_writes_the_uv_log(tmp_path):
    """``zuv boot --uvlog FILE``: the secure demo's Ultravisor calls, the host's and the guest's (its Set
    Shared Access and Query), one line per run as ``uvlog --brief``; an unwritable file is exit 2."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    log = tmp_path / "uv.log"
    cmd = [sys.executable, "-m", "emulator.cli", "boot", "--deterministic", "--uvlog", str(log)]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=root)
    assert p.returncode == 0, p.stderr
    lines = log.read_text().splitlines()
    assert lines[0].endswith(" Ultravisor calls") and int(lines[0].split()[0]) > 60
    rows = [line.split() for line in lines[1:]]
    assert rows[0][1:4] == ["host", "0x0001", "Query"]
    assert any(r[1:3] == ["guest", "0x1000"] and r[-3:] == ["0", "rc", "0x0001"] for r in rows)
    assert any(r[1] == "host" and "Unpack" in r for r in rows)
    columns = {line.index(" host ") if " host " in line else line.index(" guest ") for line in lines[1:]}
    assert len(columns) == 1
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "no" / "such" / "dir")], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120, cwd=root)  # fmt: skip
    assert bad.returncode == 2 and "cannot write the UV log" in bad.stderr and "Traceback" not in bad.stderr


def test_se_image_symbols_from_a_system_map(tmp_path):
    """An SE image's guest named by a System.map (a Linux guest's: the kernel's own, or its kallsyms)."""
    from emulator.hypervisor.boot import DEMO_IMAGE, DEMO_KERNEL

    elf_syms = read_symbols(DEMO_KERNEL).symbols
    smap = tmp_path / "System.map"
    smap.write_text("".join(f"{a:016x} T {n}\n" for n, a in elf_syms.items()))
    s = open_session(str(DEMO_IMAGE), deterministic=True, symbols=str(smap))
    assert s.symbols == elf_syms
    with pytest.raises(ConsoleError, match="not a System.map"):  # zuv console: one line, exit 2
        open_session(str(DEMO_IMAGE), deterministic=True, symbols=__file__)

"""The SE-header tool kvm-unit-tests' pv-host snippets are built with (``--gen-se-header``): the header opens
with the machine's host key, leaves the components in plaintext, and its digests are what the Ultravisor's
Unpack measures for the pages the host copies in; bad input is one line and exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from emulator.image.gen_se_header import Component, main, parse_component
from firmware.machine_identity import MachineIdentity
from firmware.se_header import PCF_NO_COMP_ENCRYPTION, open_header
from firmware.uv_image import UnpackMeasurement

ROOT = Path(__file__).resolve().parent.parent
DEMO = MachineIdentity.bundled_dir("zuv-demo")
HKD = DEMO / "host-key-document.crt"
KUT_TWEAK = "0x00000000000000420000000000000000"  # s390x/snippets/Makefile


def _snippet(tmp_path: Path, size: int = 0x4800) -> Path:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))  # not a page multiple: padded with zeros
    f = tmp_path / "snippet.gbin"
    f.write_bytes(data)
    return f


def _kut_header(tmp_path: Path, *extra: str) -> tuple[int, bytes]:
    out = tmp_path / "snippet.hdr"
    code = main(["-k", str(HKD), "-c", f"{_snippet(tmp_path)},0x0,{KUT_TWEAK}", "--psw-addr", "0x4000",
                 "-o", str(out), *extra])
    return code, out.read_bytes() if out.exists() else b""


def test_the_suites_command_line_makes_a_header_the_machine_opens(tmp_path):
    code, hdr = _kut_header(tmp_path)
    assert code == 0
    opened = open_header(hdr, MachineIdentity.bundled().host_keys)
    assert opened.psw == (0x0000000180000000, 0x4000)
    assert opened.pcf & PCF_NO_COMP_ENCRYPTION and not opened.components_encrypted
    assert opened.nep == 5


def test_the_digests_are_those_unpack_measures_for_the_copied_plaintext(tmp_path):
    _code, hdr = _kut_header(tmp_path)
    opened = open_header(hdr, MachineIdentity.bundled().host_keys)
    plain = _snippet(tmp_path).read_bytes() + bytes(0x800)
    m = UnpackMeasurement(opened)
    for i in range(5):  # kvm-unit-tests' uv_unpack: guest address i * 4 KiB, tweak (0x42, i * 4 KiB)
        off = i * 0x1000
        m.add_page(off, (0x42).to_bytes(8, "big") + off.to_bytes(8, "big"), plain[off : off + 0x1000])
        assert m.decrypt_page(b"\0" * 16, plain[off : off + 0x1000]) is None  # measured, never decrypted
    assert (m.pld, m.ald, m.tld, m.nep) == (opened.pld, opened.ald, opened.tld, opened.nep)
    other = UnpackMeasurement(opened)
    other.add_page(0, bytes(8) + bytes(8), plain[:0x1000])  # another tweak: another measurement
    assert other.tld != opened.tld


def test_a_seed_makes_the_header_reproducible(tmp_path):
    a = _kut_header(tmp_path, "--seed", "1")[1]
    b = _kut_header(tmp_path, "--seed", "1")[1]
    c = _kut_header(tmp_path, "--seed", "2")[1]
    assert a == b != c


def test_components_are_placed_and_tweaked_as_given(tmp_path):
    f = _snippet(tmp_path, 0x1000)
    comp = parse_component(f"{f},0x20000,0x{(7 << 64) | 0x3000:x}")
    assert comp == Component(f.read_bytes(), 0x20000, (7 << 64) | 0x3000)


@pytest.mark.parametrize("args, message", [
    (["-c", "{snip}"], "is not FILE,ADDR,TWEAK"),
    (["-c", "{snip},0x800,0"], "not 4 KiB aligned"),
    (["-c", "{snip},zz,0"], "is not a number"),
    (["-c", "{snip},0,0x1" + "0" * 32], "does not fit in 128 bits"),
    (["-c", "{tmp}/missing.gbin,0,0"], "cannot read component"),
    (["-c", "{snip},0,0", "-c", "{snip},0x1000,0x100"], "components overlap at guest address 0x1000"),
    (["-c", "{snip},0,0", "--x-pcf", "0xe0"], "bit 35"),
    (["-c", "{snip},0,0", "--cck", "{snip}"], "must be 32 bytes"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, args, message):
    snip = _snippet(tmp_path)
    argv = ["-k", str(HKD), "--psw-addr", "0x4000", "-o", str(tmp_path / "h")]
    argv += [a.format(snip=snip, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("gen-se-header: error:")
    assert not (tmp_path / "h").exists()


def test_a_file_that_is_no_host_key_document_is_refused(tmp_path, capsys):
    bogus = tmp_path / "hkd.crt"
    bogus.write_bytes(b"not a certificate")
    code = main(["-k", str(bogus), "-c", f"{_snippet(tmp_path)},0,0", "--psw-addr", "0x4000",
                 "-o", str(tmp_path / "h")])
    assert code == 2 and "host-key document" in capsys.readouterr().err


def test_with_certificates_the_document_is_verified(tmp_path, capsys):
    pki = DEMO / "pki"
    ok = ["--cert", str(pki / "ibm-z-signing-key.crt"), "--cert", str(pki / "intermediate-ca.crt"),
          "--crl", str(pki / "ibm-z-signing-key.crl"), "--crl", str(pki / "intermediate-ca.crl"),
          "--crl", str(pki / "root-ca.crl")]
    assert _kut_header(tmp_path, *ok)[0] == 0
    capsys.readouterr()
    bad = ["--cert", str(pki / "intermediate-ca.crt")]  # without the signing-key certificate: no chain
    assert _kut_header(tmp_path, *bad)[0] == 1
    assert "verification failed" in capsys.readouterr().err


def test_the_tool_script_runs_as_the_suites_make_calls_it(tmp_path):
    out = tmp_path / "snippet.hdr"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_se_header.py"), "-k", str(HKD), "-c",
                        f"{_snippet(tmp_path)},0x0,{KUT_TWEAK}", "--psw-addr", "0x4000", "-o", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert open_header(out.read_bytes(), MachineIdentity.bundled().host_keys).nep == 5

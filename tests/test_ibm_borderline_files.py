"""Borderline and bad files as IBM's 2.43 tools read them, against zuv's (the divergences a side-by-side run
of cut, empty and hand-written files found, each with what IBM's binaries answered).

- ``pvsecret create --cuid FILE``: pvsecret reads YAML with serde_yaml into a Value, then takes the first
  ``cuid`` string of nested mappings; zuv matched a regular expression, so it took a CUID without ``0x``, an
  unquoted one (an integer of 128 bits, which a serde_yaml Value cannot hold), a duplicate key, a second
  document or a cut file that IBM's refuses (``emulator/attest/yamlin.py`` now reads it as pvsecret does).
- ``pvimg info``/``test``, ``pvattest``/``pvsecret --hdr``: s390-tools reads the SE header alone; zuv parsed
  the whole image and refused a cut one whose header is whole ("IPIB truncated").
- ``pvsecret create --extension-secret`` of an empty file: zuv took it as no extension secret (exit 0), IBM's
  says "extension secret must be exactly 32 bytes long" (exit 1).
- ``pvimg create --no-component-check`` with a parmfile beyond the kernel's command-line size: IBM's pvimg
  makes the image (that limit is part of its component check); zuv refused it.

With ``ZUV_IBM_TOOLS`` the same cases run live through IBM's binaries too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from emulator.attest.pvattest import pvattest_main
from emulator.attest.pvsecret import pvsecret_main
from emulator.image.pvimg_cli import pvimg_main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/ibm"
HKD = str(ROOT / "firmware/machines/zuv-demo/host-key-document.crt")
HDR = str(DATA / "genprotimg-2.35.hdr")
IBM = Path(os.environ["ZUV_IBM_TOOLS"]) / "bin" if os.environ.get("ZUV_IBM_TOOLS") else None
C = "'0x96946bd26935a014be3a2b7c73a420c3'"
NOT_YAML = "The CUID-file does not contain a 128bit value or a yaml with a 'cuid' field"
#: a CUID file, and what pvsecret 2.43 answered (exit status, its error line; None: it made the request)
CUID_FILES = [
    (f"cuid: {C}\n", 0, None),
    (f"---\ncuid: {C}\n...\n", 0, None),
    ('{"cuid": "0x96946bd26935a014be3a2b7c73a420c3", "n": 1}\n', 0, None),
    (f"{C}\n", 0, None),  # a lone string
    (f"a:\n  cuid: 1\nb:\n  cuid: {C}\n", 0, None),  # the first cuid *string*
    (f"a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       cuid: {C}\n", 0, None),  # 8 mappings deep
    (f"a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        cuid: {C}\n", 1,
     "No 'cuid' entry found"),  # 9 deep: not searched
    (f"a:\n  - cuid: {C}\n", 1, "No 'cuid' entry found"),  # sequences are not searched
    ("a: &x {cuid: 1}\nb: *x\nc: |\n  text\ncuid: !!str 0x96946bd26935a014be3a2b7c73a420c3\n", 0, None),
    (f"cuid: {C}\nx: 0x0d6aa76d5a7deb3fe1b5ea", 1, NOT_YAML),  # a cut pvattest verify -o file
    ("cuid: 0x96946bd26935a014be3a2b7c73a420c3\n", 1, NOT_YAML),  # unquoted: 128 bits, no Value holds it
    (f"a: 18446744073709551616\ncuid: {C}\n", 1, NOT_YAML),
    (f"a: 18446744073709551615\ncuid: {C}\n", 0, None),
    (f"cuid: {C}\ncuid: {C}\n", 1, NOT_YAML),  # a duplicate key
    (f"cuid: {C}\n---\nx: 1\n", 1, NOT_YAML),  # two documents
    (f"a:\n\tb: 1\ncuid: {C}\n", 1, NOT_YAML),  # a tab in the indentation
    (f"x: b: c\ncuid: {C}\n", 1, NOT_YAML),
    ("cuid: '96946bd26935a014be3a2b7c73a420c3'\n", 1, "CUID value starts not with 0x"),
    ("cuid: '0X96946BD26935A014BE3A2B7C73A420C3'\n", 1, "CUID value starts not with 0x"),
    ("cuid: '0x96946bd26935a014be3a2b7c73a420'\n", 1, "len invalid (30)"),
    ("cuid: 0x96946bd26935a014be3a2b7c73a420c3aa\n", 1, "len invalid (34)"),  # beyond 128 bits: a string
    ("cuid: '0x96946bd26935a014be3a2b7c73a420cz'\n", 1, "Cannot decode hex string"),
    ("cuid: 0x96946bd26935a014\n", 1, "No 'cuid' entry found"),  # an integer, not a string
    (f"!Retrievable\ncuid: {C}\n", 1, "No 'cuid' entry found"),
    ("# only a comment\n", 1, "No 'cuid' entry found"),
]
_SEC = ["create", "-k", HKD, "--no-verify", "--hdr", HDR, "-o", "out", "-q"]


def _ibm(tool: str, *args: str) -> subprocess.CompletedProcess:
    assert IBM is not None
    exe = IBM / f"{tool}-2.43"
    if not exe.exists():
        pytest.skip(f"IBM's {tool} 2.43 not built (tools/ibm_s390_tools.sh --rust ..)")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("text", "status", "says"), CUID_FILES, ids=range(len(CUID_FILES)))
def test_cuid_file_read_as_pvsecret_243(text, status, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("cuid.yaml").write_text(text)
    assert pvsecret_main([*_SEC, "--cuid", "cuid.yaml", "meta"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    if says is None:
        assert Path("out").stat().st_size > 0
    else:
        assert len(err) == 1 and says in err[0], err
    if IBM is not None:
        Path("out").unlink(missing_ok=True)
        assert _ibm("pvsecret", *_SEC, "--cuid", "cuid.yaml", "meta").returncode == status


def test_the_cuid_pvattest_verify_writes_is_read_back(tmp_path, monkeypatch):
    """Both tools' result files (zuv's and IBM's pvattest 2.43 -o) give the CUID they name."""
    from emulator.attest import yamlin

    text = (DATA / "pvattest-2.43-verify.yaml").read_text()
    assert yamlin.cuid_from_yaml(yamlin.load(text)).hex() == "96946bd26935a014be3a2b7c73a420c3"


def _cut(tmp: Path, image: Path, size: int) -> str:
    out = tmp / f"{image.stem}-{size:#x}.se"
    out.write_bytes(image.read_bytes()[:size])
    return str(out)


@pytest.mark.parametrize(("size", "status"), [(0x15000, 0), (0x14280, 0), (0x14010, 1), (0x14000, 1), (0, 1)])
def test_a_cut_image_with_its_header_whole_is_read(size, status, tmp_path, capsys):
    """pvimg 2.43 answered exit 0 for a pvimg image cut after its header (0x14000 + 0x280), 1 with
    'failed to fill whole buffer' for a cut header and 'No Secure Execution header found.' without it."""
    cut = _cut(tmp_path, DATA / "pvimg-2.43.se", size)
    assert pvimg_main(["info", cut, "--format", "json", "-q"]) == status
    out, err = capsys.readouterr()
    if status == 0:
        assert json.loads(out)["data"] == json.loads((DATA / "pvimg-2.43-info.json").read_text())["data"]
    else:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert ("No Secure Execution header found." in err) == (size <= 0x14000), err
    assert pvimg_main(["test", cut, "-k", HKD, "-q"]) == status
    if IBM is not None:
        assert _ibm("pvimg", "info", cut, "-q").returncode == status
        assert _ibm("pvimg", "test", cut, "-k", HKD, "-q").returncode == status


def test_pvattest_verify_and_pvsecret_take_a_cut_image_as_hdr(tmp_path, capsys, monkeypatch):
    cut = _cut(tmp_path, DATA / "genprotimg-2.35.se", 0x14280)
    monkeypatch.chdir(tmp_path)
    verify = ["verify", "-i", str(DATA / "zuv-response-to-pvattest-2.43.bin"), "--hdr", cut,
              "-a", str(DATA / "pvattest-2.43-arpk.bin"), "-q"]  # fmt: skip
    assert pvattest_main(verify) == 0, capsys.readouterr().err
    assert pvsecret_main(["create", "-k", HKD, "--no-verify", "--hdr", cut, "-o", "out", "-q", "meta"]) == 0
    if IBM is not None:
        assert _ibm("pvattest", *verify).returncode == 0


@pytest.mark.parametrize("size", [0, 16, 31, 33])
@pytest.mark.parametrize("option", ["--extension-secret", "--cck"])
def test_extension_secret_and_cck_must_be_32_bytes(option, size, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("key").write_bytes(bytes(size))
    assert pvsecret_main([*_SEC, option, "key", "meta"]) == 1
    what = "extension secret" if option == "--extension-secret" else "CCK"
    assert f"{what} must be exactly 32 bytes long" in capsys.readouterr().err
    Path("key").write_bytes(bytes(range(32)))
    assert pvsecret_main([*_SEC, option, "key", "meta"]) == 0
    if IBM is not None:
        Path("key").write_bytes(bytes(size))
        assert _ibm("pvsecret", *_SEC, option, "key", "meta").returncode == 1


def test_a_long_parmfile_is_taken_without_the_component_check(tmp_path, monkeypatch, capsys):
    from emulator.hypervisor.boot import DEMO_KERNEL
    from emulator.image.pvimg import load_kernel

    monkeypatch.chdir(tmp_path)
    Path("kernel").write_bytes(load_kernel(DEMO_KERNEL.read_bytes())[0])
    Path("parm").write_bytes(b"a" * 5000)
    base = ["create", "-k", HKD, "--no-verify", "-i", "kernel", "-p", "parm", "-o", "out", "-q"]
    assert pvimg_main([*base, "--no-component-check"]) == 0
    assert pvimg_main([*base, "--overwrite"]) == 1  # checked: no Linux kernel, and 5001 > 896
    assert pvimg_main(["create", "-k", HKD, "--no-verify", "-i", str(DEMO_KERNEL), "-p", "parm", "-o", "elf",
                       "-q"]) == 1  # an ELF kernel: the command line is still checked  # fmt: skip
    assert "5001 bytes with its NUL; the kernel accepts 896" in capsys.readouterr().err
    if IBM is not None:
        r = _ibm("pvimg", *base, "--no-component-check", "--overwrite")
        assert r.returncode == 0, r.stderr


# s390-tools' own certificate test assets (rust/pv/tests/assets/cert of a checkout, ZUV_S390_TOOLS_SRC, as
# tools/ibm_s390_tools.sh takes it): RSA signing keys, Armonk names, revoked, expired, outdated and
# wrongly signed CRLs. Each chain through IBM's pvattest 2.43 and zuv's must end alike.
SRC = Path(os.environ["ZUV_S390_TOOLS_SRC"]) if os.environ.get("ZUV_S390_TOOLS_SRC") else None
_C, _L, _R = "ibm.crt,inter_ca.crt", "ibm.crl,inter_ca.crl,root_ca.crl", "root_ca.crt"
_HOSTS = ("host.crt", "host2.crt", "host_rev.crt", "host_armonk.crt", "host_crt_expired.crt",
          "host_invalid_signing_key.crt", "host_uri_na.crt", "der.crt")
_CERTS = ("ibm_armonk.crt,inter_ca.crt", "ibm_expired.crt,inter_ca.crt", "ibm_rev.crt,inter_ca.crt",
          "ibm_wrong_subject.crt,inter_ca.crt", "ibm.chained.crt", "inter_ca.chained.crt,ibm.crt", "ibm.crt",
          "ibm.crt,inter_ca.crt,root_ca.crt")
_CRLS = ("ibm.crl,inter_ca.crl", "inter_ca.crl,root_ca.crl", "ibm_armonk.crl,inter_ca.crl,root_ca.crl",
         "ibm_invalid_hash.crl,inter_ca.crl,root_ca.crl", "ibm_outdated_early.crl,inter_ca.crl,root_ca.crl",
         "ibm_outdated_late.crl,inter_ca.crl,root_ca.crl", "ibm_wrong_issuer.crl,inter_ca.crl,root_ca.crl",
         "ibm.crl,inter_ca.invalid_date.crl,root_ca.crl", "ibm.crl,inter_ca.invalid_signer.crl,root_ca.crl",
         "ibm.crl,inter_ca.crl,root_ca.crl,ibm_outdated_early.crl", "der.crl,inter_ca.crl,root_ca.crl")
ASSET_CHAINS = [
    *[(h, _C, _L, _R) for h in _HOSTS],
    *[(h, c, _L, _R) for h in ("host.crt", "host_armonk.crt") for c in _CERTS],
    *[(h, _C, crl, _R) for h in ("host.crt", "host_rev.crt") for crl in _CRLS],
    *[("host.crt", _C, _L, r) for r in ("fake_root_ca.crt", "inter_ca.crt", "root_ca.chained.crt")],
    ("host_armonk.crt", "ibm_armonk.crt,inter_ca.crt", "ibm_armonk.crl,inter_ca.crl,root_ca.crl", _R),
    ("host.crt", "ibm_armonk.crt,inter_ca.crt", "ibm_armonk.crl,inter_ca.crl,root_ca.crl", _R),
    ("fake_host.crt", "fake_ibm.crt,fake_inter_ca.crt",
     "fake_ibm.crl,fake_inter_ca.crl,fake_root_ca_valid.crl", "fake_root_ca.crt"),
]


@pytest.mark.skipif(IBM is None or SRC is None, reason="needs ZUV_IBM_TOOLS and ZUV_S390_TOOLS_SRC")
def test_live_s390_tools_certificate_assets_verify_as_ibm_pvattest(tmp_path, monkeypatch, capsys):
    assets = SRC / "rust/pv/tests/assets/cert"
    if not (assets / "host.crt").exists():
        pytest.skip(f"no s390-tools certificate assets in {assets}")
    monkeypatch.chdir(assets)
    differ, accepted = [], 0
    for hkd, certs, crls, root in ASSET_CHAINS:
        args = ["create", "-k", hkd, "-C", certs, "--crl", crls, "--root-ca", root, "--offline",
                "-o", str(tmp_path / "r"), "-a", str(tmp_path / "a"), "-q"]  # fmt: skip
        ibm = _ibm("pvattest", *args).returncode
        zuv = pvattest_main(args)
        accepted += ibm == 0
        if ibm != zuv:
            differ.append((hkd, certs, crls, root, ibm, zuv))
    capsys.readouterr()
    assert not differ and accepted >= 10, (differ, accepted)

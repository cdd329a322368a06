"""Images exchanged with IBM's pvimg 2.43 (s390-tools' Rust pvimg), both ways.

``tests/data/ibm`` holds an image IBM's pvimg 2.43 made for zuv-demo's host-key document (verified against
zuv's emulated PKI, with a ramdisk, a parmfile, a CCK, dumping and CCK update allowed), what IBM's
``pvimg info`` printed for it, an image zuv made, and what IBM's ``pvimg info`` printed for that (its README
says how each was made). zuv must boot both, and its ``pvimg info`` must print what IBM's printed, the JSON
document's ``data`` exactly (``meta`` names the host and the time) and the text byte for byte.

With ``ZUV_IBM_TOOLS`` naming the prefix ``tools/ibm_s390_tools.sh --rust --deku .. --darling ..`` built,
the exchange runs live against IBM's binary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from emulator.hypervisor.boot import DEMO_KERNEL, SecureHost, boot
from emulator.image import pvimg as p
from emulator.image.info_schema import INFO_SCHEMA
from emulator.image.pvimg_cli import pvimg_main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/ibm"
IBM_IMAGE = DATA / "pvimg-2.43.se"
ZUV_IMAGE = DATA / "zuv-pvimg.se"
HDR_KEY = DATA / "pvimg-2.43-hdr-key.bin"
MACHINE = ROOT / "firmware/machines/zuv-demo"
HKD = MACHINE / "host-key-document.crt"
OTHER_HKD = ROOT / "firmware/machines/zuv-other/host-key-document.crt"
PKI = MACHINE / "pki"


def _info(capsys, image: Path, *args: str) -> str:
    capsys.readouterr()
    assert pvimg_main(["info", str(image), *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("image", [IBM_IMAGE, ZUV_IMAGE], ids=["ibm-image", "zuv-image"])
def test_both_images_boot_on_zuv(image):
    r = boot(SecureHost("zuv-demo", seed=4), image, time_limit=60)
    assert r.failure is None and r.run.clean, r.failure_text() if r.failure else r.run.describe()
    assert "secret intact: yes" in r.console.decode()


def test_zuv_reads_ibm_pvimg_243_layout():
    img = p.parse_image(IBM_IMAGE.read_bytes())
    assert img.header_addr == 0x14000  # where pvextract-hdr and zuv put it
    # kernel, ramdisk, parmfile and stage3b, in that order, with increasing tweak prefixes
    assert [c.tweak_pref >> 48 for c in img.ipib.components] == [40, 50, 60, 70]
    assert img.ipib.pv_hdr_addr == img.header_addr


def test_zuv_makes_the_parmfile_component_ibm_pvimg_made():
    """IBM's pvimg keeps the parmfile's bytes (its newline too) and adds a NUL: the component in IBM's image,
    decrypted with its image key, is what zuv makes of the same file, padding and all."""
    from firmware.crypto import Secret, aes_xts_decrypt
    from firmware.se_header import decrypt_with_protection_key

    img = p.parse_image(IBM_IMAGE.read_bytes())
    _, secrets = decrypt_with_protection_key(img.header, Secret(HDR_KEY.read_bytes(), "header key"))
    comp = next(c for c in img.ipib.components if c.tweak_pref >> 48 == p.COMP_PARMFILE)
    stored = img.data[comp.addr:comp.addr + 0x1000]
    ibm = aes_xts_decrypt(secrets.xts, p.page_tweak(comp.tweak_pref, 0), stored)
    parm = (DATA / "pvimg-2.43-parmfile.txt").read_bytes()
    assert parm.endswith(b"\n")
    zuv = p.prepare_cmdline(parm, b"")
    assert zuv == parm + b"\0" and ibm == zuv + bytes(0x1000 - len(zuv))
    assert p.prepare_cmdline(b"a\nb\0", b"") == b"a\nb\0" and p.prepare_cmdline(b"", b"") == b"\0"


@pytest.mark.parametrize(("image", "stem"), [(IBM_IMAGE, "pvimg-2.43-info-secrets"),
                                             (ZUV_IMAGE, "pvimg-2.43-info-zuv-image")],
                         ids=["ibm-image", "zuv-image"])  # fmt: skip
def test_zuv_pvimg_info_prints_what_ibm_pvimg_printed(image, stem, capsys):
    """The secrets variant (--hdr-key, --show-secrets) for both images, the plain one for IBM's."""
    key = ["--hdr-key", str(HDR_KEY), "--show-secrets"]
    ibm = json.loads((DATA / f"{stem}.json").read_text())
    zuv = json.loads(_info(capsys, image, "--format", "json:pretty", *key))
    assert zuv["data"] == ibm["data"] and zuv["meta"].keys() == ibm["meta"].keys()
    assert zuv["meta"]["version"] == ibm["meta"]["version"] == "2.43.0"
    assert _info(capsys, image, "--format", "text:full", *key) == (DATA / f"{stem}.txt").read_text()
    for doc in (ibm, zuv):  # zuv's schema describes IBM's document too
        jsonschema.validate(doc, INFO_SCHEMA)
    if image == IBM_IMAGE:
        plain = json.loads((DATA / "pvimg-2.43-info.json").read_text())
        assert json.loads(_info(capsys, image, "--format", "json", "-q"))["data"] == plain["data"]
        assert _info(capsys, image, "--format", "text", "-q") == (DATA / "pvimg-2.43-info.txt").read_text()
        jsonschema.validate(plain, INFO_SCHEMA)


def test_zuv_pvimg_test_on_the_ibm_image(capsys):
    assert pvimg_main(["test", str(IBM_IMAGE), "-k", f"{OTHER_HKD},{HKD}"]) == 0
    assert pvimg_main(["test", str(IBM_IMAGE), "-k", str(OTHER_HKD)]) == 1
    err = capsys.readouterr().err
    assert f" ✓ Host key document '{HKD}' is included" in err and "is not included" in err


# ---------------------------------------------------------------------------------------------------- live

IBM = Path(os.environ["ZUV_IBM_TOOLS"]) if os.environ.get("ZUV_IBM_TOOLS") else None


def _pvimg(*args: str) -> subprocess.CompletedProcess:
    assert IBM is not None
    exe = IBM / "bin" / "pvimg-2.43"
    if not exe.exists():
        pytest.skip("IBM's pvimg 2.43 not built (tools/ibm_s390_tools.sh --rust --deku .. --darling ..)")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(IBM is None, reason="ZUV_IBM_TOOLS not set (tools/ibm_s390_tools.sh builds them)")
def test_live_ibm_pvimg_243_and_zuv_exchange_images(tmp_path, capsys):
    kernel = tmp_path / "kernel"
    kernel.write_bytes(p.load_kernel(DEMO_KERNEL.read_bytes())[0])
    chain = ["-C", f"{PKI / 'ibm-z-signing-key.crt'},{PKI / 'intermediate-ca.crt'}",
             "--crl", f"{PKI / 'ibm-z-signing-key.crl'},{PKI / 'intermediate-ca.crl'},{PKI / 'root-ca.crl'}",
             "--root-ca", str(PKI / "root-ca.crt")]  # fmt: skip
    ibm_img, zuv_img = tmp_path / "ibm.se", tmp_path / "zuv.se"
    r = _pvimg("create", "-k", str(HKD), *chain, "--offline", "-i", str(kernel), "-o", str(ibm_img),
               "--hdr-key", str(HDR_KEY), "--no-component-check")  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = boot(SecureHost("zuv-demo", seed=1), ibm_img, time_limit=60)
    assert res.failure is None and "secret intact: yes" in res.console.decode()
    assert pvimg_main(["create", "-k", str(HKD), *chain, "-i", str(DEMO_KERNEL), "-o", str(zuv_img),
                       "--hdr-key", str(HDR_KEY), "-q"]) == 0  # fmt: skip
    for img in (ibm_img, zuv_img):
        for fmt in ("json", "text:full"):
            for extra in ([], ["--hdr-key", str(HDR_KEY)], ["--hdr-key", str(HDR_KEY), "--show-secrets"]):
                r = _pvimg("info", str(img), "--format", fmt, *extra)
                assert r.returncode == 0, r.stderr
                zuv = _info(capsys, img, "--format", fmt, "-q", *extra)
                if fmt == "json":
                    assert json.loads(zuv)["data"] == json.loads(r.stdout)["data"]
                else:
                    assert zuv == r.stdout
        assert _pvimg("test", str(img), "-k", str(HKD)).returncode == 0
        assert _pvimg("test", str(img), "-k", str(OTHER_HKD)).returncode == 1
    # a cut image: both refuse it with 1
    (tmp_path / "cut.se").write_bytes(zuv_img.read_bytes()[:0x14100])
    assert _pvimg("info", str(tmp_path / "cut.se")).returncode == 1
    assert pvimg_main(["info", str(tmp_path / "cut.se"), "-q"]) == 1

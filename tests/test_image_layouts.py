"""Image layouts of IBM's tools: the SE header at 0x14000 (pvextract-hdr), and genprotimg 2.35's layout."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from emulator.attest.pvattest import pvattest_main
from emulator.hypervisor.boot import DEMO_IMAGE, SecureHost, boot, build_demo_image
from emulator.image import pvimg as p
from emulator.image.pvimg_cli import pvimg_main

ROOT = Path(__file__).resolve().parent.parent


def _pvextract_hdr(data: bytes) -> bytes:
    """What s390-tools' pvextract-hdr does: the header at the first page from 0x14000 with its magic."""
    for off in range(0x14000, len(data), 0x1000):
        if data[off:off + 8] == b"IBMSecEx":
            size = struct.unpack_from(">I", data, off + 12)[0]
            return data[off:off + size]
    raise AssertionError("no SE header from 0x14000 on")


def genprotimg_235_layout(data: bytes) -> bytes:
    """The image as genprotimg 2.35 lays it out: no 'SeImgLnx' metadata, the IPIB at 0x13000 below the
    header at 0x14000 (stage3a's argument block pointing there), nothing after the last component."""
    img = p.parse_image(data)
    out = bytearray(data[:img.ipib_addr])
    out[p.METADATA_ADDRESS:p.METADATA_ADDRESS + p.ImgMetadata.SIZE] = bytes(p.ImgMetadata.SIZE)
    ipib = bytearray(img.ipib.pack())
    struct.pack_into(">I", ipib, 0, 0x1000)  # as the real tool (tests/data/ibm): the page as length,
    struct.pack_into(">Q", ipib, 0x78, 0)  # and no header address (stage3a fills it in)
    out[p.LEGACY_IPIB_ADDRESS:p.LEGACY_IPIB_ADDRESS + len(ipib)] = ipib
    stage3a_len = len((p.bootloader_dir() / "stage3a.bin").read_bytes())
    parms = p.STAGE3A_LOAD_ADDRESS + stage3a_len - 24
    args = (img.header_addr - parms, img.header_size, p.LEGACY_IPIB_ADDRESS - parms)
    struct.pack_into(">QQQ", out, parms, *args)
    return bytes(out)


def test_the_header_is_at_0x14000_where_pvextract_hdr_finds_it():
    data = DEMO_IMAGE.read_bytes()
    img = p.parse_image(data)
    assert img.header_addr == p.SE_HDR_ADDRESS == 0x14000
    assert _pvextract_hdr(data) == img.header
    assert img.ipib.components[0].addr == 0x15000  # the kernel follows the header's page
    assert img.ipib_addr > img.ipib.components[-1].addr  # the IPIB is last, after stage3b
    two = p.parse_image(build_demo_image(("zuv-other", "zuv-demo"), seed="two"))
    assert two.header_addr == 0x14000 and _pvextract_hdr(two.data) == two.header


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("legacy") / "legacy.se"
    path.write_bytes(genprotimg_235_layout(DEMO_IMAGE.read_bytes()))
    return path


def test_a_genprotimg_235_image_parses_and_pvimg_reads_it(legacy, capsys):
    data = legacy.read_bytes()
    img = p.parse_image(data)
    assert data[p.METADATA_ADDRESS:p.METADATA_ADDRESS + 8] != b"SeImgLnx"
    assert (img.header_addr, img.ipib_addr) == (0x14000, 0x13000)
    assert img.ipib.components == p.parse_image(DEMO_IMAGE.read_bytes()).ipib.components
    assert img.ipib.pv_hdr_addr == 0x14000
    assert pvimg_main(["info", str(legacy), "--machine", "zuv-demo", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["verified"] is True
    hkd = ROOT / "firmware/machines/zuv-demo/host-key-document.crt"
    assert pvimg_main(["test", str(legacy), "-k", str(hkd)]) == 0


def test_a_genprotimg_235_image_boots(legacy):
    r = boot(SecureHost("zuv-demo", seed=7), legacy, time_limit=60)
    assert r.failure is None and r.run.clean, r.failure_text() if r.failure else r.run.describe()
    assert "secret intact: yes" in r.console.decode()


def test_pvattest_takes_the_header_of_a_genprotimg_235_image(legacy, tmp_path, capsys):
    hkd = ROOT / "firmware/machines/zuv-demo/host-key-document.crt"
    rc = pvattest_main(["create", "-k", str(hkd), "--no-verify", "-o", str(tmp_path / "req"),
                        "--arpk", str(tmp_path / "arpk")])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rc = pvattest_main(["perform", "-i", str(tmp_path / "req"), "-o", str(tmp_path / "resp"),
                        "--image", str(legacy)])
    assert rc == 0, capsys.readouterr().err
    rc = pvattest_main(["verify", "-i", str(tmp_path / "resp"), "--hdr", str(legacy),
                        "-a", str(tmp_path / "arpk")])
    assert rc == 0, capsys.readouterr().err


def test_a_cut_image_without_metadata_or_legacy_ipib_is_still_refused(tmp_path):
    cut = tmp_path / "cut.se"
    data = bytearray(DEMO_IMAGE.read_bytes()[:0x13040])  # stage3a's PSW, then the metadata wiped below
    data[p.METADATA_ADDRESS:p.METADATA_ADDRESS + 8] = bytes(8)
    cut.write_bytes(bytes(data))
    with pytest.raises(p.ImageError, match="genprotimg 2.35's IPL parameter block"):
        p.check_layout(cut)

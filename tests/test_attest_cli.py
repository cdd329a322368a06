"""Round trips through the pvattest and pvsecret tools (zuv pvattest / zuv pvsecret), with their exit
codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.attest.local import LocalSecureGuest
from emulator.attest.pvattest import pvattest_main
from emulator.attest.pvsecret import pvsecret_main
from emulator.cli import main as zuv_main
from firmware import attestation as A
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "guests" / "images" / "attest_demo.se"
OTHER_IMAGE = REPO / "guests" / "images" / "secure_demo.se"
M = MachineIdentity.bundled_dir("zuv-demo")
CERTS = ["-C", str(M / "pki" / "ibm-z-signing-key.crt"), "-C", str(M / "pki" / "intermediate-ca.crt"),
         "--crl", str(M / "pki" / "ibm-z-signing-key.crl"), "--crl", str(M / "pki" / "intermediate-ca.crl"),
         "--crl", str(M / "pki" / "root-ca.crl")]  # fmt: skip
HKD = ["-k", str(M / "host-key-document.crt")]


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    (tmp_path / "user").write_bytes(b"lab user data")
    return tmp_path


def create(d: Path, *extra: str) -> int:
    return pvattest_main(
        ["create", *HKD, *CERTS, "-o", str(d / "req"), "-a", str(d / "arpk"), "--seed", "cli", *extra]
    )


def test_create_perform_verify_round_trip(files: Path) -> None:
    d = files
    assert (
        create(d, "--add-data", "phkh-img", "--add-data", "phkh-att", "--add-data", "secret-store-hash") == 0
    )
    ex = A.parse_exchange((d / "req").read_bytes())
    assert not ex.is_response and ex.exp_measurement == 64 and ex.exp_additional == 32 + 32 + 64
    assert len((d / "arpk").read_bytes()) == 32
    assert pvattest_main(["perform", "-i", str(d / "req"), "-o", str(d / "resp"), "--image", str(IMAGE),
                          "-u", str(d / "user"), "--evidence", str(d / "ev"),
                          "--seed", "5"]) == 0  # fmt: skip
    resp = A.parse_exchange((d / "resp").read_bytes())
    assert resp.is_response and resp.user == b"lab user data" and len(resp.additional or b"") == 128
    common = ["-i", str(d / "resp"), "-a", str(d / "arpk"), "-o", str(d / "result.yaml")]
    assert pvattest_main(["verify", *common, "--hdr", str(IMAGE)]) == 0
    text = (d / "result.yaml").read_text()
    # as serde_yaml writes it (pvattest 2.43 verified): a hex string that fits 128 bits (the CUID) is quoted,
    # a longer one (the 64-byte secret-store hash) is not
    assert f"cuid: '0x{resp.cuid.hex()}'" in text and "secret_store_hash: 0x" in text  # type: ignore[union-attr]
    assert pvattest_main(["verify", *common, "--hdr", str(IMAGE), "--evidence", str(d / "ev"),
                          "-u", str(d / "user.out")]) == 0  # fmt: skip
    assert (d / "user.out").read_bytes() == b"lab user data"
    # the same response against another image: exit 2, as pvattest
    assert pvattest_main(["verify", *common, "--hdr", str(OTHER_IMAGE)]) == 2
    assert pvattest_main(["verify", *common, "--hdr", str(OTHER_IMAGE), "--evidence", str(d / "ev")]) == 2
    # zuv's front door runs the same tool
    assert zuv_main(["pvattest", "verify", *common, "--hdr", str(IMAGE)]) == 0


def test_verify_errors_exit_1_and_mismatch_exit_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = files
    assert create(d) == 0
    assert pvattest_main(["perform", "-i", str(d / "req"), "-o", str(d / "resp"), "--image", str(IMAGE)]) == 0
    (d / "bad").write_bytes(b"\x01" * 32)
    assert pvattest_main(["verify", "-i", str(d / "resp"), "--hdr", str(IMAGE), "-a", str(d / "bad")]) == 1
    assert "wrong ARPK" in capsys.readouterr().err
    raw = bytearray((d / "resp").read_bytes())
    raw[-20] ^= 1  # inside the CUID
    (d / "tampered").write_bytes(bytes(raw))
    assert (
        pvattest_main(["verify", "-i", str(d / "tampered"), "--hdr", str(IMAGE), "-a", str(d / "arpk")]) == 2
    )
    assert "measurement" in capsys.readouterr().err
    assert pvattest_main(["verify", "-i", str(d / "req"), "--hdr", str(IMAGE), "-a", str(d / "arpk")]) == 1
    assert (
        pvattest_main(["verify", "-i", str(d / "nothing"), "--hdr", str(IMAGE), "-a", str(d / "arpk")]) == 1
    )
    # usage: 1, as s390-tools 2.43 (print_cli_error)
    assert pvattest_main(["verify", "--hdr", str(IMAGE)]) == 1


def test_create_checks_host_key_documents(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = files
    assert pvattest_main(["create", *HKD, "-o", str(d / "r"), "-a", str(d / "a")]) == 1  # no --cert
    assert create(d, "--time", "2045-01-01") == 1
    assert "expired" in capsys.readouterr().err
    assert pvattest_main(["create", *HKD, "--no-verify", "-o", str(d / "r"), "-a", str(d / "a")]) == 0
    assert "verification is disabled" in capsys.readouterr().err


def test_pvsecret_round_trip_bound_to_the_attested_instance(files: Path) -> None:
    d = files
    g = LocalSecureGuest("zuv-demo", IMAGE.read_bytes(), seed=9)
    (d / "result.yaml").write_text(f"cuid: '0x{g.cuid.hex()}'\n")  # as pvattest verify -o writes it
    (d / "aes").write_bytes(b"A" * 32)
    key = ec.generate_private_key(ec.SECP256R1())
    (d / "ec.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (d / "note").write_bytes(b"a plaintext secret")
    base = ["create", *HKD, *CERTS, "--hdr", str(IMAGE), "--seed", "s"]
    assert pvsecret_main([*base, "-o", str(d / "r1"), "--cuid", str(d / "result.yaml"),
                          "retrievable", "disk", "--secret", str(d / "aes"),
                          "--type", "aes"]) == 0  # fmt: skip
    assert (
        pvsecret_main(
            [*base, "-o", str(d / "r2"), "retr", "ec", "--secret", str(d / "ec.pem"), "--type", "ec"]
        )
        == 0
    )
    assert pvsecret_main([*base, "-o", str(d / "r3"), "retrievable", "note", "--secret", str(d / "note"),
                          "--type", "plain"]) == 0  # fmt: skip
    assert (
        pvsecret_main(
            [*base, "-o", str(d / "r4"), "--cuid-hex", "00" * 16, "--flags", "disable-dump", "meta"]
        )
        == 0
    )
    assert pvsecret_main([*base, "-o", str(d / "r5"), "--cuid-hex", "11" * 16, "meta"]) == 0
    assert A.parse_asrcb((d / "r1").read_bytes()).cuid == g.cuid
    for i, name in enumerate(("r1", "r2", "r3", "r4")):
        blk = g.uvc("add_secret", addr=g.put((d / name).read_bytes()))
        assert blk.header.rc == 0x0001, name
    blk = g.uvc("add_secret", addr=g.put((d / "r5").read_bytes()))
    assert (blk.header.rc, blk.header.rrc) == (0x0101, 0x0002)  # another instance's request
    buf = g.alloc(8192)
    values = {}
    for idx in range(3):
        assert g.uvc("retr_secret", secret_idx=idx, buf_size=8192, buf_addr=buf).header.rc == 0x0001
        values[idx] = g.read(buf, 80)
    assert values[0][:32] == b"A" * 32
    assert values[1][:32] == key.private_numbers().private_value.to_bytes(32, "big")
    assert A.plaintext_from_secret(values[2]) == b"a plaintext secret"
    assert g.uv.secure_config(g.setup.handle).dump_disabled


def test_pvsecret_errors_and_info(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = files
    (d / "short").write_bytes(b"x" * 20)
    base = ["create", *HKD, *CERTS, "--hdr", str(IMAGE)]
    assert (
        pvsecret_main(
            [*base, "-o", str(d / "r"), "retrievable", "k", "--secret", str(d / "short"), "--type", "aes"]
        )
        == 1
    )
    assert "an aes key must be 16 or 24 or 32 bytes, not 20" in capsys.readouterr().err
    (d / "junk").write_bytes(b"x" * 2000)
    assert pvsecret_main(["add", str(d / "junk"), "--guest", str(d / "g.json")]) == 1
    err = capsys.readouterr().err  # said "the input is not an add-secret request: not an add-secret request"
    assert err.count("not an add-secret request") == 1 and len(err.strip().splitlines()) == 1, err
    assert pvsecret_main([*base, "-o", str(d / "r"), "--cuid-hex", "1234", "meta"]) == 1
    assert pvsecret_main([*base, "-o", str(d / "r"), "association", "apqn", "--stdout",
                          "--output-secret", str(d / "assoc")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    # as pvsecret 2.43 prints it
    assert out == f"!Association\nname: apqn\nid: 0x{A.secret_id('apqn').hex()}\n\n"
    assert len((d / "assoc").read_bytes()) == 32 and not (d / "apqn.yaml").exists()
    assert pvsecret_main([*base, "-o", str(d / "r6"), "retrievable", "my key", "--secret", str(d / "short"),
                          "--type", "plain"]) == 0  # fmt: skip
    info = (d / "my_key.yaml").read_text()  # NAME.yaml beside the request, blanks as '_', as pvsecret
    assert info == f"!Retrievable\nkind: 3 (PLAINTEXT)\nname: my key\nid: 0x{A.secret_id('my key').hex()}\n"
    assert "my_key.yaml" in capsys.readouterr().err
    assert pvsecret_main(["info", str(d / "r")]) == 0
    assert "association, 32 bytes" in capsys.readouterr().out
    assert pvsecret_main(["info", str(IMAGE)]) == 1
    assert zuv_main(["pvsecret", "bogus"]) == 1  # usage errors: 1, as s390-tools 2.43 (print_cli_error)


# what IBM's pvsecret 2.43 wrote for `create -o out retrievable NAME` (Rust's set_extension replaces the
# name's own extension)
IBM_SECRET_INFO_NAMES = {"my.key": "my.yaml", "a.tar.gz": "a.tar.yaml", ".hidden": ".hidden.yaml",
                         "x.": "x.yaml", "sp ace.v1": "sp_ace.yaml", "ibm key": "ibm_key.yaml"}  # fmt: skip


@pytest.mark.parametrize(("name", "written"), sorted(IBM_SECRET_INFO_NAMES.items()))
def test_pvsecret_create_names_the_secret_info_file_as_ibm(tmp_path: Path, name: str, written: str) -> None:
    (tmp_path / "s").write_bytes(b"secret")
    hdr = str(REPO / "tests/data/ibm/genprotimg-2.35.hdr")
    args = ["create", *HKD, "--no-verify", "--hdr", hdr, "-o", str(tmp_path / "out"), "-q",
            "retrievable", name, "--secret", str(tmp_path / "s"), "--type", "plain"]  # fmt: skip
    assert pvsecret_main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", "s", written])
    assert (tmp_path / written).read_text().startswith("!Retrievable\nkind: 3 (PLAINTEXT)\nname: ")

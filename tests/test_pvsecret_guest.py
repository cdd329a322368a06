"""pvsecret add/list/lock/retrieve on a booted secure guest (zuv's guest file), and pvattest perform
--guest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from emulator.attest.pvattest import pvattest_main
from emulator.attest.pvsecret import pvsecret_main
from firmware import attestation as A
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "guests" / "images" / "attest_demo.se"
M = MachineIdentity.bundled_dir("zuv-demo")
HKD = str(M / "host-key-document.crt")
BASE = ["create", "-k", HKD, "--pki", str(M / "pki"), "--hdr", str(IMAGE)]


@pytest.fixture()
def reqs(tmp_path: Path) -> Path:
    d = tmp_path
    (d / "aes").write_bytes(bytes(range(32)))
    (d / "note").write_bytes(b"open sesame")
    assert pvsecret_main([*BASE, "-o", str(d / "r_aes"), "retrievable", "disk key",
                          "--secret", str(d / "aes"), "--type", "aes"]) == 0  # fmt: skip
    assert pvsecret_main([*BASE, "-o", str(d / "r_note"), "retr", "note", "--secret", str(d / "note"),
                          "--type", "plain", "--stdout"]) == 0  # fmt: skip
    assert pvsecret_main([*BASE, "-o", str(d / "r_assoc"), "association", "apqn", "--stdout"]) == 0
    return d


def test_add_list_retrieve_lock_then_attest_the_store(reqs: Path, capsysbinary) -> None:
    capsys = capsysbinary
    d = reqs
    g = ["--guest", str(d / "guest.json")]
    assert pvsecret_main(["add", str(d / "r_aes"), *g, "--image", str(IMAGE), "--seed", "4"]) == 0
    assert b"Successfully added the secret" in capsys.readouterr().err
    assert pvsecret_main(["add", "-i", str(d / "r_note"), *g]) == 0
    assert pvsecret_main(["add", str(d / "r_assoc"), *g]) == 0
    # the same ID again: refused before the UV is asked (pvsecret's duplicate check)
    assert pvsecret_main(["add", str(d / "r_aes"), *g]) == 1
    assert b"duplicated IDs" in capsys.readouterr().err
    capsysbinary.readouterr()
    assert pvsecret_main(["list", *g]) == 0
    sid = A.secret_id("disk key")
    assert capsysbinary.readouterr().out.decode() == (
        "Total number of secrets: 3\n\n"
        f"0 AES-256-KEY:\n 0x{sid.hex()}\n"
        f"1 PLAINTEXT:\n 0x{A.secret_id('note').hex()}\n"
        f"2 Association:\n 0x{A.secret_id('apqn').hex()}\n"
    )
    assert pvsecret_main(["list", *g, "--format", "yaml", str(d / "list.yaml")]) == 0
    # serde_yaml quotes no 256-bit hex
    assert (d / "list.yaml").read_text().startswith(
        f"total_num_secrets: 3\nsecrets:\n- index: 0\n  stype: 6\n  len: 32\n  id: 0x{sid.hex()}\n"
    )
    assert pvsecret_main(["list", *g, "--format", "bin", "-o", str(d / "list.bin")]) == 0
    raw = (d / "list.bin").read_bytes()
    assert len(raw) == 16 + 3 * 0x30 and raw[:4] == b"\x00\x03\x00\x03" and raw[16 + 16:16 + 48] == sid
    # retrieve by the NAME.yaml create wrote, by hex, by name, by index; PEM as pvsecret writes it
    assert pvsecret_main(["retrieve", *g, str(d / "disk_key.yaml"), str(d / "k.pem")]) == 0
    b64 = base64.b64encode(bytes(range(32))).decode()
    assert (d / "k.pem").read_text() == (
        f"-----BEGIN IBM PROTECTED KEY-----\nkind: AES-256-KEY\n\n{b64}\n-----END IBM PROTECTED KEY-----\n"
    )
    assert pvsecret_main(["retr", *g, "--inform", "hex", "0x" + sid.hex(), "--outform", "bin", "-o",
                          str(d / "k.bin")]) == 0  # fmt: skip
    assert (d / "k.bin").read_bytes() == bytes(range(32))
    capsysbinary.readouterr()
    assert pvsecret_main(["retrieve", *g, "--inform", "name", "note"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out == f"-----BEGIN PLAINTEXT SECRET-----\n{base64.b64encode(b'open sesame').decode()}\n" \
                  "-----END PLAINTEXT SECRET-----\n"  # fmt: skip
    assert pvsecret_main(["retrieve", *g, "--inform", "idx", "1", "--outform", "bin"]) == 0
    assert capsysbinary.readouterr().out == b"open sesame"
    # an association secret is not retrievable: the UV says so
    assert pvsecret_main(["retrieve", *g, "--inform", "idx", "2"]) == 1
    assert "0x0111" in capsysbinary.readouterr().err.decode()
    assert pvsecret_main(["retrieve", *g, "--inform", "idx", "9"]) == 1
    assert pvsecret_main(["lock", *g]) == 0
    assert pvsecret_main(["add", str(d / "r_note"), *g, "--force"]) == 1  # locked: the UV refuses (0x0102)
    assert b"0x0102" in capsys.readouterr().err
    # attest the guest: its secret-store hash covers the three requests and the lock, as pvattest check sees
    assert pvattest_main(["create", "-k", HKD, "--pki", str(M / "pki"), "-o", str(d / "areq"),
                          "-a", str(d / "arpk"), "--add-data", "secret-store-hash"]) == 0  # fmt: skip
    assert pvattest_main(["perform", str(d / "areq"), str(d / "aresp"), *g]) == 0
    assert pvattest_main(["verify", "-i", str(d / "aresp"), "--hdr", str(IMAGE), "-a", str(d / "arpk")]) == 0
    secrets = f"{d / 'r_aes'},{d / 'r_note'},{d / 'r_assoc'}"
    assert pvattest_main(["check", str(d / "aresp"), str(d / "c.yaml"), "--secret", secrets,
                          "--secret-store-locked", "true"]) == 0  # fmt: skip
    assert pvattest_main(["check", str(d / "aresp"), str(d / "c.yaml"), "--secret", secrets,
                          "--secret-store-locked", "false"]) == 2  # fmt: skip
    doc = json.loads((d / "guest.json").read_text())
    assert [c["uvc"] for c in doc["calls"]] == ["add_secret"] * 3 + ["lock_secrets"]
    assert doc["cuid"] == "0x" + A.parse_exchange((d / "aresp").read_bytes()).cuid.hex()  # the same instance


def test_guest_file_errors_are_one_line_exit_1(reqs: Path, tmp_path: Path, capsys) -> None:
    d = reqs
    g = ["--guest", str(d / "g.json")]
    for args in (["list", *g],  # no such file and no --image
                 ["list", *g, "--image", str(d / "aes")],  # not an SE image
                 ["add", str(d / "aes"), *g, "--image", str(IMAGE)]):  # not a request
        assert pvsecret_main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("pvsecret: error: ") and err.count("\n") == 1, err
    assert pvsecret_main(["lock", *g, "--image", str(IMAGE)]) == 0
    assert pvsecret_main(["lock", *g, "--image", str(IMAGE)]) == 1  # exists: --image boots a new one
    (d / "bad.json").write_text('{"format": "zuv secure guest v1", "calls": 3}')
    assert pvsecret_main(["list", "--guest", str(d / "bad.json")]) == 1
    assert "damaged" in capsys.readouterr().err
    # a request for another instance is refused by the UV and not recorded
    assert pvsecret_main([*BASE, "-o", str(d / "other"), "--cuid-hex", "11" * 16, "meta"]) == 0
    assert pvsecret_main(["add", str(d / "other"), "--guest", str(d / "h.json"), "--image", str(IMAGE)]) == 1
    assert "0x0101" in capsys.readouterr().err
    assert pvsecret_main(["list", "--guest", str(d / "h.json")]) == 0
    assert json.loads((d / "h.json").read_text())["calls"] == []
    assert pvsecret_main(["list", "--guest", str(d / "h.json"), "--seed", "3"]) == 1  # --seed needs --image


def test_force_adds_a_second_secret_with_the_same_id(reqs: Path, capsys) -> None:
    """pvsecret refuses a known ID in the tool; --force sends it, and the Ultravisor stores it beside the
    first (a second index), as s390-tools' retrieve expects ("no guarantees on which" is retrieved)."""
    d = reqs
    g = ["--guest", str(d / "dup.json")]
    (d / "aes2").write_bytes(bytes(range(64, 96)))
    assert pvsecret_main([*BASE, "-o", str(d / "r_aes2"), "retrievable", "disk key",
                          "--secret", str(d / "aes2"), "--type", "aes"]) == 0  # fmt: skip
    assert pvsecret_main(["add", str(d / "r_aes"), *g, "--image", str(IMAGE)]) == 0
    assert pvsecret_main(["add", str(d / "r_aes2"), *g]) == 1
    assert pvsecret_main(["add", str(d / "r_aes2"), *g, "--force"]) == 0
    assert "'--force' specified" in capsys.readouterr().err
    assert pvsecret_main(["list", *g, "--format", "yaml", str(d / "l.yaml")]) == 0
    assert (d / "l.yaml").read_text().count("- index:") == 2
    assert pvsecret_main(["retrieve", *g, str(d / "disk_key.yaml"), str(d / "k"), "--outform", "bin"]) == 0
    assert (d / "k").read_bytes() == bytes(range(32))  # the first of them
    assert "multiple secrets" in capsys.readouterr().err
    assert pvsecret_main(["retrieve", *g, "--inform", "idx", "1", str(d / "k"), "--outform", "bin"]) == 0
    assert (d / "k").read_bytes() == bytes(range(64, 96))

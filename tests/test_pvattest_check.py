"""pvattest check (s390-tools 2.43's policy check of an attestation result) and pvattest's command line
rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.attest.local import LocalSecureGuest
from emulator.attest.pvattest import pvattest_main
from emulator.attest.pvsecret import pvsecret_main
from firmware import attestation as A
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "guests" / "images" / "attest_demo.se"
M = MachineIdentity.bundled_dir("zuv-demo")
OTHER = MachineIdentity.bundled_dir("zuv-other") / "host-key-document.crt"
HKD = str(M / "host-key-document.crt")
CHAIN = ["-C", f"{M / 'pki' / 'ibm-z-signing-key.crt'},{M / 'pki' / 'intermediate-ca.crt'}",
         "--crl", f"{M / 'pki' / 'ibm-z-signing-key.crl'},{M / 'pki' / 'intermediate-ca.crl'}",
         "--crl", str(M / "pki" / "root-ca.crl")]  # fmt: skip


@pytest.fixture(scope="module")
def attested(tmp_path_factory) -> Path:
    """A guest that added two secrets and locked its store, attested with every additional-data item."""
    d = tmp_path_factory.mktemp("check")
    (d / "user").write_bytes(b"check me")
    (d / "aes").write_bytes(bytes(range(32)))
    assert pvattest_main(["create", "-k", HKD, *CHAIN, "-o", str(d / "req"), "-a", str(d / "arpk"),
                          "--add-data", "phkh-img,phkh-att",
                          "--add-data", "secret-store-hash,firmware-state"]) == 0  # fmt: skip
    base = ["create", "-k", HKD, *CHAIN, "--hdr", str(IMAGE)]
    assert pvsecret_main([*base, "-o", str(d / "s1"), "retrievable", "k1", "--secret", str(d / "aes"),
                          "--type", "aes", "--stdout"]) == 0  # fmt: skip
    assert pvsecret_main([*base, "-o", str(d / "s2"), "association", "a1", "--stdout"]) == 0
    g = LocalSecureGuest("zuv-demo", IMAGE.read_bytes(), seed=3)
    for name in ("s1", "s2"):
        assert g.uvc("add_secret", addr=g.put((d / name).read_bytes())).header.rc == 0x0001
    assert g.uvc("lock_secrets").header.rc == 0x0001
    resp, _ = g.attest(A.parse_exchange((d / "req").read_bytes()), b"check me")
    (d / "resp").write_bytes(resp)
    assert pvattest_main(["verify", "-i", str(d / "resp"), "--hdr", str(IMAGE), "-a", str(d / "arpk")]) == 0
    return d


def test_check_passes_every_policy_and_writes_pvattests_yaml(attested: Path, capsys) -> None:
    d = attested
    out = d / "ok.yaml"
    rc = pvattest_main(["check", str(d / "resp"), str(out), "-k", f"{HKD},{OTHER}",
                        "--host-key-check", "att-key-hash,boot-key-hash", "-u", str(d / "user"),
                        "--secret", f"{d / 's1'},{d / 's2'}", "--secret-store-locked", "true",
                        "--firmware"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "fulfills all policies" in capsys.readouterr().err
    assert out.read_text() == (
        "successful: true\n"
        f"image_host_key:\n  check_enforced: true\n  hash: {HKD}\n"
        f"attest_host_key:\n  check_enforced: true\n  hash: {HKD}\n"
        f"user_data: '0x{b'check me'.hex()}'\n"
        f"secret_store:\n  add_secret_requests:\n  - {d / 's1'}\n  - {d / 's2'}\n  locked: true\n"
        "valid_firmware: true\n"
    )
    # no policy asked for: successful, nothing else (the host-key entries stay hidden when not enforced and
    # nothing matched; -i/-o work as the positionals do)
    assert pvattest_main(["check", "-i", str(d / "resp"), "-o", str(out)]) == 0
    assert out.read_text() == "successful: true\n"


@pytest.mark.parametrize(
    ("args", "issue"),
    [
        (["-k", "OTHER"], "No given host-key document matches the given image public host-key hash"),
        (
            ["-k", "HKD,HKD"],
            "More than one given host-key document matches the given image public host-key hash",
        ),
        (
            ["-u", "WRONG"],
            "The Provided user data does not match the user data from the attestation response.",
        ),
        (
            ["--secret", "S2,S1", "--secret-store-locked", "true"],
            "The calculated secret-store-hash does not match with the provided hash",
        ),
        (
            ["--secret", "S1,S2", "--secret-store-locked", "false"],
            "The calculated secret-store-hash does not match with the provided hash",
        ),
    ],
)
def test_check_names_the_policy_that_fails_exit_2(
    attested: Path, capsys, args: list[str], issue: str
) -> None:
    d = attested
    (d / "wrong").write_bytes(b"not me")
    subst = {"OTHER": str(OTHER), "HKD,HKD": f"{HKD},{HKD}", "WRONG": str(d / "wrong"),
             "S1,S2": f"{d / 's1'},{d / 's2'}", "S2,S1": f"{d / 's2'},{d / 's1'}"}  # fmt: skip
    out = d / "fail.yaml"
    assert pvattest_main(["check", str(d / "resp"), str(out), *[subst.get(x, x) for x in args]]) == 2
    assert issue in capsys.readouterr().err
    text = out.read_text()
    assert text.startswith("successful: false\nissues:\n- ") and issue in text


def test_check_enforced_items_missing_from_the_response(tmp_path: Path, capsys) -> None:
    d = tmp_path
    assert (
        pvattest_main(["create", "-k", HKD, "--no-verify", "-o", str(d / "req"), "-a", str(d / "arpk")]) == 0
    )
    assert pvattest_main(["perform", str(d / "req"), str(d / "resp"), "--image", str(IMAGE)]) == 0
    args = ["check", str(d / "resp"), str(d / "out"), "-k", HKD]
    assert pvattest_main(args) == 0  # not enforced: a missing hash is no failure
    assert pvattest_main([*args, "--host-key-check", "boot-key-hash"]) == 2
    assert (
        "does not contain an image public host-key hash, but checking was enabled" in capsys.readouterr().err
    )
    assert pvattest_main(["check", str(d / "resp"), str(d / "out"), "--secret-store-locked", "false"]) == 2
    assert pvattest_main(["check", str(d / "resp"), str(d / "out"), "--firmware"]) == 2
    assert "valid_firmware: false" in (d / "out").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["check", "IN"],  # no output
        ["check", "-i", "IN", "IN", "OUT"],  # -i and IN
        ["check", "IN", "OUT", "--host-key-check", "att-key-hash"],  # requires -k
        ["check", "IN", "OUT", "--secret", "X"],  # requires --secret-store-locked
        ["check", "IN", "OUT", "--secret-store-locked", "yes"],  # clap's bool: true or false
        ["check", "IN", "OUT", "--fw-ver", "2"],  # requires --firmware
        ["create", "-k", "H", "-o", "o", "-a", "a"],  # neither --no-verify nor --cert
        ["create", "-k", "H", "--no-verify", "--crl", "c", "-o", "o", "-a", "a"],  # --crl requires --cert
        ["create", "-k", "H", "--no-verify", "-o", "o", "-a", "a", "--add-data", "phkh-img,bogus"],
        ["create", "-k", "H", "--no-verify", "-o", "o", "-o", "p", "-a", "a"],  # single value twice
        ["perform", "IN"],
        [],
    ],
)
def test_usage_errors_exit_1_as_s390_tools(args: list[str], capsys) -> None:
    assert pvattest_main(args) == 1
    err = capsys.readouterr().err
    # --no-verify's warning comes first, as s390-tools warns before reading the documents
    err = err.removeprefix("Host-key document verification is disabled. The attestation request may not be "
                           "protected.\n")  # fmt: skip
    assert err.startswith("pvattest: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_version_and_help(capsys) -> None:
    assert pvattest_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pvattest version 2.43.0")
    assert pvattest_main(["check", "--help"]) == 0
    assert "--secret-store-locked" in capsys.readouterr().out


def test_check_bad_input_one_line_exit_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "junk").write_bytes(b"pvattest" + bytes(20))
    for target in ("junk", "missing"):
        assert pvattest_main(["check", str(tmp_path / target), str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("pvattest: error: ") and err.count("\n") == 1

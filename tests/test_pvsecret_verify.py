"""pvsecret create --user-data/--user-sign-key and pvsecret verify (s390-tools 2.43's user-data types 0-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from emulator.attest.local import LocalSecureGuest
from emulator.attest.pvsecret import pvsecret_main
from firmware import asrcb
from firmware import attestation as A
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "guests" / "images" / "attest_demo.se"
M = MachineIdentity.bundled_dir("zuv-demo")
BASE = ["create", "-k", str(M / "host-key-document.crt"), "--pki", str(M / "pki"), "--hdr", str(IMAGE)]


def _key_and_cert(d: Path, name: str, key) -> tuple[Path, Path]:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    import datetime as dt

    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA512()))  # fmt: skip
    kp, cp = d / f"{name}.key", d / f"{name}.crt"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))  # fmt: skip
    cp.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM if name != "rsa3072" else serialization.Encoding.DER)
    )
    return kp, cp


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("keys")
    return {
        "ec": _key_and_cert(d, "ec", ec.generate_private_key(ec.SECP521R1())),
        "rsa2048": _key_and_cert(d, "rsa2048", rsa.generate_private_key(65537, 2048)),
        "rsa3072": _key_and_cert(d, "rsa3072", rsa.generate_private_key(65537, 3072)),
        "p256": _key_and_cert(d, "p256", ec.generate_private_key(ec.SECP256R1())),
    }


@pytest.mark.parametrize(
    ("kind", "utype", "size"), [("ec", 2, 256), ("rsa2048", 3, 256), ("rsa3072", 4, 128)]
)
def test_signed_user_data_verifies_and_the_guest_adds_the_request(tmp_path, keys, capsys, kind, utype, size):
    d = tmp_path
    (d / "ud").write_bytes(b"signed by the owner")
    req = d / "req"
    assert pvsecret_main([*BASE, "-o", str(req), "--user-data", str(d / "ud"),
                          "--user-sign-key", str(keys[kind][0]), "meta"]) == 0  # fmt: skip
    data = req.read_bytes()
    assert data[6:8] == utype.to_bytes(2, "big")
    assert pvsecret_main(["verify", str(req), str(d / "out"), "--user-cert", str(keys[kind][1])]) == 0
    assert (d / "out").read_bytes() == b"signed by the owner".ljust(size, b"\0")
    assert "Successfully verified the request." in capsys.readouterr().err
    # the signature is authenticated by the request's tag: the Ultravisor takes the request
    g = LocalSecureGuest("zuv-demo", IMAGE.read_bytes(), seed=1)
    assert g.uvc("add_secret", addr=g.put(data)).header.rc == 0x0001
    # a changed signature byte: verify fails (exit 1), and the Ultravisor refuses it (tag)
    bad = bytearray(data)
    bad[asrcb.ASRCB_USER_DATA_OFFSET + size + 3] ^= 1
    (d / "bad").write_bytes(bytes(bad))
    assert pvsecret_main(["verify", "-i", str(d / "bad"), "--user-cert", str(keys[kind][1])]) == 1
    assert "does not verify" in capsys.readouterr().err
    assert g.uvc("add_secret", addr=g.put(bytes(bad))).header.rc == 0x0108
    # signed data without a certificate, or with the other kind of key: exit 1, one line
    assert pvsecret_main(["verify", str(req)]) == 1
    other = "rsa2048" if kind == "ec" else "ec"
    assert pvsecret_main(["verify", str(req), "--user-cert", str(keys[other][1])]) == 1
    err = capsys.readouterr().err
    assert "--user-cert" in err and "does not fit" in err


def test_unsigned_and_null_user_data(tmp_path, keys, capsysbinary):
    d = tmp_path
    (d / "ud").write_bytes(b"x" * 300)
    assert pvsecret_main([*BASE, "-o", str(d / "r1"), "--user-data", str(d / "ud"), "meta"]) == 0
    assert pvsecret_main(["verify", str(d / "r1")]) == 0
    assert capsysbinary.readouterr().out == b"x" * 300 + bytes(212)  # to stdout, all 512 bytes
    assert pvsecret_main(["verify", str(d / "r1"), "--user-cert", str(keys["ec"][1])]) == 1
    assert pvsecret_main([*BASE, "-o", str(d / "r0"), "meta"]) == 0
    assert pvsecret_main(["verify", str(d / "r0"), str(d / "none")]) == 0
    assert not (d / "none").exists()  # no user data, nothing written
    # 300 > 256 signed
    assert pvsecret_main([*BASE, "-o", str(d / "r2"), "--user-data", str(d / "ud"),
                          "--user-sign-key", str(keys["ec"][0]), "meta"]) == 1  # fmt: skip
    # P-256 cannot sign
    assert pvsecret_main([*BASE, "-o", str(d / "r2"), "--user-data", str(d / "ud"),
                          "--user-sign-key", str(keys["p256"][0]), "meta"]) == 1  # fmt: skip


@pytest.mark.parametrize("cut", [0, 7, 0x30, 0x300, -17])
def test_verify_refuses_what_is_not_a_request_exit_1(tmp_path, capsys, cut):
    d = tmp_path
    assert pvsecret_main([*BASE, "-o", str(d / "r"), "meta"]) == 0
    data = (d / "r").read_bytes()
    (d / "cut").write_bytes(data[:cut] if cut else b"pvattest" + data[8:])
    capsys.readouterr()
    assert pvsecret_main(["verify", str(d / "cut")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pvsecret: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["verify", "-i", "a", "b"],
        ["verify", "a", "-o", "x", "y"],
        ["create", "-k", "h", "--hdr", "i", "-o", "o", "meta"],  # neither --no-verify nor --cert
        [
            "create",
            "-k",
            "h",
            "--no-verify",
            "--hdr",
            "i",
            "-o",
            "o",
            "--flags",
            "disable-dump,bogus",
            "meta",
        ],
        ["create", "-k", "h", "--no-verify", "--hdr", "i", "-o", "a1.yaml", "association", "a1"],
        ["bogus"],
        [],
    ],
)
def test_pvsecret_usage_errors_exit_1(args, capsys):
    assert pvsecret_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("pvsecret: error: ") and err.count("\n") == 1


def test_pvsecret_comma_lists_and_version(tmp_path, capsys):
    pki = M / "pki"
    other = MachineIdentity.bundled_dir("zuv-other") / "host-key-document.crt"
    args = ["create", "-k", f"{M / 'host-key-document.crt'},{other}",
            "-C", f"{pki / 'ibm-z-signing-key.crt'},{pki / 'intermediate-ca.crt'}",
            "--crl", f"{pki / 'ibm-z-signing-key.crl'},{pki / 'intermediate-ca.crl'},{pki / 'root-ca.crl'}",
            "--root-ca", str(pki / "root-ca.crt"), "--hdr", str(IMAGE), "-o", str(tmp_path / "r"),
            "--flags", "disable-dump", "meta"]  # fmt: skip
    assert pvsecret_main(args) == 0
    r = A.parse_asrcb((tmp_path / "r").read_bytes())
    assert r.header.nks == 2 and r.flags == A.ASRCB_FLAG_DISABLE_DUMP
    assert pvsecret_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pvsecret version 2.43.0")

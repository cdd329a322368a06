"""Files made by IBM's own tools (s390-tools genprotimg 2.35, pvattest and pvextract-hdr 2.32) against zuv's.

``tests/data/ibm/`` holds what IBM's tools wrote and read (its README says how each file was made): an image
built by genprotimg 2.35 for zuv-demo's host-key document (verified by genprotimg against zuv's emulated PKI),
its header as pvextract-hdr extracts it, an attestation request made by pvattest 2.32, and zuv's responses
with the verification result IBM's pvattest wrote for them. The tests check that zuv still boots and reads
IBM's files and still writes, byte for byte, the files IBM's tools accepted.

With ``ZUV_IBM_TOOLS`` set to the prefix ``tools/ibm_s390_tools.sh`` builds, the same exchanges run live
against IBM's binaries (the host-key document chain, a fresh image, both attestation directions).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from emulator.attest.pvattest import pvattest_main
from emulator.hypervisor.boot import DEMO_KERNEL, SecureHost, boot
from emulator.image import pvimg as p
from emulator.image.pvimg_cli import pvimg_main
from firmware import attestation as A

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/ibm"
IMAGE = DATA / "genprotimg-2.35.se"
HDR = DATA / "genprotimg-2.35.hdr"
MACHINE = ROOT / "firmware/machines/zuv-demo"
PKI = MACHINE / "pki"
HKD = MACHINE / "host-key-document.crt"
CHAIN = ["-C", str(PKI / "ibm-z-signing-key.crt"), "-C", str(PKI / "intermediate-ca.crt"),
         "--crl", str(PKI / "ibm-z-signing-key.crl"), "--crl", str(PKI / "intermediate-ca.crl"),
         "--crl", str(PKI / "root-ca.crl"), "--root-ca", str(PKI / "root-ca.crt")]  # fmt: skip


def _ibm_yaml(name: str) -> dict[str, str]:
    """The 'key: value' lines of a result file pvattest 2.32 wrote (its values are quoted hex strings)."""
    text = (DATA / name).read_text()
    return {k: v.strip("'") for k, v in re.findall(r"^(\w+): (\S+)$", text, re.M)}


def test_an_image_made_by_ibm_genprotimg_235_boots():
    r = boot(SecureHost("zuv-demo", seed=7), IMAGE, time_limit=60)
    assert r.failure is None and r.run.clean, r.failure_text() if r.failure else r.run.describe()
    assert "secret intact: yes" in r.console.decode()


def test_zuv_reads_the_ibm_image_where_pvextract_hdr_does(capsys):
    img = p.parse_image(IMAGE.read_bytes())
    assert (img.header_addr, img.ipib_addr) == (0x14000, 0x13000)
    assert img.header == HDR.read_bytes()  # what IBM's pvextract-hdr wrote
    # genprotimg 2.35 leaves pv_hdr_addr 0 (stage3a fills it in) and gives the IPIB a page as its length
    assert IMAGE.read_bytes()[0x13078:0x13080] == bytes(8) and img.ipib.pv_hdr_addr == 0x14000
    assert len(img.ipib.components) == 2  # kernel and stage3b: no parmfile, no ramdisk
    assert pvimg_main(["info", str(IMAGE), "--machine", "zuv-demo", "--format", "json", "-q"]) == 0
    assert '"verified": true' in capsys.readouterr().out
    assert pvimg_main(["test", str(IMAGE), "-k", str(HKD)]) == 0


def test_zuv_performs_ibm_pvattest_request_as_ibm_verified_it(tmp_path, capsys):
    """pvattest 2.32 created the request; zuv performed it (seed 5); pvattest 2.32 verified the response
    (exit 0, its result file committed). zuv must still write exactly that response and accept it."""
    out = tmp_path / "resp.bin"
    rc = pvattest_main(["perform", "-i", str(DATA / "pvattest-2.32-request.bin"), "-o", str(out),
                        "--image", str(IMAGE), "-u", str(DATA / "user-data.txt"), "--seed", "5"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes() == (DATA / "zuv-response-to-pvattest-2.32.bin").read_bytes()
    ex = A.parse_exchange(out.read_bytes())
    assert _ibm_yaml("pvattest-2.32-verify-zuv-response.yaml")["cuid"] == "0x" + ex.cuid.hex()
    for hdr in (IMAGE, HDR):  # the whole image or the header pvextract-hdr extracted
        rc = pvattest_main(
            ["verify", "-i", str(out), "--hdr", str(hdr), "-a", str(DATA / "pvattest-2.32-arpk.bin")]
        )
        assert rc == 0, capsys.readouterr().err


def test_zuv_request_and_response_are_what_ibm_pvattest_verified(tmp_path, capsys):
    req, arpk, resp = tmp_path / "req.bin", tmp_path / "arpk.bin", tmp_path / "resp.bin"
    rc = pvattest_main(["create", "-k", str(HKD), *CHAIN, "-o", str(req), "-a", str(arpk),
                        "--add-data", "phkh-img", "--add-data", "phkh-att",
                        "--seed", "ibm interchange"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert req.read_bytes() == (DATA / "zuv-request.bin").read_bytes()
    assert arpk.read_bytes() == (DATA / "zuv-arpk.bin").read_bytes()
    rc = pvattest_main(["perform", "-i", str(req), "-o", str(resp), "--image", str(IMAGE), "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    assert resp.read_bytes() == (DATA / "zuv-response.bin").read_bytes()
    ibm = _ibm_yaml("pvattest-2.32-verify-zuv-request.yaml")
    ex = A.parse_exchange(resp.read_bytes())
    assert ibm == {"cuid": "0x" + ex.cuid.hex(), "add": "0x" + ex.additional.hex()}
    assert pvattest_main(["verify", "-i", str(resp), "--hdr", str(HDR), "-a", str(arpk)]) == 0
    # the other request's ARPK does not open it: 1, as pvattest ("Verifying the GCM tag failed")
    assert pvattest_main(["verify", "-i", str(resp), "--hdr", str(HDR),
                          "-a", str(DATA / "pvattest-2.32-arpk.bin")]) == 1  # fmt: skip


# ---------------------------------------------------------------------------------------------------- live

IBM = Path(os.environ["ZUV_IBM_TOOLS"]) if os.environ.get("ZUV_IBM_TOOLS") else None
live = pytest.mark.skipif(IBM is None, reason="ZUV_IBM_TOOLS not set (tools/ibm_s390_tools.sh builds them)")


def _ibm(tool: str, *args: str) -> subprocess.CompletedProcess:
    assert IBM is not None
    return subprocess.run([str(IBM / "bin" / tool), *args], capture_output=True, text=True, timeout=120)


@live
def test_live_ibm_genprotimg_takes_zuvs_pki_and_zuv_boots_its_image(tmp_path):
    from emulator.image.pvimg import load_kernel

    kernel = tmp_path / "kernel"
    kernel.write_bytes(load_kernel(DEMO_KERNEL.read_bytes())[0])
    out = tmp_path / "ibm.se"
    r = _ibm("genprotimg", "-k", str(HKD), *CHAIN, "--offline", "-i", str(kernel), "-o", str(out))
    assert r.returncode == 0, r.stderr
    res = boot(SecureHost("zuv-demo", seed=1), out, time_limit=60)
    assert res.failure is None and "secret intact: yes" in res.console.decode()
    # without the root CA's CRL both refuse the chain (a CRL for every certificate)
    no_root_crl = CHAIN[:8] + CHAIN[10:]
    assert "root-ca.crl" not in " ".join(no_root_crl)
    r = _ibm(
        "genprotimg", "-k", str(HKD), *no_root_crl, "--offline", "-i", str(kernel), "-o", str(tmp_path / "x")
    )
    assert r.returncode == 1 and "unable to get certificate CRL" in r.stderr
    req = ["create", "-k", str(HKD), *no_root_crl, "-o", str(tmp_path / "r"), "-a", str(tmp_path / "a")]
    assert pvattest_main(req) == 1  # zuv refuses the same chain


@live
def test_live_ibm_pvattest_verifies_zuv_and_pvextract_hdr_reads_zuv_images(tmp_path):
    hdr = tmp_path / "hdr"
    demo = ROOT / "guests/images/secure_demo.se"
    r = _ibm("pvextract-hdr", "-o", str(hdr), str(demo))
    assert r.returncode == 0, r.stderr
    assert hdr.read_bytes() == p.parse_image(demo.read_bytes()).header
    req, arpk, resp = tmp_path / "req", tmp_path / "arpk", tmp_path / "resp"
    assert pvattest_main(["create", "-k", str(HKD), *CHAIN, "-o", str(req), "-a", str(arpk)]) == 0
    assert pvattest_main(["perform", "-i", str(req), "-o", str(resp), "--image", str(demo)]) == 0
    r = _ibm("pvattest", "verify", "-i", str(resp), "--hdr", str(hdr), "-a", str(arpk))
    assert r.returncode == 0, r.stderr
    r = _ibm("pvattest", "verify", "-i", str(resp), "--hdr", str(HDR), "-a", str(arpk))
    assert r.returncode == 2 and "not equal" in r.stderr  # another image: a mismatch, 2 as zuv's
    assert pvattest_main(["verify", "-i", str(resp), "--hdr", str(HDR), "-a", str(arpk)]) == 2


def test_secrets_for_the_ibm_image_reach_its_guest(tmp_path, capsys):
    """An add-secret request made for the header IBM's pvextract-hdr extracted is added to the guest booted
    from IBM's image, and the guest retrieves the secret."""
    from emulator.attest.pvsecret import pvsecret_main

    (tmp_path / "key").write_bytes(bytes(range(32, 64)))
    rc = pvsecret_main(["create", "-k", str(HKD), *CHAIN, "--hdr", str(HDR), "-o", str(tmp_path / "req"),
                        "retrievable", "ibm image key", "--secret", str(tmp_path / "key"),
                        "--type", "aes"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    guest = ["--guest", str(tmp_path / "g.json")]
    assert pvsecret_main(["add", str(tmp_path / "req"), *guest, "--image", str(IMAGE), "--seed", "2"]) == 0
    assert pvsecret_main(["retrieve", str(tmp_path / "ibm_image_key.yaml"), str(tmp_path / "out"), *guest,
                          "--outform", "bin"]) == 0  # fmt: skip
    assert (tmp_path / "out").read_bytes() == bytes(range(32, 64))


@live
def test_live_ibm_image_with_cck_ramdisk_and_parmfile_takes_zuvs_extension_secret(tmp_path):
    from emulator.attest.pvsecret import pvsecret_main
    from emulator.image.pvimg import load_kernel

    d = tmp_path
    (d / "kernel").write_bytes(load_kernel(DEMO_KERNEL.read_bytes())[0])
    (d / "cck").write_bytes(bytes(range(100, 132)))
    (d / "parm").write_text("console=ttyS0 quiet\n")
    (d / "rd").write_bytes(bytes(5000))
    r = _ibm("genprotimg", "-k", str(HKD), *CHAIN, "--offline", "-i", str(d / "kernel"), "-r", str(d / "rd"),
             "-p", str(d / "parm"), "--comm-key", str(d / "cck"), "--enable-cck-extension-secret",
             "--enable-dump", "-o", str(d / "ibm.se"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = boot(SecureHost("zuv-demo", seed=1), d / "ibm.se", time_limit=60)
    assert res.failure is None and "secret intact: yes" in res.console.decode()
    base = ["create", "-k", str(HKD), *CHAIN, "--hdr", str(d / "ibm.se")]
    assert pvsecret_main([*base, "--cck", str(d / "cck"), "-o", str(d / "ok"), "meta"]) == 0
    assert pvsecret_main([*base, "-o", str(d / "no"), "meta"]) == 0
    assert pvsecret_main(["add", str(d / "ok"), "--guest", str(d / "g1"), "--image", str(d / "ibm.se")]) == 0
    assert pvsecret_main(["add", str(d / "no"), "--guest", str(d / "g2"), "--image", str(d / "ibm.se")]) == 1


# ---------------------------------------------------------------------------------------------------- 2.43

REL_HKD = "../../../firmware/machines/zuv-demo/host-key-document.crt"  # as given to IBM's tools in DATA
REL_OTHER = "../../../firmware/machines/zuv-other/host-key-document.crt"


def test_zuv_answers_pvattest_243_as_ibm_verified_and_checked_it(tmp_path, monkeypatch, capsys):
    """IBM's pvattest 2.43 made the request (image and attestation PHKH, secret-store hash); zuv's guest of
    IBM's image added IBM's pvsecret 2.43 request, locked its store and answered; IBM's pvattest verified
    and checked the answer. zuv writes the same answer, and its verify -o and check write IBM's files byte
    for byte."""
    from emulator.attest.pvsecret import pvsecret_main

    monkeypatch.chdir(DATA)
    g = ["--guest", str(tmp_path / "g.json")]
    assert (
        pvsecret_main(
            ["add", "pvsecret-2.43-retrievable.bin", *g, "--image", "genprotimg-2.35.se", "--seed", "6"]
        )
        == 0
    )
    assert pvsecret_main(["lock", *g]) == 0
    resp = tmp_path / "resp"
    assert pvattest_main(["perform", "pvattest-2.43-request.bin", str(resp), *g, "-u", "user-data.txt"]) == 0
    assert resp.read_bytes() == (DATA / "zuv-response-to-pvattest-2.43.bin").read_bytes()
    assert pvattest_main(["verify", "-i", str(resp), "--hdr", "genprotimg-2.35.se",
                          "-a", "pvattest-2.43-arpk.bin", "-o", str(tmp_path / "v.yaml")]) == 0  # fmt: skip
    assert (tmp_path / "v.yaml").read_text() == (DATA / "pvattest-2.43-verify.yaml").read_text()
    assert pvattest_main(["check", str(resp), str(tmp_path / "c.yaml"), "-k", f"{REL_HKD},{REL_OTHER}",
                          "--host-key-check", "att-key-hash,boot-key-hash", "-u", "user-data.txt",
                          "--secret", "pvsecret-2.43-retrievable.bin",
                          "--secret-store-locked", "true"]) == 0  # fmt: skip
    assert (tmp_path / "c.yaml").read_text() == (DATA / "pvattest-2.43-check.yaml").read_text()
    # the guest retrieves IBM's secret by the NAME.yaml IBM's pvsecret wrote
    assert (
        pvsecret_main(["retrieve", "pvsecret-2.43-ibm_key.yaml", str(tmp_path / "s"), *g, "--outform", "bin"])
        == 0
    )
    assert (tmp_path / "s").read_bytes() == (DATA / "user-data.txt").read_bytes()


def test_pvsecret_243_files_and_zuvs_agree(tmp_path, monkeypatch, capsys):
    from emulator.attest.pvsecret import pvsecret_main

    monkeypatch.chdir(DATA)
    # IBM's request with ECDSA-signed user data: zuv's verify gives what IBM's verify gave
    assert pvsecret_main(["verify", "pvsecret-2.43-signed.bin", "--user-cert", "user-sign-ec.crt",
                          "-o", str(tmp_path / "ud")]) == 0  # fmt: skip
    assert (tmp_path / "ud").read_bytes() == (DATA / "pvsecret-2.43-verify-signed.out").read_bytes()
    assert pvsecret_main(["verify", "pvsecret-2.43-signed.bin"]) == 1  # signed: the certificate is needed
    # the secret information of the same secret, as IBM's pvsecret wrote it
    capsys.readouterr()
    assert pvsecret_main(["create", "-k", REL_HKD, "--no-verify", "--hdr", "genprotimg-2.35.hdr",
                          "-o", str(tmp_path / "r"), "retrievable", "ibm key", "--secret", "user-data.txt",
                          "--type", "plain", "--stdout"]) == 0  # fmt: skip
    assert capsys.readouterr().out == (DATA / "pvsecret-2.43-ibm_key.yaml").read_text() + "\n"


@live
def test_live_ibm_pvsecret_243_verifies_zuvs_signed_user_data(tmp_path):
    from emulator.attest.pvsecret import pvsecret_main

    if not (IBM / "bin" / "pvsecret-2.43").exists():
        pytest.skip("IBM's pvsecret 2.43 not built (tools/ibm_s390_tools.sh --rust)")
    key, crt = tmp_path / "k.pem", tmp_path / "k.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-subj", "/CN=t", "-days", "2", "-out", str(crt)],
                   check=True, capture_output=True)  # fmt: skip
    assert pvsecret_main(["create", "-k", str(HKD), "--no-verify", "--hdr", str(HDR),
                          "-o", str(tmp_path / "r"), "--user-data", str(DATA / "user-data.txt"),
                          "--user-sign-key", str(key), "meta"]) == 0  # fmt: skip
    r = _ibm(
        "pvsecret-2.43", "verify", str(tmp_path / "r"), "--user-cert", str(crt), "-o", str(tmp_path / "o")
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o").read_bytes() == (DATA / "user-data.txt").read_bytes().ljust(256, b"\0")


@live
def test_live_signing_key_crl_names_as_ibm_pvattest_243(tmp_path):
    """Signing keys named Poughkeepsie or Armonk, CRLs issued under either name, reordered or upper-cased:
    IBM's pvattest 2.43 and zuv accept and refuse the same host-key documents."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from emulator.image import pki as P
    from firmware.crypto import DeterministicRng, generate_p521_key

    if not (IBM / "bin" / "pvattest-2.43").exists():
        pytest.skip("IBM's pvattest 2.43 not built (tools/ibm_s390_tools.sh --rust)")
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    k = P.create_pki(DeterministicRng("quirk"), now=now)

    def put(name: str, obj) -> str:
        (tmp_path / name).write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        return str(tmp_path / name)

    armonk = P._cert(  # noqa: SLF001 - the signing key's certificate under the Armonk name
        subject=P.signing_key_subject("Armonk"), issuer=k.inter_cert.subject,
        public_key=k.signing_key.public_key(), issuer_key=k.inter_key,
        issuer_public_key=k.inter_key.public_key(), serial=78,
        not_before=k.signing_cert.not_valid_before_utc, not_after=k.signing_cert.not_valid_after_utc,
        ca=False,
    )  # fmt: skip
    signers = {"pough": put("pough.crt", k.signing_cert), "armonk": put("armonk.crt", armonk)}
    upper = x509.Name([x509.NameAttribute(a.oid, str(a.value).upper()) for a in P.signing_key_subject()])
    names = {"pough": P.signing_key_subject("Poughkeepsie"), "armonk": P.signing_key_subject("Armonk"),
             "pough-reordered": P._reordered(P.signing_key_subject("Poughkeepsie")),  # noqa: SLF001
             "armonk-reordered": P._reordered(P.signing_key_subject("Armonk")), "upper": upper}  # noqa: SLF001
    chain = ",".join([put("inter.crl", k.inter_crl), put("root.crl", k.root_crl)])
    host_key = generate_p521_key(DeterministicRng("h")).public_key()
    hkd = put("hkd.crt", P.issue_host_key_document(k, host_key, "q", DeterministicRng("q"), now=now))
    results = {}
    for sname, spath in signers.items():
        for cname, name in names.items():
            b = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
                 .next_update(now + dt.timedelta(days=30)))
            crl = put(f"{cname}.crl", b.sign(k.signing_key, hashes.SHA512()))
            args = ["-k", hkd, "-C", f"{spath},{put('inter.crt', k.inter_cert)}", "--crl", f"{crl},{chain}",
                    "--root-ca", put("root.crt", k.root_cert), "--offline", "-o", str(tmp_path / "r"),
                    "-a", str(tmp_path / "a")]  # fmt: skip
            ibm = _ibm("pvattest-2.43", "create", *args).returncode
            results[(sname, cname)] = (ibm, pvattest_main(["create", *args]))
    assert all(i == z for i, z in results.values()), results
    assert results[("pough", "armonk")][0] == 1 and results[("armonk", "pough")][0] == 0


def test_pvsecret_243_policy_reference_and_toc_as_ibm(tmp_path, monkeypatch, capsys):
    """``pvsecret create --policy FILE --toc-policy TOC``: IBM's request carries the policy reference (SHA-256
    of the file, then its path) as user data and IBM appended its tag to TOC; zuv reads the same user data
    from IBM's request, and its own request carries it too."""
    from emulator.attest.pvsecret import policy_reference, pvsecret_main

    monkeypatch.chdir(DATA)
    ref = policy_reference("policy.yaml")
    assert ref[:32].hex() == (DATA / "pvsecret-2.43-policy.out").read_text().strip()  # what IBM printed
    assert pvsecret_main(["verify", "pvsecret-2.43-policy.bin", "-o", str(tmp_path / "ibm.ud")]) == 0
    assert (tmp_path / "ibm.ud").read_bytes() == ref
    ibm_req = (DATA / "pvsecret-2.43-policy.bin").read_bytes()
    assert (DATA / "pvsecret-2.43-toc.txt").read_text() == ibm_req[-16:].hex() + "\n"
    toc = tmp_path / "toc"
    toc.write_text("an earlier line\n")
    capsys.readouterr()
    base = ["create", "-k", REL_HKD, "--no-verify", "--hdr", "genprotimg-2.35.hdr", "-o", str(tmp_path / "r")]
    assert pvsecret_main([*base, "--policy", "policy.yaml", "--toc-policy", str(toc), "meta"]) == 0
    assert capsys.readouterr().out == ref[:32].hex() + "\n"
    zuv_req = (tmp_path / "r").read_bytes()
    assert toc.read_text() == "an earlier line\n" + zuv_req[-16:].hex() + "\n"  # appended
    assert pvsecret_main(["verify", str(tmp_path / "r"), "-o", str(tmp_path / "zuv.ud")]) == 0
    assert (tmp_path / "zuv.ud").read_bytes() == ref
    # with --user-data: a usage error; a missing policy file: an error (1 both, as pvsecret)
    assert pvsecret_main([*base, "--policy", "policy.yaml", "--user-data", "user-data.txt", "meta"]) == 1
    assert pvsecret_main([*base, "--policy", str(tmp_path / "none"), "meta"]) == 1

"""Emulated host-key PKI and machine identities: chain, CRL, validity and identity checks, the hostkey CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from emulator.image import pki
from emulator.image.hostkey import hostkey_main
from firmware import crypto as c
from firmware.machine_identity import MachineIdentity, MachineIdentityError

REPO = Path(__file__).resolve().parent.parent
PKI_DIR = REPO / "firmware" / "machines" / "zuv-demo" / "pki"
BUNDLED = pki.Pki.load(PKI_DIR)
DEMO = MachineIdentity.bundled("zuv-demo")
OTHER = MachineIdentity.bundled("zuv-other")
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def hkd(m: MachineIdentity) -> x509.Certificate:
    return x509.load_pem_x509_certificate(m.host_key_document)


def verify(doc, *, p=BUNDLED, certs=None, roots=None, crls=None, now=NOW):
    return pki.verify_host_key_document(
        doc,
        certs=[p.signing_cert, p.inter_cert] if certs is None else certs,
        roots=[p.root_cert] if roots is None else roots,
        crls=p.crls if crls is None else crls,
        now=now,
    )


def test_bundled_documents_verify_and_name_their_machines():
    for m in (DEMO, OTHER):
        info = verify(hkd(m))
        assert info.verified and info.machine_name == m.name
        assert c.phkh(info.public_key) == m.host_key_hash


def test_bundled_pki_is_reproducible_from_its_seed(tmp_path):
    again = pki.create_pki(c.DeterministicRng("zuv-demo-pki"), dt.datetime(2024, 1, 1))
    assert again.root_cert == BUNDLED.root_cert and again.crl.public_bytes(serialization.Encoding.DER) == \
        BUNDLED.crl.public_bytes(serialization.Encoding.DER)


def test_validity_period_is_enforced():
    with pytest.raises(pki.PkiError, match="not yet valid"):
        verify(hkd(DEMO), now=dt.datetime(2023, 6, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(pki.PkiError, match="expired|outdated"):
        verify(hkd(DEMO), now=dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc))


@pytest.fixture(scope="module")
def fresh():
    """A PKI of our own plus one machine document issued by it."""
    p = pki.create_pki(c.DeterministicRng("test-pki"), dt.datetime(2025, 1, 1))
    key = c.generate_p521_key(c.DeterministicRng("test-host"))
    doc = pki.issue_host_key_document(
        p, key.public_key(), "zuv-test", c.DeterministicRng("doc"), dt.datetime(2025, 1, 1)
    )
    return p, key, doc


def test_revoked_document_is_refused(fresh):
    p, _, doc = fresh
    assert verify(doc, p=p).machine_name == "zuv-test"
    revoked = pki.issue_crl(p.signing_key, p.signing_cert, [doc.serial_number],
                            last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="revoked"):
        verify(doc, p=p, crls=[revoked, p.inter_crl, p.root_crl])
    other_serial = pki.issue_crl(p.signing_key, p.signing_cert, [doc.serial_number + 2],
                                 last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    assert verify(doc, p=p, crls=[other_serial, p.inter_crl, p.root_crl]).verified


def test_revoked_signing_key_is_refused_through_the_intermediate_crl(fresh):
    p, _, doc = fresh
    crl = pki.issue_crl(p.inter_key, p.inter_cert, [p.signing_cert.serial_number],
                        last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="revoked"):
        verify(doc, p=p, crls=[p.crl, crl, p.root_crl])


def test_crl_checks(fresh):
    p, _, doc = fresh
    chain = [p.inter_crl, p.root_crl]
    with pytest.raises(pki.PkiError, match="unable to get certificate CRL"):
        verify(doc, p=p, crls=[])
    with pytest.raises(pki.PkiError, match="at least one"):
        verify(doc, p=p, crls=chain)
    old = pki.issue_crl(p.signing_key, p.signing_cert, [], last_update=dt.datetime(2025, 1, 1),
                        next_update=dt.datetime(2026, 1, 1))
    with pytest.raises(pki.PkiError, match="outdated"):
        verify(doc, p=p, crls=[old, *chain])
    forged = pki.issue_crl(BUNDLED.signing_key, p.signing_cert, [], last_update=dt.datetime(2029, 1, 1),
                           next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="signature"):
        verify(doc, p=p, crls=[forged, *chain])
    # a CRL of nobody in the chain is ignored, as in s390-tools' OpenSSL store
    assert verify(doc, p=p, crls=[*p.crls, BUNDLED.inter_crl, BUNDLED.root_crl]).verified


def test_every_certificate_of_the_chain_needs_its_issuers_crl_as_s390_tools(fresh):
    """OpenSSL's CRL_CHECK_ALL, which s390-tools sets: the signing key needs the intermediate CA's CRL, the
    intermediate CA the root's, the root its own (a root CRL listing the root refuses it, as IBM's
    genprotimg does); a current CRL beside an outdated one of the same issuer is used."""
    p, _, doc = fresh
    t0, t1 = dt.datetime(2029, 1, 1), dt.datetime(2031, 1, 1)
    with pytest.raises(
        pki.PkiError, match="Machines Corporation.*unable to get certificate CRL.*Code Signing"
    ):
        verify(doc, p=p, crls=[p.crl, p.root_crl])
    with pytest.raises(pki.PkiError, match="'CN=zuv Emulated Code Signing CA.*unable to get certificate CRL"):
        verify(doc, p=p, crls=[p.crl, p.inter_crl])
    root_self = pki.issue_crl(
        p.root_key, p.root_cert, [p.root_cert.serial_number], last_update=t0, next_update=t1
    )
    with pytest.raises(pki.PkiError, match="Root CA.*certificate revoked"):
        verify(doc, p=p, crls=[p.crl, p.inter_crl, root_self])
    root_inter = pki.issue_crl(
        p.root_key, p.root_cert, [p.inter_cert.serial_number], last_update=t0, next_update=t1
    )
    with pytest.raises(pki.PkiError, match="Code Signing CA.*certificate revoked"):
        verify(doc, p=p, crls=[p.crl, p.inter_crl, root_inter])
    stale = pki.issue_crl(p.root_key, p.root_cert, [], last_update=dt.datetime(2025, 1, 1),
                          next_update=dt.datetime(2026, 1, 1))  # fmt: skip
    with pytest.raises(pki.PkiError, match="outdated"):
        verify(doc, p=p, crls=[p.crl, p.inter_crl, stale])
    assert verify(doc, p=p, crls=[p.crl, p.inter_crl, stale, p.root_crl]).verified


def test_signing_key_crl_names_as_s390_tools_quirk_crls(fresh):
    """An Armonk-named signing key takes a CRL issued under the Poughkeepsie form (also reordered C, O, OU,
    L, ST, CN); a Poughkeepsie signing key does not take an Armonk CRL (s390-tools fixes Armonk only)."""
    p, _, doc = fresh
    chain = [p.inter_crl, p.root_crl]

    def crl_named(name: x509.Name) -> x509.CertificateRevocationList:
        b = (x509.CertificateRevocationListBuilder().issuer_name(name)
             .last_update(dt.datetime(2029, 1, 1)).next_update(dt.datetime(2031, 1, 1)))
        return b.sign(p.signing_key, hashes.SHA512())

    armonk_crl = crl_named(pki.signing_key_subject("Armonk"))
    with pytest.raises(pki.PkiError, match="at least one"):
        verify(doc, p=p, crls=[armonk_crl, *chain])
    armonk_key = pki._cert(  # noqa: SLF001 - the signing key's certificate under the Armonk name
        subject=pki.signing_key_subject("Armonk"), issuer=p.inter_cert.subject,
        public_key=p.signing_key.public_key(), issuer_key=p.inter_key,
        issuer_public_key=p.inter_key.public_key(), serial=78,
        not_before=p.signing_cert.not_valid_before_utc, not_after=p.signing_cert.not_valid_after_utc,
        ca=False,
    )  # fmt: skip
    certs = [armonk_key, p.inter_cert]
    assert verify(doc, p=p, certs=certs, crls=[p.crl, *chain]).verified  # the Poughkeepsie-named CRL
    reordered = pki._reordered(pki.signing_key_subject("Poughkeepsie"))  # noqa: SLF001
    assert [a.oid for a in reordered] != [a.oid for a in pki.signing_key_subject("Poughkeepsie")]
    assert verify(doc, p=p, certs=certs, crls=[crl_named(reordered), *chain]).verified
    upper = x509.Name([x509.NameAttribute(a.oid, str(a.value).upper()) for a in pki.signing_key_subject()])
    assert verify(doc, p=p, crls=[crl_named(upper), *chain]).verified  # OpenSSL's canonical names fold case


def test_chain_checks(fresh):
    p, _, doc = fresh
    with pytest.raises(pki.PkiError, match="signature|issuer"):
        verify(doc, p=BUNDLED)  # issued by another "IBM Z signing key"
    with pytest.raises(pki.PkiError, match="no IBM Z signing-key"):
        verify(doc, p=p, certs=[p.inter_cert])
    with pytest.raises(pki.PkiError, match="more than one"):
        verify(doc, p=p, certs=[p.signing_cert, BUNDLED.signing_cert, p.inter_cert])
    with pytest.raises(pki.PkiError, match="no issuer"):
        verify(doc, p=p, certs=[p.signing_cert])
    with pytest.raises(pki.PkiError):
        verify(doc, p=p, roots=[BUNDLED.root_cert])
    with pytest.raises(pki.PkiError, match="root"):
        verify(doc, p=p, roots=[])


def test_only_a_self_signed_root_anchors_the_chain_as_openssl_for_s390_tools():
    """OpenSSL without partial chains (s390-tools' store): a trusted certificate that is not self-signed is
    no anchor. IBM's pvattest 2.43 refuses --root-ca intermediate-ca.crt or ibm-z-signing-key.crt ("Error
    occurred at level 1"), also with the root among the untrusted certificates; zuv accepted the first."""
    doc, p = hkd(DEMO), BUNDLED
    assert verify(doc, roots=[p.root_cert]).machine_name == "zuv-demo"
    assert verify(doc, roots=[p.inter_cert, p.root_cert]).machine_name == "zuv-demo"  # the root anchors it
    with pytest.raises(pki.PkiError, match="no issuer certificate for .*Code Signing CA"):
        verify(doc, roots=[p.inter_cert])
    with pytest.raises(pki.PkiError, match="no issuer certificate"):
        verify(doc, roots=[p.signing_cert])
    with pytest.raises(pki.PkiError, match="self-signed .* not a trusted root"):
        verify(doc, certs=[p.signing_cert, p.inter_cert, p.root_cert], roots=[p.inter_cert])


def test_signing_subject_must_have_exactly_the_six_ibm_entries():
    assert pki.is_ibm_signing_subject(pki.signing_key_subject())
    assert pki.is_ibm_signing_subject(pki.signing_key_subject("Armonk"))
    five = x509.Name([a for a in pki.signing_key_subject() if a.oid != NameOID.STATE_OR_PROVINCE_NAME])
    assert not pki.is_ibm_signing_subject(five)
    wrong_ou = x509.Name([a if a.oid != NameOID.ORGANIZATIONAL_UNIT_NAME else
                          x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Something Else") for a in
                          pki.signing_key_subject()])
    assert not pki.is_ibm_signing_subject(wrong_ou)


def test_host_key_documents_need_p521_keys(fresh):
    p, _, _ = fresh
    from cryptography.hazmat.primitives.asymmetric import ec
    with pytest.raises(pki.PkiError):
        pki.issue_host_key_document(
            p, ec.generate_private_key(ec.SECP384R1()).public_key(), "m", c.SystemRng()
        )


# ------------------------------------------------------------------------------------------------ identity


def test_machine_identity_load_save_round_trip(tmp_path, fresh):
    assert DEMO.backup_host_key is not None and len(DEMO.host_keys) == 2 and len(OTHER.host_keys) == 1
    assert DEMO.key_hashes[0] == DEMO.host_key_hash != OTHER.host_key_hash
    DEMO.save(tmp_path / "copy")
    again = MachineIdentity.load(tmp_path / "copy")
    assert again.name == "copy" and again.host_key_hash == DEMO.host_key_hash
    assert b"EMULATION ONLY" in (tmp_path / "copy" / "host-key.pem").read_bytes()
    scalar = DEMO.host_key.private_numbers().private_value
    assert hex(scalar)[2:18] not in repr(DEMO) and "BEGIN" not in repr(DEMO)


def test_machine_identity_refuses_a_document_of_another_machine(tmp_path):
    with pytest.raises(MachineIdentityError, match="not for this host key"):
        MachineIdentity("mix", DEMO.host_key, OTHER.host_key_document)
    d = tmp_path / "broken"
    d.mkdir()
    with pytest.raises(MachineIdentityError):
        MachineIdentity.load(d)
    (d / "host-key.pem").write_bytes(b"garbage")
    (d / "host-key-document.crt").write_bytes(DEMO.host_key_document)
    with pytest.raises(MachineIdentityError):
        MachineIdentity.load(d)
    with pytest.raises(MachineIdentityError):
        MachineIdentity.bundled("nope")


# ------------------------------------------------------------------------------------------------ CLI


def test_hostkey_cli_lifecycle(tmp_path, capsys):
    pdir, mdir = tmp_path / "pki", tmp_path / "m1"
    assert hostkey_main(["init-pki", str(pdir), "--seed", "s", "--time", "2025-01-01"]) == 0
    assert (
        hostkey_main(["new-machine", str(mdir), "--pki", str(pdir), "--seed", "m", "--time", "2025-01-01"])
        == 0
    )
    doc = str(mdir / "host-key-document.crt")
    assert (
        hostkey_main(["verify", doc, "--pki", str(pdir), "--machine", str(mdir), "--time", "2030-01-01"]) == 0
    )
    assert (
        hostkey_main(["verify", doc, "--pki", str(pdir), "--machine", "zuv-demo", "--time", "2030-01-01"])
        == 1
    )
    assert hostkey_main(["verify", doc, "--time", "2030-01-01"]) == 1  # bundled PKI did not issue it
    assert hostkey_main(["revoke", doc, "--pki", str(pdir), "--time", "2029-01-01"]) == 0
    capsys.readouterr()
    assert hostkey_main(["verify", doc, "--pki", str(pdir), "--time", "2030-01-01"]) == 1
    err = capsys.readouterr().err
    assert "revoked" in err and len(err.strip().splitlines()) == 1
    assert hostkey_main(["new-machine", str(mdir), "--pki", str(pdir)]) == 2
    root = (pdir / "root-ca.key").read_bytes()
    capsys.readouterr()
    assert hostkey_main(["init-pki", str(pdir)]) == 2  # was: a new root CA over the old, silently
    assert "already holds a PKI" in capsys.readouterr().err and (pdir / "root-ca.key").read_bytes() == root
    assert hostkey_main(["verify", str(REPO / "README.md")]) == 2
    assert hostkey_main(["bogus"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_pki_ships_the_root_cas_crl_for_the_intermediate_ca(tmp_path):
    """s390-tools checks a CRL for every certificate of the chain (OpenSSL CRL_CHECK_ALL): the root CA's CRL
    for the intermediate CA is part of the bundled PKI and of every PKI ``hostkey init-pki`` makes."""
    root_crl = BUNDLED.root_crl
    assert root_crl is not None and root_crl.issuer == BUNDLED.root_cert.subject and len(root_crl) == 0
    assert root_crl.is_signature_valid(BUNDLED.root_cert.public_key())
    assert root_crl.next_update_utc == BUNDLED.inter_crl.next_update_utc
    assert len(BUNDLED.crls) == 3 and verify(hkd(DEMO), crls=BUNDLED.crls).machine_name == "zuv-demo"
    assert hostkey_main(["init-pki", str(tmp_path / "p"), "--seed", "r"]) == 0
    made = pki.Pki.load(tmp_path / "p")
    assert (tmp_path / "p" / "root-ca.crl").exists() and made.root_crl is not None
    # the root's CRL revoking the intermediate CA refuses every document under it
    made.root_crl = pki.issue_crl(
        made.root_key,
        made.root_cert,
        [made.inter_cert.serial_number],
        last_update=NOW - dt.timedelta(days=1),
        next_update=NOW + dt.timedelta(days=9),
    )
    doc = pki.issue_host_key_document(made, DEMO.public_key, "m", c.DeterministicRng("m"), NOW)
    with pytest.raises(pki.PkiError, match="certificate revoked"):
        verify(doc, p=made, crls=made.crls)
    # a PKI directory saved before the root CRL existed still loads
    (tmp_path / "p" / "root-ca.crl").unlink()
    assert pki.Pki.load(tmp_path / "p").root_crl is None


def test_host_key_document_issuer_and_signing_key_crls_as_s390_tools_checks_them():
    """s390-tools checks a host-key document's authority key identifier and signature, not its issuer name
    (an issuer in the Poughkeepsie form under an Armonk-named signing certificate passes), and leaves out a
    signing-key CRL that is outdated when another one is valid."""
    p = BUNDLED
    armonk = pki._cert(  # noqa: SLF001 - a signing certificate with the other locality, same key
        subject=pki.signing_key_subject("Armonk"), issuer=p.inter_cert.subject,
        public_key=p.signing_key.public_key(), issuer_key=p.inter_key,
        issuer_public_key=p.inter_key.public_key(), serial=77,
        not_before=p.signing_cert.not_valid_before_utc, not_after=p.signing_cert.not_valid_after_utc,
        ca=False,
    )  # fmt: skip
    doc = hkd(DEMO)
    assert doc.issuer == pki.signing_key_subject("Poughkeepsie") != armonk.subject
    assert verify(doc, certs=[armonk, p.inter_cert]).machine_name == "zuv-demo"
    stale = pki.issue_crl(p.signing_key, p.signing_cert, (), last_update=NOW - dt.timedelta(days=30),
                          next_update=NOW - dt.timedelta(days=1))  # fmt: skip
    chain = [p.inter_crl, p.root_crl]
    assert verify(doc, crls=[stale, p.crl, *chain]).machine_name == "zuv-demo"
    with pytest.raises(pki.PkiError, match="outdated"):
        verify(doc, crls=[stale, *chain])
    other = pki.issue_crl(
        p.inter_key, p.signing_cert, (), last_update=NOW, next_update=NOW + dt.timedelta(days=1)
    )
    with pytest.raises(pki.PkiError, match="signature"):  # the signing key's name, another key
        verify(doc, crls=[other, *chain])


@pytest.mark.parametrize("pss", [False, True], ids=["pkcs1", "pss"])
def test_an_rsa_signing_key_as_ibms_real_ones(fresh, pss):
    """IBM's real IBM Z signing keys, and s390-tools' test assets (rust/pv/tests/assets/cert: host.crt under
    ibm.crt, sha512WithRSAEncryption), are RSA keys: zuv checked a host-key document's signature as ECDSA
    only and refused them ("signature does not verify"), where IBM's pvattest 2.43 accepts them. 52 chains
    of those assets now get IBM's exit status (tests/test_ibm_borderline_files.py runs them live)."""
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    p, _, doc = fresh
    start, end = dt.datetime(2025, 1, 1), dt.datetime(2035, 1, 1)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing = (
        x509.CertificateBuilder().subject_name(pki.signing_key_subject()).issuer_name(p.inter_cert.subject)
        .public_key(key.public_key()).serial_number(0x5A17).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(p.inter_key.public_key()),
                       critical=False)
        .sign(p.inter_key, hashes.SHA512())
    )  # fmt: skip
    pad = padding.PSS(padding.MGF1(hashes.SHA512()), padding.PSS.DIGEST_LENGTH) if pss else None
    rsa_doc = (
        x509.CertificateBuilder().subject_name(doc.subject).issuer_name(signing.subject)
        .public_key(doc.public_key()).serial_number(0x4D0C).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA512(), rsa_padding=pad)
    )  # fmt: skip
    crl = (
        x509.CertificateRevocationListBuilder().issuer_name(signing.subject).last_update(start)
        .next_update(end)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA512())
    )  # fmt: skip
    chain = dict(certs=[signing, p.inter_cert], crls=[crl, *p.crls[1:]])
    assert verify(rsa_doc, p=p, **chain).verified
    forged = x509.CertificateBuilder(
        rsa_doc.issuer, rsa_doc.subject, rsa_doc.public_key(), rsa_doc.serial_number, start, end
    ).sign(rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA512())
    with pytest.raises(pki.PkiError, match="signature does not verify"):
        verify(forged, p=p, **chain)


def test_hostkey_verify_takes_comma_lists_as_the_s390_tools(capsys):
    """'zuv hostkey verify HKD -C A,B --crl X,Y,Z' (the list syntax pvimg, pvattest and pvsecret take)
    said "cannot read certificate A,B"."""
    certs = f"{PKI_DIR / 'ibm-z-signing-key.crt'},{PKI_DIR / 'intermediate-ca.crt'}"
    crls = ",".join(str(PKI_DIR / f"{n}.crl") for n in ("ibm-z-signing-key", "intermediate-ca", "root-ca"))
    doc = str(REPO / "firmware/machines/zuv-demo/host-key-document.crt")
    assert hostkey_main(["verify", doc, "-C", certs, "--crl", crls]) == 0
    assert "OK: host key of 'zuv-demo'" in capsys.readouterr().out
    assert hostkey_main(["verify", doc, "-C", certs + ",", "--crl", crls]) == 2
    assert "an empty file name" in capsys.readouterr().err

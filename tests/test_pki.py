"""Emulated host-key PKI and machine identities: chain, CRL, validity and identity checks, the hostkey CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from emulator.image import pki
from emulator.image.pvimg import hostkey_main
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
        crls=[p.crl] if crls is None else crls,
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
    doc = pki.issue_host_key_document(p, key.public_key(), "zuv-test", c.DeterministicRng("doc"), dt.datetime(2025, 1, 1))
    return p, key, doc


def test_revoked_document_is_refused(fresh):
    p, _, doc = fresh
    assert verify(doc, p=p).machine_name == "zuv-test"
    revoked = pki.issue_crl(p.signing_key, p.signing_cert, [doc.serial_number],
                            last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="revoked"):
        verify(doc, p=p, crls=[revoked])
    other_serial = pki.issue_crl(p.signing_key, p.signing_cert, [doc.serial_number + 2],
                                 last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    assert verify(doc, p=p, crls=[other_serial]).verified


def test_revoked_signing_key_is_refused_through_the_intermediate_crl(fresh):
    p, _, doc = fresh
    crl = pki.issue_crl(p.inter_key, p.inter_cert, [p.signing_cert.serial_number],
                        last_update=dt.datetime(2029, 1, 1), next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="revoked"):
        verify(doc, p=p, crls=[p.crl, crl])


def test_crl_checks(fresh):
    p, _, doc = fresh
    with pytest.raises(pki.PkiError, match="at least one"):
        verify(doc, p=p, crls=[])
    with pytest.raises(pki.PkiError, match="at least one"):
        verify(doc, p=p, crls=[p.inter_crl])
    old = pki.issue_crl(p.signing_key, p.signing_cert, [], last_update=dt.datetime(2025, 1, 1),
                        next_update=dt.datetime(2026, 1, 1))
    with pytest.raises(pki.PkiError, match="outdated"):
        verify(doc, p=p, crls=[old])
    forged = pki.issue_crl(BUNDLED.signing_key, p.signing_cert, [], last_update=dt.datetime(2029, 1, 1),
                           next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError, match="signature"):
        verify(doc, p=p, crls=[forged])
    foreign = pki.issue_crl(BUNDLED.inter_key, BUNDLED.inter_cert, [], last_update=dt.datetime(2029, 1, 1),
                            next_update=dt.datetime(2031, 1, 1))
    with pytest.raises(pki.PkiError):
        verify(doc, p=p, crls=[p.crl, foreign])


def test_armonk_crl_is_accepted_for_a_poughkeepsie_signing_key(fresh):
    p, _, doc = fresh
    b = (x509.CertificateRevocationListBuilder().issuer_name(pki.signing_key_subject("Armonk"))
         .last_update(dt.datetime(2029, 1, 1)).next_update(dt.datetime(2031, 1, 1)))
    crl = b.sign(p.signing_key, hashes.SHA512())
    assert verify(doc, p=p, crls=[crl]).verified


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
        pki.issue_host_key_document(p, ec.generate_private_key(ec.SECP384R1()).public_key(), "m", c.SystemRng())


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
    assert hostkey_main(["new-machine", str(mdir), "--pki", str(pdir), "--seed", "m", "--time", "2025-01-01"]) == 0
    doc = str(mdir / "host-key-document.crt")
    assert hostkey_main(["verify", doc, "--pki", str(pdir), "--machine", str(mdir), "--time", "2030-01-01"]) == 0
    assert hostkey_main(["verify", doc, "--pki", str(pdir), "--machine", "zuv-demo", "--time", "2030-01-01"]) == 1
    assert hostkey_main(["verify", doc, "--time", "2030-01-01"]) == 1  # bundled PKI did not issue it
    assert hostkey_main(["revoke", doc, "--pki", str(pdir), "--time", "2029-01-01"]) == 0
    capsys.readouterr()
    assert hostkey_main(["verify", doc, "--pki", str(pdir), "--time", "2030-01-01"]) == 1
    err = capsys.readouterr().err
    assert "revoked" in err and len(err.strip().splitlines()) == 1
    assert hostkey_main(["new-machine", str(mdir), "--pki", str(pdir)]) == 2
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
    made.root_crl = pki.issue_crl(made.root_key, made.root_cert, [made.inter_cert.serial_number],
                                  last_update=NOW - dt.timedelta(days=1), next_update=NOW + dt.timedelta(days=9))
    doc = pki.issue_host_key_document(made, DEMO.public_key, "m", c.DeterministicRng("m"), NOW)
    with pytest.raises(pki.PkiError, match="is revoked"):
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
        subject=pki.signing_key_subject("Armonk"), issuer=p.inter_cert.subject, public_key=p.signing_key.public_key(),
        issuer_key=p.inter_key, issuer_public_key=p.inter_key.public_key(), serial=77,
        not_before=p.signing_cert.not_valid_before_utc, not_after=p.signing_cert.not_valid_after_utc, ca=False,
    )  # fmt: skip
    doc = hkd(DEMO)
    assert doc.issuer == pki.signing_key_subject("Poughkeepsie") != armonk.subject
    assert verify(doc, certs=[armonk, p.inter_cert]).machine_name == "zuv-demo"
    stale = pki.issue_crl(p.signing_key, p.signing_cert, (), last_update=NOW - dt.timedelta(days=30),
                          next_update=NOW - dt.timedelta(days=1))  # fmt: skip
    assert verify(doc, crls=[stale, p.crl]).machine_name == "zuv-demo"
    with pytest.raises(pki.PkiError, match="outdated"):
        verify(doc, crls=[stale])
    other = pki.issue_crl(p.inter_key, p.signing_cert, (), last_update=NOW, next_update=NOW + dt.timedelta(days=1))
    with pytest.raises(pki.PkiError, match="signature"):  # the signing key's name, another key
        verify(doc, crls=[other])

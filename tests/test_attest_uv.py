"""Retrieve Attestation Measurement (0x1020) and zuv's signed evidence (0x1F20) through the Ultravisor, as a
secure guest issues them."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.attest import evidence as E
from emulator.attest.local import LocalSecureGuest
from emulator.image import pki
from emulator.image.pvimg import build_image, parse_image
from firmware import attestation as A
from firmware import crypto as c
from firmware import uv_attest as U
from firmware.machine_identity import MachineIdentity
from firmware.se_header import msb0
from firmware.uv_codes import BY_NAME, installed_calls

KERNEL = (Path(__file__).resolve().parents[1] / "guests" / "images" / "secure_demo.elf").read_bytes()
DEMO = MachineIdentity.bundled("zuv-demo")
OTHER = MachineIdentity.bundled("zuv-other")
PKI = pki.Pki.load(MachineIdentity.bundled_dir("zuv-demo") / "pki")
PAF_ALL = A.PAF_SUPPORTED
IMAGE = build_image(
    kernel=KERNEL, host_keys=[DEMO.public_key], rng=c.DeterministicRng("attest uv image")
).data
TAGS = A.BootHdrTags.from_header(parse_image(IMAGE).header)


@pytest.fixture(scope="module")
def guest() -> LocalSecureGuest:
    return LocalSecureGuest("zuv-demo", IMAGE, seed=7)


def arcb(
    paf: int = A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH, keys=(DEMO.public_key,), seed: str = "r"
):
    return A.build_arcb(list(keys), rng=c.DeterministicRng(seed), paf=paf)


class Call:
    """One attestation UVC: request, areas and the result."""

    def __init__(
        self, g: LocalSecureGuest, req: bytes, paf: int, user: bytes = b"", cmd: str = "retr_attest", **kw
    ):
        self.g = g
        self.add_len = A.additional_data_size(paf)
        self.meas = g.alloc(64)
        self.add = g.alloc(max(self.add_len, 8))
        self.ev = g.alloc(16384)
        fields = dict(
            arcb_addr=g.put(req), meas_len=64, meas_addr=self.meas, add_data_len=self.add_len,
            add_data_addr=self.add, user_data_len=len(user), user_data=user,
            reserved168=(self.ev, 16384 << 32, 0, 0),
        )  # fmt: skip
        fields.update(kw)
        self.blk = g.uvc(cmd, **fields)
        self.rc = self.blk.header.rc

    @property
    def measurement(self) -> bytes:
        return self.g.read(self.meas, 64)

    @property
    def additional(self) -> bytes:
        return self.g.read(self.add, self.add_len)

    @property
    def evidence(self) -> bytes:
        return self.g.read(self.ev, self.blk.reserved168[1] & 0xFFFFFFFF)


def test_query_shows_attestation_and_secret_calls_to_guests_only() -> None:
    bits = [
        BY_NAME[n].bit for n in ("retr_attest", "add_secret", "list_secrets", "lock_secrets", "retr_secret")
    ]
    guest, host = installed_calls("guest"), installed_calls("host")
    for b in [*bits, 63]:
        assert guest[b // 64] >> (63 - b % 64) & 1
        assert not host[b // 64] >> (63 - b % 64) & 1


def test_measurement_is_the_spec_formula_over_the_running_image(guest: LocalSecureGuest) -> None:
    req = arcb()
    call = Call(guest, req.data, A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH, user=b"agent v1")
    assert call.rc == 0x0001
    assert bytes(call.blk.config_uid) == guest.cuid
    opened = A.open_arcb(req.data, req.protection_key)
    want = A.measurement(opened.measurement_key, TAGS, guest.cuid, b"agent v1", opened.nonce, call.additional)
    assert call.measurement == want
    assert call.additional == DEMO.host_key_hash + DEMO.host_key_hash


def test_additional_data_items(guest: LocalSecureGuest) -> None:
    req = arcb(PAF_ALL)
    call = Call(guest, req.data, PAF_ALL)
    assert call.rc == 0x0001
    items = A.split_additional_data(PAF_ALL, call.additional)
    assert items["image_phkh"] == items["attestation_phkh"] == DEMO.host_key_hash
    assert items["secret_store_hash"] == A.secret_store_hash([], False)
    fw = items["firmware_state"]
    assert fw[:8] == b"zuvFWST1" and struct.unpack_from(">II", fw, 8) == (1, 320)
    assert fw[0x10:0x50] == U.firmware_digest() and fw[0x50:0x70] == DEMO.host_key_hash
    assert fw[0x70:0x90] == DEMO.key_hashes[1] and not any(fw[0x90:])


def test_backup_host_key_opens_the_request_and_is_reported(guest: LocalSecureGuest) -> None:
    backup = DEMO.backup_host_key
    assert backup is not None
    req = arcb(A.PAF_ATTEST_PHKH | A.PAF_IMAGE_PHKH, keys=(backup.public_key(),), seed="backup")
    call = Call(guest, req.data, A.PAF_ATTEST_PHKH | A.PAF_IMAGE_PHKH)
    assert call.rc == 0x0001
    assert call.additional == DEMO.host_key_hash + c.phkh(backup)


def test_rc_order_of_kvm_unit_tests_pv_attest(guest: LocalSecureGuest) -> None:
    """The sequence of s390x/pv-attest.c: a minimal request that cannot be unsealed, one field at a time."""
    paf = msb0(3)  # PAF_PHKH_ATT, as the test uses it: no nonce
    page = bytearray(0x180)
    struct.pack_into(">IIB", page, 0x08, 0x100, 0x180, 0)
    page[0x27] = 1
    struct.pack_into(">I", page, 0x2C, 64)
    struct.pack_into(">QI", page, 0x30, paf, 1)
    addr = guest.put(bytes(page))
    meas, add = guest.alloc(64), guest.alloc(32)
    base = dict(arcb_addr=addr, meas_len=64, meas_addr=meas, add_data_len=32, add_data_addr=add)

    def rc(patch: dict | None = None, **kw) -> int:
        data = bytearray(page)
        for off, (fmt, val) in (patch or {}).items():
            struct.pack_into(fmt, data, off, val)
        guest.write(addr, bytes(data))
        return guest.uvc("retr_attest", **{**base, **kw}).header.rc

    assert rc(cont_token=0xFF) == 0x0101
    assert rc(user_data_len=257) == 0x0102
    assert rc(arcb_addr=guest.setup.msl + 0x1000) == 0x0103
    assert rc({0x08: (">I", 0)}) == 0x0106
    assert rc({0x0C: (">I", 0x181)}) == 0x0107
    assert rc({0x27: (">B", 2)}) == 0x0107
    assert rc({0x27: (">B", 0)}) == 0x0108
    assert rc({0x2C: (">I", 80)}) == 0x0109
    assert rc({0x2C: (">I", 17)}) == 0x0109
    assert rc({0x30: (">Q", (A.PAF_SUPPORTED ^ (2**64 - 1)))}) == 0x010A
    assert rc({0x38: (">I", 0)}) == 0x010B
    assert rc() == 0x010C
    assert rc(meas_len=0) == 0x010D
    assert rc(add_data_len=0) == 0x010E
    assert guest.uvc("retr_attest", length=0x187, **base).header.rc == 0x0005
    assert guest.uvc("retr_attest", length=0x189, **base).header.rc == 0x0005


def test_output_areas_are_checked_only_for_a_decryptable_request(guest: LocalSecureGuest) -> None:
    req = arcb()
    beyond = guest.setup.msl + 0x2000
    paf = A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH
    assert Call(guest, req.data, paf, meas_addr=beyond).rc == 0x0104
    assert Call(guest, req.data, paf, add_data_addr=beyond).rc == 0x0105
    assert Call(guest, req.data, paf, arcb_addr=beyond).rc == 0x0103
    # the ARCB header readable, its body not: the request straddles the end of guest storage
    guest.write(guest.setup.msl - 0x40, req.data[:0x40])
    assert Call(guest, req.data, paf, arcb_addr=guest.setup.msl - 0x40).rc == 0x0103


def test_requests_the_machine_cannot_open_answer_0x010c(guest: LocalSecureGuest) -> None:
    paf = A.PAF_NONCE
    assert Call(guest, arcb(paf, keys=(OTHER.public_key,)).data, paf).rc == 0x010C
    good = arcb(paf).data
    for off in (0x10, 0x41, 0xE0, 0x130, len(good) - 1):
        bad = good[:off] + bytes([good[off] ^ 0x80]) + good[off + 1 :]
        assert Call(guest, bad, paf).rc == 0x010C, hex(off)


def test_host_cannot_issue_guest_attestation() -> None:
    g = LocalSecureGuest("zuv-demo", IMAGE, seed=3)
    assert g.client.call("retr_attest").rc == 0x0002
    assert g.client.call("retr_attest_evidence").rc == 0x0002


# ------------------------------------------------------------------------------------------------ evidence


def test_evidence_is_signed_twice_and_matches_the_measurement(guest: LocalSecureGuest) -> None:
    paf = A.PAF_NONCE | A.PAF_ATTEST_PHKH
    req = arcb(paf)
    call = Call(guest, req.data, paf, user=b"u" * 256, cmd="retr_attest_evidence")
    assert call.rc == 0x0001
    assert call.blk.reserved168[1] >> 32 == 16384
    ev = E.verify_evidence(call.evidence, roots=[PKI.root_cert], cas=[PKI.inter_cert], crls=[PKI.inter_crl])
    st = ev.statement
    opened = A.open_arcb(req.data, req.protection_key)
    assert ev.machine == "zuv-demo" and ev.host_key_hash == DEMO.host_key_hash
    assert st.measurement == call.measurement and st.nonce == opened.nonce and st.cuid == guest.cuid
    assert st.tags == TAGS and st.user_data == b"u" * 256 and st.paf == paf
    assert st.additional_digest == c.sha512(call.additional) and st.attestation_phkh == DEMO.host_key_hash
    res = E.check_attestation(
        tags=TAGS, measurement_key=opened.measurement_key, nonce=opened.nonce, paf=paf,
        measurement=call.measurement, cuid=guest.cuid, user_data=b"u" * 256, additional=call.additional,
        evidence=call.evidence,
        roots=[PKI.root_cert], cas=[PKI.inter_cert], crls=[PKI.inter_crl],
    )  # fmt: skip
    assert res.claims()["evidence"]["machine"] == "zuv-demo"


def test_evidence_rcs(guest: LocalSecureGuest) -> None:
    paf = A.PAF_NONCE
    req = arcb(paf).data
    assert Call(guest, req, paf, cmd="retr_attest_evidence", reserved168=(0, 4096 << 32, 0, 0)).rc == 0x0111
    beyond = guest.setup.msl + 0x1000
    assert (
        Call(guest, req, paf, cmd="retr_attest_evidence", reserved168=(beyond, 16384 << 32, 0, 0)).rc
        == 0x0112
    )
    bare = LocalSecureGuest("zuv-demo", IMAGE, seed=4)
    bare.uv.attestation_keys = None
    assert Call(bare, req, paf, cmd="retr_attest_evidence").rc == 0x0110
    assert Call(bare, req, paf).rc == 0x0001  # the architected command needs no attestation key


# --------------------------------------------------------------------------------------------- chain failures


def _evidence(guest: LocalSecureGuest) -> bytes:
    call = Call(guest, arcb(A.PAF_NONCE).data, A.PAF_NONCE, cmd="retr_attest_evidence")
    assert call.rc == 0x0001
    return call.evidence


def _verify(ev: bytes, **kw) -> E.VerifiedEvidence:
    args = dict(roots=[PKI.root_cert], cas=[PKI.inter_cert], crls=[PKI.inter_crl])
    args.update(kw)
    return E.verify_evidence(ev, **args)


def test_chain_refusals_expired_wrong_root_revoked_no_crl(guest: LocalSecureGuest) -> None:
    ev = _evidence(guest)
    late = dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(E.AttestationMismatch, match="expired") as exc:
        _verify(ev, now=late, crls=[])
    assert exc.value.field == "certificate_chain"
    other_pki = pki.create_pki(
        c.DeterministicRng("another root"), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    )
    # same names, other keys: the intermediate CA is not signed by the root the verifier trusts
    with pytest.raises(E.AttestationMismatch, match="not signed by"):
        _verify(ev, roots=[other_pki.root_cert])
    with pytest.raises(E.AttestationMismatch, match="not signed by"):
        _verify(ev, cas=[other_pki.inter_cert])
    cert = x509.load_der_x509_certificate(U.Evidence.parse(ev).ecdsa_cert)
    now = dt.datetime.now(dt.timezone.utc)
    revoked = pki.issue_crl(
        PKI.inter_key, PKI.inter_cert, [cert.serial_number], last_update=now - dt.timedelta(days=1),
        next_update=now + dt.timedelta(days=30),
    )  # fmt: skip
    with pytest.raises(E.AttestationMismatch, match="revoked"):
        _verify(ev, crls=[revoked])
    with pytest.raises(E.AttestationMismatch, match="CRL .* required"):
        _verify(ev, crls=[])
    assert _verify(ev, crls=[], require_crl=False).machine == "zuv-demo"
    foreign = pki.issue_crl(
        other_pki.inter_key, PKI.inter_cert, [], last_update=now - dt.timedelta(days=1),
        next_update=now + dt.timedelta(days=30),
    )  # fmt: skip
    with pytest.raises(E.AttestationMismatch, match="not signed by it"):
        _verify(ev, crls=[foreign])


def test_signature_and_statement_tampering_is_detected(guest: LocalSecureGuest) -> None:
    ev = U.Evidence.parse(_evidence(guest))
    st = bytearray(ev.statement)
    st[0x40] ^= 1  # inside the measurement
    forged = U.Evidence(bytes(st), ev.ecdsa_sig, ev.mldsa_sig, ev.ecdsa_cert, ev.mldsa_cert).pack()
    with pytest.raises(E.AttestationMismatch, match="ECDSA") as exc:
        _verify(forged)
    assert exc.value.field == "signature"
    sig = bytearray(ev.mldsa_sig)
    sig[100] ^= 1
    forged = U.Evidence(ev.statement, ev.ecdsa_sig, bytes(sig), ev.ecdsa_cert, ev.mldsa_cert).pack()
    with pytest.raises(E.AttestationMismatch, match="ML-DSA"):
        _verify(forged)
    other = U.AttestationKeys.bundled("zuv-other")
    swapped = U.Evidence(ev.statement, ev.ecdsa_sig, ev.mldsa_sig, ev.ecdsa_cert, other.mldsa_cert).pack()
    with pytest.raises(E.AttestationMismatch, match="different machines"):
        _verify(swapped)
    with pytest.raises(E.AttestationMismatch) as exc:
        _verify(b"zuvEVID1" + bytes(8))
    assert exc.value.field == "evidence"


_FUZZ = LocalSecureGuest("zuv-demo", IMAGE, seed=8)
_REQ = arcb(A.PAF_NONCE | A.PAF_ATTEST_PHKH, seed="fuzz").data


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(_REQ) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_arcbs_always_get_an_architected_rc(edits) -> None:
    data = bytearray(_REQ)
    for off, val in edits:
        data[off] = val
    call = Call(_FUZZ, bytes(data), A.PAF_NONCE | A.PAF_ATTEST_PHKH)
    assert call.rc in (0x0001, 0x0106, 0x0107, 0x0108, 0x0109, 0x010A, 0x010B, 0x010C, 0x010E)
    if call.rc == 0x0001:
        assert bytes(data) == _REQ

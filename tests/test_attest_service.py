"""The lab verifier over HTTP on loopback: challenge, evidence, released secret; refusals name the field
(tampered image, nonce, replay, expiry, forged fields, chain)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from emulator.attest import demo as D
from emulator.attest.client import VerifierClient, VerifierRefused
from emulator.attest.local import LocalSecureGuest
from emulator.attest.verifier import Refusal, Verifier, VerifierService, b64, unb64
from emulator.image import pki
from firmware import attestation as A
from firmware import crypto as c

REPO = Path(__file__).resolve().parents[1]
IMAGE = (REPO / "guests" / "images" / "attest_demo.se").read_bytes()
OTHER_IMAGE = D.build_attest_image(D.tampered_kernel())


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def policy():
    return D.demo_policy(IMAGE)


@pytest.fixture()
def env(policy):
    clock = Clock()
    v = Verifier(policy, rng=c.DeterministicRng("verifier"), clock=clock)
    with VerifierService(v) as svc:
        yield VerifierClient(svc.url), v, clock


def perform(
    g: LocalSecureGuest, ch: dict, user: bytes = D.AGENT_ID, evidence: bool = True, arcb: bytes | None = None
) -> dict:
    """What the guest's agent does with a challenge: the UVC, then the Trustee-shaped response."""
    req = arcb if arcb is not None else unb64(ch["request_blob"], "request_blob")
    meas, add, ev = g.alloc(64), g.alloc(ch["additional_size"]), g.alloc(16384)
    blk = g.uvc(
        "retr_attest_evidence" if evidence else "retr_attest", arcb_addr=g.put(req), meas_len=64,
        meas_addr=meas, add_data_len=ch["additional_size"], add_data_addr=add, user_data_len=len(user),
        user_data=user, reserved168=(ev, 16384 << 32, 0, 0),
    )  # fmt: skip
    assert blk.header.rc == 0x0001
    out = {
        "measurement": b64(g.read(meas, 64)),
        "additional_data": b64(g.read(add, ch["additional_size"])),
        "user_data": b64(user),
        "cuid": b64(bytes(blk.config_uid)),
        "encr_measurement_key": ch["encr_measurement_key"],
        "encr_request_nonce": ch["encr_request_nonce"],
        "image_hdr_tags": ch["image_hdr_tags"],
    }
    if evidence:
        out["evidence"] = b64(g.read(ev, blk.reserved168[1] & 0xFFFFFFFF))
    return out


def refused(client: VerifierClient, body: dict) -> tuple[str, str, int]:
    with pytest.raises(VerifierRefused) as exc:
        client.attest(body)
    return exc.value.field, exc.value.reason, exc.value.status


def test_challenge_is_trustee_shaped_and_success_releases_a_bound_secret(env) -> None:
    client, v, _ = env
    ch = client.challenge()
    assert set(ch) == {"request_blob", "measurement_size", "additional_size", "encr_measurement_key",
                       "encr_request_nonce", "image_hdr_tags"}  # fmt: skip
    assert ch["measurement_size"] == 64 and ch["additional_size"] == 64
    arcb = A.parse_arcb(unb64(ch["request_blob"], "x"))
    assert arcb.paf == A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH
    g = LocalSecureGuest("zuv-demo", IMAGE, seed=21)
    answer = client.attest(perform(g, ch))
    assert answer["status"] == "ok" and answer["claims"]["cuid"] == g.cuid.hex()
    assert answer["claims"]["evidence"]["machine"] == "zuv-demo"
    (sec,) = answer["secrets"]
    asrcb = A.parse_asrcb(unb64(sec["asrcb"], "asrcb"))
    assert (
        asrcb.cuid == g.cuid
        and asrcb.tags == v.policy.tags
        and asrcb.secret_header.id == A.secret_id("disk-key")
    )
    # the guest adds and retrieves it: the disk key
    assert g.uvc("add_secret", addr=g.put(unb64(sec["asrcb"], "asrcb"))).header.rc == 0x0001
    buf = g.alloc(64)
    assert g.uvc("retr_secret", secret_idx=0, buf_size=64, buf_addr=buf).header.rc == 0x0001
    assert g.read(buf, 32) == D.demo_disk_key().expose()
    # another instance of the same image cannot use it
    g2 = LocalSecureGuest("zuv-demo", IMAGE, seed=22)
    blk = g2.uvc("add_secret", addr=g2.put(unb64(sec["asrcb"], "asrcb")))
    assert (blk.header.rc, blk.header.rrc) == (0x0101, 0x0002)


def test_replay_stale_nonce_and_expiry(env) -> None:
    client, _, clock = env
    g = LocalSecureGuest("zuv-demo", IMAGE, seed=23)
    first = client.challenge()
    body = perform(g, first)
    assert client.attest(body)["status"] == "ok"
    assert refused(client, body)[:1] == ("nonce",)  # replay
    old, new = client.challenge(), client.challenge()
    stale = perform(g, new, arcb=unb64(old["request_blob"], "x"))
    field, reason, status = refused(client, stale)
    assert (field, status) == ("nonce", 403) and "Ultravisor measured nonce" in reason
    late = client.challenge()
    body = perform(g, late)
    clock.t += 301
    assert refused(client, body)[:2] == ("nonce", "the challenge expired (300 s)")


def test_other_image_and_forged_fields_are_named(env) -> None:
    client, _, _ = env
    g_bad = LocalSecureGuest("zuv-demo", OTHER_IMAGE, seed=24)
    field, reason, _ = refused(client, perform(g_bad, client.challenge()))
    assert field == "pld" and "pld, tag differ" in reason
    g = LocalSecureGuest("zuv-demo", IMAGE, seed=25)
    body = perform(g, client.challenge())
    tags = bytearray(unb64(body["image_hdr_tags"], "x"))
    tags[-1] ^= 1
    assert refused(client, {**body, "image_hdr_tags": b64(bytes(tags))})[0] == "image_hdr_tags"
    body = perform(g, client.challenge())
    assert refused(client, {**body, "user_data": b64(b"someone else")})[0] == "user_data"
    body = perform(g, client.challenge())
    assert refused(client, {**body, "cuid": b64(bytes(16))})[0] == "cuid"
    body = perform(g, client.challenge())
    assert refused(client, {**body, "measurement": b64(bytes(64))})[0] == "measurement"
    body = perform(g, client.challenge())
    forged = bytearray(unb64(body["encr_measurement_key"], "x"))
    forged[20] ^= 1
    assert refused(client, {**body, "encr_measurement_key": b64(bytes(forged))})[0] == "encr_measurement_key"
    assert refused(client, {**body, "cuid": "not base64!"})[::2] == ("cuid", 400)
    body = perform(g, client.challenge(), evidence=False)
    assert refused(client, body)[0] == "evidence"  # the policy requires signed evidence
    body = perform(g, client.challenge(), user=b"other agent")
    assert refused(client, body)[0] == "user_data"


def test_hmac_only_policy_and_evidence_chain_failures(policy) -> None:
    lax = dataclasses.replace(policy, require_evidence=False)
    v = Verifier(lax, rng=c.DeterministicRng("lax"))
    g = LocalSecureGuest("zuv-demo", IMAGE, seed=26)
    ch = v.challenge()
    assert v.attest(perform(g, ch, evidence=False))["status"] == "ok"
    g_bad = LocalSecureGuest("zuv-demo", OTHER_IMAGE, seed=27)
    with pytest.raises(Refusal) as exc:
        v.attest(perform(g_bad, v.challenge(), evidence=False))
    assert exc.value.field == "measurement"  # without evidence the HMAC can only say "measurement"
    other_root = pki.create_pki(
        c.DeterministicRng("other root"), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    )
    strict = dataclasses.replace(policy, roots=[other_root.root_cert])
    v = Verifier(strict, rng=c.DeterministicRng("strict"))
    with pytest.raises(Refusal) as exc:
        v.attest(perform(g, v.challenge()))
    assert exc.value.field == "certificate_chain"
    v = Verifier(
        policy, rng=c.DeterministicRng("late"), now=lambda: dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc)
    )
    with pytest.raises(Refusal) as exc:
        v.attest(perform(g, v.challenge()))
    assert exc.value.field == "certificate_chain" and "expired" in exc.value.reason


def test_http_surface(env) -> None:
    client, v, _ = env
    ref = client.reference()
    assert (
        ref["tag"] == v.policy.tags.tag.hex() and ref["secrets"] == ["disk-key"] and ref["require_evidence"]
    )
    req = urllib.request.Request(client.url + "/attest", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=30)  # as VerifierClient
    assert exc.value.code == 400 and json.loads(exc.value.read())["field"] == "body"
    with pytest.raises(ValueError, match="loopback"):
        VerifierService(v, host="0.0.0.0")

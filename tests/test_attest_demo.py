"""The attestation demo end to end: the C guest attests through the mailbox, gets the disk key, decrypts its
blob; refusals for a tampered image, a stale nonce, a replay, another machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.attest import demo as D
from emulator.attest.client import VerifierClient
from emulator.attest.verifier import Verifier, VerifierService
from emulator.cli import main as zuv_main
from firmware import crypto as c

REPO = Path(__file__).resolve().parents[1]


def test_blob_header_and_image_are_reproducible() -> None:
    assert (REPO / "guests" / "attest_demo" / "blob.h").read_text() == D.blob_header()
    assert D.DEMO_IMAGE.read_bytes() == D.build_attest_image()
    iv, ct, tag = D.encrypted_blob()
    assert c.aes_gcm_open(D.demo_disk_key(), iv, b"", ct, tag) == D.PLAINTEXT


def test_genuine_guest_unlocks_and_another_machine_cannot_attest() -> None:
    image = D.DEMO_IMAGE.read_bytes()
    v = Verifier(D.demo_policy(image), rng=c.DeterministicRng("demo test"))
    with VerifierService(v) as svc:
        relay = D.Relay(VerifierClient(svc.url))
        run = D.run_guest(relay, image)
        assert run.unlocked, run.console.decode(errors="replace")
        assert b"disk unlocked: " + D.PLAINTEXT in run.console
        assert relay.answer is not None and relay.answer["claims"]["user_data"] == D.AGENT_ID.hex()
        # the same guest built for zuv-other boots there, but the challenge is sealed for zuv-demo's host key
        other = D.build_attest_image(machines=("zuv-other",))
        run = D.run_guest(D.Relay(VerifierClient(svc.url)), other, machine="zuv-other")
        assert b"Retrieve Attestation Measurement failed: rc 0x10c" in run.console and run.exit_code == 1
    assert [e["status"] for e in v.log] == ["ok"]


def test_zuv_verifier_demo_refuses_with_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert zuv_main(["verifier", "demo"]) == 0
    out = capsys.readouterr().out
    assert "disk unlocked: customer ledger #4711" in out
    assert (
        "attestation refused: pld: the guest runs another image than the reference (pld, tag differ)" in out
    )
    assert "attestation refused: nonce: the Ultravisor measured nonce" in out
    assert "attestation refused: nonce: unknown or already used challenge: a replayed response" in out
    assert out.count("as expected") == 4 and "UNEXPECTED" not in out

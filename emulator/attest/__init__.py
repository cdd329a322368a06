"""Attestation and secret tools of zuv: pvattest/pvsecret CLIs, attestation keys, evidence, verifier.

The pvattest/pvsecret-shaped CLIs, attestation-key issuing, evidence checks, the relying-party verifier
service and its client.
"""

"""Client of the verifier service (``emulator.attest.verifier``) over HTTP on loopback.

It fetches a challenge and submits an attestation response.

The messages are JSON shaped like Trustee's IBM SE verifier: ``SeAttestationRequest`` (the challenge)
and ``SeAttestationResponse`` (what the guest's agent sends back), byte fields in base64.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["VerifierClient", "VerifierRefused", "VerifierError"]


class VerifierError(Exception):
    """The service could not be reached or answered something that is not its protocol."""


class VerifierRefused(Exception):
    """The verifier refused the attestation: ``field`` names what did not match, ``reason`` says how."""

    def __init__(self, field: str, reason: str, status: int = 403) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


class VerifierClient:
    """Talks to one verifier service.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8080``.
        timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - loopback URL
                return self._json(resp.read())
        except urllib.error.HTTPError as e:
            answer = self._json(e.read())
            raise VerifierRefused(
                str(answer.get("field", "?")), str(answer.get("reason", e.reason)), e.code
            ) from None
        except (urllib.error.URLError, OSError) as e:
            raise VerifierError(f"verifier at {self.url} unreachable: {e}") from None

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            out = json.loads(raw)
        except ValueError:
            raise VerifierError("the verifier's answer is not JSON") from None
        if not isinstance(out, dict):
            raise VerifierError("the verifier's answer is not a JSON object")
        return out

    def challenge(self) -> dict[str, Any]:
        """A fresh challenge (``SeAttestationRequest``)."""
        return self._post("/challenge", None)

    def attest(self, response: dict[str, Any]) -> dict[str, Any]:
        """Submit a ``SeAttestationResponse``; the verifier's answer (claims and released secrets).

        Raises:
            VerifierRefused: the attestation did not match (or was malformed: status 400).
        """
        return self._post("/attest", response)

    def reference(self) -> dict[str, Any]:
        """The reference values the verifier checks against."""
        req = urllib.request.Request(self.url + "/reference", method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - loopback URL
                return self._json(resp.read())
        except (urllib.error.URLError, OSError) as e:
            raise VerifierError(f"verifier at {self.url} unreachable: {e}") from None

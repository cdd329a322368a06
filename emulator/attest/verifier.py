"""A relying party for labs: attestation challenges, evidence checks, secrets released on success.

The verifier checks the evidence against reference values for one SE image and releases secrets (as add-secret
requests) only on success; it is served over HTTP on loopback.

Protocol (JSON, byte fields base64; the shape of Trustee's IBM SE verifier):

``POST /challenge`` -> ``SeAttestationRequest``::

    {"request_blob": ARCB, "measurement_size": 64, "additional_size": 64,
     "encr_measurement_key": ..., "encr_request_nonce": ..., "image_hdr_tags": PLD||ALD||TLD||tag}

``POST /attest`` with ``SeAttestationResponse`` (the challenge's ``encr_*`` and ``image_hdr_tags`` echoed)::

    {"measurement", "additional_data", "user_data", "cuid", "encr_measurement_key",
     "encr_request_nonce", "image_hdr_tags", "evidence" (zuv: the signed evidence, optional)}

-> 200 ``{"status": "ok", "claims": {...}, "secrets": [{"name", "type", "asrcb"}]}`` or
403 ``{"status": "refused", "field": ..., "reason": ...}`` (400 for a malformed body).

Where Trustee encrypts the measurement key and nonce to its own RSA key, this verifier seals them with
AES-256-GCM under a key that never leaves the process (one process issues and checks). Each challenge
is valid once and for ``ttl`` seconds: a replayed response finds its nonce consumed. The released
secrets are add-secret requests bound to the reference image's tags and to the attested guest
instance (CUID), sealed only for the host key that opened the request: the untrusted path back to the
guest cannot read them, and no other guest or machine can add them.

Checks of ``/attest``, first failure reported: body format; ``encr_*`` open (``encr_measurement_key``
/ ``encr_request_nonce``); the challenge exists, is unused and fresh (``nonce``); ``image_hdr_tags`` is
the reference (``image_hdr_tags``); then ``emulator.attest.evidence.check_attestation`` (evidence chain
and signatures, nonce, image, CUID, user data, measurement); ``image_phkh`` / ``attestation_phkh`` are
hashes of the host keys the challenge was made for; user data as configured (``user_data``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from cryptography import x509

from emulator.attest.evidence import AttestationMismatch, check_attestation
from firmware import attestation as A
from firmware.crypto import (
    CryptoError,
    EllipticCurvePublicKey,
    Rng,
    Secret,
    SystemRng,
    aes_gcm_open,
    aes_gcm_seal,
    constant_time_eq,
    phkh,
)

__all__ = ["ReleasedSecret", "VerifierPolicy", "Verifier", "Refusal", "VerifierService", "b64", "unb64"]

log = logging.getLogger("emulator.attest.verifier")

DEFAULT_PAF: Final = A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH
_LABEL_KEY: Final = b"zuv verifier: encr_measurement_key v1"
_LABEL_NONCE: Final = b"zuv verifier: encr_request_nonce v1"


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(bytes(data)).decode()


def unb64(text: object, name: str) -> bytes:
    """Decode a base64 field; ``Refusal`` (status 400) naming the field otherwise."""
    if not isinstance(text, str):
        raise Refusal(name, "missing or not a base64 string", 400)
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(name, "not valid base64", 400) from None


class Refusal(Exception):
    """The verifier refuses: which field, why, and the HTTP status (403 mismatch, 400 malformed)."""

    def __init__(self, field: str, reason: str, status: int = 403) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status

    def answer(self) -> dict[str, Any]:
        """The JSON body of the refusal."""
        return {
            "status": "refused" if self.status == 403 else "error",
            "field": self.field,
            "reason": self.reason,
        }


@dataclass(frozen=True, repr=False)
class ReleasedSecret:
    """A secret the verifier releases after a successful attestation (value never in reprs)."""

    name: str
    type: int
    value: Secret

    def __repr__(self) -> str:
        return f"ReleasedSecret({self.name!r}, type={self.type:#x})"


@dataclass(repr=False)
class VerifierPolicy:
    """What the relying party expects and releases.

    Attributes:
        tags: the reference image's PLD/ALD/TLD/tag.
        host_keys: host keys of the machines the image may run on (challenges are sealed for them).
        roots, cas, crls: trust anchors, CA certificates and CRLs for the evidence chain.
        secrets: what to release on success.
        require_evidence: refuse responses without zuv's signed evidence.
        user_data: exact user data the guest must bind (None: any).
        cck: the image's CCK, to derive the extension secret of released requests (None: zeros).
        ttl: seconds a challenge stays valid.
        paf: attestation flags of the challenges (nonce required).
    """

    tags: A.BootHdrTags
    host_keys: Sequence[EllipticCurvePublicKey]
    roots: Sequence[x509.Certificate] = ()
    cas: Sequence[x509.Certificate] = ()
    crls: Sequence[x509.CertificateRevocationList] = ()
    secrets: Sequence[ReleasedSecret] = ()
    require_evidence: bool = True
    user_data: bytes | None = None
    cck: Secret | None = None
    ttl: float = 300.0
    paf: int = DEFAULT_PAF
    name: str = "image"

    def __post_init__(self) -> None:
        if not self.paf & A.PAF_NONCE:
            raise ValueError("challenges need a nonce (paf bit 1)")
        if not self.host_keys:
            raise ValueError("the verifier needs the host key of at least one machine")

    def __repr__(self) -> str:
        return f"VerifierPolicy({self.name!r}, machines={len(self.host_keys)}, secrets={len(self.secrets)})"


@dataclass
class _Challenge:
    nonce: bytes
    issued: float
    paf: int


@dataclass
class Verifier:
    """The verifier's logic (no network): ``challenge`` and ``attest``.

    Args:
        policy: reference values and secrets.
        rng: randomness of requests and the sealing key.
        clock: monotonic seconds (challenge expiry); ``now``: wall time for certificate checks.
    """

    policy: VerifierPolicy
    rng: Rng = field(default_factory=SystemRng)
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.timezone.utc)

    def __post_init__(self) -> None:
        self._seal_key = Secret(self.rng.random_bytes(32), "verifier sealing key")
        self._open: dict[bytes, _Challenge] = {}
        self._lock = threading.Lock()
        self.log: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"Verifier({self.policy!r}, open_challenges={len(self._open)})"

    def _seal(self, label: bytes, data: bytes) -> bytes:
        iv = self.rng.random_bytes(12)
        ct, tag = aes_gcm_seal(self._seal_key, iv, label, data)
        return iv + ct + tag

    def _unseal(self, label: bytes, blob: bytes, name: str) -> bytes:
        if len(blob) < 28:
            raise Refusal(name, "too short to be sealed by this verifier")
        try:
            return aes_gcm_open(self._seal_key, blob[:12], label, blob[12:-16], blob[-16:])
        except CryptoError:
            raise Refusal(
                name, "not sealed by this verifier (forged or from another verifier instance)"
            ) from None

    def challenge(self) -> dict[str, Any]:
        """A fresh ``SeAttestationRequest``."""
        p = self.policy
        req = A.build_arcb(list(p.host_keys), rng=self.rng, paf=p.paf)
        opened = A.open_arcb(req.data, req.protection_key)
        assert opened.nonce is not None
        with self._lock:
            now = self.clock()
            for n in [n for n, c in self._open.items() if now - c.issued > p.ttl]:
                del self._open[n]
            self._open[opened.nonce] = _Challenge(opened.nonce, now, p.paf)
        return {
            "request_blob": b64(req.data),
            "measurement_size": A.MEASUREMENT_SIZE,
            "additional_size": A.additional_data_size(p.paf),
            "encr_measurement_key": b64(self._seal(_LABEL_KEY, opened.measurement_key.expose())),
            "encr_request_nonce": b64(self._seal(_LABEL_NONCE, opened.nonce)),
            "image_hdr_tags": b64(p.tags.pack()),
        }

    def attest(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a ``SeAttestationResponse``; the success answer with the released secrets.

        Raises:
            Refusal: the first check that failed (module docstring).
        """
        try:
            out = self._attest(body)
        except Refusal as r:
            self.log.append({"status": "refused", "field": r.field, "reason": r.reason})
            log.info("attestation refused: %s: %s", r.field, r.reason)
            raise
        self.log.append({"status": "ok", "cuid": out["claims"]["cuid"]})
        return out

    def _attest(self, body: dict[str, Any]) -> dict[str, Any]:
        p = self.policy
        if not isinstance(body, dict):
            raise Refusal("body", "not a JSON object", 400)
        f = {
            name: unb64(body.get(name), name)
            for name in ("measurement", "additional_data", "user_data", "cuid", "encr_measurement_key",
                         "encr_request_nonce", "image_hdr_tags")
        }  # fmt: skip
        evidence = unb64(body["evidence"], "evidence") if body.get("evidence") is not None else None
        meas_key = self._unseal(_LABEL_KEY, f["encr_measurement_key"], "encr_measurement_key")
        nonce = self._unseal(_LABEL_NONCE, f["encr_request_nonce"], "encr_request_nonce")
        with self._lock:
            ch = self._open.pop(nonce, None)  # one use only, whatever the outcome
        if ch is None:
            raise Refusal("nonce", "unknown or already used challenge: a replayed response")
        if self.clock() - ch.issued > p.ttl:
            raise Refusal("nonce", f"the challenge expired ({p.ttl:.0f} s)")
        if not constant_time_eq(f["image_hdr_tags"], p.tags.pack()):
            raise Refusal("image_hdr_tags", "the echoed image tags are not the reference image's")
        try:
            result = check_attestation(
                tags=p.tags, measurement_key=Secret(meas_key, "measurement key"), nonce=nonce, paf=ch.paf,
                measurement=f["measurement"], cuid=f["cuid"], user_data=f["user_data"],
                additional=f["additional_data"], evidence=evidence, roots=p.roots, cas=p.cas, crls=p.crls,
                now=self.now(), require_evidence=p.require_evidence,
            )  # fmt: skip
        except AttestationMismatch as m:
            raise Refusal(m.field, m.reason) from None
        known = {phkh(k): k for k in p.host_keys}
        for item in ("image_phkh", "attestation_phkh"):
            h = result.additional.get(item)
            if h is not None and h not in known:
                raise Refusal(
                    item, f"host key {h.hex()[:16]}... is not one of the machines this verifier trusts"
                )
        if p.user_data is not None and not constant_time_eq(result.user_data, p.user_data):
            raise Refusal("user_data", "the guest bound other user data than the policy requires")
        machine_key = known.get(result.additional.get("attestation_phkh", b""))
        seal_for = [machine_key] if machine_key is not None else list(p.host_keys)
        ext = A.extension_secret_from_cck(p.cck, p.tags.tag) if p.cck is not None else None
        secrets = []
        for s in p.secrets:
            req = A.build_asrcb(
                seal_for,
                p.tags,
                rng=self.rng,
                secret_type=s.type,
                value=s.value,
                secret_id=A.secret_id(s.name),
                cuid=result.cuid,
                extension_secret=ext,
            )
            secrets.append({"name": s.name, "type": s.type, "asrcb": b64(req.data)})
        return {"status": "ok", "claims": result.claims(), "secrets": secrets}

    def reference(self) -> dict[str, Any]:
        """The reference values (no secrets)."""
        p = self.policy
        return {
            "image": p.name,
            "pld": p.tags.pld.hex(),
            "ald": p.tags.ald.hex(),
            "tld": p.tags.tld.hex(),
            "tag": p.tags.tag.hex(),
            "host_key_hashes": [phkh(k).hex() for k in p.host_keys],
            "require_evidence": p.require_evidence,
            "secrets": [s.name for s in p.secrets],
        }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the service logs through logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """GET /reference, /health."""
        if self.path == "/reference":
            self._send(200, self.server.verifier.reference())
        elif self.path == "/health":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"status": "error", "field": "path", "reason": f"no {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """POST /challenge, /attest."""
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if not 0 <= n <= 1 << 20:
                raise Refusal("body", "too large", 400)
            raw = self.rfile.read(n)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise Refusal("body", "not JSON", 400) from None
            if self.path == "/challenge":
                self._send(200, self.server.verifier.challenge())
            elif self.path == "/attest":
                self._send(200, self.server.verifier.attest(body))
            else:
                self._send(404, {"status": "error", "field": "path", "reason": f"no {self.path}"})
        except Refusal as r:
            self._send(r.status, r.answer())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    verifier: Verifier


class VerifierService:
    """The verifier behind HTTP on a loopback address.

    Args:
        verifier: the logic.
        host: loopback address to bind (only 127.0.0.1 / ::1 / localhost).
        port: TCP port; 0 picks a free one (see ``url``).
    """

    def __init__(self, verifier: Verifier, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the lab verifier binds loopback only")
        self.verifier = verifier
        self._server = _Server((host, port), _Handler)
        self._server.verifier = verifier
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the service."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> VerifierService:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="zuv-verifier", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> VerifierService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

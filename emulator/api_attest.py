"""The attestation and secret-release flow of the public API (``emulator.api`` re-exports it): the
relying party (``zuv verifier``'s demo policy on loopback) and the attestation demo guest, the host playing
the untrusted relay between them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from emulator.hypervisor.boot import DEMO_IMAGE

if TYPE_CHECKING:
    from emulator.api import UvLogEntry

__all__ = ["RelyingParty", "AttestOutcome", "ATTEST_IMAGE"]

#: The bundled attestation demo image (``guests/attest_demo``).
ATTEST_IMAGE: Final = DEMO_IMAGE.with_name("attest_demo.se")


@dataclass(frozen=True)
class AttestOutcome:
    """One boot of the attestation demo guest: its console, whether it got its key, the verifier's refusal."""

    console: bytes
    unlocked: bool
    refused_field: str | None
    refused_reason: str | None
    sent: dict[str, Any] | None  # what the (untrusted) relay sent the verifier
    answer: dict[str, Any] | None  # what the verifier answered (secrets as add-secret requests)
    uv_log: tuple[UvLogEntry, ...] = ()  # the boot's UV calls, host and guest (draw them: draw_uv_calls)



class RelyingParty:
    """The attestation demo's relying party (``zuv verifier``'s demo policy, on loopback) and the demo guest
    (``guests/attest_demo``) booted on zuv-demo, the host playing the untrusted relay between them.

    Args:
        image: the reference SE image whose measurement the verifier expects (default ``ATTEST_IMAGE``).

    Example::

        >>> from emulator.api import RelyingParty
        >>> with RelyingParty() as rp:
        ...     first = rp.boot()
        ...     again = rp.boot("replay", replay=first.sent)
        >>> first.unlocked, again.unlocked, again.refused_field
        (True, False, 'nonce')
    """

    def __init__(self, image: str | Path | None = None) -> None:
        from emulator.attest.client import VerifierClient
        from emulator.attest.demo import demo_policy
        from emulator.attest.verifier import Verifier, VerifierService

        self.reference = Path(image).read_bytes() if image is not None else ATTEST_IMAGE.read_bytes()
        self._svc = VerifierService(Verifier(demo_policy(self.reference)), port=0)
        self._svc.__enter__()
        self._client = VerifierClient(self._svc.url)

    def __enter__(self) -> RelyingParty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the verifier service."""
        self._svc.__exit__(None, None, None)

    def boot(self, mode: str = "honest", *, replay: dict[str, Any] | None = None, image: bytes | None = None,
             time_limit: float = 60.0) -> AttestOutcome:  # fmt: skip
        """Boot the attestation guest once. ``mode``: ``honest``; ``stale-nonce`` (the guest gets an earlier
        challenge's request, the answer goes out with a newer challenge's fields); ``replay`` (the relay
        sends ``replay``, an earlier ``AttestOutcome.sent``, instead of the guest's answer). ``image``: the
        SE image to boot (default: the reference)."""
        from emulator.api import _log_entry
        from emulator.attest.demo import Relay, run_guest

        relay = Relay(self._client, mode, replay_body=replay)
        log: list[UvLogEntry] = []
        r = run_guest(relay, image if image is not None else self.reference, time_limit=time_limit,
                      uv_events=lambda ev: log.append(_log_entry(len(log) + 1, ev)))  # fmt: skip
        ref = relay.refusal
        return AttestOutcome(r.console, r.unlocked, ref.field if ref else None, ref.reason if ref else None,
                             relay.sent, relay.answer, tuple(log))  # fmt: skip

"""Issue 18, class 4: UV page commands race a secure guest that rewrites a canary page in a tight loop on
another thread (``guests/canary``). Every command that takes a page from the guest first takes it from
every CPU (``PhysicalMemory.quiesced``), so the host is never handed a frame the guest can still store
into: no canary byte in any host-owned frame, and no crash. ``bench/bench_trust.py`` runs 10,000 cycles."""

from __future__ import annotations

from emulator.api import Host
from emulator.attacks.canary import CANARY, boot_canary, canary_bytes, canary_int, race


def test_canary_search_finds_every_canary_word_and_nothing_else() -> None:
    for i in (0, 5, 11, 0x10):
        w = (CANARY ^ i).to_bytes(8, "big")
        assert canary_bytes(b"x" * 13 + w + b"y") == 18  # three six-byte windows of the word
        assert canary_bytes(w[::-1]) == 18  # little-endian too
        assert canary_bytes(w[1:7]) == 6
        assert canary_bytes(f"r6 = {CANARY ^ i:#018x}") > 0  # in a message
        assert canary_int(CANARY ^ i) and canary_int((CANARY ^ i) & 0xFFFFFFFF)
    assert canary_bytes(bytes(range(256)) * 16) == 0
    assert not canary_int(0) and not canary_int(0x1234)


def test_export_import_destroy_cycles_race_the_canary_loop() -> None:
    with Host(seed=5) as host:
        g, hot, cold = boot_canary(host)
        assert g.page_state(hot) == g.page_state(cold) == "secure"
        r = race(host, g, hot, cold, cycles=300, destroy_every=10)
        assert r.guest_errors == [] and r.guest_detail == "", r
        assert r.cycles == 300 and r.exports >= 200 and r.destroys >= 20 and r.looks >= 200, r
        assert r.guest_yields > 0, "the guest did not run during the race"
        assert r.leaked == 0, r
        # only the refusals the race makes legitimate: an export of a page the destroy left non-secure,
        # an import of a page the guest's own fault had brought back
        assert set(r.refused) <= {"export rc 0x0107", "import rc 0x0104"}, r.refused
        # the guest goes on
        assert g.run(time_limit=0.1).reason == "time limit reached"
        assert g.cpu_detail == ""
        assert g.page_state(hot) == "secure"

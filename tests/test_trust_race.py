"""Issue 18, class 4: UV page commands race a secure guest that rewrites a canary page in a tight loop on
another thread (``guests/canary``). Every command that takes a page from the guest first takes it from
every CPU (``PhysicalMemory.quiesced``), so the host is never handed a frame the guest can still store
into: no canary byte in any host-owned frame, and no crash. ``bench/bench_trust.py`` runs 10,000 cycles."""

from __future__ import annotations

import threading
import time

from emulator.api import Host, _machine_of
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
        assert r.cycles >= 300 and r.exports >= 200 and r.destroys >= 20 and r.looks >= 200, r
        assert r.guest_yields > 0, "the guest did not run during the race"
        assert r.leaked == 0, r
        # only the refusals the race makes legitimate: an export of a page the destroy left non-secure,
        # an import of a page the guest's own fault had brought back
        assert set(r.refused) <= {"export rc 0x0107", "import rc 0x0104"}, r.refused
        # the guest goes on
        assert g.run(time_limit=0.1).reason == "time limit reached"
        assert g.cpu_detail == ""
        assert g.page_state(hot) == "secure"


def test_imports_race_a_normal_guest_storing_into_the_frame() -> None:
    """Convert to Secure Storage holds every CPU too: the canary guest runs as a *normal* VM storing its
    canary into its hot page in a loop, while the host maps that frame under a page of the secure guest and
    imports it (a fresh page: the Ultravisor clears it), then destroys it again. While the frame is secure it
    must hold none of the normal guest's stores (checked as firmware, with every CPU held). Without the
    shoot-down the owner change flushed the running vCPU's TLB from the host's thread: unicorn crashed."""
    from emulator.attacks.canary import _KERNEL
    from emulator.hw.memory import OWNER_HOST

    with Host(seed=9) as host:
        sg, _hot, _cold = boot_canary(host)
        ng = host.boot(_KERNEL, until=b"canary: hot ")  # the same program as a normal guest
        frame = ng.frame(int(ng.console.split(b"canary: hot ")[1].split()[0], 16))
        page = sg.pages("host")[-1]
        mem = _machine_of(host).memory  # the referee's firmware view, for the check only
        stop = threading.Event()
        errors: list[BaseException] = []
        yields = [0]
        ng.on_exit(lambda ex: yields.__setitem__(0, yields[0] + 1))

        def run_normal_guest() -> None:
            try:
                while not stop.is_set():
                    ng.run(time_limit=0.02)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t = threading.Thread(target=run_normal_guest)
        t.start()
        checks = found = 0
        try:
            for _ in range(200):
                sg.remap(page, frame)
                assert sg.import_page(page).ok
                time.sleep(0.0002)  # the normal guest runs on meanwhile
                with mem.quiesced():
                    if mem.owner[frame >> 12] != OWNER_HOST:
                        checks += 1
                        found += canary_bytes(mem.read(frame, 4096))
                assert sg.destroy_page(page).ok
        finally:
            stop.set()
            t.join(timeout=30)
        assert not t.is_alive() and not errors, errors
        assert yields[0] > 0, "the normal guest did not run during the race"
        assert checks >= 100 and found == 0, (checks, found)

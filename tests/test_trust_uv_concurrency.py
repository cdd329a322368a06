"""Issue 18, class 4: UV page commands against a vCPU running the secure guest on another thread. Export and
Destroy take the page from every CPU first (``PhysicalMemory.quiesced``: the running CPU leaves unicorn and
waits, its TLB is flushed while it does not run): the host never gets a frame holding plaintext."""

from __future__ import annotations

import threading

from emulator.api import Host
from emulator.attacks.referee import secret_bytes


def test_export_import_destroy_cycles_while_the_guest_runs_on_another_thread() -> None:
    with Host(seed=11) as host:
        g = host.boot()
        s = g.secret_page
        stop = threading.Event()
        errors: list[BaseException] = []

        def run_guest() -> None:
            try:
                while not stop.is_set():
                    g.run(time_limit=0.05)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t = threading.Thread(target=run_guest)
        t.start()
        leaked = 0
        others = [a for a in g.pages("secure") if a != s][:8]
        try:
            for i in range(150):
                assert g.export(s).ok
                leaked += secret_bytes(host.read(g.frame(s), 4096))
                assert g.import_page(s).ok
                if i % 20 == 0 and others:
                    a = others.pop()
                    if g.destroy_page(a).ok:
                        leaked += secret_bytes(host.read(g.frame(a), 4096))
        finally:
            stop.set()
            t.join(timeout=30)
        assert not t.is_alive() and not errors, errors
        assert leaked == 0
        assert g.page_state(s) == "secure"

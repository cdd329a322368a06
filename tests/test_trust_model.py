"""The model-based random hypervisor (issue 18, class 5; ``tests/trust_model.py``), a small run with a fixed
seed: no canary byte of the secure guest ever reaches anything the host obtains. ``bench/bench_trust.py``
runs 100,000 operations."""

from __future__ import annotations

from hypothesis import seed
from hypothesis.stateful import run_state_machine_as_test
from trust_model import STATS, Model, model_settings


def test_no_canary_reaches_the_host_under_random_host_operations() -> None:
    STATS.__init__()  # type: ignore[misc]
    Model.seed = 7
    factory = seed(20261207)(lambda: Model())
    run_state_machine_as_test(factory, settings=model_settings(max_examples=8, steps=30, derandomize=False))
    assert STATS.leaked == 0
    assert STATS.operations >= 100, STATS  # the machine did run its rules
    kinds = {k.split(" ")[0] for k in STATS.kinds}
    assert {"uvc", "host", "helper", "sie", "reset"} <= kinds, STATS.kinds

"""Fixtures shared by test modules."""

import pytest


@pytest.fixture(params=["switched", "stock"])
def engine_mode(request, monkeypatch):
    """Run the test on CPUs with unicorn's invalidation slot switched (``emulator.hw.engine``, the default) and
    on CPUs with the engine as unicorn made it."""
    from emulator.hw import cpu as cpu_mod

    if request.param == "stock":
        monkeypatch.setattr(cpu_mod, "switch_for", lambda uc: None)
    return request.param

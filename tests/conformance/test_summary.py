"""Runs last (plugin.py): every call of the run, per operation, and not one unexcused mismatch."""

from __future__ import annotations

import pytest

from tests.conformance.plugin import layer_of


def test_every_emulator_call_of_the_run_conforms_or_is_excused(request: pytest.FixtureRequest) -> None:
    layer = layer_of(request.config)
    layer.judge_pending()
    if not layer.tallies:
        pytest.skip("no emulator calls in this run: run it with the rest of the suite")
    print(layer.summary())
    assert layer.mismatches == []
    seen = sum(t.seen for t in layer.tallies.values())
    judged = sum(sum(t.outcomes.values()) for t in layer.tallies.values())
    assert seen == judged > 0

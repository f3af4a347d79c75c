"""Shared fixtures (kept small): the four firing-regime presets simulated once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def preset_results():
    """The docs/reference.md §4 presets on the discrete model (Euler, dt = 0.05, 12000 t_u), by name."""
    from mtc_analog.neuron.regimes import PRESETS, simulate_presets

    return {r.preset.name: r for r in simulate_presets(PRESETS.values())}

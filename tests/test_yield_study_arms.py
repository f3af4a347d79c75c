"""The yield study's arms (benchmarks/yield_study.py) are valid training recipes: every arm builds its TrainConfig
for both network sizes, fine-tuning arms start from an arm that exists, and scaled draws are the target's spreads
scaled. The study itself (minutes of training, sky130 Monte Carlos) is a benchmark, not a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mtc_analog.hardware import load_target
from mtc_analog.hardware.mismatch import statistics_for_target

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "yield_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("yield_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_arm_is_a_valid_recipe(study):
    assert study.COMPENSATED <= set(study.ARMS)
    for arm, recipe in study.ARMS.items():
        assert recipe.get("init_arm", arm) in study.ARMS, f"{arm} fine-tunes an unknown arm"
        for size in ("demo", "64"):
            _, _, train_cfg = study.configs(size, arm, 0)
            assert train_cfg.epochs >= 1 and train_cfg.lr > 0, (arm, size)
            assert train_cfg.mismatch_aware == bool(recipe.get("mismatch_aware", False)), (arm, size)


def test_scaled_draws_are_the_targets_spreads_scaled(study):
    base = statistics_for_target("sky130", load_target("sky130"))
    _, _, half = study.configs("demo", "aware_swing_half", 0)
    assert half.mismatch_sigma_rel == pytest.approx(0.5 * base.sigma_rel)
    assert half.mismatch_sigma_offset == pytest.approx(0.5 * base.sigma_offset)
    _, _, full = study.configs("demo", "aware_swing", 0)
    assert full.mismatch_sigma_rel is None and full.mismatch_sigma_offset is None
    _, _, tuned = study.configs("demo", "aware_swing_ft", 0)
    _, _, control = study.configs("demo", "naive_swing_ft", 0)
    assert (tuned.epochs, tuned.lr) == (control.epochs, control.lr)  # the control has the same budget
    assert tuned.swing_penalty == control.swing_penalty == 1.0

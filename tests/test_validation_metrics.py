"""Fidelity metrics on synthetic cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.validation.align import model_time_grid, resample
from mtc_analog.validation.metrics import (
    coincidence_factor,
    count_coincidences,
    membrane_nrmse,
    signal_nrmse,
    spike_agreement,
)

DT = 0.5
WINDOW = 2 * DT


def _regular_train(period: float, duration: float, phase: float = 1.0) -> np.ndarray:
    return np.arange(phase, duration, period)


def test_identical_trains_give_gamma_one():
    train = _regular_train(10.0, 5000.0)
    assert coincidence_factor(train, train, WINDOW, 5000.0) == pytest.approx(1.0, abs=1e-12)


def test_small_jitter_inside_window_still_gives_one():
    rng = np.random.default_rng(0)
    train = _regular_train(10.0, 5000.0)
    jittered = train + rng.uniform(-0.9 * WINDOW, 0.9 * WINDOW, train.size)
    assert coincidence_factor(train, jittered, WINDOW, 5000.0) == pytest.approx(1.0, abs=1e-12)


def test_shift_beyond_window_gives_about_zero():
    train = _regular_train(10.0, 5000.0)
    shifted = train + 3.0 * WINDOW  # 3 t_u late, 7 t_u before the next spike: no coincidence
    gamma = coincidence_factor(train, shifted, WINDOW, 5000.0)
    # no coincidence at all -> Gamma = -chance/(1-chance) with chance = 2*nu*Delta = 0.2
    assert gamma == pytest.approx(-0.2 / 0.8, abs=1e-3)
    assert gamma < 0.0


def test_independent_poisson_trains_give_about_zero():
    rng = np.random.default_rng(1)
    duration, rate = 200_000.0, 0.02
    gammas = []
    for _ in range(20):
        a = np.sort(rng.uniform(0, duration, rng.poisson(rate * duration)))
        b = np.sort(rng.uniform(0, duration, rng.poisson(rate * duration)))
        gammas.append(coincidence_factor(a, b, WINDOW, duration))
    assert abs(np.mean(gammas)) < 0.02


def test_half_the_spikes_missing():
    train = _regular_train(10.0, 10000.0)
    half = train[::2]
    gamma = coincidence_factor(train, half, WINDOW, 10000.0)
    # N = 1000, N_coinc = 500, chance = 2 * (500/10000) * 1 = 0.1, expected by chance 0.1 * 1000
    assert gamma == pytest.approx((500 - 100) / 750 / 0.9, abs=1e-9)


def test_silent_edge_cases():
    assert coincidence_factor([], [], WINDOW, 100.0) == 1.0
    assert coincidence_factor([10.0, 20.0], [], WINDOW, 100.0) == 0.0
    assert coincidence_factor([], [10.0, 20.0], WINDOW, 100.0) == 0.0
    # window wider than the mean ISI: correction meaningless -> NaN
    assert np.isnan(coincidence_factor([1.0, 2.0], [1.0, 2.0], 30.0, 100.0))


def test_coincidences_are_one_to_one():
    # a burst of three circuit spikes near one model spike counts once
    assert count_coincidences([10.0], [9.8, 10.0, 10.2], 0.5) == 1
    assert count_coincidences([9.8, 10.0, 10.2], [10.0], 0.5) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1000.0), min_size=1, max_size=40, unique=True))
def test_gamma_of_a_train_with_itself_is_one(times):
    train = np.sort(np.array(times))
    gamma = coincidence_factor(train, train, 0.01, 1000.0)
    assert gamma == pytest.approx(1.0, abs=1e-9)


def test_membrane_nrmse_known_values():
    t = np.linspace(0, 20 * np.pi, 4001)
    model = np.stack([np.sin(t), 2 * np.sin(t), np.zeros_like(t)], axis=1)
    circuit = model.copy()
    circuit[:, 0] += 0.1  # RMS error 0.1 against std 1/sqrt(2)
    per, overall = membrane_nrmse(circuit, model)
    assert per[0] == pytest.approx(0.1 * np.sqrt(2), rel=1e-3)
    assert per[1] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(per[2])  # flat model trace: per-neuron value undefined
    # pooled: sqrt(0.01 / (0.5 + 2.0))
    assert overall == pytest.approx(np.sqrt(0.01 / 2.5), rel=1e-3)


def test_signal_nrmse():
    ref = np.sin(np.linspace(0, 10, 1000))
    assert signal_nrmse(ref, ref) == 0.0
    assert signal_nrmse(ref + 0.05 * ref.std(), ref) == pytest.approx(0.05, rel=1e-9)


def test_spike_agreement_excludes_neurons_silent_in_both():
    a = _regular_train(10.0, 1000.0)
    agreement = spike_agreement([a, np.empty(0), a], [a, np.empty(0), np.empty(0)], WINDOW, 1000.0)
    assert agreement.n_silent_both == 1
    assert agreement.gamma.tolist() == [1.0, 1.0, 0.0]
    assert agreement.mean_gamma == pytest.approx(0.5)
    assert agreement.count_error.tolist() == [0, 0, -a.size]
    all_silent = spike_agreement([np.empty(0)], [np.empty(0)], WINDOW, 1000.0)
    assert np.isnan(all_silent.mean_gamma)


def test_resample_onto_model_grid():
    time = np.linspace(0.0, 10.0, 1001)
    values = np.stack([time, 2 * time], axis=1)
    grid = model_time_grid(19, 0.5)
    out = resample(time, values, grid)
    np.testing.assert_allclose(out[:, 0], grid)
    np.testing.assert_allclose(out[:, 1], 2 * grid)
    with pytest.raises(ValueError, match="simulate longer"):
        resample(time, values, model_time_grid(30, 0.5))


# ------------------------------------------------------- tests that kill surviving mutants
# (benchmarks/mutation.py: boundaries and argument checks no other test reached)


def test_zero_duration_or_window_is_refused():
    with pytest.raises(ValueError, match="must be > 0"):
        coincidence_factor([1.0], [1.0], WINDOW, 0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        coincidence_factor([1.0], [1.0], 0.0, 10.0)


def test_shape_mismatches_are_named():
    with pytest.raises(ValueError, match="equal shape"):
        membrane_nrmse(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="equal shape"):
        membrane_nrmse(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="2 model trains vs 3 circuit trains"):
        spike_agreement([np.array([1.0])] * 2, [np.array([1.0])] * 3, WINDOW, 10.0)
    with pytest.raises(ValueError, match="3 model trains vs 2 circuit trains"):
        spike_agreement([np.array([1.0])] * 3, [np.array([1.0])] * 2, WINDOW, 10.0)


def test_signal_nrmse_of_a_unit_std_reference():
    # std exactly 1 is an ordinary reference (only a flat one is undefined)
    assert signal_nrmse(np.zeros(2), np.array([-1.0, 1.0])) == pytest.approx(1.0)
    assert np.isnan(signal_nrmse(np.zeros(3), np.full(3, 2.0)))

"""Firing regimes (docs/reference.md §4): the presets reproduce their regime; spike/burst detection; the classifier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.errors import InputError
from mtc_analog.neuron import spikes
from mtc_analog.neuron.iv import steady_state_current
from mtc_analog.neuron.regimes import PRESETS, classify_trace, get_preset

# ---------------------------------------------------------------------------------------------
# The presets on the model (simulated once per session in conftest.py)


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_is_classified_as_itself(preset_results, name):
    result = preset_results[name]
    assert result.label == PRESETS[name].expected_label, result.summary()


@pytest.mark.parametrize(("name", "spikes_lo", "spikes_hi", "bursts_lo", "bursts_hi", "last_spike_before"), [
    # docs/reference.md §4 figures (+-20% across integrators); this model, Euler dt = 0.05, gives 198 / 33 / 69 / 25.
    ("tonic_spiking", 160, 240, 0, 0, None),
    ("phasic_spiking", 24, 40, 0, 0, 5000.0),
    ("tonic_bursting", 50, 90, 4, 6, None),
    ("phasic_bursting", 12, 32, 1, 1, 4500.0),
])
def test_preset_counts(preset_results, name, spikes_lo, spikes_hi, bursts_lo, bursts_hi, last_spike_before):
    c = preset_results[name].classification
    assert spikes_lo <= c.spike_count <= spikes_hi
    assert bursts_lo <= c.burst_count <= bursts_hi
    if last_spike_before is not None:
        assert c.spike_times[-1] < last_spike_before


def test_protocol_starts_at_rest_under_i0(preset_results):
    for name, result in preset_results.items():
        preset = result.preset
        assert float(steady_state_current(preset.params, result.u_m[0])) == pytest.approx(preset.i0, abs=1e-10)
        before = result.u_m[result.time < preset.t_step]
        assert np.ptp(before) < 1e-6, f"{name} drifts before the step: it did not start at rest"
        assert result.time[-1] == pytest.approx(preset.t_end)


def test_tonic_bursting_bursts_are_separated_by_long_silences(preset_results):
    c = preset_results["tonic_bursting"].classification
    assert c.bimodal_isi
    gaps = [b.start - a.end for a, b in zip(c.bursts[:-1], c.bursts[1:])]
    intra = np.diff(c.spike_times[c.bursts[0].first_index: c.bursts[0].first_index + c.bursts[0].n_spikes])
    assert min(gaps) > 5 * intra.max()


def test_unknown_preset_is_an_input_error():
    with pytest.raises(InputError, match="tonic_spiking"):
        get_preset("chaotic")


def test_input_current_steps_at_t_step():
    p = get_preset("phasic_spiking").shortened(t_step=1.0, t_end=2.0)
    current = p.input_current()
    assert current.size == 40
    assert np.all(current[:20] == p.i0) and np.all(current[20:] == p.i1)


# ---------------------------------------------------------------------------------------------
# Spike detection


def test_spike_times_are_interpolated():
    t = np.arange(0, 10, 1.0)
    u = np.array([-1, -1, -0.5, 0.5, 1, -1, -1, -0.25, 0.75, -1.0])
    np.testing.assert_allclose(spikes.spike_times(t, u), [2.5, 7.25])


def test_hysteresis_ignores_chatter_at_threshold():
    t = np.arange(8.0)
    u = np.array([-1.0, 0.1, -0.05, 0.1, -0.05, 0.2, -1.0, 0.3])
    assert spikes.spike_times(t, u, hysteresis=0.0).size == 4
    np.testing.assert_allclose(spikes.spike_times(t, u, hysteresis=0.1), [1 / 1.1, 6 + 1 / 1.3])


def test_spike_times_need_matching_shapes():
    with pytest.raises(ValueError):
        spikes.spike_times(np.arange(5.0), np.zeros(4))


def test_burst_isi_threshold_and_grouping():
    assert spikes.burst_isi_threshold(np.full(10, 50.0)) is None
    assert spikes.burst_isi_threshold(np.linspace(59, 88, 30)) is None  # adapting train: no split
    split = spikes.burst_isi_threshold([5, 6, 5, 100, 6, 5, 120])
    assert 6 < split < 100
    times = np.array([0, 5, 10, 110, 116, 121, 241, 300.0])
    groups = spikes.group_spikes(times, split)
    assert [g.n_spikes for g in groups] == [3, 3, 1, 1]
    assert [g.n_spikes for g in spikes.bursts(times)] == [3, 3]


def test_spike_rate_and_counts():
    assert spikes.spike_rate([1, 2, 3, 9], 0, 4) == pytest.approx(0.75)
    u = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]])
    np.testing.assert_array_equal(spikes.upward_crossings(u, 0.0).sum(axis=0), [2, 1])


def test_upward_crossings_have_no_hysteresis_unlike_spike_times():
    # chatter just under the threshold: the grid counter counts every return, spike_times re-arms only
    # after a fall below threshold - hysteresis
    u = np.array([-1.0, 0.5, -0.05, 0.5, -0.05, 0.5])
    assert spikes.upward_crossings(u, 0.0).sum() == 3
    assert spikes.spike_times(np.arange(u.size, dtype=float), u).size == 1


def test_spike_level_is_the_transduction_onset():
    from mtc_analog.network import NetworkConfig

    assert spikes.spike_level(NetworkConfig(transduction="clip", u_th=1.5, u_c=1.0)) == 1.5
    assert spikes.spike_level(NetworkConfig(transduction="sigmoid", u_th=1.5, u_c=1.0)) == 1.0


# ---------------------------------------------------------------------------------------------
# Classifier on synthetic traces (it takes plain arrays, as from ngspice)


def spike_train(t, starts, period, n, base=-2.0, peak=2.4):
    """Narrow spikes of height `peak` on a baseline: n spikes every `period` from each start."""
    u = np.full_like(t, base)
    for s in starts:
        for k in range(n):
            c = s + k * period
            u += (peak - base) * np.exp(-0.5 * ((t - c) / 2.0) ** 2)
    return u


T = np.arange(0, 3000, 0.5)


def test_classifier_silent_and_tonic_and_phasic_spiking():
    assert classify_trace(T, np.full_like(T, -2.0), 500).label == "silent"
    tonic = spike_train(T, [510], 50, 50)
    c = classify_trace(T, tonic, 500)
    assert (c.label, c.spike_count, c.burst_count) == ("tonic_spiking", 50, 0)
    phasic = spike_train(T, [510], 50, 12)
    assert classify_trace(T, phasic, 500).label == "phasic_spiking"
    # A damped ending that settles *above* the troughs is still phasic spiking.
    settle = phasic + np.where(T > 1100, 1.0, 0.0)
    assert classify_trace(T, settle, 500).label == "phasic_spiking"


def test_classifier_bursting():
    tonic_bursts = spike_train(T, [600, 1200, 1800, 2400], 20, 8)
    c = classify_trace(T, tonic_bursts, 500)
    assert (c.label, c.burst_count, c.spike_count) == ("tonic_bursting", 4, 32)
    # One train followed by an after-hyperpolarisation below its troughs: a single burst.
    burst = spike_train(T, [600], 20, 10) - np.where(T > 800, 1.0 * np.exp(-(T - 800) / 400), 0.0)
    c = classify_trace(T, burst, 500)
    assert (c.label, c.burst_count) == ("phasic_bursting", 1)
    assert c.after_hyperpolarisation


def test_classifier_ignores_spikes_before_the_step():
    u = spike_train(T, [100], 50, 5)  # all before t_step
    assert classify_trace(T, u, 500).label == "silent"


def test_classifier_rejects_bad_traces():
    with pytest.raises(ValueError):
        classify_trace(T, np.full(10, 0.0), 500)
    with pytest.raises(ValueError):
        classify_trace(T, np.full_like(T, np.nan), 500)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=2, max_size=200),
       st.lists(st.floats(0.01, 2.0), min_size=199, max_size=199))
def test_spike_times_properties(values, steps):
    """Without hysteresis: one spike per upward crossing, each inside its bracketing interval, sorted.
    With hysteresis: a subset of those."""
    u = np.array(values)
    t = np.concatenate([[0.0], np.cumsum(steps[: u.size - 1])])
    times = spikes.spike_times(t, u, hysteresis=0.0)
    up = np.flatnonzero((u[:-1] < 0) & (u[1:] >= 0))
    assert times.size == up.size
    assert np.all((times >= t[up] - 1e-12) & (times <= t[up + 1] + 1e-12))
    assert np.all(np.diff(times) >= 0)
    assert set(spikes.spike_times(t, u, hysteresis=0.5)) <= set(times)

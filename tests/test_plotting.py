"""Figures a designer reads: the regime figure's zoom panel and the report's worst-neuron figure."""

from __future__ import annotations

import numpy as np

from mtc_analog.neuron.regimes import get_preset, simulate_presets
from mtc_analog.plotting.neuron import ExtraTrace, regimes_figure, zoom_window
from mtc_analog.plotting.validation import worst_neurons


def _tonic(t_end: float = 2600.0):
    # the tonic preset on a shortened protocol: ~48 spikes after the step at t = 200
    return simulate_presets([get_preset("tonic_spiking").shortened(200.0, t_end)])[0]


def test_zoom_window_shows_the_first_spikes_after_the_step():
    result = _tonic()
    spikes = result.classification.spike_times
    assert spikes.size > 12, "the preset must spike for the test to mean anything"
    lo, hi = zoom_window(result, n_spikes=8)
    assert lo < 200.0 < hi  # the step is in view
    assert hi - lo < 0.3 * (result.time[-1] - 200.0)  # a zoom, not the protocol
    inside = spikes[(spikes >= lo) & (spikes <= hi)]
    assert inside.size == 8 and inside[0] == spikes[0]  # exactly the first eight spikes
    # a silent neuron still gets a short window after the step
    silent = simulate_presets([get_preset("tonic_spiking").shortened(200.0, 210.0)])[0]
    lo, hi = zoom_window(silent)
    assert lo < 200.0 < hi <= 210.0 + 1e-9


def test_regime_figure_has_a_zoom_panel_per_regime_holding_both_traces():
    result = _tonic()
    circuit = ExtraTrace("circuit", result.time, result.u_m + 0.05)
    fig = regimes_figure([result], {"tonic_spiking": [circuit]})
    trace, zoom, iv = fig.axes[:3]
    lo, hi = zoom.get_xlim()
    assert (lo, hi) == zoom_window(result)
    assert trace.get_xlim() == (result.time[0], result.time[-1])
    labels = [line.get_label() for line in zoom.get_lines()]
    assert "model" in labels and "circuit" in labels
    # the zoom draws the samples of its window at full resolution (not the thinned protocol)
    model_line = zoom.get_lines()[labels.index("model")]
    n_window = int(np.sum((result.time >= lo) & (result.time <= hi)))
    assert len(model_line.get_xdata()) == n_window
    assert "zoom" in zoom.get_title()


def test_worst_neuron_figure_marks_the_unmatched_spikes_in_its_zoom():
    t = np.linspace(0.0, 40.0, 1601)
    model = np.sin(t)
    circuit = np.sin(t - 0.2)
    panel = {"time": t, "model": model, "circuit": circuit, "zoom": (9.0, 11.0), "label": "layer 0 / neuron 7",
             "model_marks": [10.0], "circuit_marks": [10.2, 30.0]}
    fig = worst_neurons([panel], u_th=0.5)
    context, zoom = fig.axes[:2]
    assert zoom.get_xlim() == (9.0, 11.0) and context.get_title(loc="left") == "layer 0 / neuron 7"
    marks = {line.get_label(): list(line.get_xdata()) for line in zoom.get_lines() if line.get_marker() in ("v", "^")}
    assert marks == {"model spike, none in circuit": [10.0], "circuit spike, none in model": [10.2]}
    context_marks = [line for line in context.get_lines() if line.get_marker() == "^"]
    assert list(context_marks[0].get_xdata()) == [10.2, 30.0]

"""The regime gallery in SPICE: presets in the model and in ngspice, labels and spike agreement."""

from __future__ import annotations

import json

import numpy as np

from mtc_analog.cli.regimes import write_outputs
from mtc_analog.neuron.regimes import PRESETS, simulate_presets
from mtc_analog.validation.regimes import circuit_regimes, format_circuit_table


def test_shortened_presets_agree_between_model_and_circuit(tmp_path):
    # a 1000 t_u stretch after the step keeps the test fast; the full protocol runs in `regimes --spice`
    presets = [PRESETS[name].shortened(t_step=300.0, t_end=1300.0) for name in ("tonic_spiking", "phasic_bursting")]
    results = simulate_presets(presets)
    traces, summary = circuit_regimes(results)
    for result in results:
        circuit = summary[result.preset.name]["circuit"]
        assert circuit["label"] == result.label
        assert abs(circuit["spike_count_error"]) <= 1
        assert result.classification.spike_count >= 5
        # same spikes, same frequency: the first spike after the step within 0.1 t_u, the mean ISI within
        # 0.5 % (the Euler model at dt = 0.05 runs ~0.13 % fast, which over 10000 t_u drifts the phase
        # far beyond a 2 dt window: that is why Gamma is reported with three windows)
        assert abs(circuit["first_spike_shift"]) < 0.1
        assert abs(circuit["isi_relative_error"]) < 0.005
        assert np.isfinite(circuit["gamma"]) and -1.0 <= circuit["gamma"] <= 1.0 + 1e-9
        (trace,) = traces[result.preset.name]
        assert np.all(np.isfinite(trace.u_m)) and trace.time[-1] >= result.preset.t_end * 0.999
    json_path, figure = write_outputs(tmp_path, results, traces, summary)
    data = json.loads(json_path.read_text())
    assert data["regimes"]["tonic_spiking"]["circuit"]["filter"] == "linear"
    assert figure.stat().st_size > 10_000
    assert "tonic_spiking" in format_circuit_table(summary)

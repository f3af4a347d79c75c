"""Each docs/reference.md §4 regime preset, exported as one neuron and simulated by ngspice, behaves like the model.

Shortened protocol (documented, to keep the suite fast): the neuron starts at rest under I0 (an
equilibrium, so the 2000 t_u of waiting before the step are skipped: t_step = 200) and runs 5000 t_u
after the step — enough for ~100 tonic spikes, the whole phasic train / burst, and two tonic bursts.
Spike-time tolerance: every model spike has a circuit spike within ``1 t_u + 1 %`` of the time elapsed
since the step (the gap is the model's Euler discretisation at dt = 0.05, measured <= 0.7 %), and the
spike counts agree within 5 % (at least 1 spike).
"""

from __future__ import annotations

import numpy as np
import pytest

from mtc_analog.hardware import HardwareTarget
from mtc_analog.neuron.regimes import PRESETS, classify_trace, simulate_presets
from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, simulate_protocols

T_STEP, T_END = 200.0, 5200.0
ABS_TOL, REL_TOL = 1.0, 0.01  # [t_u], fraction of the time since the step


@pytest.fixture(scope="module")
def regime_runs():
    presets = [p.shortened(T_STEP, T_END) for p in PRESETS.values()]
    model = simulate_presets(presets)
    setups = [NeuronSetup(p.params, StepProtocol(p.i0, p.i1, p.t_step, p.t_end, p.dt), name=p.name) for p in presets]
    circuit = simulate_protocols(setups, HardwareTarget())
    return {p.name: (p, m, c) for p, m, c in zip(presets, model, circuit)}


@pytest.mark.parametrize("name", list(PRESETS))
def test_circuit_regime_matches_model(regime_runs, name):
    preset, model, (time, u_m, waves) = regime_runs[name]
    assert model.label == preset.expected_label  # the shortened protocol still shows the regime
    circuit = classify_trace(time, u_m, preset.t_step)
    assert circuit.label == model.label
    assert circuit.burst_count == model.classification.burst_count


@pytest.mark.parametrize("name", list(PRESETS))
def test_circuit_spike_times_match_model(regime_runs, name):
    preset, model, (time, u_m, waves) = regime_runs[name]
    model_times = model.classification.spike_times
    circuit_times = classify_trace(time, u_m, preset.t_step).spike_times
    assert abs(len(circuit_times) - len(model_times)) <= max(1, 0.05 * len(model_times))
    gaps = np.array([np.abs(circuit_times - t).min() for t in model_times])
    allowed = ABS_TOL + REL_TOL * (model_times - preset.t_step)
    worst = int(np.argmax(gaps - allowed))
    assert np.all(gaps <= allowed), f"spike at {model_times[worst]:.1f} t_u off by {gaps[worst]:.2f} t_u (allowed {allowed[worst]:.2f})"


def test_circuit_waveform_is_continuous_time_and_pinned(regime_runs):
    preset, _, (time, u_m, waves) = regime_runs["tonic_spiking"]
    steps = np.diff(time)
    assert time[0] == 0.0 and time[-1] == pytest.approx(preset.t_end)
    assert steps.max() <= preset.dt * (1 + 1e-9)  # TMAX pinned to the model's dt (docs/reference.md §9)
    assert u_m[0] == pytest.approx(regime_runs["tonic_spiking"][1].u_rest_i0, abs=1e-6)  # .ic = rest under I0

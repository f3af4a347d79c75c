"""The regime gallery in SPICE: the four docs/reference.md §4 presets run on the model and on the circuit.

Each preset is mapped as a single neuron onto the hardware target, driven by its step protocol in
ngspice (:func:`mtc_analog.spice.protocol.simulate_protocols`, TMAX = the protocol's dt), mapped back
to model units, classified with the model's own classifier and compared spike by spike with the
model's run: coincidence factor Gamma (window ``window_steps * dt``) over the time after the step,
and the spike and burst counts of both. Over 10000 t_u a frequency difference of 0.1% (Euler at
dt = 0.05 vs the continuous circuit) drifts the phase by ~10 t_u, far beyond a 2 dt window, so three
more figures separate "same spikes, slowly drifting phase" from "different spikes": Gamma with a
1 t_u window (~ the spike's width), Gamma over the first 200 t_u after the step, and the relative
difference of the mean inter-spike interval (circuit / model - 1).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..neuron.regimes import RegimeResult, classify_trace
from .metrics import coincidence_factor

#: Window of the drift-tolerant Gamma [t_u] (about one spike width at tau_m = 1).
WIDE_WINDOW = 1.0
#: Span after the step [t_u] of the early Gamma: before a small frequency difference accumulates
#: into a phase difference larger than the window.
EARLY_SPAN = 200.0


def circuit_regimes(results: Sequence[RegimeResult], filter: str = "linear", target: Any = None,
                    target_name: str = "behavioral", window_steps: float = 2.0, workers: int | None = None,
                    timeout_s: float | None = None, execution: Any = None) -> tuple[dict[str, list], dict[str, dict]]:
    """Simulate each model result's preset in ngspice; return ``(extra_traces, extra_summary)``.

    ``extra_traces[name]`` is a list with one :class:`~mtc_analog.plotting.neuron.ExtraTrace` of the
    circuit's membrane; ``extra_summary[name]["circuit"]`` holds the circuit's label, counts and its
    agreement with the model — ready for ``cli.regimes.write_outputs``. The presets run in parallel
    through ``execution`` (:class:`mtc_analog.execution.Execution`; default a local cluster of ``workers``).
    """
    from ..hardware import load_target
    from ..plotting.neuron import ExtraTrace
    from ..spice.protocol import NeuronSetup, StepProtocol, simulate_protocols

    target = target if target is not None else load_target(None)
    setups = [
        NeuronSetup(r.preset.params, StepProtocol(r.preset.i0, r.preset.i1, r.preset.t_step, r.preset.t_end, r.preset.dt),
                    filter=filter, name=r.preset.name)
        for r in results
    ]
    runs = simulate_protocols(setups, target, target_name=target_name, workers=workers, timeout_s=timeout_s,
                              execution=execution)
    traces: dict[str, list] = {}
    summary: dict[str, dict] = {}
    for result, (time, u_m, waves) in zip(results, runs):
        preset = result.preset
        circuit_class = classify_trace(time, u_m, preset.t_step)
        model_spikes = np.asarray(result.classification.spike_times, dtype=float)
        circuit_spikes = np.asarray(circuit_class.spike_times, dtype=float)
        duration = preset.t_end - preset.t_step
        window = window_steps * preset.dt
        traces[preset.name] = [ExtraTrace(f"circuit ({filter})", time, u_m)]
        summary[preset.name] = {"circuit": {
            "label": circuit_class.label,
            "matches_model": circuit_class.label == result.label,
            "spike_count": circuit_class.spike_count,
            "burst_count": circuit_class.burst_count,
            "spike_count_error": circuit_class.spike_count - result.classification.spike_count,
            "gamma": coincidence_factor(model_spikes, circuit_spikes, window, duration),
            "gamma_window": window,
            "gamma_wide": coincidence_factor(model_spikes, circuit_spikes, WIDE_WINDOW, duration),
            "gamma_wide_window": WIDE_WINDOW,
            "gamma_early": _early_gamma(model_spikes, circuit_spikes, window, preset.t_step),
            "gamma_early_span": EARLY_SPAN,
            "isi_relative_error": _isi_error(model_spikes, circuit_spikes),
            "first_spike_shift": _first_shift(model_spikes, circuit_spikes),
            "spike_times": [round(float(t), 4) for t in circuit_spikes],
            "filter": filter,
            "circuit_target": target_name,
            "simulator_seconds": float(waves.meta.get("seconds", float("nan"))),
            "ngspice_attempts": waves.meta.get("attempts", []),
        }}
    return traces, summary


def _early_gamma(model: np.ndarray, circuit: np.ndarray, window: float, t_step: float) -> float:
    end = t_step + EARLY_SPAN
    return coincidence_factor(model[model <= end], circuit[circuit <= end], window, EARLY_SPAN)


def _isi_error(model: np.ndarray, circuit: np.ndarray) -> float | None:
    """Mean ISI of the circuit over that of the model, minus 1 (None with fewer than 2 spikes)."""
    if model.size < 2 or circuit.size < 2:
        return None
    return float(np.mean(np.diff(circuit)) / np.mean(np.diff(model)) - 1.0)


def _first_shift(model: np.ndarray, circuit: np.ndarray) -> float | None:
    """Circuit minus model time of the first spike after the step [t_u] (None if either is silent)."""
    if model.size == 0 or circuit.size == 0:
        return None
    return float(circuit[0] - model[0])


def format_circuit_table(summary: dict[str, dict]) -> str:
    """One line per preset: circuit label, spike counts and Gamma against the model."""
    lines = [f"{'circuit':<17}{'spikes':>7}{'bursts':>7}  {'label':<17}{'Gamma':>8}{'Gamma(1 t_u)':>14}"
             f"{'Gamma(early)':>14}{'ISI error':>11}"]
    for name, record in summary.items():
        c = record["circuit"]
        flag = "" if c["matches_model"] else "  <-- differs from the model"
        lines.append(f"{name:<17}{c['spike_count']:>7}{c['burst_count']:>7}  {c['label']:<17}"
                     f"{c['gamma']:>8.3f}{c['gamma_wide']:>14.3f}{c['gamma_early']:>14.3f}"
                     f"{_pct(c['isi_relative_error']):>11}{flag}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.3f}%"

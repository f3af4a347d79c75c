"""Compare one model run with one circuit run (both already in model units) -> the docs/reference.md §10 figures.

A run is a :class:`Traces` record: membranes per layer on the model's time grid, the readout after
the low-pass at every neuron step, the prediction per input sample, and spike times per neuron.
Circuit spike times are read off the circuit's *native* waveform (ngspice's own time points, finer
than dt near a spike), not the resampled one, so resampling cannot shift them.

Pass criteria (:class:`Thresholds`): mean Gamma over neurons that spike in either run >= 0.95 and
output NRMSE (circuit vs model) <= 0.05 by default (issue 4's targets for the behavioural target).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..neuron import spikes as spk
from .metrics import SpikeAgreement, membrane_nrmse, signal_nrmse, spike_agreement


@dataclass
class Traces:
    """One run of a network in model units (voltages [V_s], time [t_u]).

    ``time`` is the model grid ``(k+1) dt``; ``membrane[l]`` is (K, N_l); ``lowpass`` (K, n_out);
    ``prediction`` (T, n_out) the output at the last neuron step of each input sample;
    ``spike_times[l][i]`` the spike times of neuron i of layer l [t_u].
    """

    time: np.ndarray
    membrane: list[np.ndarray]
    lowpass: np.ndarray
    prediction: np.ndarray
    spike_times: list[list[np.ndarray]]
    label: str = ""

    @property
    def duration(self) -> float:
        return float(self.time[-1])


@dataclass(frozen=True)
class Thresholds:
    """Pass thresholds of a validation (None disables a criterion)."""

    spike_coincidence_min: float | None = 0.95
    output_nrmse_vs_model_max: float | None = 0.05
    membrane_nrmse_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spike_trains(time: np.ndarray, membrane: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Spike times of every column of ``membrane`` (T, N) [t_u] via :func:`neuron.spikes.spike_times`."""
    return [spk.spike_times(time, membrane[:, i], threshold) for i in range(membrane.shape[1])]


def burst_counts(trains: list[np.ndarray]) -> np.ndarray:
    """Bursts per neuron (ISI-grouped, :func:`neuron.spikes.bursts`)."""
    return np.array([len(spk.bursts(t)) for t in trains], dtype=int)


@dataclass
class Comparison:
    """The result of :func:`compare`: a JSON-able summary plus the per-layer spike agreements."""

    summary: dict[str, Any]
    agreements: list[SpikeAgreement] = field(default_factory=list)
    membrane_per_neuron: list[np.ndarray] = field(default_factory=list)


def compare(
    model: Traces,
    circuit: Traces,
    window: float,
    target: np.ndarray | None = None,
    thresholds: Thresholds = Thresholds(),
    score_from_sample: int = 0,
) -> Comparison:
    """Every docs/reference.md §10 figure of ``circuit`` against ``model``; ``target`` is the ground truth (T, n_out).

    ``score_from_sample``: task NRMSEs against ``target`` skip this many leading samples (the
    network's warm-up from rest); the circuit-vs-model comparison uses every sample.
    """
    if len(model.membrane) != len(circuit.membrane):
        raise ValueError(f"model has {len(model.membrane)} layers, circuit {len(circuit.membrane)}")
    per_layer = []
    agreements, nrmse_layers = [], []
    model_all, circuit_all = [], []
    for layer, (u_model, u_circ) in enumerate(zip(model.membrane, circuit.membrane)):
        per_neuron, overall = membrane_nrmse(u_circ, u_model)
        agreement = spike_agreement(model.spike_times[layer], circuit.spike_times[layer], window, model.duration)
        bursts_model = burst_counts(model.spike_times[layer])
        bursts_circuit = burst_counts(circuit.spike_times[layer])
        agreements.append(agreement)
        nrmse_layers.append(per_neuron)
        model_all.append(u_model)
        circuit_all.append(u_circ)
        per_layer.append({
            "layer": layer,
            "membrane_nrmse": overall,
            "spike_coincidence": agreement.mean_gamma,
            "per_neuron": {
                "membrane_nrmse": per_neuron,
                "gamma": agreement.gamma,
                "spikes_model": agreement.count_model,
                "spikes_circuit": agreement.count_circuit,
                "spike_count_error": agreement.count_error,
                "bursts_model": bursts_model,
                "bursts_circuit": bursts_circuit,
            },
        })
    _, membrane_overall = membrane_nrmse(np.concatenate(circuit_all, axis=1), np.concatenate(model_all, axis=1))
    gamma_all = np.concatenate([a.gamma for a in agreements])
    active = np.concatenate([a.active for a in agreements])
    finite_active = gamma_all[active & np.isfinite(gamma_all)]
    gamma_mean = float(finite_active.mean()) if finite_active.size else float("nan")
    count_model = sum(int(a.count_model.sum()) for a in agreements)
    count_abs_err = sum(int(np.abs(a.count_error).sum()) for a in agreements)
    summary: dict[str, Any] = {
        "spike_coincidence": gamma_mean,
        "spike_coincidence_min_neuron": float(finite_active.min()) if finite_active.size else float("nan"),
        "membrane_nrmse": membrane_overall,
        "output_nrmse_vs_model": signal_nrmse(circuit.prediction, model.prediction),
        "lowpass_nrmse_vs_model": signal_nrmse(circuit.lowpass, model.lowpass),
        "spike_count_error_relative": count_abs_err / count_model if count_model else float("nan"),
        "spikes_model_total": count_model,
        "spikes_circuit_total": sum(int(a.count_circuit.sum()) for a in agreements),
        "bursts_model_total": int(sum(int(np.sum(p["per_neuron"]["bursts_model"])) for p in per_layer)),
        "bursts_circuit_total": int(sum(int(np.sum(p["per_neuron"]["bursts_circuit"])) for p in per_layer)),
        "n_neurons": int(active.size),
        "n_neurons_spiking": int(active.sum()),
        "n_silent_both": int((~active).sum()),
        "coincidence_window": float(window),
        "duration": model.duration,
    }
    if target is not None:
        from ..tasks.metrics import nrmse

        sl = slice(score_from_sample, None)
        summary["task_nrmse_model"] = nrmse(model.prediction[sl], target[sl])
        summary["task_nrmse_circuit"] = nrmse(circuit.prediction[sl], target[sl])
        summary["task_scored_from_sample"] = int(score_from_sample)
    summary["layers"] = per_layer
    failures = check(summary, thresholds)
    summary["thresholds"] = thresholds.to_dict()
    summary["failures"] = failures
    summary["passed"] = not failures
    return Comparison(summary, agreements, nrmse_layers)


def check(summary: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """Human-readable reasons why ``summary`` fails ``thresholds`` (empty: passed). NaN fails."""
    failures = []

    def bad(value: float) -> bool:
        return value is None or not np.isfinite(value)

    gamma = summary.get("spike_coincidence")
    if thresholds.spike_coincidence_min is not None:
        if bad(gamma):
            failures.append("spike coincidence Gamma undefined: no neuron spiked in model or circuit, nothing to compare")
        elif gamma < thresholds.spike_coincidence_min:
            failures.append(f"spike coincidence Gamma = {gamma:.4f} < {thresholds.spike_coincidence_min}")
    out = summary.get("output_nrmse_vs_model")
    if thresholds.output_nrmse_vs_model_max is not None:
        if bad(out):
            failures.append("output NRMSE vs model undefined (model output is constant)")
        elif out > thresholds.output_nrmse_vs_model_max:
            failures.append(f"output NRMSE circuit vs model = {out:.4f} > {thresholds.output_nrmse_vs_model_max}")
    mem = summary.get("membrane_nrmse")
    if thresholds.membrane_nrmse_max is not None:
        if bad(mem) or mem > thresholds.membrane_nrmse_max:
            failures.append(f"membrane NRMSE = {mem} > {thresholds.membrane_nrmse_max}")
    return failures

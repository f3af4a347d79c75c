"""Regime census of a trained MTC network: which firing regime does each hidden neuron have?

    counts = census(network, task)["counts"]    # {"tonic_spiking": 40, "phasic_spiking": 12, ...}

Protocol (docs/reference.md §4, per neuron, at its trained parameters). Each neuron is taken out of the network
and driven alone by a current step: it starts *at rest under I0* (the most hyperpolarised stable
root of its steady-state I-V curve, every state variable there) and the input jumps to I1 at
``t_step``. I0 and I1 are the 5th and 95th percentiles of the input current the neuron actually
receives in the network over a stretch of the validation split: a quiet input it visits and a strong
one. The response is simulated with the scheme of docs/reference.md §4 (Euler, dt 0.05, float64) for
``max(4 tau_us, 40 tau_s, 200)`` t_u after the step (the longest of a layer for all its neurons) — the docs/reference.md §4 presets run 4 tau_us after theirs —
and classified by :func:`mtc_analog.neuron.regimes.classify_trace` (silent, tonic/phasic spiking,
tonic/phasic bursting). One census-level rule on top: a single upward crossing after which the
membrane never comes back down (a depolarised plateau, e.g. a passive neuron pushed above 0) is not a
spike, so such a neuron is *silent*.

:func:`classify_neurons` is the protocol for explicit parameters and currents (the docs/reference.md §4 presets
classify as themselves through it); :func:`census` wraps it for a network; LIF/AdLIF networks
have no regimes in this sense and are refused with :class:`~mtc_analog.errors.InputError`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..neuron.equations import MTCParameters
from ..neuron.regimes import LABELS, RegimePreset, RegimeResult, simulate_presets

#: Percentiles of a neuron's in-network input current used as I0 and I1.
CURRENT_PERCENTILES = (5.0, 95.0)
#: Probe step [t_u], warm-up before the step [t_u] (the start is already at rest under I0).
PROBE_DT, PROBE_T_STEP = 0.05, 20.0


def probe_duration(tau_s: float, tau_us: float) -> float:
    """Simulated time after the step [t_u]: long enough for the ultra-slow variable to settle."""
    return float(max(4.0 * tau_us, 40.0 * tau_s, 200.0))


def _plateau_only(result: RegimeResult) -> bool:
    """One crossing and the membrane never returns below threshold: a plateau, not a spike."""
    c = result.classification
    if c.spike_count != 1:
        return False
    after = result.time >= c.spike_times[0]
    return bool(np.all(result.u_m[after] > 0.0))


def classify_neurons(params: Sequence[MTCParameters], i0: Sequence[float], i1: Sequence[float],
                     t_step: Sequence[float] | None = None, t_end: Sequence[float] | None = None,
                     dt: float = PROBE_DT) -> list[dict[str, Any]]:
    """Run the step protocol on each neuron (scalar parameters) and classify it; one record each."""
    params = [MTCParameters(*(float(np.asarray(v)) for v in p)) for p in params]
    longest = max(probe_duration(p.tau_s, p.tau_us) for p in params) if params else 0.0
    presets = []
    for k, p in enumerate(params):
        step = float(t_step[k]) if t_step is not None else PROBE_T_STEP
        # one duration for all (the longest any neuron needs): simulate_presets batches equal ones
        end = float(t_end[k]) if t_end is not None else step + longest
        presets.append(RegimePreset(f"neuron{k}", p, float(i0[k]), float(i1[k]), "", t_step=step, t_end=end, dt=dt))
    records = []
    for preset, result in zip(presets, simulate_presets(presets)):
        label = "silent" if _plateau_only(result) else result.label
        records.append({"label": label, "spike_count": 0 if label == "silent" else result.classification.spike_count,
                        "burst_count": result.classification.burst_count, "i0": preset.i0, "i1": preset.i1,
                        "t_step": preset.t_step, "t_end": preset.t_end})
    return records


def neuron_parameters(network: Any) -> list[list[MTCParameters]]:
    """Per hidden layer, the trained parameters of each neuron as scalars."""
    if network.config.neuron != "mtc":
        raise InputError(f"a regime census needs an MTC network; this one is {network.config.neuron!r} "
                         "(LIF/AdLIF neurons have no conductance-based firing regimes)")
    layers = []
    for spec in network.to_spec().layers:
        fields = {k: np.broadcast_to(np.asarray(v, dtype=float), (spec.size,)) for k, v in spec.params._asdict().items()}
        layers.append([MTCParameters(**{k: float(v[i]) for k, v in fields.items()}) for i in range(spec.size)])
    return layers


def input_currents(network: Any, x: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, the (steps, N) input currents the neurons receive for the stream ``x``."""
    from .evaluate import stream

    output = stream(network, x, record_membrane=False)
    c = network.config
    h = torch.as_tensor(np.asarray(x, dtype=np.float32))[:, None, :].repeat_interleave(c.substeps, dim=0)
    currents = []
    with torch.no_grad():
        for k, proj in enumerate(network.projections):
            currents.append(proj(h)[:, 0, :].double().numpy())
            h = output.hidden_s[k]
    return currents


def census(network: Any, task: Any, samples: int = 300, washout: int = 100) -> dict[str, Any]:
    """Classify every hidden neuron of an MTC ``network``; counts, per-neuron labels, the protocol."""
    layers = neuron_parameters(network)  # refuses LIF/AdLIF first
    part = task.split("val")
    first = max(0, part.start - washout)
    x = task.x[first : part.start + min(samples, len(part))]
    lead = (part.start - first) * network.config.substeps
    currents = input_currents(network, x)
    per_layer = []
    counts = {label: 0 for label in LABELS}
    for params, current in zip(layers, currents):
        lo, hi = np.percentile(current[lead:], CURRENT_PERCENTILES, axis=0)
        records = classify_neurons(params, lo, hi)
        for record in records:
            counts[record["label"]] += 1
        per_layer.append(records)
    return {
        "counts": counts,
        "n_neurons": sum(len(r) for r in per_layer),
        "labels": [[r["label"] for r in records] for records in per_layer],
        "neurons": per_layer,
        "protocol": (f"each neuron alone, at rest under I0 then a step to I1 (I0, I1 = {CURRENT_PERCENTILES[0]:g}th/"
                     f"{CURRENT_PERCENTILES[1]:g}th percentiles of its in-network input over {len(x) - lead // network.config.substeps} "
                     f"validation samples); Euler dt {PROBE_DT}, max(4 tau_us, 40 tau_s, 200) t_u after the step; "
                     "classifier of mtc_analog.neuron.regimes (docs/reference.md §4)"),
    }


def census_line(counts: dict[str, int]) -> str:
    """``tonic 40, phasic 12, tonic bursting 0, phasic bursting 2, silent 10`` (every label)."""
    names = {"tonic_spiking": "tonic", "phasic_spiking": "phasic", "tonic_bursting": "tonic bursting",
             "phasic_bursting": "phasic bursting", "silent": "silent"}
    order = ("tonic_spiking", "phasic_spiking", "tonic_bursting", "phasic_bursting", "silent")
    return ", ".join(f"{names[k]} {counts.get(k, 0)}" for k in order)

"""Firing regimes of the MTC neuron (docs/reference.md §4): presets, the step protocol, and a trace classifier.

Protocol. A single neuron starts *at rest under I0* — the most hyperpolarised stable root of the
steady-state I-V curve, ``I_ss(U) = I0``, with every state variable at that U (see
:func:`mtc_analog.neuron.iv.resting_equilibrium`). Starting at U = 0 instead leaves the
ultra-slow variable (tau_us = 2500) far from settled at the step, which changes the response
(phasic spiking then fires ~13 spikes instead of ~30). The input is I0 for ``t < t_step`` and I1
after; the discrete model (:func:`mtc_analog.neuron.step.mtc_rollout`, Euler, float64) is run to
``t_end``. A spike is an upward crossing of U_m = 0 (:func:`mtc_analog.neuron.spikes.spike_times`).

Classifier (:func:`classify_trace`), applied to what happens *after* the step, from the trace
alone (time, U_m, t_step), so it serves model and ngspice traces alike:

1. **silent**: no spike after the step.
2. **persisting** (tonic) vs **ending** (phasic): activity persists if the silence between the
   last spike and the end of the trace is at most ``persist_factor`` (2) times the longest ISI
   after the step (which, for bursting, is an inter-burst interval). A lone spike is phasic.
3. **bursting** if either
   a. the ISIs are bimodal (:func:`mtc_analog.neuron.spikes.burst_isi_threshold`: a >= 3x jump
      in the sorted ISIs) and at least two groups of >= 2 spikes result, or
   b. a spike train is followed by an *after-hyperpolarisation*: the membrane in the silence
      after the train's last spike falls more than ``undershoot_margin`` (0.2 V_s) below the
      lowest inter-spike trough of the train. This is the signature of a burst of a slow-bistable
      neuron (the silent state coexists with, and lies below, the spiking branch), while a train
      that ends by damping into the rest state — phasic spiking — never falls below its troughs.
      It is what tells a single burst from a phasic spike train of similar ISIs.
4. label = {tonic, phasic} x {spiking, bursting}.

Burst count: the ISI groups of >= 2 spikes when rule 3a applies, else 1 if rule 3b applies, else 0.
A lone spike is not a burst (the tonic-bursting preset opens with one spike that settles into a
depolarised plateau before its bursts start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import torch

from . import spikes as spk
from .equations import MTCParameters, MTCState
from .iv import resting_equilibrium
from .step import mtc_rollout

LABELS = ("silent", "tonic_spiking", "phasic_spiking", "tonic_bursting", "phasic_bursting")


@dataclass(frozen=True)
class RegimePreset:
    """One firing-regime preset of docs/reference.md §4 and its step protocol (times in t_u, currents model units)."""

    name: str
    params: MTCParameters
    i0: float  #: input before the step
    i1: float  #: input after the step
    expected_label: str
    description: str = ""
    t_step: float = 2000.0
    t_end: float = 12000.0  #: 10000 t_u after the step
    dt: float = 0.05

    def input_current(self) -> np.ndarray:
        """The protocol's input, one value per step: ``i_in[k]`` is held on [k*dt, (k+1)*dt)."""
        n_steps = int(round(self.t_end / self.dt))
        start_times = np.arange(n_steps) * self.dt
        return np.where(start_times < self.t_step - 1e-9 * self.dt, self.i0, self.i1)

    def shortened(self, t_step: float, t_end: float) -> "RegimePreset":
        """The same preset on a shorter protocol (quick looks; the classification may differ)."""
        return RegimePreset(self.name, self.params, self.i0, self.i1, self.expected_label,
                            self.description, t_step, t_end, self.dt)


def _preset_params(gains: Sequence[float], offsets: Sequence[float]) -> MTCParameters:
    a_f, a_sp, a_sm, a_us = gains
    d_f, d_sp, d_sm, d_us = offsets
    return MTCParameters(a_f=a_f, a_s_plus=a_sp, a_s_minus=a_sm, a_us=a_us, d_f=d_f, d_s_plus=d_sp,
                         d_s_minus=d_sm, d_us=d_us, tau_m=1.0, tau_f=0.0, tau_s=50.0, tau_us=2500.0)


#: The four presets of docs/reference.md §4, by name (= expected label).
PRESETS: dict[str, RegimePreset] = {
    p.name: p
    for p in (
        RegimePreset("tonic_spiking", _preset_params((2, 2, 0, 0), (0, 0, 0, 0)), -2.0, 0.0, "tonic_spiking",
                     "regular spikes for ever (~200 in 10000 t_u)"),
        RegimePreset("phasic_spiking", _preset_params((2, 2, 0, 2), (0, 0, 0, 0)), -4.0, -2.5, "phasic_spiking",
                     "a train of ~30 spikes, then rest"),
        RegimePreset("tonic_bursting", _preset_params((2, 2, 1.5, 1.5), (0, 0, -1.5, -1.5)), -4.0, -1.0,
                     "tonic_bursting", "repeating bursts (~5 in 10000 t_u)"),
        RegimePreset("phasic_bursting", _preset_params((2, 2, 1.5, 1.5), (0, 0, -1.5, -1.5)), -4.0, -2.5,
                     "phasic_bursting", "one burst, then silence"),
    )
}


def get_preset(name: str) -> RegimePreset:
    """A preset by name; raises :class:`mtc_analog.errors.InputError` listing the known ones."""
    from ..errors import InputError

    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown regime preset {name!r}: choose one of {', '.join(PRESETS)}") from None


# ----------------------------------------------------------------------------------------------
# Classifier


@dataclass(frozen=True)
class ClassifierRules:
    """Thresholds of :func:`classify_trace` (voltages [V_s]; see the module docstring)."""

    spike_threshold: float = spk.SPIKE_THRESHOLD
    hysteresis: float = spk.SPIKE_HYSTERESIS
    burst_isi_ratio: float = spk.BURST_ISI_RATIO
    persist_factor: float = 2.0
    undershoot_margin: float = 0.2


class TraceClassification(NamedTuple):
    """What :func:`classify_trace` found after the step."""

    label: str
    spike_times: np.ndarray  #: spikes after the step [time units of the trace]
    bursts: list  #: list of spikes.SpikeGroup (empty unless bursting)
    persisting: bool
    bimodal_isi: bool  #: rule 3a
    after_hyperpolarisation: bool  #: rule 3b

    @property
    def spike_count(self) -> int:
        return int(self.spike_times.size)

    @property
    def burst_count(self) -> int:
        return len(self.bursts)


def _after_hyperpolarised(time: np.ndarray, u: np.ndarray, group_times: np.ndarray, next_spike: float,
                          margin: float) -> bool:
    """Rule 3b for one spike train: does the silence after it dip below its lowest trough?"""
    if group_times.size < 2:
        return False
    idx = np.searchsorted(time, group_times)
    troughs = [u[a:b].min() for a, b in zip(idx[:-1], idx[1:]) if b > a]
    if not troughs:
        return False
    after = u[idx[-1] : np.searchsorted(time, next_spike)]
    return bool(after.size and after.min() < min(troughs) - margin)


def classify_trace(time: Any, u_m: Any, t_step: float, rules: ClassifierRules = ClassifierRules()) -> TraceClassification:
    """Label a membrane trace after the input step: silent / tonic / phasic spiking / bursting.

    ``time`` and ``u_m`` are 1-D (model units after mapping a circuit back); only ``t >= t_step``
    is used. Rules in the module docstring.
    """
    time = np.asarray(time, dtype=float)
    u = np.asarray(u_m, dtype=float)
    if time.ndim != 1 or u.shape != time.shape:
        raise ValueError(f"classify_trace needs 1-D time and u_m of equal length, got {time.shape} and {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("classify_trace: the trace contains NaN or Inf")
    after = time >= t_step
    t_after, u_after = time[after], u[after]
    times = spk.spike_times(t_after, u_after, rules.spike_threshold, rules.hysteresis)
    if times.size == 0:
        return TraceClassification("silent", times, [], False, False, False)
    isis = np.diff(times)
    t_end = float(t_after[-1])
    persisting = bool(isis.size and (t_end - times[-1]) <= rules.persist_factor * isis.max())

    split = spk.burst_isi_threshold(isis, rules.burst_isi_ratio)
    groups = spk.group_spikes(times, split)
    multi = [g for g in groups if g.n_spikes >= 2]
    bimodal = split is not None and len(multi) >= 2

    undershoot = False
    for k, g in enumerate(groups):
        next_spike = groups[k + 1].start if k + 1 < len(groups) else np.inf
        if _after_hyperpolarised(t_after, u_after, times[g.first_index : g.first_index + g.n_spikes], next_spike,
                                 rules.undershoot_margin):
            undershoot = True
            break

    if bimodal:
        found = multi
    elif undershoot:
        found = [spk.SpikeGroup(float(times[0]), float(times[-1]), int(times.size), 0)]
    else:
        found = []
    kind = "bursting" if found else "spiking"
    label = f"{'tonic' if persisting else 'phasic'}_{kind}"
    return TraceClassification(label, times, found, persisting, bimodal, undershoot)


# ----------------------------------------------------------------------------------------------
# Running the protocol on the discrete model


@dataclass
class RegimeResult:
    """The model's response to one preset's protocol, and its classification."""

    preset: RegimePreset
    time: np.ndarray  #: (T+1,) [t_u], from 0 to t_end
    u_m: np.ndarray  #: (T+1,) membrane [V_s]; u_m[0] is the resting equilibrium under I0
    u_rest_i0: float  #: the starting equilibrium [V_s]
    classification: TraceClassification
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.classification.label

    @property
    def matches(self) -> bool:
        return self.label == self.preset.expected_label

    def summary(self) -> dict:
        """JSON-ready record: counts, label, expected label, spike and burst times."""
        c = self.classification
        return {
            "label": c.label,
            "expected_label": self.preset.expected_label,
            "matches": self.matches,
            "spike_count": c.spike_count,
            "burst_count": c.burst_count,
            "spike_times": [round(float(t), 4) for t in c.spike_times],
            "bursts": [{"start": round(g.start, 4), "end": round(g.end, 4), "n_spikes": g.n_spikes} for g in c.bursts],
            "last_spike": round(float(c.spike_times[-1]), 4) if c.spike_count else None,
            "i0": self.preset.i0,
            "i1": self.preset.i1,
            "t_step": self.preset.t_step,
            "t_end": self.preset.t_end,
            "dt": self.preset.dt,
            "u_start": self.u_rest_i0,
            "params": {k: float(v) for k, v in self.preset.params._asdict().items()},
        }


def simulate_presets(
    presets: Iterable[RegimePreset],
    method: str = "euler",
    filter: str = "linear",
    rules: ClassifierRules = ClassifierRules(),
) -> list[RegimeResult]:
    """Run each preset's protocol on the discrete model (float64, no autograd) and classify it.

    Presets sharing ``dt`` and ``t_end`` are simulated together as one layer of neurons with
    per-neuron parameters (one rollout instead of one per preset).
    """
    presets = list(presets)
    results: dict[int, RegimeResult] = {}
    batches: dict[tuple[float, float], list[int]] = {}
    for k, p in enumerate(presets):
        batches.setdefault((p.dt, p.t_end), []).append(k)
    for (dt, _t_end), members in batches.items():
        group = [presets[k] for k in members]
        u0 = np.array([resting_equilibrium(p.params, p.i0, filter) for p in group])
        params = MTCParameters(*(
            torch.tensor([float(getattr(p.params, name)) for p in group], dtype=torch.float64)
            for name in MTCParameters._fields
        ))
        current = torch.tensor(np.stack([p.input_current() for p in group], axis=1), dtype=torch.float64)
        start = torch.tensor(u0, dtype=torch.float64)
        with torch.no_grad():
            rollout = mtc_rollout(current, params, dt, MTCState(start, start, start, start), method=method,
                                  filter=filter, record_membrane=True)
        membrane = rollout.u_m.numpy()
        time = np.arange(membrane.shape[0] + 1) * dt
        for j, k in enumerate(members):
            trace = np.concatenate([[u0[j]], membrane[:, j]])
            results[k] = RegimeResult(group[j], time, trace, float(u0[j]),
                                      classify_trace(time, trace, group[j].t_step, rules))
    return [results[k] for k in range(len(presets))]

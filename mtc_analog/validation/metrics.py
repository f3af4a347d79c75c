"""Circuit-versus-model fidelity metrics (docs/reference.md §10), pure numpy, everything in model units.

Membrane agreement, per neuron ``i`` over the common time grid:

.. math::  \\mathrm{NRMSE}_i = \\sqrt{\\langle (U^{circ}_i - U^{model}_i)^2 \\rangle_t} \\,/\\, \\mathrm{std}_t(U^{model}_i)

and overall (pooled, so that a neuron resting flat does not divide by zero):

.. math::  \\mathrm{NRMSE} = \\sqrt{\\sum_{i,t} (U^{circ}-U^{model})^2 \\,/\\, \\sum_{i,t} (U^{model}_i - \\bar U^{model}_i)^2}

Spike times come from :func:`mtc_analog.neuron.spikes.spike_times` (interpolated upward crossings),
bursts from :func:`mtc_analog.neuron.spikes.bursts`; this module only compares them.

Spike-time agreement: the coincidence factor of Kistler, Gerstner & van Hemmen (Neural Comput. 1997),
with the model train as reference (``N_ref`` spikes) and the circuit train compared to it (``N_cmp``
spikes, rate ``nu = N_cmp / duration``), coincidence window ``Delta``:

.. math::  \\Gamma = \\frac{N_{coinc} - 2\\nu\\Delta N_{ref}}{\\tfrac12 (N_{ref} + N_{cmp})} \\cdot \\frac{1}{1 - 2\\nu\\Delta}

``N_coinc`` counts reference spikes with at least one compared spike within ``±Delta`` (matched
one-to-one, so a burst in one train cannot claim a single spike of the other twice).
``2 nu Delta N_ref`` is the number of coincidences a Poisson train of the same rate would score by
chance, and ``1 - 2 nu Delta`` rescales so that identical trains give exactly 1. Independent trains
give ~0 on average, and Gamma may be slightly negative.

Edge cases (documented choices):

- both trains silent: ``Gamma = 1`` — the circuit reproduces the model's "no spike" exactly. Such
  neurons are counted separately (``n_silent_both``) and are *excluded* from the network's mean Gamma,
  so a network of silent neurons cannot pass the spike test vacuously (its mean is NaN and the pass
  check fails).
- one train silent, the other not: the formula gives 0 (no coincidence, no chance term) — kept.
- ``2 nu Delta >= 1`` (window wider than the mean inter-spike interval): chance coincidences
  saturate and the correction is meaningless; Gamma is NaN and the caller should shrink the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# ----------------------------------------------------------------------------------- coincidence


def match_spikes(reference: np.ndarray, compared: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i_ref, i_cmp)`` of the spike pairs matched one-to-one within ``±window`` (greedy in time).

    Both trains are sorted first (indices refer to the sorted trains); a compared spike serves at
    most one reference spike. Unmatched spikes are the missed (reference) and extra (compared) ones.
    """
    ref = np.sort(np.asarray(reference, dtype=float))
    cmp_ = np.sort(np.asarray(compared, dtype=float))
    i = j = 0
    pairs_ref, pairs_cmp = [], []
    while i < ref.size and j < cmp_.size:
        diff = cmp_[j] - ref[i]
        if diff < -window:  # compared spike too early for this and every later reference spike
            j += 1
        elif diff > window:  # no compared spike close enough to this reference spike
            i += 1
        else:
            pairs_ref.append(i)
            pairs_cmp.append(j)
            i += 1
            j += 1
    return np.array(pairs_ref, dtype=int), np.array(pairs_cmp, dtype=int)


def count_coincidences(reference: np.ndarray, compared: np.ndarray, window: float) -> int:
    """Reference spikes matched one-to-one to a compared spike within ``±window`` (:func:`match_spikes`)."""
    return int(match_spikes(reference, compared, window)[0].size)


def coincidence_factor(reference: np.ndarray, compared: np.ndarray, window: float, duration: float) -> float:
    """Kistler's coincidence factor Gamma between two spike trains (see the module docstring).

    ``reference`` / ``compared``: spike times; ``window``: Delta (same unit); ``duration``: length of
    the observation (same unit), which sets the compared train's rate for the chance correction.
    Returns 1.0 when both trains are silent and NaN when ``2 nu Delta >= 1``.
    """
    if window <= 0 or duration <= 0:
        raise ValueError(f"window and duration must be > 0, got window={window}, duration={duration}")
    n_ref, n_cmp = len(reference), len(compared)
    if n_ref == 0 and n_cmp == 0:
        return 1.0
    rate = n_cmp / duration
    chance_fraction = 2.0 * rate * window
    if chance_fraction >= 1.0:
        return float("nan")
    n_coinc = count_coincidences(reference, compared, window)
    expected = chance_fraction * n_ref
    return float((n_coinc - expected) / (0.5 * (n_ref + n_cmp)) / (1.0 - chance_fraction))


# ------------------------------------------------------------------------------------- membranes


def membrane_nrmse(u_circuit: np.ndarray, u_model: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-neuron and pooled membrane NRMSE of ``u_circuit`` against ``u_model``, both (T, N).

    A neuron whose model trace is constant (std = 0) has a NaN per-neuron value (nothing to
    normalise by); it still enters the pooled figure through its squared error.
    """
    u_circuit = np.asarray(u_circuit, dtype=float)
    u_model = np.asarray(u_model, dtype=float)
    if u_circuit.shape != u_model.shape or u_model.ndim != 2:
        raise ValueError(f"expected two (T, N) arrays of equal shape, got {u_circuit.shape} and {u_model.shape}")
    err2 = (u_circuit - u_model) ** 2
    var = u_model.var(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_neuron = np.where(var > 0, np.sqrt(err2.mean(axis=0) / np.where(var > 0, var, 1.0)), np.nan)
    total_var = var.sum()
    overall = float(np.sqrt(err2.mean(axis=0).sum() / total_var)) if total_var > 0 else float("nan")
    return per_neuron, overall


def signal_nrmse(prediction: np.ndarray, reference: np.ndarray) -> float:
    """RMS(prediction - reference) / std(reference), over all elements (NaN if the reference is flat)."""
    prediction = np.asarray(prediction, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if prediction.shape != reference.shape:
        raise ValueError(f"shape mismatch: {prediction.shape} vs {reference.shape}")
    std = reference.std()
    if std == 0:
        return float("nan")
    return float(np.sqrt(np.mean((prediction - reference) ** 2)) / std)


# ------------------------------------------------------------------------------------ aggregate


@dataclass
class SpikeAgreement:
    """Per-neuron spike-train comparison of the circuit against the model (model units)."""

    gamma: np.ndarray  #: (N,) coincidence factor per neuron (1 where both silent, NaN if window too wide)
    count_model: np.ndarray  #: (N,) spikes in the model
    count_circuit: np.ndarray  #: (N,) spikes in the circuit
    window: float  #: coincidence window Delta [t_u]
    duration: float  #: observation length [t_u]
    model_times: list = field(default_factory=list, repr=False)  #: per neuron, spike times [t_u]
    circuit_times: list = field(default_factory=list, repr=False)

    @property
    def active(self) -> np.ndarray:
        """Neurons that spike in the model or in the circuit."""
        return (self.count_model + self.count_circuit) > 0

    @property
    def n_silent_both(self) -> int:
        return int((~self.active).sum())

    @property
    def mean_gamma(self) -> float:
        """Mean Gamma over the active neurons (NaN if none spikes: nothing was tested)."""
        values = self.gamma[self.active]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else float("nan")

    @property
    def count_error(self) -> np.ndarray:
        """(N,) circuit minus model spike count."""
        return self.count_circuit - self.count_model

    @property
    def relative_count_error(self) -> float:
        """sum |N_circ - N_model| / sum N_model over neurons (NaN if the model is silent)."""
        total = self.count_model.sum()
        return float(np.abs(self.count_error).sum() / total) if total else float("nan")


def spike_agreement(
    model_times: list[np.ndarray], circuit_times: list[np.ndarray], window: float, duration: float
) -> SpikeAgreement:
    """Compare per-neuron spike-time lists (model as reference)."""
    if len(model_times) != len(circuit_times):
        raise ValueError(f"{len(model_times)} model trains vs {len(circuit_times)} circuit trains")
    gamma = np.array([coincidence_factor(m, c, window, duration) for m, c in zip(model_times, circuit_times)])
    return SpikeAgreement(
        gamma=gamma,
        count_model=np.array([len(m) for m in model_times], dtype=int),
        count_circuit=np.array([len(c) for c in circuit_times], dtype=int),
        window=float(window),
        duration=float(duration),
        model_times=[np.asarray(m) for m in model_times],
        circuit_times=[np.asarray(c) for c in circuit_times],
    )

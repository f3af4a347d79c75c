"""Spikes and bursts read off a membrane trace (model or circuit, numpy in, numpy out).

An MTC spike is a limit-cycle excursion of a smooth ODE, so a spike is *defined* by the trace:
an upward crossing of ``U_m = threshold`` (docs/reference.md §4: threshold 0). The crossing time is linearly
interpolated between the two samples that bracket it, so spike times are not quantised to the
sampling step (matters when ngspice traces on a non-uniform grid are compared with the model).

Hysteresis (re-arming): after a crossing, the detector only re-arms once the trace has fallen
below ``threshold - hysteresis``. On a clean model trace this changes nothing (every spike falls
back to ~-2 V_s); on a circuit trace it stops numerical chatter around the threshold from being
counted as extra spikes.

Two detectors, one crossing test: :func:`spike_times` (interpolated, with hysteresis) reads
spikes off model or circuit traces for validation; :func:`upward_crossings` (grid-quantised, no
hysteresis) is the network's cheap spike counter for training's activity metrics, at the level
given by :func:`spike_level`.

Bursts are grouped from inter-spike intervals (ISIs); see :func:`burst_isi_threshold` for the
rule that picks the split between intra- and inter-burst ISIs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

#: Default spike threshold [V_s] (docs/reference.md §4: upward crossing of U_m = 0).
SPIKE_THRESHOLD = 0.0
#: Default re-arm hysteresis [V_s]: the trace must fall this far below the threshold between spikes.
SPIKE_HYSTERESIS = 0.1
#: Sorted ISIs must jump by at least this factor to be split into intra- and inter-burst ISIs.
BURST_ISI_RATIO = 3.0


def spike_times(
    time: np.ndarray,
    u_m: np.ndarray,
    threshold: float = SPIKE_THRESHOLD,
    hysteresis: float = SPIKE_HYSTERESIS,
) -> np.ndarray:
    """Times of upward crossings of ``threshold`` by a 1-D trace, linearly interpolated.

    A crossing is a pair of samples ``u[k-1] < threshold <= u[k]`` with the detector armed. The
    detector is armed by any sample below ``threshold - hysteresis`` after the previous spike (or
    since the start of the trace), so a trace hovering just under the threshold cannot fire.
    Returns the crossing times in the units of ``time`` (ascending).
    """
    time = np.asarray(time, dtype=float)
    u = np.asarray(u_m, dtype=float)
    if time.ndim != 1 or u.shape != time.shape:
        raise ValueError(f"spike_times needs 1-D time and trace of equal length, got {time.shape} and {u.shape}")
    if hysteresis < 0:
        raise ValueError(f"hysteresis must be >= 0, got {hysteresis}")
    up = np.flatnonzero((u[:-1] < threshold) & (u[1:] >= threshold)) + 1
    if up.size == 0:
        return np.empty(0)
    if hysteresis > 0:
        below = np.flatnonzero(u < threshold - hysteresis)
        kept, armed_after = [], -1  # a crossing at k counts if some sample before k re-armed since the last spike
        for k in up:
            # last re-arm sample strictly before k
            j = np.searchsorted(below, k) - 1
            if j >= 0 and below[j] > armed_after:
                kept.append(k)
                armed_after = k
        up = np.asarray(kept, dtype=int)
        if up.size == 0:
            return np.empty(0)
    u0, u1 = u[up - 1], u[up]
    frac = (threshold - u0) / (u1 - u0)
    return time[up - 1] + frac * (time[up] - time[up - 1])


def burst_isi_threshold(isis: np.ndarray, ratio: float = BURST_ISI_RATIO) -> float | None:
    """The ISI that separates intra-burst from inter-burst intervals, or ``None`` if none does.

    Rule: sort the ISIs and find the largest jump between neighbours on a log scale. If that jump
    is at least ``ratio`` (default 3x), the ISIs are bimodal: the split is the geometric mean of
    the two ISIs around the jump. Otherwise (regular or smoothly adapting spiking) no split.
    """
    isis = np.sort(np.asarray(isis, dtype=float))
    if isis.size < 2 or np.any(isis <= 0):
        return None
    jumps = isis[1:] / isis[:-1]
    k = int(np.argmax(jumps))
    if jumps[k] < ratio:
        return None
    return float(np.sqrt(isis[k] * isis[k + 1]))


class SpikeGroup(NamedTuple):
    """A run of spikes whose consecutive ISIs are all at most the burst split."""

    start: float  #: first spike time
    end: float  #: last spike time
    n_spikes: int
    first_index: int  #: index of the first spike in the spike-time array


def group_spikes(times: np.ndarray, max_isi: float | None) -> list[SpikeGroup]:
    """Group spike times into runs with ISIs <= ``max_isi`` (``None``: everything is one run)."""
    times = np.asarray(times, dtype=float)
    if times.size == 0:
        return []
    if max_isi is None:
        breaks = np.empty(0, dtype=int)
    else:
        breaks = np.flatnonzero(np.diff(times) > max_isi) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [times.size]])
    return [SpikeGroup(float(times[a]), float(times[b - 1]), int(b - a), int(a)) for a, b in zip(starts, ends)]


def bursts(times: np.ndarray, ratio: float = BURST_ISI_RATIO, min_spikes: int = 2) -> list[SpikeGroup]:
    """Bursts: ISI-grouped runs (split by :func:`burst_isi_threshold`) of at least ``min_spikes``.

    Without a bimodal ISI distribution there are no ISI-defined bursts and the result is empty
    (a regular or adapting train is not a burst by this rule; see
    :mod:`mtc_analog.neuron.regimes` for the after-hyperpolarisation rule of a single burst).
    """
    times = np.asarray(times, dtype=float)
    split = burst_isi_threshold(np.diff(times), ratio)
    if split is None:
        return []
    return [g for g in group_spikes(times, split) if g.n_spikes >= min_spikes]


def spike_rate(times: np.ndarray, t_start: float, t_stop: float) -> float:
    """Mean rate of the spikes in ``[t_start, t_stop)`` [spikes per time unit]."""
    if not t_stop > t_start:
        raise ValueError(f"need t_stop > t_start, got [{t_start}, {t_stop})")
    times = np.asarray(times, dtype=float)
    return float(np.count_nonzero((times >= t_start) & (times < t_stop)) / (t_stop - t_start))


def upward_crossings(u: np.ndarray, level: float, axis: int = 0) -> np.ndarray:
    """Boolean array marking the samples where ``u`` goes from ``< level`` to ``>= level`` along ``axis``.

    The network's spike counter on a fixed grid (training's activity metric ``spike_rate``: spikes
    per neuron = ``upward_crossings(u, spike_level(config)).sum(axis)``). It differs from
    :func:`spike_times` on purpose: no interpolation (a crossing is marked at the first sample at or
    above ``level``) and **no hysteresis** (every ``< level -> >= level`` step counts, so a trace
    chattering around the level counts each return). On clean model traces both count the same
    spikes; :func:`spike_times` is the detector for circuit traces on non-uniform grids. The
    documented training figures were measured with this semantic, so it is kept.

    The first sample along ``axis`` is never a crossing (its predecessor is unknown). Takes a
    numpy array (convert tensors first: ``t.detach().cpu().numpy()``).
    """
    u = np.asarray(u)
    above = u >= level
    crossing = np.zeros_like(above)
    prev = np.take(above, range(0, u.shape[axis] - 1), axis=axis)
    now = np.take(above, range(1, u.shape[axis]), axis=axis)
    idx = [slice(None)] * u.ndim
    idx[axis] = slice(1, None)
    crossing[tuple(idx)] = now & ~prev
    return crossing


def spike_level(config: Any) -> float:
    """The level [V_s] whose upward crossing counts as a spike in a network layer: the
    transduction's onset, ``U_th`` for ``clip`` and ``U_c`` for ``sigmoid``.

    ``config`` is anything with ``transduction``, ``u_th`` and ``u_c`` (a ``NetworkConfig``). The one
    definition shared by training's activity metrics and circuit-versus-model validation.
    """
    return float(config.u_th if config.transduction == "clip" else config.u_c)

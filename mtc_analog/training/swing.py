"""Keep trained membranes inside the range where a target's linear cells are linear (``--swing-penalty``).

The model's leak and linear filters are straight lines; on a transistor target they are transconductors
with a finite linear range (sky130's ota_lin: 0.93-0.98 of its line at 3 V_s from rest, 0.62-0.65 at 6 V_s,
``linear_range`` in ``targets/sky130.yaml``). A trained network whose membranes sit beyond it for long
(plateaus, deep hyperpolarisation, large spikes) computes something else on that chip, and its spike times
drift over long streams. The penalty

.. math::

    P = \\frac{1}{N} \\sum_n \\big\\langle \\mathrm{relu}(|U_{m,n}(t) - U_{rest}| - L)^2 \\big\\rangle_{t, b}

(per hidden neuron n, averaged over the scored steps t and the batch b, then over neurons) is added to the
training loss with weight ``swing_penalty``; ``L`` is ``swing_limit`` or the training target's
``linear_range``. It is exactly 0 while every membrane stays within ``L`` of rest.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError


#: Share of neuron-steps beyond a target's linear range above which ``validate`` suggests the swing penalty (the demo
#: networks trained without it: 0.15-0.29; with it: 0.07-0.13, docs/results_sky130.md)
SWING_WARN_SHARE = 0.15


def swing_advice(swing: dict[str, Any]) -> str:
    """One line on how far the model's membranes go against the target's linear range, with the fix when needed."""
    line = (f"membranes (model): largest {swing['max_excursion']:.2f} V_s from rest, {100 * swing['share_beyond']:.1f} % "
            f"of neuron-steps beyond the target's linear range ({swing['limit']:g} V_s)")
    if swing["share_beyond"] > SWING_WARN_SHARE:
        line += ": its leak and linear filters saturate there; retrain with --swing-penalty 1"
    return line


def resolved_swing_limit(cfg: Any, neuron: str) -> float | None:
    """The excursion ``L`` [V_s] the penalty keeps membranes within, or None when the penalty is off.

    ``cfg.swing_limit`` when given; else the ``linear_range`` of the target trained for (``cfg.hardware`` if set,
    else ``cfg.hardware_target``). A penalty without any limit, or on a LIF/AdLIF network, is a user error (one
    line, with the fix).
    """
    if not cfg.swing_penalty:
        return None
    if neuron != "mtc":
        raise InputError(f"--swing-penalty keeps MTC membranes inside a target's linear range; this is a {neuron} "
                         "network: drop --swing-penalty")
    if cfg.swing_limit is not None:
        return float(cfg.swing_limit)
    name = cfg.hardware or cfg.hardware_target
    if name:
        from ..hardware import load_target

        limit = load_target(name).linear_range
        if limit is not None:
            return float(limit)
    raise InputError(f"--swing-penalty {cfg.swing_penalty:g}: no swing limit: target {name!r} has ideal linear cells "
                     "(linear_range: null); pass --swing-limit V_S (sky130's linear range: 3) or train with "
                     "--hardware sky130")


def check_swing_settings(penalty: float, limit: float | None) -> None:
    """Refuse a negative or non-finite weight and a limit that is not a positive number of V_s."""
    if not (math.isfinite(penalty) and penalty >= 0):
        raise InputError(f"swing_penalty = {penalty} must be a finite number >= 0 (0: off)")
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise InputError(f"swing_limit = {limit} V_s must be a finite number > 0")


def membrane_swing_penalty(hidden_u: list[torch.Tensor], rests: list[Any], limit: float,
                           start_step: int = 0) -> torch.Tensor:
    """``P`` above over every hidden layer's membranes ``(T, B, N)`` from ``start_step`` on (``rests``: each
    layer's U_rest, scalar or per neuron)."""
    terms = [torch.relu((u[start_step:] - rest).abs() - limit).pow(2).mean(dim=(0, 1))
             for u, rest in zip(hidden_u, rests)]
    return torch.cat(terms).mean()


def swing_of(membranes: list[Any], rests: list[Any], limit: float) -> dict[str, Any]:
    """How far membranes ``(K, N)`` per layer (model units, scored steps only) go from their rests: the largest
    excursion [V_s] (max and median over neurons), how many neurons exceed ``limit``, the share of neuron-steps
    beyond it."""
    peaks, beyond, count = [], 0, 0
    for u, rest in zip(membranes, rests):
        excursion = np.abs(np.asarray(u, dtype=float) - np.asarray(rest, dtype=float))
        peaks.extend(excursion.max(axis=0).tolist())
        beyond += int((excursion > limit).sum())
        count += excursion.size
    peaks_arr = np.asarray(peaks)
    return {"limit": float(limit), "max_excursion": float(peaks_arr.max()), "median_peak_excursion":
            float(np.median(peaks_arr)), "neurons_beyond": int((peaks_arr > limit).sum()),
            "share_beyond": beyond / max(count, 1)}


def swing_report(network: Any, task: Any, limit: float | None, washout: int) -> dict[str, Any]:
    """How far the trained membranes go on the test split: per neuron the largest excursion from rest [V_s], and
    the share of neuron-steps beyond ``limit`` (the penalty's; without one, sky130's ``linear_range``)."""
    from ..hardware import load_target
    from .evaluate import stream

    part = task.split("test")
    first = max(0, part.start - washout)
    out = stream(network, task.x[first:part.start + len(part)], record_membrane=True)
    lead = (part.start - first) * network.config.substeps
    judged = float(load_target("sky130").linear_range) if limit is None else limit
    found = swing_of([u[lead:, 0, :].numpy() for u in out.hidden_u], [float(layer.u_rest) for layer in network.layers],
                     judged)
    return {**found, "limit_source": "swing penalty" if limit is not None else "not penalised (sky130's linear range shown)"}

"""What a designer acts on, read off a validation: the worst neurons, the dt study's verdict,
why each mapped value was changed, and what Gamma means. Pure functions on the report's numbers.

    worst = worst_neurons(report["layers"], k=5)           # lowest Gamma / highest membrane NRMSE
    verdict = dt_conclusion(report["dt_study"], "exact")    # {"verdict": "discretisation", "text": ...}
    rows = explain_changes(range_changes, target)           # [{"location", ..., "reason"}]
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

#: How Gamma reads, for the report (the window is filled in).
GAMMA_EXPLANATION = (
    "Gamma is the coincidence factor of Kistler, Gerstner and van Hemmen (1997): the fraction of spikes that "
    "model and circuit fire together, within a window of ±{window} t_u, corrected for the coincidences two "
    "unrelated trains of the same rates would score by chance. 1 = every spike matched (perfect); ~0 = no "
    "better than chance; it can be negative (fewer coincidences than chance, e.g. a circuit firing "
    "consistently late by more than the window). 0.5 means roughly half of the spikes are matched. Neurons "
    "silent in both model and circuit score 1 but are left out of the mean, so a silent network cannot pass."
)

#: dt-study verdict thresholds on the circuit's share of the gap: ``gap(dt -> 0) / gap(trained dt)``
#: (output NRMSE against the circuit, extrapolated to dt -> 0).
DISCRETISATION_BELOW = 0.25  #: at most a quarter of the gap survives dt -> 0: discretisation
CIRCUIT_ABOVE = 0.75  #: at least three quarters survive: the circuit


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------------------------- worst neurons


def worst_neurons(layers: Sequence[dict], k: int = 5, agreements: Sequence[Any] | None = None) -> list[dict]:
    """The ``k`` neurons with the lowest Gamma (below 1) and the ``k`` with the highest membrane NRMSE
    (union), worst Gamma first. ``layers``: the report's ``layers`` list (per-neuron arrays).

    Each row: ``layer``, ``neuron``, ``gamma``, ``membrane_nrmse``, ``spikes_model``, ``spikes_circuit``,
    ``why`` (which ranking(s) put it there). With ``agreements`` (the comparison's per-layer
    :class:`~mtc_analog.validation.metrics.SpikeAgreement`) also the fields of :func:`spike_mismatch`
    (shifted, missed and extra spikes, the largest shift and the first mismatch [t_u]).
    Neurons silent in both runs are never "worst" by Gamma (they score 1 by definition).
    """
    entries = []
    for layer_index, layer in enumerate(layers):
        per = layer["per_neuron"]
        for i in range(len(per["gamma"])):
            spikes_model, spikes_circuit = int(per["spikes_model"][i]), int(per["spikes_circuit"][i])
            entries.append({
                "layer": int(layer.get("layer", layer_index)), "neuron": i,
                "gamma": _float(per["gamma"][i]), "membrane_nrmse": _float(per["membrane_nrmse"][i]),
                "spikes_model": spikes_model, "spikes_circuit": spikes_circuit,
                "active": spikes_model + spikes_circuit > 0,
            })
    # a neuron whose every spike matches (Gamma 1) is not "worst" by Gamma, whatever its rank
    by_gamma = sorted((e for e in entries if e["active"] and _finite(e["gamma"]) and e["gamma"] < 1.0),
                      key=lambda e: e["gamma"])[:k]
    by_nrmse = sorted((e for e in entries if _finite(e["membrane_nrmse"])), key=lambda e: -e["membrane_nrmse"])[:k]
    chosen: dict[tuple[int, int], dict] = {}
    for rank, entry in enumerate(by_gamma, 1):
        chosen.setdefault((entry["layer"], entry["neuron"]), {**entry, "why": []})["why"].append(f"Gamma #{rank}")
    for rank, entry in enumerate(by_nrmse, 1):
        chosen.setdefault((entry["layer"], entry["neuron"]), {**entry, "why": []})["why"].append(
            f"membrane NRMSE #{rank}")
    rows = sorted(chosen.values(), key=lambda e: (e["gamma"] if e["active"] and _finite(e["gamma"]) else math.inf,
                                                  -(e["membrane_nrmse"] if _finite(e["membrane_nrmse"]) else 0.0)))
    for row in rows:
        row["why"] = ", ".join(row["why"])
        row.pop("active")
        if agreements is not None:
            row.update(spike_mismatch(agreements[row["layer"]], row["neuron"]))
    return rows


def spike_mismatch(agreement: Any, neuron: int, shift_tolerance: float | None = None) -> dict:
    """How one neuron's circuit spikes differ from the model's, beyond the coincidence window.

    An unmatched model spike with an unmatched circuit spike within ``shift_tolerance`` [t_u]
    (default: half the neuron's median inter-spike interval, i.e. nearer to it than to its
    neighbours; 10 windows for a neuron with fewer than two spikes) is one *shifted* spike (timing,
    not a lost spike); the rest are *missed*
    (model spikes the circuit lacks) and *extra* (circuit spikes the model lacks). Returns counts,
    ``max_shift`` [t_u] (largest |t_circuit - t_model| of a shifted spike, signed: > 0 the circuit is
    late), ``first_mismatch`` [t_u] and the times of each kind.
    """
    from .metrics import match_spikes

    model = np.sort(np.asarray(agreement.model_times[neuron], dtype=float))
    circuit = np.sort(np.asarray(agreement.circuit_times[neuron], dtype=float))
    tolerance = shift_tolerance
    if tolerance is None:
        train = model if model.size >= 2 else circuit
        tolerance = 0.5 * float(np.median(np.diff(train))) if train.size >= 2 else 10.0 * agreement.window
        tolerance = max(tolerance, agreement.window)
    i_model, i_circuit = match_spikes(model, circuit, agreement.window)
    missed = np.delete(model, i_model)
    extra = np.delete(circuit, i_circuit)
    i_shift_model, i_shift_circuit = match_spikes(missed, extra, tolerance)
    shifts = extra[i_shift_circuit] - missed[i_shift_model]
    shifted, shifted_circuit = missed[i_shift_model], extra[i_shift_circuit]
    missed, extra = np.delete(missed, i_shift_model), np.delete(extra, i_shift_circuit)
    unmatched = np.concatenate([shifted, missed, extra])
    worst_shift = float(shifts[np.argmax(np.abs(shifts))]) if shifts.size else None
    return {"shifted": int(shifted.size), "max_shift": worst_shift, "missed": int(missed.size),
            "extra": int(extra.size), "first_mismatch": float(unmatched.min()) if unmatched.size else None,
            "shifted_times": shifted.tolist(), "shifted_circuit_times": shifted_circuit.tolist(), "missed_times": missed.tolist(), "extra_times": extra.tolist()}


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


# -------------------------------------------------------------------------------------- dt study


def dt_conclusion(rows: Sequence[dict], method: str | None = None) -> dict:
    """The dt study's verdict, from its rows (see :func:`mtc_analog.validation.runs.dt_study`).

    Uses the rows of ``method`` (the trained model's; default: ``exact`` if present). The output NRMSE
    against the circuit is fitted as ``gap(dt) = floor + c dt`` (least squares, first order: the
    model's integrator) and extrapolated to dt -> 0; ``floor`` is what no dt removes, i.e. the
    circuit's share. ``floor / gap(trained dt) <= 0.25`` -> ``"discretisation"``, ``>= 0.75`` ->
    ``"circuit"``, in between ``"mixed"``; fewer than two dt values or undefined gaps ->
    ``"inconclusive"``. Returns ``{"verdict", "text", "method", "dt", "gap", "gamma", "floor",
    "circuit_share", "order"}`` (``order``: observed convergence order between the coarsest and the
    finest dt, log(gap ratio) / log(dt ratio)).
    """
    rows = list(rows or [])
    methods = [r["method"] for r in rows]
    if method not in methods:
        method = "exact" if "exact" in methods else (methods[0] if methods else None)
    sub = sorted((r for r in rows if r["method"] == method and _finite(r.get("output_nrmse_vs_circuit"))),
                 key=lambda r: -r["dt"])
    result: dict[str, Any] = {"method": method, "dt": [r["dt"] for r in sub],
                              "gap": [r["output_nrmse_vs_circuit"] for r in sub],
                              "gamma": [r.get("spike_coincidence") for r in sub],
                              "floor": None, "circuit_share": None, "order": None}
    if len({r["dt"] for r in sub}) < 2 or sub[0]["output_nrmse_vs_circuit"] <= 0:
        result.update(verdict="inconclusive",
                      text="The dt study needs at least two model dt values with a defined, non-zero output NRMSE "
                           "against the circuit; no conclusion can be drawn.")
        return result
    dts = np.array([r["dt"] for r in sub], dtype=float)
    gaps = np.array([r["output_nrmse_vs_circuit"] for r in sub], dtype=float)
    slope, intercept = np.polyfit(dts, gaps, 1)
    floor = float(min(max(intercept, 0.0), gaps.min()))  # a gap cannot extrapolate below 0 or above its smallest
    share = floor / gaps[0]
    order = (math.log(gaps[0] / gaps[-1]) / math.log(dts[0] / dts[-1])) if gaps[-1] > 0 else None
    g0, g1 = sub[0].get("spike_coincidence"), sub[-1].get("spike_coincidence")
    gamma_part = f", and Gamma from {g0:.3f} to {g1:.3f}" if _finite(g0) and _finite(g1) else ""
    order_part = f" (observed order {order:.2f} in dt)" if order is not None else ""
    change = (f"Refining the model's dt from {dts[0]:g} to {dts[-1]:g} t_u ({method} filters) moves the output "
              f"NRMSE against the same circuit run from {gaps[0]:.3g} to {gaps[-1]:.3g}{order_part}{gamma_part}. "
              f"Extrapolated to dt -> 0 (first order) the gap would be {floor:.2g}, {share:.0%} of the gap at the "
              f"trained dt")
    if share <= DISCRETISATION_BELOW:
        verdict = "discretisation"
        text = (f"{change}: the gap is the discrete model's discretisation error, not the circuit. The circuit "
                f"reproduces the continuous-time network; to close the gap, train or fine-tune the network at a "
                f"smaller dt. The circuit needs no change.")
    elif share >= CIRCUIT_ABOVE:
        verdict = "circuit"
        text = (f"{change}: the gap does not go away with a smaller dt, so it is the circuit's (its mapping, its "
                f"filters, the values changed to fit the target), not the discretisation. Start with the worst "
                f"neurons and the mapped changes below.")
    else:
        verdict = "mixed"
        text = (f"{change}: part of the gap is the model's discretisation, and about {floor:.2g} (output NRMSE) "
                f"remains that a smaller dt does not remove: the circuit's share. Look at the worst neurons and the "
                f"mapped changes below.")
    result.update(verdict=verdict, text=text, floor=floor, circuit_share=share, order=order)
    return result


# ------------------------------------------------------------------------------- mapped changes


def explain_changes(changes: Sequence[Any], target: Any = None) -> list[dict]:
    """One row per mapped value changed to fit the target, with its reason.

    ``changes``: :class:`~mtc_analog.hardware.ranges.RangeChange` records (or their dicts, as in
    ``mapping.json``). Rows: ``location``, ``quantity``, ``mapped``, ``in_circuit`` (SI strings),
    ``reason``.
    """
    rows = []
    negligible = getattr(target, "i_negligible", None)
    for change in changes:
        c = change if isinstance(change, dict) else {k: getattr(change, k) for k in
                                                      ("location", "quantity", "old", "new", "unit")}
        old, new, unit = float(c["old"]), float(c["new"]), c["unit"]
        if new == 0:
            limit = f"the target's i_negligible = {_si(negligible, 'A')}" if negligible else "the target's floor"
            reason = (f"negligible: below {limit}, so the device is left out of the circuit (a current that small "
                      "is below the leakage the circuit cannot control anyway); the neuron behaves as without it")
        elif abs(new) < abs(old):
            reason = (f"above the target's maximum: clipped to {_si(abs(new), unit)} (--clip); the neuron no longer "
                      "has the trained value, check its Gamma and membrane NRMSE")
        else:
            reason = (f"below the target's minimum: raised to {_si(abs(new), unit)} (--clip); the neuron no longer "
                      "has the trained value, check its Gamma and membrane NRMSE")
        rows.append({"location": c["location"], "quantity": c["quantity"], "mapped": _si(old, unit),
                     "in_circuit": _si(new, unit), "reason": reason})
    return rows


def _si(value: float, unit: str) -> str:
    """SI-prefixed value; below the smallest prefix (femto) a plain exponent reads better than '9e-08 fA'."""
    from ..hardware.ranges import si

    return f"{value:.3g} {unit}" if 0 < abs(value) < 1e-15 else si(value, unit)


def group_changes(rows: Sequence[dict]) -> list[dict]:
    """Changes grouped by what was changed and why (the element or filter, not the neuron):
    ``{"count", "what", "mapped", "in_circuit", "reason", "where"}`` — e.g. 16 negligible slow_minus
    tail currents in one row instead of sixteen."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        location = row["location"]
        parts = location.split(" / ")
        what_parts = [p for p in parts if not p.startswith(("layer", "neuron"))]
        what = " / ".join(what_parts + [row["quantity"]])
        kind = row["reason"].split(":")[0]
        key = (what, kind)
        group = groups.setdefault(key, {"count": 0, "what": what, "mapped": set(), "in_circuit": set(),
                                        "reason": row["reason"], "where": []})
        group["count"] += 1
        group["mapped"].add(row["mapped"])
        group["in_circuit"].add(row["in_circuit"])
        group["where"].append(" / ".join(p for p in parts if p.startswith(("layer", "neuron"))) or location)
    out = []
    for group in groups.values():
        where = group["where"]
        group["where"] = ", ".join(where[:8]) + (f", ... ({len(where)} in all)" if len(where) > 8 else "")
        for key in ("mapped", "in_circuit"):
            values = sorted(group[key])
            group[key] = values[0] if len(values) == 1 else f"{len(values)} values, e.g. {values[0]}"
        out.append(group)
    return out

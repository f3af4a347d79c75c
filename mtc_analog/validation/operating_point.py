"""Operating-point guard on a simulated transient: did every OTA stay where its equations hold?

The mapping assumes each OTA is a tanh current source (docs/reference.md §8). That holds only while its
transistors stay saturated and its output inside its current-source range. On a transient with the
internal nodes saved (the builder's ``operating_point=True``, which asks the target's hook
``operating_point_cells``; transistor-level targets only), every OTA is checked at every time point:

- ``tail V_DS``: the tail transistor's drain (the pair's common source) ``V(tail) - V_SS >= sat_margin_ut U_T``
  (below it the tail leaves saturation and the bias current collapses: input common mode too low);
- ``pair V_DS``: the output-side input transistor ``V(out) - V(source) >= sat_margin_ut U_T`` (below it the
  pair's output branch leaves saturation: output too low for this input common mode);
- ``output range``: ``V_SS + v_out_margin <= V(out) <= V_DD - v_out_margin`` (the mirror and the pair need
  room: outside it the OTA is no current source any more), once per output node;
- ``membrane swing``: every membrane inside the operating window (rails minus ``v_headroom``), for any target.

Limits come from the hardware target (``sat_margin_ut``, ``v_out_margin``, ``v_headroom``, the rails).
Each violation names layer, neuron, cell, node, the limit, the first time [t_u] it was broken, the worst value
and the fraction of the run spent outside; :func:`operating_point_report` is the ``report.json`` entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Violations listed in the report (all are counted).
MAX_LISTED = 50


@dataclass(frozen=True)
class OperatingPointViolation:
    """One OTA (or membrane) outside its operating range during the transient."""

    layer: int | None  #: None for the readout
    neuron: int | None
    where: str  #: e.g. "layer 0 / neuron 3"
    cell: str  #: e.g. "element fast", "leak", "synapse from input 0", "membrane"
    check: str  #: "tail V_DS" | "pair V_DS" | "output range" | "membrane swing"
    node: str  #: the node (or node difference) checked
    bound: str  #: "min" | "max"
    limit: float  #: [V]
    worst: float  #: the worst value reached [V]
    first_time: float  #: first time outside [t_u]
    fraction: float  #: share of the run's duration spent outside (0..1)
    fix: str = ""

    def __str__(self) -> str:
        side = "below" if self.bound == "min" else "above"
        return (f"{self.where} / {self.cell}: {self.check} {self.node} {self.worst:.3f} V {side} the limit {self.limit:.3f} V "
                f"from t = {self.first_time:.4g} t_u ({100 * self.fraction:.1f} % of the run)")


_FIX = {
    "tail V_DS": "the input common mode is too low for this bias: keep the cell's inputs higher (v_rest up, a smaller "
                 "negative swing) or its bias lower",
    "pair V_DS": "the output sits too close to the input common mode minus V_GS: raise the output's operating voltage "
                 "(v_rest) or lower the inputs' excursion",
    "output range": "the output node runs into a rail: lower the currents into it (weights, biases) or retrain with a "
                    "smaller swing",
    "membrane swing": "the membrane leaves the rails minus v_headroom: lower input weights/biases, or widen swing_min/"
                      "swing_max and move v_rest so they fit",
}


def _duration_weights(time: np.ndarray) -> np.ndarray:
    """Each time point's share of the run (half the intervals on either side), for a fraction of time."""
    dt = np.diff(time)
    weights = np.zeros_like(time)
    weights[:-1] += dt / 2
    weights[1:] += dt / 2
    total = weights.sum()
    return weights / total if total > 0 else np.full_like(time, 1.0 / max(1, time.size))


def _check(values: np.ndarray, low: float | None, high: float | None, time_model: np.ndarray, weights: np.ndarray,
           base: dict[str, Any], check: str, node: str) -> list[OperatingPointViolation]:
    found = []
    for bound, limit, bad in (("min", low, None if low is None else values < low),
                              ("max", high, None if high is None else values > high)):
        if bad is None or not bad.any():
            continue
        first = int(np.argmax(bad))
        worst = float(values.min() if bound == "min" else values.max())
        found.append(OperatingPointViolation(base["layer"], base["neuron"], base["where"], base["cell"], check, node, bound,
                                             float(limit), worst, float(time_model[first]), float(weights[bad].sum()),
                                             _FIX[check]))
    return found


def check_operating_point(waves: Any, nodes: dict[str, Any], target: Any) -> list[OperatingPointViolation]:
    """Every operating-point violation of a transient (``waves``: :class:`~mtc_analog.spice.waveforms.Waveforms`
    of a netlist built with ``operating_point=True``; ``nodes``: its node map; ``target``: the HardwareTarget)."""
    time_model = np.asarray(target.model_time(waves.time), dtype=float)
    weights = _duration_weights(np.asarray(waves.time, dtype=float))
    margin = target.sat_margin
    out_low, out_high = target.vss + target.v_out_margin, target.vdd - target.v_out_margin
    found: list[OperatingPointViolation] = []
    op = nodes.get("operating_point") or {}
    seen_outputs: dict[str, list[str]] = {}
    for cell in op.get("cells", []):
        out = np.asarray(waves[cell["out"]], dtype=float)
        for tail in cell["tails"]:
            found += _check(np.asarray(waves[tail]) - target.vss, margin, None, time_model, weights, cell, "tail V_DS",
                            f"V({tail})")
        for source in cell["sources"]:
            found += _check(out - np.asarray(waves[source]), margin, None, time_model, weights, cell, "pair V_DS",
                            f"V({cell['out']}) - V({source})")
        seen_outputs.setdefault(cell["out"], []).append(cell)
    for node, cells in seen_outputs.items():  # once per output node, naming the cells that drive it
        first = cells[0]
        base = {**first, "cell": "output of " + ", ".join(c["cell"] for c in cells)}
        found += _check(np.asarray(waves[node], dtype=float), out_low, out_high, time_model, weights, base, "output range",
                        f"V({node})")
    low, high = target.operating_window
    for layer, entries in enumerate(nodes.get("layers", [])):
        for index, entry in enumerate(entries or []):
            if entry is None or entry["membrane"].lower() not in waves.voltages:
                continue
            base = {"layer": layer, "neuron": index, "where": f"layer {layer} / neuron {index}", "cell": "membrane"}
            found += _check(np.asarray(waves[entry["membrane"]], dtype=float), low, high, time_model, weights, base,
                            "membrane swing", f"V({entry['membrane']})")
    return found


def operating_point_report(waves: Any, nodes: dict[str, Any], target: Any) -> dict[str, Any]:
    """The ``report.json`` entry: what was checked, the limits, how many violations, the worst ones first."""
    op = nodes.get("operating_point")
    limits = {"tail_vds_min_v": target.sat_margin, "pair_vds_min_v": target.sat_margin,
              "sat_margin_ut": target.sat_margin_ut,
              "output_range_v": [target.vss + target.v_out_margin, target.vdd - target.v_out_margin],
              "membrane_range_v": list(target.operating_window)}
    violations = check_operating_point(waves, nodes, target)
    cells = (op or {}).get("cells", [])
    violations.sort(key=lambda v: -v.fraction)
    by_check: dict[str, int] = {}
    for v in violations:
        by_check[v.check] = by_check.get(v.check, 0) + 1
    checked = (f"{len(cells)} OTA(s) at every time point (tail and pair V_DS, output range) and every membrane"
               if cells else "membranes only: this circuit target exposes no OTA internal nodes (ideal cells)")
    if op is None:
        checked = "membranes only: the circuit was simulated without the operating-point probes (split netlists)"
    return {"checked": checked, "cells_checked": len(cells), "limits": limits, "n_violations": len(violations),
            "by_check": by_check, "ok": not violations,
            "violations": [{**asdict(v), "text": str(v)} for v in violations[:MAX_LISTED]]}


__all__ = ["OperatingPointViolation", "check_operating_point", "operating_point_report", "MAX_LISTED"]

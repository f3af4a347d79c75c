"""HTML sections of the validation report for the hardware figures: the operating-point guard, the membranes against
the target's linear range, and power/area.

Reads the ``operating_point``, ``membrane_swing`` and ``power`` entries of ``report.json`` (written by
:func:`mtc_analog.validation.runs.validate_network`); an older report without them gets no section.
"""

from __future__ import annotations

import html
from typing import Any

from ..hardware.ranges import si


def _row(label: str, value: str) -> str:
    return f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"


def _si(value: Any, unit: str) -> str:
    return "–" if value is None else si(float(value), unit)


def operating_point_section(op: dict[str, Any]) -> list[str]:
    limits = op.get("limits", {})
    out_low, out_high = limits.get("output_range_v", [None, None])
    m_low, m_high = limits.get("membrane_range_v", [None, None])
    parts = ["<h2 id='operating-point'>Operating point during the transient</h2>",
             f"<p class='note'>Checked: {html.escape(str(op.get('checked', '')))}. Limits: tail and pair "
             f"V<sub>DS</sub> &ge; {limits.get('sat_margin_ut', 0):g} U<sub>T</sub> "
             f"({_si(limits.get('tail_vds_min_v'), 'V')}), OTA outputs in {_si(out_low, 'V')}..{_si(out_high, 'V')}, "
             f"membranes in {_si(m_low, 'V')}..{_si(m_high, 'V')}.</p>"]
    n = op.get("n_violations", 0)
    if not n:
        parts.append("<p><span class='pass'>No violation</span>: every checked OTA stayed saturated and inside its "
                     "output range, every membrane inside the rails.</p>")
        return parts
    counts = ", ".join(f"{k}: {v}" for k, v in (op.get("by_check") or {}).items())
    listed = op.get("violations", [])
    parts.append(f"<p><span class='fail'>{n} violation(s)</span> ({html.escape(counts)}); the {len(listed)} "
                 "longest-lasting:</p>")
    rows = ["<table><tr><th>where</th><th>cell</th><th>check</th><th>node</th><th>worst [V]</th><th>limit [V]</th>"
            "<th>first at [t_u]</th><th>time outside</th></tr>"]
    for v in listed:
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
            v["where"], v["cell"], v["check"], v["node"], f"{v['worst']:.3f}", f"{v['limit']:.3f}",
            f"{v['first_time']:.4g}", f"{100 * v['fraction']:.1f} %")) + "</tr>")
    rows.append("</table>")
    fixes = dict.fromkeys(v.get("fix", "") for v in listed if v.get("fix"))
    parts += rows + ["<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in fixes) + "</ul>"]
    return parts


def power_section(power: dict[str, Any]) -> list[str]:
    parts = ["<h2 id='power'>Power, energy and area</h2>"]
    area = power.get("area", {})
    rows = []
    if power.get("measured"):
        rows += [
            ("supply", f"{power['supply_source']} at {power['supply_v']:g} V, over {_si(power['duration_s'], 's')}"),
            ("mean supply current", _si(power["supply_current_mean_a"], "A")
             + f" (at t = 0: {_si(power['supply_current_start_a'], 'A')})"),
            ("average power, network", _si(power["power_total_w"], "W")
             + f" (supply {_si(power['power_supply_w'], 'W')}, ideal bias currents {_si(power['power_bias_sources_w'], 'W')})"),
            ("average power per neuron", _si(power["power_per_neuron_w"], "W")),
            ("energy per spike", _si(power.get("energy_per_spike_j"), "J") + f" ({power['spikes']} spikes)"),
            ("energy per inference (input sample)", _si(power.get("energy_per_inference_j"), "J")
             + f" ({power['input_samples']} samples)"),
        ]
    else:
        rows.append(("power", f"not measured: {power.get('reason', '')}"))
    rows += [
        ("capacitance per neuron / network", f"{_si(area.get('capacitance_per_neuron_f'), 'F')} / "
                                             f"{_si(area.get('capacitance_network_f'), 'F')}"),
        ("transistors per neuron / network", "–" if area.get("transistors_per_neuron") is None else
         f"{area['transistors_per_neuron']:.0f} / {area['transistors_network']:.0f}"),
        ("gate area W*L per neuron / network", "–" if area.get("gate_area_per_neuron_um2") is None else
         f"{area['gate_area_per_neuron_um2']:.0f} um^2 / {area['gate_area_network_um2']:.0f} um^2"),
    ]
    parts.append("<table>" + "".join(_row(k, v) for k, v in rows) + "</table>")
    notes = []
    if power.get("measured"):
        notes.append(f"Counted: {power['counted']}. Not counted: {', '.join(power['not_counted'])}.")
    notes.append(area.get("note", ""))
    parts.append("<p class='note'>" + html.escape(" ".join(notes)) + "</p>")
    return parts


def membrane_swing_section(swing: dict[str, Any]) -> list[str]:
    from ..training.swing import swing_advice

    return ["<h2 id='membrane-swing'>Membranes against the target's linear range</h2>",
            f"<p>{html.escape(swing_advice(swing))}; {swing['neurons_beyond']} neuron(s) beyond it, the median neuron's "
            f"largest excursion {swing['median_peak_excursion']:.2f} V_s.</p>",
            "<p class='note'>The model's leak and linear filters are straight lines; the target's cells follow them "
            "only this far from rest (<code>linear_range</code> of the target). <code>train --swing-penalty</code> keeps "
            "the membranes inside (docs/results_sky130.md).</p>"]


def hardware_sections(report: dict[str, Any]) -> list[str]:
    """The HTML of the sections (empty when the report has none of the entries)."""
    parts: list[str] = []
    if report.get("operating_point"):
        parts += operating_point_section(report["operating_point"])
    if report.get("membrane_swing"):
        parts += membrane_swing_section(report["membrane_swing"])
    if report.get("power"):
        parts += power_section(report["power"])
    return parts


__all__ = ["hardware_sections", "membrane_swing_section", "operating_point_section", "power_section"]

"""Write a validation result: ``report.json`` (numbers) and a self-contained ``report.html``.

The HTML has no external references: figures are PNGs embedded as base64 data URIs, so the
file can be mailed or archived alone. Both files are written atomically, HTML first and JSON
last: ``report.json`` is the marker of a finished run (the output-directory guard looks for it),
so a run that dies half-way never leaves a directory that looks complete.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from .. import io as mio

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 3px 10px; border: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; } .pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; } .note { color: #555; font-size: 0.92em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def figure_to_data_uri(fig: Any, dpi: int = 90) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append(f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>")
    for key, value in rows:
        out.append(f"<tr><td>{html.escape(key)}</td><td>{_fmt(value)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _rows_table(rows: list[dict], columns: list[str]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in columns) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(report: dict, figures: dict[str, str], title: str = "Circuit-versus-model validation") -> str:
    """The HTML page for ``report`` (see :func:`mtc_analog.validation.runs.validate`) and data-URI ``figures``.

    ``figures`` maps a caption to a data URI, in display order.
    """
    passed = report.get("passed")
    verdict = '<span class="pass">PASSED</span>' if passed else '<span class="fail">FAILED</span>'
    thresholds = report.get("thresholds", {})
    headline = [
        ("spike coincidence Gamma (mean over spiking neurons)", report.get("spike_coincidence")),
        (f"  pass threshold (>=)", thresholds.get("spike_coincidence_min")),
        ("output NRMSE, circuit vs model", report.get("output_nrmse_vs_model")),
        (f"  pass threshold (<=)", thresholds.get("output_nrmse_vs_model_max")),
        ("membrane NRMSE (pooled)", report.get("membrane_nrmse")),
        ("task NRMSE of the model vs ground truth", report.get("task_nrmse_model")),
        ("task NRMSE of the circuit vs ground truth", report.get("task_nrmse_circuit")),
        ("relative spike-count error", report.get("spike_count_error_relative")),
        ("neurons spiking / silent in both", f"{report.get('n_neurons_spiking')} / {report.get('n_silent_both')}"),
        ("bursts (model / circuit)", f"{report.get('bursts_model_total')} / {report.get('bursts_circuit_total')}"),
    ]
    setup = [(k, v) for k, v in report.get("setup", {}).items() if not isinstance(v, (dict, list))]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}: {verdict}</h1>",
        "<p class='note'>All quantities in model units (voltages in V_s, time in t_u). Circuit waveforms were "
        "mapped back through the hardware target and resampled onto the model's time grid. "
        "Gamma: Kistler et al. 1997 coincidence factor (circuit against model, window "
        f"{_fmt(report.get('coincidence_window'))} t_u).</p>",
        "<h2>Headline</h2>",
        _table(headline, ("metric", "value")),
    ]
    sources = [(k, report[k]) for k in ("checkpoint", "netlist") if report.get(k)]
    if sources:
        parts.append("<p class='note'>" + "<br>".join(f"{html.escape(k)}: <code>{html.escape(str(v))}</code>"
                                                     for k, v in sources) + "</p>")
    failures = report.get("failures") or []
    if failures:
        parts.append("<p class='fail'>" + "<br>".join(html.escape(f) for f in failures) + "</p>")
    if setup:
        parts += ["<h2>Set-up</h2>", _table(setup, ("setting", "value"))]
    dt_rows = report.get("dt_study")
    if dt_rows:
        parts += [
            "<h2>dt study: discretisation or circuit?</h2>",
            "<p class='note'>The model re-run at smaller dt (Euler and exact filters) against the same circuit run. "
            "A gap that shrinks with dt is the model's discretisation; a gap that stays is the circuit's.</p>",
            _rows_table(dt_rows, ["method", "dt", "output_nrmse_vs_circuit", "spike_coincidence", "membrane_nrmse"]),
        ]
    for caption, uri in figures.items():
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='{uri}'>")
    parts.append("<h2>Raw numbers</h2><p class='note'>Per-neuron arrays and everything above are in "
                 f"<code>{REPORT_JSON}</code> beside this file.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, report: dict, figures: dict[str, str], title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` then ``report.json`` (the completion marker), each atomically."""
    out_dir = Path(out_dir)
    html_path = mio.write_text(out_dir / REPORT_HTML, render_html(report, figures, **({"title": title} if title else {})))
    json_path = mio.write_json(out_dir / REPORT_JSON, _json_safe(report))
    return json_path, html_path


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy -> lists/scalars."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validation_figures(result: Any, dt_rows: list[dict] | None = None, n_traces: int = 4,
                       trace_span: float | None = None) -> dict[str, str]:
    """The report's figures for a :class:`~mtc_analog.validation.runs.ValidationResult`, as data URIs.

    Membrane overlays show the ``n_traces`` neurons of the first layer with the most model spikes,
    over the last ``trace_span`` t_u (default: 150 t_u, or the whole run if shorter). I-V curves are
    computed from the *unmapped* circuit values of those neurons (what the circuit really holds).
    """
    import numpy as np

    from ..hardware.mapping import unmap_neuron
    from ..neuron.iv import iv_curves
    from ..plotting import validation as plots

    model, circuit = result.model, result.circuit
    figures: dict[str, str] = {}
    counts = np.array([len(t) for t in model.spike_times[0]])
    chosen = [int(i) for i in np.argsort(-counts, kind="stable")[: min(n_traces, counts.size)]]
    span = trace_span if trace_span is not None else min(150.0, model.duration)
    window = (model.duration - span, model.duration)
    figures["Membrane traces, model vs circuit (layer 0, most active neurons)"] = figure_to_data_uri(
        plots.membrane_overlay(model.time, model.membrane[0], circuit.membrane[0], chosen,
                               u_th=result.spike_thresholds[0], window=window))
    for layer in range(len(model.spike_times)):
        figures[f"Spike rasters, layer {layer}"] = figure_to_data_uri(
            plots.rasters(model.spike_times[layer], circuit.spike_times[layer], model.duration,
                          title=f"layer {layer}: spikes = upward crossings of U = {result.spike_thresholds[layer]:g} V_s"))
    per_layer = result.summary["layers"]
    cat = lambda key: np.concatenate([np.asarray(p["per_neuron"][key], dtype=float) for p in per_layer])  # noqa: E731
    figures["Per-neuron errors"] = figure_to_data_uri(
        plots.error_histograms(cat("membrane_nrmse"), cat("gamma"), cat("spike_count_error")))
    index = np.arange(model.prediction.shape[0]) - result.score_from_sample
    figures["Network output vs target (negative samples: washout)"] = figure_to_data_uri(
        plots.output_vs_target(index, result.ground_truth[:, 0], model.prediction[:, 0], circuit.prediction[:, 0]))
    target = result.network_circuit.target
    curves = []
    for i in chosen:
        params = unmap_neuron(result.network_circuit.layers[0].neurons[i], target).params
        iv = iv_curves(params)
        curves.append({"label": f"layer 0 / neuron {i}", "u": iv.u, "fast": iv.fast, "slow": iv.slow,
                       "ultraslow": iv.ultraslow})
    if curves:
        figures["I-V curves of the mapped neurons"] = figure_to_data_uri(plots.iv_curves(curves))
    if dt_rows:
        figures["dt study"] = figure_to_data_uri(plots.dt_study(dt_rows))
    return figures

"""Write a validation result: ``report.json`` (numbers) and a self-contained ``report.html``.

The HTML has no external references: figures are PNGs embedded as base64 data URIs, so the
file can be mailed or archived alone. Both files are written atomically, HTML first and JSON
last: ``report.json`` is the marker of a finished run (the output-directory guard looks for it),
so a run that dies half-way never leaves a directory that looks complete.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import io as mio

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 3px 10px; border: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; font-weight: 600; } .pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; } .note { color: #555; font-size: 0.92em; }
code { background: #f4f4f4; padding: 0 3px; }
.conclusion { background: #fff8e1; border-left: 4px solid #f9a825; padding: 0.5em 0.8em; }
.stamp { margin-top: -0.6em; }
"""


def figure_to_data_uri(fig: Any, dpi: int = 90) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


#: Table headers and set-up names as a reader sees them (units in brackets).
LABELS = {
    "gamma": "Gamma", "membrane_nrmse": "membrane NRMSE", "spikes_model": "spikes model",
    "spikes_circuit": "spikes circuit", "max_shift": "largest shift [t_u] (+: circuit late)",
    "first_mismatch": "first mismatch [t_u]", "why": "ranked by", "dt": "model dt [t_u]",
    "output_nrmse_vs_circuit": "output NRMSE vs circuit", "spike_coincidence": "Gamma vs circuit",
    "output_nrmse_vs_finest": "output NRMSE vs finest model (model's own error)", "mapped": "mapped (as trained)",
    "in_circuit": "in the circuit", "what": "element / quantity", "where": "neurons",
    "hidden": "hidden neurons per layer", "substeps": "neuron steps per input sample",
    "model_method": "model filter integration", "model_filter": "model filter kind",
    "circuit_filter": "circuit filter kind", "circuit_target": "circuit level (netlist target)",
    "hardware_target": "hardware target (units, limits)", "samples_scored": "test samples scored",
    "washout_samples": "warm-up samples before them", "neuron_steps": "neuron steps simulated",
    "spike_threshold": "spike threshold [V_s]", "simulation_wall_s": "ngspice wall time [s]",
    "ngspice_attempts": "ngspice attempts", "clipped_values": "mapped values changed to fit (see the list)",
}


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
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
    out = ["<table><tr>" + "".join(f"<th>{html.escape(_label(c))}</th>" for c in columns) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in columns) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


WORST_FIGURE = "Worst neurons: membrane, model vs circuit, where they disagree"
DT_FIGURE = "dt study"
_PLACED = (WORST_FIGURE, DT_FIGURE)  # drawn inside their sections, not in the figure list


def render_html(report: dict, figures: dict[str, str], title: str = "Circuit-versus-model validation") -> str:
    """The HTML page for ``report`` (see :func:`mtc_analog.validation.runs.validate`) and data-URI ``figures``.

    ``figures`` maps a caption to a data URI, in display order; :data:`WORST_FIGURE` and
    :data:`DT_FIGURE` are placed in their own sections.
    """
    from .findings import GAMMA_EXPLANATION, group_changes

    passed = report.get("passed")
    verdict = '<span class="pass">PASSED</span>' if passed else '<span class="fail">FAILED</span>'
    thresholds = report.get("thresholds", {})
    worst = report.get("worst_neurons") or []
    worst_gamma = next((w for w in worst if "Gamma #1" in w.get("why", "")), None)
    headline = [
        ("spike coincidence Gamma (mean over spiking neurons)", report.get("spike_coincidence")),
        ("  pass threshold (>=)", thresholds.get("spike_coincidence_min")),
        ("  lowest Gamma of one neuron", _worst_label(worst_gamma, "gamma") if worst_gamma
         else report.get("spike_coincidence_min_neuron")),
        ("output NRMSE, circuit vs model", report.get("output_nrmse_vs_model")),
        ("  pass threshold (<=)", thresholds.get("output_nrmse_vs_model_max")),
        ("membrane NRMSE (pooled)", report.get("membrane_nrmse")),
        ("task NRMSE of the model vs ground truth", report.get("task_nrmse_model")),
        ("task NRMSE of the circuit vs ground truth", report.get("task_nrmse_circuit")),
        ("relative spike-count error", report.get("spike_count_error_relative")),
        ("neurons spiking / silent in both", f"{report.get('n_neurons_spiking')} / {report.get('n_silent_both')}"),
        ("bursts (model / circuit)", f"{report.get('bursts_model_total')} / {report.get('bursts_circuit_total')}"),
    ]
    setup = [(_label(k), v) for k, v in report.get("setup", {}).items() if not isinstance(v, (dict, list))]
    window = report.get("coincidence_window")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}: {verdict}</h1>",
        _stamp_line(report.get("provenance") or {}),
        "<p class='note'>All quantities in model units (voltages in V_s, time in t_u). Circuit waveforms were "
        "mapped back through the hardware target and resampled onto the model's time grid.</p>",
        RELATED_BEGIN, _related_html(report.get("related_reports") or []), RELATED_END,
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
    if report.get("calibrated"):  # targets that can be characterised: model, calibrated model, circuit
        from .calibrated import calibration_html

        parts.append(calibration_html(report["calibrated"]))
    parts += ["<h2 id='gamma'>How to read Gamma</h2>",
              f"<p>{html.escape(GAMMA_EXPLANATION.format(window=_fmt(window)))}</p>"]
    if worst:
        parts += [
            "<h2 id='worst'>Worst neurons</h2>",
            "<p class='note'>The neurons with the lowest Gamma and the highest membrane NRMSE (layer / neuron "
            "index as in <code>circuit/mapping.json</code> and the netlist). Spikes without a partner within the "
            "coincidence window are <b>shifted</b> when the other run has an unmatched spike within half the neuron's "
            "median inter-spike interval (a timing error: the spike is there, early or late), otherwise <b>missed</b> (model spike, none in the circuit) "
            "or <b>extra</b> (circuit spike, none in the model).</p>",
            _rows_table(worst, ["layer", "neuron", "gamma", "membrane_nrmse", "spikes_model", "spikes_circuit",
                                "shifted", "max_shift", "missed", "extra", "first_mismatch", "why"]),
        ]
        if WORST_FIGURE in figures:
            parts.append(_img(WORST_FIGURE, figures[WORST_FIGURE]))
    dt_rows = report.get("dt_study")
    if dt_rows:
        conclusion = report.get("dt_conclusion") or {}
        parts += [
            "<h2 id='dt-study'>dt study: discretisation or circuit?</h2>",
            "<p class='note'>The model re-run at smaller dt (Euler and exact filters) against the same circuit run. "
            "A gap that shrinks with dt is the model's discretisation; a gap that stays is the circuit's.</p>",
        ]
        if conclusion.get("text"):
            parts.append(f"<p class='conclusion'><b>Conclusion ({html.escape(str(conclusion.get('verdict')))}):</b> "
                         f"{html.escape(conclusion['text'])}</p>")
        parts.append(_rows_table(dt_rows, ["method", "dt", "output_nrmse_vs_circuit", "spike_coincidence",
                                           "membrane_nrmse", "output_nrmse_vs_finest"]))
        if DT_FIGURE in figures:
            parts.append(_img(DT_FIGURE, figures[DT_FIGURE]))
    changes = report.get("mapped_changes")
    if changes is not None:
        parts.append("<h2 id='changes'>Mapped values changed to fit the target</h2>")
        if changes:
            parts += [f"<p class='note'>{len(changes)} mapped value(s) of the trained network differ in the simulated "
                      "circuit (also listed in <code>circuit/mapping.json</code>), grouped by what changed and why:</p>",
                      _rows_table(group_changes(changes), ["count", "what", "mapped", "in_circuit", "reason", "where"]),
                      f"<details><summary>all {len(changes)} changes, one per value</summary>",
                      _rows_table(changes, ["location", "quantity", "mapped", "in_circuit", "reason"]), "</details>"]
        else:
            parts.append("<p>None: every mapped value fits the target as trained.</p>")
    for caption, uri in figures.items():
        if caption not in _PLACED:
            parts.append(f"<h2>{html.escape(caption)}</h2>" + _img(caption, uri))
    from .hardware_report import hardware_sections

    parts += hardware_sections(report)  # operating-point guard, power and area (when measured)
    if setup:
        parts += ["<h2>Set-up</h2>", _table(setup, ("setting", "value"))]
    stamp = report.get("provenance") or {}
    if stamp:
        parts += ["<h2 id='provenance'>Provenance</h2>", _table(list(stamp.items()), ("what", "value"))]
    parts.append("<h2>Raw numbers</h2><p class='note'>Per-neuron arrays and everything above are in "
                 f"<code>{REPORT_JSON}</code> beside this file.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(caption: str, uri: str) -> str:
    return f"<img alt='{html.escape(caption)}' src='{uri}'>"


def _worst_label(row: dict, key: str) -> str:
    return f"{_fmt(row.get(key))} (layer {row['layer']} / neuron {row['neuron']})"


def _stamp_line(stamp: dict) -> str:
    if not stamp:
        return ""
    commit = stamp.get("git_commit") or "unknown"
    if stamp.get("git_dirty"):
        commit += " (with uncommitted changes)"
    return ("<p class='note stamp'>" + html.escape(
        f"mtc_analog {stamp.get('version')}, commit {commit}, run {stamp.get('date')}") +
        f"<br>command: <code>{html.escape(str(stamp.get('command', '')))}</code></p>")


def write_report(out_dir: str | Path, report: dict, figures: dict[str, str], title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` then ``report.json`` (the completion marker), each atomically."""
    out_dir = Path(out_dir)
    report = dict(report)
    report.setdefault("title", title or "Circuit-versus-model validation")
    report.setdefault("provenance", provenance())
    html_path = mio.write_text(out_dir / REPORT_HTML, render_html(report, figures, title=report["title"]))
    json_path = mio.write_json(out_dir / REPORT_JSON, _json_safe(report))
    return json_path, html_path


# ------------------------------------------------------------------------------------ provenance


def provenance(command: Sequence[str] | None = None) -> dict:
    """Package version, git commit (None outside a checkout), command line and UTC date of a report."""
    from .. import __version__

    argv = list(sys.argv if command is None else command)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "mtc_analog":
        argv = ["python", "-m", "mtc_analog", *argv[1:]]
    elif argv and Path(argv[0]).name == "mtc-analog":
        argv = ["mtc-analog", *argv[1:]]
    commit, dirty = _git_state(Path(__file__).resolve().parents[1])
    return {"version": __version__, "git_commit": commit, "git_dirty": dirty, "command": shlex.join(argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version()}


def _git_state(package_dir: Path) -> tuple[str | None, bool | None]:
    """(commit, uncommitted changes?) of the checkout holding ``package_dir``; (None, None) if none."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # an installed copy inside some unrelated repository must not report that repository's commit
    if not top or Path(top).resolve() / package_dir.name != package_dir:
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


# ------------------------------------------------------------------------------- related reports

RELATED_BEGIN = "<!-- related-reports -->"
RELATED_END = "<!-- /related-reports -->"


def _related_html(related: list[dict]) -> str:
    if not related:
        return ""
    items = []
    for r in related:
        gamma = r.get("spike_coincidence")
        figures = f"Gamma {_fmt(gamma)}, output NRMSE vs model {_fmt(r.get('output_nrmse_vs_model'))}"
        state = "passed" if r.get("passed") else "FAILED"
        items.append(f"<li><a href='{html.escape(r['href'])}'>{html.escape(r.get('title') or r['href'])}</a> "
                     f"({html.escape(str(r.get('circuit_target')))} target, {html.escape(str(r.get('circuit_filter')))} "
                     f"filters): {figures}, {state}</li>")
    return "<h2 id='related'>Related reports</h2><ul>" + "".join(items) + "</ul>"


def family_of(out_dir: str | Path) -> list[Path]:
    """Report directories that belong together: a report and the reports in its sub-directories
    (the demo: ``DIR`` linear, ``DIR/ota``, later ``DIR/sky130``). For a report inside such a
    family (its parent holds a report), the parent's family."""
    out_dir = Path(out_dir).resolve()
    root = out_dir.parent if (out_dir.parent / REPORT_JSON).is_file() else out_dir
    members = [root] if (root / REPORT_JSON).is_file() else []
    members += sorted(p.parent for p in root.glob(f"*/{REPORT_JSON}"))
    if out_dir not in members and (out_dir / REPORT_JSON).is_file():
        members.append(out_dir)
    return members


def link_reports(dirs: Sequence[str | Path]) -> dict[Path, list[dict]]:
    """List every report of ``dirs`` in each other's ``related_reports`` (JSON) and "Related reports"
    section (HTML, rewritten in place between :data:`RELATED_BEGIN` / :data:`RELATED_END`).
    Returns each directory's list."""
    dirs = [Path(d).resolve() for d in dirs]
    loaded = {d: json.loads((d / REPORT_JSON).read_text()) for d in dirs}
    linked = {}
    for here in dirs:
        related = [_summary_of(other, loaded[other], here) for other in dirs if other != here]
        report = loaded[here]
        report["related_reports"] = related
        html_path = here / REPORT_HTML
        if html_path.is_file():
            page = html_path.read_text()
            begin, end = page.find(RELATED_BEGIN), page.find(RELATED_END)
            if 0 <= begin < end:
                page = page[: begin + len(RELATED_BEGIN)] + _related_html(related) + page[end:]
                mio.write_text(html_path, page)
        mio.write_json(here / REPORT_JSON, report)
        linked[here] = related
    return linked


def _summary_of(other: Path, report: dict, here: Path) -> dict:
    setup = report.get("setup") or {}
    return {"href": Path(os.path.relpath(other / REPORT_HTML, here)).as_posix(), "title": report.get("title"),
            "circuit_target": setup.get("circuit_target"), "circuit_filter": setup.get("circuit_filter"),
            "spike_coincidence": report.get("spike_coincidence"),
            "output_nrmse_vs_model": report.get("output_nrmse_vs_model"), "passed": report.get("passed")}


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
                       trace_span: float | None = None, worst: list[dict] | None = None,
                       worst_span: float = 40.0) -> dict[str, str]:
    """The report's figures for a :class:`~mtc_analog.validation.runs.ValidationResult`, as data URIs.

    Membrane overlays show the ``n_traces`` neurons of the first layer with the most model spikes,
    over the last ``trace_span`` t_u (default: 150 t_u, or the whole run if shorter). I-V curves are
    computed from the *unmapped* circuit values of those neurons (what the circuit really holds).
    ``worst`` (rows of :func:`~mtc_analog.validation.findings.worst_neurons`): up to ``n_traces`` of
    them are drawn first, each over ``worst_span`` t_u around its first missed or extra spike (or its
    largest membrane error).
    """
    import numpy as np

    from ..hardware.mapping import unmap_neuron
    from ..neuron.iv import iv_curves
    from ..plotting import validation as plots

    model, circuit = result.model, result.circuit
    figures: dict[str, str] = {}
    if worst:
        figures[WORST_FIGURE] = figure_to_data_uri(plots.worst_neurons(
            [_worst_panel(result, row, worst_span) for row in worst[:n_traces]], u_th=result.spike_thresholds[0]))
    counts = np.array([len(t) for t in model.spike_times[0]])
    chosen = [int(i) for i in np.argsort(-counts, kind="stable")[: min(n_traces, counts.size)]]
    span = trace_span if trace_span is not None else min(150.0, model.duration)
    window = (model.duration - span, model.duration)
    figures["Membrane traces, model vs circuit (layer 0, most active neurons)"] = figure_to_data_uri(
        plots.membrane_overlay(model.time, model.membrane[0], circuit.membrane[0], chosen,
                               u_th=result.spike_thresholds[0], window=window))
    from .metrics import match_spikes

    for layer in range(len(model.spike_times)):
        window = result.comparison.agreements[layer].window if result.comparison.agreements else 0.0
        lone_model, lone_circuit = [], []
        for m, c in zip(model.spike_times[layer], circuit.spike_times[layer]):
            m, c = np.sort(np.asarray(m, dtype=float)), np.sort(np.asarray(c, dtype=float))
            i_m, i_c = match_spikes(m, c, window)
            lone_model.append(np.delete(m, i_m))
            lone_circuit.append(np.delete(c, i_c))
        figures[f"Spike rasters, layer {layer}"] = figure_to_data_uri(
            plots.rasters(model.spike_times[layer], circuit.spike_times[layer], model.duration,
                          title=f"layer {layer}: spikes = upward crossings of U = {result.spike_thresholds[layer]:g} V_s; "
                                f"red: no partner within ±{window:g} t_u in the other run",
                          unmatched_model=lone_model, unmatched_circuit=lone_circuit))
    per_layer = result.summary["layers"]
    cat = lambda key: np.concatenate([np.asarray(p["per_neuron"][key], dtype=float) for p in per_layer])  # noqa: E731
    figures["Per-neuron errors"] = figure_to_data_uri(
        plots.error_histograms(cat("membrane_nrmse"), cat("gamma"), cat("spike_count_error")))
    index = np.arange(model.prediction.shape[0]) - result.score_from_sample
    figures["Network output vs target (negative samples: washout)"] = figure_to_data_uri(
        plots.output_vs_target(index, result.ground_truth[:, 0], model.prediction[:, 0], circuit.prediction[:, 0]))
    target = result.network_circuit.target
    curves = []
    iv_neurons = [(w["layer"], w["neuron"]) for w in (worst or [])[:n_traces]] or [(0, i) for i in chosen]
    for layer, i in iv_neurons:
        params = unmap_neuron(result.network_circuit.layers[layer].neurons[i], target).params
        iv = iv_curves(params)
        curves.append({"label": f"layer {layer} / neuron {i}", "u": iv.u, "fast": iv.fast, "slow": iv.slow,
                       "ultraslow": iv.ultraslow})
    if curves:
        which = "worst" if worst else "most active"
        figures[f"I-V curves of the {which} neurons (from their unmapped circuit values)"] = figure_to_data_uri(
            plots.iv_curves(curves))
    if dt_rows:
        figures[DT_FIGURE] = figure_to_data_uri(plots.dt_study(dt_rows))
    return figures


def _worst_panel(result: Any, row: dict, span: float) -> dict:
    """Traces of one worst neuron over ``span`` t_u around where it disagrees most, with a zoom."""
    import numpy as np

    time = result.model.time
    u_model = result.model.membrane[row["layer"]][:, row["neuron"]]
    u_circuit = result.circuit.membrane[row["layer"]][:, row["neuron"]]
    span = min(span, float(time[-1] - time[0]))
    if row.get("first_mismatch") is not None:
        centre = float(row["first_mismatch"])
    else:
        centre = float(time[int(np.argmax(np.abs(u_circuit - u_model)))])
    start = min(max(centre - 0.3 * span, float(time[0])), float(time[-1]) - span)
    sel = (time >= start) & (time <= start + span)
    half = max(3.0 * abs(row.get("max_shift") or 0.0), 0.05 * span)  # the shift and the crossing both show
    label = (f"layer {row['layer']} / neuron {row['neuron']}: Gamma {_fmt(row.get('gamma'))}, membrane NRMSE "
             f"{_fmt(row.get('membrane_nrmse'))}, spikes model {row.get('spikes_model')} / circuit "
             f"{row.get('spikes_circuit')}")
    if row.get("missed") is not None:
        label += f"; {row['shifted']} shifted, {row['missed']} missed, {row['extra']} extra"
    return {"time": time[sel], "model": u_model[sel], "circuit": u_circuit[sel], "label": label,
            "zoom": (centre - half, centre + half),
            "model_marks": [*row.get("shifted_times", ()), *row.get("missed_times", ())],
            "circuit_marks": [*row.get("shifted_circuit_times", ()), *row.get("extra_times", ())]}

"""The whole validation of one network into one output directory (what ``mtc-analog validate`` does).

    report = validate_into(network, task, "runs/val", ValidationSettings(circuit_filter="ota"))
    report = validate_checkpoint("runs/mtc/best.safetensors", "runs/val", settings, dt_study=True)

Order of work, so that a failure never leaves a directory that looks finished: refuse an existing
``report.json`` unless ``force`` (then delete the stale report first), check the mapping against
the target (HardwareRangeError before any simulation), run model and circuit, compute, and only
then write ``circuit/network.cir`` (the netlist that was judged, stand-alone), ``report.html`` and
last ``report.json`` — each atomically.
A report whose thresholds fail is still written (it is complete); :func:`raise_if_failed` turns it
into :class:`~mtc_analog.errors.ValidationFailed` for the CLI's exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import ValidationFailed
from ..io import prepare_output_dir
from .calibrated import calibrated_validation
from .findings import dt_conclusion, explain_changes, worst_neurons
from .report import REPORT_HTML, REPORT_JSON, family_of, link_reports, provenance, validation_figures, write_report
from .runs import Progress, ValidationResult, ValidationSettings, _quiet, dt_study, validate_network


def prepare_report_dir(out: str | Path, force: bool) -> Path:
    """Create ``out``; refuse an earlier report without ``force``; with it, remove the stale report
    first so that a run failing half-way cannot leave the old one posing as its result."""
    out = prepare_output_dir(out, REPORT_JSON, force)
    for name in (REPORT_JSON, REPORT_HTML):
        (out / name).unlink(missing_ok=True)
    return out


CIRCUIT_DIR = "circuit"


def export_validated_circuit(result: ValidationResult, task: Any, settings: ValidationSettings, out_dir: Path,
                             range_changes: Sequence[Any] = ()) -> Path:
    """Write the netlist that was validated (same mapped circuit, same input) as a stand-alone
    ``network.cir`` + ``mapping.json`` (with the mapped values changed to fit), so the report's
    directory holds what it judged."""
    from ..spice.export import export_network
    from .runs import scoring_stream

    x, _, _ = scoring_stream(task, settings.samples, settings.washout)
    exported = export_network(result.network_circuit, x, out_dir, target_name=settings.circuit_target,
                              source="mtc_analog validation", input_source="task test split (with washout)",
                              force=True, range_changes=range_changes, compensation=result.summary.get("compensation"))
    return exported.netlist_path


def validate_into(network: Any, task: Any, out: str | Path, settings: ValidationSettings = ValidationSettings(),
                  run_dt_study: bool = False, force: bool = False, progress: Progress = _quiet,
                  extra: dict[str, Any] | None = None, title: str | None = None,
                  dt_refinements: tuple[int, ...] = (1, 2, 4, 8), related: Sequence[str | Path] = (),
                  n_worst: int = 5, command: Sequence[str] | None = None) -> tuple[dict, ValidationResult]:
    """Validate ``network`` on ``task``'s test split and write ``out/report.{html,json}``.

    Returns ``(report dict, result)``. ``extra`` is merged into the report (e.g. the checkpoint path).
    The report names the ``n_worst`` worst neurons (lowest Gamma, highest membrane NRMSE), states the
    dt study's conclusion, lists the mapped values changed to fit the target with their reason, and
    carries a stamp (version, commit, ``command`` — default ``sys.argv`` — and date). It is linked
    both ways with the other reports of its family (:func:`~mtc_analog.validation.report.family_of`:
    ``out``'s parent report and the reports in sub-directories of it, e.g. the demo's ``ota/``) and
    with the report directories in ``related``.
    """
    stamp = provenance(command)  # at the start: the date is when the run began
    out = prepare_report_dir(out, force)
    result = validate_network(network, task, settings, progress)
    report = dict(result.summary)
    changes = result.range_changes
    report["netlist"] = str(export_validated_circuit(result, task, settings, out / CIRCUIT_DIR, changes))
    report["mapped_changes"] = explain_changes(changes, result.network_circuit.target)
    report["worst_neurons"] = worst_neurons(report["layers"], n_worst, result.comparison.agreements)
    calibrated = calibrated_validation(network, task, settings, result, progress)  # None unless the target can be characterised
    if calibrated is not None:
        report["calibrated"] = calibrated
    report.update(extra or {})
    rows = None
    if run_dt_study:
        rows = dt_study(network, result, task, settings, refinements=dt_refinements, progress=progress)
        report["dt_study"] = rows
        report["dt_conclusion"] = dt_conclusion(rows, network.config.method)
    report["title"] = title or "Circuit-versus-model validation"
    report["provenance"] = stamp
    progress("writing the report")
    figures = validation_figures(result, rows, worst=report["worst_neurons"])
    write_report(out, report, figures, title=report["title"])
    members = family_of(out) + [Path(r) for r in related if (Path(r) / REPORT_JSON).is_file()]
    if len(members) > 1:
        linked = link_reports(list(dict.fromkeys(p.resolve() for p in members)))
        report["related_reports"] = linked.get(out.resolve(), [])
        progress(f"linked with {len(members) - 1} related report(s)")
    return report, result


def validate_checkpoint(checkpoint: str | Path, out: str | Path, settings: ValidationSettings = ValidationSettings(),
                        run_dt_study: bool = False, force: bool = False,
                        progress: Progress = _quiet) -> tuple[dict, ValidationResult]:
    """:func:`validate_into` for a checkpoint file written by ``mtc-analog train``."""
    from ..tasks.mackey_glass import make_task
    from ..training.checkpoint import load_checkpoint

    prepare_output_dir(out, REPORT_JSON, force)  # refuse before the (slower) loading
    progress(f"loading {checkpoint}")
    loaded = load_checkpoint(checkpoint)
    task = make_task(loaded.task)
    extra = {"checkpoint": str(checkpoint), "horizon": loaded.task.horizon,
             "trained_test_nrmse": (loaded.metrics or {}).get("test_nrmse")}
    return validate_into(loaded.network, task, out, settings, run_dt_study, force, progress, extra)


def raise_if_failed(report: dict, out: str | Path) -> None:
    """:class:`ValidationFailed` naming every failed threshold and where the report is."""
    if not report.get("passed"):
        reasons = "; ".join(report.get("failures") or ["thresholds not met"])
        raise ValidationFailed(f"{reasons} (report: {Path(out) / REPORT_HTML})")

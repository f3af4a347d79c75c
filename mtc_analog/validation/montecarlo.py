"""Monte-Carlo mismatch study of a trained network's circuit (what ``mtc-analog montecarlo`` does).

    summary = run_montecarlo("runs/mtc/best.safetensors", "runs/mc", settings,
                             MonteCarloSettings(instances=50, seed=0))
    summary["yield_task"], summary["metrics"]["task_nrmse_circuit"]["p95"]

Instance ``k`` of a study seeded ``S`` maps the network onto the target exactly as ``validate`` does,
draws its mismatch with ``numpy.random.default_rng((S, k))`` (:func:`~mtc_analog.hardware.mismatch.
apply_statistics`, spreads from :func:`~mtc_analog.hardware.mismatch.statistics_for_target`: tail
currents, the leak and capacitors log-normal, per-cell offsets on the element references, the rest voltage
(leak), the filter states and the thresholds, element asymmetries, synapse and readout-node offsets as bias
currents), simulates that
circuit in ngspice on the same test stream as ``validate`` and compares it with the *nominal* model
(:func:`~mtc_analog.validation.fidelity.compare`: task NRMSE, Gamma, output NRMSE vs the model,
spike-count error). One extra task simulates the nominal circuit (no mismatch) as the reference.

Two mismatch modes (``MonteCarloSettings.mismatch``; recorded in the summary as ``mismatch_mode``):

* ``transistor`` (default on a target with the hook ``with_device_mismatch``, i.e. sky130): every
  transistor of every OTA cell (elements, leak, filters, synapses, readout load) gets its own threshold
  shift ``sigma_vt_n`` / ``sigma_vt_p`` x z, z drawn per cell from ``(S, k, crc32(cell place))``
  (:class:`~mtc_analog.spice.sky130.DeviceMismatch`), written into the netlist as cell parameters; the
  mapped circuit itself is nominal (capacitors too: MIM matching ~0.1 %);
* ``cell`` (the only one on ``behavioral``): the draws above on the mapped circuit — the per-transistor
  sigmas folded into each cell's spreads (measured in situ on sky130, :mod:`mtc_analog.hardware.mismatch`).

Yield, two definitions, both reported:

* ``yield_task``: fraction of instances whose circuit task NRMSE <= ``task_factor`` (1.10) x the
  nominal model's task NRMSE (the circuit is still as good a predictor, within 10 %);
* ``yield_thresholds``: fraction meeting ``validate``'s pass thresholds against the nominal model
  (Gamma >= 0.95, output NRMSE <= 0.05 by default) — a much stricter, trace-level criterion;

and, with ``reference_nrmse`` (``--reference-nrmse``), ``yield_task_reference``: the same 10 % against a given task
NRMSE, e.g. another network's nominal model's. ``yield_task`` judges each network against itself, which rewards
a robust network with a poor nominal model; one bar for every network separates robust from accurate.

Instances fan out through :class:`~mtc_analog.execution.Execution` with ``store=OUT/instances``: every
finished instance is on disk at once, and a re-run of the same study (same checkpoint bytes, settings,
statistics and seed: they are hashed into the task labels) resumes where it stopped. ``montecarlo.json``
is written last and marks a finished study. On a remote cluster the workers read the checkpoint by
its path: put it on a file system they share.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..hardware.mismatch import MismatchStatistics, apply_statistics, statistics_for_target
from ..io import prepare_output_dir, write_json, write_text
from .runs import Progress, ValidationSettings, _quiet

MONTECARLO_JSON = "montecarlo.json"
MONTECARLO_HTML = "montecarlo.html"
MONTECARLO_PNG = "montecarlo.png"
INSTANCES_DIR = "instances"

#: Per-instance figures taken from :func:`~mtc_analog.validation.fidelity.compare` (no new metrics),
#: with the direction that is worse (for "worst").
METRICS = {
    "task_nrmse_circuit": "high",
    "spike_coincidence": "low",
    "output_nrmse_vs_model": "high",
    "spike_count_error_relative": "high",  # firing-rate error: sum |count error| / model spikes (same duration)
    "rate_change_relative": "abs",  # signed network rate change (circuit - model) / model spikes
    "membrane_nrmse": "high",
}


@dataclass(frozen=True)
class MonteCarloSettings:
    """A study: ``instances`` draws seeded ``(seed, k)``; ``statistics`` None: the target's own."""

    instances: int = 20
    seed: int = 0
    statistics: MismatchStatistics | None = None
    task_factor: float = 1.10  #: yield_task: circuit task NRMSE <= task_factor x nominal model task NRMSE
    mismatch: str = "auto"  #: transistor | cell | auto (transistor where the circuit target can, else cell)
    #: yield_task_reference: circuit task NRMSE <= task_factor x this (e.g. another network's nominal model), so
    #: networks of different nominal accuracy are judged against one bar; None: not reported
    reference_nrmse: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.instances, int) or self.instances < 1:
            raise InputError(f"--instances must be an integer >= 1, got {self.instances!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if not (math.isfinite(self.task_factor) and self.task_factor >= 1.0):
            raise InputError(f"task_factor = {self.task_factor!r} must be a finite number >= 1")
        if self.mismatch not in MISMATCH_MODES:
            raise InputError(f"--mismatch must be one of {MISMATCH_MODES}, got {self.mismatch!r}")
        if self.reference_nrmse is not None and not (math.isfinite(self.reference_nrmse) and self.reference_nrmse > 0):
            raise InputError(f"--reference-nrmse must be a task NRMSE > 0 (e.g. another network's nominal model's), "
                             f"got {self.reference_nrmse!r}")


MISMATCH_MODES = ("auto", "transistor", "cell")


def mismatch_mode(requested: str, circuit_target: str) -> str:
    """The mode a study runs: ``transistor`` needs the circuit target's ``with_device_mismatch`` hook."""
    from ..spice.target import get_target

    able = hasattr(get_target(circuit_target), "with_device_mismatch")
    if requested == "auto":
        return "transistor" if able else "cell"
    if requested == "transistor" and not able:
        raise InputError(f"--mismatch transistor: circuit target {circuit_target!r} has no transistors to draw "
                         "(use --mismatch cell)")
    return requested


# ------------------------------------------------------------------------------------ one instance


def _digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def _loaded(checkpoint: str, digest: str) -> tuple[Any, Any]:
    """(network, task) of a checkpoint, once per worker process (``digest`` keys a changed file)."""
    from ..tasks.mackey_glass import make_task
    from ..training.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    return loaded.network, make_task(loaded.task)


def nominal_model_kind(checkpoint: Any, circuit_target: str) -> str | None:
    """The calibration target of the nominal model: a checkpoint trained with ``--hardware T`` is, as trained,
    T's calibrated cell model, so on circuit target T every instance is compared with that (None: the ideal model)."""
    from ..training.hardware_aware import trained_target

    trained = trained_target(checkpoint)
    return trained if trained is not None and trained.partition(":")[0] == circuit_target.partition(":")[0] else None


@functools.lru_cache(maxsize=2)
def _nominal_model(checkpoint: str, digest: str, samples: int, washout: int, calibrated_for: str | None = None) -> Any:
    """The nominal model's traces on the scoring stream (the same for every instance); ``calibrated_for``: the
    target whose calibration table the model runs with (:func:`nominal_model_kind`)."""
    from ..neuron.spikes import spike_level
    from .runs import model_traces, scoring_stream

    network, task = _loaded(checkpoint, digest)
    x, _, _ = scoring_stream(task, samples, washout)
    deviation = None
    if calibrated_for is not None:
        from ..hardware.deviation import calibration_deviation, load_calibration

        deviation = calibration_deviation(load_calibration(calibrated_for), network.to_spec())
    return model_traces(network, x, spike_level(network.config), deviation=deviation)


def run_instance(item: dict[str, Any]) -> dict[str, Any]:
    """One Monte-Carlo instance (module level: workers import it). ``item["seed"]`` None: nominal circuit.

    Returns a JSON-able record: the instance's figures (see :data:`METRICS`), pass/fail against the
    thresholds, spike totals and the ngspice wall time.
    """
    import time

    from ..neuron.spikes import spike_level
    from .fidelity import compare
    from .runs import circuit_traces, map_for_validation, scoring_stream, simulate_circuit

    settings: ValidationSettings = item["settings"]
    stats: MismatchStatistics = item["statistics"]
    network, task = _loaded(item["checkpoint"], item["digest"])
    cfg = network.config
    x, y, lead = scoring_stream(task, settings.samples, settings.washout)
    n_steps = x.shape[0] * cfg.substeps
    thresholds = [spike_level(cfg)] * len(cfg.hidden)
    circuit = item.get("circuit")  # compensated once for all instances, or None: as mapped
    if circuit is None:
        circuit = map_for_validation(network, settings)[0]
    seed = item["seed"]
    impl = None
    if seed is not None and item.get("mode", "cell") == "transistor":
        from ..spice.target import get_target

        impl = get_target(settings.circuit_target).with_device_mismatch(tuple(seed), stats.sigma_vt_n, stats.sigma_vt_p)
    elif seed is not None:
        circuit = apply_statistics(circuit, stats, tuple(seed))
    model = _nominal_model(item["checkpoint"], item["digest"], settings.samples, settings.washout, item.get("calibrated_for"))
    start = time.perf_counter()
    waves, nodes = simulate_circuit(circuit, x, settings, target=impl)
    wall = time.perf_counter() - start
    circ, _ = circuit_traces(waves, nodes, circuit.target, cfg.dt, cfg.substeps, n_steps, thresholds)
    summary = compare(model, circ, settings.window_steps * cfg.dt, target=y, thresholds=settings.thresholds,
                      score_from_sample=lead).summary
    record_refit = readout_refit(network, model, circ, y, lead)
    spikes_model, spikes_circuit = int(summary["spikes_model_total"]), int(summary["spikes_circuit_total"])
    record = {key: float(summary[key]) for key in METRICS if key in summary}
    record["rate_change_relative"] = ((spikes_circuit - spikes_model) / spikes_model) if spikes_model else float("nan")
    record.update({
        "seed": None if seed is None else list(seed),
        "task_nrmse_model": float(summary["task_nrmse_model"]),
        "spikes_model_total": spikes_model, "spikes_circuit_total": spikes_circuit,
        "passed": bool(summary["passed"]), "failures": list(summary["failures"]),
        "simulation_wall_s": wall,
        **record_refit,
    })
    return record


def readout_refit(network: Any, model: Any, circuit: Any, y: np.ndarray, lead: int) -> dict[str, float]:
    """Chip-in-the-loop readout calibration of one instance (:mod:`.readout_refit`): the readout is refitted on
    the circuit's own hidden outputs over the first half of the scored samples; the second half scores the
    circuit before and after the refit, and the nominal model, on the same samples."""
    from .readout_refit import PRIOR_PENALTY, lowpassed_outputs, nrmse, outputs_from_membrane, refit_readout

    features = lowpassed_outputs(outputs_from_membrane(circuit.membrane[-1], network), network.config)[lead:]
    target = np.asarray(y, dtype=float)[lead:, 0]
    half = len(target) // 2
    trained = (network.readout.weight.detach().double().numpy()[0], float(network.readout.bias.detach()[0]))
    weights, bias = refit_readout(features[:half], target[:half], prior=trained, penalty=PRIOR_PENALTY)
    # offset trim: the readout bias moved by the chip's mean output error against the nominal model over the
    # first half (no labels: the model's prediction is known at design time), one number per output
    first = slice(lead, lead + half)
    trim = float(np.mean(model.prediction[first, 0] - circuit.prediction[first, 0]))
    return {"task_nrmse_model_holdout": nrmse(model.prediction[lead + half:, 0], target[half:]),
            "task_nrmse_circuit_holdout": nrmse(circuit.prediction[lead + half:, 0], target[half:]),
            "task_nrmse_circuit_refit": nrmse(features[half:] @ weights + bias, target[half:]),
            "readout_offset_trim": trim,
            "task_nrmse_circuit_trimmed": nrmse(circuit.prediction[lead + half:, 0] + trim, target[half:])}


# ------------------------------------------------------------------------------------ statistics


def distribution(values: Sequence[float], worse: str) -> dict[str, Any]:
    """median, 5/95 percentiles, mean, worst (per ``worse``: high / low / abs) and the values; NaN kept out."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    out: dict[str, Any] = {"n": int(arr.size), "n_undefined": int(arr.size - finite.size), "values": arr.tolist()}
    if not finite.size:
        return {**out, "median": float("nan"), "p5": float("nan"), "p95": float("nan"), "mean": float("nan"),
                "worst": float("nan"), "worst_instance": None}
    worst_index = {"high": np.nanargmax, "low": np.nanargmin}.get(worse, lambda a: np.nanargmax(np.abs(a)))(
        np.where(np.isfinite(arr), arr, np.nan))
    return {**out, "median": float(np.median(finite)), "p5": float(np.percentile(finite, 5)),
            "p95": float(np.percentile(finite, 95)), "mean": float(finite.mean()),
            "worst": float(arr[worst_index]), "worst_instance": int(worst_index)}


def nominal_model_refit(checkpoint: str, digest: str, settings: ValidationSettings, calibrated_for: str | None) -> float:
    """The nominal model given the same readout refit as the instances (:func:`readout_refit`): held-out-half task
    NRMSE, the yardstick of the refitted yield (a refit readout can beat the trained one on a chip and on the model)."""
    from .runs import scoring_stream

    network, task = _loaded(checkpoint, digest)
    _, y, lead = scoring_stream(task, settings.samples, settings.washout)
    model = _nominal_model(checkpoint, digest, settings.samples, settings.washout, calibrated_for)
    return readout_refit(network, model, model, y, lead)["task_nrmse_circuit_refit"]


def summarise(instances: list[dict[str, Any]], nominal: dict[str, Any], task_factor: float,
              nominal_refit: float | None = None, reference: float | None = None) -> dict[str, Any]:
    """Distributions over the instances and the yields (see module doc); ``reference``: a task NRMSE every
    chip is also judged against (``yield_task_reference``)."""
    model_task = nominal["task_nrmse_model"]
    limit = task_factor * model_task

    def within(bar: float) -> float:  # fraction of chips whose circuit task NRMSE is finite and <= bar
        return float(np.mean([math.isfinite(r["task_nrmse_circuit"]) and r["task_nrmse_circuit"] <= bar
                              for r in instances]))

    ok_thresholds = [bool(r["passed"]) for r in instances]
    judged = ({} if reference is None else
              {"task_nrmse_reference": reference, "yield_task_reference": within(task_factor * reference)})
    return {
        "instances": len(instances),
        "task_nrmse_model_nominal": model_task,
        "task_nrmse_limit": limit,
        "yield_task": within(limit),
        "yield_thresholds": float(np.mean(ok_thresholds)),
        "yield_definitions": {
            "yield_task": f"fraction of instances with circuit task NRMSE <= {task_factor:g} x the nominal model's "
                          f"({model_task:.4g}), i.e. <= {limit:.4g}",
            "yield_thresholds": "fraction of instances meeting validate's pass thresholds against the nominal model",
            **({"yield_task_reference": f"fraction of instances with circuit task NRMSE <= {task_factor:g} x the "
                                        f"reference ({reference:.4g}, given), i.e. <= {task_factor * reference:.4g}"}
               if reference is not None else {}),
        },
        **judged,
        "metrics": {key: distribution([r.get(key, float("nan")) for r in instances], worse)
                    for key, worse in METRICS.items()},
        "nominal_circuit": nominal,
        "readout_refit": refit_summary(instances, nominal, task_factor, nominal_refit),
    }


def refit_summary(instances: list[dict[str, Any]], nominal: dict[str, Any], task_factor: float,
                  nominal_refit: float | None = None) -> dict[str, Any] | None:
    """Yield on the held-out half before and after the chip-in-the-loop readout refit, and the fraction of the
    accuracy lost to the circuit (vs the nominal model, per instance) that the refit recovers. After the refit,
    chips are judged against the nominal model given the same refit (``nominal_refit``) when it is known."""
    rows = [r for r in instances if "task_nrmse_circuit_refit" in r]
    if not rows or "task_nrmse_model_holdout" not in nominal:
        return None
    model = nominal["task_nrmse_model_holdout"]
    limit = task_factor * model
    limit_after = task_factor * (model if nominal_refit is None else min(model, nominal_refit))
    before = [r["task_nrmse_circuit_holdout"] for r in rows]
    after = [r["task_nrmse_circuit_refit"] for r in rows]
    lost = [max(b - model, 0.0) for b in before]
    regained = [min(max(b - a, 0.0), loss) for b, a, loss in zip(before, after, lost)]
    trimmed = [r["task_nrmse_circuit_trimmed"] for r in rows if "task_nrmse_circuit_trimmed" in r]
    trim = ({"yield_task_trimmed": float(np.mean([t <= limit for t in trimmed])),
             "median_trimmed": float(np.median(trimmed)),
             "trim_definition": "offset trim: the readout bias moved by the chip's mean output error against the "
                                "nominal model over the first half (no labels), scored on the second half"}
            if len(trimmed) == len(rows) else {})
    return {"task_nrmse_model_holdout": model, "limit": limit, **trim,
            "yield_task_before": float(np.mean([b <= limit for b in before])),
            "yield_task_after": float(np.mean([a <= limit_after for a in after])),
            "task_nrmse_model_refit": nominal_refit, "limit_after": limit_after,
            "median_before": float(np.median(before)), "median_after": float(np.median(after)),
            "worst_after": float(np.max(after)),
            "recovered_fraction": float(sum(regained) / sum(lost)) if sum(lost) > 0 else float("nan"),
            "definition": "readout weights and bias refitted (ridge) on each circuit's own hidden outputs over the "
                          "first half of the scored samples; scored on the second half against the nominal model "
                          "there (after the refit: against the better of the nominal model and the nominal model "
                          "given the same refit)"}


# ------------------------------------------------------------------------------------ the study


def study_items(checkpoint: str | Path, settings: ValidationSettings, mc: MonteCarloSettings,
                statistics: MismatchStatistics) -> tuple[list[dict], list[str]]:
    """The tasks (nominal first, then instance 0..N-1) and their labels, which carry a hash of
    everything that determines the numbers (so a stored result is reused only by the same study)."""
    checkpoint = str(Path(checkpoint).resolve())
    digest = _digest(checkpoint)
    mode = mismatch_mode(mc.mismatch, settings.circuit_target)
    inner = dataclasses.replace(settings, workers=0, scheduler="serial")  # one ngspice per instance task
    key = json.dumps({
        "checkpoint": digest, "statistics": statistics.to_dict(), "seed": mc.seed, "mode": mode,
        "settings": {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
                     if f.name not in ("target", "thresholds", "workers", "scheduler", "timeout_s")},
        "thresholds": settings.thresholds.to_dict(),
        "target": settings.target.to_dict() if settings.target is not None else None,
    }, sort_keys=True, default=str)
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    base = {"checkpoint": checkpoint, "digest": digest, "settings": inner, "statistics": statistics, "mode": mode}
    # the seed first: a failing task is reported with the start of its inputs
    items = [{"seed": None, **base}] + [{"seed": [mc.seed, k], **base} for k in range(mc.instances)]
    labels = [f"mc-{tag}-nominal"] + [f"mc-{tag}-s{mc.seed}-k{k:04d}" for k in range(mc.instances)]
    return items, labels


def compensated_nominal(checkpoint: Path, settings: ValidationSettings, calibrated_for: str | None,
                        progress: Progress) -> tuple[Any, dict[str, Any]]:
    """The nominal circuit compensated at design time (:mod:`.compensated`), which every instance then draws its
    mismatch on: what every chip shares is designed out once, what differs per chip is the study."""
    from .compensated import compensate_circuit
    from .runs import map_for_validation, scoring_stream

    if calibrated_for is not None:
        raise InputError(f"--compensate: this checkpoint was trained on {calibrated_for}'s cell model (--hardware), "
                         "so it expects the cells as mapped; compensating them would undo what it learnt. Drop "
                         "--compensate, or use a checkpoint trained on the ideal model")
    path = str(checkpoint.resolve())
    network, task = _loaded(path, _digest(checkpoint))
    x, _, _ = scoring_stream(task, settings.samples, settings.washout)
    model = _nominal_model(path, _digest(checkpoint), settings.samples, settings.washout, None)
    circuit, _ = map_for_validation(network, settings)
    return compensate_circuit(circuit, settings, x, model.lowpass, settings.compensate, progress)


def run_montecarlo(checkpoint: str | Path, out: str | Path, settings: ValidationSettings = ValidationSettings(),
                   mc: MonteCarloSettings = MonteCarloSettings(), execution: Any = None, force: bool = False,
                   progress: Progress = _quiet, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study into ``out`` (``montecarlo.json``, ``montecarlo.html``, ``montecarlo.png``,
    ``instances/``) and return the summary. ``execution``: an :class:`~mtc_analog.execution.Execution`
    (default: from ``settings.scheduler`` / ``settings.workers``; closed here if made here)."""
    from ..execution import Execution
    from .report import provenance

    stamp = provenance(command)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"checkpoint {checkpoint} does not exist (train one with `mtc-analog train`)")
    out = prepare_output_dir(out, MONTECARLO_JSON, force)
    for name in (MONTECARLO_JSON, MONTECARLO_HTML, MONTECARLO_PNG):
        (out / name).unlink(missing_ok=True)  # nothing stale may pose as this run's result
    network, _ = _loaded(str(checkpoint.resolve()), _digest(checkpoint))
    from .runs import map_for_validation

    map_for_validation(network, settings)  # out-of-range mapping: refused here, before any simulation
    target = settings.target
    if target is None:
        from ..hardware import load_target

        target = load_target(None)
        settings = dataclasses.replace(settings, target=target)
    statistics = mc.statistics or statistics_for_target(settings.circuit_target, target)
    if (mismatch_mode(mc.mismatch, settings.circuit_target) == "transistor" and statistics.sigma_vt_n == 0
            and statistics.sigma_vt_p == 0 and (statistics.sigma_rel > 0 or statistics.sigma_offset > 0)):
        raise InputError("transistor-level mismatch needs per-transistor sigmas (sigma_vt_n / sigma_vt_p); these "
                         "statistics give only cell-level spreads: use --mismatch cell")
    items, labels = study_items(checkpoint, settings, mc, statistics)
    from ..training.checkpoint import load_checkpoint

    calibrated_for = nominal_model_kind(load_checkpoint(checkpoint), settings.circuit_target)
    compensation = None
    if settings.compensate:
        circuit, compensation = compensated_nominal(checkpoint, settings, calibrated_for, progress)
        for item in items:
            item["circuit"] = circuit
    for item in items:
        item["calibrated_for"] = calibrated_for
    own = execution is None
    if own:
        requirements = ("ngspice", "sky130") if settings.circuit_target.startswith("sky130") else ("ngspice",)
        execution = Execution(scheduler=settings.scheduler, workers=settings.workers, requirements=requirements)
    mode = mismatch_mode(mc.mismatch, settings.circuit_target)
    spreads = (f"per-transistor sigma_VT nfet {1e3 * statistics.sigma_vt_n:.3g} mV, pfet {1e3 * statistics.sigma_vt_p:.3g} mV"
               if mode == "transistor" else
               statistics.describe())
    progress(f"{mc.instances} instance(s) + the nominal circuit, seed {mc.seed}, {mode}-level mismatch ({spreads}), "
             f"on {execution.describe()}")
    try:
        results = execution.map(run_instance, items, labels=labels, desc="montecarlo", store=out / INSTANCES_DIR)
    finally:
        if own:
            execution.close()
    summary = summarise(results[1:], results[0], mc.task_factor,
                        nominal_refit=nominal_model_refit(str(checkpoint.resolve()), _digest(checkpoint), settings,
                                                          calibrated_for), reference=mc.reference_nrmse)
    summary.update({
        "checkpoint": str(checkpoint), "seed": mc.seed, "statistics": statistics.to_dict(), "mismatch_mode": mode,
        "circuit_target": settings.circuit_target, "hardware_target": target.name,
        "circuit_filter": settings.circuit_filter, "samples_scored": settings.samples, "washout": settings.washout,
        "nominal_model": f"{calibrated_for}'s calibrated cell model (trained --hardware {calibrated_for})"
                         if calibrated_for else "the ideal model",
        "thresholds": settings.thresholds.to_dict(), "labels": labels, "provenance": stamp,
        "compensation": compensation,
    })
    progress("writing the report")
    from ..plotting.montecarlo import histograms
    from ..io import save_figure

    fig = histograms(summary)
    save_figure(fig, out / MONTECARLO_PNG, dpi=90, bbox_inches="tight")
    write_text(out / MONTECARLO_HTML, render_html(summary, out / MONTECARLO_PNG))
    write_json(out / MONTECARLO_JSON, summary)  # last: marks a finished study
    return summary


# ------------------------------------------------------------------------------------ report


_LABELS = {
    "task_nrmse_circuit": "task NRMSE of the circuit", "spike_coincidence": "Gamma vs nominal model",
    "output_nrmse_vs_model": "output NRMSE vs nominal model", "spike_count_error_relative": "firing-rate error (|count error| / model spikes)",
    "rate_change_relative": "network rate change (circuit - model) / model", "membrane_nrmse": "membrane NRMSE vs nominal model",
}


def render_html(summary: dict[str, Any], png: Path) -> str:
    """A small self-contained page: set-up, yields, distributions, the histograms (embedded)."""
    import base64
    import html

    from .report import _CSS, _fmt, _stamp_line, _table

    uri = "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")
    stats = summary["statistics"]
    setup = [("checkpoint", summary["checkpoint"]), ("circuit level", summary["circuit_target"]),
             ("hardware target", summary["hardware_target"]), ("instances", summary["instances"]),
             ("seed (instance k draws with (seed, k))", summary["seed"]),
             ("mismatch drawn per", {"transistor": "transistor (threshold shift of every device of every OTA cell)",
                                     "cell": "cell (tail currents, capacitors, OTA input offsets)"}
              .get(summary.get("mismatch_mode", "cell"), summary.get("mismatch_mode"))),
             *([("sigma_VT nfet / pfet per device [mV]",
                 f"{1e3 * stats.get('sigma_vt_n', 0.0):.3g} / {1e3 * stats.get('sigma_vt_p', 0.0):.3g}")]
               if summary.get("mismatch_mode") == "transistor" else
               [("sigma_rel of currents and capacitors", stats["sigma_rel"]),
                ("sigma_offset of OTA inputs [mV]", 1e3 * stats["sigma_offset"]),
                ("sigma of synapse / readout-node offsets [mV]",
                 f"{1e3 * stats.get('sigma_offset_synapse', 0.0):.3g} / {1e3 * stats.get('sigma_offset_readout', 0.0):.3g}"),
                ("every cell-level spread", MismatchStatistics(**stats).describe())]),
             ("statistics from", stats["source"]),
             ("test samples scored", summary["samples_scored"]), ("warm-up samples", summary["washout"])]
    compensation = summary.get("compensation")
    if compensation:
        from .calibrated import worst_group

        setup.append(("design-time compensation of the nominal circuit",
                      f"{compensation['iterations']} round(s); worst scaled cell error before each: "
                      + ", ".join(worst_group(step["residual_before"]) for step in compensation["steps"])))
    nominal = summary["nominal_circuit"]
    yields = [("yield_task", summary["yield_task"]), ("  definition", summary["yield_definitions"]["yield_task"]),
              ("yield_thresholds", summary["yield_thresholds"]),
              ("  definition", summary["yield_definitions"]["yield_thresholds"]),
              *([("yield_task_reference", summary["yield_task_reference"]),
                 ("  definition", summary["yield_definitions"]["yield_task_reference"])]
                if "yield_task_reference" in summary else []),
              ("nominal model task NRMSE", summary["task_nrmse_model_nominal"]),
              ("nominal circuit task NRMSE", nominal["task_nrmse_circuit"]),
              ("nominal circuit Gamma", nominal["spike_coincidence"]),
              ("nominal circuit output NRMSE vs model", nominal["output_nrmse_vs_model"]),
              ("nominal model", summary.get("nominal_model", "the ideal model"))]
    refit = summary.get("readout_refit")
    if refit:
        yields += [("chip-in-the-loop readout refit", refit["definition"]),
                   ("  yield_task before / after (held-out half)", f"{refit['yield_task_before']:.3f} / {refit['yield_task_after']:.3f}"),
                   ("  median task NRMSE before / after", f"{refit['median_before']:.4f} / {refit['median_after']:.4f}"),
                   ("  nominal model on the held-out half", refit["task_nrmse_model_holdout"]),
                   ("  fraction of the lost accuracy recovered", refit["recovered_fraction"])]
        if "yield_task_trimmed" in refit:
            yields += [("readout offset trim", refit["trim_definition"]),
                       ("  yield_task after the trim / median task NRMSE",
                        f"{refit['yield_task_trimmed']:.3f} / {refit['median_trimmed']:.4f}")]
    rows = ["<table><tr><th>figure</th><th>median</th><th>5 %</th><th>95 %</th><th>worst</th><th>worst instance</th>"
            "<th>undefined</th></tr>"]
    for key, d in summary["metrics"].items():
        rows.append(f"<tr><td>{html.escape(_LABELS.get(key, key))}</td>" + "".join(
            f"<td>{_fmt(d[c])}</td>" for c in ("median", "p5", "p95", "worst", "worst_instance", "n_undefined")) + "</tr>")
    rows.append("</table>")
    title = "Monte-Carlo mismatch study"
    return "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>", _stamp_line(summary.get("provenance") or {}),
        "<h2>Set-up</h2>", _table(setup), "<h2>Yield</h2>", _table(yields),
        "<h2>Distributions over instances</h2>", "\n".join(rows),
        "<h2>Histograms</h2>", f"<img src='{uri}' alt='histograms'>",
        "<p class='note'>Every instance is compared with the nominal (mismatch-free) model on the same test stream. "
        "Per-instance records: instances/*.json.</p>", "</body></html>",
    ])


def print_summary(summary: dict[str, Any], out: Path, stream: Any = None) -> None:
    stream = stream or sys.stdout
    print(f"{summary['instances']} instances on {summary['circuit_target']} (seed {summary['seed']}, "
          f"{summary.get('mismatch_mode', 'cell')}-level mismatch); "
          f"nominal model task NRMSE {summary['task_nrmse_model_nominal']:.4f} "
          f"({summary.get('nominal_model', 'the ideal model')})", file=stream)
    print(f"  {'figure':<28} {'median':>9} {'5 %':>9} {'95 %':>9} {'worst':>9}", file=stream)
    for key, d in summary["metrics"].items():
        print(f"  {key:<28} {d['median']:>9.4f} {d['p5']:>9.4f} {d['p95']:>9.4f} {d['worst']:>9.4f}", file=stream)
    nominal, compensation = summary["nominal_circuit"], summary.get("compensation")
    how = f" (compensated in {compensation['iterations']} rounds)" if compensation else ""
    print(f"  nominal circuit{how}: task NRMSE {nominal['task_nrmse_circuit']:.4f}, Gamma "
          f"{nominal['spike_coincidence']:.4f}, output NRMSE vs model {nominal['output_nrmse_vs_model']:.4f}", file=stream)
    print(f"  yield_task {summary['yield_task']:.3f} ({summary['yield_definitions']['yield_task']})", file=stream)
    print(f"  yield_thresholds {summary['yield_thresholds']:.3f} (validate's thresholds vs the nominal model)", file=stream)
    if "yield_task_reference" in summary:
        print(f"  yield_task_reference {summary['yield_task_reference']:.3f} "
              f"({summary['yield_definitions']['yield_task_reference']})", file=stream)
    refit = summary.get("readout_refit")
    if refit:
        print(f"  chip-in-the-loop readout refit (held-out half, limit {refit['limit']:.4f} before, "
              f"{refit.get('limit_after', refit['limit']):.4f} after): yield_task "
              f"{refit['yield_task_before']:.3f} -> {refit['yield_task_after']:.3f}, median task NRMSE "
              f"{refit['median_before']:.4f} -> {refit['median_after']:.4f}, recovers "
              f"{100 * refit['recovered_fraction']:.0f} % of the accuracy lost", file=stream)
        if "yield_task_trimmed" in refit:
            print(f"  readout offset trim (one bias per output, against the nominal model, no labels): yield_task "
                  f"{refit['yield_task_trimmed']:.3f}, median task NRMSE {refit['median_trimmed']:.4f}", file=stream)
    print(f"  report: {out / MONTECARLO_HTML}", file=stream)

"""Side-by-side comparison: MTC, LIF and AdLIF at equal size and budget, plus non-spiking anchors.

Fairness. Every spiking model gets the same size, budget and data, and the *same* small
hyper-parameter search (:data:`DEFAULT_SEARCH`: learning rate x initial input scale, relative to the
model's own default): each configuration is trained with seed 0 at the headline horizon and the one
with the best *validation* NRMSE is kept; the remaining seeds and the horizon curve use it. Timescale
diversity is offered to every type (MTC: log-spread tau_s/tau_us; LIF: log-spread membrane time
constants, ``timescale_spread``; AdLIF: its per-neuron tau_u in [5, 25], tau_w in [60, 300] steps).
Anchors: ridge regression and an MLP on a 100-sample window, an ESN of the hidden size; the table
gives every model's parameter count and, for MTC, the regime census of its trained neurons.

Runs live in ``OUT/runs/H<h>/<model>/<config>/seed<s>/`` and are reused when their stored
configuration matches (so an interrupted comparison continues where it stopped). Results:
``comparison.json``, ``comparison.md`` (Markdown table) and ``comparison.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..execution import SCHEDULER_ENV, Execution
from ..io import prepare_output_dir, write_json, write_text
from ..network import DEFAULT_INIT_BY_NEURON, NetworkConfig
from ..tasks.mackey_glass import TaskConfig, make_task
from .anchors import echo_state_network, mlp_window, ridge_window
from .train import METRICS, TrainConfig, train

SPIKING = ("mtc", "lif", "adlif")
ACTIVITY = ("spike_rate", "duty_cycle", "synops_per_step")
#: The hyper-parameter search every spiking model gets: lr x (input scale x the model's default).
DEFAULT_SEARCH: tuple[dict[str, float], ...] = (
    {"lr": 5e-2, "input_scale_factor": 1.0}, {"lr": 5e-2, "input_scale_factor": 3.0},
    {"lr": 1e-2, "input_scale_factor": 1.0}, {"lr": 1e-2, "input_scale_factor": 3.0},
)


def config_name(config: dict[str, float]) -> str:
    return f"lr{config['lr']:g}_in{config['input_scale_factor']:g}"


@dataclass
class CompareConfig:
    horizon: int = 84
    seeds: int = 3
    horizons: tuple[int, ...] = (1, 17, 42, 84, 126)
    curve_seeds: int = 1
    models: tuple[str, ...] = SPIKING
    ridge_window: int = 100
    workers: int = 1  #: local-cluster training processes (1: serially in this process)
    scheduler: str | None = None  #: Dask scheduler address (None: $MTC_ANALOG_SCHEDULER, else local/serial)
    base_network: NetworkConfig = field(default_factory=NetworkConfig)  #: neuron and seed are replaced
    base_task: TaskConfig = field(default_factory=TaskConfig)  #: horizon is replaced
    train: TrainConfig = field(default_factory=TrainConfig)  #: seed is replaced
    init_overrides: dict[str, Any] = field(default_factory=dict)  #: input_scale / bias_init for all models
    search: tuple[dict[str, float], ...] = DEFAULT_SEARCH  #: tried with seed 0, chosen on validation
    mlp: bool = True  #: the MLP anchor (~30 s)


def _job_configs(cfg: CompareConfig, model: str, horizon: int, seed: int,
                 search: dict[str, float] | None = None) -> tuple[NetworkConfig, TaskConfig, TrainConfig]:
    init = {**DEFAULT_INIT_BY_NEURON[model], **cfg.init_overrides}
    budget = dataclasses.replace(cfg.train, seed=seed)
    if search is not None:
        init["input_scale"] = float(init["input_scale"]) * float(search["input_scale_factor"])
        budget = dataclasses.replace(budget, lr=float(search["lr"]))
    net = dataclasses.replace(cfg.base_network, neuron=model, seed=seed, **init)
    task = dataclasses.replace(cfg.base_task, horizon=horizon)
    return net, task, budget


def _cached(path: Path, net: NetworkConfig, task: TaskConfig, budget: TrainConfig) -> dict[str, Any] | None:
    metrics_path = path / METRICS
    if not metrics_path.exists():
        return None
    metrics = json.loads(metrics_path.read_text())
    same = (metrics.get("network_config") == net.to_dict() and metrics.get("task_config") == task.to_dict()
            and metrics.get("train_config") == budget.to_dict())
    return metrics if same else None


def _run_job(job: tuple[str, NetworkConfig, TaskConfig, TrainConfig]) -> dict[str, Any]:
    path, net, task, budget = job
    path = Path(path)
    cached = _cached(path, net, task, budget)
    if cached is not None:
        return cached
    return train(net, task, budget, path, force=True, resume=False, progress=False)


def run_compare(cfg: CompareConfig, out_dir: str | Path, force: bool = False, progress: bool = True,
                command: str | None = None, execution: Execution | None = None) -> dict[str, Any]:
    """Run (or reuse) every training job and anchor; write and return the comparison.

    The training runs go through ``execution`` (:mod:`mtc_analog.execution`); by default serially when
    ``cfg.workers <= 1`` and no scheduler is named, else a local Dask cluster of ``cfg.workers`` processes
    or the scheduler ``cfg.scheduler``. Every run is seeded by its own configuration, so the numbers do
    not depend on where it ran.
    """
    from tqdm.auto import tqdm

    if execution is None:
        import os

        serial = cfg.workers <= 1 and cfg.scheduler is None and not os.environ.get(SCHEDULER_ENV)
        with Execution(scheduler="serial" if serial else cfg.scheduler, workers=cfg.workers, progress=False) as ex:
            return run_compare(cfg, out_dir, force, progress, command, ex)

    out = prepare_output_dir(out_dir, "comparison.json", force)
    execution.start()  # an unreachable cluster fails here, in one line, before any bar or training
    started = time.perf_counter()
    horizons = sorted(set(cfg.horizons) | {cfg.horizon})
    for h in horizons:  # fail fast on an impossible horizon, before any training
        dataclasses.replace(cfg.base_task, horizon=h).validate()
    searches = list(cfg.search) or [None]
    bar = tqdm(total=len(cfg.models) * (len(searches) + cfg.seeds - 1) + (len(horizons) - 1) * cfg.curve_seeds
               * len(cfg.models), desc="compare", unit="run", disable=not progress)

    def job(model: str, h: int, seed: int, search: dict | None) -> tuple:
        net, task, budget = _job_configs(cfg, model, h, seed, search)
        name = config_name(search) if search else "default"
        return (str(out / "runs" / f"H{h}" / model / name / f"seed{seed}"), net, task, budget)

    def run_all(jobs: list[tuple]) -> list[dict[str, Any]]:
        def finished(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        return execution.map(_run_job, jobs, labels=[Path(j[0]).relative_to(out / "runs").as_posix() for j in jobs],
                             desc="compare", on_done=finished)

    # 1. the search: every configuration, seed 0, headline horizon; chosen on validation NRMSE only
    search_jobs = [(model, k) for model in cfg.models for k in range(len(searches))]
    search_results = run_all([job(model, cfg.horizon, 0, searches[k]) for model, k in search_jobs])
    chosen: dict[str, int] = {}
    search_table: dict[str, list[dict[str, Any]]] = {}
    for (model, k), metrics in zip(search_jobs, search_results):
        search_table.setdefault(model, []).append({"config": searches[k], "val_nrmse": metrics["val_nrmse"],
                                                   "test_nrmse": metrics["test_nrmse"]})
        if model not in chosen or metrics["val_nrmse"] < search_table[model][chosen[model]]["val_nrmse"]:
            chosen[model] = k
    results: dict[tuple[int, str, int], dict[str, Any]] = {
        (cfg.horizon, model, 0): search_results[search_jobs.index((model, chosen[model]))] for model in cfg.models}
    # 2. the other seeds and the horizon curve, with each model's chosen configuration
    keys, jobs = [], []
    for h in horizons:
        n_seeds = cfg.seeds if h == cfg.horizon else cfg.curve_seeds
        for seed in range(n_seeds):
            for model in cfg.models:
                if (h, model, seed) not in results:
                    keys.append((h, model, seed))
                    jobs.append(job(model, h, seed, searches[chosen[model]]))
    for key, metrics in zip(keys, run_all(jobs)):
        results[key] = metrics
    bar.close()
    anchors: dict[tuple[int, str, int], dict[str, Any]] = {}
    size = int(sum(cfg.base_network.hidden))
    for h in horizons:
        task = make_task(dataclasses.replace(cfg.base_task, horizon=h))
        n_seeds = cfg.seeds if h == cfg.horizon else cfg.curve_seeds
        anchors[(h, "ridge", 0)] = ridge_window(task, cfg.ridge_window)
        for seed in range(n_seeds):
            anchors[(h, "esn", seed)] = echo_state_network(task, size, seed=seed)
        if cfg.mlp and h == cfg.horizon:
            anchors[(h, "mlp", 0)] = mlp_window(task, cfg.ridge_window, size)
    headline = _rows(cfg, results, anchors, cfg.horizon)
    curve = _curve(results, anchors, horizons)
    comparison = {
        "horizon": cfg.horizon,
        "seeds": list(range(cfg.seeds)),
        "hidden": list(cfg.base_network.hidden),
        "rows": headline,
        "horizon_curve": {m: {str(h): v for h, v in c.items()} for m, c in curve.items()},
        "curve_seeds": cfg.curve_seeds,
        "network_config": cfg.base_network.to_dict(),
        "task_config": cfg.base_task.to_dict(),
        "train_config": cfg.train.to_dict(),
        "init_by_neuron": {m: {**DEFAULT_INIT_BY_NEURON[m], **cfg.init_overrides} for m in cfg.models},
        "search": {m: {"tried": search_table[m], "chosen": searches[chosen[m]]} for m in cfg.models},
        "definitions": {
            "test_nrmse": "RMSE / std(target) on the test split (last 30% of the series), z-scored units",
            "spike_rate": "spikes per neuron per neuron step (MTC: upward crossings of U_th; LIF/AdLIF: S = 1)",
            "duty_cycle": "fraction of neuron-steps with s > 0",
            "synops_per_step": "active neurons x fan-out per neuron step (MAC for MTC's graded s, AC for binary spikes)",
        },
        "command": command,
        "wall_s": time.perf_counter() - started,
    }
    write_json(out / "comparison.json", comparison)
    write_text(out / "comparison.md", markdown_table(comparison))
    from ..plotting.training import plot_comparison

    plot_comparison(headline, out / "comparison.png", {m: c for m, c in curve.items()})
    return comparison


def _stats(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _rows(cfg: CompareConfig, results: dict, anchors: dict, horizon: int) -> list[dict[str, Any]]:
    rows = []
    for model in cfg.models:
        runs = [m for (h, name, _), m in sorted(results.items()) if h == horizon and name == model]
        row: dict[str, Any] = {"model": model.upper() if model != "adlif" else "AdLIF", "kind": "spiking",
                               "n_runs": len(runs), "test_nrmse": [r["test_nrmse"] for r in runs]}
        row["test_nrmse_mean"], row["test_nrmse_std"] = _stats(row["test_nrmse"])
        row["val_nrmse_mean"], row["val_nrmse_std"] = _stats([r["val_nrmse"] for r in runs])
        for key in ACTIVITY:
            row[f"{key}_mean"], row[f"{key}_std"] = _stats([r[key] for r in runs])
        row["synop_kind"] = runs[0]["synop_kind"]
        row["n_parameters"] = runs[0]["n_parameters"]
        row["config"] = {k: runs[0]["train_config"]["lr"] if k == "lr" else runs[0]["network_config"]["input_scale"]
                         for k in ("lr", "input_scale")}
        censuses = [r["census_counts"] for r in runs if r.get("census_counts")]
        if censuses:
            row["census_mean"] = {k: float(np.mean([c.get(k, 0) for c in censuses])) for k in censuses[0]}
        gaps = [r["discretisation_gap"] for r in runs if r.get("discretisation_gap") is not None]
        if gaps:
            row["discretisation_gap_max"] = float(max(gaps))
        row["train_wall_s_mean"] = _stats([r["train_wall_s"] for r in runs])[0]
        rows.append(row)
    for name in ("ridge", "esn", "mlp"):
        runs = [m for (h, n, _), m in sorted(anchors.items()) if h == horizon and n == name]
        if not runs:
            continue
        row = {"model": runs[0]["model"], "kind": "anchor", "n_runs": len(runs), "test_nrmse": [r["test_nrmse"] for r in runs],
               "n_parameters": runs[0]["n_parameters"], "spike_rate_mean": None}
        row["test_nrmse_mean"], row["test_nrmse_std"] = _stats(row["test_nrmse"])
        row["val_nrmse_mean"], row["val_nrmse_std"] = _stats([r["val_nrmse"] for r in runs])
        row["train_wall_s_mean"] = _stats([r["train_wall_s"] for r in runs])[0]
        rows.append(row)
    return rows


def _curve(results: dict, anchors: dict, horizons: Sequence[int]) -> dict[str, dict[int, list[float]]]:
    curve: dict[str, dict[int, list[float]]] = {}
    for (h, model, _), m in sorted({**results, **anchors}.items()):
        label = {"mtc": "MTC", "lif": "LIF", "adlif": "AdLIF", "ridge": "ridge", "esn": "ESN", "mlp": "MLP"}[model]
        curve.setdefault(label, {}).setdefault(h, []).append(m["test_nrmse"])
    return curve


def markdown_table(comparison: dict[str, Any]) -> str:
    def pm(row: dict, key: str, fmt: str = "{:.3f}") -> str:
        mean = row.get(f"{key}_mean")
        if mean is None:
            return "–"
        return f"{fmt.format(mean)} ± {fmt.format(row.get(f'{key}_std', 0.0))}"

    h = comparison["horizon"]
    lines = [
        f"# Mackey-Glass, H = {h}: spiking networks of equal size (hidden {comparison['hidden']}) and budget",
        "",
        f"mean ± std over {len(comparison['seeds'])} seed(s); NRMSE = RMSE / std(target) on the test split.",
        "",
        "Every spiking model had the same hyper-parameter search (lr x input scale, "
        f"{len(next(iter(comparison.get('search', {}).values()), {}).get('tried', [])) or 1} configurations, seed 0), "
        "chosen on validation NRMSE only; 'chosen' gives the winner.",
        "",
        "| model | test NRMSE | val NRMSE | spike rate [1/(neuron·step)] | duty cycle | synops / step | params | chosen (lr, input scale) | train wall [s] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison["rows"]:
        synops = pm(row, "synops_per_step", "{:.3g}")
        if row.get("synop_kind"):
            synops += f" {row['synop_kind']}"
        lines.append(
            f"| {row['model']} | {pm(row, 'test_nrmse')} | {pm(row, 'val_nrmse')} | {pm(row, 'spike_rate', '{:.3g}')} | "
            f"{pm(row, 'duty_cycle', '{:.3g}')} | {synops} | {row['n_parameters']} | "
            f"{'%g, %g' % (row['config']['lr'], row['config']['input_scale']) if row.get('config') else '–'} | "
            f"{row['train_wall_s_mean']:.0f} |"
        )
    for row in comparison["rows"]:
        if row.get("census_mean"):
            from .census import census_line

            line = census_line({k: f"{v:.1f}" for k, v in row["census_mean"].items()})
            lines += ["", f"Regime census of the trained {row['model']} neurons (mean count over seeds): {line}."]
        if row.get("discretisation_gap_max") is not None:
            lines += [f"{row['model']} discretisation gap (max over seeds): {row['discretisation_gap_max']:.4f}."]
    lines += ["", "## Test NRMSE versus horizon", "",
              "| model | " + " | ".join(f"H={k}" for k in sorted(next(iter(comparison['horizon_curve'].values())), key=int)) + " |",
              "|---|" + "---|" * len(next(iter(comparison["horizon_curve"].values())))]
    for model, curve in comparison["horizon_curve"].items():
        cells = []
        for k in sorted(curve, key=int):
            mean, std = _stats(curve[k])
            cells.append(f"{mean:.3f}" + (f" ± {std:.3f}" if len(curve[k]) > 1 else ""))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if comparison.get("command"):
        lines += ["", f"Command: `{comparison['command']}`"]
    return "\n".join(lines) + "\n"

"""``mtc-analog compare``: MTC vs LIF vs AdLIF (equal size and budget) plus ridge and ESN anchors."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import InputError
from ..execution import add_execution_arguments
from .train import add_model_arguments, configs_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare MTC, LIF, AdLIF and non-spiking anchors on Mackey-Glass",
                              description="Train every neuron type with the same size and budget over several seeds; "
                                          "write comparison.json, comparison.md and comparison.png.")
    p.add_argument("--horizon", type=int, default=84, help="headline horizon [samples] (default 84)")
    p.add_argument("--seeds", type=int, default=3, help="seeds at the headline horizon (default 3)")
    p.add_argument("--horizons", default="1,17,42,84,126", help="horizons of the NRMSE curve [samples], comma separated ('' to skip)")
    p.add_argument("--curve-seeds", type=int, default=1, help="seeds per curve horizon other than --horizon (default 1)")
    p.add_argument("--models", default="mtc,lif,adlif", help="spiking models to train, comma separated subset of mtc,lif,adlif")
    p.add_argument("--search-lrs", default="0.05,0.01",
                   help="learning rates of the hyper-parameter search every model gets (default 0.05,0.01)")
    p.add_argument("--search-input-scales", default="1,3",
                   help="initial input scales of the search, times each model's default (default 1,3); the "
                        "configuration with the best validation NRMSE at seed 0 is kept")
    p.add_argument("--no-mlp", action="store_true", help="skip the MLP anchor")
    add_execution_arguments(p, "1: serially in this process; N > 1 starts a local Dask cluster of N processes")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="overwrite an earlier comparison (finished runs are reused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(p)
    p.set_defaults(func=run)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated integers") from None


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated numbers") from None
    if not values or min(values) <= 0:
        raise InputError(f"{option} {text!r}: give at least one value, all > 0")
    return values


def run(args: argparse.Namespace) -> int:
    from ..training.compare import SPIKING, CompareConfig, run_compare

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in SPIKING]
    if unknown or not models:
        raise InputError(f"--models: unknown neuron type(s) {unknown}; expected a subset of {', '.join(SPIKING)}")
    if args.seeds < 1 or args.curve_seeds < 1:
        raise InputError("--seeds and --curve-seeds must be >= 1")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers must be >= 0 (0 or 1: serial), got {args.workers}")
    lrs, scales = _floats(args.search_lrs, "--search-lrs"), _floats(args.search_input_scales, "--search-input-scales")
    search = tuple({"lr": lr, "input_scale_factor": f} for lr in lrs for f in scales)
    net, task, budget = configs_from_args(args, "mtc", args.horizon, 0)
    overrides = {k: v for k, v in (("input_scale", args.input_scale), ("bias_init", args.bias_init),
                                   ("dt", args.dt), ("substeps", args.substeps)) if v is not None}
    cfg = CompareConfig(horizon=args.horizon, seeds=args.seeds, horizons=_ints(args.horizons, "--horizons"),
                        curve_seeds=args.curve_seeds, models=models, workers=args.workers or 1,
                        scheduler=args.scheduler, base_network=net,
                        base_task=task, train=budget, init_overrides=overrides, search=search, mlp=not args.no_mlp)
    command = "mtc-analog " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    comparison = run_compare(cfg, args.out, force=args.force, progress=not args.no_progress, command=command)
    for row in comparison["rows"]:
        rate = row.get("spike_rate_mean")
        print(f"{row['model']:>22}: test NRMSE {row['test_nrmse_mean']:.4f} ± {row['test_nrmse_std']:.4f}"
              + (f"  spike rate {rate:.4g}  duty {row['duty_cycle_mean']:.4g}  synops/step {row['synops_per_step_mean']:.4g}"
                 f" {row['synop_kind']}" if rate is not None else ""))
    print(f"-> {args.out}/comparison.json, comparison.md, comparison.png")
    return 0

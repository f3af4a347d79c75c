"""``mtc-analog montecarlo CHECKPOINT --target behavioral|sky130 --instances N --seed S --out DIR``.

Monte-Carlo mismatch study (:mod:`mtc_analog.validation.montecarlo`): N mismatched circuits of the
trained network, each simulated on validate's test stream and compared with the nominal model;
writes DIR/montecarlo.{json,html,png} and one record per instance in DIR/instances/ (a re-run of the
same study resumes from them). Exit 0, or 3 when ``--min-yield`` is given and not reached.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import InputError, ValidationFailed
from ..execution import add_execution_arguments


def run(args: argparse.Namespace) -> int:
    from ..hardware.mismatch import statistics_for_target
    from ..validation.montecarlo import MONTECARLO_HTML, MonteCarloSettings, print_summary, run_montecarlo
    from .validate import settings_from_args

    args.dt_study = False
    settings = settings_from_args(args, args.filter)
    if args.min_yield is not None and not (math.isfinite(args.min_yield) and 0 <= args.min_yield <= 1):
        raise InputError(f"--min-yield must be a fraction in [0, 1], got {args.min_yield}")
    statistics = None
    if args.sigma_rel is not None or args.sigma_offset is not None:
        default = statistics_for_target(args.target, settings.target)
        statistics = default.with_cell_spreads(
            default.sigma_rel if args.sigma_rel is None else args.sigma_rel,
            default.sigma_offset if args.sigma_offset is None else args.sigma_offset * 1e-3,
            "given on the command line" + ("" if args.sigma_rel is not None and args.sigma_offset is not None
                                           else f" (the rest: {default.source})"))
    if statistics is not None and args.mismatch == "transistor":
        raise InputError("--sigma-rel / --sigma-offset are cell-level spreads: use them with --mismatch cell")
    mismatch = "cell" if statistics is not None and args.mismatch is None else (args.mismatch or "auto")
    mc = MonteCarloSettings(instances=args.instances, seed=args.seed, statistics=statistics, mismatch=mismatch,
                            reference_nrmse=args.reference_nrmse)
    from ..training.hardware_aware import print_target_warning

    print_target_warning(args.checkpoint, args.target)
    summary = run_montecarlo(args.checkpoint, args.out, settings, mc, force=args.force,
                             progress=lambda line: print(f"[montecarlo] {line}", flush=True))
    print_summary(summary, Path(args.out))
    if args.min_yield is not None and summary["yield_task"] < args.min_yield:
        raise ValidationFailed(f"yield_task {summary['yield_task']:.3f} < --min-yield {args.min_yield:g} "
                               f"(report: {Path(args.out) / MONTECARLO_HTML})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..neuron.equations import FILTERS

    parser = subparsers.add_parser(
        "montecarlo", help="Monte-Carlo mismatch study of a trained checkpoint's circuit (montecarlo.html)",
        description="Draw N mismatched circuits of the trained network (seeded (S, k) per instance: log-normal tail "
                    "currents and capacitors, OTA input offsets, spreads from the target's transistor mismatch; "
                    "on sky130 by default one threshold shift per transistor, --mismatch), "
                    "simulate each in ngspice on validate's test stream, compare with the nominal model, and "
                    "write distributions of task NRMSE, Gamma, output NRMSE and firing-rate error plus the yield "
                    "to DIR/montecarlo.json and DIR/montecarlo.html. A re-run resumes from DIR/instances/.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by `mtc-analog train` (best.safetensors)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--instances", type=int, default=20, help="mismatch instances")
    parser.add_argument("--seed", type=int, default=0, help="study seed S (instance k draws with (S, k))")
    parser.add_argument("--target", default="behavioral",
                        help="circuit target (behavioral, sky130, sky130:CORNER) and its hardware target file")
    parser.add_argument("--hardware", type=Path, default=None, metavar="FILE",
                        help="hardware target YAML/JSON overriding the named target's units and limits")
    parser.add_argument("--filter", default=None, choices=FILTERS,
                        help="filter kind of the circuit's neurons (default: the kind the network was trained with)")
    parser.add_argument("--mismatch", default=None, choices=("transistor", "cell"),
                        help="draw per transistor (a threshold shift for every device of every OTA cell, from the "
                             "target's mismatch sigmas; the default where the circuit target has transistors: sky130) "
                             "or per cell (tail currents, capacitors, OTA offsets; the default on behavioral and with "
                             "--sigma-rel/--sigma-offset)")
    parser.add_argument("--sigma-rel", type=float, default=None,
                        help="relative spread of every bias current and capacitor (default: from the target's "
                             "transistor mismatch, ~0.04)")
    parser.add_argument("--sigma-offset", type=float, default=None, metavar="MV",
                        help="OTA input offset spread [mV] (default: from the target's transistor mismatch, ~2.8 mV)")
    parser.add_argument("--samples", type=int, default=200, help="test samples to score")
    parser.add_argument("--washout", type=int, default=100, help="warm-up samples streamed before them")
    parser.add_argument("--min-gamma", type=float, default=0.95, help="yield_thresholds: Gamma >= this")
    parser.add_argument("--max-output-nrmse", type=float, default=0.05, help="yield_thresholds: output NRMSE <= this")
    parser.add_argument("--max-membrane-nrmse", type=float, default=None,
                        help="optional yield_thresholds criterion on the pooled membrane NRMSE (default: none)")
    parser.add_argument("--window-steps", type=float, default=2.0, help="coincidence window of Gamma in model steps dt")
    parser.add_argument("--reference-nrmse", type=float, default=None, metavar="NRMSE",
                        help="also judge every chip against this task NRMSE (within the same 10 %%), e.g. another "
                             "network's nominal model's, to compare networks at one bar (yield_task_reference)")
    parser.add_argument("--min-yield", type=float, default=None,
                        help="exit 3 when yield_task is below this fraction (default: never)")
    parser.add_argument("--clip", action="store_true",
                        help="clip mapped values that break the target's ranges (reported) instead of failing")
    parser.add_argument("--max-neurons", type=int, default=64, help="largest netlist chunk of one instance")
    parser.add_argument("--compensate", type=int, default=0, metavar="ROUNDS",
                        help="compensate the nominal circuit at design time against its own cells first (as validate "
                             "--compensate; sky130); every instance draws its mismatch on that circuit (default 0)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per ngspice run")
    add_execution_arguments(parser, "one per CPU core; one instance per task")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a finished study in --out (stored instances of the same study are reused)")
    parser.set_defaults(func=run)
    return parser

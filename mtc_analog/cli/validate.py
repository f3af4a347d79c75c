"""``mtc-analog validate CHECKPOINT --target behavioral --filter linear|ota --out DIR``.

Runs the trained model and its ngspice circuit on the same Mackey-Glass test input, compares them
(docs/reference.md §10) and writes ``DIR/report.json`` + a self-contained ``DIR/report.html``. Exit code 0 when
the pass thresholds hold, 3 (ValidationFailed) when they do not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import InputError
from ..execution import add_execution_arguments


def add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``validate`` and ``demo``."""
    parser.add_argument("--target", default="behavioral",
                        help="circuit target (netlist level) and its hardware target file of the same name "
                             "(default behavioral)")
    parser.add_argument("--hardware", type=Path, default=None, metavar="FILE",
                        help="hardware target YAML/JSON overriding the named target's units and limits")
    parser.add_argument("--samples", type=int, default=200, help="test samples to score (default 200)")
    parser.add_argument("--washout", type=int, default=100,
                        help="warm-up samples streamed before them, in model and circuit alike (default 100)")
    parser.add_argument("--min-gamma", type=float, default=0.95,
                        help="pass threshold: mean coincidence factor Gamma >= this (default 0.95)")
    parser.add_argument("--max-output-nrmse", type=float, default=0.05,
                        help="pass threshold: output NRMSE of circuit vs model <= this (default 0.05)")
    parser.add_argument("--max-membrane-nrmse", type=float, default=None,
                        help="optional pass threshold on the pooled membrane NRMSE (default: none)")
    parser.add_argument("--window-steps", type=float, default=2.0,
                        help="coincidence window of Gamma in model steps dt (default 2)")
    parser.add_argument("--clip", action="store_true",
                        help="clip mapped values that break the target's ranges (reported) instead of failing")
    parser.add_argument("--compensate", type=int, default=0, metavar="ROUNDS",
                        help="design-time compensation before simulating: ROUNDS of characterise every cell -> "
                             "calibrate -> re-map so the circuit computes the network as mapped (targets whose cells "
                             "can be characterised: sky130; 3 rounds leave its cells within 1e-3; default 0: as mapped)")
    parser.add_argument("--max-neurons", type=int, default=64,
                        help="largest netlist chunk; bigger layers are split across processes (default 64)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per ngspice run (default 600)")
    add_execution_arguments(parser, "one per CPU core; used only when the network is split into chunks")
    parser.add_argument("--dt-study", action="store_true",
                        help="also re-run the model at dt/2, dt/4, dt/8 (Euler and exact filters) against the same "
                             "circuit run: is the gap discretisation or circuit?")
    parser.add_argument("--force", action="store_true", help="overwrite an earlier report in --out")


def settings_from_args(args: argparse.Namespace, circuit_filter: str | None):
    """:class:`ValidationSettings` from parsed options (validates them first)."""
    from ..hardware import HardwareTarget, load_target
    from ..validation.fidelity import Thresholds
    from ..validation.runs import ValidationSettings

    for flag, value in (("--min-gamma", args.min_gamma), ("--max-output-nrmse", args.max_output_nrmse),
                        ("--max-membrane-nrmse", args.max_membrane_nrmse), ("--window-steps", args.window_steps),
                        ("--timeout", args.timeout)):
        if value is not None and not math.isfinite(value):  # a NaN threshold would silently drop its criterion
            raise InputError(f"{flag} must be a finite number, got {value}")
    if args.timeout <= 0:
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    if args.washout < 0:
        raise InputError(f"--washout must be >= 0, got {args.washout}")
    if args.window_steps <= 0:
        raise InputError(f"--window-steps must be > 0, got {args.window_steps}")
    compensate = getattr(args, "compensate", 0) or 0
    if args.max_neurons < 1:
        raise InputError(f"--max-neurons must be >= 1, got {args.max_neurons}")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers must be >= 0 (0: serial), got {args.workers}")
    from ..spice.target import get_target

    get_target(args.target)  # unknown circuit level: one clear line
    from ..validation.compensated import check_rounds

    check_rounds(compensate, args.target)
    target: HardwareTarget = load_target(args.hardware if args.hardware else args.target)
    return ValidationSettings(
        target=target, circuit_filter=circuit_filter, samples=args.samples, washout=args.washout,
        thresholds=Thresholds(args.min_gamma, args.max_output_nrmse, args.max_membrane_nrmse),
        window_steps=args.window_steps, clip=args.clip, max_neurons=args.max_neurons,
        timeout_s=args.timeout, circuit_target=args.target, workers=args.workers, scheduler=args.scheduler,
        compensate=compensate,
    )


def print_summary(report: dict, out: Path) -> None:
    keys = ("spike_coincidence", "output_nrmse_vs_model", "membrane_nrmse", "task_nrmse_model", "task_nrmse_circuit",
            "spike_count_error_relative")
    setup = report.get("setup", {})
    print(f"model {setup.get('model_method')}/{setup.get('model_filter')} dt={setup.get('dt')} vs "
          f"{setup.get('circuit_target')} circuit ({setup.get('circuit_filter')} filters):")
    for key in keys:
        value = report.get(key)
        print(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
    print_hardware_summary(report)
    for row in report.get("dt_study") or []:
        print(f"  dt study {row['method']:<5} dt={row['dt']:<8.4g} output NRMSE vs circuit "
              f"{row['output_nrmse_vs_circuit']:.4f}  Gamma {row['spike_coincidence']:.4f}")
    if report.get("calibrated"):
        from ..validation.calibrated import summary_lines

        for line in summary_lines(report["calibrated"]):
            print(f"  {line}")
    print(f"  {'passed' if report.get('passed') else 'FAILED'}; report: {out / 'report.html'}")


def print_hardware_summary(report: dict) -> None:
    """The power line and the operating-point guard's verdict (when the report has them)."""
    from ..validation.power import format_power_line

    if report.get("power"):
        print(f"  {format_power_line(report['power'])}")
    op = report.get("operating_point")
    if op:
        if op.get("n_violations"):
            print(f"  operating point: {op['n_violations']} violation(s); worst: {op['violations'][0]['text']}")
        else:
            print(f"  operating point: ok ({op.get('cells_checked', 0)} OTA(s) and the membranes checked)")
    if report.get("membrane_swing"):
        from ..training.swing import swing_advice

        print(f"  {swing_advice(report['membrane_swing'])}")


def run(args: argparse.Namespace) -> int:
    from ..validation.workflow import raise_if_failed, validate_checkpoint

    from ..training.fidelity_gap import print_gap_warning

    settings = settings_from_args(args, args.filter)
    from ..training.hardware_aware import print_target_warning

    print_gap_warning(args.checkpoint)
    print_target_warning(args.checkpoint, args.target)
    report, _ = validate_checkpoint(args.checkpoint, args.out, settings, run_dt_study=args.dt_study,
                                    force=args.force, progress=lambda line: print(f"[validate] {line}", flush=True))
    print_summary(report, Path(args.out))
    raise_if_failed(report, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..neuron.equations import FILTERS

    parser = subparsers.add_parser(
        "validate", help="circuit-versus-model validation of a trained checkpoint (report.html)",
        description="Drive the trained model and its ngspice circuit with the same Mackey-Glass test input, map "
                    "the circuit back to model units, compute membrane NRMSE, spike coincidence Gamma, spike-count "
                    "and output errors, and write DIR/report.json and DIR/report.html. Exits 3 when the pass "
                    "thresholds fail.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by `mtc-analog train` (best.safetensors)")
    parser.add_argument("--filter", default=None, choices=FILTERS,
                        help="filter kind of the circuit's neurons (default: the kind the network was trained with)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    add_validation_arguments(parser)
    parser.set_defaults(func=run)
    return parser

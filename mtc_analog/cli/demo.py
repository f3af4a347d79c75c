"""``mtc-analog demo --out DIR``: the main job — train, export, simulate in ngspice, validate, report.

Thin wrapper over :func:`mtc_analog.validation.demo.run_demo`; leaves ``DIR/report.html``.
Exit code 0 when the linear-filter validation meets its thresholds, 3 when it does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from ..errors import ValidationFailed
    from ..validation.demo import run_demo

    overrides = {}
    if args.hidden is not None:
        overrides["hidden"] = (args.hidden,)
    training = {"epochs": args.epochs} if args.epochs is not None else {}
    summary = run_demo(args.out, force=args.force, network_overrides=overrides, training_overrides=training,
                       ota=not args.no_ota, sky130=not args.no_sky130)
    if not summary["passed"]:
        raise ValidationFailed(f"the demo network did not meet the validation thresholds (report: {summary['report']})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="the main job: train a small MTC network, export, simulate in ngspice, validate (report.html)",
        description="Train a small MTC network on Mackey-Glass, map it onto the behavioural OTA target, export "
                    "the netlist, simulate it in ngspice, validate it against the model (linear and OTA filters, then "
                    "at transistor level on sky130 beside the calibrated model) and leave DIR/report.html. A few minutes on 2 CPU cores.")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--force", action="store_true", help="overwrite an earlier demo in --out")
    parser.add_argument("--hidden", type=int, default=None, help="hidden neurons (default 16)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    parser.add_argument("--no-ota", action="store_true", help="skip the OTA-filter circuit validation")
    parser.add_argument("--no-sky130", action="store_true",
                        help="skip the transistor-level sky130 validation (model, calibrated model and circuit)")
    parser.set_defaults(func=run)
    return parser

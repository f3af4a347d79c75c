"""``mtc-analog evaluate CHECKPOINT``: recompute a checkpoint's metrics on a split."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="recompute test metrics of a checkpoint",
                              description="Rebuild the task stored in CHECKPOINT and recompute NRMSE and activity.")
    p.add_argument("checkpoint", help="a best.safetensors written by `mtc-analog train`")
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="data split to score")
    p.add_argument("--dt", type=float, default=None, help="re-integrate with this step [t_u] (with --substeps; default: the trained dt)")
    p.add_argument("--substeps", type=int, default=None, help="neuron steps per input sample when re-integrating (dt*substeps fixed; default: the trained one)")
    p.add_argument("--out", default=None, help="also write the metrics to this JSON file (default: print only)")
    p.set_defaults(func=run, out_kind="file")  # --out is one JSON file


def run(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..training.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, split=args.split, dt=args.dt, substeps=args.substeps)
    if args.out:
        write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0

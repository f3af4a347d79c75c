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

    if args.substeps is not None:
        check_evaluation_memory(args.checkpoint, args.substeps)
    metrics = evaluate_checkpoint(args.checkpoint, split=args.split, dt=args.dt, substeps=args.substeps)
    if args.out:
        write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


#: Tensors of shape (steps, neurons) alive during an evaluation roll-out (no graph; batch 1).
EVAL_TRACES = 6


def check_evaluation_memory(checkpoint: str, substeps: int) -> None:
    """Refuse a re-integration (``--substeps``) whose roll-out cannot fit in memory, before loading.

    Reads only the checkpoint's JSON header; a bad file is left to ``load_checkpoint`` to report.
    """
    from ..resources import check_allocation

    try:
        from safetensors import safe_open

        with safe_open(str(checkpoint), "pt") as fh:
            meta = fh.metadata() or {}
        hidden = sum(int(n) for n in json.loads(meta["network_config"])["hidden"])
        n_samples = int(json.loads(meta["task_config"])["n_samples"])
    except Exception:  # noqa: BLE001 - any unreadable header: load_checkpoint says what is wrong
        return
    steps = n_samples * int(substeps)
    check_allocation(steps * hidden * EVAL_TRACES * 4,
                     f"re-integrating {checkpoint} at {substeps} substeps ({steps} steps x {hidden} neurons x "
                     f"{EVAL_TRACES} traces x 4 B)", "lower --substeps (raise --dt)")

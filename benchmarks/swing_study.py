"""Swing study: does keeping membranes inside sky130's linear range make the circuit follow the model on long streams?

For each seed, the same network is trained twice -- without and with ``--swing-penalty`` (limit: sky130's
``linear_range``, 3 V_s) -- and each is validated on the sky130 target at transistor level, compensated at design
time, over a long test stream (default 200 scored samples after 30 warm-up samples; the main job scores 40). Printed
per run and as the mean [min-max] over seeds: Gamma and output NRMSE circuit vs model, task NRMSE of model and
circuit, the model's test NRMSE, and how far the membranes go (largest excursion, share of neuron-steps beyond
3 V_s). Results: docs/results_sky130.md, "Membranes inside the cells' linear range".

    python benchmarks/swing_study.py --seeds 0,1,2,3,4 --out runs/swing            # demo network (16 neurons, H 17)
    python benchmarks/swing_study.py --size 64 --seeds 0,1,2 --samples 80 --workers 2 --out runs/swing64

~15 s of training and ~25 s of ngspice per demo run (2-core machine); 1-3 min and ~3-4 min per 64-neuron run.
Runs already in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PENALTY = 1.0  #: weight of the swing penalty in the "swing" arm (5 seeds, 2026-12-07: 1 and 10 alike; 3 V_s limit)


def configs(size: str, seed: int, penalty: float):
    from mtc_analog.hardware import load_target
    from mtc_analog.network import NetworkConfig
    from mtc_analog.tasks.mackey_glass import TaskConfig
    from mtc_analog.training.train import TrainConfig
    from mtc_analog.validation.demo import DEMO_NETWORK, DEMO_TASK, DEMO_TRAINING

    swing = {"swing_penalty": penalty, "swing_limit": load_target("sky130").linear_range} if penalty else {}  # 3 V_s
    if size == "demo":
        return (NetworkConfig(**{**DEMO_NETWORK, "seed": seed}), TaskConfig(**DEMO_TASK),
                TrainConfig(**{**DEMO_TRAINING, "seed": seed, **swing}))
    return NetworkConfig(hidden=(int(size),), seed=seed), TaskConfig(horizon=84), TrainConfig(seed=seed, **swing)


def run_one(size: str, seed: int, penalty: float, out: Path, samples: int, washout: int, workers: int) -> dict:
    import torch

    from mtc_analog.hardware import load_target
    from mtc_analog.tasks.mackey_glass import make_task
    from mtc_analog.training.checkpoint import load_checkpoint
    from mtc_analog.training.train import train
    from mtc_analog.validation.runs import ValidationSettings, validate_network

    folder = out / f"{size}_{'swing' if penalty else 'free'}_s{seed}"
    result = folder / f"swing_{samples}.json"
    if result.exists():
        return json.loads(result.read_text())
    torch.set_num_threads(1)
    net, task_cfg, train_cfg = configs(size, seed, penalty)
    if not (folder / "metrics.json").exists():
        train(net, task_cfg, train_cfg, folder, force=True, progress=False, make_figure=False)
    loaded = load_checkpoint(folder / "best.safetensors")
    task = make_task(loaded.task)
    settings = ValidationSettings(target=load_target("sky130"), circuit_target="sky130", circuit_filter="linear",
                                  samples=samples, washout=washout, clip=True, compensate=3, workers=workers)
    summary = validate_network(loaded.network, task, settings).summary
    metrics = json.loads((folder / "metrics.json").read_text())
    swing = metrics["membrane_swing"]  # test split; limit: the penalty's, or sky130's linear range (both 3 V_s)
    row = {"size": size, "seed": seed, "swing_penalty": penalty, "samples": samples,
           "gamma": summary["spike_coincidence"], "output_nrmse": summary["output_nrmse_vs_model"],
           "task_nrmse_model": summary["task_nrmse_model"], "task_nrmse_circuit": summary["task_nrmse_circuit"],
           "test_nrmse": metrics["test_nrmse"], "max_excursion": swing["max_excursion"],
           "share_beyond_3": swing["share_beyond"]}
    result.write_text(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="demo", help="demo (16 neurons, H 17, the main job's recipe) or a hidden size (H 84)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--samples", type=int, default=200, help="scored test samples of the sky130 validation")
    parser.add_argument("--washout", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1, help="ngspice workers per validation")
    parser.add_argument("--out", default="runs/swing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_one(args.size, int(seed), penalty, out, args.samples, args.washout, args.workers)
            for seed in args.seeds.split(",") for penalty in (0.0, PENALTY)]
    keys = ("gamma", "output_nrmse", "task_nrmse_model", "task_nrmse_circuit", "test_nrmse", "max_excursion",
            "share_beyond_3")
    print(f"{'arm':6s} {'seed':>4s} " + " ".join(f"{k:>18s}" for k in keys))
    for r in rows:
        print(f"{'swing' if r['swing_penalty'] else 'free':6s} {r['seed']:4d} " + " ".join(f"{r[k]:18.4f}" for k in keys))
    print(f"\nover seeds, mean [min-max] ({args.size}, sky130 compensated, {args.samples} samples after {args.washout}):")
    for arm in ("free", "swing"):
        group = [r for r in rows if bool(r["swing_penalty"]) == (arm == "swing")]
        cells = [f"{k} {statistics.mean(r[k] for r in group):.4f} [{min(r[k] for r in group):.4f}-"
                 f"{max(r[k] for r in group):.4f}]" for k in keys]
        print(f"{arm:6s} " + "; ".join(cells))
    (out / f"swing_{args.size}_{args.samples}.json").write_text(json.dumps(rows))
    print(f"-> {out}/swing_{args.size}_{args.samples}.json")


if __name__ == "__main__":
    main()

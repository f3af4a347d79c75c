"""Spread of the main job's fidelity over seeds: the demo (package defaults) trained and validated
with seeds 0..N-1. Prints one row per seed and the worst case against the thresholds.

    python benchmarks/demo_spread.py --seeds 5 --out runs/demo_spread      # ~3-5 min per seed on 2 cores

The OTA-filter and sky130 stages of the demo are skipped (they do not decide pass/fail). Figures in
docs/results_validation.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtc_analog.validation.demo import DEMO_VALIDATION, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_spread"))
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        summary = run_demo(args.out / f"seed{seed}", force=True, progress=lambda line: None, ota=False, sky130=False,
                           network_overrides={"seed": seed}, training_overrides={"seed": seed})
        lin = summary["linear"]
        rows.append({"seed": seed, "gamma": lin["spike_coincidence"], "output_nrmse_vs_model": lin["output_nrmse_vs_model"],
                     "task_nrmse_model": lin["task_nrmse_model"], "passed": summary["passed"],
                     "wall_s": summary["wall_s"]["total"]})
        r = rows[-1]
        print(f"seed {seed}: Gamma {r['gamma']:.4f}  output NRMSE vs model {r['output_nrmse_vs_model']:.5f}  "
              f"task NRMSE {r['task_nrmse_model']:.3f}  {'passed' if r['passed'] else 'FAILED'}  ({r['wall_s']:.0f} s)",
              flush=True)
    th = DEMO_VALIDATION["thresholds"]
    worst_gamma = min(r["gamma"] for r in rows)
    worst_out = max(r["output_nrmse_vs_model"] for r in rows)
    print(f"worst Gamma {worst_gamma:.4f} (threshold {th.spike_coincidence_min}, margin "
          f"{worst_gamma - th.spike_coincidence_min:+.4f}); worst output NRMSE {worst_out:.5f} (threshold "
          f"{th.output_nrmse_vs_model_max}); {sum(r['passed'] for r in rows)}/{len(rows)} passed")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spread.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

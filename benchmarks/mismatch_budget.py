"""Which mismatch moves a trained network's chips, and how much less of it the network would need (model level).

    PYTHONPATH=. python benchmarks/mismatch_budget.py CHECKPOINT --groups --instances 40
    PYTHONPATH=. python benchmarks/mismatch_budget.py CHECKPOINT --scales 1,0.7,0.5,0.35,0.25 --instances 100

``--groups``: one group of sky130's cell spreads at a time (the rest zero), ``model_yield`` per group: the chips'
median over the nominal model says what each group costs. ``--scales``: every cell spread times f (capacitors kept at
their 0.1 %), i.e. cells of ~1/f^2 the matched area: the yield a network would reach on better-matched cells.
Figures: docs/results_hardware_aware.md, section "Four chips per batch".
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from mtc_analog.hardware.mismatch import MismatchStatistics

#: every cell spread of the statistics at zero (the per-transistor sigmas only say where they came from)
ZERO = {f.name: 0.0 for f in dataclasses.fields(MismatchStatistics)
        if f.name.startswith("sigma_") and f.name not in ("sigma_vt_n", "sigma_vt_p")}
GROUPS = {"currents": "sigma_rel", "capacitors": "sigma_rel_capacitor", "leak": "sigma_rel_leak",
          "asymmetry": "sigma_rel_asymmetry", "thresholds": "sigma_offset", "element offsets": "sigma_offset_element",
          "rest offsets": "sigma_offset_rest", "filter offsets": "sigma_offset_filter",
          "synapse offsets": "sigma_offset_synapse", "readout synapse offsets": "sigma_offset_readout_synapse",
          "readout node offsets": "sigma_offset_readout"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--groups", action="store_true")
    parser.add_argument("--scales", default=None, help="comma-separated factors f on every cell spread")
    parser.add_argument("--instances", type=int, default=40)
    args = parser.parse_args()
    import torch

    from mtc_analog.hardware import load_target
    from mtc_analog.hardware.mismatch import statistics_for_target
    from mtc_analog.tasks.mackey_glass import make_task
    from mtc_analog.training.checkpoint import load_checkpoint
    from mtc_analog.validation.model_montecarlo import model_yield

    torch.set_num_threads(1)
    target = load_target("sky130")
    full = statistics_for_target("sky130", target)
    loaded = load_checkpoint(args.checkpoint)
    task = make_task(loaded.task)
    cases = [("all", full)]
    if args.groups:
        cases += [(name, dataclasses.replace(full, **{**ZERO, field: getattr(full, field)}))
                  for name, field in GROUPS.items()]
    for f in ([float(v) for v in args.scales.split(",")] if args.scales else []):
        scaled = full.with_cell_spreads(f * full.sigma_rel, f * full.sigma_offset, f"x {f:g}")
        cases.append((f"every spread x {f:g}", dataclasses.replace(scaled, sigma_rel_capacitor=full.rel_capacitor)))
    for name, statistics in cases:
        study = model_yield(loaded.network, task, statistics, target, instances=args.instances, seed=0, finetune=False)
        v = np.array([row["task_nrmse"] for row in study["per_instance"]])
        nominal = study["task_nrmse_nominal_model"]
        print(f"{name:26s} nominal {nominal:.4f}  yield {study['yield_task']:.2f}  median {np.median(v):.4f} "
              f"({np.median(v) / nominal - 1:+.1%})  p90 {np.percentile(v, 90):.4f}  worst {v.max():.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Export and ngspice simulation time of trained-shape MTC networks (behavioural target).

For N hidden neurons in {32, 128, 512} (one hidden layer, the default `mtc-analog train` network
shape: dt = 0.5 t_u, 2 substeps per sample, 4th-order low-pass) over 2000 Mackey-Glass test samples
(2000 t_u = 2 s of circuit time at t_u = 1 ms, TMAX = dt = 0.5 ms), this prints:

- export: map the network spec to circuit values + write network.cir and mapping.json;
- one netlist: the whole network in one ngspice process;
- split: layers cut into chunks of at most --max-neurons neurons, chunks run in parallel worker
  processes (exact for a feedforward network: OTA inputs draw no current; see mtc_analog.spice.split);
- the growth exponent of each against N (slope of log time vs log N).

Wall times depend on what else runs on the machine; the CPU seconds that ngspice itself used are
printed beside them (one netlist: its CPU; split: the total CPU over all chunks, and the critical
path = sum over rounds of the largest chunk's CPU, i.e. the wall time with enough idle cores).

Weights: the untrained network of `SpikingRegressor(NetworkConfig(hidden=(N,)))` (PyTorch's default
initialisation, the same scale training starts from) unless --checkpoint gives a trained one; values
outside the target's ranges are clipped as `export --clip` does (reported as a count).

    nice -n 10 .venv/bin/python benchmarks/bench_spice.py                # all sizes
    .venv/bin/python benchmarks/bench_spice.py --sizes 32 --samples 200  # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_circuit(n_hidden: int, checkpoint: str | None):
    from mtc_analog.hardware import HardwareTarget, enforce_ranges, map_network
    from mtc_analog.network import NetworkConfig, SpikingRegressor

    if checkpoint:
        from mtc_analog.training.checkpoint import load_checkpoint

        net = load_checkpoint(checkpoint).network
    else:
        net = SpikingRegressor(NetworkConfig(hidden=(n_hidden,)))
    target = HardwareTarget()
    circuit, changes = enforce_ranges(map_network(net.to_spec(), target), target, clip=True)
    return circuit, len(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="32,128,512", help="hidden layer sizes (comma separated)")
    parser.add_argument("--samples", type=int, default=2000, help="input samples (default 2000)")
    parser.add_argument("--max-neurons", type=int, default=64, help="chunk size of the split runs (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--skip-single-above", type=int, default=100000, help="skip the one-netlist run above this N")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint to use instead (its own size)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    from mtc_analog.spice.export import export_network
    from mtc_analog.spice.split import simulate_network, simulate_network_split
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task

    task = make_task(TaskConfig(n_samples=max(4000, int(args.samples / 0.3) + 200)))
    x = task.test.x[: args.samples].astype(float)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} CPUs; {x.shape[0]} samples; dt = 0.5 t_u, 2 substeps; workers = {args.workers or os.cpu_count()}")
    print(f"{'N':>5} {'export s':>9} {'netlist MB':>10} | {'one: wall s':>11} {'cpu s':>7} | {'split: wall s':>13} "
          f"{'cpu s':>7} {'crit. s':>7} {'chunks':>6} | {'gap':>7}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_spice_") as tmp:
        for n in sizes:
            t0 = time.perf_counter()
            circuit, clipped = build_circuit(n, args.checkpoint)
            result = export_network(circuit, x, Path(tmp) / f"n{n}", force=True)
            export_s = time.perf_counter() - t0
            size_mb = result.netlist_path.stat().st_size / 1e6
            one_s = one_cpu = None
            if n <= args.skip_single_above:
                t0 = time.perf_counter()
                waves_one, _ = simulate_network(circuit, x, max_neurons=None)
                one_s, one_cpu = time.perf_counter() - t0, float(waves_one.meta["cpu_seconds"])
            t0 = time.perf_counter()
            waves_split, _ = simulate_network_split(circuit, x, max_neurons=min(args.max_neurons, max(1, n // 2)),
                                                    workers=args.workers)
            split_s = time.perf_counter() - t0
            rounds = waves_split.meta["cpu_seconds"]
            split_cpu, critical = sum(map(sum, rounds)), sum(max(r) for r in rounds)
            chunks = len(waves_split.meta["chunks"][0])
            gap = None
            if one_s is not None:
                gap = float(np.abs(np.interp(waves_split.time, waves_one.time, waves_one["lp0_3"]) - waves_split["lp0_3"]).max()
                            / circuit.target.v_s)
            rows.append({"n": n, "export_s": export_s, "netlist_mb": size_mb, "one_netlist_s": one_s,
                         "one_netlist_cpu_s": one_cpu, "split_s": split_s, "split_cpu_s": split_cpu,
                         "split_critical_path_cpu_s": critical, "chunks": chunks, "clipped": clipped,
                         "max_output_gap_model_units": gap, "samples": int(x.shape[0])})
            one = f"{one_s:11.2f} {one_cpu:7.2f}" if one_s is not None else f"{'skipped':>11} {'':>7}"
            gap_text = f"{gap:7.4f}" if gap is not None else f"{'-':>7}"
            print(f"{n:5d} {export_s:9.2f} {size_mb:10.2f} | {one} | {split_s:13.2f} {split_cpu:7.2f} {critical:7.2f} "
                  f"{chunks:6d} | {gap_text}", flush=True)
    print("gap: largest |one netlist - split| of the low-pass output [model units]; clipped values per network: "
          + ", ".join(f"N={r['n']}: {r['clipped']}" for r in rows))
    if len(rows) >= 2:
        for key in ("export_s", "one_netlist_cpu_s", "split_cpu_s", "split_critical_path_cpu_s"):
            pts = [(math.log(r["n"]), math.log(r[key])) for r in rows if r[key]]
            if len(pts) >= 2:
                slope = np.polyfit(*zip(*pts), 1)[0]
                print(f"growth of {key}: time ~ N^{slope:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

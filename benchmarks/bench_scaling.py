"""Scaling of the execution layer (mtc_analog.execution): speed-up versus workers, overhead per task.

The task is what a Monte-Carlo instance or a regime-gallery entry is: one behavioural MTC neuron
netlist under a step protocol, simulated in ngspice in its own process (mtc_analog.spice.parallel).
The same tasks run

* serially in this process (the reference, no Dask), and
* on a local Dask cluster of 1, 2, ... worker processes (a multi-process LocalCluster stands in for
  the nodes of a real cluster),

interleaved over ``--rounds`` rounds; cluster start-up is timed separately and excluded from the
per-run figure (it is paid once per command). Printed: median wall time, speed-up over serial,
overhead per task against the serial path (``(wall_1_worker - wall_serial) / tasks``), whether the
results are identical everywhere, and a paper estimate of a 1000-instance Monte Carlo on a 32-node
cluster from the measured per-task cost (and from the sky130 per-neuron cost of docs/reference.md §11).

    nice -n 5 .venv/bin/python benchmarks/bench_scaling.py --tasks 8 --workers 1,2 --rounds 3
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np


def make_jobs(n: int, t_end: float):
    from mtc_analog.hardware import load_target
    from mtc_analog.neuron.equations import MTCParameters
    from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, protocol_netlist
    from mtc_analog.spice.runner import SimulationJob

    target = load_target("behavioral")
    jobs = []
    for k in range(n):  # slightly different drives: different tasks, as Monte-Carlo instances are
        setup = NeuronSetup(MTCParameters(a_f=2.0, a_s_plus=2.0, tau_s=50.0, tau_us=2500.0),
                            StepProtocol(-2.0, -0.2 * k / max(n - 1, 1), t_step=20.0, t_end=t_end, dt=0.1),
                            name=f"inst{k}")
        netlist, _ = protocol_netlist(setup, target)
        jobs.append(SimulationJob(netlist.render(control=False), None, f"instance {k}"))
    return jobs


def run_serial(jobs):
    from mtc_analog.spice.parallel import simulate_one

    return [simulate_one((job, None, None)) for job in jobs]


def fingerprint(results) -> list[float]:
    return [float(np.sum(w.voltages[next(iter(w.voltages))])) for w in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=8, help="netlists per run (default 8)")
    parser.add_argument("--t-end", type=float, default=400.0, help="model time per netlist [t_u] (default 400)")
    parser.add_argument("--workers", default="1,2", help="local cluster sizes, comma-separated (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()

    from mtc_analog.execution import Execution
    from mtc_analog.spice.parallel import simulate_one

    sizes = [int(w) for w in args.workers.split(",") if w]
    jobs = make_jobs(args.tasks, args.t_end)
    load = os.getloadavg()
    clusters, startup = {}, {}
    for w in sizes:
        t0 = time.perf_counter()
        ex = Execution(workers=w, progress=False)
        ex.start()
        ex.map(simulate_one, [(jobs[0], None, None)] * w, labels=[f"warm{i}" for i in range(w)])  # warm imports
        startup[w] = time.perf_counter() - t0
        clusters[w] = ex
    walls: dict[str, list[float]] = {"serial": [], **{f"{w} worker(s)": [] for w in sizes}}
    prints: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            prints["serial"] = fingerprint(run_serial(jobs))
            walls["serial"].append(time.perf_counter() - t0)
            for w in sizes:
                t0 = time.perf_counter()
                res = clusters[w].map(simulate_one, [(j, None, None) for j in jobs],
                                      labels=[f"r{_}-{k}" for k in range(len(jobs))])
                walls[f"{w} worker(s)"].append(time.perf_counter() - t0)
                prints[f"{w} worker(s)"] = fingerprint(res)
    finally:
        for ex in clusters.values():
            ex.close()
    serial = statistics.median(walls["serial"])
    print(f"execution layer scaling: {args.tasks} behavioural neuron netlists x {args.t_end:g} t_u, "
          f"{args.rounds} interleaved rounds, {os.cpu_count()} CPU(s), load average before {load[0]:.1f}")
    print(f"{'where':<14}{'median [s]':>12}{'spread [s]':>12}{'speed-up':>10}{'overhead/task [ms]':>20}{'start [s]':>11}")
    for name, values in walls.items():
        med = statistics.median(values)
        spread = max(values) - min(values)
        w = None if name == "serial" else int(name.split()[0])
        overhead = f"{1e3 * (med - serial) / args.tasks:.0f}" if w == 1 else ""
        print(f"{name:<14}{med:>12.2f}{spread:>12.2f}{serial / med:>10.2f}{overhead:>20}"
              f"{'' if w is None else f'{startup[w]:.1f}':>11}")
    identical = all(p == prints["serial"] for p in prints.values())
    print(f"results identical serial vs every cluster size: {identical}")
    per_task = serial / args.tasks
    # Paper estimate: 1000 instances on 32 nodes x 16 cores, one single-threaded worker per core.
    slots = 32 * 16
    overhead_s = max(0.0, (walls_one(walls) - serial) / args.tasks) if 1 in sizes else 0.05
    est = math.ceil(1000 / slots) * (per_task + overhead_s)
    print(f"estimate, 1000 instances of this task on 32 nodes x 16 cores: {est:.1f} s "
          f"(per task {per_task:.2f} s + overhead {overhead_s * 1e3:.0f} ms, {math.ceil(1000 / slots)} waves)")
    sky = 1.2e-3 * 64 * 300  # docs/reference.md §11: ~0.5-1.9 ms CPU per neuron per t_u at transistor level; 64 neurons, 300 t_u
    est_sky = math.ceil(1000 / slots) * (sky + overhead_s + 6.0)  # + ~6 s sky130 model load per netlist
    print(f"estimate, 1000 sky130 instances of a 64-neuron network over 300 t_u (~{sky:.0f} CPU s each + 6 s "
          f"model load): {est_sky / 60:.1f} min on 32 x 16 cores vs {1000 * (sky + 6) / 3600 / 2:.1f} h on this 2-core machine")


def walls_one(walls: dict[str, list[float]]) -> float:
    return statistics.median(walls["1 worker(s)"])


if __name__ == "__main__":
    main()

"""CPU cost of the transistor-level (sky130) target against the behavioural one, per neuron per t_u.

Network: one hidden layer of N neurons with the package defaults (dt = 0.25 t_u, 4 steps per input
sample, PyTorch's default initialisation, 4th-order low-pass readout), mapped onto the sky130 target
file's units (t_u = 100 us, V_rest = 1.1 V), driven by Mackey-Glass; both targets simulate the same
mapped network. TMAX = the model dt unless ``--tmax`` says otherwise.

Accounting. The figure is ngspice's CPU time (the worker process's ``process_time`` around loading and
running the netlist: parse, operating point, transient, handing the vectors back). Each configuration
runs at two lengths T1 < T2; the cost per t_u is the slope ``(cpu(T2) - cpu(T1)) / (T2 - T1)`` and the
set-up (parse + operating point, paid once per netlist) is the intercept, printed apart: total/T mixes
them and is dominated by set-up in short runs.

Printed per N and target: set-up [s], ms CPU per neuron per t_u (slope), for one netlist and, with
``--chunks M``, for the network cut into netlists of at most M neurons (``spice/split.py``; the chunks run
one at a time here, their CPU summed, the readout netlist included). ``--accuracy N`` adds the spike-time
error of the sky130 run against the same netlist at TMAX/10 (hidden-neuron membrane crossings of U_th,
matched one-to-one within 1 t_u). ``--repeats R`` runs each pair R times and prints the median slope
(single slopes vary 2-7x on a loaded 2-core machine; instruction counts are the stable figure).

    nice -n 5 .venv/bin/python benchmarks/bench_sky130.py                          # N = 1, 8, 32
    nice -n 5 .venv/bin/python benchmarks/bench_sky130.py --sizes 128 --targets sky130 --chunks 32
    nice -n 5 .venv/bin/python benchmarks/bench_sky130.py --sizes 8 --accuracy 8 --tmax 0.25,0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def build(n_hidden: int, dt: float, substeps: int, t_model: float) -> tuple[Any, np.ndarray]:
    """The mapped network (sky130 target file's units) and ``t_model`` t_u of Mackey-Glass input."""
    from mtc_analog.hardware import enforce_ranges, map_network
    from mtc_analog.hardware.target import load_target
    from mtc_analog.network import NetworkConfig, SpikingRegressor
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task

    net = SpikingRegressor(NetworkConfig(hidden=(n_hidden,), dt=dt, substeps=substeps))
    target = load_target("sky130")
    circuit, _ = enforce_ranges(map_network(net.to_spec(), target), target, clip=True)
    samples = round(t_model / (dt * substeps))
    task = make_task(TaskConfig(n_samples=max(4000, samples * 4)))
    return circuit, task.test.x[:samples].astype(float)


def with_tmax(circuit: Any, tmax_tu: float) -> Any:
    """The same circuit with the simulator's maximum step at ``tmax_tu`` t_u (the builder writes TMAX = t_step)."""
    return dataclasses.replace(circuit, t_step=circuit.target.seconds(tmax_tu))


def run_one(circuit: Any, x: np.ndarray, target: str) -> tuple[float, Any, dict]:
    """(CPU seconds, waveforms, node map) of the whole network as one netlist."""
    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.runner import SimulationJob, run_jobs

    netlist = build_network_netlist(circuit, x, target_name=target)
    waves = run_jobs([SimulationJob(netlist.render(control=False), None, f"{target} network")], workers=1)[0]
    return float(waves.meta["cpu_seconds"]), waves, netlist.nodes


def run_chunks(circuit: Any, x: np.ndarray, target: str, max_neurons: int) -> float:
    """CPU seconds of the network cut into netlists of at most ``max_neurons`` neurons, run one at a time."""
    from mtc_analog.execution import Execution
    from mtc_analog.spice.split import simulate_network_split

    execution = Execution(workers=0, progress=False)  # serial: one ngspice at a time, CPU summed
    try:
        waves, _ = simulate_network_split(circuit, x, max_neurons, target_name=target, execution=execution)
    finally:
        execution.close()
    return float(sum(sum(r) for r in waves.meta["cpu_seconds"]))


def slope(cpu: dict[float, float], n: int) -> tuple[float, float]:
    """(set-up s, ms per neuron per t_u) from CPU seconds at two lengths {T: cpu}."""
    (t1, c1), (t2, c2) = sorted(cpu.items())
    per_tu = (c2 - c1) / (t2 - t1)
    return c1 - per_tu * t1, 1e3 * per_tu / n


def spike_error(circuit: Any, x: np.ndarray, tmax_tu: float, finer: float = 10.0) -> dict[str, Any]:
    """Spike times of every hidden neuron at TMAX against TMAX/finer (same netlist otherwise) [t_u]."""
    from mtc_analog.neuron.spikes import spike_times
    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.netlist import set_simulator_settings
    from mtc_analog.spice.runner import SimulationJob, run_jobs
    from mtc_analog.validation.metrics import match_spikes

    target = circuit.target
    netlist = build_network_netlist(circuit, x, target_name="sky130")
    text = netlist.render(control=False)
    runs = {}
    for label, tmax in (("coarse", tmax_tu), ("fine", tmax_tu / finer)):
        job = SimulationJob(set_simulator_settings(text, t_max=target.seconds(tmax)), None, f"sky130 TMAX {tmax:g} t_u")
        waves = run_jobs([job], workers=1)[0]
        t = target.model_time(waves.time)
        trains = []
        for neuron, entry in zip(circuit.layers[0].neurons, netlist.nodes["layers"][0]):
            tr = neuron.transduction  # a spike: the membrane crossing the output stage's onset (U_th / U_c)
            u_th = float(target.model_voltage(tr.v_th if tr.kind == "clip" else tr.v_c))
            trains.append(spike_times(t, target.model_voltage(waves[entry["membrane"]]), u_th))
        runs[label] = (trains, float(waves.meta["cpu_seconds"]))
    errors, unmatched, n_spikes = [], 0, 0
    for coarse, fine in zip(runs["coarse"][0], runs["fine"][0]):
        i_f, i_c = match_spikes(fine, coarse, window=1.0)
        errors += list(np.abs(np.sort(coarse)[i_c] - np.sort(fine)[i_f]))
        unmatched += (fine.size - i_f.size) + (coarse.size - i_c.size)
        n_spikes += fine.size
    return {"tmax": tmax_tu, "spikes_fine": n_spikes, "unmatched": unmatched,
            "max_error": float(max(errors, default=0.0)), "mean_error": float(np.mean(errors)) if errors else 0.0,
            "cpu_coarse": runs["coarse"][1], "cpu_fine": runs["fine"][1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,8,32", help="hidden layer sizes, comma separated (e.g. 1,8,32,128)")
    parser.add_argument("--targets", default="behavioral,sky130", help="targets, comma separated")
    parser.add_argument("--t-model", default="10,30", help="the two run lengths T1,T2 [t_u] (default 10,30)")
    parser.add_argument("--dt", type=float, default=0.25, help="model step [t_u] (default 0.25, the package default)")
    parser.add_argument("--substeps", type=int, default=4, help="model steps per input sample (default 4)")
    parser.add_argument("--tmax", default=None, help="simulator max step(s) [t_u], comma separated (default: dt)")
    parser.add_argument("--chunks", type=int, default=None, help="also run cut into netlists of at most this many neurons")
    parser.add_argument("--single-max", type=int, default=64,
                        help="largest N run as one netlist (default 64: above it the sky130 operating point alone takes "
                             "minutes, quadratic in N; see netlists/sky130/README.md)")
    parser.add_argument("--accuracy", type=int, default=None, help="N for the spike-time check against TMAX/10 (sky130)")
    parser.add_argument("--accuracy-t", type=float, default=40.0, help="length of the spike-time check [t_u] (default 40)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="pairs of runs per configuration; the median slope and set-up are printed (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    lengths = [float(v) for v in args.t_model.split(",")]
    if len(lengths) != 2 or not 0 < lengths[0] < lengths[1]:
        parser.error("--t-model needs two lengths T1,T2 with 0 < T1 < T2, e.g. 10,30")
    tmaxes = [float(v) for v in args.tmax.split(",")] if args.tmax else [args.dt]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; runs of "
          f"{lengths[0]:g} and {lengths[1]:g} t_u (cost per t_u = slope), dt = {args.dt:g} t_u, "
          f"{args.substeps} steps per sample; ngspice CPU seconds")
    print(f"{'N':>4} {'target':>10} {'TMAX':>5} {'netlists':>9} {'cpu T1 s':>9} {'cpu T2 s':>9} {'setup s':>8} "
          f"{'ms/neuron/t_u':>14}")
    rows: list[dict[str, Any]] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for tmax in tmaxes:
            for target in args.targets.split(","):
                modes = [("one", None)] if n <= args.single_max else []
                modes += [("chunks", args.chunks)] if args.chunks and args.chunks < n else []
                if not modes:
                    print(f"{n:>4} {target:>10} {tmax:>5g}  skipped: N > --single-max {args.single_max} and no --chunks")
                for mode, m in modes:
                    circuits = {t: build(n, args.dt, args.substeps, t) for t in lengths}
                    pairs = []
                    for _ in range(max(1, args.repeats)):
                        cpu = {}
                        for t_model, (circuit, x) in circuits.items():
                            circuit = with_tmax(circuit, tmax)
                            cpu[t_model] = run_one(circuit, x, target)[0] if m is None else run_chunks(circuit, x, target, m)
                        pairs.append((cpu, *slope(cpu, n)))
                    cpu, setup, per = sorted(pairs, key=lambda p: p[2])[len(pairs) // 2]  # the median slope's pair
                    label = "1" if m is None else f"<={m}/net"
                    rows.append({"n": n, "target": target, "tmax": tmax, "netlists": label, "cpu": cpu,
                                 "setup_s": setup, "ms_per_neuron_per_tu": per,
                                 "all_ms_per_neuron_per_tu": [p[2] for p in pairs]})
                    print(f"{n:>4} {target:>10} {tmax:>5g} {label:>9} {cpu[lengths[0]]:>9.2f} {cpu[lengths[1]]:>9.2f} "
                          f"{setup:>8.2f} {per:>14.3f}", flush=True)
    accuracy = []
    if args.accuracy:
        print(f"spike times vs a 10x finer run (sky130, N = {args.accuracy}, {args.accuracy_t:g} t_u) [t_u]:")
        for tmax in tmaxes:
            circuit, x = build(args.accuracy, args.dt, args.substeps, args.accuracy_t)
            acc = spike_error(circuit, x, tmax)
            accuracy.append(acc)
            print(f"  TMAX {tmax:g} t_u: {acc['spikes_fine']} spikes, {acc['unmatched']} unmatched, max |dt| "
                  f"{acc['max_error']:.4f}, mean {acc['mean_error']:.4f} (cpu {acc['cpu_coarse']:.2f} s vs "
                  f"{acc['cpu_fine']:.2f} s at TMAX/10)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"lengths": lengths, "dt": args.dt, "substeps": args.substeps, "rows": rows,
                                         "accuracy": accuracy, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

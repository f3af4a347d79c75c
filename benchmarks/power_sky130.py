"""Power, energy per spike and area of small networks on the sky130 target (figures in netlists/sky130/README.md).

    cd WORKTREE && PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/power_sky130.py --neurons 1 4 --samples 200

Each network (default config, seed 1, input = a constant ``--drive`` so the neurons fire tonically) is streamed
for ``--samples`` input samples (dt 0.1 t_u, 2 substeps: 0.2 t_u per sample) through one transistor-level
netlist with the supply probe; prints the ``power`` entry of a validation report
(:func:`mtc_analog.validation.power.power_report`) and the operating-point guard's verdict.
"""

from __future__ import annotations

import argparse

import numpy as np


def measure(n: int, samples: int, drive: float) -> dict:
    import torch

    from mtc_analog.hardware import load_target, map_network
    from mtc_analog.network import NetworkConfig, SpikingRegressor
    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.runner import SimulationJob, run_jobs
    from mtc_analog.validation.operating_point import operating_point_report
    from mtc_analog.validation.power import library_text, power_report
    from mtc_analog.validation.align import to_model_units
    from mtc_analog.validation.fidelity import spike_trains
    from mtc_analog.neuron.spikes import spike_level

    target = load_target("sky130")
    cfg = NetworkConfig(hidden=(n,), dt=0.1, substeps=2, input_scale=3.0, bias_init=0.5, seed=1)
    net = SpikingRegressor(cfg).double()
    with torch.no_grad():
        net.projections[0].weight.fill_(1.0)
    circuit = map_network(net.to_spec(), target)
    x = np.full((samples, 1), drive)
    netlist = build_network_netlist(circuit, x, target_name="sky130", operating_point=True)
    waves = run_jobs([SimulationJob(netlist.render(control=False), None, f"power N={n}")], workers=1)[0]
    volts = np.stack([waves[e["membrane"]] for e in netlist.nodes["layers"][0]], axis=1)
    time_model, u = to_model_units(target, waves.time, volts)
    spikes = sum(len(s) for s in spike_trains(time_model, u, spike_level(cfg)))
    power = power_report(waves, netlist.nodes, circuit, samples, spikes, library_text("sky130"))
    op = operating_point_report(waves, netlist.nodes, target)
    power["operating_point_ok"] = op["ok"]
    power["operating_point_worst"] = op["violations"][0]["text"] if op["violations"] else ""
    power["operating_point_counts"] = op["by_check"]
    power["cpu_seconds"] = waves.meta.get("cpu_seconds")
    return power


def measure_preset(name: str, t_end: float) -> dict:
    """One neuron of a docs/reference.md §4 preset under its current step, alone (no synapse, no readout)."""
    from mtc_analog.hardware import load_target
    from mtc_analog.hardware.mapping import map_neuron
    from mtc_analog.neuron.regimes import get_preset
    from mtc_analog.neuron.spikes import SPIKE_THRESHOLD
    from mtc_analog.spice.builder import build_neuron_netlist, step_current
    from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, resting_state
    from mtc_analog.spice.runner import SimulationJob, run_jobs
    from mtc_analog.validation.fidelity import spike_trains
    from mtc_analog.validation.operating_point import operating_point_report
    from mtc_analog.validation.power import supply_current, time_average

    target = load_target("sky130")
    preset = get_preset(name)
    p = StepProtocol(preset.i0, preset.i1, 5.0, t_end, 0.1)
    setup = NeuronSetup(preset.params, p, filter="linear", name=name)
    circuit = map_neuron(preset.params, filter="linear", target=target)
    times, values = step_current(p.i0, p.i1, p.t_step, p.t_end, 0.05 * p.dt)
    netlist = build_neuron_netlist(circuit, target, target.seconds(times), target.current(values), target.seconds(p.t_end),
                                   target.seconds(p.dt), resting_state(setup), target_name="sky130", operating_point=True)
    waves = run_jobs([SimulationJob(netlist.render(control=False), None, name)], workers=1)[0]
    time_model = target.model_time(waves.time)
    u_m = target.model_voltage(waves[netlist.nodes["layers"][0][0]["membrane"]])[:, None]
    spikes = len(spike_trains(time_model, u_m, SPIKE_THRESHOLD)[0])
    supply = netlist.nodes["operating_point"]["supply"]
    current = supply_current(waves, supply["source"])
    power = supply["volts"] * time_average(waves.time, current)
    energy = power * (waves.time[-1] - waves.time[0])
    return {"preset": name, "spikes": spikes, "duration_s": float(waves.time[-1] - waves.time[0]), "power_w": power,
            "power_at_rest_w": supply["volts"] * float(current[0]),
            "energy_per_spike_j": energy / spikes if spikes else None,
            "operating_point_ok": operating_point_report(waves, netlist.nodes, target)["ok"],
            "cpu_seconds": waves.meta.get("cpu_seconds")}


def main() -> None:
    from mtc_analog.validation.power import format_power_line

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--samples", type=int, default=200, help="input samples (0.2 t_u each)")
    parser.add_argument("--drive", type=float, default=1.5, help="constant network input [model units]")
    parser.add_argument("--preset", default="tonic_spiking", help="single neuron measured alone ('' to skip)")
    parser.add_argument("--preset-t-end", type=float, default=250.0, help="its run length [t_u] (step at 5 t_u)")
    args = parser.parse_args()
    if args.preset:
        q = measure_preset(args.preset, args.preset_t_end)
        print(f"{q['preset']} neuron alone: {q['spikes']} spikes in {q['duration_s'] * 1e3:.1f} ms, {q['power_w'] * 1e9:.1f} nW "
              f"(at rest, t = 0: {q['power_at_rest_w'] * 1e9:.1f} nW), "
              f"{q['energy_per_spike_j'] * 1e12 if q['energy_per_spike_j'] else float('nan'):.1f} pJ per spike; "
              f"operating point ok: {q['operating_point_ok']}; ngspice CPU {q['cpu_seconds']:.1f} s")
    for n in args.neurons:
        p = measure(n, args.samples, args.drive)
        print(f"N = {n}: {p['spikes']} spikes in {p['duration_s'] * 1e3:.1f} ms; mean I_DD {p['supply_current_mean_a'] * 1e9:.2f} nA "
              f"(t = 0: {p['supply_current_start_a'] * 1e9:.2f} nA); operating point ok: {p['operating_point_ok']}; "
              f"ngspice CPU {p['cpu_seconds']:.1f} s")
        print(f"  {format_power_line(p)}")
        if not p["operating_point_ok"]:
            print(f"  operating point: {p['operating_point_counts']}; longest: {p['operating_point_worst']}")
        print(f"  network: {p['area']['transistors_network']:.0f} transistors, gate area {p['area']['gate_area_network_um2']:.0f} "
              f"um^2, {p['area']['capacitance_network_f'] * 1e12:.1f} pF")


if __name__ == "__main__":
    main()

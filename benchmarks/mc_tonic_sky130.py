"""Firing-rate spread of the tonic neuron on sky130 over Monte-Carlo instances: per-transistor threshold
draws vs the cell-level draws they fold into (docs/results_montecarlo.md).

    python benchmarks/mc_tonic_sky130.py --instances 12 --seed 0

Instance k of each mode draws with seed (S, k): transistor mode writes one threshold shift per transistor
of every OTA cell (Sky130Target.with_device_mismatch); cell mode perturbs the mapped neuron
(apply_mismatch: log-normal tail currents and capacitors, offsets on the references). Prints, per mode, the
spike counts after the step and the CV of the firing rate (spikes / time after the first spike).
"""

from __future__ import annotations

import argparse

import numpy as np

from mtc_analog.hardware import load_target
from mtc_analog.hardware.mapping import map_neuron
from mtc_analog.hardware.mismatch import apply_mismatch, statistics_for_target
from mtc_analog.neuron.regimes import PRESETS, classify_trace
from mtc_analog.spice.runner import SimulationJob
from mtc_analog.spice.parallel import run_parallel
from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, protocol_netlist
from mtc_analog.spice.target import get_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--t-end", type=float, default=280.0, help="protocol end [t_u] (step at 40 t_u)")
    args = parser.parse_args()
    target = load_target("sky130")
    sky = get_target("sky130")
    stats = statistics_for_target("sky130", target)
    preset = PRESETS["tonic_spiking"].shortened(40.0, args.t_end)
    setup = NeuronSetup(preset.params, StepProtocol(preset.i0, preset.i1, preset.t_step, preset.t_end, 0.1), name="tonic")
    nominal = map_neuron(setup.params, setup.transduction, setup.filter, target)
    netlists = {"nominal": [protocol_netlist(setup, target, "sky130")[0]]}
    netlists["transistor"] = [protocol_netlist(setup, target, sky.with_device_mismatch(
        (args.seed, k), stats.sigma_vt_n, stats.sigma_vt_p))[0] for k in range(args.instances)]
    netlists["cell"] = [protocol_netlist(setup, target, "sky130", circuit=apply_mismatch(
        nominal, stats.sigma_rel, (args.seed, k), stats.sigma_offset, target=target))[0] for k in range(args.instances)]
    print(f"sigma_VT nfet {1e3 * stats.sigma_vt_n:.3f} mV, pfet {1e3 * stats.sigma_vt_p:.3f} mV; cell level: "
          f"sigma_rel {stats.sigma_rel:.4f}, sigma_offset {1e3 * stats.sigma_offset:.3f} mV")
    for mode, nets in netlists.items():
        waves = run_parallel([SimulationJob(n.render(control=False), None, f"{mode} {k}") for k, n in enumerate(nets)],
                             None, workers=2, desc=mode)
        counts, rates = [], []
        for net, w in zip(nets, waves):
            u = np.asarray(target.model_voltage(w[net.nodes["layers"][0][0]["membrane"]]))
            spikes = classify_trace(np.asarray(target.model_time(w.time)), u, preset.t_step).spike_times
            counts.append(len(spikes))
            rates.append((len(spikes) - 1) / (spikes[-1] - spikes[0]) if len(spikes) > 1 else 0.0)
        rates = np.array(rates)
        cv = rates.std(ddof=1) / rates.mean() if len(rates) > 1 else float("nan")
        print(f"{mode:>10}: spikes {counts}; rate mean {rates.mean():.5f} / t_u, CV {cv:.3f}")


if __name__ == "__main__":
    main()

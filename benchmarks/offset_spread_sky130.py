"""Offsets of sky130's wide-linear-range transconductors under transistor mismatch, measured in ngspice.

The cell-level mismatch model (:mod:`mtc_analog.hardware.mismatch`) derives its spreads from the wheel's
per-transistor threshold sigmas with the formulas of a 5T OTA. Synapses, the readout transconductors, the
readout load and the low-pass followers are ``ota_lin`` cells (13 transistors, source-degenerated doublets),
whose input-referred offset those formulas do not give. This script measures it: the network of a checkpoint
is characterised in situ (``characterise_network``) nominally and with ``--instances`` transistor-mismatch
draws (seeds (0, k), the montecarlo's), each folded into the calibrated model; per instance

* hidden-layer bias shift per neuron / its input weight (one input): each input synapse's offset [V];
* readout bias shift: the synapses' offsets summed through the readout weights plus the readout node's own
  (load and low-pass followers), separated by the variance left after the synapses' share.

Prints the sigmas and their ratio to the 5T formula ``sqrt(2 sigma_n^2 + 2 sigma_p^2)`` (the constants
``OTA_LIN_OFFSET_FACTOR``, ``READOUT_OFFSET_FACTOR`` in ``hardware/mismatch.py``). The neuron cells
themselves are characterised without the draws here (their spreads are the 5T formulas').

    PYTHONPATH=. .venv/bin/python benchmarks/offset_spread_sky130.py runs/demo/train/best.safetensors --instances 30
"""

from __future__ import annotations

import argparse
import math

import numpy as np


def calibrated_quantities(circuit, impl, x, lowpass):
    from mtc_analog.execution import Execution
    from mtc_analog.hardware import unmap_network
    from mtc_analog.hardware.calibration import calibrate_network
    from mtc_analog.hardware.compensation import spec_quantities

    with Execution(scheduler="serial", progress=False) as execution:
        fits = impl.characterise_network(circuit, execution=execution, max_neurons=64,
                                         input_range=(float(x.min()), float(x.max())),
                                         readout_range=(float(lowpass.min()), float(lowpass.max())), timeout_s=600)
    return spec_quantities(calibrate_network(unmap_network(circuit), fits, circuit.target))


def main() -> None:
    from mtc_analog.hardware import load_target
    from mtc_analog.hardware.mismatch import statistics_for_target
    from mtc_analog.neuron.spikes import spike_level
    from mtc_analog.spice.target import get_target
    from mtc_analog.tasks.mackey_glass import make_task
    from mtc_analog.training.checkpoint import load_checkpoint
    from mtc_analog.validation.runs import ValidationSettings, map_for_validation, model_traces, scoring_stream

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--instances", type=int, default=30)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    network, task = loaded.network, make_task(loaded.task)
    target = load_target("sky130")
    settings = ValidationSettings(target=target, circuit_target="sky130", circuit_filter="linear", samples=200,
                                  washout=30, clip=True)
    if network.config.hidden[0] and network.to_spec().n_in != 1:
        raise SystemExit("this measurement needs a network with one input (each neuron has one input synapse)")
    x, _, _ = scoring_stream(task, settings.samples, settings.washout)
    circuit, _ = map_for_validation(network, settings)
    lowpass = model_traces(network, x, spike_level(network.config)).lowpass
    stats = statistics_for_target("sky130", target)
    sky = get_target("sky130")
    nominal = calibrated_quantities(circuit, sky, x, lowpass)
    synapse, readout = [], []
    for k in range(args.instances):
        drawn = calibrated_quantities(circuit, sky.with_device_mismatch((0, k), stats.sigma_vt_n, stats.sigma_vt_p),
                                      x, lowpass)
        weight = nominal["layer0.weight"][:, 0]
        synapse.append((drawn["layer0.bias"] - nominal["layer0.bias"]) / weight)  # [V_s] per input synapse
        readout.append(float((drawn["readout.bias"] - nominal["readout.bias"])[0]))  # [V_s at the readout node]
        print(f"instance {k}: readout bias shift {readout[-1]:+.4f}", flush=True)
    v_s = target.v_s
    sigma_syn = float(np.std(np.concatenate(synapse))) * v_s
    w_ro = nominal["readout.weight"].reshape(-1)
    total = float(np.std(readout)) * v_s
    from_synapses = sigma_syn * math.sqrt(float(np.sum(w_ro ** 2)))
    node = math.sqrt(max(total ** 2 - from_synapses ** 2, 0.0))
    cell = math.sqrt(2 * stats.sigma_vt_n ** 2 + 2 * stats.sigma_vt_p ** 2)
    print(f"{args.instances} instances, {len(synapse[0])} input synapses each; 5T OTA offset formula {1e3 * cell:.2f} mV")
    print(f"input synapse (ota_lin) offset sigma {1e3 * sigma_syn:.2f} mV = {sigma_syn / cell:.2f} x the 5T formula")
    print(f"readout bias shift sigma {total / v_s:.4f} (model units), synapses' share {from_synapses / v_s:.4f}; "
          f"readout node's own offset {1e3 * node:.2f} mV = {node / cell:.2f} x the 5T formula")


if __name__ == "__main__":
    main()

"""Offsets of sky130's wide-linear-range transconductors under transistor mismatch, measured in ngspice.

The cell-level mismatch model (:mod:`mtc_analog.hardware.mismatch`) derives its spreads from the wheel's
per-transistor threshold sigmas with the formulas of a 5T OTA. Synapses, the readout transconductors, the
readout load and the low-pass followers are ``ota_lin`` cells (13 transistors, source-degenerated doublets),
whose input-referred offset those formulas do not give. This script measures it: the network of a checkpoint
is characterised in situ (``characterise_network``) nominally and with ``--instances`` transistor-mismatch
draws (seeds (0, k), the montecarlo's), each folded into the calibrated model; per instance

* hidden-layer bias shift per neuron / its input weight (one input): each input synapse's offset [V];
* readout bias shift: the readout synapses' offsets summed through the readout weights plus the readout node's own
  (load and low-pass followers), separated by the variance left after the synapses' share (the readout's synapses
  are 16 copies, sky130.READOUT_COPIES: taken at the input synapses' offset scaled by the statistics' ratio, 0.5).

Prints the sigmas and their ratio to the 5T formula ``sqrt(2 sigma_n^2 + 2 sigma_p^2) / sqrt(copies)`` (the constants
``OTA_LIN_OFFSET_FACTOR``, ``READOUT_OFFSET_FACTOR`` in ``hardware/mismatch.py``), then every neuron quantity of
the calibrated model side by side: its spread over the transistor-level instances (in situ) against the spread
the cell-level transform (``draw_statistics``, the one that mismatch-aware training and model-level Monte Carlos
draw) gives the same mapped network over as many seeds. Voltages (``u_rest``, the element offsets ``d_*``) as
sigma [mV], every other quantity as the relative sigma of its ratio to nominal. Last, the cells' own figures behind
the neuron constants (``ELEMENT_OFFSET_FACTOR``, ``LEAK_OFFSET_FACTOR``, ``FILTER_OFFSET_FACTOR``, ``LEAK_REL_FACTOR``,
``ASYMMETRY_REL_FACTOR``): each filter follower's and the leak's offset, and the elements' asymmetry.

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
    return spec_quantities(calibrate_network(unmap_network(circuit), fits, circuit.target)), fits


def main() -> None:
    from mtc_analog.hardware import load_target, unmap_network
    from mtc_analog.hardware.compensation import spec_quantities
    from mtc_analog.hardware.mismatch import draw_statistics, statistics_for_target
    from mtc_analog.neuron.spikes import spike_level
    from mtc_analog.spice.sky130 import CELL_COPIES
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
    nominal, nominal_fits = calibrated_quantities(circuit, sky, x, lowpass)
    synapse, readout, in_situ, transform, filters, asymmetry, leak = [], [], [], [], [], [], []
    for k in range(args.instances):
        drawn, fits = calibrated_quantities(circuit, sky.with_device_mismatch((0, k), stats.sigma_vt_n, stats.sigma_vt_p),
                                            x, lowpass)
        filters.append(filter_offset_shifts(nominal_fits, fits))
        asymmetry.append(element_asymmetry(fits))
        leak.append([b.v_leak_off - a.v_leak_off for a, b in zip(nominal_fits.neurons[0], fits.neurons[0])])
        in_situ.append(drawn)
        transform.append(spec_quantities(unmap_network(draw_statistics(circuit, stats, (0, k))[1])))
        weight = nominal["layer0.weight"][:, 0]
        synapse.append((drawn["layer0.bias"] - nominal["layer0.bias"]) / weight)  # [V_s] per input synapse
        readout.append(float((drawn["readout.bias"] - nominal["readout.bias"])[0]))  # [V_s at the readout node]
        print(f"instance {k}: readout bias shift {readout[-1]:+.4f}", flush=True)
    v_s = target.v_s
    sigma_syn = float(np.std(np.concatenate(synapse))) * v_s
    w_ro = nominal["readout.weight"].reshape(-1)
    total = float(np.std(readout)) * v_s
    # the readout's synapses are sky130.READOUT_COPIES copies: their offset is the input synapses' scaled as the
    # statistics scale it (Pelgrom, sqrt of the copies; tests/test_sky130_matching.py measures it per device)
    readout_ratio = stats.offset_readout_synapse / stats.sigma_offset_synapse
    from_synapses = sigma_syn * readout_ratio * math.sqrt(float(np.sum(w_ro ** 2)))
    node = math.sqrt(max(total ** 2 - from_synapses ** 2, 0.0))
    cell = stats.sigma_offset  # the 5T formula for cells of sky130.CELL_COPIES copies: what the factors multiply
    print(f"{args.instances} instances, {len(synapse[0])} input synapses each; 5T OTA offset formula {1e3 * cell:.2f} mV "
          f"(cells of {CELL_COPIES} copies)")
    print(f"input synapse (ota_lin) offset sigma {1e3 * sigma_syn:.2f} mV = {sigma_syn / cell:.2f} x the 5T formula")
    print(f"readout bias shift sigma {total / v_s:.4f} (model units), synapses' share {from_synapses / v_s:.4f} "
          f"(readout synapses at {readout_ratio:.2f} x the input synapses' offset); "
          f"readout node's own offset {1e3 * node:.2f} mV = {node / cell:.2f} x the 5T formula")
    print_spreads(nominal, spec_quantities(unmap_network(circuit)), in_situ, transform, v_s)
    for timescale in sorted({ts for shifts in filters for ts in shifts}):
        values = np.concatenate([shifts[timescale] for shifts in filters if timescale in shifts])
        print(f"filter {timescale} follower offset sigma {1e3 * float(np.std(values)):.2f} mV = "
              f"{float(np.std(values)) / cell:.2f} x the 5T formula ({values.size} cells)")

    leak_sigma = float(np.std(np.concatenate(leak)))
    print(f"leak (ota_lin) offset sigma {1e3 * leak_sigma:.2f} mV = {leak_sigma / cell:.2f} x the 5T formula")
    nominal_asymmetry = np.concatenate(list(element_asymmetry(nominal_fits).values()))
    drawn_asymmetry = np.concatenate([np.concatenate(list(a.values())) for a in asymmetry])
    print(f"element asymmetry (I_sat+ - I_sat-)/(I_sat+ + I_sat-): nominal mean {100 * nominal_asymmetry.mean():+.2f} %, "
          f"sd over instances {100 * float(np.std(drawn_asymmetry)):.2f} % = "
          f"{float(np.std(drawn_asymmetry)) / stats.sigma_rel:.2f} x sigma_rel ({drawn_asymmetry.size} elements)")


def element_asymmetry(fits) -> dict[str, np.ndarray]:
    """element name -> (I_sat+ - I_sat-) / (I_sat+ + I_sat-) of every hidden neuron's element (layer 0)."""
    out: dict[str, list[float]] = {}
    for cell in fits.neurons[0]:
        for name, fit in cell.elements.items():
            out.setdefault(name, []).append((fit.i_sat_plus - fit.i_sat_minus) / (fit.i_sat_plus + fit.i_sat_minus))
    return {name: np.array(values) for name, values in out.items()}


def filter_offset_shifts(nominal, drawn) -> dict[str, np.ndarray]:
    """timescale -> each hidden neuron's filter offset [V] in ``drawn`` minus the nominal (layer 0)."""
    out: dict[str, list[float]] = {}
    for before, after in zip(nominal.neurons[0], drawn.neurons[0]):
        for timescale, offset in after.v_filter_off.items():
            out.setdefault(timescale, []).append(offset - before.v_filter_off[timescale])
    return {timescale: np.array(values) for timescale, values in out.items()}


def spreads(nominal: dict, instances: list[dict], v_s: float) -> dict[str, tuple[float, str]]:
    """Per layer-0 quantity: sigma over the instances of (drawn - nominal) [mV] for voltages, of
    (drawn / nominal - 1) for the rest (entries whose nominal is 0 left out)."""
    from mtc_analog.neuron.equations import SHIFTED_FIELDS

    out = {}
    for key in nominal:
        name = key.split(".", 1)[1]
        if not key.startswith("layer0.") or name in ("weight", "bias"):
            continue
        base = nominal[key]
        drawn = np.stack([instance[key] for instance in instances])
        if name in SHIFTED_FIELDS:
            out[name] = (float(np.std(drawn - base)) * v_s * 1e3, "mV")
        else:
            live = np.abs(base) > 1e-12
            if live.any():
                out[name] = (float(np.std(drawn[:, live] / base[live] - 1.0)), "rel")
    return out


def print_spreads(calibrated: dict, mapped: dict, in_situ: list[dict], transform: list[dict], v_s: float) -> None:
    measured, drawn = spreads(calibrated, in_situ, v_s), spreads(mapped, transform, v_s)
    print("neuron quantity: in-situ spread (transistor mismatch, calibrated) | cell-level transform | ratio")
    for name, (value, unit) in measured.items():
        model = drawn.get(name, (float("nan"), unit))[0]
        ratio = value / model if model > 0 else float("nan")
        shown = (lambda v: f"{v:.2f} mV") if unit == "mV" else (lambda v: f"{100 * v:.2f} %")
        print(f"  {name:12s} {shown(value):>10s} | {shown(model):>10s} | {ratio:.2f}")


if __name__ == "__main__":
    main()

"""A hardware design flow through the Python API (no CLI calls): train -> map -> export -> simulate -> validate.

    .venv/bin/python examples/design_flow.py --out runs/design_flow

What a designer does with mtc_analog, step by step:

1. train a small MTC network on Mackey-Glass with the hardware-faithful settings of the demo;
2. map it onto a hardware target (units, limits), check every mapped value against the target's
   ranges, and look at what the circuit will hold (bias currents, capacitors);
3. export a stand-alone ngspice netlist (``ngspice -b network.cir`` runs it without Python);
4. validate the circuit against the model on the same test input — with linear filters, and with
   the slew-limited OTA filters silicon really has;
5. train the same network on the OTA-filter model (``filter="ota"``) and validate it against the
   OTA circuit: does training on the faithful model recover what the slew-limited filters cost?

Prints a table of the three validations; each leaves a report.html under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mtc_analog.hardware import HardwareTarget, enforce_ranges, map_network
from mtc_analog.network import NetworkConfig
from mtc_analog.spice.export import export_network
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.training.checkpoint import load_checkpoint
from mtc_analog.training.train import BEST, TrainConfig, train
from mtc_analog.validation.demo import DEMO_NETWORK, DEMO_TASK, DEMO_TRAINING, DEMO_VALIDATION
from mtc_analog.validation.runs import ValidationSettings, scoring_stream
from mtc_analog.validation.workflow import validate_into


def train_network(out: Path, filter_kind: str, epochs: int | None, force: bool):
    """Train (or reuse) a demo-sized MTC network with neuron filters ``filter_kind``."""
    net_cfg = NetworkConfig(**{**DEMO_NETWORK, "filter": filter_kind})
    train_cfg = TrainConfig(**{**DEMO_TRAINING, **({"epochs": epochs} if epochs else {})})
    if force or not (out / BEST).exists() or not (out / "metrics.json").exists():
        train(net_cfg, TaskConfig(**DEMO_TASK), train_cfg, out, force=True, progress=True)
    return load_checkpoint(out / BEST)


def describe_circuit(circuit) -> str:
    """A designer's one-paragraph view of the mapped values (SI)."""
    neurons = [n for layer in circuit.layers for n in layer.neurons]
    tails = np.array([e.tail_current for n in neurons for e in n.elements if e.tail_current > 0])
    caps = np.array([f.capacitance for n in neurons for f in n.filters.values() if f is not None] + [n.c_m for n in neurons])
    gms = np.abs(np.concatenate([np.ravel(layer.synapse_gm) for layer in circuit.layers]))
    return (f"{len(neurons)} neurons; OTA tail currents {tails.min() * 1e9:.3g}..{tails.max() * 1e9:.3g} nA; "
            f"capacitors {caps.min() * 1e12:.3g}..{caps.max() * 1e12:.3g} pF (total {caps.sum() * 1e12:.0f} pF); "
            f"synapse biases up to {gms.max() * circuit.target.v_s * 1e9:.3g} nA; "
            f"R_leak {neurons[0].r_leak / 1e6:.1f} MOhm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/design_flow"))
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's)")
    parser.add_argument("--force", action="store_true", help="retrain and overwrite earlier results")
    args = parser.parse_args()
    out: Path = args.out

    # 1. train with the paper's linear filters
    print("== 1. training (linear filters)")
    linear_ckpt = train_network(out / "train_linear", "linear", args.epochs, args.force)
    task = make_task(linear_ckpt.task)

    # 2. map onto the behavioural target and check ranges (a designer would edit the target here:
    #    HardwareTarget(i_unit=2e-9, c_max=50e-12, ...) or HardwareTarget.from_file("my_process.yaml"))
    print("== 2. mapping onto the hardware target")
    target = HardwareTarget()
    circuit = map_network(linear_ckpt.network.to_spec(), target)
    circuit, changes = enforce_ranges(circuit, target, clip=True)
    print(f"   V_s = {target.v_s * 1e3:.1f} mV, I_u = {target.i_unit * 1e9:g} nA, t_u = {target.t_unit * 1e3:g} ms")
    print(f"   {describe_circuit(circuit)}")
    print(f"   {len(changes)} value(s) clipped into range" + (f", e.g. {changes[0]}" if changes else ""))

    # 3. export the stand-alone netlist driven by the validation input
    settings = ValidationSettings(target=target, **DEMO_VALIDATION)
    x, _, _ = scoring_stream(task, settings.samples, settings.washout)
    exported = export_network(circuit, x, out / "circuit_linear", source=str(out / "train_linear" / BEST),
                              range_changes=changes, force=True)
    print(f"== 3. exported {exported.netlist_path} (run it alone: ngspice -b {exported.netlist_path.name})")

    # 4. validate against the linear-filter and the OTA-filter circuit
    rows = []
    for circuit_filter in ("linear", "ota"):
        print(f"== 4. validating the linear-trained network against the {circuit_filter}-filter circuit")
        report, _ = validate_into(linear_ckpt.network, task, out / f"linear_model_vs_{circuit_filter}_circuit",
                                  dataclasses.replace(settings, circuit_filter=circuit_filter), force=True,
                                  progress=lambda line: print("   " + line))
        rows.append(("linear", circuit_filter, report))

    # 5. train on the OTA-filter model and validate against the OTA circuit
    print("== 5. training on the hardware-faithful OTA-filter model")
    ota_ckpt = train_network(out / "train_ota", "ota", args.epochs, args.force)
    report, _ = validate_into(ota_ckpt.network, make_task(ota_ckpt.task), out / "ota_model_vs_ota_circuit",
                              dataclasses.replace(settings, circuit_filter="ota"), force=True,
                              progress=lambda line: print("   " + line))
    rows.append(("ota", "ota", report))

    print("\ntrained on | circuit filters |  Gamma | out NRMSE vs model | task NRMSE model | task NRMSE circuit | passed")
    for trained, circuit_filter, r in rows:
        print(f"{trained:>10} | {circuit_filter:>15} | {r['spike_coincidence']:.4f} | {r['output_nrmse_vs_model']:18.4f} | "
              f"{r['task_nrmse_model']:16.4f} | {r['task_nrmse_circuit']:18.4f} | {r['passed']}")
    print(f"\nreports: {', '.join(str(p) for p in sorted(out.glob('*/report.html')))}")


if __name__ == "__main__":  # worker processes (ngspice) re-import this module: keep the guard
    main()

"""``mtc-analog export CHECKPOINT|PARAMS.yaml --target behavioral --filter linear|ota --out DIR``.

A checkpoint (from ``mtc-analog train``) is mapped onto the hardware target and written as a
stand-alone ngspice netlist driven by its task's test split (or ``--input FILE``). A single-neuron
parameter file (``.yaml``/``.yml``/``.json``) exports that neuron under its current-step protocol.
Writes ``DIR/network.cir`` (runs with ``ngspice -b DIR/network.cir``) and ``DIR/mapping.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PARAM_SUFFIXES = (".yaml", ".yml", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="map a trained network (or one neuron) to a stand-alone ngspice netlist",
        description="Map a checkpoint (or a single-neuron parameter file) onto OTA circuits and write "
                    "DIR/network.cir (stand-alone: ngspice -b DIR/network.cir) and DIR/mapping.json.",
    )
    p.add_argument("source", type=Path, help="checkpoint from `mtc-analog train`, or a neuron parameter file (.yaml/.json)")
    p.add_argument("--target", default="behavioral", help="circuit target / netlist level (default behavioral)")
    p.add_argument("--target-file", type=Path, default=None, metavar="T.yaml",
                   help="hardware target file (units, rails, limits); default: the shipped file named like --target")
    p.add_argument("--filter", choices=("linear", "ota"), default=None,
                   help="follower-integrator kind in the circuit (default: what the model was trained with)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--input", type=Path, default=None, metavar="FILE",
                   help="input samples (T, n_in) in model units (.npy, .csv, .txt); default: the checkpoint task's test split")
    p.add_argument("--samples", type=int, default=None, help="use only the first N input samples (default: all)")
    p.add_argument("--clip", action="store_true", help="clip values outside the target's ranges (reported) instead of failing")
    p.add_argument("--probe-filters", action="store_true", help="also save the filter nodes of every neuron")
    p.add_argument("--compensate", type=int, default=0, metavar="ROUNDS",
                   help="networks on a target whose cells can be characterised (sky130): ROUNDS of characterise every "
                        "cell in ngspice -> calibrate -> re-map, so the exported circuit computes the trained network "
                        "(3 rounds leave its cells within 1e-3; recorded in mapping.json; default 0: as mapped)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier export in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..hardware import enforce_ranges, load_target, map_network
    from ..spice.export import export_network, export_neuron, load_input_file, load_neuron_setup
    from ..spice.target import get_target

    from ..validation.compensated import check_rounds

    get_target(args.target)  # unknown level: one clear line
    target = load_target(args.target_file if args.target_file else args.target)
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    check_rounds(args.compensate, args.target)
    if not args.source.exists():
        raise InputError(f"{args.source} does not exist")

    if args.source.suffix.lower() in PARAM_SUFFIXES:
        if args.compensate:
            raise InputError("--compensate applies to a network exported from a checkpoint, not to a single neuron's "
                             "parameter file")
        setup = load_neuron_setup(args.source)
        if args.filter:
            setup = type(setup)(setup.params, setup.protocol, setup.transduction, args.filter, setup.name)
        from ..hardware import map_neuron

        circuit, changes = enforce_ranges(map_neuron(setup.params, setup.transduction, setup.filter, target), target,
                                          clip=args.clip)
        result = export_neuron(setup, target, args.out, args.target, source=str(args.source), force=args.force,
                               circuit=circuit, range_changes=changes)
        for change in changes:
            print(f"  range change: {change}")
        print(f"exported neuron {setup.name} ({setup.filter} filters, step {setup.protocol.i0:g} -> {setup.protocol.i1:g} I_u "
              f"at {setup.protocol.t_step:g} t_u, {setup.protocol.t_end:g} t_u) to {result.netlist_path}")
        print(f"run it stand-alone: ngspice -b {result.netlist_path}   or: mtc-analog simulate {result.netlist_path} --out DIR")
        return 0

    from ..training.checkpoint import load_checkpoint

    from ..training.fidelity_gap import print_gap_warning

    from ..training.hardware_aware import print_target_warning

    ckpt = load_checkpoint(args.source)
    print_gap_warning(args.source)
    print_target_warning(args.source, args.target)
    spec = ckpt.network.to_spec()
    if args.filter:
        for layer in spec.layers:
            layer.filter = args.filter
    circuit = map_network(spec, target)
    circuit, changes = enforce_ranges(circuit, target, clip=args.clip)
    if args.input is not None:
        x = load_input_file(args.input, spec.n_in)
        input_source = str(args.input)
    else:
        from ..tasks.mackey_glass import make_task

        x = make_task(ckpt.task).test.x
        input_source = f"test split of the checkpoint's Mackey-Glass task (horizon {ckpt.task.horizon})"
    if args.samples is not None:
        x = x[: args.samples]
    compensation = None
    if args.compensate:
        circuit, compensation = _compensated(ckpt.network, circuit, x, args)
    result = export_network(circuit, x, args.out, args.target, source=str(args.source), range_changes=changes,
                            input_source=input_source, probe_filters=args.probe_filters, force=args.force,
                            compensation=compensation)
    sizes = "x".join(str(layer.size) for layer in circuit.layers)
    print(f"exported {sizes} MTC network ({result.mapping['filter']} filters, {x.shape[0]} input samples, "
          f"{result.netlist.t_stop:g} s of circuit time) to {result.netlist_path}")
    for change in changes[:10]:
        print(f"  range change: {change}")
    if len(changes) > 10:
        print(f"  ... and {len(changes) - 10} more range changes (all listed in mapping.json)")
    if compensation:
        from ..validation.calibrated import worst_group

        print(f"  compensated in {compensation['iterations']} round(s) against its own cells: worst cell error "
              f"{worst_group(compensation['steps'][0]['residual_before'])} before, "
              f"{worst_group(compensation['residual_after'])} after")
    print(f"run it stand-alone: ngspice -b {result.netlist_path}   or: mtc-analog simulate {result.netlist_path} --out DIR")
    return 0


def _compensated(network, circuit, x, args):
    """The circuit compensated at design time against its own cells, over the ranges the input ``x`` drives."""
    from ..neuron.spikes import spike_level
    from ..validation.compensated import compensate_circuit
    from ..validation.runs import ValidationSettings, model_traces

    import numpy as np

    x = np.asarray(x, dtype=float)
    settings = ValidationSettings(target=circuit.target, circuit_target=args.target, clip=args.clip)
    model = model_traces(network, x, spike_level(network.config))
    return compensate_circuit(circuit, settings, x, model.lowpass, args.compensate,
                              progress=lambda line: print(f"[export] {line}", flush=True), measure_last=True)

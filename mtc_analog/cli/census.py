"""``mtc-analog census CHECKPOINT [--out DIR]``: the firing regime of every hidden neuron of a trained
MTC network (step protocol at its trained parameters; see :mod:`mtc_analog.training.census`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("census", help="regime census of a trained MTC network's hidden neurons",
                              description="Probe each hidden neuron of a trained MTC checkpoint alone with a current "
                                          "step (I0, I1 from its in-network input) and classify it: tonic/phasic "
                                          "spiking, tonic/phasic bursting, silent. Writes DIR/census.json and "
                                          "DIR/census.png with --out.")
    p.add_argument("checkpoint", type=Path, help="checkpoint written by `mtc-analog train` (an MTC network)")
    p.add_argument("--out", type=Path, default=None, help="directory for census.json and census.png")
    p.add_argument("--force", action="store_true", help="overwrite an earlier census in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io import prepare_output_dir, write_json
    from ..tasks.mackey_glass import make_task
    from ..training.census import census, census_line
    from ..training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.network.config.neuron != "mtc":
        raise InputError(f"{args.checkpoint} holds a {ckpt.network.config.neuron.upper()} network: a regime census "
                         "needs an MTC checkpoint (LIF/AdLIF neurons have no conductance-based firing regimes)")
    out = prepare_output_dir(args.out, "census.json", args.force) if args.out else None
    result = census(ckpt.network, make_task(ckpt.task))
    print(f"{result['n_neurons']} hidden neurons: {census_line(result['counts'])}")
    if out is not None:
        from ..plotting.census import plot_census

        write_json(out / "census.json", {"checkpoint": str(args.checkpoint), **result})
        plot_census(result, out / "census.png", title=f"regime census of {args.checkpoint}")
        print(f"-> {out / 'census.json'}, {out / 'census.png'}")
    return 0

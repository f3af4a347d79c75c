"""``mtc-analog simulate DIR/network.cir --out DIR2``: run an exported netlist through PySpice.

Saves ``DIR2/waveforms.npz`` (volts and model units; format in :mod:`mtc_analog.spice.waveforms`),
``DIR2/waveforms.png`` and ``DIR2/simulation.json`` (what ran, how long, which retry attempts).
Model units need the ``mapping.json`` written beside the netlist by ``mtc-analog export``.

The netlist is parsed and checked first (:mod:`mtc_analog.spice.parse`): a netlist from someone else
never runs a command (control blocks, ``*#`` lines, unknown dot-commands are refused, includes are
followed and checked). The mapping must name only nodes the netlist saves (checked before simulating).
Default ``--timeout``: 60 s + 2e-4 s x (top-level elements) x (t_stop / TMAX), per attempt.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path

MARKER = "waveforms.npz"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="run an exported netlist in ngspice (PySpice) and save its waveforms",
        description="Run DIR/network.cir through PySpice (ngspice shared mode, in a worker process) and save the "
                    "probed waveforms in volts and model units (.npz) with a figure.",
    )
    p.add_argument("netlist", type=Path, help="netlist written by `mtc-analog export` (DIR/network.cir)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--mapping", type=Path, default=None, help="mapping.json (default: next to the netlist)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds allowed per ngspice attempt, > 0 (default: 60 s + 2e-4 s x top-level elements x "
                        "t_stop/TMAX, from the netlist)")
    p.add_argument("--no-retry", action="store_true", help="fail on the first convergence problem")
    p.add_argument("--force", action="store_true", help="overwrite earlier results in --out")
    p.set_defaults(func=run)


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM: unwind like Ctrl-C (the runner kills its ngspice workers on the way out), one line, 128 + signal
    print(f"mtc-analog simulate: terminated by signal {signum}; ngspice was stopped", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    if threading.current_thread() is not threading.main_thread():
        return _run(args)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io import prepare_output_dir, save_figure, write_json
    from ..spice.netlist import read_netlist
    from ..spice.runner import default_timeout_s, run_transient
    from ..spice.waveforms import check_mapping, check_mapping_nodes, save_npz

    if not args.netlist.is_file():
        raise InputError(f"netlist {args.netlist} does not exist")
    mapping_path = args.mapping or args.netlist.with_name("mapping.json")
    mapping = None
    if mapping_path.exists():
        try:
            mapping = json.loads(mapping_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {mapping_path}: {exc}") from None
        check_mapping(mapping, str(mapping_path))  # before simulating: a bad mapping must not cost a whole run
    elif args.mapping:
        raise InputError(f"mapping file {args.mapping} does not exist")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    try:
        deck = read_netlist(args.netlist.read_text(), args.netlist)  # unsafe constructs: refused here, one line
    except OSError as exc:
        raise InputError(f"cannot read netlist {args.netlist}: {exc.strerror or exc}") from None
    if mapping is not None:
        check_mapping_nodes(mapping, deck, str(mapping_path), str(args.netlist))
    timeout = args.timeout if args.timeout is not None else default_timeout_s(args.netlist)
    out = prepare_output_dir(args.out, MARKER, args.force)
    started = time.perf_counter()
    waves = run_transient(args.netlist, timeout_s=timeout, retry=not args.no_retry, log_dir=out)
    wall = time.perf_counter() - started
    summary = {"netlist": str(args.netlist), "mapping": str(mapping_path) if mapping else None,
               "time_points": int(waves.time.size), "t_stop_s": float(waves.time[-1]), "nodes": waves.nodes,
               "attempts": waves.meta.get("attempts", []), "ngspice_seconds": waves.meta.get("seconds"),
               "wall_seconds": wall, "timeout_s": timeout, "waveforms": MARKER}
    figure = None
    if mapping is not None:
        from ..plotting.spice import waveform_figure

        figure = save_figure(waveform_figure(waves.to_model_units(mapping), mapping), out / "waveforms.png", dpi=110)
        summary["figure"] = figure.name
    write_json(out / "simulation.json", summary)
    save_npz(out / MARKER, waves, mapping)  # last: its presence marks a finished run
    print(f"simulated {args.netlist} in {wall:.2f} s ({waves.time.size} time points, "
          f"{summary['attempts'][-1] if summary['attempts'] else ''}) -> {out / MARKER}"
          + (f", {out / figure.name}" if figure else " (no mapping.json: volts only, no figure)"))
    return 0

"""``mtc-analog regimes``: run the four firing-regime presets (docs/reference.md §4), classify, plot.

Writes ``DIR/regimes.json`` (per regime: spike count, burst count, label, expected label, spike
times) and ``DIR/regimes.png`` (traces + I-V curves). The pieces are reusable so that a circuit
run of the same protocols can be added: :func:`model_results` gives the model's
:class:`~mtc_analog.neuron.regimes.RegimeResult` records, :func:`write_outputs` writes the JSON
and the figure with optional extra traces (``{preset name: [ExtraTrace, ...]}``) and extra
per-regime JSON fields (``{preset name: {key: value}}``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import InputError
from ..execution import add_execution_arguments
from ..io import prepare_output_dir, save_figure, write_json
from ..neuron.equations import FILTERS
from ..neuron.regimes import PRESETS, RegimeResult, get_preset, simulate_presets
from ..neuron.step import METHODS

MARKER = "regimes.json"


def check_choices(names: Sequence[str] | None, method: str, filter: str) -> list:
    """The requested presets (default: all four); InputError on an unknown preset, method or filter."""
    presets = [get_preset(n) for n in (names or list(PRESETS))]
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if filter not in FILTERS:
        raise InputError(f"unknown filter {filter!r}: choose one of {', '.join(FILTERS)}")
    return presets


def model_results(names: Sequence[str] | None = None, method: str = "euler", filter: str = "linear") -> list[RegimeResult]:
    """Simulate and classify the named presets (default: all four) on the discrete model."""
    return simulate_presets(check_choices(names, method, filter), method=method, filter=filter)


def write_outputs(
    out: Path,
    results: Sequence[RegimeResult],
    extra_traces: Mapping[str, Sequence] | None = None,
    extra_summary: Mapping[str, Mapping] | None = None,
    settings: Mapping | None = None,
) -> tuple[Path, Path]:
    """Write ``out/regimes.json`` and ``out/regimes.png`` atomically; return both paths."""
    from ..plotting.neuron import regimes_figure

    out = Path(out)
    regimes = {}
    for r in results:
        record = r.summary()
        record.update((extra_summary or {}).get(r.preset.name, {}))
        regimes[r.preset.name] = record
    data = {
        "spike_definition": "upward crossing of U_m = 0 (re-armed below -0.1), after the step",
        "start": "resting equilibrium under I0: root of the steady-state I-V curve I_ss(U) = I0",
        "settings": dict(settings or {}),
        "regimes": regimes,
    }
    figure = save_figure(regimes_figure(results, extra_traces), out / "regimes.png", dpi=110)
    json_path = write_json(out / MARKER, data)
    return json_path, figure


def format_table(results: Sequence[RegimeResult]) -> str:
    lines = [f"{'regime':<17}{'spikes':>7}{'bursts':>7}  {'label':<17}{'expected':<17}"]
    for r in results:
        c = r.classification
        flag = "" if r.matches else "  <-- MISMATCH"
        lines.append(f"{r.preset.name:<17}{c.spike_count:>7}{c.burst_count:>7}  {c.label:<17}{r.preset.expected_label:<17}{flag}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from . import Stage

    presets = check_choices(args.preset, args.method, args.filter)  # fail before touching --out
    out = prepare_output_dir(args.out, MARKER, args.force)
    show = not getattr(args, "no_progress", False)
    names = ", ".join(p.name for p in presets)
    with Stage(f"regimes: model, {len(presets)} preset(s) ({names}; {args.method}, {args.filter} filters)", show):
        results = model_results(args.preset, args.method, args.filter)
    extra_traces = extra_summary = None
    if getattr(args, "spice", False):  # the same protocols in ngspice (mtc_analog.validation.regimes)
        from ..validation.regimes import circuit_regimes, format_circuit_table

        from ..execution import execution_from_args

        with execution_from_args(args, requirements=("ngspice",), progress=show) as execution, \
                Stage(f"regimes: ngspice, {len(presets)} preset(s) on {execution.describe()}", show):
            extra_traces, extra_summary = circuit_regimes(results, filter=args.filter, execution=execution)
    with Stage("regimes: writing regimes.json and the figure", show):
        json_path, figure = write_outputs(out, results, extra_traces, extra_summary,
                                          settings={"method": args.method, "filter": args.filter,
                                                    "spice": bool(getattr(args, "spice", False))})
    print(format_table(results))
    if extra_summary:
        print(format_circuit_table(extra_summary))
    print(f"wrote {json_path} and {figure}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "regimes", help="reproduce the four firing regimes (tonic/phasic spiking/bursting)",
        description="Run the docs/reference.md §4 step protocol for the firing-regime presets on the discrete model, "
                    "classify each trace and write DIR/regimes.json and DIR/regimes.png.")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--force", action="store_true", help="overwrite an earlier regimes.json in --out")
    parser.add_argument("--preset", action="append", metavar="NAME",
                        help=f"run only this preset (repeatable): {', '.join(PRESETS)}")
    parser.add_argument("--method", default="euler", help=f"discrete scheme: {', '.join(METHODS)} (default euler)")
    parser.add_argument("--filter", default="linear", help=f"filter kind: {', '.join(FILTERS)} (default linear)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--spice", action="store_true",
                        help="also run each preset as a circuit in ngspice (behavioural target): model and circuit "
                             "side by side, circuit label and spike-time agreement (Gamma) in regimes.json")
    add_execution_arguments(parser, "one per CPU core; used with --spice")
    parser.set_defaults(func=run)
    return parser

"""``mtc-analog iv``: plot the fast / slow / ultra-slow I-V curves of one parameter set (docs/reference.md §5).

Parameters start from the defaults (or ``--preset``), then a ``--params`` file (YAML or JSON, a
mapping of :class:`~mtc_analog.neuron.equations.MTCParameters` field names, optionally under a
top-level ``params`` key), then individual flags (``--a-f 2.5 --d-s-minus -1.5 ...``).
Prints the negative-slope regions of each curve and, for each ``--current``, the equilibria.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import save_figure
from ..neuron.equations import MTCParameters, validate_parameters
from ..neuron.iv import equilibria, is_stable, iv_curves, negative_slope_regions
from ..neuron.regimes import PRESETS, get_preset

FIELDS = MTCParameters._fields
FIGURE_FORMATS = (".png", ".pdf", ".svg")
_ELEMENT = {"f": "fast negative", "s_plus": "slow positive", "s_minus": "slow negative", "us": "ultra-slow positive"}
#: --help of each parameter flag, with its unit (docs/reference.md §2).
FIELD_HELP = {
    **{f"a_{k}": f"gain of the {v} conductance [I_u], >= 0" for k, v in _ELEMENT.items()},
    **{f"d_{k}": f"offset of the {v} conductance [V_s]" for k, v in _ELEMENT.items()},
    "tau_m": "membrane time constant [t_u], > 0",
    "tau_f": "fast filter time constant [t_u]; 0: instantaneous (U_f = U_m)",
    "tau_s": "slow filter time constant [t_u], > 0",
    "tau_us": "ultra-slow filter time constant [t_u], > 0",
    "resistance": "passive resistance R [V_s/I_u], > 0",
    "u_rest": "resting potential U_rest [V_s]",
}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_params_file(path: Path) -> dict[str, float]:
    """Read a YAML/JSON mapping of parameter fields; InputError on a missing/bad file or key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"parameter file {path} not found (give a YAML or JSON file of {', '.join(FIELDS)})")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"cannot parse parameter file {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise InputError(f"parameter file {path} must hold a mapping of parameter names to numbers")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InputError(f"parameter file {path}: unknown parameter(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(FIELDS)}")
    values = {}
    for key, value in data.items():
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"parameter file {path}: {key} = {value!r} is not a number") from None
    return values


def params_from_args(args: argparse.Namespace) -> MTCParameters:
    """Defaults <- preset <- file <- flags; validated (finite, gains >= 0, time constants > 0)."""
    values: dict[str, Any] = (get_preset(args.preset).params if args.preset else MTCParameters())._asdict()
    if args.params is not None:
        values.update(load_params_file(args.params))
    for field in FIELDS:
        flag_value = getattr(args, field)
        if flag_value is not None:
            values[field] = flag_value
    params = MTCParameters(**values)
    try:
        validate_parameters(params)
    except ValueError as exc:
        raise InputError(f"{exc} (fix the --params file or the flags)") from None
    if params.resistance <= 0:
        raise InputError(f"resistance = {params.resistance:g} must be > 0")
    return params


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise InputError(f"--out {out}: the figure must end in one of {', '.join(FIGURE_FORMATS)}")
    for name, value in (("--u-min", args.u_min), ("--u-max", args.u_max), *(("--current", c) for c in args.current)):
        if not math.isfinite(value):
            raise InputError(f"{name} = {value} is not finite")
    if not args.u_min < args.u_max:
        raise InputError(f"need --u-min < --u-max, got {args.u_min} and {args.u_max}")
    params = params_from_args(args)
    import numpy as np

    from ..plotting.neuron import iv_figure

    u = np.linspace(args.u_min, args.u_max, 1601)
    curves = iv_curves(params, u)
    for timescale in ("fast", "slow", "ultraslow"):
        regions = negative_slope_regions(u, getattr(curves, timescale))
        shown = ", ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in regions) or "none (monotone)"
        print(f"I_{timescale:<9} negative slope on U in {shown}")
    for current in args.current:
        roots = equilibria(params, current)
        shown = ", ".join(f"{r:.4f} ({'stable' if is_stable(params, r, current) else 'unstable'})" for r in roots)
        print(f"I = {current:g}: equilibria U* = {shown}")
    title = ("I-V curves\n" + ", ".join(f"{f}={getattr(params, f):g}" for f in FIELDS[:4]) + "\n"
             + ", ".join(f"{f}={getattr(params, f):g}" for f in FIELDS[4:8]))
    figure = iv_figure(params, u, title=title, currents={f"I={c:g}": c for c in args.current})
    save_figure(figure, out, dpi=110)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "iv", help="plot the I-V curves of an MTC parameter set",
        description="Fast, slow and ultra-slow (steady-state) I-V curves of one MTC neuron (docs/reference.md §5).")
    parser.add_argument("--out", required=True, type=Path, help="figure file (.png, .pdf or .svg)")
    parser.add_argument("--params", type=Path, help="YAML or JSON file of MTCParameters fields (default: the built-in defaults or --preset)")
    parser.add_argument("--preset", metavar="NAME",
                        help=f"start from a firing-regime preset's parameters: {', '.join(PRESETS)}")
    group = parser.add_argument_group("parameters (override the file / preset)")
    for field in FIELDS:
        group.add_argument(_flag(field), dest=field, type=float, metavar="X", help=FIELD_HELP[field])
    parser.add_argument("--current", type=float, action="append", default=[], metavar="I",
                        help="mark this input current [I_u] and print its equilibria (repeatable)")
    parser.add_argument("--u-min", type=float, default=-4.0, help="voltage axis start [V_s] (default -4)")
    parser.add_argument("--u-max", type=float, default=4.0, help="voltage axis end [V_s] (default 4)")
    parser.set_defaults(func=run, out_kind="file")  # --out is a figure file: lock that file, not a directory
    return parser

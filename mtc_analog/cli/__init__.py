"""The ``mtc-analog`` command line: thin wrappers that parse, call the Python API, and print.

Each sub-command lives in its own module here and exposes ``register(subparsers)``; the module
sets ``func`` on its parser. Any :class:`~mtc_analog.errors.MTCAnalogError` becomes one line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import MTCAnalogError

#: Sub-command modules, in the order of the data flow.
COMMAND_MODULES = ("regimes", "iv", "train", "evaluate", "census", "compare", "export", "simulate", "validate", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtc-analog",
        description="Multi-timescale conductance spiking networks: train, export to ngspice, validate.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":  # command not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*Unsupported Ngspice version.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except MTCAnalogError as exc:
        if args.traceback:
            raise
        print(f"mtc-analog {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mtc-analog {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

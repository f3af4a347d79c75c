"""The ``mtc-analog`` command line: thin wrappers that parse, call the Python API, and print.

Each sub-command lives in its own module here and exposes ``register(subparsers)``; the module
sets ``func`` on its parser. Any :class:`~mtc_analog.errors.MTCAnalogError`, any ``OSError`` (read-only
file system, disk full, a file where a directory should be, ...) and running out of memory become one
line on stderr and a non-zero exit code.

Every command's ``--out`` is locked for the whole run (:func:`mtc_analog.io.output_lock`): a second
writer of the same output fails at once, naming the process that holds it. A command whose ``--out``
is a file rather than a directory sets ``out_kind="file"`` in its parser defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import signal
import sys
import threading
import time
import warnings

from ..errors import MTCAnalogError

#: Sub-command modules, in the order of the data flow.
COMMAND_MODULES = ("regimes", "iv", "train", "evaluate", "census", "compare", "export", "simulate", "validate", "montecarlo", "demo")


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """Append "(default: X)" to an option's help unless the help already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class _CommandParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtc-analog",
        description="Multi-timescale conductance spiking networks: train, export to ngspice, validate.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
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
    from ..io import file_system_error, output_lock

    command = "mtc-analog " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    previous_term = None
    if argv is None and threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _terminate)
    out = getattr(args, "out", None)
    try:
        with output_lock(out, command, getattr(args, "out_kind", "dir")) if out else contextlib.nullcontext():
            result = args.func(args)
    except MTCAnalogError as exc:
        if args.traceback:
            raise
        print(f"mtc-analog {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the file system said no: one line with the path, the meaning and the fix
        if args.traceback:
            raise
        print(f"mtc-analog {args.command}: error: {file_system_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.traceback:
            raise
        print(f"mtc-analog {args.command}: error: out of memory; lower --hidden, --batch, --window or --samples "
              f"(earlier results are intact)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        what = "interrupted" if signum == signal.SIGINT else f"terminated by signal {signum}"
        print(f"mtc-analog {args.command}: {what}", file=sys.stderr, flush=True)
        return 128 + int(signum)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return int(result or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C: every cleanup path (ngspice workers, Dask clusters) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


class Stage:
    """One progress line per stage of a long command, on stderr: ``label ...`` then ``done (N s)``.

    On a terminal the elapsed time is refreshed in place every second while the stage runs, so a
    long ngspice batch visibly progresses; in a log (not a terminal) there is one line at the start
    and one at the end.
    """

    def __init__(self, label: str, enabled: bool = True, stream=None) -> None:
        self.label, self.enabled = label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self._stop = None

    def __enter__(self) -> "Stage":
        self.start = time.perf_counter()
        if not self.enabled:
            return self
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._tty = tty
        if tty:
            import threading

            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        else:
            print(f"{self.label} ...", file=self.stream, flush=True)
        return self

    def _tick(self) -> None:
        while not self._stop.is_set():
            print(f"\r{self.label} ... {time.perf_counter() - self.start:.0f} s", end="", file=self.stream, flush=True)
            self._stop.wait(1.0)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        status = "done" if exc_type is None else "failed"
        prefix = "\r" if self._tty else ""
        tail = f"{self.label} ... {status} ({elapsed:.1f} s)" if self._tty else f"{self.label}: {status} ({elapsed:.1f} s)"
        print(prefix + tail + ("\x1b[K" if self._tty else ""), file=self.stream, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

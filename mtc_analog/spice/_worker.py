"""The code that runs inside a simulation worker process: one ngspice (PySpice shared mode) per process.

Kept free of torch and of the rest of the package (only numpy, PySpice and the error types), so a
worker starts fast. See :mod:`mtc_analog.spice.runner` for the caller side.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import warnings
from typing import Any

import numpy as np

from ..errors import SimulatorMissingError
from ..io import process_alive

INSTALL_HINT = "install ngspice: apt-get install ngspice libngspice0-dev"
#: Log phrases that mean the transient did not complete (retryable).
CONVERGENCE_MARKERS = ("timestep too small", "singular matrix", "simulation(s) aborted", "iteration limit reached")


class ConvergenceFailure(Exception):
    """Raised inside the worker: ngspice ran but did not converge (retryable)."""


class ParseFailure(Exception):
    """Raised inside the worker: ngspice rejected the netlist (not retryable)."""


_NGSPICE = None
#: How often a worker checks that its caller is still alive [s].
WATCH_PERIOD_S = 0.2


def init_worker(caller_pid: int) -> None:
    """Run first in every worker: it must die with its caller, however the caller ends.

    - SIGINT is ignored: Ctrl-C reaches the whole process group, and the caller (which kills its
      workers) handles it; inside ngspice's cffi callback it would only print "Exception ignored".
    - PR_SET_PDEATHSIG: the kernel kills the worker when its parent (the forkserver, which itself
      exits when the caller's pipe closes) dies.
    - a watchdog thread kills the worker once the caller is gone (SIGKILL leaves no other trace).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal()
    threading.Thread(target=_watch, args=(caller_pid,), name="caller-watchdog", daemon=True).start()


def _set_parent_death_signal() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the watchdog still works
        pass


def _watch(caller_pid: int) -> None:
    while process_alive(caller_pid):
        time.sleep(WATCH_PERIOD_S)
    os.kill(os.getpid(), signal.SIGKILL)


def _ngspice(log_file: Any) -> Any:
    """The process's single ngspice instance, logging every line to ``log_file``."""
    global _NGSPICE
    warnings.filterwarnings("ignore", message=".*Unsupported Ngspice version.*")
    import logging

    logging.getLogger("PySpice").setLevel(logging.CRITICAL)  # ngspice's output goes to our log file instead
    if _NGSPICE is None:
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
        except (ImportError, OSError) as exc:  # pragma: no cover - depends on the machine
            raise SimulatorMissingError(f"PySpice cannot load libngspice ({exc}): {INSTALL_HINT}") from None

        class _LoggedNgSpice(NgSpiceShared):
            log = None

            def send_char(self, message: str, ngspice_id: int) -> int:
                if self.log is not None:
                    self.log.write(message + "\n")
                    self.log.flush()
                return 0

        # ngspice sources a .spiceinit from the current folder at start-up: that file's commands would run
        # (a foreign folder is no place to start it), so it starts in an empty folder, then comes back
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory(prefix="mtc_ngspice_") as empty:
            os.chdir(empty)
            try:
                _NGSPICE = _LoggedNgSpice(ngspice_id=0, send_data=False)
            except OSError as exc:  # pragma: no cover
                raise SimulatorMissingError(f"cannot load libngspice ({exc}): {INSTALL_HINT}") from None
            finally:
                os.chdir(cwd)
    _NGSPICE.log = log_file
    return _NGSPICE


def simulate(text: str, log_path: str) -> dict[str, Any]:
    """Load ``text`` (no .control block), run its transient, return time and node voltages."""
    with open(log_path, "a") as log:
        ng = _ngspice(log)
        log.write(f"---- mtc_analog worker pid {os.getpid()}: loading netlist ----\n")
        log.flush()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            ng.load_circuit(text)
            loaded = "\n".join(ng._stdout + ng._stderr).lower()
        except Exception as exc:  # noqa: BLE001 - PySpice raises several types for parse errors
            loaded = f"error: {type(exc).__name__}"
        if "error" in loaded:
            _cleanup(ng)
            raise ParseFailure("ngspice rejected the netlist")
        try:
            ng.run()
        except Exception:  # noqa: BLE001 - judged by the log and the data below
            pass
        output = "\n".join(ng._stdout + ng._stderr).lower()
        try:
            plot = ng.plot(None, ng.last_plot) if ng.plot_names else {}
        except Exception:  # noqa: BLE001
            plot = {}
        data = {name.lower(): np.array(vec._data, dtype=float) for name, vec in plot.items()
                if np.isrealobj(vec._data)}
        _cleanup(ng)
        time_vec = data.pop("time", None)
        if any(marker in output for marker in CONVERGENCE_MARKERS) or time_vec is None or time_vec.size < 2:
            raise ConvergenceFailure("ngspice did not complete the transient")
        voltages = {}
        for name, values in data.items():
            node = name[2:-1] if name.startswith("v(") and name.endswith(")") else name
            if "#branch" not in node:
                voltages[node] = values
            elif name.startswith("i(") or saved_current(name) in text.lower():
                voltages[saved_current(name)] = values  # a current asked for by .save i(source) [A]
        return {"time": time_vec, "voltages": voltages, "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started, "pid": os.getpid()}


def saved_current(name: str) -> str:
    """``i(source)``: the key of a source current (ngspice names it ``source#branch``)."""
    if name.startswith("i(") and name.endswith(")"):
        return name
    return f"i({name.split('#', 1)[0]})"


def _cleanup(ng: Any) -> None:
    for command in (ng.remove_circuit, lambda: ng.destroy("all")):
        try:
            command()
        except Exception:  # noqa: BLE001 - best effort: a failed cleanup must not hide the result
            pass



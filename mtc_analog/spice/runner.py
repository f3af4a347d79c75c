"""Run ngspice transients through PySpice's shared-library mode, each in its own worker process.

Why processes: ngspice keeps global state and can abort (or be killed); running it in a worker
(``concurrent.futures.ProcessPoolExecutor``, ``spawn`` start method — never threads, one ngspice per
process) turns any crash into a :class:`~mtc_analog.errors.SimulationError` carrying the netlist
path and the tail of ngspice's log, instead of taking the caller down. The worker writes ngspice's
output line by line to ``<netlist>.log`` so the tail survives a crash.

Convergence retry policy (when ngspice reports "timestep too small" or a singular matrix / the run
aborts without data), each attempt on the same netlist text with settings appended:

1. as written (trapezoidal, reltol 1e-4, abstol = gmin = 1e-15, TMAX = model dt);
2. ``method=gear`` (damps the trapezoidal ringing that stalls stiff B-source circuits);
3. gear with relaxed tolerances: ``reltol=1e-3 abstol=1e-12 vntol=1e-6 itl4=100``;
4. gear, relaxed, and TMAX / 10.

If all fail, the error lists every attempt. Parse errors (bad netlists) are not retried.

Every netlist is first read by :mod:`.parse` (includes inlined, anything that would run a command
refused with :class:`~mtc_analog.errors.UnsafeNetlistError`, our own stand-alone control block
removed): ngspice is only ever given that checked text.

Processes: workers ignore SIGINT (the caller handles Ctrl-C and kills them), carry a parent-death
signal and watch the caller's pid, so no ngspice outlives its caller, whether it ends by Ctrl-C,
SIGTERM or SIGKILL.
PySpice prints "Unsupported Ngspice version 39" for Debian's ngspice 39: harmless, filtered.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes.util
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import NetlistValueError, SimulationError, SimulatorMissingError
from ._worker import CONVERGENCE_MARKERS as _CONVERGENCE_MARKERS
from ._worker import ConvergenceFailure as _ConvergenceFailure
from ._worker import ParseFailure as _ParseFailure
from ._worker import init_worker as _init_worker
from ._worker import simulate as _simulate_worker
from .netlist import Netlist, read_netlist, set_simulator_settings, tran_settings
from .waveforms import Waveforms

INSTALL_HINT = "install ngspice: apt-get install ngspice libngspice0-dev"

#: (label, options appended, TMAX divisor) per attempt; see the module docstring.
RETRY_POLICY: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("as written (trap, reltol=1e-4)", {}, 1.0),
    ("method=gear", {"method": "gear"}, 1.0),
    ("gear + relaxed tolerances (reltol=1e-3, abstol=1e-12, vntol=1e-6)",
     {"method": "gear", "reltol": 1e-3, "abstol": 1e-12, "vntol": 1e-6, "itl4": 100}, 1.0),
    ("gear + relaxed tolerances + TMAX/10",
     {"method": "gear", "reltol": 1e-3, "abstol": 1e-12, "vntol": 1e-6, "itl4": 100}, 10.0),
)

_LOG_TAIL_LINES = 25


def check_simulator() -> None:
    """Raise :class:`SimulatorMissingError` (one line: what to install) if ngspice is not usable."""
    if shutil.which("ngspice") is None:
        raise SimulatorMissingError(f"the ngspice program was not found on PATH: {INSTALL_HINT}")
    if os.environ.get("NGSPICE_LIBRARY_PATH"):
        if not Path(os.environ["NGSPICE_LIBRARY_PATH"]).exists():
            raise SimulatorMissingError(f"NGSPICE_LIBRARY_PATH={os.environ['NGSPICE_LIBRARY_PATH']} does not exist: {INSTALL_HINT}")
    elif ctypes.util.find_library("ngspice") is None:
        raise SimulatorMissingError(f"the shared library libngspice was not found: {INSTALL_HINT}")


# ---- caller side --------------------------------------------------------------------------------
@dataclass
class SimulationJob:
    """One netlist to run: its text (with or without .control) and where it lives (for messages/logs)."""

    text: str
    path: Path | None = None
    label: str = "netlist"

    @classmethod
    def from_any(cls, netlist: Netlist | str | os.PathLike | Any, label: str = "netlist") -> "SimulationJob":
        if isinstance(netlist, Netlist):
            return cls(netlist.render(control=False), None, label)
        if isinstance(netlist, (str, os.PathLike)) and not (isinstance(netlist, str) and "\n" in netlist):
            path = Path(netlist)
            try:
                return cls(path.read_text(), path, str(path))
            except OSError as exc:
                raise SimulationError(f"cannot read netlist {path}: {exc.strerror or exc}", netlist=str(path)) from None
        if isinstance(netlist, str):
            return cls(netlist, None, label)
        if hasattr(netlist, "raw_spice") or type(netlist).__name__ == "Circuit":  # a PySpice Circuit
            return cls(str(netlist).rstrip("\n") + "\n.end\n", None, label)  # str(Circuit) has no .end
        raise SimulationError(f"cannot run a {type(netlist).__name__}: give a Netlist, a PySpice Circuit, a path or text")


#: Default timeout per attempt (``mtc-analog simulate``): TIMEOUT_BASE_S + TIMEOUT_PER_ELEMENT_STEP_S
#: * (top-level element statements) * (t_stop / TMAX). Measured (docs/reference.md §9): about 1e-5 s per neuron
#: instance and TMAX step at 1000 neurons (super-linear below that); the factor 20 leaves room for
#: a slow machine and retries at a smaller TMAX are given the same budget.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_ELEMENT_STEP_S = 2e-4


def default_timeout_s(netlist: str | os.PathLike) -> float:
    """The default per-attempt timeout [s] of a netlist file, from its size (see the constants above)."""
    path = Path(netlist)
    try:
        deck = read_netlist(path.read_text(), path)
    except OSError as exc:
        raise SimulationError(f"cannot read netlist {path}: {exc.strerror or exc}", netlist=str(path)) from None
    t_stop, t_max = tran_settings(deck)
    depth, elements = 0, 0
    for statement in deck.statements:
        if statement.keyword == ".subckt":
            depth += 1
        elif statement.keyword == ".ends":
            depth = max(0, depth - 1)
        elif depth == 0 and not statement.keyword.startswith("."):
            elements += 1
    return TIMEOUT_BASE_S + TIMEOUT_PER_ELEMENT_STEP_S * max(1, elements) * (t_stop / t_max)


def _executor(jobs: int) -> cf.ProcessPoolExecutor:
    # forkserver: workers fork from a clean server process (cheap, no inherited ngspice/torch state);
    # spawn where forkserver does not exist. Never fork the caller, never threads.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # the server imports the caller's __main__ and the light worker module once; each worker then
        # forks from it in milliseconds (as with spawn, a calling script needs an `if __name__ == "__main__"` guard)
        context.set_forkserver_preload(["__main__", "mtc_analog.spice._worker"])
    else:
        context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                  initargs=(os.getpid(),))


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    kept = [l for l in text.splitlines() if l.strip() and "reference value" not in l.lower()]
    return "\n".join(kept[-lines:])


def _kill_workers(executor: cf.ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor (Python 3.11) has no public kill: reach its process table; a hung ngspice must go.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.kill()
        except Exception:  # noqa: BLE001
            pass
    for process in processes:  # reap them: a killed worker must not linger as a zombie
        process.join(timeout=10)
    executor.shutdown(wait=False, cancel_futures=True)
    # let its manager thread wind down now: at exit, concurrent.futures wakes every live manager through a pipe
    # that this thread closes as it ends, and a close between that check and the write prints an EBADF traceback
    manager = getattr(executor, "_executor_manager_thread", None)
    if manager is not None and manager.is_alive():
        manager.join(timeout=10)


def run_jobs(
    jobs: Sequence[SimulationJob],
    workers: int | None = None,
    timeout_s: float | None = None,
    retry: bool = True,
    log_dir: str | os.PathLike | None = None,
) -> list[Waveforms]:
    """Run several netlists in parallel worker processes; results in input order.

    ``workers`` defaults to min(len(jobs), CPU count). ``timeout_s`` bounds each attempt (the worker is
    killed). Raises :class:`SimulationError` for the first job that fails after its retries.
    """
    check_simulator()
    jobs = list(jobs)
    if not jobs:
        return []
    checked: list[str] = []
    for job in jobs:  # unsafe constructs, a missing .tran: user errors, said before any attempt
        try:
            deck = read_netlist(job.text, job.path)
            tran_settings(deck)
        except NetlistValueError as exc:
            raise type(exc)(f"{job.label}: {exc}") from None
        checked.append(deck.text())
    workers = max(1, min(len(jobs), workers or os.cpu_count() or 1))
    own_logs = log_dir is None  # a temporary log folder is removed after success, kept after a failure
    log_root = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mtc_spice_logs_"))
    log_root.mkdir(parents=True, exist_ok=True)
    results: list[Waveforms | None] = [None] * len(jobs)
    attempts = [0] * len(jobs)
    tried: list[list[str]] = [[] for _ in jobs]
    policy = RETRY_POLICY if retry else RETRY_POLICY[:1]
    log_paths = [log_root / (f"{job.path.stem}.log" if job.path is not None and len(jobs) == 1 else f"job{k}.log")
                 for k, job in enumerate(jobs)]
    for path in log_paths:
        path.write_text("")

    def text_for(k: int) -> str:
        label, options, divisor = policy[attempts[k]]
        text = checked[k]  # the parsed, checked text: includes inlined, no control block
        if attempts[k] > 0:
            t_max = tran_settings(text)[1] / divisor if divisor != 1.0 else None
            text = set_simulator_settings(text, options, t_max)
        return text

    pending = list(range(len(jobs)))
    while pending:
        executor = _executor(min(workers, len(pending)))
        futures = {}
        try:
            finished_at: dict[cf.Future, float] = {}
            for k in pending:
                future = executor.submit(_simulate_worker, text_for(k), str(log_paths[k]))
                future.add_done_callback(lambda f: finished_at.setdefault(f, time.monotonic()))
                futures[future] = k
            next_pending = []
            deadline = None if timeout_s is None else time.monotonic() + timeout_s * max(1, -(-len(pending) // workers))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, not_done = cf.wait(futures, timeout=remaining)
            if deadline is not None:
                # On a loaded machine this thread can wake long after its timeout, when a run has finished late:
                # the run's own completion time (stamped by the executor's thread) decides, not the wake-up.
                late = {f for f in done if finished_at.get(f, deadline) > deadline}
                done, not_done = done - late, set(not_done) | late
            if not_done:
                _kill_workers(executor)
                k = futures[next(iter(not_done))]
                raise SimulationError(
                    f"ngspice did not finish within {timeout_s:g} s per run ({jobs[k].label}); the worker was killed. "
                    "Shorten the input, split the network (more chunks), or raise the timeout (--timeout SECONDS)",
                    netlist=str(jobs[k].path or log_paths[k]), log_tail=_log_tail(log_paths[k]),
                )
            for future, k in sorted(((f, futures[f]) for f in done), key=lambda item: item[1]):
                label = policy[attempts[k]][0]
                try:
                    out = future.result()
                except _ConvergenceFailure:
                    tried[k].append(label + ": no convergence")
                    attempts[k] += 1
                    if attempts[k] >= len(policy):
                        raise SimulationError(
                            f"ngspice did not converge on {jobs[k].label} after {len(tried[k])} attempt(s); "
                            "check the mapped values (mtc-analog export reports ranges) or the input's edges",
                            netlist=str(jobs[k].path or log_paths[k]), log_tail=_log_tail(log_paths[k]), tried=tried[k],
                        ) from None
                    next_pending.append(k)
                    continue
                except _ParseFailure as exc:
                    raise SimulationError(
                        f"{exc} in {jobs[k].label}; see the log tail", netlist=str(jobs[k].path or log_paths[k]),
                        log_tail=_log_tail(log_paths[k]),
                    ) from None
                except cf.process.BrokenProcessPool:
                    raise SimulationError(
                        f"ngspice crashed or was killed while simulating {jobs[k].label} (its worker process died; "
                        "if the caller is a script, its top level needs an `if __name__ == \"__main__\":` guard)",
                        netlist=str(jobs[k].path or log_paths[k]), log_tail=_log_tail(log_paths[k]), tried=tried[k] + [label],
                    ) from None
                except (SimulationError, SimulatorMissingError):
                    raise
                except Exception as exc:  # noqa: BLE001 - anything else from the worker, reported with context
                    raise SimulationError(
                        f"the simulation worker failed on {jobs[k].label}: {type(exc).__name__}: {exc}",
                        netlist=str(jobs[k].path or log_paths[k]), log_tail=_log_tail(log_paths[k]), tried=tried[k] + [label],
                    ) from exc
                tried[k].append(label + ": ok")
                results[k] = Waveforms(out["time"], out["voltages"],
                                       {"attempts": list(tried[k]), "seconds": out["seconds"],
                                        "cpu_seconds": out["cpu_seconds"], "log": str(log_paths[k])})
            pending = next_pending
        except BaseException:  # Ctrl-C, a failure: no ngspice may outlive this call
            _kill_workers(executor)
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if own_logs:
        shutil.rmtree(log_root, ignore_errors=True)
        for waves in results:
            if waves is not None:
                waves.meta.pop("log", None)
    return [r for r in results if r is not None]


def run_transient(
    netlist: Netlist | str | os.PathLike | Any,
    timeout_s: float | None = None,
    retry: bool = True,
    log_dir: str | os.PathLike | None = None,
) -> Waveforms:
    """Run one transient (a :class:`Netlist`, a PySpice ``Circuit``, netlist text, or a .cir path).

    The netlist's own ``.tran`` line sets t_stop and TMAX (the builder pins TMAX to the model's dt);
    its ``.control`` block, if any, is dropped (shared mode runs the transient itself). Returns
    :class:`Waveforms` of the probed nodes (``.save``), time in seconds, voltages in volts.
    """
    return run_jobs([SimulationJob.from_any(netlist)], workers=1, timeout_s=timeout_s, retry=retry, log_dir=log_dir)[0]


def run_standalone(path: str | os.PathLike, timeout_s: float = 600.0) -> Path:
    """Run ``ngspice -b path`` as a separate program (no Python inside); return the rawfile it wrote.

    The netlist is checked first (:func:`.netlist.read_netlist`: only our own control block, no
    command). An earlier rawfile is removed before the run; the run counts as failed unless ngspice
    exits 0, its log has no abort marker, and the rawfile holds a transient that reached the
    ``.tran`` stop time (ngspice -b happily exits 0 after a transient aborted midway)."""
    import subprocess

    from .netlist import RAW_FILE
    from .waveforms import read_rawfile

    check_simulator()
    path = Path(path).resolve()
    try:
        deck = read_netlist(path.read_text(), path)
    except OSError as exc:
        raise SimulationError(f"cannot read netlist {path}: {exc.strerror or exc}", netlist=str(path)) from None
    t_stop, _ = tran_settings(deck)
    raw = path.parent / RAW_FILE
    raw.unlink(missing_ok=True)  # a stale rawfile must never pass for this run's output
    with tempfile.TemporaryDirectory(prefix="mtc_ngspice_") as cwd:  # no .spiceinit of the netlist's folder
        try:
            proc = subprocess.run(["ngspice", "-n", "-b", str(path)], capture_output=True, text=True,
                                  timeout=timeout_s, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise SimulationError(f"ngspice -b did not finish within {timeout_s:g} s", netlist=str(path)) from None
    log = (proc.stdout + proc.stderr).replace("\r", "\n")
    tail = "\n".join([l for l in log.splitlines() if l.strip() and "reference value" not in l.lower()][-_LOG_TAIL_LINES:])
    problem = None
    if proc.returncode != 0:
        problem = f"ngspice -b exited with code {proc.returncode}"
    elif any(m in log.lower() for m in _CONVERGENCE_MARKERS):
        problem = "ngspice -b reported an aborted transient (exit code 0)"
    elif not raw.exists():
        problem = f"ngspice -b wrote no {RAW_FILE}"
    else:
        try:
            waves = read_rawfile(raw)
        except SimulationError as exc:
            problem = f"{RAW_FILE} is not a complete transient ({exc})"
        else:
            if waves.time.size < 2 or waves.time[-1] < t_stop * (1 - 1e-6):
                reached = waves.time[-1] if waves.time.size else 0.0
                problem = f"the transient stopped at {reached:g} s of {t_stop:g} s"
    if problem is not None:
        raw.unlink(missing_ok=True)
        raise SimulationError(f"{problem}: the stand-alone run failed; see the log tail", netlist=str(path), log_tail=tail)
    return raw


def iter_chunks(items: Sequence[int], n_chunks: int) -> Iterable[list[int]]:
    """Split ``items`` into ``n_chunks`` contiguous, nearly equal parts (none empty)."""
    n_chunks = max(1, min(n_chunks, len(items)))
    for part in np.array_split(np.asarray(items, dtype=int), n_chunks):
        if part.size:
            yield part.tolist()

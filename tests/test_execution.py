"""The execution layer on a real Dask LocalCluster started by the tests (no mocks).

Tasks are module-level functions of this file: workers import it by reference (pytest puts tests/
on sys.path, and the spawned workers inherit it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mtc_analog.execution import Execution, ExecutionError, TaskFailedError
from mtc_analog.io import process_alive
from proc_census import descendants, interruptible

ROOT = Path(__file__).resolve().parent.parent


def seeded_rollout(seed: int) -> list[float]:
    """A small MTC rollout driven by a seeded random current: the kind of work a compare seed does."""
    import torch

    from mtc_analog.neuron.equations import MTCParameters
    from mtc_analog.neuron.step import mtc_rollout

    gen = torch.Generator().manual_seed(seed)
    current = torch.randn(400, 2, 8, generator=gen, dtype=torch.float64)
    out = mtc_rollout(current, MTCParameters(tau_s=10.0, tau_us=100.0), dt=0.1, backend="reference")
    return out.s.sum(dim=(1, 2)).tolist()


def die_once(marker: str) -> str:
    """SIGKILL the worker the first time (as an out-of-memory kill would), succeed on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"ok after {path.read_text()} died"


def always_fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


@pytest.fixture(scope="module")
def two_workers():
    """One real LocalCluster of 2 worker processes, shared by the tests of this module."""
    with Execution(workers=2, progress=False) as ex:
        yield ex


def test_same_numbers_serial_and_on_local_clusters_of_1_and_2_workers(two_workers):
    # (benchmarks/bench_scaling.py checks the same with 4 workers; 4 processes are too many for CI's 2 cores)
    seeds = [0, 1, 2, 3]
    serial = Execution(scheduler="serial", progress=False).map(seeded_rollout, seeds)
    with Execution(workers=1, progress=False) as one:
        assert one.mode == "local" and len(one.client.scheduler_info()["workers"]) == 1
        assert one.map(seeded_rollout, seeds) == serial  # bit-identical
    assert len(two_workers.client.scheduler_info()["workers"]) == 2
    assert two_workers.map(seeded_rollout, seeds) == serial  # whatever worker ran what
    assert serial[0] != serial[1]  # the seeds matter: the comparison above could fail


def test_a_worker_killed_mid_task_is_replaced_and_the_run_completes(tmp_path, two_workers):
    markers = [str(tmp_path / f"m{k}") for k in range(3)]
    results = two_workers.map(die_once, markers, labels=[f"mc-instance-{k}" for k in range(3)])
    assert all(r.startswith("ok after") for r in results)
    assert all(Path(m).exists() for m in markers)  # every task really killed a worker once


def test_a_task_that_keeps_failing_is_reported_with_its_inputs(two_workers):
    with pytest.raises(TaskFailedError, match=r"task 'job-7'.*ValueError: bad input 7.*inputs: 7"):
        Execution(scheduler="serial", retries=1, progress=False).map(always_fails, [7], labels=["job-7"])
    with pytest.raises(TaskFailedError, match=r"bad input 3"):
        two_workers.map(always_fails, [3])


def test_results_are_stored_and_a_rerun_resumes(tmp_path):
    store = tmp_path / "partial"
    first = Execution(scheduler="serial", progress=False).map(seeded_rollout, [5, 6], labels=["s5", "s6"], store=store)
    assert sorted(p.name for p in store.iterdir()) == ["s5.json", "s6.json"]
    # A re-run must not recompute: a task that would fail proves the stored results were used.
    again = Execution(scheduler="serial", progress=False).map(always_fails, [5, 6], labels=["s5", "s6"], store=store)
    assert again == first


def test_missing_software_on_a_worker_names_the_worker(two_workers):
    reports = two_workers.check_workers(["ngspice", "numpy"])
    assert len(reports) == 2 and not any(r.missing for r in reports)
    with pytest.raises(ExecutionError, match=r"2 of 2 worker\(s\) cannot run this job: tcp://.* lacks python module no_such_pkg_xyz"):
        two_workers.check_workers(["no_such_pkg_xyz"])


def test_unreachable_scheduler_is_one_clear_error():
    ex = Execution(scheduler="tcp://127.0.0.1:9", progress=False)
    with pytest.raises(ExecutionError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        ex.start()
    with pytest.raises(ExecutionError, match="not a URL"):
        Execution(scheduler="localhost:8786")


def test_unreachable_scheduler_from_the_cli_is_one_line(tmp_path):
    env = {**os.environ, "MTC_ANALOG_SCHEDULER": "tcp://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "mtc_analog", "compare", "--seeds", "1", "--horizons", "1",
                           "--horizon", "1", "--epochs", "1", "--out", str(tmp_path / "c")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0], proc.stderr


def test_ctrl_c_cancels_the_graph_and_leaves_no_process(tmp_path):
    # Each task holds a child process (as a simulation holds ngspice); Ctrl-C must take all of them down.
    script = textwrap.dedent(f"""
        import subprocess, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from mtc_analog.execution import Execution
        import test_execution as t
        with Execution(workers=2, progress=False) as ex:
            print("started", flush=True)
            ex.map(t.hold_a_child, [60, 60, 60])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=interruptible)
    assert proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until both workers hold their `sleep`
        sleeps = [p for p in descendants(proc.pid) if _comm(p) == "sleep"]
        if len(sleeps) >= 2:
            break
        time.sleep(0.2)
    family = descendants(proc.pid)
    assert len([p for p in family if _comm(p) == "sleep"]) >= 2
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    time.sleep(1.0)
    survivors = [p for p in family if process_alive(p)]
    assert not survivors, f"processes left behind after Ctrl-C: {[(p, _comm(p)) for p in survivors]}"


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def hold_a_child(seconds: int) -> int:
    """Hold a child process for ``seconds`` (as a simulation holds ngspice), tied to this worker's life."""
    return subprocess.run(["sleep", str(seconds)], preexec_fn=_die_with_parent).returncode


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_bad_worker_counts_are_refused():
    with pytest.raises(ExecutionError, match="workers = -1"):
        Execution(workers=-1)
    assert Execution(workers=0).mode == "serial"
    assert np.isfinite(Execution(scheduler="serial").n_workers)

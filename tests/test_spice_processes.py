"""No ngspice outlives `mtc-analog simulate`: Ctrl-C, SIGTERM and SIGKILL to a real subprocess, then a
process census via /proc (every descendant seen during the run must be gone)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtc_analog.hardware import HardwareTarget
from mtc_analog.neuron.regimes import get_preset
from mtc_analog.io import process_alive
from proc_census import descendants, interruptible
from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, protocol_netlist

ROOT = Path(__file__).resolve().parents[1]


def _long_netlist(path: Path) -> Path:
    p = get_preset("tonic_spiking")
    netlist, _ = protocol_netlist(NeuronSetup(p.params, StepProtocol(p.i0, p.i1, 100.0, 200000.0, p.dt), name="long"),
                                  HardwareTarget())
    path.write_text(netlist.render())  # minutes of simulation: only a signal ends it
    return path


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigkill"])
def test_no_worker_survives_a_signal_to_simulate(tmp_path, how):
    cir = _long_netlist(tmp_path / "long.cir")
    out = tmp_path / "sim"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "mtc_analog", "simulate", str(cir), "--out", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible)
    seen: set[int] = set()
    try:
        worker = None
        for _ in range(1200):  # until the worker has loaded the netlist and ngspice runs
            log = out / "long.log"
            match = re.search(r"worker pid (\d+)", log.read_text()) if log.exists() else None
            if match:
                worker = int(match.group(1))
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert worker is not None, "the worker never started"
        time.sleep(0.5)
        seen = descendants(proc.pid)
        assert worker in seen
        if how == "ctrl-c":  # the terminal sends SIGINT to the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        for _ in range(300):  # census: every process seen during the run must be gone (or a zombie)
            alive = {pid for pid in seen if process_alive(pid)}
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, f"survivors after {how}: {alive}"
        if how == "ctrl-c":
            assert proc.returncode == 130
            assert err.strip() == "mtc-analog simulate: interrupted", err  # one line, no cffi noise, no traceback
        elif how == "sigterm":  # unwound like Ctrl-C: one line, 128 + 15, nothing leaked
            assert proc.returncode == 128 + signal.SIGTERM
            assert err.strip() == "mtc-analog simulate: terminated by signal 15; ngspice was stopped", err
        else:
            assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in seen:  # never leak a process when the test fails
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)

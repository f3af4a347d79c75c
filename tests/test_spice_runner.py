"""The ngspice runner: stand-alone and PySpice runs agree; failures become SimulationError, never a crash."""

from __future__ import annotations

import os
import re
import threading
import multiprocessing
import time

import numpy as np
import pytest

from mtc_analog.errors import SimulationError, SimulatorMissingError
from mtc_analog.hardware import HardwareTarget
from mtc_analog.neuron.regimes import get_preset
from mtc_analog.spice.export import export_neuron
from mtc_analog.spice.protocol import NeuronSetup, StepProtocol, protocol_netlist
from mtc_analog.spice.runner import RETRY_POLICY, SimulationJob, check_simulator, run_jobs, run_standalone, run_transient
from mtc_analog.spice.waveforms import read_rawfile

NON_CONVERGING = """* algebraic loop through a discontinuity: no solution at t = 0 (timestep too small)
B1 a 0 V = V(a) > 0.5 ? 0 : 1
R1 a 0 1k
.ic v(a)=0
.tran 1n 2u 0 1n
.end
"""


def _tonic(t_end: float) -> NeuronSetup:
    p = get_preset("tonic_spiking")
    return NeuronSetup(p.params, StepProtocol(p.i0, p.i1, 100.0, t_end, p.dt), name="tonic")


def test_standalone_and_pyspice_runs_agree(tmp_path):
    result = export_neuron(_tonic(600.0), HardwareTarget(), tmp_path / "exp")
    raw = run_standalone(result.netlist_path)  # `ngspice -b network.cir`, no Python inside
    standalone = read_rawfile(raw)
    shared = run_transient(result.netlist_path)
    assert set(standalone.nodes) == set(shared.nodes) == {"l0n0_m", "l0n0_s", "l0n0_us", "l0n0_o"}
    assert standalone.time[-1] == pytest.approx(shared.time[-1])
    for node in standalone.nodes:
        np.testing.assert_allclose(np.interp(standalone.time, shared.time, shared[node]), standalone[node], atol=1e-9)
    assert standalone["l0n0_m"].max() > 0.9 + 2 * HardwareTarget().v_s  # it spiked


def test_pyspice_circuit_and_netlist_objects_run_the_same():
    netlist, _ = protocol_netlist(_tonic(300.0), HardwareTarget())
    a = run_transient(netlist)
    b = run_transient(netlist.to_circuit())
    np.testing.assert_allclose(a["l0n0_m"], b["l0n0_m"], atol=1e-12)


def test_non_converging_netlist_raises_with_what_was_tried(tmp_path):
    path = tmp_path / "bad.cir"
    path.write_text(NON_CONVERGING)
    with pytest.raises(SimulationError) as info:
        run_transient(path, log_dir=tmp_path)
    err = info.value
    assert err.netlist == str(path)
    assert len(err.tried) == len(RETRY_POLICY)
    assert "gear" in " ".join(err.tried)
    assert "timestep too small" in err.log_tail.lower()
    assert "did not converge" in str(err)


def test_parse_error_is_not_retried(tmp_path):
    with pytest.raises(SimulationError, match="rejected the netlist"):
        run_transient("* broken\nR1 a 0\nXmissing a b nosuchsubckt\n.tran 1u 1m\n.end\n", log_dir=tmp_path)


def test_timeout_kills_the_worker_not_the_caller(tmp_path):
    netlist, _ = protocol_netlist(_tonic(200000.0), HardwareTarget())  # minutes of simulation
    with pytest.raises(SimulationError, match="did not finish within"):
        run_transient(netlist, timeout_s=2.0, log_dir=tmp_path)
    # The simulation would run for minutes: returning at all means it was stopped; no worker survives it.
    assert multiprocessing.active_children() == []


def test_killed_worker_becomes_simulation_error(tmp_path):
    netlist, _ = protocol_netlist(_tonic(200000.0), HardwareTarget())
    outcome = {}

    def run() -> None:  # the test drives the runner from a thread only to be able to kill its worker
        try:
            run_jobs([SimulationJob(netlist.render(control=False), None, "long neuron")], log_dir=tmp_path)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    log = tmp_path / "job0.log"
    pid = None
    for _ in range(600):
        match = re.search(r"worker pid (\d+)", log.read_text()) if log.exists() else None
        if match:
            pid = int(match.group(1))
            break
        time.sleep(0.1)
    assert pid is not None, "worker never started"
    time.sleep(0.5)
    os.kill(pid, 9)
    thread.join(60)
    assert not thread.is_alive()
    err = outcome.get("error")
    assert isinstance(err, SimulationError), err
    assert "crashed or was killed" in str(err)
    assert "loading netlist" in err.log_tail  # the log tail survived the crash


def test_missing_ngspice_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no ngspice program
    with pytest.raises(SimulatorMissingError, match="apt-get install ngspice libngspice0-dev"):
        check_simulator()
    with pytest.raises(SimulatorMissingError):
        run_transient(NON_CONVERGING)


def test_missing_libngspice_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "libngspice.so"))
    with pytest.raises(SimulatorMissingError, match="apt-get install ngspice libngspice0-dev"):
        check_simulator()


def test_netlist_without_tran_is_a_netlist_value_error_before_any_attempt():
    from mtc_analog.errors import NetlistValueError
    from mtc_analog.spice.netlist import parse_spice_number, set_simulator_settings, tran_settings

    text = "* no transient\nV1 a 0 0.9\nR1 a 0 1k\n.end\n"
    with pytest.raises(NetlistValueError, match=r"\.tran"):
        tran_settings(text)
    with pytest.raises(NetlistValueError, match=r"\.tran"):
        set_simulator_settings(text, t_max=1e-6)
    with pytest.raises(NetlistValueError, match="not a SPICE number"):
        parse_spice_number("fast")
    with pytest.raises(NetlistValueError, match="my netlist"):  # names the job, no ngspice attempt made
        run_jobs([SimulationJob(text, None, "my netlist")])


def test_split_rejects_max_neurons_below_one_as_input_error():
    from mtc_analog.errors import InputError
    from mtc_analog.spice.split import plan_chunks

    with pytest.raises(InputError, match="max_neurons"):
        plan_chunks([5, 4], 0)


def test_model_units_come_from_the_mapping_hardware_target():
    from mtc_analog.spice.waveforms import Waveforms, check_mapping

    target = HardwareTarget(t_unit=2e-3, temperature_c=40.0)
    u = np.array([-1.0, 0.0, 2.5])
    waves = Waveforms(np.array([0.0, 1e-3, 4e-3]), {"ro0": target.voltage(u)})
    mapping = check_mapping({"format": "mtc_analog.mapping/1", "units": {}, "nodes": {"readout": ["ro0"]},
                             "hardware_target": target.summary()})
    model = waves.to_model_units(mapping)
    np.testing.assert_allclose(model["readout_y"][:, 0], u, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model["time_model"], [0.0, 0.5, 2.0], rtol=1e-15)


# ---- statements are parsed, not matched by regexes over text ---------------------------------------
@pytest.mark.parametrize("text,t_stop,t_max", [
    ("* a\nR1 a 0 1k\n.tran 1u 2m\n.save v(a)\n.end\n", 2e-3, 1e-6),          # '.save' on the next line
    ("* a\nR1 a 0 1k\n.tran 1u\n+ 2m 0\n+ 5u\n.end\n", 2e-3, 5e-6),            # continuation lines
    ("* a\nR1 a 0 1k\n  .TRAN 1u 2m ; a comment\n.end\n", 2e-3, 1e-6),         # indented, upper case, comment
    ("* a\nR1 a 0 1k\n.tran 1u 2m 0 2u uic\n.end\n", 2e-3, 2e-6),              # uic
    ("* a\r\nR1 a 0 1k\r\n.tran 1m 4m\r\n.end\r\n", 4e-3, 4e-3 / 50),          # CRLF, default TMAX
])
def test_tran_statement_grammar(text, t_stop, t_max):
    from mtc_analog.spice.netlist import tran_settings

    assert tran_settings(text) == (pytest.approx(t_stop), pytest.approx(t_max))


def test_tmax_rewrite_keeps_the_end_statement():
    from mtc_analog.spice.netlist import set_simulator_settings

    changed = set_simulator_settings("* a\nR1 a 0 1k\n.tran 1u 1m\n.end\n", {"method": "gear"}, t_max=1e-7)
    lines = changed.splitlines()
    assert lines[-1] == ".end" and ".tran 1e-07 0.001 0 1e-07" in lines and ".options method=gear" in lines


def test_two_tran_statements_are_refused():
    from mtc_analog.errors import NetlistValueError
    from mtc_analog.spice.netlist import tran_settings

    with pytest.raises(NetlistValueError, match="2 .tran lines"):
        tran_settings("* a\n.tran 1u 1m\n.tran 1u 2m\n.end\n")


def test_retry_attempts_run_on_a_tran_line_before_end(tmp_path):
    # the retry rewrites TMAX: before, '.tran 10n 2u\n.end' became one line and '.end' was lost
    from mtc_analog.spice.runner import run_jobs

    text = "* rc\nV1 a 0 PWL(0 0 1u 1)\nR1 a b 1k\nC1 b 0 1n\n.ic v(a)=0 v(b)=0\n.tran 10n 2u\n.end\n"
    from mtc_analog.spice.netlist import set_simulator_settings

    retried = set_simulator_settings(text, dict(RETRY_POLICY[3][1]), t_max=1e-9)
    waves = run_jobs([SimulationJob(retried, None, "retried")], log_dir=tmp_path)[0]
    assert waves.time[-1] == pytest.approx(2e-6)


# ---- the stand-alone run: failures are failures, stale rawfiles never pass for new ones ------------
def _failing_midway():
    from mtc_analog.spice.netlist import Netlist

    # runs normally until 1 us, then the B-source becomes an algebraic loop with no solution
    body = ["V1 in 0 PWL(0 0 1u 0 1.001u 1)", "B1 a 0 V = V(in) > 0.5 ? (V(a) > 0.5 ? 0 : 1) : 0", "R1 a 0 1k"]
    return Netlist("* fails midway", "", body, {"a": 0.0, "in": 0.0}, 3e-6, 1e-9, ["a", "in"])


def test_standalone_run_that_fails_midway_is_a_failure(tmp_path):
    import subprocess

    path = tmp_path / "network.cir"
    path.write_text(_failing_midway().render())
    proc = subprocess.run(["ngspice", "-b", "network.cir"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "timestep too small" in (proc.stdout + proc.stderr).lower()  # it really ran, then aborted midway
    assert proc.returncode != 0  # `quit 0` used to turn this into success
    with pytest.raises(SimulationError, match="stand-alone run failed"):
        run_standalone(path)
    assert not (tmp_path / "waveforms.raw").exists()  # nothing left that looks like a result


def test_stale_rawfile_is_replaced_when_a_standalone_run_fails(tmp_path):
    import shutil
    import subprocess

    good = export_neuron(_tonic(300.0), HardwareTarget(), tmp_path / "exp")
    raw = run_standalone(good.netlist_path)
    stale = tmp_path / "exp" / "waveforms.raw"
    assert raw == stale and read_rawfile(raw).time.size > 10
    shutil.copy(stale, tmp_path / "old.raw")
    good.netlist_path.write_text(_failing_midway().render())  # the same folder, now a run that fails
    shutil.copy(tmp_path / "old.raw", stale)
    proc = subprocess.run(["ngspice", "-b", "network.cir"], cwd=tmp_path / "exp", capture_output=True, timeout=120)
    assert proc.returncode != 0
    with pytest.raises(SimulationError, match="holds no transient"):  # the old waveforms are gone
        read_rawfile(stale)


def test_partial_rawfile_is_detected_by_its_final_time(tmp_path):
    # even with the log and the exit code ignored, a raw file that stops before t_stop is no result

    netlist = _failing_midway()
    path = tmp_path / "network.cir"
    path.write_text(netlist.render())
    import subprocess

    subprocess.run(["ngspice", "-b", "network.cir"], cwd=tmp_path, capture_output=True, timeout=120)
    legacy = netlist.render().replace("\n".join(netlist.render().split(".control", 1)[1].split(".endc")[0].splitlines()[1:]),
                                      "set filetype=binary\nrun\nwrite $inputdir/waveforms.raw\nquit 0")
    path.write_text(legacy)  # the earlier exporter's block: exits 0 after an abort, writes partial data
    proc = subprocess.run(["ngspice", "-b", "network.cir"], cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0 and read_rawfile(tmp_path / "waveforms.raw").time[-1] < 2e-6
    with pytest.raises(SimulationError, match="stand-alone run failed"):
        run_standalone(path)


def test_default_timeout_grows_with_the_netlist(tmp_path):
    from mtc_analog.spice.runner import TIMEOUT_BASE_S, TIMEOUT_PER_ELEMENT_STEP_S, default_timeout_s

    small = tmp_path / "small.cir"
    small.write_text("* a\nV1 a 0 1\nR1 a 0 1k\nR2 a 0 1k\n.tran 1u 200u 0 1u\n.end\n")
    assert default_timeout_s(small) == pytest.approx(TIMEOUT_BASE_S + TIMEOUT_PER_ELEMENT_STEP_S * 3 * 200)
    big = tmp_path / "big.cir"
    big.write_text("* a\n" + "".join(f"R{k} a 0 1k\n" for k in range(1000)) + ".tran 1u 1 0 1u\n.end\n")
    assert default_timeout_s(big) > default_timeout_s(small)

"""`mtc-analog export` and `mtc-analog simulate` end to end (real checkpoint file, real ngspice)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from mtc_analog.cli import main
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig
from mtc_analog.training.checkpoint import save_checkpoint


# An untrained MTC layer has a_s_minus = softplus(-30) ~ 1e-13 (off), a sub-pA tail current; whatever the
# range policy does with it, --clip keeps these tests on the export path (changes recorded in mapping.json).
CLIP = ["--clip"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    cfg = NetworkConfig(hidden=(6,), dt=0.5, substeps=2, input_scale=2.0, bias_init=0.5, init_jitter=0.2)
    save_checkpoint(path, SpikingRegressor(cfg), None, TaskConfig(horizon=17, n_samples=400))
    return path


def test_export_checkpoint_and_simulate(checkpoint, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", str(checkpoint), "--target", "behavioral", "--filter", "ota", "--out", str(out),
                 "--samples", "30", *CLIP]) == 0
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["filter"] == "ota" and mapping["simulation"]["n_samples"] == 30
    assert mapping["units"]["i_unit_readout"] == mapping["units"]["i_unit"]  # behavioural: the readout at I_u
    assert "test split" in mapping["input"]["source"]
    assert "filter_ota" in (out / "network.cir").read_text()
    assert mapping["range_changes"] == []  # trained at the defaults (pruned to the floor): nothing to clip
    assert np.load(out / "input.npy").shape == (30, 1)
    # an earlier export is not overwritten without --force
    assert main(["export", str(checkpoint), "--out", str(out), "--samples", "30", *CLIP]) != 0
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "--out", str(out), "--samples", "30", "--force", *CLIP]) == 0
    sim = tmp_path / "sim"
    assert main(["simulate", str(out / "network.cir"), "--out", str(sim)]) == 0
    with np.load(sim / "waveforms.npz") as npz:
        assert npz["layer0_u_m"].shape[1] == 6 and npz["lowpass_y"].shape[1] == 1
        assert npz["volts"].shape == (npz["time_s"].size, len(npz["node_names"]))
        assert npz["time_model"][-1] == pytest.approx(30 * 0.5 * 2)
    assert (sim / "waveforms.png").stat().st_size > 0
    summary = json.loads((sim / "simulation.json").read_text())
    assert summary["attempts"][-1].endswith("ok")
    assert main(["simulate", str(out / "network.cir"), "--out", str(sim)]) != 0  # results kept without --force


def test_export_with_input_file(checkpoint, tmp_path):
    x = np.linspace(-1, 1, 12)[:, None]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "exp"
    assert main(["export", str(checkpoint), "--out", str(out), "--input", str(tmp_path / "x.npy"), *CLIP]) == 0
    assert json.loads((out / "mapping.json").read_text())["simulation"]["n_samples"] == 12
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0.0], [np.nan]]))
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "e2"), "--input", str(bad), *CLIP]) == 2


def test_export_neuron_parameter_file_runs_standalone(tmp_path):
    params = tmp_path / "neuron.yaml"
    params.write_text("preset: tonic_spiking\nprotocol: {t_step: 50, t_end: 400}\nfilter: linear\n")
    out = tmp_path / "exp"
    assert main(["export", str(params), "--out", str(out)]) == 0
    proc = subprocess.run(["ngspice", "-b", "network.cir"], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "waveforms.raw").stat().st_size > 0
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["kind"] == "neuron" and mapping["nodes"]["input_current"] == "l0n0_m"
    assert mapping["protocol"]["i1"] == 0.0


@pytest.mark.parametrize("text,message", [
    ("params: {a_f: 1.0e6}\n", "outside"),                    # 1 mA tail current: out of range
    ("params: {a_f: .nan}\n", "not finite"),
    ("params: {a_f: 2}\nshell: 'rm -rf /'\n", "unknown key"),
    ("params: {tau_x: 2}\n", "unknown params field"),
    ("filter: warp\n", "filter"),
])
def test_bad_parameter_files_give_one_clear_line(tmp_path, capsys, text, message):
    params = tmp_path / "neuron.yaml"
    params.write_text(text)
    assert main(["export", str(params), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtc-analog export: error:") and message in err
    assert not (tmp_path / "exp" / "network.cir").exists()


def test_unknown_target_and_missing_files(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "e")]) == 2
    assert main(["export", str(tmp_path / "nope.safetensors"), "--target", "sky999", "--out", str(tmp_path / "e")]) == 2
    assert "sky999" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "missing.cir"), "--out", str(tmp_path / "s")]) == 2


def _one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"mtc-analog {command}: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_simulate_netlist_without_tran_is_one_line(tmp_path, capsys):
    cir = tmp_path / "no_tran.cir"
    cir.write_text("* no transient\nV1 a 0 0.9\nR1 a 0 1k\n.end\n")
    assert main(["simulate", str(cir), "--out", str(tmp_path / "s")]) == 2
    assert ".tran" in _one_error_line(capsys, "simulate")


@pytest.mark.parametrize("mapping,missing", [({}, "format"), ([1], "list"), ({"format": "x", "units": {}}, "nodes")])
def test_simulate_bad_mapping_fails_before_simulating(tmp_path, capsys, mapping, missing):
    cir = tmp_path / "net.cir"
    cir.write_text("* ok\nV1 a 0 0.9\nR1 a 0 1k\n.tran 1u 10u\n.end\n")
    bad = tmp_path / "bad_mapping.json"
    bad.write_text(json.dumps(mapping))
    out = tmp_path / "s"
    assert main(["simulate", str(cir), "--out", str(out), "--mapping", str(bad)]) == 2
    assert missing in _one_error_line(capsys, "simulate")
    assert not out.exists()  # refused before any output or simulation


def test_bad_params_section_names_the_file_once(tmp_path, capsys):
    params = tmp_path / "bad3.yaml"
    params.write_text("params: 3\n")
    assert main(["export", str(params), "--out", str(tmp_path / "exp")]) == 2
    err = _one_error_line(capsys, "export")
    assert err.count("bad3.yaml") == 1 and "'params' must be a mapping" in err


def test_export_refuses_inputs_outside_the_rails(checkpoint, tmp_path, capsys):
    x = np.zeros((12, 1))
    x[7, 0] = 1e6  # a z-scored input of 1e6 once wrote a 73.9 kV PWL source against 0..1.8 V rails
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "exp"
    assert main(["export", str(checkpoint), "--out", str(out), "--input", str(tmp_path / "x.npy"), *CLIP]) == 2
    err = _one_error_line(capsys, "export")
    assert "sample 7" in err and "1.7 V" in err and "73.9 kV" in err
    assert not (out / "network.cir").exists()


def test_input_range_check_is_on_every_network_netlist():
    from mtc_analog.errors import InputError
    from mtc_analog.hardware import HardwareTarget
    from mtc_analog.hardware.ranges import check_input_range

    target = HardwareTarget()
    low, high = target.operating_window
    x_high = float(target.model_voltage(high))
    check_input_range(np.array([[0.0], [x_high * 0.999], [-x_high * 0.999]]), target)  # inside: fine
    with pytest.raises(InputError, match=r"sample 2, input 1:.*below the minimum 100 mV"):
        check_input_range(np.array([[0.0, 0.0], [0.0, 0.0], [0.0, -x_high * 1.01]]), target)


def test_simulate_refuses_a_mapping_from_another_export(tmp_path, capsys):
    params = tmp_path / "neuron.yaml"
    params.write_text("preset: tonic_spiking\nprotocol: {t_step: 50, t_end: 200}\n")
    assert main(["export", str(params), "--out", str(tmp_path / "neuron")]) == 0
    capsys.readouterr()
    cir = tmp_path / "other.cir"
    cir.write_text("* another netlist\nV1 a 0 0.9\nR1 a 0 1k\n.tran 1u 10u\n.save v(a)\n.end\n")
    out = tmp_path / "s"
    assert main(["simulate", str(cir), "--out", str(out), "--mapping", str(tmp_path / "neuron" / "mapping.json")]) == 2
    err = _one_error_line(capsys, "simulate")
    assert "l0n0_m" in err and "does not belong" in err
    assert not out.exists()  # refused before simulating


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_simulate_timeout_must_be_positive(tmp_path, capsys, value):
    cir = tmp_path / "net.cir"
    cir.write_text("* ok\nV1 a 0 0.9\nR1 a 0 1k\n.tran 1u 10u\n.end\n")
    assert main(["simulate", str(cir), "--out", str(tmp_path / "s"), f"--timeout={value}"]) == 2
    assert "--timeout" in _one_error_line(capsys, "simulate")


def test_simulate_default_timeout_comes_from_the_netlist(tmp_path):
    from mtc_analog.spice.runner import TIMEOUT_BASE_S, TIMEOUT_PER_ELEMENT_STEP_S

    cir = tmp_path / "net.cir"
    cir.write_text("* ok\nV1 a 0 0.9\nR1 a 0 1k\n.tran 1u 100u 0 1u\n.end\n")
    assert main(["simulate", str(cir), "--out", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert summary["timeout_s"] == pytest.approx(TIMEOUT_BASE_S + TIMEOUT_PER_ELEMENT_STEP_S * 2 * 100)


@pytest.mark.parametrize("flag,value", [("--min-gamma", "nan"), ("--max-output-nrmse", "nan"),
                                        ("--max-membrane-nrmse", "nan"), ("--timeout", "-1"), ("--timeout", "nan")])
def test_validate_refuses_nan_thresholds_and_negative_timeout(tmp_path, capsys, checkpoint, flag, value):
    out = tmp_path / "v"
    assert main(["validate", str(checkpoint), "--out", str(out), f"{flag}={value}"]) == 2
    assert flag in _one_error_line(capsys, "validate")
    assert not out.exists()


def test_export_refuses_a_protocol_current_beyond_the_bias_ceiling(tmp_path, capsys):
    params = tmp_path / "neuron.yaml"
    params.write_text("preset: tonic_spiking\nprotocol: {i1: 1.0e6, t_step: 50, t_end: 200}\n")
    out = tmp_path / "exp"
    assert main(["export", str(params), "--out", str(out)]) == 2
    err = _one_error_line(capsys, "export")
    assert "sample 1" in err and "1 mA" in err and "100 nA" in err
    assert not (out / "network.cir").exists()


def test_simulate_refuses_a_mapping_for_another_duration(tmp_path, capsys):
    params = tmp_path / "neuron.yaml"
    params.write_text("preset: tonic_spiking\nprotocol: {t_step: 50, t_end: 200}\n")
    assert main(["export", str(params), "--out", str(tmp_path / "a")]) == 0
    params.write_text("preset: tonic_spiking\nprotocol: {t_step: 50, t_end: 300}\n")
    assert main(["export", str(params), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    out = tmp_path / "s"
    assert main(["simulate", str(tmp_path / "b" / "network.cir"), "--out", str(out),
                 "--mapping", str(tmp_path / "a" / "mapping.json")]) == 2
    assert "t_stop" in _one_error_line(capsys, "simulate")
    assert not out.exists()

"""`mtc-analog validate` on a checkpoint: pass, overwrite guard, failing thresholds, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from mtc_analog.cli import main
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig
from mtc_analog.training.checkpoint import save_checkpoint

# pinned (not the package defaults, which may change): a tiny, regularly spiking network
TINY = dict(hidden=(4,), dt=0.05, substeps=20, tau_lp=5.0, method="exact", seed=1, bias_init=1.0, u_th=0.5, u_sat=1.5,
            init_jitter=0.0, timescale_spread=1.0, train_timescales=False)
FAST = ["--samples", "50", "--washout", "20", "--clip"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    network = SpikingRegressor(NetworkConfig(**TINY))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, network, None, TaskConfig(n_samples=700, horizon=17))
    return path


@pytest.fixture(scope="module")
def passed_run(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("val")
    code = main(["validate", str(checkpoint), "--target", "behavioral", "--filter", "linear", "--out", str(out), *FAST])
    return out, code


def test_validate_passes_and_writes_report(passed_run):
    out, code = passed_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True
    assert report["checkpoint"].endswith("tiny.safetensors")
    assert report["thresholds"] == {"spike_coincidence_min": 0.95, "output_nrmse_vs_model_max": 0.05,
                                    "membrane_nrmse_max": None}
    assert (out / "report.html").stat().st_size > 10_000


def test_existing_report_is_not_overwritten_without_force(passed_run, checkpoint, capsys):
    out, _ = passed_run
    before = (out / "report.json").read_bytes()
    code = main(["validate", str(checkpoint), "--out", str(out), *FAST])
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == before


def test_failing_threshold_gives_nonzero_exit_and_a_complete_report(checkpoint, tmp_path, capsys):
    code = main(["validate", str(checkpoint), "--out", str(tmp_path), *FAST, "--min-gamma", "1.01",
                 "--max-output-nrmse", "1e-9"])
    assert code == 3
    err = capsys.readouterr().err
    assert "Gamma" in err and "output NRMSE" in err and "report.html" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False and len(report["failures"]) == 2


def test_mapping_out_of_range_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    network = SpikingRegressor(NetworkConfig(**TINY))
    with torch.no_grad():
        network.projections[0].weight[2, 0] = 500.0  # 500 nA synapse bias: above the 100 nA ceiling
    path = tmp_path / "hot.safetensors"
    save_checkpoint(path, network, None, TaskConfig(n_samples=700, horizon=17))
    out = tmp_path / "val"
    code = main(["validate", str(path), "--out", str(out), "--samples", "50"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not fit the hardware target" in err
    assert "layer 0 / neuron 2" in err
    assert not (out / "report.json").exists() and not (out / "report.html").exists()


def test_killed_simulation_is_a_clear_error_and_leaves_no_report(checkpoint, tmp_path, capsys):
    out = tmp_path / "val"
    code = main(["validate", str(checkpoint), "--out", str(out), *FAST, "--timeout", "0.001"])  # far below any real run: always killed
    assert code == 2
    assert "killed" in capsys.readouterr().err
    assert not (out / "report.json").exists()


def test_bad_options_fail_before_any_work(checkpoint, tmp_path, capsys):
    assert main(["validate", str(checkpoint), "--out", str(tmp_path / "a"), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["validate", str(checkpoint), "--out", str(tmp_path / "b"), "--target", "sky999"]) == 2
    assert "unknown circuit target" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err

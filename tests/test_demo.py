"""The main job, shrunk: train (1 epoch), export, simulate in ngspice, validate, report."""

from __future__ import annotations

import json


from mtc_analog.cli import main
from mtc_analog.network import NetworkConfig
from mtc_analog.validation.demo import run_demo

SMALL = dict(
    network_overrides={"hidden": (3,), "bias_init": 1.0},
    training_overrides={"epochs": 1, "batches_per_epoch": 1, "batch": 2, "window": 10, "washout": 5},
    validation_overrides={"samples": 20, "washout": 10},
    sky130_overrides={"samples": 10, "washout": 10},
)


def test_demo_runs_end_to_end_and_leaves_a_report(tmp_path, capsys):
    summary = run_demo(tmp_path, ota=True, **SMALL)
    for path in ("report.html", "report.json", "demo.json", "circuit/network.cir", "circuit/mapping.json",
                 "train/best.safetensors", "ota/report.html", "sky130/report.html"):
        assert (tmp_path / path).is_file(), path
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["setup"]["circuit_filter"] == "linear"
    # dt study: the trained integrator (rk4 by default) refined by 1, 2, 4
    assert [(row["method"], row["refine"]) for row in report["dt_study"]] == [("rk4", 1), ("rk4", 2), ("rk4", 4)]
    # the demo runs the package defaults (no pinned neuron recipe) and exports without clipping
    assert summary["network"]["method"] == NetworkConfig().method and summary["validation"]["clip"] is False
    assert json.loads((tmp_path / "ota" / "report.json").read_text())["setup"]["circuit_filter"] == "ota"
    assert summary["linear"]["spike_coincidence"] == report["spike_coincidence"]
    # a tiny network trained at the defaults validates in real ngspice above the thresholds
    assert report["spikes_model_total"] > 0 and summary["passed"], report["failures"]
    assert report["spike_coincidence"] >= 0.97 and report["output_nrmse_vs_model"] <= 0.02
    lines = capsys.readouterr().out
    assert "[1/5]" in lines and "[5/5]" in lines and "report.html" in lines
    # the last stage: the same network on sky130, model / calibrated model / circuit side by side, linked
    sky = json.loads((tmp_path / "sky130" / "report.json").read_text())
    assert sky["setup"]["circuit_target"] == "sky130" and "circuit_vs_calibrated" in sky["calibrated"]
    assert summary["sky130"]["task_nrmse"]["calibrated_model"] == sky["calibrated"]["task_nrmse"]["calibrated_model"]
    assert "sky130 circuit vs calibrated model" in lines
    assert any(r["circuit_target"] == "sky130" for r in report["related_reports"])
    # a second run refuses to overwrite without --force
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err

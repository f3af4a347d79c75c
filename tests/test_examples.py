"""The README's API snippet (examples/readme_api.py) runs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mtc_analog.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "readme_api.py"
TINY = ["--hidden", "3", "--epochs", "1", "--batches-per-epoch", "1", "--batch", "2", "--window", "10",
        "--washout", "2", "--n-samples", "400", "--substeps", "1", "--no-progress"]


def test_readme_api_snippet_runs_from_another_directory(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--neuron", "mtc", "--horizon", "17", "--out", str(run), *TINY]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", str(run / "best.safetensors"),
                           "--out", "exp", "--samples", "20"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    netlist = elsewhere / "exp" / "network.cir"
    assert netlist.read_text().rstrip().lower().endswith(".end") and (elsewhere / "exp" / "mapping.json").is_file()
    assert f"ngspice -b {Path('exp') / 'network.cir'}" in proc.stdout

    missing = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", "nowhere.safetensors"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr

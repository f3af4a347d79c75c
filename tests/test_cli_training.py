"""The train / evaluate command lines: success, and one clear error line with a non-zero exit."""

import json

from mtc_analog.cli import main

TINY = ["--hidden", "3", "--epochs", "1", "--batches-per-epoch", "1", "--batch", "2", "--window", "10",
        "--washout", "2", "--n-samples", "400", "--substeps", "1", "--no-progress"]


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--neuron", "mtc", "--horizon", "17", "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["neuron"] == "mtc" and metrics["horizon"] == 17
    printed = capsys.readouterr().out
    assert "test NRMSE" in printed and "discretisation gap" in printed and "census: tonic" in printed
    assert main(["evaluate", str(out / "best.safetensors"), "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert abs(evaluated["test_nrmse"] - metrics["test_nrmse"]) < 1e-6


def test_user_errors_exit_non_zero_with_one_line(tmp_path, capsys):
    cases = [
        (["train", "--neuron", "hodgkin", "--out", str(tmp_path / "a"), *TINY], "unknown neuron type"),
        (["train", "--neuron", "lif", "--horizon", "5000", "--out", str(tmp_path / "b"), *TINY], "horizon"),
        (["train", "--neuron", "mtc", "--dt", "0.9", "--out", str(tmp_path / "c"), *TINY], "dt"),
        (["train", "--neuron", "mtc", "--out", str(tmp_path / "d"), *TINY, "--hidden", "x"], "--hidden"),
        (["train", "--neuron", "mtc", "--mtc-init", "{bad", "--out", str(tmp_path / "e"), *TINY], "--mtc-init"),
        (["evaluate", str(tmp_path / "missing.safetensors")], "does not exist"),
        (["train", "--neuron", "mtc", "--init-from", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "f"),
          *TINY], "does not exist"),
        (["train", "--neuron", "mtc", "--init-from", str(tmp_path / "none.safetensors"), "--resume",
          "--out", str(tmp_path / "g"), *TINY], "pass one"),
        # the swing penalty needs a limit (the behavioural target's cells are ideal), an MTC network, sane numbers
        (["train", "--neuron", "mtc", "--swing-penalty", "1", "--out", str(tmp_path / "h"), *TINY], "--swing-limit"),
        (["train", "--neuron", "lif", "--swing-penalty", "1", "--swing-limit", "3", "--out", str(tmp_path / "i"), *TINY],
         "MTC membranes"),
        (["train", "--neuron", "mtc", "--swing-penalty", "-1", "--out", str(tmp_path / "j"), *TINY], "swing_penalty"),
        (["train", "--neuron", "mtc", "--swing-penalty", "1", "--swing-limit", "0", "--out", str(tmp_path / "k"), *TINY],
         "swing_limit"),
    ]
    for argv, fragment in cases:
        assert main(argv) != 0, argv
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, (argv, err)
    for name in "hijk":  # refused before the output directory was made
        assert not (tmp_path / name).exists()


def test_truncated_checkpoint_and_existing_results_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--neuron", "lif", "--horizon", "17", "--out", str(out), *TINY]) == 0
    before = (out / "metrics.json").read_bytes()
    assert main(["train", "--neuron", "lif", "--horizon", "17", "--out", str(out), *TINY]) != 0
    assert "--force" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
    data = (out / "best.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:100])
    assert main(["evaluate", str(tmp_path / "cut.safetensors")]) != 0
    assert "truncated" in capsys.readouterr().err


def test_compare_writes_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--horizon", "5", "--seeds", "2", "--horizons", "1,5", "--models", "mtc,lif",
            "--search-lrs", "0.01", "--search-input-scales", "1,3", "--out", str(out), *TINY]
    assert main(argv) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    models = [row["model"] for row in comparison["rows"]]
    assert models[:2] == ["MTC", "LIF"] and any("ridge" in m for m in models) and any("ESN" in m for m in models)
    assert any("MLP" in m for m in models)
    # the same search for every spiking model, chosen on validation NRMSE
    for model in ("mtc", "lif"):
        tried = comparison["search"][model]["tried"]
        assert len(tried) == 2 and comparison["search"][model]["chosen"] == min(tried, key=lambda t: t["val_nrmse"])["config"]
    mtc = comparison["rows"][0]
    assert sum(mtc["census_mean"].values()) == 3 and mtc["n_parameters"] > 0
    assert mtc["n_runs"] == 2 and len(mtc["test_nrmse"]) == 2 and mtc["synop_kind"] == "MAC"
    assert set(comparison["horizon_curve"]["MTC"]) == {"1", "5"}
    assert "| MTC |" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").stat().st_size > 0
    # a second call reuses the finished runs instead of retraining (same stored configs)
    table = (out / "comparison.md").read_text()
    assert "Regime census of the trained MTC neurons" in table and "chosen (lr, input scale)" in table
    run = out / "runs" / "H5" / "mtc" / "lr0.01_in1" / "seed0" / "metrics.json"
    stamp = run.stat().st_mtime_ns
    assert main([*argv, "--force"]) == 0
    assert run.stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["compare", "--models", "mtc,spiky", "--out", str(tmp_path / "x"), *TINY]) != 0
    assert "spiky" in capsys.readouterr().err


def test_init_from_fine_tunes_a_trained_network(tmp_path, capsys):
    source = tmp_path / "source"
    assert main(["train", "--neuron", "mtc", "--horizon", "17", "--out", str(source), *TINY]) == 0
    tuned = tmp_path / "tuned"
    assert main(["train", "--neuron", "mtc", "--init-from", str(source / "best.safetensors"), "--mismatch-aware",
                 "--out", str(tuned), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "started from" in printed and "mismatch drawn per batch" in printed
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["horizon"] == 17  # the checkpoint's task, not --horizon's default 84
    assert main(["train", "--neuron", "lif", "--init-from", str(source / "best.safetensors"),
                 "--out", str(tmp_path / "lif"), *TINY]) != 0
    err = capsys.readouterr().err.strip()
    assert "--neuron mtc" in err and len(err.splitlines()) == 1, err

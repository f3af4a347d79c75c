"""The neuron commands through the real entry point: ``regimes`` and ``iv``."""

from __future__ import annotations

import json

import pytest

from mtc_analog.cli import main
from mtc_analog.neuron.regimes import PRESETS


def test_regimes_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "reg"
    assert main(["regimes", "--out", str(out)]) == 0
    data = json.loads((out / "regimes.json").read_text())
    assert set(data["regimes"]) == set(PRESETS)
    for name, record in data["regimes"].items():
        assert record["label"] == record["expected_label"] == name
        assert record["spike_count"] == len(record["spike_times"]) > 0
        assert record["burst_count"] == len(record["bursts"])
        assert all(t > record["t_step"] for t in record["spike_times"])
    assert (out / "regimes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capsys.readouterr()
    printed = captured.out
    assert "tonic_bursting" in printed and "MISMATCH" not in printed
    # Progress on stderr (not a terminal here: one line when a stage starts and one when it ends).
    assert "regimes: model, 4 preset(s)" in captured.err and "regimes: writing regimes.json" in captured.err
    assert captured.err.count(": done (") == 2  # model, then writing

    # A second run refuses to overwrite, leaves the result intact, and --force overwrites.
    before = (out / "regimes.json").read_text()
    assert main(["regimes", "--out", str(out), "--preset", "tonic_spiking"]) != 0
    assert "--force" in capsys.readouterr().err
    assert (out / "regimes.json").read_text() == before
    assert main(["regimes", "--out", str(out), "--preset", "tonic_spiking", "--force"]) == 0
    assert set(json.loads((out / "regimes.json").read_text())["regimes"]) == {"tonic_spiking"}


@pytest.mark.parametrize("argv", [["--preset", "chaotic"], ["--method", "rk5"], ["--filter", "cubic"]])
def test_regimes_bad_choice_is_one_line_error(tmp_path, capsys, argv):
    out = tmp_path / "reg"
    assert main(["regimes", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtc-analog regimes: error:") and "\n" not in err
    assert not out.exists()  # nothing written on bad input


def test_iv_from_flags_file_and_preset(tmp_path, capsys):
    fig = tmp_path / "iv.png"
    assert main(["iv", "--out", str(fig), "--a-f", "2.5", "--d-f", "0.3", "--current", "-1"]) == 0
    assert fig.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "I_fast" in printed and "equilibria" in printed

    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("a_f: 0.8\na_s_minus: 1.5\nd_s_minus: -1.5\n")
    assert main(["iv", "--params", str(yaml_file), "--out", str(tmp_path / "iv2.svg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "I_fast" in lines[0] and "none" in lines[0]  # a_f = 0.8 < 1: no fast negative slope
    assert "none" not in lines[1]  # the slow negative conductance bends I_slow

    json_file = tmp_path / "p.json"
    json_file.write_text(json.dumps({"params": {"a_f": 3.0}}))
    assert main(["iv", "--params", str(json_file), "--preset", "tonic_bursting", "--out", str(fig)]) == 0


@pytest.mark.parametrize(("argv", "needle"), [
    (["--preset", "chaotic"], "unknown regime preset"),
    (["--a-f", "nan"], "a_f is not finite"),
    (["--a-us", "-1"], "a_us = -1 < 0"),
    (["--params", "missing.yaml"], "not found"),
    (["--params", "bad.yaml"], "unknown parameter"),
    (["--tau-s", "0"], "tau_s"),
    (["--u-min", "3", "--u-max", "1"], "--u-min < --u-max"),
])
def test_iv_bad_input_is_one_line_error(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("a_f: 2\nbogus: 1\n")
    fig = tmp_path / "iv.png"
    assert main(["iv", "--out", str(fig), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtc-analog iv: error:") and needle in err and "\n" not in err
    assert not fig.exists()


def test_iv_rejects_unknown_figure_format(tmp_path, capsys):
    assert main(["iv", "--out", str(tmp_path / "iv.txt")]) == 2
    assert ".png" in capsys.readouterr().err


def test_write_outputs_accepts_extra_traces_and_fields(tmp_path):
    """The hook a circuit run uses: extra traces on the figure, extra fields per regime in the JSON."""
    import numpy as np

    from mtc_analog.cli.regimes import write_outputs
    from mtc_analog.neuron.regimes import simulate_presets
    from mtc_analog.plotting.neuron import ExtraTrace

    short = [PRESETS[name].shortened(t_step=50.0, t_end=300.0) for name in ("tonic_spiking", "phasic_bursting")]
    results = simulate_presets(short)
    r = results[0]
    extra = {"tonic_spiking": [ExtraTrace("circuit", r.time[::3], r.u_m[::3] + 0.05)]}
    fields = {"tonic_spiking": {"circuit": {"spike_count": 4}}}
    json_path, png = write_outputs(tmp_path, results, extra, fields, settings={"dt": 0.05})
    data = json.loads(json_path.read_text())
    assert data["regimes"]["tonic_spiking"]["circuit"] == {"spike_count": 4}
    assert "circuit" not in data["regimes"]["phasic_bursting"]
    assert data["settings"] == {"dt": 0.05}
    assert png.stat().st_size > 10_000 and np.isfinite(r.u_m).all()

"""The validation report a designer acts on: worst neurons, dt verdict, Gamma explained, mapped
changes with reasons, linked sibling reports, and a stamp (version, commit, command, date)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mtc_analog import __version__
from mtc_analog.hardware.ranges import RangeChange
from mtc_analog.validation.findings import dt_conclusion, explain_changes, group_changes, spike_mismatch, worst_neurons
from mtc_analog.validation.metrics import count_coincidences, match_spikes, spike_agreement
from mtc_analog.validation.report import family_of, link_reports, provenance, render_html, write_report

REPO = Path(__file__).resolve().parents[1]


def _layers(gamma, nrmse, spikes_model=None, spikes_circuit=None):
    n = len(gamma)
    return [{"layer": 0, "per_neuron": {
        "gamma": list(gamma), "membrane_nrmse": list(nrmse),
        "spikes_model": list(spikes_model if spikes_model is not None else [10] * n),
        "spikes_circuit": list(spikes_circuit if spikes_circuit is not None else [10] * n)}}]


# ------------------------------------------------------------------------------------ worst neurons


def test_worst_neurons_ranks_lowest_gamma_and_highest_nrmse():
    gamma = [1.0, 0.9, 0.457, 1.0, 0.8, 1.0]
    nrmse = [0.01, 0.02, 0.05, 0.30, 0.04, 0.02]
    rows = worst_neurons(_layers(gamma, nrmse, spikes_model=[10, 10, 10, 10, 10, 0],
                                 spikes_circuit=[10, 10, 10, 10, 10, 0]), k=2)
    names = [(r["layer"], r["neuron"]) for r in rows]
    # Gamma ranking first (worst first), then the NRMSE-only neuron
    assert names[:2] == [(0, 2), (0, 4)]
    assert (0, 3) in names and rows[names.index((0, 3))]["why"] == "membrane NRMSE #1"
    assert rows[0]["why"] == "Gamma #1, membrane NRMSE #2" and rows[0]["gamma"] == pytest.approx(0.457)
    # a neuron silent in both runs scores Gamma 1 by definition and is never worst by Gamma
    assert (0, 5) not in names


def test_worst_neurons_never_ranks_perfect_gamma():
    rows = worst_neurons(_layers([1.0, 1.0, 0.99], [0.1, 0.2, 0.3]), k=3)
    assert [r["why"] for r in rows if "Gamma" in r["why"]] == ["Gamma #1, membrane NRMSE #1"]


def test_match_spikes_agrees_with_count_coincidences():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.sort(rng.uniform(0, 100, 30))
        b = np.sort(a + rng.normal(0, 0.3, a.size))
        i_a, i_b = match_spikes(a, b, 0.2)
        assert i_a.size == count_coincidences(a, b, 0.2)
        assert np.all(np.abs(b[i_b] - a[i_a]) <= 0.2)


def test_spike_mismatch_tells_shifted_from_missed_and_extra():
    model = [np.array([10.0, 20.0, 30.0, 40.0])]
    circuit = [np.array([10.05, 20.5, 40.0, 55.0])]  # 20 -> 20.5 shifted, 30 missed, 55 extra
    agreement = spike_agreement(model, circuit, window=0.1, duration=60.0)
    m = spike_mismatch(agreement, 0)
    assert (m["shifted"], m["missed"], m["extra"]) == (1, 1, 1)
    assert m["max_shift"] == pytest.approx(0.5)
    assert m["first_mismatch"] == pytest.approx(20.0)
    assert m["missed_times"] == [30.0] and m["extra_times"] == [55.0]


# ------------------------------------------------------------------------------------- dt verdict


def _dt_rows(gaps, dts=(0.05, 0.025, 0.0125), method="exact", gammas=None):
    gammas = gammas or [0.9] * len(gaps)
    return [{"method": method, "dt": dt, "refine": 2 ** i, "output_nrmse_vs_circuit": g, "spike_coincidence": s,
             "membrane_nrmse": g} for i, (dt, g, s) in enumerate(zip(dts, gaps, gammas))]


def test_dt_conclusion_gap_shrinking_with_dt_is_discretisation():
    c = dt_conclusion(_dt_rows([0.004, 0.002, 0.001], gammas=[0.95, 0.99, 1.0]))
    assert c["verdict"] == "discretisation"
    assert c["order"] == pytest.approx(1.0)
    assert "discretisation" in c["text"] and "0.004" in c["text"] and "0.001" in c["text"]
    assert "0.950" in c["text"] and "1.000" in c["text"]


def test_dt_conclusion_gap_that_stays_is_the_circuit():
    c = dt_conclusion(_dt_rows([0.05, 0.049, 0.0485]))
    assert c["verdict"] == "circuit" and "circuit" in c["text"]
    assert c["circuit_share"] > 0.9


def test_dt_conclusion_mixed_and_inconclusive():
    assert dt_conclusion(_dt_rows([0.004, 0.003, 0.0025]))["verdict"] == "mixed"
    assert dt_conclusion(_dt_rows([0.004], dts=(0.05,)))["verdict"] == "inconclusive"
    # it reads the trained method's rows, not the other method's
    rows = _dt_rows([0.004, 0.002, 0.001], method="exact") + _dt_rows([0.05, 0.05, 0.05], method="euler")
    assert dt_conclusion(rows, "euler")["verdict"] == "circuit"
    assert dt_conclusion(rows, "exact")["verdict"] == "discretisation"


# --------------------------------------------------------------------------------- mapped changes


class _Target:
    i_negligible = 1e-15


def test_each_mapped_change_has_its_reason():
    changes = [RangeChange("layer 0 / neuron 3 / element slow_minus", "tail current", 9.4e-23, 0.0, "A"),
               RangeChange("layer 0 / neuron 4 / element slow_minus", "tail current", 9.4e-23, 0.0, "A"),
               RangeChange("layer 0 / neuron 1 / element fast", "tail current", 2e-7, 1e-7, "A"),
               RangeChange("layer 0 / neuron 2 / filter slow", "capacitor", 1e-15, 1e-14, "F")]
    rows = explain_changes(changes, _Target())
    assert rows[0]["reason"].startswith("negligible") and "1 fA" in rows[0]["reason"]
    assert rows[0]["mapped"] == "9.4e-23 A" and rows[0]["in_circuit"] == "0 A"
    assert rows[2]["reason"].startswith("above the target's maximum") and "100 nA" in rows[2]["reason"]
    assert rows[3]["reason"].startswith("below the target's minimum") and "10 fF" in rows[3]["reason"]
    groups = group_changes(rows)
    assert [g["count"] for g in groups] == [2, 1, 1]
    assert groups[0]["where"] == "layer 0 / neuron 3, layer 0 / neuron 4"
    # the dict form (mapping.json) explains the same way
    assert explain_changes([{"location": "x", "quantity": "q", "old": 2e-7, "new": 1e-7, "unit": "A"}])[0]["reason"] \
        == rows[2]["reason"]


# ------------------------------------------------------------------------------- the HTML and JSON


def _report(**extra):
    report = {
        "passed": False, "spike_coincidence": 0.81, "output_nrmse_vs_model": 0.02, "membrane_nrmse": 0.1,
        "coincidence_window": 0.1, "thresholds": {"spike_coincidence_min": 0.95, "output_nrmse_vs_model_max": 0.05},
        "setup": {"circuit_target": "behavioral", "circuit_filter": "linear", "dt": 0.025},
        "worst_neurons": worst_neurons(_layers([1.0, 0.9, 0.457], [0.01, 0.02, 0.31]), k=2),
        "dt_study": _dt_rows([0.004, 0.002, 0.001]),
        "mapped_changes": explain_changes([RangeChange("layer 0 / neuron 3 / element fast", "tail current",
                                                       2e-7, 1e-7, "A")]),
        "provenance": provenance(["mtc-analog", "validate", "ckpt.safetensors", "--out", "runs/v"]),
    }
    report["dt_conclusion"] = dt_conclusion(report["dt_study"])
    report.update(extra)
    return report


def test_html_names_the_worst_neuron_explains_gamma_and_states_the_dt_conclusion():
    page = render_html(_report(), {})
    assert "0.457 (layer 0 / neuron 2)" in page  # in the headline
    assert re.search(r"<td>0</td><td>2</td><td>0\.457</td><td>0\.31</td>", page)  # first row of the worst table
    assert "1 = every spike matched (perfect)" in page and "can be negative" in page and "±0.1 t_u" in page
    assert "Conclusion (discretisation)" in page and "not the circuit" in page
    assert "above the target&#x27;s maximum" in page and "layer 0 / neuron 3" in page


def test_html_and_json_carry_the_stamp(tmp_path):
    write_report(tmp_path, _report(), {}, title="t")
    page = (tmp_path / "report.html").read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    stamp = data["provenance"]
    assert stamp["version"] == __version__ and f"mtc_analog {__version__}" in page
    assert stamp["command"] == "mtc-analog validate ckpt.safetensors --out runs/v" and stamp["command"] in page
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stamp["date"]) and stamp["date"] in page
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:  # a checkout: the commit is the one the code came from
        assert stamp["git_commit"] == head.stdout.strip() and stamp["git_commit"] in page
    else:
        assert stamp["git_commit"] is None


def test_provenance_names_the_module_entry_point():
    stamp = provenance([str(REPO / "mtc_analog" / "__main__.py"), "validate", "a b.safetensors"])
    assert stamp["command"] == "python -m mtc_analog validate 'a b.safetensors'"


def test_reports_of_one_family_link_each_other(tmp_path):
    linear, ota, sky = tmp_path / "demo", tmp_path / "demo" / "ota", tmp_path / "demo" / "sky130"
    write_report(linear, _report(), {}, title="linear report")
    write_report(ota, _report(setup={"circuit_target": "behavioral", "circuit_filter": "ota"}), {}, title="ota report")
    assert family_of(ota) == [linear.resolve(), ota.resolve()] == family_of(linear)
    link_reports(family_of(ota))
    assert "href='ota/report.html'" in (linear / "report.html").read_text()
    assert "href='../report.html'" in (ota / "report.html").read_text()
    assert json.loads((ota / "report.json").read_text())["related_reports"][0]["title"] == "linear report"
    # a later report (e.g. sky130) joins the family the same way, and links are not duplicated
    write_report(sky, _report(setup={"circuit_target": "sky130", "circuit_filter": "ota"}), {}, title="sky130 report")
    link_reports(family_of(sky))
    page = (linear / "report.html").read_text()
    assert page.count("href='ota/report.html'") == 1 and "href='sky130/report.html'" in page
    assert "sky130 target" in page
    related = json.loads((ota / "report.json").read_text())["related_reports"]
    assert sorted(r["href"] for r in related) == ["../report.html", "../sky130/report.html"]
    # an unrelated neighbour directory is not part of the family
    write_report(tmp_path / "other", _report(), {}, title="other")
    assert tmp_path.joinpath("other").resolve() not in family_of(linear)


# ------------------------------------------------------------------- end to end, real ngspice


TINY = dict(hidden=(5,), dt=0.05, substeps=20, tau_lp=5.0, method="exact", seed=1, bias_init=1.0, u_th=0.5, u_sat=1.5,
            init_jitter=0.0, timescale_spread=1.0, train_timescales=False)  # pinned, not the package defaults


@pytest.fixture(scope="module")
def linked_runs(tmp_path_factory):
    from mtc_analog.network import NetworkConfig, SpikingRegressor
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
    from mtc_analog.validation.runs import ValidationSettings
    from mtc_analog.validation.workflow import validate_into

    task = make_task(TaskConfig(n_samples=700, horizon=17))
    import torch

    network = SpikingRegressor(NetworkConfig(**TINY))
    with torch.no_grad():  # one readout synapse far below the target's floor: a mapped change with its reason
        network.readout.weight[0, 0] = 1e-7
    out = tmp_path_factory.mktemp("family")
    command = ["mtc-analog", "validate", "tiny.safetensors", "--out", str(out)]
    linear, _ = validate_into(network, task, out, ValidationSettings(samples=60, washout=20, clip=True),
                              run_dt_study=True, dt_refinements=(1, 2), title="tiny linear", command=command)
    ota, _ = validate_into(network, task, out / "ota",
                           ValidationSettings(samples=60, washout=20, clip=True, circuit_filter="ota"),
                           title="tiny ota", command=command)
    return out, linear, ota


def _worst_by(report: dict, key: str, lowest: bool):
    """(layer, neuron, value) of the extreme per-neuron ``key``, read off the JSON's arrays."""
    best = None
    for layer in report["layers"]:
        per = layer["per_neuron"]
        for i, value in enumerate(per[key]):
            if value is None or (key == "gamma" and per["spikes_model"][i] + per["spikes_circuit"][i] == 0):
                continue
            if best is None or (value < best[2] if lowest else value > best[2]):
                best = (layer["layer"], i, value)
    return best


def test_real_report_names_and_plots_the_worst_neurons(linked_runs):
    out, linear, ota = linked_runs
    for directory, report in ((out, linear), (out / "ota", ota)):
        on_disk = json.loads((directory / "report.json").read_text())
        page = (directory / "report.html").read_text()
        layer, neuron, value = _worst_by(on_disk, "membrane_nrmse", lowest=False)
        assert any((w["layer"], w["neuron"]) == (layer, neuron) for w in on_disk["worst_neurons"])
        assert f"<td>{layer}</td><td>{neuron}</td>" in page and f"{value:.4g}" in page
        assert "Worst neurons: membrane, model vs circuit" in page
    # the OTA circuit loses spikes: its lowest-Gamma neuron is in the headline with its value
    layer, neuron, value = _worst_by(json.loads((out / "ota" / "report.json").read_text()), "gamma", lowest=True)
    assert value < 0.95
    assert f"{value:.4g} (layer {layer} / neuron {neuron})" in (out / "ota" / "report.html").read_text()


def test_real_report_dt_conclusion_stamp_changes_and_links(linked_runs):
    out, linear, ota = linked_runs
    page = (out / "report.html").read_text()
    # the tiny network's gap halves with dt (docs/results_validation.md): the model's discretisation
    assert linear["dt_conclusion"]["verdict"] == "discretisation"
    assert linear["dt_conclusion"]["text"] in page.replace("&gt;", ">").replace("&#x27;", "'")
    assert "How to read Gamma" in page and "can be negative" in page
    stamp = json.loads((out / "report.json").read_text())["provenance"]
    assert stamp["command"].startswith("mtc-analog validate tiny.safetensors") and stamp["command"] in page
    # every mapped value changed to fit the target is listed with its reason, here and in mapping.json
    mapping = json.loads((out / "circuit" / "mapping.json").read_text())
    assert len(mapping["range_changes"]) == len(linear["mapped_changes"]) > 0
    assert all(row["reason"] for row in linear["mapped_changes"]) and "negligible" in page
    # linear and OTA reports link each other
    assert "href='ota/report.html'" in page and "tiny ota" in page
    assert "href='../report.html'" in (out / "ota" / "report.html").read_text()
    assert json.loads((out / "report.json").read_text())["related_reports"][0]["circuit_filter"] == "ota"

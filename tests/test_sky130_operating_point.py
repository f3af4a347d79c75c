"""Operating-point guards and power figures of the sky130 target (real ngspice, real sky130 models).

- before simulating: a filter bias below the sky130 floor (100 pA) or a reference voltage below the cells'
  input common-mode range is refused, naming the cell, the limit and the fix (Python API, export and validate);
- during the transient: a membrane forced into the rail is flagged with layer, neuron, cell, time and limit,
  and an ordinary network is not;
- power: positive, finite, and V_DD x the time-averaged supply current (recomputed here), which itself
  carries every OTA's bias branch.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import yaml

from mtc_analog.cli import main
from mtc_analog.errors import HardwareRangeError
from mtc_analog.hardware import check_ranges, enforce_ranges, load_target, map_network
from mtc_analog.hardware.mapping import map_neuron
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.neuron.equations import MTCParameters
from mtc_analog.spice import sky130
from mtc_analog.spice.builder import build_network_netlist
from mtc_analog.spice.runner import SimulationJob, run_jobs
from mtc_analog.validation.operating_point import check_operating_point, operating_point_report
from mtc_analog.validation.power import library_text, power_report

TARGET = load_target("sky130")
#: a 1-neuron network streamed for 20 samples of 0.2 t_u (4 t_u of circuit time: ~2-3 s of CPU at transistor level)
CONFIG = dict(hidden=(1,), dt=0.1, substeps=2, input_scale=3.0, bias_init=0.5, seed=1)


def _network(**changes) -> SpikingRegressor:
    return SpikingRegressor(NetworkConfig(**{**CONFIG, **changes})).double()


def _simulate(circuit, x, target_name="sky130"):
    netlist = build_network_netlist(circuit, x, target_name=target_name, operating_point=True)
    waves = run_jobs([SimulationJob(netlist.render(control=False), None, "operating point")], workers=1)[0]
    return waves, netlist


# ---- static: refused before any simulation -------------------------------------------------------
def test_filter_bias_below_the_sky130_floor_is_refused_naming_cell_limit_and_fix():
    circuit = map_neuron(MTCParameters(tau_us=5000.0), target=TARGET)  # 400 pF at c_max: 57 pA
    (violation,) = check_ranges(circuit, TARGET)
    assert violation.location == "neuron / filter ultraslow" and violation.quantity == "bias current"
    assert violation.limit == pytest.approx(100e-12) and violation.value < 100e-12 and violation.bound == "min"
    assert "C_x" in violation.fix and "t_u" in violation.fix
    assert "100 pA" in str(violation)
    # the behavioural target has no such floor: the same neuron fits it
    assert check_ranges(map_neuron(MTCParameters(tau_us=5000.0), target=load_target("behavioral")),
                        load_target("behavioral")) == []


def test_reference_voltage_below_the_input_common_mode_range_is_refused():
    circuit = map_neuron(MTCParameters(d_s_plus=-6.0), target=TARGET)  # 1.1 V - 6 V_s = 0.67 V < 0.72 V
    assert TARGET.operating_window[0] < circuit.element("slow_plus").v_ref < TARGET.v_in_min
    with pytest.raises(HardwareRangeError) as info:
        enforce_ranges(circuit, TARGET)
    text = str(info.value)
    assert "element slow_plus: reference voltage" in text and "below the minimum 720 mV" in text
    assert "input common-mode range" in text


def test_export_and_validate_refuse_a_filter_bias_sky130_cannot_realise(tmp_path, capsys):
    params = tmp_path / "slow.yaml"
    params.write_text(yaml.safe_dump({"preset": "tonic_spiking", "params": {"tau_us": 5000.0}}))
    code = main(["export", str(params), "--target", "sky130", "--out", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert code == 2 and "filter ultraslow: bias current" in err and "100 pA" in err and "C_x" in err
    assert not (tmp_path / "exp" / "network.cir").exists()

    from mtc_analog.tasks.mackey_glass import TaskConfig
    from mtc_analog.training.checkpoint import save_checkpoint

    network = _network()
    with torch.no_grad():  # tau_us = tau_s e^{softplus(gap)} ~ 3.16 * 1800 t_u: 50 pA at c_max
        network.layers[0].raw_tau_gap.fill_(7.5)
    path = tmp_path / "slow.safetensors"
    save_checkpoint(path, network, None, TaskConfig(n_samples=700, horizon=17))
    code = main(["validate", str(path), "--target", "sky130", "--out", str(tmp_path / "val"), "--samples", "10"])
    err = capsys.readouterr().err
    assert code == 2 and "layer 0 / neuron 0 / filter ultraslow: bias current" in err and "100 pA" in err
    assert not (tmp_path / "val" / "report.json").exists()


# ---- dynamic: the transient guard ----------------------------------------------------------------
def test_membrane_forced_into_the_rail_is_flagged_with_place_time_and_limit():
    circuit = map_network(_network().to_spec(), TARGET)
    layer = dataclasses.replace(circuit.layers[0], bias_current=np.array([20 * TARGET.i_unit]))  # 20 I_u into the membrane
    forced = dataclasses.replace(circuit, layers=[layer])
    x = np.zeros((20, 1))
    waves, netlist = _simulate(forced, x)
    violations = check_operating_point(waves, netlist.nodes, TARGET)
    membrane = [v for v in violations if v.check == "membrane swing"]
    assert membrane and membrane[0].layer == 0 and membrane[0].neuron == 0 and membrane[0].cell == "membrane"
    assert membrane[0].bound == "max" and membrane[0].limit == pytest.approx(TARGET.operating_window[1])
    assert membrane[0].worst > TARGET.operating_window[1] and 0 < membrane[0].first_time < 4.0
    # the OTAs driving the membrane leave their output range too (the pfet mirrors run out of V_DS)
    outputs = [v for v in violations if v.check == "output range" and v.where == "layer 0 / neuron 0"]
    assert outputs and "element" in outputs[0].cell and outputs[0].limit == pytest.approx(TARGET.vdd - TARGET.v_out_margin)
    report = operating_point_report(waves, netlist.nodes, TARGET)
    assert not report["ok"] and report["n_violations"] == len(violations)
    assert "layer 0 / neuron 0" in report["violations"][0]["text"] and "t_u" in report["violations"][0]["text"]


# ---- power ---------------------------------------------------------------------------------------
def test_power_of_a_one_neuron_network_is_vdd_times_the_mean_supply_current():
    network = _network()
    circuit = map_network(network.to_spec(), TARGET)
    x = np.sin(np.linspace(0, 2 * np.pi, 20))[:, None]
    waves, netlist = _simulate(circuit, x)
    assert operating_point_report(waves, netlist.nodes, TARGET)["ok"]  # an ordinary network passes the guard

    power = power_report(waves, netlist.nodes, circuit, x.shape[0], 3, library_text("sky130"))
    # independently: ngspice's branch current of the supply (negative: it delivers), trapezoid over its time points
    t, i = waves.time, -waves["i(vsky130_vdd)"]
    mean = float(np.sum((i[1:] + i[:-1]) / 2 * np.diff(t)) / (t[-1] - t[0]))
    bias = float(np.abs(circuit.layers[0].bias_current).sum() + np.abs(circuit.readout.bias_current).sum())
    expected = 1.8 * (mean + bias)
    assert power["measured"] and math.isfinite(power["power_total_w"]) and power["power_total_w"] > 0
    assert power["power_total_w"] == pytest.approx(expected, rel=1e-9)
    assert power["power_per_neuron_w"] == pytest.approx(expected)  # one neuron
    assert power["energy_per_inference_j"] == pytest.approx(expected * (t[-1] - t[0]) / 20, rel=1e-9)
    assert power["energy_per_spike_j"] == pytest.approx(expected * (t[-1] - t[0]) / 3, rel=1e-9)
    # the supply carries every OTA's bias branch: a 5T OTA draws its reference + its tail (2 I_b), an ota_lin
    # its reference 2 g/gpa + two tails g/gpa each (gpa = 7.3 S/A, netlists/sky130/ota_lin.lib)
    cells = netlist.nodes["operating_point"]["cells"]
    neuron = circuit.layers[0].neurons[0]
    ib = {f"element {e.name}": e.tail_current for e in neuron.elements if e.tail_current > 0}
    static = sum(2 * current for current in ib.values())
    ota_lin = [c for c in cells if c["kind"] == "ota_lin"]
    g = {"leak": 1 / neuron.r_leak, **{f"filter {f.timescale}": f.bias_current / TARGET.v_s
                                        for f in neuron.filters.values() if f is not None}}
    g["synapse from input 0"] = abs(float(circuit.layers[0].synapse_gm[0, 0]))
    g_readout = {"synapse from neuron 0": abs(float(circuit.readout.gm[0, 0])), "load": 1 / circuit.readout.r_load,
                 **{f"lowpass stage {k}": s.bias_current / TARGET.v_s for k, s in enumerate(circuit.readout.lowpass)}}
    static += sum(4 * (g if c["layer"] is not None else g_readout)[c["cell"]] / 7.3 for c in ota_lin)
    assert 0.97 < power["supply_current_start_a"] / static < 1.1  # measured 1.0005
    # area proxies, every mult copy counted: 4 element OTAs (6 transistors, their bias diode and tail as 4 copies: 12,
    # the cell as 4 copies: 48), the leak, the filters and the input synapse as ota_lin with their mirrors at matching 4
    # (48) as 4 cell copies (192 each; a filter as fewer where its bias is weak, sky130.filter_copies)
    area = power["area"]
    n_filters = sum(f is not None for f in neuron.filters.values())
    copies = {kind: sum(m for _, _, m in devices) for kind, devices in sky130.CELL_DEVICES.items()}
    assert sky130.CELL_COPIES == 4
    assert (copies["ota_lin"], copies["synapse"], copies["readout_load"]) == (30, 4 * 48, 16 * 120)
    assert sky130.READOUT_COPIES == 16 and copies["synapse_readout"] == copies["lowpass"] == 16 * 48  # the readout's cells
    assert copies["leak"] == copies["filter_linear"] == 4 * 48 and copies["element"] == 4 * 12 and copies["ota5t"] == 6
    assert copies["filter_linear/1"] == 48 and copies["filter_linear/2"] == 96
    filters = sum(48 * sky130.filter_copies(f.bias_current) for f in neuron.filters.values() if f is not None)
    assert n_filters == 2 and area["transistors_per_neuron"] == 48 * len(ib) + filters + 192 + 192
    assert area["capacitance_per_neuron_f"] == pytest.approx(
        neuron.c_m + sum(f.capacitance for f in neuron.filters.values() if f is not None))


def test_behavioural_target_saves_nothing_more_and_reports_no_supply():
    circuit = map_network(_network().to_spec(), load_target("behavioral"))
    netlist = build_network_netlist(circuit, np.zeros((3, 1)), target_name="behavioral", operating_point=True)
    assert netlist.extra_saves == [] and netlist.nodes["operating_point"] == {"cells": [], "supply": None}


def test_validate_on_sky130_reports_operating_point_and_power(tmp_path, capsys):
    from mtc_analog.cli.validate import print_summary
    from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
    from mtc_analog.validation.runs import ValidationSettings
    from mtc_analog.validation.workflow import validate_into

    task = make_task(TaskConfig(n_samples=700, horizon=17))
    settings = ValidationSettings(target=TARGET, circuit_target="sky130", samples=10, washout=5, workers=1)
    report, _ = validate_into(SpikingRegressor(NetworkConfig(**CONFIG)), task, tmp_path, settings)
    saved = json.loads((tmp_path / "report.json").read_text())
    # 1 neuron (leak, 4 elements, 2 filters, 1 synapse) + readout (synapse, load, 4 low-pass stages)
    assert saved["operating_point"]["cells_checked"] == 8 + 6
    assert saved["power"]["measured"] and saved["power"]["power_total_w"] > 0
    # the neuron: 4 elements of 48, the leak 192, 2 filters of 192, its input synapse 192 (every cell as 4 copies; ota_lin
    # mirrors x4); the readout: synapse 768, load 1920 (its mirrors x16), 4 low-pass stages of 768 (every cell as 16 copies)
    assert saved["power"]["input_samples"] == 15 and saved["power"]["area"]["transistors_network"] == 960 + 5760
    page = (tmp_path / "report.html").read_text()
    assert "id='operating-point'" in page and "id='power'" in page and "Not counted" in page
    assert "id='membrane-swing'" in page
    # how far the model's membranes go against sky130's linear range (3 V_s), recomputed from nothing but the rule
    swing = saved["membrane_swing"]
    assert swing["limit"] == TARGET.linear_range == 3.0
    assert 0.0 <= swing["share_beyond"] <= 1.0 and swing["max_excursion"] >= swing["median_peak_excursion"] >= 0.0
    assert (swing["neurons_beyond"] == 1) == (swing["max_excursion"] > 3.0)  # one neuron
    print_summary(report, tmp_path)
    out = capsys.readouterr().out
    assert "per neuron" in out and "per spike" in out and "operating point:" in out
    assert "membranes (model): largest" in out

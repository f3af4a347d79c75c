"""Whole networks in ngspice: the circuit tracks the discrete model, splitting is exact, and
mapping.json names nodes that exist in the stand-alone netlist and its waveforms."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from mtc_analog.hardware import HardwareTarget, map_network
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.spice.builder import build_network_netlist
from mtc_analog.spice.export import export_network
from mtc_analog.spice.runner import run_standalone, run_transient
from mtc_analog.spice.split import plan_chunks, simulate_network
from mtc_analog.spice.waveforms import load_npz, read_rawfile, save_npz
from mtc_analog.validation.align import resample

DT, SUBSTEPS, SAMPLES = 0.05, 10, 40  # 400 neuron steps, 20 t_u of circuit time


@pytest.fixture(scope="module")
def small_network():
    cfg = NetworkConfig(hidden=(5, 4), n_out=2, dt=DT, substeps=SUBSTEPS, input_scale=3.0, bias_init=0.5,
                        init_jitter=0.3, seed=1)
    net = SpikingRegressor(cfg).double()
    x = np.cumsum(np.random.default_rng(0).normal(size=(SAMPLES, 1)) * 0.4, axis=0)
    with torch.no_grad():
        out = net(torch.tensor(x)[:, None, :], record_membrane=True)
    circuit = map_network(net.to_spec(), HardwareTarget())
    return circuit, x, out


@pytest.fixture(scope="module")
def one_netlist_run(small_network):
    circuit, x, _ = small_network
    return simulate_network(circuit, x, max_neurons=None)


def _model_grid(circuit, n_steps):
    return (np.arange(n_steps) + 1) * circuit.t_step  # model step k is the state after input k


def _on_grid(waves, grid):
    """Every probed node linearly interpolated onto ``grid`` [s] (the validation module's resampling)."""
    return {node: resample(waves.time, volts, grid) for node, volts in waves.voltages.items()}


def test_circuit_tracks_the_discrete_model(small_network, one_netlist_run):
    circuit, x, out = small_network
    waves, nodes = one_netlist_run
    target = circuit.target
    for layer, entries in enumerate(nodes["layers"]):
        u_model = out.hidden_u[layer][:, 0, :].numpy()
        grid = _on_grid(waves, _model_grid(circuit, u_model.shape[0]))
        u_circuit = np.stack([target.model_voltage(grid[e["membrane"]]) for e in entries], axis=1)
        nrmse = np.sqrt(((u_circuit - u_model) ** 2).mean(0)) / u_model.std(0)
        assert np.all(nrmse < 0.05), (layer, nrmse)  # Euler dt = 0.05 vs continuous time
    lowpass = out.lowpass[:, 0, :].numpy()
    grid = _on_grid(waves, _model_grid(circuit, lowpass.shape[0]))
    y_circuit = np.stack([target.model_voltage(grid[stages[-1]]) for stages in nodes["lowpass"]], axis=1)
    # Measured 0.022 (Euler dt = 0.05 in the neurons dominates; the low-pass has the circuit's delay).
    assert np.sqrt(((y_circuit - lowpass) ** 2).mean()) / lowpass.std() < 0.05


def test_split_simulation_equals_one_netlist(small_network, one_netlist_run):
    circuit, x, _ = small_network
    whole, nodes_whole = one_netlist_run
    split, nodes_split = simulate_network(circuit, x, max_neurons=2)
    assert split.meta["chunks"] == [[2, 2, 1], [2, 2]] == [[len(c) for c in l] for l in plan_chunks([5, 4], 2)]
    assert nodes_split == nodes_whole
    v_s = circuit.target.v_s
    for node in ["l0n4_m", "l1n0_m", "l1n3_o", "ro1", "lp0_3", "lp1_3"]:
        diff = (np.interp(split.time, whole.time, whole[node]) - split[node]) / v_s
        # exact up to ngspice's error control and interpolation between the two runs' time points
        # (largest on the steep edges of spikes and clipped outputs)
        assert np.abs(diff).max() < 0.05 and np.sqrt(np.mean(diff ** 2)) < 0.003, (node, np.abs(diff).max())


def test_mapping_names_nodes_of_the_standalone_netlist(small_network, tmp_path):
    circuit, x, _ = small_network
    result = export_network(circuit, x[:10], tmp_path / "exp", source="test", input_source="random walk")
    text = result.netlist_path.read_text()
    mapping = json.loads(result.mapping_path.read_text())
    assert mapping["kind"] == "network" and mapping["netlist"] == "network.cir"
    ic_nodes = set(re.findall(r"v\(([A-Za-z0-9_]+)\)=", "\n".join(l for l in text.splitlines() if l.startswith(".ic"))))
    saved = set(re.findall(r"v\(([A-Za-z0-9_]+)\)", "\n".join(l for l in text.splitlines() if l.startswith(".save"))))
    nodes = mapping["nodes"]
    named = set(nodes["inputs"]) | set(nodes["readout"]) | {n for s in nodes["lowpass"] for n in s} | {nodes["vrest"]}
    for layer in nodes["layers"]:
        for entry in layer:
            named |= {entry["membrane"], entry["output"]} | {n for n in entry["filters"].values() if n}
    assert named <= ic_nodes, named - ic_nodes  # every named node exists (and has its initial condition)
    probes = {e["membrane"] for l in nodes["layers"] for e in l} | set(nodes["readout"])
    assert probes <= saved
    # mapped values carry SI value + unit + model value
    neuron = mapping["circuit"]["layers"][0]["neurons"][0]
    assert neuron["c_m"]["unit"] == "F" and neuron["elements"]["fast"]["tail_current"]["unit"] == "A"
    assert "model" in neuron["elements"]["fast"]["tail_current"]
    # the stand-alone run writes exactly those probes
    raw = read_rawfile(run_standalone(result.netlist_path))
    assert probes <= set(raw.nodes)
    model = raw.to_model_units(mapping)
    assert model["layer0_u_m"].shape == (raw.time.size, 5) and model["lowpass_y"].shape == (raw.time.size, 2)
    np.testing.assert_allclose(model["inputs_x"][0], x[0], atol=1e-9)


def test_waveform_npz_round_trip(small_network, tmp_path):
    circuit, x, _ = small_network
    netlist = build_network_netlist(circuit, x[:5])
    waves = run_transient(netlist)
    mapping = {"format": "mtc_analog.mapping/1", "nodes": netlist.nodes,
               "units": {"v_rest": 0.9, "v_s": circuit.target.v_s, "t_unit": 1e-3},
               "hardware_target": circuit.target.summary()}
    path = save_npz(tmp_path / "w.npz", waves, mapping)
    back, arrays = load_npz(path)
    assert back.nodes == waves.nodes
    np.testing.assert_array_equal(back["lp1_3"], waves["lp1_3"])
    assert arrays["layer1_u_m"].shape == (waves.time.size, 4)
    np.testing.assert_allclose(arrays["time_model"], waves.time / 1e-3)

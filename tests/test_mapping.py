"""Model <-> circuit mapping: exact inverse, physical units, and that the circuit's KCL is the model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.errors import InputError
from mtc_analog.hardware import (
    HardwareTarget,
    apply_mismatch,
    filter_capacitance,
    map_network,
    map_neuron,
    unmap_network,
    unmap_neuron,
)
from mtc_analog.neuron.equations import ELEMENTS, FILTER_VARIABLES, MTCParameters, MTCState, rhs
from mtc_analog.neuron.step import Transduction, transduce
from mtc_analog.spec import NetworkSpec, NeuronLayerSpec, ReadoutSpec

#: parameters whose model value is a voltage (affine map): compared with an absolute floor of 1e-12 V_s
VOLTAGE_LIKE = {e.offset for e in ELEMENTS} | {"u_rest", "u_th", "u_sat", "u_c"}


def close(name: str, a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 if name in VOLTAGE_LIKE else 0.0)


gains = st.one_of(st.just(0.0), st.floats(1e-4, 50.0))
offsets = st.floats(-4.0, 4.0)
neuron_params = st.builds(
    MTCParameters,
    a_f=gains, a_s_plus=gains, a_s_minus=gains, a_us=gains,
    d_f=offsets, d_s_plus=offsets, d_s_minus=offsets, d_us=offsets,
    tau_m=st.floats(0.01, 100.0),
    tau_f=st.one_of(st.just(0.0), st.floats(1e-3, 10.0)),
    tau_s=st.floats(0.1, 1e3),
    tau_us=st.floats(1.0, 1e6),
    resistance=st.floats(0.05, 20.0),
    u_rest=st.floats(-2.0, 2.0),
)
transductions = st.builds(
    lambda kind, u_th, span, u_c: Transduction(kind, u_th, u_th + span, u_c),
    st.sampled_from(["clip", "sigmoid"]), offsets, st.floats(0.01, 4.0), offsets,
)
targets = st.builds(
    HardwareTarget,
    temperature_c=st.floats(-40, 125),
    kappa=st.floats(0.55, 0.9),
    i_unit=st.floats(1e-11, 1e-6),
    t_unit=st.floats(1e-6, 1.0),
    i_unit_readout=st.one_of(st.none(), st.floats(1e-11, 1e-5)),  # the readout at its own unit
)


@settings(max_examples=200, deadline=None)
@given(params=neuron_params, transduction=transductions, filter=st.sampled_from(["linear", "ota"]), target=targets)
def test_neuron_round_trip_is_identity(params, transduction, filter, target):
    back = unmap_neuron(map_neuron(params, transduction, filter, target), target)
    for name, value in params._asdict().items():
        assert close(name, getattr(back.params, name), value), (name, getattr(back.params, name), value)
    assert back.transduction.kind == transduction.kind
    for name in ("u_th", "u_sat", "u_c"):
        assert close(name, getattr(back.transduction, name), getattr(transduction, name))
    assert back.filter == filter


def random_spec(seed: int, n_in: int, sizes: list[int], n_out: int, sparsity: float, filter: str) -> NetworkSpec:
    rng = np.random.default_rng(seed)
    layers, n_prev = [], n_in
    for n in sizes:
        params = MTCParameters(
            a_f=rng.uniform(0.5, 4, n), a_s_plus=rng.uniform(0.5, 4, n), a_s_minus=rng.uniform(0, 2, n) * (rng.random(n) > 0.5),
            a_us=rng.uniform(0, 2, n), d_f=rng.uniform(-1, 1, n), d_s_plus=rng.uniform(-1, 1, n),
            d_s_minus=rng.uniform(-2, 0, n), d_us=rng.uniform(-2, 0, n), tau_m=rng.uniform(0.5, 2, n),
            tau_f=np.where(rng.random(n) > 0.5, 0.0, rng.uniform(0.1, 1, n)), tau_s=rng.uniform(5, 100, n),
            tau_us=rng.uniform(50, 3000, n), resistance=rng.uniform(0.5, 2, n), u_rest=rng.uniform(-0.5, 0.5, n),
        )
        weight = rng.normal(size=(n, n_prev)) * (rng.random((n, n_prev)) > sparsity)
        layers.append(NeuronLayerSpec(params, weight, rng.normal(size=n), Transduction("clip", 0.4, 1.6, 1.0), filter))
        n_prev = n
    readout = ReadoutSpec(rng.normal(size=(n_out, n_prev)), rng.normal(size=n_out), float(rng.uniform(1, 20)), 4)
    return NetworkSpec(n_in=n_in, layers=layers, readout=readout, dt=0.05, substeps=int(rng.integers(1, 5)), method="exact")


def assert_specs_equal(a: NetworkSpec, b: NetworkSpec) -> None:
    assert (a.n_in, a.substeps, a.method, len(a.layers)) == (b.n_in, b.substeps, b.method, len(b.layers))
    assert math.isclose(a.dt, b.dt, rel_tol=1e-9)
    for la, lb in zip(a.layers, b.layers):
        for name, value in la.params._asdict().items():
            other = np.broadcast_to(getattr(lb.params, name), np.shape(value))
            atol = 1e-12 if name in VOLTAGE_LIKE else 0.0
            np.testing.assert_allclose(other, value, rtol=1e-9, atol=atol, err_msg=name)
        np.testing.assert_allclose(lb.weight, la.weight, rtol=1e-9, atol=0)
        np.testing.assert_allclose(lb.bias, la.bias, rtol=1e-9, atol=0)
        assert lb.filter == la.filter and lb.transduction.kind == la.transduction.kind
        np.testing.assert_allclose(lb.transduction[1:], la.transduction[1:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.readout.weight, a.readout.weight, rtol=1e-9, atol=0)
    np.testing.assert_allclose(b.readout.bias, a.readout.bias, rtol=1e-9, atol=0)
    assert math.isclose(b.readout.lowpass_tau, a.readout.lowpass_tau, rel_tol=1e-9)
    assert b.readout.lowpass_order == a.readout.lowpass_order


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    n_out=st.integers(1, 2),
    sparsity=st.floats(0, 0.9),
    filter=st.sampled_from(["linear", "ota"]),
    target=targets,
)
def test_network_round_trip_is_identity(seed, n_in, sizes, n_out, sparsity, filter, target):
    spec = random_spec(seed, n_in, sizes, n_out, sparsity, filter)
    circuit = map_network(spec, target)
    assert [layer.size for layer in circuit.layers] == sizes and circuit.n_in == n_in
    assert_specs_equal(spec, unmap_network(circuit))


def test_unit_sanity_at_the_default_target():
    """I_u = 1 nA, t_u = 1 ms, 27 degC, kappa 0.7: the numbers a designer checks by hand."""
    target = HardwareTarget()
    circuit = map_neuron(MTCParameters(a_f=2.0, d_f=1.0, tau_m=1.0, tau_s=50.0, tau_us=2500.0), target=target)
    assert circuit.c_m == pytest.approx(13.5e-12, rel=0.005)
    assert circuit.r_leak == pytest.approx(73.9e6, rel=0.002)  # V_s / I_u
    assert circuit.c_m * circuit.r_leak == pytest.approx(1e-3)  # tau_m = 1 ms
    fast = circuit.element("fast")
    assert (fast.sign, fast.tail_current, fast.timescale) == (-1, 2e-9, "fast")
    assert fast.v_ref == pytest.approx(0.9 + 0.0739, abs=1e-4)
    assert circuit.filters["fast"] is None  # tau_f = 0: the fast OTA reads the membrane
    slow, ultraslow = circuit.filters["slow"], circuit.filters["ultraslow"]
    # 50 ms needs 677 pF at I_u: the policy takes c_max = 100 pF and lowers the bias to ~148 pA
    assert slow.capacitance == target.c_max and slow.bias_current == pytest.approx(147.8e-12, rel=1e-3)
    assert ultraslow.capacitance == target.c_max and ultraslow.bias_current == pytest.approx(2.956e-12, rel=1e-3)
    assert slow.tau_seconds(target) == pytest.approx(50e-3)
    # a fast filter fits at I_u
    assert filter_capacitance(0.5, target) == pytest.approx(0.5 * 13.53e-12, rel=1e-3)
    assert map_neuron(MTCParameters(tau_m=1.0, resistance=2.0), target=target).c_m == pytest.approx(13.53e-12 / 2, rel=1e-3)


def test_signs_and_element_set_come_from_equations():
    circuit = map_neuron(MTCParameters(), target=HardwareTarget())
    assert [(e.name, e.sign, e.timescale) for e in circuit.elements] == [(e.name, e.sign, e.timescale) for e in ELEMENTS]
    assert set(circuit.filters) == set(FILTER_VARIABLES)


def circuit_rates(circuit, target, v, i_in_amperes, kind):
    """dv/dt [V/s] of the mapped neuron's nodes by Kirchhoff's current law (the netlist's physics)."""
    v_m = v["membrane"]
    i_elements = 0.0
    for element in circuit.elements:
        v_x = v_m if circuit.filters[element.timescale] is None else v[element.timescale]
        i_elements += element.sign * element.tail_current * math.tanh(target.kappa * (v_x - element.v_ref) / (2 * target.u_t))
    rates = {"membrane": (-(v_m - circuit.v_rest) / circuit.r_leak + i_in_amperes - i_elements) / circuit.c_m}
    for timescale, f in circuit.filters.items():
        if f is not None:
            drive = (v_m - v[timescale]) / target.v_s if kind == "linear" else math.tanh(target.kappa * (v_m - v[timescale]) / (2 * target.u_t))
            rates[timescale] = f.bias_current * drive / f.capacitance
    return rates


@settings(max_examples=60, deadline=None)
@given(
    params=neuron_params,
    filter=st.sampled_from(["linear", "ota"]),
    target=targets,
    u=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
    i_in=st.floats(-5, 5),
)
def test_circuit_kcl_reproduces_the_model_rhs(params, filter, target, u, i_in):
    """The mapping is physically right, not only self-inverse: node equations in SI == model rhs."""
    circuit = map_neuron(params, Transduction(), filter, target)
    state = MTCState(*u)
    if params.tau_f == 0:
        state = state._replace(u_f=state.u_m)
    model = rhs(state, params, i_in, filter)
    volts = {"membrane": target.voltage(state.u_m), "fast": target.voltage(state.u_f),
             "slow": target.voltage(state.u_s), "ultraslow": target.voltage(state.u_us)}
    rates = circuit_rates(circuit, target, volts, target.current(i_in), filter)
    scale = target.v_s / target.t_unit  # model rate [V_s / t_u] -> [V / s]
    assert rates["membrane"] == pytest.approx(model.u_m * scale, rel=1e-6, abs=1e-9 * scale * (1 + abs(i_in)) / params.tau_m)
    for timescale, (variable, _) in FILTER_VARIABLES.items():
        if timescale in rates:
            assert rates[timescale] == pytest.approx(getattr(model, variable) * scale, rel=1e-6, abs=1e-12 * scale)


def test_transduction_voltages_reproduce_the_model_output():
    target = HardwareTarget()
    for transduction in (Transduction("clip", 0.3, 1.7, 1.0), Transduction("sigmoid", 0.5, 1.5, 0.8)):
        t = map_neuron(MTCParameters(), transduction, "linear", target).transduction
        u = torch.linspace(-2, 3, 51, dtype=torch.float64)
        v = target.voltage(u.numpy())
        if t.kind == "clip":
            s = np.clip((v - t.v_th) / (t.v_sat - t.v_th), 0, 1)
        else:  # one branch of a differential pair: I_b / (1 + exp(-kappa (v - v_c) / U_T))
            s = 1 / (1 + np.exp(-target.kappa * (v - t.v_c) / target.u_t))
        np.testing.assert_allclose(s, transduce(u, transduction).numpy(), atol=1e-12)


def test_weights_and_biases_keep_sign_and_units():
    spec = random_spec(3, 2, [3], 1, 0.3, "linear")
    target = HardwareTarget()
    circuit = map_network(spec, target)
    np.testing.assert_allclose(circuit.layers[0].synapse_gm, spec.layers[0].weight * 1e-9 / target.v_s)
    np.testing.assert_allclose(circuit.layers[0].bias_current, spec.layers[0].bias * 1e-9)
    assert circuit.readout.r_load == pytest.approx(target.v_s / 1e-9)
    assert len(circuit.readout.lowpass) == 4 and all(f.kind == "linear" for f in circuit.readout.lowpass)
    assert circuit.t_step == pytest.approx(0.05e-3) and circuit.sample_period == pytest.approx(spec.substeps * 0.05e-3)


def test_the_readout_maps_at_its_own_current_unit():
    """sky130's readout cells are 4x the copies at 4x the current: weights, bias and load scale, the low-pass
    stages keep their tau with 4x the capacitor and bias; the hidden layers do not move."""
    spec = random_spec(4, 1, [3], 1, 0.0, "linear")
    plain = HardwareTarget(i_unit=4e-9, t_unit=1e-5)  # low-pass capacitors well inside c_max at both units
    scaled = HardwareTarget(i_unit=4e-9, t_unit=1e-5, i_unit_readout=16e-9)
    a, b = map_network(spec, plain), map_network(spec, scaled)
    np.testing.assert_allclose(b.layers[0].synapse_gm, a.layers[0].synapse_gm, rtol=0)
    np.testing.assert_allclose(b.readout.gm, 4 * a.readout.gm, rtol=1e-12)
    np.testing.assert_allclose(b.readout.bias_current, 4 * a.readout.bias_current, rtol=1e-12)
    assert b.readout.r_load == pytest.approx(a.readout.r_load / 4)
    for sa, sb in zip(a.readout.lowpass, b.readout.lowpass):
        assert (sb.capacitance, sb.bias_current) == pytest.approx((4 * sa.capacitance, 4 * sa.bias_current))
    assert_specs_equal(spec, unmap_network(b))
    # its limits scale with it: a readout weight the neuron cells' floor would refuse is 4x the current here
    view = scaled.readout_target()
    assert (view.i_unit, view.i_min, view.i_max, view.i_unit_readout) == (16e-9, 4 * scaled.i_min, 4 * scaled.i_max, None)
    assert plain.readout_target() is plain and scaled.readout_scale == 4.0
    data = json.loads(json.dumps(b.to_dict()))
    assert data["readout"]["current_unit"]["value"] == pytest.approx(16e-9)
    np.testing.assert_allclose(data["readout"]["gm"]["model"], spec.readout.weight)
    with pytest.raises(InputError, match="i_unit_readout"):
        HardwareTarget(i_unit_readout=0.0)


def test_to_dict_is_json_and_pairs_every_value_with_its_model_value():
    spec = random_spec(5, 1, [2, 3], 1, 0.0, "ota")
    circuit = map_network(spec, HardwareTarget())
    data = json.loads(json.dumps(circuit.to_dict()))
    neuron = data["layers"][1]["neurons"][2]
    for element in ELEMENTS:
        entry = neuron["elements"][element.name]["tail_current"]
        assert entry["unit"] == "A" and entry["model"] == pytest.approx(spec.layers[1].params._asdict()[element.gain][2])
    assert neuron["c_m"]["unit"] == "F" and neuron["c_m"]["model"] == pytest.approx(spec.layers[1].params.tau_m[2])
    assert neuron["r_leak"]["model"] == pytest.approx(spec.layers[1].params.resistance[2])
    assert neuron["filters"]["slow"]["tau"]["model"] == pytest.approx(spec.layers[1].params.tau_s[2])
    np.testing.assert_allclose(data["layers"][0]["synapse_gm"]["model"], spec.layers[0].weight)
    assert data["readout"]["lowpass"][3]["tau"]["model"] == pytest.approx(spec.readout.lowpass_tau)
    assert data["target"]["derived"]["v_s"] == pytest.approx(circuit.target.v_s)


def test_bad_model_inputs_are_rejected_with_location():
    spec = random_spec(1, 1, [2], 1, 0.0, "linear")
    spec.layers[0].params = spec.layers[0].params._replace(a_f=np.array([1.0, -2.0]))
    with pytest.raises(InputError, match="layer 0 / neuron 1: .*a_f"):
        map_network(spec)
    spec = random_spec(1, 1, [2], 1, 0.0, "linear")
    spec.layers[0].weight[1, 0] = np.nan
    with pytest.raises(InputError, match=r"layer 0 weight is not finite at index \(1, 0\)"):
        map_network(spec)
    spec = random_spec(1, 2, [2], 1, 0.0, "linear")
    spec.readout.weight = np.ones((1, 5))
    with pytest.raises(InputError, match="readout weight has shape"):
        map_network(spec)
    with pytest.raises(InputError, match="unknown filter"):
        map_neuron(MTCParameters(), Transduction(), "rc", HardwareTarget())
    with pytest.raises(InputError, match="one neuron"):
        map_neuron(MTCParameters(a_f=np.ones(3)))
    with pytest.raises(InputError, match="u_sat = 0.5 must exceed u_th = 0.5"):
        map_neuron(MTCParameters(), Transduction("clip", 0.5, 0.5, 1.0))
    spec = random_spec(1, 1, [2], 1, 0.0, "linear")
    spec.layers[0].params = spec.layers[0].params._replace(resistance=np.array([1.0, 0.0]))
    with pytest.raises(InputError, match="layer 0 / neuron 1: resistance"):
        map_network(spec)


def test_mismatch_is_seeded_log_normal_and_unmaps_to_a_perturbed_model():
    spec = random_spec(11, 2, [200], 1, 0.0, "linear")
    circuit = map_network(spec, HardwareTarget())
    a = apply_mismatch(circuit, sigma_rel=0.1, seed=7)
    b = apply_mismatch(circuit, sigma_rel=0.1, seed=7)
    c = apply_mismatch(circuit, sigma_rel=0.1, seed=8)
    tails = lambda net: np.array([n.element("fast").tail_current for n in net.layers[0].neurons])  # noqa: E731
    np.testing.assert_array_equal(tails(a), tails(b))
    assert not np.array_equal(tails(a), tails(c))
    log_ratio = np.log(tails(a) / tails(circuit))
    assert abs(log_ratio.mean()) < 0.03 and 0.08 < log_ratio.std() < 0.12
    # signs, absent devices and voltages are kept (no offset mismatch asked for)
    assert np.array_equal(np.sign(a.layers[0].synapse_gm), np.sign(circuit.layers[0].synapse_gm))
    for before, after in zip(circuit.layers[0].neurons, a.layers[0].neurons):
        assert (after.element("slow_minus").tail_current == 0) == (before.element("slow_minus").tail_current == 0)
        assert after.element("fast").v_ref == before.element("fast").v_ref and after.r_leak == before.r_leak
    perturbed = unmap_network(a)
    ratio = perturbed.layers[0].params.a_f / spec.layers[0].params.a_f
    np.testing.assert_allclose(ratio, tails(a) / tails(circuit), rtol=1e-9)
    # zero sigma is the identity
    assert_specs_equal(spec, unmap_network(apply_mismatch(circuit, 0.0, seed=1)))
    offset = apply_mismatch(circuit, 0.0, seed=1, sigma_offset=1e-3)
    shifts = [o.element("fast").v_ref - n.element("fast").v_ref for o, n in zip(offset.layers[0].neurons, circuit.layers[0].neurons)]
    assert 0.5e-3 < np.std(shifts) < 1.5e-3
    with pytest.raises(InputError, match="sigma_rel"):
        apply_mismatch(circuit, -0.1, seed=0)

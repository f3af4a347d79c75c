"""Range checks: every planted violation is found at the right place; clip mode clips exactly those."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.errors import HardwareRangeError, InputError
from mtc_analog.hardware import HardwareTarget, check_ranges, enforce_ranges, map_network, map_neuron
from mtc_analog.hardware.ranges import RangeViolation, si, transform_values
from mtc_analog.neuron.equations import MTCParameters
from mtc_analog.neuron.step import Transduction
from mtc_analog.spec import NetworkSpec, NeuronLayerSpec, ReadoutSpec

TARGET = HardwareTarget()


def clean_spec() -> NetworkSpec:
    """A 2-3-3-1 network whose every mapped value fits the default target (some weights are 0 = absent)."""
    rng = np.random.default_rng(0)
    layers, n_prev = [], 2
    for n in (3, 3):
        params = MTCParameters(
            a_f=rng.uniform(1, 3, n), a_s_plus=rng.uniform(1, 3, n), a_s_minus=np.array([0.0, 1.5, 1.0]),
            a_us=rng.uniform(0.5, 2, n), d_f=rng.uniform(-1, 1, n), d_s_plus=rng.uniform(-1, 1, n),
            d_s_minus=np.array([50.0, -1.5, -1.0]),  # element 0 is absent: its wild offset is never wired
            d_us=rng.uniform(-2, 0, n), tau_m=rng.uniform(0.5, 2, n), tau_f=np.zeros(n),
            tau_s=rng.uniform(20, 80, n), tau_us=rng.uniform(500, 3000, n), resistance=np.ones(n), u_rest=np.zeros(n),
        )
        weight = rng.uniform(0.1, 3, (n, n_prev)) * rng.choice([-1, 1], (n, n_prev))
        weight[0, 0] = 0.0  # absent synapse
        layers.append(NeuronLayerSpec(params, weight, rng.uniform(0.1, 2, n) * rng.choice([-1, 1], n), Transduction("clip", 0.5, 1.5, 1.0)))
        n_prev = n
    readout = ReadoutSpec(rng.uniform(0.1, 2, (1, n_prev)), np.zeros(1), lowpass_tau=5.0)  # zero bias = absent
    return NetworkSpec(n_in=2, layers=layers, readout=readout, dt=0.05, substeps=2)


def set_param(spec, layer, name, neuron, value):
    params = spec.layers[layer].params
    array = np.array(getattr(params, name), dtype=float)
    array[neuron] = value
    spec.layers[layer].params = params._replace(**{name: array})


def plant_weight(layer, i, j, value):
    def plant(spec):
        spec.layers[layer].weight[i, j] = value
    return plant


def plant_param(layer, name, neuron, value):
    return lambda spec: set_param(spec, layer, name, neuron, value)


# Each plant: (how to break the spec, the violations it must produce as (location, quantity, bound)).
PLANTS = [
    (plant_weight(0, 1, 0, 1e-4), [("layer 0 / neuron 1 / synapse from input 0", "synapse bias |gm| V_s", "min")]),
    (plant_weight(1, 0, 2, -500.0), [("layer 1 / neuron 0 / synapse from layer 0 neuron 2", "synapse bias |gm| V_s", "max")]),
    (plant_param(0, "a_f", 2, 200.0), [("layer 0 / neuron 2 / element fast", "tail current", "max")]),
    (plant_param(1, "a_us", 1, 1e-4), [("layer 1 / neuron 1 / element ultraslow", "tail current", "min")]),
    (plant_param(0, "d_s_plus", 0, 15.0), [("layer 0 / neuron 0 / element slow_plus", "reference voltage", "max")]),
    (plant_param(1, "d_us", 2, -20.0), [("layer 1 / neuron 2 / element ultraslow", "reference voltage", "min")]),
    (plant_param(1, "tau_us", 0, 1e5), [("layer 1 / neuron 0 / filter ultraslow", "bias current", "min")]),
    (plant_param(0, "tau_m", 1, 1e-4), [("layer 0 / neuron 1 / membrane", "membrane capacitor C_m", "min")]),
    (plant_param(1, "tau_m", 1, 20.0), [("layer 1 / neuron 1 / membrane", "membrane capacitor C_m", "max")]),
    (plant_param(1, "u_rest", 2, -9.0), [("layer 1 / neuron 2 / membrane", "rest voltage (room for the swing -5..5 V_s)", "min")]),
    (plant_param(0, "a_s_minus", 0, 1e-4), [("layer 0 / neuron 0 / element slow_minus", "tail current", "min"),
                                            ("layer 0 / neuron 0 / element slow_minus", "reference voltage", "max")]),
    (lambda spec: spec.layers[0].bias.__setitem__(1, 1000.0), [("layer 0 / neuron 1 / bias", "bias current", "max")]),
    (lambda spec: spec.readout.bias.__setitem__(0, 1e-5), [("readout / output 0 / bias", "bias current", "min")]),
    (lambda spec: setattr(spec.readout, "lowpass_tau", 1e-6),
     [(f"readout / lowpass stage {k}", "bias current", "max") for k in range(4)]),
    (lambda spec: setattr(spec.layers[1], "transduction", Transduction("clip", 0.5, 15.0, 1.0)),
     [(f"layer 1 / neuron {i} / transduction", "saturation voltage", "max") for i in range(3)]),
]


def test_clean_network_has_no_violation():
    circuit = map_network(clean_spec(), TARGET)
    assert check_ranges(circuit, TARGET) == []
    same, changes = enforce_ranges(circuit, TARGET)
    assert same is circuit and changes == []


def all_values(circuit):
    """Every range-checked value by (location, quantity) -> value."""
    found = {}

    def record(check, values):
        for index in np.ndindex(values.shape):
            found[(check.where(index), check.quantity)] = float(values[index])
        return values

    transform_values(circuit, TARGET, record)
    return found


@settings(max_examples=40, deadline=None)
@given(chosen=st.sets(st.integers(0, len(PLANTS) - 1), min_size=1))
def test_every_planted_violation_is_found_and_clipped(chosen):
    spec = clean_spec()
    expected = set()
    for k in chosen:
        plant, violations = PLANTS[k]
        plant(spec)
        expected |= set(violations)
    circuit = map_network(spec, TARGET)
    violations = check_ranges(circuit, TARGET)
    assert {(v.location, v.quantity, v.bound) for v in violations} == expected
    for v in violations:
        assert (v.value < v.limit) if v.bound == "min" else (v.value > v.limit)
        assert v.unit in ("A", "V", "F")

    with pytest.raises(HardwareRangeError) as info:
        enforce_ranges(circuit, TARGET)
    assert info.value.violations == violations
    assert all(str(v) in str(info.value) for v in violations[:20])

    clipped, changes = enforce_ranges(circuit, TARGET, clip=True)
    assert {(c.location, c.quantity) for c in changes} == {(v.location, v.quantity) for v in violations}
    assert check_ranges(clipped, TARGET) == []
    limits = {(v.location, v.quantity): v.limit for v in violations}
    for change in changes:
        assert abs(change.new) == pytest.approx(limits[(change.location, change.quantity)], rel=1e-12)
        if change.unit == "A":
            assert np.sign(change.new) == np.sign(change.old)  # signed currents keep their sign
    before, after = all_values(circuit), all_values(clipped)
    changed = {(c.location, c.quantity) for c in changes}
    assert {key for key in before if before[key] != after[key]} == changed


def test_message_is_readable():
    spec = clean_spec()
    PLANTS[3][0](spec)
    PLANTS[4][0](spec)
    with pytest.raises(HardwareRangeError) as info:
        enforce_ranges(map_network(spec, TARGET), TARGET)
    text = str(info.value)
    assert text.splitlines()[0] == "2 mapped value(s) outside the hardware target's range"
    assert "layer 1 / neuron 1 / element ultraslow: tail current 100 fA is below the minimum 1 pA (model a_us = 0.0001)" in text
    assert "layer 0 / neuron 0 / element slow_plus: reference voltage 2.008 V is above the maximum 1.7 V (model d_s_plus = 15)" in text
    assert "--clip" in text


def test_single_neuron_and_zero_gains():
    circuit = map_neuron(MTCParameters(a_f=2.0, a_s_plus=0.0, a_s_minus=0.0, a_us=0.0, d_s_plus=99.0), target=TARGET)
    assert check_ranges(circuit, TARGET) == []  # absent elements: neither current nor reference checked
    broken = map_neuron(MTCParameters(a_f=1e3), target=TARGET)
    (violation,) = [str(v) for v in check_ranges(broken, TARGET)]
    assert violation.startswith("neuron / element fast: tail current 1 uA is above the maximum 100 nA (model a_f = 1000); fix: ")
    assert "i_unit" in violation  # each violation says how to make it fit
    fixed, changes = enforce_ranges(broken, TARGET, clip=True)
    assert fixed.element("fast").tail_current == TARGET.i_max and len(changes) == 1
    assert str(changes[0]) == "neuron / element fast: tail current clipped 1 uA -> 100 nA"
    with pytest.raises(InputError, match="needs the target"):
        check_ranges(broken)


def test_tighter_target_flags_more():
    circuit = map_network(clean_spec(), TARGET)
    strict = HardwareTarget(i_max=2e-9, c_max=20e-12)
    violations = check_ranges(circuit, strict)
    assert violations and all(v.limit in (2e-9, 20e-12) for v in violations)
    assert all(isinstance(v, RangeViolation) for v in violations)


def test_si_formatting():
    assert si(2.5e-13, "A") == "250 fA"
    assert si(1e-9, "A") == "1 nA"
    assert si(1.7, "V") == "1.7 V"
    assert si(13.53e-12, "F") == "13.53 pF"
    assert si(0.0, "A") == "0 A"


def test_negligible_gains_are_left_out_and_reported_not_flagged():
    # Training drives unused gains to softplus' floor (~1e-13 I_u = 1e-22 A): that device is absent.
    spec = clean_spec()
    spec.layers[0].params = spec.layers[0].params._replace(a_s_minus=np.full(spec.layers[0].size, 1e-13))
    # the absent element 0 keeps its wild offset: a left-out element's reference is never checked
    circuit = map_network(spec, TARGET)
    assert check_ranges(circuit, TARGET) == []
    fitted, changes = enforce_ranges(circuit, TARGET)  # no clip needed
    assert len(changes) == spec.layers[0].size
    assert all(c.new == 0 and "slow_minus" in c.location and "negligible" in str(c) for c in changes)
    assert all(n.element("slow_minus").tail_current == 0 for n in fitted.layers[0].neurons)


def test_small_but_not_negligible_gain_is_still_a_violation():
    spec = clean_spec()
    spec.layers[0].params = spec.layers[0].params._replace(
        a_s_minus=np.full(spec.layers[0].size, 1e-5), d_s_minus=np.full(spec.layers[0].size, -1.0))  # 10 fA
    violations = check_ranges(map_network(spec, TARGET), TARGET)
    assert len(violations) == spec.layers[0].size and all(v.bound == "min" for v in violations)

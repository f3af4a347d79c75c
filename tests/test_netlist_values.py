"""Netlist writer safety: hostile names and values never reach a netlist (NetlistValueError), and the
value writer round-trips every accepted number (hypothesis property tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.errors import NetlistValueError
from mtc_analog.hardware import HardwareTarget, map_network, map_neuron
from mtc_analog.neuron.equations import MTCParameters
from mtc_analog.spice.builder import build_network_netlist, build_neuron_netlist, pwl_lines
from mtc_analog.spice.netlist import Netlist, parse_spice_number, set_simulator_settings, strip_control
from mtc_analog.spice.values import MAX_MAGNITUDE, spice_comment, spice_filename, spice_name, spice_number, spice_numbers

HOSTILE_TEXT = [
    "a\nb", "x\r.control", ".control", "n1 .endc", "node'", 'node"', "n;rm", "n$x", "1node", "", " ", "a b",
    "v(x)", "{x}", "x" * 65, "node\x00", "ünï", "a*b", "a=b",
]


@pytest.mark.parametrize("name", HOSTILE_TEXT)
def test_hostile_names_rejected(name):
    with pytest.raises(NetlistValueError):
        spice_name(name)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e16, -1e300, True, "1", "1e-9",
                                   None, complex(1, 1), [1.0], np.array([1.0, 2.0])])
def test_hostile_numbers_rejected(value):
    with pytest.raises(NetlistValueError):
        spice_number(value, "test value", "A")


def test_sign_and_limits_rejected_with_where_and_unit():
    with pytest.raises(NetlistValueError, match=r"layer 0 / neuron 3 / C_m = -1e-12 F must be > 0"):
        spice_number(-1e-12, "layer 0 / neuron 3 / C_m", "F", positive=True)
    with pytest.raises(NetlistValueError, match="must be >= 0"):
        spice_number(-1e-9, "tail", "A", nonnegative=True)
    with pytest.raises(NetlistValueError, match="above its limit"):
        spice_number(2.0, "v", "V", hi=1.8)


@given(st.floats(min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE, allow_nan=False, allow_infinity=False))
@settings(max_examples=300, deadline=None)
def test_number_writer_round_trips(x):
    text = spice_number(x)
    assert set(text) <= set("0123456789.e+-")  # no SPICE scale suffix can be misread (1m vs 1M)
    back = parse_spice_number(text)
    assert back == pytest.approx(x, rel=1e-11, abs=0.0)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_vectorised_writer_agrees_with_scalar_writer(values):
    arr = np.array(values)
    ok = bool(np.all(np.isfinite(arr)) and np.all(np.abs(arr) <= MAX_MAGNITUDE))
    if ok:
        assert list(spice_numbers(arr)) == [spice_number(v) for v in values]
    else:
        with pytest.raises(NetlistValueError):
            spice_numbers(arr)


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_name_checker_accepts_only_identifiers(text):
    try:
        assert spice_name(text) == text
    except NetlistValueError:
        return
    assert text[0].isalpha() or text[0] == "_"
    assert all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in text)


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_comment_lines_never_contain_line_breaks(text):
    try:
        line = spice_comment(text)
    except NetlistValueError:
        assert any(ord(ch) < 32 or ord(ch) > 126 for ch in text)
        return
    assert "\n" not in line and "\r" not in line and line.startswith("*")


@pytest.mark.parametrize("name", ["../x.raw", "a/b", "x y", ".hidden", "x\n.control"])
def test_control_block_file_names_are_bare(name):
    with pytest.raises(NetlistValueError):
        spice_filename(name)


def _neuron_netlist(**overrides):
    target = HardwareTarget()
    circuit = map_neuron(MTCParameters(), target=target)
    kwargs = dict(current_times=[0.0], current_amps=[0.0], t_stop=0.01, t_max=5e-5)
    kwargs.update(overrides)
    return build_neuron_netlist(circuit, target, **kwargs), circuit, target


@pytest.mark.parametrize("title", ["x\n.control\nshell rm -rf /\n.endc", "t\r\n.end"])
def test_hostile_title_rejected(title):
    netlist, _, _ = _neuron_netlist()
    netlist.title = title
    with pytest.raises(NetlistValueError):
        netlist.render()


@pytest.mark.parametrize("field,value", [("c_m", float("nan")), ("c_m", -1e-12), ("r_leak", 0.0), ("c_m", 1e40)])
def test_hostile_circuit_values_rejected(field, value):
    import dataclasses

    target = HardwareTarget()
    circuit = dataclasses.replace(map_neuron(MTCParameters(), target=target), **{field: value})
    with pytest.raises(NetlistValueError, match=field.replace("c_m", "C_m").replace("r_leak", "R_l")):
        build_neuron_netlist(circuit, target, [0.0], [0.0], 0.01, 5e-5)


def test_hostile_input_samples_rejected():
    with pytest.raises(NetlistValueError):
        pwl_lines("in0", "V", "in0", np.array([0.0, 1.0]), np.array([0.9, np.nan]), "input 0")
    with pytest.raises(NetlistValueError, match="strictly increasing"):
        pwl_lines("in0", "V", "in0", np.array([0.0, 0.0]), np.array([0.9, 0.9]), "input 0")
    with pytest.raises(NetlistValueError):
        _neuron_netlist(current_amps=[float("inf")])


def test_hostile_weights_rejected_in_network():
    from mtc_analog.spec import NetworkSpec, NeuronLayerSpec, ReadoutSpec

    params = MTCParameters(*(np.full(2, v, dtype=float) for v in MTCParameters(tau_s=10.0, tau_us=100.0)))
    spec = NetworkSpec(1, [NeuronLayerSpec(params, np.array([[1.0], [2.0]]), np.zeros(2))],
                       ReadoutSpec(np.ones((1, 2)), np.zeros(1), 1.0), dt=0.5, substeps=2)
    circuit = map_network(spec, HardwareTarget())
    circuit.layers[0].synapse_gm[1, 0] = np.inf  # a corrupted mapping must not reach the netlist
    with pytest.raises(NetlistValueError, match=r"synapses l0 / g_m\[1, 0\]"):
        build_network_netlist(circuit, np.zeros((3, 1)))


def test_rendered_netlist_has_ic_for_every_node_and_spec_settings():
    netlist, _, _ = _neuron_netlist()
    text = netlist.render()
    assert ".options reltol=0.0001 abstol=1e-15 gmin=1e-15" in text
    assert ".tran 5e-05 0.01 0 5e-05" in text
    nodes = set()
    for line in text.splitlines():
        if line.startswith(("X", "V", "I")) and not line.startswith(("X_", "V_")):
            fields = line.split()
            if line.startswith("X"):
                nodes.update(f for f in fields[1:] if "=" not in f and not f.startswith(("mtc_", "transduction")))
            else:
                nodes.update(fields[1:3])
    nodes.discard("0")
    ic_nodes = {tok[2:tok.index(")")] for line in text.splitlines() if line.startswith(".ic") for tok in line.split()[1:]}
    assert nodes <= ic_nodes, nodes - ic_nodes


def test_simulator_setting_overrides_and_control_stripping():
    netlist, _, _ = _neuron_netlist()
    text = netlist.render()
    assert ".control" not in strip_control(text) and ".endc" not in strip_control(text)
    changed = set_simulator_settings(text, {"method": "gear"}, t_max=5e-6)
    assert ".tran 5e-06 0.01 0 5e-06" in changed
    assert changed.index(".options method=gear") < changed.index("\n.end\n") and ".control" not in changed
    with pytest.raises(NetlistValueError):
        set_simulator_settings(text, {"method": "gear\n.control"})


def test_number_parser_reads_suffixes():
    assert parse_spice_number("2u") == pytest.approx(2e-6)
    assert parse_spice_number("1meg") == pytest.approx(1e6)
    assert parse_spice_number("1M") == pytest.approx(1e-3)
    assert math.isclose(parse_spice_number("5e-05"), 5e-05)


def test_netlist_option_names_checked():
    netlist = Netlist("t", "", [], {}, 1.0, 1.0, [], options={"reltol\n.control": 1e-3})
    with pytest.raises(NetlistValueError):
        netlist.render()

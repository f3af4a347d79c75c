"""HardwareTarget: physical constants, unit conversions, file loading and validation."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mtc_analog.errors import InputError
from mtc_analog.hardware.target import FIELD_UNITS, TARGETS_DIR, HardwareTarget, available_targets, load_target


def test_defaults_give_the_spec_constants():
    target = HardwareTarget()
    assert target.u_t == pytest.approx(25.86e-3, abs=0.02e-3)  # kT/q at 300.15 K
    assert target.v_s == pytest.approx(73.9e-3, abs=0.1e-3)  # 2 U_T / 0.7
    assert target.c_unit == pytest.approx(13.53e-12, rel=1e-3)  # 1 ms * 1 nA / V_s
    assert target.g_unit == pytest.approx(1e-9 / target.v_s)
    assert (target.i_min, target.i_max) == (1e-12, 100e-9)


def test_u_t_follows_temperature():
    cold, hot = HardwareTarget(temperature_c=-40.0), HardwareTarget(temperature_c=125.0)
    assert hot.u_t / cold.u_t == pytest.approx((125 + 273.15) / (-40 + 273.15))
    assert HardwareTarget(kappa=0.6).v_s == pytest.approx(2 * HardwareTarget().u_t / 0.6)


@given(u=st.floats(-20, 20), t=st.floats(1e-6, 1e6), i=st.floats(-1e3, 1e3))
def test_conversions_invert(u, t, i):
    target = HardwareTarget()
    assert target.model_voltage(target.voltage(u)) == pytest.approx(u, rel=1e-12, abs=1e-12)
    assert target.model_time(target.seconds(t)) == pytest.approx(t, rel=1e-12)
    assert target.model_current(target.current(i)) == pytest.approx(i, rel=1e-12, abs=1e-300)
    assert target.voltage(1.0) == pytest.approx(0.9 + target.v_s)


def test_conversions_accept_arrays():
    import numpy as np

    target = HardwareTarget()
    np.testing.assert_allclose(target.voltage(np.array([0.0, 1.0])), [0.9, 0.9 + target.v_s])
    np.testing.assert_allclose(target.seconds(np.array([1.0, 2.0])), [1e-3, 2e-3])


def test_shipped_target_is_the_documented_default_and_complete():
    assert "behavioral" in available_targets()
    assert load_target("behavioral") == HardwareTarget()
    assert load_target(None) == HardwareTarget()
    data = yaml.safe_load((TARGETS_DIR / "behavioral.yaml").read_text())
    assert set(data) == set(FIELD_UNITS), "the shipped file documents every field"


targets = st.builds(
    HardwareTarget,
    name=st.sampled_from(["behavioral", "sky130-tt", "x"]),
    temperature_c=st.floats(-40, 125),
    kappa=st.floats(0.55, 0.9),
    i_unit=st.floats(1e-11, 1e-6),
    t_unit=st.floats(1e-6, 1.0),
    i_min=st.floats(1e-14, 1e-12),
    c_max=st.floats(1e-11, 1e-9),
)


@settings(max_examples=30, deadline=None)
@given(target=targets)
def test_file_round_trip_yaml_and_json(tmp_path_factory, target):
    folder = tmp_path_factory.mktemp("targets")
    (folder / "t.yaml").write_text(yaml.safe_dump(target.to_dict()))
    (folder / "t.json").write_text(json.dumps(target.to_dict()))
    assert HardwareTarget.from_file(folder / "t.yaml") == target
    assert HardwareTarget.from_file(folder / "t.json") == target
    assert load_target(folder / "t.yaml") == target


def test_values_with_units(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("temperature_c: 300.15 K\ni_unit: 2 nA\nt_unit: 500 us\nc_max: 50 pF\nvdd: 3.3 V\nv_rest: 1650 mV\nc_min: 20 fF\n")
    target = HardwareTarget.from_file(path)
    assert target.temperature_c == pytest.approx(27.0)
    assert (target.i_unit, target.t_unit, target.c_max, target.vdd, target.v_rest, target.c_min) == (2e-9, 500e-6, 50e-12, 3.3, 1.65, 20e-15)


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("i_unit: 1 nA\nbogus_key: 3\n", "bogus_key", "unknown key"),
        ("i_unit: 1 nF\n", "i_unit", "wrong unit"),
        ("c_max: 100 pA\n", "c_max", "wrong unit"),
        ("temperature_c: 27 V\n", "temperature_c", "wrong unit"),
        ("kappa: .nan\n", "kappa", "finite"),
        ("i_max: .inf\n", "i_max", "finite"),
        ("kappa: -0.7\n", "kappa", "(0, 1]"),
        ("vdd: 1.8\nvss: 2.0\n", "vdd", "must exceed"),
        ("v_rest: 2.5\n", "v_rest", "between the rails"),
        ("i_min: 1 uA\n", "i_min", "i_min < i_max"),
        ("c_min: 1 nF\n", "c_min", "c_min < c_max"),
        ("t_unit: fast\n", "t_unit", "cannot read"),
        ("i_unit: [1, 2]\n", "i_unit", "expected a number"),
        ("kappa: true\n", "kappa", "expected a number"),
        ("swing_max: 30\n", "swing", "operating window"),
        ("linear_range: -3\n", "linear_range", "must be > 0"),
        ("linear_range: 3 V\n", "linear_range", "wrong unit"),
        ("- just\n- a list\n", "mapping", "mapping"),
    ],
)
def test_bad_target_files_name_the_key(tmp_path, text, key, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        HardwareTarget.from_file(path)
    message = str(info.value)
    assert key in message and words in message and str(path) in message


def test_unreadable_or_unparsable_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        HardwareTarget.from_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        HardwareTarget.from_file(broken)
    with pytest.raises(InputError, match="unknown hardware target 'sky999'"):
        load_target("sky999")


def test_direct_construction_validates_too():
    with pytest.raises(InputError, match="temperature_c"):
        HardwareTarget(temperature_c=-300.0)
    with pytest.raises(InputError, match="i_unit"):
        HardwareTarget(i_unit=math.nan)
    with pytest.raises(InputError, match="name"):
        HardwareTarget(name="")


def test_summary_is_json_and_has_units():
    summary = json.loads(json.dumps(HardwareTarget().summary()))
    assert summary["derived"]["v_s"] == pytest.approx(HardwareTarget().v_s)
    assert summary["units"]["c_max"] == "F" and summary["units"]["v_s"] == "V"

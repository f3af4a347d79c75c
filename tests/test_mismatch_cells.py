"""Per-cell spreads inside each neuron in the cell-level mismatch model (pure numpy).

Element references, the rest voltage (the leak cell), transduction thresholds and capacitors each take their own
spread; each filter follower's offset moves the references of the elements on that filter together (one draw per
filter), the leak conductance spreads, and each element's asymmetry (a constant current) moves the rest voltage. These are drawn last, so statistics without them draw exactly what they
drew before; sky130's statistics carry the ratios measured in situ; bad spreads are refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtc_analog.errors import InputError
from mtc_analog.hardware import load_target, map_network
from mtc_analog.hardware.mismatch import (ASYMMETRY_REL_FACTOR, ELEMENT_OFFSET_FACTOR, FILTER_OFFSET_FACTOR,
                                          LEAK_OFFSET_FACTOR, LEAK_REL_FACTOR, MismatchStatistics, apply_statistics, draw_statistics,
                                          statistics_for_target)
from mtc_analog.network import NetworkConfig, SpikingRegressor

TARGET = load_target("sky130")
BASE = MismatchStatistics(0.04, 2e-3, "test", sigma_offset_synapse=4e-3, sigma_offset_readout=4e-3)


@pytest.fixture(scope="module")
def circuit():
    spec = SpikingRegressor(NetworkConfig(hidden=(5,), seed=3, bias_init=0.3)).to_spec()
    return map_network(spec, TARGET)


def neurons(c):
    return c.layers[0].neurons


def test_filter_and_leak_draws_come_last_and_move_only_their_values(circuit):
    plain = apply_statistics(circuit, BASE, (1, 2))
    extra = apply_statistics(circuit, dataclasses.replace(BASE, sigma_offset_filter=7e-3, sigma_rel_leak=0.03), (1, 2))
    np.testing.assert_array_equal(plain.layers[0].bias_current, extra.layers[0].bias_current)  # synapse offsets kept
    np.testing.assert_array_equal(plain.readout.bias_current, extra.readout.bias_current)
    for a, b, nominal in zip(neurons(plain), neurons(extra), neurons(circuit)):
        assert (a.c_m, a.v_rest, a.transduction) == (b.c_m, b.v_rest, b.transduction)
        assert b.r_leak != a.r_leak
        moved = {}
        for ea, eb in zip(a.elements, b.elements):
            assert ea.tail_current == eb.tail_current
            if not ea.tail_current or nominal.filters.get(ea.timescale) is None:
                assert eb.v_ref == ea.v_ref  # absent, or reading the membrane itself: no filter between
            else:
                moved.setdefault(ea.timescale, set()).add(round(eb.v_ref - ea.v_ref, 15))
        assert moved and all(len(shifts) == 1 for shifts in moved.values())  # one draw per filter, shared
    # cells and drawn carry the same within-neuron draws
    cells, drawn = draw_statistics(circuit, dataclasses.replace(BASE, sigma_offset_filter=7e-3, sigma_rel_leak=0.03), (1, 2))
    assert [n.r_leak for n in neurons(cells)] == [n.r_leak for n in neurons(drawn)]
    assert [e.v_ref for n in neurons(cells) for e in n.elements] == [e.v_ref for n in neurons(drawn) for e in n.elements]


def test_each_cell_draws_its_own_spread(circuit):
    stats = MismatchStatistics(0.04, 2e-3, "test", sigma_offset_element=1.5e-3, sigma_offset_rest=7e-3,
                               sigma_offset_filter=7.5e-3, sigma_rel_leak=0.034, sigma_rel_capacitor=0.01)
    draws = [apply_statistics(circuit, stats, (9, k)) for k in range(300)]
    first = neurons(circuit)[0]
    live = {e.name: (i, e) for i, e in enumerate(first.elements) if e.tail_current}
    assert "fast" in live and first.filters.get("fast") is None and first.filters.get("slow") is not None

    def spread(values):
        return float(np.std(np.asarray(values) - np.mean(values)))

    rest = [neurons(d)[0].v_rest for d in draws]
    assert spread(rest) == pytest.approx(7e-3, rel=0.15)
    fast = [neurons(d)[0].elements[live["fast"][0]].v_ref for d in draws]
    assert spread(fast) == pytest.approx(1.5e-3, rel=0.15)  # the OTA alone: the fast element reads the membrane
    slow = next(name for name, (_, e) in live.items() if e.timescale == "slow")
    on_filter = [neurons(d)[0].elements[live[slow][0]].v_ref for d in draws]
    assert spread(on_filter) == pytest.approx(np.hypot(1.5e-3, 7.5e-3), rel=0.15)  # OTA and its filter
    assert spread(np.log([neurons(d)[0].r_leak for d in draws])) == pytest.approx(0.034, rel=0.15)
    assert spread(np.log([neurons(d)[0].c_m for d in draws])) == pytest.approx(0.01, rel=0.15)
    threshold = [neurons(d)[0].transduction.v_th for d in draws]
    assert spread(threshold) == pytest.approx(2e-3, rel=0.15)
    tail = np.log([neurons(d)[0].elements[live["fast"][0]].tail_current for d in draws])
    assert spread(tail) == pytest.approx(0.04, rel=0.15)


def test_element_asymmetry_moves_the_rest_voltage_by_its_current_through_the_leak(circuit):
    stats = MismatchStatistics(0.0, 0.0, "test", sigma_rel_asymmetry=0.03)
    first = neurons(circuit)[0]
    rest = np.array([neurons(apply_statistics(circuit, stats, (2, k)))[0].v_rest for k in range(400)]) - first.v_rest
    tails = np.array([e.tail_current for e in first.elements if e.tail_current])
    expected = 0.03 * np.sqrt(np.sum(tails ** 2)) * first.r_leak  # [V]: sum of asymmetry x tail, through R_leak
    assert float(np.std(rest)) == pytest.approx(expected, rel=0.15)
    assert [e.v_ref for e in neurons(apply_statistics(circuit, stats, (2, 0)))[0].elements] == [e.v_ref for e in first.elements]


def test_unset_cell_spreads_fall_back_and_zero_draws_nothing(circuit):
    stats = MismatchStatistics(0.04, 2e-3, "test")
    assert (stats.offset_element, stats.offset_rest, stats.rel_capacitor) == (2e-3, 2e-3, 0.04)
    zero = MismatchStatistics(0.0, 0.0, "zero", sigma_offset_element=0.0, sigma_offset_rest=0.0, sigma_rel_capacitor=0.0)
    same = apply_statistics(circuit, zero, (0, 1))
    assert [(n.v_rest, n.r_leak, n.c_m) for n in neurons(same)] == [(n.v_rest, n.r_leak, n.c_m) for n in neurons(circuit)]


def test_sky130_statistics_carry_the_in_situ_ratios_and_bad_spreads_are_refused():
    stats = statistics_for_target("sky130", TARGET)
    assert stats.offset_element == pytest.approx(ELEMENT_OFFSET_FACTOR * stats.sigma_offset)
    assert stats.offset_rest == pytest.approx(LEAK_OFFSET_FACTOR * stats.sigma_offset)
    assert stats.sigma_offset_filter == pytest.approx(FILTER_OFFSET_FACTOR * stats.sigma_offset)
    assert stats.sigma_rel_leak == pytest.approx(LEAK_REL_FACTOR * stats.sigma_rel)
    assert stats.sigma_rel_asymmetry == pytest.approx(ASYMMETRY_REL_FACTOR * stats.sigma_rel)
    # measured (benchmarks/offset_spread_sky130.py, 30 instances x 16 neurons; leak and filters at matching 4, every
    # cell as 4 copies): 0.72, 2.17, 2.2 mV, 0.96 %; currents 2 %
    assert stats.sigma_offset == pytest.approx(1.39e-3, rel=0.02) and stats.sigma_rel == pytest.approx(0.0199, rel=0.02)
    assert 0.5e-3 < stats.offset_element < 1.0e-3 and 1.7e-3 < stats.offset_rest < 2.7e-3
    assert 1.7e-3 < stats.sigma_offset_filter < 2.7e-3 and 0.0075 < stats.sigma_rel_leak < 0.0125
    assert stats.rel_capacitor < 0.005  # MIM capacitors: the transistor-level Monte Carlo draws none
    assert "filters 2.2" in stats.describe()
    half = stats.with_cell_spreads(stats.sigma_rel / 2, stats.sigma_offset / 2, "half")
    assert half.sigma_offset_filter == pytest.approx(stats.sigma_offset_filter / 2)
    assert half.sigma_rel_leak == pytest.approx(stats.sigma_rel_leak / 2)
    for field, bad in (("sigma_offset_filter", -1e-3), ("sigma_offset_rest", float("nan")), ("sigma_rel_leak", 1.5),
                       ("sigma_rel_capacitor", -0.1)):
        with pytest.raises(InputError):
            dataclasses.replace(stats, **{field: bad})

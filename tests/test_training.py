"""Training end to end on a tiny budget: outputs, best-on-validation, evaluation, exact resume."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from mtc_analog.errors import InputError, OutputExistsError
from mtc_analog.network import NetworkConfig
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.training.checkpoint import load_checkpoint
from mtc_analog.training.evaluate import evaluate_checkpoint
from mtc_analog.training.train import TrainConfig, train

TASK = TaskConfig(horizon=17, n_samples=500)
BUDGET = TrainConfig(epochs=3, batches_per_epoch=2, batch=4, window=20, washout=5, lr=1e-2, eval_washout=20)


@pytest.mark.parametrize("neuron", ["mtc", "lif", "adlif"])
def test_train_writes_metrics_checkpoints_and_figure(neuron, tmp_path):
    net = NetworkConfig(neuron=neuron, hidden=(4,), dt=0.5, substeps=1)
    metrics = train(net, TASK, BUDGET, tmp_path, progress=False)
    for name in ("best.safetensors", "last.safetensors", "metrics.json", "prediction.png"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_nrmse", "val_nrmse", "spike_rate", "duty_cycle", "synops_per_step", "train_wall_s", "definitions"):
        assert key in on_disk
    assert 0 < on_disk["test_nrmse"] < 10 and 0 <= on_disk["duty_cycle"] <= 1
    # the kept checkpoint is the best validation epoch, and evaluate recomputes the same numbers
    history = on_disk["history"]
    assert on_disk["val_nrmse"] == pytest.approx(min(h["val_nrmse"] for h in history), rel=1e-6)
    again = evaluate_checkpoint(tmp_path / "best.safetensors")
    assert again["test_nrmse"] == pytest.approx(metrics["test_nrmse"], rel=1e-6)
    assert again["spike_rate"] == pytest.approx(metrics["spike_rate"], rel=1e-6)
    assert load_checkpoint(tmp_path / "best.safetensors").metrics["test_nrmse"] == pytest.approx(metrics["test_nrmse"])


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    net = NetworkConfig(neuron="mtc", hidden=(3,), dt=0.5, substeps=1)
    straight = train(net, TASK, BUDGET, tmp_path / "straight", progress=False, make_figure=False)
    partial = train(net, TASK, BUDGET, tmp_path / "resumed", progress=False, make_figure=False, stop_after_epoch=0)
    assert partial["stopped_after_epoch"] == 0 and not (tmp_path / "resumed" / "metrics.json").exists()
    with pytest.raises(OutputExistsError, match="--resume"):
        train(net, TASK, BUDGET, tmp_path / "resumed", progress=False)
    resumed = train(net, TASK, BUDGET, tmp_path / "resumed", resume=True, progress=False, make_figure=False)
    a = load_checkpoint(tmp_path / "straight" / "last.safetensors").network.state_dict()
    b = load_checkpoint(tmp_path / "resumed" / "last.safetensors").network.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed["test_nrmse"] == pytest.approx(straight["test_nrmse"], rel=1e-9)


def test_refuses_to_overwrite_and_rejects_impossible_windows(tmp_path):
    net = NetworkConfig(neuron="lif", hidden=(3,), substeps=1)
    train(net, TASK, TrainConfig(epochs=1, batches_per_epoch=1, batch=2, window=10, washout=2, eval_washout=5),
          tmp_path, progress=False, make_figure=False)
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(OutputExistsError):
        train(net, TASK, BUDGET, tmp_path, progress=False)
    assert (tmp_path / "metrics.json").read_bytes() == before
    with pytest.raises(InputError, match="do not fit"):
        train(net, TASK, TrainConfig(window=10_000), tmp_path / "other", progress=False)
    with pytest.raises(InputError, match="resume"):
        train(net, TASK, BUDGET, tmp_path / "nothing", resume=True, progress=False)


def test_with_step_reintegrates_at_a_finer_dt_and_keeps_the_sample_period():
    from mtc_analog.network import SpikingRegressor
    from mtc_analog.training.evaluate import with_step

    net = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(4,), dt=0.5, substeps=2, init_jitter=0.1))
    x = torch.randn(30, 1, 1)
    with torch.no_grad():
        coarse = net(x).prediction
        same = with_step(net, 0.5, 2)(x).prediction
        fine = with_step(net, 0.25, 4)(x).prediction
        finer = with_step(net, 0.125, 8)(x).prediction
    torch.testing.assert_close(same, coarse)
    # Euler is first order: halving dt roughly halves the distance to the dt -> 0 limit
    assert (finer - fine).abs().max() < (fine - coarse).abs().max()
    with pytest.raises(InputError, match="sample period"):
        with_step(net, 0.25, 3)


def test_dead_neuron_penalty_pulls_only_neurons_that_never_reach_threshold():
    from mtc_analog.network import NetworkOutput
    from mtc_analog.training.train import dead_neuron_penalty

    config = NetworkConfig(hidden=(3,))  # clip transduction: spike level U_th = 1.5
    u = torch.zeros(10, 2, 3)
    u[:, :, 0] = 0.5  # dead: peak 0.5, 1.0 below threshold
    u[4, 1, 1] = 2.0  # spikes once: no penalty
    u[:, :, 2] = 1.2  # dead: peak 1.2, 0.3 below
    u[0, 0, 2] = 3.0  # ...except during the washout, which is not counted
    u.requires_grad_(True)
    output = NetworkOutput(torch.zeros(10, 2, 1), [torch.zeros(10, 2, 3)], [u], torch.zeros(10, 2, 1))
    penalty = dead_neuron_penalty(output, config, start_step=1)
    assert penalty.item() == pytest.approx((1.0 ** 2 + 0.0 + 0.3 ** 2) / 3)
    penalty.backward()
    per_neuron = u.grad.sum(dim=(0, 1))
    assert per_neuron[0] < 0 and per_neuron[2] < 0  # raising a dead neuron's peak lowers the penalty
    assert per_neuron[1] == 0 and u.grad[0].abs().sum() == 0


def test_run_from_before_the_dead_neuron_penalty_resumes_without_it(tmp_path):
    """A last.safetensors written before ``activity_floor`` existed trained without the penalty: resuming
    it must continue without it (the new default 0.1 would change the run), reaching the same weights."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    # neurons that start dead (bias far below rheobase), so that the penalty would act if it were on
    net = NetworkConfig(neuron="mtc", hidden=(3,), dt=0.5, substeps=1, input_scale=0.5, bias_init=-3.0)
    budget = dataclasses.replace(BUDGET, activity_floor=0.0)
    train(net, TASK, budget, tmp_path / "straight", progress=False, make_figure=False)
    train(net, TASK, budget, tmp_path / "old", progress=False, make_figure=False, stop_after_epoch=0)
    last = tmp_path / "old" / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        metadata = dict(f.metadata())
    training = json.loads(metadata["training"])
    del training["train_config"]["activity_floor"]  # as written before the option existed
    metadata["training"] = json.dumps(training)
    save_file(load_file(str(last)), str(last), metadata=metadata)
    train(net, TASK, BUDGET, tmp_path / "old", resume=True, progress=False, make_figure=False)
    a = load_checkpoint(tmp_path / "straight" / "last.safetensors").network.state_dict()
    b = load_checkpoint(tmp_path / "old" / "last.safetensors").network.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_init_from_starts_at_the_checkpoints_network_and_task(tmp_path):
    """``init_from``: the new run starts with the checkpoint's architecture, parameters and task (the given network
    and task are replaced; a vanishing learning rate then leaves the parameters where they were), and records the
    source; a checkpoint of another neuron type is refused in one line."""
    source_net = NetworkConfig(neuron="mtc", hidden=(3,), dt=0.5, substeps=1)
    train(source_net, TASK, BUDGET, tmp_path / "source", progress=False, make_figure=False)
    source = tmp_path / "source" / "best.safetensors"
    other_net = NetworkConfig(neuron="mtc", hidden=(5,), dt=0.25, substeps=2)
    other_task = TaskConfig(horizon=84, n_samples=500)
    budget = dataclasses.replace(BUDGET, epochs=1, lr=1e-12, init_from=str(source))
    metrics = train(other_net, other_task, budget, tmp_path / "tuned", progress=False, make_figure=False)
    tuned = load_checkpoint(tmp_path / "tuned" / "best.safetensors")
    start = load_checkpoint(source)
    assert tuned.network.config.hidden == (3,) and tuned.network.config.dt == 0.5 and tuned.task.horizon == 17
    a, b = start.network.state_dict(), tuned.network.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    assert metrics["test_nrmse"] == pytest.approx(start.metrics["test_nrmse"], rel=1e-4)
    assert tuned.training["train_config"]["init_from"] == str(source)
    with pytest.raises(InputError, match="--neuron mtc"):
        train(NetworkConfig(neuron="lif", hidden=(3,)), TASK, budget, tmp_path / "lif", progress=False)
    assert not (tmp_path / "lif").exists()  # refused before the output directory was made


def test_swing_penalty_is_zero_inside_the_limit_and_pulls_outside_back():
    """P = mean over neurons of <relu(|U_m - U_rest| - L)^2>: 0 (and no gradient) while every membrane is within L of
    rest; beyond it, the exact value and gradient of the formula."""
    from mtc_analog.training.swing import membrane_swing_penalty

    inside = torch.tensor([[[0.5, -2.9]], [[2.99, 1.0]]], requires_grad=True)  # (T 2, B 1, N 2), rest 0, L 3
    value = membrane_swing_penalty([inside], [torch.tensor(0.0)], 3.0)
    value.backward()
    assert value.item() == 0.0 and torch.count_nonzero(inside.grad) == 0
    outside = torch.tensor([[[4.0, 1.0]], [[0.0, -5.0]], [[2.0, 2.0]]], requires_grad=True)  # rest 1, L 2
    value = membrane_swing_penalty([outside], [torch.tensor(1.0)], 2.0, start_step=1)  # the first step is skipped
    value.backward()
    # neuron 0: steps 1-2 excursions 1, 1: inside; neuron 1: 6 -> 4^2 = 16 and 1: inside -> mean 8; over neurons: 4
    assert value.item() == pytest.approx(4.0)
    expected = torch.zeros_like(outside)
    expected[1, 0, 1] = 2 * 4.0 * -1 / 2 / 2  # d/dU of (|U - 1| - 2)^2 at U = -5, / 2 steps / 2 neurons
    torch.testing.assert_close(outside.grad, expected)


def test_swing_of_counts_excursions_from_each_layers_rest():
    """How far membranes go: per neuron the largest |U - U_rest|, neurons and neuron-steps beyond the limit."""
    from mtc_analog.training.swing import swing_of

    layer0 = np.array([[0.0, 4.0], [1.0, -1.0], [3.5, 0.0]])  # (K 3, N 2), rest 0.5
    layer1 = np.array([[-3.0], [0.0], [0.0]])  # rest -1: excursions 2, 1, 1
    found = swing_of([layer0, layer1], [0.5, -1.0], 2.5)
    assert found["max_excursion"] == 3.5 and found["median_peak_excursion"] == 3.0  # peaks 3.0, 3.5, 2.0
    assert found["neurons_beyond"] == 2 and found["share_beyond"] == pytest.approx(2 / 9)  # 3.5 and 3.0


def test_swing_advice_suggests_the_penalty_only_when_membranes_often_leave_the_range():
    from mtc_analog.training.swing import SWING_WARN_SHARE, swing_advice

    swing = {"max_excursion": 4.2, "limit": 3.0, "share_beyond": SWING_WARN_SHARE + 0.01}
    assert "4.20 V_s" in swing_advice(swing) and "--swing-penalty 1" in swing_advice(swing)
    assert "--swing-penalty" not in swing_advice({**swing, "share_beyond": SWING_WARN_SHARE - 0.01})


def test_swing_penalty_keeps_membranes_nearer_rest(tmp_path):
    """Trained with a strong swing penalty, the same network and seed spend less time beyond the limit than without,
    and metrics.json says how far the membranes go; the limit comes from the target when not given."""
    from mtc_analog.training.swing import swing_report

    net = NetworkConfig(neuron="mtc", hidden=(6,), dt=0.5, substeps=1)
    budget = dataclasses.replace(BUDGET, epochs=4, lr=5e-2)
    free = train(net, TASK, budget, tmp_path / "free", progress=False, make_figure=False)
    held = train(net, TASK, dataclasses.replace(budget, swing_penalty=100.0, swing_limit=2.0), tmp_path / "held",
                 progress=False, make_figure=False)
    assert free["membrane_swing"]["limit_source"].startswith("not penalised") and held["membrane_swing"]["limit"] == 2.0
    task = make_task(TASK)
    reports = [swing_report(load_checkpoint(tmp_path / run / "best.safetensors").network, task, 2.0, 20)
               for run in ("free", "held")]
    # measured: 0.61 -> 0.43 of neuron-steps beyond 2 V_s, the largest excursion 5.1 -> 4.3 V_s
    assert reports[1]["share_beyond"] < 0.85 * reports[0]["share_beyond"], reports
    assert reports[1]["max_excursion"] < reports[0]["max_excursion"], reports
    on_disk = json.loads((tmp_path / "held" / "metrics.json").read_text())
    assert on_disk["membrane_swing"]["max_excursion"] > 0 and "membrane_swing" in on_disk["definitions"]
    assert load_checkpoint(tmp_path / "held" / "best.safetensors").training["train_config"]["swing_penalty"] == 100.0
    from_target = dataclasses.replace(budget, epochs=1, swing_penalty=1.0, hardware_target="sky130")
    metrics = train(net, TASK, from_target, tmp_path / "sky", progress=False, make_figure=False)
    assert metrics["membrane_swing"]["limit"] == 3.0  # targets/sky130.yaml linear_range

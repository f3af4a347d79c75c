"""Discretisation gap (known answers), pruning to the target's floor, old checkpoints, liveness of
every MTC parameter."""


import pytest
import torch

from mtc_analog.hardware import enforce_ranges, load_target, map_network
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.training.checkpoint import load_checkpoint, save_checkpoint
from mtc_analog.training.fidelity_gap import (GAP_TOLERANCE, discretisation_gap, gap_of_checkpoint, gap_warning,
                                              refined_network)
from mtc_analog.training.realisable import prune_unrealisable

TASK_CFG = TaskConfig(horizon=17, n_samples=1200)


@pytest.fixture(scope="module")
def task():
    return make_task(TASK_CFG)


def _net(**kw):
    base = dict(hidden=(4,), seed=3, input_scale=2.0)
    return SpikingRegressor(NetworkConfig(**{**base, **kw}))


def test_zero_readout_has_zero_gap(task):
    net = _net(method="euler", dt=0.5, substeps=2)
    with torch.no_grad():
        net.readout.weight.zero_()
        net.readout.bias.zero_()
    assert discretisation_gap(net, task, samples=60, washout=20)["gap"] == 0.0


def test_euler_gap_shrinks_linearly_with_dt_and_rk4_is_far_smaller(task):
    gaps = {}
    for dt in (0.2, 0.1, 0.05):
        net = _net(method="euler", dt=dt, substeps=round(1 / dt))
        gaps[dt] = discretisation_gap(net, task, samples=80, washout=40)["gap"]
    assert 1.5 < gaps[0.2] / gaps[0.1] < 2.7 and 1.5 < gaps[0.1] / gaps[0.05] < 2.7, gaps
    default = discretisation_gap(_net(), task, samples=80, washout=40)
    assert default["model"]["method"] == "rk4" and default["reference"]["method"] == "rk4"
    assert default["gap"] < GAP_TOLERANCE and default["gap"] < 0.2 * gaps[0.05], (default["gap"], gaps)


def test_refined_network_keeps_weights_and_sample_period():
    net = _net()
    fine = refined_network(net, 8)
    assert fine.config.dt == net.config.dt / 8 and fine.config.sample_period == net.config.sample_period
    torch.testing.assert_close(fine.readout.weight, net.readout.weight)


def test_gap_warning_names_the_fix():
    assert gap_warning({"gap": 0.01}) is None and gap_warning({"gap": None}) is None
    line = gap_warning({"gap": 0.4, "model": {"dt": 0.5, "method": "euler"}})
    assert "0.400 > 0.02" in line and "retrain" in line and "\n" not in line


def test_old_checkpoint_loads_with_the_euler_lowpass_and_its_gap_is_computed(tmp_path, task):
    """A checkpoint written before this change: no 'lowpass' field (Euler low-pass), no gap in its metrics."""
    net = _net(method="euler", dt=0.5, substeps=2, lowpass="euler")
    config = net.config.to_dict()
    del config["lowpass"]
    path = save_checkpoint(tmp_path / "old.safetensors", net, config, TASK_CFG, metrics={"test_nrmse": 0.5})
    loaded = load_checkpoint(path)
    assert loaded.network.config.lowpass == "euler"
    gap = gap_of_checkpoint(loaded)
    assert gap["computed_on_load"] and gap["gap"] > GAP_TOLERANCE


def test_pruning_removes_devices_below_the_floor_so_export_needs_no_clip():
    target = load_target("behavioral")  # i_min 1 pA at I_u = 1 nA: floor 1e-3
    net = _net()
    with torch.no_grad():
        net.readout.weight[0, 1] = 1.18e-4  # 118 fA: refused by export before
        net.projections[0].bias[2] = -3e-4
        net.layers[0].raw_gains["a_s_minus"][0] = -12.0  # softplus: 6e-6
    with pytest.raises(Exception, match="below the minimum"):
        enforce_ranges(map_network(net.to_spec(), target), target)
    result = prune_unrealisable(net, target)
    assert result["n_pruned"] == 3 and result["range_violations"] == []
    assert float(net.readout.weight.detach()[0, 1]) == 0.0 and float(net.projections[0].bias.detach()[2]) == 0.0
    assert float(net.layers[0].parameters_record().a_s_minus[0].detach()) == 0.0
    circuit, changes = enforce_ranges(map_network(net.to_spec(), target), target)  # no clip needed
    assert all(c.new == 0 for c in changes)


def test_every_raw_parameter_trains_from_the_default_init(task):
    """a_s_minus used to start at 0 (softplus raw -30, gradient ~1e-13): it and d_s_minus never moved."""
    net = SpikingRegressor(NetworkConfig(hidden=(6,), seed=0))
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.from_numpy(task.train.x[:120]).reshape(4, 30, 1).transpose(0, 1).contiguous()
    y = torch.from_numpy(task.train.y[:120]).reshape(4, 30, 1).transpose(0, 1).contiguous()
    for _ in range(3):
        opt.zero_grad()
        torch.mean((net(x).prediction - y) ** 2).backward()
        opt.step()
    for name, p in net.named_parameters():
        moved = float((p.detach() - before[name]).abs().max())
        assert moved > 1e-3, f"{name} moved only {moved:.2g}"


def test_export_of_an_old_euler_checkpoint_prints_one_gap_warning_with_the_fix(tmp_path, capsys):
    from mtc_analog.cli import main

    net = _net(method="euler", dt=0.5, substeps=2, lowpass="euler", hidden=(3,))
    config = net.config.to_dict()
    del config["lowpass"]
    path = save_checkpoint(tmp_path / "old.safetensors", net, config, TASK_CFG, metrics={"test_nrmse": 0.5})
    assert main(["export", str(path), "--out", str(tmp_path / "exp"), "--samples", "20", "--clip"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "discretisation gap" in line]
    assert len(warnings) == 1 and "retrain" in warnings[0] and "computed now" in warnings[0]

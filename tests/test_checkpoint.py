"""Checkpoints: round trip, optimizer state, and every way a file can be bad."""

import json

import pytest
import torch
from safetensors.torch import save_file

from mtc_analog.errors import CheckpointError
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.tasks.mackey_glass import TaskConfig
from mtc_analog.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def saved(tmp_path):
    net = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(4,), init_jitter=0.1, train_timescales=True))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(10, 2, 1)).prediction.sum().backward()
    optimizer.step()
    task = TaskConfig(horizon=17, n_samples=800)
    path = save_checkpoint(tmp_path / "ck.safetensors", net, net.config, task, metrics={"test_nrmse": 0.5},
                           training={"epoch": 3}, optimizer=optimizer)
    return path, net, task, optimizer


def test_round_trip_restores_network_task_metrics_and_optimizer(saved):
    path, net, task, optimizer = saved
    ck = load_checkpoint(path)
    assert ck.task == task and ck.metrics == {"test_nrmse": 0.5} and ck.training == {"epoch": 3}
    assert ck.config == net.config.to_dict()
    x = torch.randn(12, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ck.network(x).prediction, net(x).prediction)
    restored = torch.optim.Adam(ck.network.parameters(), lr=1e-3)
    restored.load_state_dict(ck.optimizer_state)
    original, loaded = optimizer.state_dict()["state"], restored.state_dict()["state"]
    assert set(original) == set(loaded)
    for index in original:
        torch.testing.assert_close(original[index]["exp_avg_sq"], loaded[index]["exp_avg_sq"])


def test_file_is_safetensors_with_json_metadata_not_pickle(saved):
    path = saved[0]
    head = path.read_bytes()[:8]
    header_len = int.from_bytes(head, "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert header["__metadata__"]["format"] == "mtc_analog.checkpoint"
    assert json.loads(header["__metadata__"]["network_config"])["neuron"] == "mtc"


def test_truncated_file(saved, tmp_path):
    data = saved[0].read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an mtc_analog checkpoint"):
        load_checkpoint(foreign)


def test_nan_parameters_and_mismatched_tensors(saved, tmp_path):
    path, net, task, _ = saved
    with torch.no_grad():
        net.readout.bias.fill_(float("nan"))
    bad = save_checkpoint(tmp_path / "nan.safetensors", net, net.config, task)
    with pytest.raises(CheckpointError, match="readout.bias"):
        load_checkpoint(bad)
    other = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(5,)))
    wrong = save_checkpoint(tmp_path / "wrong.safetensors", other, net.config, task)  # config says 4 neurons
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(wrong)


def test_disk_full_leaves_the_previous_checkpoint_intact_and_names_the_file(tmp_path):
    """A real full disk (64 KiB tmpfs): safetensors' own error becomes an OSError (ENOSPC) on the target."""
    import errno
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (needs root): no small disk to fill")
    try:
        task = TaskConfig(horizon=17, n_samples=800)
        small = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(4,)))
        path = save_checkpoint(mnt / "last.safetensors", small, small.config, task, training={"epoch": 0})
        before = path.read_bytes()
        big = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(4096,)))  # ~100 KiB of tensors
        with pytest.raises(OSError) as info:
            save_checkpoint(path, big, big.config, task, training={"epoch": 1})
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
        assert path.read_bytes() == before and load_checkpoint(path).training == {"epoch": 0}
        assert sorted(p.name for p in mnt.iterdir()) == ["last.safetensors"]  # no partial file left
    finally:
        subprocess.run(["umount", str(mnt)], check=True)

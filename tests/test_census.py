"""Regime census: the docs/reference.md §4 presets classify as themselves, a non-excitable neuron is silent, and a
trained network's census counts every hidden neuron; LIF networks are refused."""


import pytest

from mtc_analog.errors import InputError
from mtc_analog.network import NetworkConfig, SpikingRegressor
from mtc_analog.neuron.equations import MTCParameters
from mtc_analog.neuron.regimes import PRESETS
from mtc_analog.tasks.mackey_glass import TaskConfig, make_task
from mtc_analog.training.census import census, census_line, classify_neurons


def test_census_protocol_classifies_the_spec_presets_as_themselves():
    presets = list(PRESETS.values())
    records = classify_neurons([p.params for p in presets], [p.i0 for p in presets], [p.i1 for p in presets],
                               t_step=[p.t_step for p in presets], t_end=[p.t_end for p in presets], dt=presets[0].dt)
    assert [r["label"] for r in records] == [p.expected_label for p in presets]


def test_non_excitable_neuron_is_silent():
    """a_f < 1: no negative-slope region of the fast I-V curve, no spikes; pushed above 0 by a strong
    step it only settles on a plateau, which the census does not count as a spike."""
    passive = MTCParameters(a_f=0.5, a_s_plus=1.0, a_s_minus=0.0, a_us=0.0, tau_s=10.0, tau_us=100.0)
    records = classify_neurons([passive, passive], [-2.0, -2.0], [0.5, 3.0])
    assert [r["label"] for r in records] == ["silent", "silent"]


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(horizon=17, n_samples=1500))


def test_census_of_a_network_counts_every_hidden_neuron(task):
    net = SpikingRegressor(NetworkConfig(hidden=(5,), seed=1))
    result = census(net, task, samples=60, washout=20)
    assert result["n_neurons"] == 5 and sum(result["counts"].values()) == 5
    assert len(result["labels"][0]) == 5
    assert all(label in result["counts"] for label in result["labels"][0])
    assert census_line(result["counts"]).count(",") == 4


def test_census_on_a_lif_network_is_a_clear_error(task):
    net = SpikingRegressor(NetworkConfig(neuron="lif", hidden=(3,)))
    with pytest.raises(InputError, match="census needs an MTC network"):
        census(net, task)


def test_census_command_writes_json_and_figure_and_refuses_lif(tmp_path, capsys):
    from mtc_analog.cli import main
    from mtc_analog.training.checkpoint import save_checkpoint

    task_cfg = TaskConfig(horizon=17, n_samples=1500)
    mtc = save_checkpoint(tmp_path / "mtc.safetensors", SpikingRegressor(NetworkConfig(hidden=(3,))), None, task_cfg)
    assert main(["census", str(mtc), "--out", str(tmp_path / "c")]) == 0
    assert "3 hidden neurons:" in capsys.readouterr().out
    assert (tmp_path / "c" / "census.png").stat().st_size > 0
    lif = save_checkpoint(tmp_path / "lif.safetensors", SpikingRegressor(NetworkConfig(neuron="lif", hidden=(3,))),
                          None, task_cfg)
    assert main(["census", str(lif)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs an MTC checkpoint" in err and len(err.splitlines()) == 1

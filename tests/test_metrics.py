"""NRMSE and crossing counts."""

import numpy as np
import pytest
import torch

from mtc_analog.errors import InputError
from mtc_analog.neuron.spikes import upward_crossings
from mtc_analog.tasks.metrics import mse, nrmse, rmse


def test_nrmse_reference_points():
    rng = np.random.default_rng(0)
    target = rng.normal(2.0, 3.0, size=(500, 1))
    assert nrmse(target, target) == 0.0
    assert nrmse(np.full_like(target, target.mean()), target) == pytest.approx(1.0)
    assert nrmse(target + 0.3, target) == pytest.approx(0.3 / target.std())
    assert rmse(target + 0.3, target) == pytest.approx(0.3)
    assert mse(torch.zeros(3), torch.ones(3)) == pytest.approx(1.0)


def test_nrmse_rejects_bad_input():
    with pytest.raises(InputError, match="shape"):
        nrmse(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError, match="NaN"):
        nrmse(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="constant"):
        nrmse(np.zeros(3), np.ones(3))


def test_upward_crossings_of_a_sine():
    t = np.linspace(0, 10 * 2 * np.pi, 5001)
    u = np.sin(t - 0.1)[:, None]
    assert upward_crossings(u, 0.5).sum() == 10
    assert upward_crossings(u, 2.0).sum() == 0


def test_tasks_metrics_re_exports_the_one_crossing_counter():
    from mtc_analog.neuron import spikes
    from mtc_analog.tasks import metrics

    assert metrics.upward_crossings is spikes.upward_crossings


def test_non_finite_values_are_counted_in_the_error():
    # the message says how many values are bad, in the prediction and in the target
    pred = np.array([0.0, np.nan, np.inf, 1.0, 2.0])  # 2 bad of 5: the count cannot be read off the good ones
    with pytest.raises(InputError, match=r"prediction holds 2 NaN/Inf"):
        nrmse(pred, np.arange(5.0))
    with pytest.raises(InputError, match=r"target holds 1 NaN/Inf"):
        nrmse(np.arange(4.0), np.array([0.0, 1.0, np.nan, 3.0]))

"""Mackey-Glass generator checked against an independent integration, splits, z-scoring, errors."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from mtc_analog.errors import InputError
from mtc_analog.tasks.mackey_glass import (TaskConfig, make_task, mackey_glass_series, sample_windows,
                                           tiled_windows)


def method_of_steps(t_end: float, tau=17.0, beta=0.2, gamma=0.1, n=10.0, x0=1.2):
    """Independent reference: scipy's adaptive RK45 on each delay interval [k tau, (k+1) tau],
    reading the delayed value from the previous interval's dense output (exact history)."""
    pieces = []

    def history(t):
        if t <= 0:
            return x0
        k = min(int(t // tau), len(pieces) - 1)
        return float(pieces[k].sol(t)[0])

    x_start, t0 = x0, 0.0
    while t0 < t_end:
        t1 = t0 + tau
        sol = solve_ivp(lambda t, x: [beta * history(t - tau) / (1 + history(t - tau) ** n) - gamma * x[0]],
                        (t0, t1), [x_start], method="RK45", rtol=1e-11, atol=1e-13, dense_output=True)
        pieces.append(sol)
        x_start, t0 = float(sol.y[0, -1]), t1
    return lambda t: np.array([history(ti) for ti in np.atleast_1d(t)])


def test_rk4_series_matches_method_of_steps_reference():
    n = 120  # 120 time units (7 delays) keeps chaotic error growth negligible
    ours = mackey_glass_series(n, h=0.1, drop=0.0, sample_every=1.0)
    reference = method_of_steps(n)(np.arange(n, dtype=float))
    assert ours[0] == pytest.approx(1.2)
    err = np.max(np.abs(ours - reference))
    assert err < 1e-4, err
    # and the series genuinely moves (not a trivially constant match)
    assert np.ptp(reference) > 0.3


def test_rk4_converges_as_step_shrinks():
    n = 100
    reference = method_of_steps(n)(np.arange(n, dtype=float))
    err_coarse = np.max(np.abs(mackey_glass_series(n, h=0.1, drop=0.0) - reference))
    err_fine = np.max(np.abs(mackey_glass_series(n, h=0.05, drop=0.0) - reference))
    assert err_fine < err_coarse


def test_splits_are_contiguous_and_zscored_with_train_stats():
    cfg = TaskConfig(horizon=17, n_samples=600)
    task = make_task(cfg)
    n_pairs = cfg.n_samples - cfg.horizon
    assert len(task.train) + len(task.val) + len(task.test) == n_pairs
    assert task.val.start == len(task.train) and task.test.start == len(task.train) + len(task.val)
    z = (task.series - task.mean) / task.std
    np.testing.assert_allclose(task.train.x[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(task.train.x[:, 0].std(), 1.0, atol=1e-5)
    # the target is the input H samples ahead, in every split
    for split in (task.train, task.val, task.test):
        np.testing.assert_allclose(split.x[:, 0], z[split.start:split.start + len(split)], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(split.y[:, 0], z[split.start + 17:split.start + 17 + len(split)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(task.denormalise(task.test.x[:, 0]), task.series[task.test.start:task.test.start + len(task.test)],
                               rtol=1e-5)


def test_make_task_is_deterministic():
    a, b = make_task(TaskConfig(n_samples=500, horizon=5)), make_task(TaskConfig(n_samples=500, horizon=5))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)


@pytest.mark.parametrize("horizon", [0, 500, 10_000])
def test_bad_horizon_is_an_input_error(horizon):
    with pytest.raises(InputError, match="horizon"):
        make_task(TaskConfig(n_samples=500, horizon=horizon))


def test_bad_splits_and_step_are_input_errors():
    with pytest.raises(InputError, match="split"):
        make_task(TaskConfig(n_samples=500, horizon=5, train_fraction=0.7, val_fraction=0.3))
    with pytest.raises(InputError, match="rk4_step"):
        make_task(TaskConfig(n_samples=500, horizon=5, rk4_step=0.3))


def test_windows_are_time_major_and_aligned():
    task = make_task(TaskConfig(n_samples=500, horizon=5))
    x, y = sample_windows(task.train.x, task.train.y, 30, 7, np.random.default_rng(0))
    assert x.shape == (30, 7, 1) and y.shape == (30, 7, 1)
    xt, yt = tiled_windows(task.train.x, task.train.y, 30, 30)
    np.testing.assert_array_equal(xt[:, 1, 0], task.train.x[30:60, 0])
    with pytest.raises(InputError):
        sample_windows(task.train.x, task.train.y, 10_000, 1, np.random.default_rng(0))

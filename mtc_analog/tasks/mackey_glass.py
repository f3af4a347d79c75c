"""The Mackey-Glass prediction task (docs/reference.md §7): generator, contiguous splits, z-scoring, windows.

.. math::  \\dot x(t) = \\beta \\frac{x(t-\\tau)}{1 + x(t-\\tau)^n} - \\gamma x(t),
           \\quad \\beta = 0.2,\\ \\gamma = 0.1,\\ n = 10,\\ \\tau = 17

Integrated with fixed-step RK4 (step ``h``, ``tau/h`` an integer) on a history buffer; the delayed
value at a half step is the mean of its two neighbouring buffer points. Constant past
``x(t <= 0) = x0``; the first ``drop`` time units are discarded and one sample is kept every
``sample_every`` time units. Time is in Mackey-Glass time units (one sample = 1 by default).

Task: the network reads the z-scored x(t) as a stream and predicts the z-scored x(t + H).
Pairs (x(t), x(t+H)) are indexed by input time t and split contiguously (train, val, test in
time order, never shuffled). Both input and target are z-scored with the training split's
mean and std of x.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TaskConfig:
    """What defines a Mackey-Glass task instance. Deterministic: the same config, the same data."""

    horizon: int = 84  #: prediction horizon H [samples]
    n_samples: int = 4000  #: series length after the drop [samples]
    train_fraction: float = 0.6
    val_fraction: float = 0.1  #: the test split is the rest (last 30% by default)
    tau: float = 17.0  #: delay [MG time units]
    beta: float = 0.2
    gamma: float = 0.1
    exponent: float = 10.0
    x0: float = 1.2  #: constant past
    rk4_step: float = 0.1  #: integration step h [MG time units]
    drop: float = 1000.0  #: transient discarded [MG time units]
    sample_every: float = 1.0  #: sampling period [MG time units]
    seed: int = 0  #: seed of anything random derived from the task (window sampling)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown TaskConfig field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def validate(self) -> None:
        if self.n_samples < 10:
            raise InputError(f"n_samples = {self.n_samples} is too short (need >= 10)")
        if not 1 <= self.horizon < self.n_samples:
            raise InputError(
                f"horizon H = {self.horizon} samples must satisfy 1 <= H < n_samples = {self.n_samples} "
                f"(the series is only {self.n_samples} samples long); lower --horizon or raise n_samples"
            )
        if not (0 < self.train_fraction < 1 and 0 < self.val_fraction < 1 and self.train_fraction + self.val_fraction < 1):
            raise InputError(
                f"split fractions train={self.train_fraction}, val={self.val_fraction} must be in (0, 1) "
                "and leave a test split (train + val < 1)"
            )
        steps = self.tau / self.rk4_step
        if self.rk4_step <= 0 or self.rk4_step > 0.1 + 1e-12 or abs(steps - round(steps)) > 1e-9:
            raise InputError(f"rk4_step h = {self.rk4_step} must be in (0, 0.1] with tau/h an integer (tau = {self.tau})")
        every = self.sample_every / self.rk4_step
        if abs(every - round(every)) > 1e-9 or every < 1:
            raise InputError(f"sample_every = {self.sample_every} must be a positive multiple of h = {self.rk4_step}")
        if self.drop < 0:
            raise InputError(f"drop = {self.drop} must be >= 0")
        n_pairs = self.n_samples - self.horizon
        for name, count in split_sizes(n_pairs, self.train_fraction, self.val_fraction).items():
            if count < 1:
                raise InputError(
                    f"with n_samples = {self.n_samples} and horizon {self.horizon} the {name} split is empty; "
                    "lower the horizon or raise n_samples"
                )


def split_sizes(n_pairs: int, train_fraction: float, val_fraction: float) -> dict[str, int]:
    n_train = int(round(n_pairs * train_fraction))
    n_val = int(round(n_pairs * val_fraction))
    return {"train": n_train, "val": n_val, "test": n_pairs - n_train - n_val}


def mackey_glass_series(
    n_samples: int,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    exponent: float = 10.0,
    x0: float = 1.2,
    h: float = 0.1,
    drop: float = 1000.0,
    sample_every: float = 1.0,
) -> np.ndarray:
    """Integrate Mackey-Glass with RK4 on a history buffer; return ``n_samples`` samples (float64).

    Sample k is x(drop + k*sample_every).
    """
    delay = int(round(tau / h))
    every = int(round(sample_every / h))
    first = int(round(drop / h))
    n_steps = first + (n_samples - 1) * every
    # buffer[i] = x(t_i) with t_i = (i - delay) * h; the first delay+1 entries are the constant past.
    x = np.empty(n_steps + delay + 1)
    x[: delay + 1] = x0

    def f(x_now: float, x_delayed: float) -> float:
        return beta * x_delayed / (1.0 + x_delayed**exponent) - gamma * x_now

    for i in range(delay, delay + n_steps):
        lag0, lag1 = x[i - delay], x[i - delay + 1]
        lag_half = 0.5 * (lag0 + lag1)
        xi = x[i]
        k1 = f(xi, lag0)
        k2 = f(xi + 0.5 * h * k1, lag_half)
        k3 = f(xi + 0.5 * h * k2, lag_half)
        k4 = f(xi + h * k3, lag1)
        x[i + 1] = xi + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[delay + first :: every][:n_samples].copy()


@dataclass(frozen=True)
class Split:
    """One contiguous split. ``x[k]`` is the z-scored input at sample ``start + k`` of the series,
    ``y[k]`` the z-scored target ``x(start + k + H)``."""

    name: str
    start: int  #: index of the first input sample in the series
    x: np.ndarray  #: (T, 1) float32
    y: np.ndarray  #: (T, 1) float32

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class TaskData:
    """A built task: the raw series, the z-scoring statistics and the three splits."""

    config: TaskConfig
    series: np.ndarray  #: (n_samples,) raw x, float64
    mean: float  #: training-split mean of x (z-scoring)
    std: float  #: training-split std of x (population)
    x: np.ndarray  #: (n_pairs, 1) z-scored input stream over all splits, float32
    y: np.ndarray  #: (n_pairs, 1) z-scored target stream, float32
    train: Split
    val: Split
    test: Split

    @property
    def n_in(self) -> int:
        return 1

    @property
    def n_out(self) -> int:
        return 1

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split {name!r}: expected train, val or test")
        return getattr(self, name)

    def denormalise(self, z: np.ndarray) -> np.ndarray:
        """Back to raw Mackey-Glass units."""
        return np.asarray(z) * self.std + self.mean


@functools.lru_cache(maxsize=16)
def _cached_series(n: int, tau: float, beta: float, gamma: float, exponent: float, x0: float, h: float,
                   drop: float, every: float) -> np.ndarray:
    series = mackey_glass_series(n, tau, beta, gamma, exponent, x0, h, drop, every)
    series.setflags(write=False)
    return series


def make_task(cfg: TaskConfig = TaskConfig()) -> TaskData:
    """Build (deterministically; the series is cached in memory) the task described by ``cfg``."""
    cfg.validate()
    series = _cached_series(cfg.n_samples, cfg.tau, cfg.beta, cfg.gamma, cfg.exponent, cfg.x0,
                            cfg.rk4_step, cfg.drop, cfg.sample_every)
    n_pairs = cfg.n_samples - cfg.horizon
    sizes = split_sizes(n_pairs, cfg.train_fraction, cfg.val_fraction)
    n_train = sizes["train"]
    mean = float(series[:n_train].mean())
    std = float(series[:n_train].std())
    z = (series - mean) / std
    x = z[:n_pairs, None].astype(np.float32)
    y = z[cfg.horizon : cfg.horizon + n_pairs, None].astype(np.float32)
    splits, start = {}, 0
    for name in ("train", "val", "test"):
        stop = start + sizes[name]
        splits[name] = Split(name, start, x[start:stop], y[start:stop])
        start = stop
    return TaskData(cfg, series, mean, std, x, y, **splits)


def sample_windows(x: np.ndarray, y: np.ndarray, length: int, count: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random contiguous windows of ``length`` samples, time-major: (length, count, n)."""
    total = x.shape[0]
    if length > total:
        raise InputError(f"window of {length} samples does not fit in a split of {total} samples; shorten --window")
    starts = rng.integers(0, total - length + 1, size=count)
    idx = starts[None, :] + np.arange(length)[:, None]
    return x[idx], y[idx]


def tiled_windows(x: np.ndarray, y: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``length`` samples starting at multiples of ``stride`` (time-major)."""
    total = x.shape[0]
    if length > total:
        raise InputError(f"window of {length} samples does not fit in a split of {total} samples")
    starts = np.arange(0, total - length + 1, stride)
    idx = starts[None, :] + np.arange(length)[:, None]
    return x[idx], y[idx]

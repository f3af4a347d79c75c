"""Put circuit waveforms on the model's time grid, in model units.

ngspice returns waveforms on its own adaptive time points, in seconds and volts. Comparison needs
them (1) in model units — done only through the hardware target's inverse mapping
(:meth:`HardwareTarget.model_time`, :meth:`HardwareTarget.model_voltage`), so units cross the
model/circuit boundary in one place — and (2) on the model's grid: the discrete model's value after
step ``k`` (consuming the input held over ``[k dt, (k+1) dt)``) is compared with the circuit at
``t = (k+1) dt``. Resampling is linear interpolation, which is exact to O(TMAX^2) when the simulator
step is pinned to at most dt (docs/reference.md §9).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def model_time_grid(n_steps: int, dt: float) -> np.ndarray:
    """Times [t_u] at which the discrete model's states live: ``(k+1) dt`` for k = 0..n_steps-1."""
    return dt * np.arange(1, n_steps + 1, dtype=float)


def resample(time: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (T,) or (T, N) sampled at ``time`` onto ``grid``.

    ``time`` must be non-decreasing (ngspice may repeat a time point at a breakpoint; that is
    fine for np.interp). The grid must lie inside the simulated span (no extrapolation).
    """
    time = np.asarray(time, dtype=float)
    values = np.asarray(values, dtype=float)
    grid = np.asarray(grid, dtype=float)
    if values.shape[0] != time.shape[0]:
        raise ValueError(f"{time.shape[0]} time points but {values.shape[0]} values")
    if np.any(np.diff(time) < 0):
        raise ValueError("time points must be non-decreasing")
    span = time[-1] - time[0]
    tolerance = 1e-9 * max(abs(span), 1.0)
    if grid[0] < time[0] - tolerance or grid[-1] > time[-1] + tolerance:
        raise ValueError(
            f"model grid [{grid[0]:g}, {grid[-1]:g}] runs outside the simulated span [{time[0]:g}, {time[-1]:g}]: "
            "simulate longer"
        )
    if values.ndim == 1:
        return np.interp(grid, time, values)
    return np.stack([np.interp(grid, time, values[:, i]) for i in range(values.shape[1])], axis=1)


def to_model_units(target: Any, time_s: np.ndarray, volts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Circuit time [s] and node voltages [V] -> model time [t_u] and voltages [V_s] via ``target``."""
    return np.asarray(target.model_time(np.asarray(time_s, dtype=float))), np.asarray(
        target.model_voltage(np.asarray(volts, dtype=float))
    )

"""Reference solution of the continuous-time MTC equations (scipy ``solve_ivp``, tight tolerances).

It integrates the *same* :func:`mtc_analog.neuron.equations.rhs` as the discrete step, under the
same piecewise-constant input: ``i_in[k]`` is held on ``[k*dt, (k+1)*dt)``. It is what the
discrete model converges to as ``dt -> 0`` (with the input held fixed on its own grid), and so it
separates discretisation error from anything else (docs/reference.md §10).

Each run of constant input is integrated as one segment, restarted at the input's jumps (an
adaptive integrator stepping over a discontinuity loses its error control). The solution is
reported on the step grid ``t_k = k*dt``, ``k = 0..T``: index ``k+1`` corresponds to the
discrete model's state after consuming ``i_in[k]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.integrate import solve_ivp

from .equations import FILTERS, MTCParameters, MTCState, as_numpy, rhs, validate_parameters
from .iv import _numpy_params


class ReferenceSolution(NamedTuple):
    """Time grid [t_u], shape (T+1,), and the state on it (each field (T+1, N) [V_s])."""

    time: np.ndarray
    state: MTCState


def reference_rollout(
    i_in: Any,
    params: MTCParameters,
    dt: float,
    state: MTCState | None = None,
    filter: str = "linear",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str = "DOP853",
) -> ReferenceSolution:
    """Integrate N independent neurons under a piecewise-constant input sampled every ``dt``.

    ``i_in``: shape (T,) or (T, N) (numpy or torch). Parameters may be scalars or per-neuron
    arrays of shape (N,). ``state`` defaults to every variable at ``U_rest``. With ``tau_f = 0``
    the returned ``u_f`` is ``u_m`` (the fast element reads the membrane directly).
    """
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}: expected one of {FILTERS}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    p = _numpy_params(params)
    validate_parameters(p)
    current = as_numpy(i_in)
    if current.ndim == 1:
        current = current[:, None]
    if current.ndim != 2 or current.shape[0] == 0:
        raise ValueError(f"i_in must have shape (T,) or (T, N) with T >= 1, got {current.shape}")
    if not np.all(np.isfinite(current)):
        raise ValueError("i_in contains NaN or Inf")
    n_steps, n = current.shape
    if state is None:
        x0 = np.tile(np.broadcast_to(np.asarray(p.u_rest, dtype=float), (n,)), 4)
    else:
        x0 = np.concatenate([np.broadcast_to(as_numpy(v), (n,)) for v in state])

    def f(_t: float, x: np.ndarray, drive: np.ndarray) -> np.ndarray:
        rate = rhs(MTCState(*x.reshape(4, n)), p, drive, filter)
        return np.concatenate([np.broadcast_to(np.asarray(r, dtype=float), (n,)) for r in rate])

    time = np.arange(n_steps + 1) * dt
    out = np.empty((n_steps + 1, 4 * n))
    out[0] = x0
    # Segments of constant input: [start, stop) in step indices.
    changes = np.flatnonzero(np.any(current[1:] != current[:-1], axis=1)) + 1
    bounds = np.concatenate([[0], changes, [n_steps]])
    x = x0
    for start, stop in zip(bounds[:-1], bounds[1:]):
        grid = time[start : stop + 1]
        sol = solve_ivp(f, (grid[0], grid[-1]), x, method=method, t_eval=grid, rtol=rtol, atol=atol,
                        args=(current[start],))
        if not sol.success:
            raise RuntimeError(f"reference integration failed on [{grid[0]}, {grid[-1]}]: {sol.message}")
        out[start + 1 : stop + 1] = sol.y[:, 1:].T
        x = sol.y[:, -1]
    fields = out.reshape(n_steps + 1, 4, n)
    u_m, u_f, u_s, u_us = (fields[:, j, :] for j in range(4))
    u_f = np.where(np.asarray(p.tau_f) == 0, u_m, u_f)  # per neuron: tau_f = 0 means U_f is U_m
    return ReferenceSolution(time, MTCState(u_m, u_f, u_s, u_us))


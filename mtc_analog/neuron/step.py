"""Discrete-time MTC neuron: one pure functional step, a rollout, and the graded transduction.

The step is derived from :func:`mtc_analog.neuron.equations.rhs` (no second copy of the math).

Euler (the paper's scheme), every variable from the state at step t:

.. math::  X[t+1] = X[t] + dt\\,\\dot X(X[t], I_{in}[t])

Exact filters (``method="exact"``): the membrane is Euler, each filter is integrated exactly with
U_m held over the step — linear: ``U_x' = U_m + (U_x - U_m) e^{-dt/tau}``; OTA (tanh): ``sinh(U_x' -
U_m) = sinh(U_x - U_m) e^{-dt/tau}``.

Runge-Kutta (``method="heun"``, ``"rk4"``): the classic explicit schemes applied to the *whole* state
X = (U_m, U_f, U_s, U_us), every stage an evaluation of ``rhs`` with the input held over the step
(the input is piecewise constant, as in the reference and the circuit's PWL source):

* Heun (RK2, order 2): ``k1 = f(X)``, ``k2 = f(X + dt k1)``, ``X' = X + dt (k1 + k2)/2``;
* RK4 (order 4): ``k1 = f(X)``, ``k2 = f(X + dt/2 k1)``, ``k3 = f(X + dt/2 k2)``, ``k4 = f(X + dt k3)``,
  ``X' = X + dt (k1 + 2 k2 + 2 k3 + k4)/6``.

They converge to the continuous-time system the circuit integrates (docs/reference.md §3: at dt 0.25 RK4 keeps
spike coincidence 0.97 with the ODE, Euler 0.18). :func:`max_stable_dt` gives each method's step limit.

Transduction to the next layer (graded, in [0, 1], differentiable almost everywhere):
``clip``: ``s = clip((U_m - U_th)/(U_sat - U_th), 0, 1)``; ``sigmoid``: ``s = sigmoid(2 (U_m - U_c))``
(one branch of a subthreshold differential pair). No surrogate gradient anywhere.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .equations import FILTERS, MTCParameters, MTCState, as_numpy, exact_filter_update, rhs, where

METHODS = ("euler", "exact", "heun", "rk4")
#: Global order of accuracy of each method (the exact filters leave the membrane first order).
ORDERS = {"euler": 1, "exact": 1, "heun": 2, "rk4": 4}
TRANSDUCTIONS = ("clip", "sigmoid")

#: Where each method's stability region meets the negative real axis: the step is linearly stable
#: for a decaying mode -1/tau while dt <= intercept * tau. Euler and Heun: |1 + z (+ z^2/2)| <= 1 for
#: z >= -2; RK4: the real root of R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24 = 1, z != 0 (z = -2.7853; R > 0 on the axis). "exact" steps the
#: membrane with Euler (its filters are exact, hence unconditionally stable).
STABILITY_INTERCEPT = {"euler": 2.0, "exact": 2.0, "heun": 2.0, "rk4": 2.785293563405282}
#: Fraction of the linear limit that :func:`max_stable_dt` allows. The membrane is nonlinear (the tanh
#: elements move its local rate between -1/tau_m and (R a_f - 1)/tau_m), so the linear limit is not a
#: safe one: docs/reference.md §3's "Euler is stable for dt <= ~0.5 tau_m" is a quarter of it, and the same quarter
#: is kept for every method. Measured (tests/test_step.py, scripts in the kernel branch's report): the
#: docs/reference.md §4 presets and stronger gains under inputs -6..6 blow up first at dt = 2.45-2.6 tau_m (Euler,
#: exact), 2.5-2.9 (Heun), 3.4-3.65 (RK4), i.e. 1.2-1.45x the linear limit, 5x the allowed step.
STABILITY_SAFETY = 0.25


def max_stable_dt(method: str, tau_m: Any = 1.0, tau_f: Any = 0.0) -> float:
    """The largest step dt [t_u] accepted for ``method`` with membrane time constant ``tau_m`` [t_u].

    ``STABILITY_SAFETY * STABILITY_INTERCEPT[method] * tau``: Euler and exact 0.5 tau_m, Heun
    0.5 tau_m, RK4 0.696 tau_m. ``tau`` is the fastest explicitly integrated linear mode: tau_m, and
    for euler/heun/rk4 also a non-zero fast filter tau_f (``exact`` integrates the filters exactly;
    the slow filters, tau_s and tau_us >> tau_m, never bind). Per-neuron tensors or arrays: the
    smallest value decides.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    tau = float(as_numpy(tau_m).min())
    taus_f = as_numpy(tau_f)
    if method != "exact" and np.any(taus_f > 0):
        tau = min(tau, float(taus_f[taus_f > 0].min()))
    return STABILITY_SAFETY * STABILITY_INTERCEPT[method] * tau
#: ``reference``: the Python loop over :func:`mtc_step` (autograd through every op); ``fused``: the
#: compiled whole-rollout kernel of :mod:`mtc_analog.neuron.fused`; ``auto``: fused when available
#: and the inputs are CPU float32/float64, else reference.
BACKENDS = ("auto", "reference", "fused")


class Transduction(NamedTuple):
    """How the membrane becomes the graded output s in [0, 1]."""

    kind: str = "clip"
    u_th: float = 0.5  #: clip: s = 0 below this [V_s]
    u_sat: float = 1.5  #: clip: s = 1 above this [V_s]
    u_c: float = 1.0  #: sigmoid: centre [V_s]


def transduce(u_m: torch.Tensor, transduction: Transduction = Transduction()) -> torch.Tensor:
    """Graded output of the membrane, in [0, 1]."""
    if transduction.kind == "clip":
        span = transduction.u_sat - transduction.u_th
        return torch.clamp((u_m - transduction.u_th) / span, 0.0, 1.0)
    if transduction.kind == "sigmoid":
        return torch.sigmoid(2.0 * (u_m - transduction.u_c))
    raise ValueError(f"unknown transduction {transduction.kind!r}: expected one of {TRANSDUCTIONS}")


def mtc_step(
    state: MTCState,
    i_in: torch.Tensor,
    params: MTCParameters,
    dt: float,
    method: str = "euler",
    filter: str = "linear",
) -> MTCState:
    """Advance the MTC neuron by one step of ``dt`` [t_u] under input current ``i_in``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}: expected one of {FILTERS}")
    instantaneous = params.tau_f == 0  # per neuron: U_f is U_m
    if method in ("heun", "rk4"):
        new = _runge_kutta(state, i_in, params, dt, method, filter)
        return new._replace(u_f=where(instantaneous, new.u_m, new.u_f))
    rate = rhs(state, params, i_in, filter)
    u_m = state.u_m + dt * rate.u_m
    if method == "euler":
        u_s = state.u_s + dt * rate.u_s
        u_us = state.u_us + dt * rate.u_us
        u_f = state.u_f + dt * rate.u_f
    else:
        u_s = exact_filter_update(state.u_m, state.u_s, params.tau_s, dt, filter)
        u_us = exact_filter_update(state.u_m, state.u_us, params.tau_us, dt, filter)
        u_f = exact_filter_update(state.u_m, state.u_f, where(instantaneous, 1.0, params.tau_f), dt, filter)
    return MTCState(u_m, where(instantaneous, u_m, u_f), u_s, u_us)


def _axpy(x: MTCState, a: float, k: MTCState) -> MTCState:
    """x + a k, field by field."""
    return MTCState(*(xi + a * ki for xi, ki in zip(x, k)))


def _runge_kutta(state: MTCState, i_in: Any, params: MTCParameters, dt: float, method: str,
                 filter: str) -> MTCState:
    """One Heun or RK4 step of the full state; every stage is :func:`rhs` (input held over the step)."""
    k1 = rhs(state, params, i_in, filter)
    if method == "heun":
        k2 = rhs(_axpy(state, dt, k1), params, i_in, filter)
        return MTCState(*(x + 0.5 * dt * (a + b) for x, a, b in zip(state, k1, k2)))
    k2 = rhs(_axpy(state, 0.5 * dt, k1), params, i_in, filter)
    k3 = rhs(_axpy(state, 0.5 * dt, k2), params, i_in, filter)
    k4 = rhs(_axpy(state, dt, k3), params, i_in, filter)
    return MTCState(*(x + dt / 6.0 * (a + 2.0 * b + 2.0 * c + d) for x, a, b, c, d in zip(state, k1, k2, k3, k4)))


class Rollout(NamedTuple):
    """Result of :func:`mtc_rollout`: outputs and (optionally) the membrane trace, time-major."""

    s: torch.Tensor  #: (T, ..., N) graded outputs
    u_m: torch.Tensor | None  #: (T, ..., N) membrane, if requested
    final: MTCState


def mtc_rollout(
    i_in: torch.Tensor,
    params: MTCParameters,
    dt: float,
    state: MTCState | None = None,
    method: str = "euler",
    filter: str = "linear",
    transduction: Transduction = Transduction(),
    record_membrane: bool = False,
    backend: str = "auto",
) -> Rollout:
    """Run the step over a time-major input ``i_in`` of shape (T, ..., N).

    ``s[t]`` is the transduction of ``U_m`` *after* consuming ``i_in[t]`` (so the output at step t
    depends on inputs up to t). The state defaults to every variable at ``U_rest``.

    ``backend`` (see :data:`BACKENDS`): both backends compute the same numbers (to rounding) and the
    same gradients; ``fused`` is one compiled call with a hand-written backward (much faster on CPU).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    if backend != "reference":
        from . import fused  # lazy: fused imports this module

        if backend == "fused" or (method in fused.KERNEL_METHODS and fused.supports(i_in, params, state)
                                  and fused.available()):
            return fused.fused_rollout(i_in, params, dt, state, method, filter, transduction, record_membrane)
    if state is None:
        zero = torch.zeros_like(i_in[0]) + params.u_rest
        state = MTCState(zero, zero, zero, zero)
    outputs, membranes = [], []
    for t in range(i_in.shape[0]):
        state = mtc_step(state, i_in[t], params, dt, method, filter)
        outputs.append(transduce(state.u_m, transduction))
        if record_membrane:
            membranes.append(state.u_m)
    u_m = torch.stack(membranes) if record_membrane else None
    return Rollout(torch.stack(outputs), u_m, state)

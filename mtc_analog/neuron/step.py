"""Discrete-time MTC neuron: one pure functional step, a rollout, and the graded transduction.

The step is derived from :func:`mtc_analog.neuron.equations.rhs` (no second copy of the math).

Euler (the paper's scheme), every variable from the state at step t:

.. math::  X[t+1] = X[t] + dt\\,\\dot X(X[t], I_{in}[t])

Exact filters (``method="exact"``): the membrane is Euler, each filter is integrated exactly with
U_m held over the step — linear: ``U_x' = U_m + (U_x - U_m) e^{-dt/tau}``; OTA (tanh): ``sinh(U_x' -
U_m) = sinh(U_x - U_m) e^{-dt/tau}``.

Transduction to the next layer (graded, in [0, 1], differentiable almost everywhere):
``clip``: ``s = clip((U_m - U_th)/(U_sat - U_th), 0, 1)``; ``sigmoid``: ``s = sigmoid(2 (U_m - U_c))``
(one branch of a subthreshold differential pair). No surrogate gradient anywhere.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .equations import FILTERS, MTCParameters, MTCState, exact_filter_update, rhs, where

METHODS = ("euler", "exact")
TRANSDUCTIONS = ("clip", "sigmoid")
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
    rate = rhs(state, params, i_in, filter)
    u_m = state.u_m + dt * rate.u_m
    instantaneous = params.tau_f == 0  # per neuron: U_f is U_m
    if method == "euler":
        u_s = state.u_s + dt * rate.u_s
        u_us = state.u_us + dt * rate.u_us
        u_f = state.u_f + dt * rate.u_f
    else:
        u_s = exact_filter_update(state.u_m, state.u_s, params.tau_s, dt, filter)
        u_us = exact_filter_update(state.u_m, state.u_us, params.tau_us, dt, filter)
        u_f = exact_filter_update(state.u_m, state.u_f, where(instantaneous, 1.0, params.tau_f), dt, filter)
    return MTCState(u_m, where(instantaneous, u_m, u_f), u_s, u_us)


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

        if backend == "fused" or (fused.supports(i_in, params, state) and fused.available()):
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

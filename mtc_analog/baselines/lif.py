"""Leaky integrate-and-fire layer with snnTorch ``Leaky`` semantics (reset by subtraction).

Per neuron step (time in steps; ``theta = 1``):

.. math::

    R[t]   &= H(U[t-1] - \\theta) \\quad (\\text{detached: no gradient through the reset})

    U[t]   &= \\beta\\,U[t-1] + I[t] - R[t]\\,\\theta

    S[t]   &= H(U[t] - \\theta) \\quad (\\text{ATan surrogate}, \\alpha = 2)

exactly as ``snntorch.Leaky(beta, reset_mechanism="subtract")`` with its default ``reset_delay``.
``beta`` is per neuron; trainable by default (``learn_beta=True``; snnTorch's ``learn_beta``
option), clamped to [0, 1] in the forward pass as snnTorch does. With ``learn_beta=False`` it is a
fixed buffer. The layer output passed on is the binary spike train ``S``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .surrogates import atan_spike


class SpikingRecord(NamedTuple):
    """Time-major output of a baseline layer (same shape conventions as the MTC layer's Rollout)."""

    s: torch.Tensor  #: (T, B, N) spikes in {0, 1}
    u_m: torch.Tensor | None  #: (T, B, N) membrane after the update, if requested
    final: tuple  #: final state


def lif_step(u: torch.Tensor, i_in: torch.Tensor, beta: torch.Tensor, threshold: float = 1.0,
             alpha: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: returns ``(S[t], U[t])`` from ``U[t-1]`` and ``I[t]``."""
    reset = (u > threshold).to(u.dtype).detach()
    u = beta.clamp(0.0, 1.0) * u + i_in - reset * threshold
    return atan_spike(u - threshold, alpha), u


class LIFLayer(nn.Module):
    """``n`` LIF neurons, time-major: input currents (T, B, n) -> spikes (T, B, n)."""

    def __init__(self, n: int, beta: float = 0.9, learn_beta: bool = True, threshold: float = 1.0,
                 alpha: float = 2.0) -> None:
        super().__init__()
        if n <= 0:
            raise ValueError(f"LIFLayer needs n >= 1 neurons, got {n}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"LIF beta must lie in [0, 1], got {beta}")
        self.n, self.threshold, self.alpha, self.learn_beta = n, float(threshold), float(alpha), learn_beta
        beta_t = torch.full((n,), float(beta))
        if learn_beta:
            self.beta = nn.Parameter(beta_t)
        else:
            self.register_buffer("beta", beta_t)

    def forward(self, i_in: torch.Tensor, state: torch.Tensor | None = None,
                record_membrane: bool = False) -> SpikingRecord:
        if i_in.shape[-1] != self.n:
            raise ValueError(f"LIFLayer of {self.n} neurons got input with last dimension {i_in.shape[-1]}")
        u = torch.zeros_like(i_in[0]) if state is None else state
        spikes, membranes = [], []
        # unbind, not i_in[t]: indexing an input that requires grad makes every backward step add a
        # full-size zero gradient (quadratic in T); unbind's backward stacks the step gradients once.
        for i_t in i_in.unbind(0):
            s, u = lif_step(u, i_t, self.beta, self.threshold, self.alpha)
            spikes.append(s)
            if record_membrane:
                membranes.append(u)
        return SpikingRecord(torch.stack(spikes), torch.stack(membranes) if record_membrane else None, (u,))

    def extra_repr(self) -> str:
        return f"n={self.n}, learn_beta={self.learn_beta}, threshold={self.threshold}, surrogate=atan(alpha={self.alpha})"

"""Surrogate-gradient spike functions for the LIF and AdLIF baselines (never used by MTC).

Forward: the Heaviside step ``S = H(v)`` of the shifted membrane ``v = U - theta`` (``S = 1``
where ``v > 0``). Backward: a smooth stand-in for ``dS/dv``.

ATan (snnTorch's default, Fang et al. 2021):
    ``dS/dv = (alpha/2) / (1 + (pi*alpha*v/2)^2)``,  alpha = 2.
SLAYER (Shrestha & Orchard 2018, as in SE-adLIF):
    ``dS/dv = c*alpha / (2*exp(alpha*|v|))``,  alpha = 5, c = 0.4.
"""

from __future__ import annotations

import math

import torch


class ATanSpike(torch.autograd.Function):
    """Heaviside forward, arctan-derivative backward (identical to ``snntorch.surrogate.ATan``)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.alpha = alpha
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad = (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * v) ** 2)
        return grad_output * grad, None


class SLAYERSpike(torch.autograd.Function):
    """Heaviside forward, exponential (SLAYER) derivative backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, alpha: float = 5.0, c: float = 0.4) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.alpha, ctx.c = alpha, c
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        grad = ctx.c * ctx.alpha / (2.0 * torch.exp(ctx.alpha * v.abs()))
        return grad_output * grad, None, None


def atan_spike(v: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """``H(v)`` with the ATan surrogate gradient."""
    return ATanSpike.apply(v, alpha)


def slayer_spike(v: torch.Tensor, alpha: float = 5.0, c: float = 0.4) -> torch.Tensor:
    """``H(v)`` with the SLAYER surrogate gradient."""
    return SLAYERSpike.apply(v, alpha, c)

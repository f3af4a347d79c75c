"""SE-adLIF: adaptive LIF with symplectic-Euler coupling (Baronig et al. 2024/2025), feedforward.

Follows the reference code (IGITUGraz/SE-adlif ``models/alif.py``, class ``SEAdLIF``) without
recurrent weights; dt = 1 neuron step, threshold 1:

.. math::

    u_t &= a_u u_{t-1} + (1 - a_u)(I_t - w_{t-1}),\\qquad I_t = W x_t + b \\ (\\text{given})

    z_t &= H(u_t - 1) \\quad (\\text{SLAYER surrogate}, \\alpha = 5, c = 0.4)

    u_t &\\leftarrow u_t (1 - z_t) \\quad (\\text{reset to 0, detached})

    w_t &= a_w w_{t-1} + (1 - a_w)\\, q\\, (a\\,u_t + b_z z_t)

with ``a_u = exp(-1/tau_u)``, ``a_w = exp(-1/tau_w)``, ``q = 120``. Per-neuron trainable
``tau_u`` in [5, 25], ``tau_w`` in [60, 300] (time in neuron steps), ``a`` in [0, 1], ``b_z`` in
[0, 2]; initialised uniformly in those ranges and clamped in the forward pass (the gradient of a
clamped value is zero outside the range, as with the reference's post-step clamping).
"""

from __future__ import annotations

import torch
from torch import nn

from .lif import SpikingRecord
from .surrogates import slayer_spike


class AdLIFLayer(nn.Module):
    """``n`` SE-adLIF neurons, time-major: input currents (T, B, n) -> spikes (T, B, n)."""

    def __init__(
        self,
        n: int,
        tau_u_range: tuple[float, float] = (5.0, 25.0),
        tau_w_range: tuple[float, float] = (60.0, 300.0),
        a_range: tuple[float, float] = (0.0, 1.0),
        b_range: tuple[float, float] = (0.0, 2.0),
        q: float = 120.0,
        threshold: float = 1.0,
        alpha: float = 5.0,
        c: float = 0.4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n <= 0:
            raise ValueError(f"AdLIFLayer needs n >= 1 neurons, got {n}")
        for name, (lo, hi) in {"tau_u_range": tau_u_range, "tau_w_range": tau_w_range,
                               "a_range": a_range, "b_range": b_range}.items():
            if not lo <= hi:
                raise ValueError(f"AdLIF {name} must be (low, high) with low <= high, got {(lo, hi)}")
        self.n, self.q, self.threshold, self.alpha, self.c = n, float(q), float(threshold), float(alpha), float(c)
        self.tau_u_range, self.tau_w_range = tuple(tau_u_range), tuple(tau_w_range)
        self.a_range, self.b_range = tuple(a_range), tuple(b_range)
        gen = torch.Generator().manual_seed(seed)

        def uniform(lo: float, hi: float) -> nn.Parameter:
            return nn.Parameter(lo + (hi - lo) * torch.rand(n, generator=gen))

        self.tau_u = uniform(*self.tau_u_range)
        self.tau_w = uniform(*self.tau_w_range)
        self.a = uniform(*self.a_range)
        self.b = uniform(*self.b_range)

    def constrained(self) -> dict[str, torch.Tensor]:
        """Per-neuron decays and coupling constants after clamping to their ranges."""
        tau_u = self.tau_u.clamp(*self.tau_u_range)
        tau_w = self.tau_w.clamp(*self.tau_w_range)
        return {
            "decay_u": torch.exp(-1.0 / tau_u),
            "decay_w": torch.exp(-1.0 / tau_w),
            "a": self.a.clamp(*self.a_range),
            "b": self.b.clamp(*self.b_range),
        }

    def forward(self, i_in: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                record_membrane: bool = False) -> SpikingRecord:
        if i_in.shape[-1] != self.n:
            raise ValueError(f"AdLIFLayer of {self.n} neurons got input with last dimension {i_in.shape[-1]}")
        p = self.constrained()
        decay_u, decay_w, a, b = p["decay_u"], p["decay_w"], p["a"], p["b"]
        if state is None:
            u = torch.zeros_like(i_in[0])
            w = torch.zeros_like(i_in[0])
        else:
            u, w = state
        spikes, membranes = [], []
        for i_t in i_in.unbind(0):  # not i_in[t]: see LIFLayer.forward (quadratic backward)
            u = decay_u * u + (1.0 - decay_u) * (i_t - w)
            z = slayer_spike(u - self.threshold, self.alpha, self.c)
            if record_membrane:
                membranes.append(u)  # before the reset, so threshold crossings stay visible
            u = u * (1.0 - z.detach())
            w = decay_w * w + (1.0 - decay_w) * self.q * (a * u + b * z)
            spikes.append(z)
        return SpikingRecord(torch.stack(spikes), torch.stack(membranes) if record_membrane else None, (u, w))

    def extra_repr(self) -> str:
        return (f"n={self.n}, tau_u={self.tau_u_range}, tau_w={self.tau_w_range}, a={self.a_range}, "
                f"b={self.b_range}, q={self.q}, surrogate=slayer(alpha={self.alpha}, c={self.c})")

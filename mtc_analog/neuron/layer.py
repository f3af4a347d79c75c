"""A thin ``nn.Module`` around the functional MTC step: a layer of trainable MTC neurons.

Parameterisation (docs/reference.md §3): per-neuron gains through softplus (so a_* >= 0; a gain requested
below :data:`MIN_INITIAL_GAIN` starts there, so that every gain and the offset behind it receive a
gradient), offsets free,
time constants fixed or trained in log space with tau_s < tau_us kept by construction
(``log tau_us = log tau_s + softplus(raw_gap)``). The input current is supplied by the caller
(``I_in = W s_prev + b`` lives in the network), so this layer owns only the neuron dynamics.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .equations import MTCParameters, MTCState, deviate
from .step import BACKENDS, METHODS, Rollout, Transduction, mtc_rollout


#: Smallest initial gain [I_u]. softplus'(raw) = 1 - exp(-a): a gain started at 0 (raw -30) gets a
#: gradient ~1e-13 and never moves, so a requested gain below this starts at it instead (its
#: gradient is then >= 5% of the linear one; training may still drive it lower).
MIN_INITIAL_GAIN = 0.05


def _softplus_inverse(y: float) -> float:
    y = max(float(y), MIN_INITIAL_GAIN)
    return y + math.log(-math.expm1(-y))


class MTCLayer(nn.Module):
    """``n`` MTC neurons, time-major: input currents (T, B, n) -> graded outputs (T, B, n).

    ``backend`` chooses how the rollout runs (:data:`mtc_analog.neuron.step.BACKENDS`): ``"auto"``
    takes the fused C++ kernel (:mod:`mtc_analog.neuron.fused`) for CPU float32/float64 and the
    reference loop otherwise; ``"reference"`` and ``"fused"`` force one. Same numbers either way.
    """

    def __init__(
        self,
        n: int,
        dt: float = 0.5,
        init: MTCParameters = MTCParameters(a_f=2.0, a_s_plus=2.0, tau_s=10.0, tau_us=100.0),
        method: str = "euler",
        filter: str = "linear",
        transduction: Transduction = Transduction(),
        train_timescales: bool = False,
        init_jitter: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if n <= 0:
            raise ValueError(f"MTCLayer needs n >= 1 neurons, got {n}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
        self.n, self.dt, self.method, self.filter = n, float(dt), method, filter
        self.transduction = Transduction(*transduction)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        self.train_timescales = train_timescales
        gen = torch.Generator().manual_seed(0)

        def per_neuron(value: float, jitter: float = 0.0) -> torch.Tensor:
            base = torch.full((n,), float(value))
            if jitter:
                base = base + jitter * torch.randn(n, generator=gen)
            return base

        self.raw_gains = nn.ParameterDict(
            {g: nn.Parameter(per_neuron(_softplus_inverse(float(getattr(init, g))), init_jitter))
             for g in ("a_f", "a_s_plus", "a_s_minus", "a_us")}
        )
        self.offsets = nn.ParameterDict(
            {d: nn.Parameter(per_neuron(float(getattr(init, d)), init_jitter))
             for d in ("d_f", "d_s_plus", "d_s_minus", "d_us")}
        )
        if not init.tau_s < init.tau_us:
            raise ValueError(f"need tau_s < tau_us, got tau_s={init.tau_s}, tau_us={init.tau_us}")
        log_tau_s = per_neuron(math.log(init.tau_s))
        raw_gap = per_neuron(_softplus_inverse(math.log(init.tau_us) - math.log(init.tau_s)))
        if train_timescales:
            self.log_tau_s = nn.Parameter(log_tau_s)
            self.raw_tau_gap = nn.Parameter(raw_gap)
        else:
            self.register_buffer("log_tau_s", log_tau_s)
            self.register_buffer("raw_tau_gap", raw_gap)
        # Fixed per-layer constants (the circuit maps them to C_m, R_l, C_f).
        self.register_buffer("tau_m", torch.tensor(float(init.tau_m)))
        self.register_buffer("tau_f", torch.tensor(float(init.tau_f)))
        self.register_buffer("resistance", torch.tensor(float(init.resistance)))
        self.register_buffer("u_rest", torch.tensor(float(init.u_rest)))

    def parameters_record(self) -> MTCParameters:
        """The constrained per-neuron parameters as an :class:`MTCParameters` of tensors."""
        gains = {g: F.softplus(raw) for g, raw in self.raw_gains.items()}
        tau_s = torch.exp(self.log_tau_s)
        tau_us = torch.exp(self.log_tau_s + F.softplus(self.raw_tau_gap))
        return MTCParameters(
            **gains,
            **dict(self.offsets.items()),
            tau_m=self.tau_m,
            tau_f=self.tau_f,
            tau_s=tau_s,
            tau_us=tau_us,
            resistance=self.resistance,
            u_rest=self.u_rest,
        )

    @torch.no_grad()
    def load_parameters(self, params: MTCParameters) -> None:
        """Make the layer compute ``params`` (scalars or per-neuron values): the inverse of
        :meth:`parameters_record`, exact (no initial-gain floor; a gain of 0 becomes ~1e-30). The per-layer
        constants (tau_m, tau_f, R, U_rest) become per-neuron buffers."""
        like = self.offsets["d_f"]

        def tensor(values: Any) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float64).expand(self.n).to(like.dtype).clone()

        def softplus_inverse(values: Any) -> torch.Tensor:
            a = torch.as_tensor(values, dtype=torch.float64).clamp_min(1e-30)
            return tensor(a + torch.log(-torch.expm1(-a)))

        tau_s = torch.as_tensor(params.tau_s, dtype=torch.float64)
        gap = torch.log(torch.as_tensor(params.tau_us, dtype=torch.float64)) - torch.log(tau_s)
        if bool((gap <= 0).any()):
            raise ValueError(f"need tau_s < tau_us for every neuron, got tau_s={params.tau_s}, tau_us={params.tau_us}")
        for gain, raw in self.raw_gains.items():
            raw.copy_(softplus_inverse(getattr(params, gain)))
        for offset, value in self.offsets.items():
            value.copy_(tensor(getattr(params, offset)))
        self.log_tau_s.copy_(tensor(torch.log(tau_s)))
        self.raw_tau_gap.copy_(softplus_inverse(gap))
        for name in ("tau_m", "tau_f", "resistance", "u_rest"):
            setattr(self, name, tensor(getattr(params, name)))  # a registered buffer, now per neuron

    def initial_state(self, batch_shape: tuple[int, ...], like: torch.Tensor) -> MTCState:
        zero = torch.zeros(*batch_shape, self.n, dtype=like.dtype, device=like.device) + self.u_rest
        return MTCState(zero, zero, zero, zero)

    def forward(self, i_in: torch.Tensor, state: MTCState | None = None, record_membrane: bool = False,
                deviation: Any = None) -> Rollout:
        """``deviation``: a circuit's deviation record for this layer (:func:`~mtc_analog.neuron.equations.deviate`,
        e.g. one mismatch draw): applied to the parameters, gradients flow through them."""
        if i_in.dim() < 2:
            raise ValueError(f"MTCLayer expects time-major input (T, ..., {self.n}), got shape {tuple(i_in.shape)}")
        if i_in.shape[-1] != self.n:
            raise ValueError(f"MTCLayer of {self.n} neurons got input with last dimension {i_in.shape[-1]}")
        params = self.parameters_record()
        if deviation is not None:
            params = deviate(params, deviation)
        return mtc_rollout(
            i_in, params, self.dt, state, self.method, self.filter, self.transduction, record_membrane,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"n={self.n}, dt={self.dt}, method={self.method}, filter={self.filter}, transduction={self.transduction.kind}"

    def config(self) -> dict[str, Any]:
        """Constructor arguments that are not tensors (for checkpoints)."""
        return {
            "n": self.n, "dt": self.dt, "method": self.method, "filter": self.filter,
            "transduction": self.transduction._asdict(), "train_timescales": self.train_timescales,
        }

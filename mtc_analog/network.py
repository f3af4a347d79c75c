"""A feedforward spiking regressor for any neuron type (docs/reference.md §6), and its activity metrics.

Architecture (time-major; one input sample is held for ``substeps`` neuron steps of ``dt`` [t_u]):

.. math::

    I_1 &= W_0 x + b_0,\\qquad s_l = \\mathrm{layer}_l(I_l),\\qquad I_{l+1} = W_l s_l + b_l

    y_0 &= W_r s_L + b_r,\\qquad y_k[t] = y_k[t-1] + \\frac{dt}{\\tau_{lp}}\\,(y_{k-1}[t-1] - y_k[t-1]),
    \\quad k = 1..4

The low-pass stages are an explicit Euler step of ``tau_lp dy_k/dt = y_{k-1} - y_k``, every stage
reading the previous step's values — the same scheme as the neurons, and the cascade the circuit
integrates in continuous time (mean delay ``order * tau_lp`` in both; an in-order update that read
the already-updated previous stage would lead the circuit by ``order * dt``). y_0 is the readout at
that step; all stages start at 0 (the z-scored mean). The cascade is evaluated exactly as a causal
convolution with its impulse response ``h[n] = a^K C(n-1, K-1) (1-a)^(n-K)`` for n >= K, else 0
(a = dt/tau_lp, K = order), truncated where it falls below 1e-10 of its peak. The prediction for input sample t is the filter output at the last substep of
that sample.

Neuron types: ``mtc`` (graded output s in [0, 1], no surrogate), ``lif`` and ``adlif`` (binary
spikes, surrogate gradients). For LIF/AdLIF ``dt`` only sets the low-pass (their dynamics are per
neuron step); for MTC it is the Euler step of the neuron (tau_m = 1 t_u by default).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .baselines import AdLIFLayer, LIFLayer
from .errors import InputError
from .neuron.equations import FILTERS, MTCParameters
from .neuron.layer import MTCLayer
from .neuron.spikes import spike_level, upward_crossings
from .neuron.step import METHODS, TRANSDUCTIONS, Transduction, max_stable_dt
from .spec import NetworkSpec, NeuronLayerSpec, ReadoutSpec

NEURON_TYPES = ("mtc", "lif", "adlif")

#: Default MTC initialisation: tonic-spiking gains with a short slow and ultra-slow memory. The slow
#: negative conductance starts small but alive (a_s_minus = 0.5, net slow conductance 1.5 > 0: still
#: tonic): at 0 its softplus gradient vanishes and neither it nor d_s_minus ever trains.
DEFAULT_MTC_INIT: dict[str, float] = {
    "a_f": 2.0, "a_s_plus": 2.0, "a_s_minus": 0.5, "a_us": 0.5,
    "d_f": 0.0, "d_s_plus": 0.0, "d_s_minus": 0.0, "d_us": 0.0,
    "tau_m": 1.0, "tau_f": 0.0, "tau_s": 10.0, "tau_us": 100.0, "resistance": 1.0, "u_rest": 0.0,
}

#: Initial projection scale / bias, and step, per neuron type (scales chosen so that every type starts
#: active; see docs/results_model.md). Command-line options override them. The sample period is 1 t_u
#: for every type. LIF/AdLIF keep the 2 neuron steps per sample they were measured with (their dynamics
#: are per step; dt only sets their low-pass); MTC takes the config's circuit-faithful recipe.
DEFAULT_INIT_BY_NEURON: dict[str, dict[str, Any]] = {
    # MTC x3: test NRMSE 0.208 +- 0.010 vs x1: 0.256 +- 0.027 (H = 84, 64 neurons, 4 seeds, default budget)
    "mtc": {"input_scale": 3.0, "bias_init": None},
    "lif": {"input_scale": 1.0, "bias_init": None, "dt": 0.5, "substeps": 2},
    "adlif": {"input_scale": 10.0, "bias_init": None, "dt": 0.5, "substeps": 2},  # q = 120 adaptation silences it at 1.0
}


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a :class:`SpikingRegressor` (stored in checkpoints as JSON).

    The MTC defaults (trained log-spaced timescales, jittered gains, U_th = 1.5 / U_sat = 2.5,
    tau_lp = 3) are what the Mackey-Glass study in docs/results_model.md found to work best.
    """

    neuron: str = "mtc"  #: "mtc" | "lif" | "adlif"
    hidden: tuple[int, ...] = (64,)  #: hidden layer sizes
    n_in: int = 1
    n_out: int = 1
    #: Neuron step [t_u], steps per input sample and integrator: the circuit-faithful recipe. RK4 at
    #: dt = 0.25 with the exact low-pass keeps the discretisation gap (output NRMSE against dt/8) near
    #: 0.002, ~300x below Euler at dt = 0.5 with the Euler low-pass (0.6); docs/results_validation.md.
    dt: float = 0.25
    substeps: int = 4
    tau_lp: float = 3.0  #: time constant of each low-pass stage [t_u]
    lowpass_order: int = 4
    lowpass: str = "exact"  #: "exact" (the continuous cascade, first-order hold) | "euler" (older checkpoints)
    input_scale: float = 3.0  #: scale of the initial projection weights (x PyTorch's default init; MTC's default)
    bias_init: float | None = None  #: constant initial bias of each hidden projection (None: PyTorch default)
    seed: int = 0  #: weight initialisation seed
    # MTC options
    method: str = "rk4"  #: "rk4" | "heun" | "euler" | "exact" (Euler membrane, exact filters)
    filter: str = "linear"  #: "linear" | "ota"
    transduction: str = "clip"  #: "clip" | "sigmoid"
    u_th: float = 1.5  #: clip: s = 0 below [V_s]; also the MTC spike-count level
    u_sat: float = 2.5  #: clip: s = 1 above [V_s]
    u_c: float = 1.0  #: sigmoid centre [V_s]
    mtc_init: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MTC_INIT))
    train_timescales: bool = True
    init_jitter: float = 0.3  #: std of per-neuron jitter on the initial gains/offsets
    #: per-neuron timescale diversity: MTC tau_s, tau_us (and LIF membrane time constants) scaled by
    #: log-spaced factors in [1/sqrt(r), sqrt(r)]; AdLIF draws its own per-neuron tau_u, tau_w
    timescale_spread: float = 10.0
    backend: str = "auto"  #: MTCLayer backend
    # LIF options
    lif_beta: float = 0.9
    lif_learn_beta: bool = True
    # AdLIF options
    adlif_tau_u: tuple[float, float] = (5.0, 25.0)  #: [neuron steps]
    adlif_tau_w: tuple[float, float] = (60.0, 300.0)  #: [neuron steps]
    adlif_q: float = 120.0

    def validate(self) -> None:
        if self.neuron not in NEURON_TYPES:
            raise InputError(f"unknown neuron type {self.neuron!r}: expected one of {', '.join(NEURON_TYPES)}")
        if not self.hidden or any(int(n) < 1 for n in self.hidden):
            raise InputError(f"hidden sizes must be >= 1, got {self.hidden}")
        if self.n_in < 1 or self.n_out < 1:
            raise InputError(f"n_in and n_out must be >= 1, got {self.n_in}, {self.n_out}")
        for name in ("dt", "tau_lp", "input_scale", "timescale_spread"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} = {value} must be a finite positive number")
        if self.substeps < 1:
            raise InputError(f"substeps = {self.substeps} must be >= 1")
        if self.lowpass not in LOWPASS_KINDS:
            raise InputError(f"unknown lowpass {self.lowpass!r}: expected one of {LOWPASS_KINDS}")
        if self.lowpass == "euler" and self.dt > self.tau_lp:
            raise InputError(f"dt = {self.dt} exceeds tau_lp = {self.tau_lp}: the Euler low-pass would be unstable")
        if self.lowpass_order < 0:
            raise InputError(f"lowpass_order = {self.lowpass_order} must be >= 0")
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}: expected one of {METHODS}")
        if self.filter not in FILTERS:
            raise InputError(f"unknown filter {self.filter!r}: expected one of {FILTERS}")
        if self.transduction not in TRANSDUCTIONS:
            raise InputError(f"unknown transduction {self.transduction!r}: expected one of {TRANSDUCTIONS}")
        if self.transduction == "clip" and not self.u_sat > self.u_th:
            raise InputError(f"need u_sat > u_th, got u_th={self.u_th}, u_sat={self.u_sat}")
        unknown = set(self.mtc_init) - set(MTCParameters._fields)
        if unknown:
            raise InputError(f"unknown MTC parameter(s) {sorted(unknown)} in mtc_init; known: {MTCParameters._fields}")
        if self.timescale_spread < 1.0:
            raise InputError(f"timescale_spread = {self.timescale_spread} must be >= 1 (1: every neuron alike)")
        if self.neuron == "mtc":
            p = self.mtc_params()
            limit = max_stable_dt(self.method, p.tau_m, p.tau_f)
            if self.dt > limit:
                raise InputError(f"dt = {self.dt} t_u: method {self.method!r} is unstable above its limit "
                                 f"dt = {limit:.4g} t_u (tau_m = {p.tau_m:g}); lower --dt to <= {limit:.4g} "
                                 f"(the default is {NetworkConfig.method} at dt = {NetworkConfig.dt})")

    def mtc_params(self) -> MTCParameters:
        return MTCParameters(**{**DEFAULT_MTC_INIT, **self.mtc_init})

    def transduction_record(self) -> Transduction:
        return Transduction(self.transduction, self.u_th, self.u_sat, self.u_c)

    @property
    def sample_period(self) -> float:
        """Duration of one input sample [t_u]."""
        return self.dt * self.substeps

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("hidden", "adlif_tau_u", "adlif_tau_w"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown NetworkConfig field(s) {sorted(unknown)}")
        data = dict(data)
        data.setdefault("lowpass", "euler")  # checkpoints from before the exact low-pass kept the Euler one
        for key in ("hidden", "adlif_tau_u", "adlif_tau_w"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class NetworkOutput(NamedTuple):
    prediction: torch.Tensor  #: (T, B, n_out): low-pass output at the last substep of each sample
    hidden_s: list[torch.Tensor]  #: per hidden layer, (T*substeps, B, N) outputs passed on
    hidden_u: list[torch.Tensor] | None  #: per hidden layer, (T*substeps, B, N) membranes, if recorded
    lowpass: torch.Tensor  #: (T*substeps, B, n_out) readout after the filter, every neuron step


LOWPASS_KINDS = ("exact", "euler")


def lowpass_kernel(alpha: float, order: int, length: int, rel_tol: float = 1e-10) -> torch.Tensor:
    """Impulse response of ``order`` cascaded Euler low-pass stages with coefficient ``alpha``.

    Each stage delays by one step (it reads its input's previous value), so the response starts
    after ``order`` zeros; past them it is the binomial kernel ``a^K C(m+K-1, K-1) (1-a)^m``.
    """
    delay = torch.zeros(order, dtype=torch.float64)
    return torch.cat([delay, _binomial_kernel(alpha, order, max(length - order, 1), rel_tol)])[:max(length, 1)]


def lowpass_kernel_exact(alpha: float, order: int, length: int, rel_tol: float = 1e-10) -> torch.Tensor:
    """Impulse response of the *continuous* cascade ``tau dy_k/dt = y_{k-1} - y_k`` sampled every dt,
    for an input interpolated linearly between its samples (first-order hold; ``alpha = dt/tau``).

    Sample n of the input lives at the same instant as sample n of the output, so ``h[0]`` is the
    response at the end of the hat's rising half. Exact for a piecewise-linear input (the circuit's
    low-pass sees the neurons' continuous outputs: second-order accurate in dt), and it has the
    continuous filter's mean delay ``order * tau`` with no extra steps.
    """
    from scipy.linalg import expm

    k = int(order)
    a = -np.eye(k) + np.eye(k, k=-1)  # per unit of time tau: dx/ds = a x + e1 u, s = t / tau
    m = np.zeros((k + 2, k + 2))
    m[:k, :k], m[0, k], m[k, k + 1] = a * alpha, alpha, 1.0
    big = expm(m)  # one step of dt with u = u_a + (u_b - u_a) * (t / dt)
    phi, g_const, g_ramp = big[:k, :k], big[:k, k], big[:k, k + 1]
    n = max(int(length), 1)
    h = np.zeros(n)
    x = g_ramp.copy()  # rising half of the hat: u from 0 to 1
    h[0] = x[-1]
    if n > 1:
        x = phi @ x + g_const - g_ramp  # falling half: u from 1 to 0
        h[1] = x[-1]
    peak_seen = False
    for i in range(2, n):
        x = phi @ x
        h[i] = x[-1]
        peak = h[: i + 1].max()
        peak_seen = peak_seen or h[i] < h[i - 1]
        if peak_seen and abs(h[i]) < rel_tol * peak:
            return torch.from_numpy(h[: i + 1])
    return torch.from_numpy(h)


def _binomial_kernel(alpha: float, order: int, length: int, rel_tol: float) -> torch.Tensor:
    n = np.arange(length, dtype=np.float64)
    if alpha >= 1.0:
        h = np.zeros(length)
        h[0] = 1.0
    else:
        log_binom = (np.vectorize(math.lgamma)(n + order) - math.lgamma(order) - np.vectorize(math.lgamma)(n + 1))
        h = np.exp(order * math.log(alpha) + log_binom + n * math.log1p(-alpha))
    peak = int(np.argmax(h))
    tail = np.nonzero(h[peak:] < rel_tol * h[peak])[0]
    if tail.size:
        h = h[: peak + int(tail[0])]
    return torch.from_numpy(h)


def lowpass_cascade(y0: torch.Tensor, alpha: float, order: int, kind: str = "euler") -> torch.Tensor:
    """Apply the cascade to a time-major (L, B, n) signal, zero initial state.

    ``kind``: ``"exact"`` (:func:`lowpass_kernel_exact`, the continuous filter) or ``"euler"``
    (:func:`lowpass_kernel`, the explicit Euler stages of checkpoints from before the exact one).
    """
    if order == 0:
        return y0
    if kind not in LOWPASS_KINDS:
        raise InputError(f"unknown low-pass kind {kind!r}: expected one of {LOWPASS_KINDS}")
    length, batch, n = y0.shape
    make = lowpass_kernel_exact if kind == "exact" else lowpass_kernel
    kernel = make(alpha, order, length).to(dtype=y0.dtype, device=y0.device)
    k = kernel.shape[0]
    signal = y0.permute(1, 2, 0).reshape(batch * n, 1, length)
    signal = nn.functional.pad(signal, (k - 1, 0))
    out = nn.functional.conv1d(signal, kernel.flip(0).view(1, 1, k))
    return out.reshape(batch, n, length).permute(2, 0, 1)


class SpikingRegressor(nn.Module):
    """Input projection -> hidden layer(s) -> linear readout -> 4th-order low-pass."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed)
        try:
            sizes = [config.n_in, *[int(n) for n in config.hidden]]
            self.projections = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            with torch.no_grad():
                for proj in self.projections:
                    proj.weight.mul_(config.input_scale)
                    if config.bias_init is not None:
                        proj.bias.fill_(config.bias_init)
            self.layers = nn.ModuleList(self._make_layer(n, i) for i, n in enumerate(sizes[1:]))
            self.readout = nn.Linear(sizes[-1], config.n_out)
        finally:
            torch.random.set_rng_state(gen_state)

    def _make_layer(self, n: int, index: int) -> nn.Module:
        c = self.config
        if c.neuron == "mtc":
            layer = MTCLayer(n, dt=c.dt, init=c.mtc_params(), method=c.method, filter=c.filter,
                             transduction=c.transduction_record(), train_timescales=c.train_timescales,
                             init_jitter=c.init_jitter, backend=c.backend)
            if c.timescale_spread > 1.0:
                # Diverse memories: neuron i gets tau_s and tau_us times a log-spaced factor (their
                # ratio, hence tau_s < tau_us, is kept: only log tau_s moves). Shuffled per seed.
                half = 0.5 * math.log(c.timescale_spread)
                shift = torch.linspace(-half, half, n)
                shift = shift[torch.randperm(n, generator=torch.Generator().manual_seed(c.seed * 1000 + index))]
                with torch.no_grad():
                    layer.log_tau_s.add_(shift)
            return layer
        if c.neuron == "lif":
            layer = LIFLayer(n, beta=c.lif_beta, learn_beta=c.lif_learn_beta)
            if c.timescale_spread > 1.0 and 0.0 < c.lif_beta < 1.0:
                # The same diversity MTC gets: membrane time constants -1/ln(beta) [steps] times
                # log-spaced factors in [1/sqrt(r), sqrt(r)], shuffled per seed.
                half = 0.5 * math.log(c.timescale_spread)
                factor = torch.exp(torch.linspace(-half, half, n))
                factor = factor[torch.randperm(n, generator=torch.Generator().manual_seed(c.seed * 1000 + index))]
                with torch.no_grad():
                    layer.beta.copy_(torch.exp(math.log(c.lif_beta) / factor))
            return layer
        return AdLIFLayer(n, tau_u_range=c.adlif_tau_u, tau_w_range=c.adlif_tau_w, q=c.adlif_q,
                          seed=c.seed * 1000 + index)

    @property
    def neuron(self) -> str:
        return self.config.neuron

    def check_finite(self) -> None:
        """Raise InputError naming the first parameter or buffer holding NaN/Inf."""
        for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            if not torch.isfinite(tensor).all():
                raise InputError(f"network parameter {name!r} holds NaN/Inf values; the model is unusable")

    def forward(self, x: torch.Tensor, record_membrane: bool = False, deviation: Any = None) -> NetworkOutput:
        """``deviation``: what a circuit does to the parameters (a :class:`~mtc_analog.hardware.deviation.
        NetworkDeviation`: a mismatch draw, a target's calibration), MTC only; None: the nominal model."""
        c = self.config
        if x.dim() != 3 or x.shape[-1] != c.n_in:
            raise InputError(f"network input must be time-major (T, B, {c.n_in}), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise InputError(f"network input holds {int((~torch.isfinite(x)).sum())} NaN/Inf value(s)")
        h = x.repeat_interleave(c.substeps, dim=0) if c.substeps > 1 else x
        hidden_s, hidden_u = [], []
        if deviation is not None and c.neuron != "mtc":
            raise InputError(f"a circuit deviation applies to MTC networks only; this one is {c.neuron!r}")
        for index, (proj, layer) in enumerate(zip(self.projections, self.layers)):
            if deviation is None:
                record = layer(proj(h), record_membrane=record_membrane)
            else:
                dev = deviation.layers[index]
                record = layer(F.linear(h, *dev.projection(proj.weight, proj.bias)), record_membrane=record_membrane,
                               deviation=dev)
            h = record.s
            hidden_s.append(record.s)
            hidden_u.append(record.u_m)
        tau_lp = c.tau_lp
        if deviation is None:
            readout = self.readout(h)
        else:
            readout = F.linear(h, *deviation.readout(self.readout.weight, self.readout.bias))
            tau_lp = c.tau_lp * float(deviation.lowpass_tau)
        lowpass = lowpass_cascade(readout, c.dt / tau_lp, c.lowpass_order, c.lowpass)
        prediction = lowpass[c.substeps - 1 :: c.substeps]
        return NetworkOutput(prediction, hidden_s, hidden_u if record_membrane else None, lowpass)

    def to_spec(self) -> NetworkSpec:
        """The trained network in model units as plain numpy (MTC networks only)."""
        c = self.config
        if c.neuron != "mtc":
            raise InputError(f"only MTC networks can be exported to a circuit spec; this one is {c.neuron!r}")

        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().double().numpy().copy()

        layers = []
        for proj, layer in zip(self.projections, self.layers):
            record = layer.parameters_record()
            params = MTCParameters(**{
                name: np.broadcast_to(np_(torch.as_tensor(value)), (layer.n,)).copy()
                for name, value in record._asdict().items()
            })
            layers.append(NeuronLayerSpec(params=params, weight=np_(proj.weight), bias=np_(proj.bias),
                                          transduction=c.transduction_record(), filter=c.filter))
        readout = ReadoutSpec(weight=np_(self.readout.weight), bias=np_(self.readout.bias),
                              lowpass_tau=float(c.tau_lp), lowpass_order=int(c.lowpass_order))
        return NetworkSpec(n_in=c.n_in, layers=layers, readout=readout, dt=float(c.dt),
                           substeps=int(c.substeps), method=c.method)


#: Units and definitions written next to the activity metrics.
ACTIVITY_DEFINITIONS: dict[str, str] = {
    "spike_rate": "spikes per neuron per neuron step (MTC: upward crossings of U_m through U_th; LIF/AdLIF: S = 1)",
    "duty_cycle": "fraction of neuron-steps with s > 0 (outputs that travel to the next layer)",
    "synops_per_step": "synaptic operations per neuron step, summed over hidden layers: active neurons (s > 0) "
                       "times their fan-out (next layer size, or n_out for the last); MACs for graded MTC outputs, "
                       "ACs for binary spikes",
    "synops_per_sample": "synops_per_step * substeps",
}


def activity_metrics(network: SpikingRegressor, output: NetworkOutput, start_step: int = 0) -> dict[str, Any]:
    """Spike rate, duty cycle and synaptic operations over neuron steps ``start_step:`` of ``output``.

    MTC spike counting needs the membrane: run the network with ``record_membrane=True``.
    """
    c = network.config
    sizes = [int(n) for n in c.hidden] + [c.n_out]
    spikes, neuron_steps, active, synops = 0.0, 0, 0.0, 0.0
    n_steps = output.hidden_s[0][start_step:].shape[0] * output.hidden_s[0].shape[1]
    for index, s in enumerate(output.hidden_s):
        s = s[start_step:].detach()
        on = s > 0
        active += float(on.sum())
        neuron_steps += s.numel()
        synops += float(on.sum()) * sizes[index + 1]
        if c.neuron == "mtc":
            if output.hidden_u is None:
                raise InputError("MTC spike counting needs the membrane: call the network with record_membrane=True")
            membrane = output.hidden_u[index][start_step:].detach().cpu().numpy()
            spikes += float(upward_crossings(membrane, spike_level(c), axis=0).sum())
        else:
            spikes += float(s.sum())
    per_step = synops / max(n_steps, 1)
    return {
        "spike_rate": spikes / max(neuron_steps, 1),
        "duty_cycle": active / max(neuron_steps, 1),
        "synops_per_step": per_step,
        "synops_per_sample": per_step * c.substeps,
        "synop_kind": "MAC" if c.neuron == "mtc" else "AC",
        "n_neuron_steps": neuron_steps,
    }

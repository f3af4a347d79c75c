"""The MTC neuron's continuous-time equations: the one source of truth.

Everything else (the discrete step, the scipy reference integrator, the I-V curves and the
expressions written into netlists) is derived from the records and functions in this module.

Dimensionless units: voltages in units of V_s (docs/reference.md §8, ~74 mV), time in units of t_u.

.. math::

    \\tau_x \\dot U_x &= U_m - U_x \\quad (\\text{linear})\\quad\\text{or}\\quad
        \\tanh(U_m - U_x) \\quad (\\text{ota}),\\qquad x \\in \\{f, s, us\\}

    \\tau_m \\dot U_m &= -(U_m - U_{rest}) + R I_{in} - R I_{tot}

    I_{tot} &= -a_f \\tanh(U_f - d_f) + a_{s+} \\tanh(U_s - d_{s+})
              - a_{s-} \\tanh(U_s - d_{s-}) + a_{us} \\tanh(U_{us} - d_{us})

``tau_f = 0`` means the fast element reads the membrane directly (U_f = U_m).
All functions accept floats, numpy arrays or torch tensors (broadcasting per neuron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

try:  # torch is a hard dependency of the package, but keep the math importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

FILTERS = ("linear", "ota")


def as_numpy(x: Any) -> np.ndarray:
    """A float numpy array of a float, sequence, numpy array or torch tensor (detached, on the CPU)."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def tanh(x: Any) -> Any:
    """tanh for floats, numpy arrays and torch tensors alike."""
    if torch is not None and isinstance(x, torch.Tensor):
        return torch.tanh(x)
    return np.tanh(x)


class MTCParameters(NamedTuple):
    """Parameters of an MTC neuron (or a layer of them: each field may be a per-neuron tensor).

    Gains ``a_*`` are conductance magnitudes (>= 0); the sign of each element is fixed by
    :data:`ELEMENTS`. Offsets ``d_*`` are in units of V_s; time constants in t_u.
    """

    a_f: Any = 2.0  #: fast negative conductance (upstroke)
    a_s_plus: Any = 2.0  #: slow positive conductance (recovery)
    a_s_minus: Any = 0.0  #: slow negative conductance (bursting)
    a_us: Any = 0.0  #: ultra-slow positive conductance (adaptation, burst end)
    d_f: Any = 0.0
    d_s_plus: Any = 0.0
    d_s_minus: Any = 0.0
    d_us: Any = 0.0
    tau_m: Any = 1.0  #: membrane time constant [t_u]
    tau_f: Any = 0.0  #: fast filter [t_u]; 0 = instantaneous (U_f = U_m)
    tau_s: Any = 50.0  #: slow filter [t_u]
    tau_us: Any = 2500.0  #: ultra-slow filter [t_u]
    resistance: Any = 1.0  #: passive R (model units)
    u_rest: Any = 0.0  #: resting potential [V_s]


#: Parameters that are voltages (offsets, rest): a circuit deviation (input offset) shifts them; every
#: other field (gains, time constants, R) it scales (:mod:`mtc_analog.hardware.deviation`).
SHIFTED_FIELDS = ("d_f", "d_s_plus", "d_s_minus", "d_us", "u_rest")


def deviate(params: MTCParameters, deviation: Any) -> MTCParameters:
    """``params`` with a deviation record applied (``deviation.params``: field -> per-neuron factor, or shift
    for :data:`SHIFTED_FIELDS`): ``a' = a f``, ``d' = d + s``. Numpy arrays or torch tensors (which keep their
    gradient; the changes are constants)."""
    values = {}
    for name, value in params._asdict().items():
        change = deviation.params[name]
        if torch is not None and isinstance(value, torch.Tensor):
            change = torch.as_tensor(change, dtype=value.dtype, device=value.device)
        values[name] = value + change if name in SHIFTED_FIELDS else value * change
    return MTCParameters(**values)


class MTCState(NamedTuple):
    """State of an MTC neuron: membrane and the three filtered copies of it [V_s]."""

    u_m: Any
    u_f: Any
    u_s: Any
    u_us: Any


@dataclass(frozen=True)
class ConductanceElement:
    """One tanh conductance element: ``sign * gain * tanh(U_variable - offset)``.

    ``sign = -1`` is a negative conductance (regenerative, pulls the membrane up when U rises),
    ``+1`` a positive (restoring) one. ``timescale`` says which I-V curve first includes it.
    """

    name: str
    sign: int
    gain: str  # field of MTCParameters
    offset: str  # field of MTCParameters
    variable: str  # field of MTCState
    timescale: str  # "fast" | "slow" | "ultraslow"


ELEMENTS: tuple[ConductanceElement, ...] = (
    ConductanceElement("fast", -1, "a_f", "d_f", "u_f", "fast"),
    ConductanceElement("slow_plus", +1, "a_s_plus", "d_s_plus", "u_s", "slow"),
    ConductanceElement("slow_minus", -1, "a_s_minus", "d_s_minus", "u_s", "slow"),
    ConductanceElement("ultraslow", +1, "a_us", "d_us", "u_us", "ultraslow"),
)

#: Filter of each timescale: (state field, time-constant field).
FILTER_VARIABLES: dict[str, tuple[str, str]] = {
    "fast": ("u_f", "tau_f"),
    "slow": ("u_s", "tau_s"),
    "ultraslow": ("u_us", "tau_us"),
}

TIMESCALES = ("fast", "slow", "ultraslow")


def element_current(element: ConductanceElement, params: MTCParameters, u_x: Any) -> Any:
    """Current of one element at filtered voltage ``u_x`` (model units)."""
    gain = getattr(params, element.gain)
    offset = getattr(params, element.offset)
    return element.sign * gain * tanh(u_x - offset)


def total_current(params: MTCParameters, state: MTCState) -> Any:
    """I_tot: the sum of the four conductance elements, each read at its own filtered voltage."""
    total = 0.0
    for element in ELEMENTS:
        total = total + element_current(element, params, _fast_aware(params, state, element.variable))
    return total


def _fast_aware(params: MTCParameters, state: MTCState, variable: str) -> Any:
    """The filtered voltage an element reads; where tau_f == 0 the fast element reads U_m."""
    if variable == "u_f":
        return where(params.tau_f == 0, state.u_m, state.u_f)
    return getattr(state, variable)


def where(mask: Any, a: Any, b: Any) -> Any:
    """Elementwise ``a if mask else b`` for a bool, a numpy mask or a torch mask (per-neuron choices)."""
    if isinstance(mask, (bool, np.bool_)):
        return a if mask else b
    if torch is not None and isinstance(mask, torch.Tensor):
        return torch.where(mask, a, b)
    return np.where(mask, a, b)


def _is_instantaneous(tau: Any) -> bool:
    if torch is not None and isinstance(tau, torch.Tensor):
        return bool((tau == 0).all())
    return bool(np.all(np.asarray(tau) == 0))


def filter_rate(u_m: Any, u_x: Any, tau_x: Any, filter: str = "linear") -> Any:
    """dU_x/dt of a follower-integrator: linear ``(U_m-U_x)/tau`` or OTA ``tanh(U_m-U_x)/tau``."""
    if filter == "linear":
        return (u_m - u_x) / tau_x
    if filter == "ota":
        return tanh(u_m - u_x) / tau_x
    raise ValueError(f"unknown filter {filter!r}: expected one of {FILTERS}")


def membrane_rate(params: MTCParameters, state: MTCState, i_in: Any) -> Any:
    """dU_m/dt = (-(U_m - U_rest) + R*I_in - R*I_tot) / tau_m."""
    passive = -(state.u_m - params.u_rest)
    return (passive + params.resistance * (i_in - total_current(params, state))) / params.tau_m


def rhs(state: MTCState, params: MTCParameters, i_in: Any, filter: str = "linear") -> MTCState:
    """The continuous-time right-hand side dX/dt for every state variable.

    With ``tau_f == 0`` the fast variable tracks the membrane: its derivative is the membrane's.
    """
    du_m = membrane_rate(params, state, i_in)
    rates = {}
    for timescale in TIMESCALES:
        var, tau_name = FILTER_VARIABLES[timescale]
        tau = getattr(params, tau_name)
        if var == "u_f":  # per neuron: tau_f == 0 tracks the membrane (a safe tau keeps 0/0 out of either branch)
            instantaneous = tau == 0
            rate = filter_rate(state.u_m, state.u_f, where(instantaneous, 1.0, tau), filter)
            rates[var] = where(instantaneous, du_m, rate)
        else:
            rates[var] = filter_rate(state.u_m, getattr(state, var), tau, filter)
    return MTCState(u_m=du_m, **rates)


def exact_filter_update(u_m: Any, u_x: Any, tau_x: Any, dt: float, filter: str = "linear") -> Any:
    """U_x after ``dt`` of the filter ODE with U_m held constant (the exact solution).

    linear: ``U_x' = U_m + (U_x - U_m) e^{-dt/tau}``; OTA (tanh): ``sinh(U_x' - U_m) = sinh(U_x - U_m) e^{-dt/tau}``.
    """
    ratio = -dt / tau_x
    decay = torch.exp(ratio) if isinstance(ratio, torch.Tensor) else np.exp(ratio)
    if np.ndim(decay) == 0 and not isinstance(decay, torch.Tensor):
        decay = float(decay)  # a plain float multiplies numpy and torch alike
    if filter == "linear":
        return u_m + (u_x - u_m) * decay
    if filter == "ota":
        gap = u_x - u_m
        if isinstance(gap, torch.Tensor):
            return u_m + torch.asinh(torch.sinh(gap) * decay)
        return u_m + np.arcsinh(np.sinh(gap) * decay)
    raise ValueError(f"unknown filter {filter!r}: expected one of {FILTERS}")


def resting_state(u: Any = 0.0) -> MTCState:
    """A state with every variable at ``u``."""
    return MTCState(u, u, u, u)


def validate_parameters(params: MTCParameters) -> None:
    """Check gains >= 0, time constants > 0 (tau_f >= 0) and everything finite; raise ValueError."""
    problems = []
    for name, value in params._asdict().items():
        arr = as_numpy(value)
        if not np.all(np.isfinite(arr)):
            problems.append(f"{name} is not finite")
            continue
        if name.startswith("a_") and np.any(arr < 0):
            problems.append(f"{name} = {arr.min():g} < 0 (gains are magnitudes; the sign is fixed per element)")
        if name == "tau_f" and np.any(arr < 0):
            problems.append(f"tau_f = {arr.min():g} < 0")
        if name in ("tau_m", "tau_s", "tau_us") and np.any(arr <= 0):
            problems.append(f"{name} = {arr.min():g} <= 0")
    if problems:
        raise ValueError("invalid MTC parameters: " + "; ".join(problems))

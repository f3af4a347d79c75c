"""I-V curves of the MTC neuron (docs/reference.md §5): the designer's view of excitability, and equilibria.

The I-V curve at timescale x is the current that holds the membrane at U when every element at
least as fast as x has settled at U (its filtered voltage U_y = U), and the slower ones are frozen
out (left out here: they add a constant). Built only from :data:`equations.ELEMENTS` and
:func:`equations.element_current`, grouped by ``element.timescale``:

.. math::

    I_{fast}(U) &= (U - U_{rest})/R + I_f(U) \\\\
    I_{slow}(U) &= I_{fast}(U) + I_{s+}(U) + I_{s-}(U) \\\\
    I_{ultraslow}(U) &= I_{slow}(U) + I_{us}(U) \\quad (= I_{ss}, \\text{the steady-state curve})

This is docs/reference.md §5's ``U - U_rest + R*I_x`` divided by R, so that the curves are in units of the
input current: the neuron is in equilibrium at U under input I exactly when ``I_ss(U) = I``
(from ``tau_m dU/dt = -(U - U_rest) + R*I - R*I_tot = 0``). For R = 1 both forms coincide.

A negative-slope region of I_fast makes the neuron excitable (needs a_f > 1 at U = d_f); a
negative slope of I_slow gives bursting.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .equations import ELEMENTS, TIMESCALES, MTCParameters, MTCState, as_numpy, element_current, rhs


def _numpy_params(params: MTCParameters) -> MTCParameters:
    """Parameters as numpy floats/arrays (accepts tensors, e.g. from ``MTCLayer.parameters_record``)."""
    fields = {}
    for name, value in params._asdict().items():
        arr = as_numpy(value)
        fields[name] = float(arr) if arr.ndim == 0 else arr
    return MTCParameters(**fields)


def iv_current(params: MTCParameters, u: Any, timescale: str) -> np.ndarray:
    """The I-V curve at ``timescale`` ("fast" | "slow" | "ultraslow") evaluated at voltages ``u``.

    Sums the passive current ``(U - U_rest)/R`` and every element whose timescale is at most
    ``timescale``; all in input-current units (see the module docstring).
    """
    if timescale not in TIMESCALES:
        raise ValueError(f"unknown timescale {timescale!r}: expected one of {TIMESCALES}")
    p = _numpy_params(params)
    u = np.asarray(u, dtype=float)
    rank = TIMESCALES.index(timescale)
    current = (u - p.u_rest) / p.resistance
    for element in ELEMENTS:
        if TIMESCALES.index(element.timescale) <= rank:
            current = current + element_current(element, p, u)
    return current


def steady_state_current(params: MTCParameters, u: Any) -> np.ndarray:
    """I_ss(U): the input current under which U is an equilibrium (the ultra-slow I-V curve)."""
    return iv_current(params, u, "ultraslow")


class IVCurves(NamedTuple):
    """I-V curves of one neuron on a voltage grid (voltages [V_s], currents [input-current units])."""

    u: np.ndarray
    fast: np.ndarray
    slow: np.ndarray
    ultraslow: np.ndarray


def iv_curves(params: MTCParameters, u: np.ndarray | None = None) -> IVCurves:
    """The fast, slow and ultra-slow (steady-state) I-V curves on ``u`` (default -4..4 V_s)."""
    if u is None:
        u = np.linspace(-4.0, 4.0, 801)
    u = np.asarray(u, dtype=float)
    return IVCurves(u, *(iv_current(params, u, ts) for ts in TIMESCALES))


def negative_slope_regions(u: np.ndarray, current: np.ndarray) -> list[tuple[float, float]]:
    """Voltage intervals where ``dI/dU < 0`` on a sampled curve (ascending ``u``).

    Interval ends are the grid midpoints where the finite-difference slope changes sign, so
    their resolution is the grid step. Empty list: the curve is monotone (not excitable there).
    """
    u = np.asarray(u, dtype=float)
    current = np.asarray(current, dtype=float)
    if u.ndim != 1 or u.shape != current.shape or u.size < 2:
        raise ValueError("negative_slope_regions needs 1-D u and current of equal length >= 2")
    if np.any(np.diff(u) <= 0):
        raise ValueError("u must be strictly increasing")
    negative = np.diff(current) < 0
    regions = []
    k = 0
    while k < negative.size:
        if negative[k]:
            j = k
            while j + 1 < negative.size and negative[j + 1]:
                j += 1
            regions.append((float(u[k]), float(u[j + 1])))
            k = j + 1
        else:
            k += 1
    return regions


def _root_bracket(p: MTCParameters, i_in: float) -> tuple[float, float]:
    # Every root satisfies |U - U_rest - R*I| <= R * sum of gains (each tanh is bounded by 1).
    gains = sum(abs(float(getattr(p, e.gain))) for e in ELEMENTS)
    centre = float(p.u_rest) + float(p.resistance) * i_in
    reach = float(p.resistance) * gains + 1.0
    return centre - reach, centre + reach


def equilibria(params: MTCParameters, i_in: float, resolution: int = 20001) -> np.ndarray:
    """All equilibrium voltages U* of a single neuron under constant input: roots of I_ss(U) = I.

    Every root lies within ``R * sum(gains)`` of ``U_rest + R*I`` (the tanh terms are bounded), so
    that interval is scanned on ``resolution`` points and each sign change is refined with
    Brent's method. Tangential (double) roots without a sign change can be missed.
    Returns the roots in ascending order [V_s].
    """
    from scipy.optimize import brentq

    p = _numpy_params(params)
    if any(np.ndim(v) for v in p):
        raise ValueError("equilibria works on one neuron: pass scalar parameters")
    i_in = float(i_in)
    if not np.isfinite(i_in):
        raise ValueError(f"input current must be finite, got {i_in}")
    lo, hi = _root_bracket(p, i_in)
    grid = np.linspace(lo, hi, resolution)
    residual = steady_state_current(p, grid) - i_in
    roots = [float(grid[k]) for k in np.flatnonzero(residual == 0.0)]
    for k in np.flatnonzero(residual[:-1] * residual[1:] < 0):
        roots.append(brentq(lambda v: float(steady_state_current(p, v)) - i_in, grid[k], grid[k + 1], xtol=1e-14))
    return np.array(sorted(roots))


def jacobian(params: MTCParameters, state: MTCState, i_in: float, filter: str = "linear", eps: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian of :func:`equations.rhs` at ``state`` (one neuron).

    With ``tau_f == 0`` the fast variable is a copy of U_m, so its row/column is dropped
    (it would only add a spurious zero eigenvalue). Variables: (u_m, [u_f,] u_s, u_us).
    """
    p = _numpy_params(params)
    names = list(MTCState._fields)
    if p.tau_f == 0:
        names.remove("u_f")
    x0 = np.array([float(getattr(state, n)) for n in names])

    def f(x: np.ndarray) -> np.ndarray:
        values = dict(zip(names, x))
        if "u_f" not in values:
            values["u_f"] = values["u_m"]
        rate = rhs(MTCState(**values), p, i_in, filter)
        return np.array([float(getattr(rate, n)) for n in names])

    jac = np.empty((x0.size, x0.size))
    for j in range(x0.size):
        step = np.zeros_like(x0)
        step[j] = eps
        jac[:, j] = (f(x0 + step) - f(x0 - step)) / (2 * eps)
    return jac


def is_stable(params: MTCParameters, u_eq: float, i_in: float, filter: str = "linear") -> bool:
    """Linear stability of the equilibrium with every variable at ``u_eq`` (all eigenvalues < 0)."""
    eig = np.linalg.eigvals(jacobian(params, MTCState(u_eq, u_eq, u_eq, u_eq), i_in, filter))
    return bool(np.all(eig.real < 0))


def resting_equilibrium(params: MTCParameters, i_in: float, filter: str = "linear") -> float:
    """"At rest under I": the most hyperpolarised *stable* root of I_ss(U) = I.

    Falls back to the most hyperpolarised root if none is linearly stable (the neuron then
    spikes from rest; the protocol still has a well-defined start). Raises ValueError if the
    steady-state curve has no root (impossible for finite parameters: I_ss spans all currents).
    """
    roots = equilibria(params, i_in)
    if roots.size == 0:
        raise ValueError(f"no equilibrium found under input {i_in}")
    for root in roots:
        if is_stable(params, root, i_in, filter):
            return float(root)
    return float(roots[0])

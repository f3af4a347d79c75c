"""The scipy reference integrator, and convergence of the discrete model to it as dt -> 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtc_analog.neuron.equations import MTCParameters, MTCState
from mtc_analog.neuron.reference import reference_rollout
from mtc_analog.neuron.step import METHODS, ORDERS, mtc_rollout

# Fast timescales so that 30 t_u exercise every variable; the input step makes the neuron spike.
PARAMS = MTCParameters(a_f=2.0, a_s_plus=2.0, a_s_minus=1.0, a_us=1.0, d_s_minus=-1.0, d_us=-1.0,
                       tau_f=0.3, tau_s=5.0, tau_us=50.0)
COARSE_DT = 0.1  # the input is held on this grid for every dt, so all runs see the same input
T_END = 30.0


def protocol() -> np.ndarray:
    start = np.arange(int(round(T_END / COARSE_DT))) * COARSE_DT
    return np.where(start < 2.0, -2.0, 0.5)


def test_linear_membrane_matches_closed_form():
    """All gains 0: tau_m dU/dt = -U + I, a first-order low-pass with a known step response."""
    params = MTCParameters(a_f=0.0, a_s_plus=0.0, tau_m=2.0, tau_f=0.0)
    i_in = np.where(np.arange(200) * 0.05 < 3.0, 0.0, 1.5)
    ref = reference_rollout(i_in, params, 0.05)
    t = ref.time
    want = np.where(t <= 3.0, 0.0, 1.5 * (1 - np.exp(-(t - 3.0) / 2.0)))
    np.testing.assert_allclose(ref.state.u_m[:, 0], want, atol=1e-9)
    # The slow filter of a ramp-free constant membrane (0) stays at 0 before the step.
    assert np.all(ref.state.u_s[t <= 3.0] == 0.0)
    np.testing.assert_array_equal(ref.state.u_f, ref.state.u_m)  # tau_f = 0


def test_per_neuron_parameters_are_independent():
    """Two neurons integrated together equal each integrated alone."""
    params2 = PARAMS._replace(a_f=np.array([2.0, 1.5]), tau_s=np.array([5.0, 7.0]))
    i_in = np.stack([protocol(), protocol() * 0.8], axis=1)
    both = reference_rollout(i_in, params2, COARSE_DT)
    for j in range(2):
        alone = reference_rollout(i_in[:, j], PARAMS._replace(a_f=params2.a_f[j], tau_s=params2.tau_s[j]), COARSE_DT)
        np.testing.assert_allclose(both.state.u_m[:, j], alone.state.u_m[:, 0], atol=1e-8)


@pytest.mark.parametrize("bad", [dict(dt=0.0), dict(filter="cubic"), dict(i_in=np.array([0.0, np.nan]))])
def test_bad_input_rejected(bad):
    kwargs = dict(i_in=np.zeros(10), params=PARAMS, dt=0.1) | bad
    with pytest.raises(ValueError):
        reference_rollout(**kwargs)


# Steps per COARSE_DT for each method: fine enough for the asymptotic regime, coarse enough that the
# error stays far above the reference's own (rtol 1e-10).
REFINEMENTS = {"euler": (5, 10, 20), "exact": (5, 10, 20), "heun": (2, 4, 8), "rk4": (1, 2, 4)}


@pytest.mark.parametrize("filter", ["linear", "ota"])
@pytest.mark.parametrize("method", METHODS)
def test_discrete_model_converges_to_reference_at_its_order(method, filter):
    """Max |U_m - U_ref| on the common grid at three dt's halving: the slope is the method's order
    (Euler and exact filters 1, since the membrane is Euler; Heun 2; RK4 4)."""
    current = protocol()
    ref = reference_rollout(current, PARAMS, COARSE_DT, filter=filter)
    assert ref.state.u_m.max() > 1.5  # the window contains spikes: the nonlinear regime is tested
    errors = []
    for repeat in REFINEMENTS[method]:
        dt = COARSE_DT / repeat
        fine = torch.tensor(np.repeat(current, repeat), dtype=torch.float64)[:, None]
        with torch.no_grad():
            rest = torch.zeros(1, dtype=torch.float64)
            out = mtc_rollout(fine, PARAMS, dt, MTCState(rest, rest, rest, rest), method=method, filter=filter,
                              record_membrane=True)
        u = np.concatenate([[0.0], out.u_m[:, 0].numpy()])[::repeat]
        errors.append(np.abs(u - ref.state.u_m[:, 0]).max())
    errors = np.array(errors)
    orders = np.log2(errors[:-1] / errors[1:])
    order = ORDERS[method]
    assert errors[-1] < 0.05
    assert np.all((orders > 0.85 * order) & (orders < 1.15 * order)), f"errors {errors}, orders {orders}"


def test_reference_starts_from_given_state():
    state = MTCState(-1.0, -1.0, -0.5, -0.2)
    ref = reference_rollout(np.zeros(5), PARAMS, 0.1, state=state)
    np.testing.assert_allclose([ref.state[k][0, 0] for k in range(4)], state)

"""The discrete step: explicit Euler update, exact filters, transduction, and gradients (float64)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from mtc_analog.neuron.equations import MTCParameters, MTCState
from mtc_analog.neuron.step import (METHODS, STABILITY_INTERCEPT, Transduction, max_stable_dt, mtc_rollout, mtc_step,
                                    transduce)

F64 = torch.float64


def t64(*values):
    return torch.tensor(values, dtype=F64)


PARAMS = MTCParameters(a_f=t64(2.0, 2.5, 1.2), a_s_plus=t64(2.0, 1.0, 2.2), a_s_minus=t64(0.0, 1.5, 0.7),
                       a_us=t64(0.5, 1.5, 1.0), d_f=t64(0.0, 0.2, -0.1), d_s_plus=t64(0.0, 0.1, 0.3),
                       d_s_minus=t64(-1.5, -1.2, -0.8), d_us=t64(-1.0, -1.5, 0.2), tau_m=1.0, tau_f=0.3,
                       tau_s=t64(5.0, 8.0, 6.0), tau_us=t64(40.0, 60.0, 50.0))
STATE = MTCState(t64(-0.7, 0.4, 1.3), t64(-0.2, 0.9, 1.0), t64(-1.1, 0.2, 0.5), t64(-1.4, -0.3, 0.1))
I_IN = t64(-0.5, 0.8, 1.7)
DT = 0.1


def explicit_spec_update(state, p, i_in, dt, filter):
    """docs/reference.md §3's Euler update written out by hand, every variable from the state at step t."""
    u_m, u_f, u_s, u_us = state
    uf = u_m if p.tau_f == 0 else u_f
    i_tot = (-p.a_f * torch.tanh(uf - p.d_f) + p.a_s_plus * torch.tanh(u_s - p.d_s_plus)
             - p.a_s_minus * torch.tanh(u_s - p.d_s_minus) + p.a_us * torch.tanh(u_us - p.d_us))
    g = (lambda x: x) if filter == "linear" else torch.tanh
    new_m = u_m + dt / p.tau_m * (-(u_m - p.u_rest) + p.resistance * i_in - p.resistance * i_tot)
    new_f = new_m if p.tau_f == 0 else u_f + dt / p.tau_f * g(u_m - u_f)
    return (new_m, new_f, u_s + dt / p.tau_s * g(u_m - u_s), u_us + dt / p.tau_us * g(u_m - u_us))


@pytest.mark.parametrize("filter", ["linear", "ota"])
@pytest.mark.parametrize("tau_f", [0.0, 0.3])
def test_euler_step_is_the_explicit_update(filter, tau_f):
    params = PARAMS._replace(tau_f=tau_f)
    got = mtc_step(STATE, I_IN, params, DT, "euler", filter)
    want = explicit_spec_update(STATE, params, I_IN, DT, filter)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13)


def explicit_spec_rhs(state, p, i_in, filter):
    """dX/dt written out by hand (docs/reference.md §2), for the Runge-Kutta checks."""
    u_m, u_f, u_s, u_us = state
    uf = u_m if p.tau_f == 0 else u_f
    i_tot = (-p.a_f * torch.tanh(uf - p.d_f) + p.a_s_plus * torch.tanh(u_s - p.d_s_plus)
             - p.a_s_minus * torch.tanh(u_s - p.d_s_minus) + p.a_us * torch.tanh(u_us - p.d_us))
    g = (lambda x: x) if filter == "linear" else torch.tanh
    dm = (-(u_m - p.u_rest) + p.resistance * i_in - p.resistance * i_tot) / p.tau_m
    df = dm if p.tau_f == 0 else g(u_m - u_f) / p.tau_f
    return (dm, df, g(u_m - u_s) / p.tau_s, g(u_m - u_us) / p.tau_us)


def by_hand_runge_kutta(state, p, i_in, dt, filter, method):
    def f(x):
        return explicit_spec_rhs(x, p, i_in, filter)

    def add(x, a, k):
        return tuple(xi + a * ki for xi, ki in zip(x, k))

    k1 = f(state)
    if method == "heun":
        k2 = f(add(state, dt, k1))
        return tuple(x + dt / 2 * (a + b) for x, a, b in zip(state, k1, k2))
    k2 = f(add(state, dt / 2, k1))
    k3 = f(add(state, dt / 2, k2))
    k4 = f(add(state, dt, k3))
    return tuple(x + dt / 6 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(state, k1, k2, k3, k4))


@pytest.mark.parametrize("method", ["heun", "rk4"])
@pytest.mark.parametrize("filter", ["linear", "ota"])
@pytest.mark.parametrize("tau_f", [0.0, 0.3])
def test_runge_kutta_step_is_the_textbook_scheme(method, filter, tau_f):
    params = PARAMS._replace(tau_f=tau_f)
    state = STATE._replace(u_f=STATE.u_m) if tau_f == 0 else STATE
    got = mtc_step(state, I_IN, params, DT, method, filter)
    want = by_hand_runge_kutta(state, params, I_IN, DT, filter, method)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_passive_membrane_is_stable_exactly_up_to_the_linear_limit(method):
    """All gains 0: tau_m dU/dt = -U. The step multiplies U by R(-dt/tau_m); it must decay just below
    the intercept STABILITY_INTERCEPT * tau_m and grow just above it (the value is right, not just safe)."""
    tau_m = 2.0
    params = MTCParameters(a_f=0.0, a_s_plus=0.0, tau_m=tau_m, tau_f=0.0)
    edge = STABILITY_INTERCEPT[method] * tau_m
    start = MTCState(*(torch.ones(1, dtype=F64),) * 4)
    for factor, grows in ((0.98, False), (1.02, True)):
        out = mtc_rollout(torch.zeros(400, 1, dtype=F64), params, factor * edge, start, method=method,
                          record_membrane=True, backend="reference")
        assert (abs(float(out.u_m[-1, 0])) > 1.0) is grows, (method, factor, float(out.u_m[-1, 0]))


def test_max_stable_dt():
    assert max_stable_dt("euler", 1.0) == pytest.approx(0.5)  # docs/reference.md §3
    assert max_stable_dt("exact", 2.0, tau_f=0.1) == pytest.approx(1.0)  # exact filters never bind
    assert max_stable_dt("heun", 1.0) == pytest.approx(0.5)
    assert max_stable_dt("rk4", 1.0) == pytest.approx(0.6963, abs=1e-4)
    assert max_stable_dt("euler", 1.0, tau_f=0.3) == pytest.approx(0.15)  # an Euler fast filter binds
    assert max_stable_dt("rk4", torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.0])) == pytest.approx(0.3482, abs=1e-4)
    with pytest.raises(ValueError, match="unknown method"):
        max_stable_dt("rk5", 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_presets_stay_bounded_at_the_allowed_step(method):
    """At max_stable_dt a strongly driven bursting neuron with large gains stays bounded."""
    params = MTCParameters(a_f=4.0, a_s_plus=4.0, a_s_minus=2.0, a_us=2.0, d_s_minus=-1.5, d_us=-1.5,
                           tau_s=10.0, tau_us=100.0)
    dt = max_stable_dt(method, 1.0)
    i_in = torch.linspace(-6, 6, 13, dtype=F64).expand(int(200 / dt), 1, 13)
    out = mtc_rollout(i_in, params, dt, method=method, record_membrane=True, backend="reference")
    assert torch.isfinite(out.u_m).all() and float(out.u_m.abs().max()) < 10


def test_exact_linear_filter_is_the_closed_form():
    """U_x(t+dt) = U_m + (U_x - U_m) exp(-dt/tau) with U_m held; the membrane stays Euler."""
    got = mtc_step(STATE, I_IN, PARAMS, DT, "exact", "linear")
    euler = mtc_step(STATE, I_IN, PARAMS, DT, "euler", "linear")
    torch.testing.assert_close(got.u_m, euler.u_m, rtol=0, atol=0)
    for field, tau in (("u_f", PARAMS.tau_f), ("u_s", PARAMS.tau_s), ("u_us", PARAMS.tau_us)):
        x = getattr(STATE, field)
        tau = torch.as_tensor(tau, dtype=F64)
        want = STATE.u_m + (x - STATE.u_m) * torch.exp(-DT / tau)
        torch.testing.assert_close(getattr(got, field), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dt", [0.1, 2.0, 25.0])
def test_exact_ota_filter_solves_the_ode(dt):
    """The exact OTA update solves tau dU_x/dt = tanh(U_m - U_x) with U_m held over the step."""
    got = mtc_step(STATE, I_IN, PARAMS, dt, "exact", "ota")
    for field, tau in (("u_f", PARAMS.tau_f), ("u_s", PARAMS.tau_s), ("u_us", PARAMS.tau_us)):
        for j in range(3):
            taus = torch.as_tensor(tau, dtype=F64).reshape(-1)
            tau_j = float(taus[0 if taus.numel() == 1 else j])
            u_m, x0 = float(STATE.u_m[j]), float(getattr(STATE, field)[j])
            sol = solve_ivp(lambda _t, x: np.tanh(u_m - x) / tau_j, (0, dt), [x0], rtol=1e-12, atol=1e-13)
            assert float(getattr(got, field)[j]) == pytest.approx(sol.y[0, -1], abs=1e-9)


def test_tau_f_zero_means_fast_reads_membrane():
    for method in METHODS:
        new = mtc_step(STATE, I_IN, PARAMS._replace(tau_f=0.0), DT, method, "linear")
        torch.testing.assert_close(new.u_f, new.u_m, rtol=0, atol=0)


def test_transductions():
    u = torch.linspace(-3, 3, 601, dtype=F64)
    clip = transduce(u, Transduction("clip", u_th=0.5, u_sat=1.5))
    assert float(clip.min()) == 0.0 and float(clip.max()) == 1.0
    torch.testing.assert_close(transduce(t64(1.0), Transduction("clip", u_th=0.5, u_sat=1.5)), t64(0.5))
    sig = transduce(u, Transduction("sigmoid", u_c=1.0))
    torch.testing.assert_close(sig, 1 / (1 + torch.exp(-2 * (u - 1.0))))
    assert torch.all(torch.diff(sig) > 0)
    with pytest.raises(ValueError, match="unknown transduction"):
        transduce(u, Transduction("step"))


def test_unknown_method_and_filter_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        mtc_step(STATE, I_IN, PARAMS, DT, "rk5")
    with pytest.raises(ValueError, match="unknown filter"):
        mtc_step(STATE, I_IN, PARAMS, DT, "euler", "cubic")


# ---------------------------------------------------------------------------------------------
# Gradients: BPTT through tanh, the filters and the transduction — no surrogate anywhere.

TRAINABLE = ("a_f", "a_s_plus", "a_s_minus", "a_us", "d_f", "d_s_plus", "d_s_minus", "d_us", "tau_f", "tau_s",
             "tau_us")


def leaf_params(tau_f: float):
    values = {name: torch.as_tensor(getattr(PARAMS, name), dtype=F64).expand(3).clone().requires_grad_(True)
              for name in TRAINABLE}
    values["tau_f"] = torch.full((3,), tau_f, dtype=F64, requires_grad=tau_f > 0)
    return values


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("filter", ["linear", "ota"])
def test_gradcheck_step(method, filter):
    values = leaf_params(0.3)
    state = [x.clone().requires_grad_(True) for x in STATE]
    i_in = I_IN.clone().requires_grad_(True)
    names = list(values)

    def f(i, *xs):
        params = PARAMS._replace(**dict(zip(names, xs[4:])))
        return tuple(mtc_step(MTCState(*xs[:4]), i, params, DT, method, filter))

    assert torch.autograd.gradcheck(f, (i_in, *state, *values.values()), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize(("filter", "kind", "method", "tau_f"), [
    ("linear", "clip", "euler", 0.0), ("linear", "sigmoid", "exact", 0.3),
    ("ota", "clip", "exact", 0.3), ("ota", "sigmoid", "euler", 0.0)])
def test_gradcheck_rollout(filter, kind, method, tau_f, backend):
    """24 steps, batch 2 x 3 neurons: outputs s and the membrane w.r.t. input, initial state, parameters.

    Both filters x both transductions (methods and tau_f alternate), through autograd of the plain
    step loop (``reference``) and the compiled kernel's hand-written backward (``fused``); ``fast_mode`` checks random
    projections of the full Jacobian, which keeps 24-step checks quick.
    """
    gen = torch.Generator().manual_seed(7)
    i_in = (0.8 * torch.randn(24, 2, 3, generator=gen, dtype=F64) + 0.6).requires_grad_(True)
    state = [(x.expand(2, 3) + 0.1 * torch.randn(2, 3, generator=gen, dtype=F64)).requires_grad_(True) for x in STATE]
    values = leaf_params(tau_f)
    names = list(values)
    # Wide clip span keeps the finite differences clear of the clip's two kinks.
    transduction = Transduction(kind, u_th=-0.35, u_sat=2.9, u_c=0.4)

    def f(i, *xs):
        params = PARAMS._replace(**dict(zip(names, xs[4:])))
        r = mtc_rollout(i, params, 0.2, MTCState(*xs[:4]), method, filter, transduction, record_membrane=True,
                        backend=backend)
        return r.s, r.u_m, *r.final

    inputs = (i_in, *state, *[v for v in values.values()])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("method", METHODS)
def test_mixed_instantaneous_and_filtered_fast_variable(method):
    """tau_f = 0 for one neuron and > 0 for another in the same layer: each behaves as if alone (no 0/0)."""
    tau_f = torch.tensor([0.0, 0.5], dtype=F64)
    params = MTCParameters(tau_f=tau_f, tau_s=10.0, tau_us=100.0)
    i_in = torch.full((200, 1, 2), 0.5, dtype=F64, requires_grad=True)
    mixed = mtc_rollout(i_in, params, 0.05, method=method, record_membrane=True, backend="reference")
    assert torch.isfinite(mixed.u_m).all()
    for k in range(2):
        alone = mtc_rollout(i_in[..., k:k + 1], params._replace(tau_f=float(tau_f[k])), 0.05, method=method,
                            record_membrane=True, backend="reference")
        torch.testing.assert_close(mixed.u_m[..., k:k + 1], alone.u_m)
    mixed.u_m.sum().backward()
    assert torch.isfinite(i_in.grad).all()

"""The continuous-time equations match docs/reference.md §2, typed here independently of the package."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtc_analog.neuron.equations import ELEMENTS, MTCParameters, MTCState, rhs, total_current, validate_parameters


def spec_rhs(u_m, u_f, u_s, u_us, p: dict, i_in, filter="linear"):
    """docs/reference.md §2, written out by hand (scalars)."""
    uf = u_m if p["tau_f"] == 0 else u_f
    i_tot = (-p["a_f"] * math.tanh(uf - p["d_f"]) + p["a_sp"] * math.tanh(u_s - p["d_sp"])
             - p["a_sm"] * math.tanh(u_s - p["d_sm"]) + p["a_us"] * math.tanh(u_us - p["d_us"]))
    du_m = (-(u_m - p["u_rest"]) + p["R"] * i_in - p["R"] * i_tot) / p["tau_m"]
    g = (lambda x: x) if filter == "linear" else math.tanh
    du_f = du_m if p["tau_f"] == 0 else g(u_m - u_f) / p["tau_f"]
    return du_m, du_f, g(u_m - u_s) / p["tau_s"], g(u_m - u_us) / p["tau_us"], i_tot


def random_case(rng, tau_f):
    p = {"a_f": rng.uniform(0, 3), "a_sp": rng.uniform(0, 3), "a_sm": rng.uniform(0, 3), "a_us": rng.uniform(0, 3),
         "d_f": rng.normal(), "d_sp": rng.normal(), "d_sm": rng.normal(), "d_us": rng.normal(),
         "tau_m": rng.uniform(0.5, 2), "tau_f": tau_f, "tau_s": rng.uniform(5, 50), "tau_us": rng.uniform(60, 500),
         "R": rng.uniform(0.5, 2), "u_rest": rng.normal(scale=0.3)}
    params = MTCParameters(p["a_f"], p["a_sp"], p["a_sm"], p["a_us"], p["d_f"], p["d_sp"], p["d_sm"], p["d_us"],
                           p["tau_m"], p["tau_f"], p["tau_s"], p["tau_us"], p["R"], p["u_rest"])
    state = rng.normal(scale=1.5, size=4)
    return p, params, state, rng.normal(scale=2)


@pytest.mark.parametrize("filter", ["linear", "ota"])
@pytest.mark.parametrize("tau_f", [0.0, 0.7])
def test_rhs_matches_spec_formula_numpy(filter, tau_f):
    rng = np.random.default_rng(1)
    for _ in range(50):
        p, params, x, i_in = random_case(rng, tau_f)
        got = rhs(MTCState(*x), params, i_in, filter)
        want = spec_rhs(*x, p, i_in, filter)
        np.testing.assert_allclose(got, want[:4], rtol=1e-12, atol=1e-12)
        assert total_current(params, MTCState(*x)) == pytest.approx(want[4], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("filter", ["linear", "ota"])
def test_rhs_torch_per_neuron_matches_scalar(filter):
    """Per-neuron tensor parameters broadcast: column j equals the scalar formula with neuron j's values."""
    rng = np.random.default_rng(2)
    cases = [random_case(rng, 0.4) for _ in range(5)]
    params = MTCParameters(*(torch.tensor([c[1][k] for c in cases], dtype=torch.float64)
                             for k in range(len(MTCParameters._fields))))
    state = MTCState(*(torch.tensor([c[2][k] for c in cases], dtype=torch.float64) for k in range(4)))
    i_in = torch.tensor([c[3] for c in cases], dtype=torch.float64)
    got = rhs(state, params, i_in, filter)
    for j, (p, _, x, i) in enumerate(cases):
        want = spec_rhs(*x, p, i, filter)
        for k in range(4):
            assert float(got[k][j]) == pytest.approx(want[k], rel=1e-12, abs=1e-12)


def test_element_signs_are_fixed_as_in_spec():
    signs = {e.name: (e.sign, e.timescale, e.variable) for e in ELEMENTS}
    assert signs == {"fast": (-1, "fast", "u_f"), "slow_plus": (+1, "slow", "u_s"),
                     "slow_minus": (-1, "slow", "u_s"), "ultraslow": (+1, "ultraslow", "u_us")}


def test_unknown_filter_rejected():
    with pytest.raises(ValueError, match="unknown filter"):
        rhs(MTCState(0.0, 0.0, 0.0, 0.0), MTCParameters(), 0.0, "quadratic")


@pytest.mark.parametrize("bad", [{"a_f": -0.1}, {"a_us": float("nan")}, {"tau_s": 0.0}, {"tau_f": -1.0},
                                 {"d_f": float("inf")}])
def test_validate_parameters_rejects(bad):
    with pytest.raises(ValueError, match="invalid MTC parameters"):
        validate_parameters(MTCParameters()._replace(**bad))
    validate_parameters(MTCParameters())  # the defaults are valid

"""I-V curves (docs/reference.md §5), negative-slope regions and equilibria."""

from __future__ import annotations

import numpy as np
import pytest

from mtc_analog.neuron.equations import MTCParameters, MTCState, rhs
from mtc_analog.neuron.iv import (equilibria, is_stable, iv_curves, negative_slope_regions, resting_equilibrium,
                                  steady_state_current)

U = np.linspace(-5, 5, 2001)


def test_curves_match_spec_formulas():
    p = MTCParameters(a_f=2.2, a_s_plus=1.7, a_s_minus=1.3, a_us=0.9, d_f=0.1, d_s_plus=0.2, d_s_minus=-1.4,
                      d_us=-0.6, resistance=1.0, u_rest=0.3)
    c = iv_curves(p, U)
    fast = U - 0.3 - 2.2 * np.tanh(U - 0.1)
    slow = fast + 1.7 * np.tanh(U - 0.2) - 1.3 * np.tanh(U + 1.4)
    np.testing.assert_allclose(c.fast, fast, atol=1e-12)
    np.testing.assert_allclose(c.slow, slow, atol=1e-12)
    np.testing.assert_allclose(c.ultraslow, slow + 0.9 * np.tanh(U + 0.6), atol=1e-12)


def test_steady_state_curve_is_where_the_rhs_vanishes():
    """I_ss(U) = I  <=>  every derivative is 0 with all variables at U (R != 1 included)."""
    p = MTCParameters(a_f=2.0, a_s_plus=2.0, a_s_minus=1.5, a_us=1.5, d_s_minus=-1.5, d_us=-1.5, resistance=1.7,
                      u_rest=-0.2, tau_f=0.2)
    for u in (-3.0, -1.1, 0.4, 2.5):
        i = float(steady_state_current(p, u))
        rate = rhs(MTCState(u, u, u, u), p, i)
        np.testing.assert_allclose(rate, 0.0, atol=1e-12)


@pytest.mark.parametrize("d_f", [-1.0, 0.0, 0.7])
@pytest.mark.parametrize("a_f", [0.3, 0.9, 0.99, 1.01, 1.2, 2.0, 3.5])
def test_fast_negative_slope_iff_a_f_above_one(a_f, d_f):
    """dI_fast/dU = 1 - a_f (1 - tanh^2(U - d_f)) < 0 somewhere iff a_f > 1, centred on d_f."""
    u = np.linspace(-6, 6, 24001)
    regions = negative_slope_regions(u, iv_curves(MTCParameters(a_f=a_f, d_f=d_f), u).fast)
    assert bool(regions) == (a_f > 1)
    if regions:
        (lo, hi), = regions
        assert (lo + hi) / 2 == pytest.approx(d_f, abs=1e-3)
        half_width = np.arctanh(np.sqrt(1 - 1 / a_f))  # where the slope is exactly zero
        assert hi - d_f == pytest.approx(half_width, abs=2e-3)


def test_slow_negative_slope_of_the_bursting_presets():
    burst = MTCParameters(a_f=2, a_s_plus=2, a_s_minus=1.5, a_us=1.5, d_s_minus=-1.5, d_us=-1.5)
    assert negative_slope_regions(U, iv_curves(burst, U).slow)
    spiking = MTCParameters(a_f=2, a_s_plus=2)
    assert not negative_slope_regions(U, iv_curves(spiking, U).slow)


def test_negative_slope_regions_on_known_curve():
    u = np.linspace(0, 10, 1001)
    regions = negative_slope_regions(u, np.cos(u))  # decreasing on (0, pi) and (2 pi, 3 pi)
    assert len(regions) == 2
    np.testing.assert_allclose(regions[0], (0, np.pi), atol=0.011)
    np.testing.assert_allclose(regions[1], (2 * np.pi, 3 * np.pi), atol=0.011)
    with pytest.raises(ValueError):
        negative_slope_regions(u[::-1], np.cos(u))


def test_equilibria_finds_all_three_roots_of_a_bistable_curve():
    p = MTCParameters(a_f=0.0, a_s_plus=0.0, a_s_minus=3.0, d_s_minus=0.0)  # I_ss = U - 3 tanh(U)
    roots = equilibria(p, 0.5)
    assert roots.size == 3
    np.testing.assert_allclose(steady_state_current(p, roots), 0.5, atol=1e-10)
    assert [is_stable(p, r, 0.5) for r in roots] == [True, False, True]
    assert resting_equilibrium(p, 0.5) == pytest.approx(roots[0])
    assert equilibria(p, 10.0).size == 1


@pytest.mark.parametrize(("params", "i0", "u_star"), [
    (MTCParameters(a_f=2, a_s_plus=2), -2.0, -2.0),  # I_ss(U) = U
    (MTCParameters(a_f=2, a_s_plus=2, a_us=2), -4.0, -2.0635004097722676),  # U + 2 tanh U = -4
])
def test_resting_equilibrium_of_presets(params, i0, u_star):
    assert resting_equilibrium(params, i0) == pytest.approx(u_star, abs=1e-10)
    assert is_stable(params, u_star, i0)

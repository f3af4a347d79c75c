"""MTCLayer: shapes, constraints by construction, gradients to every trainable parameter, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mtc_analog.neuron.equations import MTCParameters, validate_parameters
from mtc_analog.neuron.layer import MTCLayer
from mtc_analog.neuron.step import Transduction


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("shape", [(40, 8, 5), (40, 5), (40, 2, 3, 5)])
def test_shapes(shape, backend):
    """Time-major (T, ..., n): any number of batch dimensions, none included."""
    layer = MTCLayer(5, dt=0.5, backend=backend)
    with torch.no_grad():
        out = layer(torch.randn(*shape), record_membrane=True)
    assert out.s.shape == shape and out.u_m.shape == shape
    assert all(x.shape == shape[1:] for x in out.final)
    assert float(out.s.min()) >= 0.0 and float(out.s.max()) <= 1.0


def test_state_carries_over():
    """Running 2 x 30 steps with the state handed over equals one 60-step run."""
    layer = MTCLayer(4, dt=0.5).double()
    x = 1.5 * torch.randn(60, 3, 4, dtype=torch.float64)
    full = layer(x)
    first = layer(x[:30])
    second = layer(x[30:], state=first.final)
    torch.testing.assert_close(torch.cat([first.s, second.s]), full.s)


def test_gains_nonnegative_and_timescales_ordered_by_construction():
    layer = MTCLayer(16, train_timescales=True)
    with torch.no_grad():
        for raw in layer.raw_gains.values():
            raw.copy_(torch.linspace(-40, 5, 16))  # very negative raw values still give a >= 0
        layer.log_tau_s.copy_(torch.linspace(-1, 8, 16))
        layer.raw_tau_gap.copy_(torch.linspace(-10, 3, 16))  # (far below -15 the float32 gap rounds to 0)
    p = layer.parameters_record()
    for gain in ("a_f", "a_s_plus", "a_s_minus", "a_us"):
        assert bool((getattr(p, gain) >= 0).all())
    assert bool((p.tau_s < p.tau_us).all())
    validate_parameters(p)


def test_initial_parameters_are_the_init_record():
    init = MTCParameters(a_f=2.0, a_s_plus=1.5, a_s_minus=0.5, a_us=0.7, d_s_minus=-1.0, tau_s=8.0, tau_us=90.0)
    p = MTCLayer(3, init=init).parameters_record()
    for name in ("a_f", "a_s_plus", "a_s_minus", "a_us", "d_s_minus", "tau_s", "tau_us"):
        torch.testing.assert_close(getattr(p, name), torch.full((3,), float(getattr(init, name))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filter", ["linear", "ota"])
@pytest.mark.parametrize("kind", ["clip", "sigmoid"])
def test_gradients_reach_every_trainable_parameter(filter, kind):
    torch.manual_seed(0)
    layer = MTCLayer(6, dt=0.5, filter=filter, transduction=Transduction(kind), train_timescales=True, init_jitter=0.1)
    x = 2.0 * torch.rand(80, 4, 6)  # drives the neurons into spiking
    out = layer(x, record_membrane=True)
    loss = (out.s ** 2).mean() + out.u_m.pow(2).mean()
    loss.backward()
    names = [name for name, p in layer.named_parameters() if p.requires_grad]
    assert len(names) == 4 + 4 + 2
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient in {name}"


def test_fixed_timescales_are_buffers():
    layer = MTCLayer(3)
    trainable = {name for name, _ in layer.named_parameters()}
    assert not any("tau" in name for name in trainable)


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=3, method="rk5"),
                                 dict(n=3, init=MTCParameters(tau_s=100.0, tau_us=50.0))])
def test_bad_construction_rejected(bad):
    with pytest.raises(ValueError):
        MTCLayer(**bad)


def test_wrong_input_width_rejected():
    layer = MTCLayer(5)
    with pytest.raises(ValueError, match="5 neurons"):
        layer(torch.zeros(10, 2, 4))


def test_softplus_parameterisation_matches_record():
    layer = MTCLayer(2)
    p = layer.parameters_record()
    torch.testing.assert_close(p.a_f, F.softplus(layer.raw_gains["a_f"]))


def test_load_parameters_is_the_inverse_of_parameters_record():
    source = MTCLayer(5, dt=0.25, method="rk4", train_timescales=True, init_jitter=0.3)
    record = source.parameters_record()
    values = {k: torch.as_tensor(v).detach().double().expand(5).clone() for k, v in record._asdict().items()}
    values["a_s_minus"][2] = 0.0  # a pruned device: stays (numerically) 0
    values["tau_m"] = torch.linspace(0.8, 1.2, 5, dtype=torch.float64)  # per-neuron constants are allowed
    target = MTCLayer(5, dt=0.25, method="rk4", train_timescales=True).double()
    target.load_parameters(MTCParameters(**values))
    loaded = target.parameters_record()
    for name, value in values.items():
        torch.testing.assert_close(torch.as_tensor(getattr(loaded, name)).double().expand(5), value, rtol=1e-12, atol=1e-25)
    with pytest.raises(ValueError, match="tau_s < tau_us"):
        target.load_parameters(MTCParameters(**{**values, "tau_us": values["tau_s"]}))

"""LIF against snnTorch's Leaky; SE-adLIF dynamics and surrogate gradients."""

import math

import pytest
import torch

import snntorch
from snntorch import surrogate

from mtc_analog.baselines import AdLIFLayer, LIFLayer, atan_spike, slayer_spike


def test_lif_matches_snntorch_leaky_spikes_membrane_and_gradients():
    torch.manual_seed(0)
    T, B, N = 60, 3, 8
    beta = torch.rand(N) * 0.5 + 0.45
    current = (torch.randn(T, B, N) * 0.8 + 0.35).requires_grad_(True)

    ours = LIFLayer(N, learn_beta=False)
    ours.beta.copy_(beta)
    rec = ours(current, record_membrane=True)

    leaky = snntorch.Leaky(beta=beta.clone(), spike_grad=surrogate.atan(alpha=2.0), reset_mechanism="subtract")
    mem = leaky.init_leaky()
    spikes, membranes = [], []
    current_ref = current.detach().clone().requires_grad_(True)
    for t in range(T):
        spk, mem = leaky(current_ref[t], mem)
        spikes.append(spk)
        membranes.append(mem)
    spikes, membranes = torch.stack(spikes), torch.stack(membranes)

    assert rec.s.sum() > 20  # the comparison covers real spiking and resets
    torch.testing.assert_close(rec.s, spikes)
    torch.testing.assert_close(rec.u_m, membranes)
    weights = torch.randn(T, B, N)
    (rec.s * weights).sum().backward()
    (spikes * weights).sum().backward()
    torch.testing.assert_close(current.grad, current_ref.grad)


def test_lif_beta_is_trainable_and_clamped():
    layer = LIFLayer(4, beta=0.9, learn_beta=True)
    assert layer.beta.requires_grad
    with torch.no_grad():
        layer.beta.fill_(1.7)  # clamped to 1 in the forward: pure integration
    rec = layer(torch.full((5, 1, 4), 0.3), record_membrane=True)
    torch.testing.assert_close(rec.u_m[:3, 0, 0], torch.tensor([0.3, 0.6, 0.9]))
    with pytest.raises(ValueError):
        LIFLayer(3, beta=1.5)
    with pytest.raises(ValueError):
        layer(torch.zeros(5, 1, 3))


def test_surrogate_gradients_have_the_documented_shapes():
    v = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    atan_spike(v, 2.0).sum().backward()
    torch.testing.assert_close(v.grad, 1.0 / (1.0 + (math.pi * v.detach()) ** 2))
    v.grad = None
    slayer_spike(v, 5.0, 0.4).sum().backward()
    torch.testing.assert_close(v.grad, 0.4 * 5.0 / (2.0 * torch.exp(5.0 * v.detach().abs())))
    # forward is the Heaviside step, H(0) = 0
    assert atan_spike(torch.tensor([0.0, 1e-6]), 2.0).tolist() == [0.0, 1.0]


def test_snntorch_atan_agrees_with_ours():
    v = torch.randn(100, dtype=torch.float64, requires_grad=True)
    v2 = v.detach().clone().requires_grad_(True)
    atan_spike(v).sum().backward()
    surrogate.atan(alpha=2.0)(v2).sum().backward()
    torch.testing.assert_close(v.grad, v2.grad)


def test_adlif_subthreshold_relaxation_and_adaptation():
    layer = AdLIFLayer(3)
    with torch.no_grad():
        layer.tau_u.fill_(10.0)
        layer.tau_w.fill_(100.0)
        layer.a.zero_()
        layer.b.zero_()
    T = 200
    rec = layer(torch.full((T, 1, 3), 0.8), record_membrane=True)
    # no coupling, constant sub-threshold input: u_t = 0.8 (1 - a_u^t), never a spike
    a_u = math.exp(-1 / 10)
    expected = 0.8 * (1 - a_u ** torch.arange(1, T + 1, dtype=torch.float32))
    torch.testing.assert_close(rec.u_m[:, 0, 0], expected)
    assert rec.s.sum() == 0
    # with sub-threshold adaptation (a > 0) the steady state drops below the input: u* = I / (1 + q a)
    with torch.no_grad():
        layer.a.fill_(0.5)
    rec = layer(torch.full((2000, 1, 3), 0.8), record_membrane=True)
    assert rec.u_m[-1, 0, 0].item() == pytest.approx(0.8 / (1 + 120 * 0.5), rel=1e-3)


def test_adlif_spikes_reset_and_spike_triggered_adaptation_slows_firing():
    layer = AdLIFLayer(2)
    with torch.no_grad():
        layer.tau_u.fill_(5.0)
        layer.tau_w.fill_(100.0)
        layer.a.zero_()
        layer.b.copy_(torch.tensor([0.0, 2.0]))
    rec = layer(torch.full((400, 1, 2), 3.0), record_membrane=True)
    counts = rec.s[:, 0].sum(0)
    assert counts[0] > counts[1] > 0  # b_z > 0 adds a spike-triggered current that slows firing
    # the parameters are clamped into their ranges in the forward pass
    with torch.no_grad():
        layer.tau_u.fill_(1000.0)
        layer.b.fill_(10.0)
    p = layer.constrained()
    assert p["decay_u"][0].item() == pytest.approx(math.exp(-1 / 25))
    assert p["b"].max().item() == 2.0


def test_adlif_gradients_reach_every_parameter():
    torch.manual_seed(1)
    layer = AdLIFLayer(5)
    x = torch.randn(50, 2, 5) * 2 + 1.5
    layer(x).s.sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _indexed_loop_lif(layer, i_in):
    """The layers' former loop (x[t] indexing), kept here as the reference the unbind loop must equal."""
    from mtc_analog.baselines.lif import lif_step

    u, spikes = torch.zeros_like(i_in[0]), []
    for t in range(i_in.shape[0]):
        s, u = lif_step(u, i_in[t], layer.beta, layer.threshold, layer.alpha)
        spikes.append(s)
    return torch.stack(spikes)


def _indexed_loop_adlif(layer, i_in):
    from mtc_analog.baselines.surrogates import slayer_spike as spike

    p = layer.constrained()
    u, w, spikes = torch.zeros_like(i_in[0]), torch.zeros_like(i_in[0]), []
    for t in range(i_in.shape[0]):
        u = p["decay_u"] * u + (1.0 - p["decay_u"]) * (i_in[t] - w)
        z = spike(u - layer.threshold, layer.alpha, layer.c)
        u = u * (1.0 - z.detach())
        w = p["decay_w"] * w + (1.0 - p["decay_w"]) * layer.q * (p["a"] * u + p["b"] * z)
        spikes.append(z)
    return torch.stack(spikes)


@pytest.mark.parametrize("kind", ["lif", "adlif"])
def test_unbind_loop_gives_identical_outputs_and_gradients(kind):
    """The layers iterate with unbind (linear-time backward); numbers are bit-identical to x[t] indexing."""
    torch.manual_seed(3)
    layer = LIFLayer(7) if kind == "lif" else AdLIFLayer(7, seed=2)
    reference = _indexed_loop_lif if kind == "lif" else _indexed_loop_adlif
    x = (2.0 + 1.5 * torch.randn(60, 4, 7)).requires_grad_()
    weights = torch.rand(60, 4, 7)
    results = []
    for run in (lambda: layer(x).s, lambda: reference(layer, x)):
        out = run()
        grads = torch.autograd.grad((out * weights).sum(), [x, *layer.parameters()])
        results.append((out.detach(), grads))
    assert results[0][0].sum() > 0, "the input should make the layer spike"
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.equal(a, b)

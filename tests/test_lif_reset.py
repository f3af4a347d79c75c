"""LIF reset by subtraction with a threshold other than 1 (at theta = 1, "subtract theta" and
"subtract 1" are the same number, so the snnTorch comparison alone cannot tell them apart)."""

from __future__ import annotations

import snntorch
import torch
from snntorch import surrogate

from mtc_analog.baselines.lif import LIFLayer, lif_step


def test_reset_subtracts_the_threshold_by_hand():
    beta, theta = torch.tensor([0.5]), 1.5
    u, trace = torch.zeros(1), []
    for _ in range(5):
        _, u = lif_step(u, torch.ones(1), beta, threshold=theta)
        trace.append(float(u))
    # 1.0, 1.5 (not above theta: no reset), 1.75, then reset: 0.875 + 1 - 1.5 = 0.375, then 1.1875
    assert trace == [1.0, 1.5, 1.75, 0.375, 1.1875]


def test_lif_matches_snntorch_leaky_at_a_threshold_of_two():
    torch.manual_seed(1)
    T, B, N, theta = 50, 2, 6, 2.0
    beta = torch.rand(N) * 0.4 + 0.5
    current = torch.randn(T, B, N) * 1.0 + 0.9
    ours = LIFLayer(N, learn_beta=False, threshold=theta)
    ours.beta.copy_(beta)
    rec = ours(current, record_membrane=True)
    leaky = snntorch.Leaky(beta=beta.clone(), threshold=theta, spike_grad=surrogate.atan(alpha=2.0),
                           reset_mechanism="subtract")
    mem = leaky.init_leaky()
    spikes, membranes = [], []
    for t in range(T):
        spk, mem = leaky(current[t], mem)
        spikes.append(spk)
        membranes.append(mem)
    assert rec.s.sum() > 10  # resets happen
    torch.testing.assert_close(rec.s, torch.stack(spikes))
    torch.testing.assert_close(rec.u_m, torch.stack(membranes))

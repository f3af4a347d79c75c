"""SpikingRegressor: shapes, the low-pass cascade, the exported spec, activity metrics, bad input."""

import numpy as np
import pytest
import torch

from mtc_analog.errors import InputError
from mtc_analog.network import (NetworkConfig, NetworkOutput, SpikingRegressor, activity_metrics, lowpass_cascade)
from mtc_analog.neuron.equations import MTCParameters
from mtc_analog.neuron.step import mtc_rollout, transduce


@pytest.mark.parametrize("neuron", ["mtc", "lif", "adlif"])
def test_output_shapes_and_gradients(neuron):
    net = SpikingRegressor(NetworkConfig(neuron=neuron, hidden=(5, 4), substeps=3, dt=0.25))
    x = torch.randn(7, 2, 1)
    out = net(x, record_membrane=True)
    assert out.prediction.shape == (7, 2, 1)
    assert [s.shape for s in out.hidden_s] == [(21, 2, 5), (21, 2, 4)]
    assert [u.shape for u in out.hidden_u] == [(21, 2, 5), (21, 2, 4)]
    assert out.lowpass.shape == (21, 2, 1)
    torch.testing.assert_close(out.prediction, out.lowpass[2::3])
    out.prediction.sum().backward()
    assert net.readout.weight.grad is not None and net.projections[0].weight.grad.abs().sum() > 0


def test_lowpass_cascade_equals_the_explicit_euler_update():
    """Every stage reads the previous step's values (y_{k-1}[t-1]), as the neurons' Euler step does."""
    torch.manual_seed(0)
    y0 = torch.randn(300, 2, 1, dtype=torch.float64)
    alpha = 0.2
    stages = torch.zeros(5, 2, 1, dtype=torch.float64)  # stages[0] holds y_0 of the previous step
    expected = []
    for t in range(300):
        inputs = stages[:4].clone()
        stages[1:] = stages[1:] + alpha * (inputs - stages[1:])
        stages[0] = y0[t]
        expected.append(stages[4].clone())
    torch.testing.assert_close(lowpass_cascade(y0, alpha, 4), torch.stack(expected))
    torch.testing.assert_close(lowpass_cascade(y0, alpha, 0), y0)


@pytest.mark.parametrize("kind", ["exact", "euler"])
def test_lowpass_mean_delay_is_order_times_tau(kind):
    """The continuous cascade delays a signal by order * tau_lp on average; the model must too."""
    dt, tau, order = 0.5, 3.0, 4
    impulse = torch.zeros(400, 1, 1, dtype=torch.float64)
    impulse[0] = 1.0
    h = lowpass_cascade(impulse, dt / tau, order, kind)[:, 0, 0]
    steps = torch.arange(400, dtype=torch.float64)
    assert float(h.sum()) == pytest.approx(1.0, rel=1e-6)
    assert float((h * steps).sum() / h.sum()) * dt == pytest.approx(order * tau, rel=1e-6)


def test_exact_lowpass_matches_the_continuous_filter_at_second_order():
    """The exact (first-order-hold) cascade follows scipy's continuous 4th-order filter of a smooth
    input with an error falling ~4x per halving of dt; the Euler cascade's falls ~2x and is far larger."""
    from scipy import signal

    tau, fine = 3.0, 1.0 / 256
    t = np.arange(0.0, 150.0, fine)
    u = np.sin(0.7 * t) + np.cos(0.13 * t)
    _, y, _ = signal.lsim(signal.lti([1.0], [tau**4, 4 * tau**3, 6 * tau**2, 4 * tau, 1.0]), u, t)
    errors = {}
    for dt in (0.5, 0.25):
        idx = np.arange(int(dt / fine), t.size, int(dt / fine))  # model sample n lives at (n+1) dt
        y0 = torch.tensor(u[idx])[:, None, None]
        for kind in ("exact", "euler"):
            got = lowpass_cascade(y0, dt / tau, 4, kind)[:, 0, 0].numpy()
            tail = idx * fine > 60.0  # past the start-up transient (the model starts from 0)
            errors[kind, dt] = np.sqrt(np.mean((got - y[idx])[tail] ** 2)) / y[idx][tail].std()
    assert errors["exact", 0.25] < 1e-3 and errors["exact", 0.5] / errors["exact", 0.25] > 3.0
    assert errors["euler", 0.25] > 20 * errors["exact", 0.25]


def test_spec_reproduces_the_network_with_the_functional_step():
    """Rebuild the forward pass from to_spec() with the neuron's own rollout: same prediction."""
    cfg = NetworkConfig(neuron="mtc", hidden=(6, 3), dt=0.25, substeps=2, tau_lp=1.0, init_jitter=0.2,
                        mtc_init={"tau_s": 8.0, "tau_us": 40.0, "a_us": 0.3})
    net = SpikingRegressor(cfg)
    x = torch.randn(40, 1, 1)
    with torch.no_grad():
        expected = net(x).prediction[:, 0, 0].numpy()
    spec = net.to_spec()
    assert spec.n_in == 1 and spec.dt == 0.25 and spec.substeps == 2 and spec.sample_period == 0.5
    assert [layer.size for layer in spec.layers] == [6, 3]
    assert spec.layers[0].params.tau_m.shape == (6,) and spec.layers[1].weight.shape == (3, 6)
    h = x.double().repeat_interleave(2, dim=0)
    for layer in spec.layers:
        current = h @ torch.from_numpy(layer.weight).T + torch.from_numpy(layer.bias)
        params = MTCParameters(**{k: torch.from_numpy(np.asarray(v)) for k, v in layer.params._asdict().items()})
        h = mtc_rollout(current, params, spec.dt, method=spec.method, transduction=layer.transduction).s
    y = h @ torch.from_numpy(spec.readout.weight).T + torch.from_numpy(spec.readout.bias)
    y = lowpass_cascade(y, spec.dt / spec.readout.lowpass_tau, spec.readout.lowpass_order, cfg.lowpass)
    np.testing.assert_allclose(y[1::2, 0, 0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_to_spec_refuses_baselines():
    with pytest.raises(InputError, match="only MTC"):
        SpikingRegressor(NetworkConfig(neuron="lif", hidden=(3,))).to_spec()


def test_activity_metrics_count_by_definition():
    cfg = NetworkConfig(neuron="mtc", hidden=(2,), u_th=0.5, u_sat=1.5)
    net = SpikingRegressor(cfg)
    u = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 0.0], [0.9, 2.0]])[:, None, :]  # (4 steps, B=1, 2 neurons)
    s = transduce(u, cfg.transduction_record())
    out = NetworkOutput(torch.zeros(2, 1, 1), [s], [u], torch.zeros(4, 1, 1))
    m = activity_metrics(net, out)
    assert m["spike_rate"] == pytest.approx(3 / 8)  # neuron 0 crosses 0.5 twice, neuron 1 once
    assert m["duty_cycle"] == pytest.approx(3 / 8)  # s > 0 at three neuron-steps
    assert m["synops_per_step"] == pytest.approx(3 * 1 / 4)  # fan-out 1 (readout), 4 steps
    assert m["synop_kind"] == "MAC"
    lif = SpikingRegressor(NetworkConfig(neuron="lif", hidden=(2,)))
    spikes = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])[:, None, :]
    m = activity_metrics(lif, NetworkOutput(torch.zeros(2, 1, 1), [spikes], None, torch.zeros(4, 1, 1)))
    assert m["spike_rate"] == m["duty_cycle"] == pytest.approx(3 / 8)
    assert m["synop_kind"] == "AC"


def test_bad_input_and_config_are_input_errors():
    net = SpikingRegressor(NetworkConfig(neuron="lif", hidden=(3,)))
    with pytest.raises(InputError, match="time-major"):
        net(torch.zeros(5, 1))
    with pytest.raises(InputError, match="time-major"):
        net(torch.zeros(5, 1, 2))
    with pytest.raises(InputError, match="NaN"):
        net(torch.tensor([[[float("nan")]]]))
    with pytest.raises(InputError, match="unknown neuron"):
        SpikingRegressor(NetworkConfig(neuron="izhikevich"))
    with pytest.raises(InputError, match=r"'rk4' is unstable above its limit dt = 0.696"):
        SpikingRegressor(NetworkConfig(neuron="mtc", method="rk4", dt=0.8))
    with pytest.raises(InputError, match=r"'euler' is unstable above its limit dt = 0.5 "):
        SpikingRegressor(NetworkConfig(neuron="mtc", method="euler", dt=0.6))
    with torch.no_grad():
        net.readout.weight[0, 0] = float("inf")
    with pytest.raises(InputError, match="readout.weight"):
        net.check_finite()


def test_config_round_trips_through_a_dict():
    cfg = NetworkConfig(neuron="adlif", hidden=(4, 2), dt=0.2, substeps=5)
    assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError):
        NetworkConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_timescale_spread_gives_log_spaced_memories_and_keeps_the_ratio():
    net = SpikingRegressor(NetworkConfig(neuron="mtc", hidden=(5,), timescale_spread=16.0,
                                         mtc_init={"tau_s": 10.0, "tau_us": 100.0}))
    p = net.layers[0].parameters_record()
    tau_s = torch.sort(p.tau_s).values
    torch.testing.assert_close(tau_s, 10.0 * torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(p.tau_us / p.tau_s, torch.full((5,), 10.0))
    with pytest.raises(InputError, match="timescale_spread"):
        SpikingRegressor(NetworkConfig(neuron="mtc", timescale_spread=0.5))

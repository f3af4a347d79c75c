"""The fused C++ MTC rollout against the reference loop (mtc_step), forward and gradients.

The first test to run compiles the extension (cached afterwards under $MTC_ANALOG_BUILD_DIR or
~/.cache/mtc_analog). No test here skips: a machine that cannot build the kernel fails them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mtc_analog.neuron import fused
from mtc_analog.neuron.equations import MTCParameters, MTCState
from mtc_analog.neuron.layer import MTCLayer
from mtc_analog.neuron.step import METHODS, ORDERS, Transduction, mtc_rollout

VARIANTS = list(itertools.product(METHODS, ("linear", "ota"), ("clip", "sigmoid"), (0.0, 0.4)))
DT = 0.2
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout under test


def _params(n: int, tau_f: float, dtype=torch.float64, seed: int = 0) -> MTCParameters:
    """Per-neuron gains/offsets/slow time constants near a bursting regime, scalar tau_m/tau_f/R/U_rest."""
    gen = torch.Generator().manual_seed(seed)

    def per_neuron(centre: float, spread: float) -> torch.Tensor:
        return (centre + spread * torch.rand(n, generator=gen, dtype=dtype)).requires_grad_()

    def scalar(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=dtype, requires_grad=True)

    return MTCParameters(
        a_f=per_neuron(2.0, 0.3), a_s_plus=per_neuron(2.0, 0.3), a_s_minus=per_neuron(1.5, 0.3),
        a_us=per_neuron(1.5, 0.3), d_f=per_neuron(0.0, 0.2), d_s_plus=per_neuron(0.0, 0.2),
        d_s_minus=per_neuron(-1.5, 0.2), d_us=per_neuron(-1.5, 0.2),
        tau_m=scalar(1.0), tau_f=torch.tensor(tau_f, dtype=dtype, requires_grad=tau_f > 0),
        tau_s=per_neuron(5.0, 1.0), tau_us=per_neuron(30.0, 5.0), resistance=scalar(1.1), u_rest=scalar(0.1),
    )


def _inputs(steps=25, batch=3, n=5, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    i_in = (2.0 * torch.randn(steps, batch, n, generator=gen, dtype=dtype)).requires_grad_()
    state = MTCState(*(0.3 * torch.randn(batch, n, generator=gen, dtype=dtype) for _ in range(4)))
    state = MTCState(*(s.requires_grad_() for s in state))
    return i_in, state


def _loss(rollout, steps):
    # weights every output differently so that a transposed or shifted gradient cannot pass
    weights = torch.linspace(0.0, 1.0, rollout.s.numel(), dtype=rollout.s.dtype).reshape(rollout.s.shape)
    loss = (rollout.s * weights).sum() + (rollout.u_m ** 2).mean()
    return loss + sum((k + 1) * v.sum() for k, v in enumerate(rollout.final))


def _leaves(i_in, state, params):
    return [i_in, *state] + [v for v in params if isinstance(v, torch.Tensor) and v.requires_grad]


@pytest.mark.parametrize("method,filter,kind,tau_f", VARIANTS)
def test_forward_matches_reference(method, filter, kind, tau_f):
    params = _params(5, tau_f)
    i_in, state = _inputs()
    transduction = Transduction(kind, 0.2, 1.2, 0.5)
    with torch.no_grad():
        ref = mtc_rollout(i_in, params, DT, state, method, filter, transduction, True, backend="reference")
        out = mtc_rollout(i_in, params, DT, state, method, filter, transduction, True, backend="fused")
    assert out.s.shape == ref.s.shape and out.u_m.shape == ref.u_m.shape
    torch.testing.assert_close(out.s, ref.s, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.u_m, ref.u_m, rtol=0, atol=1e-12)
    for a, b in zip(out.final, ref.final):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert ref.s.std() > 0.05, "the test input should make the neurons fire (exercise the transduction)"


@pytest.mark.parametrize("method,filter,kind,tau_f", VARIANTS)
def test_gradients_match_reference_autograd(method, filter, kind, tau_f):
    params = _params(5, tau_f)
    i_in, state = _inputs()
    transduction = Transduction(kind, 0.2, 1.2, 0.5)
    grads = {}
    for backend in ("reference", "fused"):
        rollout = mtc_rollout(i_in, params, DT, state, method, filter, transduction, True, backend=backend)
        leaves = _leaves(i_in, state, params)
        found = torch.autograd.grad(_loss(rollout, i_in.shape[0]), leaves, allow_unused=True)
        # unused leaf (u_f's initial value when tau_f = 0): autograd says None, the kernel says 0
        grads[backend] = [torch.zeros_like(x) if g is None else g for g, x in zip(found, leaves)]
    for ref, got in zip(grads["reference"], grads["fused"]):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)
    assert grads["fused"][0].abs().max() > 0


@pytest.mark.parametrize("method,filter,kind,tau_f", [("euler", "linear", "clip", 0.0), ("exact", "ota", "sigmoid", 0.4),
                                                      ("euler", "ota", "sigmoid", 0.4), ("heun", "linear", "sigmoid", 0.4),
                                                      ("heun", "ota", "clip", 0.0), ("rk4", "ota", "sigmoid", 0.4),
                                                      ("rk4", "linear", "clip", 0.0)])
def test_gradcheck_fused_function(method, filter, kind, tau_f):
    steps, batch, n = 20, 2, 3
    i_in, state = _inputs(steps, batch, n, seed=3)
    params = _params(n, tau_f, seed=4)
    packed = torch.stack([fused._as_param(getattr(params, name), n, i_in) for name in fused.PARAM_ORDER])
    packed = packed.detach().clone().requires_grad_()
    states = [s.detach().clone().requires_grad_() for s in state]
    config = (DT, fused._filter_kind(method, filter), kind == "clip", 0.2, 1.2, 0.5, tau_f == 0.0)

    def run(x, m0, f0, s0, us0, p):
        return fused._FusedRollout.apply(x, m0, f0, s0, us0, p, config)

    assert torch.autograd.gradcheck(run, (i_in.detach().clone().requires_grad_(), *states, packed), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["heun", "rk4"])
@pytest.mark.parametrize("filter", ["linear", "ota"])
def test_kernel_converges_at_the_integrators_order(method, filter):
    """The kernel's own results at dt, dt/2 and dt/4 (float64): successive differences shrink as 2^order.

    A spiking neuron over 40 t_u (the nonlinear regime), compared on the common grid; the input is held
    on the coarse grid so every run integrates the same ODE."""
    params = MTCParameters(a_f=2.0, a_s_plus=2.0, a_s_minus=1.0, a_us=1.0, d_s_minus=-1.0, d_us=-1.0,
                           tau_f=0.3, tau_s=5.0, tau_us=50.0)
    coarse = {"heun": 0.05, "rk4": 0.2}[method]  # in each method's asymptotic regime
    steps = int(round(40.0 / coarse))
    drive = torch.where(torch.arange(steps) * coarse < 2.0, -2.0, 0.5).to(torch.float64)
    runs = []
    for repeat in (1, 2, 4):
        i_in = drive.repeat_interleave(repeat)[:, None, None]
        with torch.no_grad():
            out = mtc_rollout(i_in, params, coarse / repeat, method=method, filter=filter, record_membrane=True,
                              backend="fused")
        runs.append(out.u_m[repeat - 1 :: repeat, 0, 0])
    assert float(runs[-1].max()) > 1.5, "the window should contain spikes"
    d1 = float((runs[0] - runs[1]).abs().max())
    d2 = float((runs[1] - runs[2]).abs().max())
    order = torch.log2(torch.tensor(d1 / d2)).item()
    assert abs(order - ORDERS[method]) < 0.2 * ORDERS[method], (d1, d2, order)


def test_float32_matches_float64_reference():
    params64 = _params(8, 0.0)
    params32 = MTCParameters(*(v.detach().float() for v in params64))
    i_in, state = _inputs(steps=200, batch=4, n=8)
    with torch.no_grad():
        ref = mtc_rollout(i_in, params64, DT, state, backend="reference")
        out = mtc_rollout(i_in.float(), params32, DT, MTCState(*(s.float() for s in state)), backend="fused")
    assert out.s.dtype == torch.float32
    torch.testing.assert_close(out.s.double(), ref.s, rtol=0, atol=2e-4)


def test_long_regime_rollout_matches_reference():
    """A tonic-bursting preset (docs/reference.md §4 timescales) over 3000 steps, no grad: the regime-simulation use."""
    params = MTCParameters(a_f=2.0, a_s_plus=2.0, a_s_minus=1.5, a_us=1.5, d_s_minus=-1.5, d_us=-1.5,
                           tau_s=50.0, tau_us=2500.0)
    i_in = torch.full((3000, 1, 1), -1.0, dtype=torch.float64)
    state = MTCState(*(torch.full((1, 1), v, dtype=torch.float64) for v in (-1.5, -1.5, -1.5, -1.5)))
    with torch.no_grad():
        ref = mtc_rollout(i_in, params, 0.05, state, record_membrane=True, backend="reference")
        out = mtc_rollout(i_in, params, 0.05, state, record_membrane=True, backend="fused")
    crossings = ((ref.u_m[1:] > 0) & (ref.u_m[:-1] <= 0)).sum()
    assert crossings > 0, "the preset should spike within 3000 steps"
    torch.testing.assert_close(out.u_m, ref.u_m, rtol=0, atol=1e-9)


def test_batch_shapes_scalar_parameters_and_python_float_state():
    params = MTCParameters(tau_s=10.0, tau_us=100.0, tau_f=0.3)
    i_in = torch.randn(30, 2, 3, 4, dtype=torch.float64)
    u_s, u_us = torch.zeros(4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    # the reference's exact OTA filter needs tensors; the fused path also takes python floats
    ref_state = MTCState(torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64), u_s, u_us)
    with torch.no_grad():
        ref = mtc_rollout(i_in, params, DT, ref_state, method="exact", filter="ota", backend="reference")
        out = mtc_rollout(i_in, params, DT, MTCState(0.1, 0.0, u_s, u_us), method="exact", filter="ota", backend="fused")
    assert out.s.shape == (30, 2, 3, 4) and out.final.u_s.shape == (2, 3, 4)
    torch.testing.assert_close(out.s, ref.s, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.final.u_us, ref.final.u_us, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(12, 5), (12, 3, 5), (12, 2, 3, 5)])
def test_default_state_any_batch_rank(shape):
    """No state given: every variable starts at U_rest, with zero, one or several batch dimensions."""
    params = MTCParameters(u_rest=0.2, tau_s=10.0, tau_us=100.0)
    i_in = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    grads = {}
    for backend in ("reference", "fused"):
        out = mtc_rollout(i_in, params, DT, record_membrane=True, backend=backend)
        assert out.s.shape == shape and out.final.u_m.shape == shape[1:]
        grads[backend] = (out, torch.autograd.grad(out.u_m.sum(), i_in)[0])
    torch.testing.assert_close(grads["fused"][0].u_m, grads["reference"][0].u_m, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["fused"][1], grads["reference"][1], rtol=1e-10, atol=1e-12)


def test_auto_uses_fused_on_cpu_float32_and_layer_passes_backend_through():
    layer = MTCLayer(6, dt=0.5)
    i_in = torch.randn(10, 2, 6, requires_grad=True)
    before = fused.CALLS
    layer(i_in).s.sum().backward()
    assert fused.CALLS == before + 1, "backend='auto' on CPU float32 must take the fused kernel"
    assert i_in.grad is not None and layer.raw_gains["a_f"].grad is not None

    before = fused.CALLS
    MTCLayer(6, dt=0.5, backend="reference")(i_in)
    mtc_rollout(i_in.detach(), layer.parameters_record(), 0.5, backend="reference")
    assert fused.CALLS == before, "backend='reference' must not touch the fused kernel"

    before = fused.CALLS
    half = mtc_rollout(i_in.detach().bfloat16(), MTCParameters(), 0.5)  # unsupported dtype: reference loop
    assert fused.CALLS == before and half.s.dtype == torch.bfloat16


def test_layer_fused_and_reference_agree_in_training_mode():
    torch.manual_seed(0)
    fast = MTCLayer(7, dt=0.5, train_timescales=True, init_jitter=0.1, backend="fused").double()
    slow = MTCLayer(7, dt=0.5, train_timescales=True, init_jitter=0.1, backend="reference").double()
    slow.load_state_dict(fast.state_dict())
    i_in = 3.0 * torch.randn(40, 3, 7, dtype=torch.float64)
    for layer in (fast, slow):
        layer(i_in).s.pow(2).sum().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_unsupported_inputs_raise_with_fused_and_fall_back_with_auto():
    params = MTCParameters(tau_f=torch.tensor([0.0, 0.5]))  # mixed instantaneous/filtered fast element
    i_in = torch.randn(5, 1, 2)
    with pytest.raises(fused.FusedKernelError, match="tau_f"):
        mtc_rollout(i_in, params, DT, backend="fused")
    before = fused.CALLS
    mtc_rollout(i_in, params, DT, backend="auto")
    assert fused.CALLS == before
    with pytest.raises(ValueError, match="backend"):
        mtc_rollout(i_in, MTCParameters(), DT, backend="cuda")
    with pytest.raises(ValueError, match="filter"):
        mtc_rollout(i_in, MTCParameters(), DT, filter="cubic", backend="fused")


_BROKEN_BUILD = textwrap.dedent("""
    import warnings, torch
    from mtc_analog.neuron import fused
    from mtc_analog.neuron.equations import MTCParameters
    from mtc_analog.neuron.step import mtc_rollout
    x = torch.randn(4, 1, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            mtc_rollout(x, MTCParameters(), 0.1)
    assert fused.CALLS == 0
    messages = [str(w.message) for w in caught if "fused MTC kernel" in str(w.message)]
    assert len(messages) == 1, messages  # warned once, not per call
    print("FALLBACK:", messages[0])
""")


@pytest.mark.parametrize("ci", ["", "true"])
def test_failed_build_warns_once_and_falls_back_or_raises_under_ci(tmp_path, ci):
    """A real build failure (the build directory is a file): fallback with one warning; CI=true raises."""
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    env = dict(os.environ, MTC_ANALOG_BUILD_DIR=str(blocker), CI=ci, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", _BROKEN_BUILD], env=env, capture_output=True, text=True, timeout=120)
    if ci == "true":
        assert proc.returncode != 0
        assert "FusedKernelError" in proc.stderr and "could not be built" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "FALLBACK:" in proc.stdout and "falling back" in proc.stdout


def test_result_independent_of_thread_count():
    """Columns are independent recurrences: splitting them over threads must not change a bit."""
    params = _params(130, 0.4)  # 130 neurons x 3 batch = 9 column blocks to spread over threads
    i_in, state = _inputs(steps=15, batch=3, n=130)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            out = mtc_rollout(i_in, params, DT, state, "exact", "ota", backend="fused")
            results.append((out.s.detach(), torch.autograd.grad(out.s.sum(), i_in)[0]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


_FORKED_WORKERS = textwrap.dedent("""
    import multiprocessing, torch
    from mtc_analog.neuron.layer import MTCLayer

    def work(seed):
        torch.manual_seed(seed)
        x = torch.randn(20, 64, 256, requires_grad=True)  # enough columns for a parallel region
        MTCLayer(256)(x).s.sum().backward()
        return float(x.grad.abs().sum())

    if __name__ == "__main__":
        torch.set_num_threads(2)
        work(0)  # the parent's OpenMP pool now exists
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print("CHILDREN", pool.map(work, [1, 2]))
""")


def test_forked_workers_do_not_hang(tmp_path):
    """After the parent used the kernel, fork-started workers must still run it (libgomp + fork)."""
    script = tmp_path / "forked.py"
    script.write_text(_FORKED_WORKERS)
    env = dict(os.environ, PYTHONPATH=ROOT)  # this checkout's package (and kernel), not an installed one
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "CHILDREN" in proc.stdout


def test_build_is_for_a_fixed_isa_not_this_cpu():
    """Same binary on every CPU of a level: the flags name a psABI level, never -march=native."""
    if fused.platform.machine() == "x86_64":
        assert fused._ISA in ("x86-64-v4", "x86-64-v3", "x86-64-v2", "x86-64")
        assert not any("native" in flag for flag in fused._CFLAGS)
        assert f"-march={fused._ISA}" in fused._CFLAGS


_ISA_RESULTS = textwrap.dedent("""
    import sys, torch
    from mtc_analog.neuron import fused
    from mtc_analog.neuron.equations import MTCParameters, MTCState
    from mtc_analog.neuron.step import Transduction, mtc_rollout
    torch.manual_seed(0)
    n, batch, steps = 37, 5, 40  # chunks across batch rows, partial chunks, a partial 16-step segment
    out = {"isa": fused._ISA}
    for method in ("euler", "heun", "rk4"):
        for filt in ("linear", "ota"):
            for tau_f in (0.0, 0.4):
                gen = torch.Generator().manual_seed(1)
                rnd = lambda c, s: (c + s * torch.rand(n, generator=gen)).requires_grad_()
                params = MTCParameters(rnd(2.0, 0.3), rnd(2.0, 0.3), rnd(1.5, 0.3), rnd(1.5, 0.3), rnd(0.0, 0.2),
                                       rnd(0.0, 0.2), rnd(-0.9, 0.2), rnd(-0.9, 0.2), rnd(1.0, 0.1),
                                       torch.full((n,), tau_f), rnd(50.0, 5.0), rnd(2500.0, 100.0), rnd(1.0, 0.1),
                                       rnd(0.0, 0.1))
                i_in = (0.5 + 1.5 * torch.randn(steps, batch, n, generator=gen)).requires_grad_()
                state = MTCState(*(0.1 * torch.randn(batch, n, generator=gen) for _ in range(4)))
                state = MTCState(*(s.requires_grad_() for s in state))
                r = mtc_rollout(i_in, params, 0.25, state, method, filt, Transduction("clip"), True, backend="fused")
                weights = torch.rand(r.s.shape, generator=gen)
                loss = (r.s * weights).sum() + (r.u_m * weights).sum() + r.final.u_us.sum()
                leaves = [i_in, *state] + [v for v in params if v.requires_grad]
                out[(method, filt, tau_f)] = [r.s, r.u_m, *r.final] + list(torch.autograd.grad(loss, leaves))
    torch.save(out, sys.argv[1])
""")


def _other_isa() -> str | None:
    """A second x86-64 level this CPU runs, for the cross-build comparison (v3 on a v4 CPU, else v2)."""
    return {"x86-64-v4": "x86-64-v3", "x86-64-v3": "x86-64-v2"}.get(fused._ISA)


@pytest.mark.skipif(_other_isa() is None, reason="needs an x86-64-v3 or -v4 CPU (a second, lower level to compare with)")
def test_float32_results_are_bit_identical_across_isa_builds(tmp_path):
    """Determinism across machines: the build for this CPU's level (AVX-512 vectors on a v4 CPU) and the
    build for the level below give bit-identical float32 outputs and gradients wherever the kernel
    calls no libm/libmvec function (clip transduction, Euler/Heun/RK4, linear and OTA filters: the
    training defaults among them). The second build compiles here (~1 min)."""
    script = tmp_path / "isa_results.py"
    script.write_text(_ISA_RESULTS)
    results = {}
    for isa in (fused._ISA, _other_isa()):
        env = dict(os.environ, PYTHONPATH=ROOT, MTC_ANALOG_KERNEL_ISA=isa, CI="true")
        path = tmp_path / f"{isa}.pt"
        proc = subprocess.run([sys.executable, str(script), str(path)], env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[isa] = torch.load(path)
        assert results[isa].pop("isa") == isa
    first, second = results.values()
    assert first.keys() == second.keys() and len(first) == 12
    for key in first:
        for a, b in zip(first[key], second[key], strict=True):
            assert a.dtype == torch.float32
            assert torch.equal(a, b), f"{key}: builds differ by up to {(a - b).abs().max().item():.3g}"


_STREAM_RESULTS = textwrap.dedent("""
    import sys, torch
    from mtc_analog.neuron.equations import MTCParameters
    from mtc_analog.neuron.step import Transduction, mtc_rollout
    out = {}
    # partial chunks and unaligned rows (37 x 5), whole aligned chunks (256 x 4); a dense and a broadcast gradient
    for n, batch in ((37, 5), (256, 4)):
        for method in ("euler", "rk4"):
            gen = torch.Generator().manual_seed(2)
            rnd = lambda c, s: (c + s * torch.rand(n, generator=gen)).requires_grad_()
            params = MTCParameters(rnd(2.0, 0.3), rnd(2.0, 0.3), rnd(1.5, 0.3), rnd(1.5, 0.3), rnd(0.0, 0.2),
                                   rnd(0.0, 0.2), rnd(-0.9, 0.2), rnd(-0.9, 0.2), rnd(1.0, 0.1), torch.zeros(n),
                                   rnd(50.0, 5.0), rnd(2500.0, 100.0), rnd(1.0, 0.1), rnd(0.0, 0.1))
            i_in = (0.5 + 1.5 * torch.randn(40, batch, n, generator=gen)).requires_grad_()
            r = mtc_rollout(i_in, params, 0.25, None, method, "linear", Transduction("clip"), False, backend="fused")
            leaves = [i_in] + [v for v in params if v.requires_grad]
            dense = list(torch.autograd.grad((r.s * torch.rand(r.s.shape, generator=gen)).sum(), leaves, retain_graph=True))
            out[(n, method)] = [r.s] + dense + list(torch.autograd.grad(r.s.sum(), leaves))
    torch.save(out, sys.argv[1])
""")


def test_non_temporal_stores_write_the_same_values(tmp_path):
    """Large outputs (s forward, dL/dI backward) are written with non-temporal stores: with every output
    streamed ($MTC_ANALOG_STREAM_MB=0) and with none, outputs and gradients are bit-identical."""
    script = tmp_path / "stream_results.py"
    script.write_text(_STREAM_RESULTS)
    results = []
    for megabytes in ("0", "1e9"):
        env = dict(os.environ, PYTHONPATH=ROOT, MTC_ANALOG_STREAM_MB=megabytes, CI="true")
        path = tmp_path / f"stream_{megabytes}.pt"
        proc = subprocess.run([sys.executable, str(script), str(path)], env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(torch.load(path))
    streamed, cached = results
    assert streamed.keys() == cached.keys() and len(streamed) == 4
    for key in streamed:
        assert len(streamed[key]) == 1 + 2 * 14  # s, then dL/d(input and 13 parameters) for each loss
        for a, b in zip(streamed[key], cached[key], strict=True):
            assert torch.equal(a, b), f"{key}: streamed and cached writes differ by up to {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize("value, message", [("x86-64-v9", "is not an x86-64 level"), ("avx2", "is not an x86-64 level")])
def test_an_invalid_isa_request_is_one_clear_error(value, message):
    env = dict(os.environ, PYTHONPATH=ROOT, MTC_ANALOG_KERNEL_ISA=value, CI="true")
    code = "from mtc_analog.neuron import fused; fused.extension()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"$MTC_ANALOG_KERNEL_ISA={value} {message}" in proc.stderr and "unset it or name a level" in proc.stderr


def test_recycled_output_buffers_never_overwrite_live_tensors():
    """Large outputs come from a cache of freed buffers: a result still referenced keeps its values
    through later calls, a recycled buffer gives the same results as a fresh one, and
    release_buffers() frees what the cache holds."""
    steps, batch, n = 200, 8, 1024  # 6.5 MB per output: above the cache's 4 MiB threshold
    layer = MTCLayer(n, dt=0.25, method="euler", backend="fused")
    gen = torch.Generator().manual_seed(3)
    x1 = (0.5 + 1.5 * torch.randn(steps, batch, n, generator=gen)).requires_grad_()
    x2 = (0.5 + 1.5 * torch.randn(steps, batch, n, generator=gen)).requires_grad_()
    s1 = layer(x1).s
    s1.sum().backward()
    kept_s, kept_g = s1.detach().clone(), x1.grad.clone()
    for _ in range(3):  # buffers of x2's calls are freed and reused; s1 and x1.grad stay alive
        x2.grad = None
        layer(x2).s.sum().backward()
    assert torch.equal(s1, kept_s) and torch.equal(x1.grad, kept_g)
    del s1
    x1.grad = None
    again = layer(x1).s  # now from recycled buffers
    again.sum().backward()
    assert torch.equal(again, kept_s) and torch.equal(x1.grad, kept_g)
    del again, x1, x2
    assert fused.release_buffers() > 0
    assert fused.release_buffers() == 0


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf"])
def test_a_bad_buffer_cache_size_is_one_clear_error(value):
    env = dict(os.environ, PYTHONPATH=ROOT, MTC_ANALOG_BUFFER_CACHE_MB=value, CI="true")
    code = "from mtc_analog.neuron import fused; fused.extension()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "MTC_ANALOG_BUFFER_CACHE_MB" in proc.stderr and "must be a number of MiB >= 0" in proc.stderr


def test_cache_key_covers_what_changes_the_build(monkeypatch):
    """Another venv (Python prefix), another torch install or another compiler gets its own build."""
    base = fused._build_name()
    assert fused._build_name() == base  # stable
    monkeypatch.setattr(sys, "prefix", "/elsewhere/venv")
    assert fused._build_name() != base
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__file__", "/other/site-packages/torch/__init__.py")
    assert fused._build_name() != base
    monkeypatch.undo()
    monkeypatch.setenv("CXX", "clang++")
    assert fused._build_name() != base


def test_a_build_at_run_time_is_announced(tmp_path):
    """A build still needed at run time says so on stderr before compiling (here it then fails fast)."""
    env = dict(os.environ, MTC_ANALOG_BUILD_DIR=str(tmp_path), CXX="false", CI="", PYTHONPATH=ROOT)
    code = "from mtc_analog.neuron import fused; print(fused.is_built()); print(fused.available())"
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
    lines = [line for line in proc.stderr.splitlines() if "compiling the MTC neuron kernel (once, ~1 min) into" in line]
    assert len(lines) == 1 and str(tmp_path) in lines[0], proc.stderr


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_several_blocks_partial_blocks_and_segments(dtype):
    """Neurons split over several column blocks (one partial), 37 steps = two full 16-step checkpoint
    segments and a partial one: forward and gradients still equal the reference loop's."""
    n, batch, steps = 1100, 2, 37  # float64 blocks of 512 neurons, float32 of 1024: partial blocks both
    params = MTCParameters(*(v.detach().to(dtype) if isinstance(v, torch.Tensor) else v for v in _params(n, 0.4)))
    params = params._replace(a_f=params.a_f.clone().requires_grad_(), tau_s=params.tau_s.clone().requires_grad_())
    i_in, state = _inputs(steps, batch, n, seed=5)
    i_in = i_in.detach().to(dtype).requires_grad_()
    state = MTCState(*(s.detach().to(dtype).requires_grad_() for s in state))
    outs = {}
    for backend in ("reference", "fused"):
        r = mtc_rollout(i_in, params, DT, state, "rk4", "linear", Transduction("sigmoid"), True, backend=backend)
        loss = (r.s * torch.linspace(0, 1, r.s.numel(), dtype=dtype).reshape(r.s.shape)).sum() + r.final.u_s.sum()
        outs[backend] = (r.s.detach(), torch.autograd.grad(loss, [i_in, params.a_f, params.tau_s, *state]))
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-3, atol=2e-4)
    torch.testing.assert_close(outs["fused"][0], outs["reference"][0], **tol)
    for got, ref in zip(outs["fused"][1], outs["reference"][1]):
        torch.testing.assert_close(got, ref, **tol)


def test_a_stale_torch_build_lock_does_not_block_loading():
    """A build killed midway leaves torch's `lock` file behind; loading must not wait on it for ever."""
    from mtc_analog.neuron import fused

    fused.extension()  # built (or loaded) once, here
    stale = fused.build_dir() / fused._build_name() / "lock"
    stale.write_text("")
    proc = subprocess.run([sys.executable, "-c", "from mtc_analog.neuron import fused; fused.extension(); print('LOADED')"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0 and "LOADED" in proc.stdout, proc.stderr
    assert not stale.exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_chunks_of_several_rows_with_a_partial_chunk_and_dense_output_gradients(dtype, method):
    """The kernel works in chunks of 256 bytes (512 with AVX-512) of consecutive (batch row, neuron)
    columns, across row boundaries: 70 neurons x 9 rows = 630 columns = chunks that start mid-row and
    a partial last one; 21 steps = one full 16-step segment and a partial one. Dense gradients of s and
    of the membrane trace, and gradients of the final state: all equal the reference loop's."""
    n, batch, steps = 70, 9, 21
    params = MTCParameters(*(v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor) and v.requires_grad
                             else (v.detach().to(dtype) if isinstance(v, torch.Tensor) else v) for v in _params(n, 0.0)))
    i_in, state = _inputs(steps, batch, n, seed=7)
    i_in = i_in.detach().to(dtype).requires_grad_()
    state = MTCState(*(s.detach().to(dtype).requires_grad_() for s in state))
    outs = {}
    for backend in ("reference", "fused"):
        r = mtc_rollout(i_in, params, DT, state, method, "linear", Transduction("clip"), True, backend=backend)
        outs[backend] = (r.s.detach(), torch.autograd.grad(_loss(r, steps), _leaves(i_in, state, params)))
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-3, atol=2e-4)
    torch.testing.assert_close(outs["fused"][0], outs["reference"][0], **tol)
    for got, ref in zip(outs["fused"][1], outs["reference"][1]):
        torch.testing.assert_close(got, ref, **tol)

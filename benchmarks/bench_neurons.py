"""Forward+backward cost of one hidden layer per neuron type, against snnTorch Leaky in its fair form.

One layer of N neurons driven by a (T, B, N) float32 input current that requires grad (as if it came
from an input projection), loss = sum of the outputs, one backward. Models:

- ``mtc_euler``      MTCLayer, fused C++ rollout (mtc_analog.neuron.fused), Euler (1 RHS evaluation/step)
- ``mtc_rk4``        the same with RK4 (4 RHS evaluations per step)
- ``mtc_heun``       the same with Heun (2 RHS evaluations per step)
- ``mtc_reference``  MTCLayer through the Python loop over mtc_step (autograd through every op; slow)
- ``lif``            mtc_analog.baselines.LIFLayer (snnTorch Leaky semantics, ATan surrogate)
- ``adlif``          mtc_analog.baselines.AdLIFLayer (SE-adLIF, SLAYER surrogate)
- ``snntorch_leaky`` snntorch.Leaky(beta=0.9) looped over ``x.unbind(0)`` (its fastest fair form:
                     indexing ``x[t]`` would make every backward step add a full-size zero gradient)

Fairness (docs/reference.md §12): same dtype (float32), same thread count (1 intra-op thread by default: the
machines are shared), warm-up excluded (it also builds/loads the fused kernel), contenders
interleaved round by round so that a load spike hits all alike. The figure is the CPU time of the
calling thread (``time.thread_time``; with 1 intra-op thread torch computes in it), which a shared
machine's load inflates far less than wall time; wall time is printed too. Each cell reports the
median over rounds and the spread (min-max), the ratio of medians to snnTorch Leaky (and, as
"(min)", the ratio of the best rounds: interference from other tenants only ever adds time, so the
minima are the steadier figure on a shared host), and for the MTC models the CPU time per
neuron-step (median, and best round) and per RHS evaluation against the arithmetic floor of ~5 ns per
neuron-step fwd+bwd (4 tanh + ~100 flops, docs/reference.md §12). The targets are judged on the
medians. The machine's load (``uptime``) is printed before and after.

Peak memory (``--memory``): each model runs once more in a fresh subprocess; the figure is the growth
of the process's peak resident set size over one forward+backward (VmHWM after the pass, reset via
``/proc/self/clear_refs`` before it, minus VmRSS before it).

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_neurons.py            # grid T {300, 3000} x N {64, 256, 1024}, B 64
    nice -n 5 .venv/bin/python benchmarks/bench_neurons.py --quick    # T 300 x N {64, 256}, 3 rounds
    .venv/bin/python benchmarks/bench_neurons.py --steps 300 --neurons 256 --memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

# Measure this checkout's package, not whichever one the interpreter has installed: run as a script,
# sys.path[0] is benchmarks/, and an editable install elsewhere (another worktree) would be imported
# with its own kernel build. The header line names the package and the kernel build it used.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("mtc_euler", "mtc_heun", "mtc_rk4", "mtc_reference", "lif", "adlif", "snntorch_leaky")
DEFAULT_MODELS = ("mtc_euler", "mtc_rk4", "lif", "adlif", "snntorch_leaky")
BASELINE = "snntorch_leaky"
MTC_METHOD = {"mtc_euler": "euler", "mtc_heun": "heun", "mtc_rk4": "rk4", "mtc_reference": "euler"}
RHS_EVALS = {"euler": 1, "heun": 2, "rk4": 4}
MTC_DT = 0.25  # [t_u]; the cost per step does not depend on it
FLOOR_NS = 5.0  # arithmetic floor per neuron-step fwd+bwd, one RHS evaluation (docs/reference.md §12)


def make_step(model: str, n: int) -> Callable[[torch.Tensor], None]:
    """A closure running one forward+backward of ``model`` on an input current (T, B, n)."""
    if model in MTC_METHOD:
        from mtc_analog.neuron.layer import MTCLayer

        layer = MTCLayer(n, dt=MTC_DT, method=MTC_METHOD[model],
                         backend="reference" if model == "mtc_reference" else "fused")

        def forward(x: torch.Tensor) -> torch.Tensor:
            return layer(x).s
    elif model in ("lif", "adlif"):
        from mtc_analog.baselines import AdLIFLayer, LIFLayer

        layer = LIFLayer(n) if model == "lif" else AdLIFLayer(n)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return layer(x).s
    elif model == "snntorch_leaky":
        import snntorch

        layer = snntorch.Leaky(beta=0.9)

        def forward(x: torch.Tensor) -> torch.Tensor:
            mem = layer.init_leaky()
            spikes = []
            for x_t in x.unbind(0):  # fair form: no per-step full-size zero gradient
                spk, mem = layer(x_t, mem)
                spikes.append(spk)
            return torch.stack(spikes)
    else:
        raise ValueError(f"unknown model {model!r}: expected one of {MODELS}")

    def step(x: torch.Tensor) -> None:
        x.grad = None
        for p in layer.parameters():
            p.grad = None
        forward(x).sum().backward()

    return step


def make_input(steps: int, batch: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    # mean 0.5, spread 1.5 (model units): every neuron type spikes at some steps and rests at others
    return (0.5 + 1.5 * torch.randn(steps, batch, n, generator=gen)).requires_grad_()


def time_cell(models: list[str], steps: int, batch: int, n: int, rounds: int, warmup: int) -> dict[str, dict]:
    """CPU and wall seconds of each model, interleaved: round r runs every model once."""
    x = make_input(steps, batch, n)
    runners = {m: make_step(m, n) for m in models}
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    cpu: dict[str, list[float]] = {m: [] for m in models}
    wall: dict[str, list[float]] = {m: [] for m in models}
    for r in range(rounds):
        order = models if r % 2 == 0 else models[::-1]  # alternate the order too
        for model in order:
            c0, w0 = time.thread_time(), time.perf_counter()
            runners[model](x)
            cpu[model].append(time.thread_time() - c0)
            wall[model].append(time.perf_counter() - w0)
    return {m: {"cpu_s": cpu[m], "wall_s": wall[m]} for m in models}


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def memory_worker(model: str, steps: int, batch: int, n: int) -> int:
    """Peak-RSS growth [bytes] of one forward+backward (run inside a fresh process)."""
    run = make_step(model, n)
    run(make_input(3, 2, n))  # warm-up at a small size: loads kernels, allocator pools, lazy imports
    x = make_input(steps, batch, n)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    before = _status_bytes("VmRSS")
    run(x)
    return _status_bytes("VmHWM") - before


def measure_memory(model: str, steps: int, batch: int, n: int) -> int:
    cmd = [sys.executable, __file__, "--memory-worker", model, "--steps", str(steps), "--batch", str(batch),
           "--neurons", str(n), "--threads", str(torch.get_num_threads())]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker for {model} failed:\n{proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_growth_bytes"])


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 3000], help="T values of the grid")
    parser.add_argument("--neurons", type=int, nargs="+", default=[64, 256, 1024], help="N values of the grid")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per cell (each runs every model once)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: shared machines)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="T 300 x N {64, 256}, 3 rounds")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (one subprocess per model)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--memory-worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.memory_worker:
        growth = memory_worker(args.memory_worker, args.steps[0], args.batch, args.neurons[0])
        print(json.dumps({"peak_rss_growth_bytes": growth}))
        return 0
    if args.quick:
        args.steps, args.neurons, args.rounds = [300], [64, 256], 3
    models = list(dict.fromkeys(list(args.models) + [BASELINE]))

    print(f"one hidden layer, fwd+bwd, float32, CPU, torch {torch.__version__}, {torch.get_num_threads()} intra-op "
          f"thread(s), batch {args.batch}; {args.rounds} interleaved rounds after {args.warmup} warm-up; "
          f"figures: CPU time of the calling thread, median [min-max]")
    print(f"load before: {load()}")
    import mtc_analog
    from mtc_analog.neuron import fused

    print(f"package: {Path(mtc_analog.__file__).parent}; kernel build: {fused.build_dir() / fused._build_name()}")
    cells = []
    targets_met = True
    for steps in args.steps:
        for n in args.neurons:
            result = time_cell(models, steps, args.batch, n, args.rounds, args.warmup)
            neuron_steps = steps * args.batch * n
            base = statistics.median(result[BASELINE]["cpu_s"])
            base_min = min(result[BASELINE]["cpu_s"])
            print(f"\nT {steps}, N {n}, B {args.batch} ({neuron_steps / 1e6:.1f} M neuron-steps)")
            print(f"{'model':<16}{'CPU ms':>10}{'  [min-max]':<20}{'wall ms':>9}{'x Leaky':>9}{'(min)':>7}{'ns/n-step':>11}"
                  f"{'(min)':>7}{'ns/n-step/RHS':>15}{'x floor':>9}")
            cell = {"steps": steps, "neurons": n, "batch": args.batch, "models": {}}
            for m in models:
                cpu = result[m]["cpu_s"]
                med = statistics.median(cpu)
                ns = 1e9 * med / neuron_steps
                ns_min = 1e9 * min(cpu) / neuron_steps
                row = {"cpu_median_s": med, "cpu_s": cpu, "wall_median_s": statistics.median(result[m]["wall_s"]),
                       "ratio_to_leaky": med / base, "ns_per_neuron_step": ns,
                       "ratio_to_leaky_of_minima": min(cpu) / base_min, "ns_per_neuron_step_min": ns_min}
                line = (f"{m:<16}{1e3 * med:>10.1f}{f'  [{1e3 * min(cpu):.1f}-{1e3 * max(cpu):.1f}]':<20}"
                        f"{1e3 * row['wall_median_s']:>9.1f}{med / base:>9.2f}{min(cpu) / base_min:>7.2f}{ns:>11.2f}"
                        f"{ns_min:>7.2f}")
                if m in MTC_METHOD and m != "mtc_reference":
                    per_rhs = ns / RHS_EVALS[MTC_METHOD[m]]
                    row.update(ns_per_neuron_step_per_rhs=per_rhs, ratio_to_floor=per_rhs / FLOOR_NS)
                    line += f"{per_rhs:>15.2f}{per_rhs / FLOOR_NS:>9.2f}"
                print(line)
                cell["models"][m] = row
            if "mtc_euler" in cell["models"]:
                e = cell["models"]["mtc_euler"]
                ok_ratio, ok_floor = e["ratio_to_leaky"] <= 0.5, e["ratio_to_floor"] <= 1.5
                targets_met &= ok_ratio and ok_floor
                print(f"targets (medians): mtc_euler <= 0.5x Leaky: {e['ratio_to_leaky']:.2f}x {'met' if ok_ratio else 'NOT met'}; "
                      f"<= 1.5x floor ({1.5 * FLOOR_NS:.1f} ns/neuron-step): {e['ns_per_neuron_step']:.2f} ns "
                      f"{'met' if ok_floor else 'NOT met'} (best rounds: {e['ratio_to_leaky_of_minima']:.2f}x, "
                      f"{e['ns_per_neuron_step_min']:.2f} ns)")
            if args.memory:
                for m in models:
                    mib = measure_memory(m, steps, args.batch, n) / 2**20
                    cell["models"][m]["peak_rss_growth_mib"] = mib
                    print(f"peak memory growth {m:<16}{mib:>10.1f} MiB")
            cells.append(cell)
            del result
    print(f"\nload after: {load()}")
    if "mtc_euler" in models:
        print(f"all targets met: {targets_met}")
    if args.json:
        config = {"batch": args.batch, "rounds": args.rounds, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "timer": "time.thread_time (CPU of the calling thread)"}
        Path(args.json).write_text(json.dumps({"config": config, "cells": cells}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Forward+backward time and peak memory of one hidden layer, per neuron type, against snnTorch Leaky.

One layer of N neurons driven by a (T, B, N) input current that requires grad (as if it came from an
input projection), loss = sum of the outputs, one backward. Models, all float32 on CPU:

- ``mtc_fused``      MTCLayer with the fused C++ rollout (mtc_analog.neuron.fused)
- ``mtc_reference``  MTCLayer through the Python loop over mtc_step (autograd through every op)
- ``lif``            mtc_analog.baselines.LIFLayer (snnTorch Leaky semantics, ATan surrogate)
- ``adlif``          mtc_analog.baselines.AdLIFLayer (SE-adLIF, SLAYER surrogate)
- ``snntorch_leaky`` snntorch.Leaky(beta=0.9), looped over time in Python the standard way

Time: after a warm-up (which also builds/loads the fused kernel), the models run in turn, round
after round (so that a load spike on a shared machine hits all of them alike); the median wall-clock
time per model is reported with its ratio to snnTorch Leaky. torch uses its default intra-op thread
count (printed).

Peak memory: each model runs once more in a fresh subprocess; the figure is the growth of the
process's peak resident set size over one forward+backward: the kernel's peak-RSS mark (VmHWM in
/proc/self/status) is reset (``echo 5 > /proc/self/clear_refs``) after imports, model construction,
input allocation and one warm-up pass at a small size, and the result is VmHWM after the pass minus
VmRSS before it. It counts everything the pass allocates (autograd graph, saved tensors,
gradients), not only tensors. (``getrusage``'s ru_maxrss is no use here: Linux carries the parent's
peak into a child across fork+exec.)

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_neurons.py [--quick] [--batch 64 --steps 300 --neurons 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

MODELS = ("mtc_fused", "mtc_reference", "lif", "adlif", "snntorch_leaky")
BASELINE = "snntorch_leaky"
MTC_DT = 0.5  # [t_u], the MTCLayer default


def make_step(model: str, n: int) -> Callable[[torch.Tensor], None]:
    """A closure running one forward+backward of ``model`` on an input current (T, B, n)."""
    if model in ("mtc_fused", "mtc_reference"):
        from mtc_analog.neuron.layer import MTCLayer

        layer = MTCLayer(n, dt=MTC_DT, backend="fused" if model == "mtc_fused" else "reference")

        def forward(x: torch.Tensor) -> torch.Tensor:
            return layer(x).s
    elif model == "lif":
        from mtc_analog.baselines import LIFLayer

        layer = LIFLayer(n)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return layer(x).s
    elif model == "adlif":
        from mtc_analog.baselines import AdLIFLayer

        layer = AdLIFLayer(n)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return layer(x).s
    elif model == "snntorch_leaky":
        import snntorch

        layer = snntorch.Leaky(beta=0.9)

        def forward(x: torch.Tensor) -> torch.Tensor:
            mem = layer.init_leaky()
            spikes = []
            for t in range(x.shape[0]):
                spk, mem = layer(x[t], mem)
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


def time_models(models: list[str], steps: int, batch: int, n: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    x = make_input(steps, batch, n)
    runners = {m: make_step(m, n) for m in models}
    for model, run in runners.items():
        for _ in range(warmup):
            run(x)
    times: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(rounds):
        for model, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[model].append(time.perf_counter() - start)
    return times


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--neurons", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each runs every model once)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 rounds, 1 warm-up (same sizes)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--memory-worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        growth = memory_worker(args.memory_worker, args.steps, args.batch, args.neurons)
        print(json.dumps({"peak_rss_growth_bytes": growth}))
        return 0
    if args.quick:
        args.rounds, args.warmup = 3, 1
    models = list(args.models)
    if BASELINE not in models:
        models.append(BASELINE)

    print(f"one hidden layer, fwd+bwd: batch {args.batch}, {args.steps} steps, {args.neurons} neurons, float32, CPU, "
          f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads; "
          f"{args.rounds} rounds after {args.warmup} warm-up")
    times = time_models(models, args.steps, args.batch, args.neurons, args.rounds, args.warmup)
    medians = {m: statistics.median(ts) for m, ts in times.items()}
    memory = {} if args.no_memory else {m: measure_memory(m, args.steps, args.batch, args.neurons) for m in models}

    base_time = medians[BASELINE]
    base_mem = memory.get(BASELINE)
    header = f"{'model':<16}{'median [ms]':>12}{'min [ms]':>10}{'x Leaky':>9}"
    if memory:
        header += f"{'peak mem [MiB]':>16}{'x Leaky':>9}"
    print(header)
    rows = {}
    for m in models:
        line = f"{m:<16}{1e3 * medians[m]:>12.1f}{1e3 * min(times[m]):>10.1f}{medians[m] / base_time:>9.2f}"
        row = {"median_s": medians[m], "min_s": min(times[m]), "times_s": times[m], "time_ratio_to_leaky": medians[m] / base_time}
        if memory:
            mib = memory[m] / 2**20
            ratio = memory[m] / base_mem if base_mem else float("nan")
            line += f"{mib:>16.1f}{ratio:>9.2f}"
            row.update(peak_rss_growth_bytes=memory[m], memory_ratio_to_leaky=ratio)
        rows[m] = row
        print(line)
    if "mtc_fused" in medians:
        ratio = medians["mtc_fused"] / base_time
        print(f"target (issue 2): mtc_fused <= 0.5x snnTorch Leaky -> {ratio:.2f}x: {'met' if ratio <= 0.5 else 'NOT met'}")
    if args.json:
        config = {"batch": args.batch, "steps": args.steps, "neurons": args.neurons, "rounds": args.rounds,
                  "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "memory_method": "VmHWM (reset via clear_refs) minus VmRSS over one fwd+bwd, fresh process per model"}
        Path(args.json).write_text(json.dumps({"config": config, "models": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

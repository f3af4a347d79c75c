"""Memory estimates made before large allocations, checked against what the machine has available.

A ``--hidden`` that cannot fit must be refused with a figure before torch starts allocating (an
``std::bad_alloc`` from deep inside a kernel, or the OOM killer, says nothing useful).

Training memory = activations kept for backpropagation through time + parameters with their
gradients and Adam moments + the evaluation roll-out + the interpreter itself:

- activations: ``batch x steps x sum(hidden) x TRAINING_TRACES x bytes``, ``steps = (washout + window)
  x substeps``. ``TRAINING_TRACES`` is measured: the fused MTC layer keeps 6 tensors of that shape for
  its backward pass (input current, output, and the U_m, fast, slow, ultra-slow traces) and the peak
  resident set of one forward+backward batch grew by 6.4 such tensors (B 32, T 300, N 2048, float32);
  the LIF and AdLIF autograd graphs keep more (measured 9.6 and 17.6 at N 1024; see ``TRACES_BY_NEURON``);
- parameters: ``4 x`` (weights + biases + per-neuron parameters) ``x bytes`` (value, gradient, two
  Adam moments);
- evaluation: the whole series in one sequence (batch 1), a few traces, no graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import InsufficientMemoryError

#: Tensors of shape (batch, steps, neurons) alive at the peak of one training batch, per neuron type
#: (measured peak-RSS growth per float32 element, rounded up for headroom).
TRACES_BY_NEURON = {"mtc": 8, "lif": 12, "adlif": 20}
#: Per-neuron trainable parameters (upper bound over neuron types).
PARAMS_PER_NEURON = 32
#: Interpreter + torch + numpy resident before any tensor [bytes].
BASELINE_BYTES = 400 * 2**20
#: Refuse when the estimate exceeds this share of the available memory.
HEADROOM = 0.9


def available_memory() -> tuple[int | None, str]:
    """(bytes available, where the figure comes from): MemAvailable, or a lower cgroup limit."""
    best, source = None, "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                best, source = int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
                break
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's cgroup v2 limit can be far below the host's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            room = int(limit) - used
            if best is None or room < best:
                best, source = max(room, 0), "cgroup memory.max - memory.current"
    except (OSError, ValueError):
        pass
    return best, source


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def training_memory(net_cfg: Any, train_cfg: Any, n_samples: int, bytes_per_value: int = 4) -> dict[str, Any]:
    """Estimated peak memory [bytes] of :func:`mtc_analog.training.train.train`, with its parts."""
    hidden = [int(n) for n in net_cfg.hidden]
    sizes = [int(net_cfg.n_in), *hidden, int(net_cfg.n_out)]
    steps = (int(train_cfg.washout) + int(train_cfg.window)) * int(net_cfg.substeps)
    traces = TRACES_BY_NEURON.get(net_cfg.neuron, max(TRACES_BY_NEURON.values()))
    activations = int(train_cfg.batch) * steps * sum(hidden) * traces * bytes_per_value
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])) + PARAMS_PER_NEURON * sum(hidden)
    parameters = 4 * n_params * bytes_per_value
    evaluation = int(n_samples) * int(net_cfg.substeps) * sum(hidden) * 6 * bytes_per_value
    total = BASELINE_BYTES + parameters + max(activations, evaluation)
    return {"total": total, "activations": activations, "parameters": parameters, "evaluation": evaluation,
            "batch": int(train_cfg.batch), "steps": steps, "neurons": sum(hidden), "traces": traces,
            "bytes_per_value": bytes_per_value}


def check_training_memory(net_cfg: Any, train_cfg: Any, n_samples: int) -> dict[str, Any]:
    """Refuse (InsufficientMemoryError, with the figures) a training run that cannot fit in memory."""
    est = training_memory(net_cfg, train_cfg, n_samples)
    available, source = available_memory()
    if available is not None and est["total"] > HEADROOM * available:
        raise InsufficientMemoryError(
            f"training would need about {format_bytes(est['total'])} (activations: batch {est['batch']} x "
            f"{est['steps']} steps x {est['neurons']} neurons x {est['traces']} traces x {est['bytes_per_value']} B "
            f"= {format_bytes(est['activations'])}; parameters with gradients and Adam state "
            f"{format_bytes(est['parameters'])}) but {format_bytes(available)} is available ({source}): "
            f"lower --hidden, --batch, --window/--washout or --substeps")
    est["available"] = available
    return est


def check_allocation(nbytes: float, what: str, fix: str) -> None:
    """Refuse one allocation of ``nbytes`` that cannot fit (``what``: the thing, ``fix``: what to lower)."""
    available, source = available_memory()
    if available is not None and math.isfinite(nbytes) and nbytes > HEADROOM * available:
        raise InsufficientMemoryError(f"{what} would need about {format_bytes(nbytes)} but {format_bytes(available)} "
                                      f"is available ({source}): {fix}")

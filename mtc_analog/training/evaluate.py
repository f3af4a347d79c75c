"""Evaluation of a network on one split of a task: NRMSE and activity metrics.

A split is evaluated by streaming the contiguous series from ``washout`` samples before the
split's first sample (so the neurons' slow states are warmed up on real data, as they would be in
deployment), batch 1, and scoring only the split's own samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..network import ACTIVITY_DEFINITIONS, NetworkOutput, SpikingRegressor, activity_metrics
from ..tasks.mackey_glass import TaskData
from ..tasks.metrics import nrmse, rmse

#: Samples streamed before a split starts, to warm the neuron states up.
DEFAULT_EVAL_WASHOUT = 200

METRIC_DEFINITIONS: dict[str, str] = {
    "test_nrmse": "RMSE / std(target) on the test split (population std of the z-scored target over the split)",
    "val_nrmse": "same definition on the validation split",
    "test_rmse": "RMSE in z-scored units (training-split std of x)",
    **ACTIVITY_DEFINITIONS,
}


@dataclass
class SplitEvaluation:
    split: str
    prediction: np.ndarray  #: (T, n_out) z-scored
    target: np.ndarray  #: (T, n_out) z-scored
    start: int  #: index of the split's first input sample in the series
    metrics: dict[str, Any]
    output: NetworkOutput | None = None


def stream(network: SpikingRegressor, x: np.ndarray, record_membrane: bool = True, deviation: Any = None) -> NetworkOutput:
    """Run the network over one time-major input stream ``x`` (T, n_in), batch 1, without gradients
    (``deviation``: as :meth:`SpikingRegressor.forward`, e.g. a target's calibrated cells)."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            return network(torch.as_tensor(np.asarray(x, dtype=np.float32))[:, None, :], record_membrane=record_membrane,
                           deviation=deviation)
    finally:
        network.train(was_training)


def evaluate_split(network: SpikingRegressor, task: TaskData, split: str = "test",
                   washout: int = DEFAULT_EVAL_WASHOUT, keep_output: bool = False, deviation: Any = None) -> SplitEvaluation:
    """NRMSE and activity metrics of ``network`` on ``split`` of ``task`` (``deviation``: see :func:`stream`)."""
    part = task.split(split)
    first = max(0, part.start - washout)
    stop = part.start + len(part)
    output = stream(network, task.x[first:stop], deviation=deviation)
    lead = part.start - first
    prediction = output.prediction[lead:, 0].cpu().numpy()
    target = part.y
    metrics: dict[str, Any] = {
        f"{split}_nrmse": nrmse(prediction, target),
        f"{split}_rmse": rmse(prediction, target),
    }
    if np.all(np.isfinite(prediction)):
        metrics.update(activity_metrics(network, output, start_step=lead * network.config.substeps))
    return SplitEvaluation(split, prediction, target, part.start, metrics, output if keep_output else None)


def with_step(network: SpikingRegressor, dt: float, substeps: int) -> SpikingRegressor:
    """The same trained network integrated with another step ``dt`` and ``substeps`` per sample.

    The sample period ``dt * substeps`` must not change (it sets the task's time axis); parameters
    are time-step independent, so this measures the discretisation error of the trained model
    (dt -> 0 approaches the continuous-time circuit).
    """
    import dataclasses

    from ..errors import InputError

    old = network.config
    if abs(dt * substeps - old.sample_period) > 1e-9 * old.sample_period:
        raise InputError(f"dt * substeps = {dt * substeps:g} must equal the trained sample period {old.sample_period:g} t_u")
    refined = SpikingRegressor(dataclasses.replace(old, dt=float(dt), substeps=int(substeps)))
    refined.load_state_dict(network.state_dict())
    refined.eval()
    return refined


def evaluate_checkpoint(path: str | Path, split: str = "test", washout: int | None = None,
                        dt: float | None = None, substeps: int | None = None) -> dict[str, Any]:
    """Rebuild the task stored in a checkpoint and recompute its metrics on ``split``.

    ``washout`` defaults to the one the checkpoint was trained and evaluated with. ``dt`` and
    ``substeps`` (given together) re-integrate the network with another step; see :func:`with_step`.
    """
    from ..tasks.mackey_glass import make_task
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    task = make_task(checkpoint.task)
    if washout is None:
        washout = int(checkpoint.training.get("train_config", {}).get("eval_washout", DEFAULT_EVAL_WASHOUT))
    network = checkpoint.network
    if dt is not None or substeps is not None:
        if dt is None or substeps is None:
            from ..errors import InputError

            raise InputError("give --dt and --substeps together (their product is the sample period)")
        network = with_step(network, dt, substeps)
    result = evaluate_split(network, task, split, washout)
    return {"checkpoint": str(path), "neuron": network.neuron, "split": split, "horizon": checkpoint.task.horizon,
            "dt": network.config.dt, "substeps": network.config.substeps, **result.metrics}

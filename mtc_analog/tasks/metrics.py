"""Regression and activity metrics.

NRMSE here is ``RMSE(pred, target) / std(target)`` with the population std (ddof = 0) of the
target over the same samples: 1.0 is the score of always predicting the target's mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..neuron.equations import as_numpy
from ..neuron.spikes import upward_crossings  # noqa: F401  (re-exported for compatibility)


def _as_arrays(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = as_numpy(pred)
    target = as_numpy(target)
    if pred.shape != target.shape:
        raise InputError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.size == 0:
        raise InputError("cannot score an empty prediction")
    if not np.all(np.isfinite(pred)):
        raise InputError(f"prediction holds {int((~np.isfinite(pred)).sum())} NaN/Inf value(s)")
    if not np.all(np.isfinite(target)):
        raise InputError(f"target holds {int((~np.isfinite(target)).sum())} NaN/Inf value(s)")
    return pred, target



def mse(pred: Any, target: Any) -> float:
    pred, target = _as_arrays(pred, target)
    return float(np.mean((pred - target) ** 2))


def rmse(pred: Any, target: Any) -> float:
    return float(np.sqrt(mse(pred, target)))


def nrmse(pred: Any, target: Any) -> float:
    """RMSE / std(target) (population std over the same samples)."""
    pred, target = _as_arrays(pred, target)
    scale = float(np.std(target))
    if scale == 0.0:
        raise InputError("target is constant: NRMSE (RMSE / std(target)) is undefined")
    return float(np.sqrt(np.mean((pred - target) ** 2)) / scale)

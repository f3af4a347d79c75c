"""Discretisation gap of a trained network: how far its discrete model is from the continuous-time
system the circuit integrates.

    gap = discretisation_gap(network, task)          # dict; gap["gap"] is the output NRMSE

Definition: the network is streamed over a fixed stretch of the *validation* split (``washout``
warm-up samples, then ``samples`` scored ones, batch 1) at its own dt and method, and again with
the same weights at dt / ``refine`` (``substeps * refine``, same sample period) with the most
accurate integrator the package has (:data:`REFERENCE_METHOD`: ``rk4`` when the step offers it,
else exact filters). The gap is ``RMS(y_model - y_fine) / std(y_fine)`` over the scored samples —
the same definition as validation's "output NRMSE vs model" (:func:`signal_nrmse`), so a gap above
the validation threshold predicts a failed validation before any ngspice run. A network whose
output does not move at all (zero readout) has gap 0 when the two runs agree exactly.

The tolerance :data:`GAP_TOLERANCE` (0.02) is the issue's target for output NRMSE circuit vs model;
``validate`` and ``export`` print :func:`gap_warning` when a checkpoint exceeds it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..errors import InputError

#: A gap above this (output NRMSE, dimensionless) means the circuit will not follow the model.
GAP_TOLERANCE = 0.02
#: dt refinement of the reference run.
GAP_REFINE = 8
#: Validation samples scored, and warm-up samples streamed before them.
GAP_SAMPLES, GAP_WASHOUT = 300, 100


def reference_method() -> str:
    """The most accurate integrator the discrete step offers (rk4 > heun > exact filters)."""
    from ..neuron.step import METHODS

    for method in ("rk4", "heun", "exact"):
        if method in METHODS:
            return method
    return "euler"  # pragma: no cover


REFERENCE_METHOD = reference_method()


def refined_network(network: Any, refine: int = GAP_REFINE, method: str | None = None) -> Any:
    """The same trained network at dt / ``refine`` (same sample period) with ``method``."""
    from ..network import NetworkConfig, SpikingRegressor

    if int(refine) < 1:
        raise InputError(f"refine = {refine} must be >= 1")
    c = network.config
    cfg = dataclasses.replace(c, dt=c.dt / refine, substeps=c.substeps * int(refine),
                              method=method or REFERENCE_METHOD)
    fine = SpikingRegressor(NetworkConfig.from_dict(cfg.to_dict()))
    fine.load_state_dict(network.state_dict())
    fine.eval()
    return fine


def _stream_prediction(network: Any, x: np.ndarray) -> np.ndarray:
    from .evaluate import stream

    out = stream(network, x, record_membrane=False)
    return out.prediction[:, 0, :].double().cpu().numpy()


def gap_from_predictions(model: np.ndarray, reference: np.ndarray) -> float:
    """``RMS(model - reference) / std(reference)``; 0 when they agree exactly (even if flat)."""
    model, reference = np.asarray(model, float), np.asarray(reference, float)
    rms = float(np.sqrt(np.mean((model - reference) ** 2)))
    if rms == 0.0:
        return 0.0
    std = float(reference.std())
    return rms / std if std > 0 else math.inf


def discretisation_gap(network: Any, task: Any, samples: int = GAP_SAMPLES, washout: int = GAP_WASHOUT,
                       refine: int = GAP_REFINE, method: str | None = None) -> dict[str, Any]:
    """The network's discretisation gap on ``task``'s validation split (MTC networks; see module doc).

    LIF/AdLIF networks run per neuron step (their dynamics have no dt): the gap is not defined and
    ``{"gap": None, ...}`` is returned with the reason.
    """
    c = network.config
    if c.neuron != "mtc":
        return {"gap": None, "reason": f"{c.neuron} neurons are defined per step (no continuous-time circuit)"}
    part = task.split("val")
    n = min(int(samples), len(part))
    first = max(0, part.start - int(washout))
    x = task.x[first : part.start + n]
    lead = part.start - first
    method = method or REFERENCE_METHOD
    coarse = _stream_prediction(network, x)[lead:]
    fine = _stream_prediction(refined_network(network, refine, method), x)[lead:]
    if not (np.all(np.isfinite(coarse)) and np.all(np.isfinite(fine))):
        value = math.inf
    else:
        value = gap_from_predictions(coarse, fine)
    return {
        "gap": value,
        "tolerance": GAP_TOLERANCE,
        "within_tolerance": bool(value <= GAP_TOLERANCE),
        "model": {"dt": c.dt, "substeps": c.substeps, "method": c.method},
        "reference": {"dt": c.dt / refine, "substeps": c.substeps * refine, "method": method},
        "split": "val", "samples": n, "washout": lead,
        "definition": "RMS(y_model - y_ref) / std(y_ref) of the network output over the scored validation samples; "
                      "y_ref: same weights at dt/refine with the reference integrator",
    }


def gap_of_checkpoint(checkpoint: Any) -> dict[str, Any]:
    """The gap stored in a loaded checkpoint's metrics, or computed now for an older checkpoint
    (``"computed_on_load": True``)."""
    stored = (checkpoint.metrics or {}).get("discretisation_gap")
    if stored is not None:
        return {"gap": float(stored), "tolerance": GAP_TOLERANCE, "within_tolerance": float(stored) <= GAP_TOLERANCE,
                "computed_on_load": False}
    if checkpoint.network.config.neuron != "mtc":
        return {"gap": None, "computed_on_load": False}
    from ..tasks.mackey_glass import make_task

    result = discretisation_gap(checkpoint.network, make_task(checkpoint.task))
    result["computed_on_load"] = True
    return result


def gap_warning(gap: dict[str, Any]) -> str | None:
    """One line with the fix when the gap exceeds the tolerance (None when within it or undefined)."""
    value = gap.get("gap")
    if value is None or value <= GAP_TOLERANCE:
        return None
    model = gap.get("model") or {}
    where = f" (model dt {model['dt']:g}, {model['method']})" if model else ""
    return (f"warning: discretisation gap {value:.3f} > {GAP_TOLERANCE}{where}: the trained model is not the "
            f"continuous-time system the circuit integrates, expect a poor circuit match; retrain with the "
            f"defaults (`mtc-analog train` without --dt/--method) or a smaller --dt")


def print_gap_warning(checkpoint_path: Any, say: Any = print) -> dict[str, Any] | None:
    """For ``validate``/``export``: load the checkpoint's gap (computing it for an older checkpoint)
    and print :func:`gap_warning` when it exceeds the tolerance. Returns the gap record."""
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.network.config.neuron != "mtc":
        return None
    gap = gap_of_checkpoint(checkpoint)
    if "model" not in gap:
        c = checkpoint.network.config
        gap["model"] = {"dt": c.dt, "substeps": c.substeps, "method": c.method}
    line = gap_warning(gap)
    if line:
        say(line + (" [gap computed now: the checkpoint predates it]" if gap.get("computed_on_load") else ""))
    return gap

"""Chip-in-the-loop readout calibration (simulated): refit what a chip can re-program, the readout.

A chip whose hidden layer deviates from the trained model (mismatch, calibration error) can still be
re-programmed at its readout: weights and bias. The readout is linear and its low-pass is linear with unit
DC gain, so ``prediction = LP(W s + b) = W LP(s) + b``: the refit is a ridge regression of the target on the
low-passed hidden outputs of *that* chip (:func:`lowpassed_outputs`), on data it was measured on, scored on
data it was not. Used by the model-level (:mod:`.model_montecarlo`) and circuit-level (:mod:`.montecarlo`)
Monte Carlos. The low-pass is the model's (a chip's own differs by ~2 %: the calibration table's factor).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: Ridge penalty, relative to the mean feature energy times the number of rows (a long calibration stream).
RIDGE = 1e-4
#: Penalty towards the trained readout for a short calibration stream (a circuit's scored samples).
PRIOR_PENALTY = 0.1


def lowpassed_outputs(s: Any, config: Any) -> np.ndarray:
    """Hidden outputs ``s`` (K neuron steps, N) through the readout's low-pass, one row per input sample."""
    from ..network import lowpass_cascade

    h = torch.as_tensor(np.asarray(s, dtype=np.float64))[:, None, :]
    filtered = lowpass_cascade(h, config.dt / config.tau_lp, config.lowpass_order, config.lowpass)
    return filtered[config.substeps - 1:: config.substeps, 0, :].numpy()


def outputs_from_membrane(membrane: np.ndarray, network: Any) -> np.ndarray:
    """The last hidden layer's outputs ``s`` from its membrane traces (the transduction stage is the model's,
    as on every circuit target: behavioural)."""
    from ..neuron.step import transduce

    return transduce(torch.as_tensor(np.asarray(membrane, dtype=np.float64)), network.layers[-1].transduction).numpy()


def refit_readout(features: np.ndarray, target: np.ndarray, prior: tuple[np.ndarray, float] | None = None,
                  penalty: float = RIDGE) -> tuple[np.ndarray, float]:
    """Ridge regression ``target ~ features @ w + b`` (bias not penalised): ``(w, b)``. With ``prior``
    (the trained readout ``(w0, b0)``) the penalty pulls ``w`` towards ``w0`` instead of 0: a short calibration
    stream then corrects the trained readout instead of replacing it."""
    features = np.asarray(features, dtype=float)
    target = np.asarray(target, dtype=float).reshape(-1)
    n = features.shape[1]
    design = np.hstack([features, np.ones((features.shape[0], 1))])
    lam = penalty * float(np.mean(features ** 2)) * features.shape[0]
    gram = design.T @ design + lam * np.diag([1.0] * n + [0.0])
    rhs = design.T @ target
    if prior is not None:
        rhs = rhs + lam * np.append(np.asarray(prior[0], dtype=float).reshape(-1), 0.0)
    coef = np.linalg.solve(gram, rhs)
    return coef[:-1], float(coef[-1])


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    prediction, target = np.asarray(prediction, dtype=float).reshape(-1), np.asarray(target, dtype=float).reshape(-1)
    return float(np.sqrt(np.mean((prediction - target) ** 2)) / np.std(target))

"""Non-spiking anchors for the comparison: ridge regression on a window of past samples, and a
leaky echo state network (ESN) of the same size as the spiking hidden layer.

Both see exactly the z-scored stream and splits the spiking networks see; their hyper-parameters
(ridge penalty; ESN leak rate and spectral radius) are chosen on the validation split, and the
readout is fitted on the training split only. Note the ESN is recurrent, the spiking networks are
feedforward: it is a reference point, not a like-for-like architecture.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..tasks.mackey_glass import TaskData
from ..tasks.metrics import nrmse

RIDGE_PENALTIES = (1e-8, 1e-6, 1e-4, 1e-2, 1.0, 100.0)


def _fit_ridge(features: np.ndarray, target: np.ndarray, penalty: float) -> np.ndarray:
    gram = features.T @ features
    gram[np.diag_indices_from(gram)] += penalty * features.shape[0]
    return np.linalg.solve(gram, features.T @ target)


def _select_and_score(features: np.ndarray, task: TaskData, valid_from: int) -> dict[str, Any]:
    """Fit on train rows (from ``valid_from``), pick the penalty on val, score on test."""
    def rows(split: str) -> slice:
        part = task.split(split)
        return slice(max(part.start, valid_from), part.start + len(part))

    tr, va, te = rows("train"), rows("val"), rows("test")
    best = None
    for penalty in RIDGE_PENALTIES:
        w = _fit_ridge(features[tr], task.y[tr].astype(np.float64), penalty)
        score = nrmse(features[va] @ w, task.y[va])
        if best is None or score < best[0]:
            best = (score, penalty, w)
    val_score, penalty, w = best
    return {"val_nrmse": val_score, "test_nrmse": nrmse(features[te] @ w, task.y[te]), "ridge_penalty": penalty}


def ridge_window(task: TaskData, window: int = 100) -> dict[str, Any]:
    """Linear regression of x(t+H) on [x(t), x(t-1), ..., x(t-window+1), 1]."""
    start = time.perf_counter()
    x = task.x[:, 0].astype(np.float64)
    n = x.shape[0]
    features = np.ones((n, window + 1))
    for lag in range(window):
        features[lag:, lag] = x[: n - lag]
        features[:lag, lag] = x[0]
    result = _select_and_score(features, task, valid_from=window - 1)
    return {"model": f"ridge (window {window})", **result, "n_parameters": window + 1,
            "train_wall_s": time.perf_counter() - start}


def echo_state_network(task: TaskData, size: int, seed: int = 0, washout: int = 200,
                       leaks: tuple[float, ...] = (0.1, 0.3, 1.0), radii: tuple[float, ...] = (0.8, 0.95),
                       input_scale: float = 1.0) -> dict[str, Any]:
    """Leaky-tanh ESN: h[t] = (1-l) h[t-1] + l tanh(W_in x[t] + W h[t-1] + b); ridge readout on [h, x, 1]."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    w_in = rng.uniform(-input_scale, input_scale, size=(size, 1))
    bias = rng.uniform(-0.2, 0.2, size=size)
    w = rng.normal(size=(size, size))
    w /= np.max(np.abs(np.linalg.eigvals(w)))
    x = task.x.astype(np.float64)
    best = None
    for leak in leaks:
        for radius in radii:
            h = np.zeros(size)
            states = np.empty((x.shape[0], size))
            for t in range(x.shape[0]):
                h = (1 - leak) * h + leak * np.tanh(w_in @ x[t] + radius * (w @ h) + bias)
                states[t] = h
            features = np.hstack([states, x, np.ones((x.shape[0], 1))])
            result = _select_and_score(features, task, valid_from=washout)
            if best is None or result["val_nrmse"] < best["val_nrmse"]:
                best = {**result, "leak": leak, "spectral_radius": radius}
    return {"model": f"ESN ({size}, recurrent)", **best, "n_parameters": size + 2,
            "train_wall_s": time.perf_counter() - start}


def mlp_window(task: TaskData, window: int = 100, hidden: int = 64, seed: int = 0, epochs: int = 300,
               lrs: tuple[float, ...] = (1e-3, 3e-3)) -> dict[str, Any]:
    """A one-hidden-layer tanh MLP on the same window of past samples as the ridge anchor.

    Full-batch Adam on the training split, the epoch and learning rate with the best validation
    NRMSE kept (chosen on validation only), scored on test. Feedforward, like the spiking networks,
    but it sees the whole window at once (no memory of its own to learn).
    """
    import torch

    start = time.perf_counter()
    x = task.x[:, 0].astype(np.float32)
    n = x.shape[0]
    features = np.empty((n, window), dtype=np.float32)
    for lag in range(window):
        features[lag:, lag] = x[: n - lag]
        features[:lag, lag] = x[0]

    def rows(split: str) -> slice:
        part = task.split(split)
        return slice(max(part.start, window - 1), part.start + len(part))

    data = {s: (torch.from_numpy(features[rows(s)]), task.y[rows(s)].astype(np.float32)) for s in ("train", "val", "test")}
    best = None
    for lr in lrs:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(window, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        target = torch.from_numpy(data["train"][1])
        for epoch in range(epochs):
            opt.zero_grad()
            torch.mean((model(data["train"][0]) - target) ** 2).backward()
            opt.step()
            if epoch % 10 == 9:
                with torch.no_grad():
                    val = nrmse(model(data["val"][0]).numpy(), data["val"][1])
                    if best is None or val < best["val_nrmse"]:
                        test = nrmse(model(data["test"][0]).numpy(), data["test"][1])
                        best = {"val_nrmse": val, "test_nrmse": test, "lr": lr, "epochs": epoch + 1}
    n_params = window * hidden + hidden + hidden + 1
    return {"model": f"MLP (window {window}, {hidden} tanh)", **best, "n_parameters": n_params,
            "train_wall_s": time.perf_counter() - start}

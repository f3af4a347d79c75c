"""Figures for training, evaluation and comparison (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import save_figure  # noqa: E402


def plot_prediction(evaluation: Any, task: Any, path: str | Path, title: str = "", history: Sequence[dict] | None = None,
                    max_samples: int = 600) -> Path:
    """Prediction vs target on a split (z-scored units), the error, and the validation curve."""
    n = min(len(evaluation.target), max_samples)
    t = evaluation.start + np.arange(n) + task.config.horizon
    rows = 3 if history else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.4 * rows), constrained_layout=True)
    axes[0].plot(t, evaluation.target[:n, 0], color="k", lw=1.2, label="target x(t+H)")
    axes[0].plot(t, evaluation.prediction[:n, 0], color="tab:red", lw=1.0, label="prediction")
    axes[0].set_ylabel("x (z-scored)")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(title or f"{evaluation.split} split")
    axes[1].plot(t, evaluation.prediction[:n, 0] - evaluation.target[:n, 0], color="tab:purple", lw=0.8)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_ylabel("error")
    axes[1].set_xlabel("sample (target time)")
    if history:
        epochs = [h["epoch"] for h in history]
        axes[2].semilogy(epochs, [h["val_nrmse"] for h in history], "o-", label="val NRMSE")
        axes[2].semilogy(epochs, [np.sqrt(h["train_mse"]) for h in history], "s-", label="sqrt train MSE")
        axes[2].set_xlabel("epoch")
        axes[2].legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def plot_comparison(rows: Sequence[dict[str, Any]], path: str | Path, horizon_curve: dict[str, dict[int, list[float]]] | None = None
                    ) -> Path:
    """Bar chart of test NRMSE (mean ± std) and activity per model; NRMSE vs horizon if given."""
    cols = 3 if horizon_curve else 2
    fig, axes = plt.subplots(1, cols, figsize=(4.2 * cols, 3.6), constrained_layout=True)
    names = [r["model"] for r in rows]
    means = [r["test_nrmse_mean"] for r in rows]
    stds = [r.get("test_nrmse_std", 0.0) or 0.0 for r in rows]
    axes[0].bar(names, means, yerr=stds, color="tab:blue", capsize=4)
    axes[0].set_ylabel("test NRMSE")
    axes[0].tick_params(axis="x", rotation=30)
    spiking = [r for r in rows if r.get("spike_rate_mean") is not None]
    if spiking:
        xs = np.arange(len(spiking))
        axes[1].bar(xs - 0.2, [r["spike_rate_mean"] for r in spiking], 0.4, label="spike rate")
        axes[1].bar(xs + 0.2, [r["duty_cycle_mean"] for r in spiking], 0.4, label="duty cycle")
        axes[1].set_xticks(xs, [r["model"] for r in spiking])
        axes[1].set_yscale("log")
        axes[1].set_ylabel("per neuron step")
        axes[1].legend(fontsize=8)
    if horizon_curve:
        for model, curve in horizon_curve.items():
            hs = sorted(curve)
            axes[2].errorbar(hs, [np.mean(curve[h]) for h in hs], yerr=[np.std(curve[h]) for h in hs], marker="o",
                             label=model, capsize=3)
        axes[2].set_xlabel("horizon H [samples]")
        axes[2].set_ylabel("test NRMSE")
        axes[2].set_yscale("log")
        axes[2].legend(fontsize=8)
    return save_figure(fig, path, dpi=110)

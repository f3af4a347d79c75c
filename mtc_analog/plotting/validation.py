"""Figures of the circuit-versus-model validation report (all axes in model units).

Each function takes plain numpy arrays and returns a matplotlib Figure; the report embeds them.
Model traces are drawn solid, circuit traces dashed, in the same colour per neuron.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODEL_STYLE = {"color": "tab:blue", "lw": 1.1}
CIRCUIT_STYLE = {"color": "tab:orange", "lw": 1.0, "ls": "--"}


def membrane_overlay(
    time: np.ndarray,
    u_model: np.ndarray,
    u_circuit: np.ndarray,
    neurons: Sequence[int],
    u_th: float | None = None,
    title: str = "membrane: model vs circuit",
    window: tuple[float, float] | None = None,
):
    """One panel per neuron: U_m of the model (solid) and of the circuit (dashed) [V_s] over t [t_u]."""
    neurons = list(neurons)
    fig, axes = plt.subplots(len(neurons), 1, figsize=(9, 1.7 * len(neurons) + 0.6), sharex=True, squeeze=False)
    sel = slice(None)
    if window is not None:
        sel = (time >= window[0]) & (time <= window[1])
    for ax, i in zip(axes[:, 0], neurons):
        ax.plot(time[sel], u_model[sel, i], label="model", **MODEL_STYLE)
        ax.plot(time[sel], u_circuit[sel, i], label="circuit", **CIRCUIT_STYLE)
        if u_th is not None:
            ax.axhline(u_th, color="0.6", lw=0.6, ls=":")
        ax.set_ylabel(f"n{i}  U_m [V_s]", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("t [t_u]")
    fig.tight_layout()
    return fig


def rasters(model_times: list, circuit_times: list, duration: float, title: str = "spike rasters"):
    """Model and circuit spike rasters side by side (neuron index vs t [t_u])."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.12 * max(len(model_times), 10) + 1.5), sharey=True)
    for ax, trains, name in ((axes[0], model_times, "model"), (axes[1], circuit_times, "circuit")):
        ax.eventplot([np.asarray(t) for t in trains], lineoffsets=np.arange(len(trains)), linelengths=0.8,
                     linewidths=0.8, colors="k")
        ax.set_xlim(0, duration)
        ax.set_title(f"{name}: {sum(len(t) for t in trains)} spikes")
        ax.set_xlabel("t [t_u]")
    axes[0].set_ylabel("neuron")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def error_histograms(membrane_nrmse: np.ndarray, gamma: np.ndarray, count_error: np.ndarray):
    """Per-neuron distributions: membrane NRMSE, Gamma, spike-count error (circuit - model)."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, values, label in (
        (axes[0], membrane_nrmse, "membrane NRMSE per neuron"),
        (axes[1], gamma, "coincidence factor Gamma per neuron"),
        (axes[2], count_error, "spike-count error (circuit - model)"),
    ):
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            # near-identical values (e.g. every Gamma 1 - 1e-16) cannot be split into several bins
            bins = min(30, max(5, finite.size // 2)) if np.ptp(finite) > 1e-9 else 1
            ax.hist(finite, bins=bins, color="tab:gray", edgecolor="k")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("neurons")
    fig.tight_layout()
    return fig


def output_vs_target(
    sample_index: np.ndarray, target: np.ndarray, model: np.ndarray, circuit: np.ndarray, title: str = "network output"
):
    """Prediction of model and circuit against the ground truth, per input sample."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(sample_index, target, color="k", lw=1.4, label="target")
    ax.plot(sample_index, model, label="model", **MODEL_STYLE)
    ax.plot(sample_index, circuit, label="circuit", **CIRCUIT_STYLE)
    ax.set_xlabel("test sample")
    ax.set_ylabel("output (z-scored)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def iv_curves(curves: list[dict], title: str = "I-V curves of mapped neurons (from unmapped circuit values)"):
    """One panel per neuron; ``curves[i] = {"label", "u", "fast", "slow", "ultraslow"}`` [V_s], [I_u]."""
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.5, 3), squeeze=False, sharey=True)
    for ax, curve in zip(axes[0], curves):
        for key, colour in (("fast", "tab:red"), ("slow", "tab:green"), ("ultraslow", "tab:purple")):
            if key in curve:
                ax.plot(curve["u"], curve[key], color=colour, label=key)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_title(curve.get("label", ""), fontsize=9)
        ax.set_xlabel("U [V_s]")
    axes[0, 0].set_ylabel("I [I_u]")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def dt_study(rows: list[dict]):
    """Model-vs-circuit gap against the model's dt, one line per integration method.

    ``rows``: dicts with ``dt``, ``method``, ``output_nrmse_vs_circuit``, ``spike_coincidence``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
    methods = sorted({r["method"] for r in rows})
    for method in methods:
        sub = sorted((r for r in rows if r["method"] == method), key=lambda r: r["dt"])
        dts = [r["dt"] for r in sub]
        axes[0].loglog(dts, [max(r["output_nrmse_vs_circuit"], 1e-12) for r in sub], "o-", label=method)
        axes[1].semilogx(dts, [r["spike_coincidence"] for r in sub], "o-", label=method)
    axes[0].set_xlabel("model dt [t_u]")
    axes[0].set_ylabel("output NRMSE, circuit vs model")
    axes[1].set_xlabel("model dt [t_u]")
    axes[1].set_ylabel("Gamma, circuit vs model")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("does the gap shrink with dt? (yes: discretisation; no: circuit)", fontsize=10)
    fig.tight_layout()
    return fig

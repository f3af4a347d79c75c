"""Figures of the circuit-versus-model validation report (all axes in model units).

Each function takes plain numpy arrays and returns a matplotlib Figure; the report embeds them.
Model traces are drawn solid, circuit traces dashed, in the same colour per neuron.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.ticker

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


def rasters(model_times: list, circuit_times: list, duration: float, title: str = "spike rasters",
            unmatched_model: list | None = None, unmatched_circuit: list | None = None):
    """Model and circuit spike rasters side by side (neuron index vs t [t_u]).

    ``unmatched_*[i]``: spike times of neuron i without a partner in the other run (within the
    coincidence window), drawn red over the black raster.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.12 * max(len(model_times), 10) + 1.5), sharey=True)
    for ax, trains, unmatched, name in ((axes[0], model_times, unmatched_model, "model"),
                                        (axes[1], circuit_times, unmatched_circuit, "circuit")):
        ax.eventplot([np.asarray(t) for t in trains], lineoffsets=np.arange(len(trains)), linelengths=0.8,
                     linewidths=0.8, colors="k")
        n_unmatched = 0
        if unmatched is not None:
            n_unmatched = sum(len(t) for t in unmatched)
            ax.eventplot([np.asarray(t) for t in unmatched], lineoffsets=np.arange(len(unmatched)), linelengths=1.0,
                         linewidths=2.0, colors="tab:red")
        ax.set_xlim(0, duration)
        suffix = f" ({n_unmatched} unmatched, red)" if unmatched is not None else ""
        ax.set_title(f"{name}: {sum(len(t) for t in trains)} spikes{suffix}")
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
        if finite.size and values is count_error:  # integers: one bar per value, centred on it
            ax.hist(finite, bins=np.arange(finite.min() - 0.5, finite.max() + 1.5), color="tab:gray", edgecolor="k",
                    rwidth=0.8)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif finite.size:
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


def worst_neurons(panels: list[dict], u_th: float | None = None,
                  title: str = "worst neurons: membrane, model vs circuit"):
    """One row per neuron: its traces over a context window (left) and a zoom on its first spike
    mismatch (right), where a shift of a fraction of a t_u is visible.

    ``panels[i]``: ``time`` [t_u], ``model`` and ``circuit`` U_m [V_s] over the context window, ``zoom``
    ``(t0, t1)`` [t_u] (or None), ``label``, and spike times [t_u] marked on the threshold line:
    ``model_marks`` (model spikes without a circuit spike in the window: red down-triangles) and
    ``circuit_marks`` (circuit spikes without a model spike: purple up-triangles).
    """
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.0 * n + 0.7), squeeze=False, gridspec_kw={"width_ratios": [3, 1]})
    level = 0.0 if u_th is None else u_th
    for (ax, ax_zoom), panel in zip(axes, panels):
        t = np.asarray(panel["time"], dtype=float)
        zoom = panel.get("zoom")
        for a, (lo, hi) in ((ax, (t[0], t[-1])), (ax_zoom, zoom or (t[0], t[-1]))):
            sel = (t >= lo) & (t <= hi)
            a.plot(t[sel], np.asarray(panel["model"])[sel], label="model", **MODEL_STYLE)
            a.plot(t[sel], np.asarray(panel["circuit"])[sel], label="circuit", **CIRCUIT_STYLE)
            if u_th is not None:
                a.axhline(u_th, color="0.6", lw=0.6, ls=":")
            for key, marker, colour, text in (("model_marks", "v", "tab:red", "model spike, none in circuit"),
                                              ("circuit_marks", "^", "tab:purple", "circuit spike, none in model")):
                times = [x for x in panel.get(key, ()) if lo <= x <= hi]
                if times:
                    a.plot(times, [level] * len(times), marker, color=colour, ms=7, ls="none", label=text)
            a.set_xlim(lo, hi)
        if zoom:
            ax.axvspan(*zoom, color="0.85", alpha=0.7, lw=0)
            ax_zoom.set_title("zoom on the first mismatch", fontsize=8)
        ax.set_title(panel.get("label", ""), fontsize=9, loc="left")
        ax.set_ylabel("U_m [V_s]", fontsize=8)
    axes[0, 0].legend(loc="lower left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("t [t_u]")
    axes[-1, 1].set_xlabel("t [t_u]")
    fig.suptitle(title + (f" (dotted: spike threshold U = {u_th:g} V_s)" if u_th is not None else ""), fontsize=10)
    fig.tight_layout()
    return fig

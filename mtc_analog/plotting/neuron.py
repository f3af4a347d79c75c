"""Figures of a single MTC neuron: I-V curves and the firing-regime traces (model units).

Functions take records / numpy arrays and return a matplotlib Figure (save it with
:func:`mtc_analog.io.save_figure`). Extra traces (e.g. circuit simulations of the same protocol)
are drawn dashed over the model's trace.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..neuron.equations import MTCParameters  # noqa: E402
from ..neuron.iv import IVCurves, iv_curves, negative_slope_regions  # noqa: E402

IV_STYLES = {
    "fast": {"color": "tab:red", "label": "I_fast"},
    "slow": {"color": "tab:blue", "label": "I_slow"},
    "ultraslow": {"color": "tab:green", "label": "I_ultraslow (steady state)"},
}
EXTRA_COLOURS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink")
#: Traces are thinned to at most this many points per line (the figure cannot show more).
MAX_POINTS = 20000


class ExtraTrace(NamedTuple):
    """A trace to overlay on a regime panel: label, time [t_u], U_m [V_s]."""

    label: str
    time: np.ndarray
    u_m: np.ndarray


def _thin(time: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the min and max of each bucket so that spikes survive the thinning."""
    n = time.size
    if n <= MAX_POINTS:
        return time, u
    buckets = MAX_POINTS // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            seg = u[a:b]
            keep.extend(sorted((a + int(np.argmin(seg)), a + int(np.argmax(seg)))))
    keep = np.unique(keep)
    return time[keep], u[keep]


def draw_iv(ax, curves: IVCurves, currents: Mapping[str, float] | None = None, shade_negative: bool = True) -> None:
    """Draw the three I-V curves on ``ax``; shade negative-slope regions; mark input levels."""
    for name, style in IV_STYLES.items():
        current = getattr(curves, name)
        ax.plot(curves.u, current, lw=1.2, **style)
        if shade_negative:
            for lo, hi in negative_slope_regions(curves.u, current):
                ax.axvspan(lo, hi, color=style["color"], alpha=0.08, lw=0)
    for label, value in (currents or {}).items():
        ax.axhline(value, color="0.4", lw=0.7, ls=":")
        ax.annotate(label, (curves.u[0], value), xytext=(2, 2), textcoords="offset points", fontsize=7, color="0.3")
    ax.set_xlabel("U [V_s]")
    ax.set_ylabel("I [model units]")
    ax.grid(alpha=0.3)


def iv_figure(params: MTCParameters, u: np.ndarray | None = None, title: str = "MTC neuron I-V curves",
              currents: Mapping[str, float] | None = None):
    """One panel with the fast, slow and ultra-slow I-V curves of ``params``."""
    curves = iv_curves(params, u)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    draw_iv(ax, curves, currents)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def zoom_window(result, n_spikes: int = 8, min_span: float = 20.0, max_fraction: float = 0.25,
                no_spike_span: float = 200.0) -> tuple[float, float]:
    """A short window after the step [t_u] that shows single spikes: from a little before the step to
    just after the ``n_spikes``-th spike (at least ``min_span``, at most ``max_fraction`` of the time
    after the step; ``no_spike_span`` if the model does not spike)."""
    preset = result.preset
    after = float(result.time[-1]) - preset.t_step
    spikes = np.asarray(result.classification.spike_times, dtype=float)
    if spikes.size:
        k = min(n_spikes, spikes.size) - 1
        # end half an inter-spike interval after the n-th spike: its downstroke shows, the next spike does not
        margin = 0.5 * (spikes[k] - spikes[k - 1]) if k >= 1 else 1.0
        span = spikes[k] - preset.t_step + margin
    else:
        span = no_spike_span
    span = float(min(max(span, min_span), max_fraction * after)) if after > 0 else min_span
    return preset.t_step - 0.1 * span, preset.t_step + span


def regimes_figure(results: Sequence, extra_traces: Mapping[str, Sequence[ExtraTrace]] | None = None):
    """One row per regime: the membrane trace over the protocol (left), a zoom on the first spikes
    after the step (middle: single spikes and their model/circuit offset are visible there, which the
    whole protocol of hundreds of spikes hides) and the I-V curves (right).

    ``results``: :class:`mtc_analog.neuron.regimes.RegimeResult` records. ``extra_traces`` maps a
    preset name to traces drawn dashed over the model's (e.g. ngspice runs of the same protocol).
    """
    extra_traces = extra_traces or {}
    fig, axes = plt.subplots(len(results), 3, figsize=(16, 2.8 * len(results) + 0.4),
                             gridspec_kw={"width_ratios": [2.6, 1.6, 1]}, squeeze=False)
    for row, result in zip(axes, results):
        preset = result.preset
        ax_trace, ax_zoom, ax_iv = row
        lo, hi = zoom_window(result)
        extras = extra_traces.get(preset.name, ())
        t, u = _thin(result.time, result.u_m)
        ax_trace.plot(t, u, color="tab:blue", lw=0.6, label="model")
        for colour, extra in zip(EXTRA_COLOURS, extras):
            te, ue = _thin(np.asarray(extra.time, dtype=float), np.asarray(extra.u_m, dtype=float))
            ax_trace.plot(te, ue, color=colour, lw=0.6, ls="--", label=extra.label)
        ax_trace.axvspan(lo, hi, color="0.85", alpha=0.6, lw=0, label="zoom (middle)")
        # the zoom: full resolution, only the samples inside the window
        sel = (result.time >= lo) & (result.time <= hi)
        ax_zoom.plot(result.time[sel], result.u_m[sel], color="tab:blue", lw=0.9, label="model")
        for colour, extra in zip(EXTRA_COLOURS, extras):
            te, ue = np.asarray(extra.time, dtype=float), np.asarray(extra.u_m, dtype=float)
            keep = (te >= lo) & (te <= hi)
            ax_zoom.plot(te[keep], ue[keep], color=colour, lw=0.9, ls="--", label=extra.label)
        for ax in (ax_trace, ax_zoom):
            ax.axvline(preset.t_step, color="0.5", lw=0.7, ls=":")
            ax.axhline(0.0, color="0.8", lw=0.5)
            ax.set_ylabel("U_m [V_s]")
        c = result.classification
        verdict = "ok" if result.matches else f"MISMATCH, expected {preset.expected_label}"
        ax_trace.set_title(
            f"{preset.name}: I {preset.i0:g} -> {preset.i1:g} at t={preset.t_step:g};  "
            f"{c.spike_count} spikes, {c.burst_count} bursts -> {c.label} ({verdict})", fontsize=9)
        ax_trace.set_xlim(result.time[0], result.time[-1])
        ax_zoom.set_xlim(lo, hi)
        ax_zoom.set_title(f"zoom: t = {lo:.0f} .. {hi:.0f} (step at {preset.t_step:g})", fontsize=9)
        ax_trace.legend(fontsize=7, loc="upper right", ncol=3)
        span = max(4.0, abs(result.u_rest_i0) + 1.0)
        draw_iv(ax_iv, iv_curves(preset.params, np.linspace(-span, span, 801)),
                {"I0": preset.i0, "I1": preset.i1})
        ax_iv.set_title("I-V curves", fontsize=9)
    axes[-1, 0].set_xlabel("t [t_u]")
    axes[-1, 1].set_xlabel("t [t_u]")
    axes[0, 2].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig

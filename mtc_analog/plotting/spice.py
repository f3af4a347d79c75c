"""Figures of simulated circuits, in model units (what ``mtc-analog simulate`` saves)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

_MAX_NEURONS = 4


def waveform_figure(model: dict[str, np.ndarray], mapping: dict[str, Any], title: str | None = None):
    """Membranes (a few neurons per layer), graded outputs, and the readout / low-pass output.

    ``model`` is :meth:`mtc_analog.spice.waveforms.Waveforms.to_model_units` output.
    """
    t = model["time_model"]
    layers = sorted(k[: -len("_u_m")] for k in model if k.endswith("_u_m"))
    has_out = "lowpass_y" in model
    rows = len(layers) + (1 if has_out else 0)
    fig, axes = plt.subplots(max(rows, 1), 1, figsize=(10, 2.6 * max(rows, 1)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, layer in zip(axes, layers):
        u = model[f"{layer}_u_m"]
        for i in range(min(u.shape[1], _MAX_NEURONS)):
            ax.plot(t, u[:, i], lw=0.7, label=f"neuron {i}")
        ax.set_ylabel(f"{layer} U_m [V_s]")
        ax.legend(loc="upper right", fontsize=7, ncol=_MAX_NEURONS)
        ax.grid(alpha=0.3)
    if has_out:
        ax = axes[-1]
        if "readout_y" in model:
            ax.plot(t, model["readout_y"][:, 0], lw=0.5, alpha=0.5, label="readout y0 (before low-pass)")
        ax.plot(t, model["lowpass_y"][:, 0], lw=1.0, label="low-pass output (prediction)")
        if "inputs_x" in model:
            ax.plot(t, model["inputs_x"][:, 0], lw=0.6, alpha=0.6, label="input x")
        ax.set_ylabel("model units")
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time [t_u]")
    kind = mapping.get("kind", "circuit")
    fig.suptitle(title or f"ngspice {kind} ({mapping.get('circuit_target', '')}, {mapping.get('filter', '')} filters)")
    fig.tight_layout()
    return fig

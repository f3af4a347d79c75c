"""Histograms of a Monte-Carlo mismatch study (one panel per figure, nominal references as lines)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: (summary metric key, axis label, reference lines drawn from the summary)
PANELS = (
    ("task_nrmse_circuit", "task NRMSE of the circuit", "task"),
    ("spike_coincidence", "Gamma vs nominal model", "gamma"),
    ("output_nrmse_vs_model", "output NRMSE vs nominal model", "output"),
    ("spike_count_error_relative", "firing-rate error |dN| / N_model", None),
)


def histograms(summary: dict[str, Any]):
    """2 x 2 histograms over the instances of ``summary`` (:func:`validation.montecarlo.summarise`)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    nominal = summary["nominal_circuit"]
    thresholds = summary.get("thresholds") or {}
    for ax, (key, label, ref) in zip(axes.ravel(), PANELS):
        values = np.asarray(summary["metrics"][key]["values"], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=max(5, min(30, values.size // 2)), color="tab:blue", alpha=0.75)
        lines = [(nominal.get(key), "nominal circuit", "tab:green", "-")]
        if ref == "task":
            lines += [(summary["task_nrmse_model_nominal"], "nominal model", "k", "-"),
                      (summary["task_nrmse_limit"], "yield limit", "tab:red", "--")]
        elif ref == "gamma":
            lines.append((thresholds.get("spike_coincidence_min"), "threshold", "tab:red", "--"))
        elif ref == "output":
            lines.append((thresholds.get("output_nrmse_vs_model_max"), "threshold", "tab:red", "--"))
        for value, name, color, style in lines:
            if value is not None and np.isfinite(value):
                ax.axvline(value, color=color, ls=style, lw=1.2, label=f"{name} {value:.3g}")
        ax.set_xlabel(label)
        ax.set_ylabel("instances")
        ax.legend(fontsize=7)
    fig.suptitle(f"Monte-Carlo mismatch: {summary['instances']} instances on {summary['circuit_target']}, "
                 f"yield {100 * summary['yield_task']:.0f} % (task), {100 * summary['yield_thresholds']:.0f} % (thresholds)")
    fig.tight_layout()
    return fig

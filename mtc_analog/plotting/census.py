"""Figure of a regime census: how many hidden neurons fire in each regime (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import save_figure  # noqa: E402

ORDER = ("tonic_spiking", "phasic_spiking", "tonic_bursting", "phasic_bursting", "silent")


def plot_census(census: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Bar chart of ``census["counts"]`` (every label, zero counts included)."""
    counts = census["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = [counts.get(k, 0) for k in ORDER]
    bars = ax.bar([k.replace("_", "\n") for k in ORDER], values, color=["C0", "C1", "C2", "C3", "0.6"])
    for bar, value in zip(bars, values):
        ax.annotate(str(value), (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom")
    ax.set_ylabel("hidden neurons")
    ax.set_title(title or "regime census")
    ax.set_ylim(0, max(values + [1]) * 1.2)
    return save_figure(fig, path)

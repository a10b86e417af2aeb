"""The report's charts as base64 PNG data URIs, so the HTML page needs no other file."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# A plain Figure on the Agg canvas: no pyplot state, no display needed, safe beside other work.


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,…`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _render(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    return _png(fig)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def learning_curves(
    trials: Sequence[optuna.trial.FrozenTrial],
    top: Sequence[optuna.trial.FrozenTrial],
    metric: str,
    unit: str,
    baseline: float | None = None,
) -> tuple[str, str]:
    """Every trial's per-epoch metric in grey, the ``top`` trials in colour on top, the
    mean-shape ``baseline`` dashed. A positive metric gets a log axis, and the axis stops a
    little above the top trials and the baseline (a diverged trial's 50 mm would flatten the
    1–3 mm that matter). Returns the chart and a sentence on its axis."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    values = [v for t in trials for v in t.intermediate_values.values()]
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        ax.plot(steps, [trial.intermediate_values[s] for s in steps], color="0.6", alpha=0.35, lw=1)
    for trial in top:
        steps = sorted(trial.intermediate_values)
        values_of = [trial.intermediate_values[s] for s in steps]
        ax.plot(steps, values_of, marker="o", ms=3, lw=1.8, label=f"#{trial.number}")
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label="mean-shape baseline")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.grid(alpha=0.3, which="both")
    axis = "linear axis"
    if values and min(values) > 0:
        ax.set_yscale("log")
        axis = "log axis"
    shown = [v for t in top for v in t.intermediate_values.values()]
    shown += [baseline] if baseline is not None else []
    if shown and max(values) > 1.5 * max(shown):
        low = min(values)
        ax.set_ylim(low * 0.9 if low > 0 else low, 1.3 * max(shown))
        axis += ", cut a little above the top trials and the baseline (higher values run off it)"
    if top or baseline is not None:
        ax.legend(fontsize="small")
    return _render(fig), axis


def optuna_chart(axes: Any, log_y: bool = False) -> str:
    """A chart that one of ``optuna.visualization.matplotlib``'s functions drew (an Axes, or an
    array of them, on a pyplot figure), as a PNG; the pyplot figure is closed."""
    import matplotlib.pyplot as plt
    import numpy as np

    every = list(np.ravel(axes))
    if log_y:
        for ax in every:
            ax.set_yscale("log")
    fig = every[0].figure
    try:
        return _png(fig)  # on pyplot's own canvas: pyplot closes the figure it knows
    finally:
        plt.close(fig)


def importance_bars(importances: Mapping[str, float]) -> str:
    """Horizontal bars, the most important parameter at the top."""
    names = list(importances)[::-1]
    fig = Figure(figsize=(7.5, 0.45 * len(names) + 1.0))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="#3b6ea5")
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_xlim(0, 1)  # fANOVA importances sum to 1
    ax.grid(axis="x", alpha=0.3)
    return _render(fig)

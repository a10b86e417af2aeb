"""The report's charts as base64 PNG data URIs, so the HTML page needs no other file."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# A plain Figure on the Agg canvas: no pyplot state, no display needed, safe beside other work.


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,…`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _render(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def learning_curves(
    trials: Sequence[optuna.trial.FrozenTrial],
    top: Sequence[optuna.trial.FrozenTrial],
    metric: str,
) -> str:
    """Every trial's per-epoch metric in grey, the ``top`` trials in colour on top."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        ax.plot(steps, [trial.intermediate_values[s] for s in steps], color="0.6", alpha=0.35, lw=1)
    for trial in top:
        steps = sorted(trial.intermediate_values)
        values = [trial.intermediate_values[s] for s in steps]
        ax.plot(steps, values, marker="o", ms=3, lw=1.8, label=f"#{trial.number}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if top:
        ax.legend(title="top trials", fontsize="small")
    return _render(fig)


def importance_bars(importances: Mapping[str, float]) -> str:
    """Horizontal bars, the most important parameter at the top."""
    names = list(importances)[::-1]
    fig = Figure(figsize=(7.5, 0.45 * len(names) + 1.0))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="#3b6ea5")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_xlim(0, 1)  # fANOVA importances sum to 1
    ax.grid(axis="x", alpha=0.3)
    return _render(fig)

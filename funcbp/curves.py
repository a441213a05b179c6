"""A run's figure, ``curve.png``: its curves as the book plots them.

One configuration (one model, or K seeds): accuracy and loss against epoch,
mean ± std over the seeds. A sweep: the book's hyperparameter-search figure,
one small panel per configuration for the best 20, validation accuracy
solid and training accuracy dashed (test instead of validation when there is
no validation set).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from funcbp.io import atomic_write

__all__ = ["BEST", "plot_run", "render"]

BEST = 20  # panels in a sweep's figure, as the book's graph_draw_num
COLUMNS = 5


def plot_run(path: Path, metrics: dict[str, Any]) -> None:
    """Draws ``metrics``' history into ``path`` (PNG), written atomically."""
    figure = render(metrics)
    atomic_write(path, lambda f: f.write(figure))


def render(metrics: dict[str, Any]) -> bytes:
    """``metrics``' history as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = metrics["history"]
    sweep = metrics.get("sweep")
    if sweep is None:
        fig = _one_configuration(plt, history, len(metrics["run"]["models"]))
    else:
        fig = _best_configurations(plt, history, sweep)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _column(history: list[dict], name: str, models: list[int] | None = None) -> np.ndarray:
    """(rows, K) of one metric; only ``models``' columns when given."""
    values = np.array([row[name] for row in history], np.float64).reshape(len(history), -1)
    return values if models is None else values[:, models]


def _band(ax, epochs, values, label, **style) -> None:
    mean = values.mean(axis=1)
    ax.plot(epochs, mean, label=label, **style)
    if values.shape[1] > 1:
        std = values.std(axis=1, ddof=1)
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)


def _one_configuration(plt, history: list[dict], models: int):
    held_out = "val" if "val_acc" in history[0] else "test"
    epochs = np.array([row["epoch"] for row in history])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    _band(ax1, epochs, _column(history, "train_acc"), "train acc")
    _band(ax1, epochs, _column(history, f"{held_out}_acc"), f"{held_out} acc", linestyle="--")
    ax1.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    ax1.legend(loc="lower right", title=f"mean ± std of {models} seeds" if models > 1 else None)
    _band(ax2, epochs, _column(history, "loss"), "train loss")
    _band(ax2, epochs, _column(history, f"{held_out}_loss"), f"{held_out} loss", linestyle="--")
    ax2.set(xlabel="epochs", ylabel="loss")
    ax2.legend(loc="upper right")
    fig.tight_layout()
    return fig


def _best_configurations(plt, history: list[dict], sweep: dict):
    configurations = sweep["configurations"]
    order = sweep["ranking"] or list(range(len(configurations)))
    order = order[:BEST]
    held_out = "val" if "val_acc" in history[0] else "test"
    rows = -(-len(order) // COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(12, 2.2 * rows), squeeze=False)
    epochs = np.array([row["epoch"] for row in history])
    for i, ax in enumerate(axes.flat):
        if i >= len(order):
            ax.axis("off")
            continue
        c = configurations[order[i]]
        held = _column(history, f"{held_out}_acc", c["models"]).mean(axis=1)
        ax.plot(epochs, held)
        ax.plot(epochs, _column(history, "train_acc", c["models"]).mean(axis=1), "--")
        best = "Best" if sweep["ranking"] else "Config"
        ax.set_title(f"{best}-{i + 1} ({held[-1]:.3f})", fontsize=9)
        ax.text(0.03, 0.05, _values_text(c["values"]), transform=ax.transAxes, fontsize=6)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks([])
        if i % COLUMNS:
            ax.set_yticks([])
    kind = "validation" if held_out == "val" else "test"
    fig.suptitle(f"{kind} accuracy (solid) and training accuracy (dashed) against epoch")
    fig.tight_layout()
    return fig


def _values_text(values: dict[str, Any]) -> str:
    return "\n".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )

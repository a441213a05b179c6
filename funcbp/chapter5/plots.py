"""The chapter's one matplotlib plot: the sigmoid and its gradient, from the hand-written rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcbp.chapter5.text import TEXT
from funcbp.fonts import use_matplotlib_fonts
from funcbp.graph.render import format_scalar
from funcbp.layers import sigmoid

__all__ = ["sigmoid_curve"]


def sigmoid_curve(lang: str):
    """y = sigmoid(x) and dy/dx over [-6, 6], dy/dx by ``jax.grad`` through sigmoid's own rule.

    Returns:
        A ``matplotlib.figure.Figure``, its text in NanumGothic (DejaVu Sans for the rest).
    """
    from matplotlib.figure import Figure

    words = TEXT[lang]["sigmoid-curve"]
    x = jnp.linspace(-6.0, 6.0, 241)
    y = sigmoid(x)
    dy = jax.vmap(jax.grad(sigmoid))(x)
    at = jnp.asarray(1.0, x.dtype)
    y1, dy1 = sigmoid(at), jax.grad(sigmoid)(at)
    with use_matplotlib_fonts():
        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(x, y, label=words["y"])
        ax.plot(x, dy, color="#d62728", label=words["dy"])
        ax.plot([1.0, 1.0], [float(dy1), float(y1)], "ko", markersize=4)
        point = words["point"].format(y=format_scalar(y1), dy=format_scalar(dy1))
        ax.annotate(point, (1.0, float(y1)), xytext=(1.6, 0.35), fontsize=9)
        ax.set_xlabel(words["x"])
        ax.set_title(words["title"])
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    return fig

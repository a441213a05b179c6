"""Figure helpers shared by the experiments: a figure without pyplot, mean ± std bands."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["bands", "new_figure"]


def new_figure(rows: int = 1, cols: int = 1, *, size: tuple[float, float] = (6.4, 4.8), **kw):
    """``(figure, axes)``, made without pyplot, so no window and no global state."""
    fig = Figure(figsize=size, layout=kw.pop("layout", "constrained"))
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def bands(ax, x, values, label: str | None = None, **style) -> None:
    """The mean over axis 0 of ``values`` (K, T) as a line, ± one std as a band when K > 1."""
    values = np.asarray(values, np.float64).reshape(-1, len(x))
    mean = values.mean(axis=0)
    (line,) = ax.plot(x, mean, label=label, **style)
    if values.shape[0] > 1:
        std = values.std(axis=0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.25, lw=0)

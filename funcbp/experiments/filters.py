"""The book's ch07/visualize_filter.py: SimpleConvNet's 30 first-layer filters, before and after.

"Before" is the model's own init (for a params file, a fresh one, as the book's
script makes); "after" is the trained W1 (30, 1, 5, 5). The book says the random
filters become edge and blob detectors. How much structure a filter has is
measured by the correlation of neighbouring weights (left-right and up-down
pairs): about 0 for noise, high for the smooth strokes of edges and blobs.
"""

from __future__ import annotations

import numpy as np

from funcbp.experiments._models import trained
from funcbp.experiments._run import Claim

RANDOM_BELOW, STRUCTURED_ABOVE = 0.15, 0.3  # |mean correlation| of noise; of smooth filters


def neighbour_correlation(filters) -> np.ndarray:
    """(FN,): per filter of (FN, C, FH, FW), the correlation over all its neighbouring pairs."""
    w = np.asarray(filters, np.float64)
    w = (w - w.mean(axis=(1, 2, 3), keepdims=True)).reshape(len(w), -1, *w.shape[2:])
    n = len(w)
    firsts = np.concatenate([w[..., :, :-1].reshape(n, -1), w[..., :-1, :].reshape(n, -1)], 1)
    seconds = np.concatenate([w[..., :, 1:].reshape(n, -1), w[..., 1:, :].reshape(n, -1)], 1)
    norms = np.linalg.norm(firsts, axis=1) * np.linalg.norm(seconds, axis=1)
    return (firsts * seconds).sum(axis=1) / norms


def compute(settings, out, log, stop=None) -> dict:
    models = trained(settings, out, "simple-convnet", log, stop)
    before = [np.asarray(p["W1"]) for p in models.initial]
    after = [np.asarray(p["W1"]) for p in models.params]
    change = [
        float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(after, before, strict=True)
    ]
    return {
        "source": models.source,
        "W1_before": before[0].tolist(),  # the figure's: the first model's
        "W1_after": after[0].tolist(),
        "correlation_before": [float(neighbour_correlation(b).mean()) for b in before],
        "correlation_after": [float(neighbour_correlation(a).mean()) for a in after],
        "relative_change": change,
    }


def _mean_std(values) -> str:
    values = np.asarray(values)
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


def claims(results) -> list[Claim]:
    before, after = (np.mean(results[f"correlation_{k}"]) for k in ("before", "after"))
    models = len(results["correlation_after"])
    over = f" over {models} models" if models > 1 else ""
    return [
        Claim(
            f"random before: neighbouring weights are uncorrelated (|mean| below {RANDOM_BELOW})",
            bool(abs(before) < RANDOM_BELOW),
            f"mean neighbour correlation before {_mean_std(results['correlation_before'])}{over}",
        ),
        Claim(
            "edge and blob detectors after: neighbouring weights correlate (mean above "
            f"{STRUCTURED_ABOVE})",
            bool(after > STRUCTURED_ABOVE),
            f"mean neighbour correlation after {_mean_std(results['correlation_after'])}{over}; "
            f"W1 moved by {_mean_std(results['relative_change'])} of its initial norm",
        ),
    ]


def _grid(subfig, filters, title: str, nx: int = 8) -> None:
    filters = np.asarray(filters)
    ny = -(-len(filters) // nx)
    axes = subfig.subplots(ny, nx)
    for i, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])
        if i < len(filters):
            ax.imshow(filters[i, 0], cmap="gray_r", interpolation="nearest")
        else:
            ax.axis("off")
    subfig.suptitle(title)


def figure(results):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    source = results["source"]
    _grid(top, results["W1_before"], "W1 before training (random)")
    _grid(bottom, results["W1_after"], f"W1 after training ({source['kind']}: {source['path']})")
    return fig

"""The book's ch06/optimizer_compare_mnist.py: SGD, Momentum, AdaGrad and Adam on MNIST.

The book's MultiLayerNet 4x100 (ReLU, He init), batch 128, 2,000 iterations,
each optimizer at the book's default rate. An optimizer is one program (the
models of a program share the optimizer's kind), ``--seeds`` models each; all
models of all four see the same minibatches, as the script draws one batch per
iteration for the four. The curves are the mean minibatch loss of each stretch
of ``EVERY`` iterations (the book smooths its per-iteration losses with an
11-point window).
"""

from __future__ import annotations

import numpy as np

from funcbp.config import TrainConfig
from funcbp.experiments._models import fit_run, history
from funcbp.experiments._run import Claim

# The book's labels, funcbp's names, and the rates of common/optimizer.py's defaults.
OPTIMIZERS = {
    "SGD": ("sgd", 0.01),
    "Momentum": ("momentum", 0.01),
    "AdaGrad": ("adagrad", 0.01),
    "Adam": ("adam", 0.001),
}
ITERS, BATCH, EVERY, EVAL_SAMPLES = 2000, 128, 20, 500
QUICK_ITERS = 60
HIDDEN = (100,) * 4
STAYS_FROM = 0.1  # "stays highest": at every point after the first tenth of the run
END = 0.1  # "ends": the mean of the last tenth


def compute(settings, out, log, stop=None) -> dict:
    iters = QUICK_ITERS if settings.quick else ITERS
    curves, finals = {}, {}
    for label, (name, lr) in OPTIMIZERS.items():
        log(f"{label}: {settings.seeds} models in one program")
        metrics = fit_run(config(settings, name, lr, iters), out / "train" / name, log, stop)
        x, loss = history(metrics, "loss")
        curves[label] = loss.T.tolist()  # (seeds, T)
        finals[label] = metrics["final"]["test_acc"]
    return {
        "iters": x.tolist(),
        "every": EVERY,
        "batch_size": BATCH,
        "loss": curves,
        "test_acc": finals,
    }


def config(settings, name: str, lr: float, iters: int, **options) -> TrainConfig:
    """One program of a loss-curve experiment: MultiLayerNet 4x100, batch 128, shared batches."""
    shared = settings.seeds > 1  # one model has nothing to share with
    return TrainConfig(
        model="multi-layer",
        data=settings.data,
        hidden=HIDDEN,
        optimizer=name,
        lr=lr,
        batch_size=BATCH,
        iters=iters,
        eval_every=EVERY,
        eval_samples=EVAL_SAMPLES,
        seed=settings.seed,
        seeds=settings.seeds,
        shared_batches=shared,
        **options,
    )


def ending(curve) -> float:
    """The mean over seeds of the last tenth of a (seeds, T) curve."""
    curve = np.asarray(curve)
    return float(curve[:, -max(1, round(curve.shape[1] * END)) :].mean())


def claims(results) -> list[Claim]:
    loss = {k: np.asarray(v).mean(axis=0) for k, v in results["loss"].items()}
    start = int(len(loss["SGD"]) * STAYS_FROM)
    others = [k for k in loss if k != "SGD"]
    above = np.all([loss["SGD"][start:] > loss[k][start:] for k in others], axis=0)
    ends = {k: ending(v) for k, v in results["loss"].items()}
    lowest = sorted(ends, key=ends.get)[:2]
    shown = ", ".join(f"{k} {v:.3f}" for k, v in ends.items())
    return [
        Claim(
            "SGD's loss stays highest (above the other three at every point after the first tenth)",
            bool(above.all()),
            f"above at {int(above.sum())} of {len(above)} points; "
            f"loss over the last tenth: {shown}",
        ),
        Claim(
            "AdaGrad and Adam end lowest (the two lowest losses over the last tenth)",
            set(lowest) == {"AdaGrad", "Adam"},
            f"lowest: {' and '.join(lowest)}; {shown}",
        ),
    ]


MARKERS = {"SGD": "o", "Momentum": "x", "AdaGrad": "s", "Adam": "D"}


def loss_figure(results, markers, title: str, ylim):
    from funcbp.experiments._plot import bands, new_figure

    fig, axes = new_figure(size=(6.4, 4.8))
    ax, x = axes[0, 0], np.asarray(results["iters"])
    for label, curve in results["loss"].items():
        bands(ax, x, curve, label=label, marker=markers.get(label), markevery=max(len(x) // 20, 1))
    seeds = len(next(iter(results["loss"].values())))
    ax.set(
        xlabel="iterations",
        ylabel=f"loss (mean of each {results['every']} iterations)",
        ylim=ylim,
        title=f"{title}; mean ± std of {seeds} seeds",
    )
    ax.legend()
    return fig


def figure(results):
    return loss_figure(results, MARKERS, "MultiLayerNet 4x100, batch 128", (0, 1))

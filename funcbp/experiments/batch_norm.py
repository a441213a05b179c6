"""The book's ch06/batch_norm_test.py: training accuracy with and without batch norm.

MultiLayerNetExtend 5x100 (ReLU), SGD 0.01, batch 100, ``x_train[:1000]``, 20
epochs, at 16 weight scales ``logspace(0, -4, 16)``. Each setting (batch norm on,
off) is one program of 16 scales x ``--seeds`` models (``weight_init_std`` is a
sweep axis; batch norm is the architecture, so it cannot vary within one). All
models see the same minibatches, as the script draws one batch for both nets.

In the same run the book's own NumPy code (:func:`funcbp.book_numpy.batch_norm_train`,
the script's ``__train``) trains a few of the scales, timed, for the per-model
speed ratio.
"""

from __future__ import annotations

import time

import numpy as np

from funcbp import book_numpy
from funcbp.config import TrainConfig
from funcbp.experiments._models import fit_run, history
from funcbp.experiments._run import Claim
from funcbp.splits import load_training_data

SCALES = np.logspace(0, -4, 16)
HIDDEN, LR, BATCH = (100,) * 5, 0.01, 100
SIZE, EPOCHS = 1000, 20
QUICK_SIZE, QUICK_EPOCHS = 200, 3
BOOK_SCALES = (0, 8)  # the scales the book's code also trains (indices), 2 models each
ALMOST_EVERY = 14  # "almost every scale": at least this many of the 16


def _config(settings, batch_norm: bool) -> TrainConfig:
    size, epochs = (QUICK_SIZE, QUICK_EPOCHS) if settings.quick else (SIZE, EPOCHS)
    return TrainConfig(
        model="multi-layer",
        data=settings.data,
        data_size=size,
        hidden=HIDDEN,
        batch_norm=batch_norm,
        optimizer="sgd",
        lr=LR,
        batch_size=BATCH,
        epochs=epochs,
        weight_init_std=tuple(float(s) for s in SCALES),
        seed=settings.seed,
        seeds=settings.seeds,
        shared_batches=True,
    )


def book_seconds(settings) -> dict:
    """The book's ``__train`` (both nets) for :data:`BOOK_SCALES`: seconds a model."""
    config = _config(settings, False)
    data = load_training_data(config, (784,))
    rng = np.random.default_rng(settings.seed)
    scales = BOOK_SCALES[:1] if settings.quick else BOOK_SCALES
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):  # at scale 1 the book's net overflows, as in the book
        for i in scales:
            book_numpy.batch_norm_train(
                SCALES[i], data.x_train, data.t_train, max_epochs=config.epochs, rng=rng
            )
    seconds = time.perf_counter() - t0
    return {"models": 2 * len(scales), "seconds": seconds, "per_model": seconds / 2 / len(scales)}


def compute(settings, out, log, stop=None) -> dict:
    book = [book_seconds(settings)]
    runs, seconds, timing = {}, 0.0, {}
    for name, on in (("batch_norm", True), ("normal", False)):
        log(f"{name}: {len(SCALES)} scales x {settings.seeds} seeds in one program")
        t0 = time.perf_counter()
        metrics = fit_run(_config(settings, on), out / "train" / name, log, stop)
        seconds += time.perf_counter() - t0
        iters, acc = history(metrics, "train_acc")  # (T, scales * seeds)
        runs[name] = acc.T.reshape(len(SCALES), settings.seeds, -1).tolist()
        timing[name] = metrics["timing"]
    book.append(book_seconds(settings))
    models = 2 * len(SCALES) * settings.seeds
    per_model = seconds / models
    book_per_model = float(np.mean([b["per_model"] for b in book]))
    return {
        "scales": SCALES.tolist(),
        "iters": iters.tolist(),
        "train_acc": runs,
        "timing": timing,
        "speed": {
            "funcbp_seconds": seconds,
            "funcbp_models": models,
            "funcbp_per_model": per_model,
            "book": book,
            "book_per_model": book_per_model,
            "ratio": book_per_model / per_model,
        },
    }


def claims(results) -> list[Claim]:
    mean = {k: np.asarray(v).mean(axis=(1, 2)) for k, v in results["train_acc"].items()}
    faster = mean["batch_norm"] > mean["normal"]
    speed = results["speed"]
    return [
        Claim(
            f"batch norm learns faster at almost every scale: a higher training accuracy "
            f"averaged over the epochs at {ALMOST_EVERY} or more of the 16",
            int(faster.sum()) >= ALMOST_EVERY,
            f"higher at {int(faster.sum())} of 16; mean accuracy with / without, by scale: "
            + ", ".join(
                f"{s:.2g} {b:.2f}/{n:.2f}"
                for s, b, n in zip(
                    results["scales"], mean["batch_norm"], mean["normal"], strict=True
                )
            ),
        ),
        Claim(
            "funcbp's seconds a model against the book's NumPy code, same run",
            None,
            f"funcbp {speed['funcbp_per_model']:.3f} s ({speed['funcbp_models']} models, compile "
            f"and evaluation included), the book's {speed['book_per_model']:.3f} s: "
            f"{speed['ratio']:.1f}x",
        ),
    ]


def figure(results):
    from funcbp.experiments._plot import bands, new_figure

    fig, axes = new_figure(4, 4, size=(10, 9), sharex=True, sharey=True)
    x = np.arange(1, len(results["iters"]) + 1)
    for i, (ax, scale) in enumerate(zip(axes.flat, results["scales"], strict=True)):
        bands(ax, x, results["train_acc"]["batch_norm"][i], label="Batch Normalization")
        bands(
            ax,
            x,
            results["train_acc"]["normal"][i],
            label="Normal (without BatchNorm)",
            linestyle="--",
        )
        ax.set(ylim=(0, 1), title=f"W: {scale:.3g}")
    axes[-1, -1].legend(loc="lower right", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    seeds = len(results["train_acc"]["normal"][0])
    fig.suptitle(f"training accuracy, MultiLayerNetExtend 5x100; mean ± std of {seeds} seeds")
    return fig

"""The book's ch06/weight_init_compare.py: std 0.01, Xavier and He on MNIST.

MultiLayerNet 4x100 with ReLU, SGD 0.01, batch 128, 2,000 iterations. The three
inits and their ``--seeds`` are one program (``weight_init_std`` is a sweep
axis); every model sees the same minibatches, as the script draws one batch
per iteration for the three. Curves as in :mod:`funcbp.experiments.optimizers`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from funcbp.experiments import optimizers
from funcbp.experiments._models import fit_run, history
from funcbp.experiments._run import Claim

INITS = {"std=0.01": 0.01, "Xavier": "xavier", "He": "he"}  # the book's labels
CHANCE = math.log(10)  # the loss of a network that has learnt nothing: 2.303
NEAR = 0.05


def compute(settings, out, log, stop=None) -> dict:
    iters = optimizers.QUICK_ITERS if settings.quick else optimizers.ITERS
    config = optimizers.config(settings, "sgd", 0.01, iters)
    config = dataclasses.replace(config, weight_init_std=tuple(INITS.values()), shared_batches=True)
    log(f"{len(INITS)} inits x {settings.seeds} seeds in one program")
    metrics = fit_run(config, out / "train", log, stop)
    x, loss = history(metrics, "loss")  # (T, inits * seeds), inits first
    per_init = loss.T.reshape(len(INITS), settings.seeds, -1)
    return {
        "iters": x.tolist(),
        "every": optimizers.EVERY,
        "batch_size": optimizers.BATCH,
        "loss": {k: v.tolist() for k, v in zip(INITS, per_init, strict=True)},
        "test_acc": dict(
            zip(
                INITS,
                np.reshape([m["test_acc"] for m in metrics["models"]], (len(INITS), -1)).tolist(),
                strict=True,
            )
        ),
    }


def claims(results) -> list[Claim]:
    ends = {k: optimizers.ending(v) for k, v in results["loss"].items()}
    shown = ", ".join(f"{k} {v:.3f}" for k, v in ends.items())
    return [
        Claim(
            f"std 0.01 does not learn: its loss over the last tenth stays within {NEAR} of "
            f"ln 10 = {CHANCE:.3f}",
            abs(ends["std=0.01"] - CHANCE) < NEAR,
            shown,
        ),
        Claim(
            "He ends lowest (the lowest loss over the last tenth)",
            min(ends, key=ends.get) == "He",
            shown,
        ),
    ]


MARKERS = {"std=0.01": "o", "Xavier": "s", "He": "D"}


def figure(results):
    return optimizers.loss_figure(results, MARKERS, "MultiLayerNet 4x100 ReLU, SGD 0.01", (0, 2.5))

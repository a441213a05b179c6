"""Overfitting and its two cures (ch06/overfit_weight_decay.py, overfit_dropout.py).

The book's MultiLayerNet(Extend) 6x100 on ``x_train[:300]``, SGD 0.01, batch 100,
train and test accuracy once an epoch. The plain net and the cured one (a value
of ``weight_decay`` or ``dropout``), times ``--seeds``, are one program (the
value is a sweep axis). Each draws its own minibatches: the book's scripts run
one net each.
"""

from __future__ import annotations

import numpy as np

from funcbp.config import TrainConfig
from funcbp.experiments._models import fit_run, history
from funcbp.experiments._run import Claim

HIDDEN, LR, BATCH, SIZE = (100,) * 6, 0.01, 100, 300
QUICK_EPOCHS = 5


def compute(settings, out, log, stop, *, option: str, values: tuple, epochs: int) -> dict:
    epochs = QUICK_EPOCHS if settings.quick else epochs
    config = TrainConfig(
        model="multi-layer",
        data=settings.data,
        data_size=SIZE,
        hidden=HIDDEN,
        optimizer="sgd",
        lr=LR,
        batch_size=BATCH,
        epochs=epochs,
        seed=settings.seed,
        seeds=settings.seeds,
        **{option: values},
    )
    log(f"{option} {', '.join(map(str, values))} x {settings.seeds} seeds in one program")
    metrics = fit_run(config, out / "train", log, stop)
    curves = {}
    for key in ("train_acc", "test_acc"):
        _, acc = history(metrics, key)  # (T, values * seeds)
        curves[key] = acc.T.reshape(len(values), settings.seeds, -1).tolist()
    epochs = history(metrics, "epoch")[1][:, 0]
    return {"option": option, "values": list(values), "epochs": epochs.tolist(), **curves}


def gaps(results) -> list[tuple[float, float, float]]:
    """Per value: the last epoch's train and test accuracy (mean over seeds), and the gap."""
    out = []
    for train, test in zip(results["train_acc"], results["test_acc"], strict=True):
        a, b = np.asarray(train)[:, -1].mean(), np.asarray(test)[:, -1].mean()
        out.append((float(a), float(b), float(a - b)))
    return out


def claim(results, what: str, book: str) -> Claim:
    (plain, cured) = gaps(results)
    return Claim(
        f"{what} narrows the train-test gap at the last epoch ({book}; the test set here is "
        "mnist-5k's 1,000 digits)",
        cured[2] < plain[2],
        f"train / test / gap: without {plain[0]:.3f} / {plain[1]:.3f} / {plain[2]:.3f}, "
        f"with {cured[0]:.3f} / {cured[1]:.3f} / {cured[2]:.3f}",
    )


def figure(results, title: str):
    from funcbp.experiments._plot import bands, new_figure

    values = results["values"]
    fig, axes = new_figure(1, len(values), size=(5.5 * len(values), 4.5), sharey=True)
    x = np.asarray(results["epochs"])
    for ax, value, train, test in zip(
        axes[0], values, results["train_acc"], results["test_acc"], strict=True
    ):
        bands(ax, x, train, label="train", marker="o", markevery=max(len(x) // 10, 1))
        bands(ax, x, test, label="test", marker="s", markevery=max(len(x) // 10, 1))
        ax.set(xlabel="epochs", ylim=(0, 1), title=f"{results['option']} = {value}")
        ax.legend(loc="lower right")
    axes[0, 0].set_ylabel("accuracy")
    seeds = len(results["train_acc"][0])
    fig.suptitle(f"{title}; mean ± std of {seeds} seeds")
    return fig

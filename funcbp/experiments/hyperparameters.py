"""The book's ch06/hyperparameter_optimization.py: a random search of lr and weight decay.

100 trials, lr ``10 ** U(-6, -2)``, weight decay ``10 ** U(-8, -4)``; MultiLayerNet
6x100, SGD, batch 100, 50 epochs, on ``x_train[:500]`` shuffled with 20% split off
for validation: the whole search is one program (``trials``). Each trial draws
its own minibatches, as the book's Trainer does. The figure is the book's: the
best 20 trials by validation accuracy, validation solid, training dashed.

In the same run, the book's own NumPy code (:class:`funcbp.book_numpy.Trainer`
on :class:`~funcbp.book_numpy.MultiLayerNet`) trains a few trials with the same
data, before and after funcbp's search, timed, for the per-trial speed ratio.
"""

from __future__ import annotations

import time

import numpy as np

from funcbp import book_numpy
from funcbp.config import Range, TrainConfig
from funcbp.experiments._models import fit_run, history
from funcbp.experiments._run import Claim
from funcbp.splits import load_training_data

TRIALS, EPOCHS, HIDDEN, BATCH = 100, 50, (100,) * 6, 100
QUICK_TRIALS, QUICK_EPOCHS = 10, 10
LR, WEIGHT_DECAY = Range(1e-6, 1e-2), Range(1e-8, 1e-4)
BOOK_TRIALS = 3  # before and after funcbp's search (1 each with --quick)
BEST, TOP = 5, 20  # the claim reads the best 5; the figure shows the best 20
GOOD_LR, SMALL_DECAY = (1e-3, 1e-2), 1e-5


def config(settings) -> TrainConfig:
    return TrainConfig(
        model="multi-layer",
        data=settings.data,
        data_size=500,
        validation=0.2,
        hidden=HIDDEN,
        optimizer="sgd",
        batch_size=BATCH,
        epochs=QUICK_EPOCHS if settings.quick else EPOCHS,
        trials=QUICK_TRIALS if settings.quick else TRIALS,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=settings.seed,
        seeds=settings.seeds,
    )


def book_seconds(settings, rng: np.random.Generator) -> dict:
    """The book's ``__train`` for a few trials, its draws as the book makes them."""
    c = config(settings)
    data = load_training_data(c, (784,))
    trials = 1 if settings.quick else BOOK_TRIALS
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):  # a high rate may overflow the book's net, as in the book
        for _ in range(trials):
            weight_decay, lr = 10 ** rng.uniform(-8, -4), 10 ** rng.uniform(-6, -2)
            params = book_numpy.multi_layer_params(784, list(HIDDEN), 10, "relu", rng=rng)
            net = book_numpy.MultiLayerNet(params, len(HIDDEN), weight_decay_lambda=weight_decay)
            trainer = book_numpy.Trainer(
                net,
                data.x_train,
                data.t_train,
                data.x_val,
                data.t_val,
                epochs=c.epochs,
                mini_batch_size=BATCH,
                optimizer="sgd",
                optimizer_param={"lr": lr},
                verbose=False,
                rng=rng,
            )
            trainer.train()
    seconds = time.perf_counter() - t0
    return {"trials": trials, "seconds": seconds, "per_trial": seconds / trials}


def compute(settings, out, log, stop=None) -> dict:
    rng = np.random.default_rng(settings.seed)
    book = [book_seconds(settings, rng)]
    c = config(settings)
    log(f"{c.trials} trials x {settings.seeds} seeds in one program into {out / 'train'}")
    t0 = time.perf_counter()
    metrics = fit_run(c, out / "train", log, stop)
    seconds = time.perf_counter() - t0
    book.append(book_seconds(settings, rng))
    sweep = metrics["sweep"]
    curves = {}
    for key in ("val_acc", "train_acc"):
        _, acc = history(metrics, key)  # (T, trials * seeds)
        curves[key] = acc.T.reshape(c.trials, settings.seeds, -1)
    trials = []
    for j in sweep["ranking"]:  # best first, by mean validation accuracy
        values = sweep["configurations"][j]["values"]
        trials.append(
            {
                "trial": j,
                "lr": values["lr"],
                "weight_decay": values["weight_decay"],
                "val_acc": sweep["configurations"][j]["val_acc"]["mean"],
                "val_curve": curves["val_acc"][j].tolist(),
                "train_curve": curves["train_acc"][j].tolist(),
            }
        )
    book_per_trial = float(np.mean([b["per_trial"] for b in book]))
    per_trial = seconds / c.trials
    return {
        "trials": trials,
        "epochs": c.epochs,
        "timing": metrics["timing"],
        "speed": {
            "funcbp_seconds": seconds,
            "funcbp_trials": c.trials,
            "funcbp_per_trial": per_trial,
            "book": book,
            "book_per_trial": book_per_trial,
            "ratio": book_per_trial / per_trial,
        },
    }


def claims(results) -> list[Claim]:
    best = results["trials"][:BEST]
    lr_ok = [GOOD_LR[0] <= t["lr"] <= GOOD_LR[1] for t in best]
    decay_ok = [t["weight_decay"] < SMALL_DECAY for t in best]
    shown = "; ".join(
        f"val {t['val_acc']:.3f}: lr {t['lr']:.2g}, wd {t['weight_decay']:.2g}" for t in best
    )
    speed, timing = results["speed"], results["timing"]
    return [
        Claim(f"the best {BEST} trials have lr in 1e-3 to 1e-2", all(lr_ok), shown),
        Claim(
            f"the best {BEST} trials have weight decay below 1e-5",
            all(decay_ok),
            f"{sum(decay_ok)} of {BEST}",
        ),
        Claim(
            "funcbp's seconds a trial against the book's NumPy code, same run",
            None,
            f"funcbp {speed['funcbp_per_trial']:.3f} s ({speed['funcbp_trials']} trials in one "
            f"program; compile {timing['compile_s']:.1f} s, train {timing['train_s']:.1f} s, "
            f"evaluation {timing['eval_s']:.1f} s), the book's {speed['book_per_trial']:.3f} s: "
            f"{speed['ratio']:.1f}x",
        ),
    ]


def figure(results):
    from funcbp.experiments._plot import bands, new_figure

    shown = results["trials"][:TOP]
    rows = -(-len(shown) // 5)
    fig, axes = new_figure(rows, 5, size=(12, 2.4 * rows), sharey=True)
    for i, (ax, t) in enumerate(zip(axes.flat, shown, strict=False)):
        x = np.arange(len(t["val_curve"][0]))
        bands(ax, x, t["val_curve"])
        bands(ax, x, t["train_curve"], linestyle="--")
        ax.set(ylim=(0, 1), xticks=[])
        ax.set_title(f"Best-{i + 1}: lr {t['lr']:.1e}, wd {t['weight_decay']:.1e}", fontsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_axis_off()
    fig.suptitle(
        "validation accuracy (solid) and training accuracy (dashed), best "
        f"{len(shown)} of {len(results['trials'])} trials"
    )
    return fig

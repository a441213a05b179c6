"""The book's hyperparameter search (ch06/hyperparameter_optimization.py), timed against the book.

funcbp trains the 100 trials as one program (``funcbp train --trials 100``),
once with each trial's own minibatches and once with shared ones; the book's
own NumPy classes (``funcbp.book_numpy``) train a few trials the book's way,
one after another, in the same process. Printed: seconds per trial of each, and
the ratios. The book's setup: MultiLayerNet 6x100, SGD, x_train[:500] with 20%
for validation, 50 epochs, batch 100, lr 10**uniform(-6, -2), weight decay
10**uniform(-8, -4).

    python experiments/hyperparameter_search.py [--trials 100] [--book-trials 3] [--out runs/search]
"""

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

from funcbp import book_numpy
from funcbp.config import Range, TrainConfig
from funcbp.splits import load_training_data
from funcbp.train import fit

HIDDEN = (100,) * 6
EPOCHS, BATCH = 50, 100


def config(trials: int, shared: bool) -> TrainConfig:
    return TrainConfig(
        model="multi-layer",
        hidden=HIDDEN,
        optimizer="sgd",
        trials=trials,
        lr=Range(1e-6, 1e-2),
        weight_decay=Range(1e-8, 1e-4),
        validation=0.2,
        data_size=500,
        epochs=EPOCHS,
        shared_batches=shared,
    )


def book_trial(data, lr: float, decay: float, rng: np.random.Generator) -> float:
    """One trial as the book's Trainer runs it; returns the last validation accuracy."""
    sizes = (784, *HIDDEN, 10)
    params = {}
    for i, (n, m) in enumerate(itertools.pairwise(sizes), 1):
        params[f"W{i}"] = np.sqrt(2.0 / n) * rng.standard_normal((n, m))  # He, as MultiLayerNet
        params[f"b{i}"] = np.zeros(m)
    net = book_numpy.MultiLayerNetExtend(params, len(HIDDEN), weight_decay_lambda=decay)
    x, t, x_val, t_val = data.x_train, data.t_train, data.x_val, data.t_val
    per_epoch = max(len(x) // BATCH, 1)
    accuracies = []
    for i in range(EPOCHS * per_epoch):
        batch = rng.choice(len(x), BATCH)
        grads = net.gradient(x[batch], t[batch])
        for k in params:
            params[k] -= lr * grads[k]
        if i % per_epoch == 0:  # the Trainer's train and validation accuracy once an epoch
            accuracies.append([np.mean(np.argmax(net.predict(a), 1) == b) for a, b in
                               ((x, t), (x_val, t_val))])  # fmt: skip
    return float(accuracies[-1][1])


def time_book(trials: int, seed: int) -> float:
    """Seconds a trial of the book's search, its draws as the book makes them."""
    data = load_training_data(config(1, False), (784,))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(trials):
        decay, lr = 10 ** rng.uniform(-8, -4), 10 ** rng.uniform(-6, -2)
        book_trial(data, lr, decay, rng)
    return (time.perf_counter() - t0) / trials


def time_funcbp(trials: int, shared: bool, out: Path) -> float:
    """Seconds a trial of funcbp's search, compile and evaluation included."""
    name = "shared" if shared else "own"
    t0 = time.perf_counter()
    result = fit(config(trials, shared), out / name, overwrite=True, progress=False,
                 log=lambda line: None)  # fmt: skip
    seconds = (time.perf_counter() - t0) / trials
    sweep = result.metrics["sweep"]
    best = sweep["configurations"][sweep["ranking"][0]]
    print(
        f"funcbp, {name} batches: {seconds:.3f} s a trial; best val acc "
        f"{best['val_acc']['mean']:.2f} at {best['values']}"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--book-trials", type=int, default=3)
    parser.add_argument("--out", default="runs/search")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)")
    # The book's trials before and after funcbp's, so that the machine's load is shared.
    book = [time_book(args.book_trials, 0)]
    print(f"the book's NumPy code: {book[0]:.3f} s a trial ({args.book_trials} trials)")
    own = time_funcbp(args.trials, False, Path(args.out))
    shared = time_funcbp(args.trials, True, Path(args.out))
    book.append(time_book(args.book_trials, 1))
    print(f"the book's NumPy code again: {book[1]:.3f} s a trial")
    mean = sum(book) / len(book)
    for name, seconds in (("own", own), ("shared", shared)):
        print(f"funcbp with {name} batches: {mean / seconds:.1f}x the book's speed a trial")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

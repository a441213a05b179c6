"""The book's experiments of chapters 6 to 8, one command each: ``funcbp experiment NAME``.

:data:`EXPERIMENTS` is the one table of them: name, the book's script, what it
runs, its module, how many seeds it draws by default and the model it inspects.
Each module has three functions:

- ``compute(settings, out, log, stop) -> results``: every number behind the figure, as JSON;
- ``claims(results) -> [Claim]``: the book's claims, whether each held, and the numbers;
- ``figure(results) -> matplotlib Figure``: the book's figure, from the results alone.

:func:`run` checks the arguments, runs one, and writes its folder (see
:mod:`funcbp.experiments._run`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from funcbp.experiments._run import Claim, Outcome, Settings

__all__ = ["EXPERIMENTS", "Claim", "Experiment", "Outcome", "Settings", "listing", "run"]


@dataclass(frozen=True)
class Experiment:
    """A row of the table.

    Attributes:
        name: the command's NAME, e.g. ``"optimizer-paths"``.
        script: the book's file it reproduces.
        what: one line on what it runs.
        module: its module in this package.
        seeds: how many seeds it draws by default; None if it draws nothing.
        model: the trained network it inspects (``--params``/``--run-dir``), if any.
        data: whether it reads MNIST (``--data``).
    """

    name: str
    script: str
    what: str
    module: str
    seeds: int | None = 3
    model: str | None = None
    data: bool = True


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "optimizer-paths",
            "ch06/optimizer_compare_naive.py",
            "SGD, Momentum, AdaGrad, Adam: 30 steps on x²/20 + y² from (-7, 2)",
            "optimizer_paths",
            seeds=None,
            data=False,
        ),
        Experiment(
            "init-activations",
            "ch06/weight_init_activation_histogram.py",
            "activations of 5 layers of 100 per init: sigmoid std 1, 0.01, Xavier; ReLU 0.01, "
            "Xavier, He",
            "init_activations",
            data=False,
        ),
        Experiment(
            "optimizers",
            "ch06/optimizer_compare_mnist.py",
            "SGD, Momentum, AdaGrad, Adam on MultiLayerNet 4x100: batch 128, 2,000 iterations",
            "optimizers",
        ),
        Experiment(
            "init",
            "ch06/weight_init_compare.py",
            "std 0.01, Xavier and He on MultiLayerNet 4x100 ReLU: SGD 0.01, 2,000 iterations",
            "init",
        ),
        Experiment(
            "batch-norm",
            "ch06/batch_norm_test.py",
            "16 weight scales with and without batch norm: 5x100, 1,000 digits, 20 epochs",
            "batch_norm",
        ),
        Experiment(
            "weight-decay",
            "ch06/overfit_weight_decay.py",
            "weight decay 0 and 0.1: 6x100 on 300 digits, SGD 0.01, 201 epochs",
            "weight_decay",
        ),
        Experiment(
            "dropout",
            "ch06/overfit_dropout.py",
            "dropout 0 and 0.2: 6x100 on 300 digits, SGD 0.01, 301 epochs",
            "dropout",
        ),
        Experiment(
            "hyperparameters",
            "ch06/hyperparameter_optimization.py",
            "100 trials of lr 10^U(-6,-2), weight decay 10^U(-8,-4): 6x100, 400+100 digits, "
            "50 epochs",
            "hyperparameters",
            seeds=1,
        ),
        Experiment(
            "filters",
            "ch07/visualize_filter.py",
            "SimpleConvNet's 30 first-layer filters before and after training",
            "filters",
            seeds=1,
            model="simple-convnet",
        ),
        Experiment(
            "misclassified",
            "ch08/misclassified_mnist.py",
            "DeepConvNet's first 20 misclassified test digits, with label and prediction",
            "misclassified",
            seeds=1,
            model="deep-convnet",
        ),
        Experiment(
            "half-float",
            "ch08/half_float_network.py",
            "DeepConvNet's test accuracy in float64, float32, float16 and bfloat16",
            "half_float",
            seeds=1,
            model="deep-convnet",
        ),
    )
}


def listing() -> str:
    """The table as text: name, the book's script, what it runs."""
    width = max(len(n) for n in EXPERIMENTS)
    script = max(len(e.script) for e in EXPERIMENTS.values())
    return "\n".join(
        f"{e.name:<{width}}  {e.script:<{script}}  {e.what}" for e in EXPERIMENTS.values()
    )


def _experiment(name: str | None) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"NAME must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    return EXPERIMENTS[name]


def run(name: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
        log: Callable[[str], None] = print, stop=None, **given) -> Outcome:  # fmt: skip
    """Runs one experiment into ``out`` (default ``runs/NAME/<date>-<time>-<id>``).

    Args:
        name: a key of :data:`EXPERIMENTS`.
        out: a new or empty folder.
        resume: a stopped experiment's folder, continued with its own settings.
        log: where progress lines go.
        stop: a :class:`funcbp.stopping.Stop` the caller installed, for every ``fit``.
        **given: ``seeds``, ``seed``, ``quick``, ``data``, ``params``, ``run_dir``,
            as :func:`funcbp.experiments._run.make_settings` checks them.

    Raises:
        ValueError: a bad argument, before any data is read or anything compiled.
        funcbp.train.Interrupted: SIGINT, SIGTERM or SIGHUP; trained models are
            checkpointed for ``resume``.
    """
    from funcbp.experiments import _run

    if resume is not None:
        used = [k for k, v in given.items() if v not in (None, False)] + (["out"] if out else [])
        if used:
            raise ValueError(
                f"--{used[0].replace('_', '-')} cannot be used with --resume, which continues "
                "with the settings the run was started with"
            )
        out = Path(resume)
        settings = _run.load_settings(out)
        if name is not None and name != settings.name:
            raise ValueError(f"--resume {out} holds a {settings.name} run, not {name}")
        experiment = _experiment(settings.name)
    else:
        experiment = _experiment(name)
        settings = _run.make_settings(experiment, **given)
        if out is None:
            from funcbp.runs import default_out

            out = default_out(Path("runs") / experiment.name)
    module = importlib.import_module(f"funcbp.experiments.{experiment.module}")
    return _run.execute(module, settings, Path(out), resume=resume is not None, log=log,
                        stop=stop)  # fmt: skip

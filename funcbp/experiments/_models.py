"""The trained network an experiment inspects: a params file, a run folder, or trained here.

- ``--params FILE``: a ``.npz`` or ``.pkl`` in the book's names and shapes, such as
  its ``params.pkl`` (ch07) or ``deep_convnet_params.pkl`` (ch08), read without
  running code (:func:`funcbp.io.load_params`); one model.
- ``--run-dir DIR``: a finished ``funcbp train`` run of that model; its K models.
- neither: the model's recipe (the book's training script) is trained here by the
  engine, ``--seeds`` models in one program, into ``OUT/train`` (checkpointed, so
  ``--resume`` continues it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcbp import runs, train
from funcbp.config import TrainConfig
from funcbp.data import load_for_model
from funcbp.experiments._run import Stopped
from funcbp.net import Network
from funcbp.steps import run_keys

__all__ = ["Trained", "predict", "test_set", "trained"]

QUICK_ITERS = 20  # a --quick run trains this many iterations
QUICK_TEST = 500  # and inspects the first this many test digits


@dataclass(frozen=True)
class Trained:
    """Models to inspect: per model its params, layer state and params before training."""

    net: Network
    params: list[dict[str, np.ndarray]]
    layer_state: list[dict[str, np.ndarray]]
    initial: list[dict[str, np.ndarray]]
    source: dict[str, Any]


def _unstack(tree: dict, models: int) -> list[dict]:
    if models == 1:
        return [tree]
    return [{k: v[j] for k, v in tree.items()} for j in range(models)]


def _initial(net: Network, seed: int, models: int) -> list[dict]:
    """Model j's init in a run of seed ``seed``: the run of seed ``seed + j`` (steps.run_keys)."""
    return [jax.tree.map(np.asarray, net.init(run_keys(seed + j).init)) for j in range(models)]


def _from_file(path: str, model: str, seed: int) -> Trained:
    try:
        net, params, state = runs.params_file(model, path)
    except ValueError as e:
        raise ValueError(f"--params {e}") from None
    source = {"kind": "params", "path": str(path)}
    return Trained(net, [params], [state], _initial(net, seed, 1), source)


def _from_run(run_dir: str | Path, model: str, kind: str) -> Trained:
    try:
        run, params, state = runs.load_run(run_dir)
    except runs.RunError as e:
        raise ValueError(f"--run-dir {run_dir}: {e}") from None
    config = run.config
    if config.model != model:
        raise ValueError(f"--run-dir {run_dir} trained {config.model}, not {model}")
    net, models = run.network(), run.count
    source = {"kind": kind, "path": str(run_dir), "seed": config.seed, "models": models,
              "iters": run.iters, "data": config.data}  # fmt: skip
    return Trained(net, _unstack(params, models), _unstack(state, models),
                   _initial(net, config.seed, models), source)  # fmt: skip


def _train_here(settings, out: Path, model: str, log) -> Path:
    folder = out / "train"
    if (folder / "metrics.json").is_file():
        return folder  # finished before the experiment was stopped
    options = {"progress": False, "log": log}
    try:
        if (folder / runs.CHECKPOINT).is_file():
            train.resume(folder, **options)
        else:
            iters = QUICK_ITERS if settings.quick else None
            config = TrainConfig(model=model, data=settings.data, seed=settings.seed,
                                 seeds=settings.seeds, iters=iters, eval_every=iters)  # fmt: skip
            train.fit(config, folder, overwrite=True, **options)
    except train.Interrupted as e:
        raise Stopped(e.signum, out) from None
    except train.Diverged as e:
        raise ValueError(f"training {model} diverged: {e}") from None
    return folder


def trained(settings, out: Path | None, model: str, log) -> Trained:
    """The models ``settings`` name: ``--params``, ``--run-dir``, or trained here into ``out``.

    Raises:
        ValueError: a params file or run folder that does not hold ``model``.
    """
    if settings.params is not None:
        return _from_file(settings.params, model, settings.seed)
    if settings.run_dir is not None:
        return _from_run(settings.run_dir, model, "run")
    log(f"training {model} ({settings.seeds} models in one program) into {out / 'train'}")
    return _from_run(_train_here(settings, out, model, log), model, "trained here")


def test_set(settings, net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The data's test images (N, C, H, W) and labels; the first 500 with ``--quick``."""
    _, (x, t) = load_for_model(settings.data, net.input_shape)
    return (x[:QUICK_TEST], t[:QUICK_TEST]) if settings.quick else (x, t)


def predict(net: Network, params: dict, state: dict, x: np.ndarray, dtype=jnp.float32,
            batch: int = 250) -> np.ndarray:  # fmt: skip
    """Scores (N, classes) in eval mode, params, state and x cast to ``dtype``, in batches."""
    cast = lambda tree: {k: jnp.asarray(v, dtype) for k, v in tree.items()}  # noqa: E731
    params, state = cast(params), cast(state)
    n, pad = len(x), -len(x) % batch
    x = jnp.asarray(np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), dtype)
    scores = jax.jit(lambda p, s, xs: jax.lax.map(lambda xb: net.predict(p, xb, s), xs))(
        params, state, x.reshape(-1, batch, *x.shape[1:])
    )
    return np.asarray(scores, np.float64).reshape(-1, scores.shape[-1])[:n]

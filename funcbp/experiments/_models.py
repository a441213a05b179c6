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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcbp import runs, train
from funcbp.config import TrainConfig
from funcbp.data import load_for_model
from funcbp.net import Network
from funcbp.steps import run_keys

__all__ = ["Trained", "fit_run", "history", "predict", "test_set", "trained"]

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


def fit_run(config: TrainConfig, folder: Path, log, stop) -> dict[str, Any]:
    """The metrics of ``config``'s run in ``folder``: read if it finished, resumed from its
    checkpoint if it stopped, else trained by the engine (``fit``).

    Raises:
        funcbp.train.Interrupted: on a signal, after a checkpoint.
        ValueError: the run diverged (every model's loss not finite).
    """
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    options = {"progress": False, "log": log, "stop": stop}
    try:
        if (folder / runs.CHECKPOINT).is_file():
            return train.resume(folder, **options).metrics
        return train.fit(config, folder, overwrite=True, **options).metrics
    except train.Diverged as e:
        raise ValueError(f"training {config.model} in {folder} diverged: {e}") from None


def history(metrics: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(iters (T,), values (T, K))``: a key of each history row (a number per model)."""
    rows = metrics["history"]
    iters = np.asarray([r["iter"] for r in rows])
    return iters, np.asarray([np.ravel(r[key]) for r in rows], np.float64)


def _train_here(settings, out: Path, model: str, log, stop) -> Path:
    iters = QUICK_ITERS if settings.quick else None
    config = TrainConfig(model=model, data=settings.data, seed=settings.seed,
                         seeds=settings.seeds, iters=iters, eval_every=iters)  # fmt: skip
    fit_run(config, out / "train", log, stop)
    return out / "train"


def trained(settings, out: Path | None, model: str, log, stop=None) -> Trained:
    """The models ``settings`` name: ``--params``, ``--run-dir``, or trained here into ``out``.

    Raises:
        ValueError: a params file or run folder that does not hold ``model``.
    """
    if settings.params is not None:
        return _from_file(settings.params, model, settings.seed)
    if settings.run_dir is not None:
        return _from_run(settings.run_dir, model, "run")
    log(f"training {model} ({settings.seeds} models in one program) into {out / 'train'}")
    return _from_run(_train_here(settings, out, model, log, stop), model, "trained here")


def test_set(settings, net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The data's test images (N, C, H, W) and labels; the first 500 with ``--quick``."""
    _, (x, t) = load_for_model(settings.data, net.input_shape)
    return (x[:QUICK_TEST], t[:QUICK_TEST]) if settings.quick else (x, t)


def predict(net: Network, params: dict, state: dict, x: np.ndarray, dtype=jnp.float32,
            batch: int = 250) -> np.ndarray:  # fmt: skip
    """Scores (N, classes) in eval mode, the network computing in ``dtype`` (its
    ``compute_dtype``: each layer's input and params cast to it), in batches."""
    master = jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
    cast = lambda tree: {k: jnp.asarray(v, master) for k, v in tree.items()}  # noqa: E731
    params, state = cast(params), cast(state)
    n, pad = len(x), -len(x) % batch
    x = jnp.asarray(np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]), master)

    def scores(p, s, xs):
        return jax.lax.map(lambda xb: net.predict(p, xb, s, compute_dtype=dtype), xs)

    out = jax.jit(scores)(params, state, x.reshape(-1, batch, *x.shape[1:]))
    return np.asarray(out, np.float64).reshape(-1, out.shape[-1])[:n]

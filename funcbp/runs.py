"""Run folders: a run's checkpoint, metrics, curves and params, written safely and read back.

Every file is written to a temporary name and renamed. A checkpoint is two
files: ``checkpoint-<iteration>.npz`` (the arrays) and ``checkpoint.json``
(config, iteration, history, timing, and the arrays' file name and sha256),
written in that order; the older arrays file is removed only after the new
``checkpoint.json`` is in place. A crash at any moment therefore leaves a
consistent checkpoint, and a damaged or edited one is refused, never resumed.

A run folder of K models (``--seeds K``) holds every array with a leading (K,) axis.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcbp import zoo
from funcbp.config import TrainConfig
from funcbp.data import load_for_model
from funcbp.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    load_params,
)
from funcbp.net import Network
from funcbp.steps import TrainState, make_evaluate

__all__ = [
    "RUN_FILES",
    "Checkpoint",
    "RunError",
    "default_out",
    "dumps_json",
    "evaluate",
    "evaluate_params",
    "evaluate_run",
    "load_checkpoint",
    "load_run",
    "plot_curves",
    "prepare_out",
    "restore_state",
    "save_checkpoint",
    "summary",
    "write_run",
]

CHECKPOINT = "checkpoint.json"
RUN_FILES = (CHECKPOINT, "metrics.json", "params.npz", "curve.png")
_FORMAT = 1


class RunError(ValueError):
    """A run folder that cannot be written, or a checkpoint that cannot be trusted."""


# --- the folder -----------------------------------------------------------------


def default_out(root: str | os.PathLike = "runs") -> Path:
    """``runs/<date>-<time>-<pid><random>``: runs started in the same second get their own."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{os.getpid()}{secrets.token_hex(2)}"


def prepare_out(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Makes ``path`` ready for a new run, before anything is trained.

    Refuses a file, a folder that already holds files (unless ``overwrite``,
    which removes only funcbp's own run files) and a place that cannot be
    written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"out {path} is a file; expected a folder for the run")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RunError(
                f"out {path} already holds files; choose a new folder, resume it with "
                f"--resume {path}, or pass --overwrite to replace its run"
            )
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for old in path.glob("checkpoint-*.npz"):
            old.unlink()
    try:
        return check_writable(path, "out")
    except OSError as e:
        raise RunError(str(e)) from None


# --- JSON -------------------------------------------------------------------------


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


def dumps_json(obj: Any) -> str:
    """Strict JSON: a NaN or infinity becomes null, never the invalid ``NaN`` token."""
    return json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n"


# --- checkpoints ------------------------------------------------------------------


def _named_leaves(state: TrainState) -> list[tuple[str, Any]]:
    """``(name, leaf)`` in the order ``jax.tree.leaves(state)`` gives the leaves."""
    named = [(f"params/{k}", state.params[k]) for k in sorted(state.params)]
    named += [(f"opt_state/{i}", v) for i, v in enumerate(jax.tree.leaves(state.opt_state))]
    named += [(f"layer_state/{k}", state.layer_state[k]) for k in sorted(state.layer_state)]
    return named


def _arrays(state: TrainState) -> dict[str, np.ndarray]:
    return {name: np.asarray(leaf) for name, leaf in _named_leaves(state)}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_checkpoint(
    out: Path, config: TrainConfig, state: TrainState, iteration: int, history: list, timing: dict
) -> None:
    """Writes the checkpoint of ``state`` (host arrays) after ``iteration`` steps."""
    data = _npz_bytes(_arrays(state))
    name = f"checkpoint-{iteration:09d}.npz"
    atomic_write_bytes(out / name, data)
    meta = {
        "format": _FORMAT,
        "iteration": iteration,
        "config": config.to_dict(),
        "history": history,
        "timing": timing,
        "arrays": name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_text(out / CHECKPOINT, dumps_json(meta))
    for old in out.glob("checkpoint-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back and checked: its config, progress and arrays."""

    config: TrainConfig
    iteration: int
    history: list
    timing: dict
    arrays: dict[str, np.ndarray]
    path: Path


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Reads ``run_dir``'s checkpoint; refuses, in one line naming the file, anything damaged."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise RunError(
            f"resume {run_dir}: no {CHECKPOINT} there (not a funcbp run folder, or the run "
            "stopped before its first checkpoint)"
        )
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is damaged: not valid JSON ({e})") from None
    needed = ("format", "iteration", "config", "history", "timing", "arrays", "sha256")
    missing = [k for k in needed if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise RunError(f"{path} is damaged: it lacks {', '.join(missing)}")
    if meta["format"] != _FORMAT:
        raise RunError(f"{path} has checkpoint format {meta['format']!r}; expected {_FORMAT}")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise RunError(f"{path} holds a config that is not valid: {e}") from None
    iteration = meta["iteration"]
    if not isinstance(iteration, int) or not 0 < iteration <= config.iters:
        raise RunError(f"{path} is damaged: iteration {iteration!r} is not in 1..{config.iters}")
    arrays_path = run_dir / str(meta["arrays"])
    if arrays_path.parent != run_dir or not arrays_path.is_file():
        raise RunError(f"{path} names {meta['arrays']!r}, which is not in {run_dir}")
    data = arrays_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise RunError(
            f"{arrays_path} does not match the sha256 that {path} records: the file was "
            "changed or damaged"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunError(f"{arrays_path} is damaged: {e}") from None
    return Checkpoint(config, iteration, meta["history"], meta["timing"], arrays, arrays_path)


def restore_state(checkpoint: Checkpoint, template: TrainState) -> TrainState:
    """The checkpoint's arrays in ``template``'s structure, each shape and dtype checked.

    ``template`` holds the state the checkpoint's config makes (e.g. from ``jax.eval_shape``).
    """
    expected = _named_leaves(template)
    if sorted(name for name, _ in expected) != sorted(checkpoint.arrays):
        raise RunError(
            f"{checkpoint.path} does not hold the arrays its config needs "
            f"(expected {len(expected)} arrays, found {len(checkpoint.arrays)})"
        )
    for name, spec in expected:
        found = checkpoint.arrays[name]
        if found.shape != tuple(spec.shape) or found.dtype != spec.dtype:
            raise RunError(
                f"{checkpoint.path} holds {name} as {found.dtype}{list(found.shape)}, but the "
                f"config in {CHECKPOINT} needs {np.dtype(spec.dtype)}{list(spec.shape)}"
            )
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, [checkpoint.arrays[name] for name, _ in expected])


# --- the finished run ----------------------------------------------------------------


def summary(values) -> dict[str, float]:
    """Mean and sample std across models (std 0 for one model)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def plot_curves(path: Path, history: list[dict[str, Any]], models: int = 1) -> None:
    """Accuracy and loss against epoch, as the book plots them; mean ± std for K models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.array([row["epoch"] for row in history])

    def curve(ax, name, label, **style):
        values = np.array([row[name] for row in history], np.float64).reshape(len(history), -1)
        mean = values.mean(axis=1)
        ax.plot(epochs, mean, label=label, **style)
        if models > 1:
            std = values.std(axis=1, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    curve(ax1, "train_acc", "train acc")
    curve(ax1, "test_acc", "test acc", linestyle="--")
    ax1.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    title = f"mean ± std of {models} seeds" if models > 1 else None
    ax1.legend(loc="lower right", title=title)
    curve(ax2, "loss", "loss")
    ax2.set(xlabel="epochs", ylabel="loss (mean over the interval's minibatches)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def write_run(out: Path, metrics: dict[str, Any], params: dict, layer_state: dict) -> None:
    """Writes ``params.npz`` (params and layer state), ``curve.png`` and ``metrics.json``."""
    arrays = {k: np.asarray(v) for k, v in {**params, **layer_state}.items()}
    atomic_write(out / "params.npz", lambda f: np.savez(f, **arrays))
    plot_curves(out / "curve.png", metrics["history"], metrics["config"]["seeds"])
    atomic_write_text(out / "metrics.json", dumps_json(metrics))


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, dict, dict]:
    """A finished run's ``(config, params, layer_state)``, checked against its network."""
    run_dir = Path(run_dir)
    metrics_path, params_path = run_dir / "metrics.json", run_dir / "params.npz"
    for path in (metrics_path, params_path):
        if not path.is_file():
            raise RunError(f"run_dir must hold {path.name}; {path} does not exist")
    try:
        config = TrainConfig.from_dict(json.loads(metrics_path.read_text())["config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{metrics_path} is damaged: {e}") from None
    arrays = load_params(params_path)
    net = config.network
    params, layer_state = net.split(arrays)
    models = config.seeds
    for j in range(models):
        pick = (lambda a, j=j: a[j]) if models > 1 else (lambda a: a)
        try:
            net.check_params(jax.tree.map(pick, params), jax.tree.map(pick, layer_state))
        except (ValueError, IndexError) as e:
            raise RunError(f"{params_path} does not fit its run's config: {e}") from None
    return config, params, layer_state


def evaluate(
    net: Network, params: dict, layer_state: dict, data: str, *, models: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Train and test accuracy (eval mode) of params on ``data``; per model and mean ± std for K."""
    (x_train, t_train), (x_test, t_test) = load_for_model(data, net.input_shape)
    accuracy = make_evaluate(net, models=models)
    train_acc = np.asarray(accuracy(params, layer_state, x_train, t_train), np.float64)
    test_acc = np.asarray(accuracy(params, layer_state, x_test, t_test), np.float64)
    if models == 1:
        return {"train_acc": float(train_acc), "test_acc": float(test_acc)}
    return {
        "models": [
            {"seed": seed + j, "train_acc": float(train_acc[j]), "test_acc": float(test_acc[j])}
            for j in range(models)
        ],
        "train_acc": summary(train_acc),
        "test_acc": summary(test_acc),
    }


def evaluate_run(run_dir: str | os.PathLike, data: str | None = None) -> dict[str, Any]:
    """:func:`evaluate` of a finished run, on its own data unless ``data`` is given."""
    config, params, layer_state = load_run(run_dir)
    return evaluate(
        config.network,
        params,
        layer_state,
        data or config.data,
        models=config.seeds,
        seed=config.seed,
    )


def evaluate_params(model: str, path: str | os.PathLike, data: str = "mnist-5k") -> dict:
    """:func:`evaluate` of a params file (``.npz``, or a ``.pkl`` such as the book's).

    The file's names and shapes must be ``model``'s, as the book saves them;
    batch norm's running statistics, if the model has them, come from the file too.
    """
    arrays = load_params(path)
    try:
        net = zoo.network_for(model, arrays)
    except ValueError as e:
        raise RunError(f"{path} does not fit {model}: {e}") from None
    # The book's float64 weights run as float32, as funcbp trains.
    params, layer_state = net.split({k: np.asarray(v, np.float32) for k, v in arrays.items()})
    return evaluate(net, params, layer_state, data)

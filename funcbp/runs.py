"""Run folders: a run's checkpoint, metrics, figure and params, written safely and read back.

Every file is written to a temporary name and renamed. A checkpoint is two
files: ``checkpoint-<iteration>.npz`` (the arrays, each named by its path in
the training state, e.g. ``opt_state/inner_state/0/mu/W1``) and
``checkpoint.json`` (config, iteration, the record so far, and the arrays'
file name and sha256), written in that order; the older arrays file is
removed only after the new ``checkpoint.json`` is in place. A crash at any
moment therefore leaves a consistent checkpoint, and a damaged or edited one
is refused, never resumed.

A run of K models holds every array with a leading (K,) axis. A sweep also
writes ``sweep.json``: its configurations, ranked on validation accuracy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcbp import curves, summary, zoo
from funcbp.config import Run, TrainConfig, resolve
from funcbp.data import load_for_model
from funcbp.engine import programs
from funcbp.evaluation import Evaluator, batched
from funcbp.io import atomic_write, atomic_write_text, check_writable, load_params
from funcbp.splits import load_training_data
from funcbp.steps import TrainState

__all__ = [
    "RUN_FILES",
    "Checkpoint",
    "RunError",
    "default_out",
    "dumps_json",
    "evaluate",
    "evaluate_params",
    "evaluate_run",
    "leaf_names",
    "load_checkpoint",
    "load_run",
    "prepare_out",
    "restore_state",
    "save_checkpoint",
    "start_out",
    "write_run",
]

CHECKPOINT = "checkpoint.json"
RUN_FILES = (CHECKPOINT, "metrics.json", "sweep.json", "params.npz", "curve.png")
_FORMAT = 2
_RECORD = (
    "history",
    "chunks",
    "timing",
    "started",
    "diverged",
)  # what a checkpoint keeps of the record
_PENDING = "record/interval_losses"  # the losses of the interval not yet in the history


class RunError(ValueError):
    """A run folder that cannot be written, or a checkpoint that cannot be trusted."""


# --- the folder -----------------------------------------------------------------


def default_out(root: str | os.PathLike = "runs") -> Path:
    """``runs/<date>-<time>-<pid><random>``: runs started in the same second get their own."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{os.getpid()}{secrets.token_hex(2)}"


def prepare_out(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Checks, before anything is trained, that ``path`` can take a new run; changes nothing.

    Refuses a file, a folder that already holds files (unless ``overwrite``)
    and a place that cannot be written. The folder itself is made by
    :func:`start_out`, when the first checkpoint is written, so a run that
    fails or stops before then leaves no folder behind.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"out {path} is a file; expected a folder for the run")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise RunError(
            f"out {path} already holds files; choose a new folder, resume it with "
            f"--resume {path}, or pass --overwrite to replace its run"
        )
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        check_writable(path, "out")
    except OSError as e:
        raise RunError(str(e)) from None
    finally:
        for folder in missing:  # deepest first: leave the disk as it was
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def start_out(path: Path, *, overwrite: bool = False) -> None:
    """Makes the run folder for the first checkpoint; ``overwrite`` removes funcbp's old files."""
    path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for old in path.glob("checkpoint-*.npz"):
            old.unlink()


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


def _key_name(key: Any) -> str:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(state: TrainState) -> list[str]:
    """Each leaf's path in the state, e.g. ``opt_state/hyperparams/learning_rate``, in
    ``jax.tree.leaves`` order."""
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    return ["/".join(_key_name(k) for k in path) for path, _ in paths]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_checkpoint(
    out: Path,
    config: TrainConfig,
    state: TrainState,
    iteration: int,
    record: dict[str, Any],
    pending: np.ndarray,
) -> None:
    """Writes the checkpoint of ``state`` (host arrays) after ``iteration`` steps.

    ``record`` holds :data:`_RECORD`'s entries; ``pending`` the per-step losses
    of the evaluation interval under way, so that a resumed run's next row is
    the uninterrupted run's.
    """
    arrays = dict(zip(leaf_names(state), map(np.asarray, jax.tree.leaves(state)), strict=True))
    data = _npz_bytes({**arrays, _PENDING: np.asarray(pending, np.float32)})
    name = f"checkpoint-{iteration:09d}.npz"
    atomic_write(out / name, lambda f: f.write(data))
    meta = {
        "format": _FORMAT,
        "iteration": iteration,
        "config": config.to_dict(),
        **{k: record[k] for k in _RECORD},
        "arrays": name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_text(out / CHECKPOINT, dumps_json(meta))
    for old in out.glob("checkpoint-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back and checked: its config, progress, record and arrays."""

    config: TrainConfig
    iteration: int
    record: dict[str, Any]
    arrays: dict[str, np.ndarray]
    pending: np.ndarray
    path: Path


def _read_meta(run_dir: Path) -> dict[str, Any]:
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
    needed = ("format", "iteration", "config", *_RECORD, "arrays", "sha256")
    missing = [k for k in needed if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise RunError(f"{path} is damaged: it lacks {', '.join(missing)}")
    if meta["format"] != _FORMAT:
        raise RunError(f"{path} has checkpoint format {meta['format']!r}; expected {_FORMAT}")
    return meta


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Reads ``run_dir``'s checkpoint; refuses, in one line naming the file, anything damaged."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    meta = _read_meta(run_dir)
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise RunError(f"{path} holds a config that is not valid: {e}") from None
    iteration = meta["iteration"]
    if not isinstance(iteration, int) or iteration < 1:
        raise RunError(f"{path} is damaged: iteration {iteration!r} is not a positive integer")
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
    if _PENDING not in arrays:
        raise RunError(f"{arrays_path} is damaged: it lacks {_PENDING}")
    pending = arrays.pop(_PENDING)
    record = {k: meta[k] for k in _RECORD}
    return Checkpoint(config, iteration, record, arrays, pending, arrays_path)


def restore_state(checkpoint: Checkpoint, template: TrainState) -> TrainState:
    """The checkpoint's arrays in ``template``'s structure, each shape and dtype checked.

    ``template`` holds the state the checkpoint's config makes (e.g. from ``jax.eval_shape``).
    """
    names, specs = leaf_names(template), jax.tree.leaves(template)
    if sorted(names) != sorted(checkpoint.arrays):
        unexpected = sorted(set(checkpoint.arrays) - set(names))[:1]
        missing = sorted(set(names) - set(checkpoint.arrays))[:1]
        raise RunError(
            f"{checkpoint.path} does not hold the arrays its config needs (expected "
            f"{len(names)} arrays, found {len(checkpoint.arrays)}: "
            f"{'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0]})"
        )
    for name, spec in zip(names, specs, strict=True):
        found = checkpoint.arrays[name]
        if found.shape != tuple(spec.shape) or found.dtype != spec.dtype:
            raise RunError(
                f"{checkpoint.path} holds {name} as {found.dtype}{list(found.shape)}, but the "
                f"config in {CHECKPOINT} needs {np.dtype(spec.dtype)}{list(spec.shape)}"
            )
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, [checkpoint.arrays[name] for name in names])


# --- the finished run ----------------------------------------------------------------


def write_run(
    out: Path,
    metrics: dict[str, Any],
    params: dict,
    layer_state: dict,
    lock: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> None:
    """Writes ``params.npz`` (params and layer state), ``curve.png``, ``sweep.json`` (for
    several configurations) and ``metrics.json``, the last one last.

    The figure is drawn first; the files are then written while ``lock()`` is held.
    """
    arrays = {k: np.asarray(v) for k, v in {**params, **layer_state}.items()}
    figure = curves.render(metrics)
    with lock():
        atomic_write(out / "params.npz", lambda f: np.savez(f, **arrays))
        atomic_write(out / "curve.png", lambda f: f.write(figure))
        if "sweep" in metrics:
            atomic_write_text(out / "sweep.json", dumps_json(metrics["sweep"]))
        atomic_write_text(out / "metrics.json", dumps_json(metrics))


def load_run(run_dir: str | os.PathLike) -> tuple[Run, dict, dict]:
    """A finished run's ``(run, params, layer_state)``, checked against its network."""
    run_dir = Path(run_dir)
    metrics_path, params_path = run_dir / "metrics.json", run_dir / "params.npz"
    for path in (metrics_path, params_path):
        if not path.is_file():
            raise RunError(f"run_dir must hold {path.name}; {path} does not exist")
    try:
        metrics = json.loads(metrics_path.read_text())
        run = resolve(TrainConfig.from_dict(metrics["config"]), metrics["run"]["train_size"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{metrics_path} is damaged: {e}") from None
    net = run.network()
    params, layer_state = net.split(load_params(params_path))
    k = run.count
    for j in range(k):
        pick = (lambda a, j=j: a[j]) if k > 1 else (lambda a: a)
        try:
            net.check_params(jax.tree.map(pick, params), jax.tree.map(pick, layer_state))
        except (ValueError, IndexError) as e:
            raise RunError(f"{params_path} does not fit its run's config: {e}") from None
    return run, params, layer_state


def evaluate(run: Run, params: dict, layer_state: dict, sets: dict) -> list[dict[str, Any]]:
    """Each model's accuracy and loss (eval mode) on each of ``sets`` (name -> (x, t))."""
    batches = {name: batched(x, t) for name, (x, t) in sets.items()}
    scores = programs(run).evaluator.scores(params, layer_state, run.loss_values(), batches)
    return summary.per_model(run.models, scores)


def evaluate_run(run_dir: str | os.PathLike, data: str | None = None) -> dict[str, Any]:
    """Each model of a finished run on its own sets (or on ``data``'s), and the run's summary:
    ``{"models": [...], "varying": [...], "final": {...}}``."""
    run, params, layer_state = load_run(run_dir)
    config = run.config if data is None else _on(run.config, data)
    sets = load_training_data(config, run.network().input_shape).sets()
    rows = evaluate(run, params, layer_state, sets)
    return {"models": rows, "varying": list(run.varying), "final": summary.final(rows)}


def _on(config: TrainConfig, data: str) -> TrainConfig:
    return TrainConfig.from_dict({**config.to_dict(), "data": data, "data_size": None})


def params_file(model: str, path: str | os.PathLike) -> tuple[Any, dict, dict]:
    """(network, params, layer state) of ``model`` sized from a params file such as the book's."""
    arrays = load_params(path)
    try:
        net = zoo.network_for(model, arrays)
    except ValueError as e:
        raise RunError(f"{path} does not fit {model}: {e}") from None
    # The book's float64 weights run as float32, as funcbp trains and evaluates.
    return net, *net.split({k: np.asarray(v, np.float32) for k, v in arrays.items()})


def evaluate_params(model: str, path: str | os.PathLike, data: str = "mnist-5k") -> dict:
    """A params file (``.npz``, or a ``.pkl`` such as the book's) on ``data``'s sets.

    The file's names and shapes must be ``model``'s, as the book saves them;
    batch norm's running statistics, if the model has them, come from the file too.
    """
    net, params, layer_state = params_file(model, path)
    sets = zip(("train", "test"), load_for_model(data, net.input_shape), strict=True)
    batches = {name: batched(x, t) for name, (x, t) in sets}
    rows = summary.per_model(
        [{}], Evaluator(lambda values: net).scores(params, layer_state, {}, batches)
    )
    return {"models": rows, "varying": [], "final": summary.final(rows)}

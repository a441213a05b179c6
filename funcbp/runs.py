"""Run folders: one writer each; a run's checkpoint, metrics, figure and params, written
safely and read back.

A run, or a resume, holds an exclusive ``flock`` on ``<folder>/.funcbp.lock``
(:class:`RunFolder`) from before its first write to its last; a second
process is refused, naming the holder's pid. The kernel drops the lock when
the process ends, however it ends, so a killed run never leaves a stale one.

Every file is written to a temporary name and renamed. A checkpoint is two
files: ``checkpoint-<iteration>.npz`` (the arrays, each named by its path in
the training state, e.g. ``opt_state/inner_state/0/mu/W1``, and the losses of
the evaluation interval under way) and ``checkpoint.json`` (config,
iteration, the record so far, the data's sha256, the arrays' file name and
sha256, and a sha256 of all of that), written in that order; the older arrays
file is removed only after the new ``checkpoint.json`` is in place. A crash
at any moment therefore leaves a consistent checkpoint, and a damaged or
edited one is refused, never resumed. (The hash detects edits and damage; it
is not a secret key, so it cannot stop someone who recomputes it.)

A run of K models holds every array with a leading (K,) axis. A sweep also
writes ``sweep.json``: its configurations, ranked on validation accuracy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import secrets
import time
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
from funcbp.io import (
    ParamsError,
    atomic_write,
    atomic_write_text,
    check_weights,
    check_writable,
    load_params,
    open_regular,
    read_npz_bytes,
    shorten,
)
from funcbp.splits import load_training_data
from funcbp.steps import TrainState

__all__ = [
    "RUN_FILES",
    "Checkpoint",
    "RunError",
    "RunFolder",
    "check_data",
    "default_out",
    "dumps_json",
    "evaluate",
    "evaluate_params",
    "evaluate_run",
    "leaf_names",
    "load_checkpoint",
    "load_run",
    "restore_state",
    "save_checkpoint",
    "space_needed",
    "start_out",
    "write_run",
]

CHECKPOINT = "checkpoint.json"
LOCK = ".funcbp.lock"  # funcbp's own: a folder holding only it counts as empty
RUN_FILES = (CHECKPOINT, "metrics.json", "sweep.json", "params.npz", "curve.png")
_FORMAT = 3  # 3: the hash covers the whole checkpoint, and the data's sha256 is kept
_RECORD = (
    "history",
    "chunks",
    "timing",
    "started",
    "diverged",
    "data_sha256",
)  # what a checkpoint keeps of the record
_MAX_JSON_BYTES = 256 << 20  # far above any run's history, far below a crafted file
_PENDING = "record/interval_losses"  # the losses of the interval not yet in the history


class RunError(ValueError):
    """A run folder that cannot be written, or a checkpoint that cannot be trusted."""


# --- the folder -----------------------------------------------------------------


def default_out(root: str | os.PathLike = "runs") -> Path:
    """``runs/<date>-<time>-<pid><random>``: runs started in the same second get their own."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{os.getpid()}{secrets.token_hex(2)}"


class RunFolder:
    """The one writer of a run folder: an exclusive ``flock`` on its ``.funcbp.lock``.

    :meth:`claim` takes it; :meth:`release` (or leaving the ``with``) gives it
    back and removes the lock file, and, if nothing else was written, the
    folders the claim made: a run that fails or stops before its first
    checkpoint leaves no folder behind. Only a process that is killed at once
    (SIGKILL, or an exit on a signal before the loop runs) leaves the lock
    file; it holds no lock then, and a folder holding only it counts as empty.
    """

    def __init__(self, path: Path, fd: int, made: list[Path]):
        self.path, self._fd, self._made = path, fd, made

    @classmethod
    def claim(cls, path: str | os.PathLike, *, new: bool, overwrite: bool = False) -> RunFolder:
        """Locks ``path`` for a new run (``new``: made if missing, then checked empty while
        locked, so two runs can never share it) or for a resume (it must exist).

        Raises:
            RunError: ``''``, a file, a place that cannot be written, a folder in use
                (naming the holder's pid), or, for a new run, a folder that holds
                files (unless ``overwrite``).
        """
        what = "out" if new else "resume"
        if not os.fspath(path):
            raise RunError(f"{what}: expected a folder, got ''")
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{what} {path} is a file; expected a folder for the run")
        if not new and not path.is_dir():
            raise _no_checkpoint(path)
        made = [p for p in (path, *path.parents) if not p.exists()] if new else []
        try:
            folder = cls(path, _lock(path, what, create=new), made)
        except BaseException:
            _remove_folders(made)
            raise
        try:
            if new and not overwrite and any(p.name != LOCK for p in path.iterdir()):
                raise RunError(
                    f"out {path} already holds files; choose a new folder, resume it with "
                    f"--resume {path}, or pass --overwrite to replace its run"
                )
        except BaseException:
            folder.release()
            raise
        return folder

    def check_space(self, need_bytes: int) -> None:
        """Writes and removes a probe, and compares the free space with ``need_bytes``."""
        try:
            check_writable(self.path, "out", need_bytes=need_bytes)
        except OSError as e:
            raise RunError(str(e)) from None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            written = any(p.name != LOCK for p in self.path.iterdir())
            (self.path / LOCK).unlink(missing_ok=True)  # still ours: we hold its lock
            if not written:
                _remove_folders(self._made)
        except OSError:
            pass  # a folder that cannot be changed keeps its lock file, unlocked
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(folder: Path, what: str, *, create: bool) -> int:
    """An fd of ``folder/.funcbp.lock`` under an exclusive flock, holding this process's pid."""
    lock = folder / LOCK
    for _ in range(100):
        try:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(lock, flags, 0o644)
        except FileNotFoundError:
            if create:
                continue  # a run that ended removed its empty folder just now
            raise _no_checkpoint(folder) from None
        except OSError as e:
            raise RunError(f"{what} {folder} is not writable: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd) if e.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if holder is None:
                raise RunError(f"{what} {folder}: cannot lock {lock}: {e.strerror or e}") from None
            hint = (
                "wait for it to end, or choose another folder" if create else "wait for it to end"
            )
            raise RunError(
                f"{what} {folder} is in use by funcbp process {holder} (its lock is {lock}); {hint}"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except FileNotFoundError:
            pass
        except OSError as e:
            os.close(fd)
            raise RunError(f"{what} {folder} is not writable: {e.strerror or e}") from None
        os.close(fd)  # the holder removed this lock file as it ended; lock the new one
    raise RunError(f"{what} {folder}: cannot lock {lock}: it keeps being replaced")


def _holder(fd: int) -> str:
    """The pid in a lock file another process holds (it writes it just after locking)."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return shorten(text, 20)
        time.sleep(0.01)
    return "(pid not yet written)"


def _remove_folders(made: list[Path]) -> None:
    for folder in made:  # deepest first: leave the disk as it was
        with contextlib.suppress(OSError):
            folder.rmdir()


def _no_checkpoint(run_dir: Path) -> RunError:
    return RunError(
        f"resume {run_dir}: no {CHECKPOINT} there (not a funcbp run folder, or the run "
        "stopped before its first checkpoint)"
    )


def space_needed(template: TrainState, pending_losses: int, *, resuming: bool) -> int:
    """About the bytes a run writes at most: two checkpoints during a rotation (one if the
    old one is already on disk), ``params.npz``, and 1 MiB for the figure and the JSON."""
    state = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(template))
    params = sum(
        math.prod(x.shape) * np.dtype(x.dtype).itemsize
        for x in jax.tree.leaves((template.params, template.layer_state))
    )
    checkpoint = state + 4 * pending_losses + (64 << 10)  # float32 losses, zip headers
    return (1 if resuming else 2) * checkpoint + params + (1 << 20)


def start_out(path: Path, *, overwrite: bool = False) -> None:
    """Before the first checkpoint: ``overwrite`` removes funcbp's old files from ``path``."""
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


def _signature(meta: dict[str, Any]) -> str:
    """The sha256 of ``meta`` as canonical JSON: any edit of any field changes it."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


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
    the uninterrupted run's. Only the holder of ``out``'s :class:`RunFolder` calls it.

    Raises:
        WriteError: a write failed (an OSError naming the file); the previous
            checkpoint is as it was.
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
    meta = json.loads(dumps_json(meta))  # signed as it will be read back
    atomic_write_text(out / CHECKPOINT, dumps_json({**meta, "signature": _signature(meta)}))
    for old in out.glob("checkpoint-*.npz"):
        if old.name != name:  # the one checkpoint.json now names stays
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


def _read_json(path: Path, what: str) -> Any:
    """``path``'s JSON, read only from a regular file of bounded size; one line if not."""
    try:
        with open_regular(path, RunError) as f:
            text = f.read(_MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise RunError(f"{what}: {path} does not exist") from None
    except OSError as e:
        raise RunError(f"{path} cannot be read: {e.strerror or e}") from None
    if len(text) > _MAX_JSON_BYTES:
        raise RunError(f"{path} is damaged: larger than the {_MAX_JSON_BYTES >> 20} MiB it may be")
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is damaged: not valid JSON ({shorten(e, 80)})") from None
    except RecursionError:
        raise RunError(f"{path} is damaged: nested too deeply") from None


def _read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    if not os.path.lexists(path):
        raise _no_checkpoint(run_dir)
    meta = _read_json(path, f"resume {run_dir}")
    if isinstance(meta, dict) and "format" in meta and meta["format"] != _FORMAT:
        raise RunError(
            f"{path} has checkpoint format {shorten(repr(meta['format']), 20)}; this funcbp "
            f"reads format {_FORMAT} (an older checkpoint's hash does not cover its record), "
            "so start the run again"
        )
    needed = ("format", "iteration", "config", *_RECORD, "arrays", "sha256", "signature")
    missing = [k for k in needed if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise RunError(f"{path} is damaged: it lacks {', '.join(missing)}")
    signature = meta.pop("signature")
    if signature != _signature(meta):
        raise RunError(
            f"{path} does not match the sha256 it records: the file was edited or damaged, "
            "so it cannot be resumed"
        )
    return meta


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Reads ``run_dir``'s checkpoint; refuses, in one line naming the file, anything damaged.

    A resume holds the folder's :class:`RunFolder` before it calls this.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    meta = _read_meta(run_dir)
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise RunError(f"{path} holds a config that is not valid: {shorten(e)}") from None
    iteration = meta["iteration"]
    if not _is_int(iteration) or iteration < 1:
        raise RunError(
            f"{path} is damaged: iteration {shorten(repr(iteration), 40)} is not a positive integer"
        )
    record = {k: meta[k] for k in _RECORD}
    _check_record(record, iteration, path)
    arrays_path = run_dir / str(meta["arrays"])
    if arrays_path.parent != run_dir or not arrays_path.is_file():
        raise RunError(
            f"{path} names {shorten(repr(meta['arrays']), 80)}, which is not in {run_dir}"
        )
    try:
        with open_regular(arrays_path, RunError) as f:
            data = f.read(os.fstat(f.fileno()).st_size + 1)
    except OSError as e:
        raise RunError(f"{arrays_path} cannot be read: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise RunError(
            f"{arrays_path} does not match the sha256 that {path} records: the file was "
            "changed or damaged"
        )
    try:
        arrays = read_npz_bytes(data, os.fspath(arrays_path), max_bytes=len(data))
    except ParamsError as e:
        raise RunError(f"{arrays_path} is damaged: {e}") from None
    if _PENDING not in arrays:
        raise RunError(f"{arrays_path} is damaged: it lacks {_PENDING}")
    pending = arrays.pop(_PENDING)
    if pending.dtype != np.float32 or pending.ndim != 2:
        raise RunError(f"{arrays_path} is damaged: {_PENDING} is not a float32 matrix")
    return Checkpoint(config, iteration, record, arrays, pending, arrays_path)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool))


def _is_value(x: Any) -> bool:
    """A measurement: a number (None for NaN), or one per model."""
    return _is_number(x) or (isinstance(x, list) and all(map(_is_number, x)))


def _check_record(record: dict[str, Any], iteration: int, path: Path) -> None:
    """Refuses a record of the wrong shape, even in a file whose hash matches."""

    def bad(field: str, why: str) -> RunError:
        return RunError(f"{path} is damaged: {field} {why}")

    for field in ("history", "chunks"):
        rows, last = record[field], 0
        if not isinstance(rows, list):
            raise bad(field, f"is {type(rows).__name__}; expected a list of rows")
        for j, row in enumerate(rows):
            if not isinstance(row, dict) or not _is_int(row.get("iter")):
                raise bad(f"{field}[{j}]", "is not a row with an integer iter")
            if not last < row["iter"] <= iteration:
                raise bad(f"{field}[{j}]", f"has iter {row['iter']} out of order")
            if not all(_is_value(v) for k, v in row.items() if k != "iter") or "loss" not in row:
                raise bad(f"{field}[{j}]", "holds a value that is not a number, or no loss")
            last = row["iter"]
    timing = record["timing"]
    if not isinstance(timing, dict) or not all(map(_is_number, timing.values())):
        raise bad("timing", "is not an object of numbers")
    if not isinstance(record["started"], str):
        raise bad("started", "is not a date")
    diverged = record["diverged"]
    if not isinstance(diverged, dict) or not all(
        k.isdigit() and _is_int(v) and v >= 1 for k, v in diverged.items()
    ):
        raise bad("diverged", "is not an object of model: iteration")
    digests = record["data_sha256"]
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise bad("data_sha256", "is not an object of set: sha256")


def check_data(checkpoint: Checkpoint, digests: dict[str, str], data: str) -> None:
    """Refuses to resume ``checkpoint`` on data (``config.data``) other than the run's."""
    kept = checkpoint.record["data_sha256"]
    for name in sorted(set(kept) | set(digests)):
        if kept.get(name) != digests.get(name):
            raise RunError(
                f"resume {checkpoint.path.parent}: the {name} set of --data {shorten(data)} is "
                f"not the data this run trained on (sha256 {str(digests.get(name))[:12]}…, "
                f"but {checkpoint.path.parent / CHECKPOINT} records "
                f"{str(kept.get(name))[:12]}…); resume on the run's data, or start a new run"
            )


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
    An older ``metrics.json`` goes first, so the folder never shows it beside newer params.
    """
    arrays = {k: np.asarray(v) for k, v in {**params, **layer_state}.items()}
    figure = curves.render(metrics)
    with lock():
        (out / "metrics.json").unlink(missing_ok=True)
        atomic_write(out / "params.npz", lambda f: np.savez(f, **arrays))
        atomic_write(out / "curve.png", lambda f: f.write(figure))
        if "sweep" in metrics:
            atomic_write_text(out / "sweep.json", dumps_json(metrics["sweep"]))
        atomic_write_text(out / "metrics.json", dumps_json(metrics))


def load_run(run_dir: str | os.PathLike) -> tuple[Run, dict, dict]:
    """A finished run's ``(run, params, layer_state)``, checked against its network.

    The weights must be finite floats, except a model that ``metrics.json`` records as diverged.
    """
    run_dir = Path(run_dir)
    metrics_path, params_path = run_dir / "metrics.json", run_dir / "params.npz"
    for path in (metrics_path, params_path):
        if not path.is_file():
            raise RunError(f"run_dir must hold {path.name}; {path} does not exist")
    metrics = _read_json(metrics_path, f"run_dir {run_dir}")
    try:
        run = resolve(TrainConfig.from_dict(metrics["config"]), metrics["run"]["train_size"])
        diverged = [m.get("diverged_at") is not None for m in metrics.get("models", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{metrics_path} is damaged: {shorten(repr(e), 100)}") from None
    net = run.network()
    try:
        params, layer_state = net.split(load_params(params_path))
    except (ParamsError, OSError) as e:
        raise RunError(str(e)) from None
    k = run.count
    for j in range(k):
        pick = (lambda a, j=j: a[j]) if k > 1 else (lambda a: a)
        try:
            net.check_params(jax.tree.map(pick, params), jax.tree.map(pick, layer_state))
            if not (j < len(diverged) and diverged[j]):
                source = f"{params_path} (model {j})" if k > 1 else os.fspath(params_path)
                check_weights(jax.tree.map(pick, {**params, **layer_state}), source)
        except ParamsError as e:
            raise RunError(str(e)) from None
        except (ValueError, IndexError, TypeError) as e:
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
    """(network, params, layer state) of ``model`` sized from a params file such as the book's.

    Raises:
        ParamsError: the file cannot be read safely, or its weights are not finite floats.
        RunError: the file does not fit ``model``.
    """
    arrays = load_params(path)
    check_weights(arrays, os.fspath(path))
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

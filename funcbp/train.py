"""The one training loop: :func:`fit` trains any model of the zoo, one or K at a time,
on one device or a mesh of many, with evaluation, progress, checkpoints, signals and resume.

``fit`` reads as the recipe: prepare the run, then chunks of steps between
evaluations, each evaluation a row of the record, a checkpoint when one is
due, and at the end the final evaluation and the run's files. Each step of it
is a named part that owns its state: the :class:`~funcbp.engine.Engine`
(devices and compiled chunks), the :class:`~funcbp.planner.ChunkPlanner`
(chunk lengths), the :class:`RunEvaluator` (what is evaluated, when), the
:class:`Record` (what was measured), the
:class:`~funcbp.checkpointer.Checkpointer` (the folder) and the
:class:`Progress` (the bar and log lines).

Chunks last about a quarter of a second, so a SIGINT or SIGTERM is honoured
within about a second: the loop stops at the next chunk (or evaluation batch),
checkpoints and raises :class:`Interrupted`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from funcbp import runs, summary, zoo
from funcbp.checkpointer import Checkpointer, checkpoint_interval
from funcbp.config import Run, TrainConfig, resolve
from funcbp.engine import Engine, check_memory, programs
from funcbp.evaluation import Stopped, batched
from funcbp.planner import ChunkPlanner
from funcbp.splits import Data, load_training_data
from funcbp.steps import TrainState
from funcbp.stopping import Stop

__all__ = [
    "Diverged",
    "Interrupted",
    "Record",
    "Result",
    "RunEvaluator",
    "fit",
    "prepare",
    "resume",
]


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM, after saving what there was to save."""

    def __init__(self, message: str, iteration: int, signum: int):
        super().__init__(message)
        self.iteration, self.signum = iteration, signum


class Diverged(Exception):
    """Every model's loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Result:
    """What :func:`fit` returns: this process's params and layer state, and the metrics."""

    params: dict[str, np.ndarray]
    layer_state: dict[str, np.ndarray]
    metrics: dict[str, Any]


def resume(out: str | Path, changes: dict[str, Any] | None = None, **options) -> Result:
    """Continues the run in ``out`` from its checkpoint; see :meth:`TrainConfig.resumed`.

    ``changes`` holds the settings given again (e.g. ``{"iters": 20000}``);
    those that would change what the run computes are refused. The folder is
    locked before its checkpoint is read, and held to the end.
    """
    with _claim(out, new=False) as folder:
        checkpoint = runs.load_checkpoint(out)
        config = checkpoint.config.resumed(changes or {})
        return fit(config, out, checkpoint=checkpoint, folder=folder, **options)


def _claim(out, *, new: bool, overwrite: bool = False):
    """The run folder's lock, on process 0 only (the one writer); a no-op elsewhere."""
    if out is None or jax.process_index() != 0:
        return contextlib.nullcontext()
    return runs.RunFolder.claim(out, new=new, overwrite=overwrite)


def prepare(config: TrainConfig) -> tuple[Run, Data]:
    """The run resolved for its data, and the data, cut and checked: nothing compiled."""
    data = load_training_data(config, zoo.build(config.model).input_shape)
    return resolve(config, len(data.x_train)), data


def fit(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    checkpoint: runs.Checkpoint | None = None,
    overwrite: bool = False,
    checkpoint_every: int | float | None = None,
    log_every: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop: Stop | None = None,
    on_chunk: Callable[[int], None] | None = None,
    folder: runs.RunFolder | None = None,
) -> Result:
    """Trains ``config``'s models; writes the run folder ``out``.

    Everything is checked before anything is compiled: the config, the data
    against the model (and, on resume, against the data the run trained on),
    the memory, the device count, and ``out``: it is locked (one writer per
    folder), must be new or empty (or ``overwrite``), and must take a probe
    file and the space of the run's files. Only process 0 writes.

    Args:
        config: the run.
        out: the run folder; None writes nothing.
        checkpoint: continue from it (see :func:`resume`).
        overwrite: replace the run files in a non-empty ``out``.
        checkpoint_every: iterations between checkpoints (int), or seconds
            (float); default every 60 seconds. Always at the end and on a signal.
        log_every: iterations between log lines; default a tenth of the run.
        progress: show a tqdm bar.
        log: where log lines go (without a bar).
        stop: the signals' record (``funcbp train`` installs one before
            importing JAX); by default ``fit`` handles SIGINT and SIGTERM itself
            while it runs.
        on_chunk: called with the iteration reached after each chunk.
        folder: ``out``'s lock, already held (:func:`resume` passes it); by default
            ``fit`` takes it after the data is checked and gives it back at the end.

    Raises:
        Interrupted: on SIGINT or SIGTERM, after saving a checkpoint.
        Diverged: when every model's loss turns NaN or infinite.
        ValueError: for bad settings (``runs.RunError`` for the run folder).
        OSError: a write failed (``io.WriteError``, naming the file); the last
            checkpoint is kept.
    """
    own = stop is None
    stop = Stop() if own else stop
    restore = stop.install() if own else (lambda: None)
    try:
        return _fit(config, out, checkpoint, folder, stop,
                    on_chunk, overwrite=overwrite, every=checkpoint_every,
                    bar=dict(enabled=progress, log=log, every=log_every))  # fmt: skip
    finally:
        restore()


def _fit(config, out, checkpoint, folder, stop, on_chunk, *, overwrite, every, bar) -> Result:
    checkpoint_interval(every)  # refused now, not after the data is read
    run, data = prepare(config)
    start = 0 if checkpoint is None else checkpoint.iteration
    if run.iters < start:
        raise ValueError(
            f"iters {run.iters} is fewer than the {start} iterations already done; the "
            "checkpoint is left as it is"
        )
    digests = data.digests()
    if checkpoint is not None:
        runs.check_data(checkpoint, digests, config.data)
    with contextlib.ExitStack() as held:
        if folder is None:
            folder = held.enter_context(_claim(out, new=checkpoint is None, overwrite=overwrite))
        writes = folder is not None
        out = folder.path if writes else None if out is None else Path(out)
        engine = Engine(run, data, config.devices)
        template = engine.template()
        check_memory(template, data)
        if writes:  # a full disk or a read-only folder is refused now, not at the end
            pending = run.eval_every * run.count
            folder.check_space(runs.space_needed(template, pending, resuming=start > 0))
        if checkpoint is None:
            state = engine.init()
        else:
            state = jax.tree.map(jnp.asarray, runs.restore_state(checkpoint, template))
        state = engine.place(state)
        record = Record(run, checkpoint, digests)
        saver = Checkpointer(out if writes else None, config, stop, start=start,
                             overwrite=overwrite, every=every)  # fmt: skip
        evaluator = RunEvaluator(run, data, engine)
        planner = ChunkPlanner(run.eval_every, run.iters, engine.step_seconds())
        with Progress(run, start, **bar) as progress:
            loop = _Loop(run, engine, planner, evaluator, record, saver, progress, stop, on_chunk)
            state = loop.train(state, start)
            return loop.finish(state)


class _Loop:
    """The recipe's steps over the parts; it holds no state of its own."""

    def __init__(self, run, engine, planner, evaluator, record, saver, progress, stop, on_chunk):
        self.run, self.engine, self.planner, self.evaluator = run, engine, planner, evaluator
        self.record, self.saver, self.progress, self.stop = record, saver, progress, stop
        self.on_chunk = on_chunk

    def train(self, state: TrainState, i: int) -> TrainState:
        """Chunks from iteration ``i`` to the end, evaluating and checkpointing on the way."""
        self.stop.stoppable = True
        while True:
            if self.record.row_due(i):
                self._evaluate(state, i)
            if _agree(self.stop.requested is not None):
                self._interrupt(state, i)
            if i == self.run.iters:
                return state
            length = self.planner.next(i)
            before = state
            state, losses = self.engine.run_chunk(state, i, length)
            self._check_finite(before, i, losses)
            self.record.add_chunk(i + length, losses)
            self.planner.timed(length, _across_processes(self.engine.last_seconds, np.max))
            i += length
            self.progress.advance(length)
            if i < self.run.iters and self.saver.due(i):
                self._save(state, i)
            if self.on_chunk is not None:
                self.on_chunk(i)

    def finish(self, state: TrainState) -> Result:
        """The last checkpoint, the final evaluation and the run's files."""
        i = self.run.iters
        if self.saver.behind(i):
            self._save(state, i)
        try:
            finals = self.evaluator.final(state, self.stop)
        except Stopped:
            self._interrupt(state, i)
        host = self.engine.host(state)
        metrics = _metrics(self.run, self.record, finals, self.timing(), self.engine)
        self.saver.finish(metrics, host.params, host.layer_state)
        if self.stop.requested is not None:
            name = signal.Signals(self.stop.requested).name
            where = f"; every file is in {self.saver.out}" if self.saver.writes else ""
            raise Interrupted(
                f"stopped by {name} as the run finished{where}", i, self.stop.requested
            )
        return Result(host.params, host.layer_state, metrics)

    def timing(self) -> dict[str, Any]:
        timing = dict(self.record.timing_before)
        timing["compile_s"] += self.engine.compile_s
        timing["train_s"] += self.engine.train_s
        timing["eval_s"] += self.evaluator.seconds
        trained = self.run.iters - self.record.start
        timing["iters_per_s"] = trained / self.engine.train_s if self.engine.train_s else None
        return timing

    def _evaluate(self, state: TrainState, i: int) -> None:
        try:
            row = self.evaluator.row(state, i, self.record.interval_loss(), self.stop)
        except Stopped:
            self._interrupt(state, i)
        self.record.add_row(row)
        self.progress.row(row, self.engine.train_s)

    def _save(self, state: TrainState, i: int) -> None:
        host = self.engine.host(state)
        self.saver.save(host, i, self.record.snapshot(self.timing()), self.record.pending())

    def _interrupt(self, state: TrainState, i: int) -> None:
        if self.saver.behind(i):
            self._save(state, i)
        signum = self.stop.requested or signal.SIGINT
        raise Interrupted(self.stop.goodbye(f"at iteration {i}"), i, signum)

    def _check_finite(self, before: TrainState, i: int, losses: np.ndarray) -> None:
        bad = ~np.isfinite(losses.reshape(len(losses), -1))
        newly = self.record.diverging(i, bad)
        if not self.record.all_diverged():
            for model, at in newly.items():
                self.progress.say(
                    f"model {model} diverged at iteration {at}: its loss is not finite"
                )
            return
        self.record.undo(newly)  # the checkpoint holds the state before this chunk
        if i > self.saver.saved_at:
            self._save(before, i)
        value = losses.reshape(len(losses), -1)[bad.any(axis=1)][0][0]
        at = i + int(np.argmax(bad.any(axis=1))) + 1
        raise Diverged(
            f"the loss became {value} at iteration {at}{self.saver.kept()}; "
            "try a smaller lr or weight_init_std"
        )


class Record:
    """What a run has measured: its history, the losses of the interval under way, each
    chunk's mean loss, models that diverged, and the timing and start of earlier sessions."""

    def __init__(
        self, run: Run, checkpoint: runs.Checkpoint | None = None, data_sha256: dict | None = None
    ):
        self.run, self.data_sha256 = run, data_sha256 or {}
        self.start = 0 if checkpoint is None else checkpoint.iteration
        saved = {} if checkpoint is None else checkpoint.record
        self.history: list[dict] = list(saved.get("history", []))
        self.chunks: list[dict] = list(saved.get("chunks", []))
        zero = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
        self.timing_before = {**zero, **{k: saved.get("timing", {}).get(k, 0.0) for k in zero}}
        self.started = saved.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.diverged: dict[int, int] = {int(k): v for k, v in saved.get("diverged", {}).items()}
        pending = np.zeros((0, run.count), np.float32) if checkpoint is None else checkpoint.pending
        self.pending_losses: list[np.ndarray] = [pending.reshape(-1, run.count)]

    def row_due(self, i: int) -> bool:
        """Whether iteration ``i`` has an evaluation not yet in the history."""
        due = i > 0 and (i % self.run.eval_every == 0 or i == self.run.iters)
        return due and (not self.history or self.history[-1]["iter"] != i)

    def add_chunk(self, end: int, losses: np.ndarray) -> None:
        losses = np.asarray(losses, np.float32).reshape(len(losses), -1)
        self.pending_losses.append(losses)
        self.chunks.append({"iter": end, "loss": _plain(losses.mean(axis=0, dtype=np.float64))})

    def interval_loss(self) -> Any:
        """The mean minibatch loss of each model since the last row."""
        return _plain(self.pending().mean(axis=0, dtype=np.float64))

    def pending(self) -> np.ndarray:
        return np.concatenate(self.pending_losses)

    def add_row(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        self.pending_losses = [np.zeros((0, self.run.count), np.float32)]

    def diverging(self, start: int, bad: np.ndarray) -> dict[int, int]:
        """Records the models whose loss turned non-finite in a chunk from ``start``."""
        newly = {}
        for model in np.flatnonzero(bad.any(axis=0)):
            if int(model) not in self.diverged:
                newly[int(model)] = start + int(np.argmax(bad[:, model])) + 1
        self.diverged.update(newly)
        return newly

    def all_diverged(self) -> bool:
        return len(self.diverged) == self.run.count

    def undo(self, newly: dict[int, int]) -> None:
        for model in newly:
            del self.diverged[model]

    def snapshot(self, timing: dict[str, Any]) -> dict[str, Any]:
        """The record as a checkpoint keeps it."""
        return {
            "history": self.history,
            "chunks": self.chunks,
            "timing": timing,
            "started": self.started,
            "diverged": self.diverged,
            "data_sha256": self.data_sha256,
        }


class RunEvaluator:
    """What a run evaluates: each row on the first ``eval_samples`` training and held-out
    examples (validation, or test), the end on every set in full; timed."""

    def __init__(self, run: Run, data: Data, engine: Engine):
        self.run, self.engine = run, engine
        self.evaluator = programs(run).evaluator
        self.values = jax.tree.map(jnp.asarray, run.loss_values())
        sets = data.sets()
        first = run.eval_samples  # the book's conv-net trainer evaluates the first 1000
        rows = {n: tuple(a[:first] for a in sets[n]) for n in ("train", data.held_out)}
        self.rows = {n: batched(*xt) for n, xt in rows.items()}
        self.full = {n: self.rows[n] if n in self.rows and not first else batched(*xt)
                     for n, xt in sets.items()}  # fmt: skip
        self.seconds = 0.0

    def row(self, state: TrainState, i: int, loss: Any, stop: Stop) -> dict[str, Any]:
        scores = self._scores(state, self.rows, stop)
        row = {"iter": i, "epoch": i / self.run.iter_per_epoch, "loss": loss}
        return {**row, **{k: _plain(v) for k, v in scores.items()}}

    def final(self, state: TrainState, stop: Stop) -> dict[str, Any]:
        return self._scores(state, self.full, stop)

    def _scores(self, state: TrainState, sets: dict, stop: Stop) -> dict[str, Any]:
        # On a mesh, evaluate a copy on one device, as one device trains.
        one = state if self.engine.mesh is None else jax.device_put(self.engine.host(state))
        t0 = time.perf_counter()
        scores = self.evaluator.scores(
            one.params, one.layer_state, self.values, sets, stop=lambda: _stopped(stop)
        )
        self.seconds += time.perf_counter() - t0
        return scores


def _stopped(stop: Stop) -> bool:
    return stop.requested is not None


class Progress:
    """The bar (tqdm, on stderr) and the log lines: at most one every tenth of the run."""

    def __init__(self, run: Run, start: int, *, enabled: bool, log, every: int | None):
        self.run, self.start, self.log = run, start, log
        self.every = every or -(-run.iters // 10)
        self.next_log = (start // self.every + 1) * self.every
        self.bar = tqdm(
            total=run.iters,
            initial=start,
            disable=not enabled,
            unit="it",
            leave=False,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            file=sys.stderr,
        )
        self.say = self.bar.write if enabled else log

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def advance(self, length: int) -> None:
        self.bar.update(length)

    def row(self, row: dict[str, Any], train_s: float) -> None:
        i = row["iter"]
        rate = (i - self.start) / train_s if train_s else 0.0
        held = "val" if "val_acc" in row else "test"
        self.bar.set_postfix_str(
            f"loss {_mean(row['loss']):.3f}, train acc {_mean(row['train_acc']):.3f}, "
            f"{held} acc {_mean(row[f'{held}_acc']):.3f}, {rate:,.0f} it/s",
            refresh=True,
        )
        if i >= self.next_log or i == self.run.iters:
            self.say(self._line(row, held))
            self.next_log = (i // self.every + 1) * self.every

    def _line(self, row: dict[str, Any], held: str) -> str:
        accuracy = f"{held} acc {_mean(row[f'{held}_acc']):.4f}"
        if self.run.count > 1:
            s = summary.stats(np.ravel(row[f"{held}_acc"]))
            best = f", best {np.max(row[f'{held}_acc']):.4f}" if len(self.run.varying) > 1 else ""
            accuracy = (
                f"{held} acc {s['mean']:.4f} ± {s['std']:.4f} ({self.run.count} models{best})"
            )
        iters = self.run.iters
        return (
            f"iter {row['iter']:>{len(str(iters))}}/{iters}  epoch {row['epoch']:6.1f}  "
            f"loss {_mean(row['loss']):.4f}  train acc {_mean(row['train_acc']):.4f}  {accuracy}"
        )


def _metrics(run: Run, record: Record, finals: dict, timing: dict, engine: Engine) -> dict:
    last_loss = record.history[-1]["loss"]
    results = {**finals, "loss": last_loss}
    rows = summary.per_model(run.models, results)
    for j, row in enumerate(rows):
        row["diverged_at"] = record.diverged.get(j)
    device = jax.devices()[0]
    metrics = {
        "config": run.config.to_dict(),
        "run": run.to_dict(),
        "versions": {name: metadata.version(name) for name in ("funcbp", "jax", "jaxlib", "optax")},
        "device": {
            "platform": device.platform,
            "kind": device.device_kind,
            "count": engine.devices,
        },
        "devices": engine.devices,
        "processes": jax.process_count(),
        "started": record.started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_sha256": record.data_sha256,
        "history": record.history,
        "chunks": record.chunks,
        "timing": timing,
        "models": rows,
        "final": summary.final(rows),
    }
    if run.config.configurations > 1:
        configurations = summary.by_configuration(rows, run.varying)
        ranking = summary.ranking(configurations, "val_acc")  # never on test
        metrics["sweep"] = {
            "varying": [n for n in run.varying if n != "seed"],
            "ranked_by": "val_acc" if ranking is not None else None,
            "ranking": ranking,
            "configurations": configurations,
        }
    return metrics


def _plain(x) -> float | list[float]:
    x = np.asarray(x, np.float64)
    if x.size == 1:
        return float(x.reshape(()))
    return x.tolist()


def _mean(x) -> float:
    return float(np.mean(x))


def _across_processes(value, reduce):
    """``reduce`` of ``value`` over every process (the value itself in a one-process run)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return reduce(multihost_utils.process_allgather(np.asarray(value)))


def _agree(flag: bool) -> bool:
    """True if any process says so (every process must stop at the same chunk)."""
    return bool(_across_processes(flag, np.any))

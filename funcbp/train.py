"""The one training loop: :func:`fit` trains any model of the zoo, one or K at a time,
on one device or a mesh of many, with evaluation, progress, checkpoints, signals and resume.

The steps themselves are pure and jitted (:mod:`funcbp.steps`); this loop only
decides what runs when: chunks of steps between evaluations, short enough
(about a quarter of a second) that Ctrl-C or SIGTERM is honoured within
about a second, then a checkpoint and a clean exit. Checkpoints are also
written periodically, so even SIGKILL loses at most one interval.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from funcbp import runs
from funcbp.config import TrainConfig
from funcbp.data import load_for_model
from funcbp.distributed import data_parallel_mesh, feed_batches, local_copy, replicate
from funcbp.net import Network
from funcbp.steps import (
    TrainState,
    chunk_indices,
    init_train_state,
    make_chunk,
    make_evaluate,
    make_step,
    run_keys,
)

__all__ = [
    "CHUNK_SECONDS",
    "Data",
    "Diverged",
    "Interrupted",
    "Result",
    "fit",
    "load_training_data",
    "resume",
]

CHUNK_SECONDS = 0.25  # a chunk's target length: signals wait at most this long (plus evaluation)
ASSUMED_FLOPS = 5e9  # FLOP/s assumed before the first chunk is timed: a slow CPU
CHECKPOINT_SECONDS = 60.0  # the default checkpoint interval


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint."""

    def __init__(self, out: Path | None, iteration: int, signum: int):
        name = signal.Signals(signum).name
        where = f"; checkpoint saved, resume with funcbp train --resume {out}" if out else ""
        super().__init__(f"stopped by {name} at iteration {iteration}{where}")
        self.out, self.iteration, self.signum = out, iteration, signum


class Diverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Data:
    """Training and test sets as NumPy arrays, x shaped for the network: (n, *input_shape)."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray


@dataclass(frozen=True)
class Result:
    """What :func:`fit` returns: this process's params and layer state, and the metrics."""

    params: dict[str, np.ndarray]
    layer_state: dict[str, np.ndarray]
    metrics: dict[str, Any]


def load_training_data(config: TrainConfig, net: Network) -> Data:
    """``config.data`` as :class:`Data`, checked against the model and the batch size."""
    (x_train, t_train), (x_test, t_test) = load_for_model(config.data, net.input_shape)
    if config.batch_size > x_train.shape[0]:
        raise ValueError(
            f"batch_size must be at most the training set's size {x_train.shape[0]}, "
            f"got {config.batch_size}"
        )
    return Data(x_train, t_train, x_test, t_test)


def resume(out: str | Path, changes: dict[str, Any] | None = None, **options) -> Result:
    """Continues the run in ``out`` from its checkpoint; see :meth:`TrainConfig.resumed`.

    ``changes`` holds the settings given again (e.g. ``{"iters": 20000}``);
    those that would change what the run computes are refused.
    """
    checkpoint = runs.load_checkpoint(out)
    config = checkpoint.config.resumed(changes or {})
    return fit(config, out, checkpoint=checkpoint, **options)


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
) -> Result:
    """Trains ``config``'s model (``config.seeds`` of them); writes the run folder ``out``.

    Everything is checked before anything is compiled: the config, the data
    against the model, the memory, the device count, and ``out`` (a new or
    empty folder, or ``overwrite``). Only process 0 writes.

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

    Raises:
        Interrupted: on SIGINT or SIGTERM, after saving a checkpoint.
        Diverged: when the loss turns NaN or infinite.
        ValueError: for bad settings (``runs.RunError`` for the run folder).
    """
    net, opt = config.network, config.optimizer_fn
    data = load_training_data(config, net)
    train_size = data.x_train.shape[0]
    config = config.resolved(train_size)
    start = 0 if checkpoint is None else checkpoint.iteration
    if config.iters < start:
        raise ValueError(
            f"iters {config.iters} is fewer than the {start} iterations already done; the "
            "checkpoint is left as it is"
        )
    models = config.seeds
    keys = run_keys(config.seed, models)
    template = jax.eval_shape(lambda k: init_train_state(net, opt, k, models=models), keys)
    _check_memory(template, data)

    devices = config.devices or _default_devices(config.batch_size)
    mesh = data_parallel_mesh(devices, config.mesh_axes)
    if mesh is not None and config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size must be divisible by the {mesh.size} devices, got {config.batch_size}"
        )
    every = _checkpoint_interval(checkpoint_every)
    out = Path(out) if out is not None else None
    writes = out is not None and jax.process_index() == 0  # one writer per run folder
    if writes and checkpoint is None:
        runs.prepare_out(out, overwrite=overwrite)

    if checkpoint is None:
        state = init_train_state(net, opt, keys, models=models)
        history, timing = [], {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
    else:
        state = jax.tree.map(jnp.asarray, runs.restore_state(checkpoint, template))
        history, timing = list(checkpoint.history), dict(checkpoint.timing)
    loop = _Loop(config, net, opt, data, mesh, keys, timing)
    state = loop.place(state)

    iters, eval_every = config.iters, config.eval_interval(train_size)
    iter_per_epoch = config.iter_per_epoch(train_size)
    log_every = log_every or math.ceil(iters / 10)
    next_log = (start // log_every + 1) * log_every
    bar = tqdm(
        total=iters,
        initial=start,
        disable=not progress,
        unit="it",
        leave=False,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        file=sys.stderr,
    )
    say = bar.write if progress else log
    saved_at, saved_time = start, time.monotonic()
    losses_sum, losses_n = 0.0, 0

    def save(state: TrainState, i: int) -> None:
        nonlocal saved_at, saved_time
        if writes:
            runs.save_checkpoint(out, config, loop.host(state), i, history, timing)
        saved_at, saved_time = i, time.monotonic()

    i = start
    with bar, _deferred_signals() as caught:
        while i < iters:
            stop_at = min(iters, (i // eval_every + 1) * eval_every)
            length = loop.next_length(i, stop_at, eval_every)
            before = state
            state, losses = loop.run_chunk(state, i, length)
            bad = ~np.isfinite(losses.reshape(length, -1)).all(axis=1)
            if bad.any():
                if i > saved_at:
                    save(before, i)
                kept = (
                    f"; kept the checkpoint of iteration {saved_at} in {out}"
                    if writes and saved_at
                    else ""
                )
                value = losses.reshape(length, -1)[bad][0][0]
                raise Diverged(
                    f"the loss became {value} at iteration {i + int(np.argmax(bad)) + 1}{kept}; "
                    "try a smaller lr or weight_init_std"
                )
            losses_sum, losses_n = losses_sum + losses.sum(axis=0), losses_n + length
            i += length
            bar.update(length)
            if i == stop_at:
                row = loop.evaluate(state, i, i / iter_per_epoch, losses_sum / losses_n)
                losses_sum, losses_n = 0.0, 0
                history.append(row)
                bar.set_postfix_str(_postfix(row, timing, i - start), refresh=True)
                if i >= next_log or i == iters:
                    say(_log_line(row, iters, models))
                    next_log = (i // log_every + 1) * log_every
            if _agree(bool(caught)) and i < iters:
                save(state, i)
                raise Interrupted(
                    out if writes else None, i, caught[0] if caught else signal.SIGINT
                )
            if i < iters and every(i - saved_at, time.monotonic() - saved_time):
                save(state, i)

    save(state, iters)
    timing["iters_per_s"] = iters / timing["train_s"] if timing["train_s"] else None
    host = loop.host(state)
    final_train, final_test = loop.accuracy(state, full=True)
    metrics = _metrics(config, history, timing, final_train, final_test, loop)
    if writes:
        runs.write_run(out, metrics, host.params, host.layer_state)
    return Result(host.params, host.layer_state, metrics)


class _Loop:
    """The parts of one run that depend on where it runs: one device or a mesh."""

    def __init__(self, config: TrainConfig, net: Network, opt, data: Data, mesh, keys, timing):
        self.config, self.net, self.opt, self.data = config, net, opt, data
        self.mesh, self.keys, self.timing = mesh, keys, timing
        self.models = config.seeds
        kind = {"models": self.models, "shared": config.shared_batches}
        self.chunk = make_chunk(
            net, opt, config.grad, config.batch_size, fed=mesh is not None, **kind
        )
        # A mesh is fed from the host: the chunk's minibatches, drawn as on one device.
        rows, batch = data.x_train.shape[0], config.batch_size
        self.draw = jax.jit(
            lambda keys, start, length: chunk_indices(keys, start, length, batch, rows, **kind),
            static_argnums=2,
        )
        self.compiled: dict[int, Any] = {}
        self.small = self.big = None
        # Evaluation runs on one device, which in the single-device loop also trains.
        device_data = jax.tree.map(
            jnp.asarray, (data.x_train, data.t_train, data.x_test, data.t_test)
        )
        self.train_set = device_data[:2]
        first = config.eval_samples  # the book's conv-net trainer evaluates the first 1000
        self.eval_sets = {
            "train": tuple(a[:first] if first else a for a in device_data[:2]),
            "test": tuple(a[:first] if first else a for a in device_data[2:]),
        }
        self.full_sets = {"train": device_data[:2], "test": device_data[2:]}
        self.evaluate_fn = make_evaluate(net, models=self.models)

    def place(self, state: TrainState) -> TrainState:
        return state if self.mesh is None else replicate(state, self.mesh)

    def host(self, state: TrainState) -> TrainState:
        """This process's NumPy copy of the state."""
        if self.mesh is not None:
            return local_copy(state)
        return jax.tree.map(np.asarray, state)

    def _args(self, state, start: int, length: int):
        if self.mesh is None:
            return (state, start, self.keys, *self.train_set)
        idx = np.asarray(self.draw(self.keys.data, start, length))
        batches = feed_batches(self.data.x_train, self.data.t_train, idx, self.mesh)
        return (state, start, self.keys, *batches)

    def run_chunk(self, state: TrainState, start: int, length: int):
        """Steps start..start+length-1; returns the new state and the losses on the host."""
        args = self._args(state, start, length)
        with jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext():
            try:
                if length not in self.compiled:
                    t0 = time.perf_counter()
                    self.compiled[length] = self.chunk.lower(*args, length=length).compile()
                    self.timing["compile_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                state, losses = self.compiled[length](*args)
                losses = np.asarray(local_copy(losses) if self.mesh is not None else losses)
            except jax.errors.JaxRuntimeError as e:
                if "RESOURCE_EXHAUSTED" in str(e):
                    raise runs.RunError(f"out of device memory: {str(e).splitlines()[0]}") from None
                raise
            seconds = time.perf_counter() - t0
        self.timing["train_s"] += seconds
        if self.big is None and length == self.small:
            eval_every = self.config.eval_interval(self.data.x_train.shape[0])
            # Every process must cut the run into the same chunks: the slowest one decides.
            slowest = _across_processes(seconds, np.max)
            self.big = self._longest(eval_every, self.small, slowest / length)
        return state, losses

    def next_length(self, i: int, stop: int, eval_every: int) -> int:
        """The next chunk's length: it ends on ``stop`` or on a multiple of its own length.

        The first chunk's length comes from the step's FLOPs at a pessimistic
        :data:`ASSUMED_FLOPS`; once it has run, the others are the longest
        divisor of the evaluation interval that ran in about
        :data:`CHUNK_SECONDS`, so a signal never waits much longer than that.
        """
        if self.small is None:
            step_seconds = self._step_flops() / ASSUMED_FLOPS
            self.small = self._longest(eval_every, 1, step_seconds)
        for length in (self.big, self.small):
            if length and i % length == 0 and i + length <= stop:
                return length
        return min(stop, (i // self.small + 1) * self.small) - i

    def _longest(self, eval_every: int, unit: int, step_seconds: float) -> int:
        """The longest multiple of ``unit`` dividing ``eval_every`` that runs in CHUNK_SECONDS."""
        fits = [
            d
            for d in range(unit, eval_every + 1, unit)
            if eval_every % d == 0 and d * step_seconds <= CHUNK_SECONDS
        ]
        return max(fits, default=unit)

    def _step_flops(self) -> float:
        """One step's FLOPs for all models, from XLA's cost analysis of the unoptimized step."""
        c, net = self.config, self.net
        state = jax.eval_shape(lambda k: init_train_state(net, self.opt, k), run_keys(0))
        xb = jax.ShapeDtypeStruct((c.batch_size, *net.input_shape), jnp.float32)
        tb = jax.ShapeDtypeStruct((c.batch_size,), jnp.int32)
        step = jax.jit(make_step(net, self.opt, c.grad))
        try:
            flops = step.lower(state, xb, tb, jax.random.key(0)).cost_analysis()["flops"]
        except (KeyError, TypeError, NotImplementedError):  # no cost model on this backend
            flops = ASSUMED_FLOPS * CHUNK_SECONDS  # one step per chunk until measured
        return flops * self.models / (1 if self.mesh is None else self.mesh.size)

    def accuracy(self, state: TrainState, full: bool = False) -> tuple[Any, Any]:
        sets = self.full_sets if full else self.eval_sets
        host = self.host(state) if self.mesh is not None else state
        t0 = time.perf_counter()
        accs = tuple(
            np.asarray(self.evaluate_fn(host.params, host.layer_state, *sets[name]))
            for name in ("train", "test")
        )
        self.timing["eval_s"] = self.timing.get("eval_s", 0.0) + time.perf_counter() - t0
        return accs

    def evaluate(self, state: TrainState, i: int, epoch: float, loss) -> dict[str, Any]:
        train_acc, test_acc = self.accuracy(state)
        return {
            "iter": i,
            "epoch": epoch,
            "train_acc": _plain(train_acc),
            "test_acc": _plain(test_acc),
            "loss": _plain(loss),
        }


def _plain(x) -> float | list[float]:
    x = np.asarray(x, np.float64)
    return float(x) if x.ndim == 0 else x.tolist()


def _mean(x) -> float:
    return float(np.mean(x))


def _postfix(row: dict, timing: dict, trained: int) -> str:
    rate = trained / timing["train_s"] if timing["train_s"] else 0.0
    return (
        f"loss {_mean(row['loss']):.3f}, train acc {_mean(row['train_acc']):.3f}, "
        f"test acc {_mean(row['test_acc']):.3f}, {rate:,.0f} it/s"
    )


def _log_line(row: dict, iters: int, models: int) -> str:
    test = f"test acc {_mean(row['test_acc']):.4f}"
    if models > 1:
        s = runs.summary(row["test_acc"])
        test = f"test acc {s['mean']:.4f} ± {s['std']:.4f} ({models} models)"
    return (
        f"iter {row['iter']:>{len(str(iters))}}/{iters}  epoch {row['epoch']:6.1f}  "
        f"loss {_mean(row['loss']):.4f}  train acc {_mean(row['train_acc']):.4f}  {test}"
    )


def _metrics(config: TrainConfig, history, timing, final_train, final_test, loop) -> dict:
    metrics = {
        "config": config.to_dict(),
        "history": history,
        "timing": timing,
        "devices": 1 if loop.mesh is None else loop.mesh.size,
        "processes": jax.process_count(),
    }
    last_loss = history[-1]["loss"]
    if config.seeds == 1:
        metrics["final"] = {
            "train_acc": float(final_train),
            "test_acc": float(final_test),
            "loss": last_loss,
        }
        return metrics
    finals = [
        {
            "seed": config.seed + j,
            "train_acc": float(final_train[j]),
            "test_acc": float(final_test[j]),
            "loss": last_loss[j],
        }
        for j in range(config.seeds)
    ]
    metrics["models"] = finals
    metrics["final"] = {
        name: runs.summary([f[name] for f in finals]) for name in ("train_acc", "test_acc", "loss")
    }
    return metrics


def _default_devices(batch_size: int) -> int:
    # The most devices that split the batch evenly: 5 of 8 for the book's batch of 100.
    if jax.process_count() > 1:
        return jax.device_count()
    return max(n for n in range(1, jax.device_count() + 1) if batch_size % n == 0)


def _checkpoint_interval(every: int | float | None) -> Callable[[int, float], bool]:
    """``due(iterations_since, seconds_since)``: an int counts iterations, a float seconds."""
    if every is None:
        every = CHECKPOINT_SECONDS
    if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every < math.inf:
        raise ValueError(f"checkpoint_every must be a positive number, got {every!r}")
    if isinstance(every, int):
        return lambda iterations, seconds: iterations >= every
    return lambda iterations, seconds: seconds >= every


def _tree_bytes(tree) -> int:
    return sum(
        math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)
    )


def _available_memory() -> tuple[int, str] | None:
    device = jax.local_devices()[0]
    stats = device.memory_stats()
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"the {device.device_kind}"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "this machine's free memory"
    except (OSError, KeyError, ValueError):
        return None


def _check_memory(template: TrainState, data: Data) -> None:
    """Refuses, before anything is allocated, a model that cannot fit in memory."""
    # The state, its gradient and its update at once, plus the data on the device.
    need = 3 * _tree_bytes(template) + sum(a.nbytes for a in vars(data).values())
    available = _available_memory()
    if available and need > available[0]:
        params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(template.params))
        raise ValueError(
            f"the model does not fit: {params:,} parameters need about {need / 1e9:.1f} GB, and "
            f"{available[1]} is {available[0] / 1e9:.1f} GB; use smaller sizes"
        )


def _across_processes(value, reduce):
    """``reduce`` of ``value`` over every process (the value itself in a one-process run)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return reduce(multihost_utils.process_allgather(np.asarray(value)))


def _agree(flag: bool) -> bool:
    """True if any process says so (every process must stop at the same chunk)."""
    return bool(_across_processes(flag, np.any))


@contextlib.contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM append their number instead of raising; the loop stops between chunks."""
    caught: list[int] = []

    def handler(signum, frame):
        caught.append(signum)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

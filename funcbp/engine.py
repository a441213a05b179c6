"""Where a run's chunks execute: one device, or a mesh of many; the compiled chunks.

The :class:`Engine` places the state (replicated over the mesh), feeds each
chunk its minibatches (gathered on the device from the device-resident
training set, or, on a mesh, drawn on the host as on one device and split
over the devices), compiles each chunk length once, and hands back the
losses and a host copy of the state. It knows nothing of files or signals.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcbp.config import LOSS_VALUES, Run, make_optimizer
from funcbp.distributed import data_parallel_mesh, feed_batches, local_copy, replicate
from funcbp.evaluation import Evaluator
from funcbp.splits import Data
from funcbp.steps import (
    RunKeys,
    TrainState,
    chunk_indices,
    init_train_state,
    make_chunk,
    make_step,
)
from funcbp.steps import run_keys as _run_keys

__all__ = [
    "ASSUMED_FLOPS",
    "Engine",
    "OutOfMemory",
    "Programs",
    "check_memory",
    "default_devices",
    "programs",
    "structure",
]

ASSUMED_FLOPS = 5e9  # FLOP/s assumed before the first chunk is timed: a slow CPU


class OutOfMemory(ValueError):
    """The device ran out of memory during a chunk."""


@dataclass(frozen=True)
class Programs:
    """A run's jitted functions, its chunk of steps and its evaluation, and one model's
    step FLOPs (from XLA's cost analysis; None without a cost model)."""

    chunk: Callable
    evaluator: Evaluator
    step_flops: float | None


_PROGRAMS: OrderedDict[tuple, Programs] = OrderedDict()
_KEEP = 8  # the programs of the last few kinds of run, so that the next one compiles nothing


def programs(run: Run, *, fed: bool = False) -> Programs:
    """The chunk and the evaluator of ``run``: the same functions for every run that differs
    from it only in seeds, lengths and the values kept in the state, so a second such run in
    the same process traces and compiles nothing again."""
    key = (*structure(run), fed)
    if key not in _PROGRAMS:
        config = run.config
        kind = {"models": run.count, "shared": config.shared_batches}
        dtype = config.compute_dtype
        opt = make_optimizer(run.optimizer)
        chunk = make_chunk(
            run.build, opt, config.grad, config.batch_size, fed=fed, compute_dtype=dtype, **kind
        )
        evaluator = Evaluator(run.build, models=run.count, compute_dtype=dtype)
        _PROGRAMS[key] = Programs(chunk, evaluator, _step_flops(run))
        while len(_PROGRAMS) > _KEEP:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]


def structure(run: Run) -> tuple:
    """What a run's programs depend on besides the shapes of their inputs."""
    first = run.models[0]
    shared = {k: v for k, v in first.items() if k in LOSS_VALUES and k not in run.varying}
    varying = tuple(k for k in run.varying if k in LOSS_VALUES)
    config = run.config
    return (
        config.model,
        repr(sorted(run.architecture.items())),
        repr(sorted(shared.items())),
        varying,
        run.optimizer,
        config.grad,
        config.batch_size,
        config.compute_dtype,
        run.count,
        config.shared_batches,
    )


class Engine:
    """The device side of one run.

    Args:
        run: the resolved run.
        data: its data.
        devices: how many devices (None: as many as divide the batch).
    """

    def __init__(self, run: Run, data: Data, devices: int | None = None):
        config = run.config
        self.run, self.data, self.models = run, data, run.count
        self.keys: RunKeys = _run_keys(config.seed, self.models)
        self.opt = make_optimizer(run.optimizer)  # each model's values go into its state
        n = devices or default_devices(config.batch_size)
        self.mesh = data_parallel_mesh(n, config.mesh_axes)
        if self.mesh is not None and config.batch_size % self.mesh.size:
            raise ValueError(
                f"batch_size must be divisible by the {self.mesh.size} devices, "
                f"got {config.batch_size}"
            )
        kind = {"models": self.models, "shared": config.shared_batches}
        self.chunk = programs(run, fed=self.mesh is not None).chunk  # compiled once per kind
        rows = len(data.x_train)
        self._draw = jax.jit(
            lambda keys, start, length: chunk_indices(
                keys, start, length, config.batch_size, rows, **kind
            ),
            static_argnums=2,
        )
        self.values = self.place(jax.tree.map(jnp.asarray, run.loss_values()))
        self.train_set = None if self.mesh is not None else (
            jnp.asarray(data.x_train), jnp.asarray(data.t_train)
        )  # fmt: skip
        self.compiled: dict[int, Any] = {}
        self.compile_s = self.train_s = 0.0

    @property
    def devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def template(self) -> TrainState:
        """The state's shapes and dtypes, nothing allocated."""
        return jax.eval_shape(self.init)

    def init(self) -> TrainState:
        """The state before step 0."""
        stds = [m["weight_init_std"] for m in self.run.models]
        return init_train_state(
            self.run.network(), self.opt, self.keys, models=self.models, stds=stds,
            hyperparams=self.run.optimizer_values(),
        )  # fmt: skip

    def place(self, tree: Any) -> Any:
        """``tree`` where the chunks read it: replicated over the mesh, if there is one."""
        return tree if self.mesh is None else replicate(tree, self.mesh)

    def host(self, state: TrainState) -> TrainState:
        """This process's NumPy copy of the state."""
        return jax.tree.map(np.asarray, local_copy(state) if self.mesh is not None else state)

    def run_chunk(self, state: TrainState, start: int, length: int) -> tuple[TrainState, Any]:
        """Steps start..start+length-1: the new state and the (L,) or (L, K) losses on the host."""
        args = self._args(state, start, length)
        with jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext():
            try:
                compiled = self.compiled.get(length) or self._compile(args, length)
                t0 = time.perf_counter()
                state, losses = compiled(*args)
                losses = np.asarray(local_copy(losses) if self.mesh is not None else losses)
            except jax.errors.JaxRuntimeError as e:
                if "RESOURCE_EXHAUSTED" in str(e):
                    raise OutOfMemory(f"out of device memory: {str(e).splitlines()[0]}") from None
                raise
        self.last_seconds = time.perf_counter() - t0
        self.train_s += self.last_seconds
        return state, losses

    def _compile(self, args, length: int):
        t0 = time.perf_counter()
        self.compiled[length] = self.chunk.lower(*args, length=length).compile()
        self.compile_s += time.perf_counter() - t0
        return self.compiled[length]

    def _args(self, state: TrainState, start: int, length: int) -> tuple:
        if self.mesh is None:
            return (state, start, self.keys, self.values, *self.train_set)
        idx = np.asarray(self._draw(self.keys.data, start, length))
        batches = feed_batches(self.data.x_train, self.data.t_train, idx, self.mesh)
        return (state, start, self.keys, self.values, *batches)

    def step_seconds(self) -> float:
        """A pessimistic guess of one step's time for all models, before any has run:
        the step's FLOPs at :data:`ASSUMED_FLOPS`."""
        flops = programs(self.run, fed=self.mesh is not None).step_flops
        if flops is None:
            return 1.0  # one step per chunk until a chunk is timed
        return flops * self.models / self.devices / ASSUMED_FLOPS


def _step_flops(run: Run) -> float | None:
    """One model's step FLOPs, from XLA's cost analysis of the unoptimized step."""
    c, net, opt = run.config, run.network(), make_optimizer(run.optimizer)
    state = jax.eval_shape(lambda k: init_train_state(net, opt, k), _run_keys(0))
    xb = jax.ShapeDtypeStruct((c.batch_size, *net.input_shape), jnp.float32)
    tb = jax.ShapeDtypeStruct((c.batch_size,), jnp.int32)
    step = jax.jit(make_step(lambda values: net, opt, c.grad, c.compute_dtype))
    try:
        return step.lower(state, xb, tb, jax.random.key(0), {}).cost_analysis()["flops"]
    except (KeyError, TypeError, NotImplementedError):  # no cost model on this backend
        return None


def default_devices(batch_size: int) -> int:
    """The most devices that split the batch evenly: 5 of 8 for the book's batch of 100."""
    if jax.process_count() > 1:
        return jax.device_count()
    return max(n for n in range(1, jax.device_count() + 1) if batch_size % n == 0)


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


def check_memory(template: TrainState, data: Data) -> None:
    """Refuses, before anything is allocated, a run that cannot fit in memory."""
    # The state, its gradient and its update at once, plus the data on the device.
    need = 3 * _tree_bytes(template) + data.nbytes
    available = _available_memory()
    if available and need > available[0]:
        params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(template.params))
        raise ValueError(
            f"the model does not fit: {params:,} parameters need about {need / 1e9:.1f} GB, and "
            f"{available[1]} is {available[0] / 1e9:.1f} GB; use smaller sizes"
        )

"""Data parallelism with JAX's own tools: a device mesh, NamedSharding, jax.distributed.

Params and optimizer state are replicated; each minibatch is split over the
mesh axis ``batch``; XLA all-reduces the gradients (the affine rule lays out
``dW`` like ``W``, which makes the all-reduce explicit on Explicit meshes).
Every process feeds its own rows of each global minibatch with
:func:`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "AXIS",
    "CONNECT_TIMEOUT_S",
    "MESH_AXES",
    "data_parallel_mesh",
    "feed_batches",
    "initialize",
    "local_copy",
    "replicate",
]

AXIS = "batch"
MESH_AXES = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}
CONNECT_TIMEOUT_S = 60.0  # how long the processes of a run wait for each other at the start


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    prefix: str = "funcbp",
) -> bool:
    """Joins a multi-process run, from arguments or the environment.

    Without arguments, it reads ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; where none is set it does
    nothing and returns False. On CPU the collectives go through gloo.

    If the processes have not all met within ``timeout`` seconds, the process
    exits with status 2 and one line on stderr, ``prefix: error: ...``, naming
    the coordinator. (JAX's own timeout aborts the process from C++ with a
    stack trace, which cannot be caught, so a watchdog thread comes first.)
    """
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator is None and num_processes is None and process_id is None:
        return False
    if coordinator is None or ":" not in coordinator:
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    if num_processes is None or num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    # CPU devices of several processes need a collectives backend; GPUs and TPUs bring theirs.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    message = _unmet(coordinator, num_processes, process_id, timeout)
    watchdog = threading.Timer(timeout, _give_up, (f"{prefix}: error: {message}",))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(timeout) + 30,  # the watchdog's, not JAX's abort
        )
    finally:
        watchdog.cancel()
    return True


def _unmet(coordinator: str, num_processes: int, process_id: int, timeout: float) -> str:
    """The line for processes that did not meet in time."""
    within = f"within {timeout:g} s (process {process_id} of {num_processes})"
    if process_id == 0:
        met = f"not every process joined the coordinator {coordinator} {within}"
    else:
        met = f"could not reach the coordinator {coordinator} {within}"
    return f"{met}; start every process with the same --coordinator and --num-processes"


def _give_up(line: str) -> None:
    # JAX's connect() holds no lock this thread needs, and cannot be interrupted: leave now.
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)


def data_parallel_mesh(devices: int | None = None, axes: str = "explicit") -> Mesh | None:
    """A 1-D mesh ``("batch",)`` over the first ``devices`` global devices.

    ``devices=None`` takes them all. Returns None for one device in one
    process: the plain single-device loop is then used.
    """
    if axes not in MESH_AXES:
        raise ValueError(f"mesh axes must be one of {', '.join(MESH_AXES)}, got {axes!r}")
    available = jax.device_count()
    n = available if devices is None else devices
    if not 1 <= n <= available:
        raise ValueError(f"devices must be between 1 and {available} (jax.device_count()), got {n}")
    if jax.process_count() > 1 and n != available:
        raise ValueError(f"devices must be all {available} devices in a multi-process run, got {n}")
    if n == 1 and jax.process_count() == 1:
        return None
    return jax.make_mesh((n,), (AXIS,), axis_types=(MESH_AXES[axes],), devices=jax.devices()[:n])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Global arrays, replicated on every device of ``mesh``, from each process's full copy."""
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree
    )


def local_copy(tree: Any) -> Any:
    """This process's NumPy copy of replicated global arrays (for evaluation and saving)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def feed_batches(
    x: np.ndarray, t: np.ndarray, idx: np.ndarray, mesh: Mesh
) -> tuple[jax.Array, jax.Array]:
    """Global minibatches ``x[idx]`` split over ``batch`` on idx's last axis.

    Each process gives only the rows its own devices hold.

    Args:
        x, t: this process's copy of the training set, (n, ...) and (n,).
        idx: (L, B) row indices of L global minibatches, or (L, K, B) for K
            models; the same in every process.
        mesh: from :func:`data_parallel_mesh`.

    Returns:
        ``x[idx]`` (idx's shape, then one example's) and ``t[idx]``, as global
        arrays sharded over ``batch`` on the B axis.
    """
    batch = idx.shape[-1]
    n_dev = mesh.shape[AXIS]
    if batch % n_dev:
        raise ValueError(
            f"batch_size must be divisible by the {n_dev} devices of the mesh, got {batch}"
        )
    spec = (None,) * (idx.ndim - 1) + (AXIS,)
    sharding = NamedSharding(mesh, P(*spec))
    # The columns of the global batch that this process's devices hold.
    spans = sharding.addressable_devices_indices_map(idx.shape).values()
    lo = min(s[-1].start or 0 for s in spans)
    hi = max(s[-1].stop or batch for s in spans)
    local = idx[..., lo:hi]
    xb = jax.make_array_from_process_local_data(sharding, x[local], (*idx.shape, *x.shape[1:]))
    tb = jax.make_array_from_process_local_data(sharding, t[local], idx.shape)
    return xb, tb

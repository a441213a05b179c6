"""K models in one program: seeds ``seed .. seed+K-1`` trained side by side.

Model j is initialized exactly as ``train()`` with seed ``seed+j`` would
initialize it (``init_key, data_key = split(key(seed+j))``), so with its own
minibatch stream it is that run, computed in the same program as the others.

With their own batches, up to :data:`UNROLL_MAX` models run as K copies of
the single-model step in one scan body, which XLA's CPU runtime overlaps
(measured 1.1-1.3x the single-model throughput at K=8, where ``vmap`` turned
the matmuls into batched dots that ran at 0.9-1.0x); more models use ``vmap``
of :func:`funcbp.train.make_chunk`, which compiles in constant time.

With ``shared_batches`` every model draws the minibatches of ``config.seed``.
The K first layers then read the same x, so they are one affine layer of width
K*H: ``x @ [W1_1 ... W1_K]`` is one (D, K*H) matmul forward and
``x.T @ [dh_1 ... dh_K]`` one backward, both big enough for the CPU's matmul
kernels to run near full speed. The layers after it run per model under
``vmap``. Inside the program W1 is kept as (D, K, H), so that the
concatenation is a free reshape (a vmap with x unbatched also makes one wide
matmul, but transposes W1 and dW1 around it every step: 1.3x instead of
1.7-2.0x the single-model throughput at K=8, measured on a 2-core CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from funcbp.io import atomic_write, atomic_write_text
from funcbp.net import Network
from funcbp.train import (
    TrainConfig,
    epoch_schedule,
    load_training_data,
    make_chunk,
    make_optimizer,
    make_step,
    minibatch_indices,
    run_keys,
)

__all__ = ["UNROLL_MAX", "init_ensemble", "make_ensemble_chunk", "train_ensemble"]

# Own batches: up to this many models are unrolled in the scan body, more are vmapped.
UNROLL_MAX = 16

State = tuple[dict[str, jax.Array], Any]


def init_ensemble(
    config: TrainConfig, k: int, input_size: int, output_size: int = 10
) -> tuple[State, jax.Array]:
    """K models' ``(params, opt_state)``, stacked on a leading axis, and their data keys.

    Returns:
        ``(states, data_keys)``: every leaf of ``states`` has shape (K, ...);
        ``data_keys`` has shape (K,).
    """
    _check_k(k)
    net, opt = config.network, make_optimizer(config.optimizer, config.lr)
    states, data_keys = [], []
    for j in range(k):
        init_key, data_key = run_keys(config.seed + j)
        params = net.init(init_key, input_size, config.hidden, output_size, config.weight_init_std)
        states.append((params, opt.init(params)))
        data_keys.append(data_key)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states), jnp.stack(data_keys)


def make_ensemble_chunk(
    net: Network,
    opt: optax.GradientTransformation,
    batch_size: int,
    grad: str,
    *,
    shared_batches: bool = False,
):
    """``chunk(states, start, data_keys, x, t, length) -> (states, losses)``, jitted.

    Steps start..start+length-1 of all K models; ``states`` as from
    :func:`init_ensemble`, ``losses`` of shape (length, K). Own batches: K
    copies of the step per scan iteration (K <= :data:`UNROLL_MAX`), else vmap
    of :func:`funcbp.train.make_chunk`. Shared batches: every model uses
    ``data_keys[0]`` and the first layer is one K*H-wide affine
    (``grad="backprop"``, whose explicit sweep cannot fuse layers, keeps vmap
    with the key unbatched).
    """
    if shared_batches and grad != "backprop":
        chunk = _fused_chunk(net, opt, batch_size, grad)
    elif shared_batches:
        chunk = _vmapped_chunk(net, opt, batch_size, grad, shared_batches=True)
    else:
        unrolled = _unrolled_chunk(net, opt, batch_size, grad)
        vmapped = _vmapped_chunk(net, opt, batch_size, grad, shared_batches=False)

        def chunk(states, start, data_keys, x, t, length):
            own = unrolled if data_keys.shape[0] <= UNROLL_MAX else vmapped
            return own(states, start, data_keys, x, t, length)

    return jax.jit(chunk, static_argnames="length")


def _vmapped_chunk(net, opt, batch_size: int, grad: str, *, shared_batches: bool):
    single = make_chunk(net, opt, batch_size, grad, jit=False)

    def chunk(states, start, data_keys, x, t, length):
        keys, key_axis = (data_keys[0], None) if shared_batches else (data_keys, 0)
        states, losses = jax.vmap(
            lambda state, key: single(state, start, key, x, t, length), in_axes=(0, key_axis)
        )(states, keys)
        return states, losses.T

    return chunk


def _indices(key: jax.Array, start, length: int, batch_size: int, n: int) -> jax.Array:
    """(length, batch_size): steps start.. of one stream, drawn in one vectorized call.

    The indices ``make_chunk`` draws step by step, without a threefry per step in the loop.
    """
    steps = start + jnp.arange(length, dtype=jnp.int32)
    return jax.vmap(lambda i: minibatch_indices(key, i, batch_size, n))(steps)


def _unrolled_chunk(net: Network, opt: optax.GradientTransformation, batch_size: int, grad: str):
    step = make_step(net, opt, grad)

    def chunk(states, start, data_keys, x, t, length):
        k = data_keys.shape[0]
        idx = jax.vmap(lambda key: _indices(key, start, length, batch_size, x.shape[0]))(data_keys)
        models = [jax.tree.map(lambda a, j=j: a[j], states) for j in range(k)]

        def body(models, idx_i):  # idx_i: (K, B), one minibatch per model
            out = [step(s, x[idx_i[j]], t[idx_i[j]]) for j, s in enumerate(models)]
            return [s for s, _ in out], jnp.stack([loss for _, loss in out])

        models, losses = jax.lax.scan(body, models, jnp.moveaxis(idx, 1, 0))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *models), losses

    return chunk


def _is_first_weight(path) -> bool:
    return getattr(path[-1], "key", None) == "W1"


def _model_axes(tree):
    """The models' axis of every leaf in the fused layout: 1 for W1 (D, K, H), else 0."""
    return jax.tree_util.tree_map_with_path(lambda p, _: 1 if _is_first_weight(p) else 0, tree)


def _move_first_weight(tree, source: int, destination: int):
    return jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.moveaxis(a, source, destination) if _is_first_weight(p) else a, tree
    )


def _fused_chunk(net: Network, opt: optax.GradientTransformation, batch_size: int, grad: str):
    twins = grad == "autodiff"  # the plain-jnp twins, for jax.grad to differentiate
    first, *rest = net.layers

    def fn(layer):
        return layer.reference if twins else layer.fn

    def losses(params, xb, tb):
        """(K,) losses; params in the fused layout, W1 (D, K, H) and b1 (K, H)."""
        d, k, h = params["W1"].shape
        wide = fn(first)(xb, params["W1"].reshape(d, k * h), params["b1"].reshape(k * h))

        def one_model(out, p):
            for layer in rest:
                out = fn(layer)(out, *(p[name] for name in layer.params))
            return fn(net.last_layer)(out, tb)

        others = {name: v for name, v in params.items() if name not in first.params}
        return jax.vmap(one_model, in_axes=(1, 0))(wide.reshape(-1, k, h), others)

    def step(state, xb, tb):
        params, opt_state = state

        # The models share no params, so the gradient of the sum is each model's own.
        def total(p):
            per_model = losses(p, xb, tb)
            return jnp.sum(per_model), per_model

        (_, loss), grads = jax.value_and_grad(total, has_aux=True)(params)
        # Per model, so optimizers with a step count (adam) see a scalar count.
        updates, opt_state = jax.vmap(
            opt.update,
            in_axes=(_model_axes(grads), _model_axes(opt_state), _model_axes(params)),
            out_axes=(_model_axes(grads), _model_axes(opt_state)),
        )(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def chunk(states, start, data_keys, x, t, length):
        idx = _indices(data_keys[0], start, length, batch_size, x.shape[0])
        states = _move_first_weight(states, 0, 1)
        states, losses = jax.lax.scan(lambda s, i: step(s, x[i], t[i]), states, idx)
        return _move_first_weight(states, 1, 0), losses

    return chunk


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _mean_std(values: np.ndarray) -> dict[str, float]:
    # Sample std across seeds; 0 for a single model.
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def train_ensemble(
    config: TrainConfig,
    k: int,
    *,
    shared_batches: bool = False,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains K models, seeds ``config.seed .. config.seed+k-1``, in one jitted program.

    Args:
        config: the settings of every model; only the seed differs.
        k: how many models, >= 1.
        shared_batches: all models see the minibatches of ``config.seed``.
        out: the run folder; ``metrics.json``, ``params.npz`` (every array
            (K, ...)) and ``curve.png`` (mean +- std) are written atomically.
            None writes nothing.
        progress: show a tqdm bar.
        log: where the per-epoch lines go.

    Returns:
        The metrics dict that ``metrics.json`` holds.
    """
    _check_k(k)
    (x_train, t_train), (x_test, t_test) = load_training_data(config)
    train_size = x_train.shape[0]
    net, opt = config.network, make_optimizer(config.optimizer, config.lr)
    x_train, t_train = jnp.asarray(x_train), jnp.asarray(t_train)
    x_test, t_test = jnp.asarray(x_test), jnp.asarray(t_test)
    states, data_keys = init_ensemble(config, k, x_train.shape[1])
    seeds = [config.seed + j for j in range(k)]

    iter_per_epoch, eval_every = epoch_schedule(config, train_size)
    chunk = make_ensemble_chunk(
        net, opt, config.batch_size, config.grad, shared_batches=shared_batches
    )
    accuracy = jax.jit(jax.vmap(net.accuracy, in_axes=(0, None, None)))

    t0 = time.perf_counter()
    first = min(eval_every, config.iters)
    chunk.lower(states, 0, data_keys, x_train, t_train, first).compile()
    timing = {"compile_s": time.perf_counter() - t0, "train_s": 0.0}

    histories: list[list[dict[str, float]]] = [[] for _ in seeds]
    bar = tqdm(total=config.iters, disable=not progress, unit="it", leave=False)
    i = 0
    while i < config.iters:
        length = min(eval_every, config.iters - i)
        t0 = time.perf_counter()
        states, losses = chunk(states, i, data_keys, x_train, t_train, length)
        losses.block_until_ready()
        timing["train_s"] += time.perf_counter() - t0
        i += length
        columns = {
            "train_acc": np.asarray(accuracy(states[0], x_train, t_train)),
            "test_acc": np.asarray(accuracy(states[0], x_test, t_test)),
            "loss": np.asarray(jnp.mean(losses, axis=0)),
        }
        for j, history in enumerate(histories):
            row = {"iter": i, "epoch": i / iter_per_epoch}
            history.append(row | {name: float(v[j]) for name, v in columns.items()})
        bar.update(length)
        test = _mean_std(columns["test_acc"])
        bar.set_postfix(test_acc=f"{test['mean']:.3f}")
        (bar.write if progress else log)(
            f"iter {i:>6}  epoch {i / iter_per_epoch:6.1f}  "
            f"loss {np.mean(columns['loss']):.4f}  "
            f"train acc {np.mean(columns['train_acc']):.4f}  "
            f"test acc {test['mean']:.4f} ± {test['std']:.4f}  ({k} models)"
        )
    bar.close()

    train_s = timing["train_s"]
    timing["model_iters_per_s"] = k * config.iters / train_s if train_s else math.inf
    finals = [{name: h[-1][name] for name in ("train_acc", "test_acc", "loss")} for h in histories]
    metrics = {
        "config": config.to_dict(),
        "seeds": seeds,
        "shared_batches": shared_batches,
        "models": [
            {"seed": s, "final": f, "history": h}
            for s, f, h in zip(seeds, finals, histories, strict=True)
        ],
        "summary": {
            name: _mean_std(np.array([f[name] for f in finals]))
            for name in ("train_acc", "test_acc", "loss")
        },
        "timing": timing,
        "devices": 1,
        "processes": jax.process_count(),
    }
    if out is not None:
        out = Path(out)
        params = {name: np.asarray(v) for name, v in states[0].items()}
        atomic_write(out / "params.npz", lambda f: np.savez(f, **params))
        _plot_ensemble(out / "curve.png", histories)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _plot_ensemble(path: Path, histories: list[list[dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.array([row["epoch"] for row in histories[0]])

    def band(ax, name, label, **style):
        values = np.array([[row[name] for row in h] for h in histories])
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
        ax.plot(epochs, mean, label=label, **style)
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    band(ax1, "train_acc", "train acc")
    band(ax1, "test_acc", "test acc", linestyle="--")
    ax1.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    ax1.legend(loc="lower right", title=f"mean ± std of {len(histories)} seeds")
    band(ax2, "loss", "loss")
    ax2.set(xlabel="epochs", ylabel="loss (mean over the epoch's minibatches)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)

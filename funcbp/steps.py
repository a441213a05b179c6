"""The pure, jitted pieces of training: the init, the minibatch draw, one step, chunks of steps.

A chunk runs ``length`` steps in one ``lax.scan``. Step ``i`` draws its
minibatch with ``fold_in(data_key, i)`` and its dropout masks with
``fold_in(noise_key, i)``, so a run is a pure function of its config and
seeds: it does not depend on how the steps are split into chunks, and a
resumed run ends exactly where an uninterrupted one does.

Chunks vary along two independent lines, both arguments of :func:`make_chunk`:

- where a minibatch comes from: gathered on the device from the
  device-resident training set, or ``fed`` from the host already gathered,
  split over a device mesh (each process giving its own rows);
- how many models: one; K with their own minibatch streams; or K sharing one
  stream (``shared``), whose first Affine layers then run as one wide matmul.

K models share an architecture and differ in their values: each model's
learning rate and optimizer options live in its optimizer state (optax's
``inject_hyperparams``), its weight_init_std scales its initial weights, and
the values of the loss that differ between models (weight decay's lambda,
dropout's rate) are traced: the step builds each model's network from them
(``build(values)``). Values that all models share are part of the network.

With their own batches, up to :data:`UNROLL_MAX` models run as K copies of the
step in one scan body, which XLA's CPU runtime overlaps, where ``vmap`` turns
the matmuls into slower batched dots; more models use ``vmap``, which compiles
in constant time. With shared batches the K first layers read the same x, so
``x @ [W1_1 ... W1_K]`` is one (D, K*H) matmul forward and
``x.T @ [dh_1 ... dh_K]`` one backward. W1 is kept as (D, K, H) inside the
chunk, so the concatenation is a free reshape; the layers after it run per
model under ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcbp import layers
from funcbp.net import Network, Params, State

__all__ = [
    "UNROLL_MAX",
    "RunKeys",
    "TrainState",
    "chunk_indices",
    "init_params",
    "init_train_state",
    "make_chunk",
    "make_step",
    "minibatch_indices",
    "run_keys",
]

# Own batches: up to this many models are unrolled in the scan body, more are vmapped.
UNROLL_MAX = 16

Build = Callable[[Mapping[str, Any]], Network]
"""``build(values) -> Network``: one model's network from its traced loss values."""


class TrainState(NamedTuple):
    """What a step carries: params, the optimizer's state, the layers' state (batch norm)."""

    params: Params
    opt_state: Any
    layer_state: State


class RunKeys(NamedTuple):
    """A run's keys: params init, minibatch draws, dropout masks. Shape (K,) for K models."""

    init: jax.Array
    data: jax.Array
    noise: jax.Array


def run_keys(seed: int, models: int = 1) -> RunKeys:
    """The keys of the run with this seed; with ``models`` K, those of seeds seed..seed+K-1.

    Model j of K is the run with seed ``seed + j``, so K models are K single runs.
    """
    keys = [jax.random.split(jax.random.key(seed + j), 3) for j in range(models)]
    if models == 1:
        return RunKeys(*keys[0])
    return RunKeys(*(jnp.stack([k[i] for k in keys]) for i in range(3)))


def init_params(net: Network, init_keys: jax.Array, stds: Sequence[float | str]) -> Params:
    """(K, ...) params: model j drawn from ``init_keys[j]`` with weight_init_std ``stds[j]``.

    A number scales weights drawn with std 1 (exactly ``net.init`` with that
    std, and one compiled init for any number of stds); ``"he"`` and
    ``"xavier"`` are drawn by ``net.init`` itself.
    """
    groups: dict[Any, list[int]] = {}
    for j, std in enumerate(stds):
        groups.setdefault(std if isinstance(std, str) else 1.0, []).append(j)
    parts, order = [], []
    for std, models in groups.items():
        keys = init_keys[np.asarray(models)]
        parts.append(jax.vmap(lambda k, std=std: net.init(k, weight_init_std=std))(keys))
        order += models
    inverse = np.argsort(order)
    params = jax.tree.map(lambda *a: jnp.concatenate(a)[inverse], *parts)
    scale = np.array([1.0 if isinstance(s, str) else s for s in stds], np.float32)
    weights = set(net.weights)
    return {
        k: v * jnp.asarray(scale, v.dtype).reshape(-1, *(1,) * (v.ndim - 1)) if k in weights else v
        for k, v in params.items()
    }


def init_train_state(
    net: Network,
    opt: optax.GradientTransformation,
    keys: RunKeys,
    *,
    models: int = 1,
    stds: Sequence[float | str] | None = None,
    hyperparams: Mapping[str, Sequence[float]] | None = None,
) -> TrainState:
    """The state before step 0; every leaf stacked on a leading (K,) axis for K models.

    Args:
        net, opt: the network and an optimizer made by ``inject_hyperparams``.
        keys: the run's keys, (K,) for K models.
        models: K.
        stds: each model's weight_init_std (default: the network's).
        hyperparams: each model's optimizer values by their name in the
            optimizer's state (``learning_rate``, ``momentum``, ...); default
            the optimizer's own.
    """
    stds = [net.weight_init_std] * models if stds is None else list(stds)
    init_keys = keys.init[None] if models == 1 else keys.init
    params = init_params(net, init_keys, stds)
    opt_state = jax.vmap(opt.init)(params)
    if hyperparams:
        opt_state = _with_hyperparams(opt_state, hyperparams)
    layer_state = jax.vmap(lambda _: net.init_state())(jnp.arange(models))
    state = TrainState(params, opt_state, layer_state)
    return jax.tree.map(lambda a: a[0], state) if models == 1 else state


def _with_hyperparams(opt_state, values: Mapping[str, Sequence[float]]):
    """``opt_state`` with its (K,) hyperparams set to ``values``, in their own dtypes."""
    current = opt_state.hyperparams
    unknown = sorted(set(values) - set(current))
    if unknown:
        raise ValueError(f"the optimizer has no hyperparameters {', '.join(unknown)}")
    new = {k: jnp.asarray(np.asarray(v), current[k].dtype) for k, v in values.items()}
    return opt_state._replace(hyperparams={**current, **new})


def minibatch_indices(
    data_key: jax.Array, start, length: int, batch_size: int, n: int
) -> jax.Array:
    """(length, batch_size) row indices in [0, n) for steps start..start+length-1, with replacement.

    Step i's draw is ``randint(fold_in(data_key, i))``, as the book's
    ``np.random.choice`` draws with replacement; all steps of a chunk in one
    vectorized call. int32 explicitly: the draw must not change with x64.
    """
    steps = start + jnp.arange(length, dtype=jnp.int32)
    draw = lambda i: jax.random.randint(  # noqa: E731
        jax.random.fold_in(data_key, i), (batch_size,), 0, n, dtype=jnp.int32
    )
    return jax.vmap(draw)(steps)


def chunk_indices(
    data_keys, start, length: int, batch_size: int, n: int, *, models: int = 1, shared: bool = False
) -> jax.Array:
    """A chunk's minibatches: (L, B), or (L, K, B) for K models with their own streams."""
    if models == 1 or shared:
        key = data_keys if models == 1 else data_keys[0]
        return minibatch_indices(key, start, length, batch_size, n)
    idx = jax.vmap(lambda k: minibatch_indices(k, start, length, batch_size, n))(data_keys)
    return jnp.moveaxis(idx, 0, 1)


def make_step(build: Build, opt: optax.GradientTransformation, grad: str, compute_dtype=None):
    """``step(state, xb, tb, key, values) -> (state, loss)``: one update on one minibatch.

    ``build(values)`` is the model's network; ``grad`` one of its gradient
    methods; ``key`` feeds dropout. The layers run in ``compute_dtype`` (None:
    the params' dtype); the gradients and the update are in the params' dtype.
    """

    def step(state: TrainState, xb, tb, key, values):
        net = build(values)
        (loss, layer_state), grads = net.value_and_grad(
            state.params, xb, tb, state.layer_state, key=key, method=grad,
            compute_dtype=compute_dtype,
        )  # fmt: skip
        updates, opt_state = _update(opt, grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, layer_state), loss

    return step


def _update(opt: optax.GradientTransformation, grads, opt_state, params):
    # optax's adam raises Python floats to its int32 step count, which strict dtype
    # promotion refuses; the rest of funcbp works under either setting.
    with jax.numpy_dtype_promotion("standard"):
        return opt.update(grads, opt_state, params)


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _models_step(build: Build, opt, grad: str, models: int, shared: bool, compute_dtype):
    """``(step, to_carry, from_carry)`` for one step of every model.

    ``step(carry, xb, tb, keys, values) -> (carry, losses)``: xb (B, ...)
    shared or (K, B, ...) own; keys and values (K,) per model.
    ``to_carry``/``from_carry`` convert the stacked (K, ...) state to the
    carry's layout and back.
    """
    single = make_step(build, opt, grad, compute_dtype)
    if models == 1:
        return single, _same, _same
    if shared and _fusable(build({}), grad, compute_dtype):
        return _fused_step(build, opt, grad), _to_fused, _from_fused
    if shared:
        return jax.vmap(single, in_axes=(0, None, None, 0, 0)), _same, _same
    if models > UNROLL_MAX:
        return jax.vmap(single), _same, _same

    def unrolled(carry, xb, tb, keys, values):
        out = [
            single(s, xb[j], tb[j], keys[j], jax.tree.map(lambda v, j=j: v[j], values))
            for j, s in enumerate(carry)
        ]
        return [s for s, _ in out], jnp.stack([loss for _, loss in out])

    def to_carry(states):
        return [jax.tree.map(lambda a, j=j: a[j], states) for j in range(models)]

    return unrolled, to_carry, _stack


def _same(tree):
    return tree


def _fusable(net: Network, grad: str, compute_dtype) -> bool:
    # The explicit sweep calls each layer's own rule, so it cannot fuse layers; the fused
    # first layer runs in the params' dtype.
    plain = compute_dtype is None or jnp.dtype(compute_dtype) == jnp.float32
    return net.layers[0].fn is layers.affine and grad != "backprop" and plain


def _is_first_weight(path) -> bool:
    return getattr(path[-1], "key", None) == "W1"


def _model_axes(tree):
    """The models' axis of every leaf in the fused layout: 1 for W1 (D, K, H), else 0."""
    return jax.tree_util.tree_map_with_path(lambda p, _: 1 if _is_first_weight(p) else 0, tree)


def _move_first_weight(tree, source: int, destination: int):
    return jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.moveaxis(a, source, destination) if _is_first_weight(p) else a, tree
    )


def _to_fused(states):
    return _move_first_weight(states, 0, 1)


def _from_fused(states):
    return _move_first_weight(states, 1, 0)


def _fused_step(build: Build, opt: optax.GradientTransformation, grad: str):
    twins = grad == "autodiff"
    first = build({}).layers[0]
    w, b = first.params

    def losses(params, layer_state, xb, tb, keys, values):
        """(K,) losses and new layer states; params in the fused layout, W1 (D, K, H)."""
        d, k, h = params[w].shape
        wide = {w: params[w].reshape(d, k * h), b: params[b].reshape(k * h)}
        with jax.named_scope(first.name):
            out, _ = first(xb, wide, {}, None, train=True, twin=twins)

        def one_model(out, p, s, key, v):
            return build(v)._loss(p, out, tb, s, train=True, key=key, twins=twins, start=1)

        axes = (1, _model_axes(params), 0, 0, 0)
        args = (out.reshape(-1, k, h), params, layer_state, keys, values)
        return jax.vmap(one_model, in_axes=axes)(*args)

    def step(state: TrainState, xb, tb, keys, values):
        # The models share no params, so the gradient of the sum is each model's own.
        def total(p):
            per_model, layer_state = losses(p, state.layer_state, xb, tb, keys, values)
            return jnp.sum(per_model), (per_model, layer_state)

        (_, (loss, layer_state)), grads = jax.value_and_grad(total, has_aux=True)(state.params)
        # Per model, so optimizers with a step count (adam) see a scalar count.
        updates, opt_state = jax.vmap(
            lambda *a: _update(opt, *a),
            in_axes=(_model_axes(grads), _model_axes(state.opt_state), _model_axes(state.params)),
            out_axes=(_model_axes(grads), _model_axes(state.opt_state)),
        )(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, layer_state), loss

    return step


def make_chunk(
    build: Build,
    opt: optax.GradientTransformation,
    grad: str,
    batch_size: int,
    *,
    models: int = 1,
    shared: bool = False,
    fed: bool = False,
    compute_dtype=None,
    jit: bool = True,
) -> Callable:
    """``chunk(state, start, keys, values, x, t, length) -> (state, losses)``: steps
    start..start+length-1.

    Args:
        build: ``build(values) -> Network``, one model's network from its
            traced loss values (those that differ between models; the rest
            are part of the network it builds).
        opt, grad: the optax optimizer and the gradient method.
        batch_size: rows per minibatch (per model).
        models: K; the state's leaves, the keys and the values then have a leading (K,) axis.
        shared: the K models draw the minibatches of the first one.
        fed: x and t are the chunk's minibatches, (L, B, ...) or (L, K, B, ...),
            gathered on the host (and sharded over a mesh); otherwise they are
            the whole training set on the device and each step gathers its rows.
        compute_dtype: the layers' dtype (None: the params'); see :func:`make_step`.
        jit: False gives the plain function.

    Returns:
        The chunk, jitted with ``length`` static, so each chunk length
        compiles once. ``losses`` is (L,), or (L, K) for K models.
    """
    step, to_carry, from_carry = _models_step(build, opt, grad, models, shared, compute_dtype)

    def chunk(state: TrainState, start, keys: RunKeys, values, x, t, length: int):
        steps = start + jnp.arange(length, dtype=jnp.int32)
        if fed:
            batches = (x, t)
        else:
            batches = chunk_indices(
                keys.data, start, length, batch_size, x.shape[0], models=models, shared=shared
            )

        def body(carry, inputs):
            i, batch = inputs
            xb, tb = batch if fed else (x[batch], t[batch])
            if models == 1:
                noise = jax.random.fold_in(keys.noise, i)
            else:
                noise = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys.noise, i)
            return step(carry, xb, tb, noise, values)

        carry, losses = jax.lax.scan(body, to_carry(state), (steps, batches))
        return from_carry(carry), losses

    return jax.jit(chunk, static_argnames="length") if jit else chunk

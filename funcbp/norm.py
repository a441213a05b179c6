"""Batch normalization, dropout and weight decay (chapter 6) with hand-written backward rules.

Each layer reads as those of :mod:`funcbp.layers` do: the primal, ``_fwd``,
``_bwd``, ``defvjp``, the residuals being what the book's class caches.
Flags that decide control flow (``train``, ``inverted``, batch norm's
``axis``) are static Python values passed through ``custom_vjp``'s
``nondiff_argnums``. The hyperparameters (the dropout rate, lambda, the
momentum) are values: Python floats or JAX scalars, traced or not, so a sweep
can ``jax.vmap`` over them. No gradient flows into them, into a PRNG key, or
into batch norm's running statistics.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from funcbp import _vma
from funcbp.layers import _custom_vjp, _floating, _hyperparameter, _same_dtype, _static_bool

__all__ = ["batch_norm", "dropout", "weight_decay"]

# The book's 10e-7, the guard inside the square root.
BATCH_NORM_EPS = 1e-6


# --- Batch normalization ----------------------------------------------------


def _feature_layout(x: Array, axis: object) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(shape to work in, axes the statistics run over, D) for batch_norm's ``axis``."""
    if x.ndim not in (2, 4):
        raise ValueError(f"x must have shape (N, D) or (N, C, H, W), got shape {x.shape}")
    if axis is None:  # the book: per feature of x flattened to (N, D)
        d = math.prod(x.shape[1:])
        return (x.shape[0], d), (0,), d
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be None or a Python int, got {axis!r} ({type(axis).__name__})")
    if not -x.ndim < axis < x.ndim or axis % x.ndim == 0:
        raise ValueError(
            f"axis must name a feature axis of x of shape {x.shape} (1..{x.ndim - 1} or "
            f"-{x.ndim - 1}..-1; axis 0 is the batch), got {axis}"
        )
    axis %= x.ndim
    return x.shape, tuple(a for a in range(x.ndim) if a != axis), x.shape[axis]


def _per_feature(v: Array, shape: tuple[int, ...], over: tuple[int, ...]) -> Array:
    """A (D,) vector shaped to broadcast against x in its working shape."""
    return v.reshape([1 if a in over else -1 for a in range(len(shape))])


@partial(_custom_vjp, nondiff_argnums=(5, 7))
def batch_norm(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    train: bool = True,
    momentum: float | ArrayLike = 0.9,
    axis: int | None = None,
) -> tuple[Array, tuple[Array, Array]]:
    """The book's BatchNormalization: ``gamma * (x - mu) / sqrt(var + 1e-6) + beta``.

    Args:
        x: (N, D) or (N, C, H, W).
        gamma, beta, running_mean, running_var: (D,). With the default
            ``axis=None`` a 4-D x is normalized per feature of x flattened to
            (N, C*H*W), as in the book, and D = C*H*W. As in the book the
            running variance starts at 0 (``init_state``), so eval mode before
            any training divides by ``sqrt(0 + 1e-6)``: outputs about 1000
            times too large, and a huge loss.
        train: True uses the batch's mean and biased variance and updates the
            running statistics; False uses the running statistics.
        momentum: running = momentum * running + (1 - momentum) * batch, in
            [0, 1]: a Python float or a JAX scalar (traced too, so
            ``jax.vmap`` over it works). A concrete value is checked; a traced
            one cannot be, and is used as given.
        axis: None (the book), or the channel axis of a 4-D x (1 for NCHW, 3
            or -1 for NHWC) to normalize per channel over (N, H, W); then D = C.

    Returns:
        ``(out, (new_running_mean, new_running_var))``, out of x's shape. In
        eval mode the running statistics come back unchanged.

    Backward, with ``xn = (x - mu) / std``, ``dxn = gamma * dout`` and means over
    the batch: ``dbeta = sum(dout)``, ``dgamma = sum(xn * dout)``, in train mode
    ``dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std`` (the book's chain of
    dxc, dstd, dvar and dmu, summed up), in eval mode ``dx = dxn / std``. The
    book's backward after an eval-mode forward reuses the caches of the last
    train-mode batch, which is wrong; this rule is right in both modes. No
    gradient flows into the running statistics, in or out, nor into momentum.
    """
    return _batch_norm_fwd(x, gamma, beta, running_mean, running_var, train, momentum, axis)[0]


def _batch_norm_fwd(x, gamma, beta, running_mean, running_var, train=True, momentum=0.9, axis=None):
    train = _static_bool("train", train)
    momentum = _hyperparameter("momentum", momentum, 0.0, 1.0, high_open=False)
    x = _floating("x", x)
    shape, over, d = _feature_layout(x, axis)
    params = {
        "gamma": gamma,
        "beta": beta,
        "running_mean": running_mean,
        "running_var": running_var,
    }
    params = {name: _floating(name, v) for name, v in params.items()}
    for name, v in params.items():
        if v.shape != (d,):
            what = "C*H*W" if axis is None and x.ndim == 4 else "D" if axis is None else "C"
            raise ValueError(
                f"{name} must have shape ({d},), one entry per feature ({what}) of x of "
                f"shape {x.shape}, got {v.shape}"
            )
    _same_dtype(x=x, **params)
    if train and x.shape[0] == 0:
        raise ValueError(
            f"x must hold at least one example (N >= 1) for batch statistics, got shape {x.shape}"
        )
    gamma, beta, running_mean, running_var = params.values()
    xw = x.reshape(shape)
    if train:
        mu = jnp.mean(xw, axis=over, keepdims=True)
        xc = xw - mu
        var = jnp.mean(xc**2, axis=over, keepdims=True)
        std = jnp.sqrt(var + BATCH_NORM_EPS)
        xn = xc / std
        keep, take = jnp.asarray(momentum, x.dtype), jnp.asarray(1 - momentum, x.dtype)
        running_mean = keep * running_mean + take * mu.reshape(d)
        running_var = keep * running_var + take * var.reshape(d)
    else:
        std = _per_feature(jnp.sqrt(running_var + BATCH_NORM_EPS), shape, over)
        xn = (xw - _per_feature(running_mean, shape, over)) / std
    out = _per_feature(gamma, shape, over) * xn + _per_feature(beta, shape, over)
    # The book keeps xc, xn and std (and gamma on self); xc = xn * std is not needed.
    return (out.reshape(x.shape), (running_mean, running_var)), (xn.reshape(x.shape), std, gamma)


def _batch_norm_bwd(train, axis, res, cotangents):
    xn, std, gamma = res
    dout, _ = cotangents  # the new running statistics carry no gradient
    shape, over, _ = _feature_layout(xn, axis)
    xn, dout = xn.reshape(shape), dout.reshape(shape)
    dbeta = jnp.sum(dout, axis=over)
    dgamma = jnp.sum(xn * dout, axis=over)
    dxn = _per_feature(gamma, shape, over) * dout
    if train:
        mean_dxn = jnp.mean(dxn, axis=over, keepdims=True)
        dx = (dxn - mean_dxn - xn * jnp.mean(dxn * xn, axis=over, keepdims=True)) / std
    else:
        dx = dxn / std
    return dx.reshape(res[0].shape), dgamma, dbeta, None, None, None


_vma.defvjp(batch_norm, _batch_norm_fwd, _batch_norm_bwd)


# --- Dropout ----------------------------------------------------------------


def _key(key: Any) -> Array:
    if key is None:
        raise TypeError(
            "key must be a PRNG key (jax.random.key or jax.random.PRNGKey) in train mode, got None"
        )
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32):
        raise TypeError(
            f"key must be a PRNG key (jax.random.key or jax.random.PRNGKey), got dtype {key.dtype}"
        )
    return key


@partial(_custom_vjp, nondiff_argnums=(3, 4))
def dropout(
    x: ArrayLike,
    key: Any,
    rate: float | ArrayLike = 0.5,
    train: bool = True,
    inverted: bool = False,
) -> Array:
    """The book's Dropout: train ``x * mask``, eval ``x * (1 - rate)``.

    Args:
        x: any floating array.
        key: a PRNG key, new-style (``jax.random.key``) or legacy
            (``jax.random.PRNGKey``); the same key gives the same mask. In eval
            mode it is not used and may be None.
        rate: the fraction dropped, in [0, 1): a Python float or a JAX scalar
            (traced too, so ``jax.vmap`` over rates works, each rate thresholding
            the same uniform draw). A concrete rate is checked; a traced one
            cannot be, and is used as given.
        train: True draws ``mask = jax.random.uniform(key, x.shape) > rate``.
        inverted: the modern convention instead of the book's: train
            ``x * mask / (1 - rate)``, eval ``x``.

    Returns:
        x's shape and dtype.

    Backward: ``dx = dout * mask`` in train mode (``/ (1 - rate)`` when
    inverted), ``dout * (1 - rate)`` in eval mode (``dout`` when inverted). No
    gradient flows into key or rate.
    """
    return _dropout_fwd(x, key, rate, train, inverted)[0]


def _dropout_fwd(x, key, rate=0.5, train=True, inverted=False):
    rate = _hyperparameter("rate", rate, 0.0, 1.0, high_open=True)
    train, inverted = _static_bool("train", train), _static_bool("inverted", inverted)
    x = _floating("x", x)
    keep = jnp.asarray(1 - rate, x.dtype)  # the fraction kept
    if not train:
        return (x if inverted else x * keep), keep
    draw = jax.random.uniform(_key(key), x.shape)
    mask = draw > jnp.asarray(rate, draw.dtype)
    kept = mask.astype(x.dtype)  # the book multiplies by the boolean mask
    out = x * kept / keep if inverted else x * kept
    return out, (mask, keep)  # the book keeps the mask


def _dropout_bwd(train, inverted, res, dout):
    if not train:
        return (dout if inverted else dout * res), None, None
    mask, keep = res
    kept = mask.astype(dout.dtype)
    return (dout * kept / keep if inverted else dout * kept), None, None


_vma.defvjp(dropout, _dropout_fwd, _dropout_bwd)


# --- Weight decay -----------------------------------------------------------


@_custom_vjp
def weight_decay(weights: Any, lam: float | ArrayLike) -> Array:
    """The book's L2 term: ``0.5 * lam * sum(sum(W ** 2) for W in weights)``.

    Add it to the loss, as the book's MultiLayerNet does for its weight
    matrices (not the biases).

    Args:
        weights: a pytree (tuple, list or dict) of floating arrays of one dtype.
        lam: lambda >= 0, a Python float or a JAX scalar (traced too, so
            ``jax.vmap`` over lambdas works). A concrete lambda is checked; a
            traced one cannot be, and is used as given.

    Returns:
        A scalar.

    Backward: ``dW = dout * lam * W`` for each W, the ``lam * W`` the book adds
    to each weight's gradient. No gradient flows into lam.
    """
    return _weight_decay_fwd(weights, lam)[0]


def _weight_decay_fwd(weights, lam):
    lam = _hyperparameter("lam", lam, 0.0, math.inf, high_open=True)
    leaves, treedef = jax.tree.flatten(weights)
    if not leaves:
        raise ValueError(f"weights must hold at least one array, got {weights!r}")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(weights)[0]]
    leaves = [_floating(f"weights{p}", w) for p, w in zip(paths, leaves, strict=True)]
    _same_dtype(**{f"weights{p}": w for p, w in zip(paths, leaves, strict=True)})
    dtype = leaves[0].dtype
    total = jnp.asarray(0.5 * lam, dtype) * sum(jnp.sum(w * w) for w in leaves)
    return total, (jax.tree.unflatten(treedef, leaves), jnp.asarray(lam, dtype))


def _weight_decay_bwd(res, dout):
    weights, lam = res
    return jax.tree.map(lambda w: dout * lam * w, weights), None


_vma.defvjp(weight_decay, _weight_decay_fwd, _weight_decay_bwd)

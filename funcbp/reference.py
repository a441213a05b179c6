"""Plain-jnp twins of funcbp's layers, differentiated by JAX itself.

Each twin has its layer's signature and forward math but no custom rule, so
``jax.grad`` of a twin is the oracle the hand-written rules are checked
against. Unlike the layers, the twins also work under forward mode
(``jax.jvp``, ``jax.jacfwd``).

The losses and affine share the layers' checks of the labels and the batch
size, so a layer and its twin never agree on an answer to such bad input;
mul and add share the layers' operands, so Python ints become floats in both.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from funcbp import conv, layers, norm
from funcbp.layers import CROSS_ENTROPY_DELTA
from funcbp.norm import BATCH_NORM_EPS

# one twin per layer, same names
__all__ = [*layers.__all__, *conv.__all__, *norm.__all__]


def mul(x: ArrayLike, y: ArrayLike) -> Array:
    return jnp.multiply(*layers._operands(x, y))  # mul(100, 2) is 200.0, as in the layer


def add(x: ArrayLike, y: ArrayLike) -> Array:
    return jnp.add(*layers._operands(x, y))


def relu(x: ArrayLike) -> Array:
    # where, not maximum: jnp.maximum splits the gradient 0.5/0.5 at exactly 0.
    x = jnp.asarray(x)
    return jnp.where(x <= 0, 0, x)


def sigmoid(x: ArrayLike) -> Array:
    # The tanh form has a finite derivative at +-1000, where 1/(1+exp(-x)) gives nan.
    return 0.5 * (jnp.tanh(jnp.asarray(x) / 2) + 1)


def affine(x: ArrayLike, W: ArrayLike, b: ArrayLike | None) -> Array:
    x = jnp.asarray(x)
    if x.ndim == 1:  # one example, the book's np.dot(X, W) + B
        return x @ W if b is None else x @ W + jnp.asarray(b)
    layers._batch("x", x)  # reshape(0, -1) has no answer
    out = x.reshape(x.shape[0], -1) @ W
    return out if b is None else out + jnp.asarray(b)[None, :]


def softmax(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _batch_one_hot(name: str, x: ArrayLike, t: ArrayLike) -> tuple[Array, Array]:
    # The layers' own checks: a layer and its twin must not agree on an answer
    # for bad labels or an empty batch.
    x = jnp.asarray(x)
    layers._scores(name, x)
    t = layers._labels(x, t)
    if x.ndim == 1:
        x, t = x[None], t[None]
    if t.shape == x.shape:
        return x, t.astype(x.dtype)
    return x, jax.nn.one_hot(t, x.shape[-1], dtype=x.dtype)


def _reduced(per_example: Array, reduction: str, shape: tuple[int, ...]) -> Array:
    if reduction == "none":
        return jnp.reshape(per_example, shape)  # () for a 1-D input
    return jnp.mean(per_example) if reduction == "mean" else jnp.sum(per_example)


def cross_entropy_error(y: ArrayLike, t: ArrayLike, reduction: str = "mean") -> Array:
    layers._reduction(reduction)
    shape = jnp.shape(y)[:-1]
    y, t = _batch_one_hot("y", y, t)
    return _reduced(-jnp.sum(t * jnp.log(y + CROSS_ENTROPY_DELTA), axis=-1), reduction, shape)


def softmax_with_loss(x: ArrayLike, t: ArrayLike, reduction: str = "mean") -> Array:
    layers._reduction(reduction)
    layers._logits(jnp.asarray(x))  # +inf is refused where concrete, as by the layer
    shape = jnp.shape(x)[:-1]
    x, t = _batch_one_hot("x", x, t)
    # The max taken out first; a row of only masked (-inf) logits has log y = -inf
    # throughout, as in the layer (logsumexp would give -inf - -inf = nan there).
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    shifted = x - jnp.where(m == -jnp.inf, 0, m)
    total = jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)
    log_y = shifted - jnp.log(jnp.where(total == 0, 1, total))
    # 0 log 0 = 0: log_y * t is -inf * 0 = nan at a masked (-inf) logit.
    return _reduced(-jnp.sum(jnp.where(t != 0, log_y * t, 0), axis=-1), reduction, shape)


# --- chapters 6 and 7 -------------------------------------------------------


def convolution(x: ArrayLike, W: ArrayLike, b: ArrayLike | None, stride: int = 1, pad: int = 0,
                layout: str = "NCHW") -> Array:  # fmt: skip
    # What a JAX user would write: XLA's convolution, W in the book's OIHW. Its
    # output size is the same floor, (H + 2*pad - FH) // stride + 1.
    out = jax.lax.conv_general_dilated(
        jnp.asarray(x),
        jnp.asarray(W),
        (stride, stride),
        [(pad, pad), (pad, pad)],
        dimension_numbers=(layout, "OIHW", layout),
    )
    if b is None:
        return out
    return out + jnp.reshape(b, (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1))


def pooling(x: ArrayLike, pool_h: int = 2, pool_w: int = 2, stride: int = 2, pad: int = 0,
            layout: str = "NCHW") -> Array:  # fmt: skip
    # Zero padding first, as the book's im2col pads; reduce_window's own would pad with -inf.
    x = jnp.asarray(x)
    spatial = (2, 3) if layout == "NCHW" else (1, 2)
    x = jnp.pad(x, [(pad, pad) if a in spatial else (0, 0) for a in range(4)])
    window = [pool_h if a == spatial[0] else pool_w if a == spatial[1] else 1 for a in range(4)]
    strides = [stride if a in spatial else 1 for a in range(4)]
    return jax.lax.reduce_window(
        x, np.array(-np.inf, x.dtype), jax.lax.max, window, strides, "VALID"
    )


def _value(hyperparameter: Any, dtype: Any) -> Array:
    """A rate, lambda or momentum in the data's dtype, held constant, as the rules hold it."""
    return jax.lax.stop_gradient(jnp.asarray(hyperparameter, dtype))


def transpose(x: ArrayLike, axes: tuple[int, ...]) -> Array:
    return jnp.transpose(x, axes)


def batch_norm(x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, running_mean: ArrayLike,
               running_var: ArrayLike, train: bool = True, momentum: float = 0.9,
               axis: int | None = None) -> tuple[Array, tuple[Array, Array]]:  # fmt: skip
    x = jnp.asarray(x)
    if axis is None:
        xw, over = x.reshape(x.shape[0], -1), (0,)
    else:
        xw, over = x, tuple(a for a in range(x.ndim) if a != axis % x.ndim)

    def per_feature(v):
        return jnp.reshape(v, [1 if a in over else -1 for a in range(xw.ndim)])

    # No gradient flows into or out of the running statistics, as in the rule.
    running_mean, running_var = jax.lax.stop_gradient((running_mean, running_var))
    if train:
        mu = jnp.mean(xw, axis=over, keepdims=True)
        var = jnp.mean((xw - mu) ** 2, axis=over, keepdims=True)
        keep, take = _value(momentum, x.dtype), _value(1 - momentum, x.dtype)
        new_mean, new_var = jax.lax.stop_gradient(
            (
                keep * running_mean + take * mu.reshape(-1),
                keep * running_var + take * var.reshape(-1),
            )
        )
    else:
        mu, var = per_feature(running_mean), per_feature(running_var)
        new_mean, new_var = running_mean, running_var
    xn = (xw - mu) / jnp.sqrt(var + BATCH_NORM_EPS)
    out = per_feature(gamma) * xn + per_feature(beta)
    return out.reshape(x.shape), (new_mean, new_var)


def dropout(
    x: ArrayLike, key: Any, rate: float = 0.5, train: bool = True, inverted: bool = False
) -> Array:
    x = jnp.asarray(x)
    keep = _value(1 - rate, x.dtype)
    if not train:
        return x if inverted else x * keep
    draw = jax.random.uniform(key, x.shape)
    mask = (draw > _value(rate, draw.dtype)).astype(x.dtype)
    return x * mask / keep if inverted else x * mask


def weight_decay(weights: Any, lam: float) -> Array:
    leaves = jax.tree.leaves(weights)
    return _value(0.5 * lam, leaves[0].dtype) * sum(jnp.sum(jnp.square(w)) for w in leaves)

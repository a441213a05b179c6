"""Plain-jnp twins of :mod:`funcbp.layers`, differentiated by JAX itself.

Each twin has its layer's signature and forward math but no custom rule, so
``jax.grad`` of a twin is the oracle the hand-written rules are checked
against. Unlike the layers, the twins also work under forward mode
(``jax.jvp``, ``jax.jacfwd``).

The losses and affine share the layers' checks of the labels and the batch
size, so a layer and its twin never agree on an answer to such bad input;
mul and add share the layers' operands, so Python ints become floats in both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from funcbp import layers
from funcbp.layers import CROSS_ENTROPY_DELTA

__all__ = layers.__all__  # one twin per layer, same names


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


def affine(x: ArrayLike, W: ArrayLike, b: ArrayLike) -> Array:
    x = jnp.asarray(x)
    layers._batch("x", x)  # reshape(0, -1) has no answer
    return x.reshape(x.shape[0], -1) @ W + jnp.asarray(b)[None, :]


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


def cross_entropy_error(y: ArrayLike, t: ArrayLike) -> Array:
    y, t = _batch_one_hot("y", y, t)
    return -jnp.sum(t * jnp.log(y + CROSS_ENTROPY_DELTA)) / y.shape[0]


def softmax_with_loss(x: ArrayLike, t: ArrayLike) -> Array:
    x, t = _batch_one_hot("x", x, t)
    log_y = x - jax.scipy.special.logsumexp(x, axis=-1, keepdims=True)
    # 0 log 0 = 0: log_y * t is -inf * 0 = nan at a masked (-inf) logit.
    return -jnp.sum(jnp.where(t != 0, log_y * t, 0)) / x.shape[0]

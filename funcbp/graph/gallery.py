"""The functions ``funcbp graph`` draws besides the chapter's figures: the book's networks.

Each entry of :data:`EXAMPLES` is ``name -> () -> (f, args, argnames)``, ready
for :func:`funcbp.graph.trace`. The chapter's own figures, with their labels
and notes, are in :mod:`funcbp.chapter5`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcbp.graph.tracing import leaf_names

__all__ = ["EXAMPLES", "small_convnet_loss"]


def _floats(*xs: float) -> tuple[jax.Array, ...]:
    return tuple(
        jnp.asarray(x, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32) for x in xs
    )


def _apple():
    from funcbp.examples import APPLE, buy_apple

    def price(apple, apple_num, tax):
        return buy_apple(apple, apple_num, tax)

    return price, _floats(*APPLE.values()), tuple(APPLE)


def _apple_orange():
    from funcbp.examples import APPLE_ORANGE, buy_apple_orange

    def price(apple, apple_num, orange, orange_num, tax):
        return buy_apple_orange(apple, apple_num, orange, orange_num, tax)

    return price, _floats(*APPLE_ORANGE.values()), tuple(APPLE_ORANGE)


def _network(name: str):
    """The loss of one of the book's networks, on four random examples.

    The conv net is drawn in the book's NCHW layout, so the picture holds the
    book's layers and nothing else.
    """
    from funcbp.zoo import simple_convnet_net, two_layer

    net = simple_convnet_net(layout="NCHW") if name == "simple-convnet" else two_layer
    params = net.init(jax.random.key(0))
    # Four examples: arrays are summarized, so the size costs nothing. NumPy draws
    # them, as jax.random would take seconds to compile here.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(4, *net.input_shape)), params["W1"].dtype)
    t = jnp.asarray(rng.integers(0, 10, size=4))
    args = (params, x, t)
    return net.loss, args, tuple(leaf_names(net.loss, args))


def small_convnet_loss(params: dict[str, jax.Array], x: jax.Array, t: jax.Array) -> jax.Array:
    """Conv1 -> Relu1 -> Pool1 -> BatchNorm1 -> Affine1 -> SoftmaxWithLoss, the book's names.

    x is (N, 1, 5, 5); the batch norm runs in train mode from fresh running
    statistics, constants here rather than inputs.
    """
    from funcbp.conv import convolution, pooling
    from funcbp.layers import affine, relu, softmax_with_loss
    from funcbp.norm import batch_norm

    with jax.named_scope("Conv1"):
        h = convolution(x, params["W1"], params["b1"])
    with jax.named_scope("Relu1"):
        h = relu(h)
    with jax.named_scope("Pool1"):
        h = pooling(h)
    with jax.named_scope("BatchNorm1"):
        d, dtype = params["gamma1"].shape, params["gamma1"].dtype
        h, _ = batch_norm(
            h, params["gamma1"], params["beta1"], np.zeros(d, dtype), np.ones(d, dtype)
        )
    with jax.named_scope("Affine1"):
        scores = affine(h, params["W2"], params["b2"])
    with jax.named_scope("SoftmaxWithLoss"):
        return softmax_with_loss(scores, t)


def _small_convnet():
    # NumPy draws the numbers: jax.random would compile a program per shape.
    rng = np.random.default_rng(0)
    shapes = {"W1": (3, 1, 2, 2), "b1": (3,), "gamma1": (12,), "beta1": (12,), "W2": (12, 5)}
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = {
        k: jnp.asarray(0.5 * rng.standard_normal(shape), dtype) for k, shape in shapes.items()
    }
    params["gamma1"] += 1
    params["b1"] += 2  # few dead ReLUs, so every feature varies over the batch
    params["b2"] = jnp.zeros(5, dtype)
    x = jnp.asarray(rng.uniform(size=(8, 1, 5, 5)), dtype)
    t = jnp.asarray(rng.integers(0, 5, size=8))
    args = (params, x, t)
    return small_convnet_loss, args, tuple(leaf_names(small_convnet_loss, args))


# name -> () -> (f, args, argnames): read by ``funcbp graph`` and experiments/draw_graphs.py.
EXAMPLES: dict[str, Callable[[], tuple[Callable[..., Any], tuple, tuple[str, ...]]]] = {
    "apple": _apple,
    "apple-orange": _apple_orange,
    "two-layer": partial(_network, "two-layer"),
    "simple-convnet": partial(_network, "simple-convnet"),
    "small-convnet": _small_convnet,
}

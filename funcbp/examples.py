"""The chapter's shopping examples (figures 5-16 and 5-17) as functions of layers.

``jax.grad`` of these runs the hand-written rules of :func:`funcbp.mul` and
:func:`funcbp.add`, node by node, right to left.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from funcbp.layers import add, mul

__all__ = ["APPLE", "APPLE_ORANGE", "buy_apple", "buy_apple_orange", "price_and_gradients"]

# The book's inputs: 2 apples at 100, 3 oranges at 150, tax 1.1.
APPLE = {"apple": 100.0, "apple_num": 2.0, "tax": 1.1}
APPLE_ORANGE = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}


def buy_apple(apple: ArrayLike, apple_num: ArrayLike, tax: ArrayLike) -> Array:
    """``(apple * apple_num) * tax``: 220 for the book's inputs."""
    return mul(mul(apple, apple_num), tax)


def buy_apple_orange(
    apple: ArrayLike, apple_num: ArrayLike, orange: ArrayLike, orange_num: ArrayLike, tax: ArrayLike
) -> Array:
    """``(apple * apple_num + orange * orange_num) * tax``: 715 for the book's inputs."""
    return mul(add(mul(apple, apple_num), mul(orange, orange_num)), tax)


def price_and_gradients(
    fn: Callable[..., Array], values: dict[str, float]
) -> tuple[float, dict[str, float]]:
    """The price and its gradient with respect to every input, by name.

    Float64 when ``jax_enable_x64`` is on, as the book's NumPy numbers are.
    """
    args = [jnp.asarray(v, dtype=float) for v in values.values()]
    price, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    return float(price), {name: float(g) for name, g in zip(values, grads, strict=True)}

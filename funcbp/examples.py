"""The chapter's shopping examples (figures 5-14 to 5-17) as functions of layers.

``jax.grad`` of :func:`buy_apple` and :func:`buy_apple_orange` runs the
hand-written rules of :func:`funcbp.mul` and :func:`funcbp.add`, node by node,
right to left. :func:`buy_apple_layers` and :func:`buy_apple_orange_layers` do
what section 5.4 does instead: they call each layer's ``forward`` in order,
then each ``backward`` in reverse, carrying by hand what every ``forward``
kept for its ``backward`` (the book's ``self.x`` and ``self.y``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from funcbp.layers import add, mul

__all__ = [
    "APPLE",
    "APPLE_ORANGE",
    "book_number",
    "buy_apple",
    "buy_apple_layers",
    "buy_apple_orange",
    "buy_apple_orange_layers",
    "price_and_gradients",
]

# The book's inputs: 2 apples at 100, 3 oranges at 150, tax 1.1.
APPLE = {"apple": 100.0, "apple_num": 2.0, "tax": 1.1}
APPLE_ORANGE = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}

Values = dict[str, Array]


def buy_apple(apple: ArrayLike, apple_num: ArrayLike, tax: ArrayLike) -> Array:
    """``(apple * apple_num) * tax``: 220 for the book's inputs."""
    return mul(mul(apple, apple_num), tax)


def buy_apple_orange(
    apple: ArrayLike, apple_num: ArrayLike, orange: ArrayLike, orange_num: ArrayLike, tax: ArrayLike
) -> Array:
    """``(apple * apple_num + orange * orange_num) * tax``: 715 for the book's inputs."""
    return mul(add(mul(apple, apple_num), mul(orange, orange_num)), tax)


def buy_apple_layers(
    apple: ArrayLike, apple_num: ArrayLike, tax: ArrayLike
) -> tuple[Values, Values]:
    """Section 5.4.1: two mul layers, forward in order, then backward in reverse.

    Each ``mul.forward`` returns its output and what its ``mul.backward``
    needs (the two inputs); each ``mul.backward`` takes that and the upstream
    ``dout`` and returns the inputs' gradients, swapped as a mul node swaps them.

    Returns:
        ``(forward, backward)``: every value by the book's variable name, in
        the order computed. For the book's inputs, price 220.00000000000003,
        dapple 2.2, dapple_num 110.00000000000001, dtax 200.
    """
    # forward
    apple_price, mul_apple_layer = mul.forward(apple, apple_num)
    price, mul_tax_layer = mul.forward(apple_price, tax)
    # backward
    dprice = jnp.ones_like(price)
    dapple_price, dtax = mul.backward(mul_tax_layer, dprice)
    dapple, dapple_num = mul.backward(mul_apple_layer, dapple_price)
    forward = {"apple_price": apple_price, "price": price}
    backward = {
        "dprice": dprice,
        "dapple_price": dapple_price,
        "dtax": dtax,
        "dapple": dapple,
        "dapple_num": dapple_num,
    }
    return forward, backward


def buy_apple_orange_layers(
    apple: ArrayLike, apple_num: ArrayLike, orange: ArrayLike, orange_num: ArrayLike, tax: ArrayLike
) -> tuple[Values, Values]:
    """Section 5.4.2: mul, mul, add and mul layers; the backward calls go (4), (3), (2), (1).

    Returns:
        ``(forward, backward)`` as :func:`buy_apple_layers` does: price 715,
        dapple 2.2, dapple_num 110, dorange 3.3, dorange_num 165, dtax 650.
    """
    # forward
    apple_price, mul_apple_layer = mul.forward(apple, apple_num)  # (1)
    orange_price, mul_orange_layer = mul.forward(orange, orange_num)  # (2)
    all_price, add_apple_orange_layer = add.forward(apple_price, orange_price)  # (3)
    price, mul_tax_layer = mul.forward(all_price, tax)  # (4)
    # backward
    dprice = jnp.ones_like(price)
    dall_price, dtax = mul.backward(mul_tax_layer, dprice)  # (4)
    dapple_price, dorange_price = add.backward(add_apple_orange_layer, dall_price)  # (3)
    dorange, dorange_num = mul.backward(mul_orange_layer, dorange_price)  # (2)
    dapple, dapple_num = mul.backward(mul_apple_layer, dapple_price)  # (1)
    forward = {
        "apple_price": apple_price,
        "orange_price": orange_price,
        "all_price": all_price,
        "price": price,
    }
    backward = {
        "dprice": dprice,
        "dall_price": dall_price,
        "dtax": dtax,
        "dapple_price": dapple_price,
        "dorange_price": dorange_price,
        "dorange": dorange,
        "dorange_num": dorange_num,
        "dapple": dapple,
        "dapple_num": dapple_num,
    }
    return forward, backward


def book_number(x: ArrayLike) -> str:
    """A number as the book's Python prints it: ``220.00000000000003``, ``2.2``, ``200``."""
    return repr(float(x)).removesuffix(".0")


def price_and_gradients(
    fn: Callable[..., Array], values: dict[str, float]
) -> tuple[float, dict[str, float]]:
    """The price and its gradient with respect to every input, by name.

    Float64 when ``jax_enable_x64`` is on, as the book's NumPy numbers are.
    """
    args = [jnp.asarray(v, dtype=float) for v in values.values()]
    price, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    return float(price), {name: float(g) for name, g in zip(values, grads, strict=True)}

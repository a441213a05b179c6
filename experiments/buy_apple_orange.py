"""The book's buy_apple_orange.py: mul, add and mul nodes, backward by jax.grad.

Prints price 715 and the gradients apple 2.2, apple_num 110, orange 3.3,
orange_num 165, tax 650.
"""

import jax

jax.config.update("jax_enable_x64", True)  # the book's float64 numbers

from funcbp.examples import APPLE_ORANGE, buy_apple_orange, price_and_gradients  # noqa: E402


def main() -> None:
    price, grads = price_and_gradients(buy_apple_orange, APPLE_ORANGE)
    print(f"price: {price:g}")
    for name, g in grads.items():
        print(f"d{name}: {g:g}")


if __name__ == "__main__":
    main()

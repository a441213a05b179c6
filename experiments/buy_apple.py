"""The book's buy_apple.py: forward through two mul nodes, backward by jax.grad.

Prints price 220 and the gradients apple 2.2, apple_num 110, tax 200.
"""

import jax

jax.config.update("jax_enable_x64", True)  # the book's float64 numbers

from funcbp.examples import APPLE, buy_apple, price_and_gradients  # noqa: E402


def main() -> None:
    price, grads = price_and_gradients(buy_apple, APPLE)
    print(f"price: {price:g}")
    for name, g in grads.items():
        print(f"d{name}: {g:g}")


if __name__ == "__main__":
    main()

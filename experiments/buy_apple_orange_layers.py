"""The book's section 5.4.2 (buy_apple_orange.py): mul and add layers, called by hand.

Forward (1) to (4), then backward (4) to (1) from dprice = 1. Prints every
value in the order computed, then the book's lines: price 715, dApple 2.2,
dApple_num 110, dOrange 3.3000000000000003, dOrange_num 165, dTax 650.
"""

import jax

jax.config.update("jax_enable_x64", True)  # the book's float64 numbers

import jax.numpy as jnp  # noqa: E402

from funcbp.examples import APPLE_ORANGE, book_number, buy_apple_orange_layers  # noqa: E402


def main() -> None:
    args = (jnp.asarray(v, float) for v in APPLE_ORANGE.values())
    forward, backward = buy_apple_orange_layers(*args)
    print("forward:  " + ", ".join(f"{k} = {book_number(v)}" for k, v in forward.items()))
    print("backward: " + ", ".join(f"{k} = {book_number(v)}" for k, v in backward.items()))
    print("price:", int(forward["price"]))
    print("dApple:", book_number(backward["dapple"]))
    print("dApple_num:", int(backward["dapple_num"]))
    print("dOrange:", book_number(backward["dorange"]))
    print("dOrange_num:", int(backward["dorange_num"]))
    print("dTax:", book_number(backward["dtax"]))


if __name__ == "__main__":
    main()
